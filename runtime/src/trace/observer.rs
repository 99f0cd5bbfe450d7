//! The tracer as an observer of requests ([`crate::observe`]): it decides when a request starts
//! whether it is traced, gives its upstream call a `traceparent`, and when the request ends
//! builds its server span, and the client span of its upstream call, from what the request's
//! [`Scope`] recorded. A request that is not sampled builds nothing.

use std::any::Any;
use std::borrow::Cow;
use std::time::{Instant, SystemTime};

use tonic::Code;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use super::span::{SpanKind, SpanRecord, SpanStatus, Value, attr};
use super::{Recording, RequestTrace, Tracer};
use crate::observe::{Observer, Scope, code_name};
use crate::trace_context::{TRACEPARENT, TRACESTATE};

/// What the tracer keeps of a request it traces.
struct Traced {
    trace: RequestTrace,
    /// The request's path, for a recorded span.
    path: Option<Box<str>>,
}

impl Observer for Tracer {
    fn on_start(
        &self,
        _: &Scope,
        request: &http::request::Parts,
    ) -> Option<Box<dyn Any + Send + Sync>> {
        let trace = self.begin(&request.headers)?;
        let path = matches!(trace, RequestTrace::Recording(_)).then(|| request.uri.path().into());
        Some(Box::new(Traced { trace, path }))
    }

    fn on_upstream(&self, scope: &Scope, metadata: &mut MetadataMap) {
        let Some(traced) = scope.state::<Traced>() else {
            return;
        };
        let (parent, state) = traced.trace.outgoing();
        if let Ok(mut value) = AsciiMetadataValue::try_from(parent.to_header().as_bytes()) {
            // Unique per request: never indexed (see `observe::unique_per_request`).
            value.set_sensitive(true);
            metadata.insert(TRACEPARENT, value);
        }
        match state.and_then(|state| AsciiMetadataValue::try_from(state.as_str()).ok()) {
            Some(value) => {
                metadata.insert(TRACESTATE, value);
            }
            None => {
                metadata.remove(TRACESTATE);
            }
        }
    }

    fn on_end(&self, scope: &Scope) {
        let Some(Traced {
            trace: RequestTrace::Recording(recording),
            path,
        }) = scope.state::<Traced>()
        else {
            return;
        };
        let clock = Clock::of(scope);
        if let Some(started) = scope.upstream_started() {
            let ended = scope.upstream_ended().unwrap_or(clock.ended);
            self.record(client_span(
                scope,
                recording,
                clock.at(started),
                clock.at(ended),
            ));
        }
        self.record(server_span(scope, recording, path.as_deref(), &clock));
    }
}

/// A request's monotonic instants placed on the wall clock, from when it started.
struct Clock {
    started: Instant,
    started_at: SystemTime,
    ended: Instant,
}

impl Clock {
    fn of(scope: &Scope) -> Clock {
        let started = scope.started();
        let ended = match scope.duration() {
            Some(duration) => started + duration,
            None => Instant::now(),
        };
        Clock {
            started,
            started_at: scope.started_at(),
            ended,
        }
    }

    fn at(&self, instant: Instant) -> SystemTime {
        self.started_at + instant.saturating_duration_since(self.started)
    }
}

/// `package.Service.Method` as (`package.Service`, `Method`).
fn split_rpc(rpc: &'static str) -> (&'static str, &'static str) {
    rpc.rsplit_once('.').unwrap_or(("", rpc))
}

/// The HTTP method's name as the HTTP conventions write it: a standard method by its name,
/// any other as `_OTHER` (the name itself then goes in `http.request.method_original`).
fn method_name(method: &http::Method) -> Option<&'static str> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .iter()
        .find(|name| **name == method.as_str())
        .copied()
}

/// Whether `code` says the server failed (the codes OpenTelemetry's gRPC conventions mark as
/// errors for a server span).
fn server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

fn span(recording: &Recording, kind: SpanKind, name: Cow<'static, str>) -> SpanRecord {
    let (span_id, parent, remote_parent) = match kind {
        SpanKind::Server => (
            recording.server,
            recording.parent,
            recording.parent.is_some(),
        ),
        SpanKind::Client => (recording.client, Some(recording.server), false),
    };
    SpanRecord {
        name,
        trace_id: recording.trace_id,
        span_id,
        parent,
        remote_parent,
        state: recording.state.clone(),
        kind,
        start: SystemTime::UNIX_EPOCH,
        end: SystemTime::UNIX_EPOCH,
        attributes: Vec::with_capacity(11),
        status: SpanStatus::Unset,
    }
}

fn server_span(
    scope: &Scope,
    recording: &Recording,
    path: Option<&str>,
    clock: &Clock,
) -> SpanRecord {
    let route = scope.route();
    let name = match route {
        Some(route) => Cow::Owned(format!("{} {}", route.method, route.template.text)),
        None => Cow::Borrowed(method_name(scope.method()).unwrap_or("HTTP")),
    };
    let mut span = span(recording, SpanKind::Server, name);
    span.start = clock.started_at;
    span.end = clock.at(clock.ended);
    let attributes = &mut span.attributes;
    match method_name(scope.method()) {
        Some(name) => attributes.push((attr::HTTP_REQUEST_METHOD, Value::from(name))),
        None => {
            attributes.push((attr::HTTP_REQUEST_METHOD, Value::from("_OTHER")));
            let original = scope.method().as_str().to_owned();
            attributes.push((attr::HTTP_REQUEST_METHOD_ORIGINAL, Value::from(original)));
        }
    }
    if let Some(path) = path {
        attributes.push((attr::URL_PATH, Value::from(path.to_owned())));
    }
    if let Some(route) = route {
        let (service, method) = split_rpc(route.rpc);
        attributes.push((attr::HTTP_ROUTE, Value::from(route.template.text)));
        attributes.push((attr::RPC_SYSTEM, Value::from("grpc")));
        attributes.push((attr::RPC_SERVICE, Value::from(service)));
        attributes.push((attr::RPC_METHOD, Value::from(method)));
    }
    let status = scope.status();
    if let Some(status) = status {
        attributes.push((
            attr::HTTP_RESPONSE_STATUS_CODE,
            Value::Int(i64::from(status.as_u16())),
        ));
    }
    let code = scope.code();
    if let Some(code) = code {
        attributes.push((attr::RPC_GRPC_STATUS_CODE, Value::Int(code as i64)));
    }
    if let Some(target) = scope.upstream() {
        attributes.push((
            attr::PROTOGATE_UPSTREAM,
            Value::from(target.upstream.to_string()),
        ));
        attributes.push((
            attr::PROTOGATE_UPSTREAM_ENDPOINT,
            Value::from(target.endpoint.to_string()),
        ));
    }
    if let Some(status) = status.filter(|status| status.is_server_error()) {
        span.status = SpanStatus::Error(status.to_string());
    } else if let Some(code) = code.filter(|code| server_error(*code)) {
        span.status = SpanStatus::Error(code_name(code).to_owned());
    }
    span
}

fn client_span(
    scope: &Scope,
    recording: &Recording,
    start: SystemTime,
    end: SystemTime,
) -> SpanRecord {
    let rpc = scope.route().map(|route| split_rpc(route.rpc));
    let name = match rpc {
        Some((service, method)) => Cow::Owned(format!("{service}/{method}")),
        None => Cow::Borrowed("grpc"),
    };
    let mut span = span(recording, SpanKind::Client, name);
    span.start = start;
    span.end = end;
    let attributes = &mut span.attributes;
    attributes.push((attr::RPC_SYSTEM, Value::from("grpc")));
    if let Some((service, method)) = rpc {
        attributes.push((attr::RPC_SERVICE, Value::from(service)));
        attributes.push((attr::RPC_METHOD, Value::from(method)));
    }
    if let Some(target) = scope.upstream() {
        let (address, port) = split_endpoint(&target.endpoint);
        attributes.push((attr::SERVER_ADDRESS, Value::from(address.to_owned())));
        if let Some(port) = port {
            attributes.push((attr::SERVER_PORT, Value::Int(i64::from(port))));
        }
        attributes.push((
            attr::PROTOGATE_UPSTREAM,
            Value::from(target.upstream.to_string()),
        ));
    }
    if let Some(code) = scope.code() {
        attributes.push((attr::RPC_GRPC_STATUS_CODE, Value::Int(code as i64)));
        if code != Code::Ok {
            span.status = SpanStatus::Error(code_name(code).to_owned());
        }
    }
    span
}

/// `host:port`, `[v6]:port` or a socket path as the address and the port.
fn split_endpoint(endpoint: &str) -> (&str, Option<u16>) {
    if let Some(rest) = endpoint.strip_prefix('[')
        && let Some((host, port)) = rest.split_once("]:")
    {
        return (host, port.parse().ok());
    }
    match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (endpoint, None),
        },
        _ => (endpoint, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use tower::{Layer as _, ServiceExt as _};

    use crate::call::RouteInfo;
    use crate::observe::{ObserveLayer, UpstreamTarget};
    use crate::route::Template;
    use crate::trace::export::SpanSink;
    use crate::trace::sampler::Sampler;
    use crate::trace_context::{TraceId, TraceParent};

    static ROUTE: RouteInfo = RouteInfo {
        method: "GET",
        rpc: "acme.shelf.v1.Shelves.GetShelf",
        template: Template {
            text: "/v1/{name=shelves/*}",
            segments: &[],
            verb: None,
            vars: &[],
        },
        unbound: false,
    };

    /// A gateway stand-in behind the observe layer: routes to [`ROUTE`], makes its upstream
    /// call (writing the metadata the upstream would get, kept in `sent`), and answers 503 for
    /// `/fail`, 200 otherwise.
    async fn serve(
        tracer: Tracer,
        request: http::Request<Body>,
        sent: Arc<Mutex<Vec<MetadataMap>>>,
    ) -> http::Response<Body> {
        let app = tower::service_fn(move |request: http::Request<Body>| {
            let sent = Arc::clone(&sent);
            async move {
                let scope = Arc::clone(Scope::of(&request).expect("a scope"));
                scope.set_route(&ROUTE);
                let mut metadata = MetadataMap::new();
                scope.write_upstream_metadata(&mut metadata);
                scope.set_upstream(UpstreamTarget {
                    upstream: "shelves".into(),
                    endpoint: "10.0.0.7:50051".into(),
                });
                scope.upstream_done();
                sent.lock().expect("not poisoned").push(metadata);
                let response = if request.uri().path() == "/fail" {
                    crate::status::status_response(
                        &tonic::Status::unavailable("down"),
                        None,
                        &crate::json::Registry::EMPTY,
                    )
                } else {
                    http::Response::new(Body::from("{}"))
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let service = ObserveLayer::new().observer(tracer).layer(app);
        let response = service.oneshot(request).await.expect("answered");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("a body").to_bytes();
        http::Response::from_parts(parts, Body::from(body))
    }

    fn tracer(sampler: Sampler) -> (Tracer, tokio::sync::mpsc::Receiver<SpanRecord>) {
        let (sink, spans) = SpanSink::for_test(16);
        (Tracer { sampler, sink }, spans)
    }

    fn text(value: Option<&Value>) -> Option<String> {
        value.map(|value| match value {
            Value::Str(text) => text.to_string(),
            Value::Int(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
        })
    }

    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[tokio::test]
    async fn a_sampled_request_makes_a_server_span_and_a_client_span_the_upstream_hears_of() {
        let (tracer, mut spans) = tracer(Sampler::never());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let request = http::Request::get("/fail")
            .header(TRACEPARENT, SAMPLED)
            .header(TRACESTATE, "congo=t61")
            .body(Body::empty())
            .expect("a request");
        let response = serve(tracer, request, Arc::clone(&sent)).await;
        assert_eq!(response.status(), 503);

        let client = spans.try_recv().expect("a client span");
        let server = spans.try_recv().expect("a server span");
        assert!(spans.try_recv().is_err());
        let metadata = sent.lock().expect("not poisoned").remove(0);
        let parent = metadata.get(TRACEPARENT).expect("a traceparent");
        assert!(
            parent.is_sensitive(),
            "one request's own: never indexed by HTTP/2"
        );
        let parent = TraceParent::parse(parent.as_encoded_bytes()).expect("valid");
        assert_eq!(parent.span_id, client.span_id, "the upstream's parent");
        assert!(parent.sampled);
        assert_eq!(
            metadata.get(TRACESTATE).map(|v| v.as_encoded_bytes()),
            Some(&b"congo=t61"[..])
        );

        assert_eq!(
            server.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(client.trace_id, server.trace_id);
        assert_eq!(
            server.parent.map(|p| p.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(server.remote_parent);
        assert_eq!(client.parent, Some(server.span_id));
        assert_eq!(
            (server.kind, client.kind),
            (SpanKind::Server, SpanKind::Client)
        );
        assert_eq!(server.name, "GET /v1/{name=shelves/*}");
        assert_eq!(client.name, "acme.shelf.v1.Shelves/GetShelf");
        let server_attr = |key| text(server.attribute(key));
        assert_eq!(
            server_attr(attr::HTTP_REQUEST_METHOD).as_deref(),
            Some("GET")
        );
        assert_eq!(
            server_attr(attr::HTTP_ROUTE).as_deref(),
            Some("/v1/{name=shelves/*}")
        );
        assert_eq!(server_attr(attr::URL_PATH).as_deref(), Some("/fail"));
        assert_eq!(
            server_attr(attr::HTTP_RESPONSE_STATUS_CODE).as_deref(),
            Some("503")
        );
        assert_eq!(
            server_attr(attr::RPC_GRPC_STATUS_CODE).as_deref(),
            Some("14")
        );
        assert_eq!(
            server_attr(attr::RPC_SERVICE).as_deref(),
            Some("acme.shelf.v1.Shelves")
        );
        assert_eq!(server_attr(attr::RPC_METHOD).as_deref(), Some("GetShelf"));
        assert_eq!(
            server_attr(attr::PROTOGATE_UPSTREAM).as_deref(),
            Some("shelves")
        );
        assert_eq!(
            server_attr(attr::PROTOGATE_UPSTREAM_ENDPOINT).as_deref(),
            Some("10.0.0.7:50051")
        );
        assert_eq!(
            server.status,
            SpanStatus::Error("503 Service Unavailable".into())
        );
        let client_attr = |key| text(client.attribute(key));
        assert_eq!(client_attr(attr::RPC_SYSTEM).as_deref(), Some("grpc"));
        assert_eq!(
            client_attr(attr::RPC_SERVICE).as_deref(),
            Some("acme.shelf.v1.Shelves")
        );
        assert_eq!(client_attr(attr::RPC_METHOD).as_deref(), Some("GetShelf"));
        assert_eq!(
            client_attr(attr::SERVER_ADDRESS).as_deref(),
            Some("10.0.0.7")
        );
        assert_eq!(client_attr(attr::SERVER_PORT).as_deref(), Some("50051"));
        assert_eq!(
            client_attr(attr::RPC_GRPC_STATUS_CODE).as_deref(),
            Some("14")
        );
        assert_eq!(client.status, SpanStatus::Error("UNAVAILABLE".into()));
        assert!(server.start <= client.start && client.start <= client.end);
        assert!(client.end <= server.end);
    }

    #[tokio::test]
    async fn a_new_trace_starts_when_sampled_and_its_spans_succeed() {
        let (tracer, mut spans) = tracer(Sampler::always());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let request = http::Request::get("/ok")
            .body(Body::empty())
            .expect("a request");
        let response = serve(tracer, request, Arc::clone(&sent)).await;
        assert_eq!(response.status(), 200);
        let client = spans.try_recv().expect("a client span");
        let server = spans.try_recv().expect("a server span");
        assert_eq!((server.parent, server.remote_parent), (None, false));
        assert_eq!(
            (server.status.clone(), client.status),
            (SpanStatus::Unset, SpanStatus::Unset)
        );
        let metadata = sent.lock().expect("not poisoned").remove(0);
        assert!(metadata.get(TRACESTATE).is_none());
        let parent = metadata.get(TRACEPARENT).expect("a traceparent");
        let parent = TraceParent::parse(parent.as_encoded_bytes()).expect("valid");
        assert_eq!(parent.trace_id, server.trace_id);
        assert_ne!(
            parent.trace_id,
            TraceId::from_bytes([1; 16]).expect("an id")
        );
    }

    #[tokio::test]
    async fn a_request_no_route_took_is_a_server_span_alone_named_by_its_method() {
        let (tracer, mut spans) = tracer(Sampler::always());
        let app = tower::service_fn(|_: http::Request<Body>| async {
            let mut response = http::Response::new(Body::empty());
            *response.status_mut() = http::StatusCode::NOT_FOUND;
            Ok::<_, std::convert::Infallible>(response)
        });
        let service = ObserveLayer::new().observer(tracer).layer(app);
        let request = http::Request::builder()
            .method(http::Method::from_bytes(b"PROPFIND").expect("a method"))
            .uri("/nowhere")
            .body(Body::empty())
            .expect("a request");
        let response = service.oneshot(request).await.expect("answered");
        drop(response.into_body().collect().await.expect("a body"));
        let server = spans.try_recv().expect("a server span");
        assert!(spans.try_recv().is_err(), "no call, no client span");
        assert_eq!(server.name, "HTTP");
        assert_eq!(
            text(server.attribute(attr::HTTP_REQUEST_METHOD)).as_deref(),
            Some("_OTHER")
        );
        assert_eq!(
            text(server.attribute(attr::HTTP_REQUEST_METHOD_ORIGINAL)).as_deref(),
            Some("PROPFIND")
        );
        assert_eq!(
            text(server.attribute(attr::HTTP_RESPONSE_STATUS_CODE)).as_deref(),
            Some("404")
        );
        assert_eq!(server.attribute(attr::HTTP_ROUTE), None);
        assert_eq!(server.status, SpanStatus::Unset, "a 404 is the client's");
    }

    #[tokio::test]
    async fn an_unsampled_request_makes_no_span_and_passes_the_callers_context_on() {
        let (always, mut spans) = tracer(Sampler::always());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let request = http::Request::get("/ok")
            .header(TRACEPARENT, unsampled)
            .body(Body::empty())
            .expect("a request");
        serve(always, request, Arc::clone(&sent)).await;
        assert!(spans.try_recv().is_err(), "no span");
        let metadata = sent.lock().expect("not poisoned").remove(0);
        let parent = metadata.get(TRACEPARENT).expect("a traceparent");
        assert_eq!(parent.as_encoded_bytes(), unsampled.as_bytes());

        let (never, mut spans) = tracer(Sampler::never());
        let request = http::Request::get("/ok")
            .body(Body::empty())
            .expect("a request");
        serve(never, request, Arc::clone(&sent)).await;
        assert!(spans.try_recv().is_err(), "no span");
        let metadata = sent.lock().expect("not poisoned").remove(0);
        assert!(metadata.get(TRACEPARENT).is_none(), "nothing to pass on");
    }

    fn between(earlier: SystemTime, later: SystemTime) -> Duration {
        later.duration_since(earlier).unwrap_or_default()
    }

    #[test]
    fn endpoints_split_into_address_and_port() {
        assert_eq!(split_endpoint("10.0.0.7:50051"), ("10.0.0.7", Some(50051)));
        assert_eq!(split_endpoint("[::1]:8443"), ("::1", Some(8443)));
        assert_eq!(
            split_endpoint("library.internal:80"),
            ("library.internal", Some(80))
        );
        assert_eq!(
            split_endpoint("/run/library.sock"),
            ("/run/library.sock", None)
        );
        assert_eq!(split_endpoint("::1"), ("::1", None));
    }

    #[test]
    fn rpcs_split_into_service_and_method() {
        assert_eq!(
            split_rpc("protogate.demo.v1.LibraryService.GetShelf"),
            ("protogate.demo.v1.LibraryService", "GetShelf")
        );
        assert_eq!(method_name(&http::Method::GET), Some("GET"));
        let custom = http::Method::from_bytes(b"PROPFIND").expect("a method");
        assert_eq!(method_name(&custom), None);
        assert!(server_error(Code::Unavailable) && !server_error(Code::NotFound));
    }

    #[test]
    fn instants_are_placed_on_the_wall_clock() {
        let started = Instant::now();
        let started_at = SystemTime::now();
        let clock = Clock {
            started,
            started_at,
            ended: started + Duration::from_millis(30),
        };
        let at = clock.at(started + Duration::from_millis(10));
        assert_eq!(between(started_at, at), Duration::from_millis(10));
        assert_eq!(clock.at(started), started_at);
    }
}
