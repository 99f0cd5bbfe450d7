//! Backpressure end to end, alone in its test binary so the process's memory is its own: a
//! client that stops reading a 100,000-message stream stops the upstream too (HTTP/2 flow
//! control through the gateway), the gateway's memory stays flat, and every message arrives
//! once the client reads again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use generated_tests::streams::{StreamBackend, stream_gateway};

const MESSAGES: u64 = 100_000;
const PADDING: usize = 1_000;

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_the_upstream_back_and_loses_nothing() {
    let backend = StreamBackend::default();
    let base = stream_gateway(&backend, true, |gateway| gateway).await;

    let before = rss();
    let url = format!("{base}/v1/streams/bp:count?count={MESSAGES}&padding={PADDING}");
    let mut response = reqwest::get(url).await.expect("answered");
    let first = response
        .chunk()
        .await
        .expect("body")
        .expect("a first chunk");
    assert!(first.starts_with(b"{\"result\""));

    // The reader stops. The backend runs ahead only as far as the flow-control windows and
    // socket buffers let it, then waits.
    let mut sent = backend.observed.sent.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = backend.observed.sent.load(Ordering::SeqCst);
        if now == sent {
            break;
        }
        sent = now;
    }
    let held = rss().saturating_sub(before);
    println!("paused: the upstream sent {sent} messages; memory grew by {held} bytes");
    let started = std::time::Instant::now();
    let total = MESSAGES * PADDING as u64;
    assert!(
        sent < MESSAGES / 4,
        "the upstream sent {sent} of {MESSAGES} messages to a reader that stopped"
    );
    assert!(
        held < total / 4,
        "memory grew by {held} bytes while {total} bytes were waiting upstream"
    );

    // Reading again, every message arrives, in order, exactly once.
    let mut buf = first.to_vec();
    let mut next_index = 0u64;
    let mut check_lines = |buf: &mut Vec<u8>| {
        let mut start = 0;
        while let Some(end) = buf[start..].iter().position(|&b| b == b'\n') {
            let line: serde_json::Value =
                serde_json::from_slice(&buf[start..start + end]).expect("a JSON line");
            let index = line["result"]["index"]
                .as_str()
                .map_or(0, |i| i.parse().expect("an index"));
            assert_eq!(index, next_index);
            next_index += 1;
            start += end + 1;
        }
        buf.drain(..start);
    };
    check_lines(&mut buf);
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), response.chunk())
        .await
        .expect("the stream goes on")
        .expect("body")
    {
        buf.extend_from_slice(&chunk);
        check_lines(&mut buf);
    }
    println!("read the rest in {:?}", started.elapsed());
    assert!(buf.is_empty());
    assert_eq!(next_index, MESSAGES);
}
