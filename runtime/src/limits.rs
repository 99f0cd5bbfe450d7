//! Request size limits per route, as a layer for [`crate::Gateway::route_layer`]: the URL, the
//! headers, the body of a call that sends one message, and the whole of a request stream.
//!
//! Every refusal is a google.rpc.Status body (`RESOURCE_EXHAUSTED`) naming the limit, and comes
//! before the request reaches the upstream:
//! - URL (path and query) longer than `url_bytes`: `414 URI Too Long`, from the layer;
//! - headers (names and values, in bytes) beyond `header_bytes`: `431 Request Header Fields Too
//!   Large`, from the layer;
//! - a body beyond `body_bytes`, for a call that sends one message (unary and server-streaming
//!   RPCs): `413 Payload Too Large`, at once when `Content-Length` says so, else as soon as the
//!   body has gone past it, before the call starts. Without a route limit,
//!   [`Gateway::max_body_bytes`](crate::Gateway::max_body_bytes) applies: it is the default
//!   this limit replaces, route by route;
//! - a request stream (client- and bidi-streaming RPCs over HTTP) beyond `stream_bytes` in all:
//!   `413` before the call when `Content-Length` says so. Past the limit in the middle of a
//!   stream, the upstream call is cancelled (its request stream fails, it never sees a clean
//!   end), and the client gets `413` with the Status when no response has started (a
//!   client-streaming call), or the stream's error (an NDJSON `{"error":…}` line, an SSE
//!   `error` event) once the response has started. WebSocket calls are bounded per message
//!   by [`Gateway::max_message_bytes`](crate::Gateway::max_message_bytes).
//!
//! Sizes count what the handler reads: behind a decompressing layer
//! ([`CompressionLayer`](crate::CompressionLayer)), the decompressed bytes.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use http::Request;
use tower::ServiceExt as _;

use crate::call::{BodyLimits, BoxFuture};
use crate::error::GatewayError;
use crate::json::Registry;
use crate::select::PerRoute;

/// The size limits of a route; each one unset by default (the body limit is then the
/// gateway's).
///
/// ```
/// use protogate::{Limits, LimitsLayer, PerRoute, RouteSelector};
///
/// let uploads = Limits::new().body_bytes(64 << 20).stream_bytes(1 << 30);
/// let layer = LimitsLayer::per_route(
///     PerRoute::new(Limits::new().url_bytes(4096).header_bytes(16 << 10))
///         .rule("acme.files.v1.Files.*".parse::<RouteSelector>()?, uploads),
/// );
/// let gateway = protogate::Gateway::new().route_layer(layer);
/// # Ok::<(), protogate::SelectorError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    body: Option<usize>,
    headers: Option<usize>,
    url: Option<usize>,
    stream: Option<usize>,
}

impl Limits {
    /// No limit of the route's own.
    pub fn new() -> Self {
        Limits::default()
    }

    /// The largest body of a call that sends one message, in bytes (`413`); without it,
    /// [`Gateway::max_body_bytes`](crate::Gateway::max_body_bytes).
    pub fn body_bytes(mut self, limit: usize) -> Self {
        self.body = Some(limit);
        self
    }

    /// The most bytes of headers, names and values counted (`431`).
    pub fn header_bytes(mut self, limit: usize) -> Self {
        self.headers = Some(limit);
        self
    }

    /// The longest URL, path and query, in bytes (`414`).
    pub fn url_bytes(mut self, limit: usize) -> Self {
        self.url = Some(limit);
        self
    }

    /// The most bytes a request stream (client or bidi streaming over HTTP) may send in all
    /// (`413`, or the stream's error once its response has started).
    pub fn stream_bytes(mut self, limit: usize) -> Self {
        self.stream = Some(limit);
        self
    }

    /// The body limit set, if any.
    pub fn body_limit(&self) -> Option<usize> {
        self.body
    }

    /// The header limit set, if any.
    pub fn header_limit(&self) -> Option<usize> {
        self.headers
    }

    /// The URL limit set, if any.
    pub fn url_limit(&self) -> Option<usize> {
        self.url
    }

    /// The request stream limit set, if any.
    pub fn stream_limit(&self) -> Option<usize> {
        self.stream
    }

    /// The refusal of a request whose URL or headers are beyond these limits.
    fn check<B>(&self, request: &Request<B>) -> Result<(), GatewayError> {
        if let Some(limit) = self.url {
            let length = request
                .uri()
                .path_and_query()
                .map_or(0, |target| target.as_str().len());
            if length > limit {
                return Err(GatewayError::UrlTooLong { limit });
            }
        }
        if let Some(limit) = self.headers {
            let size: usize = request
                .headers()
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum();
            if size > limit {
                return Err(GatewayError::HeadersTooLarge { limit });
            }
        }
        Ok(())
    }
}

/// The size limits of every route, as a layer for [`crate::Gateway::route_layer`]: the same
/// for all (`LimitsLayer::new`), or per route.
#[derive(Clone)]
pub struct LimitsLayer {
    limits: Arc<PerRoute<Limits>>,
}

impl LimitsLayer {
    /// `limits` for every route.
    pub fn new(limits: Limits) -> Self {
        LimitsLayer::per_route(PerRoute::new(limits))
    }

    /// Limits per route.
    pub fn per_route(limits: PerRoute<Limits>) -> Self {
        LimitsLayer {
            limits: Arc::new(limits),
        }
    }
}

impl fmt::Debug for LimitsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitsLayer").finish_non_exhaustive()
    }
}

impl<S> tower::Layer<S> for LimitsLayer {
    type Service = LimitsService<S>;

    fn layer(&self, inner: S) -> LimitsService<S> {
        LimitsService {
            limits: Arc::clone(&self.limits),
            inner,
        }
    }
}

/// The service of a [`LimitsLayer`].
#[derive(Clone)]
pub struct LimitsService<S> {
    limits: Arc<PerRoute<Limits>>,
    inner: S,
}

impl<S> fmt::Debug for LimitsService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitsService").finish_non_exhaustive()
    }
}

impl<S> tower::Service<Request<Body>> for LimitsService<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let limits = *self.limits.get(&request);
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Err(error) = limits.check(&request) {
                return Ok(error.into_response(&Registry::EMPTY));
            }
            request.extensions_mut().insert(BodyLimits {
                body: limits.body,
                stream: limits.stream,
            });
            inner.oneshot(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_headers_are_measured_in_bytes() {
        let limits = Limits::new().url_bytes(10).header_bytes(12);
        let request = |uri: &str, value: &str| {
            Request::get(uri)
                .header("x-a", value)
                .body(())
                .expect("request")
        };
        assert!(limits.check(&request("/v1/ab?c=d", "123456789")).is_ok());
        assert!(matches!(
            limits.check(&request("/v1/ab?c=de", "1")),
            Err(GatewayError::UrlTooLong { limit: 10 })
        ));
        assert!(matches!(
            limits.check(&request("/v1", "1234567890")),
            Err(GatewayError::HeadersTooLarge { limit: 12 })
        ));
        assert!(
            Limits::new()
                .check(&request(&"/x".repeat(5000), "v"))
                .is_ok()
        );
    }
}
