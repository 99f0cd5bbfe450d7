//! The soak (`protogate-bench soak`): mixed traffic on 64 keep-alive connections against one
//! gateway for many minutes, its config file rewritten and reloaded (SIGHUP) every 10 s.
//!
//! The traffic: unary calls (a POST with a body, a GET with path and query), a server stream,
//! a client stream and a bidi stream (NDJSON both ways), a route that does not exist (404), and
//! a call whose backend answers a chosen gRPC error (the HTTP status and google.rpc.Status must
//! match it). Every answer is checked; one that is not what it must be is an unexpected error.
//! Each minute prints the calls, the errors, the reloads and the gateway's resident memory and
//! open file descriptors.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;

use crate::harness::{self, Error, Gateway, Usage};

/// Connections of mixed traffic, and the pause between two calls on one.
const CONNECTIONS: usize = 64;
const PAUSE: Duration = Duration::from_millis(20);
/// How often the config is rewritten and reloaded.
const RELOAD_EVERY: Duration = Duration::from_secs(10);
/// The longest one call may take before it counts as an unexpected error.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// Messages of the server stream, the client stream and the bidi stream.
const SERVER_STREAM: usize = 100;
const CLIENT_STREAM: usize = 10;
const BIDI: usize = 5;
/// gRPC codes the `Fail` call is asked for, with the HTTP status each must come back as.
const FAILURES: [(i32, u16); 5] = [(3, 400), (5, 404), (7, 403), (9, 400), (10, 409)];

/// The two configs a reload moves between: deadlines and idle limits that differ by a second,
/// so that each reload puts a new plan (and new upstream settings) in effect.
fn config(turn: u64) -> String {
    let seconds = 20 + turn % 2;
    format!(
        "[gateway]\ntimeout = \"{seconds}s\"\nstream_idle_timeout = \"{}s\"\n\n\
         [defaults.upstream_settings]\ntimeout = \"{seconds}s\"\n",
        seconds * 3
    )
}

/// What the whole soak counted.
pub(crate) struct Soaked {
    pub(crate) unexpected: u64,
}

/// Counts shared by the connections.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    /// Expected errors, answered as they must be.
    expected: AtomicU64,
    unexpected: AtomicU64,
    /// The first unexpected errors, as said.
    first_unexpected: Mutex<Vec<String>>,
}

impl Counts {
    fn unexpected(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_unexpected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if first.len() < 10 {
            first.push(what);
        }
    }
}

/// Soaks one gateway for `length`, printing a row a minute and the first and last minute's
/// figures at the end.
pub(crate) async fn run(protogate: &Path, length: Duration) -> Result<Soaked, Error> {
    let backend = harness::start_backend().await?;
    let work = std::env::temp_dir().join(format!("protogate-bench-soak-{}", std::process::id()));
    let gateway = Gateway::start(protogate, backend, 2, &config(0), &work).await?;
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + length;
    let connections: Vec<_> = (0..CONNECTIONS)
        .map(|index| {
            let (counts, stop) = (Arc::clone(&counts), Arc::clone(&stop));
            tokio::spawn(connection(gateway.address, index, counts, stop, deadline))
        })
        .collect();

    println!(
        "### Soak: {CONNECTIONS} connections of mixed traffic, one gateway (2 workers), its config reloaded every {} s",
        RELOAD_EVERY.as_secs()
    );
    println!();
    println!(
        "| minute | calls | unexpected errors | expected errors, as expected | reloads sent | reloads done (gateway) | RSS MiB | fds |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let reloads_ok = "protogate_config_reloads_total{outcome=\"ok\"}";
    let mut reloads_sent = 0u64;
    let mut next_reload = Instant::now() + RELOAD_EVERY;
    let mut next_minute = Instant::now() + Duration::from_secs(60);
    let (mut calls_before, mut expected_before, mut unexpected_before) = (0, 0, 0);
    let mut minutes: Vec<Usage> = Vec::new();
    let mut gateway = gateway;
    let mut died = None;
    while Instant::now() < deadline {
        let wake = next_reload.min(next_minute).min(deadline);
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
        if let Some(exit) = gateway.exited() {
            died = Some(exit);
            break;
        }
        let now = Instant::now();
        if now >= next_reload {
            reloads_sent += 1;
            std::fs::write(&gateway.config, config(reloads_sent))?;
            gateway.hang_up()?;
            next_reload += RELOAD_EVERY;
        }
        if now >= next_minute || now >= deadline {
            let usage = gateway.usage();
            let calls = counts.calls.load(Ordering::Relaxed);
            let expected = counts.expected.load(Ordering::Relaxed);
            let unexpected = counts.unexpected.load(Ordering::Relaxed);
            println!(
                "| {} | {} | {} | {} | {reloads_sent} | {} | {:.1} | {} |",
                minutes.len() + 1,
                calls - calls_before,
                unexpected - unexpected_before,
                expected - expected_before,
                gateway.metric(reloads_ok).await,
                usage.rss_mib(),
                usage.fds
            );
            (calls_before, expected_before, unexpected_before) = (calls, expected, unexpected);
            minutes.push(usage);
            next_minute += Duration::from_secs(60);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in connections {
        if task.await.is_err() {
            counts.unexpected("a connection's task failed".to_owned());
        }
    }
    if let Some(exit) = &died {
        counts.unexpected(format!("the gateway exited: {exit}"));
    }

    println!();
    if let (Some(first), Some(last)) = (minutes.first(), minutes.last()) {
        println!(
            "| figure | end of minute 1 | end of minute {} |",
            minutes.len()
        );
        println!("|---|---:|---:|");
        println!(
            "| gateway RSS MiB | {:.1} | {:.1} |",
            first.rss_mib(),
            last.rss_mib()
        );
        println!("| gateway fds | {} | {} |", first.fds, last.fds);
        println!();
    }
    println!(
        "{} calls in {:.1} min; {} expected errors answered as expected; {} unexpected; {reloads_sent} reloads sent, {} done by the gateway (its log: {})",
        counts.calls.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64() / 60.0,
        counts.expected.load(Ordering::Relaxed),
        counts.unexpected.load(Ordering::Relaxed),
        gateway.metric(reloads_ok).await,
        gateway.log.display()
    );
    for error in counts
        .first_unexpected
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        println!();
        println!("unexpected: {error}");
    }
    Ok(Soaked {
        unexpected: counts.unexpected.load(Ordering::Relaxed),
    })
}

/// The kinds of call, taken in turn on each connection (each connection starting at its own).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Echo,
    Lookup,
    ServerStream,
    ClientStream,
    Bidi,
    NoRoute,
    Fail,
}

const KINDS: [Kind; 7] = [
    Kind::Echo,
    Kind::Lookup,
    Kind::ServerStream,
    Kind::ClientStream,
    Kind::Bidi,
    Kind::NoRoute,
    Kind::Fail,
];

/// How to tell an answer (its status and body) is right.
type Check = Box<dyn FnOnce(u16, &[u8]) -> Result<(), String> + Send>;

/// A call to make and how to tell its answer is right.
struct Call {
    request: http::Request<Full<Bytes>>,
    check: Check,
    /// Whether the answer is an error (as expected).
    error: bool,
}

/// The `n`th call of connection `index`.
fn call(index: usize, n: usize) -> Call {
    let kind = KINDS[(index + n) % KINDS.len()];
    let get = |path: String| {
        http::Request::get(path)
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
    };
    let post = |path: &str, body: Vec<u8>, content_type: &str| {
        http::Request::post(path)
            .header("host", "127.0.0.1")
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
    };
    let ndjson = |messages: usize| -> Vec<u8> {
        (0..messages)
            .flat_map(|i| {
                format!("{{\"id\":\"c{index}-{n}\",\"count\":\"{}\"}}\n", i + 1).into_bytes()
            })
            .collect()
    };
    let (request, check, error): (_, Check, _) = match kind {
        Kind::Echo => (
            post(
                "/v1/echo",
                serde_json::to_vec(&protogate_bench::small_json()).unwrap_or_default(),
                "application/json",
            ),
            Box::new(|status, body| expect(status, 200, body, &["\"item-000123\""])),
            false,
        ),
        Kind::Lookup => {
            let id = format!("\"id\":\"s{index}/{n}\"");
            (
                get(format!("/v1/users/s{index}/items/{n}?limit=3&tag=soak")),
                Box::new(move |status, body| expect(status, 200, body, &[&id])),
                false,
            )
        }
        Kind::ServerStream => (
            get(format!("/v1/streams/{SERVER_STREAM}")),
            Box::new(|status, body| {
                expect(status, 200, body, &[])?;
                results(body, SERVER_STREAM)
            }),
            false,
        ),
        Kind::ClientStream => (
            post("/v1/collect", ndjson(CLIENT_STREAM), "application/x-ndjson"),
            Box::new(|status, body| {
                // Ten messages counted 1 to 10: 10 entries, 55 in all (int64s as strings).
                expect(
                    status,
                    200,
                    body,
                    &["\"entries\":\"10\"", "\"values\":\"55\""],
                )
            }),
            false,
        ),
        Kind::Bidi => (
            post("/v1/chat", ndjson(BIDI), "application/x-ndjson"),
            Box::new(|status, body| {
                expect(status, 200, body, &["\"count\":\"2\"", "\"count\":\"6\""])?;
                results(body, BIDI)
            }),
            false,
        ),
        Kind::NoRoute => (
            get(format!("/v1/nowhere/{n}")),
            Box::new(|status, body| status_body(status, 404, body, 5, None)),
            true,
        ),
        Kind::Fail => {
            let (code, http_status) = FAILURES[(index + n) % FAILURES.len()];
            let message = format!("soak-{index}-{n}");
            (
                get(format!("/v1/fail/{code}?message={message}")),
                Box::new(move |status, body| {
                    status_body(status, http_status, body, code, Some(&message))
                }),
                true,
            )
        }
    };
    match request {
        Ok(request) => Call {
            request,
            check,
            error,
        },
        Err(why) => Call {
            request: http::Request::new(Full::new(Bytes::new())),
            check: Box::new(move |_, _| Err(format!("the request cannot be built: {why}"))),
            error: false,
        },
    }
}

/// Whether `status` is `wanted` and `body` holds every one of `needles`.
fn expect(status: u16, wanted: u16, body: &[u8], needles: &[&str]) -> Result<(), String> {
    let missing = needles
        .iter()
        .find(|needle| harness::find(body, needle.as_bytes()).is_none());
    if status != wanted || missing.is_some() {
        return Err(format!(
            "answered {status} (wanted {wanted}{}): {}",
            missing.map_or(String::new(), |m| format!(" with {m}")),
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    Ok(())
}

/// Whether an NDJSON stream holds `wanted` result lines and no error line.
fn results(body: &[u8], wanted: usize) -> Result<(), String> {
    let lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let (mut results, mut errors) = (0, 0);
    for line in lines {
        if line.starts_with(b"{\"result\"") {
            results += 1;
        } else {
            errors += 1;
        }
    }
    if results != wanted || errors > 0 {
        return Err(format!(
            "a stream of {results} results and {errors} other lines, {wanted} results wanted: {}",
            String::from_utf8_lossy(&body[body.len().saturating_sub(300)..])
        ));
    }
    Ok(())
}

/// Whether an error answer is `wanted` with a google.rpc.Status of `code` (and `message`).
fn status_body(
    status: u16,
    wanted: u16,
    body: &[u8],
    code: i32,
    message: Option<&str>,
) -> Result<(), String> {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let got_code = parsed.as_ref().and_then(|s| s.get("code")?.as_i64());
    let got_message = parsed
        .as_ref()
        .and_then(|s| s.get("message")?.as_str().map(str::to_owned));
    let message_right = message.is_none_or(|m| got_message.as_deref() == Some(m));
    if status != wanted || got_code != Some(i64::from(code)) || !message_right {
        return Err(format!(
            "answered {status} (wanted {wanted}, code {code}{}): {}",
            message.map_or(String::new(), |m| format!(", message {m}")),
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    Ok(())
}

/// One keep-alive connection making calls in turn until `stop` or `deadline`; a failed call is
/// counted and the connection opened anew.
async fn connection(
    address: SocketAddr,
    index: usize,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) {
    /// The most calls of one connection, whatever the time: every loop is bounded.
    const MOST_CALLS: usize = 10_000_000;
    let mut sender = None;
    for n in 0..MOST_CALLS {
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        if sender.is_none() {
            match tokio::time::timeout(CALL_LIMIT, harness::connect(address)).await {
                Ok(Ok(opened)) => sender = Some(opened),
                Ok(Err(why)) => counts.unexpected(format!("connection {index}: {why}")),
                Err(_) => counts.unexpected(format!("connection {index}: connecting timed out")),
            }
        }
        let Some(connection) = sender.as_mut() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let Call {
            request,
            check,
            error,
        } = call(index, n);
        let what = format!("{} {}", request.method(), request.uri());
        let exchange = async {
            let (status, body) = harness::send(connection, request).await?;
            check(status.as_u16(), &body)
        };
        counts.calls.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(CALL_LIMIT, exchange).await {
            Ok(Ok(())) if error => {
                counts.expected.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                counts.unexpected(format!("{what}: {why}"));
                sender = None;
            }
            Err(_) => {
                counts.unexpected(format!("{what}: no answer within {CALL_LIMIT:?}"));
                sender = None;
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_configs_differ_and_alternate() {
        assert_ne!(config(0), config(1));
        assert_eq!(config(0), config(2));
        assert!(config(1).contains("timeout = \"21s\""));
    }

    #[test]
    fn a_stream_counts_results_and_refuses_error_lines() {
        assert!(results(b"{\"result\":{}}\n{\"result\":{}}\n", 2).is_ok());
        assert!(results(b"{\"result\":{}}\n{\"error\":{\"code\":13}}\n", 1).is_err());
    }

    #[test]
    fn an_expected_error_must_match_its_status_code_and_message() {
        let body = br#"{"code":5,"message":"gone","details":[]}"#;
        assert!(status_body(404, 404, body, 5, Some("gone")).is_ok());
        assert!(status_body(404, 404, body, 5, Some("other")).is_err());
        assert!(status_body(500, 404, body, 5, None).is_err());
    }
}
