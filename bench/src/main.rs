//! `protogate-bench`: starts a tonic backend, protogate and Envoy's gRPC-JSON transcoder on
//! 127.0.0.1, drives every scenario at fixed concurrency against each (and the backend directly
//! with a tonic client), interleaved, and prints a markdown table. It does so for each backend
//! [`Setup`]: one plaintext backend, one over TLS, or three endpoints balanced over. Every load loop is bounded in
//! requests and seconds. A run in which any target answers an error, or completes no request,
//! exits non-zero after printing its tables.

mod attacks;
mod harness;
mod held;
mod soak;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use protogate_bench::pb::bench::v1::StreamRequest;
use protogate_bench::pb::bench::v1::bench_service_client::BenchServiceClient;
use protogate_bench::{DESCRIPTOR_SET, STREAM_MESSAGES, Scenario, large, lookup, small};

#[derive(Parser)]
#[command(about = "protogate beside Envoy's gRPC-JSON transcoder and direct gRPC")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the tonic backend.
    Backend {
        #[arg(long)]
        listen: SocketAddr,
        /// PEM certificate chain to serve TLS with (with `--tls-key`).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of `--tls-cert`.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Call the backend directly with a tonic client; print one JSON line of figures.
    GrpcLoad {
        /// `URL[,URL…]`: with several, each caller's channel balances over all of them.
        #[arg(long)]
        upstream: String,
        /// PEM file of the authority that signed the backend's certificate (`https://` URLs).
        #[arg(long)]
        ca: Option<PathBuf>,
        #[arg(long)]
        scenario: usize,
        #[command(flatten)]
        limits: Limits,
    },
    /// Hold many SSE or WebSocket streams open on one gateway; print its memory per stream and
    /// whether messages still reach them all.
    Held {
        /// The stock gateway built with the benchmark protos.
        #[arg(long)]
        protogate: PathBuf,
        /// Streams to open, per transport.
        #[arg(long, default_value_t = 10_000)]
        streams: usize,
        /// The transports, each in a gateway of its own (default: SSE, then WebSocket).
        #[arg(long = "transport", value_enum)]
        transports: Vec<held::Transport>,
        /// Milliseconds between the messages of each stream.
        #[arg(long, default_value_t = 2_000)]
        every_ms: u64,
        /// The longest opening may take, in seconds.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
    },
    /// Attack one gateway with misbehaving clients, one attack after another, a paced client
    /// of unary calls measuring beside each; print what the gateway did to each.
    Attacks {
        /// The stock gateway built with the benchmark protos.
        #[arg(long)]
        protogate: PathBuf,
        /// Run only these attacks (repeatable); all by default.
        #[arg(long = "only", value_enum)]
        only: Vec<attacks::Attack>,
        /// Idle connections of the idle-connections attack (the gateway's limit is 10,000).
        #[arg(long, default_value_t = 10_000)]
        idle_connections: usize,
    },
    /// Mixed traffic on 64 connections against one gateway whose config is reloaded every
    /// 10 s; print calls, unexpected errors, reloads, RSS and fds each minute.
    Soak {
        /// The stock gateway built with the benchmark protos.
        #[arg(long)]
        protogate: PathBuf,
        /// How long the soak lasts.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// Run everything and print the table.
    Run {
        /// The stock gateway built with the benchmark protos.
        #[arg(long)]
        protogate: PathBuf,
        /// Envoy's binary; without it the Envoy rows are left out.
        #[arg(long)]
        envoy: Option<PathBuf>,
        /// redis-server's binary, for the shared rate limit's setup.
        #[arg(long)]
        redis_server: Option<PathBuf>,
        /// Run only these scenarios (`a`, `b`, `c`, `d`); all when absent.
        #[arg(long = "only", value_name = "LETTER")]
        only: Vec<char>,
        /// Worker threads of each gateway (Envoy's `--concurrency`, protogate's `--workers`); one
        /// set of tables each when repeated. With one, a gateway leaves the machine's second core
        /// to the load generator and the backend; with two, it has a thread per core.
        #[arg(long = "workers", value_name = "N", default_values_t = [1usize, 2])]
        workers: Vec<usize>,
        /// How the backend is reached; one set of tables each when repeated (all by default).
        #[arg(long = "setup", value_enum, default_values_t = Setup::ALL)]
        setups: Vec<Setup>,
        #[command(flatten)]
        limits: Limits,
    },
}

/// How the gateways and the direct client reach the backend. [`Backends`] maps a setup onto
/// each target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Setup {
    /// One backend, plaintext HTTP/2.
    Plain,
    /// One backend, HTTP/2 over TLS, verified against the harness's own authority.
    Tls,
    /// Three backends (plaintext), the calls balanced over them.
    Three,
    /// One plaintext backend; every request carries an HS256 JWT that the gateway verifies
    /// (protogate's `[auth]`, Envoy's `jwt_authn`).
    Jwt,
    /// One plaintext backend; every request passes a rate limit too high to refuse it, counted
    /// in the gateway's memory (protogate's `[rate_limit]`, Envoy's `local_ratelimit`).
    RateLimit,
    /// As [`Setup::RateLimit`], protogate counting in a Redis server shared by replicas (Envoy
    /// has no shared limit of its own without a separate rate limit service: its row is the
    /// in-memory one).
    RateLimitRedis,
    /// One plaintext backend; protogate counts every request in its metrics (served on an admin
    /// listener) and traces 1 % of them to an OTLP collector the harness runs: the issue's
    /// "cheap enough to leave on". Envoy's row is its plain configuration.
    Observed,
    /// As [`Setup::Observed`], with every request traced and an access log line (JSON) for each.
    ObservedAll,
}

/// The HS256 secret of the [`Setup::Jwt`] tokens.
const JWT_SECRET: &[u8] = b"protogate-bench-secret-of-32-bytes!";
/// The issuer of the [`Setup::Jwt`] tokens.
const JWT_ISSUER: &str = "https://bench.invalid/";

impl Setup {
    const ALL: [Setup; 8] = [
        Setup::Plain,
        Setup::Tls,
        Setup::Three,
        Setup::Jwt,
        Setup::RateLimit,
        Setup::RateLimitRedis,
        Setup::Observed,
        Setup::ObservedAll,
    ];

    fn label(self) -> &'static str {
        match self {
            Setup::Plain => "one backend, plaintext",
            Setup::Tls => "TLS to the backend",
            Setup::Three => "three backend endpoints",
            Setup::Jwt => "JWT verified at the gateway",
            Setup::RateLimit => "rate limited, in memory",
            Setup::RateLimitRedis => "rate limited, shared through Redis",
            Setup::Observed => "metrics and 1 % of requests traced",
            Setup::ObservedAll => "metrics, every request traced and logged",
        }
    }

    /// The share of requests traced, where the setup traces.
    fn sample_ratio(self) -> Option<f64> {
        match self {
            Setup::Observed => Some(0.01),
            Setup::ObservedAll => Some(1.0),
            _ => None,
        }
    }

    /// The config file protogate serves with in this setup, if any (`redis` the URL of the
    /// harness's Redis server, `collector` the address of its OTLP collector).
    fn protogate_config(
        self,
        redis: Option<&str>,
        collector: Option<SocketAddr>,
    ) -> Option<String> {
        const GENEROUS: &str = "[rate_limit]\nrequests = 100000000\nper = \"1s\"\nkey = \"ip\"\n";
        match self {
            Setup::Jwt => Some(format!(
                "[auth]\n[[auth.jwt]]\nissuer = \"{JWT_ISSUER}\"\nalgorithms = [\"HS256\"]\nsecret_env = \"BENCH_JWT_SECRET\"\n"
            )),
            Setup::RateLimit => Some(GENEROUS.to_owned()),
            Setup::RateLimitRedis => Some(format!(
                "{GENEROUS}\n[redis]\nurl = \"{}\"\n",
                redis.unwrap_or_default()
            )),
            Setup::Observed | Setup::ObservedAll => Some(format!(
                "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[log]\naccess = {access}\nformat = \"json\"\n\n\
                 [tracing]\nendpoint = \"http://{collector}\"\nsample_ratio = {ratio}\n",
                admin = free_port(),
                access = self == Setup::ObservedAll,
                collector = collector.map(|c| c.to_string()).unwrap_or_default(),
                ratio = self.sample_ratio().unwrap_or_default(),
            )),
            Setup::Plain | Setup::Tls | Setup::Three => None,
        }
    }

    /// Envoy's HTTP filters of this setup, before the transcoder, in YAML at the indentation
    /// of `http_filters:` items.
    fn envoy_filters(self) -> String {
        match self {
            Setup::Jwt => format!(
                concat!(
                    "          - name: envoy.filters.http.jwt_authn\n",
                    "            typed_config:\n",
                    "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication\n",
                    "              providers:\n",
                    "                bench:\n",
                    "                  issuer: \"{issuer}\"\n",
                    "                  local_jwks:\n",
                    "                    inline_string: '{{\"keys\":[{{\"kty\":\"oct\",\"alg\":\"HS256\",\"k\":\"{key}\"}}]}}'\n",
                    "              rules:\n",
                    "              - match: {{prefix: \"/\"}}\n",
                    "                requires: {{provider_name: bench}}\n",
                ),
                issuer = JWT_ISSUER,
                key = base64url(JWT_SECRET),
            ),
            Setup::RateLimit | Setup::RateLimitRedis => concat!(
                "          - name: envoy.filters.http.local_ratelimit\n",
                "            typed_config:\n",
                "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit\n",
                "              stat_prefix: bench\n",
                "              token_bucket: {max_tokens: 100000000, tokens_per_fill: 100000000, fill_interval: 1s}\n",
                "              filter_enabled: {default_value: {numerator: 100, denominator: HUNDRED}}\n",
                "              filter_enforced: {default_value: {numerator: 100, denominator: HUNDRED}}\n",
            )
            .to_owned(),
            Setup::Plain | Setup::Tls | Setup::Three | Setup::Observed | Setup::ObservedAll => {
                String::new()
            }
        }
    }

    /// The `Authorization` every request of this setup carries, if any: a bearer token signed
    /// with [`JWT_SECRET`], valid for a day.
    fn authorization(self) -> Option<http::HeaderValue> {
        if self != Setup::Jwt {
            return None;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = serde_json::json!({"iss": JWT_ISSUER, "sub": "bench", "exp": now + 86_400});
        let payload = base64url(claims.to_string().as_bytes());
        let signed = format!("{header}.{payload}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, JWT_SECRET);
        let signature = base64url(ring::hmac::sign(&key, signed.as_bytes()).as_ref());
        http::HeaderValue::from_str(&format!("Bearer {signed}.{signature}")).ok()
    }

    fn backends(self) -> usize {
        if self == Setup::Three { 3 } else { 1 }
    }

    fn tls(self) -> bool {
        self == Setup::Tls
    }

    /// The scenarios this setup runs, of those asked for: the small ones, but for plaintext.
    fn scenarios(self, asked: &[Scenario]) -> Vec<Scenario> {
        // The edge setups measure their policy's cost per request: the small scenarios say it.
        asked
            .iter()
            .copied()
            .filter(|s| self == Setup::Plain || matches!(s, Scenario::Small | Scenario::Query))
            .collect()
    }
}

/// The running backends of a setup, and what each target is told to reach them.
struct Backends {
    setup: Setup,
    ports: Vec<u16>,
    procs: Vec<Proc>,
    /// The authority's PEM file, for TLS.
    ca: Option<PathBuf>,
}

impl Backends {
    /// Starts the setup's backends (with a fresh certificate in `work` for TLS).
    async fn start(
        this: &std::path::Path,
        setup: Setup,
        work: &std::path::Path,
    ) -> Result<Backends, Box<dyn std::error::Error>> {
        let mut tls_args = Vec::new();
        let mut ca = None;
        if setup.tls() {
            let pki = protogate_bench::make_pki()?;
            let (ca_file, cert, key) = (
                work.join("ca.pem"),
                work.join("server.pem"),
                work.join("server.key"),
            );
            std::fs::write(&ca_file, pki.ca)?;
            std::fs::write(&cert, pki.cert)?;
            std::fs::write(&key, pki.key)?;
            tls_args = vec![
                "--tls-cert".to_owned(),
                cert.display().to_string(),
                "--tls-key".to_owned(),
                key.display().to_string(),
            ];
            ca = Some(ca_file);
        }
        let mut backends = Backends {
            setup,
            ports: Vec::new(),
            procs: Vec::new(),
            ca,
        };
        for _ in 0..setup.backends() {
            let port = free_port();
            backends.procs.push(Proc::spawn(
                Command::new(this)
                    .args(["backend", "--listen", &format!("127.0.0.1:{port}")])
                    .args(&tls_args),
            )?);
            wait_for("the backend", SocketAddr::from(([127, 0, 0, 1], port))).await?;
            backends.ports.push(port);
        }
        Ok(backends)
    }

    fn urls(&self) -> Vec<String> {
        let scheme = if self.setup.tls() { "https" } else { "http" };
        self.ports
            .iter()
            .map(|port| format!("{scheme}://127.0.0.1:{port}"))
            .collect()
    }

    /// protogate's upstream flags.
    fn protogate_args(&self) -> Vec<String> {
        let mut args = vec!["--upstream".to_owned(), self.urls().join(",")];
        if let Some(ca) = &self.ca {
            args.extend([
                "--upstream-ca".to_owned(),
                ca.display().to_string(),
                "--upstream-server-name".to_owned(),
                "localhost".to_owned(),
            ]);
        }
        args
    }

    /// The direct client's flags (`grpc-load`).
    fn direct_args(&self) -> Vec<String> {
        let mut args = vec!["--upstream".to_owned(), self.urls().join(",")];
        if let Some(ca) = &self.ca {
            args.extend(["--ca".to_owned(), ca.display().to_string()]);
        }
        args
    }

    /// Envoy's cluster `backend`, in YAML at the indentation of `clusters:` items.
    fn envoy_cluster(&self) -> String {
        let mut cluster =
            String::from("  - name: backend\n    type: STATIC\n    connect_timeout: 1s\n");
        if self.ports.len() > 1 {
            cluster.push_str("    lb_policy: LEAST_REQUEST\n");
        }
        cluster.push_str(concat!(
            "    typed_extension_protocol_options:\n",
            "      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n",
            "        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n",
            "        explicit_http_config: {http2_protocol_options: {}}\n",
            "    load_assignment:\n",
            "      cluster_name: backend\n",
            "      endpoints:\n",
            "      - lb_endpoints:\n",
        ));
        for port in &self.ports {
            cluster.push_str(&format!(
                "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}\n"
            ));
        }
        if let Some(ca) = &self.ca {
            cluster.push_str(&format!(
                concat!(
                    "    transport_socket:\n",
                    "      name: envoy.transport_sockets.tls\n",
                    "      typed_config:\n",
                    "        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n",
                    "        sni: localhost\n",
                    "        common_tls_context:\n",
                    "          alpn_protocols: [h2]\n",
                    "          validation_context:\n",
                    "            trusted_ca: {{filename: \"{ca}\"}}\n",
                ),
                ca = ca.display()
            ));
        }
        cluster
    }

    /// CPU seconds of every backend so far.
    fn cpu_seconds(&self) -> f64 {
        self.procs.iter().map(|p| cpu_seconds(&p.pid())).sum()
    }
}

#[derive(clap::Args, Clone)]
struct Limits {
    /// Requests per run, at most.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Seconds per run, at most.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Connections (concurrent requests in flight); one run each when repeated.
    #[arg(long = "connections", default_values_t = [8usize, 64])]
    connections: Vec<usize>,
    /// Rounds of every target per scenario and concurrency; a row shows the round with the
    /// median CPU per request.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Requests per second of a run, spread evenly over its connections; without it, each
    /// connection sends its next request as soon as the last is answered. CPU per request
    /// depends on load: a target that answers sooner gets more requests and wakes up for fewer
    /// of them at a time. At a rate every target sustains, each does the same work under the
    /// same load.
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
}

impl Limits {
    /// The clock of connection `index` of `connections` under `--rate`: the connections take
    /// turns, evenly spaced, so that requests arrive one at a time rather than in bursts of one
    /// per connection. A connection that falls behind sends at once and keeps its spacing
    /// from then on.
    fn pace(&self, connections: usize, index: usize) -> Option<tokio::time::Interval> {
        let rate = self.rate.filter(|rate| *rate > 0.0)?;
        let period = Duration::from_secs_f64(connections as f64 / rate);
        let offset = period.mul_f64(index as f64 / connections.max(1) as f64);
        let mut clock = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Some(clock)
    }

    /// Whether a connection may send another request: some of the run's `remaining` are left
    /// and `deadline` has not passed, once its turn under `--rate` has come.
    async fn next(
        &self,
        remaining: &AtomicUsize,
        deadline: Instant,
        pace: &mut Option<tokio::time::Interval>,
    ) -> bool {
        if let Some(clock) = pace {
            clock.tick().await;
        }
        Instant::now() < deadline
            && remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }
}

/// What one run measured.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    requests: usize,
    errors: usize,
    seconds: f64,
    p50_us: u64,
    p99_us: u64,
    /// CPU seconds of the measured process during the run.
    cpu_seconds: f64,
    /// Peak resident set of the measured process, in KiB.
    peak_rss_kib: u64,
    /// CPU seconds of the backend during the run.
    backend_cpu_seconds: f64,
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }
    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.requests.max(1) as f64
    }
    /// What went wrong in the run, if anything: an error, or no request completed at all.
    fn failure(&self) -> Option<String> {
        if self.errors > 0 {
            Some(format!(
                "{} error(s) beside {} completed requests",
                self.errors, self.requests
            ))
        } else if self.requests == 0 {
            Some("no request completed".to_owned())
        } else {
            None
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Ticks per second of /proc/PID/stat times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which ends with the last ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// Peak resident set size of a process, in KiB.
fn peak_rss_kib(pid: &str) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// A figure in KiB of a process's `/proc/PID/status` (`VmHWM:`, `VmRSS:`), 0 when unknown.
fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A port free on 127.0.0.1 now, for a server started afterwards.
///
/// Picked at random below Linux's ephemeral range (32768 and up), not by binding port 0: a port
/// from that range, once released, is soon handed to some process's outgoing connection (the
/// gateway's own, to its backends), and the server then fails to start with "address in use".
fn free_port() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let seed = std::collections::hash_map::RandomState::new();
    for attempt in 0u64..64 {
        let mut hasher = seed.build_hasher();
        hasher.write_u64(attempt);
        let port = 20_000 + u16::try_from(hasher.finish() % 12_000).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Waits up to 30 s for `what` to listen on `address`.
async fn wait_for(what: &str, address: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{what}: nothing listens on {address} after 30 s"))
}

/// Base64url without padding, as JWTs and JWKs write bytes.
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// HTTP/1.1 keep-alive load: `connections` connections, each with one request in flight, each
/// request with `authorization` when given.
async fn http_load(
    address: SocketAddr,
    scenario: Scenario,
    limits: &Limits,
    connections: usize,
    authorization: Option<http::HeaderValue>,
) -> Figures {
    let (method, path, body) = scenario.http();
    let body = Bytes::from(body);
    let remaining = Arc::new(AtomicUsize::new(limits.requests));
    let deadline = Instant::now() + Duration::from_secs_f64(limits.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..connections {
        let (method, path, body, remaining, authorization) = (
            method.clone(),
            path.clone(),
            body.clone(),
            remaining.clone(),
            authorization.clone(),
        );
        let limits = limits.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let Ok(stream) = tokio::net::TcpStream::connect(address).await else {
                return (latencies, 1);
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, connection)) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
            else {
                return (latencies, 1);
            };
            tokio::spawn(connection);
            let mut pace = limits.pace(connections, index);
            while limits.next(&remaining, deadline, &mut pace).await {
                let mut request = http::Request::builder()
                    .method(method.clone())
                    .uri(path.as_str())
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/json");
                if let Some(authorization) = &authorization {
                    request = request.header(http::header::AUTHORIZATION, authorization.clone());
                }
                let request = request.body(Full::new(body.clone()));
                let Ok(request) = request else {
                    errors += 1;
                    continue;
                };
                // The connection takes the next request once it has finished the last one.
                if let Err(error) = sender.ready().await {
                    errors += 1;
                    report(&format!("connection closed: {error}"));
                    break;
                }
                let sent = Instant::now();
                match sender.send_request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        match response.into_body().collect().await {
                            Ok(body) if status.is_success() => {
                                let body = body.to_bytes();
                                if scenario.complete(&body) {
                                    latencies.push(sent.elapsed().as_micros() as u64);
                                } else {
                                    errors += 1;
                                    report(&format!(
                                        "incomplete: {}",
                                        String::from_utf8_lossy(
                                            &body[body.len().saturating_sub(200)..]
                                        )
                                    ));
                                }
                            }
                            Ok(body) => {
                                errors += 1;
                                let body = body.to_bytes();
                                report(&format!("{status}: {}", String::from_utf8_lossy(&body)));
                            }
                            Err(error) => {
                                errors += 1;
                                report(&format!("{status}, body failed: {error}"));
                            }
                        }
                    }
                    Err(error) => {
                        errors += 1;
                        report(&format!("request failed: {error}"));
                        break;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    collect(tasks, started).await
}

/// Prints the first failure of the process, so an error count comes with its reason.
fn report(failure: &str) {
    static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !REPORTED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "first failure: {}",
            failure.chars().take(300).collect::<String>()
        );
    }
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(Vec<u64>, usize)>>,
    started: Instant,
) -> Figures {
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((l, e)) = task.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Figures {
        requests: latencies.len(),
        errors,
        seconds,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        ..Figures::default()
    }
}

/// The endpoints of `grpc-load --upstream URL[,URL…]`, each verified against `ca` if given.
fn grpc_endpoints(
    upstream: &str,
    ca: Option<&std::path::Path>,
) -> Result<Vec<tonic::transport::Endpoint>, Box<dyn std::error::Error>> {
    let tls = match ca {
        Some(ca) => Some(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(ca)?))
                .domain_name("localhost"),
        ),
        None => None,
    };
    let mut endpoints = Vec::new();
    for url in upstream.split(',') {
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())?;
        if let Some(tls) = &tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        endpoints.push(endpoint);
    }
    Ok(endpoints)
}

/// Direct gRPC load: one channel per concurrent caller, over one connection, or with several
/// endpoints balanced over a connection to each (`Channel::balance_list`).
async fn grpc_load(
    endpoints: Vec<tonic::transport::Endpoint>,
    scenario: Scenario,
    limits: &Limits,
    connections: usize,
) -> Figures {
    let remaining = Arc::new(AtomicUsize::new(limits.requests));
    let deadline = Instant::now() + Duration::from_secs_f64(limits.seconds);
    let started = Instant::now();
    let (small, lookup, large) = (small(), lookup(), large());
    let mut tasks = Vec::new();
    for index in 0..connections {
        let remaining = remaining.clone();
        let limits = limits.clone();
        let (small, lookup, large, endpoints) = (
            small.clone(),
            lookup.clone(),
            large.clone(),
            endpoints.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let channel = match endpoints.as_slice() {
                [one] => match one.connect().await {
                    Ok(channel) => channel,
                    Err(error) => {
                        report(&format!("connect failed: {error:?}"));
                        return (latencies, 1);
                    }
                },
                several => tonic::transport::Channel::balance_list(several.iter().cloned()),
            };
            let mut client = BenchServiceClient::new(channel);
            let mut pace = limits.pace(connections, index);
            while limits.next(&remaining, deadline, &mut pace).await {
                let sent = Instant::now();
                let ok = match scenario {
                    Scenario::Small => checked(client.echo(small.clone()).await),
                    Scenario::Query => checked(client.lookup(lookup.clone()).await),
                    Scenario::Large => checked(client.ingest(large.clone()).await),
                    Scenario::Stream => drain(&mut client).await,
                };
                if ok {
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    collect(tasks, started).await
}

/// Whether a unary call succeeded; the first failure is reported.
fn checked<T>(result: Result<T, tonic::Status>) -> bool {
    match result {
        Ok(_) => true,
        Err(status) => {
            report(&format!("gRPC call failed: {status}"));
            false
        }
    }
}

/// Calls the stream of scenario (d) and reads it to the end; whether every message came.
async fn drain(client: &mut BenchServiceClient<tonic::transport::Channel>) -> bool {
    let request = StreamRequest {
        count: STREAM_MESSAGES,
    };
    let Ok(response) = client.stream(request).await else {
        return false;
    };
    let mut messages = response.into_inner();
    let mut received = 0;
    while let Ok(Some(_)) = messages.message().await {
        received += 1;
    }
    received == STREAM_MESSAGES
}

struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(command: &mut Command) -> std::io::Result<Proc> {
        // Their errors (a panic, Envoy's error log) show beside the harness's progress.
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Proc { child })
    }
    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn envoy_config(listen: u16, cluster: &str, filters: &str, descriptor: &std::path::Path) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          route_config:
            name: local
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: backend, timeout: 30s}}
          http_filters:
{filters}          - name: envoy.filters.http.grpc_json_transcoder
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder
              proto_descriptor: "{descriptor}"
              services: ["bench.v1.BenchService"]
              convert_grpc_status: true
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{cluster}"#,
        descriptor = descriptor.display()
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    Envoy,
    Protogate,
    /// In the observed setups: a second protogate on the same backend with nothing observed,
    /// run in the same rounds, which the observed one's extra CPU is measured against.
    Unobserved,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct gRPC (tonic client)",
            Target::Envoy => "Envoy grpc_json_transcoder",
            Target::Protogate => "protogate",
            Target::Unobserved => "protogate, nothing observed",
        }
    }
}

async fn run(
    protogate: &std::path::Path,
    envoy: Option<&std::path::Path>,
    redis_server: Option<&std::path::Path>,
    setup: Setup,
    scenarios: &[Scenario],
    workers: usize,
    limits: &Limits,
) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let this = std::env::current_exe()?;
    let work = std::env::temp_dir().join(format!("protogate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    let backends = Backends::start(&this, setup, &work).await?;

    // The Redis server of the shared rate limit, on a port of its own, writing nothing.
    let mut _redis = None;
    let mut redis_url = None;
    if setup == Setup::RateLimitRedis {
        let binary = redis_server.ok_or("the shared rate limit needs --redis-server")?;
        let port = free_port();
        _redis = Some(Proc::spawn(Command::new(binary).args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]))?);
        wait_for("Redis", SocketAddr::from(([127, 0, 0, 1], port))).await?;
        redis_url = Some(format!("redis://127.0.0.1:{port}"));
    }

    // The OTLP collector traced setups export to, in the harness (its work is not the
    // gateway's).
    let collector = match setup.sample_ratio() {
        Some(_) => Some(protogate_bench::OtlpCollector::start().await?),
        None => None,
    };

    let gateway_port = free_port();
    let mut command = Command::new(protogate);
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{gateway_port}"),
            "--workers",
            &workers.to_string(),
        ])
        .args(backends.protogate_args())
        .env(
            "BENCH_JWT_SECRET",
            std::str::from_utf8(JWT_SECRET).unwrap_or_default(),
        );
    if let Some(config) =
        setup.protogate_config(redis_url.as_deref(), collector.as_ref().map(|c| c.address))
    {
        let file = work.join("protogate.toml");
        std::fs::write(&file, config)?;
        command.arg("--config").arg(&file);
    }
    let gateway = Proc::spawn(&mut command)?;
    wait_for(
        "protogate",
        SocketAddr::from(([127, 0, 0, 1], gateway_port)),
    )
    .await?;

    // The observed setups' baseline: the same gateway without a config, beside it.
    let unobserved_port = free_port();
    let unobserved = match setup.sample_ratio() {
        Some(_) => {
            let proc = Proc::spawn(
                Command::new(protogate)
                    .args([
                        "serve",
                        "--listen",
                        &format!("127.0.0.1:{unobserved_port}"),
                        "--workers",
                        &workers.to_string(),
                    ])
                    .args(backends.protogate_args()),
            )?;
            wait_for(
                "protogate (nothing observed)",
                SocketAddr::from(([127, 0, 0, 1], unobserved_port)),
            )
            .await?;
            Some(proc)
        }
        None => None,
    };

    let envoy_port = free_port();
    let envoy = match &envoy {
        Some(binary) => {
            let descriptor = work.join("bench.pb");
            std::fs::write(&descriptor, DESCRIPTOR_SET)?;
            let config = work.join("envoy.yaml");
            std::fs::write(
                &config,
                envoy_config(
                    envoy_port,
                    &backends.envoy_cluster(),
                    &setup.envoy_filters(),
                    &descriptor,
                ),
            )?;
            let proc = Proc::spawn(Command::new(binary).args([
                "-c",
                &config.display().to_string(),
                "--concurrency",
                &workers.to_string(),
                "--log-level",
                "error",
            ]))?;
            wait_for("Envoy", SocketAddr::from(([127, 0, 0, 1], envoy_port))).await?;
            Some(proc)
        }
        None => None,
    };

    let mut targets = vec![Target::Direct, Target::Protogate];
    if envoy.is_some() {
        targets.insert(1, Target::Envoy);
    }
    if unobserved.is_some() {
        targets.push(Target::Unobserved);
    }
    let stand = Stand {
        this: &this,
        backends: &backends,
        gateway_port,
        gateway: &gateway,
        envoy_port,
        envoy: envoy.as_ref(),
        unobserved_port,
        unobserved: unobserved.as_ref(),
    };
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for &scenario in scenarios {
        for &connections in &limits.connections {
            let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); targets.len()];
            // Interleaved: every target runs each scenario before the next one starts, and a
            // round ends before the next begins. Every other round runs the targets in reverse
            // order, so that no target always follows the same neighbour (a warm cache, a
            // frequency step) and a pair measured against each other swaps places.
            for round in 0..limits.rounds.max(1) {
                let order: Vec<usize> = if round % 2 == 0 {
                    (0..targets.len()).collect()
                } else {
                    (0..targets.len()).rev().collect()
                };
                for index in order {
                    let (target, runs) = (targets[index], &mut runs[index]);
                    let figures = stand.measure(target, scenario, limits, connections).await?;
                    eprintln!(
                        "{}: {} {connections} conns {}: {:.0} req/s, {:.1} µs CPU/req, {} errors",
                        setup.label(),
                        scenario.label(),
                        target.label(),
                        figures.rps(),
                        figures.cpu_us_per_request(),
                        figures.errors
                    );
                    if let Some(failure) = figures.failure() {
                        failures.push(format!(
                            "{}: {} {connections} conns {}: {failure}",
                            setup.label(),
                            scenario.label(),
                            target.label()
                        ));
                    }
                    runs.push(figures);
                }
            }
            for (&target, runs) in targets.iter().zip(runs) {
                rows.push((scenario, connections, target, median_run(runs)));
            }
        }
    }
    print_table(setup, scenarios, workers, limits, &rows);
    if let Some(collector) = &collector {
        // Spans leave in batches: the last one may still be on its way.
        println!();
        println!(
            "The OTLP collector received {} spans (a server and a client span per traced request).",
            collector.spans()
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    if failures.is_empty() {
        Ok(rows)
    } else {
        Err(format!(
            "{} run(s) with {workers} worker(s), {}, failed:\n  {}",
            failures.len(),
            setup.label(),
            failures.join("\n  ")
        )
        .into())
    }
}

/// Where each target listens, and the processes whose CPU a run measures.
struct Stand<'a> {
    this: &'a std::path::Path,
    backends: &'a Backends,
    gateway_port: u16,
    gateway: &'a Proc,
    envoy_port: u16,
    envoy: Option<&'a Proc>,
    unobserved_port: u16,
    unobserved: Option<&'a Proc>,
}

impl Stand<'_> {
    /// One run of `target` in `scenario` at `connections`, with the backend's CPU over it.
    async fn measure(
        &self,
        target: Target,
        scenario: Scenario,
        limits: &Limits,
        connections: usize,
    ) -> Result<Figures, Box<dyn std::error::Error>> {
        let backend_before = self.backends.cpu_seconds();
        let gateway = match target {
            Target::Direct => None,
            Target::Envoy => Some((
                self.envoy_port,
                self.envoy.map(Proc::pid).unwrap_or_default(),
            )),
            Target::Protogate => Some((self.gateway_port, self.gateway.pid())),
            Target::Unobserved => Some((
                self.unobserved_port,
                self.unobserved.map(Proc::pid).unwrap_or_default(),
            )),
        };
        let mut figures = match gateway {
            None => self.direct(scenario, limits, connections)?,
            Some((port, pid)) => {
                let authorization = self.backends.setup.authorization();
                gateway_run(port, &pid, scenario, limits, connections, authorization).await
            }
        };
        figures.backend_cpu_seconds = self.backends.cpu_seconds() - backend_before;
        Ok(figures)
    }

    /// A run of the tonic client, in its own process so that it measures its own CPU.
    fn direct(
        &self,
        scenario: Scenario,
        limits: &Limits,
        connections: usize,
    ) -> Result<Figures, Box<dyn std::error::Error>> {
        let output = Command::new(self.this)
            .arg("grpc-load")
            .args(self.backends.direct_args())
            .args([
                "--scenario",
                &Scenario::ALL
                    .iter()
                    .position(|s| *s == scenario)
                    .unwrap_or(0)
                    .to_string(),
                "--requests",
                &limits.requests.to_string(),
                "--seconds",
                &limits.seconds.to_string(),
                "--connections",
                &connections.to_string(),
            ])
            .args(limits.rate.map(|rate| format!("--rate={rate}")))
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(
                format!("the direct gRPC load failed ({}): {stdout}", output.status).into(),
            );
        }
        Ok(parse_figures(&stdout)?)
    }
}

/// A run against the gateway listening on `port`, whose process `pid` is measured from `/proc`.
async fn gateway_run(
    port: u16,
    pid: &str,
    scenario: Scenario,
    limits: &Limits,
    connections: usize,
    authorization: Option<http::HeaderValue>,
) -> Figures {
    let before = cpu_seconds(pid);
    let mut figures = http_load(
        SocketAddr::from(([127, 0, 0, 1], port)),
        scenario,
        limits,
        connections,
        authorization,
    )
    .await;
    figures.cpu_seconds = cpu_seconds(pid) - before;
    figures.peak_rss_kib = peak_rss_kib(pid);
    figures
}

/// Of several rounds, the run with the median CPU per request (so that a row's figures all come
/// from one run), with the errors of every round and the highest peak RSS.
fn median_run(mut runs: Vec<Figures>) -> Figures {
    runs.sort_by(|a, b| a.cpu_us_per_request().total_cmp(&b.cpu_us_per_request()));
    let Some(&middle) = runs.get(runs.len() / 2) else {
        return Figures::default();
    };
    Figures {
        errors: runs.iter().map(|run| run.errors).sum(),
        peak_rss_kib: runs
            .iter()
            .map(|run| run.peak_rss_kib)
            .max()
            .unwrap_or_default(),
        ..middle
    }
}

/// The figures the `grpc-load` command prints, every one of them required.
fn parse_figures(line: &str) -> Result<Figures, String> {
    let value: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|error| format!("the direct gRPC load printed {line:?}: {error}"))?;
    let number = |key: &str| {
        value[key]
            .as_f64()
            .ok_or_else(|| format!("the direct gRPC load printed no `{key}`: {line}"))
    };
    Ok(Figures {
        requests: number("requests")? as usize,
        errors: number("errors")? as usize,
        seconds: number("seconds")?,
        p50_us: number("p50_us")? as u64,
        p99_us: number("p99_us")? as u64,
        cpu_seconds: number("cpu_seconds")?,
        peak_rss_kib: number("peak_rss_kib")? as u64,
        backend_cpu_seconds: 0.0,
    })
}

/// What each scenario sends.
fn print_scenarios(scenarios: &[Scenario]) {
    for &scenario in scenarios {
        let (method, path, body) = scenario.http();
        println!(
            "- {}: `{method} {path}`, {} bytes of JSON",
            scenario.label(),
            body.len()
        );
    }
}

/// One row of a table: a scenario at a concurrency, a target, and what its median run measured.
type Row = (Scenario, usize, Target, Figures);

fn print_table(
    setup: Setup,
    scenarios: &[Scenario],
    workers: usize,
    limits: &Limits,
    rows: &[Row],
) {
    let rounds = limits.rounds;
    println!();
    println!(
        "### {}{workers} worker thread{} per gateway{}{}",
        match setup {
            Setup::Plain => String::new(),
            other => format!("{}, ", other.label()),
        },
        if workers == 1 { "" } else { "s" },
        if rounds > 1 {
            format!(" (each row: the median of {rounds} rounds by CPU per request)")
        } else {
            String::new()
        },
        match limits.rate {
            Some(rate) => format!(", {rate} requests per second"),
            None => String::new(),
        }
    );
    println!();
    println!(
        "| scenario | conns | target | req/s | p50 µs | p99 µs | CPU µs/req | peak RSS MiB | backend CPU % | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (scenario, connections, target, f) in rows {
        let backend_share = 100.0 * f.backend_cpu_seconds / f.seconds.max(1e-9);
        println!(
            "| {} | {connections} | {} | {:.0} | {} | {} | {:.1} | {:.1} | {:.0} | {} |",
            scenario.label(),
            target.label(),
            f.rps(),
            f.p50_us,
            f.p99_us,
            f.cpu_us_per_request(),
            f.peak_rss_kib as f64 / 1024.0,
            backend_share,
            f.errors
        );
    }
    println!();
    println!(
        "| scenario | conns | CPU/req protogate ÷ Envoy | CPU/req protogate ÷ direct | p99 protogate ÷ Envoy | RSS protogate ÷ Envoy |"
    );
    println!("|---|---|---|---|---|---|");
    for &scenario in scenarios {
        let connections: Vec<usize> = rows
            .iter()
            .filter(|r| r.0 == scenario)
            .map(|r| r.1)
            .collect();
        let mut seen = Vec::new();
        for c in connections {
            if seen.contains(&c) {
                continue;
            }
            seen.push(c);
            let find = |t: Target| {
                rows.iter()
                    .find(|r| r.0 == scenario && r.1 == c && r.2 == t)
                    .map(|r| r.3)
            };
            let (Some(p), Some(d)) = (find(Target::Protogate), find(Target::Direct)) else {
                continue;
            };
            let envoy = find(Target::Envoy);
            let ratio = |a: f64, b: Option<f64>| match b {
                Some(b) if b > 0.0 => format!("{:.2}", a / b),
                _ => "–".to_owned(),
            };
            println!(
                "| {} | {c} | {} | {} | {} | {} |",
                scenario.label(),
                ratio(
                    p.cpu_us_per_request(),
                    envoy.map(|e| e.cpu_us_per_request())
                ),
                ratio(p.cpu_us_per_request(), Some(d.cpu_us_per_request())),
                ratio(p.p99_us as f64, envoy.map(|e| e.p99_us as f64)),
                ratio(p.peak_rss_kib as f64, envoy.map(|e| e.peak_rss_kib as f64)),
            );
        }
    }
}

/// The observed protogate's CPU per request in `setup` against the unobserved one's, same
/// scenario, concurrency and rounds.
fn print_extra_cost(setup: Setup, rows: &[Row]) {
    println!();
    println!(
        "| scenario | conns | protogate CPU µs/req, nothing observed | with {} | extra |",
        setup.label()
    );
    println!("|---|---|---|---|---|");
    for (scenario, connections, target, figures) in rows {
        if *target != Target::Protogate {
            continue;
        }
        let Some(base) = rows
            .iter()
            .find(|r| r.0 == *scenario && r.1 == *connections && r.2 == Target::Unobserved)
        else {
            continue;
        };
        let (before, after) = (base.3.cpu_us_per_request(), figures.cpu_us_per_request());
        // A run too short for the CPU clock's ticks measures no CPU at all: no share of it.
        let extra = if before > 0.0 {
            format!("{:+.1} %", 100.0 * (after / before - 1.0))
        } else {
            "–".to_owned()
        };
        println!(
            "| {} | {connections} | {before:.1} | {after:.1} | {extra} |",
            scenario.label(),
        );
    }
}

/// Serves the backend in this process and, for each transport, a fresh one-worker gateway in
/// front of it, and holds `streams` streams open on it.
async fn held_streams(
    protogate: &std::path::Path,
    streams: usize,
    transports: &[held::Transport],
    every: Duration,
    deadline: Duration,
) -> Result<Vec<held::Held>, Box<dyn std::error::Error>> {
    let backend = harness::start_backend().await?;
    let work = std::env::temp_dir().join(format!("protogate-bench-held-{}", std::process::id()));
    // Room for every stream, and quiet ones are not closed while the others open.
    let config = format!(
        "[server]\nmax_connections = {}\nheader_read_timeout = \"120s\"\n",
        streams + 1_000
    );
    let mut runs = Vec::new();
    for &transport in transports {
        let gateway = harness::Gateway::start(
            protogate,
            backend,
            1,
            &config,
            &work.join(transport.label()),
        )
        .await?;
        eprintln!("holding {streams} {} streams…", transport.label());
        runs.push(
            held::hold(
                gateway.address,
                &gateway.pid(),
                transport,
                streams,
                every,
                deadline,
            )
            .await,
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(runs)
}

fn main() -> std::process::ExitCode {
    match main_with(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("protogate-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main_with(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::Backend {
            listen,
            tls_cert,
            tls_key,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some((std::fs::read(cert)?, std::fs::read(key)?)),
                _ => None,
            };
            runtime.block_on(protogate_bench::serve_backend(listen, tls))?
        }
        Cmd::GrpcLoad {
            upstream,
            ca,
            scenario,
            limits,
        } => {
            let endpoints = grpc_endpoints(&upstream, ca.as_deref())?;
            let scenario = Scenario::ALL[scenario.min(Scenario::ALL.len() - 1)];
            let before = cpu_seconds("self");
            let connections = limits.connections.first().copied().unwrap_or(8);
            let figures = runtime.block_on(grpc_load(endpoints, scenario, &limits, connections));
            let cpu = cpu_seconds("self") - before;
            println!(
                "{}",
                serde_json::json!({
                    "requests": figures.requests,
                    "errors": figures.errors,
                    "seconds": figures.seconds,
                    "p50_us": figures.p50_us,
                    "p99_us": figures.p99_us,
                    "cpu_seconds": cpu,
                    "peak_rss_kib": peak_rss_kib("self"),
                })
            );
        }
        Cmd::Held {
            protogate,
            streams,
            transports,
            every_ms,
            seconds,
        } => {
            let transports = if transports.is_empty() {
                vec![held::Transport::Sse, held::Transport::Websocket]
            } else {
                transports
            };
            let every = Duration::from_millis(every_ms);
            let runs = runtime.block_on(held_streams(
                &protogate,
                streams,
                &transports,
                every,
                Duration::from_secs(seconds),
            ))?;
            held::print_table(&runs, every);
            let short: Vec<String> = runs
                .iter()
                .filter(|run| run.opened < run.wanted || run.flowing < run.opened)
                .map(|run| {
                    format!(
                        "{}: {} of {} opened, {} still receiving",
                        run.transport.label(),
                        run.opened,
                        run.wanted,
                        run.flowing
                    )
                })
                .collect();
            if !short.is_empty() {
                return Err(short.join("; ").into());
            }
        }
        Cmd::Attacks {
            protogate,
            only,
            idle_connections,
        } => {
            let chosen = if only.is_empty() {
                attacks::Attack::ALL.to_vec()
            } else {
                only
            };
            let rows = runtime.block_on(attacks::run(&protogate, &chosen, idle_connections))?;
            attacks::print_table(&rows);
            let failures = attacks::failures(&rows);
            if !failures.is_empty() {
                return Err(failures.join("; ").into());
            }
        }
        Cmd::Soak { protogate, minutes } => {
            let soaked =
                runtime.block_on(soak::run(&protogate, Duration::from_secs(minutes * 60)))?;
            if soaked.unexpected > 0 {
                return Err(
                    format!("{} unexpected error(s) in the soak", soaked.unexpected).into(),
                );
            }
        }
        Cmd::Run {
            protogate,
            envoy,
            redis_server,
            only,
            workers,
            setups,
            limits,
        } => {
            let scenarios: Vec<Scenario> = Scenario::ALL
                .into_iter()
                .zip('a'..)
                .filter(|(_, letter)| only.is_empty() || only.contains(letter))
                .map(|(scenario, _)| scenario)
                .collect();
            print_scenarios(&scenarios);
            for workers in workers {
                for &setup in &setups {
                    let scenarios = setup.scenarios(&scenarios);
                    if scenarios.is_empty() {
                        continue;
                    }
                    let rows = runtime.block_on(run(
                        &protogate,
                        envoy.as_deref(),
                        redis_server.as_deref(),
                        setup,
                        &scenarios,
                        workers,
                        &limits,
                    ))?;
                    if setup.sample_ratio().is_some() {
                        print_extra_cost(setup, &rows);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cpu_seconds: f64, errors: usize, peak_rss_kib: u64) -> Figures {
        Figures {
            requests: 1000,
            errors,
            seconds: 1.0,
            cpu_seconds,
            peak_rss_kib,
            ..Figures::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_rate_the_connections_take_evenly_spaced_turns() {
        let limits = Limits {
            requests: 100,
            seconds: 60.0,
            connections: vec![4],
            rounds: 1,
            rate: Some(1_000.0),
        };
        let start = tokio::time::Instant::now();
        let remaining = AtomicUsize::new(100);
        let deadline = Instant::now() + Duration::from_secs(60);
        // 1,000 a second over 4 connections: each sends every 4 ms, the third 2 ms after the
        // first.
        let mut third = limits.pace(4, 2);
        let mut sent_at = Vec::new();
        for _ in 0..3 {
            assert!(limits.next(&remaining, deadline, &mut third).await);
            sent_at.push(start.elapsed());
        }
        let ms = Duration::from_millis;
        assert_eq!(sent_at, [ms(2), ms(6), ms(10)]);
        assert_eq!(remaining.load(Ordering::Relaxed), 97);

        // Without a rate, no clock and no wait; a run stops when its requests are spent.
        let unpaced = Limits {
            rate: None,
            ..limits
        };
        let mut none = unpaced.pace(4, 2);
        assert!(none.is_none());
        let last = AtomicUsize::new(1);
        assert!(unpaced.next(&last, deadline, &mut none).await);
        assert!(!unpaced.next(&last, deadline, &mut none).await);
    }

    #[test]
    fn a_row_is_the_median_round_with_every_error_and_the_highest_rss() {
        let row = median_run(vec![
            run(0.09, 1, 900),
            run(0.03, 0, 700),
            run(0.05, 2, 800),
        ]);
        assert_eq!(row.cpu_us_per_request(), 50.0);
        assert_eq!(row.errors, 3);
        assert_eq!(row.peak_rss_kib, 900);
        assert_eq!(median_run(Vec::new()).requests, 0);
    }

    #[test]
    fn a_run_fails_with_an_error_or_without_a_completed_request() {
        assert_eq!(run(0.05, 0, 800).failure(), None);
        let failure = run(0.05, 2, 800).failure().expect("errors fail a run");
        assert!(failure.contains("2 error(s)"), "{failure}");
        let idle = Figures::default()
            .failure()
            .expect("no request fails a run");
        assert!(idle.contains("no request completed"), "{idle}");
    }

    #[test]
    fn a_setup_maps_onto_every_target() {
        let backends = |setup: Setup, ports: Vec<u16>, ca: Option<&str>| Backends {
            setup,
            ports,
            procs: Vec::new(),
            ca: ca.map(PathBuf::from),
        };
        let three = backends(Setup::Three, vec![1, 2, 3], None);
        let urls = "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3";
        assert_eq!(three.protogate_args(), ["--upstream", urls]);
        assert_eq!(three.direct_args(), ["--upstream", urls]);
        let cluster = three.envoy_cluster();
        assert!(cluster.contains("lb_policy: LEAST_REQUEST"), "{cluster}");
        assert_eq!(cluster.matches("- endpoint:").count(), 3, "{cluster}");
        assert!(!cluster.contains("transport_socket"), "{cluster}");

        let tls = backends(Setup::Tls, vec![7], Some("/w/ca.pem"));
        assert_eq!(
            tls.protogate_args(),
            [
                "--upstream",
                "https://127.0.0.1:7",
                "--upstream-ca",
                "/w/ca.pem",
                "--upstream-server-name",
                "localhost"
            ]
        );
        assert_eq!(
            tls.direct_args(),
            ["--upstream", "https://127.0.0.1:7", "--ca", "/w/ca.pem"]
        );
        let cluster = tls.envoy_cluster();
        for part in [
            "UpstreamTlsContext",
            "sni: localhost",
            "alpn_protocols: [h2]",
            "trusted_ca: {filename: \"/w/ca.pem\"}",
        ] {
            assert!(cluster.contains(part), "{part} in {cluster}");
        }
        assert!(!cluster.contains("lb_policy"), "{cluster}");

        assert_eq!(Setup::Plain.scenarios(&Scenario::ALL), Scenario::ALL);
        assert_eq!(
            Setup::Tls.scenarios(&Scenario::ALL),
            [Scenario::Small, Scenario::Query]
        );
    }

    #[test]
    fn the_direct_loads_figures_are_all_required() {
        let line = r#"{"requests":10,"errors":0,"seconds":1.0,"p50_us":5,"p99_us":9,"cpu_seconds":0.5,"peak_rss_kib":700}"#;
        let figures = parse_figures(line).expect("complete figures");
        assert_eq!((figures.requests, figures.p99_us), (10, 9));
        let missing = parse_figures(r#"{"requests":10}"#).expect_err("incomplete");
        assert!(missing.contains("`errors`"), "{missing}");
        assert!(parse_figures("").is_err());
    }
}
