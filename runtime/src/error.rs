//! Every way a request can fail inside the gateway, each with its gRPC code and HTTP status.

use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use tonic::{Code, Status};

use crate::json::{JsonError, Registry};
use crate::metadata::MetadataError;

/// An error of any kind, kept whole as a [`GatewayError`]'s source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failure on the gateway's side of a call, or the upstream's status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// No route matches the path.
    #[error("no route matches {method} {path}")]
    NotFound {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
    },
    /// A route matches the path, but not with this method.
    #[error("method {method} is not allowed for {path}; allowed: {}", join(.allow))]
    MethodNotAllowed {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
        /// The methods that would match.
        allow: Vec<Method>,
    },
    /// The path is not valid percent-encoded UTF-8.
    #[error("invalid request path: {0}")]
    BadPath(String),
    /// The body (or the part of it a binding reads) is not valid for the request message.
    #[error("invalid request body: {0}")]
    Body(#[source] JsonError),
    /// A query parameter's value does not fit its field.
    #[error("invalid query parameter `{param}`: {error}")]
    Query {
        /// The parameter as sent.
        param: String,
        /// What is wrong with its value.
        #[source]
        error: JsonError,
    },
    /// A query parameter's name is malformed.
    #[error("invalid query parameter name `{param}`: {error}")]
    QueryName {
        /// The parameter's name, percent-decoded.
        param: String,
        /// What is wrong with it.
        #[source]
        error: QueryNameError,
    },
    /// A query parameter sets a field that the path sets or the body carries.
    #[error(
        "query parameter `{param}` sets field `{field}`, which this method takes from the path or the body"
    )]
    QueryBound {
        /// The parameter's name.
        param: String,
        /// The field, by JSON names.
        field: String,
    },
    /// A second query parameter for a singular field.
    #[error("query parameter `{param}` sets field `{field}` again; it is not a repeated field")]
    QueryRepeated {
        /// The parameter's name.
        param: String,
        /// The field, by JSON names.
        field: String,
    },
    /// A query parameter names no field (only when unknown parameters are rejected).
    #[error("unknown query parameter `{0}`")]
    UnknownQuery(String),
    /// A path variable's value does not fit its field.
    #[error("invalid value for path variable `{field}`: {error}")]
    Path {
        /// The field the variable binds.
        field: String,
        /// What is wrong with the value.
        #[source]
        error: JsonError,
    },
    /// The request body is larger than the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body of a call that sends one message did not arrive in full in time.
    #[error("the request body did not arrive in full within {limit:?}")]
    BodyTooSlow {
        /// The time the whole body had.
        limit: std::time::Duration,
    },
    /// The request body could not be read from the client.
    #[error("failed to read the request body: {0}")]
    BodyRead(#[source] BoxError),
    /// A header that becomes gRPC metadata is invalid.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The service has no upstream configured.
    #[error("{0}")]
    NoUpstream(String),
    /// One message of a request stream is invalid.
    #[error("message {index} of the request stream: {error}")]
    StreamMessage {
        /// Zero-based position of the message in the stream.
        index: usize,
        /// What is wrong with it.
        #[source]
        error: Box<GatewayError>,
    },
    /// One message of a request stream is larger than the configured limit.
    #[error("message {index} of the request stream exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// Zero-based position of the message in the stream.
        index: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A request stream's body cannot be cut into JSON messages.
    #[error("invalid request stream: {0}")]
    StreamSyntax(String),
    /// No message went either way for longer than the idle limit.
    #[error("the stream was idle for longer than {limit:?}")]
    StreamIdle {
        /// The idle limit.
        limit: std::time::Duration,
    },
    /// The stream lasted longer than its limit (the gateway's or the client's deadline).
    #[error("the stream lasted longer than {limit:?}")]
    StreamTooLong {
        /// The limit.
        limit: std::time::Duration,
    },
    /// The gateway is shutting down and ends its open streams.
    #[error("the gateway is shutting down; call again")]
    Draining,
    /// A raw response stream failed after its first bytes, where no error can be written.
    #[error("the response stream broke off: {0}")]
    StreamBroken(String),
    /// A WebSocket request or session is invalid.
    #[error("websocket: {0}")]
    WebSocket(#[source] BoxError),
    /// The client closed the stream before the call ended.
    #[error("the client closed the stream")]
    ClientClosed,
    /// The upstream's answer could not be written as JSON.
    #[error("failed to write the response as JSON: {0}")]
    Encode(#[source] JsonError),
    /// A rate limit refused the request.
    #[error("rate limit {limit} exceeded; retry in {}s", crate::status::whole_seconds(*.retry_after))]
    RateLimited {
        /// The limit, named and described.
        limit: String,
        /// How long until the request would be allowed.
        retry_after: std::time::Duration,
    },
    /// Rate limits could not be decided (their shared store does not answer, and the layer is
    /// told to refuse then).
    #[error("rate limits cannot be checked: {0}")]
    RateLimitUnavailable(String),
    /// The request carries no credentials, or credentials that do not check out (the auth
    /// layer says which, never quoting them).
    #[error("{0}")]
    Unauthenticated(String),
    /// The credentials check out but do not grant this route (a scope or claim is missing).
    #[error("{0}")]
    PermissionDenied(String),
    /// The keys to check the credentials with cannot be had (an issuer's JWKS never fetched).
    #[error("{0}")]
    AuthUnavailable(String),
    /// A CORS preflight, or a WebSocket upgrade from a browser, that the route's CORS policy
    /// does not allow.
    #[error("CORS: {0}")]
    CorsRefused(String),
    /// The request's headers, names and values together, are larger than the route's limit.
    #[error("request headers exceed the limit of {limit} bytes")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request's URL (path and query) is longer than the route's limit.
    #[error("request URL exceeds the limit of {limit} bytes")]
    UrlTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A request stream sent more bytes in all than the route's limit.
    #[error("request stream exceeds the limit of {limit} bytes in all")]
    StreamTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request body is in a content coding the gateway does not decode.
    #[error("unsupported Content-Encoding `{0}`; supported: gzip, br, zstd")]
    UnsupportedEncoding(String),
    /// The request body is not valid in its content coding.
    #[error("the request body is not valid {encoding}: {error}")]
    BadEncoding {
        /// The content coding.
        encoding: &'static str,
        /// What the decoder found.
        #[source]
        error: std::io::Error,
    },
    /// The upstream answered with an error status (or could not be reached).
    #[error("{}", .0.message())]
    Upstream(#[source] Status),
}

fn join(methods: &[Method]) -> String {
    let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    names.join(", ")
}

impl GatewayError {
    /// The gRPC code this failure is reported with.
    pub fn code(&self) -> Code {
        match self {
            GatewayError::NotFound { .. } => Code::NotFound,
            GatewayError::MethodNotAllowed { .. } => Code::Unimplemented,
            GatewayError::BadPath(_)
            | GatewayError::Body(_)
            | GatewayError::Query { .. }
            | GatewayError::QueryName { .. }
            | GatewayError::QueryBound { .. }
            | GatewayError::QueryRepeated { .. }
            | GatewayError::UnknownQuery(_)
            | GatewayError::Path { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::StreamSyntax(_)
            | GatewayError::WebSocket(_)
            | GatewayError::UnsupportedEncoding(_)
            | GatewayError::BadEncoding { .. }
            | GatewayError::Metadata(_) => Code::InvalidArgument,
            GatewayError::CorsRefused(_) => Code::PermissionDenied,
            GatewayError::StreamMessage { error, .. } => error.code(),
            GatewayError::BodyTooLarge { .. }
            | GatewayError::MessageTooLarge { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::HeadersTooLarge { .. }
            | GatewayError::UrlTooLong { .. }
            | GatewayError::StreamTooLarge { .. } => Code::ResourceExhausted,
            GatewayError::StreamIdle { .. }
            | GatewayError::StreamTooLong { .. }
            | GatewayError::BodyTooSlow { .. } => Code::DeadlineExceeded,
            GatewayError::ClientClosed => Code::Cancelled,
            GatewayError::StreamBroken(_) | GatewayError::Draining => Code::Unavailable,
            GatewayError::NoUpstream(_)
            | GatewayError::RateLimitUnavailable(_)
            | GatewayError::AuthUnavailable(_) => Code::Unavailable,
            GatewayError::Unauthenticated(_) => Code::Unauthenticated,
            GatewayError::PermissionDenied(_) => Code::PermissionDenied,
            GatewayError::Encode(_) => Code::Internal,
            GatewayError::Upstream(status) => status.code(),
        }
    }

    /// The HTTP status, where it is not the one mapped from [`GatewayError::code`].
    fn http_override(&self) -> Option<StatusCode> {
        match self {
            GatewayError::MethodNotAllowed { .. } => Some(StatusCode::METHOD_NOT_ALLOWED),
            GatewayError::BodyTooLarge { .. }
            | GatewayError::MessageTooLarge { .. }
            | GatewayError::StreamTooLarge { .. } => Some(StatusCode::PAYLOAD_TOO_LARGE),
            GatewayError::HeadersTooLarge { .. } => {
                Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
            GatewayError::UrlTooLong { .. } => Some(StatusCode::URI_TOO_LONG),
            GatewayError::BodyTooSlow { .. } => Some(StatusCode::REQUEST_TIMEOUT),
            GatewayError::UnsupportedEncoding(_) => Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            GatewayError::StreamMessage { error, .. } => error.http_override(),
            _ => None,
        }
    }

    /// This failure as a gRPC status.
    pub fn into_status(self) -> Status {
        if let GatewayError::RateLimited { retry_after, .. } = &self {
            // With a google.rpc.RetryInfo, which the response turns into `Retry-After`.
            return crate::status::retry_later(self.code(), self.to_string(), *retry_after);
        }
        match self {
            GatewayError::Upstream(status) => status,
            other => Status::new(other.code(), other.to_string()),
        }
    }

    /// The HTTP response: status code, google.rpc.Status JSON body, and `Allow` for a 405.
    pub fn into_response(self, registry: &Registry) -> Response {
        let http = self.http_override();
        let allow = match &self {
            GatewayError::MethodNotAllowed { allow, .. } => Some(join(allow)),
            _ => None,
        };
        let mut response = crate::status::status_response(&self.into_status(), http, registry);
        if let Some(allow) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

impl GatewayError {
    /// The failure a request body reported while it was read: the gateway's own, when a layer
    /// (limits, decompression) put one there, else [`GatewayError::BodyRead`].
    pub(crate) fn from_body(error: BoxError) -> GatewayError {
        let mut error = error;
        // Each body that passes an error on may have wrapped it once more.
        loop {
            error = match error.downcast::<axum::Error>() {
                Ok(wrapped) => wrapped.into_inner(),
                Err(error) => {
                    return match error.downcast::<GatewayError>() {
                        Ok(own) => *own,
                        Err(error) => GatewayError::BodyRead(error),
                    };
                }
            };
        }
    }
}

impl From<Status> for GatewayError {
    fn from(status: Status) -> Self {
        GatewayError::Upstream(status)
    }
}

/// Why a query parameter's name cannot name a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryNameError {
    /// `?=v`.
    #[error("the name is empty")]
    Empty,
    /// `?a..b=v`, `?.a=v`, `?a.=v`, `?[k]=v`.
    #[error("a field name in it is empty")]
    EmptySegment,
    /// `?m[k=v`, `?m[k]x=v`, `?m]=v`.
    #[error("a `[` must be closed by the `]` that ends the name (`map[key]`)")]
    Brackets,
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn wrapped_errors_stay_reachable_as_the_source() {
        let query = GatewayError::Query {
            param: "page".into(),
            error: JsonError::new("not a number"),
        };
        let source = query.source().expect("a source");
        assert!(source.downcast_ref::<JsonError>().is_some());

        let inner = GatewayError::Body(JsonError::new("expected `{`"));
        let stream = GatewayError::StreamMessage {
            index: 2,
            error: Box::new(inner),
        };
        // The chain goes on through the message's own error to what it wraps.
        let source = stream.source().expect("a source");
        assert_eq!(source.to_string(), "invalid request body: expected `{`");
        assert!(source.source().is_some_and(|e| e.is::<JsonError>()));

        let read = GatewayError::BodyRead(Box::new(std::io::Error::other("reset")));
        assert!(read.source().is_some_and(|e| e.is::<std::io::Error>()));

        let upstream = GatewayError::Upstream(Status::unavailable("down"));
        assert!(upstream.source().is_some_and(|e| e.is::<Status>()));
    }
}
