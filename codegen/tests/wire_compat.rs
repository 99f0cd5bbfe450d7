//! protogate's own google/api, google/rpc and google/longrunning files against Google's, from the
//! corpus in `../shared/corpus/googleapis`: every message, field, enum value and extension that
//! protogate defines has the same name, number and type there, so the two are wire-compatible.

use std::path::Path;

use prost_reflect::{DescriptorPool, FileDescriptor};

const FILES: &[&str] = &[
    "google/api/annotations.proto",
    "google/api/http.proto",
    "google/api/httpbody.proto",
    "google/api/field_behavior.proto",
    "google/api/client.proto",
    "google/api/resource.proto",
    "google/api/launch_stage.proto",
    "google/api/field_info.proto",
    "google/api/routing.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "google/longrunning/operations.proto",
];

fn compile(root: &Path) -> DescriptorPool {
    let mut compiler = protox::Compiler::new([root]).expect("compiler");
    compiler.include_imports(true);
    compiler.open_files(FILES).expect("the files compile");
    DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).expect("pool")
}

fn describe_field(field: &prost_reflect::FieldDescriptor) -> String {
    format!(
        "{} = {} {:?} {:?} {}",
        field.name(),
        field.number(),
        field.cardinality(),
        field.kind(),
        field.is_packed()
    )
}

#[test]
fn protogate_google_files_match_googles() {
    let ours = compile(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto"));
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/googleapis");
    assert!(
        corpus.is_dir(),
        "the corpus is expected at {}",
        corpus.display()
    );
    let theirs = compile(&corpus);

    let mut checked = 0;
    for name in FILES {
        let file: FileDescriptor = ours.get_file_by_name(name).expect("our file");
        for message in file
            .messages()
            .flat_map(|m| std::iter::once(m.clone()).chain(m.child_messages().collect::<Vec<_>>()))
        {
            let other = theirs
                .get_message_by_name(message.full_name())
                .unwrap_or_else(|| panic!("{} is not in Google's {name}", message.full_name()));
            for field in message.fields() {
                let their_field = other.get_field(field.number()).unwrap_or_else(|| {
                    panic!("{}: field {} missing", message.full_name(), field.number())
                });
                assert_eq!(
                    describe_field(&field),
                    describe_field(&their_field),
                    "{}",
                    message.full_name()
                );
                checked += 1;
            }
        }
        for e in file.enums().chain(
            file.messages()
                .flat_map(|m| m.child_enums().collect::<Vec<_>>()),
        ) {
            let other = theirs
                .get_enum_by_name(e.full_name())
                .unwrap_or_else(|| panic!("{} is not in Google's {name}", e.full_name()));
            for value in e.values() {
                assert_eq!(
                    other.get_value_by_name(value.name()).map(|v| v.number()),
                    Some(value.number()),
                    "{}.{}",
                    e.full_name(),
                    value.name()
                );
                checked += 1;
            }
        }
        for extension in file.extensions() {
            let other = theirs
                .get_extension_by_name(extension.full_name())
                .unwrap_or_else(|| panic!("extension {} missing", extension.full_name()));
            assert_eq!(
                extension.number(),
                other.number(),
                "{}",
                extension.full_name()
            );
            assert_eq!(
                extension.containing_message().full_name(),
                other.containing_message().full_name()
            );
            assert_eq!(
                format!("{:?} {:?}", extension.kind(), extension.cardinality()),
                format!("{:?} {:?}", other.kind(), other.cardinality())
            );
            checked += 1;
        }
    }
    assert!(checked > 120, "only {checked} definitions compared");
}
