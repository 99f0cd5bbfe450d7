//! What generated code hands the runtime for each service: static route descriptions and the
//! handlers that serve them.

use std::sync::Arc;

use axum::response::Response;

use crate::binding::Binding;
use crate::call::{BoxFuture, Call, RouteInfo, UnaryFuture};
use crate::deadline::Deadlines;
use crate::error::GatewayError;
use crate::json::{JsonMessage, Registry};
use crate::stream::{self, RequestStream, Rpc, StreamFuture};
use crate::unary;

/// A service and every binding it has.
pub struct ServiceInfo {
    /// The service's full proto name.
    pub name: &'static str,
    /// Its bindings, primary ones first in method order.
    pub routes: &'static [&'static RouteInfo],
    /// Builds the service's routes forwarding to an upstream.
    pub remote: fn(crate::Upstream) -> Service,
    /// The edge policy its methods declare in the proto (`(protogate.api.policy)`), for the
    /// methods that declare one.
    pub policies: &'static [crate::DeclaredPolicy],
}

/// The full name of the message that says nothing.
const EMPTY: &str = "google.protobuf.Empty";

pub(crate) type Handler =
    Arc<dyn Fn(Call) -> BoxFuture<Result<Response, GatewayError>> + Send + Sync>;

/// A binding with the handler that serves it.
#[derive(Clone)]
pub struct Route {
    pub(crate) info: &'static RouteInfo,
    pub(crate) handler: Handler,
    /// Served over WebSocket too: a streaming RPC.
    pub(crate) streaming: bool,
    /// The deadline rules of its method, as set on the service.
    pub(crate) deadlines: Deadlines,
    /// The status of a successful unary answer, when its method sets one.
    pub(crate) success: Option<http::StatusCode>,
    /// Answers one `google.protobuf.Empty` (a unary or client-streaming RPC).
    pub(crate) answers_empty: bool,
}

impl Route {
    /// A unary binding whose calls go to `call`.
    pub fn unary<Req, Resp, F>(binding: &'static Binding<Req, Resp>, call: F) -> Self
    where
        Req: JsonMessage + Send,
        Resp: JsonMessage + Send,
        F: Fn(tonic::Request<Req>) -> UnaryFuture<Resp> + Send + Sync + 'static,
    {
        let call = Arc::new(call);
        Route {
            info: binding.route,
            streaming: false,
            deadlines: Deadlines::NONE,
            success: None,
            answers_empty: Resp::TYPE_NAME == EMPTY,
            handler: Arc::new(move |request: Call| {
                let call = Arc::clone(&call);
                Box::pin(async move { unary::serve(binding, &*call, request).await })
            }),
        }
    }

    /// A server-streaming binding whose calls go to `call`.
    pub fn server_streaming<Req, Resp, F>(binding: &'static Binding<Req, Resp>, call: F) -> Self
    where
        Req: JsonMessage + Send,
        Resp: JsonMessage + Send,
        F: Fn(tonic::Request<Req>) -> StreamFuture<Resp> + Send + Sync + 'static,
    {
        Route::streaming(binding, Rpc::Server(Arc::new(call)))
    }

    /// A client-streaming binding whose calls go to `call`.
    pub fn client_streaming<Req, Resp, F>(binding: &'static Binding<Req, Resp>, call: F) -> Self
    where
        Req: JsonMessage + Send,
        Resp: JsonMessage + Send,
        F: Fn(tonic::Request<RequestStream<Req>>) -> UnaryFuture<Resp> + Send + Sync + 'static,
    {
        Route::streaming(binding, Rpc::Client(Arc::new(call)))
    }

    /// A bidi-streaming binding whose calls go to `call`.
    pub fn bidi_streaming<Req, Resp, F>(binding: &'static Binding<Req, Resp>, call: F) -> Self
    where
        Req: JsonMessage + Send,
        Resp: JsonMessage + Send,
        F: Fn(tonic::Request<RequestStream<Req>>) -> StreamFuture<Resp> + Send + Sync + 'static,
    {
        Route::streaming(binding, Rpc::Bidi(Arc::new(call)))
    }

    fn streaming<Req, Resp>(binding: &'static Binding<Req, Resp>, rpc: Rpc<Req, Resp>) -> Self
    where
        Req: JsonMessage + Send,
        Resp: JsonMessage + Send,
    {
        Route {
            info: binding.route,
            streaming: true,
            deadlines: Deadlines::NONE,
            success: None,
            answers_empty: matches!(rpc, Rpc::Client(_)) && Resp::TYPE_NAME == EMPTY,
            handler: Arc::new(move |request: Call| {
                let rpc = rpc.clone();
                Box::pin(async move { stream::serve(binding, &rpc, request).await })
            }),
        }
    }

    /// The binding this route serves.
    pub fn info(&self) -> &'static RouteInfo {
        self.info
    }
}

/// Every route of one service, ready to be added to a [`crate::Gateway`].
pub struct Service {
    pub(crate) info: &'static ServiceInfo,
    pub(crate) registry: &'static Registry,
    pub(crate) routes: Vec<Route>,
    /// The deadline rules of every method without rules of its own.
    pub(crate) deadlines: Deadlines,
    /// The deadline rules of the upstream it forwards to, below the service's own.
    pub(crate) upstream_deadlines: Deadlines,
}

impl Service {
    /// Bundles a service's routes with its description and the build's type registry.
    pub fn new(
        info: &'static ServiceInfo,
        registry: &'static Registry,
        routes: Vec<Route>,
    ) -> Self {
        Service {
            info,
            registry,
            routes,
            deadlines: Deadlines::NONE,
            upstream_deadlines: Deadlines::NONE,
        }
    }

    /// Deadline rules for every method of the service, above its upstream's and the gateway's;
    /// a method's own rules ([`Service::method_deadlines`]) win over them.
    pub fn deadlines(mut self, deadlines: Deadlines) -> Self {
        self.deadlines = deadlines;
        self
    }

    /// Deadline rules for one method, named as in the proto (`GetBook`) or in full
    /// (`library.v1.Library.GetBook`).
    pub fn method_deadlines(
        self,
        method: &str,
        deadlines: Deadlines,
    ) -> Result<Self, UnknownMethod> {
        self.for_method(method, |route| route.deadlines = deadlines)
    }

    /// The HTTP status of a successful answer of one method (named as for
    /// [`Service::method_deadlines`]) instead of 200: 201 for a create, 202 for a long-running
    /// operation, 204 for an answer with nothing to say (sent without a body). Unary answers
    /// only: streams answer 200.
    pub fn method_status(
        self,
        method: &str,
        status: http::StatusCode,
    ) -> Result<Self, UnknownMethod> {
        self.for_method(method, |route| route.success = Some(status))
    }

    /// Applies `change` to every route of `method`; an error when the service has none.
    fn for_method(
        mut self,
        method: &str,
        change: impl Fn(&mut Route),
    ) -> Result<Self, UnknownMethod> {
        let mut found = false;
        for route in &mut self.routes {
            let rpc = route.info.rpc;
            let short = rpc.rsplit('.').next().unwrap_or(rpc);
            if rpc == method || short == method {
                change(route);
                found = true;
            }
        }
        if !found {
            return Err(UnknownMethod {
                service: self.info.name,
                method: method.to_owned(),
            });
        }
        Ok(self)
    }

    /// The deadline rules of the upstream behind the service, which apply where the service
    /// and its methods set none. The generated `remote(upstream)` sets them from the upstream.
    pub fn upstream_deadlines(mut self, deadlines: Deadlines) -> Self {
        self.upstream_deadlines = deadlines;
        self
    }

    /// The service's description.
    pub fn info(&self) -> &'static ServiceInfo {
        self.info
    }

    /// A service whose every binding answers UNAVAILABLE with `message`: for a service listed in
    /// the route table that has no upstream.
    pub fn unavailable(
        info: &'static ServiceInfo,
        registry: &'static Registry,
        message: String,
    ) -> Self {
        let message: Arc<str> = message.into();
        let routes = info
            .routes
            .iter()
            .map(|route| {
                let message = Arc::clone(&message);
                Route {
                    info: route,
                    streaming: false,
                    deadlines: Deadlines::NONE,
                    success: None,
                    answers_empty: false,
                    handler: Arc::new(move |_| {
                        let message = Arc::clone(&message);
                        Box::pin(async move { Err(GatewayError::NoUpstream(message.to_string())) })
                    }),
                }
            })
            .collect();
        Service {
            info,
            registry,
            routes,
            deadlines: Deadlines::NONE,
            upstream_deadlines: Deadlines::NONE,
        }
    }
}

/// A method named for deadline rules that the service does not have.
#[derive(Debug, thiserror::Error)]
#[error("service `{service}` has no method `{method}` with an HTTP binding")]
pub struct UnknownMethod {
    /// The service.
    pub service: &'static str,
    /// The method named.
    pub method: String,
}

/// An in-process implementation of a tonic service trait, called with no network hop and no
/// protobuf encoding.
pub struct Local<T>(Arc<T>);

impl<T> Local<T> {
    /// Wraps an implementation.
    pub fn new(implementation: T) -> Self {
        Local(Arc::new(implementation))
    }

    /// Wraps an implementation that is already shared.
    pub fn from_arc(implementation: Arc<T>) -> Self {
        Local(implementation)
    }

    /// The shared implementation.
    pub fn shared(&self) -> Arc<T> {
        Arc::clone(&self.0)
    }
}

impl<T> Clone for Local<T> {
    fn clone(&self) -> Self {
        Local(Arc::clone(&self.0))
    }
}
