//! Shutting down, through the real binary: on SIGTERM the gateway fails its readiness, ends an
//! open stream with UNAVAILABLE, lets a slow unary call finish and exits cleanly; a call that
//! outlasts `shutdown_timeout` is cut and the exit is an error.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

const SERVICE: &str = "protogate.demo.v1.LibraryService";

/// The gateway in front of the slow library, with a config file (`name`, in a directory of
/// this test's own) giving `shutdown_timeout`.
async fn gateway(name: &str, shutdown_timeout: &str) -> support::Administered {
    let backend = support::library::serve().await;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lifecycle-tests");
    std::fs::create_dir_all(&dir).expect("directory");
    let config = dir.join(name);
    std::fs::write(
        &config,
        format!("[server]\nshutdown_timeout = \"{shutdown_timeout}\"\n"),
    )
    .expect("written");
    support::start_with_admin(&[
        "--config",
        config.to_str().expect("UTF-8"),
        "--upstream",
        &format!("{SERVICE}=http://{backend}"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_lets_unary_calls_finish_and_exits_cleanly() {
    let mut gateway = gateway("graceful.toml", "10s").await;
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

    gateway.terminate();
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

    let status = gateway.exit_within(Duration::from_secs(8));
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_outlasts_the_shutdown_timeout_is_cut_and_the_exit_is_an_error() {
    let mut gateway = gateway("cut.toml", "500ms").await;
    let client = reqwest::Client::new();
    let slow = tokio::spawn(
        client
            .get(format!("{}/demo/v1/shelves/5000", gateway.base))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    gateway.terminate();
    let status = gateway.exit_within(Duration::from_secs(4));
    assert!(!status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The call was cut: the connection closed without an answer.
    let outcome = slow.await.expect("task");
    assert!(outcome.is_err(), "{outcome:?}");
}
