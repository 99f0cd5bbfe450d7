//! Layers around every route (`Gateway::route_layer`): they see the request once its route is
//! found, in the order added, and may answer it themselves.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::{gateway_to, start_backend};
use protogate::{RouteInfo, RouteService};
use tower::ServiceExt as _;

/// A layer that notes `name` and the RPC each request was routed to in `seen`, and answers
/// 418 itself when the request carries `x-stop: name`.
fn noting(
    name: &'static str,
    seen: Arc<Mutex<Vec<String>>>,
) -> impl tower::Layer<RouteService, Service = RouteService> + Clone + Send + Sync + 'static {
    tower::layer::layer_fn(move |inner: RouteService| {
        let seen = Arc::clone(&seen);
        RouteService::new(tower::service_fn(move |request: http::Request<Body>| {
            let (seen, inner) = (Arc::clone(&seen), inner.clone());
            async move {
                let rpc = RouteInfo::of(&request).map_or("none", |route| route.rpc);
                seen.lock().expect("lock").push(format!("{name} {rpc}"));
                if request
                    .headers()
                    .get("x-stop")
                    .is_some_and(|stop| stop == name)
                {
                    let mut response = http::Response::new(Body::empty());
                    *response.status_mut() = http::StatusCode::IM_A_TEAPOT;
                    return Ok(response);
                }
                inner.oneshot(request).await
            }
        }))
    })
}

async fn gateway(seen: &Arc<Mutex<Vec<String>>>) -> String {
    let backend = start_backend().await.expect("backend");
    let (outer, inner) = (
        noting("outer", Arc::clone(seen)),
        noting("inner", Arc::clone(seen)),
    );
    gateway_to(backend, binding_service_gateway::remote, |gateway| {
        gateway.route_layer(outer).route_layer(inner)
    })
    .await
    .expect("gateway")
}

fn taken(seen: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    std::mem::take(&mut *seen.lock().expect("lock"))
}

#[tokio::test]
async fn layers_see_the_route_in_the_order_added() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = gateway(&seen).await;
    let client = reqwest::Client::new();

    let response = client
        .get(format!("{base}/v1/echo/hello"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["name"], "hello");
    assert_eq!(
        taken(&seen),
        [
            "outer protogate.tests.v1.BindingService.Get",
            "inner protogate.tests.v1.BindingService.Get"
        ]
    );

    // The outer layer answers: the inner one and the backend never see the request.
    let response = client
        .post(format!("{base}/v1/echo"))
        .header("x-stop", "outer")
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 418);
    assert_eq!(
        taken(&seen),
        ["outer protogate.tests.v1.BindingService.Post"]
    );
}

#[tokio::test]
async fn requests_that_match_no_route_never_reach_the_layers() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = gateway(&seen).await;
    let client = reqwest::Client::new();

    let response = client
        .get(format!("{base}/v1/nowhere"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 404);
    let response = client
        .delete(format!("{base}/v1/echo"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 405);
    assert!(taken(&seen).is_empty());
}

#[tokio::test]
async fn a_preflight_is_routed_to_the_binding_it_asks_about() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = gateway(&seen).await;
    let client = reqwest::Client::new();
    let preflight = |path: &str, method: &str| {
        client
            .request(http::Method::OPTIONS, format!("{base}{path}"))
            .header("origin", "http://elsewhere.test")
            .header("access-control-request-method", method)
    };

    // No layer answers it: the gateway's own answer to OPTIONS, after the layers saw the RPC.
    let response = preflight("/v1/echo", "POST")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.headers()["allow"],
        "POST",
        "the methods the path serves"
    );
    assert_eq!(
        taken(&seen),
        [
            "outer protogate.tests.v1.BindingService.Post",
            "inner protogate.tests.v1.BindingService.Post"
        ]
    );

    // A layer may answer it.
    let response = preflight("/v1/echo", "POST")
        .header("x-stop", "inner")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 418);
    taken(&seen);

    // A preflight about a method the path does not serve reaches no layer.
    let response = preflight("/v1/echo", "PATCH")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 405);
    assert!(taken(&seen).is_empty());
}
