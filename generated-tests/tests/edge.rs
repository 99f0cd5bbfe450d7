//! Shapes outside the common path: proto2 presence, RPC names that are also Rust method names,
//! and a proto file without a package.

use generated_tests::pb::loose_service_gateway;
use generated_tests::pb::protogate::tests::proto2::odd_gateway;
use generated_tests::{LooseBackend, Proto2Backend, serve_gateway};
use protogate::Gateway;
use serde_json::{Value, json};

#[tokio::test]
async fn proto2_required_and_optional_fields() {
    let gateway = Gateway::new()
        .with(odd_gateway::local(Proto2Backend))
        .expect("routes");
    let base = serve_gateway(gateway).await.expect("gateway");
    let client = reqwest::Client::new();

    let response = client
        .post(format!("{base}/proto2/a1:clone"))
        .json(&json!({"version": 0, "labels": ["x"], "mood": "ALSO_BUSY", "parent": {"id": "p", "version": 1}}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    // Required fields are written even when zero; unset optional ones are not; an alias reads
    // as its number and writes as the first name.
    assert_eq!(
        body,
        json!({"id": "a1", "version": 0, "labels": ["x"], "mood": "BUSY", "parent": {"id": "p", "version": 1}})
    );

    let response = client
        .get(format!("{base}/proto2/b2?note=hi&count=3"))
        .send()
        .await
        .expect("answered");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"id": "b2", "version": 0, "note": "hi", "count": "3"})
    );
}

#[tokio::test]
async fn a_file_without_a_package() {
    // One call from an implementation to a Router.
    let router = loose_service_gateway::local(LooseBackend)
        .into_router()
        .expect("routes");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let body: Value = reqwest::get(format!("{base}/loose/l1"))
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body, json!({"id": "l1"}));
    // A field inside a repeated message cannot be set from the query: refused, not dropped.
    let response = reqwest::get(format!("{base}/loose/l1?children.id=x"))
        .await
        .expect("answered");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 3);
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("`children`"), "{message}");
}
