//! CORS (`protogate::CorsLayer`) over real sockets: preflights answered by the layer alone,
//! refused ones without CORS headers, the headers on every response of a covered route (the
//! gateway's errors included), WebSocket origins, a route left without CORS; and the same from a
//! page in headless Chromium calling the gateway from another origin with `fetch`.

mod chromium;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use futures_util::StreamExt as _;
use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::streams::{StreamBackend, stream_gateway};
use generated_tests::{gateway_to, start_backend};
use protogate::{Cors, CorsLayer, PerRoute, RouteSelector, RouteService};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tower::ServiceExt as _;

const PAGE: &str = "https://app.example.com";

/// What reached the layer below CORS: each request's method and path.
type Seen = Arc<Mutex<Vec<String>>>;

/// A layer that notes the requests it sees in `seen`, and answers 401 with a Status body
/// itself when the request carries `x-deny` (as an authentication layer would).
fn inner_layer(
    seen: Seen,
) -> impl tower::Layer<RouteService, Service = RouteService> + Clone + Send + Sync + 'static {
    tower::layer::layer_fn(move |inner: RouteService| {
        let seen = Arc::clone(&seen);
        RouteService::new(tower::service_fn(move |request: http::Request<Body>| {
            let (seen, inner) = (Arc::clone(&seen), inner.clone());
            async move {
                seen.lock().expect("lock").push(format!(
                    "{} {}",
                    request.method(),
                    request.uri().path()
                ));
                if request.headers().contains_key("x-deny") {
                    let body = json!({"code": 16, "message": "who are you?", "details": []});
                    let mut response = http::Response::new(Body::from(body.to_string()));
                    *response.status_mut() = http::StatusCode::UNAUTHORIZED;
                    return Ok(response);
                }
                inner.oneshot(request).await
            }
        }))
    })
}

fn app_policy() -> Cors {
    Cors::builder()
        .allow_origin(PAGE)
        .allow_origin("https://*.partners.test")
        .allow_headers(["content-type", "x-request-id"])
        .expose_headers(["grpc-metadata-x-served-by"])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
        .build()
        .expect("a valid policy")
}

/// A gateway in front of the binding backend: CORS by `policy`, then the noting layer.
async fn gateway(policy: PerRoute<Option<Cors>>, seen: &Seen) -> String {
    let backend = start_backend().await.expect("backend");
    let inner = inner_layer(Arc::clone(seen));
    gateway_to(backend, binding_service_gateway::remote, |gateway| {
        gateway
            .route_layer(CorsLayer::per_route(policy))
            .route_layer(inner)
    })
    .await
    .expect("gateway")
}

fn selector(text: &str) -> RouteSelector {
    text.parse().expect("a selector")
}

fn taken(seen: &Seen) -> Vec<String> {
    std::mem::take(&mut *seen.lock().expect("lock"))
}

fn preflight(
    client: &reqwest::Client,
    url: String,
    origin: &str,
    method: &str,
) -> reqwest::RequestBuilder {
    client
        .request(http::Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", method)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("text"))
}

fn varies_on_origin(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get_all("vary")
        .iter()
        .any(|value| value.to_str().unwrap_or("").contains("origin"))
}

#[tokio::test]
async fn an_allowed_preflight_is_answered_by_the_layer_alone() {
    let seen = Seen::default();
    let base = gateway(PerRoute::new(Some(app_policy())), &seen).await;
    let client = reqwest::Client::new();

    let response = preflight(&client, format!("{base}/v1/echo"), PAGE, "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-request-id",
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(PAGE));
    assert_eq!(
        header(&response, "access-control-allow-methods"),
        Some("POST")
    );
    assert_eq!(
        header(&response, "access-control-allow-headers"),
        Some("content-type, x-request-id")
    );
    assert_eq!(
        header(&response, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(header(&response, "access-control-max-age"), Some("600"));
    assert!(varies_on_origin(&response));
    // Nothing below the CORS layer saw it, so neither did the upstream.
    assert!(taken(&seen).is_empty());

    // A preflight about another binding of the same path family gets its method.
    let response = preflight(&client, format!("{base}/v1/items/a"), PAGE, "PUT")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 204);
    assert_eq!(
        header(&response, "access-control-allow-methods"),
        Some("PUT")
    );
    // An origin under the allowed domain.
    let response = preflight(
        &client,
        format!("{base}/v1/echo"),
        "https://eu.shop.partners.test",
        "POST",
    )
    .send()
    .await
    .expect("answered");
    assert_eq!(response.status(), 204);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("https://eu.shop.partners.test")
    );
    assert!(taken(&seen).is_empty());
}

#[tokio::test]
async fn a_refused_preflight_gets_403_without_cors_headers() {
    let seen = Seen::default();
    let methods = Cors::builder()
        .allow_origin(PAGE)
        .allow_methods(["GET"])
        .build()
        .expect("valid");
    let policy = PerRoute::new(Some(app_policy())).rule(selector("/v1/items/**"), Some(methods));
    let base = gateway(policy, &seen).await;
    let client = reqwest::Client::new();

    for (request, problem) in [
        (
            preflight(
                &client,
                format!("{base}/v1/echo"),
                "https://evil.test",
                "POST",
            ),
            "origin `https://evil.test` is not allowed",
        ),
        (
            // The domain itself is not under it.
            preflight(
                &client,
                format!("{base}/v1/echo"),
                "https://partners.test",
                "POST",
            ),
            "origin `https://partners.test` is not allowed",
        ),
        (
            preflight(&client, format!("{base}/v1/echo"), PAGE, "POST")
                .header("access-control-request-headers", "content-type, x-secret"),
            "request header `x-secret` is not allowed",
        ),
        (
            preflight(&client, format!("{base}/v1/items/a"), PAGE, "PUT"),
            "method PUT is not allowed",
        ),
    ] {
        let response = request.send().await.expect("answered");
        assert_eq!(response.status(), 403, "{problem}");
        assert!(
            !response
                .headers()
                .keys()
                .any(|name| name.as_str().starts_with("access-control-")),
            "{problem}: {:?}",
            response.headers()
        );
        let body: Value = response.json().await.expect("a Status body");
        assert_eq!(body["code"], 7, "{body}");
        let message = body["message"].as_str().expect("a message");
        assert!(message.contains(problem), "{message}");
    }
    assert!(taken(&seen).is_empty());
}

#[tokio::test]
async fn responses_and_the_gateways_errors_carry_the_cors_headers() {
    let seen = Seen::default();
    let base = gateway(PerRoute::new(Some(app_policy())), &seen).await;
    let client = reqwest::Client::new();
    let get =
        |path: &str, origin: &str| client.get(format!("{base}{path}")).header("origin", origin);

    let response = get("/v1/metadata", PAGE).send().await.expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(PAGE));
    assert_eq!(
        header(&response, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        header(&response, "access-control-expose-headers"),
        Some("grpc-metadata-x-served-by")
    );
    assert_eq!(
        header(&response, "grpc-metadata-x-served-by"),
        Some("backend")
    );
    assert!(varies_on_origin(&response));

    // The upstream's NOT_FOUND, and an inner layer's 401: readable by the page too.
    let response = get("/v1/fail/5", PAGE).send().await.expect("answered");
    assert_eq!(response.status(), 404);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(PAGE));
    let response = get("/v1/echo/x", PAGE)
        .header("x-deny", "1")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(PAGE));
    let body: Value = response.json().await.expect("a Status body");
    assert_eq!(body["code"], 16);

    // An origin not allowed is served (CORS is not access control), without the headers.
    let response = get("/v1/echo/x", "https://evil.test")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert!(header(&response, "access-control-allow-origin").is_none());
    assert!(header(&response, "access-control-allow-credentials").is_none());
    assert!(varies_on_origin(&response));

    // Without Origin: not a cross-origin request.
    let response = client
        .get(format!("{base}/v1/echo/x"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert!(header(&response, "access-control-allow-origin").is_none());
    assert_eq!(
        taken(&seen),
        [
            "GET /v1/metadata",
            "GET /v1/fail/5",
            "GET /v1/echo/x",
            "GET /v1/echo/x",
            "GET /v1/echo/x"
        ]
    );
}

#[tokio::test]
async fn any_origin_is_a_star_without_credentials() {
    let seen = Seen::default();
    let any = Cors::builder()
        .allow_origin("*")
        .allow_headers(["*"])
        .build()
        .expect("valid");
    let base = gateway(PerRoute::new(Some(any)), &seen).await;
    let client = reqwest::Client::new();
    let response = preflight(&client, format!("{base}/v1/echo"), "https://a.test", "POST")
        .header("access-control-request-headers", "x-anything")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(&response, "access-control-allow-headers"),
        Some("x-anything")
    );
    assert!(header(&response, "access-control-allow-credentials").is_none());
    let response = client
        .get(format!("{base}/v1/echo/x"))
        .header("origin", "https://b.test")
        .send()
        .await
        .expect("answered");
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn a_route_without_cors_is_served_as_without_the_layer() {
    let seen = Seen::default();
    let policy = PerRoute::new(Some(app_policy())).rule(selector("/v1/echo"), None);
    let base = gateway(policy, &seen).await;
    let client = reqwest::Client::new();

    // The gateway's own answer to an OPTIONS nobody answers, after the inner layer saw it.
    let response = preflight(&client, format!("{base}/v1/echo"), PAGE, "POST")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 405);
    assert!(header(&response, "access-control-allow-origin").is_none());
    assert_eq!(taken(&seen), ["OPTIONS /v1/echo"]);

    let response = client
        .post(format!("{base}/v1/echo"))
        .header("origin", PAGE)
        .body(r#"{"name":"n"}"#)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert!(header(&response, "access-control-allow-origin").is_none());
    assert!(!varies_on_origin(&response));

    // The other routes keep the policy.
    let response = client
        .get(format!("{base}/v1/echo/x"))
        .header("origin", PAGE)
        .send()
        .await
        .expect("answered");
    assert_eq!(header(&response, "access-control-allow-origin"), Some(PAGE));
}

#[tokio::test]
async fn websocket_upgrades_are_checked_against_the_origins() {
    let policy = Cors::builder().allow_origin(PAGE).build().expect("valid");
    let base = stream_gateway(&StreamBackend::default(), true, |gateway| {
        gateway.route_layer(CorsLayer::new(policy))
    })
    .await;
    let url = format!(
        "{}/v1/streams/w:count?count=2",
        base.replace("http://", "ws://")
    );
    let connect = |origin: Option<&str>| {
        let mut request = url.as_str().into_client_request().expect("a request");
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().expect("a value"));
        }
        tokio::time::timeout(
            chromium::PATIENCE,
            tokio_tungstenite::connect_async(request),
        )
    };

    let refused = connect(Some("https://evil.test"))
        .await
        .expect("answered in time");
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("the upgrade was not refused: {refused:?}");
    };
    assert_eq!(response.status(), 403);
    let body: Value =
        serde_json::from_slice(response.body().as_deref().expect("a body")).expect("JSON");
    assert_eq!(body["code"], 7, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("https://evil.test")),
        "{body}"
    );

    for origin in [Some(PAGE), None] {
        let (mut socket, response) = connect(origin)
            .await
            .expect("answered in time")
            .expect("upgraded");
        assert_eq!(response.status(), 101);
        let mut texts = Vec::new();
        while let Some(frame) = tokio::time::timeout(chromium::PATIENCE, socket.next())
            .await
            .expect("a frame in time")
        {
            match frame.expect("a frame") {
                tokio_tungstenite::tungstenite::Message::Text(text) => texts.push(text.to_string()),
                tokio_tungstenite::tungstenite::Message::Close(_) => break,
                _ => {}
            }
        }
        assert_eq!(
            texts,
            [r#"{"name":"w"}"#, r#"{"name":"w","index":"1"}"#],
            "{origin:?}"
        );
    }
}

/// Serves a blank page titled `cors` on 127.0.0.1; its origin.
async fn serve_page() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address");
    let page = axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            axum::response::Html(
                "<!doctype html><html><head><title>cors</title></head><body></body></html>",
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, page).await });
    format!("http://{address}")
}

#[tokio::test]
async fn a_page_on_another_origin_calls_the_gateway_from_chromium() {
    let (allowed_page, other_page) = (serve_page().await, serve_page().await);
    let seen = Seen::default();
    let policy = Cors::builder()
        .allow_origin(allowed_page.as_str())
        .allow_headers(["content-type", "x-request-id"])
        .allow_credentials(true)
        .build()
        .expect("valid");
    let base = gateway(PerRoute::new(Some(policy)), &seen).await;
    let chromium = chromium::Chromium::launch();
    let ready = "document.title === 'cors'";

    let simple_get = format!(
        "fetch('{base}/v1/echo/hello').then(r => r.json().then(b => ({{status: r.status, name: b.name}})))"
    );
    let preflighted_post = format!(
        "fetch('{base}/v1/echo', {{method: 'POST', credentials: 'include', \
         headers: {{'content-type': 'application/json', 'x-request-id': 'r-1'}}, \
         body: JSON.stringify({{name: 'posted'}})}}) \
         .then(r => r.json().then(b => ({{status: r.status, name: b.name}})))"
    );
    let outcome = chromium
        .in_page(&allowed_page, ready, &[&simple_get, &preflighted_post])
        .await;
    let [get, post] = <[_; 2]>::try_from(outcome).expect("two answers");
    assert_eq!(get, Ok(json!({"status": 200, "name": "hello"})));
    assert_eq!(post, Ok(json!({"status": 200, "name": "posted"})));
    // The preflight never went below the CORS layer; the two calls did.
    assert_eq!(taken(&seen), ["GET /v1/echo/hello", "POST /v1/echo"]);

    let refused = format!(
        "fetch('{base}/v1/echo/hello').then(r => 'read ' + r.status, e => 'failed: ' + e.name)"
    );
    let refused_post = format!(
        "fetch('{base}/v1/echo', {{method: 'POST', headers: {{'content-type': 'application/json'}}, \
         body: '{{}}'}}).then(r => 'read ' + r.status, e => 'failed: ' + e.name)"
    );
    let outcome = chromium
        .in_page(&other_page, ready, &[&refused, &refused_post])
        .await;
    assert_eq!(
        outcome,
        [
            Ok(json!("failed: TypeError")),
            Ok(json!("failed: TypeError"))
        ]
    );
    // The simple GET was sent and served, but the page could not read it; the POST's preflight
    // was refused, so the POST itself was never sent.
    assert_eq!(taken(&seen), ["GET /v1/echo/hello"]);
}
