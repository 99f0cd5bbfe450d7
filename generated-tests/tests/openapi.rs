//! The OpenAPI document of every test proto set: accepted by openapi-spec-validator, and what it
//! says of streaming, oneofs, optional fields, raw bodies and path fields in bodies; requests and
//! responses described apart where `google.api.field_behavior` makes them differ, checked by
//! schemathesis against a backend that leaves REQUIRED fields unset.

#[path = "../../tests/support/tools.rs"]
#[allow(dead_code)]
mod tools;

use generated_tests::pb;
use serde_json::{Value, json};

fn document() -> Value {
    serde_json::from_str(pb::OPENAPI).expect("the document is JSON")
}

#[test]
fn openapi_spec_validator_accepts_the_document() {
    if let Err(problems) = tools::validate_openapi(pb::OPENAPI) {
        panic!("openapi-spec-validator refused the document:\n{problems}");
    }
}

#[test]
fn streaming_operations_document_their_transports() {
    let paths = &document()["paths"];
    let count = &paths["/v1/streams/{name}:count"]["get"]["responses"]["200"]["content"];
    assert_eq!(
        count["application/x-ndjson"]["schema"]["properties"]["result"]["$ref"],
        "#/components/schemas/protogate.tests.v1.Tick"
    );
    assert!(count["text/event-stream"].is_object());
    let chat_body = &paths["/v1/streams/rooms/{room}:chat"]["post"]["requestBody"];
    let chat = &chat_body["content"];
    assert_eq!(chat["application/json"]["schema"]["type"], "array");
    // NDJSON is told in an extension, which generators of clients leave alone.
    assert!(chat.get("application/x-ndjson").is_none(), "{chat}");
    let streaming = &chat_body["x-protogate-streaming"];
    assert_eq!(streaming["contentType"], "application/x-ndjson");
    assert_eq!(
        streaming["itemSchema"],
        chat["application/json"]["schema"]["items"]
    );
    // The room comes from the path: it is not in the messages' schema.
    let item = serde_json::to_string(&chat["application/json"]["schema"]["items"]).expect("JSON");
    assert!(!item.contains("\"room\""), "{item}");
    let upload = &paths["/v1/streams/files/{name}:upload"]["post"]["requestBody"]["content"];
    assert_eq!(upload["*/*"]["schema"]["format"], "binary");
    let download = &paths["/v1/streams/files/{name}:download"]["get"]["responses"]["200"];
    assert_eq!(download["content"]["*/*"]["schema"]["format"], "binary");
}

#[test]
fn operation_ids_are_unique() {
    let document = document();
    let mut ids = Vec::new();
    for item in document["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("path item").values() {
            ids.push(operation["operationId"].as_str().expect("id").to_owned());
        }
    }
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count);
}

#[test]
fn proto3_json_types_in_the_schemas() {
    let schemas = &document()["components"]["schemas"];
    let tick = &schemas["protogate.tests.v1.Tick"]["properties"];
    assert_eq!(tick["index"]["type"], "string");
    assert_eq!(tick["index"]["format"], "int64");
    let everything = serde_json::to_string(&schemas).expect("JSON");
    assert!(everything.contains("\"contentEncoding\":\"base64\""));
    assert_eq!(
        schemas["google.rpc.Status"]["required"],
        json!(["code", "message"])
    );
}

const REQUIRED: &str = "protogate.tests.required.v1";

/// The components a schema refers to, however deep, by name.
fn referenced(schemas: &Value, schema: &Value, found: &mut std::collections::BTreeSet<String>) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get("$ref") {
                let name = target
                    .trim_start_matches("#/components/schemas/")
                    .to_owned();
                if found.insert(name.clone()) {
                    referenced(schemas, &schemas[&name], found);
                }
            }
            for value in object.values() {
                referenced(schemas, value, found);
            }
        }
        Value::Array(items) => {
            for item in items {
                referenced(schemas, item, found);
            }
        }
        _ => {}
    }
}

#[test]
fn responses_never_require_what_only_requests_must_carry() {
    let document = document();
    let schemas = &document["components"]["schemas"];
    // Every component a response refers to, for every service of the build.
    let mut received = std::collections::BTreeSet::new();
    for item in document["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("path item").values() {
            referenced(schemas, &operation["responses"], &mut received);
        }
    }
    assert!(
        received.contains(&format!("{REQUIRED}.Note")),
        "{received:?}"
    );
    for name in &received {
        // google.rpc.Status is the gateway's own, and always carries its code and message.
        if name != "google.rpc.Status" {
            assert!(
                schemas[name].get("required").is_none(),
                "{name} is received, yet requires {}",
                schemas[name]["required"]
            );
        }
    }
}

#[test]
fn field_behavior_splits_request_and_response_forms() {
    let document = document();
    let schemas = &document["components"]["schemas"];
    let component = |name: &str| schemas[format!("{REQUIRED}.{name}")].clone();
    let reference = |name: &str| json!(format!("#/components/schemas/{REQUIRED}.{name}"));
    let names = |schema: &Value| -> Vec<String> {
        schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect()
    };

    // What is received: nothing required, no input-only field, output-only fields marked.
    let note = component("Note");
    assert!(note.get("required").is_none(), "{note}");
    assert!(!names(&note).contains(&"secret".to_owned()), "{note}");
    assert_eq!(note["properties"]["revision"]["readOnly"], true, "{note}");
    assert_eq!(note["properties"]["author"]["$ref"], reference("Author"));
    assert_eq!(
        note["properties"]["tags"]["items"]["$ref"],
        reference("Tag")
    );
    assert_eq!(
        note["properties"]["labels"]["additionalProperties"]["$ref"],
        reference("Tag")
    );
    assert!(component("Author").get("required").is_none());

    // What is sent: required fields, no output-only field, nested messages in their request form.
    let input = component("Note-Input");
    assert_eq!(input["required"], json!(["title", "author"]), "{input}");
    assert!(!names(&input).contains(&"revision".to_owned()), "{input}");
    assert_eq!(input["properties"]["secret"]["writeOnly"], true, "{input}");
    assert_eq!(
        input["properties"]["author"]["$ref"],
        reference("Author-Input")
    );
    assert_eq!(
        input["properties"]["tags"]["items"]["$ref"],
        reference("Tag-Input")
    );
    assert_eq!(
        input["properties"]["labels"]["additionalProperties"]["$ref"],
        reference("Tag-Input")
    );
    assert_eq!(component("Author-Input")["required"], json!(["name"]));
    assert_eq!(component("Tag-Input")["required"], json!(["label"]));

    // A message without field behavior, here or in what it holds, keeps one schema both ways,
    // recursive as it is.
    assert!(component("Stamp").is_object());
    assert!(component("Stamp-Input").is_null());
    assert_eq!(note["properties"]["stamp"]["$ref"], reference("Stamp"));
    assert_eq!(input["properties"]["stamp"]["$ref"], reference("Stamp"));
    assert_eq!(
        component("Stamp")["properties"]["previous"]["$ref"],
        reference("Stamp")
    );
    // One that reaches field behavior only through a cycle has both forms, each referring to
    // its own form.
    assert_eq!(
        input["properties"]["comment"]["$ref"],
        reference("Comment-Input")
    );
    let comment = component("Comment-Input");
    assert_eq!(
        comment["properties"]["parent"]["$ref"],
        reference("Comment-Input")
    );
    assert_eq!(
        comment["properties"]["note"]["$ref"],
        reference("Note-Input")
    );
    let comment = component("Comment");
    assert_eq!(
        comment["properties"]["parent"]["$ref"],
        reference("Comment")
    );
    assert_eq!(comment["properties"]["note"]["$ref"], reference("Note"));

    let paths = &document["paths"];
    let body = |path: &str, verb: &str| {
        paths[path][verb]["requestBody"]["content"]["application/json"]["schema"].clone()
    };
    let answer = |path: &str, verb: &str| {
        paths[path][verb]["responses"]["200"]["content"]["application/json"]["schema"].clone()
    };
    // `body: "note"`: the body is the note in its request form.
    assert_eq!(
        body("/v1/required/notes", "post")["$ref"],
        reference("Note-Input")
    );
    assert_eq!(
        answer("/v1/required/notes", "post")["$ref"],
        reference("Note")
    );
    // `body: "*"` with the name in the path: the request form, less the name.
    let update = body("/v1/required/notes/{note}", "put");
    assert_eq!(update["required"], json!(["title", "author"]), "{update}");
    assert!(!names(&update).contains(&"name".to_owned()), "{update}");
    assert_eq!(
        answer("/v1/required/notes/{note}", "get")["$ref"],
        reference("Note")
    );
}

/// The checks schemathesis runs against the field-behavior service.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_accepts_answers_that_leave_required_fields_unset() {
    let base = generated_tests::required::required_gateway()
        .await
        .expect("the backend and the gateway start");
    // The backend really leaves them unset, nested ones included.
    let note: Value = reqwest::get(format!("{base}/v1/required/notes/n1"))
        .await
        .expect("an answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(note["name"], "notes/n1", "{note}");
    assert!(note.get("title").is_none(), "{note}");
    assert_eq!(note["author"], json!({}), "{note}");
    assert_eq!(note["tags"], json!([{}]), "{note}");

    let tools = tools::python_tools().expect("the Python tools");
    let report = tokio::task::spawn_blocking(move || schemathesis(&tools, &base))
        .await
        .expect("schemathesis ran")
        .unwrap_or_else(|problems| panic!("schemathesis found problems:\n{problems}"));
    let operations = document()["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .filter(|operation| operation["tags"] == json!(["RequiredService"]))
        .count();
    assert_eq!(operations, 4);
    assert!(
        report.contains(&format!("Selected: {operations}/")),
        "{report}"
    );
}

/// Runs schemathesis on the build's document against `base`, on the field-behavior service's
/// operations only; its report, or what it found.
fn schemathesis(tools: &std::path::Path, base: &str) -> Result<String, String> {
    use std::process::Command;
    // The document and schemathesis' cache go to a directory of its own.
    let workdir = std::env::temp_dir().join(format!(
        "protogate-required-schemathesis-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&workdir).expect("a work directory");
    let file = workdir.join("openapi.json");
    std::fs::write(&file, pb::OPENAPI).expect("the document is written");
    // Bounded in time as well as in examples; its output is read as it comes.
    let output = Command::new("timeout")
        .arg("600")
        .arg(tools.join("schemathesis"))
        .current_dir(&workdir)
        .arg("run")
        .arg(&file)
        .args(["--url", base, "--include-tag", "RequiredService"])
        .args(["--checks", CHECKS, "--max-examples", "50"])
        .args(["--generation-deterministic", "--request-timeout", "10"])
        .output()
        .expect("schemathesis runs");
    let _ = std::fs::remove_dir_all(&workdir);
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(report)
    } else {
        Err(format!(
            "{report}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
