//! CORS, request limits and compression from the config file, through the real binary: a
//! preflight answered by the gateway, a refused origin, a compressed answer, a URL over its
//! limit.

mod support;

use std::io::Read as _;

const CONFIG: &str = r#"
[cors]
allow_origins = ["http://app.test"]
max_age = "10m"

[limits]
url_bytes = 512

[compression]
min_bytes = 16
encodings = ["gzip"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_preflights_compresses_and_limits() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("edge-policy-tests");
    std::fs::create_dir_all(&dir).expect("directory");
    let path = dir.join("edge.toml");
    std::fs::write(&path, CONFIG).expect("written");
    let gateway = support::start(&["--config", path.to_str().expect("UTF-8 path")]);
    let base = &gateway.base;
    // No automatic decompression: the test reads the encoding the gateway chose.
    let client = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client");
    let shelves = format!("{base}/demo/v1/shelves");

    let preflight = client
        .request(reqwest::Method::OPTIONS, &shelves)
        .header("origin", "http://app.test")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("answered");
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://app.test"
    );
    let refused = client
        .request(reqwest::Method::OPTIONS, &shelves)
        .header("origin", "http://elsewhere.test")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("answered");
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let compressed = client
        .get(&shelves)
        .header("origin", "http://app.test")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("answered");
    assert_eq!(compressed.status(), 200);
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
    assert_eq!(
        compressed.headers()["access-control-allow-origin"],
        "http://app.test"
    );
    let bytes = compressed.bytes().await.expect("body");
    let mut json = String::new();
    flate2::read::GzDecoder::new(bytes.as_ref())
        .read_to_string(&mut json)
        .expect("gzip");
    let body: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert!(body["shelves"].is_array(), "{body}");

    let long = client
        .get(format!("{shelves}?pageToken={}", "x".repeat(600)))
        .send()
        .await
        .expect("answered");
    assert_eq!(long.status(), 414);
    let body: serde_json::Value = long.json().await.expect("JSON");
    assert_eq!(body["code"], 8, "{body}");
}
