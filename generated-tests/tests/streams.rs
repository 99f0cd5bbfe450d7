//! Streaming RPCs through the generated gateway over real sockets: server streams as
//! newline-delimited JSON and Server-Sent Events, client and bidi streams from request bodies,
//! all three over WebSocket, raw HttpBody in both directions, limits, cancellation and faults.

mod websocket;

use std::sync::atomic::Ordering;
use std::time::Duration;
use websocket::until_close;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use generated_tests::pb::protogate::tests::v1::stream_service_gateway;
use generated_tests::serve_gateway;
use generated_tests::streams::{StreamBackend, start_stream_backend, stream_gateway};
use protogate::Gateway;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(10);

async fn gateway(backend: &StreamBackend) -> String {
    stream_gateway(backend, true, |g| g).await
}

/// Reads a streamed response line by line, each within the test's patience.
struct Lines {
    response: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    fn new(response: reqwest::Response) -> Self {
        Lines {
            response,
            buf: Vec::new(),
        }
    }

    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Some(
                    String::from_utf8(line)
                        .expect("utf-8")
                        .trim_end()
                        .to_owned(),
                );
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("a line within the patience")
                .expect("body");
            match chunk {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None if self.buf.is_empty() => return None,
                None => {
                    let rest = std::mem::take(&mut self.buf);
                    return Some(String::from_utf8(rest).expect("utf-8"));
                }
            }
        }
    }

    async fn json(&mut self) -> Option<Value> {
        let line = self.next().await?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")))
    }

    async fn rest(mut self) -> Vec<Value> {
        let mut all = Vec::new();
        while let Some(value) = self.json().await {
            all.push(value);
        }
        all
    }
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.expect("answered")
}

#[tokio::test]
async fn server_stream_lines_are_flushed_as_each_message_arrives() {
    let backend = StreamBackend::default();
    for remote in [true, false] {
        let base = stream_gateway(&backend, remote, |g| g).await;
        let name = format!("gate-{remote}");
        let response = get(&format!(
            "{base}/v1/streams/{name}:count?count=3&gated=true"
        ))
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
        let mut lines = Lines::new(response);
        // The backend holds the stream after the first tick: the line must come through anyway.
        assert_eq!(lines.json().await, Some(json!({"result": {"name": name}})));
        backend.observed.release(&name);
        assert_eq!(
            lines.rest().await,
            [
                json!({"result": {"name": name, "index": "1"}}),
                json!({"result": {"name": name, "index": "2"}}),
            ]
        );
    }
}

#[tokio::test]
async fn failures_after_the_first_message_end_the_stream_with_an_error_line() {
    let base = gateway(&StreamBackend::default()).await;
    let response = get(&format!("{base}/v1/streams/f:count?count=2&failCode=9")).await;
    assert_eq!(response.status(), 200);
    let lines = Lines::new(response).rest().await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[1], json!({"result": {"name": "f", "index": "1"}}));
    assert_eq!(
        lines[2],
        json!({"error": {"code": 9, "message": "asked to fail", "details": []}})
    );

    // Before the first message, the status maps to HTTP like a unary call.
    let response = get(&format!("{base}/v1/streams/f:count?count=-1")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("status JSON");
    assert_eq!(body["message"], "count must not be negative");
    let response = get(&format!("{base}/v1/streams/f:count?count=0&failCode=5")).await;
    assert_eq!(response.status(), 404);
    // An empty stream is an empty 200.
    let response = get(&format!("{base}/v1/streams/f:count?count=0")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "");
}

#[tokio::test]
async fn server_sent_events_on_request() {
    let base = gateway(&StreamBackend::default()).await;
    let client = reqwest::Client::new();
    let events = |url: String| {
        let client = client.clone();
        async move {
            let response = client
                .get(url)
                .header("accept", "text/event-stream")
                .send()
                .await
                .expect("answered");
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            assert_eq!(response.headers()["cache-control"], "no-cache");
            response.text().await.expect("body")
        }
    };
    let text = events(format!("{base}/v1/streams/s:count?count=2")).await;
    assert_eq!(
        text,
        "data: {\"name\":\"s\"}\n\ndata: {\"name\":\"s\",\"index\":\"1\"}\n\nevent: end\ndata: {}\n\n"
    );
    let text = events(format!("{base}/v1/streams/s:count?count=1&failCode=10")).await;
    assert_eq!(
        text,
        "data: {\"name\":\"s\"}\n\nevent: error\ndata: {\"code\":10,\"message\":\"asked to fail\",\"details\":[]}\n\n"
    );
}

#[tokio::test]
async fn bidi_answers_as_server_sent_events() {
    let base = gateway(&StreamBackend::default()).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/streams/rooms/sse:chat"))
        .header("accept", "text/event-stream")
        .body("{\"text\":\"a\"}\n{\"text\":\"b\"}\n")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(
        response.text().await.expect("body"),
        "data: {\"room\":\"sse\",\"text\":\"A\",\"seq\":\"1\"}\n\n\
         data: {\"room\":\"sse\",\"text\":\"B\",\"seq\":\"2\"}\n\n\
         event: end\ndata: {}\n\n"
    );
}

#[tokio::test]
async fn response_body_and_body_bindings_apply_to_each_message() {
    let base = gateway(&StreamBackend::default()).await;
    let lines = Lines::new(get(&format!("{base}/v1/streams/x:indexes?count=3")).await)
        .rest()
        .await;
    assert_eq!(
        lines,
        [
            json!({"result": "0"}),
            json!({"result": "1"}),
            json!({"result": "2"})
        ]
    );
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/streams/from-path:count"))
        .json(&json!({"name": "from-path", "count": 2}))
        .send()
        .await
        .expect("answered");
    let lines = Lines::new(response).rest().await;
    assert_eq!(
        lines[1],
        json!({"result": {"name": "from-path", "index": "1"}})
    );
    // A body value the path contradicts is refused, not overwritten.
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/streams/from-path:count"))
        .json(&json!({"name": "from-body", "count": 2}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 400);
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn client_streams_accept_ndjson_concatenated_values_and_arrays() {
    let backend = StreamBackend::default();
    for remote in [true, false] {
        let base = stream_gateway(&backend, remote, |g| g).await;
        let url = format!("{base}/v1/streams/sums/l1");
        let expected = json!({"label": "l1", "sum": "6", "count": 3});
        for body in [
            "{\"value\":1}\n{\"value\":\"2\"}\n{\"value\":3}\n",
            "{\"value\":1}{\"value\":2} {\"value\":3}",
            "[{\"value\":1},\n {\"value\":2}, {\"value\":3}]",
        ] {
            assert_eq!(post(&url, body).await, (200, expected.clone()), "{body}");
        }
        // An empty body is a stream of no messages.
        assert_eq!(post(&url, "").await, (200, json!({})));
        // `body: "value"`: each value is that field, and the path fills every message.
        let url = format!("{base}/v1/streams/sums/l2:values");
        assert_eq!(
            post(&url, "1 2\n\"3\" 4").await,
            (200, json!({"label": "l2", "sum": "10", "count": 4}))
        );
    }
}

#[tokio::test]
async fn a_bad_message_fails_the_call_and_the_upstream_never_sees_a_clean_end() {
    let backend = StreamBackend::default();
    for remote in [true, false] {
        let base = stream_gateway(&backend, remote, |g| g).await;
        let ends = backend.observed.request_ends.load(Ordering::SeqCst);
        let errors = backend.observed.request_errors.load(Ordering::SeqCst);
        let (status, body) = post(
            &format!("{base}/v1/streams/sums/bad"),
            "{\"value\":1}\n{\"value\":\"one\"}\n{\"value\":3}\n",
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], 3);
        let message = body["message"].as_str().expect("message");
        assert!(
            message.starts_with("message 1 of the request stream: invalid request body"),
            "{message}"
        );
        assert!(message.contains("value"), "{message}");
        if remote {
            // Over the network the request stream fails; in process the call is dropped, as
            // tonic drops a call its client cancels. Either way it never ends cleanly.
            let seen = backend
                .observed
                .wait_for(&backend.observed.request_errors, errors + 1, PATIENCE)
                .await;
            assert_eq!(seen, errors + 1, "the upstream saw the request stream fail");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(backend.observed.request_ends.load(Ordering::SeqCst), ends);

        let (status, body) = post(&format!("{base}/v1/streams/sums/bad"), "{\"value\":1},{}").await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["message"]
                .as_str()
                .expect("message")
                .contains("found `,`")
        );
    }
}

#[tokio::test]
async fn request_messages_over_the_limit_are_refused() {
    let backend = StreamBackend::default();
    let base = stream_gateway(&backend, true, |g| g.max_message_bytes(32)).await;
    let big = format!("{{\"value\":1}}\n{{\"label\":\"{}\"}}\n", "x".repeat(64));
    let (status, body) = post(&format!("{base}/v1/streams/sums/big"), big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], 8);
    assert_eq!(
        body["message"],
        "message 1 of the request stream exceeds the limit of 32 bytes"
    );
    // The limit is per message, not per stream.
    let many = "{\"value\":1}\n".repeat(1000);
    let (status, body) = post(&format!("{base}/v1/streams/sums/many"), many).await;
    assert_eq!((status, &body["sum"]), (200, &json!("1000")), "{body}");
}

#[tokio::test]
async fn idle_and_overlong_streams_end_with_deadline_exceeded() {
    let backend = StreamBackend::default();
    let base = stream_gateway(&backend, true, |g| {
        g.stream_idle_timeout(Some(Duration::from_millis(300)))
    })
    .await;
    let response = get(&format!("{base}/v1/streams/idle:count?count=2&gated=true")).await;
    let lines = Lines::new(response).rest().await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["error"]["code"], 4);
    assert_eq!(
        lines[1]["error"]["message"],
        "the stream was idle for longer than 300ms"
    );

    let base = stream_gateway(&backend, true, |g| {
        g.stream_max_duration(Some(Duration::from_millis(500)))
    })
    .await;
    let response = get(&format!(
        "{base}/v1/streams/long:count?count=1000&intervalMs=20"
    ))
    .await;
    let lines = Lines::new(response).rest().await;
    let last = lines.last().expect("lines");
    assert_eq!(last["error"]["code"], 4, "{last}");
    assert!(lines.len() > 5 && lines.len() < 100, "{}", lines.len());
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_call() {
    let backend = StreamBackend::default();
    for remote in [true, false] {
        let base = stream_gateway(&backend, remote, |g| g).await;
        let cancelled = backend.observed.cancelled.load(Ordering::SeqCst);
        let response = get(&format!(
            "{base}/v1/streams/gone:count?count=100000&intervalMs=10"
        ))
        .await;
        let mut lines = Lines::new(response);
        lines.next().await.expect("a first line");
        drop(lines);
        let seen = backend
            .observed
            .wait_for(&backend.observed.cancelled, cancelled + 1, PATIENCE)
            .await;
        assert_eq!(seen, cancelled + 1, "remote: {remote}");
    }
}

#[tokio::test]
async fn an_upstream_that_goes_away_ends_the_stream_with_an_error_line() {
    let backend = StreamBackend::default();
    let address = start_stream_backend(backend.clone())
        .await
        .expect("backend");
    let proxy = CutProxy::start(address).await;
    let upstream =
        protogate::Upstream::lazy(&format!("http://{}", proxy.address)).expect("upstream URL");
    let gateway = Gateway::new()
        .with(stream_service_gateway::remote(upstream))
        .expect("gateway");
    let base = serve_gateway(gateway).await.expect("served");
    let response = get(&format!("{base}/v1/streams/cut:count?count=3&gated=true")).await;
    let mut lines = Lines::new(response);
    assert!(lines.json().await.expect("first")["result"].is_object());
    proxy.cut();
    let last = lines.json().await.expect("an error line");
    assert_eq!(last["error"]["code"], 14, "{last}");
    assert_eq!(lines.next().await, None);
}

/// A TCP proxy whose connections can be cut, as a crashed upstream or a broken network would.
struct CutProxy {
    address: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
}

impl CutProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        CutProxy { address, cut }
    }

    fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

/// A hyper connection to the gateway, HTTP/1.1 or HTTP/2.
async fn connect(base: &str, http2: bool) -> HyperSender {
    let address = base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let io = hyper_util::rt::TokioIo::new(stream);
    if http2 {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .expect("handshake");
        tokio::spawn(connection);
        HyperSender::Http2(sender)
    } else {
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("handshake");
        tokio::spawn(connection);
        HyperSender::Http1(sender)
    }
}

type ChannelBody = http_body_util::StreamBody<
    futures_util::stream::BoxStream<'static, Result<hyper::body::Frame<Bytes>, std::io::Error>>,
>;

enum HyperSender {
    Http1(hyper::client::conn::http1::SendRequest<ChannelBody>),
    Http2(hyper::client::conn::http2::SendRequest<ChannelBody>),
}

impl HyperSender {
    async fn send(
        &mut self,
        request: http::Request<ChannelBody>,
    ) -> http::Response<hyper::body::Incoming> {
        match self {
            HyperSender::Http1(sender) => sender.send_request(request).await,
            HyperSender::Http2(sender) => sender.send_request(request).await,
        }
        .expect("response")
    }
}

/// A request body written piece by piece by the test.
fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
    let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let data = receiver.recv().await?;
        Some((Ok(hyper::body::Frame::data(data)), receiver))
    });
    (sender, http_body_util::StreamBody::new(frames.boxed()))
}

#[tokio::test]
async fn an_upstream_that_stops_reading_holds_the_upload_back_and_loses_nothing() {
    // Without flow control end to end, the gateway would buffer an upload its upstream does not
    // read, as far as the client cares to send.
    const UNBOUNDED: usize = 64 * 1024 * 1024;
    let backend = StreamBackend::default();
    let base = gateway(&backend).await;
    let mut sender = connect(&base, false).await;
    let (writer, body) = channel_body();
    let request = http::Request::post(format!("{base}/v1/streams/files/held-1:upload"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .expect("request");
    let response = tokio::spawn(async move { sender.send(request).await });

    let piece = Bytes::from(vec![1u8; 64 * 1024]);
    let mut written = 0;
    loop {
        let write = writer.send(piece.clone());
        match tokio::time::timeout(Duration::from_millis(500), write).await {
            Ok(sent) => sent.expect("the gateway still reads the upload"),
            Err(_) => break,
        }
        written += piece.len();
        assert!(
            written < UNBOUNDED,
            "the gateway took {written} bytes its upstream is not reading"
        );
    }

    // Released, the upstream reads on, and every byte arrives.
    backend.observed.release("held-1");
    for _ in 0..16 {
        tokio::time::timeout(PATIENCE, writer.send(piece.clone()))
            .await
            .expect("the upload moves again")
            .expect("sent");
        written += piece.len();
    }
    drop(writer);
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("answered within the patience")
        .expect("request task");
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    let summary: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(summary["bytes"], written.to_string(), "{summary}");
}

/// The next line of a hyper response body.
async fn next_line(body: &mut hyper::body::Incoming, buf: &mut Vec<u8>) -> Option<Value> {
    use http_body_util::BodyExt;
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            return Some(serde_json::from_slice(&line).expect("a JSON line"));
        }
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("a frame within the patience")?
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
}

#[tokio::test]
async fn bidi_streams_are_full_duplex_over_http1_and_http2() {
    let backend = StreamBackend::default();
    for (remote, http2) in [(true, false), (true, true), (false, false), (false, true)] {
        let base = stream_gateway(&backend, remote, |g| g).await;
        let mut sender = connect(&base, http2).await;
        let (writer, body) = channel_body();
        let request = http::Request::post(format!("{base}/v1/streams/rooms/r1:chat"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .expect("request");
        writer
            .send(Bytes::from_static(b"{\"text\":\"hello\"}\n"))
            .await
            .expect("send");
        let response = sender.send(request).await;
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut buf = Vec::new();
        // Each answer arrives while the request body is still open.
        assert_eq!(
            next_line(&mut body, &mut buf).await,
            Some(json!({"result": {"room": "r1", "text": "HELLO", "seq": "1"}}))
        );
        // A message split across two writes is sent upstream once complete.
        writer
            .send(Bytes::from_static(b"{\"text\":"))
            .await
            .expect("send");
        writer
            .send(Bytes::from_static(b"\"again\"}"))
            .await
            .expect("send");
        assert_eq!(
            next_line(&mut body, &mut buf).await,
            Some(json!({"result": {"room": "r1", "text": "AGAIN", "seq": "2"}})),
            "remote {remote}, http2 {http2}"
        );
        drop(writer);
        assert_eq!(next_line(&mut body, &mut buf).await, None);
    }
}

async fn websocket(
    base: &str,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("{}{path}", base.replace("http://", "ws://"));
    let (socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    assert_eq!(response.status(), 101);
    socket
}

#[tokio::test]
async fn server_streams_over_websocket() {
    let base = gateway(&StreamBackend::default()).await;
    let mut socket = websocket(&base, "/v1/streams/w:count?count=2").await;
    let (texts, code, _) = until_close(&mut socket).await;
    assert_eq!(texts, [r#"{"name":"w"}"#, r#"{"name":"w","index":"1"}"#]);
    assert_eq!(code, 1000);

    let mut socket = websocket(&base, "/v1/streams/w:count?count=1&failCode=7").await;
    let (texts, code, reason) = until_close(&mut socket).await;
    assert_eq!(texts.len(), 1);
    assert_eq!(code, 4007);
    assert_eq!(
        reason,
        r#"{"code":7,"message":"asked to fail","details":[]}"#
    );
}

#[tokio::test]
async fn a_websocket_client_that_never_reads_is_let_go_after_the_idle_limit() {
    let backend = StreamBackend::default();
    let base = stream_gateway(&backend, true, |g| {
        g.stream_idle_timeout(Some(Duration::from_millis(300)))
    })
    .await;
    let cancelled = backend.observed.cancelled.load(Ordering::SeqCst);
    // A small receive window and nothing read: the gateway's sends soon wait on the client,
    // and a send that waits past the idle limit ends the session and cancels the call. The
    // messages are large, so the socket buffers between the two fill within a few hundred of
    // them, even on a loaded machine.
    let address: std::net::SocketAddr =
        base.trim_start_matches("http://").parse().expect("address");
    let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
    tcp.set_recv_buffer_size(4096).expect("receive buffer");
    let tcp = tcp.connect(address).await.expect("connect");
    let (deaf, _) = tokio_tungstenite::client_async(
        format!("ws://{address}/v1/streams/deaf:count?count=100000&padding=16384"),
        tcp,
    )
    .await
    .expect("upgrade");
    let seen = backend
        .observed
        .wait_for(&backend.observed.cancelled, cancelled + 1, PATIENCE)
        .await;
    assert_eq!(seen, cancelled + 1);
    drop(deaf);
}

#[tokio::test]
async fn bidi_and_client_streams_over_websocket() {
    let backend = StreamBackend::default();
    for remote in [true, false] {
        let base = stream_gateway(&backend, remote, |g| g).await;
        // The chat is bound to POST; the upgrade reaches it on the same path.
        let mut socket = websocket(&base, "/v1/streams/rooms/r9:chat").await;
        for (seq, text) in ["one", "two"].into_iter().enumerate() {
            socket
                .send(Message::text(json!({"text": text}).to_string()))
                .await
                .expect("send");
            let answer = tokio::time::timeout(PATIENCE, socket.next())
                .await
                .expect("an answer")
                .expect("open")
                .expect("frame");
            let answer: Value =
                serde_json::from_str(answer.to_text().expect("text")).expect("JSON");
            assert_eq!(
                answer,
                json!({"room": "r9", "text": text.to_uppercase(), "seq": (seq + 1).to_string()})
            );
        }
        // An empty frame ends the request stream; the call then ends cleanly.
        socket.send(Message::text("")).await.expect("half close");
        assert_eq!(
            until_close(&mut socket).await,
            (Vec::new(), 1000, String::new())
        );

        let mut socket = websocket(&base, "/v1/streams/sums/ws").await;
        for value in [5, 6] {
            socket
                .send(Message::text(json!({"value": value}).to_string()))
                .await
                .expect("send");
        }
        socket.send(Message::text("")).await.expect("half close");
        let (texts, code, _) = until_close(&mut socket).await;
        assert_eq!(texts, [r#"{"label":"ws","sum":"11","count":2}"#]);
        assert_eq!(code, 1000);

        let mut socket = websocket(&base, "/v1/streams/sums/ws").await;
        socket
            .send(Message::text("{\"value\":true}"))
            .await
            .expect("send");
        let (_, code, reason) = until_close(&mut socket).await;
        assert_eq!(code, 4003, "{reason}");
        assert!(
            reason.contains("message 0 of the request stream"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn http_bodies_travel_raw_both_ways() {
    let base = gateway(&StreamBackend::default()).await;
    let response = get(&format!("{base}/v1/streams/files/f.txt:download?parts=3")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    // The upstream's content type is final: no browser guesses HTML in it.
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        response.text().await.expect("body"),
        "f.txt part 0\nf.txt part 1\nf.txt part 2\n"
    );

    let response = get(&format!("{base}/v1/streams/blobs/b1")).await;
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.text().await.expect("body"), "blob b1");

    let payload = vec![7u8; 300_000];
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/streams/files/up.bin:upload"))
        .header("content-type", "application/octet-stream")
        .body(payload)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let summary: Value = response.json().await.expect("JSON");
    assert_eq!(summary["name"], "up.bin");
    assert_eq!(summary["bytes"], "300000");
    assert_eq!(summary["contentType"], "application/octet-stream");
    assert!(
        summary["chunks"].as_i64().expect("chunks") >= 1,
        "{summary}"
    );
}

#[tokio::test]
async fn a_drain_ends_open_streams_on_every_transport_and_lets_unary_calls_finish() {
    let backend = StreamBackend::default();
    let drain = protogate::Drain::new();
    let base = stream_gateway(&backend, true, |g| g.drain_on(&drain)).await;
    // Three streams held open after their first tick: NDJSON, SSE and WebSocket.
    let ndjson = get(&format!("{base}/v1/streams/n:count?count=5&gated=true")).await;
    let mut ndjson = Lines::new(ndjson);
    assert_eq!(ndjson.json().await, Some(json!({"result": {"name": "n"}})));
    let sse = reqwest::Client::new()
        .get(format!("{base}/v1/streams/s:count?count=5&gated=true"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("answered");
    let mut sse = Lines::new(sse);
    assert_eq!(sse.next().await.as_deref(), Some(r#"data: {"name":"s"}"#));
    let mut socket = websocket(&base, "/v1/streams/w:count?count=5&gated=true").await;
    let first = tokio::time::timeout(PATIENCE, socket.next())
        .await
        .expect("a frame");
    assert!(matches!(first, Some(Ok(Message::Text(_)))), "{first:?}");
    // A unary call in flight, answered slowly.
    let unary = tokio::spawn(
        reqwest::Client::new()
            .get(format!("{base}/v1/streams/blobs/slow"))
            .send(),
    );

    tokio::time::sleep(Duration::from_millis(50)).await;
    drain.start();
    let rest = ndjson.rest().await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0]["error"]["code"], 14, "{rest:?}");
    assert_eq!(
        rest[0]["error"]["message"],
        "the gateway is shutting down; call again"
    );
    let mut events = Vec::new();
    while let Some(line) = sse.next().await {
        events.push(line);
    }
    assert!(
        events.iter().any(|line| line == "event: error"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|line| line.contains("\"code\":14")),
        "{events:?}"
    );
    let (_, code, reason) = until_close(&mut socket).await;
    assert_eq!(
        (code, reason.as_str()),
        (1001, "the gateway is shutting down")
    );

    let answer = unary.await.expect("task").expect("answered");
    assert_eq!(answer.status(), 200, "a unary call in flight finishes");
    // A stream that starts after the drain is refused at once: 503, code 14.
    let late = get(&format!("{base}/v1/streams/late:count?count=5&gated=true")).await;
    assert_eq!(late.status(), 503);
    let body: Value = late.json().await.expect("JSON");
    assert_eq!(body["code"], 14, "{body}");
}
