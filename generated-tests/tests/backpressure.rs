//! Backpressure end to end: a client that stops reading a 100,000-message stream stops the
//! upstream too (HTTP/2 flow control through the gateway), counted by the messages the upstream
//! managed to send, and every message arrives once the client reads again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use generated_tests::streams::{StreamBackend, stream_gateway};

/// Messages in the stream, each a JSON line of a little over `PADDING` bytes: about 100 MB.
const MESSAGES: u64 = 100_000;
const PADDING: usize = 1_000;

/// The most messages the upstream may send to a reader that stopped: what fits in the buffers
/// between them, about 16 MB. Those are the gateway's HTTP/2 stream window (2 MiB) and the
/// loopback sockets' buffers on both sides of the gateway (a few MiB: Linux grows a send
/// buffer to `tcp_wmem`'s maximum, 4 MiB by default), with room to spare; about 6,000 messages
/// fit on the machine this was written on. A gateway that reads the upstream ahead of its
/// client without bound lets all 100,000 through.
const HELD_AT_MOST: u64 = 16_000;

/// How long the upstream's count must stand still to count as stopped, and how long it has to
/// get there.
const STILL_FOR: Duration = Duration::from_millis(500);
const STOPS_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_the_upstream_back_and_loses_nothing() {
    let backend = StreamBackend::default();
    let base = stream_gateway(&backend, true, |gateway| gateway).await;

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
    let deadline = std::time::Instant::now() + STOPS_WITHIN;
    let mut sent = backend.observed.sent.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(STILL_FOR).await;
        let now = backend.observed.sent.load(Ordering::SeqCst);
        if now == sent {
            break;
        }
        sent = now;
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream was still sending after {STOPS_WITHIN:?} ({sent} messages)"
        );
    }
    println!("paused: the upstream sent {sent} of {MESSAGES} messages");
    assert!(
        sent <= HELD_AT_MOST,
        "the upstream sent {sent} of {MESSAGES} messages to a reader that stopped \
         (the buffers between them hold about {HELD_AT_MOST})"
    );
    let started = std::time::Instant::now();

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
