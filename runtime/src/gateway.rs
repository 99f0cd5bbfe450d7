//! The gateway: every service's routes in one table, served as an axum `Router`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt as _};

use crate::call::{Call, RouteInfo, Settings};
use crate::deadline::Deadlines;
use crate::error::GatewayError;
use crate::json::{JsonOptions, Registry};
use crate::route::{Conflict, Lookup, RouteTable};
use crate::service::{Handler, Route, Service};

/// A route's handling as the layers given to [`Gateway::route_layer`] wrap it: a request in,
/// its response out, never an error.
pub type RouteService = BoxCloneSyncService<http::Request<Body>, Response, Infallible>;

/// One layer of [`Gateway::route_layer`], boxed.
type Wrap = Arc<dyn Fn(RouteService) -> RouteService + Send + Sync>;

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
    /// What each route answers with, for the OpenAPI document: its RPC, its own success
    /// status, whether it answers `google.protobuf.Empty`.
    answers: Vec<(&'static str, Option<http::StatusCode>, bool)>,
    settings: Settings,
    /// The route layers, outermost first.
    layers: Vec<Wrap>,
    /// Serve the unbound routes of the services added.
    unbound_methods: bool,
}

impl Gateway {
    /// An empty gateway with default settings.
    pub fn new() -> Self {
        Gateway::default()
    }

    /// Adds every route of `service`; fails if one matches the same requests as a route already
    /// added. Unbound routes are checked too, whether they are served or not (see
    /// [`Gateway::unbound_methods`]), so the switch never changes which services fit together.
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
            self.answers
                .push((info.rpc, route.success, route.answers_empty));
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

    /// Whether to serve the unbound routes of the services added: the RPCs without a
    /// `google.api.http` rule, each at `POST /{package}.{Service}/{Method}` with the whole
    /// request message as the body (every streaming shape included), which protogate-build
    /// generates with its `unbound_methods` option. Off by default, so a build that has them
    /// serves only its annotated bindings until asked: an RPC a proto never exposed over HTTP
    /// stays unreachable unless this says otherwise.
    ///
    /// When off, unbound routes answer 404 as any path nothing serves, and
    /// [`Gateway::routes`] and [`Gateway::openapi`] leave them out. It applies to every service
    /// of the gateway, added before or after it is set.
    pub fn unbound_methods(mut self, serve: bool) -> Self {
        self.unbound_methods = serve;
        self
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

    /// The largest request body of a call that sends one message (4 MiB by default); a larger
    /// one gets 413, unread when its `Content-Length` says so. A route whose
    /// [`Limits`](crate::Limits) (in a [`LimitsLayer`](crate::LimitsLayer)) set a body limit
    /// has that one instead: this is the limit of every other route. Request streams have
    /// their own total limit ([`Limits::stream_bytes`](crate::Limits::stream_bytes)).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.settings.max_body_bytes = limit;
        self
    }

    /// How long the whole body of a call that sends one message (unary and server-streaming
    /// RPCs) may take to arrive once the handler starts reading it (30 s by default): a client
    /// that trickles its body gets `408` (DEADLINE_EXCEEDED) rather than holding the call open.
    /// Request streams are bounded by the stream limits instead
    /// ([`stream_idle_timeout`](Self::stream_idle_timeout)).
    pub fn body_timeout(mut self, limit: std::time::Duration) -> Self {
        self.settings.body_timeout = limit;
        self
    }

    /// The largest message of a request stream (4 MiB by default), over HTTP or WebSocket: a
    /// larger one fails the call with RESOURCE_EXHAUSTED. Request streams have no total limit
    /// unless a route's [`Limits::stream_bytes`](crate::Limits::stream_bytes) sets one.
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

    /// Maps request headers to metadata keys and response metadata to headers by name, beyond
    /// the default rules; see [`HeaderMapping`](crate::HeaderMapping).
    pub fn header_mapping(mut self, mapping: crate::metadata::HeaderMapping) -> Self {
        self.settings.headers = mapping;
        self
    }

    /// Answers 204 with no body for unary methods that return `google.protobuf.Empty`, unless
    /// the method sets its own status ([`Service::method_status`]).
    pub fn empty_as_no_content(mut self, yes: bool) -> Self {
        self.settings.empty_as_no_content = yes;
        self
    }

    /// Ends this gateway's open streams when `drain` starts (UNAVAILABLE, closed the way each
    /// transport closes), for a shutdown that leaves no stream hanging.
    pub fn drain_on(mut self, drain: &crate::Drain) -> Self {
        self.settings.drain = Some(drain.watch());
        self
    }

    /// Wraps the handling of every route in `layer` (auth, rate limits, CORS, limits, compression:
    /// any tower layer). It runs once the route is found, so [`RouteInfo::of`] tells it the
    /// binding; a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) reaches it
    /// routed to the binding of the method it asks about, and gets the gateway's 405 unless a
    /// layer answers it. Requests that match no route never reach the layers.
    ///
    /// Layers added first see the request first, as with `tower::ServiceBuilder` (the opposite
    /// of `axum::Router::layer`).
    pub fn route_layer<L, B>(mut self, layer: L) -> Self
    where
        L: Layer<RouteService> + Send + Sync + 'static,
        L::Service: tower::Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<http::Request<Body>>>::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<crate::BoxError>,
    {
        self.layers.push(Arc::new(move |inner: RouteService| {
            RouteService::new(
                layer
                    .layer(inner)
                    .map_response(|response| response.map(Body::new)),
            )
        }));
        self
    }

    /// The OpenAPI document `document` (protogate-build's, for the services added) as this
    /// gateway answers: each method's success status (a 204 without content), and the headers
    /// response metadata is mapped to. Operations are found by the `x-protogate-rpc` that
    /// protogate-build writes on each; anything else is left as it is. Unless the gateway
    /// serves [unbound routes](Gateway::unbound_methods), their operations (marked
    /// `x-protogate-unbound`) are taken out, with the paths and tags left with no operation;
    /// the schemas only they used stay in `components`, unreferenced.
    pub fn openapi(&self, document: &str) -> String {
        let described = self.describe_answers(document);
        if self.unbound_methods {
            described
        } else {
            crate::openapi::without_unbound(&described)
        }
    }

    /// `document` with each method's success status and mapped headers.
    fn describe_answers(&self, document: &str) -> String {
        let headers: Vec<(String, String)> = self
            .settings
            .headers
            .response_pairs()
            .map(|(key, header)| (canonical_header(header), key.to_owned()))
            .collect();
        crate::openapi::describe_answers(document, |rpc| {
            let status = self
                .answers
                .iter()
                .find(|(answering, ..)| *answering == rpc)
                .and_then(|&(_, own, empty)| {
                    own.or_else(|| {
                        (self.settings.empty_as_no_content && empty)
                            .then_some(http::StatusCode::NO_CONTENT)
                    })
                });
            crate::openapi::Answer {
                status,
                headers: headers.clone(),
            }
        })
    }

    /// Every binding served, in the order added: unbound routes only when the gateway serves
    /// them ([`Gateway::unbound_methods`]).
    pub fn routes(&self) -> Vec<&'static RouteInfo> {
        self.routes
            .iter()
            .copied()
            .filter(|route| self.unbound_methods || !route.unbound)
            .collect()
    }

    /// The gateway as an axum `Router`; merge it with other routes or serve it as is.
    pub fn into_router(self) -> axum::Router {
        let table = if self.unbound_methods {
            self.table
        } else {
            self.table.retain(|route| !route.info.unbound)
        };
        let inner = Arc::new(Inner {
            table,
            settings: Arc::new(self.settings),
        });
        // A service rather than a handler: axum keeps a handler boxed and turns it into a
        // service anew for every request (six allocations), a service it calls as it is.
        if self.layers.is_empty() {
            return axum::Router::new().fallback_service(tower::service_fn(
                move |request: http::Request<Body>| {
                    let inner = Arc::clone(&inner);
                    async move { Ok::<_, Infallible>(inner.dispatch(request).await) }
                },
            ));
        }
        let handle = {
            let inner = Arc::clone(&inner);
            RouteService::new(tower::service_fn(move |request| {
                let inner = Arc::clone(&inner);
                async move { Ok::<_, Infallible>(inner.handle(request).await) }
            }))
        };
        let layered = self
            .layers
            .iter()
            .rev()
            .fold(handle, |service, wrap| wrap(service));
        axum::Router::new().fallback_service(tower::service_fn(
            move |request: http::Request<Body>| {
                let (inner, layered) = (Arc::clone(&inner), layered.clone());
                async move { Ok::<_, Infallible>(inner.route(request, layered).await) }
            },
        ))
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

/// What the route lookup hands the route layers' innermost service, in the request's
/// extensions.
#[derive(Clone)]
struct Routed {
    handler: Handler,
    captures: crate::route::Captures,
    deadlines: Deadlines,
    success: Option<http::StatusCode>,
    /// A CORS preflight no layer answered.
    preflight: bool,
}

impl Inner {
    /// The route for a request. A WebSocket upgrade (always a GET) reaches the streaming RPC
    /// bound to its path under any standard method, before a unary GET binding whose template
    /// happens to match too: a POST binding of a bidi RPC is one URL for HTTP and WebSocket.
    fn find(&self, request: &http::Request<Body>) -> Lookup<'_, Route> {
        let path = request.uri().path();
        if request.method() == http::Method::GET && crate::metadata::is_upgrade(request.headers()) {
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

    /// The answer for a request that matches no route (`lookup` is not `Found`).
    fn unrouted(&self, request: &http::Request<Body>, lookup: Lookup<'_, Route>) -> Response {
        let error = match lookup {
            Lookup::MethodNotAllowed { allow } => GatewayError::MethodNotAllowed {
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
                allow,
            },
            Lookup::BadPath(message) => GatewayError::BadPath(message),
            Lookup::NotFound | Lookup::Found { .. } => GatewayError::NotFound {
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
            },
        };
        error.into_response(self.settings.registry)
    }

    /// Serves a request without route layers: lookup, then the handler.
    async fn dispatch(&self, request: http::Request<Body>) -> Response {
        match self.find(&request) {
            Lookup::Found { value, captures } => {
                crate::observe::routed(&request, value.info);
                let routed = Routed {
                    handler: Arc::clone(&value.handler),
                    captures,
                    deadlines: self.deadlines(value),
                    success: success(&self.settings, value),
                    preflight: false,
                };
                self.call(routed, request).await
            }
            lookup => self.unrouted(&request, lookup),
        }
    }

    /// Serves a request through the route layers: lookup, then `layered` with the route in the
    /// request's extensions.
    async fn route(&self, mut request: http::Request<Body>, layered: RouteService) -> Response {
        let path = request.uri().path();
        let lookup = match preflight_method(&request) {
            // A preflight about a method no binding serves here is the OPTIONS request it is.
            Some(asked) => match self.table.find(&asked, path) {
                found @ Lookup::Found { .. } => found,
                _ => self.table.find(&http::Method::OPTIONS, path),
            },
            None => self.find(&request),
        };
        let Lookup::Found { value, captures } = lookup else {
            return self.unrouted(&request, lookup);
        };
        value.info.mark(self.settings.registry, &mut request);
        crate::observe::routed(&request, value.info);
        let routed = Routed {
            handler: Arc::clone(&value.handler),
            captures,
            deadlines: self.deadlines(value),
            success: success(&self.settings, value),
            preflight: request.method() == http::Method::OPTIONS,
        };
        request.extensions_mut().insert(routed);
        match layered.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// The innermost service of the route layers: the handler of the route `route` found.
    async fn handle(&self, mut request: http::Request<Body>) -> Response {
        match request.extensions_mut().remove::<Routed>() {
            Some(routed) if !routed.preflight => self.call(routed, request).await,
            // A preflight no layer answered, or a layer that dropped the route: answered as if
            // there were no layers.
            _ => {
                let lookup = self.table.find(request.method(), request.uri().path());
                self.unrouted(&request, lookup)
            }
        }
    }

    /// A route's deadline rules with the gateway's under them.
    fn deadlines(&self, route: &Route) -> Deadlines {
        route.deadlines.or(self.settings.deadlines)
    }

    async fn call(&self, routed: Routed, request: http::Request<Body>) -> Response {
        let call = Call {
            request,
            captures: routed.captures,
            settings: Arc::clone(&self.settings),
            deadlines: routed.deadlines,
            success: routed.success,
        };
        match (routed.handler)(call).await {
            Ok(response) => response,
            Err(error) => error.into_response(self.settings.registry),
        }
    }
}

/// The status of a route's successful answers, when not 200: its method's own, or 204 for an
/// answer of `google.protobuf.Empty` when the gateway says so.
fn success(settings: &Settings, route: &Route) -> Option<http::StatusCode> {
    route.success.or_else(|| {
        (settings.empty_as_no_content && route.answers_empty)
            .then_some(http::StatusCode::NO_CONTENT)
    })
}

/// A header name as documents usually spell it: `location` → `Location`.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The method a CORS preflight asks about: an `OPTIONS` request with a valid
/// `Access-Control-Request-Method`.
fn preflight_method(request: &http::Request<Body>) -> Option<http::Method> {
    if request.method() != http::Method::OPTIONS {
        return None;
    }
    let asked = request
        .headers()
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?;
    http::Method::from_bytes(asked.as_bytes()).ok()
}
