//! What the attack and soak commands share: one release gateway in front of the benchmark
//! backend (served in this process), watched through `/proc` and its own `/metrics`; a paced
//! client of unary calls that measures latency beside whatever else is going on; and a reader of
//! raw HTTP/1.1 answers for the requests no well-behaved client would send.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use protogate_bench::pb::bench::v1::bench_service_client::BenchServiceClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Why a command could not run.
pub(crate) type Error = Box<dyn std::error::Error>;

/// Serves the benchmark backend in this process on a free port, on a runtime and thread of its
/// own (so that its busy streams do not delay the harness's clients' tasks); its address once
/// it listens. It serves until the process ends.
pub(crate) async fn start_backend() -> Result<SocketAddr, Error> {
    let backend = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("backend".to_owned())
        .spawn(move || runtime.block_on(protogate_bench::serve_backend(backend, None)))?;
    crate::wait_for("the backend", backend).await?;
    Ok(backend)
}

/// A running gateway: the release binary with a config file of the caller's, its log in a file.
pub(crate) struct Gateway {
    /// Where it serves, on 127.0.0.1.
    pub(crate) address: SocketAddr,
    /// Its admin listener (`/metrics`).
    admin: SocketAddr,
    /// The config file it was started with, which a reload reads again.
    pub(crate) config: PathBuf,
    /// Its standard error: start, reloads, warnings.
    pub(crate) log: PathBuf,
    process: crate::Proc,
}

impl Gateway {
    /// Starts `protogate` with `workers` worker threads in front of `backend`, its config file
    /// `config` written under `work`; returns once it listens.
    pub(crate) async fn start(
        protogate: &Path,
        backend: SocketAddr,
        workers: usize,
        config: &str,
        work: &Path,
    ) -> Result<Gateway, Error> {
        std::fs::create_dir_all(work)?;
        let config_path = work.join("protogate.toml");
        std::fs::write(&config_path, config)?;
        let log = work.join("protogate.log");
        let address = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
        let child = Command::new(protogate)
            .args([
                "serve",
                "--listen",
                &address.to_string(),
                "--admin",
                &admin.to_string(),
                "--workers",
                &workers.to_string(),
                "--upstream",
                &format!("http://{backend}"),
                "--config",
                &config_path.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let gateway = Gateway {
            address,
            admin,
            config: config_path,
            log,
            process: crate::Proc { child },
        };
        crate::wait_for("protogate", address).await?;
        crate::wait_for("protogate's admin listener", admin).await?;
        Ok(gateway)
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> String {
        self.process.pid()
    }

    /// Whether it still runs; how it ended if not.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.process.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(error) => Some(format!("cannot tell: {error}")),
        }
    }

    /// Its resident set and open file descriptors now.
    pub(crate) fn usage(&self) -> Usage {
        let pid = self.pid();
        Usage {
            rss_kib: crate::status_kib(&pid, "VmRSS:"),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count()),
        }
    }

    /// The sum of every series of metric `name` on its `/metrics` (0 when absent or unread).
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let Ok(text) = self.metrics().await else {
            return 0.0;
        };
        metric_sum(&text, name)
    }

    /// Its `/metrics` text.
    async fn metrics(&self) -> Result<String, String> {
        let request = format!(
            "GET /metrics HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            self.admin
        );
        let answer = exchange(self.admin, request.as_bytes(), Duration::from_secs(5)).await?;
        Ok(String::from_utf8_lossy(&answer.body).into_owned())
    }

    /// Sends it SIGHUP: read the config file again.
    pub(crate) fn hang_up(&self) -> Result<(), Error> {
        let pid = self
            .process
            .child
            .id()
            .try_into()
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or("the gateway has no process id")?;
        rustix::process::kill_process(pid, rustix::process::Signal::HUP)?;
        Ok(())
    }
}

/// The sum of every series of metric `name` in a Prometheus text exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A process's resident memory and open file descriptors.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    pub(crate) rss_kib: u64,
    pub(crate) fds: usize,
}

impl Usage {
    /// Resident memory in MiB.
    pub(crate) fn rss_mib(self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    /// The larger of each figure.
    pub(crate) fn max(self, other: Usage) -> Usage {
        Usage {
            rss_kib: self.rss_kib.max(other.rss_kib),
            fds: self.fds.max(other.fds),
        }
    }
}

/// A raw HTTP/1.1 answer.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// The head, status line and headers, as text.
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

/// Writes `request` on a fresh connection to `address` and reads one answer, within `limit`.
pub(crate) async fn exchange(
    address: SocketAddr,
    request: &[u8],
    limit: Duration,
) -> Result<Answer, String> {
    let attempt = async {
        let mut tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buffer = Vec::new();
        read_answer(&mut tcp, &mut buffer).await
    };
    tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| format!("no answer within {limit:?}"))?
}

/// Reads one HTTP/1.1 answer from `io`; `buffer` holds what was read past it, for the next.
/// A body is read by its `content-length`, its chunks, or to the end of the connection.
pub(crate) async fn read_answer(
    io: &mut (impl tokio::io::AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
) -> Result<Answer, String> {
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end + 4;
        }
        if fill(io, buffer).await? == 0 {
            return Err(if buffer.is_empty() {
                "closed without an answer".to_owned()
            } else {
                format!("closed in the head: {}", String::from_utf8_lossy(buffer))
            });
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    let body = if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("content-length {length}"))?;
        while buffer.len() < length {
            if fill(io, buffer).await? == 0 {
                return Err("closed in the body".to_owned());
            }
        }
        buffer.drain(..length).collect()
    } else if header("transfer-encoding").is_some_and(|coding| coding.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = find(buffer, b"\r\n") {
                    break end;
                }
                if fill(io, buffer).await? == 0 {
                    return Err("closed in a chunk size".to_owned());
                }
            };
            let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("chunk size {size_text:?}"))?;
            while buffer.len() < line_end + 2 + size + 2 {
                if fill(io, buffer).await? == 0 {
                    return Err("closed in a chunk".to_owned());
                }
            }
            body.extend_from_slice(&buffer[line_end + 2..line_end + 2 + size]);
            buffer.drain(..line_end + 2 + size + 2);
            if size == 0 {
                // No trailers are sent to a client that did not ask for them.
                break body;
            }
        }
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else {
        while fill(io, buffer).await? > 0 {}
        std::mem::take(buffer)
    };
    Ok(Answer { status, head, body })
}

/// Reads more of `io` onto `buffer`; how much (0 at its end).
async fn fill(
    io: &mut (impl tokio::io::AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
) -> Result<usize, String> {
    let mut chunk = [0u8; 16 * 1024];
    let read = io
        .read(&mut chunk)
        .await
        .map_err(|e| format!("read: {e}"))?;
    buffer.extend_from_slice(&chunk[..read]);
    Ok(read)
}

/// Where `needle` first occurs in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Unary calls a paced client made: their latencies, and its errors.
#[derive(Debug, Default, Clone)]
pub(crate) struct Calls {
    /// Latencies of the calls answered well, in microseconds, sorted once finished.
    pub(crate) latencies_us: Vec<u64>,
    pub(crate) errors: usize,
    /// The first few errors, as said.
    pub(crate) first_errors: Vec<String>,
}

impl Calls {
    /// The `p` quantile of the latencies, in milliseconds.
    pub(crate) fn quantile_ms(&self, p: f64) -> f64 {
        crate::percentile(&self.latencies_us, p) as f64 / 1000.0
    }

    fn merge(&mut self, other: Calls) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        for error in other.first_errors {
            if self.first_errors.len() < 3 {
                self.first_errors.push(error);
            }
        }
    }
}

/// Where a paced client's calls go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// `POST /v1/echo` over keep-alive HTTP/1.1 connections to the gateway.
    Gateway,
    /// `Echo` over gRPC, a connection each, straight to the backend: what the backend alone
    /// takes at the same moment, so that what the gateway adds can be told apart.
    Backend,
}

/// A client of unary calls at a steady pace (the "normal" client beside an attack):
/// `connections` connections, each sending the small echo call every `every` and giving each
/// call [`Paced::CALL_LIMIT`] to answer. A failed call counts as an error and the connection is
/// opened anew.
pub(crate) struct Paced {
    stop: Arc<AtomicBool>,
    /// The thread running the connections, on a runtime of their own: what they measure is
    /// the gateway, not the harness's other tasks.
    thread: std::thread::JoinHandle<Calls>,
}

impl Paced {
    /// How long one call may take before it counts as an error.
    pub(crate) const CALL_LIMIT: Duration = Duration::from_secs(2);
    /// The most calls of one connection, whatever the time: every loop is bounded.
    const MOST_CALLS: usize = 1_000_000;

    /// Starts the connections on `address`, which is the gateway's or the backend's as `via`
    /// says.
    pub(crate) fn start(
        address: SocketAddr,
        via: Via,
        connections: usize,
        every: Duration,
    ) -> Paced {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut calls = Calls::default();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    calls.errors += 1;
                    calls.first_errors.push(format!("no runtime: {error}"));
                    return calls;
                }
            };
            runtime.block_on(async {
                let tasks: Vec<_> = (0..connections)
                    .map(|_| {
                        let stop = Arc::clone(&stopped);
                        tokio::spawn(paced_connection(address, via, every, stop))
                    })
                    .collect();
                for task in tasks {
                    match task.await {
                        Ok(done) => calls.merge(done),
                        Err(error) => {
                            calls.errors += 1;
                            calls
                                .first_errors
                                .push(format!("the client task failed: {error}"));
                        }
                    }
                }
            });
            calls.latencies_us.sort_unstable();
            calls
        });
        Paced { stop, thread }
    }

    /// Stops the calls and returns what they measured.
    pub(crate) async fn finish(self) -> Calls {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| Calls {
                errors: 1,
                first_errors: vec!["the paced client's thread failed".to_owned()],
                ..Calls::default()
            })
    }
}

/// One connection of a [`Paced`] client, until `stop`.
async fn paced_connection(
    address: SocketAddr,
    via: Via,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Calls {
    let mut calls = Calls::default();
    let error = |calls: &mut Calls, what: String| {
        calls.errors += 1;
        if calls.first_errors.len() < 3 {
            calls.first_errors.push(what);
        }
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut caller = None;
    for _ in 0..Paced::MOST_CALLS {
        ticks.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if caller.is_none() {
            match tokio::time::timeout(Paced::CALL_LIMIT, Caller::open(address, via)).await {
                Ok(Ok(opened)) => caller = Some(opened),
                Ok(Err(why)) => {
                    error(&mut calls, why);
                    continue;
                }
                Err(_) => {
                    error(&mut calls, "connecting took over 2 s".to_owned());
                    continue;
                }
            }
        }
        let Some(connection) = caller.as_mut() else {
            continue;
        };
        let sent = Instant::now();
        match tokio::time::timeout(Paced::CALL_LIMIT, connection.call()).await {
            Ok(Ok(())) => calls
                .latencies_us
                .push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX)),
            Ok(Err(why)) => {
                error(&mut calls, why);
                caller = None;
            }
            Err(_) => {
                error(&mut calls, "no answer within 2 s".to_owned());
                caller = None;
            }
        }
    }
    calls
}

/// An open connection of a paced client, and the one call it makes.
enum Caller {
    /// To the gateway, with the JSON body of every call.
    Http(hyper::client::conn::http1::SendRequest<Full<Bytes>>, Bytes),
    /// Straight to the backend.
    Grpc(BenchServiceClient<tonic::transport::Channel>),
}

impl Caller {
    async fn open(address: SocketAddr, via: Via) -> Result<Caller, String> {
        match via {
            Via::Gateway => {
                let body = serde_json::to_vec(&protogate_bench::small_json())
                    .map_err(|e| format!("the body cannot be written: {e}"))?;
                Ok(Caller::Http(connect(address).await?, Bytes::from(body)))
            }
            Via::Backend => {
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                    .map_err(|e| format!("endpoint: {e}"))?
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                Ok(Caller::Grpc(BenchServiceClient::new(channel)))
            }
        }
    }

    /// One call, answered well, or why not.
    async fn call(&mut self) -> Result<(), String> {
        match self {
            Caller::Http(connection, body) => {
                let request = http::Request::post("/v1/echo")
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .map_err(|e| format!("the request cannot be built: {e}"))?;
                let (status, body) = send(connection, request).await?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
                }
            }
            Caller::Grpc(client) => client
                .echo(protogate_bench::small())
                .await
                .map(drop)
                .map_err(|status| format!("gRPC: {status}")),
        }
    }
}

/// `request` sent on `connection` once it is ready; the answer's status and whole body, or why
/// there is none.
pub(crate) async fn send(
    connection: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Bytes), String> {
    connection
        .ready()
        .await
        .map_err(|e| format!("connection closed: {e}"))?;
    let response = connection
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{status}, body failed: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// An HTTP/1.1 connection to `address`, its driver on a task of its own.
pub(crate) async fn connect(
    address: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Samples a gateway's usage every 100 ms while `during` runs; the highest figures seen.
pub(crate) async fn peak_while<T>(
    gateway: &Gateway,
    during: impl Future<Output = T>,
) -> (T, Usage) {
    let mut during = std::pin::pin!(during);
    let mut peak = gateway.usage();
    let mut samples = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            done = &mut during => return (done, peak.max(gateway.usage())),
            _ = samples.tick() => peak = peak.max(gateway.usage()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_sums_its_series_and_no_other() {
        let text = "# HELP x\nprotogate_a_total{e=\"1\"} 2\nprotogate_a_total{e=\"2\"} 3\nprotogate_ab_total 7\nprotogate_a_total 1\n";
        assert_eq!(metric_sum(text, "protogate_a_total"), 6.0);
        assert_eq!(metric_sum(text, "protogate_missing"), 0.0);
    }

    #[tokio::test]
    async fn answers_are_read_by_length_by_chunks_and_one_after_another() {
        let bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcHTTP/1.1 400 Bad\r\ntransfer-encoding: chunked\r\n\r\n2\r\nxy\r\n1\r\nz\r\n0\r\n\r\n";
        let mut io = &bytes[..];
        let mut buffer = Vec::new();
        let first = read_answer(&mut io, &mut buffer).await.expect("first");
        assert_eq!((first.status, first.body.as_slice()), (200, &b"abc"[..]));
        let second = read_answer(&mut io, &mut buffer).await.expect("second");
        assert_eq!((second.status, second.body.as_slice()), (400, &b"xyz"[..]));
        assert!(read_answer(&mut io, &mut buffer).await.is_err());
    }
}
