//! The record of one request, from its arrival to the end of its answer: what the observe layer
//! knows at once (id, start, client, method) and what the parts inside fill in as they learn it
//! (route, upstream endpoint, auth subject, status, bytes, stream messages).
//!
//! Slots are set once (`OnceLock`) or counted (atomics): filling one takes no lock.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tonic::Code;

use super::id::{REQUEST_ID, RequestId};
use super::{Event, Observers};
use crate::call::RouteInfo;

/// The record of one request, shared by every part that serves it: the observe layer puts it in
/// the request's extensions as an `Arc<Scope>` ([`Scope::of`]), the gateway, the edge layers,
/// the pipelines and the built-in upstream fill it in, and the observers read it when the request
/// ends ([`Observer::on_end`](super::Observer::on_end)).
///
/// A request ends when the last of its holds is dropped: the response body's (once it has been
/// sent or dropped) and, for a WebSocket, the session's ([`Scope::hold`]).
pub struct Scope {
    id: RequestId,
    started: Instant,
    started_at: SystemTime,
    client: Option<SocketAddr>,
    method: http::Method,
    observers: Observers,
    /// What observers keep for the request, from [`Observer::on_start`](super::Observer::on_start).
    states: Vec<Box<dyn Any + Send + Sync>>,
    route: OnceLock<&'static RouteInfo>,
    upstream: OnceLock<UpstreamTarget>,
    upstream_started: OnceLock<Instant>,
    /// Nanoseconds from `started` to the end of the upstream call (0: not ended).
    upstream_ended: AtomicU64,
    subject: OnceLock<Arc<str>>,
    code: AtomicU8,
    status: AtomicU16,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    stream: OnceLock<StreamTransport>,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    auth_failure: OnceLock<&'static str>,
    rate_limit: OnceLock<RateLimitDecision>,
    holds: AtomicUsize,
    duration: OnceLock<Duration>,
}

/// No gRPC code recorded yet.
const NO_CODE: u8 = u8::MAX;

/// The upstream a request's call went to, and the endpoint that took it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// The upstream's name.
    pub upstream: Arc<str>,
    /// The endpoint, as `host:port` (or the socket path).
    pub endpoint: Arc<str>,
}

/// How a streaming call travels to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamTransport {
    /// Newline-delimited JSON over HTTP.
    Ndjson,
    /// Server-Sent Events.
    Sse,
    /// The raw bytes of `google.api.HttpBody` messages over HTTP.
    Raw,
    /// WebSocket frames.
    WebSocket,
}

impl StreamTransport {
    /// Its name in metrics and logs: `ndjson`, `sse`, `raw`, `websocket`.
    pub fn name(self) -> &'static str {
        match self {
            StreamTransport::Ndjson => "ndjson",
            StreamTransport::Sse => "sse",
            StreamTransport::Raw => "raw",
            StreamTransport::WebSocket => "websocket",
        }
    }
}

/// What a rate limit decided for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimitDecision {
    /// Let through (`false`: refused with 429).
    pub allowed: bool,
    /// Counted in Redis (`false`: in this process's memory).
    pub redis: bool,
    /// Redis failed for this request (and the limit fell back to memory, or refused).
    pub redis_error: bool,
}

impl Scope {
    /// The record of a request that arrives now with `parts`, watched by `observers`; each
    /// observer's [`on_start`](super::Observer::on_start) runs here.
    pub(crate) fn start(parts: &http::request::Parts, observers: &Observers) -> Arc<Scope> {
        let client = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        let mut scope = Scope {
            id: RequestId::from_header(parts.headers.get(REQUEST_ID)),
            started: Instant::now(),
            started_at: SystemTime::now(),
            client,
            method: parts.method.clone(),
            observers: Arc::clone(observers),
            states: Vec::new(),
            route: OnceLock::new(),
            upstream: OnceLock::new(),
            upstream_started: OnceLock::new(),
            upstream_ended: AtomicU64::new(0),
            subject: OnceLock::new(),
            code: AtomicU8::new(NO_CODE),
            status: AtomicU16::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            stream: OnceLock::new(),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            auth_failure: OnceLock::new(),
            rate_limit: OnceLock::new(),
            holds: AtomicUsize::new(0),
            duration: OnceLock::new(),
        };
        for observer in observers.iter() {
            if let Some(state) = observer.on_start(&scope, parts) {
                scope.states.push(state);
            }
        }
        Arc::new(scope)
    }

    /// The record of `request`, when an observe layer wears the router that serves it.
    pub fn of<B>(request: &http::Request<B>) -> Option<&Arc<Scope>> {
        request.extensions().get::<Arc<Scope>>()
    }

    /// The record in `extensions` (of a request, or of a tonic request on its way upstream).
    pub fn in_extensions(extensions: &http::Extensions) -> Option<&Arc<Scope>> {
        extensions.get::<Arc<Scope>>()
    }

    /// The request's id: the client's `X-Request-Id` when sane, else one made here.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// When the request arrived (monotonic clock).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the request arrived (wall clock).
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// The client's address, as the connection shows it.
    pub fn client(&self) -> Option<SocketAddr> {
        self.client
    }

    /// The request's method.
    pub fn method(&self) -> &http::Method {
        &self.method
    }

    /// The binding the request was routed to; `None` for a request that matches no route.
    pub fn route(&self) -> Option<&'static RouteInfo> {
        self.route.get().copied()
    }

    /// The upstream and endpoint its call went to, when the built-in upstream carried it.
    pub fn upstream(&self) -> Option<&UpstreamTarget> {
        self.upstream.get()
    }

    /// When its upstream call started (its metadata written), if it made one.
    pub fn upstream_started(&self) -> Option<Instant> {
        self.upstream_started.get().copied()
    }

    /// When the built-in upstream's response to it ended (its body read or dropped).
    pub fn upstream_ended(&self) -> Option<Instant> {
        match self.upstream_ended.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.started + Duration::from_nanos(nanos)),
        }
    }

    /// Who the client is, when an auth layer established it.
    pub fn subject(&self) -> Option<&str> {
        self.subject.get().map(|subject| &**subject)
    }

    /// The gRPC code of the answer: set by the gateway for its failures and for the end of a
    /// stream; at the end of the request, one derived from the HTTP status where nothing set it.
    pub fn code(&self) -> Option<Code> {
        match self.code.load(Ordering::Acquire) {
            NO_CODE => None,
            code => Some(Code::from_i32(i32::from(code))),
        }
    }

    /// The HTTP status of the answer, once it is known (499 when the client left first).
    pub fn status(&self) -> Option<http::StatusCode> {
        http::StatusCode::from_u16(self.status.load(Ordering::Acquire)).ok()
    }

    /// Bytes of request body read so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Bytes of response body sent so far (for a WebSocket, message payloads each way count).
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// How its stream travels, for a streaming call.
    pub fn stream(&self) -> Option<StreamTransport> {
        self.stream.get().copied()
    }

    /// Request messages of a stream passed upstream so far.
    pub fn messages_in(&self) -> u64 {
        self.messages_in.load(Ordering::Relaxed)
    }

    /// Response messages of a stream sent to the client so far.
    pub fn messages_out(&self) -> u64 {
        self.messages_out.load(Ordering::Relaxed)
    }

    /// Why an auth layer refused the request, when one did: `missing` (no credentials),
    /// `invalid_token`, `invalid_key`, `forbidden` (valid, but not enough for the route),
    /// `unavailable` (the keys to check with cannot be had), `external` (an external check
    /// refused).
    pub fn auth_failure(&self) -> Option<&'static str> {
        self.auth_failure.get().copied()
    }

    /// What a rate limit decided for it, when one applied.
    pub fn rate_limit(&self) -> Option<RateLimitDecision> {
        self.rate_limit.get().copied()
    }

    /// How long the request took, from its arrival to the end of its answer; `None` before.
    pub fn duration(&self) -> Option<Duration> {
        self.duration.get().copied()
    }

    /// What an observer of type-specific state kept for this request in
    /// [`Observer::on_start`](super::Observer::on_start).
    pub fn state<T: Any>(&self) -> Option<&T> {
        self.states
            .iter()
            .find_map(|state| state.downcast_ref::<T>())
    }

    /// Keeps the request open until the returned hold is dropped, for work that outlives the
    /// response (a WebSocket session).
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.holds.fetch_add(1, Ordering::AcqRel);
        Hold(Arc::clone(self))
    }

    /// Writes what the upstream call of this request carries besides the client's metadata:
    /// `x-request-id`, then what each observer adds ([`Observer::on_upstream`](super::Observer::on_upstream)).
    /// Marks the start of the upstream call.
    pub fn write_upstream_metadata(&self, metadata: &mut tonic::metadata::MetadataMap) {
        let _ = self.upstream_started.set(Instant::now());
        metadata.insert(REQUEST_ID, self.id.metadata_value());
        for observer in self.observers.iter() {
            observer.on_upstream(self, metadata);
        }
    }

    pub(crate) fn set_route(&self, route: &'static RouteInfo) {
        if self.route.set(route).is_ok() {
            self.tell(Event::Routed);
        }
    }

    pub(crate) fn set_upstream(&self, target: UpstreamTarget) {
        let _ = self.upstream.set(target);
    }

    pub(crate) fn upstream_done(&self) {
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let _ = self.upstream_ended.compare_exchange(
            0,
            nanos.max(1),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    pub(crate) fn set_subject(&self, subject: Arc<str>) {
        let _ = self.subject.set(subject);
    }

    pub(crate) fn set_auth_failure(&self, reason: &'static str) {
        let _ = self.auth_failure.set(reason);
    }

    pub(crate) fn set_rate_limit(&self, decision: RateLimitDecision) {
        let _ = self.rate_limit.set(decision);
    }

    /// Records the code a stream ended with, over any recorded before.
    pub(crate) fn set_code(&self, code: Code) {
        self.code.store(code as u8, Ordering::Release);
    }

    /// Records `code` unless one is recorded already.
    pub(crate) fn set_code_if_unset(&self, code: Code) {
        let _ =
            self.code
                .compare_exchange(NO_CODE, code as u8, Ordering::AcqRel, Ordering::Acquire);
    }

    pub(crate) fn set_status(&self, status: http::StatusCode) {
        self.status.store(status.as_u16(), Ordering::Release);
    }

    pub(crate) fn set_status_if_unset(&self, status: http::StatusCode) {
        let _ =
            self.status
                .compare_exchange(0, status.as_u16(), Ordering::AcqRel, Ordering::Acquire);
    }

    pub(crate) fn add_bytes_in(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_bytes_out(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Marks the request as a stream over `transport` (once).
    pub(crate) fn stream_opened(&self, transport: StreamTransport) {
        if self.stream.set(transport).is_ok() {
            self.tell(Event::StreamOpened);
        }
    }

    pub(crate) fn message_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn message_out(&self) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
    }

    fn tell(&self, event: Event) {
        for observer in self.observers.iter() {
            observer.on_event(self, event);
        }
    }

    /// The request has ended: its duration and final code are fixed, and the observers told.
    fn finish(&self) {
        if self.duration.set(self.started.elapsed()).is_err() {
            return;
        }
        if let Some(status) = self.status() {
            self.set_code_if_unset(code_of_status(status));
        }
        for observer in self.observers.iter() {
            observer.on_end(self);
        }
    }
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("route", &self.route().map(|route| route.template.text))
            .field("status", &self.status())
            .field("code", &self.code())
            .finish_non_exhaustive()
    }
}

/// Keeps a request open; the request ends when its last hold is dropped.
#[derive(Debug)]
pub struct Hold(Arc<Scope>);

impl Hold {
    /// The request held.
    pub fn scope(&self) -> &Arc<Scope> {
        &self.0
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.0.holds.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.finish();
        }
    }
}

/// The gRPC code an HTTP status stands for, for answers no part of the gateway gave a code to
/// (the inverse of the gateway's own mapping where it is one to one).
pub fn code_of_status(status: http::StatusCode) -> Code {
    match status.as_u16() {
        100..=399 => Code::Ok,
        400 | 411 | 414 | 415 | 422 | 431 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        405 | 501 => Code::Unimplemented,
        408 | 504 => Code::DeadlineExceeded,
        409 => Code::Aborted,
        412 => Code::FailedPrecondition,
        413 | 429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        502 | 503 => Code::Unavailable,
        500..=599 => Code::Internal,
        _ => Code::Unknown,
    }
}

/// A gRPC code's name as gRPC writes it: `OK`, `NOT_FOUND`, `UNAVAILABLE`, …
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
