//! Streams held open (`protogate-bench held`): the resident memory a gateway spends per open SSE
//! or WebSocket stream, and whether messages still reach every stream once they are all open.
//!
//! Each stream is a `Watch` call whose backend sends a small message every `every`; the harness
//! opens them a few hundred at a time, reads every byte that arrives, and counts per stream.
//! Bounded: opening stops at the deadline, and the streams are held for two message intervals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How a held stream reaches the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// Server-sent events over HTTP/1.1.
    Sse,
    /// A WebSocket.
    Websocket,
}

impl Transport {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Transport::Sse => "SSE",
            Transport::Websocket => "WebSocket",
        }
    }
}

/// What one held-streams run measured.
pub(crate) struct Held {
    pub(crate) transport: Transport,
    /// Streams asked for.
    pub(crate) wanted: usize,
    /// Streams whose first answer arrived (200 and event-stream headers, or a WebSocket).
    pub(crate) opened: usize,
    /// The first failures to open, a few of them.
    pub(crate) failures: Vec<String>,
    /// The gateway's resident set before the streams, and with them all open.
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_after_kib: u64,
    /// Open streams that received bytes after the last one opened.
    pub(crate) flowing: usize,
    pub(crate) seconds_to_open: f64,
}

impl Held {
    /// Resident memory per open stream, in KiB.
    pub(crate) fn kib_per_stream(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 / self.opened.max(1) as f64
    }
}

/// The gateway's current resident set (`VmRSS`), in KiB.
fn rss_kib(pid: &str) -> u64 {
    crate::status_kib(pid, "VmRSS:")
}

/// Opens `wanted` streams of `transport` to the gateway at `gateway` (process `pid`), measures
/// its memory before and with them all open, and counts the streams still receiving.
pub(crate) async fn hold(
    gateway: SocketAddr,
    pid: &str,
    transport: Transport,
    wanted: usize,
    every: Duration,
    deadline: Duration,
) -> Held {
    // One stream opened and closed first, so that what is built once (the route's state, the
    // upstream connection) is in the baseline rather than charged to the streams.
    if let Ok(warm) = open(gateway, transport, usize::MAX, every).await {
        warm.abort();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kib = rss_kib(pid);

    let started = Instant::now();
    let mut held = Vec::with_capacity(wanted);
    let mut failures = Vec::new();
    let mut opening = futures_util::stream::iter(0..wanted)
        .map(|index| open(gateway, transport, index, every))
        .buffer_unordered(256);
    while let Some(outcome) = tokio::time::timeout_at(
        tokio::time::Instant::from_std(started + deadline),
        opening.next(),
    )
    .await
    .unwrap_or(None)
    {
        match outcome {
            Ok(stream) => held.push(stream),
            Err(error) if failures.len() < 5 => failures.push(error),
            Err(_) => {}
        }
    }
    drop(opening);
    let seconds_to_open = started.elapsed().as_secs_f64();

    // What each stream had received once all were open; two message intervals later, which of
    // them received more.
    let before: Vec<u64> = held.iter().map(Stream::received).collect();
    tokio::time::sleep(every * 2 + Duration::from_millis(500)).await;
    let flowing = held
        .iter()
        .zip(&before)
        .filter(|(stream, before)| stream.received() > **before)
        .count();
    let rss_after_kib = rss_kib(pid);
    let opened = held.len();
    for stream in held {
        stream.abort();
    }
    Held {
        transport,
        wanted,
        opened,
        failures,
        rss_before_kib,
        rss_after_kib,
        flowing,
        seconds_to_open,
    }
}

/// An open stream: the bytes it has received, counted by the task reading it.
struct Stream {
    received: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
}

impl Stream {
    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn abort(self) {
        self.reader.abort();
    }
}

/// Opens stream `index` and leaves a task reading it.
async fn open(
    gateway: SocketAddr,
    transport: Transport,
    index: usize,
    every: Duration,
) -> Result<Stream, String> {
    let path = format!(
        "/v1/watch/s{index}?everyMs={}&count=1000000",
        every.as_millis()
    );
    let tcp = tokio::net::TcpStream::connect(gateway)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let reader = match transport {
        Transport::Sse => {
            let mut tcp = tcp;
            let request = format!(
                "GET {path} HTTP/1.1\r\nhost: {gateway}\r\naccept: text/event-stream\r\n\r\n"
            );
            tcp.write_all(request.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut head = Vec::new();
            let mut chunk = [0u8; 512];
            let body_start = loop {
                let read = tcp
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                if read == 0 {
                    return Err(format!(
                        "closed before its headers: {}",
                        String::from_utf8_lossy(&head)
                    ));
                }
                head.extend_from_slice(&chunk[..read]);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
            };
            if !head.starts_with(b"HTTP/1.1 200") {
                let text = String::from_utf8_lossy(&head);
                return Err(format!(
                    "answered {}",
                    text.lines().next().unwrap_or_default()
                ));
            }
            counter.fetch_add((head.len() - body_start) as u64, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut chunk = [0u8; 512];
                while let Ok(read) = tcp.read(&mut chunk).await {
                    if read == 0 {
                        break;
                    }
                    counter.fetch_add(read as u64, Ordering::Relaxed);
                }
            })
        }
        Transport::Websocket => {
            // Small buffers on the harness's side too: it holds as many sockets as the gateway.
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let (mut socket, _) = tokio_tungstenite::client_async_with_config(
                format!("ws://{gateway}{path}"),
                tcp,
                Some(config),
            )
            .await
            .map_err(|e| format!("WebSocket: {e}"))?;
            tokio::spawn(async move {
                while let Some(Ok(message)) = socket.next().await {
                    counter.fetch_add(message.len() as u64, Ordering::Relaxed);
                }
            })
        }
    };
    Ok(Stream { received, reader })
}

/// The markdown table of held-streams runs.
pub(crate) fn print_table(runs: &[Held], every: Duration) {
    println!(
        "### Streams held open, one worker thread (a message every {} ms on each)",
        every.as_millis()
    );
    println!();
    println!(
        "| transport | streams open | gateway RSS before MiB | with them open MiB | KiB per stream | streams still receiving | seconds to open |"
    );
    println!("|---|---|---|---|---|---|---|");
    for run in runs {
        println!(
            "| {} | {} of {} | {:.1} | {:.1} | {:.1} | {} | {:.1} |",
            run.transport.label(),
            run.opened,
            run.wanted,
            run.rss_before_kib as f64 / 1024.0,
            run.rss_after_kib as f64 / 1024.0,
            run.kib_per_stream(),
            run.flowing,
            run.seconds_to_open
        );
    }
    for run in runs {
        for failure in &run.failures {
            println!();
            println!(
                "{}: a stream did not open: {failure}",
                run.transport.label()
            );
        }
    }
}
