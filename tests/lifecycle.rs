//! Shutting down, through the real binary: on SIGTERM the gateway fails its readiness, ends an
//! open stream with UNAVAILABLE, lets a slow unary call finish and exits cleanly; a call that
//! outlasts `shutdown_timeout` is cut and the exit is an error.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const SERVICE: &str = "protogate.demo.v1.LibraryService";

/// The demo library as a slow upstream: `GetShelf` answers after the number of milliseconds its
/// shelf is named after (`shelves/800`), `StreamBooks` sends one book and then holds the stream.
mod library {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetShelfRequest {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Shelf {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub theme: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamBooksRequest {
        #[prost(string, tag = "1")]
        pub parent: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Book {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub title: String,
    }

    type Held = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<Book, tonic::Status>> + Send + 'static>,
    >;

    pub async fn serve() -> std::net::SocketAddr {
        let router =
            axum::Router::new().fallback(|request: http::Request<axum::body::Body>| async move {
                match request.uri().path() {
                    "/protogate.demo.v1.LibraryService/GetShelf" => {
                        let codec = tonic_prost::ProstCodec::<Shelf, GetShelfRequest>::default();
                        let slow =
                            tower::service_fn(|request: tonic::Request<GetShelfRequest>| async {
                                let name = request.into_inner().name;
                                let millis =
                                    name.trim_start_matches("shelves/").parse().unwrap_or(0);
                                tokio::time::sleep(Duration::from_millis(millis)).await;
                                let theme = "slow".to_owned();
                                Ok::<_, tonic::Status>(tonic::Response::new(Shelf { name, theme }))
                            });
                        tonic::server::Grpc::new(codec).unary(slow, request).await
                    }
                    "/protogate.demo.v1.LibraryService/StreamBooks" => {
                        let codec = tonic_prost::ProstCodec::<Book, StreamBooksRequest>::default();
                        let held = tower::service_fn(
                            |request: tonic::Request<StreamBooksRequest>| async {
                                let parent = request.into_inner().parent;
                                let first = Book {
                                    name: format!("{parent}/books/first"),
                                    title: "First".to_owned(),
                                };
                                let stream: Held = Box::pin(
                                    futures_util::stream::iter([Ok(first)])
                                        .chain(futures_util::stream::pending()),
                                );
                                Ok::<_, tonic::Status>(tonic::Response::new(stream))
                            },
                        );
                        tonic::server::Grpc::new(codec)
                            .server_streaming(held, request)
                            .await
                    }
                    path => tonic::Status::unimplemented(path.to_owned())
                        .into_http::<tonic::body::Body>(),
                }
            });
        super::support::serve_grpc(router).await
    }
}

use futures_util::StreamExt as _;

/// A config file of this test's own with `shutdown_timeout`.
fn config(name: &str, shutdown_timeout: &str) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lifecycle-tests");
    std::fs::create_dir_all(&dir).expect("directory");
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("[server]\nshutdown_timeout = \"{shutdown_timeout}\"\n"),
    )
    .expect("written");
    path.to_str().expect("UTF-8").to_owned()
}

fn terminate(gateway: &support::Administered) {
    let status = Command::new("kill")
        .args(["-TERM", &gateway.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits for the gateway to exit, up to `limit`; its exit status.
fn exit_within(gateway: &mut support::Administered, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = gateway.child.try_wait().expect("waits") {
            return status;
        }
        assert!(started.elapsed() < limit, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_lets_unary_calls_finish_and_exits_cleanly() {
    let backend = library::serve().await;
    let config = config("graceful.toml", "10s");
    let mut gateway = support::start_with_admin(&[
        "--config",
        &config,
        "--upstream",
        &format!("{SERVICE}=http://{backend}"),
    ]);
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{}/readyz", gateway.admin))
            .send()
            .await
            .expect("answered")
            .status(),
        200
    );

    // An open stream, its first message read, and a unary call answered in 800 ms.
    let mut stream = client
        .get(format!(
            "{}/demo/v1/shelves/fiction/books:stream",
            gateway.base
        ))
        .send()
        .await
        .expect("answered");
    let first = stream.chunk().await.expect("bytes").expect("a first line");
    assert!(
        String::from_utf8_lossy(&first).contains("shelves/fiction/books/first"),
        "{first:?}"
    );
    let slow = tokio::spawn(
        client
            .get(format!("{}/demo/v1/shelves/800", gateway.base))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    terminate(&gateway);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = client
        .get(format!("{}/readyz", gateway.admin))
        .send()
        .await
        .expect("the admin listener answers while draining");
    assert_eq!(ready.status(), 503, "not ready once shutting down");

    // The stream ends with UNAVAILABLE; the unary call finishes.
    let mut rest = Vec::new();
    while let Some(chunk) = stream.chunk().await.expect("bytes") {
        rest.extend_from_slice(&chunk);
    }
    let last: Value = serde_json::from_slice(
        rest.split(|&b| b == b'\n')
            .rfind(|line| !line.is_empty())
            .expect("an error line"),
    )
    .expect("JSON");
    assert_eq!(last["error"]["code"], 14, "{last}");
    let answer = slow.await.expect("task").expect("answered");
    assert_eq!(answer.status(), 200);
    let shelf: Value = answer.json().await.expect("JSON");
    assert_eq!(shelf["name"], "shelves/800");

    let status = exit_within(&mut gateway, Duration::from_secs(8));
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_outlasts_the_shutdown_timeout_is_cut_and_the_exit_is_an_error() {
    let backend = library::serve().await;
    let config = config("cut.toml", "500ms");
    let mut gateway = support::start_with_admin(&[
        "--config",
        &config,
        "--upstream",
        &format!("{SERVICE}=http://{backend}"),
    ]);
    let client = reqwest::Client::new();
    let slow = tokio::spawn(
        client
            .get(format!("{}/demo/v1/shelves/5000", gateway.base))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    terminate(&gateway);
    let status = exit_within(&mut gateway, Duration::from_secs(4));
    assert!(!status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The call was cut: the connection closed without an answer.
    let outcome = slow.await.expect("task");
    assert!(outcome.is_err(), "{outcome:?}");
}
