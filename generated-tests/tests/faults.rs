//! Upstream faults over real sockets: the generated gateway in front of a misbehaving HTTP/2
//! upstream ([`generated_tests::faulty`]) that is down, cut mid-call, silent, stalled, too
//! large, reset, sent away, trailers-only or not protobuf, for unary calls and for each
//! streaming shape. Each fault gets its status and `google.rpc.Status` body (or, once a stream
//! has started, its error line, event or close frame), nothing hangs (every wait is bounded),
//! and nothing stays open on the upstream afterwards.

mod websocket;

use std::time::{Duration, Instant};
use websocket::until_close;

use futures_util::SinkExt;
use generated_tests::faulty::{Fault, Faulty, Plan, TRAILERS_ONLY_MESSAGE};
use generated_tests::pb::protogate::tests::v1::{binding_service_gateway, stream_service_gateway};
use generated_tests::serve_gateway;
use h2::Reason;
use protogate::{Balance, Deadlines, Gateway, Upstream, UpstreamBuilder};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The longest any one step of a test may take.
const PATIENCE: Duration = Duration::from_secs(10);

/// The header that carries a call's fault through the gateway to the upstream.
const FAULT: &str = "grpc-metadata-x-fault";

/// A misbehaving upstream and a gateway serving both test services from it.
struct Stand {
    faulty: Faulty,
    base: String,
    client: reqwest::Client,
}

impl Stand {
    /// An upstream named `faulty` on a fresh misbehaving server, with `configure`'s settings.
    async fn new(configure: impl FnOnce(UpstreamBuilder) -> UpstreamBuilder) -> Stand {
        let faulty = Faulty::start().await.expect("faulty upstream");
        let upstream = configure(Upstream::builder("faulty").endpoint(faulty.url()))
            .build()
            .expect("upstream");
        let base = gateway_for(upstream).await;
        Stand {
            faulty,
            base,
            client: client(),
        }
    }

    async fn unary(&self, plan: &Plan) -> (u16, Value) {
        let request = self
            .client
            .get(format!("{}/v1/echo/hello", self.base))
            .header(FAULT, plan.header());
        send(request).await
    }

    /// Every stream is let go of on the upstream's side: finished, or reset by the gateway.
    async fn nothing_left_open(&self) {
        assert_eq!(
            self.faulty.settled(PATIENCE).await,
            0,
            "streams still open on the upstream"
        );
    }
}

async fn gateway_for(upstream: Upstream) -> String {
    let gateway = Gateway::new()
        .with(binding_service_gateway::remote(upstream.clone()))
        .and_then(|gateway| gateway.with(stream_service_gateway::remote(upstream)))
        .expect("routes");
    serve_gateway(gateway).await.expect("gateway")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("client")
}

/// Sends `request`; the status and the JSON body.
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = tokio::time::timeout(PATIENCE, request.send())
        .await
        .expect("answered within the patience")
        .expect("answered");
    let status = response.status().as_u16();
    let text = tokio::time::timeout(PATIENCE, response.text())
        .await
        .expect("a body within the patience")
        .expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

/// Asserts a `google.rpc.Status` body: its code, and words its message must contain.
#[track_caller]
fn assert_status(body: &Value, code: i32, words: &[&str]) {
    assert_eq!(body["code"], json!(code), "{body}");
    let message = body["message"].as_str().unwrap_or_else(|| panic!("{body}"));
    for word in words {
        assert!(message.contains(word), "`{word}` not in: {message}");
    }
}

/// The NDJSON lines of a streamed response, each read within the patience; the stream must end.
async fn lines(response: reqwest::Response) -> Vec<Value> {
    let text = tokio::time::timeout(PATIENCE, response.text())
        .await
        .expect("the stream ends within the patience")
        .expect("body");
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

async fn stream_get(stand: &Stand, path: &str, plan: &Plan, accept: &str) -> reqwest::Response {
    let request = stand
        .client
        .get(format!("{}{path}", stand.base))
        .header(FAULT, plan.header())
        .header("accept", accept);
    tokio::time::timeout(PATIENCE, request.send())
        .await
        .expect("answered within the patience")
        .expect("answered")
}

async fn stream_post(stand: &Stand, path: &str, plan: &Plan, body: &str) -> reqwest::Response {
    let request = stand
        .client
        .post(format!("{}{path}", stand.base))
        .header(FAULT, plan.header())
        .header("content-type", "application/x-ndjson")
        .body(body.to_owned());
    tokio::time::timeout(PATIENCE, request.send())
        .await
        .expect("answered within the patience")
        .expect("answered")
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn websocket(stand: &Stand, path: &str, plan: &Plan) -> Socket {
    let url = format!("{}{path}", stand.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert(FAULT, plan.header().parse().expect("header"));
    let (socket, response) =
        tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
            .await
            .expect("upgraded within the patience")
            .expect("upgrade");
    assert_eq!(response.status(), 101);
    socket
}

#[tokio::test]
async fn a_healthy_upstream_answers_every_shape() {
    // The control: the same server, answering well, so the faults below fail for the fault.
    let stand = Stand::new(|b| b).await;
    let ok = Plan::now(Fault::Ok);
    assert_eq!(stand.unary(&ok).await, (200, json!({"name": "hello"})));

    let response = stream_get(
        &stand,
        "/v1/streams/s:count?count=2",
        &Plan::after(Fault::Ok, 3),
        "*/*",
    )
    .await;
    assert_eq!(response.status(), 200);
    let got = lines(response).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter().all(|line| line["result"]["name"] == "s"),
        "{got:?}"
    );

    let request = stand
        .client
        .post(format!("{}/v1/streams/sums/l", stand.base))
        .header(FAULT, ok.header())
        .header("grpc-metadata-x-reply", "once")
        .header("content-type", "application/x-ndjson")
        .body("{\"value\":1}\n{\"value\":2}\n");
    let (status, body) = send(request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"label": "l", "sum": "2"}));

    let response = stream_post(
        &stand,
        "/v1/streams/rooms/r:chat",
        &ok,
        "{\"text\":\"a\"}\n{\"text\":\"b\"}\n",
    )
    .await;
    assert_eq!(response.status(), 200);
    let got = lines(response).await;
    assert_eq!(
        got,
        [
            json!({"result": {"room": "r", "text": "a"}}),
            json!({"result": {"room": "r", "text": "b"}})
        ]
    );
    stand.nothing_left_open().await;
}

#[tokio::test]
async fn an_upstream_down_at_start_is_503_naming_it_for_every_shape() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let upstream = Upstream::builder("down")
        .endpoint(format!("http://{address}"))
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    let client = client();
    let words = ["upstream `down`", &address.to_string()];

    let (status, body) = send(client.get(format!("{base}/v1/echo/x"))).await;
    assert_eq!(status, 503, "{body}");
    assert_status(&body, 14, &words);

    let (status, body) = send(client.get(format!("{base}/v1/streams/s:count?count=2"))).await;
    assert_eq!(status, 503, "{body}");
    assert_status(&body, 14, &words);

    for path in ["/v1/streams/sums/l", "/v1/streams/rooms/r:chat"] {
        let request = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/x-ndjson")
            .body("{\"value\":1}\n");
        let (status, body) = send(request).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_status(&body, 14, &words);
    }
}

#[tokio::test]
async fn an_upstream_killed_mid_unary_is_503_and_reached_again() {
    let stand = Stand::new(|b| b).await;
    let (status, body) = stand.unary(&Plan::now(Fault::Kill)).await;
    assert_eq!(status, 503, "{body}");
    assert_status(&body, 14, &["upstream `faulty`", "broke"]);
    // The next call opens a new connection.
    assert_eq!(stand.unary(&Plan::now(Fault::Ok)).await.0, 200);
    assert_eq!(stand.faulty.connections(), 2);
    stand.nothing_left_open().await;
}

#[tokio::test]
async fn an_upstream_killed_mid_stream_ends_each_shape_with_an_error() {
    let stand = Stand::new(|b| b).await;

    // Server streaming, NDJSON: the messages sent, then an error line.
    let response = stream_get(
        &stand,
        "/v1/streams/s:count?count=5",
        &Plan::after(Fault::Kill, 2),
        "*/*",
    )
    .await;
    assert_eq!(response.status(), 200);
    let got = lines(response).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[1]["result"]["name"], "s");
    assert_status(&got[2]["error"], 14, &["broke"]);

    // Server streaming, SSE: an `error` event.
    let response = stream_get(
        &stand,
        "/v1/streams/s:count?count=5",
        &Plan::after(Fault::Kill, 1),
        "text/event-stream",
    )
    .await;
    let text = tokio::time::timeout(PATIENCE, response.text())
        .await
        .expect("ends")
        .expect("body");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 2, "{text}");
    assert!(events[0].starts_with("data: {\"name\":\"s\""), "{text}");
    let error = events[1]
        .strip_prefix("event: error\ndata: ")
        .expect("an error event");
    assert_status(&serde_json::from_str(error).expect("JSON"), 14, &[]);

    // Server streaming, WebSocket: a close frame with 4000 + UNAVAILABLE.
    let mut socket = websocket(
        &stand,
        "/v1/streams/w:count?count=5",
        &Plan::after(Fault::Kill, 1),
    )
    .await;
    let (texts, code, _) = until_close(&mut socket).await;
    assert_eq!((texts.len(), code), (1, 4014), "{texts:?}");

    // Client streaming: no answer yet, so the status of the whole call.
    let response = stream_post(
        &stand,
        "/v1/streams/sums/l",
        &Plan::now(Fault::Kill),
        "{\"value\":1}\n{\"value\":2}\n",
    )
    .await;
    let status = response.status().as_u16();
    let body: Value = serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
    assert_eq!(status, 503, "{body}");
    assert_status(&body, 14, &["broke"]);

    // Bidi streaming, NDJSON and WebSocket: the answer sent, then the error.
    let response = stream_post(
        &stand,
        "/v1/streams/rooms/r:chat",
        &Plan::after(Fault::Kill, 1),
        "{\"text\":\"a\"}\n{\"text\":\"b\"}\n",
    )
    .await;
    assert_eq!(response.status(), 200);
    let got = lines(response).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], json!({"result": {"room": "r", "text": "a"}}));
    assert_status(&got[1]["error"], 14, &["broke"]);

    let mut socket = websocket(
        &stand,
        "/v1/streams/rooms/w:chat",
        &Plan::after(Fault::Kill, 1),
    )
    .await;
    socket
        .send(Message::text("{\"text\":\"a\"}"))
        .await
        .expect("sent");
    let (texts, code, _) = until_close(&mut socket).await;
    assert_eq!((texts.len(), code), (1, 4014), "{texts:?}");

    stand.nothing_left_open().await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_cut_at_the_deadline() {
    let deadline = Duration::from_millis(300);
    let stand = Stand::new(|b| {
        b.deadlines(Deadlines {
            default: Some(deadline),
            max: None,
        })
    })
    .await;
    for plan in [Plan::now(Fault::Silent), Plan::now(Fault::Stall)] {
        let started = Instant::now();
        let (status, body) = stand.unary(&plan).await;
        assert_eq!(status, 504, "{plan:?}: {body}");
        assert_status(&body, 4, &["did not answer within 300ms"]);
        let took = started.elapsed();
        assert!(
            took >= deadline && took < Duration::from_secs(3),
            "{plan:?}: {took:?}"
        );
    }

    // A stream that started and then stalls ends with DEADLINE_EXCEEDED at the client's
    // deadline (streams take no default one).
    let request = stand
        .client
        .get(format!("{}/v1/streams/s:count?count=5", stand.base))
        .header(FAULT, Plan::after(Fault::Stall, 1).header())
        .header("grpc-timeout", "400m");
    let response = tokio::time::timeout(PATIENCE, request.send())
        .await
        .expect("answered")
        .expect("answered");
    let got = lines(response).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_status(&got[1]["error"], 4, &[]);

    // Before its first message, a stalled stream is a 504 like a unary call.
    let request = stand
        .client
        .post(format!("{}/v1/streams/rooms/r:chat", stand.base))
        .header(FAULT, Plan::now(Fault::Silent).header())
        .header("grpc-timeout", "300m")
        .body("{\"text\":\"a\"}\n");
    let (status, body) = send(request).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], 4, "{body}");

    stand.nothing_left_open().await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted() {
    let stand = Stand::new(|b| b.max_response_bytes(1024)).await;
    let (status, body) = stand.unary(&Plan::now(Fault::Oversized(100_000))).await;
    assert_eq!(status, 429, "{body}");
    assert_status(
        &body,
        8,
        &["upstream `faulty`", "100000 bytes", "limit of 1024 bytes"],
    );

    let response = stream_get(
        &stand,
        "/v1/streams/s:count?count=5",
        &Plan::after(Fault::Oversized(100_000), 1),
        "*/*",
    )
    .await;
    assert_eq!(response.status(), 200);
    let got = lines(response).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_status(&got[1]["error"], 8, &["limit of 1024 bytes"]);

    // A small answer still goes through.
    assert_eq!(stand.unary(&Plan::now(Fault::Ok)).await.0, 200);
    stand.nothing_left_open().await;
}

#[tokio::test]
async fn response_headers_past_the_header_list_limit_are_an_error_not_a_copy() {
    let stand = Stand::new(|b| b).await;
    // 80 KB of metadata: past the 64 KiB the gateway's HTTP/2 client takes. The stream fails.
    let (status, body) = stand.unary(&Plan::now(Fault::HeavyHead(80_000))).await;
    assert_eq!(status, 500, "{body}");
    assert_status(&body, 13, &["upstream `faulty`", "protocol error"]);
    // 200 KB: so many CONTINUATION frames that h2 takes it for a flood and closes the
    // connection; the call fails as unavailable, and the next one gets a new connection.
    let (status, body) = stand.unary(&Plan::now(Fault::HeavyHead(200_000))).await;
    assert_eq!(status, 503, "{body}");
    assert_status(&body, 14, &["upstream `faulty`", "too_many_continuations"]);
    // Headers within it still go through, to the client as `Grpc-Metadata-*`.
    let response = stand
        .client
        .get(format!("{}/v1/echo/hello", stand.base))
        .header(FAULT, Plan::now(Fault::HeavyHead(16_000)).header())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("grpc-metadata-x-pad-3"));
    // The connection is fine: the next call goes through.
    assert_eq!(stand.unary(&Plan::now(Fault::Ok)).await.0, 200);
    stand.nothing_left_open().await;
}

#[tokio::test]
async fn stream_resets_map_to_their_grpc_codes() {
    let stand = Stand::new(|b| b).await;
    for (reason, http, code) in [
        (Reason::REFUSED_STREAM, 503, 14),
        (Reason::CANCEL, 499, 1),
        (Reason::ENHANCE_YOUR_CALM, 429, 8),
        (Reason::INADEQUATE_SECURITY, 403, 7),
        (Reason::INTERNAL_ERROR, 500, 13),
        (Reason::PROTOCOL_ERROR, 500, 13),
    ] {
        let (status, body) = stand.unary(&Plan::now(Fault::Reset(reason))).await;
        assert_eq!(status, http, "{reason:?}: {body}");
        assert_status(&body, code, &["upstream `faulty`"]);
    }
    // Mid-stream: the error line carries the code.
    let response = stream_get(
        &stand,
        "/v1/streams/s:count?count=5",
        &Plan::after(Fault::Reset(Reason::INTERNAL_ERROR), 1),
        "*/*",
    )
    .await;
    let got = lines(response).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_status(&got[1]["error"], 13, &[]);
    // A reset costs its stream, not the connection.
    assert_eq!(stand.faulty.connections(), 1);
    stand.nothing_left_open().await;
}

#[tokio::test]
async fn a_goaway_mid_call_is_503_and_the_call_is_not_sent_again() {
    let first = Faulty::start().await.expect("faulty");
    let second = Faulty::start().await.expect("faulty");
    for faulty in [&first, &second] {
        faulty.set(Some(Plan::now(Fault::GoAway(Reason::NO_ERROR))));
    }
    let upstream = Upstream::builder("faulty")
        .endpoint(first.url())
        .endpoint(second.url())
        .balance(Balance::RoundRobin)
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    let (status, body) = send(client().get(format!("{base}/v1/echo/x"))).await;
    assert_eq!(status, 503, "{body}");
    assert_status(&body, 14, &["upstream `faulty`"]);
    // The call reached an upstream, which may have processed it: it is not sent to the other.
    assert_eq!(first.calls() + second.calls(), 1);
    assert_eq!(
        first.settled(PATIENCE).await + second.settled(PATIENCE).await,
        0
    );
}

#[tokio::test]
async fn a_connection_closed_with_an_error_is_503_for_every_call_on_it() {
    let stand = Stand::new(|b| b).await;
    for reason in [
        Reason::PROTOCOL_ERROR,
        Reason::INTERNAL_ERROR,
        Reason::ENHANCE_YOUR_CALM,
    ] {
        let (status, body) = stand.unary(&Plan::now(Fault::GoAway(reason))).await;
        assert_eq!(status, 503, "{reason:?}: {body}");
        assert_status(&body, 14, &["upstream `faulty`", "connection"]);
    }
    // Mid-stream: the messages sent, then the error line.
    let plan = Plan::after(Fault::GoAway(Reason::PROTOCOL_ERROR), 1);
    let response = stream_post(
        &stand,
        "/v1/streams/rooms/r:chat",
        &plan,
        "{\"text\":\"a\"}\n{\"text\":\"b\"}\n",
    )
    .await;
    assert_eq!(response.status(), 200);
    let got = lines(response).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_status(&got[1]["error"], 14, &[]);
    // Each fault cost its connection; the next call opens another.
    assert_eq!(stand.unary(&Plan::now(Fault::Ok)).await.0, 200);
    assert_eq!(stand.faulty.connections(), 5);
    stand.nothing_left_open().await;
}

#[tokio::test]
async fn a_goaway_storm_fails_calls_quickly_and_passes() {
    let stand = Stand::new(|b| b).await;
    stand.faulty.storm(true);
    let started = Instant::now();
    let ok = Plan::now(Fault::Ok);
    let calls = (0..40).map(|_| stand.unary(&ok));
    let answers = futures_util::future::join_all(calls).await;
    for (status, body) in &answers {
        assert_eq!(*status, 503, "{body}");
        assert_status(body, 14, &["upstream `faulty`"]);
    }
    assert!(started.elapsed() < PATIENCE, "{:?}", started.elapsed());
    // At most two connections per call: the one it found, and one more.
    let opened = stand.faulty.connections();
    assert!((1..=80).contains(&opened), "{opened} connections");

    // Once it passes, the endpoint takes calls again (after its ejection, if the storm's
    // failures ejected it).
    stand.faulty.storm(false);
    let mut last = (0, Value::Null);
    for _ in 0..100 {
        last = stand.unary(&ok).await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 200, "{}", last.1);
    stand.nothing_left_open().await;
}

/// The details of the misbehaving upstream's trailers-only status, as JSON.
fn resource_info() -> Value {
    json!([{
        "@type": "type.googleapis.com/google.rpc.ResourceInfo",
        "resourceType": "thing",
        "resourceName": "shelves/9",
    }])
}

#[tokio::test]
async fn trailers_only_errors_keep_their_code_message_and_details() {
    let stand = Stand::new(|b| b).await;
    let plan = Plan::now(Fault::TrailersOnly(5));
    let (status, body) = stand.unary(&plan).await;
    assert_eq!(status, 404, "{body}");
    assert_status(&body, 5, &[TRAILERS_ONLY_MESSAGE]);
    assert_eq!(body["details"], resource_info(), "{body}");

    let response = stream_get(&stand, "/v1/streams/s:count?count=2", &plan, "*/*").await;
    let status = response.status().as_u16();
    let body: Value = serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
    assert_eq!(status, 404, "{body}");
    assert_status(&body, 5, &[TRAILERS_ONLY_MESSAGE]);
    assert_eq!(body["details"], resource_info(), "{body}");

    let response = stream_post(&stand, "/v1/streams/sums/l", &plan, "{\"value\":1}\n").await;
    let status = response.status().as_u16();
    let body: Value = serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
    assert_eq!(status, 404, "{body}");
    assert_status(&body, 5, &[TRAILERS_ONLY_MESSAGE]);

    // After messages, the same status comes as the stream's error line.
    let response = stream_post(
        &stand,
        "/v1/streams/rooms/r:chat",
        &Plan::after(Fault::TrailersOnly(5), 1),
        "{\"text\":\"a\"}\n{\"text\":\"b\"}\n",
    )
    .await;
    let got = lines(response).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_status(&got[1]["error"], 5, &[TRAILERS_ONLY_MESSAGE]);
    assert_eq!(got[1]["error"]["details"], resource_info(), "{got:?}");
    stand.nothing_left_open().await;
}

#[tokio::test]
async fn an_answer_that_is_not_protobuf_is_internal() {
    let stand = Stand::new(|b| b).await;
    let (status, body) = stand.unary(&Plan::now(Fault::Invalid)).await;
    assert_eq!(status, 500, "{body}");
    assert_status(&body, 13, &["not valid protobuf"]);

    let response = stream_get(
        &stand,
        "/v1/streams/s:count?count=2",
        &Plan::now(Fault::Invalid),
        "*/*",
    )
    .await;
    let status = response.status().as_u16();
    let body: Value = serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], 13, "{body}");

    let response = stream_post(
        &stand,
        "/v1/streams/rooms/r:chat",
        &Plan::after(Fault::Invalid, 1),
        "{\"text\":\"a\"}\n{\"text\":\"b\"}\n",
    )
    .await;
    let got = lines(response).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["error"]["code"], 13, "{got:?}");
    stand.nothing_left_open().await;
}
