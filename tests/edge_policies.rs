//! The stock gateway's `[cors]`, `[limits]` and `[compression]` sections through the real
//! binary: a preflight answered, a compressed response, a route's own limit, and a mistake
//! named by its key.

mod support;

use std::io::Read as _;
use std::path::PathBuf;

fn file(name: &str, text: &str) -> PathBuf {
    support::test_file("edge-policies", name, text)
}

const CONFIG: &str = r#"
[cors]
allow_origins = ["https://app.example.com"]
allow_headers = ["content-type", "x-request-id"]
max_age = "10m"

[compression]
min_bytes = 0
encodings = ["gzip"]

[limits]
url_bytes = 2048

[[routes]]
match = "/demo/v1/shelves/*/books/**"
limits = { url_bytes = 40 }
"#;

#[tokio::test]
async fn the_config_sections_shape_the_answers() {
    let config = file("edge.toml", CONFIG);
    let gateway = support::start(&["--config", config.to_str().expect("a path")]);
    let client = reqwest::Client::new();

    let preflight = client
        .request(
            http::Method::OPTIONS,
            format!("{}/demo/v1/shelves", gateway.base),
        )
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-request-id")
        .send()
        .await
        .expect("answered");
    assert_eq!(preflight.status(), 204);
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-max-age"], "600");

    let response = client
        .get(format!("{}/demo/v1/shelves", gateway.base))
        .header("origin", "https://app.example.com")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let compressed = response.bytes().await.expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("gzip");
    let shelves: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert!(shelves["shelves"].is_array(), "{shelves}");

    // The rule's URL limit on its routes, and the section's elsewhere.
    let response = client
        .get(format!(
            "{}/demo/v1/shelves/fiction/books?pageSize=100&x=1",
            gateway.base
        ))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 414);
    let body: serde_json::Value = response.json().await.expect("a Status");
    assert_eq!(body["message"], "request URL exceeds the limit of 40 bytes");
}

#[test]
fn a_mistake_is_named_by_its_key() {
    let config = file(
        "bad-edge.toml",
        "[cors]\nallow_origins = [\"*\"]\nallow_credentials = true\n",
    );
    let output = std::process::Command::new(support::binary())
        .args(["config", "check", config.to_str().expect("a path")])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("cors.allow_credentials"), "{said}");
}
