//! Snapshots of what protogate-build generates for a small proto: review changes with
//! `cargo insta review`.

#[test]
fn generated_code_for_a_small_proto() {
    let files = protogate_build::configure()
        .generate(&["small/v1/small.proto"], &["tests/protos"])
        .expect("the small proto generates");
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert!(names.contains(&"google.rpc.protogate.rs"), "{names:?}");
    for file in files {
        // google.api and google.rpc are protogate's own files: snapshot only what this proto adds.
        if file.name.starts_with("small.")
            || file.name == protogate_build::INCLUDE_FILE
            || file.name == protogate_build::OPENAPI_FILE
        {
            insta::assert_snapshot!(file.name.clone(), file.contents);
        }
    }
}

/// With unbound methods on, the RPC without a rule gets a route and an operation of its own,
/// marked unbound; the annotated ones are as without the option.
#[test]
fn generated_code_with_unbound_methods() {
    let plain = protogate_build::configure()
        .generate(&["small/v1/small.proto"], &["tests/protos"])
        .expect("the small proto generates");
    let files = protogate_build::configure()
        .unbound_methods(true)
        .generate(&["small/v1/small.proto"], &["tests/protos"])
        .expect("the small proto generates");
    for file in files {
        if file.name == "small.v1.protogate.rs" || file.name == protogate_build::OPENAPI_FILE {
            let without = plain.iter().find(|f| f.name == file.name).expect("both");
            assert_ne!(without.contents, file.contents, "{}", file.name);
            insta::assert_snapshot!(format!("unbound_{}", file.name), file.contents);
        }
    }
}
