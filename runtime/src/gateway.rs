//! The gateway: every service's routes in one table, served as an axum `Router`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;

use crate::call::{Call, RouteInfo, Settings};
use crate::deadline::Deadlines;
use crate::error::GatewayError;
use crate::json::{JsonOptions, Registry};
use crate::route::{Conflict, Lookup, RouteTable};
use crate::service::{Route, Service};

/// Assembles services into one HTTP front door.
///
/// ```no_run
/// # fn services() -> Vec<protogate::Service> { Vec::new() }
/// let mut gateway = protogate::Gateway::new();
/// for service in services() {
///     gateway.add(service).expect("no two services bind the same route");
/// }
/// let app: axum::Router = gateway.into_router();
/// ```
#[derive(Default)]
pub struct Gateway {
    table: RouteTable<Route>,
    routes: Vec<&'static RouteInfo>,
    settings: Settings,
}

impl Gateway {
    /// An empty gateway with default settings.
    pub fn new() -> Self {
        Gateway::default()
    }

    /// Adds every route of `service`; fails if one matches the same requests as a route already
    /// added.
    pub fn add(&mut self, service: Service) -> Result<&mut Self, Conflict> {
        // All services of one build share one registry; the first one seen serves errors too.
        if std::ptr::eq(self.settings.registry, &Registry::EMPTY) {
            self.settings.registry = service.registry;
        }
        for mut route in service.routes {
            route.deadlines = route
                .deadlines
                .or(service.deadlines)
                .or(service.upstream_deadlines);
            let info = route.info;
            let method =
                http::Method::from_bytes(info.method.as_bytes()).unwrap_or(http::Method::GET);
            self.table.insert(method, &info.template, route)?;
            self.routes.push(info);
        }
        Ok(self)
    }

    /// Adds `service`, builder style; see [`Gateway::add`].
    pub fn with(mut self, service: Service) -> Result<Self, Conflict> {
        self.add(service)?;
        Ok(self)
    }

    /// Output options: emit default values, proto field names, enums as numbers.
    pub fn json_output(mut self, options: JsonOptions) -> Self {
        self.settings.write_options = options;
        self
    }

    /// Ignore unknown fields in request bodies instead of answering 400.
    pub fn ignore_unknown_fields(mut self, ignore: bool) -> Self {
        self.settings.read_options.ignore_unknown = ignore;
        self
    }

    /// Answer 400 for query parameters that name no field instead of ignoring them.
    pub fn reject_unknown_query_parameters(mut self, reject: bool) -> Self {
        self.settings.reject_unknown_query = reject;
        self
    }

    /// The largest request body accepted (4 MiB by default); larger ones get 413.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.settings.max_body_bytes = limit;
        self
    }

    /// The largest message of a request stream (4 MiB by default), over HTTP or WebSocket: a
    /// larger one fails the call with RESOURCE_EXHAUSTED. Request streams have no total limit.
    pub fn max_message_bytes(mut self, limit: usize) -> Self {
        self.settings.max_message_bytes = limit;
        self
    }

    /// Ends a streaming call with DEADLINE_EXCEEDED when no message has gone either way for
    /// this long (no limit by default).
    pub fn stream_idle_timeout(mut self, limit: Option<Duration>) -> Self {
        self.settings.stream_idle_timeout = limit;
        self
    }

    /// Ends a streaming call with DEADLINE_EXCEEDED once it has lasted this long (no limit by
    /// default; a sooner `Grpc-Timeout` from the client wins).
    pub fn stream_max_duration(mut self, limit: Option<Duration>) -> Self {
        self.settings.stream_max_duration = limit;
        self
    }

    /// The deadline of unary calls whose request carries no `Grpc-Timeout`, where neither the
    /// method, its service nor its upstream sets one.
    pub fn default_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.deadlines.default = timeout;
        self
    }

    /// The longest deadline any client may ask for with `Grpc-Timeout` (a longer one is cut
    /// to it), on top of the maxima of methods, services and upstreams.
    pub fn max_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.deadlines.max = timeout;
        self
    }

    /// Both deadline rules at once; see [`Gateway::default_timeout`] and
    /// [`Gateway::max_timeout`].
    pub fn deadlines(mut self, deadlines: Deadlines) -> Self {
        self.settings.deadlines = deadlines;
        self
    }

    /// Ends this gateway's open streams when `drain` starts (UNAVAILABLE, closed the way each
    /// transport closes), for a shutdown that leaves no stream hanging.
    pub fn drain_on(mut self, drain: &crate::Drain) -> Self {
        self.settings.drain = Some(drain.watch());
        self
    }

    /// Every binding served, in the order added.
    pub fn routes(&self) -> &[&'static RouteInfo] {
        &self.routes
    }

    /// The gateway as an axum `Router`; merge it with other routes or serve it as is.
    pub fn into_router(self) -> axum::Router {
        let inner = Arc::new(Inner {
            table: self.table,
            settings: Arc::new(self.settings),
        });
        axum::Router::new().fallback(move |request: http::Request<Body>| {
            let inner = Arc::clone(&inner);
            async move { inner.dispatch(request).await }
        })
    }
}

// Defined here rather than beside `Service` itself: a service knows nothing of the gateway
// that assembles services.
impl Service {
    /// This service alone as an axum `Router`, with default gateway settings: one call from a
    /// tonic channel or implementation to an HTTP front door. Use [`Gateway`] to combine
    /// services or change settings.
    pub fn into_router(self) -> Result<axum::Router, Conflict> {
        Ok(Gateway::new().with(self)?.into_router())
    }
}

/// The methods under which a WebSocket upgrade looks for a streaming binding, in this order.
const UPGRADE_METHODS: [http::Method; 5] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::PATCH,
    http::Method::DELETE,
];

struct Inner {
    table: RouteTable<Route>,
    settings: Arc<Settings>,
}

impl Inner {
    /// The route for a request. A WebSocket upgrade (always a GET) reaches the streaming RPC
    /// bound to its path under any standard method, before a unary GET binding whose template
    /// happens to match too: a POST binding of a bidi RPC is one URL for HTTP and WebSocket.
    fn find(&self, request: &http::Request<Body>) -> Lookup<'_, Route> {
        let path = request.uri().path();
        if request.method() == http::Method::GET && crate::stream::is_upgrade(request.headers()) {
            for method in UPGRADE_METHODS {
                if let found @ Lookup::Found { value, .. } = self.table.find(&method, path)
                    && value.streaming
                {
                    return found;
                }
            }
        }
        self.table.find(request.method(), path)
    }

    async fn dispatch(&self, request: http::Request<Body>) -> Response {
        let registry = self.settings.registry;
        let (handler, captures, deadlines) = match self.find(&request) {
            Lookup::Found { value, captures } => (
                Arc::clone(&value.handler),
                captures,
                value.deadlines.or(self.settings.deadlines),
            ),
            Lookup::MethodNotAllowed { allow } => {
                return GatewayError::MethodNotAllowed {
                    method: request.method().clone(),
                    path: request.uri().path().to_owned(),
                    allow,
                }
                .into_response(registry);
            }
            Lookup::NotFound => {
                return GatewayError::NotFound {
                    method: request.method().clone(),
                    path: request.uri().path().to_owned(),
                }
                .into_response(registry);
            }
            Lookup::BadPath(message) => {
                return GatewayError::BadPath(message).into_response(registry);
            }
        };
        let call = Call {
            request,
            captures,
            settings: Arc::clone(&self.settings),
            deadlines,
        };
        match handler(call).await {
            Ok(response) => response,
            Err(error) => error.into_response(registry),
        }
    }
}
