//! The stock gateway's config file: what it may say, read strictly, and merged into the
//! settings each upstream, service and method gets.
//!
//! The file is TOML (YAML or JSON by extension). Settings merge from the most general to the most
//! specific: `[defaults.upstream]` → `[upstreams.NAME]` → `[services."pkg.Service"]` →
//! `[services."pkg.Service".methods.Method]`; a section that says nothing means "the defaults".
//! `PROTOGATE_…` environment variables override keys, and flags override both (`load`).
//!
//! Read with serde and the `toml` crate (`serde_yaml_ng`, `serde_json` for the other forms):
//! typed structs with `deny_unknown_fields`, and `serde_path_to_error` for the key path of a
//! value that does not fit, so a mistake is reported with its key, line and column. We chose
//! plain serde over figment or config-rs because those lose the line and column of an error.

mod auth;
mod cors;
mod duration;
mod edge;
mod load;
mod observe;
mod rate_limit;
mod traces;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use self::auth::{
    ApiKeyEntry, ApiKeysSection, AuthSection, ExternalSection, JwtSection, Needs, RouteAuth,
    SessionsSection,
};
pub use self::cors::{CompressionSection, CorsSection, LimitsSection, RouteCors};
pub use self::duration::Span;
pub use self::edge::RouteRule;
pub use self::load::{ConfigError, Format, load, load_text};
pub use self::observe::{LogFormat, LogLevel, LogSection, MetricsSection};
pub use self::rate_limit::{
    KeyName, RateLimitSection, RedisFailure, RedisSection, RouteLimit, RouteRateLimit,
};
pub use self::traces::TracingSection;

/// The whole config file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The listener and the server's threads.
    pub server: Server,
    /// How requests are read and answered, for every service.
    pub gateway: GatewaySection,
    /// Settings every upstream and service starts from.
    pub defaults: Defaults,
    /// The upstreams, by name: their endpoints, and settings over the defaults.
    pub upstreams: BTreeMap<String, UpstreamSettings>,
    /// The services, by full proto name; one not listed goes to the default upstream.
    pub services: BTreeMap<String, ServiceSection>,
    /// The admin listener; none unless given.
    pub admin: Option<Admin>,
    /// The public listeners, when there are several or one uses TLS; `[server] listen` is the
    /// one listener otherwise.
    pub listeners: Vec<Listener>,
    /// Edge policy by route (`[[routes]]`): each rule covers the routes its `match` selects and
    /// sets some policies; for each policy the first rule that covers a request and sets it
    /// wins, and the policy's own section gives the default.
    pub routes: Vec<RouteRule>,
    /// Who may call (`[auth]`): JWT providers, API keys, forwarded claims; off without it.
    pub auth: Option<AuthSection>,
    /// Rate limits: the default limit, whose requests are counted together, trusted proxies;
    /// on when present or when a `[[routes]]` rule sets a `rate_limit`.
    pub rate_limit: Option<RateLimitSection>,
    /// The Redis server replicas share state through (rate limits).
    pub redis: Option<RedisSection>,
    /// CORS for every route (`[cors]`), on when present or when a `[[routes]]` rule sets it.
    pub cors: Option<CorsSection>,
    /// Request size limits for every route (`[limits]`).
    pub limits: Option<LimitsSection>,
    /// Response compression and request decoding (`[compression]`), on when present.
    pub compression: Option<CompressionSection>,
    /// Prometheus metrics (`[metrics]`), on by default, at `/metrics` on the admin listener.
    pub metrics: MetricsSection,
    /// Log level and format, and the access log (`[log]`).
    pub log: LogSection,
    /// OpenTelemetry traces exported over OTLP (`[tracing]`), on when present.
    pub tracing: Option<TracingSection>,
}

/// `[[listeners]]`: an address, cleartext or TLS.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// TLS with this certificate; cleartext (HTTP/1.1 and HTTP/2 with prior knowledge) without.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
}

/// A listener's certificate chain and private key, PEM files read again when they change.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// `[admin]`: health, readiness and the effective config, on an address of their own.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Address to listen on (`127.0.0.1:9901` by default).
    pub listen: Option<SocketAddr>,
}

impl Admin {
    /// Where the admin listener listens unless told otherwise.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);
}

/// `[server]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address to listen on (`127.0.0.1:8080` by default).
    pub listen: Option<SocketAddr>,
    /// Worker threads (one per CPU by default).
    pub workers: Option<NonZeroUsize>,
    /// How long a client may take to send a request's headers (and, on a new connection, to
    /// start its first request) before the connection is closed (30 s by default).
    pub header_read_timeout: Option<Span>,
    /// How long a write to a client may wait for the client to take data before the
    /// connection is closed (60 s by default): a client that stops reading a response or a
    /// stream is let go. A stream with nothing to send is not waiting.
    pub send_timeout: Option<Span>,
    /// The most connections open at once, between all clients (10,000 by default); past it, a
    /// new connection is answered 503 and closed.
    pub max_connections: Option<NonZeroUsize>,
    /// On SIGTERM or SIGINT, how long calls in flight may take to finish before the gateway
    /// cuts them and exits with an error (30 s by default).
    pub shutdown_timeout: Option<Span>,
    /// Serve `/docs` and `/openapi.json` (on by default).
    pub docs: Option<bool>,
    /// Serve the demo, when the build has it: its page and, without an upstream of its own, its
    /// service in-process. On by default, off by default in a config file that names upstreams.
    pub demo: Option<bool>,
}

impl Server {
    /// Whether `/docs` and `/openapi.json` are served.
    pub fn serves_docs(&self) -> bool {
        self.docs != Some(false)
    }

    /// Whether the demo is served (when the build has it).
    pub fn serves_demo(&self) -> bool {
        self.demo != Some(false)
    }
}

/// `[gateway]`: the `Gateway` options.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// Write fields with default values too.
    pub emit_defaults: Option<bool>,
    /// Write fields by their proto names instead of their JSON names.
    pub proto_names: Option<bool>,
    /// Write enums as numbers.
    pub enums_as_ints: Option<bool>,
    /// Ignore unknown fields in request bodies instead of answering 400.
    pub ignore_unknown_fields: Option<bool>,
    /// Answer 400 for query parameters that name no field.
    pub reject_unknown_query_parameters: Option<bool>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: Option<usize>,
    /// How long the body of a call that sends one message may take to arrive (30 s by
    /// default); past it, 408.
    pub body_timeout: Option<Span>,
    /// The largest message of a request stream, in bytes.
    pub max_message_bytes: Option<usize>,
    /// Ends a streaming call after this long without a message either way.
    pub stream_idle_timeout: Option<Span>,
    /// Ends a streaming call once it has lasted this long.
    pub stream_max_duration: Option<Span>,
    /// The deadline of calls that send no `Grpc-Timeout`, where no upstream, service or method
    /// sets one (in-process services included).
    pub timeout: Option<Span>,
    /// The longest deadline any client may ask for, on top of every other maximum.
    pub max_timeout: Option<Span>,
    /// Answer 204 with no body for methods that return `google.protobuf.Empty` (unless the
    /// method sets its own `status`).
    pub empty_as_no_content: Option<bool>,
    /// Request headers forwarded as metadata keys of their own: `{ "x-tenant" = "tenant" }`.
    pub request_headers: BTreeMap<String, String>,
    /// Response metadata written as plain headers: `{ location = "Location" }`, instead of
    /// `Grpc-Metadata-location`.
    pub response_headers: BTreeMap<String, String>,
    /// How error responses are written: `status` (google.rpc.Status JSON, the default) or
    /// `problem` (RFC 9457 `application/problem+json`).
    pub error_format: Option<ErrorFormat>,
    /// Serve the RPCs without a `google.api.http` rule too, each at
    /// `POST /{package}.{Service}/{Method}` with the whole request message as the body (off by
    /// default: an RPC no rule exposes stays unreachable, unlisted and undocumented).
    pub unbound_methods: Option<bool>,
}

impl GatewaySection {
    /// Whether the unbound routes are served.
    pub fn serves_unbound(&self) -> bool {
        self.unbound_methods == Some(true)
    }
}

/// The body of error responses.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorFormat {
    /// google.rpc.Status as JSON: `{"code", "message", "details"}`.
    Status,
    /// RFC 9457 problem details, `application/problem+json`.
    Problem,
}

/// `[defaults]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// The upstream of every service that names none.
    pub upstream: Option<String>,
    /// Settings every upstream starts from.
    #[serde(rename = "upstream_settings")]
    pub upstream_settings: UpstreamSettings,
}

/// What an upstream can set; anything left out comes from `[defaults.upstream_settings]`
/// (which has no endpoints of its own).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSettings {
    /// `http://host:port`, `https://host:port` or `unix:///path`; a host name stands for all its
    /// addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// TLS for `https://` endpoints.
    pub tls: Option<Tls>,
    /// The `:authority` of requests, instead of each endpoint's.
    pub authority: Option<String>,
    /// How long connecting may take.
    pub connect_timeout: Option<Span>,
    /// `least_requests` (default) or `round_robin`.
    pub balance: Option<BalanceName>,
    /// How often host names are resolved again.
    pub resolve_every: Option<Span>,
    /// HTTP/2 PINGs.
    pub keepalive: Option<KeepaliveSection>,
    /// When a failing endpoint is taken out, and for how long.
    pub ejection: Option<EjectionSection>,
    /// Active health checks.
    pub health_check: Option<HealthCheckSection>,
    /// Calls in flight at most; beyond them (and a short queue) calls are shed.
    pub max_in_flight: Option<NonZeroUsize>,
    /// Retries of calls never started.
    pub retry_budget: Option<RetryBudgetSection>,
    /// The largest response message accepted, in bytes.
    pub max_response_bytes: Option<usize>,
    /// The HTTP/2 window of each call, in bytes: what the upstream may send before the gateway
    /// reads it.
    pub stream_window: Option<u32>,
    /// The deadline of calls whose client sends no `Grpc-Timeout`.
    pub timeout: Option<Span>,
    /// The longest deadline a client may ask for.
    pub max_timeout: Option<Span>,
}

/// TLS to an upstream.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// CA files to trust (the system's roots when empty).
    pub ca: Vec<PathBuf>,
    /// Client certificate chain, for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// The server name to ask for and verify.
    pub server_name: Option<String>,
}

/// How calls spread over endpoints.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BalanceName {
    /// The less loaded of two endpoints picked at random.
    LeastRequests,
    /// Each endpoint in turn.
    RoundRobin,
}

/// HTTP/2 PINGs, or `keepalive = false` for none.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum KeepaliveSection {
    /// `false`: no PINGs.
    Off(bool),
    /// `{ interval = "30s", timeout = "10s" }`.
    Every {
        /// Time between PINGs.
        interval: Span,
        /// How long a PING may go unanswered.
        timeout: Span,
    },
}

/// Passive ejection.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EjectionSection {
    /// Failures in a row that eject an endpoint.
    pub consecutive_failures: u32,
    /// The first ejection's length, doubled each time.
    pub base: Span,
    /// The longest ejection.
    pub max: Span,
}

/// Active health checks.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// The service name asked about (`""` for the server).
    pub service: String,
    /// Time between rounds (5 s by default).
    #[serde(default)]
    pub interval: Option<Span>,
    /// How long a check may take (1 s by default).
    #[serde(default)]
    pub timeout: Option<Span>,
}

/// The retry budget.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetSection {
    /// Retries per call made.
    pub ratio: f64,
    /// Retries allowed every second in any case.
    pub min_per_second: u32,
}

/// `[services."pkg.Service"]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSection {
    /// The upstream it forwards to (the default upstream if none).
    pub upstream: Option<String>,
    /// Deadline of its calls whose client sends no `Grpc-Timeout`.
    pub timeout: Option<Span>,
    /// The longest deadline a client may ask for.
    pub max_timeout: Option<Span>,
    /// Its methods' own deadlines, by method name.
    pub methods: BTreeMap<String, MethodSection>,
}

/// `[services."pkg.Service".methods.Method]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MethodSection {
    /// Deadline of its calls whose client sends no `Grpc-Timeout`.
    pub timeout: Option<Span>,
    /// The longest deadline a client may ask for.
    pub max_timeout: Option<Span>,
    /// The HTTP status of a successful answer instead of 200 (201 for a create, 202, or 204,
    /// which is sent without a body). Unary answers only: streams answer 200.
    pub status: Option<u16>,
}

impl UpstreamSettings {
    /// These settings where they say something, `defaults`' elsewhere.
    pub fn over(&self, defaults: &UpstreamSettings) -> UpstreamSettings {
        fn pick<T: Clone>(mine: &Option<T>, theirs: &Option<T>) -> Option<T> {
            mine.clone().or_else(|| theirs.clone())
        }
        UpstreamSettings {
            endpoints: self.endpoints.clone(),
            tls: pick(&self.tls, &defaults.tls),
            authority: pick(&self.authority, &defaults.authority),
            connect_timeout: pick(&self.connect_timeout, &defaults.connect_timeout),
            balance: pick(&self.balance, &defaults.balance),
            resolve_every: pick(&self.resolve_every, &defaults.resolve_every),
            keepalive: pick(&self.keepalive, &defaults.keepalive),
            ejection: pick(&self.ejection, &defaults.ejection),
            health_check: pick(&self.health_check, &defaults.health_check),
            max_in_flight: pick(&self.max_in_flight, &defaults.max_in_flight),
            retry_budget: pick(&self.retry_budget, &defaults.retry_budget),
            max_response_bytes: pick(&self.max_response_bytes, &defaults.max_response_bytes),
            stream_window: pick(&self.stream_window, &defaults.stream_window),
            timeout: pick(&self.timeout, &defaults.timeout),
            max_timeout: pick(&self.max_timeout, &defaults.max_timeout),
        }
    }
}

/// The config as it takes effect, as TOML: every upstream with the defaults merged in.
pub fn effective(config: &Config) -> String {
    let mut merged = config.clone();
    for settings in merged.upstreams.values_mut() {
        *settings = settings.over(&config.defaults.upstream_settings);
    }
    toml::to_string_pretty(&merged).unwrap_or_else(|e| format!("# cannot be printed: {e}\n"))
}
