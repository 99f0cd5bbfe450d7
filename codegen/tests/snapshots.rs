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
