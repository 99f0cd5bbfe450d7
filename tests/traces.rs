//! Traces: the runtime's OTLP exporter against a real OTLP/gRPC collector on 127.0.0.1 (batches
//! by size and by interval, the queue flushed at shutdown, failures counted).

#[path = "support/otlp.rs"]
mod otlp;

use std::time::Duration;

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
    assert_eq!(exporter.stats().exported, 2);
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
