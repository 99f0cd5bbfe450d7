//! Rate limits as a route layer: a limit per route rule ([`PerRoute`]), counted per client
//! (address, principal, or route), decided by GCRA in memory or, shared by every replica,
//! in Redis.
//!
//! One concern per file: `gcra` the algorithm, `key` who is counted, `local` the in-memory
//! buckets, `redis` the shared ones, `headers` the response fields; this file the layer and its
//! builder.
//!
//! Why GCRA rather than a token bucket with a refill step: it is the same limit (a burst, then a
//! steady rate), but a bucket is one number, updated by one comparison, with nothing to refill
//! on a timer; in Redis that makes a decision one GET and one SET in a script, and a bucket that
//! is full again is simply a key that expired.

mod gcra;
mod headers;
mod key;
mod local;
mod redis;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderName, HeaderValue};
use tower::{Layer, ServiceExt as _};

use self::gcra::{Decision, Gcra};
use self::key::TrustedProxies;
use self::local::LocalStore;
use self::redis::RedisStore;
use crate::call::BoxFuture;
use crate::error::GatewayError;
use crate::json::Registry;
use crate::observe::{RateLimitDecision, Scope};
use crate::select::PerRoute;

pub use self::key::{ClientKey, ClientPrefixes, IpNetwork, NetworkError};
pub use self::redis::RedisLimits;

/// `RateLimit-Policy`: the limit that applies (draft-ietf-httpapi-ratelimit-headers-11).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of it (draft-ietf-httpapi-ratelimit-headers-11).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// How often the in-memory buckets are swept of idle ones.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One limit: `requests` per `period`, at most `burst` at once, counted per [`ClientKey`].
///
/// ```
/// use std::time::Duration;
/// use protogate::{ClientKey, Limit};
///
/// // 600 a minute, 20 at once, per API key or token subject.
/// let limit = Limit::new(600, Duration::from_secs(60))
///     .burst(20)
///     .key(ClientKey::Principal)
///     .named("per-user");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    requests: u32,
    period: Duration,
    burst: Option<u32>,
    key: ClientKey,
    name: Option<String>,
}

impl Limit {
    /// `requests` per `period`, all of them at once if the client has been quiet (the burst is
    /// `requests` until [`Limit::burst`] says otherwise), counted per client address.
    pub fn new(requests: u32, period: Duration) -> Limit {
        Limit {
            requests,
            period,
            burst: None,
            key: ClientKey::Ip,
            name: None,
        }
    }

    /// `requests` a second.
    pub fn per_second(requests: u32) -> Limit {
        Limit::new(requests, Duration::from_secs(1))
    }

    /// `requests` a minute.
    pub fn per_minute(requests: u32) -> Limit {
        Limit::new(requests, Duration::from_secs(60))
    }

    /// At most `burst` requests at once.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Whose requests share a bucket.
    pub fn key(mut self, key: ClientKey) -> Self {
        self.key = key;
        self
    }

    /// The name refusals and the `RateLimit` fields give it, and its buckets are kept under
    /// (limits of one name share buckets, in Redis across replicas too). By default: the text
    /// of the selector of its rule, or `default` for the default.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// What the layer does when Redis is configured but cannot be reached in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnRedisFailure {
    /// Decide with this process's own buckets until Redis answers again: each replica enforces
    /// the limits alone, so the fleet lets through up to one limit per replica.
    #[default]
    Local,
    /// Refuse every limited request with 503 (`UNAVAILABLE`) until Redis answers again.
    Refuse,
}

/// What is wrong with a rate limit's settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// A limit that cannot work.
    #[error("rate limit `{name}`: {problem}")]
    Limit {
        /// The limit's name.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A Redis URL that does not parse.
    #[error("invalid Redis URL: {problem}")]
    RedisUrl {
        /// What is wrong with it.
        problem: String,
    },
}

/// Counters of a rate limit layer, readable at any time.
#[derive(Debug, Default)]
pub struct RateLimitStats {
    redis_errors: AtomicU64,
    unshared: AtomicU64,
}

impl RateLimitStats {
    /// Attempts to reach Redis that failed (refused, timed out, broken connection).
    pub fn redis_errors(&self) -> u64 {
        self.redis_errors.load(Ordering::Relaxed)
    }

    /// Requests decided without Redis although it is configured (by the local buckets, or
    /// refused, as [`OnRedisFailure`] says).
    pub fn unshared_decisions(&self) -> u64 {
        self.unshared.load(Ordering::Relaxed)
    }
}

/// Builds a [`RateLimit`].
#[derive(Debug)]
pub struct RateLimitBuilder {
    limits: PerRoute<Option<Limit>>,
    trusted: Vec<IpNetwork>,
    prefixes: ClientPrefixes,
    redis: Option<RedisLimits>,
    on_failure: OnRedisFailure,
}

impl RateLimitBuilder {
    /// The limit of each route: `None` for no limit. No route is limited by default.
    pub fn limits(mut self, limits: PerRoute<Option<Limit>>) -> Self {
        self.limits = limits;
        self
    }

    /// The networks of proxies whose `X-Forwarded-For` is believed: for a request from one of
    /// them, the client is the right-most address of the header that is not in them. None by
    /// default: the client is the connection's peer.
    pub fn trusted_proxies(mut self, networks: impl IntoIterator<Item = IpNetwork>) -> Self {
        self.trusted = networks.into_iter().collect();
        self
    }

    /// How much of a client's address counts as the client under [`ClientKey::Ip`] (and for
    /// [`ClientKey::Principal`] without a principal): every address of one network of these
    /// prefixes shares a bucket. `/32` and `/64` by default ([`ClientPrefixes::DEFAULT`]).
    pub fn client_prefixes(mut self, prefixes: ClientPrefixes) -> Self {
        self.prefixes = prefixes;
        self
    }

    /// Shares every bucket through Redis. In memory by default.
    pub fn redis(mut self, redis: RedisLimits) -> Self {
        self.redis = Some(redis);
        self
    }

    /// What happens while Redis cannot be reached ([`OnRedisFailure::Local`] by default).
    pub fn on_redis_failure(mut self, on_failure: OnRedisFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// The layer; fails on a limit that cannot work (no request, no period, no burst).
    pub fn build(self) -> Result<RateLimit, RateLimitError> {
        let mut rules = PerRoute::new(rule("default", self.limits.default_value())?);
        for (selector, limit) in self.limits.rules() {
            rules = rules.rule(selector.clone(), rule(&selector.to_string(), limit)?);
        }
        let stats = Arc::new(RateLimitStats::default());
        let redis = self
            .redis
            .map(|redis| Arc::new(RedisStore::new(redis, Arc::clone(&stats))));
        Ok(RateLimit {
            limiter: Arc::new(Limiter {
                rules,
                trusted: TrustedProxies(self.trusted),
                prefixes: self.prefixes,
                local: LocalStore::new(micros(SWEEP_EVERY)),
                redis,
                on_failure: self.on_failure,
                stats,
                epoch: Instant::now(),
            }),
        })
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A limit, checked and ready.
#[derive(Debug)]
struct Rule {
    name: String,
    /// The name as a Structured Fields String.
    quoted: String,
    gcra: Gcra,
    key: ClientKey,
    requests: u32,
    period: Duration,
    policy: HeaderValue,
}

fn rule(default_name: &str, limit: &Option<Limit>) -> Result<Option<Arc<Rule>>, RateLimitError> {
    let Some(limit) = limit else {
        return Ok(None);
    };
    let name = limit
        .name
        .clone()
        .unwrap_or_else(|| default_name.to_owned());
    let problem = if name.is_empty() {
        Some("the name is empty")
    } else if limit.requests == 0 {
        Some("it allows no request: give at least 1")
    } else if limit.period < Duration::from_millis(1) {
        Some("the period is shorter than 1 ms")
    } else if limit.burst == Some(0) {
        Some("a burst of 0 allows no request: give at least 1")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(RateLimitError::Limit { name, problem });
    }
    let burst = limit.burst.unwrap_or(limit.requests);
    Ok(Some(Arc::new(Rule {
        quoted: headers::sf_string(&name),
        policy: headers::policy(&name, limit.requests, limit.period),
        gcra: Gcra::new(limit.requests, limit.period, burst),
        key: limit.key,
        requests: limit.requests,
        period: limit.period,
        name,
    })))
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{}\" ({} per {:?}, per {})",
            self.name, self.requests, self.period, self.key
        )
    }
}

/// A tower layer that limits the rate of requests per route and client; wear it with
/// `Gateway::route_layer`. Clones share their buckets, so one value serves every worker.
///
/// A request within its limit goes on, and its response carries `RateLimit-Policy` and
/// `RateLimit`; one beyond it is answered 429 with a google.rpc.Status of code 8
/// (`RESOURCE_EXHAUSTED`) naming the limit, `Retry-After`, and the same two fields. CORS
/// preflights are never counted.
///
/// ```
/// use protogate::{ClientKey, Limit, PerRoute, RateLimit, RouteSelector};
///
/// let limits = PerRoute::new(Some(Limit::per_second(50)))
///     .rule("GET /healthz".parse::<RouteSelector>()?, None)
///     .rule(
///         "acme.library.v1.Library.CreateBook".parse::<RouteSelector>()?,
///         Some(Limit::per_minute(10).key(ClientKey::Principal)),
///     );
/// let rate_limit = RateLimit::builder()
///     .limits(limits)
///     .trusted_proxies(["10.0.0.0/8".parse()?])
///     .build()?;
/// let gateway = protogate::Gateway::new().route_layer(rate_limit);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<Limiter>,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("rules", &self.limiter.rules)
            .field("redis", &self.limiter.redis.is_some())
            .finish()
    }
}

impl RateLimit {
    /// A builder with no limit, in memory, trusting no proxy.
    pub fn builder() -> RateLimitBuilder {
        RateLimitBuilder {
            limits: PerRoute::new(None),
            trusted: Vec::new(),
            prefixes: ClientPrefixes::DEFAULT,
            redis: None,
            on_failure: OnRedisFailure::Local,
        }
    }

    /// The layer's counters.
    pub fn stats(&self) -> &RateLimitStats {
        &self.limiter.stats
    }

    /// The buckets held in memory (idle ones not yet swept included).
    pub fn buckets_in_memory(&self) -> usize {
        self.limiter.local.len()
    }

    /// Whether the last attempt to reach Redis worked; `None` without Redis.
    pub fn redis_is_up(&self) -> Option<bool> {
        self.limiter.redis.as_ref().map(|redis| redis.is_up())
    }
}

impl<S> Layer<S> for RateLimit {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> RateLimitService<S> {
        RateLimitService {
            inner,
            limiter: Arc::clone(&self.limiter),
        }
    }
}

struct Limiter {
    rules: PerRoute<Option<Arc<Rule>>>,
    trusted: TrustedProxies,
    prefixes: ClientPrefixes,
    local: LocalStore,
    redis: Option<Arc<RedisStore>>,
    on_failure: OnRedisFailure,
    stats: Arc<RateLimitStats>,
    epoch: Instant,
}

/// What becomes of a request.
enum Verdict {
    Allowed(Arc<Rule>, Decision),
    Refused(Response),
}

impl Limiter {
    /// The rule and the bucket of `request`, if a rule limits it.
    fn bucket(&self, request: &http::Request<Body>) -> Option<(Arc<Rule>, String)> {
        let is_preflight = request.method() == http::Method::OPTIONS
            && request
                .headers()
                .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        if is_preflight {
            return None;
        }
        let rule = self.rules.get(request).clone()?;
        let client = key::client_key(rule.key, request, &self.trusted, self.prefixes);
        let bucket = format!("{}|{client}", rule.name);
        Some((rule, bucket))
    }

    fn now(&self) -> u64 {
        // Never 0, so that no TAT is ever "before the clock started".
        micros(self.epoch.elapsed()).saturating_add(1)
    }

    /// Decides for one request, and records the decision in its `scope`.
    async fn decide(
        &self,
        rule: Arc<Rule>,
        bucket: String,
        registry: &Registry,
        scope: Option<&Scope>,
    ) -> Verdict {
        let record = |allowed: bool, redis: bool, redis_error: bool| {
            if let Some(scope) = scope {
                scope.set_rate_limit(RateLimitDecision {
                    allowed,
                    redis,
                    redis_error,
                });
            }
        };
        let (decision, redis, redis_error) = match &self.redis {
            None => (
                self.local.decide(&bucket, rule.gcra, self.now()),
                false,
                false,
            ),
            Some(redis) => match redis.decide(redis.key(&bucket), rule.gcra).await {
                Some(decision) => (decision, true, false),
                None => {
                    self.stats.unshared.fetch_add(1, Ordering::Relaxed);
                    match self.on_failure {
                        OnRedisFailure::Local => (
                            self.local.decide(&bucket, rule.gcra, self.now()),
                            false,
                            true,
                        ),
                        OnRedisFailure::Refuse => {
                            record(false, false, true);
                            let error = GatewayError::RateLimitUnavailable(
                                "the shared store (Redis) does not answer".to_owned(),
                            );
                            let mut response = error.into_response(registry);
                            response
                                .headers_mut()
                                .insert(RATELIMIT_POLICY, rule.policy.clone());
                            return Verdict::Refused(response);
                        }
                    }
                }
            },
        };
        record(decision.allowed, redis, redis_error);
        if decision.allowed {
            return Verdict::Allowed(rule, decision);
        }
        let error = GatewayError::RateLimited {
            limit: rule.to_string(),
            retry_after: decision.wait,
        };
        let mut response = error.into_response(registry);
        mark(&mut response, &rule, &decision);
        Verdict::Refused(response)
    }
}

/// The rate limit fields on `response`.
fn mark(response: &mut Response, rule: &Rule, decision: &Decision) {
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_POLICY, rule.policy.clone());
    headers.insert(RATELIMIT, headers::service_limit(&rule.quoted, decision));
}

/// The service [`RateLimit`] wraps a route in.
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S> tower::Service<http::Request<Body>> for RateLimitService<S>
where
    S: tower::Service<http::Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner service is made ready when (and if) the request goes on.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let Some((rule, bucket)) = self.limiter.bucket(&request) else {
            return Box::pin(inner.oneshot(request));
        };
        let limiter = Arc::clone(&self.limiter);
        let registry = crate::call::registry_of(&request);
        let scope = Scope::of(&request).cloned();
        Box::pin(async move {
            match limiter
                .decide(rule, bucket, registry, scope.as_deref())
                .await
            {
                Verdict::Allowed(rule, decision) => {
                    let mut response = inner.oneshot(request).await?;
                    mark(&mut response, &rule, &decision);
                    Ok(response)
                }
                Verdict::Refused(response) => Ok(response),
            }
        })
    }
}
