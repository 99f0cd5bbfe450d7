//! The gateway's connection to an upstream, over real sockets: opened again after the upstream
//! restarts, bounded while connecting hangs, flow-controlled for messages larger than the HTTP/2
//! windows on either side, and queueing calls beyond the upstream's limit on streams.

use std::time::Duration;

use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::{serve_backend, serve_backend_with, serve_gateway};
use protogate::{Gateway, Upstream};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

async fn gateway_for(upstream: Upstream) -> String {
    let gateway = Gateway::new()
        .with(binding_service_gateway::remote(upstream))
        .expect("routes");
    serve_gateway(gateway).await.expect("gateway")
}

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// The backend on `listener`, and the switch that stops it.
fn backend_on(listener: TcpListener) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve_backend(listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("backend serves");
    });
    (stop, server)
}

/// A backend on a port of its own, and a gateway in front of it.
struct Stand {
    address: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    base: String,
}

async fn stand() -> Stand {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, server) = backend_on(listener);
    let upstream = Upstream::lazy(&format!("http://{address}")).expect("upstream URL");
    let base = gateway_for(upstream).await;
    Stand {
        address,
        stop,
        server,
        base,
    }
}

#[tokio::test]
async fn an_upstream_that_restarts_is_reached_again() {
    let Stand {
        address,
        stop,
        server,
        base,
    } = stand().await;
    let url = format!("{base}/v1/echo/first");
    assert_eq!(get(&url).await, (200, json!({"name": "first"})));

    // Down: the call fails as UNAVAILABLE, naming the upstream.
    stop.send(()).expect("backend running");
    server.await.expect("backend stopped");
    let (status, body) = get(&url).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], 14);
    let message = body["message"].as_str().expect("message");
    assert!(message.contains(&address.to_string()), "{message}");

    // Back on the same address: the next call connects again, with nothing to do for anyone.
    let listener = TcpListener::bind(address).await.expect("bind again");
    let (_stop, _server) = backend_on(listener);
    let url = format!("{base}/v1/echo/second");
    assert_eq!(get(&url).await, (200, json!({"name": "second"})));
}

#[tokio::test]
async fn a_connection_that_hangs_gives_up_after_the_connect_timeout() {
    // A listener that never accepts, its queue full: the next connection attempt hangs.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let address = listener.local_addr().expect("address");
    let mut queued = Vec::new();
    loop {
        let attempt = tokio::net::TcpStream::connect(address);
        match tokio::time::timeout(Duration::from_millis(200), attempt).await {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(error)) => panic!("connecting failed instead of hanging: {error}"),
            Err(_) => break,
        }
        assert!(queued.len() < 64, "the listen queue never filled");
    }

    let upstream = Upstream::builder("hanging")
        .endpoint(format!("http://{address}"))
        .connect_timeout(Duration::from_millis(300))
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    let (status, body) = get(&format!("{base}/v1/echo/x")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], 14);
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("timed out"), "{message}");
    drop(listener);
}

#[tokio::test]
async fn messages_larger_than_the_http2_windows_go_both_ways_whole() {
    let stand = stand().await;
    let base = &stand.base;

    // 3 MB each way, several at once on the one connection: more than any stream or connection
    // window, so both directions wait for window updates and share the connection's.
    let client = reqwest::Client::new();
    let calls = (0..4u8).map(|i| {
        let name: String = std::iter::repeat_n(char::from(b'a' + i), 3_000_000).collect();
        let client = client.clone();
        let url = format!("{base}/v1/echo");
        async move {
            let response = client
                .post(url)
                .json(&json!({"name": name, "id": i.to_string()}))
                .send()
                .await
                .expect("answered");
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(body["id"], i.to_string());
            assert!(
                body["name"] == Value::String(name),
                "call {i} came back altered"
            );
        }
    });
    futures_util::future::join_all(calls).await;
}

#[tokio::test]
async fn calls_beyond_the_upstreams_stream_limit_wait_their_turn() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tonic::transport::Server::builder().max_concurrent_streams(2);
    tokio::spawn(serve_backend_with(server, listener, std::future::pending()));
    let upstream = Upstream::lazy(&format!("http://{address}")).expect("upstream URL");
    let base = gateway_for(upstream).await;

    // Twenty calls that each hold their stream for 50 ms, two streams at a time.
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let calls = (0..20).map(|_| {
        let request = client.get(format!("{base}/v1/slow/50"));
        async move { request.send().await.expect("answered").status() }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "the limit of two streams was not kept: {:?}",
        started.elapsed()
    );
}
