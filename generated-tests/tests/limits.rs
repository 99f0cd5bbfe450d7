//! Request size limits per route (`protogate::LimitsLayer`) over real sockets: URL (414),
//! headers (431), body (413, the route's over the gateway's `max_body_bytes`), and the total of a
//! request stream (413 before the call, or the stream's error once it has started), each with a
//! Status body naming the limit and none of them reaching the upstream.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt as _;
use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::streams::{StreamBackend, stream_gateway};
use generated_tests::{gateway_to, start_backend};
use http_body_util::BodyExt as _;
use protogate::{Limits, LimitsLayer, PerRoute, RouteSelector, RouteService};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const PATIENCE: Duration = Duration::from_secs(10);

/// What went past the limits layer: each request's method and path.
type Seen = Arc<Mutex<Vec<String>>>;

fn noting(
    seen: Seen,
) -> impl tower::Layer<RouteService, Service = RouteService> + Clone + Send + Sync + 'static {
    tower::layer::layer_fn(move |inner: RouteService| {
        let seen = Arc::clone(&seen);
        RouteService::new(tower::service_fn(move |request: http::Request<Body>| {
            seen.lock().expect("lock").push(format!(
                "{} {}",
                request.method(),
                request.uri().path()
            ));
            inner.clone().oneshot(request)
        }))
    })
}

fn selector(text: &str) -> RouteSelector {
    text.parse().expect("a selector")
}

fn taken(seen: &Seen) -> Vec<String> {
    std::mem::take(&mut *seen.lock().expect("lock"))
}

/// The binding gateway with a body limit of 32 bytes of its own, and `limits`.
async fn gateway(limits: PerRoute<Limits>, seen: &Seen) -> String {
    let backend = start_backend().await.expect("backend");
    let noting = noting(Arc::clone(seen));
    gateway_to(backend, binding_service_gateway::remote, |gateway| {
        gateway
            .max_body_bytes(32)
            .route_layer(LimitsLayer::per_route(limits))
            .route_layer(noting)
    })
    .await
    .expect("gateway")
}

/// Sends `request` over a fresh HTTP/1.1 connection; the status and the body as JSON.
async fn send<B>(base: &str, request: http::Request<B>) -> (u16, Value)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let exchange = async {
        let response = sender.send_request(request).await.expect("answered");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(json!(null)))
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("answered within the patience")
}

/// A body sent in `pieces` chunks of `piece` bytes each, with no `Content-Length`.
fn chunked(
    piece: &'static [u8],
    pieces: usize,
) -> impl http_body::Body<Data = Bytes, Error = std::io::Error> + Send + 'static {
    let frames = futures_util::stream::iter(
        (0..pieces).map(move |_| Ok(hyper::body::Frame::data(Bytes::from_static(piece)))),
    );
    http_body_util::StreamBody::new(frames)
}

fn assert_refusal(status: u16, body: &Value, expected_status: u16, message: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["code"], 8, "{body}");
    assert_eq!(body["message"], message, "{body}");
}

#[tokio::test]
async fn long_urls_and_large_headers_are_refused_before_the_upstream() {
    let seen = Seen::default();
    let base = gateway(
        PerRoute::new(Limits::new().url_bytes(40).header_bytes(200)),
        &seen,
    )
    .await;
    let get = |path: String| http::Request::get(format!("{base}{path}"));

    let (status, body) = send(
        &base,
        get(format!("/v1/echo/{}", "a".repeat(40)))
            .body(String::new())
            .expect("request"),
    )
    .await;
    assert_refusal(
        status,
        &body,
        414,
        "request URL exceeds the limit of 40 bytes",
    );
    let (status, body) = send(
        &base,
        get("/v1/echo/a".to_owned())
            .header("x-big", "v".repeat(200))
            .body(String::new())
            .expect("request"),
    )
    .await;
    assert_refusal(
        status,
        &body,
        431,
        "request headers exceed the limit of 200 bytes",
    );
    assert!(taken(&seen).is_empty());

    let (status, body) = send(
        &base,
        get("/v1/echo/short?n=1".to_owned())
            .header("x-small", "v")
            .body(String::new())
            .expect("request"),
    )
    .await;
    assert_eq!((status, &body["name"]), (200, &json!("short")), "{body}");
    assert_eq!(taken(&seen), ["GET /v1/echo/short"]);
}

#[tokio::test]
async fn a_routes_body_limit_replaces_the_gateways() {
    let seen = Seen::default();
    let limits = PerRoute::new(Limits::new())
        .rule(selector("POST /v1/echo"), Limits::new().body_bytes(100))
        .rule(selector("/v1/alt/*"), Limits::new().body_bytes(16));
    let base = gateway(limits, &seen).await;
    let post = |path: &str| {
        http::Request::post(format!("{base}{path}")).header("content-type", "application/json")
    };
    let json_of = |length: usize| format!("{{\"name\":\"{}\"}}", "n".repeat(length - 11));

    // 80 bytes: past the gateway's 32, within the route's 100.
    let (status, body) = send(&base, post("/v1/echo").body(json_of(80)).expect("request")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(&base, post("/v1/echo").body(json_of(101)).expect("request")).await;
    assert_refusal(
        status,
        &body,
        413,
        "request body exceeds the limit of 100 bytes",
    );
    // Without Content-Length, read up to the limit and no further.
    let (status, body) = send(
        &base,
        post("/v1/echo")
            .body(chunked(b"{\"name\":\"0123456789\"}      ", 5))
            .expect("request"),
    )
    .await;
    assert_refusal(
        status,
        &body,
        413,
        "request body exceeds the limit of 100 bytes",
    );
    // A route with a smaller limit of its own, and one with the gateway's.
    let (status, body) = send(&base, post("/v1/alt/x").body(json_of(20)).expect("request")).await;
    assert_refusal(
        status,
        &body,
        413,
        "request body exceeds the limit of 16 bytes",
    );
    let (status, body) = send(
        &base,
        http::Request::put(format!("{base}/v1/items/a"))
            .body(format!("{{\"name\":\"{}\"}}", "n".repeat(30)))
            .expect("request"),
    )
    .await;
    assert_refusal(
        status,
        &body,
        413,
        "request body exceeds the limit of 32 bytes",
    );
    assert_eq!(
        taken(&seen),
        [
            "POST /v1/echo",
            "POST /v1/echo",
            "POST /v1/echo",
            "POST /v1/alt/x",
            "PUT /v1/items/a"
        ]
    );
}

#[tokio::test]
async fn a_request_stream_is_bounded_in_all() {
    let backend = StreamBackend::default();
    let observed = Arc::clone(&backend.observed);
    let limits = PerRoute::new(Limits::new()).rule(
        selector("protogate.tests.v1.StreamService.*"),
        Limits::new().stream_bytes(120),
    );
    let base = stream_gateway(&backend, true, |gateway| {
        gateway.route_layer(LimitsLayer::per_route(limits))
    })
    .await;
    let addend = b"{\"value\":1}\n";
    let sum = |label: &str| {
        http::Request::post(format!("{base}/v1/streams/sums/{label}"))
            .header("content-type", "application/x-ndjson")
    };

    // Within the limit: ten messages, 120 bytes.
    let (status, body) = send(
        &base,
        sum("within").body(chunked(addend, 10)).expect("request"),
    )
    .await;
    assert_eq!((status, &body["sum"]), (200, &json!("10")), "{body}");

    // A Content-Length beyond it: refused before the call starts.
    let ends = observed.request_ends.load(Ordering::SeqCst);
    let errors = observed.request_errors.load(Ordering::SeqCst);
    let (status, body) = send(
        &base,
        sum("declared")
            .body("{\"value\":1}\n".repeat(11))
            .expect("request"),
    )
    .await;
    assert_refusal(
        status,
        &body,
        413,
        "request stream exceeds the limit of 120 bytes in all",
    );

    // Past it in the middle of the stream: the upstream's request stream fails, the client
    // gets 413 (no response had started).
    let (status, body) = send(
        &base,
        sum("streamed").body(chunked(addend, 40)).expect("request"),
    )
    .await;
    assert_refusal(
        status,
        &body,
        413,
        "request stream exceeds the limit of 120 bytes in all",
    );
    let seen = observed
        .wait_for(&observed.request_errors, errors + 1, PATIENCE)
        .await;
    assert_eq!(seen, errors + 1, "the upstream saw the request stream fail");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(observed.request_errors.load(Ordering::SeqCst), errors + 1);
    assert_eq!(observed.request_ends.load(Ordering::SeqCst), ends);
}

#[tokio::test]
async fn a_bidi_stream_past_its_limit_ends_with_an_error_line() {
    let backend = StreamBackend::default();
    let base = stream_gateway(&backend, true, |gateway| {
        gateway.route_layer(LimitsLayer::new(Limits::new().stream_bytes(40)))
    })
    .await;
    let (writer, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
    let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let data = receiver.recv().await?;
        Some((
            Ok::<_, std::io::Error>(hyper::body::Frame::data(data)),
            receiver,
        ))
    });
    let request = http::Request::post(format!("{base}/v1/streams/rooms/r1:chat"))
        .header("content-type", "application/x-ndjson")
        .body(http_body_util::StreamBody::new(frames.boxed()))
        .expect("request");
    let stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    writer
        .send(Bytes::from_static(b"{\"text\":\"hello\"}\n"))
        .await
        .expect("send");
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .expect("in time")
        .expect("answered");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    // The first answer, then a message that goes past 40 bytes in all.
    let mut sent_more = false;
    loop {
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            lines.push(serde_json::from_slice::<Value>(&line).expect("a JSON line"));
        }
        if lines.len() == 1 && !sent_more {
            sent_more = true;
            writer
                .send(Bytes::from_static(
                    b"{\"text\":\"and a much longer message\"}\n",
                ))
                .await
                .expect("send");
        }
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("a frame within the patience");
        match frame {
            Some(frame) => {
                if let Ok(data) = frame.expect("a frame").into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            None => break,
        }
    }
    assert_eq!(
        lines,
        [
            json!({"result": {"room": "r1", "text": "HELLO", "seq": "1"}}),
            json!({"error": {"code": 8, "message": "request stream exceeds the limit of 40 bytes in all", "details": []}})
        ]
    );
}

/// A body whose pieces come `pause` apart (a slow client), with no `Content-Length`.
fn trickled(
    pieces: &'static [&'static [u8]],
    pause: Duration,
) -> impl http_body::Body<Data = Bytes, Error = std::io::Error> + Send + 'static {
    let frames = futures_util::stream::iter(pieces.iter().copied()).then(move |piece| async move {
        tokio::time::sleep(pause).await;
        Ok(hyper::body::Frame::data(Bytes::from_static(piece)))
    });
    http_body_util::StreamBody::new(frames)
}

#[tokio::test]
async fn a_body_that_trickles_in_past_its_time_is_refused() {
    let backend = start_backend().await.expect("backend");
    let base = gateway_to(backend, binding_service_gateway::remote, |gateway| {
        gateway.body_timeout(Duration::from_millis(400))
    })
    .await
    .expect("gateway");
    let post = || {
        http::Request::post(format!("{base}/v1/echo")).header("content-type", "application/json")
    };

    // Four pieces 200 ms apart: the body is whole only after 800 ms.
    let slow: &'static [&'static [u8]] = &[b"{\"na", b"me\":", b"\"slow", b"\"}"];
    let started = std::time::Instant::now();
    let (status, body) = send(
        &base,
        post()
            .body(trickled(slow, Duration::from_millis(200)))
            .expect("request"),
    )
    .await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["code"], 4, "{body}");
    assert_eq!(
        body["message"], "the request body did not arrive in full within 400ms",
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // The same pieces close together arrive in time.
    let (status, body) = send(
        &base,
        post()
            .body(trickled(slow, Duration::from_millis(10)))
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "slow", "{body}");
}
