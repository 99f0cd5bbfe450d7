//! Credentials only a team's own auth service understands (opaque tokens, session cookies),
//! resolved by calling its `protogate.api.ExternalAuth/Check` (protogate's
//! `protogate/api/auth.proto`): once per credential, the answer cached for a while, one call in
//! flight per credential however many requests carry it, a bounded number of calls towards the
//! auth service, and refusal when it cannot answer (unless configured otherwise).
//!
//! The layer only says who the client is: it attaches a [`Principal`] for a valid credential and
//! refuses an invalid one with 401; which routes need a principal is the authentication
//! layer's requirement to check, after it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderName, HeaderValue, Request, header};
use tokio::sync::{OnceCell, Semaphore};

use crate::json::Registry;
use crate::principal::Principal;
use crate::upstream::GrpcTransport;

/// The RPC every external auth service implements.
const CHECK_PATH: &str = "/protogate.api.ExternalAuth/Check";

/// `protogate.api.CheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    /// The credential as presented.
    #[prost(string, tag = "1")]
    pub credential: String,
    /// `header:<name>` or `cookie:<name>`.
    #[prost(string, tag = "2")]
    pub source: String,
}

/// `protogate.api.CheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    /// Whether the credential is valid.
    #[prost(bool, tag = "1")]
    pub allowed: bool,
    /// Who the client is.
    #[prost(string, tag = "2")]
    pub subject: String,
    /// Scopes granted.
    #[prost(string, repeated, tag = "3")]
    pub scopes: Vec<String>,
    /// Further claims.
    #[prost(message, optional, tag = "4")]
    pub claims: Option<prost_types::Struct>,
    /// How long the answer may be cached.
    #[prost(message, optional, tag = "5")]
    pub cache_for: Option<prost_types::Duration>,
}

type Check = dyn Fn(CheckRequest) -> Pin<Box<dyn Future<Output = Result<CheckResponse, tonic::Status>> + Send>>
    + Send
    + Sync;

/// Where the credential is in a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// A header; with a scheme (`Bearer`), only values that start with it, the scheme removed.
    Header {
        /// The header.
        name: HeaderName,
        /// The scheme that must begin the value, compared without regard to case.
        scheme: Option<String>,
    },
    /// A cookie of this name.
    Cookie(String),
}

impl CredentialSource {
    /// The credential of `request`, if it carries one.
    fn find<B>(&self, request: &Request<B>) -> Option<String> {
        match self {
            CredentialSource::Header { name, scheme } => {
                let value = request.headers().get(name)?.to_str().ok()?.trim();
                let credential = match scheme {
                    None => value,
                    Some(scheme) => {
                        let (given, rest) = value.split_once(' ')?;
                        if !given.eq_ignore_ascii_case(scheme) {
                            return None;
                        }
                        rest.trim()
                    }
                };
                (!credential.is_empty()).then(|| credential.to_owned())
            }
            CredentialSource::Cookie(wanted) => request
                .headers()
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, _)| name == wanted)
                .map(|(_, value)| value.trim_matches('"').to_owned())
                .filter(|value| !value.is_empty()),
        }
    }

    /// How the auth service is told where the credential came from.
    fn describe(&self) -> String {
        match self {
            CredentialSource::Header { name, .. } => format!("header:{name}"),
            CredentialSource::Cookie(name) => format!("cookie:{name}"),
        }
    }
}

/// What the auth service said of one credential, as cached.
#[derive(Clone, Debug)]
enum Answer {
    Allowed(Principal),
    Refused,
}

/// A cached answer and when it stops counting.
#[derive(Clone)]
struct Cached {
    answer: Answer,
    until: Instant,
}

/// A credential as the cache knows it: its SHA-256, never the credential itself.
type Key = [u8; 32];

/// Builds an [`ExternalAuth`].
pub struct ExternalAuthBuilder {
    check: Arc<Check>,
    source: CredentialSource,
    ttl: Duration,
    refused_ttl: Duration,
    timeout: Duration,
    max_concurrent: usize,
    max_entries: usize,
    fail_open: bool,
    scheme: String,
    cross_site_origins: Vec<String>,
}

impl ExternalAuthBuilder {
    /// Where the credential is read from (`Authorization: Bearer …` by default).
    pub fn source(mut self, source: CredentialSource) -> Self {
        self.source = source;
        self
    }

    /// How long an answer is kept at most (60 s by default); the service's `cache_for` may
    /// shorten it.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a refusal is kept (10 s by default).
    pub fn refused_ttl(mut self, ttl: Duration) -> Self {
        self.refused_ttl = ttl;
        self
    }

    /// How long one check may take, waiting for a turn included (2 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks in flight towards the auth service at most (32 by default).
    pub fn max_concurrent(mut self, calls: usize) -> Self {
        self.max_concurrent = calls.max(1);
        self
    }

    /// Answers kept at most (100,000 by default); past it, expired ones go first, then the
    /// soonest to expire.
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries.max(1);
        self
    }

    /// When the auth service cannot answer, let the request through without a principal
    /// (routes that need one then refuse it) instead of refusing it with 503 (the default).
    pub fn fail_open(mut self, open: bool) -> Self {
        self.fail_open = open;
        self
    }

    /// The scheme a refusal's `WWW-Authenticate` names (`Bearer` by default).
    pub fn challenge_scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = scheme.into();
        self
    }

    /// Origins of pages on other sites whose requests may carry a cookie credential, as the
    /// `Origin` header writes them (`https://app.example.com`).
    ///
    /// None by default. A browser sends a cookie whichever page makes the request, so a cookie
    /// is not taken as the user's say-so on a request that can change something (any method
    /// but `GET`, `HEAD` and `OPTIONS`, and every WebSocket upgrade) made by a page of another
    /// site (cross-site request forgery): the browser says so in `Sec-Fetch-Site`, or, when it
    /// does not send that, its `Origin` names another host than the request's. Inside
    /// [`Auth`](crate::Auth), such a request without another credential gets `403`; as a layer
    /// of its own, the checker leaves it without a principal. Credentials in headers are not
    /// affected: a page cannot make a browser add them.
    pub fn cross_site_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cross_site_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// The checker, ready to wear as a layer.
    pub fn build(self) -> ExternalAuth {
        ExternalAuth {
            inner: Arc::new(Inner {
                check: self.check,
                source: self.source,
                ttl: self.ttl,
                refused_ttl: self.refused_ttl,
                timeout: self.timeout,
                turns: Semaphore::new(self.max_concurrent),
                max_entries: self.max_entries,
                fail_open: self.fail_open,
                cross_site_origins: self.cross_site_origins,
                challenge: HeaderValue::from_str(&format!(
                    "{} error=\"invalid_token\"",
                    self.scheme
                ))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\"")),
                state: Mutex::new(State::default()),
                calls: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }
}

/// Resolves credentials through a team's `protogate.api.ExternalAuth` service. Give it to
/// `AuthBuilder::external`, where it is one more source of credentials beside JWTs and API
/// keys and the routes' requirements apply; or wear it alone as a tower layer (it then only
/// attaches the principal of a valid credential and refuses an invalid one).
///
/// ```
/// use protogate::{Auth, CredentialSource, ExternalAuth, Upstream};
///
/// // The team's auth service, which implements protogate.api.ExternalAuth.
/// let auth_service = Upstream::lazy("http://127.0.0.1:50052")?;
/// let sessions = ExternalAuth::builder(auth_service)
///     .source(CredentialSource::Cookie("session".into()))
///     .ttl(std::time::Duration::from_secs(30))
///     .build();
/// let auth = Auth::builder().external(sessions).build()?;
/// let gateway = protogate::Gateway::new().route_layer(auth);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ExternalAuth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ExternalAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalAuth")
            .field("source", &self.inner.source)
            .field("ttl", &self.inner.ttl)
            .field("fail_open", &self.inner.fail_open)
            .finish_non_exhaustive()
    }
}

struct Inner {
    check: Arc<Check>,
    source: CredentialSource,
    ttl: Duration,
    refused_ttl: Duration,
    timeout: Duration,
    turns: Semaphore,
    max_entries: usize,
    fail_open: bool,
    /// Origins of other sites whose requests may still carry the cookie.
    cross_site_origins: Vec<String>,
    challenge: HeaderValue,
    state: Mutex<State>,
    calls: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct State {
    cache: HashMap<Key, Cached>,
    /// One cell per credential being checked: whoever comes first makes the call, the others
    /// wait for its answer.
    in_flight: HashMap<Key, Arc<OnceCell<Result<Cached, Unreachable>>>>,
}

/// The auth service could not answer.
#[derive(Clone, Debug)]
struct Unreachable(String);

impl ExternalAuth {
    /// A checker calling `Check` over `transport` (an [`Upstream`](crate::Upstream), a tonic
    /// `Channel`, or any tower stack).
    pub fn builder<T: GrpcTransport>(transport: T) -> ExternalAuthBuilder {
        ExternalAuth::with_check(move |request: CheckRequest| {
            let mut client = tonic::client::Grpc::new(transport.clone());
            Box::pin(async move {
                client.ready().await.map_err(|error| {
                    tonic::Status::unavailable(format!(
                        "the auth service is not reachable: {}",
                        error.into()
                    ))
                })?;
                let path = http::uri::PathAndQuery::from_static(CHECK_PATH);
                let codec = tonic_prost::ProstCodec::<CheckRequest, CheckResponse>::default();
                client
                    .unary(tonic::Request::new(request), path, codec)
                    .await
                    .map(tonic::Response::into_inner)
            })
        })
    }

    /// A checker that asks `check` instead of a gRPC service: a session store, an auth API of
    /// another kind. An `Err` means the check could not be made (fail closed or open, as set).
    pub fn with_check<F, Fut>(check: F) -> ExternalAuthBuilder
    where
        F: Fn(CheckRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CheckResponse, tonic::Status>> + Send + 'static,
    {
        let check: Arc<Check> = Arc::new(move |request| Box::pin(check(request)));
        ExternalAuthBuilder {
            check,
            source: CredentialSource::Header {
                name: header::AUTHORIZATION,
                scheme: Some("Bearer".to_owned()),
            },
            ttl: Duration::from_secs(60),
            refused_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            max_concurrent: 32,
            max_entries: 100_000,
            fail_open: false,
            scheme: "Bearer".to_owned(),
            cross_site_origins: Vec::new(),
        }
    }

    /// How many checks have been sent to the auth service.
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What an [`ExternalAuth`] makes of a request's credential.
pub(crate) enum Identified {
    /// The request carries no credential this checker reads.
    Nothing,
    /// The credential belongs to this principal.
    Principal(Principal),
    /// The credential was refused, or could not be checked: the response to send.
    Refused(Response),
}

impl ExternalAuth {
    /// The credential this checker reads in `request`, if any.
    pub(crate) fn credential<B>(&self, request: &Request<B>) -> Option<String> {
        self.inner.source.find(request)
    }

    /// Why this checker's credential in `request` is not taken, if it is not: it is a cookie,
    /// and the request can change something (any method but `GET`, `HEAD` and `OPTIONS`, and
    /// every WebSocket upgrade) and comes from a page of another site, as the browser says in
    /// `Sec-Fetch-Site` or, for a browser that does not send it, as an `Origin` other than the
    /// request's own host says. Requests from the cross-site origins, and those with neither
    /// header (not a browser's), are taken.
    pub(crate) fn forged<B>(&self, request: &Request<B>) -> Option<String> {
        if !matches!(self.inner.source, CredentialSource::Cookie(_)) {
            return None;
        }
        let changes = !matches!(
            *request.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        ) || crate::metadata::is_upgrade(request.headers());
        if !changes {
            return None;
        }
        let headers = request.headers();
        let origin = headers.get(header::ORIGIN).map(HeaderValue::as_bytes);
        if let Some(origin) = origin
            && self
                .inner
                .cross_site_origins
                .iter()
                .any(|trusted| trusted.as_bytes().eq_ignore_ascii_case(origin))
        {
            return None;
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            return (site.as_bytes() == b"cross-site")
                .then(|| "the browser says `Sec-Fetch-Site: cross-site`".to_owned());
        }
        let origin = origin?;
        let host = request
            .uri()
            .authority()
            .map(|authority| authority.as_str().as_bytes())
            .or_else(|| headers.get(header::HOST).map(HeaderValue::as_bytes))?;
        // `scheme://host[:port]`; `null` (an opaque origin) has no host and is another site.
        let origin_host = std::str::from_utf8(origin)
            .ok()
            .and_then(|origin| origin.split_once("://"))
            .map(|(_, host)| host.as_bytes());
        match origin_host {
            Some(origin_host) if origin_host.eq_ignore_ascii_case(host) => None,
            _ => Some(format!(
                "its `Origin` is `{}`, not this host",
                String::from_utf8_lossy(origin)
            )),
        }
    }

    /// Takes the credential this checker reads off `request` (the header, or the one cookie),
    /// so that it stays at the gateway.
    pub(crate) fn take_credential<B>(&self, request: &mut Request<B>) {
        match &self.inner.source {
            CredentialSource::Header { name, .. } => {
                request.headers_mut().remove(name);
            }
            CredentialSource::Cookie(wanted) => {
                let kept: Vec<String> = request
                    .headers()
                    .get_all(header::COOKIE)
                    .iter()
                    .filter_map(|value| value.to_str().ok())
                    .flat_map(|value| value.split(';'))
                    .map(str::trim)
                    .filter(|pair| {
                        !pair.is_empty()
                            && pair.split_once('=').is_none_or(|(name, _)| name != wanted)
                    })
                    .map(str::to_owned)
                    .collect();
                let headers = request.headers_mut();
                headers.remove(header::COOKIE);
                if let Ok(value) = HeaderValue::from_str(&kept.join("; "))
                    && !kept.is_empty()
                {
                    headers.insert(header::COOKIE, value);
                }
            }
        }
    }

    /// The OpenAPI security scheme of the credentials this checker reads, with its name.
    pub(crate) fn security_scheme(&self) -> (String, serde_json::Value) {
        match &self.inner.source {
            CredentialSource::Header {
                name,
                scheme: Some(scheme),
            } if *name == header::AUTHORIZATION => (
                "externalAuth".to_owned(),
                serde_json::json!({"type": "http", "scheme": scheme.to_ascii_lowercase()}),
            ),
            CredentialSource::Header { name, .. } => (
                "externalAuth".to_owned(),
                serde_json::json!({"type": "apiKey", "in": "header", "name": name.as_str()}),
            ),
            CredentialSource::Cookie(name) => (
                "sessionCookie".to_owned(),
                serde_json::json!({"type": "apiKey", "in": "cookie", "name": name}),
            ),
        }
    }

    /// Where this checker reads credentials, for messages.
    pub(crate) fn describe_source(&self) -> String {
        match &self.inner.source {
            CredentialSource::Header { name, .. } => format!("a credential in the `{name}` header"),
            CredentialSource::Cookie(name) => format!("a `{name}` cookie"),
        }
    }

    /// What the auth service says of `credential` (from the cache when it can).
    pub(crate) async fn identify(&self, credential: String) -> Identified {
        match self.inner.resolve(credential).await {
            Ok(Answer::Allowed(principal)) => Identified::Principal(principal),
            Ok(Answer::Refused) => Identified::Refused(self.inner.refusal()),
            Err(reason) if self.inner.fail_open => {
                tracing::warn!(reason = %reason.0, "the auth service could not check a credential; let through without a principal");
                Identified::Nothing
            }
            Err(reason) => Identified::Refused(unavailable(&reason)),
        }
    }
}

impl Inner {
    /// What the auth service says of `credential`: from the cache, from a check already in
    /// flight, or from a check of its own.
    async fn resolve(&self, credential: String) -> Result<Answer, Unreachable> {
        let key = digest(&credential);
        let cell = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if let Some(cached) = state.cache.get(&key) {
                if cached.until > now {
                    return Ok(cached.answer.clone());
                }
                state.cache.remove(&key);
            }
            Arc::clone(state.in_flight.entry(key).or_default())
        };
        let outcome = cell
            .get_or_init(|| self.check_once(credential))
            .await
            .clone();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state
            .in_flight
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            state.in_flight.remove(&key);
            if let Ok(cached) = &outcome {
                self.remember(&mut state, key, cached.clone());
            }
        }
        outcome.map(|cached| cached.answer)
    }

    /// One call to the auth service, within the concurrency limit and the timeout.
    async fn check_once(&self, credential: String) -> Result<Cached, Unreachable> {
        let request = CheckRequest {
            credential,
            source: self.source.describe(),
        };
        let call = async {
            let _turn = self
                .turns
                .acquire()
                .await
                .map_err(|_| Unreachable("the auth checker is closed".to_owned()))?;
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (self.check)(request)
                .await
                .map_err(|status| Unreachable(status.message().to_owned()))
        };
        let answer = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| Unreachable(format!("no answer within {:?}", self.timeout)))??;
        Ok(self.cached(answer))
    }

    /// An answer as the cache keeps it.
    fn cached(&self, answer: CheckResponse) -> Cached {
        let now = Instant::now();
        if !answer.allowed || answer.subject.is_empty() {
            return Cached {
                answer: Answer::Refused,
                until: now + self.refused_ttl,
            };
        }
        let asked = answer.cache_for.and_then(|d| {
            Some(Duration::new(
                u64::try_from(d.seconds).ok()?,
                u32::try_from(d.nanos).ok()?,
            ))
        });
        let ttl = asked.map_or(self.ttl, |asked| asked.min(self.ttl));
        // `sub` is the subject, as for every principal, unless the service says otherwise.
        let mut claims = match answer.claims.as_ref().map(struct_json) {
            Some(serde_json::Value::Object(claims)) => claims,
            _ => serde_json::Map::new(),
        };
        claims
            .entry("sub")
            .or_insert_with(|| serde_json::Value::String(answer.subject.clone()));
        let claims = serde_json::Value::Object(claims);
        Cached {
            answer: Answer::Allowed(Principal {
                subject: answer.subject.into(),
                scheme: "external",
                scopes: answer.scopes.into(),
                claims: Arc::new(claims),
            }),
            until: now + ttl,
        }
    }

    /// Keeps `cached` under `key`, making room first when the cache is full.
    fn remember(&self, state: &mut State, key: Key, cached: Cached) {
        if state.cache.len() >= self.max_entries {
            let now = Instant::now();
            state.cache.retain(|_, entry| entry.until > now);
            while state.cache.len() >= self.max_entries {
                let Some(soonest) = state
                    .cache
                    .iter()
                    .min_by_key(|(_, entry)| entry.until)
                    .map(|(key, _)| *key)
                else {
                    break;
                };
                state.cache.remove(&soonest);
            }
        }
        state.cache.insert(key, cached);
    }

    /// 401 for a credential the auth service refused.
    fn refusal(&self) -> Response {
        let status = tonic::Status::unauthenticated(format!(
            "the credential in the {} is not valid",
            match &self.source {
                CredentialSource::Header { name, .. } => format!("`{name}` header"),
                CredentialSource::Cookie(name) => format!("`{name}` cookie"),
            }
        ));
        let mut response = crate::status::status_response(&status, None, &Registry::EMPTY);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, self.challenge.clone());
        response
    }
}

/// 503 when the auth service cannot answer and the checker fails closed.
fn unavailable(reason: &Unreachable) -> Response {
    let status = tonic::Status::unavailable(format!(
        "the auth service could not check the credential: {}",
        reason.0
    ));
    crate::status::status_response(&status, None, &Registry::EMPTY)
}

fn digest(credential: &str) -> Key {
    let digest = ring::digest::digest(&ring::digest::SHA256, credential.as_bytes());
    let mut key = [0; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// A google.protobuf.Struct as JSON.
fn struct_json(value: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        value
            .fields
            .iter()
            .map(|(name, value)| (name.clone(), value_json(value)))
            .collect(),
    )
}

fn value_json(value: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_json(s),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(value_json).collect())
        }
    }
}

impl<S> tower::Layer<S> for ExternalAuth {
    type Service = ExternalAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExternalAuthService {
            auth: self.clone(),
            inner,
        }
    }
}

/// [`ExternalAuth`] around a service.
#[derive(Clone)]
pub struct ExternalAuthService<S> {
    auth: ExternalAuth,
    inner: S,
}

impl<S> tower::Service<Request<Body>> for ExternalAuthService<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The service that was polled ready serves this request; a fresh clone waits for the
        // next one.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let auth = self.auth.clone();
        Box::pin(async move {
            let credential = match Principal::of(&request) {
                Some(_) => None,
                None => auth
                    .credential(&request)
                    .filter(|_| auth.forged(&request).is_none()),
            };
            if let Some(credential) = credential {
                match auth.identify(credential).await {
                    Identified::Nothing => {}
                    Identified::Principal(principal) => principal.attach(&mut request),
                    Identified::Refused(response) => return Ok(response),
                }
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut request = Request::new(());
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        request
    }

    #[test]
    fn a_cookie_is_not_taken_on_a_cross_site_request_that_can_change_something() {
        let never = |_: CheckRequest| async { Ok(CheckResponse::default()) };
        let cookie = ExternalAuth::with_check(never)
            .source(CredentialSource::Cookie("session".to_owned()))
            .cross_site_origins(["https://app.example.com"])
            .build();
        let header = ExternalAuth::with_check(never).build();
        let forged = |method: &str, headers: &[(&str, &str)]| {
            let mut request = request(headers);
            *request.method_mut() = method.parse().expect("method");
            request
                .headers_mut()
                .insert(header::HOST, HeaderValue::from_static("api.example.com"));
            cookie.forged(&request).is_some()
        };
        let cross_site = [("sec-fetch-site", "cross-site")];
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            assert!(forged(method, &cross_site), "{method}");
        }
        for method in ["GET", "HEAD", "OPTIONS"] {
            assert!(!forged(method, &cross_site), "{method}");
        }
        // A WebSocket upgrade is a GET that opens a two-way session.
        let upgrade = [
            ("sec-fetch-site", "cross-site"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ];
        assert!(forged("GET", &upgrade));
        for site in ["same-origin", "same-site", "none"] {
            assert!(!forged("POST", &[("sec-fetch-site", site)]), "{site}");
        }
        // Without Fetch Metadata, the origin's host against the request's.
        assert!(!forged("POST", &[("origin", "https://api.example.com")]));
        assert!(!forged("POST", &[("origin", "https://API.example.com")]));
        assert!(forged(
            "POST",
            &[("origin", "https://api.example.com.evil")]
        ));
        assert!(forged("POST", &[("origin", "null")]));
        // Neither header: not a browser's request.
        assert!(!forged("POST", &[]));
        // A listed origin, whatever the browser says.
        let listed = [
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://APP.example.com"),
        ];
        assert!(!forged("POST", &listed));
        // A credential in a header is not sent by the browser on its own.
        let mut request = request(&cross_site);
        *request.method_mut() = http::Method::POST;
        assert!(header.forged(&request).is_none());
    }

    #[test]
    fn credentials_are_found_in_headers_and_cookies() {
        let bearer = CredentialSource::Header {
            name: header::AUTHORIZATION,
            scheme: Some("Bearer".to_owned()),
        };
        assert_eq!(
            bearer.find(&request(&[("authorization", "bearer  abc ")])),
            Some("abc".to_owned())
        );
        assert_eq!(
            bearer.find(&request(&[("authorization", "Basic abc")])),
            None
        );
        assert_eq!(bearer.find(&request(&[("authorization", "Bearer ")])), None);
        let cookie = CredentialSource::Cookie("session".to_owned());
        assert_eq!(
            cookie.find(&request(&[
                ("cookie", "a=1; session=\"s-42\""),
                ("cookie", "b=2")
            ])),
            Some("s-42".to_owned())
        );
        assert_eq!(cookie.find(&request(&[("cookie", "sessions=x")])), None);
    }

    /// A checker whose service allows every credential, asking to be cached for `cache_for`,
    /// and counts its calls.
    fn counting(
        cache_for: Option<Duration>,
    ) -> (ExternalAuthBuilder, Arc<std::sync::atomic::AtomicU64>) {
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&calls);
        let builder = ExternalAuth::with_check(move |request: CheckRequest| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                Ok(CheckResponse {
                    allowed: true,
                    subject: request.credential,
                    cache_for: cache_for.map(|d| prost_types::Duration {
                        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
                    }),
                    ..CheckResponse::default()
                })
            }
        });
        (builder, calls)
    }

    async fn subject(inner: &Inner, credential: &str) -> String {
        match inner.resolve(credential.to_owned()).await {
            Ok(Answer::Allowed(principal)) => principal.subject.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn answers_expire_and_the_cache_stays_bounded() {
        let (builder, calls) = counting(Some(Duration::from_millis(50)));
        let auth = builder.max_entries(2).build();
        let inner = &auth.inner;
        assert_eq!(subject(inner, "a").await, "a");
        assert_eq!(subject(inner, "a").await, "a");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "cached");
        // The service's cache_for (50 ms) is shorter than the TTL (60 s): it wins.
        tokio::time::sleep(Duration::from_millis(80)).await;
        subject(inner, "a").await;
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "expired"
        );
        for credential in ["b", "c", "d"] {
            subject(inner, credential).await;
        }
        let state = inner.state.lock().expect("lock");
        assert!(state.cache.len() <= 2, "{}", state.cache.len());
        assert!(state.in_flight.is_empty());
    }

    #[test]
    fn structs_become_json() {
        let claims = prost_types::Struct {
            fields: [
                (
                    "team".to_owned(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::StringValue("core".to_owned())),
                    },
                ),
                (
                    "level".to_owned(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::NumberValue(3.0)),
                    },
                ),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            struct_json(&claims),
            serde_json::json!({"team": "core", "level": 3.0})
        );
    }
}
