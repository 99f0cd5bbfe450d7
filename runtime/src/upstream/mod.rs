//! Upstreams: the gRPC servers behind the gateway, reached over its own HTTP/2 connections.
//!
//! An [`Upstream`] is a name with one or more endpoints (addresses, and DNS names resolved again
//! from time to time), each worker keeping one connection per endpoint. A call goes to the less
//! loaded of two endpoints, past those that are down (ejected after failing, or failing their
//! health check); a call the upstream never started (REFUSED_STREAM, or left out by a GOAWAY)
//! goes to another endpoint, or to the same one anew when it is the only one, within a retry
//! budget; a bulkhead sheds calls beyond the upstream's limit at once.
//!
//! Its modules, from the wire up: `address` (URLs and peers), `tls`, `dial` (connecting and
//! keepalive), `connection` (one self-renewing connection), `exchange` (one call on a stream),
//! `endpoint` (health), `directory` (discovery), `balance` (the choice of endpoint), `limits`
//! (bulkhead and retry budget), `health` (active checks), `unary` (unary calls without tonic's
//! client codec), `streaming` (streaming calls through tonic's client, with buffers that start
//! empty); this file assembles them.
//!
//! tonic merges a unary response's trailers into its metadata. The gateway sends headers back as
//! `Grpc-Metadata-<key>` and trailers as `Grpc-Trailer-<key>`, so the upstream copies the
//! trailers aside as the body yields them and hands them over through the response extensions.

mod address;
mod balance;
mod connection;
mod dial;
mod directory;
mod endpoint;
mod exchange;
mod health;
mod limits;
mod streaming;
mod tls;
mod unary;

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use http::HeaderMap;
use http_body::{Body, Frame};
use tokio::sync::oneshot;
use tonic::{Code, Status};

pub use self::balance::Balance;
pub use self::dial::Keepalive;
pub use self::directory::{Resolve, SystemResolver};
pub use self::endpoint::Ejection;
pub use self::health::HealthCheck;
pub use self::limits::{Bulkhead, RetryBudget};
pub use self::tls::{UpstreamTls, UpstreamTlsError};
pub use self::unary::Remote;

use self::address::Address;
use self::balance::Pool;
use self::connection::NotSent;
use self::dial::Dial;
use self::directory::Directory;
use self::endpoint::{Endpoint, InFlight};
use self::exchange::{MessageLimit, Source};
use self::limits::{Budget, Gate, Place};
use crate::abort::{AbortSignal, Abortable};
use crate::deadline::Deadlines;
use crate::observe::{Metrics, Scope, UpstreamMetrics, UpstreamTarget};

/// Where the trailers of one response are copied to.
#[derive(Clone, Default, Debug)]
pub(crate) struct TrailerSlot(Arc<Mutex<Option<HeaderMap>>>);

impl TrailerSlot {
    /// The trailers, once the body has yielded them.
    pub(crate) fn take(&self) -> Option<HeaderMap> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }

    /// Keeps the trailers that can become headers; gRPC's own (`grpc-status`, …) stay behind,
    /// so a call that ends without metadata keeps an empty map and allocates nothing.
    fn put(&self, trailers: &HeaderMap) {
        let kept: HeaderMap = trailers
            .iter()
            .filter(|(name, _)| !crate::metadata::is_reserved(name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(kept);
        }
    }
}

/// Sends at most this many attempts of one call (the first and two retries).
const MAX_ATTEMPTS: usize = 3;

/// An upstream gRPC service: a name, its endpoints, and how calls reach them.
///
/// Clones share everything, connections included. Connections run on the tokio runtime of the
/// call that opened them: give each runtime its own with [`Upstream::for_worker`], which shares
/// the endpoints, their health, the bulkhead and the retry budget, but not the connections.
///
/// ```
/// use std::time::Duration;
///
/// let upstream = protogate::Upstream::builder("orders")
///     .endpoint("http://10.0.0.7:50051")
///     .endpoint("http://10.0.0.8:50051")
///     .bulkhead(protogate::Bulkhead::new(256))
///     .deadlines(protogate::Deadlines { default: Some(Duration::from_secs(5)), max: None })
///     .build()?;
/// assert_eq!(upstream.name(), "orders");
/// # Ok::<(), protogate::UpstreamError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Upstream {
    shared: Arc<Shared>,
    pool: Arc<Pool>,
}

/// What every worker's copy of an upstream shares.
struct Shared {
    name: Arc<str>,
    /// The `:authority` of every request, instead of each endpoint's URL's.
    authority: Option<http::uri::Authority>,
    directory: Arc<Directory>,
    dial: Arc<Dial>,
    balance: Balance,
    gate: Option<Gate>,
    budget: Budget,
    max_response_bytes: usize,
    deadlines: Deadlines,
    health: Option<HealthCheck>,
    health_task: OnceLock<AbortOnDrop>,
    metrics: Option<UpstreamMetrics>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("directory", &self.directory)
            .field("balance", &self.balance)
            .field("gate", &self.gate)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("deadlines", &self.deadlines)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

/// A background task that ends with the upstream.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Upstream {
    /// How long connecting may take unless [`UpstreamBuilder::connect_timeout`] says otherwise.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    /// The largest response message accepted unless [`UpstreamBuilder::max_response_bytes`]
    /// says otherwise: 4 MiB, gRPC's own default.
    pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

    /// The HTTP/2 window each call gives the upstream unless [`UpstreamBuilder::stream_window`]
    /// says otherwise: 256 KiB.
    pub const DEFAULT_STREAM_WINDOW: u32 = dial::DEFAULT_STREAM_WINDOW;

    /// The smallest stream window an upstream may be given: HTTP/2's initial 65,535 bytes.
    pub const MIN_STREAM_WINDOW: u32 = dial::MIN_WINDOW;

    /// The largest stream window: HTTP/2's, 2^31 − 1 bytes.
    pub const MAX_STREAM_WINDOW: u32 = dial::MAX_WINDOW;

    /// The upstream at `url` alone, with every setting at its default, named after the URL.
    pub fn lazy(url: &str) -> Result<Upstream, UpstreamError> {
        Upstream::builder(url).endpoint(url).build()
    }

    /// An upstream called `name`, to be given its endpoints and settings.
    pub fn builder(name: impl Into<String>) -> UpstreamBuilder {
        UpstreamBuilder::new(name.into())
    }

    /// Its name, as messages about it say.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its deadline rules, which the services behind it take as their defaults.
    pub fn deadlines(&self) -> Deadlines {
        self.shared.deadlines
    }

    /// The same upstream for another worker: the same endpoints, health, bulkhead and retry
    /// budget, and connections of its own, opened on the runtime that calls through them.
    pub fn for_worker(&self) -> Upstream {
        Upstream {
            shared: Arc::clone(&self.shared),
            pool: Arc::new(Pool::new(
                Arc::clone(&self.shared.dial),
                self.shared.balance,
            )),
        }
    }

    /// How many of its endpoints could take a call now (not ejected, not failing a health
    /// check), for readiness probes. Waits for its names to be resolved a first time, and starts
    /// its health checks if it has them; call it on a runtime that lives as long as the upstream.
    pub async fn available_endpoints(&self) -> usize {
        self.start_health_checks();
        let snapshot = self.shared.directory.current(false).await;
        let now = std::time::Instant::now();
        snapshot
            .peers
            .iter()
            .filter(|state| state.available(now))
            .count()
    }

    /// Its status with the upstream's name in front of the message.
    fn named(&self, status: &Status) -> Status {
        Status::with_details(
            status.code(),
            format!("upstream `{}`: {}", self.shared.name, status.message()),
            status.details().to_vec().into(),
        )
    }

    fn start_health_checks(&self) {
        if let Some(check) = &self.shared.health {
            self.shared.health_task.get_or_init(|| {
                let task = tokio::spawn(health::run(
                    Arc::downgrade(&self.shared.directory),
                    Arc::clone(&self.shared.dial),
                    check.clone(),
                ));
                AbortOnDrop(task.abort_handle())
            });
        }
    }

    /// This worker's endpoints now (resolving the names first, the first time).
    async fn endpoints(&self) -> Arc<[Arc<Endpoint>]> {
        let directory = &self.shared.directory;
        if directory.has_names() {
            let snapshot = directory.current(false).await;
            self.pool.endpoints(snapshot.version, || snapshot)
        } else {
            self.pool
                .endpoints(directory.version(), || directory.snapshot())
        }
    }

    /// The endpoint of `list` for the next attempt, leaving out those `tried`.
    async fn pick(
        &self,
        list: &[Arc<Endpoint>],
        tried: &[Arc<Endpoint>],
    ) -> Result<Arc<Endpoint>, Status> {
        let directory = &self.shared.directory;
        if let Some(endpoint) = self.pool.pick(list, tried) {
            return Ok(endpoint);
        }
        if directory.has_names() {
            // Every endpoint down: perhaps the name has moved on.
            directory.current(true).await;
        }
        let snapshot = directory.snapshot();
        let mut message = format!("upstream `{}`: ", self.shared.name);
        if list.is_empty() {
            message.push_str("no endpoint");
        } else {
            message.push_str("no endpoint is available: ");
            let reasons: Vec<String> = list
                .iter()
                .map(|endpoint| format!("{} {}", endpoint.state.peer, endpoint.state.why_down()))
                .collect();
            message.push_str(&reasons.join(", "));
        }
        if let Some(problem) = &snapshot.problem {
            message.push_str(&format!(" ({problem})"));
        }
        Err(Status::unavailable(message))
    }

    /// One call: through the bulkhead, to an endpoint, and to others while the upstream has not
    /// started it and the budget allows.
    async fn send(self, request: http::Request<tonic::body::Body>) -> Result<Response, Status> {
        self.start_health_checks();
        let shared = &self.shared;
        let permit = match &shared.gate {
            None => None,
            Some(gate) => Some(gate.enter().await.ok_or_else(|| {
                crate::status::retry_later(
                    Code::Unavailable,
                    gate.shed_message(&shared.name),
                    limits::SHED_RETRY_AFTER,
                )
            })?),
        };
        shared.budget.deposit();

        // A request stream the gateway abandons must fail upstream, not end cleanly.
        let signal = request.extensions().get::<AbortSignal>().cloned();
        let scope = Scope::in_extensions(request.extensions()).cloned();
        let (head, body) = request.into_parts();
        let mut body = match signal {
            Some(signal) => Source::Streaming(tonic::body::Body::new(Abortable {
                inner: body,
                signal,
            })),
            None => Source::of(body),
        };
        let mut head = Some(head);
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let list = self.endpoints().await;
            let endpoint = self.pick(&list, &tried).await?;
            let in_flight = endpoint.start();
            let retry_left = attempts < MAX_ATTEMPTS;
            let sender = match endpoint.connection.ready().await {
                Ok(sender) => sender,
                Err(NotSent(status)) => {
                    // Nothing left the gateway: any call may go elsewhere.
                    tried.push(endpoint);
                    if retry_left && has_another(&list, &tried) && self.retry() {
                        continue;
                    }
                    return Err(self.named(&status));
                }
            };
            // A copy to send again if the upstream refuses it: to another endpoint, or to this
            // one (on a new connection, when the refusal was its connection's GOAWAY).
            let replay = body.replay().filter(|_| retry_left);
            let Some(this_head) = (match &replay {
                Some(_) => head.as_ref().map(copy_head),
                None => head.take(),
            }) else {
                return Err(Status::internal("the request head was sent already"));
            };
            let peer = &endpoint.state.peer;
            let authority = shared.authority.as_ref().unwrap_or(&peer.authority);
            let attempt = std::time::Instant::now();
            let sent = exchange::send(sender, peer, authority, this_head, body).await;
            if sent.is_ok() {
                endpoint.state.answered(attempt.elapsed());
            }
            if let Some(scope) = &scope
                && (sent.is_ok() || replay.is_none())
            {
                scope.set_upstream(UpstreamTarget {
                    upstream: Arc::clone(&shared.name),
                    endpoint: Arc::clone(&endpoint.state.label),
                });
            }
            match sent {
                Ok(exchange) => return Ok(self.respond(exchange, in_flight, permit, scope)),
                Err(failed) => {
                    if failed.broken {
                        endpoint.state.failed("its connection broke");
                    }
                    let again = replay.filter(|_| failed.refused);
                    tried.push(endpoint);
                    match again {
                        Some(again) if self.retry() => {
                            if !has_another(&list, &tried) {
                                // No other endpoint: this one again.
                                tried.pop();
                            }
                            tracing::debug!(upstream = %shared.name, "call refused; sending it again");
                            body = again;
                        }
                        _ => return Err(self.named(&failed.status)),
                    }
                }
            }
        }
    }

    /// Takes a retry from the budget, if it has one, counting either way.
    fn retry(&self) -> bool {
        let sent = self.shared.budget.withdraw();
        if let Some(metrics) = &self.shared.metrics {
            metrics.retry(sent);
        }
        sent
    }

    /// The response of a call that reached its endpoint.
    fn respond(
        &self,
        exchange: exchange::Exchange,
        in_flight: InFlight,
        permit: Option<Place>,
        scope: Option<Arc<Scope>>,
    ) -> Response {
        let state = &in_flight.endpoint().state;
        match exchange.response.headers().get("grpc-status") {
            Some(code) if code == "14" => state.failed("it answered UNAVAILABLE"),
            _ => state.succeeded(),
        }
        let trailers = TrailerSlot::default();
        let mut response = exchange.response.map(|recv| ResponseBody {
            recv,
            data_done: false,
            trailers: trailers.clone(),
            limit: MessageLimit::new(self.shared.max_response_bytes),
            call: Held {
                upstream: Arc::clone(&self.shared.name),
                in_flight,
                _permit: permit,
                scope,
            },
            _request: exchange.request,
        });
        response.extensions_mut().insert(trailers);
        response
    }
}

/// Whether an endpoint of `list` other than those `tried` could take a retry. With one endpoint,
/// nothing to look at: the common case costs no clock read.
fn has_another(list: &[Arc<Endpoint>], tried: &[Arc<Endpoint>]) -> bool {
    let mut others = list
        .iter()
        .filter(|endpoint| !tried.iter().any(|t| Arc::ptr_eq(t, endpoint)))
        .peekable();
    if others.peek().is_none() {
        return false;
    }
    let now = std::time::Instant::now();
    others.any(|endpoint| endpoint.state.available(now))
}

fn copy_head(head: &http::request::Parts) -> http::request::Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers.clone();
    request.into_parts().0
}

/// Builds an [`Upstream`]; see [`Upstream::builder`].
#[derive(Clone)]
pub struct UpstreamBuilder {
    name: String,
    urls: Vec<String>,
    authority: Option<String>,
    tls: Option<UpstreamTls>,
    connect_timeout: Duration,
    keepalive: Option<Keepalive>,
    balance: Balance,
    ejection: Ejection,
    resolve_every: Duration,
    resolver: Arc<dyn Resolve>,
    health: Option<HealthCheck>,
    bulkhead: Option<Bulkhead>,
    retry_budget: RetryBudget,
    max_response_bytes: usize,
    stream_window: u32,
    deadlines: Deadlines,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for UpstreamBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBuilder")
            .field("name", &self.name)
            .field("urls", &self.urls)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl UpstreamBuilder {
    fn new(name: String) -> Self {
        UpstreamBuilder {
            name,
            urls: Vec::new(),
            authority: None,
            tls: None,
            connect_timeout: Upstream::DEFAULT_CONNECT_TIMEOUT,
            keepalive: Some(Keepalive::default()),
            balance: Balance::default(),
            ejection: Ejection::default(),
            resolve_every: Duration::from_secs(30),
            resolver: Arc::new(SystemResolver),
            health: None,
            bulkhead: None,
            retry_budget: RetryBudget::default(),
            max_response_bytes: Upstream::DEFAULT_MAX_RESPONSE_BYTES,
            stream_window: Upstream::DEFAULT_STREAM_WINDOW,
            deadlines: Deadlines::NONE,
            metrics: None,
        }
    }

    /// Adds an endpoint: `http://host:port` (cleartext HTTP/2), `https://host:port` (TLS), or
    /// `unix:///path/to.sock`. A host that is a name stands for every address it resolves to.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// Adds several endpoints; see [`UpstreamBuilder::endpoint`].
    pub fn endpoints<I: IntoIterator<Item = S>, S: Into<String>>(mut self, urls: I) -> Self {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }

    /// The `:authority` (host) of every request, instead of each endpoint's URL's: for
    /// upstreams that route on it, such as a service mesh's ingress. The TLS server name is
    /// set apart, with [`UpstreamTls::server_name`].
    pub fn authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = Some(authority.into());
        self
    }

    /// TLS settings for its `https://` endpoints (by default: the system's certificate
    /// authorities, no client certificate).
    pub fn tls(mut self, tls: UpstreamTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How long connecting (TCP, TLS and HTTP/2 handshakes) may take; 5 s by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// HTTP/2 PINGs on its connections (`None`: none). By default every 30 s, answered in 10.
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// How calls are spread over its endpoints; least requests by default.
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// When a failing endpoint is taken out of rotation, and for how long.
    pub fn ejection(mut self, ejection: Ejection) -> Self {
        self.ejection = ejection;
        self
    }

    /// How often its DNS names are resolved again (30 s by default; never more often than
    /// every 100 ms, even when every endpoint is down).
    pub fn resolve_every(mut self, interval: Duration) -> Self {
        self.resolve_every = interval;
        self
    }

    /// Resolves its names with `resolver` instead of the system's.
    pub fn resolver(mut self, resolver: impl Resolve) -> Self {
        self.resolver = Arc::new(resolver);
        self
    }

    /// Checks its endpoints with `grpc.health.v1.Health/Check` in the background; an endpoint
    /// failing its check takes no calls.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health = Some(check);
        self
    }

    /// Bounds its calls in flight, shedding the excess with UNAVAILABLE (HTTP 503) and
    /// `Retry-After`.
    pub fn bulkhead(mut self, bulkhead: Bulkhead) -> Self {
        self.bulkhead = Some(bulkhead);
        self
    }

    /// How many calls the upstream never started may be sent again to another endpoint.
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.retry_budget = budget;
        self
    }

    /// The largest response message accepted (4 MiB by default): a larger one fails the call
    /// with RESOURCE_EXHAUSTED before it is read.
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// The HTTP/2 flow-control window each call gives the upstream: how much of a response it
    /// may send before the gateway has read it (256 KiB by default, from
    /// [`Upstream::MIN_STREAM_WINDOW`] to [`Upstream::MAX_STREAM_WINDOW`]). A larger one lets a
    /// stream of large messages run at full speed over a longer round trip; a smaller one bounds
    /// what a client that stops reading (or reads a little and leaves) keeps in the gateway's
    /// memory and makes the upstream produce for nothing.
    pub fn stream_window(mut self, bytes: u32) -> Self {
        self.stream_window = bytes;
        self
    }

    /// Deadlines of the calls of its services, unless a service or method sets its own.
    pub fn deadlines(mut self, deadlines: Deadlines) -> Self {
        self.deadlines = deadlines;
        self
    }

    /// Counts its calls, connections, endpoints' health, bulkhead and retries into `metrics`,
    /// under its name.
    pub fn metrics(mut self, metrics: &Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// The upstream; reads its TLS files now. Connections open with the first calls.
    pub fn build(self) -> Result<Upstream, UpstreamError> {
        let name = self.name;
        if self.urls.is_empty() {
            return Err(UpstreamError::NoEndpoint { name });
        }
        let sources = self
            .urls
            .iter()
            .map(|url| Address::parse(url))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| UpstreamError::Url {
                name: name.clone(),
                source,
            })?;
        let authority = self
            .authority
            .map(|text| {
                text.parse::<http::uri::Authority>()
                    .map_err(|_| UpstreamError::BadAuthority {
                        name: name.clone(),
                        authority: text,
                    })
            })
            .transpose()?;
        let tls = match (sources.iter().any(Address::tls), self.tls) {
            (true, tls) => {
                Some(
                    tls.unwrap_or_default()
                        .load()
                        .map_err(|source| UpstreamError::Tls {
                            name: name.clone(),
                            source,
                        })?,
                )
            }
            (false, None) => None,
            (false, Some(_)) => return Err(UpstreamError::TlsWithoutHttps { name }),
        };
        if !(Upstream::MIN_STREAM_WINDOW..=Upstream::MAX_STREAM_WINDOW)
            .contains(&self.stream_window)
        {
            return Err(UpstreamError::StreamWindow {
                name,
                bytes: self.stream_window,
            });
        }
        let metrics = self.metrics.map(|metrics| metrics.upstream(&name));
        let dial = Arc::new(Dial {
            connect_timeout: self.connect_timeout,
            tls,
            keepalive: self.keepalive,
            stream_window: self.stream_window,
            metrics: metrics.clone(),
        });
        let directory = Arc::new(Directory::new(
            sources,
            self.resolver,
            self.resolve_every,
            self.ejection,
            metrics.clone(),
        ));
        let shared = Arc::new(Shared {
            name: name.into(),
            authority,
            directory,
            balance: self.balance,
            gate: self.bulkhead.map(|bulkhead| {
                let counted = metrics.as_ref().map(UpstreamMetrics::bulkhead);
                Gate::new(bulkhead, counted.unwrap_or_default())
            }),
            budget: Budget::new(self.retry_budget),
            max_response_bytes: self.max_response_bytes,
            deadlines: self.deadlines,
            health: self.health,
            health_task: OnceLock::new(),
            dial,
            metrics,
        });
        Ok(Upstream {
            pool: Arc::new(Pool::new(Arc::clone(&shared.dial), shared.balance)),
            shared,
        })
    }
}

/// Why an upstream cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No endpoint given.
    #[error("upstream `{name}` has no endpoint")]
    NoEndpoint {
        /// The upstream.
        name: String,
    },
    /// An endpoint URL that cannot be used.
    #[error("upstream `{name}`: {source}")]
    Url {
        /// The upstream.
        name: String,
        /// What is wrong with the URL.
        source: UpstreamUrlError,
    },
    /// Its TLS settings cannot be loaded.
    #[error("upstream `{name}`: {source}")]
    Tls {
        /// The upstream.
        name: String,
        /// What failed.
        source: UpstreamTlsError,
    },
    /// An authority override that is not `host[:port]`.
    #[error("upstream `{name}`: `{authority}` is not a valid authority (host[:port])")]
    BadAuthority {
        /// The upstream.
        name: String,
        /// The authority given.
        authority: String,
    },
    /// A stream window outside HTTP/2's bounds.
    #[error(
        "upstream `{name}`: a stream window of {bytes} bytes is outside HTTP/2's {}..={}",
        Upstream::MIN_STREAM_WINDOW,
        Upstream::MAX_STREAM_WINDOW
    )]
    StreamWindow {
        /// The upstream.
        name: String,
        /// The window given.
        bytes: u32,
    },
    /// TLS settings for an upstream none of whose endpoints is `https://`.
    #[error("upstream `{name}` has TLS settings but no https:// endpoint")]
    TlsWithoutHttps {
        /// The upstream.
        name: String,
    },
}

/// Why a URL cannot name an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamUrlError {
    /// Not a URL at all.
    #[error("`{url}` is not a valid URL: {source}")]
    Invalid {
        /// The URL given.
        url: String,
        /// What the parser found wrong.
        source: http::uri::InvalidUri,
    },
    /// Not `http://`, `https://` or `unix:`.
    #[error(
        "`{url}` must start with http:// (cleartext HTTP/2), https:// (TLS) or unix: (a Unix domain socket)"
    )]
    UnsupportedScheme {
        /// The URL given.
        url: String,
    },
    /// No host (or socket path) to connect to.
    #[error("`{url}` names no host")]
    MissingHost {
        /// The URL given.
        url: String,
    },
    /// A path after the host, which gRPC has no use for.
    #[error("`{url}` has a path; give only scheme://host:port")]
    HasPath {
        /// The URL given.
        url: String,
    },
}

/// The response of an upstream call.
type Response = http::Response<ResponseBody>;

impl tower::Service<http::Request<tonic::body::Body>> for Upstream {
    type Response = Response;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Status>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call waits for its own stream (and its place in the bulkhead) in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}

/// What a response holds on to until its body is done: its place in the bulkhead and its count
/// among the endpoint's calls in flight.
struct Held {
    upstream: Arc<str>,
    in_flight: InFlight,
    _permit: Option<Place>,
    /// The record of the request the call serves, told when the call ends.
    scope: Option<Arc<Scope>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(scope) = &self.scope {
            scope.upstream_done();
        }
    }
}

/// The body of an upstream response: its data as the upstream sends it, each message held to
/// the upstream's size limit, then its trailers, which it also copies aside (tonic folds them
/// into the response's metadata).
pub struct ResponseBody {
    recv: RecvStream,
    data_done: bool,
    trailers: TrailerSlot,
    limit: MessageLimit,
    call: Held,
    /// Held while a streaming request is still being sent; dropping it stops that.
    _request: Option<oneshot::Sender<std::convert::Infallible>>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Read: the upstream may send as much again.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Err(len) = this.limit.check(&data) {
                        return Poll::Ready(Some(Err(this.too_large(len))));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => {
                    return Poll::Ready(Some(Err(exchange::status_of(&error))));
                }
                None => this.data_done = true,
            }
        }
        Poll::Ready(match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => {
                if trailers.get("grpc-status").is_some_and(|code| code == "14") {
                    let state = &this.call.in_flight.endpoint().state;
                    state.failed("it answered UNAVAILABLE");
                }
                this.trailers.put(&trailers);
                Some(Ok(Frame::trailers(trailers)))
            }
            Ok(None) => None,
            Err(error) => Some(Err(exchange::status_of(&error))),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

impl ResponseBody {
    fn too_large(&mut self, len: usize) -> Status {
        self.data_done = true;
        let message = format!(
            "upstream `{}`: a response message of {len} bytes is larger than the limit of {} bytes",
            self.call.upstream,
            self.limit.max()
        );
        tracing::warn!(upstream = %self.call.upstream, len, limit = self.limit.max(), "response message too large");
        Status::resource_exhausted(message)
    }
}

/// Anything that can carry gRPC calls for generated code in place of an [`Upstream`]: a
/// `tonic::transport::Channel`, or any tower service of HTTP requests with a body of bytes, so a
/// Rust user can bring a tower stack of their own.
///
/// With a transport other than [`Upstream`], a unary response's trailers reach the client as
/// headers (`Grpc-Metadata-…`), since tonic merges them into the response metadata.
pub trait GrpcTransport:
    tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<tonic::codegen::StdError>,
        ResponseBody: Body<Data = Bytes, Error: Into<tonic::codegen::StdError> + Send>
                          + Send
                          + 'static,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> GrpcTransport for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            Error: Into<tonic::codegen::StdError>,
            ResponseBody: Body<Data = Bytes, Error: Into<tonic::codegen::StdError> + Send>
                              + Send
                              + 'static,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}
