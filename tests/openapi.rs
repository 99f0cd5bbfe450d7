//! The stock gateway's OpenAPI document: a snapshot, accepted by openapi-spec-validator, one
//! operation per binding, what the document promises for the demo's types, served by the binary
//! as `protogate openapi` prints it, and exercised against the live demo by schemathesis.

mod support;

use std::process::Command;

use protogate_gateway::{docs, pb};
use serde_json::{Value, json};

fn document() -> Value {
    serde_json::from_str(docs::openapi()).expect("the document is JSON")
}

#[test]
fn openapi_document_snapshot() {
    insta::assert_snapshot!(docs::openapi());
}

#[test]
fn openapi_spec_validator_accepts_the_document() {
    if let Err(problems) = support::tools::validate_openapi(docs::openapi()) {
        panic!("openapi-spec-validator refused the document:\n{problems}");
    }
}

#[test]
fn the_yaml_form_is_valid_too() {
    let yaml = support::printed(support::binary(), &["openapi", "--yaml"]);
    assert!(
        yaml.starts_with("\"openapi\": \"3.1.0\"\n"),
        "{}",
        &yaml[..80]
    );
    if let Err(problems) = support::tools::validate_openapi(&yaml) {
        panic!("openapi-spec-validator refused the YAML document:\n{problems}");
    }
}

fn operation_count(document: &Value) -> usize {
    document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().expect("a path item").len())
        .sum()
}

#[test]
fn every_binding_is_one_operation() {
    let bindings: usize = pb::SERVICES.iter().map(|s| s.routes.len()).sum();
    assert_eq!(operation_count(&document()), bindings);
}

#[test]
fn the_demo_types_as_the_document_describes_them() {
    let document = document();
    let schemas = &document["components"]["schemas"];
    // REQUIRED binds what is sent: the shelf received requires nothing, the one sent its theme;
    // the output-only book count is received, never sent.
    let shelf = &schemas["protogate.demo.v1.Shelf"];
    assert!(shelf.get("required").is_none(), "{shelf}");
    assert_eq!(shelf["properties"]["bookCount"]["readOnly"], true);
    let sent = &schemas["protogate.demo.v1.Shelf-Input"];
    assert_eq!(sent["required"], json!(["theme"]));
    assert!(sent["properties"].get("bookCount").is_none(), "{sent}");
    assert_eq!(shelf["properties"]["createTime"]["format"], "date-time");
    assert_eq!(shelf["description"], "A shelf holds books.");

    let paths = &document["paths"];
    let get_book = &paths["/demo/v1/shelves/{shelf}/books/{book}"]["get"];
    assert_eq!(get_book["operationId"], "LibraryService_GetBook");
    assert_eq!(get_book["summary"], "Gets a book by name, or by ISBN.");
    let names: Vec<&str> = get_book["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"] == "path")
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["shelf", "book"]);

    // A body of "*" never holds the path's fields.
    let create = &paths["/demo/v1/shelves/{shelf}/books"]["post"];
    let body = serde_json::to_string(&create["requestBody"]).expect("JSON");
    assert!(!body.contains("\"parent\""), "{body}");

    let stream = &paths["/demo/v1/shelves/{shelf}/books:stream"]["get"]["responses"]["200"];
    assert!(
        stream["content"]["application/x-ndjson"].is_object(),
        "{stream}"
    );
    assert!(
        stream["content"]["text/event-stream"].is_object(),
        "{stream}"
    );
    let error = &get_book["responses"]["default"]["content"]["application/json"]["schema"];
    assert_eq!(error["$ref"], "#/components/schemas/google.rpc.Status");
}

#[tokio::test]
async fn the_binary_serves_and_prints_the_document() {
    let printed = support::printed(support::binary(), &["openapi"]);
    assert_eq!(printed, docs::openapi());

    let gateway = support::start(&[]);
    let response = reqwest::get(format!("{}{}", gateway.base, docs::OPENAPI_PATH))
        .await
        .expect("served");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.expect("body"), docs::openapi());
}

/// The checks schemathesis runs; each failure is fixed in the gateway or the document.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

#[test]
fn schemathesis_finds_nothing_against_the_live_demo() {
    let bin = support::tools::python_tools().expect("the Python tools");
    let gateway = support::start(&[]);
    // Its cache goes to a directory of its own, not into the checkout.
    let workdir =
        std::env::temp_dir().join(format!("protogate-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).expect("a work directory");
    let mut run = Command::new(bin.join("schemathesis"))
        .current_dir(&workdir)
        .args(["run", &format!("{}{}", gateway.base, docs::OPENAPI_PATH)])
        .args(["--checks", CHECKS, "--max-examples", "50"])
        .args(["--generation-deterministic", "--request-timeout", "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("schemathesis starts");
    // Bounded in time as well as in examples.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while run.try_wait().expect("waits").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = run.kill();
            panic!("schemathesis ran for more than 10 minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let output = run.wait_with_output().expect("output");
    let _ = std::fs::remove_dir_all(&workdir);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every operation of the document was selected and tested.
    let operations = operation_count(&document());
    let selected = format!("Selected: {operations}/{operations}");
    assert!(report.contains(&selected), "{report}");
}
