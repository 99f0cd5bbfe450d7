//! Prometheus metrics: an [`Observer`] that counts requests, streams and edge decisions, and the
//! handle the built-in upstreams count their connections, endpoints, bulkheads and retries with.
//!
//! Every label is a closed type: route templates come from the compiled route table (`unrouted`
//! for a request that matches none), methods from a fixed list, statuses are numbers, gRPC codes
//! their names, upstreams and endpoints what the config names. No path, id or client address is
//! ever a label value.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry, Unit};

use super::scope::{Scope, StreamTransport, code_name};
use super::{Event, Observer};
use crate::route::RouteInfo;

/// The bounds of the latency buckets, in seconds: 100 µs to 30 s.
const LATENCY_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The bounds of the size buckets, in bytes: 64 B to 16 MiB, four times apart.
const SIZE_BUCKETS: [f64; 10] = [
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// The bounds of the stream duration buckets, in seconds: 10 ms to 1 h.
const STREAM_BUCKETS: [f64; 11] = [
    0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

fn stream_histogram() -> Histogram {
    Histogram::new(STREAM_BUCKETS)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// A label value that writes a fixed text.
macro_rules! text_label {
    ($name:ident) => {
        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.text())
            }
        }
    };
}

/// The route label: a template of the compiled route table, or `unrouted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteLabel(Option<&'static str>);

impl RouteLabel {
    /// The label of a request's route.
    pub fn of(scope: &Scope) -> RouteLabel {
        RouteLabel(scope.route().map(|route| route.template.text))
    }

    fn text(&self) -> &'static str {
        self.0.unwrap_or("unrouted")
    }
}
text_label!(RouteLabel);

/// The method label: the standard methods by name, `OTHER` for any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MethodLabel(&'static str);

impl MethodLabel {
    /// The label of `method`.
    pub fn of(method: &http::Method) -> MethodLabel {
        const KNOWN: [&str; 9] = [
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE",
        ];
        let name = method.as_str();
        MethodLabel(
            KNOWN
                .iter()
                .find(|known| **known == name)
                .copied()
                .unwrap_or("OTHER"),
        )
    }

    fn text(&self) -> &'static str {
        self.0
    }
}
text_label!(MethodLabel);

/// The HTTP status label: the status's number (`0` where none was sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusLabel(u16);

impl EncodeLabelValue for StatusLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        write!(encoder, "{}", self.0)
    }
}

/// The gRPC code label: the code's name as gRPC writes it (`OK`, `NOT_FOUND`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CodeLabel(tonic::Code);

impl CodeLabel {
    fn text(&self) -> &'static str {
        code_name(self.0)
    }
}
text_label!(CodeLabel);

/// A fixed word: a transport, a direction, a reason, an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Word(&'static str);

impl Word {
    fn text(&self) -> &'static str {
        self.0
    }
}
text_label!(Word);

/// A name the config gives: an upstream, or one of its endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Name(Arc<str>);

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

/// The labels of a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    route: RouteLabel,
    method: MethodLabel,
    status: StatusLabel,
    code: CodeLabel,
}

impl RequestLabels {
    /// The labels of a request that has ended.
    pub fn of(scope: &Scope) -> RequestLabels {
        RequestLabels {
            route: RouteLabel::of(scope),
            method: MethodLabel::of(scope.method()),
            status: StatusLabel(scope.status().map_or(0, |status| status.as_u16())),
            code: CodeLabel(scope.code().unwrap_or(tonic::Code::Unknown)),
        }
    }
}

/// The labels of a route.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: RouteLabel,
    method: MethodLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransportLabels {
    transport: Word,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MessageLabels {
    transport: Word,
    direction: Word,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StreamEndLabels {
    transport: Word,
    code: CodeLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: Word,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RateLimitLabels {
    decision: Word,
    store: Word,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Word,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: Name,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    upstream: Name,
    endpoint: Name,
}

/// What the build serves, for `protogate_build_info`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    protos: String,
    rpcs: String,
}

/// The metrics of a gateway, and the registry that serves them. Clones share everything; make
/// one per process and hand it to the [`ObserveLayer`](super::ObserveLayer) (it is an
/// [`Observer`]) and to every upstream ([`UpstreamBuilder::metrics`](crate::UpstreamBuilder::metrics)).
///
/// ```
/// let metrics = protogate::observe::Metrics::new();
/// let app: axum::Router = protogate::Gateway::new()
///     .into_router()
///     .layer(protogate::observe::ObserveLayer::new().observer(metrics.clone()));
/// let text = metrics.encode();
/// assert!(text.ends_with("# EOF\n"));
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Mutex<Registry>,
    /// Metrics under their standard names, without the `protogate_` prefix (the process's).
    unprefixed: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    duration: Histograms<RequestLabels>,
    request_size: Histograms<RouteLabels>,
    response_size: Histograms<RouteLabels>,
    in_flight: Family<RouteLabels, Gauge>,
    streams_open: Family<TransportLabels, Gauge>,
    stream_messages: Family<MessageLabels, Counter>,
    streams_ended: Family<StreamEndLabels, Counter>,
    stream_duration: Histograms<TransportLabels>,
    auth_failures: Family<ReasonLabels, Counter>,
    rate_limit: Family<RateLimitLabels, Counter>,
    redis_errors: Counter,
    reloads: Family<OutcomeLabels, Counter>,
    upstream: UpstreamFamilies,
    /// Each route's series, found once (see [`RouteSeries`]).
    routes: RwLock<HashMap<RouteKey, Arc<RouteSeries>>>,
}

/// A route and a method as the cache of series knows them: the addresses of the route's
/// `RouteInfo` and of the method label's text. Two keys may lead to the same series (the labels
/// decide which series that is), never one key to two.
type RouteKey = (usize, usize);

/// The series a routed request counts into, found in the families once per route and method and
/// kept: a request then counts without hashing a label or taking the families' locks.
struct RouteSeries {
    in_flight: Gauge,
    request_size: Histogram,
    response_size: Histogram,
    /// The requests answered 200 with OK, and how long those took (streams excluded).
    ok: Counter,
    ok_duration: Histogram,
}

/// The upstreams' metrics.
struct UpstreamFamilies {
    call_duration: Histograms<EndpointLabels>,
    opened: Family<EndpointLabels, Counter>,
    closed: Family<EndpointLabels, Counter>,
    connect_failures: Family<EndpointLabels, Counter>,
    endpoint_up: Family<EndpointLabels, Gauge>,
    bulkhead_in_flight: Family<UpstreamLabels, Gauge>,
    bulkhead_queued: Family<UpstreamLabels, Gauge>,
    bulkhead_shed: Family<UpstreamLabels, Counter>,
    retries: Family<UpstreamLabels, Counter>,
    budget_exhausted: Family<UpstreamLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The content type of [`Metrics::encode`]'s text.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// Every metric, at zero, in a registry of its own (names start with `protogate_`).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("protogate");
        let mut add = Registering(&mut registry);
        let requests = add.metric(
            "http_requests",
            "Requests answered, by route template, method, HTTP status and gRPC code",
            Family::default(),
        );
        let duration = add.timed(
            "http_request_duration",
            "Time from a request's arrival to the end of its answer (streams excluded)",
            latency_histogram,
        );
        let request_size = add.sized(
            "http_request_size",
            "Request body sizes, by route template and method",
        );
        let response_size = add.sized(
            "http_response_size",
            "Response body sizes, by route template and method",
        );
        let in_flight = add.metric(
            "http_requests_in_flight",
            "Routed requests under way, by route template and method",
            Family::default(),
        );
        let streams_open = add.metric(
            "streams_open",
            "Streaming calls under way, by transport",
            Family::default(),
        );
        let stream_messages = add.metric(
            "stream_messages",
            "Messages of streaming calls, by transport and direction (in: from the client)",
            Family::default(),
        );
        let streams_ended = add.metric(
            "streams_ended",
            "Streaming calls ended, by transport and the gRPC code they ended with",
            Family::default(),
        );
        let stream_duration = add.timed(
            "stream_duration",
            "How long streaming calls lasted, by transport",
            stream_histogram,
        );
        let auth_failures = add.metric(
            "auth_failures",
            "Requests an auth layer refused, by reason",
            Family::default(),
        );
        let rate_limit = add.metric(
            "rate_limit_decisions",
            "Rate limit decisions, by decision (allowed, limited) and store (local, redis)",
            Family::default(),
        );
        let redis_errors = add.metric(
            "rate_limit_redis_errors",
            "Rate limit decisions for which Redis failed",
            Counter::default(),
        );
        let reloads = add.metric(
            "config_reloads",
            "Config reloads, by outcome (ok, failed)",
            Family::default(),
        );
        let upstream = UpstreamFamilies::register(&mut add);
        Metrics(Arc::new(Inner {
            registry: Mutex::new(registry),
            unprefixed: Mutex::new(Registry::default()),
            requests,
            duration,
            request_size,
            response_size,
            in_flight,
            streams_open,
            stream_messages,
            streams_ended,
            stream_duration,
            auth_failures,
            rate_limit,
            redis_errors,
            reloads,
            upstream,
            routes: RwLock::default(),
        }))
    }

    /// The series of a request routed to `route` with `method`.
    fn route_series(&self, route: &'static RouteInfo, method: MethodLabel) -> Arc<RouteSeries> {
        let key = (
            std::ptr::from_ref(route) as usize,
            method.0.as_ptr() as usize,
        );
        let inner = &*self.0;
        let found = inner
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(series) = found {
            return series;
        }
        let labels = RouteLabels {
            route: RouteLabel(Some(route.template.text)),
            method,
        };
        let ok = RequestLabels {
            route: labels.route,
            method,
            status: StatusLabel(200),
            code: CodeLabel(tonic::Code::Ok),
        };
        let series = Arc::new(RouteSeries {
            in_flight: inner.in_flight.get_or_create(&labels).clone(),
            request_size: inner.request_size.get_or_create(&labels).clone(),
            response_size: inner.response_size.get_or_create(&labels).clone(),
            ok: inner.requests.get_or_create(&ok).clone(),
            ok_duration: inner.duration.get_or_create(&ok).clone(),
        });
        inner
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_insert(series)
            .clone()
    }

    /// Says what the build serves, as `protogate_build_info{version, protos, rpcs}`.
    pub fn build_info(&self, version: &str, protos: usize, rpcs: usize) {
        let info = Info::new(BuildLabels {
            version: version.to_owned(),
            protos: protos.to_string(),
            rpcs: rpcs.to_string(),
        });
        self.registry()
            .register("build", "What this build of the gateway serves", info);
    }

    /// Counts a config reload.
    pub fn config_reloaded(&self, ok: bool) {
        let outcome = Word(if ok { "ok" } else { "failed" });
        self.0
            .reloads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Adds a counter whose value `read` gives at each scrape, named `protogate_{name}_total`:
    /// for counts kept elsewhere (log lines a writer dropped).
    pub fn polled_counter(
        &self,
        name: &str,
        help: &str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.registry().register(name, help, Polled(Box::new(read)));
    }

    /// Adds a gauge whose value `read` gives at each scrape, named `protogate_{name}`: for
    /// figures kept elsewhere (the tasks alive on the gateway's runtimes).
    pub fn polled_gauge(
        &self,
        name: &str,
        help: &str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) {
        self.registry()
            .register(name, help, PolledGauge(Box::new(read)));
    }

    /// Adds the standard process metrics under their usual names (no `protogate_` prefix),
    /// read from `/proc` at each scrape: `process_open_fds`, `process_resident_memory_bytes`,
    /// `process_cpu_seconds_total` and `process_start_time_seconds`. Where `/proc` cannot be
    /// read (not Linux), they are left out of the scrape.
    pub fn process_metrics(&self) {
        self.0
            .unprefixed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register_collector(Box::new(super::process::ProcessCollector));
    }

    /// Every metric in the OpenMetrics text format ([`Metrics::CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry());
        let _ = encode_registry(
            &mut text,
            &self
                .0
                .unprefixed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let _ = encode_eof(&mut text);
        text
    }

    /// The handle an upstream named `name` counts into.
    pub fn upstream(&self, name: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            name: Name(name.into()),
            metrics: self.clone(),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Observer for Metrics {
    fn on_event(&self, scope: &Scope, event: Event) {
        let inner = &*self.0;
        match event {
            Event::Routed => {
                if let Some(route) = scope.route() {
                    let method = MethodLabel::of(scope.method());
                    self.route_series(route, method).in_flight.inc();
                }
            }
            Event::StreamOpened => {
                if let Some(transport) = scope.stream() {
                    let transport = Word(transport.name());
                    inner
                        .streams_open
                        .get_or_create(&TransportLabels { transport })
                        .inc();
                }
            }
        }
    }

    fn on_end(&self, scope: &Scope) {
        let inner = &*self.0;
        let labels = RequestLabels::of(scope);
        let seconds = scope.duration().unwrap_or_default().as_secs_f64();
        let (bytes_in, bytes_out) = (scope.bytes_in() as f64, scope.bytes_out() as f64);
        let answered_ok = labels.status.0 == 200 && labels.code.0 == tonic::Code::Ok;
        let streamed = scope.stream().is_some();
        match scope.route() {
            Some(route) => {
                let series = self.route_series(route, labels.method);
                series.in_flight.dec();
                series.request_size.observe(bytes_in);
                series.response_size.observe(bytes_out);
                if answered_ok {
                    series.ok.inc();
                    if !streamed {
                        series.ok_duration.observe(seconds);
                    }
                } else {
                    self.count_request(&labels, streamed, seconds);
                }
            }
            None => {
                let route = RouteLabels {
                    route: labels.route,
                    method: labels.method,
                };
                inner.request_size.get_or_create(&route).observe(bytes_in);
                inner.response_size.get_or_create(&route).observe(bytes_out);
                self.count_request(&labels, streamed, seconds);
            }
        }
        if let Some(transport) = scope.stream() {
            self.count_stream(scope, transport, seconds);
        }
        if let Some(reason) = scope.auth_failure() {
            let reason = Word(reason);
            inner
                .auth_failures
                .get_or_create(&ReasonLabels { reason })
                .inc();
        }
        if let Some(decision) = scope.rate_limit() {
            let labels = RateLimitLabels {
                decision: Word(if decision.allowed {
                    "allowed"
                } else {
                    "limited"
                }),
                store: Word(if decision.redis { "redis" } else { "local" }),
            };
            inner.rate_limit.get_or_create(&labels).inc();
            if decision.redis_error {
                inner.redis_errors.inc();
            }
        }
    }
}

impl Metrics {
    /// Counts a request by its labels, and its latency unless it was a stream.
    fn count_request(&self, labels: &RequestLabels, streamed: bool, seconds: f64) {
        let inner = &*self.0;
        inner.requests.get_or_create(labels).inc();
        if !streamed {
            inner.duration.get_or_create(labels).observe(seconds);
        }
    }

    /// Counts a stream that ended after `seconds`.
    fn count_stream(&self, scope: &Scope, transport: StreamTransport, seconds: f64) {
        let inner = &*self.0;
        let transport = Word(transport.name());
        let labels = TransportLabels { transport };
        inner.streams_open.get_or_create(&labels).dec();
        inner
            .stream_duration
            .get_or_create(&labels)
            .observe(seconds);
        for (direction, count) in [("in", scope.messages_in()), ("out", scope.messages_out())] {
            if count > 0 {
                let direction = Word(direction);
                inner
                    .stream_messages
                    .get_or_create(&MessageLabels {
                        transport,
                        direction,
                    })
                    .inc_by(count);
            }
        }
        let code = CodeLabel(scope.code().unwrap_or(tonic::Code::Unknown));
        inner
            .streams_ended
            .get_or_create(&StreamEndLabels { transport, code })
            .inc();
    }
}

impl UpstreamFamilies {
    fn register(add: &mut Registering<'_>) -> UpstreamFamilies {
        UpstreamFamilies {
            call_duration: add.timed(
                "upstream_call_duration",
                "Time from sending an upstream call to its response's headers, by upstream and endpoint",
                latency_histogram,
            ),
            opened: add.metric(
                "upstream_connections_opened",
                "Upstream connections opened, by upstream and endpoint",
                Family::default(),
            ),
            closed: add.metric(
                "upstream_connections_closed",
                "Upstream connections that ended, by upstream and endpoint",
                Family::default(),
            ),
            connect_failures: add.metric(
                "upstream_connect_failures",
                "Upstream connections that could not be opened, by upstream and endpoint",
                Family::default(),
            ),
            endpoint_up: add.metric(
                "upstream_endpoint_up",
                "1 while an upstream endpoint takes calls, 0 while it is ejected or fails its health check",
                Family::default(),
            ),
            bulkhead_in_flight: add.metric(
                "upstream_bulkhead_in_flight",
                "Calls holding a place in an upstream's bulkhead",
                Family::default(),
            ),
            bulkhead_queued: add.metric(
                "upstream_bulkhead_queued",
                "Calls waiting for a place in an upstream's bulkhead",
                Family::default(),
            ),
            bulkhead_shed: add.metric(
                "upstream_bulkhead_shed",
                "Calls an upstream's bulkhead shed",
                Family::default(),
            ),
            retries: add.metric(
                "upstream_retries",
                "Upstream calls sent again to another endpoint",
                Family::default(),
            ),
            budget_exhausted: add.metric(
                "upstream_retry_budget_exhausted",
                "Upstream calls not sent again because the retry budget was spent",
                Family::default(),
            ),
        }
    }
}

/// Adds metrics to a registry, handing back a handle of each.
struct Registering<'a>(&'a mut Registry);

impl Registering<'_> {
    fn metric<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }

    /// A family of histograms in seconds, with the buckets `histogram` makes.
    fn timed<L>(&mut self, name: &str, help: &str, histogram: fn() -> Histogram) -> Histograms<L>
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    {
        let family = Histograms::new_with_constructor(histogram);
        self.0
            .register_with_unit(name, help, Unit::Seconds, family.clone());
        family
    }

    /// A family of histograms of body sizes, in bytes.
    fn sized<L>(&mut self, name: &str, help: &str) -> Histograms<L>
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    {
        let family = Histograms::new_with_constructor(size_histogram as fn() -> Histogram);
        self.0
            .register_with_unit(name, help, Unit::Bytes, family.clone());
        family
    }
}

/// What one upstream counts into; see [`Metrics::upstream`].
#[derive(Clone)]
pub struct UpstreamMetrics {
    name: Name,
    metrics: Metrics,
}

impl std::fmt::Debug for UpstreamMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UpstreamMetrics")
            .field(&self.name.0)
            .finish()
    }
}

impl UpstreamMetrics {
    fn families(&self) -> &UpstreamFamilies {
        &self.metrics.0.upstream
    }

    fn endpoint_labels(&self, endpoint: &Arc<str>) -> EndpointLabels {
        EndpointLabels {
            upstream: self.name.clone(),
            endpoint: Name(Arc::clone(endpoint)),
        }
    }

    fn upstream(&self) -> UpstreamLabels {
        UpstreamLabels {
            upstream: self.name.clone(),
        }
    }

    /// A connection to `endpoint` opened (`true`) or could not be opened (`false`).
    pub(crate) fn connected(&self, endpoint: &Arc<str>, ok: bool) {
        let family = if ok {
            &self.families().opened
        } else {
            &self.families().connect_failures
        };
        family.get_or_create(&self.endpoint_labels(endpoint)).inc();
    }

    /// A connection to `endpoint` ended.
    pub(crate) fn disconnected(&self, endpoint: &Arc<str>) {
        self.families()
            .closed
            .get_or_create(&self.endpoint_labels(endpoint))
            .inc();
    }

    /// The series of `endpoint` that its state keeps, so that counting into them hashes no label.
    pub(crate) fn endpoint(&self, endpoint: &Arc<str>) -> EndpointMetrics {
        let labels = self.endpoint_labels(endpoint);
        let families = self.families();
        EndpointMetrics {
            up: families.endpoint_up.get_or_create(&labels).clone(),
            call_duration: families.call_duration.get_or_create(&labels).clone(),
        }
    }

    /// The bulkhead's gauges and counter.
    pub(crate) fn bulkhead(&self) -> BulkheadMetrics {
        let labels = self.upstream();
        let families = self.families();
        BulkheadMetrics {
            in_flight: families.bulkhead_in_flight.get_or_create(&labels).clone(),
            queued: families.bulkhead_queued.get_or_create(&labels).clone(),
            shed: families.bulkhead_shed.get_or_create(&labels).clone(),
        }
    }

    /// A call was sent again (`true`), or could not be for want of budget (`false`).
    pub(crate) fn retry(&self, sent: bool) {
        let family = if sent {
            &self.families().retries
        } else {
            &self.families().budget_exhausted
        };
        family.get_or_create(&self.upstream()).inc();
    }
}

/// A counter read at each scrape.
struct Polled(Box<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for Polled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Polled").field(&(self.0)()).finish()
    }
}

impl prometheus_client::encoding::EncodeMetric for Polled {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&(self.0)(), None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Counter
    }
}

/// A gauge read at each scrape.
struct PolledGauge(Box<dyn Fn() -> i64 + Send + Sync>);

impl std::fmt::Debug for PolledGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PolledGauge").field(&(self.0)()).finish()
    }
}

impl prometheus_client::encoding::EncodeMetric for PolledGauge {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&(self.0)())
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Gauge
    }
}

/// The series of one upstream endpoint.
#[derive(Clone, Debug)]
pub(crate) struct EndpointMetrics {
    /// 1 while it takes calls, 0 while it does not.
    pub up: Gauge,
    /// Time from sending a call to its response's headers.
    pub call_duration: Histogram,
}

/// What a bulkhead counts into.
#[derive(Clone, Debug, Default)]
pub(crate) struct BulkheadMetrics {
    pub in_flight: Gauge,
    pub queued: Gauge,
    pub shed: Counter,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn methods_map_onto_a_closed_set() {
        assert_eq!(MethodLabel::of(&http::Method::GET).text(), "GET");
        assert_eq!(MethodLabel::of(&http::Method::PATCH).text(), "PATCH");
        let odd = http::Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(MethodLabel::of(&odd).text(), "OTHER");
        let made_up = http::Method::from_bytes(b"X-ANYTHING-12345").unwrap();
        assert_eq!(MethodLabel::of(&made_up).text(), "OTHER");
    }

    #[test]
    fn routes_are_their_templates_or_unrouted() {
        assert_eq!(RouteLabel(None).text(), "unrouted");
        assert_eq!(
            RouteLabel(Some("/v1/{name=shelves/*}")).text(),
            "/v1/{name=shelves/*}"
        );
    }

    #[tokio::test]
    async fn an_observed_request_is_counted_by_what_its_record_says() {
        use axum::body::Body;
        use http_body_util::BodyExt as _;
        use tower::{Layer as _, ServiceExt as _};

        let metrics = Metrics::new();
        let app = tower::service_fn(|request: http::Request<Body>| async move {
            let scope = Scope::of(&request).expect("a scope");
            scope.stream_opened(crate::observe::StreamTransport::WebSocket);
            scope.message_in();
            scope.set_auth_failure("forbidden");
            scope.set_rate_limit(crate::observe::RateLimitDecision {
                allowed: true,
                redis: false,
                redis_error: true,
            });
            scope.set_code(tonic::Code::Aborted);
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("abc")))
        });
        let service = crate::observe::ObserveLayer::new()
            .observer(metrics.clone())
            .layer(app);
        let method = http::Method::from_bytes(b"BREW").unwrap();
        let request = http::Request::builder().method(method).uri("/pot/42");
        let response = service
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        drop(response.into_body().collect().await.unwrap());

        let text = metrics.encode();
        for line in [
            "protogate_http_requests_total{route=\"unrouted\",method=\"OTHER\",status=\"200\",code=\"ABORTED\"} 1",
            "protogate_streams_open{transport=\"websocket\"} 0",
            "protogate_streams_ended_total{transport=\"websocket\",code=\"ABORTED\"} 1",
            "protogate_stream_messages_total{transport=\"websocket\",direction=\"in\"} 1",
            "protogate_auth_failures_total{reason=\"forbidden\"} 1",
            "protogate_rate_limit_decisions_total{decision=\"allowed\",store=\"local\"} 1",
            "protogate_rate_limit_redis_errors_total 1",
            "protogate_http_response_size_bytes_sum{route=\"unrouted\",method=\"OTHER\"} 3.0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("/pot/42"), "no raw path: {text}");
        assert!(
            !text.contains("protogate_http_request_duration_seconds_count{"),
            "a stream is not a request's latency: {text}"
        );
    }

    static ROUTE: RouteInfo = RouteInfo {
        method: "POST",
        rpc: "acme.shelf.v1.Shelves.CreateShelf",
        template: crate::route::Template {
            text: "/v1/shelves",
            segments: &[],
            verb: None,
            vars: &[],
        },
        unbound: false,
    };

    #[tokio::test]
    async fn routed_requests_count_into_their_routes_series_whatever_the_outcome() {
        use axum::body::Body;
        use http_body_util::BodyExt as _;
        use tower::{Layer as _, ServiceExt as _};

        let metrics = Metrics::new();
        let app = tower::service_fn(|request: http::Request<Body>| async move {
            let scope = Scope::of(&request).expect("a scope");
            scope.set_route(&ROUTE);
            let fail = request.uri().path() == "/fail";
            scope.set_code(if fail {
                tonic::Code::NotFound
            } else {
                tonic::Code::Ok
            });
            let status = if fail { 404 } else { 200 };
            let response = http::Response::builder()
                .status(status)
                .body(Body::from("12345678"))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        });
        let service = crate::observe::ObserveLayer::new()
            .observer(metrics.clone())
            .layer(app);
        for path in ["/ok", "/ok", "/fail", "/ok"] {
            let request = http::Request::builder()
                .method("POST")
                .uri(path)
                .body(Body::from("abc"))
                .unwrap();
            let response = service.clone().oneshot(request).await.unwrap();
            drop(response.into_body().collect().await.unwrap());
        }

        let text = metrics.encode();
        let labels = "route=\"/v1/shelves\",method=\"POST\"";
        for line in [
            format!("protogate_http_requests_total{{{labels},status=\"200\",code=\"OK\"}} 3"),
            format!(
                "protogate_http_requests_total{{{labels},status=\"404\",code=\"NOT_FOUND\"}} 1"
            ),
            format!(
                "protogate_http_request_duration_seconds_count{{{labels},status=\"200\",code=\"OK\"}} 3"
            ),
            format!(
                "protogate_http_request_duration_seconds_count{{{labels},status=\"404\",code=\"NOT_FOUND\"}} 1"
            ),
            format!("protogate_http_response_size_bytes_count{{{labels}}} 4"),
            format!("protogate_http_response_size_bytes_sum{{{labels}}} 32.0"),
            format!("protogate_http_requests_in_flight{{{labels}}} 0"),
        ] {
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert_eq!(
            text.matches("protogate_http_requests_in_flight{").count(),
            1,
            "one series per route and method: {text}"
        );
    }

    #[test]
    fn process_metrics_keep_their_standard_names_and_polled_gauges_take_the_prefix() {
        let metrics = Metrics::new();
        metrics.process_metrics();
        metrics.polled_gauge("runtime_alive_tasks", "Tasks alive", || 7);
        let text = metrics.encode();
        assert!(
            text.contains("\nprotogate_runtime_alive_tasks 7\n"),
            "{text}"
        );
        if cfg!(target_os = "linux") {
            for name in [
                "process_open_fds ",
                "process_resident_memory_bytes ",
                "process_cpu_seconds_total ",
                "process_start_time_seconds ",
            ] {
                assert!(text.contains(&format!("\n{name}")), "{name}: {text}");
            }
        }
        assert!(!text.contains("protogate_process_"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_registry_encodes_openmetrics_with_the_protogate_prefix() {
        let metrics = Metrics::new();
        metrics.build_info("1.2.3", 4, 17);
        metrics.config_reloaded(true);
        metrics.config_reloaded(false);
        metrics.config_reloaded(false);
        metrics.polled_counter("lines_dropped", "Lines a writer dropped", || 7);
        let upstream = metrics.upstream("orders");
        let endpoint: Arc<str> = "10.0.0.7:50051".into();
        upstream.connected(&endpoint, true);
        upstream.retry(false);
        upstream
            .endpoint(&endpoint)
            .call_duration
            .observe(Duration::from_millis(3).as_secs_f64());
        let text = metrics.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in [
            "protogate_build_info{version=\"1.2.3\",protos=\"4\",rpcs=\"17\"} 1",
            "protogate_config_reloads_total{outcome=\"ok\"} 1",
            "protogate_config_reloads_total{outcome=\"failed\"} 2",
            "protogate_lines_dropped_total 7",
            "protogate_upstream_connections_opened_total{upstream=\"orders\",endpoint=\"10.0.0.7:50051\"} 1",
            "protogate_upstream_retry_budget_exhausted_total{upstream=\"orders\"} 1",
            "protogate_upstream_call_duration_seconds_count{upstream=\"orders\",endpoint=\"10.0.0.7:50051\"} 1",
            "protogate_upstream_call_duration_seconds_bucket{le=\"0.005\",upstream=\"orders\",endpoint=\"10.0.0.7:50051\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
