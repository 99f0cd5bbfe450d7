//! The `protogate-build` binary, run as a user runs it: its output and exit status on the crafted
//! protos of the breaking-change tests, and the CI recipe (`docs/ci/protogate-rest-check.sh`)
//! run on a copy of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_protogate-build");

fn protos(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/protos/breaking")
        .join(case)
}

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("protogate-build runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_passes_on_valid_protos() {
    let out = run(&["check", "."], &protos("base"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok: 7 routes of 6 RPCs\n");
}

#[test]
fn check_names_file_line_and_column_of_a_bad_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("bad.proto"),
        r#"syntax = "proto3";
package bad.v1;
import "google/api/annotations.proto";
message Req { string name = 1; }
service S {
  rpc Get(Req) returns (Req) {
    option (google.api.http) = { get: "/v1/{nme}" };
  }
}
"#,
    )
    .expect("write");
    let out = run(&["check", "bad.proto"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.proto:7:5: path variable `{nme}` in `bad.v1.S.Get`"),
        "{stderr}"
    );
    // A syntax error is the protos' fault too, with its place.
    std::fs::write(
        dir.path().join("bad.proto"),
        "syntax = \"proto3\";\nmessage {\n",
    )
    .expect("write");
    let out = run(&["check", "bad.proto"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("bad.proto:2:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unbound_methods_get_their_routes_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("unb.proto"),
        r#"syntax = "proto3";
package unb.v1;
import "google/api/annotations.proto";
message Req { string name = 1; }
service S {
  rpc Get(Req) returns (Req) {
    option (google.api.http) = { get: "/v1/{name}" };
  }
  rpc Plain(Req) returns (Req);
}
"#,
    )
    .expect("write");
    let out = run(&["routes", "unb.proto"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("/v1/{name}") && !table.contains("Plain"),
        "{table}"
    );
    let out = run(&["routes", "--unbound-methods", "unb.proto"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("/unb.v1.S/Plain"), "{table}");
    assert!(table.contains("/v1/{name}"), "the rule stays: {table}");
}

#[test]
fn routes_prints_the_route_table() {
    let out = run(
        &["routes", "-I", ".", "acme/library/v1/library.proto"],
        &protos("base"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    assert_eq!(
        lines[0],
        [
            "GET",
            "/v1/{name=shelves/*/books/*}",
            "acme.library.v1.Library.GetBook"
        ]
    );
    assert_eq!(
        lines[6],
        [
            "POST",
            "/v1/{name=shelves/*/books/*}:archive",
            "acme.library.v1.Library.ArchiveBook"
        ]
    );
}

#[test]
fn openapi_and_surface_are_written_to_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let openapi = dir.path().join("openapi.json");
    let surface = dir.path().join("rest-surface.json");
    let base = protos("base");
    let out = run(
        &[
            "openapi",
            "-o",
            openapi.to_str().expect("utf-8"),
            "--title",
            "Library",
            ".",
        ],
        &base,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&openapi).expect("written")).expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["title"], "Library");
    assert!(document["paths"]["/v1/books:search"]["post"].is_object());

    let out = run(
        &["surface", "-o", surface.to_str().expect("utf-8"), "."],
        &base,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&surface).expect("written");
    let out = run(&["surface", "."], &base);
    assert_eq!(text(&out.stdout), written, "stdout and file agree");
}

#[test]
fn breaking_exits_one_until_the_change_is_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snapshot = dir.path().join("rest-surface.json");
    let snapshot_arg = snapshot.to_str().expect("utf-8");
    let out = run(&["surface", "-o", snapshot_arg, "."], &protos("base"));
    assert_eq!(out.status.code(), Some(0));

    let out = run(
        &["breaking", "--against", snapshot_arg, "."],
        &protos("optional_field_added"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("compatible field-added:acme.library.v1.Book.subtitle"));

    let breaking_case = protos("field_renamed");
    let out = run(
        &["breaking", "--against", snapshot_arg, "."],
        &breaking_case,
    );
    assert_eq!(out.status.code(), Some(1));
    let id = "json-name-changed:acme.library.v1.Book.headline";
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("BREAKING {id}")), "{stdout}");
    assert!(
        stdout.contains("acme.library.v1.Book.headline (acme/library/v1/library.proto:41:3)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("GET /v1/{name=shelves/*/books/*}: response property `title`"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("1 breaking change(s)"),
        "{}",
        text(&out.stderr)
    );

    let accept = dir.path().join("accepted.txt");
    std::fs::write(&accept, format!("{id}\n")).expect("write");
    let out = run(
        &[
            "breaking",
            "--against",
            snapshot_arg,
            "--accept",
            accept.to_str().expect("utf-8"),
            ".",
        ],
        &breaking_case,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("BREAKING (accepted) {id}")));
}

#[test]
fn a_missing_snapshot_cannot_run() {
    let out = run(
        &["breaking", "--against", "nowhere.json", "."],
        &protos("base"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("reading nowhere.json"),
        "{}",
        text(&out.stderr)
    );
}

/// Copies the library proto of `case` into `root`'s proto directory.
fn put_protos(case: &str, root: &Path) {
    let to = root.join("proto/acme/library/v1");
    std::fs::create_dir_all(&to).expect("proto dir");
    std::fs::copy(
        protos(case).join("acme/library/v1/library.proto"),
        to.join("library.proto"),
    )
    .expect("copy proto");
}

fn recipe(root: &Path) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ci/protogate-rest-check.sh");
    Command::new("bash")
        .arg(script)
        .env("PROTOGATE_BUILD", BIN)
        .env_remove("BASE_REF")
        .current_dir(root)
        .output()
        .expect("bash runs the recipe")
}

#[test]
fn the_ci_recipe_writes_the_snapshot_then_guards_it() {
    let root = tempfile::tempdir().expect("temp dir");
    let root = root.path();

    // First run: no snapshot yet, so it is written.
    put_protos("base", root);
    let out = recipe(root);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("wrote the first snapshot"));
    assert!(root.join("rest-surface.json").is_file());
    assert!(root.join("openapi.json").is_file());
    assert!(
        text(&out.stdout).contains("acme.library.v1.Library.GetBook"),
        "the routes"
    );

    // A compatible change passes, and the snapshot follows it.
    put_protos("optional_field_added", root);
    let out = recipe(root);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        std::fs::read_to_string(root.join("rest-surface.json"))
            .expect("snapshot")
            .contains("\"subtitle\"")
    );

    // A breaking change fails, and leaves the snapshot as it was.
    let before = std::fs::read(root.join("rest-surface.json")).expect("snapshot");
    let proto = root.join("proto/acme/library/v1/library.proto");
    let source = std::fs::read_to_string(&proto).expect("proto");
    std::fs::write(
        &proto,
        source.replace("int32 page_count = 3;", "int64 page_count = 3;"),
    )
    .expect("write");
    let out = recipe(root);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let id = "type-changed:acme.library.v1.Book.page_count";
    assert!(
        text(&out.stdout).contains(&format!("BREAKING {id}")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        std::fs::read(root.join("rest-surface.json")).expect("snapshot"),
        before
    );

    // Accepting it passes.
    std::fs::write(
        root.join("rest-breaking-accepted.txt"),
        format!("# page counts past 2^31: clients read strings now\n{id}\n"),
    )
    .expect("write");
    let out = recipe(root);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&format!("BREAKING (accepted) {id}")));

    // Invalid rules stop the job at its first step.
    let source = std::fs::read_to_string(&proto).expect("proto");
    std::fs::write(
        &proto,
        source.replace("/v1/books:search", "/v1/{nope}:search"),
    )
    .expect("write");
    let out = recipe(root);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("acme/library/v1/library.proto:23:5"),
        "{}",
        text(&out.stderr)
    );
}
