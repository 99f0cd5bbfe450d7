//! The stock gateway after thousands of upstream faults: its open files, the tasks alive on its
//! runtimes and its resident memory, read from its own `/metrics`, are back where they were.
//!
//! The gateway is the real binary, in front of the misbehaving upstream of the generated
//! tests (`generated-tests/src/faulty.rs`, shared as a file). The count of faults is
//! `PROTOGATE_FAULTS` (10,000 by default); `bench/RESULTS.md` has the figures of a release run.

mod support;

#[path = "../generated-tests/src/faulty.rs"]
#[allow(dead_code)]
mod faulty;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use faulty::{Fault, Faulty, Plan};
use futures_util::StreamExt;
use h2::Reason;

/// The header that carries a call's fault through the gateway to the upstream.
const FAULT: &str = "grpc-metadata-x-fault";

/// The longest one call may take, faults included.
const PATIENCE: Duration = Duration::from_secs(10);

/// Worker threads of the gateway under test.
const WORKERS: usize = 2;

/// The gateway's config: the demo library service from the misbehaving upstream, a 300 ms
/// deadline for unary calls, and responses held to 4 KiB. Passive health is set aside (an
/// ejection only after a million failures in a row): ejected, the upstream would answer most
/// of the load with the gateway's own 503, and the faults would not be met.
fn config(faulty: &Faulty) -> String {
    format!(
        r#"
[server]
workers = {WORKERS}

[log]
level = "error"

[defaults]
upstream = "faulty"

[upstreams.faulty]
endpoints = ["{url}"]
timeout = "300ms"
max_response_bytes = 4096
ejection = {{ consecutive_failures = 1000000, base = "1s", max = "1s" }}
"#,
        url = faulty.url()
    )
}

/// The figures of one scrape of `/metrics` that a leak would show in.
#[derive(Debug, Clone, Copy)]
struct Figures {
    open_fds: i64,
    alive_tasks: i64,
    resident_bytes: i64,
}

/// Every sample of a scrape without labels, by name.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.split_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// One scrape of `/metrics`: its text, and every sample without labels, by name.
async fn scrape_text(admin: &str) -> (String, BTreeMap<String, f64>) {
    // No connection kept: each scrape is one connection, open while it is served.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(PATIENCE)
        .build()
        .expect("client");
    let text = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .expect("scraped")
        .text()
        .await
        .expect("text");
    let samples = samples(&text);
    (text, samples)
}

async fn scrape(admin: &str) -> BTreeMap<String, f64> {
    scrape_text(admin).await.1
}

async fn figures(admin: &str) -> Figures {
    let samples = scrape(admin).await;
    let read = |name: &str| {
        let value = *samples
            .get(name)
            .unwrap_or_else(|| panic!("{name} not scraped"));
        value as i64
    };
    Figures {
        open_fds: read("process_open_fds"),
        alive_tasks: read("protogate_runtime_alive_tasks"),
        resident_bytes: read("process_resident_memory_bytes"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_metrics_are_scraped_and_sane() {
    let faulty = Faulty::start().await.expect("faulty upstream");
    let config = support::test_file("faults", "sane.toml", &config(&faulty));
    let gateway = support::start_with_admin(&["--config", config.to_str().expect("UTF-8")]);
    let (text, samples) = scrape_text(&gateway.admin).await;
    // Well-formed OpenMetrics, as Prometheus's own parser reads it, under the standard names.
    let parsed = support::tools::parse_metrics(&text).expect("OpenMetrics");
    for name in [
        "process_open_fds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
        "protogate_runtime_alive_tasks",
    ] {
        assert!(
            parsed.iter().any(|sample| sample.name == name),
            "{name}: {text}"
        );
    }
    let value = |name: &str| {
        *samples
            .get(name)
            .unwrap_or_else(|| panic!("{name}: {samples:?}"))
    };

    // Standard input, output and error, the listeners, the epoll and event descriptors.
    let fds = value("process_open_fds");
    assert!((5.0..1000.0).contains(&fds), "{fds}");
    let resident = value("process_resident_memory_bytes");
    assert!((1e6..2e9).contains(&resident), "{resident}");
    let cpu = value("process_cpu_seconds_total");
    assert!((0.0..60.0).contains(&cpu), "{cpu}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 120.0,
        "{started} vs {now}"
    );
    // At least the acceptor's loop, each worker's queue and the admin listener.
    let tasks = value("protogate_runtime_alive_tasks");
    assert!((1.0..1000.0).contains(&tasks), "{tasks}");

    // A connection held open to the gateway is one more descriptor and one more task.
    let held = tokio::net::TcpStream::connect(gateway.base.trim_start_matches("http://"))
        .await
        .expect("connected");
    let mut more = scrape(&gateway.admin).await;
    for _ in 0..100 {
        if more["process_open_fds"] > fds && more["protogate_runtime_alive_tasks"] > tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        more = scrape(&gateway.admin).await;
    }
    assert!(more["process_open_fds"] > fds, "{more:?}");
    assert!(more["protogate_runtime_alive_tasks"] > tasks, "{more:?}");
    drop(held);
}

/// One kind of call the load sends: its path, method, body and fault, and the HTTP status it
/// gets when its fault is the only one it meets.
struct Kind {
    method: reqwest::Method,
    path: &'static str,
    body: Option<&'static str>,
    plan: Plan,
    /// Streams take no default deadline: the client gives one.
    timeout: Option<&'static str>,
    /// 200 for a stream that started: its error is its last line.
    expect: u16,
}

fn unary(plan: Plan, expect: u16) -> Kind {
    Kind {
        method: reqwest::Method::GET,
        path: "/demo/v1/shelves/1",
        body: None,
        plan,
        timeout: None,
        expect,
    }
}

fn server(plan: Plan, expect: u16) -> Kind {
    Kind {
        method: reqwest::Method::GET,
        path: "/demo/v1/shelves/1/books:stream",
        body: None,
        plan,
        timeout: Some("300m"),
        expect,
    }
}

fn bidi(plan: Plan, expect: u16) -> Kind {
    Kind {
        method: reqwest::Method::POST,
        path: "/demo/v1/shelves/1/books/2:discuss",
        body: Some("{\"text\":\"a\"}\n{\"text\":\"b\"}\n"),
        plan,
        timeout: Some("300m"),
        expect,
    }
}

/// Faults of one stream each: many at once on one connection meet only their own.
fn stream_faults() -> Vec<Kind> {
    vec![
        unary(Plan::now(Fault::Silent), 504),
        unary(Plan::now(Fault::Stall), 504),
        unary(Plan::now(Fault::Oversized(100_000)), 429),
        unary(Plan::now(Fault::Reset(Reason::REFUSED_STREAM)), 503),
        unary(Plan::now(Fault::Reset(Reason::INTERNAL_ERROR)), 500),
        unary(Plan::now(Fault::TrailersOnly(5)), 404),
        unary(Plan::now(Fault::Invalid), 500),
        server(Plan::after(Fault::Stall, 1), 200),
        server(Plan::after(Fault::Oversized(100_000), 1), 200),
        server(Plan::after(Fault::Reset(Reason::CANCEL), 1), 200),
        server(Plan::now(Fault::TrailersOnly(5)), 404),
        server(Plan::after(Fault::Invalid, 1), 200),
        bidi(Plan::after(Fault::Reset(Reason::INTERNAL_ERROR), 1), 200),
        bidi(Plan::now(Fault::Silent), 504),
    ]
}

/// Faults of a whole connection: each also ends the calls beside it on the connection (503,
/// or an error line for a stream that started).
fn connection_faults() -> Vec<Kind> {
    vec![
        unary(Plan::now(Fault::Kill), 503),
        unary(Plan::now(Fault::GoAway(Reason::NO_ERROR)), 503),
        unary(Plan::now(Fault::GoAway(Reason::PROTOCOL_ERROR)), 503),
        server(Plan::after(Fault::Kill, 1), 200),
        bidi(Plan::after(Fault::Kill, 1), 200),
        bidi(Plan::after(Fault::GoAway(Reason::NO_ERROR), 1), 200),
    ]
}

/// The same calls, answered well.
fn healthy() -> Vec<Kind> {
    vec![
        unary(Plan::now(Fault::Ok), 200),
        server(Plan::after(Fault::Ok, 2), 200),
        bidi(Plan::now(Fault::Ok), 200),
    ]
}

/// Sends `count` calls of `kinds` in turn, `concurrency` at a time, each read to its end
/// within the patience; the count of answers by kind (its index) and HTTP status.
async fn drive(
    base: &str,
    kinds: &[Kind],
    count: usize,
    concurrency: usize,
) -> BTreeMap<(usize, u16), usize> {
    let client = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("client");
    let calls = futures_util::stream::iter(0..count)
        .map(|index| {
            let kind = &kinds[index % kinds.len()];
            let mut request = client
                .request(kind.method.clone(), format!("{base}{}", kind.path))
                .header(FAULT, kind.plan.header());
            if let Some(timeout) = kind.timeout {
                request = request.header("grpc-timeout", timeout);
            }
            if let Some(body) = kind.body {
                request = request
                    .header("content-type", "application/x-ndjson")
                    .body(body);
            }
            let kind = index % kinds.len();
            async move {
                let call = async {
                    let response = request.send().await.expect("answered");
                    let status = response.status().as_u16();
                    response.bytes().await.expect("the body ends");
                    status
                };
                let status = tokio::time::timeout(PATIENCE, call)
                    .await
                    .expect("a call ends within the patience");
                (kind, status)
            }
        })
        .buffer_unordered(concurrency);
    let statuses: Vec<(usize, u16)> = calls.collect().await;
    let mut counts = BTreeMap::new();
    for status in statuses {
        *counts.entry(status).or_default() += 1;
    }
    counts
}

/// Waits up to `limit` for `settled` to hold of the gateway's figures; the last figures read.
async fn settle(admin: &str, limit: Duration, settled: impl Fn(&Figures) -> bool) -> Figures {
    let deadline = Instant::now() + limit;
    loop {
        let now = figures(admin).await;
        if settled(&now) || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_faults_leak_no_file_task_or_memory() {
    let count: usize = std::env::var("PROTOGATE_FAULTS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(10_000);
    let faulty = Faulty::start().await.expect("faulty upstream");
    let config = support::test_file("faults", "leak.toml", &config(&faulty));
    let gateway = support::start_with_admin(&["--config", config.to_str().expect("UTF-8")]);
    let base = &gateway.base;

    // Warm up with healthy calls of every shape, so that what is made once (the workers' upstream
    // connections, buffers, the allocator's arenas) is there before the first measure.
    let healthy = healthy();
    let warm = drive(base, &healthy, 500, 32).await;
    assert!(warm.keys().all(|(_, status)| *status == 200), "{warm:?}");
    let before = settle(&gateway.admin, Duration::from_secs(5), |_| false).await;

    // Seven in ten faults of one stream, many at once; then faults of whole connections, fewer
    // at once (each ends the calls beside it); then a GOAWAY storm, every connection sent away
    // as it opens.
    let started = Instant::now();
    let streams = stream_faults();
    let connections = connection_faults();
    let (many, few, storm) = (
        count * 7 / 10,
        count / 4,
        count - count * 7 / 10 - count / 4,
    );
    let stream_answers = drive(base, &streams, many, 64).await;
    let connection_answers = drive(base, &connections, few, 8).await;
    faulty.storm(true);
    let storm_answers = drive(base, &healthy, storm, 64).await;
    faulty.storm(false);
    let took = started.elapsed();
    let total = |answers: &BTreeMap<(usize, u16), usize>| answers.values().sum::<usize>();
    assert_eq!(
        total(&stream_answers) + total(&connection_answers) + total(&storm_answers),
        count
    );
    for ((kind, status), times) in &stream_answers {
        let kind = &streams[*kind];
        assert_eq!(*status, kind.expect, "{} {times} times", kind.plan.header());
    }
    for ((kind, status), times) in &connection_answers {
        let kind = &connections[*kind];
        assert!(
            *status == kind.expect || *status == 503,
            "{}: {status} {times} times",
            kind.plan.header()
        );
    }
    assert!(
        storm_answers.keys().all(|(_, status)| *status == 503),
        "{storm_answers:?}"
    );

    // Settled. The gateway keeps one connection to the upstream per worker by design, opened
    // by a worker's first call: at the first measure each worker had its own (the warm-up
    // went through both), and after the faults each may have lost it (killed, sent away) and
    // not opened it again. So each worker may hold one socket, and the one task that drives
    // it, fewer than before, never more: the tolerance is zero above the starting figures.
    // Tasks of the calls, of the client's connections (closed with the load's client), of
    // request streams still being pumped upstream: all must be gone.
    let settled =
        |now: &Figures| now.open_fds <= before.open_fds && now.alive_tasks <= before.alive_tasks;
    let after = settle(&gateway.admin, Duration::from_secs(20), settled).await;
    assert_eq!(
        faulty.settled(PATIENCE).await,
        0,
        "streams left open upstream"
    );
    // The same warm-up again, which opens the workers' upstream connections again: back to the
    // starting figures, like for like.
    let again = drive(base, &healthy, 500, 32).await;
    assert!(again.keys().all(|(_, status)| *status == 200), "{again:?}");
    let rewarmed = settle(&gateway.admin, Duration::from_secs(20), settled).await;
    let grown = rewarmed.resident_bytes - before.resident_bytes;
    let mib = |bytes: i64| bytes as f64 / 1048576.0;
    println!(
        "faults: {count} in {took:.1?} ({many} of one stream, {few} of a connection, {storm} in \
         a GOAWAY storm); open fds {} -> {} (warmed again: {}); alive tasks {} -> {} (warmed \
         again: {}); RSS {:.1} MiB -> {:.1} MiB (warmed again: {:.1} MiB, {:+.1} MiB)",
        before.open_fds,
        after.open_fds,
        rewarmed.open_fds,
        before.alive_tasks,
        after.alive_tasks,
        rewarmed.alive_tasks,
        mib(before.resident_bytes),
        mib(after.resident_bytes),
        mib(rewarmed.resident_bytes),
        mib(grown),
    );
    for figures in [after, rewarmed] {
        assert!(settled(&figures), "{before:?} -> {figures:?}");
    }
    // Memory the allocator keeps for reuse is not a leak, but it is bounded: a leak of even a
    // kilobyte per fault would pass 10 MB over 10,000 faults.
    assert!(grown < 32 * 1024 * 1024, "RSS grew by {grown} bytes");
}
