//! Response shaping: success statuses per method, 204 for `google.protobuf.Empty`, headers
//! and metadata mapped by name, and error bodies written as problem details or by a hook.

use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::start_backend;
use protogate::{ErrorBody, Gateway, HeaderMapping, Upstream};
use serde_json::{Value, json};

/// A gateway in front of a fresh backend, its service changed by `service`, the gateway by
/// `gateway`, and the router by `router`; its base URL.
async fn serve(
    service: impl FnOnce(protogate::Service) -> protogate::Service,
    gateway: impl FnOnce(Gateway) -> Gateway,
    router: impl FnOnce(axum::Router) -> axum::Router,
) -> String {
    let backend = start_backend().await.expect("backend");
    let upstream = Upstream::lazy(&format!("http://{backend}")).expect("upstream");
    let service = service(binding_service_gateway::remote(upstream));
    let app = router(
        gateway(Gateway::new())
            .with(service)
            .expect("routes")
            .into_router(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test]
async fn methods_answer_with_the_status_they_set() {
    let base = serve(
        |service| {
            service
                .method_status("Post", http::StatusCode::CREATED)
                .and_then(|s| {
                    s.method_status(
                        "protogate.tests.v1.BindingService.Put",
                        http::StatusCode::NO_CONTENT,
                    )
                })
                .expect("methods of the service")
        },
        |gateway| gateway.empty_as_no_content(true),
        |router| router,
    )
    .await;
    let client = reqwest::Client::new();

    let created = client
        .post(format!("{base}/v1/echo"))
        .json(&json!({"name": "new"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(created.status(), 201);
    assert_eq!(created.json::<Value>().await.expect("JSON")["name"], "new");

    // 204 has no body, even when the method answers a message.
    let replaced = client
        .put(format!("{base}/v1/items/a"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(replaced.status(), 204);
    assert!(replaced.headers().get("content-type").is_none());
    assert!(replaced.bytes().await.expect("body").is_empty());

    // google.protobuf.Empty: 204 when the gateway says so.
    let deleted = client
        .delete(format!("{base}/v1/items/a"))
        .send()
        .await
        .expect("answered");
    assert_eq!(deleted.status(), 204);
    assert!(deleted.bytes().await.expect("body").is_empty());

    // Everything else keeps 200.
    let got = client
        .get(format!("{base}/v1/echo/x"))
        .send()
        .await
        .expect("answered");
    assert_eq!(got.status(), 200);
}

#[tokio::test]
async fn an_unknown_method_cannot_set_a_status() {
    let backend = start_backend().await.expect("backend");
    let upstream = Upstream::lazy(&format!("http://{backend}")).expect("upstream");
    let error = binding_service_gateway::remote(upstream)
        .method_status("NoSuchMethod", http::StatusCode::CREATED)
        .err()
        .expect("refused");
    assert!(error.to_string().contains("NoSuchMethod"), "{error}");
}

#[tokio::test]
async fn headers_and_metadata_are_mapped_by_name() {
    let mapping = HeaderMapping::default()
        .request_header("x-tenant", "tenant")
        .and_then(|m| m.response_header("x-served-by", "Served-By"))
        .expect("valid names");
    let base = serve(|s| s, |gateway| gateway.header_mapping(mapping), |r| r).await;
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/metadata"))
        .header("x-tenant", "acme")
        .header("x-unmapped", "stays")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["served-by"], "backend");
    assert!(
        response
            .headers()
            .get("grpc-metadata-x-served-by")
            .is_none()
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["received"]["tenant"], "acme");
    assert!(body["received"].get("x-unmapped").is_none());
}

#[tokio::test]
async fn error_bodies_can_be_problem_details() {
    let problem = ErrorBody::problem_json();
    let base = serve(|s| s, |g| g, |router| router.layer(problem.layer())).await;
    let client = reqwest::Client::new();

    // An upstream status, with its details.
    let response = client
        .get(format!("{base}/v1/fail/5?message=gone"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(response.headers()["grpc-trailer-x-failure"], "yes");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["title"], "Not Found");
    assert_eq!(body["status"], 404);
    assert_eq!(body["detail"], "gone");
    assert_eq!(body["code"], 5);
    let types: Vec<&str> = body["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["@type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/google.rpc.BadRequest",
            "type.googleapis.com/google.rpc.ResourceInfo"
        ]
    );

    // The gateway's own refusals too, with their headers.
    let response = client
        .delete(format!("{base}/v1/echo"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 405);
    assert!(response.headers().get("allow").is_some());
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 12, "{body}");

    // Success is left alone.
    let response = client
        .get(format!("{base}/v1/echo/x"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.headers()["content-type"], "application/json");
}
