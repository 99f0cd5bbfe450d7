//! The OpenAPI document of every test proto set: accepted by openapi-spec-validator, and what it
//! says of streaming, oneofs, optional fields, raw bodies and path fields in bodies.

#[path = "../../tests/support/tools.rs"]
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
    let chat = &paths["/v1/streams/rooms/{room}:chat"]["post"]["requestBody"]["content"];
    assert_eq!(chat["application/json"]["schema"]["type"], "array");
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
