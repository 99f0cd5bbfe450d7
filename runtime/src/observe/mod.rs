//! Watching requests: a per-request record ([`Scope`]) made by a layer worn outside the whole
//! router ([`ObserveLayer`]), filled in by the parts that serve the request, and handed to
//! [`Observer`]s when the request starts and when it ends: metrics, access logs and traces are
//! observers.
//!
//! The layer also gives every request its id ([`RequestId`]): the client's `X-Request-Id` when
//! it is sane, else a new one; it goes back in the response's `X-Request-Id` and upstream as
//! `x-request-id` metadata, whatever carries the call (the built-in upstream or a tonic channel).
//!
//! ```
//! use std::sync::Arc;
//! use protogate::observe::{ObserveLayer, Observer, Scope};
//!
//! /// Counts the requests that failed.
//! #[derive(Default)]
//! struct Failures(std::sync::atomic::AtomicU64);
//!
//! impl Observer for Failures {
//!     fn on_end(&self, scope: &Scope) {
//!         if scope.code() != Some(tonic::Code::Ok) {
//!             self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         }
//!     }
//! }
//!
//! let failures = Arc::new(Failures::default());
//! let app: axum::Router = protogate::Gateway::new()
//!     .into_router()
//!     .layer(ObserveLayer::new().observer(failures.clone()));
//! # drop(app);
//! ```
//!
//! What a request costs here: one allocation for its [`Scope`] (two when its id is made here or
//! taken from the client, which copies it), a clock read at each end, and atomic counters; no
//! lock, and no text formatted unless an observer writes some.

mod access;
mod id;
mod layer;
mod metrics;
mod process;
mod scope;

use std::any::Any;
use std::sync::Arc;

pub use access::{AccessFormat, AccessLog, AccessLogBuilder, AccessLogWriter};
pub(crate) use id::unique_per_request;
pub use id::{REQUEST_ID, RequestId};
pub use layer::{ObserveFuture, ObserveLayer, ObserveService, ObservedBody};
pub(crate) use metrics::{BulkheadMetrics, EndpointMetrics};
pub use metrics::{Metrics, UpstreamMetrics};
pub use scope::{
    Hold, RateLimitDecision, Scope, StreamTransport, UpstreamTarget, code_name, code_of_status,
};

/// The observers of a layer, in the order they were added.
pub(crate) type Observers = Arc<[Arc<dyn Observer>]>;

/// Something that watches requests: told when each starts, as it goes, and when it ends.
///
/// Every method runs on the request's own path: keep them short, take no lock that requests
/// contend for, and write nothing to a slow sink inline.
pub trait Observer: Send + Sync + 'static {
    /// A request arrived (nothing is known of its route yet). What this returns is kept with
    /// the request, for [`Scope::state`] to find (by its type) in the later calls.
    fn on_start(
        &self,
        scope: &Scope,
        request: &http::request::Parts,
    ) -> Option<Box<dyn Any + Send + Sync>> {
        let _ = (scope, request);
        None
    }

    /// Something happened to a request under way.
    fn on_event(&self, scope: &Scope, event: Event) {
        let _ = (scope, event);
    }

    /// The request's upstream call is about to go out with `metadata`: add to it what the
    /// upstream should see (a trace context). `x-request-id` is written already.
    fn on_upstream(&self, scope: &Scope, metadata: &mut tonic::metadata::MetadataMap) {
        let _ = (scope, metadata);
    }

    /// The request ended: its answer sent in full, or the client gone, or (for a stream) the
    /// stream over. Every slot of `scope` is final.
    fn on_end(&self, scope: &Scope);
}

/// What [`Observer::on_event`] is told of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The route is known ([`Scope::route`]).
    Routed,
    /// The call became a stream ([`Scope::stream`]).
    StreamOpened,
}

impl<T: Observer + ?Sized> Observer for Arc<T> {
    fn on_start(
        &self,
        scope: &Scope,
        request: &http::request::Parts,
    ) -> Option<Box<dyn Any + Send + Sync>> {
        (**self).on_start(scope, request)
    }

    fn on_event(&self, scope: &Scope, event: Event) {
        (**self).on_event(scope, event);
    }

    fn on_upstream(&self, scope: &Scope, metadata: &mut tonic::metadata::MetadataMap) {
        (**self).on_upstream(scope, metadata);
    }

    fn on_end(&self, scope: &Scope) {
        (**self).on_end(scope);
    }
}

/// The gRPC code of a failure the gateway answered with, in the response's extensions: what the
/// observe layer reads a failed answer's code from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FailureCode(pub tonic::Code);

/// Records in `request`'s scope (if it has one) that it was routed to `route`.
pub(crate) fn routed<B>(request: &http::Request<B>, route: &'static crate::route::RouteInfo) {
    if let Some(scope) = Scope::of(request) {
        scope.set_route(route);
    }
}
