//! The OTLP exporter: finished spans go into a bounded queue (a span that finds it full is
//! dropped and counted: a request never waits for telemetry), and a thread of its own sends them
//! in batches, when a batch is full or its interval has passed, to an OTLP/gRPC collector's
//! `TraceService/Export`, through an [`Upstream`] like any other gRPC call of the gateway.
//!
//! The exporter does not wait on the queue itself, or each span would wake its thread: it
//! sleeps until its interval is up or until a span fills a batch, which wakes it once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use tokio::sync::{Notify, mpsc, oneshot};

use super::span::{SpanKind, SpanRecord, SpanStatus, Value};
use crate::upstream::Upstream;

/// The gRPC method spans are exported with.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Where finished spans go: the exporter's queue, and its counters.
#[derive(Clone, Debug)]
pub(crate) struct SpanSink {
    queue: mpsc::Sender<SpanRecord>,
    stats: Arc<Counters>,
    /// Wakes the exporter when a batch is waiting.
    batch_ready: Arc<Notify>,
    batch_size: usize,
}

impl SpanSink {
    /// Queues `span` for export, or drops and counts it if the queue is full (or closed).
    pub(crate) fn send(&self, span: SpanRecord) {
        if self.queue.try_send(span).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        } else if self.queue.max_capacity() - self.queue.capacity() >= self.batch_size {
            self.batch_ready.notify_one();
        }
    }

    /// A sink whose spans the test reads from the receiver.
    #[cfg(test)]
    pub(crate) fn for_test(capacity: usize) -> (SpanSink, mpsc::Receiver<SpanRecord>) {
        let (queue, receiver) = mpsc::channel(capacity);
        let sink = SpanSink {
            queue,
            stats: Arc::default(),
            batch_ready: Arc::default(),
            batch_size: capacity,
        };
        (sink, receiver)
    }

    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// Reads an exporter's counts ([`OtlpExporter::counts`]); clones share them.
#[derive(Clone, Debug)]
pub struct ExportCounts(Arc<Counters>);

impl ExportCounts {
    /// What the exporter has done so far.
    pub fn get(&self) -> ExportStats {
        ExportStats {
            exported: self.0.exported.load(Ordering::Relaxed),
            dropped: self.0.dropped.load(Ordering::Relaxed),
            failed: self.0.failed.load(Ordering::Relaxed),
        }
    }
}

/// What an exporter has done with the spans it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans the collector took.
    pub exported: u64,
    /// Spans dropped because the queue was full (or the exporter had stopped).
    pub dropped: u64,
    /// Spans whose export failed or that the collector rejected.
    pub failed: u64,
}

/// Exports spans over OTLP/gRPC; see [`OtlpExporter::builder`].
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let collector = protogate::Upstream::lazy("http://127.0.0.1:4317")?;
/// let exporter = protogate::trace::OtlpExporter::builder(collector)
///     .service_name("edge-gateway")
///     .start()?;
/// let tracer = protogate::trace::Tracer::new(protogate::trace::Sampler::ratio(0.01), &exporter);
/// # drop(tracer);
/// // … at shutdown, once requests are done:
/// let stats = exporter.shutdown(std::time::Duration::from_secs(5));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct OtlpExporter {
    sink: SpanSink,
    stop: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl OtlpExporter {
    /// Spans in a batch unless [`OtlpBuilder::batch_size`] says otherwise.
    pub const DEFAULT_BATCH_SIZE: usize = 512;
    /// How long a span may wait for its batch unless [`OtlpBuilder::interval`] says otherwise.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    /// Spans waiting at most unless [`OtlpBuilder::queue_size`] says otherwise.
    pub const DEFAULT_QUEUE_SIZE: usize = 2048;
    /// How long one export may take unless [`OtlpBuilder::export_timeout`] says otherwise.
    pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

    /// An exporter to the collector behind `upstream` (such as
    /// `Upstream::lazy("http://127.0.0.1:4317")`, the OTLP/gRPC port).
    pub fn builder(upstream: Upstream) -> OtlpBuilder {
        OtlpBuilder {
            upstream,
            service_name: "protogate".to_owned(),
            batch_size: Self::DEFAULT_BATCH_SIZE,
            interval: Self::DEFAULT_INTERVAL,
            queue_size: Self::DEFAULT_QUEUE_SIZE,
            export_timeout: Self::DEFAULT_EXPORT_TIMEOUT,
        }
    }

    /// What it has done so far.
    pub fn stats(&self) -> ExportStats {
        self.counts().get()
    }

    /// A handle on its counts that outlives it, for metrics read at each scrape.
    pub fn counts(&self) -> ExportCounts {
        ExportCounts(Arc::clone(&self.sink.stats))
    }

    pub(crate) fn sink(&self) -> SpanSink {
        self.sink.clone()
    }

    /// Exports the spans queued, waiting for that at most `timeout`, and stops: spans finished
    /// afterwards are dropped. Blocks the calling thread; call it once requests are done, not
    /// from an async task.
    pub fn shutdown(mut self, timeout: Duration) -> ExportStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if self.done.recv_timeout(timeout).is_err() {
            tracing::warn!(
                ?timeout,
                "spans still queued at shutdown were not all exported in time"
            );
        }
        self.stats()
    }
}

/// Builds an [`OtlpExporter`]; see [`OtlpExporter::builder`].
#[derive(Clone, Debug)]
pub struct OtlpBuilder {
    upstream: Upstream,
    service_name: String,
    batch_size: usize,
    interval: Duration,
    queue_size: usize,
    export_timeout: Duration,
}

impl OtlpBuilder {
    /// The `service.name` of the spans' resource (`protogate` by default).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// The most spans sent in one export (512 by default; at least 1, at most the queue's
    /// size).
    pub fn batch_size(mut self, spans: usize) -> Self {
        self.batch_size = spans.max(1);
        self
    }

    /// How long a span may wait for its batch to fill before it is sent anyway (5 s by
    /// default).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The most spans waiting to be sent (2048 by default; at least 1); a span finished while
    /// the queue is full is dropped and counted.
    pub fn queue_size(mut self, spans: usize) -> Self {
        self.queue_size = spans.max(1);
        self
    }

    /// How long one export may take before it counts as failed (10 s by default).
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = timeout;
        self
    }

    /// Starts the exporter's thread (`protogate-otlp`), with its own single-threaded runtime
    /// where its connection to the collector lives.
    pub fn start(self) -> std::io::Result<OtlpExporter> {
        let (queue, spans) = mpsc::channel(self.queue_size);
        // A batch larger than the queue would never fill.
        let batch_size = self.batch_size.min(self.queue_size);
        let (stop, stopped) = oneshot::channel();
        let (finished, done) = std::sync::mpsc::channel();
        let stats = Arc::<Counters>::default();
        let batch_ready = Arc::<Notify>::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let batcher = Batcher {
            client: tonic::client::Grpc::new(self.upstream.for_worker()),
            resource: resource(&self.service_name),
            batch_size,
            interval: self.interval,
            export_timeout: self.export_timeout,
            stats: Arc::clone(&stats),
            batch_ready: Arc::clone(&batch_ready),
            failing: false,
        };
        std::thread::Builder::new()
            .name("protogate-otlp".to_owned())
            .spawn(move || {
                runtime.block_on(batcher.run(spans, stopped));
                let _ = finished.send(());
            })?;
        Ok(OtlpExporter {
            sink: SpanSink {
                queue,
                stats,
                batch_ready,
                batch_size,
            },
            stop: Some(stop),
            done,
        })
    }
}

/// The exporter's loop, on its own thread.
struct Batcher {
    client: tonic::client::Grpc<Upstream>,
    resource: Resource,
    batch_size: usize,
    interval: Duration,
    export_timeout: Duration,
    stats: Arc<Counters>,
    batch_ready: Arc<Notify>,
    /// Whether the last export failed (a failure is logged as a warning once, then quietly).
    failing: bool,
}

impl Batcher {
    async fn run(mut self, mut spans: mpsc::Receiver<SpanRecord>, mut stop: oneshot::Receiver<()>) {
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut due = tokio::time::Instant::now() + self.interval;
        loop {
            let batch_ready = Arc::clone(&self.batch_ready);
            let interval_up = tokio::select! {
                biased;
                _ = &mut stop => break,
                () = batch_ready.notified() => false,
                () = tokio::time::sleep_until(due) => true,
            };
            let open = self.take_batches(&mut spans, &mut batch).await;
            if interval_up {
                self.export(&mut batch).await;
                due = tokio::time::Instant::now() + self.interval;
            }
            if !open {
                break;
            }
        }
        // What was queued before the stop goes out too, in batches.
        spans.close();
        self.take_batches(&mut spans, &mut batch).await;
        self.export(&mut batch).await;
    }

    /// Takes the queued spans into `batch`, exporting each batch that fills; the rest stays in
    /// `batch`. Whether the queue is still open.
    async fn take_batches(
        &mut self,
        spans: &mut mpsc::Receiver<SpanRecord>,
        batch: &mut Vec<SpanRecord>,
    ) -> bool {
        loop {
            match spans.try_recv() {
                Ok(span) => {
                    batch.push(span);
                    if batch.len() >= self.batch_size {
                        self.export(batch).await;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Sends `batch` (emptying it); counts the outcome.
    async fn export(&mut self, batch: &mut Vec<SpanRecord>) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        let request = self.request(batch.drain(..));
        match self.send(request).await {
            Ok(rejected) => {
                let rejected = rejected.min(count);
                self.stats
                    .exported
                    .fetch_add(count - rejected, Ordering::Relaxed);
                self.stats.failed.fetch_add(rejected, Ordering::Relaxed);
                self.failing = false;
            }
            Err(status) => {
                self.stats.failed.fetch_add(count, Ordering::Relaxed);
                if self.failing {
                    tracing::debug!(code = ?status.code(), message = status.message(), spans = count, "span export failed");
                } else {
                    tracing::warn!(code = ?status.code(), message = status.message(), spans = count, "span export failed");
                }
                self.failing = true;
            }
        }
    }

    /// One `Export` call; the spans the collector said it rejected.
    async fn send(&mut self, request: ExportTraceServiceRequest) -> Result<u64, tonic::Status> {
        let call = async {
            self.client.ready().await?;
            let mut request = tonic::Request::new(request);
            request.set_timeout(self.export_timeout);
            let codec = tonic_prost::ProstCodec::<
                ExportTraceServiceRequest,
                ExportTraceServiceResponse,
            >::default();
            let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
            self.client.unary(request, path, codec).await
        };
        let response = tokio::time::timeout(self.export_timeout, call)
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("the export took too long"))??;
        let partial = response.into_inner().partial_success;
        let rejected = partial.map_or(0, |partial| {
            if partial.rejected_spans > 0 {
                tracing::warn!(
                    rejected = partial.rejected_spans,
                    message = partial.error_message,
                    "the collector rejected spans"
                );
            }
            u64::try_from(partial.rejected_spans).unwrap_or(0)
        });
        Ok(rejected)
    }

    fn request(&self, spans: impl Iterator<Item = SpanRecord>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![otlp::ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "protogate".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..Default::default()
                    }),
                    spans: spans.map(span).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

fn resource(service_name: &str) -> Resource {
    Resource {
        attributes: vec![
            key_value("service.name", &Value::from(service_name.to_owned())),
            key_value("telemetry.sdk.name", &Value::from("protogate")),
            key_value("telemetry.sdk.language", &Value::from("rust")),
            key_value(
                "telemetry.sdk.version",
                &Value::from(env!("CARGO_PKG_VERSION")),
            ),
        ],
        ..Default::default()
    }
}

fn key_value(key: &str, value: &Value) -> KeyValue {
    let value = match value {
        Value::Str(text) => any_value::Value::StringValue(text.to_string()),
        Value::Int(number) => any_value::Value::IntValue(*number),
        Value::Bool(flag) => any_value::Value::BoolValue(*flag),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    })
}

/// The OTLP form of a span.
pub(crate) fn span(record: SpanRecord) -> otlp::Span {
    // Sampled, and whether the parent is remote is known (and, for a caller's span, remote).
    let mut flags = 0x01 | otlp::SpanFlags::ContextHasIsRemoteMask as u32;
    if record.remote_parent {
        flags |= otlp::SpanFlags::ContextIsRemoteMask as u32;
    }
    let kind = match record.kind {
        SpanKind::Server => otlp::span::SpanKind::Server,
        SpanKind::Client => otlp::span::SpanKind::Client,
    };
    let status = match record.status {
        SpanStatus::Unset => None,
        SpanStatus::Error(message) => Some(otlp::Status {
            message,
            code: otlp::status::StatusCode::Error as i32,
        }),
    };
    otlp::Span {
        trace_id: record.trace_id.to_bytes().to_vec(),
        span_id: record.span_id.to_bytes().to_vec(),
        trace_state: record
            .state
            .as_ref()
            .map(|state| state.as_str().to_owned())
            .unwrap_or_default(),
        parent_span_id: record
            .parent
            .map(|parent| parent.to_bytes().to_vec())
            .unwrap_or_default(),
        flags,
        name: record.name.into_owned(),
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(record.start),
        end_time_unix_nano: unix_nanos(record.end),
        attributes: record
            .attributes
            .iter()
            .map(|(key, value)| key_value(key, value))
            .collect(),
        status,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::span::attr;
    use crate::trace_context::{SpanId, TraceId, TraceState};

    fn record(kind: SpanKind, parent: Option<SpanId>, remote: bool) -> SpanRecord {
        let state = TraceState::parse([&http::HeaderValue::from_static("congo=t61")]);
        SpanRecord {
            name: "GET /v1/{name=shelves/*}".into(),
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent,
            remote_parent: remote,
            state,
            kind,
            start: UNIX_EPOCH + Duration::from_nanos(1_000),
            end: UNIX_EPOCH + Duration::from_nanos(5_000),
            attributes: vec![
                (attr::HTTP_REQUEST_METHOD, Value::from("GET")),
                (attr::HTTP_RESPONSE_STATUS_CODE, Value::Int(503)),
                (attr::PROTOGATE_UPSTREAM, Value::from("library".to_owned())),
            ],
            status: SpanStatus::Error("upstream unavailable".to_owned()),
        }
    }

    #[test]
    fn a_record_becomes_an_otlp_span_field_by_field() {
        let parent = SpanId::random();
        let original = record(SpanKind::Server, Some(parent), true);
        let exported = span(original.clone());
        assert_eq!(exported.trace_id, original.trace_id.to_bytes());
        assert_eq!(exported.span_id, original.span_id.to_bytes());
        assert_eq!(exported.parent_span_id, parent.to_bytes());
        assert_eq!(exported.trace_state, "congo=t61");
        assert_eq!(exported.flags, 0x301);
        assert_eq!(exported.name, "GET /v1/{name=shelves/*}");
        assert_eq!(exported.kind, otlp::span::SpanKind::Server as i32);
        assert_eq!(
            (exported.start_time_unix_nano, exported.end_time_unix_nano),
            (1_000, 5_000)
        );
        let attributes: Vec<(String, Option<any_value::Value>)> = exported
            .attributes
            .into_iter()
            .map(|kv| (kv.key, kv.value.and_then(|v| v.value)))
            .collect();
        assert_eq!(
            attributes,
            vec![
                (
                    "http.request.method".to_owned(),
                    Some(any_value::Value::StringValue("GET".to_owned()))
                ),
                (
                    "http.response.status_code".to_owned(),
                    Some(any_value::Value::IntValue(503))
                ),
                (
                    "protogate.upstream".to_owned(),
                    Some(any_value::Value::StringValue("library".to_owned()))
                ),
            ]
        );
        let status = exported.status.expect("a status");
        assert_eq!(status.code, otlp::status::StatusCode::Error as i32);
        assert_eq!(status.message, "upstream unavailable");

        let mut local = record(SpanKind::Client, None, false);
        local.status = SpanStatus::Unset;
        let exported = span(local);
        assert!(exported.parent_span_id.is_empty());
        assert_eq!(exported.flags, 0x101);
        assert_eq!(exported.kind, otlp::span::SpanKind::Client as i32);
        assert_eq!(exported.status, None);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (sink, mut receiver) = SpanSink::for_test(2);
        for _ in 0..5 {
            sink.send(record(SpanKind::Server, None, false));
        }
        assert_eq!(sink.dropped(), 3);
        assert!(receiver.try_recv().is_ok());
        assert!(receiver.try_recv().is_ok());
        assert!(receiver.try_recv().is_err());
    }
}
