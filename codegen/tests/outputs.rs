//! What a build writes: from proto files and from a ready descriptor set, into a chosen directory.

use std::path::Path;

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn files_and_descriptor_sets_generate_the_same_gateway() {
    let from_files = tempfile::tempdir().expect("temp dir");
    protogate_build::configure()
        .out_dir(from_files.path())
        .emit_rerun_if_changed(false)
        .compile(&["small/v1/small.proto"], &["tests/protos"])
        .expect("compiles from files");

    let mut compiler = protox::Compiler::new(["tests/protos", "../proto"]).expect("compiler");
    compiler.include_imports(true);
    compiler
        .open_file("small/v1/small.proto")
        .expect("compiles with protox");
    let from_set = tempfile::tempdir().expect("temp dir");
    protogate_build::configure()
        .out_dir(from_set.path())
        .compile_descriptor_set(compiler.encode_file_descriptor_set())
        .expect("compiles from a descriptor set");

    for dir in [from_files.path(), from_set.path()] {
        for name in [
            "small.v1.rs",
            "small.v1.protogate.rs",
            protogate_build::INCLUDE_FILE,
            protogate_build::DESCRIPTOR_SET_FILE,
        ] {
            assert!(dir.join(name).is_file(), "{name} in {}", dir.display());
        }
        // With an explicit output directory the include file names it.
        let include = read(dir, protogate_build::INCLUDE_FILE);
        assert!(include.contains(&dir.display().to_string()), "{include}");
    }
    assert_eq!(
        read(from_files.path(), "small.v1.protogate.rs"),
        read(from_set.path(), "small.v1.protogate.rs")
    );
}

#[test]
fn tonic_and_prost_options_compose() {
    let out = tempfile::tempdir().expect("temp dir");
    let mut prost = prost_build::Config::new();
    prost.type_attribute(".small.v1.Note", "#[doc = \"from prost config\"]");
    protogate_build::configure()
        .out_dir(out.path())
        .emit_rerun_if_changed(false)
        .build_server(false)
        .tonic(|tonic| tonic.client_mod_attribute(".", "#[doc = \"from tonic\"]"))
        .prost_config(prost)
        .compile(&["small/v1/small.proto"], &["tests/protos"])
        .expect("compiles");
    let messages = read(out.path(), "small.v1.rs");
    assert!(messages.contains("from prost config"));
    assert!(messages.contains("from tonic"));
    assert!(
        !messages.contains("notes_server"),
        "build_server(false) leaves the server out"
    );
    let gateway = read(out.path(), "small.v1.protogate.rs");
    assert!(
        !gateway.contains("pub fn local"),
        "no in-process backend without a server"
    );
}

#[test]
fn google_style_imports_resolve_without_googleapis() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("api.proto"),
        r#"syntax = "proto3";
package acme.v1;
import "google/api/annotations.proto";
import "google/api/client.proto";
import "google/api/field_behavior.proto";
import "google/api/resource.proto";
import "google/longrunning/operations.proto";
service Widgets {
  option (google.api.default_host) = "widgets.example.com";
  rpc MakeWidget(MakeWidgetRequest) returns (google.longrunning.Operation) {
    option (google.api.http) = { post: "/v1/{parent=projects/*}/widgets" body: "*" };
    option (google.api.method_signature) = "parent";
    option (google.longrunning.operation_info) = { response_type: "Widget" };
  }
}
message Widget {
  option (google.api.resource) = { type: "example.com/Widget" pattern: "projects/{project}/widgets/{widget}" };
  string name = 1 [(google.api.field_behavior) = IDENTIFIER];
}
message MakeWidgetRequest {
  string parent = 1 [(google.api.field_behavior) = REQUIRED, (google.api.resource_reference).type = "example.com/Widget"];
  Widget widget = 2;
}
"#,
    )
    .expect("write proto");
    let files = protogate_build::configure()
        .generate(&["api.proto"], &[dir.path()])
        .expect("compiles with the built-in google files");
    assert!(files.iter().any(|f| f.name == "acme.v1.protogate.rs"));
    assert!(
        files
            .iter()
            .any(|f| f.name == "google.longrunning.protogate.rs")
    );
}
