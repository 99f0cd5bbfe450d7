//! What is recorded of a span, and the names of its attributes.

use std::borrow::Cow;
use std::time::SystemTime;

use crate::trace_context::{SpanId, TraceId, TraceState};

/// The attribute names spans carry, from OpenTelemetry's semantic conventions: HTTP server
/// spans (stable), and gRPC client spans as the RPC conventions of semconv 1.37 name them
/// (`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`), which tracing back ends
/// read today. Attributes of the gateway's own are under `protogate.`.
pub mod attr {
    /// The HTTP method of the request (`GET`).
    pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
    /// The method as the client sent it, when it is not a standard one (`_OTHER` above).
    pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
    /// The HTTP status of the answer.
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    /// The route template the request matched (`/v1/{name=shelves/*}`).
    pub const HTTP_ROUTE: &str = "http.route";
    /// The request's path.
    pub const URL_PATH: &str = "url.path";
    /// `http` or `https`.
    pub const URL_SCHEME: &str = "url.scheme";
    /// `grpc`.
    pub const RPC_SYSTEM: &str = "rpc.system";
    /// The full name of the gRPC service (`pkg.Service`).
    pub const RPC_SERVICE: &str = "rpc.service";
    /// The method's name (`GetShelf`).
    pub const RPC_METHOD: &str = "rpc.method";
    /// The numeric gRPC status code of the call.
    pub const RPC_GRPC_STATUS_CODE: &str = "rpc.grpc.status_code";
    /// The upstream endpoint's host (name or address), or socket path.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// The upstream endpoint's port.
    pub const SERVER_PORT: &str = "server.port";
    /// The name of the upstream a request went to.
    pub const PROTOGATE_UPSTREAM: &str = "protogate.upstream";
    /// The endpoint of that upstream that answered (`10.0.0.7:50051`).
    pub const PROTOGATE_UPSTREAM_ENDPOINT: &str = "protogate.upstream.endpoint";
}

/// A span's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// A request the gateway served.
    Server,
    /// A call the gateway made.
    Client,
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Text.
    Str(Cow<'static, str>),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

impl From<&'static str> for Value {
    fn from(text: &'static str) -> Self {
        Value::Str(Cow::Borrowed(text))
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Str(Cow::Owned(text))
    }
}

impl From<i64> for Value {
    fn from(number: i64) -> Self {
        Value::Int(number)
    }
}

impl From<bool> for Value {
    fn from(flag: bool) -> Self {
        Value::Bool(flag)
    }
}

/// How a span ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SpanStatus {
    /// Nothing said: the default, which back ends read as success.
    #[default]
    Unset,
    /// Failed, and why.
    Error(String),
}

/// A finished span, as it is exported.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    /// What it did: `GET /v1/{name=shelves/*}`, `pkg.Service/Method`.
    pub name: Cow<'static, str>,
    /// Its trace.
    pub trace_id: TraceId,
    /// Its own id.
    pub span_id: SpanId,
    /// The span it is a child of, if any.
    pub parent: Option<SpanId>,
    /// Whether the parent came from the caller, in its `traceparent`.
    pub remote_parent: bool,
    /// The trace's `tracestate`, as it was propagated.
    pub state: Option<TraceState>,
    /// Its role.
    pub kind: SpanKind,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// What is known of it, by semantic-convention name ([`attr`]).
    pub attributes: Vec<(&'static str, Value)>,
    /// How it ended.
    pub status: SpanStatus,
}

impl SpanRecord {
    /// The value of attribute `key`, if it has one.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    /// Sets attribute `key`, replacing a value it had.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        match self.attributes.iter_mut().find(|(name, _)| *name == key) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((key, value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_set_once_each_and_read_back() {
        let mut span = SpanRecord {
            name: "GET /v1/shelves".into(),
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent: None,
            remote_parent: false,
            state: None,
            kind: SpanKind::Server,
            start: SystemTime::now(),
            end: SystemTime::now(),
            attributes: Vec::new(),
            status: SpanStatus::Unset,
        };
        span.set(attr::HTTP_REQUEST_METHOD, "GET");
        span.set(attr::HTTP_RESPONSE_STATUS_CODE, 200_i64);
        span.set(attr::HTTP_RESPONSE_STATUS_CODE, 503_i64);
        span.set(attr::URL_PATH, "/v1/shelves".to_owned());
        assert_eq!(span.attributes.len(), 3);
        assert_eq!(
            span.attribute(attr::HTTP_RESPONSE_STATUS_CODE),
            Some(&Value::Int(503))
        );
        assert_eq!(span.attribute(attr::RPC_METHOD), None);
    }
}
