//! Response shaping from the config file, through the real binary: a method's success status,
//! 204 for `google.protobuf.Empty`, metadata mapped to headers, problem details for errors —
//! and the served OpenAPI document saying each, and still valid.

mod support;

use serde_json::{Value, json};

const CONFIG: &str = r#"
[gateway]
empty_as_no_content = true
error_format = "problem"
response_headers = { "x-served-by" = "Served-By" }

[services."protogate.demo.v1.LibraryService".methods.CreateShelf]
status = 201
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_the_document_follow_the_config() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("shaping-tests");
    std::fs::create_dir_all(&dir).expect("directory");
    let path = dir.join("shaping.toml");
    std::fs::write(&path, CONFIG).expect("written");
    let gateway = support::start(&["--config", path.to_str().expect("UTF-8 path")]);
    let base = &gateway.base;
    let client = reqwest::Client::new();

    let created = client
        .post(format!("{base}/demo/v1/shelves?shelfId=shaped"))
        .json(&json!({"theme": "shaped"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(created.status(), 201);
    let shelf: Value = created.json().await.expect("JSON");
    let name = shelf["name"].as_str().expect("a name");

    let deleted = client
        .delete(format!("{base}/demo/v1/{name}"))
        .send()
        .await
        .expect("answered");
    assert_eq!(deleted.status(), 204);
    assert!(deleted.bytes().await.expect("body").is_empty());

    let missing = client
        .get(format!("{base}/demo/v1/{name}"))
        .send()
        .await
        .expect("answered");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = missing.json().await.expect("JSON");
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["code"], 5);
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));

    let document = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("body");
    let parsed: Value = serde_json::from_str(&document).expect("JSON");
    let shelves = &parsed["paths"]["/demo/v1/shelves"];
    assert!(shelves["post"]["responses"].get("200").is_none());
    assert_eq!(
        shelves["post"]["responses"]["201"]["description"],
        "Created"
    );
    let delete = &parsed["paths"]["/demo/v1/shelves/{shelf}"]["delete"]["responses"];
    assert!(delete["204"].get("content").is_none(), "{delete}");
    assert_eq!(
        shelves["get"]["responses"]["200"]["headers"]["Served-By"]["schema"]["type"],
        "string"
    );
    assert_eq!(
        shelves["get"]["responses"]["default"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/protogate.Problem"
    );
    if let Err(problems) = support::tools::validate_openapi(&document) {
        panic!("the shaped document is not valid OpenAPI:\n{problems}");
    }
}
