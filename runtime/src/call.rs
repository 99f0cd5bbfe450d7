//! What every handler works with: the request as it arrives with its path captures, the
//! gateway's settings, the description of a binding, and the futures a backend returns.
//!
//! The bottom of the handler layers: binding, the pipelines, service and gateway all use these
//! types, and this module uses none of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;

use crate::deadline::Deadlines;
use crate::drain::DrainWatch;
use crate::json::{JsonOptions, Registry};
use crate::metadata::HeaderMapping;
use crate::route::Captures;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a backend returns for a unary call.
pub type UnaryFuture<T> = BoxFuture<Result<tonic::Response<T>, tonic::Status>>;

pub use crate::route::RouteInfo;

// Defined here rather than beside `RouteInfo` itself: the route table knows nothing of requests
// routed through a gateway.
impl RouteInfo {
    /// The binding a request was routed to. The gateway sets it before the layers given to
    /// `Gateway::route_layer` see the request, so an edge policy can decide by RPC or template;
    /// `None` outside them.
    pub fn of<B>(request: &http::Request<B>) -> Option<&'static RouteInfo> {
        request
            .extensions()
            .get::<Matched>()
            .map(|matched| matched.0)
    }

    /// Marks `request` as routed to `self` by a gateway whose type registry is `registry`;
    /// see [`RouteInfo::of`] and [`registry_of`].
    pub(crate) fn mark<B>(
        &'static self,
        registry: &'static Registry,
        request: &mut http::Request<B>,
    ) {
        request.extensions_mut().insert(Matched(self, registry));
    }
}

/// The type registry of the gateway that routed `request` (the empty one outside a gateway's
/// route layers): what a route layer renders the details of its refusals with.
pub(crate) fn registry_of<B>(request: &http::Request<B>) -> &'static Registry {
    request
        .extensions()
        .get::<Matched>()
        .map_or(&Registry::EMPTY, |matched| matched.1)
}

/// The request extension [`RouteInfo::of`] and [`registry_of`] read.
#[derive(Clone, Copy)]
struct Matched(&'static RouteInfo, &'static Registry);

/// A request as a handler receives it: the HTTP request, the path captures, the gateway's
/// settings, the deadline rules of its method (its own, its service's, its upstream's and the
/// gateway's, merged) and its success status.
pub(crate) struct Call {
    pub request: http::Request<Body>,
    pub captures: Captures,
    pub settings: Arc<Settings>,
    pub deadlines: Deadlines,
    /// The status of a successful answer with one response message, when its method sets one.
    pub success: Option<http::StatusCode>,
}

/// A route's own request size limits, which `LimitsLayer` puts in the request's extensions for
/// the handler that reads the body; where one is `None`, the gateway's applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BodyLimits {
    /// The largest body of a call that sends one message, over `Settings::max_body_bytes`.
    pub body: Option<usize>,
    /// The most bytes a request stream may send in all (no limit when `None`).
    pub stream: Option<usize>,
}

/// Settings every handler sees.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub registry: &'static Registry,
    pub write_options: JsonOptions,
    pub read_options: JsonOptions,
    pub reject_unknown_query: bool,
    pub max_body_bytes: usize,
    /// How long the whole body of a call that sends one message may take to arrive.
    pub body_timeout: Duration,
    pub deadlines: Deadlines,
    pub response_capacity: usize,
    pub max_message_bytes: usize,
    pub stream_idle_timeout: Option<Duration>,
    pub stream_max_duration: Option<Duration>,
    /// Ends open streams when it starts.
    pub drain: Option<DrainWatch>,
    /// Headers and metadata mapped by name beyond the default rules.
    pub headers: HeaderMapping,
    /// Unary calls that answer `google.protobuf.Empty` get 204 with no body.
    pub empty_as_no_content: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            registry: &Registry::EMPTY,
            write_options: JsonOptions::default(),
            read_options: JsonOptions::default(),
            reject_unknown_query: false,
            max_body_bytes: 4 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            deadlines: Deadlines::NONE,
            response_capacity: 512,
            max_message_bytes: 4 * 1024 * 1024,
            stream_idle_timeout: None,
            stream_max_duration: None,
            drain: None,
            headers: HeaderMapping::NONE,
            empty_as_no_content: false,
        }
    }
}
