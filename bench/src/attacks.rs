//! Misbehaving clients (`protogate-bench attacks`): one release gateway in front of the
//! benchmark backend, attacked in turn by clients that trickle, abandon, pipeline, reset, flood,
//! oversize, garble, idle and never read, while a paced client of unary calls measures its
//! latency and errors beside each attack (and alone first, for a baseline). The same calls go
//! straight to the backend at the same time, so that a row tells the backend's share of the
//! paced latency (the backend is one thread, and serves the attacker's streams too) from the
//! gateway's.
//!
//! Every attack is bounded in count and in time, and everything runs on 127.0.0.1. Each row
//! says what the gateway did, what the paced client saw, and the gateway's file descriptors and
//! resident memory before, at the peak and after.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{self, Calls, Error, Gateway, Paced, Usage, Via};

/// The gateway's config in every attack: its defaults, but for an idle limit on streams and a
/// send timeout of 10 s (60 s by default), which are what let go of a WebSocket or an event
/// stream whose client never reads.
pub(crate) const CONFIG: &str =
    "[server]\nsend_timeout = \"10s\"\n\n[gateway]\nstream_idle_timeout = \"10s\"\n";

/// Connections of the paced client, and the time between two calls on each.
const PACED_CONNECTIONS: usize = 4;
const PACED_EVERY: Duration = Duration::from_millis(10);

/// What one attack measured.
pub(crate) struct Row {
    pub(crate) attack: &'static str,
    /// What the gateway did to the attacker.
    pub(crate) outcome: String,
    /// The paced client during the attack.
    pub(crate) calls: Calls,
    /// The same calls straight to the backend at the same time: the part of the paced
    /// latency that is the backend's.
    pub(crate) direct: Calls,
    pub(crate) before: Usage,
    pub(crate) peak: Usage,
    pub(crate) after: Usage,
    /// The gateway's CPU seconds during the attack.
    pub(crate) cpu_seconds: f64,
    /// Connections the gateway opened to the upstream during the attack.
    pub(crate) upstream_connections: f64,
    /// What the gateway did that it must not (a 5xx, a hang, a connection left open).
    pub(crate) problem: Option<String>,
    /// The answers to invalid UTF-8, for their own table (that attack only).
    pub(crate) garbled: Vec<GarbledAnswer>,
}

/// What an attack reports: what the gateway did, and what it must not have done, if anything.
struct Outcome {
    said: String,
    problem: Option<String>,
    /// The invalid UTF-8 attack's answers, one per kind of request.
    garbled: Vec<GarbledAnswer>,
}

impl Outcome {
    fn fine(said: String) -> Outcome {
        Outcome::checked(said, None)
    }

    /// `said`, a problem when `wrong` is given.
    fn checked(said: String, wrong: Option<String>) -> Outcome {
        Outcome {
            said,
            problem: wrong,
            garbled: Vec::new(),
        }
    }
}

/// The attacks, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Attack {
    /// Request heads sent a byte every half second, never finished.
    SlowHeaders,
    /// A `content-length` body sent a byte every half second.
    SlowBody,
    /// Server streams read for 64 KiB, then the connection reset.
    Abandoned,
    /// A thousand requests written at once on one connection.
    Pipelined,
    /// HTTP/2 HEADERS then RST_STREAM, in a tight loop (CVE-2023-44487).
    RapidReset,
    /// HTTP/2 HEADERS without END_HEADERS, then CONTINUATION frames without end.
    ContinuationFlood,
    /// One 1 MiB request header.
    OversizedHeader,
    /// Invalid UTF-8 in the path, the query, a header and a JSON body.
    InvalidUtf8,
    /// 10,000 connections that send nothing, and more past the connection limit.
    IdleConnections,
    /// WebSockets on a fast server stream whose clients never read.
    DeafWebsockets,
    /// Server-Sent Events on a fast server stream whose clients never read.
    DeafEventStreams,
}

impl Attack {
    /// Every attack, in order.
    pub(crate) const ALL: [Attack; 11] = [
        Attack::SlowHeaders,
        Attack::SlowBody,
        Attack::Abandoned,
        Attack::Pipelined,
        Attack::RapidReset,
        Attack::ContinuationFlood,
        Attack::OversizedHeader,
        Attack::InvalidUtf8,
        Attack::IdleConnections,
        Attack::DeafWebsockets,
        Attack::DeafEventStreams,
    ];

    fn label(self) -> &'static str {
        match self {
            Attack::SlowHeaders => "slowloris, headers (200 conns, 1 B / 0.5 s)",
            Attack::SlowBody => "slowloris, body (200 conns, 1 B / 0.5 s)",
            Attack::Abandoned => "abandoned streams (read 64 KiB, reset; 16 at a time)",
            Attack::Pipelined => "pipelined HTTP/1.1 (1,000 requests per write)",
            Attack::RapidReset => "HTTP/2 rapid reset",
            Attack::ContinuationFlood => "HTTP/2 CONTINUATION flood",
            Attack::OversizedHeader => "one 1 MiB header",
            Attack::InvalidUtf8 => "invalid UTF-8",
            Attack::IdleConnections => "10,000 idle connections",
            Attack::DeafWebsockets => "WebSockets never read (64)",
            Attack::DeafEventStreams => "event streams never read (64)",
        }
    }

    async fn run(self, gateway: &Gateway, idle_connections: usize) -> Outcome {
        let address = gateway.address;
        match self {
            Attack::SlowHeaders => slowloris(address, Trickle::Head).await,
            Attack::SlowBody => slowloris(address, Trickle::Body).await,
            Attack::Abandoned => abandoned(address).await,
            Attack::Pipelined => pipelined(address).await,
            Attack::RapidReset => rapid_reset(address).await,
            Attack::ContinuationFlood => continuation_flood(address).await,
            Attack::OversizedHeader => oversized_header(address).await,
            Attack::InvalidUtf8 => invalid_utf8(address).await,
            Attack::IdleConnections => idle(gateway, idle_connections).await,
            Attack::DeafWebsockets => deaf(gateway, Deaf::WebSocket).await,
            Attack::DeafEventStreams => deaf(gateway, Deaf::EventStream).await,
        }
    }
}

/// Raises this process's limit of open files to its hard limit: the idle connections need a
/// socket each here and in the gateway, which inherits the limit.
pub(crate) fn raise_file_limit() -> Result<u64, Error> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit)?;
    Ok(limit.current.unwrap_or(u64::MAX))
}

/// Runs `attacks` against one gateway; the baseline first. Stops early if the gateway dies.
pub(crate) async fn run(
    protogate: &Path,
    attacks: &[Attack],
    idle_connections: usize,
) -> Result<Vec<Row>, Error> {
    let files = raise_file_limit()?;
    if files < idle_connections as u64 * 2 + 1_000 {
        eprintln!(
            "warning: {files} open files allowed: {idle_connections} idle connections need about twice as many"
        );
    }
    let backend = harness::start_backend().await?;
    let work = std::env::temp_dir().join(format!("protogate-bench-attacks-{}", std::process::id()));
    let mut gateway = Gateway::start(protogate, backend, 2, CONFIG, &work).await?;
    // The upstream connections and the routes' state are made before anything is measured.
    let warm = Paced::start(
        gateway.address,
        Via::Gateway,
        PACED_CONNECTIONS,
        PACED_EVERY,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    warm.finish().await;

    let mut rows = Vec::new();
    let baseline = measure(&gateway, backend, "none (baseline, 10 s)", async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Outcome::fine("-".to_owned())
    })
    .await;
    rows.push(baseline);
    for &attack in attacks {
        eprintln!("attack: {}…", attack.label());
        let row = measure(
            &gateway,
            backend,
            attack.label(),
            attack.run(&gateway, idle_connections),
        )
        .await;
        rows.push(row);
        if let Some(exit) = gateway.exited() {
            rows.push(Row {
                attack: "(the gateway)",
                outcome: format!("exited: {exit}"),
                calls: Calls::default(),
                direct: Calls::default(),
                before: Usage::default(),
                peak: Usage::default(),
                after: Usage::default(),
                cpu_seconds: 0.0,
                upstream_connections: 0.0,
                problem: Some(format!("the gateway exited ({exit})")),
                garbled: Vec::new(),
            });
            break;
        }
    }
    eprintln!("the gateway's log: {}", gateway.log.display());
    Ok(rows)
}

/// Runs `attack` with the paced client beside it, through the gateway and straight to
/// `backend`, and the gateway's figures around it.
async fn measure(
    gateway: &Gateway,
    backend: SocketAddr,
    label: &'static str,
    attack: impl Future<Output = Outcome>,
) -> Row {
    let opened = "protogate_upstream_connections_opened_total";
    let before = gateway.usage();
    let upstream_before = gateway.metric(opened).await;
    let cpu_before = crate::cpu_seconds(&gateway.pid());
    let paced = Paced::start(
        gateway.address,
        Via::Gateway,
        PACED_CONNECTIONS,
        PACED_EVERY,
    );
    let direct = Paced::start(backend, Via::Backend, PACED_CONNECTIONS, PACED_EVERY);
    let (outcome, peak) = harness::peak_while(gateway, attack).await;
    let calls = paced.finish().await;
    let direct = direct.finish().await;
    let cpu_seconds = crate::cpu_seconds(&gateway.pid()) - cpu_before;
    // What the attack left behind once the gateway has had a moment to close it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = gateway.usage();
    Row {
        attack: label,
        outcome: outcome.said,
        calls,
        direct,
        before,
        peak,
        after,
        cpu_seconds,
        upstream_connections: gateway.metric(opened).await - upstream_before,
        problem: outcome.problem,
        garbled: outcome.garbled,
    }
}

/// Slow connections at once, the time between two bytes, and the longest an attack waits.
const SLOW_CONNECTIONS: usize = 200;
const SLOW_BYTE_EVERY: Duration = Duration::from_millis(500);
const SLOW_LIMIT: Duration = Duration::from_secs(75);

/// What a slowloris trickles.
#[derive(Clone, Copy)]
enum Trickle {
    /// The request head, never finished.
    Head,
    /// A body whose head said it is 1 MB long.
    Body,
}

/// How a trickled connection ended.
struct Trickled {
    /// When the gateway closed it, if it did within the limit.
    closed_after: Option<Duration>,
    /// The status it answered first, if any.
    status: Option<u16>,
}

/// [`SLOW_CONNECTIONS`] connections trickling a byte every [`SLOW_BYTE_EVERY`]; how long the
/// gateway took to close them.
async fn slowloris(address: SocketAddr, what: Trickle) -> Outcome {
    let (upfront, start, repeat): (&[u8], &[u8], &[u8]) = match what {
        Trickle::Head => (b"", b"GET /v1/echo HTTP/1.1\r\nhost: 127.0.0.1\r\n", b"x-slow: a\r\n"),
        Trickle::Body => (
            b"POST /v1/echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n",
            b"{\"id\":\"",
            b"a",
        ),
    };
    let ends = futures_util::future::join_all(
        (0..SLOW_CONNECTIONS).map(|_| trickle(address, upfront, start, repeat)),
    )
    .await;
    let mut closed: Vec<Duration> = ends.iter().filter_map(|end| end.closed_after).collect();
    closed.sort_unstable();
    let mut statuses = std::collections::BTreeMap::new();
    for end in &ends {
        *statuses.entry(end.status).or_insert(0usize) += 1;
    }
    let answered: Vec<String> = statuses
        .iter()
        .map(|(status, count)| match status {
            Some(status) => format!("{count} × {status}"),
            None => format!("{count} × no answer"),
        })
        .collect();
    let said = match (closed.first(), closed.last()) {
        (Some(first), Some(last)) => format!(
            "{} of {} closed after {:.1}–{:.1} s; answered {}",
            closed.len(),
            ends.len(),
            first.as_secs_f64(),
            last.as_secs_f64(),
            answered.join(", ")
        ),
        _ => format!(
            "none of {} closed in {} s",
            ends.len(),
            SLOW_LIMIT.as_secs()
        ),
    };
    let open = ends.len() - closed.len();
    let wrong = (open > 0).then(|| format!("{open} trickling connections still open"));
    Outcome::checked(said, wrong)
}

/// One connection: `upfront` at once, then `start` and `repeat` over and over, a byte at a time.
async fn trickle(address: SocketAddr, upfront: &[u8], start: &[u8], repeat: &[u8]) -> Trickled {
    let mut ended = Trickled {
        closed_after: None,
        status: None,
    };
    let Ok(mut tcp) = tokio::net::TcpStream::connect(address).await else {
        ended.closed_after = Some(Duration::ZERO);
        return ended;
    };
    let opened = Instant::now();
    if tcp.write_all(upfront).await.is_err() {
        ended.closed_after = Some(opened.elapsed());
        return ended;
    }
    let mut bytes = start.iter().chain(repeat.iter().cycle());
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    let mut next_byte = tokio::time::interval(SLOW_BYTE_EVERY);
    while opened.elapsed() < SLOW_LIMIT {
        tokio::select! {
            read = tcp.read(&mut chunk) => match read {
                Ok(0) | Err(_) => {
                    ended.closed_after = Some(opened.elapsed());
                    break;
                }
                Ok(read) => {
                    answer.extend_from_slice(&chunk[..read]);
                    if ended.status.is_none() {
                        ended.status = status_of(&answer);
                    }
                }
            },
            _ = next_byte.tick() => {
                let byte = bytes.next().copied().unwrap_or(b'a');
                if tcp.write_all(&[byte]).await.is_err() {
                    ended.closed_after = Some(opened.elapsed());
                    break;
                }
            }
        }
    }
    ended
}

/// The status code of an HTTP/1.1 answer's first line, once it has arrived.
fn status_of(answer: &[u8]) -> Option<u16> {
    let line_end = harness::find(answer, b"\r\n")?;
    std::str::from_utf8(&answer[..line_end])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Abandoned streams in all, at once, and how much of each is read first.
const ABANDONED: usize = 2_000;
const ABANDONED_AT_ONCE: usize = 16;
const ABANDONED_READ: usize = 64 * 1024;
const ABANDONED_LIMIT: Duration = Duration::from_secs(60);

/// Server streams of a million messages, each read for 64 KiB and then reset; whether every
/// call upstream was cancelled with its client.
async fn abandoned(address: SocketAddr) -> Outcome {
    let started = Instant::now();
    let request = format!("GET /v1/streams/1000000 HTTP/1.1\r\nhost: {address}\r\n\r\n");
    let mut outcomes = futures_util::stream::iter(0..ABANDONED)
        .map(|_| abandon(address, request.as_bytes()))
        .buffer_unordered(ABANDONED_AT_ONCE);
    let (mut done, mut failed, mut first_failure) = (0usize, 0usize, None);
    let deadline = tokio::time::Instant::from_std(started + ABANDONED_LIMIT);
    while let Ok(Some(outcome)) = tokio::time::timeout_at(deadline, outcomes.next()).await {
        match outcome {
            Ok(()) => done += 1,
            Err(why) => {
                failed += 1;
                first_failure.get_or_insert(why);
            }
        }
    }
    drop(outcomes);
    let seconds = started.elapsed().as_secs_f64();
    // A call whose client went away is cancelled upstream: the backend's streams end.
    let mut open = protogate_bench::open_streams();
    for _ in 0..50 {
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = protogate_bench::open_streams();
    }
    let mut said =
        format!("{done} abandoned in {seconds:.1} s; backend streams still open after: {open}");
    if let Some(why) = &first_failure {
        said.push_str(&format!("; {failed} failed, the first: {why}"));
    }
    let wrong = if open > 0 {
        Some(format!("{open} upstream streams outlived their clients"))
    } else if done == 0 {
        Some("no stream was opened".to_owned())
    } else {
        None
    };
    Outcome::checked(said, wrong)
}

/// A connection to `address` whose receive buffer (the window it offers) is `window` bytes.
async fn connect_with_window(
    address: SocketAddr,
    window: u32,
) -> Result<tokio::net::TcpStream, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    let _ = socket.set_recv_buffer_size(window);
    socket
        .connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))
}

/// Reads a stream for [`ABANDONED_READ`] bytes, then resets the connection.
async fn abandon(address: SocketAddr, request: &[u8]) -> Result<(), String> {
    // A small window, as a mobile client's: the gateway meets backpressure soon.
    let mut tcp = connect_with_window(address, 64 * 1024).await?;
    tcp.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut read_so_far = 0;
    let mut chunk = [0u8; 16 * 1024];
    let reading = async {
        while read_so_far < ABANDONED_READ {
            match tcp.read(&mut chunk).await {
                Ok(0) => return Err(format!("closed after {read_so_far} bytes")),
                Ok(read) => {
                    if read_so_far == 0 && !chunk.starts_with(b"HTTP/1.1 200") {
                        let answer = String::from_utf8_lossy(&chunk[..read]);
                        return Err(format!(
                            "answered {}",
                            answer.lines().next().unwrap_or_default()
                        ));
                    }
                    read_so_far += read;
                }
                Err(error) => return Err(format!("read: {error}")),
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .map_err(|_| "64 KiB took over 10 s".to_owned())??;
    // Reset rather than closed: what a client that crashes or loses its network looks like.
    let _ = tcp.set_zero_linger();
    drop(tcp);
    Ok(())
}

/// Pipelined connections, one after another, and the requests written at once on each.
const PIPELINES: usize = 20;
const PIPELINED: usize = 1_000;

/// [`PIPELINED`] lookups in one write on each of [`PIPELINES`] connections; whether every one
/// is answered, in order.
async fn pipelined(address: SocketAddr) -> Outcome {
    let (mut in_order, mut wrong) = (0usize, None);
    for connection in 0..PIPELINES {
        let requests: Vec<u8> = (0..PIPELINED)
            .flat_map(|item| {
                format!(
                    "GET /v1/users/p{connection}/items/{item} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
                )
                .into_bytes()
            })
            .collect();
        let exchange = async {
            let mut tcp = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (mut reader, mut writer) = tcp.split();
            let write = writer.write_all(&requests);
            let read = async {
                let mut buffer = Vec::new();
                let mut answered = 0;
                for item in 0..PIPELINED {
                    let answer = harness::read_answer(&mut reader, &mut buffer).await?;
                    let id = format!("\"id\":\"p{connection}/{item}\"");
                    if answer.status != 200 || harness::find(&answer.body, id.as_bytes()).is_none()
                    {
                        return Err(format!(
                            "request {item} answered {}: {}",
                            answer.status,
                            String::from_utf8_lossy(&answer.body)
                        ));
                    }
                    answered += 1;
                }
                Ok::<usize, String>(answered)
            };
            let (written, answered) = tokio::join!(write, read);
            written.map_err(|e| format!("write: {e}"))?;
            answered
        };
        match tokio::time::timeout(Duration::from_secs(30), exchange).await {
            Ok(Ok(answered)) => in_order += answered,
            Ok(Err(why)) => {
                wrong = Some(why);
                break;
            }
            Err(_) => {
                wrong = Some("a pipeline took over 30 s".to_owned());
                break;
            }
        }
    }
    Outcome::checked(
        format!(
            "{in_order} of {} answered 200, in order",
            PIPELINES * PIPELINED
        ),
        wrong,
    )
}

/// Resets sent in all at most, and the longest the attack lasts.
const RESETS: usize = 200_000;
const RESET_LIMIT: Duration = Duration::from_secs(20);

/// HTTP/2 connections sending a request and resetting it at once, over and over; how many
/// resets the gateway takes before it closes a connection, and why it does.
async fn rapid_reset(address: SocketAddr) -> Outcome {
    let started = Instant::now();
    let (mut sent, mut connections) = (0usize, 0usize);
    let mut endings = std::collections::BTreeMap::<String, usize>::new();
    let mut per_connection = Vec::new();
    while sent < RESETS && started.elapsed() < RESET_LIMIT {
        connections += 1;
        let (resets, ending) = reset_one_connection(address, RESETS - sent, started).await;
        sent += resets;
        per_connection.push(resets);
        *endings.entry(ending).or_default() += 1;
        if resets == 0 {
            break;
        }
    }
    per_connection.sort_unstable();
    let median = per_connection
        .get(per_connection.len() / 2)
        .copied()
        .unwrap_or(0);
    let endings: Vec<String> = endings
        .into_iter()
        .map(|(ending, count)| format!("{count} × {ending}"))
        .collect();
    Outcome::fine(format!(
        "{sent} resets on {connections} conns in {:.1} s (median {median} a conn); conns ended: {}",
        started.elapsed().as_secs_f64(),
        endings.join(", ")
    ))
}

/// One connection of [`rapid_reset`]: resets sent, and how the connection ended.
async fn reset_one_connection(
    address: SocketAddr,
    most: usize,
    started: Instant,
) -> (usize, String) {
    let Ok(tcp) = tokio::net::TcpStream::connect(address).await else {
        return (0, "not connected".to_owned());
    };
    let Ok((mut client, connection)) = h2::client::handshake(tcp).await else {
        return (0, "no HTTP/2 handshake".to_owned());
    };
    let mut driver = tokio::spawn(connection);
    let mut sent = 0;
    let ending = loop {
        if sent >= most || started.elapsed() >= RESET_LIMIT {
            break "still open at the attack's end".to_owned();
        }
        if driver.is_finished() {
            break "closed".to_owned();
        }
        match tokio::time::timeout(Duration::from_secs(2), client.clone().ready()).await {
            Ok(Ok(ready)) => client = ready,
            Ok(Err(error)) => break ending_of(&error),
            Err(_) => break "no stream capacity for 2 s".to_owned(),
        }
        let request = http::Request::get(format!("http://{address}/v1/users/u/items/{sent}"))
            .body(())
            .unwrap_or_default();
        match client.send_request(request, true) {
            Ok((_response, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(error) => break ending_of(&error),
        }
        // Other tasks (the driver among them) run between two resets.
        if sent % 64 == 0 {
            tokio::task::yield_now().await;
        }
    };
    // How the connection itself ended, when it did.
    let ending = match tokio::time::timeout(Duration::from_millis(500), &mut driver).await {
        Ok(Ok(Err(error))) => ending_of(&error),
        Ok(Ok(Ok(()))) if ending == "closed" => "closed cleanly".to_owned(),
        _ => ending,
    };
    driver.abort();
    (sent, ending)
}

/// How an h2 error ended a connection.
fn ending_of(error: &h2::Error) -> String {
    match error.reason() {
        Some(reason) if error.is_go_away() => format!("GOAWAY {reason:?}"),
        Some(reason) => format!("reset {reason:?}"),
        None if error.is_io() => "closed (I/O error)".to_owned(),
        None => format!("{error}"),
    }
}

/// CONTINUATION floods, one connection after another, and the most each may send.
const FLOODS: usize = 10;
const FLOOD_BYTES: usize = 64 * 1024 * 1024;
const FLOOD_LIMIT: Duration = Duration::from_secs(10);

/// The HTTP/2 frame types the flood writes and reads.
const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_GOAWAY: u8 = 0x7;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;

/// One HTTP/2 frame: its 9-byte header, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    let mut frame = Vec::with_capacity(9 + payload.len());
    frame.extend_from_slice(&length[1..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// HEADERS without END_HEADERS, then CONTINUATION frames (each full of small literal headers)
/// until the gateway closes the connection or the flood's bounds; how far each flood got.
async fn continuation_flood(address: SocketAddr) -> Outcome {
    let mut endings = Vec::new();
    let mut wrong = None;
    for _ in 0..FLOODS {
        match flood_one(address).await {
            Ok(ending) => endings.push(ending),
            Err(why) => {
                wrong = Some(why);
                break;
            }
        }
    }
    let most = endings.iter().map(|e| e.bytes).max().unwrap_or(0);
    let slowest = endings.iter().map(|e| e.seconds).fold(0.0, f64::max);
    let goaway: std::collections::BTreeSet<String> =
        endings.iter().map(|e| e.goaway.clone()).collect();
    let open = endings.iter().filter(|e| !e.closed).count();
    if open > 0 && wrong.is_none() {
        wrong = Some(format!("{open} floods still open at their bounds"));
    }
    Outcome::checked(
        format!(
            "{} floods closed after ≤ {} KiB, ≤ {slowest:.2} s; {}",
            endings.len() - open,
            most / 1024,
            goaway.into_iter().collect::<Vec<_>>().join(", ")
        ),
        wrong,
    )
}

/// How one CONTINUATION flood ended.
struct Flooded {
    /// Header block bytes written before the connection closed.
    bytes: usize,
    seconds: f64,
    closed: bool,
    /// The GOAWAY the gateway sent, if any.
    goaway: String,
}

async fn flood_one(address: SocketAddr) -> Result<Flooded, String> {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut reader, mut writer) = tcp.into_split();
    let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    opening.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
    // :method GET, :scheme http, :path / (HPACK static table entries 2, 6 and 4).
    opening.extend(frame(
        FRAME_HEADERS,
        FLAG_END_STREAM,
        1,
        &[0x82, 0x86, 0x84],
    ));
    writer
        .write_all(&opening)
        .await
        .map_err(|e| format!("write: {e}"))?;
    // A literal header without indexing, a new name: "x-flood: " and 100 bytes.
    let mut field = vec![0x00, 7];
    field.extend_from_slice(b"x-flood");
    field.push(100);
    field.extend_from_slice(&[b'a'; 100]);
    let block: Vec<u8> = field
        .iter()
        .copied()
        .cycle()
        .take(field.len() * (16_000 / field.len()))
        .collect();
    let continuation = frame(FRAME_CONTINUATION, 0, 1, &block);

    // The gateway's frames, read until it closes: its GOAWAY's code, if it sends one.
    let read_frames = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => received.extend_from_slice(&chunk[..read]),
            }
        }
        goaway_code(&received)
    });
    let started = Instant::now();
    let mut sent = 0;
    while sent < FLOOD_BYTES && started.elapsed() < FLOOD_LIMIT && !read_frames.is_finished() {
        if writer.write_all(&continuation).await.is_err() {
            break;
        }
        sent += block.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        // The flood stopped, the write side shut: a gateway still waiting for END_HEADERS has
        // not closed it.
        while !read_frames.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .is_ok()
        && (sent < FLOOD_BYTES && started.elapsed() < FLOOD_LIMIT + Duration::from_secs(2));
    let goaway = if read_frames.is_finished() {
        read_frames
            .await
            .ok()
            .flatten()
            .map_or("closed without GOAWAY".to_owned(), |code| {
                format!("GOAWAY {:?}", h2::Reason::from(code))
            })
    } else {
        read_frames.abort();
        "no GOAWAY".to_owned()
    };
    Ok(Flooded {
        bytes: sent,
        seconds,
        closed,
        goaway,
    })
}

/// The error code of the first GOAWAY among HTTP/2 frames `received` (after no preface: a
/// server sends none).
fn goaway_code(received: &[u8]) -> Option<u32> {
    let mut at = 0;
    while received.len() >= at + 9 {
        let length = usize::from(received[at]) << 16
            | usize::from(received[at + 1]) << 8
            | usize::from(received[at + 2]);
        let kind = received[at + 3];
        let payload = received.get(at + 9..at + 9 + length)?;
        if kind == FRAME_GOAWAY && payload.len() >= 8 {
            return Some(u32::from_be_bytes([
                payload[4], payload[5], payload[6], payload[7],
            ]));
        }
        at += 9 + length;
    }
    None
}

/// Requests with a 1 MiB header, one after another.
const OVERSIZED: usize = 20;

/// [`OVERSIZED`] requests each with a 1 MiB header; what the gateway answered.
async fn oversized_header(address: SocketAddr) -> Outcome {
    let mut request = b"GET /v1/users/u/items/1 HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    request.extend_from_slice(b"\r\n\r\n");
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    let mut wrong = None;
    for _ in 0..OVERSIZED {
        let answer = async {
            let mut tcp = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (mut reader, mut writer) = tcp.split();
            // The gateway may answer and close before the header has all been written.
            let (_, answer) = tokio::join!(writer.write_all(&request), async {
                let mut buffer = Vec::new();
                harness::read_answer(&mut reader, &mut buffer).await
            });
            answer
        };
        let said = match tokio::time::timeout(Duration::from_secs(10), answer).await {
            Ok(Ok(answer)) => {
                if answer.status >= 500 {
                    wrong = Some(format!("answered {}", answer.status));
                }
                format!("{}", answer.status)
            }
            Ok(Err(why)) if why.starts_with("closed without") || why.starts_with("read") => {
                "closed".to_owned()
            }
            Ok(Err(why)) => why,
            Err(_) => {
                wrong = Some("no answer within 10 s".to_owned());
                "hung".to_owned()
            }
        };
        *answers.entry(said).or_default() += 1;
    }
    let said: Vec<String> = answers
        .into_iter()
        .map(|(said, count)| format!("{count} × {said}"))
        .collect();
    Outcome::checked(format!("answered {}", said.join(", ")), wrong)
}

/// One invalid UTF-8 request: where the bad bytes are, and the request.
struct Garbled {
    label: &'static str,
    request: Vec<u8>,
}

/// The invalid UTF-8 requests.
fn garbled() -> Vec<Garbled> {
    let get = |target: &[u8], header: &[u8]| {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(b" HTTP/1.1\r\nhost: 127.0.0.1\r\n");
        request.extend_from_slice(header);
        request.extend_from_slice(b"connection: close\r\n\r\n");
        request
    };
    let post = |body: &[u8]| {
        let mut request = format!(
            "POST /v1/echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    };
    vec![
        Garbled {
            label: "path variable, percent-encoded (%FF%FE)",
            request: get(b"/v1/users/%FF%FE/items/1", b""),
        },
        Garbled {
            label: "path, raw bytes (0xFF 0xFE)",
            request: get(b"/v1/users/\xFF\xFE/items/1", b""),
        },
        Garbled {
            label: "query value, percent-encoded (%FF%FE)",
            request: get(b"/v1/users/u/items/1?tag=%FF%FE", b""),
        },
        Garbled {
            label: "query value, raw bytes",
            request: get(b"/v1/users/u/items/1?tag=\xFF\xFE", b""),
        },
        Garbled {
            label: "header value, forwarded as metadata (Grpc-Metadata-note)",
            request: get(b"/v1/users/u/items/1", b"grpc-metadata-note: \xFF\xFE\r\n"),
        },
        Garbled {
            label: "header value, Grpc-Timeout",
            request: get(b"/v1/users/u/items/1", b"grpc-timeout: \xFF\xFE\r\n"),
        },
        Garbled {
            label: "JSON body, raw bytes in a string",
            request: post(b"{\"id\":\"\xFF\xFE\"}"),
        },
        Garbled {
            label: "JSON body, a lone surrogate escaped (\\ud800)",
            request: post(b"{\"id\":\"\\ud800\"}"),
        },
    ]
}

/// Times each invalid request is sent.
const GARBLED_TIMES: usize = 20;

/// What the gateway answered one invalid UTF-8 request.
pub(crate) struct GarbledAnswer {
    pub(crate) label: &'static str,
    /// What it answered, each way it answered it.
    pub(crate) answers: String,
    pub(crate) acceptable: bool,
}

/// Every invalid UTF-8 request, [`GARBLED_TIMES`] times each. Acceptable: a 400 whose body is
/// a google.rpc.Status (`code` 3). Anything else is shown as it came; a 5xx or no answer is a
/// problem.
async fn invalid_utf8(address: SocketAddr) -> Outcome {
    let mut answered = Vec::new();
    let mut wrong = None;
    for case in garbled() {
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for _ in 0..GARBLED_TIMES {
            let said = match harness::exchange(address, &case.request, Duration::from_secs(5)).await
            {
                Ok(answer) => {
                    let status: Option<serde_json::Value> =
                        serde_json::from_slice(&answer.body).ok();
                    let code = status.as_ref().and_then(|s| s.get("code")?.as_i64());
                    if answer.status >= 500 {
                        wrong = Some(format!("{}: answered {}", case.label, answer.status));
                    }
                    match code {
                        Some(code) => format!("{} Status code {code}", answer.status),
                        None if answer.body.is_empty() => format!("{}, no body", answer.status),
                        None => format!(
                            "{}: {}",
                            answer.status,
                            String::from_utf8_lossy(&answer.body)
                                .chars()
                                .take(60)
                                .collect::<String>()
                        ),
                    }
                }
                Err(why) if why.starts_with("no answer") => {
                    wrong = Some(format!("{}: {why}", case.label));
                    "hung".to_owned()
                }
                Err(why) => why,
            };
            *kinds.entry(said).or_default() += 1;
        }
        let acceptable = kinds.len() == 1 && kinds.contains_key("400 Status code 3");
        answered.push(GarbledAnswer {
            label: case.label,
            answers: kinds
                .into_iter()
                .map(|(said, count)| format!("{count} × {said}"))
                .collect::<Vec<_>>()
                .join(", "),
            acceptable,
        });
    }
    let good = answered.iter().filter(|a| a.acceptable).count();
    let mut said = format!(
        "{good} of {} kinds answered 400 + google.rpc.Status every time",
        answered.len()
    );
    for answer in answered.iter().filter(|a| !a.acceptable) {
        said.push_str(&format!("; {}: {}", answer.label, answer.answers));
    }
    Outcome {
        garbled: answered,
        ..Outcome::checked(said, wrong)
    }
}

/// Connections past the limit, opened once the idle ones are, each sending a request.
const PAST_THE_LIMIT: usize = 100;
/// The longest idle connections are watched for the gateway to close them.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// `count` connections that send nothing, then [`PAST_THE_LIMIT`] more that ask for something;
/// what the latter are answered and when the gateway closes the former.
async fn idle(gateway: &Gateway, count: usize) -> Outcome {
    let address = gateway.address;
    // The paced client's connections are open by now: they are in the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base_fds = gateway.usage().fds;
    let started = Instant::now();
    let watch = |tcp: tokio::net::TcpStream| {
        tokio::spawn(async move {
            let opened = Instant::now();
            let mut tcp = tcp;
            let mut chunk = [0u8; 256];
            let closed = tokio::time::timeout(IDLE_LIMIT, async {
                loop {
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            closed.ok().map(|()| opened.elapsed())
        })
    };
    let mut opening = futures_util::stream::iter(0..count)
        .map(|_| tokio::net::TcpStream::connect(address))
        .buffer_unordered(256);
    let mut watched = Vec::with_capacity(count);
    let mut not_connected = 0usize;
    while let Some(connected) = opening.next().await {
        match connected {
            Ok(tcp) => watched.push(watch(tcp)),
            Err(_) => not_connected += 1,
        }
        if started.elapsed() > IDLE_LIMIT {
            break;
        }
    }
    drop(opening);
    let opened_in = started.elapsed().as_secs_f64();
    // The gateway's figures with them all open (the acceptor has dealt them by now).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = gateway.usage();

    let request = b"GET /v1/users/u/items/1 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    let past = futures_util::future::join_all(
        (0..PAST_THE_LIMIT).map(|_| harness::exchange(address, request, Duration::from_secs(5))),
    )
    .await;
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    let mut hung = 0;
    for answer in past {
        let said = match answer {
            Ok(answer) => {
                let retry = if answer.head.to_ascii_lowercase().contains("retry-after") {
                    " + Retry-After"
                } else {
                    ""
                };
                format!("{}{retry}", answer.status)
            }
            Err(why) if why.starts_with("no answer") => {
                hung += 1;
                "no answer in 5 s".to_owned()
            }
            Err(_) => "closed".to_owned(),
        };
        *answers.entry(said).or_default() += 1;
    }

    let mut closed_after = Vec::new();
    for task in watched {
        if let Ok(Some(after)) = task.await {
            closed_after.push(after);
        }
    }
    closed_after.sort_unstable();
    let (early, late): (Vec<Duration>, Vec<Duration>) = closed_after
        .iter()
        .partition(|after| **after < Duration::from_secs(5));
    let answers: Vec<String> = answers
        .into_iter()
        .map(|(said, count)| format!("{count} × {said}"))
        .collect();
    let still_open = count - not_connected - closed_after.len();
    // Connections the client counts as open that the gateway never accepted (its descriptors
    // tell): lost in the kernel's accept queue, which a flood of connects overflows.
    let unseen = (count - not_connected).saturating_sub(held.fds.saturating_sub(base_fds));
    let said = format!(
        "{} open in {opened_in:.1} s (gateway {} fds, {:.0} MiB); next {PAST_THE_LIMIT}: {}; \
         idle closed after {:.1}–{:.1} s ({} within 5 s){}",
        count - not_connected,
        held.fds,
        held.rss_mib(),
        answers.join(", "),
        late.first().map_or(0.0, Duration::as_secs_f64),
        late.last().map_or(0.0, Duration::as_secs_f64),
        early.len(),
        if still_open > 0 {
            format!(
                "; {still_open} still open after {} s ({unseen} never accepted by the gateway)",
                IDLE_LIMIT.as_secs()
            )
        } else {
            String::new()
        }
    );
    let wrong = if hung > 0 {
        Some(format!("{hung} connections past the limit got no answer"))
    } else if still_open > unseen {
        Some(format!("{still_open} idle connections never closed"))
    } else {
        None
    };
    Outcome::checked(said, wrong)
}

/// Clients that never read, how long they are held, and the receive buffer of each.
const DEAF: usize = 64;
const DEAF_HOLD: Duration = Duration::from_secs(30);
const DEAF_RECEIVE_BUFFER: u32 = 64 * 1024;

/// How a deaf client asks for its stream.
#[derive(Clone, Copy)]
enum Deaf {
    WebSocket,
    /// `Accept: text/event-stream` over HTTP/1.1.
    EventStream,
}

impl Deaf {
    /// A client of this kind on a server stream of a million messages, its stream asked for
    /// and nothing read; whatever it holds is dropped to close it.
    async fn open(self, address: SocketAddr) -> Result<Box<dyn Send>, String> {
        let mut tcp = connect_with_window(address, DEAF_RECEIVE_BUFFER).await?;
        match self {
            Deaf::WebSocket => {
                let (socket, _) = tokio_tungstenite::client_async(
                    format!("ws://{address}/v1/streams/1000000"),
                    tcp,
                )
                .await
                .map_err(|e| format!("WebSocket: {e}"))?;
                Ok(Box::new(socket))
            }
            Deaf::EventStream => {
                let request = format!(
                    "GET /v1/streams/1000000 HTTP/1.1\r\nhost: {address}\r\naccept: text/event-stream\r\n\r\n"
                );
                tcp.write_all(request.as_bytes())
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                Ok(Box::new(tcp))
            }
        }
    }
}

/// [`DEAF`] clients of one kind on a server stream of a million messages, none of them ever
/// read; when the gateway lets go of them (its file descriptors back where they were), and its
/// memory meanwhile.
async fn deaf(gateway: &Gateway, kind: Deaf) -> Outcome {
    let address = gateway.address;
    // The paced client's connections are open by now: they are in the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = gateway.usage();
    let mut sockets = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..DEAF {
        match tokio::time::timeout(Duration::from_secs(5), kind.open(address)).await {
            Ok(Ok(socket)) => sockets.push(socket),
            Ok(Err(why)) => failures.push(why),
            Err(_) => failures.push("opening took over 5 s".to_owned()),
        }
    }
    let opened = sockets.len();
    let started = Instant::now();
    let mut peak = gateway.usage();
    let mut let_go = None;
    while started.elapsed() < DEAF_HOLD {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = gateway.usage();
        peak = peak.max(now);
        if now.fds <= before.fds + 2 {
            let_go = Some(started.elapsed());
            break;
        }
    }
    let held = gateway.usage();
    drop(sockets);
    let mut said = format!(
        "{opened} opened; held at most {} fds, {:.0} MiB; ",
        peak.fds,
        peak.rss_mib()
    );
    match let_go {
        Some(after) => said.push_str(&format!(
            "the gateway closed them all {:.1} s after the last opened",
            after.as_secs_f64()
        )),
        None => said.push_str(&format!(
            "still {} fds open after {} s",
            held.fds,
            DEAF_HOLD.as_secs()
        )),
    }
    if let Some(first) = failures.first() {
        said.push_str(&format!("; {} failed to open: {first}", failures.len()));
    }
    let wrong = let_go
        .is_none()
        .then(|| format!("deaf clients held past {} s", DEAF_HOLD.as_secs()));
    Outcome::checked(said, wrong)
}

/// The markdown table of an attacks run, then the invalid UTF-8 answers.
pub(crate) fn print_table(rows: &[Row]) {
    let garbled: Vec<&GarbledAnswer> = rows.iter().flat_map(|row| &row.garbled).collect();
    println!(
        "### Misbehaving clients, one gateway (2 workers), a paced client beside each attack ({PACED_CONNECTIONS} connections, a call every {} ms on each), and the same calls straight to the backend at the same time",
        PACED_EVERY.as_millis()
    );
    println!();
    println!(
        "| attack | what the gateway did | paced p50 ms | paced p99 ms | backend alone p50 ms | backend alone p99 ms | paced calls | paced errors | fds before / peak / after | RSS MiB before / peak / after | gateway CPU s | upstream conns opened |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} / {} / {} | {:.1} / {:.1} / {:.1} | {:.1} | {} |",
            row.attack,
            row.outcome.replace('|', "\\|").replace(['\r', '\n'], " "),
            row.calls.quantile_ms(0.50),
            row.calls.quantile_ms(0.99),
            row.direct.quantile_ms(0.50),
            row.direct.quantile_ms(0.99),
            row.calls.latencies_us.len(),
            row.calls.errors,
            row.before.fds,
            row.peak.fds,
            row.after.fds,
            row.before.rss_mib(),
            row.peak.rss_mib(),
            row.after.rss_mib(),
            row.cpu_seconds,
            row.upstream_connections,
        );
    }
    if !garbled.is_empty() {
        println!();
        println!("#### Invalid UTF-8, each request {GARBLED_TIMES} times");
        println!();
        println!("| where | answered |");
        println!("|---|---|");
        for answer in garbled {
            println!(
                "| {} | {} |",
                answer.label,
                answer.answers.replace('|', "\\|")
            );
        }
    }
    for row in rows {
        for error in &row.calls.first_errors {
            println!();
            println!("{}: the paced client's error: {error}", row.attack);
        }
        for error in &row.direct.first_errors {
            println!();
            println!(
                "{}: the paced client's error straight to the backend: {error}",
                row.attack
            );
        }
    }
}

/// Why the run failed, if it did: the gateway died, the paced client saw errors, or an attack
/// got what it must not.
pub(crate) fn failures(rows: &[Row]) -> Vec<String> {
    let mut failures = Vec::new();
    for row in rows {
        if row.calls.errors > 0 {
            failures.push(format!(
                "{}: {} paced call(s) failed",
                row.attack, row.calls.errors
            ));
        }
        if let Some(problem) = &row.problem {
            failures.push(format!("{}: {problem}", row.attack));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_has_its_length_type_flags_and_stream() {
        let frame = frame(FRAME_CONTINUATION, 0x4, 3, b"abc");
        assert_eq!(frame, [0, 0, 3, 9, 4, 0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn the_goaway_code_is_found_after_other_frames() {
        let mut received = frame(FRAME_SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        received.extend(frame(FRAME_GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 11]));
        assert_eq!(goaway_code(&received), Some(11));
        assert_eq!(goaway_code(&received[..10]), None);
    }

    #[test]
    fn a_status_is_read_once_its_line_is_whole() {
        assert_eq!(status_of(b"HTTP/1.1 408 Request Timeout\r\n"), Some(408));
        assert_eq!(status_of(b"HTTP/1.1 40"), None);
    }
}
