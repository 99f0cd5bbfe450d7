//! Traces: the runtime's OTLP exporter against a real OTLP/gRPC collector on 127.0.0.1 (batches
//! by size and by interval, the queue flushed at shutdown, failures counted), and the stock
//! gateway's `[tracing]` through the real binary, in front of a tonic backend that records the
//! trace context it is sent.

#[path = "support/otlp.rs"]
mod otlp;
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::Span;
use support::library::{Book, GetShelfRequest, Shelf, StreamBooksRequest};

use protogate::trace::{
    OtlpExporter, Sampler, SpanId, SpanKind, SpanRecord, SpanStatus, TraceId, Tracer, attr,
};

/// `count` finished server spans, each a trace of its own.
fn finish_spans(tracer: &Tracer, count: usize) {
    for i in 0..count {
        let now = std::time::SystemTime::now();
        tracer.record(SpanRecord {
            name: format!("span {i}").into(),
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent: None,
            remote_parent: false,
            state: None,
            kind: SpanKind::Server,
            start: now,
            end: now,
            attributes: vec![(attr::HTTP_REQUEST_METHOD, "GET".into())],
            status: SpanStatus::Unset,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_out_in_batches_by_size_and_the_rest_at_shutdown() {
    let collector = otlp::Collector::start().await;
    let upstream = protogate::Upstream::lazy(&collector.endpoint()).expect("upstream");
    let exporter = OtlpExporter::builder(upstream)
        .service_name("traces-test")
        .batch_size(3)
        .interval(Duration::from_secs(3600))
        .start()
        .expect("started");
    let tracer = Tracer::new(Sampler::always(), &exporter);
    finish_spans(&tracer, 7);
    let first = collector.wait_for(6, Duration::from_secs(20)).await;
    assert_eq!(first.len(), 6, "two full batches, the seventh waits");
    assert_eq!(collector.batches(), vec![3, 3]);

    let stats = tokio::task::spawn_blocking(move || exporter.shutdown(Duration::from_secs(20)))
        .await
        .expect("no panic");
    assert_eq!(collector.batches(), vec![3, 3, 1], "flushed at shutdown");
    assert_eq!((stats.exported, stats.dropped, stats.failed), (7, 0, 0));
    assert_eq!(collector.services(), vec!["traces-test"; 3]);
    let names: Vec<String> = collector.spans().into_iter().map(|s| s.name).collect();
    let expected: Vec<String> = (0..7).map(|i| format!("span {i}")).collect();
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_never_larger_than_the_queue() {
    let collector = otlp::Collector::start().await;
    let upstream = protogate::Upstream::lazy(&collector.endpoint()).expect("upstream");
    let exporter = OtlpExporter::builder(upstream)
        .batch_size(100)
        .queue_size(4)
        .interval(Duration::from_secs(3600))
        .start()
        .expect("started");
    let tracer = Tracer::new(Sampler::always(), &exporter);
    finish_spans(&tracer, 4);
    let spans = collector.wait_for(4, Duration::from_secs(20)).await;
    assert_eq!(spans.len(), 4, "a full queue is a full batch");
    assert_eq!(collector.batches(), vec![4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_does_not_fill_goes_out_after_the_interval() {
    let collector = otlp::Collector::start().await;
    let upstream = protogate::Upstream::lazy(&collector.endpoint()).expect("upstream");
    let exporter = OtlpExporter::builder(upstream)
        .batch_size(100)
        .interval(Duration::from_millis(100))
        .start()
        .expect("started");
    let tracer = Tracer::new(Sampler::always(), &exporter);
    finish_spans(&tracer, 2);
    let spans = collector.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(spans.len(), 2);
    let stats = tokio::task::spawn_blocking(move || exporter.shutdown(Duration::from_secs(20)))
        .await
        .expect("no panic");
    assert_eq!(stats.exported, 2);
    let span = &spans[0];
    assert_eq!(span.trace_id.len(), 16);
    assert_eq!(span.span_id.len(), 8);
    assert!(span.parent_span_id.is_empty(), "a root");
    assert_eq!(
        otlp::attribute(span, "http.request.method").as_deref(),
        Some("GET")
    );
    assert!(span.start_time_unix_nano <= span.end_time_unix_nano);
    assert!(span.start_time_unix_nano > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_a_collector_never_takes_are_counted_as_failed() {
    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let upstream = protogate::Upstream::builder("otlp")
        .endpoint(format!("http://{address}"))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("upstream");
    let exporter = OtlpExporter::builder(upstream)
        .batch_size(2)
        .export_timeout(Duration::from_secs(5))
        .start()
        .expect("started");
    let tracer = Tracer::new(Sampler::always(), &exporter);
    finish_spans(&tracer, 3);
    let stats = tokio::task::spawn_blocking(move || exporter.shutdown(Duration::from_secs(30)))
        .await
        .expect("no panic");
    assert_eq!((stats.exported, stats.failed), (0, 3));
}

/// The `traceparent` and `tracestate` a backend call carried, by gRPC path.
#[derive(Clone, Debug)]
struct Sent {
    path: String,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

type Calls = Arc<Mutex<Vec<Sent>>>;

/// The demo library's `GetShelf` (the shelf named back, theme `traced`) and `StreamBooks` (two
/// books, then the end) as a tonic backend that keeps the trace context of every call.
async fn recording_library() -> (SocketAddr, Calls) {
    let calls = Calls::default();
    let kept = Arc::clone(&calls);
    let router = axum::Router::new().fallback(move |request: http::Request<axum::body::Body>| {
        let kept = Arc::clone(&kept);
        async move {
            // Read before any await: the request's body is not `Sync`.
            let call = {
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned)
                };
                Sent {
                    path: request.uri().path().to_owned(),
                    traceparent: header("traceparent"),
                    tracestate: header("tracestate"),
                }
            };
            let path = call.path.clone();
            kept.lock().expect("not poisoned").push(call);
            match path.as_str() {
                "/protogate.demo.v1.LibraryService/GetShelf" => {
                    let codec = tonic_prost::ProstCodec::<Shelf, GetShelfRequest>::default();
                    let shelf =
                        tower::service_fn(|request: tonic::Request<GetShelfRequest>| async {
                            let name = request.into_inner().name;
                            let theme = "traced".to_owned();
                            Ok::<_, tonic::Status>(tonic::Response::new(Shelf { name, theme }))
                        });
                    tonic::server::Grpc::new(codec).unary(shelf, request).await
                }
                "/protogate.demo.v1.LibraryService/StreamBooks" => {
                    let codec = tonic_prost::ProstCodec::<Book, StreamBooksRequest>::default();
                    let books =
                        tower::service_fn(|request: tonic::Request<StreamBooksRequest>| async {
                            let parent = request.into_inner().parent;
                            let books = ["one", "two"].map(|id| {
                                Ok(Book {
                                    name: format!("{parent}/books/{id}"),
                                    title: id.to_owned(),
                                })
                            });
                            let stream = futures_util::stream::iter(books);
                            Ok::<_, tonic::Status>(tonic::Response::new(stream))
                        });
                    tonic::server::Grpc::new(codec)
                        .server_streaming(books, request)
                        .await
                }
                other => {
                    tonic::Status::unimplemented(other.to_owned()).into_http::<tonic::body::Body>()
                }
            }
        }
    });
    (support::serve_grpc(router).await, calls)
}

fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("traces-tests");
    std::fs::create_dir_all(&dir).expect("directory");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("written");
    path
}

/// The stock gateway in front of `backend`, exporting to `collector` with `tracing` (more keys
/// of the `[tracing]` section).
fn gateway(
    name: &str,
    backend: SocketAddr,
    collector: &otlp::Collector,
    tracing: &str,
) -> support::Administered {
    let text = format!(
        "[defaults]\nupstream = \"library\"\n\n[upstreams.library]\nendpoints = [\"http://{backend}\"]\n\n[tracing]\nendpoint = \"{}\"\nservice_name = \"traces-e2e\"\n{tracing}",
        collector.endpoint()
    );
    let config = config_file(name, &text);
    support::start_with_admin(&["--config", config.to_str().expect("UTF-8")])
}

/// The exporter's counters as `/metrics` on `admin` shows them (exported, dropped, failed),
/// once `exported` spans are counted (or after 10 s).
async fn exporter_counts(admin: &str, exported: u64) -> [u64; 3] {
    let started = std::time::Instant::now();
    loop {
        let text = reqwest::get(format!("{admin}/metrics"))
            .await
            .expect("scraped")
            .text()
            .await
            .expect("text");
        let read = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("protogate_trace_spans_{name}_total ")))
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{name} in\n{text}"))
        };
        let counts = [read("exported"), read("dropped"), read("failed")];
        if counts[0] >= exported || started.elapsed() > Duration::from_secs(10) {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The spans of trace `trace_id` (hex): its server span and its client span.
fn server_and_client(spans: &[Span], trace_id: &str) -> (Span, Span) {
    let of_trace: Vec<&Span> = spans
        .iter()
        .filter(|span| otlp::hex(&span.trace_id) == trace_id)
        .collect();
    assert_eq!(
        of_trace.len(),
        2,
        "two spans in trace {trace_id}: {of_trace:#?}"
    );
    let kind = |kind: i32| {
        of_trace
            .iter()
            .find(|span| span.kind == kind)
            .map(|span| (*span).clone())
            .expect("a span of that kind")
    };
    (kind(2), kind(3))
}

/// What the backend was sent for the call at `index`.
fn sent(calls: &Calls, index: usize) -> Sent {
    calls.lock().expect("not poisoned")[index].clone()
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_continues_traces_and_the_backend_joins_them() {
    let collector = otlp::Collector::start().await;
    let (backend, calls) = recording_library().await;
    let mut gateway = gateway(
        "sampled.toml",
        backend,
        &collector,
        "sample_ratio = 1.0\nbatch_interval = \"50ms\"\n",
    );
    let client = reqwest::Client::new();

    // A caller's sampled trace, with its tracestate.
    let answer = client
        .get(format!("{}/demo/v1/shelves/7", gateway.base))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .header("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200);
    let shelf: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(shelf["theme"], "traced");
    let spans = collector.wait_for(2, Duration::from_secs(20)).await;
    let (server, client_span) = server_and_client(&spans, CALLER_TRACE);
    assert_eq!(
        otlp::hex(&server.parent_span_id),
        CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(server.parent_span_id.len(), 8);
    assert_eq!(
        client_span.parent_span_id, server.span_id,
        "the call is a child of the request"
    );
    assert_eq!(
        server.trace_state,
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    );
    assert_eq!(server.name, "GET /demo/v1/{name=shelves/*}");
    assert_eq!(
        client_span.name,
        "protogate.demo.v1.LibraryService/GetShelf"
    );
    let server_attr = |key| otlp::attribute(&server, key);
    assert_eq!(server_attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        server_attr("http.route").as_deref(),
        Some("/demo/v1/{name=shelves/*}")
    );
    assert_eq!(
        server_attr("url.path").as_deref(),
        Some("/demo/v1/shelves/7")
    );
    assert_eq!(
        server_attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(server_attr("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(
        server_attr("rpc.service").as_deref(),
        Some("protogate.demo.v1.LibraryService")
    );
    assert_eq!(server_attr("rpc.method").as_deref(), Some("GetShelf"));
    assert_eq!(
        server_attr("protogate.upstream").as_deref(),
        Some("library")
    );
    assert_eq!(
        server_attr("protogate.upstream.endpoint"),
        Some(backend.to_string())
    );
    let client_attr = |key| otlp::attribute(&client_span, key);
    assert_eq!(client_attr("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        client_attr("rpc.service").as_deref(),
        Some("protogate.demo.v1.LibraryService")
    );
    assert_eq!(client_attr("rpc.method").as_deref(), Some("GetShelf"));
    assert_eq!(client_attr("server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(client_attr("server.port"), Some(backend.port().to_string()));
    assert_eq!(client_attr("rpc.grpc.status_code").as_deref(), Some("0"));
    assert!(
        server.status.is_none() && client_span.status.is_none(),
        "no error"
    );
    assert!(server.start_time_unix_nano <= client_span.start_time_unix_nano);
    assert!(client_span.end_time_unix_nano <= server.end_time_unix_nano);
    assert_eq!(collector.services()[0], "traces-e2e");
    let first = sent(&calls, 0);
    assert_eq!(
        first.traceparent,
        Some(format!(
            "00-{CALLER_TRACE}-{}-01",
            otlp::hex(&client_span.span_id)
        )),
        "the backend's parent is the client span"
    );
    assert_eq!(
        first.tracestate.as_deref(),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );

    // No caller context: a new trace, whose root is the gateway's server span.
    let answer = client
        .get(format!("{}/demo/v1/shelves/8", gateway.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200);
    let second = sent(&calls, 1);
    let traceparent = second.traceparent.expect("a traceparent for the backend");
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!((fields[0], fields[3]), ("00", "01"), "{traceparent}");
    assert_eq!(second.tracestate, None);
    let spans = collector.wait_for(4, Duration::from_secs(20)).await;
    let (server, client_span) = server_and_client(&spans, fields[1]);
    assert!(server.parent_span_id.is_empty(), "a root span");
    assert_eq!(client_span.parent_span_id, server.span_id);
    assert_eq!(otlp::hex(&client_span.span_id), fields[2]);

    // A server stream: its spans last until the stream ends.
    let stream_trace = "0af7651916cd43dd8448eb211c80319c";
    let answer = client
        .get(format!("{}/demo/v1/shelves/9/books:stream", gateway.base))
        .header(
            "traceparent",
            format!("00-{stream_trace}-b7ad6b7169203331-01"),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200);
    let lines = answer.text().await.expect("the stream");
    assert_eq!(lines.lines().count(), 2, "{lines}");
    let spans = collector.wait_for(6, Duration::from_secs(20)).await;
    let (server, client_span) = server_and_client(&spans, stream_trace);
    assert_eq!(server.name, "GET /demo/v1/{parent=shelves/*}/books:stream");
    assert_eq!(
        client_span.name,
        "protogate.demo.v1.LibraryService/StreamBooks"
    );
    assert_eq!(otlp::hex(&server.parent_span_id), "b7ad6b7169203331");
    assert_eq!(client_span.parent_span_id, server.span_id);
    assert_eq!(
        otlp::attribute(&server, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(
        sent(&calls, 2).traceparent,
        Some(format!(
            "00-{stream_trace}-{}-01",
            otlp::hex(&client_span.span_id)
        ))
    );

    // The exporter's counts are metrics: six spans out, none dropped or failed.
    let exported = exporter_counts(&gateway.admin, 6).await;
    assert_eq!(exported, [6, 0, 0], "exported, dropped, failed");

    // A caller's unsampled trace: no span, and the backend hears it is not sampled.
    let unsampled_trace = "11111111111111111111111111111111";
    let unsampled = format!("00-{unsampled_trace}-2222222222222222-00");
    let answer = client
        .get(format!("{}/demo/v1/shelves/10", gateway.base))
        .header("traceparent", &unsampled)
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200);
    assert_eq!(sent(&calls, 3).traceparent, Some(unsampled));

    // At shutdown the queue is flushed: every span has come in, and none of the unsampled trace.
    gateway.terminate();
    assert!(gateway.exit_within(Duration::from_secs(20)).success());
    let spans = collector.spans();
    assert_eq!(spans.len(), 6, "{spans:#?}");
    assert!(
        spans
            .iter()
            .all(|span| otlp::hex(&span.trace_id) != unsampled_trace)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_ratio_zero_only_callers_sampled_traces_are_recorded_and_the_queue_goes_out_at_shutdown()
{
    let collector = otlp::Collector::start().await;
    let (backend, calls) = recording_library().await;
    // Exports only when the batch of 512 fills, or at shutdown.
    let mut gateway = gateway(
        "unsampled.toml",
        backend,
        &collector,
        "sample_ratio = 0.0\nbatch_interval = \"1h\"\n",
    );
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let answer = client
            .get(format!("{}/demo/v1/shelves/1", gateway.base))
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.status(), 200);
    }
    let answer = client
        .get(format!("{}/demo/v1/shelves/2", gateway.base))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200);
    for index in 0..3 {
        assert_eq!(sent(&calls, index).traceparent, None, "nothing to pass on");
    }
    assert!(
        collector.spans().is_empty(),
        "nothing exported before the batch fills"
    );

    gateway.terminate();
    assert!(gateway.exit_within(Duration::from_secs(20)).success());
    let spans = collector.spans();
    assert_eq!(
        spans.len(),
        2,
        "only the caller's sampled trace: {spans:#?}"
    );
    server_and_client(&spans, CALLER_TRACE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_collector_behind_tls_with_the_sections_ca() {
    let (ca, certificate, key) = support::issue("collector.test");
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(&certificate, &key));
    let collector = otlp::Collector::start_tls(tls).await;
    let ca_file = config_file("collector-ca.pem", &ca);
    let (backend, _) = recording_library().await;
    let text = format!(
        "[defaults]\nupstream = \"library\"\n\n[upstreams.library]\nendpoints = [\"http://{backend}\"]\n\n[tracing]\nendpoint = \"https://{}\"\nbatch_interval = \"50ms\"\n\n[tracing.tls]\nca = [\"{}\"]\nserver_name = \"collector.test\"\n",
        collector.address,
        ca_file.display()
    );
    let config = config_file("tls.toml", &text);
    let gateway = support::start(&["--config", config.to_str().expect("UTF-8")]);
    let answer = reqwest::get(format!("{}/demo/v1/shelves/5", gateway.base))
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200);
    let spans = collector.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(spans.len(), 2, "a server and a client span, over TLS");
    let services = collector.services();
    assert!(
        !services.is_empty() && services.iter().all(|name| name == "protogate"),
        "the default service.name: {services:?}"
    );
}

#[test]
fn a_tracing_section_that_cannot_work_is_refused_with_its_key() {
    let cases = [
        (
            "ratio.toml",
            "[tracing]\nendpoint = \"http://127.0.0.1:4317\"\nsample_ratio = 2.0\n",
            "`tracing.sample_ratio`: a ratio is 0 to 1",
        ),
        (
            "endpoint.toml",
            "[tracing]\nsample_ratio = 0.5\n",
            "`tracing.endpoint`",
        ),
        (
            "scheme.toml",
            "[tracing]\nendpoint = \"grpc://collector:4317\"\n",
            "`tracing.endpoint`",
        ),
        (
            "unknown.toml",
            "[tracing]\nendpoint = \"http://127.0.0.1:4317\"\nratio = 0.5\n",
            "`tracing.ratio`: unknown field",
        ),
    ];
    for (name, text, expected) in cases {
        let path = config_file(name, text);
        let output = std::process::Command::new(support::binary())
            .args(["config", "check", path.to_str().expect("UTF-8")])
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{name} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracing_the_callers_context_reaches_the_backend_as_it_came() {
    let (backend, calls) = recording_library().await;
    let config = config_file(
        "untraced.toml",
        &format!(
            "[defaults]\nupstream = \"library\"\n\n[upstreams.library]\nendpoints = [\"http://{backend}\"]\n"
        ),
    );
    let gateway = support::start(&["--config", config.to_str().expect("UTF-8")]);
    let client = reqwest::Client::new();
    let parent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let answer = client
        .get(format!("{}/demo/v1/shelves/3", gateway.base))
        .header("traceparent", &parent)
        .header("tracestate", "congo=t61rcWkgMzE")
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200);
    let answer = client
        .get(format!("{}/demo/v1/shelves/4", gateway.base))
        .header("traceparent", "00-not-a-trace-01")
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200);
    let first = sent(&calls, 0);
    assert_eq!(first.traceparent, Some(parent));
    assert_eq!(first.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
    assert_eq!(
        sent(&calls, 1).traceparent,
        None,
        "an invalid one stays behind"
    );
}
