//! OpenTelemetry traces: W3C Trace Context in and out, a parent-based ratio sampler, spans, and
//! their export over OTLP/gRPC.
//!
//! A request that arrives with a sampled `traceparent` continues the caller's trace; one without
//! starts a new trace when the [`Sampler`] picks it. A sampled request is recorded as a server
//! span, each upstream call it makes as a client span under it, and the upstream gets a
//! `traceparent` naming that client span (and the caller's `tracestate`), so the backend's spans
//! join the trace. A request that is not sampled builds no span: when its caller sent a
//! `traceparent`, that is passed on with the sampled flag off, so the backend does not sample it
//! either.
//!
//! A [`Tracer`] is an [`Observer`](crate::observe::Observer): wear it in the
//! [`ObserveLayer`](crate::observe::ObserveLayer) outside the whole router.
//!
//! ```
//! use protogate::observe::ObserveLayer;
//! use protogate::trace::{OtlpExporter, Sampler, Tracer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let collector = protogate::Upstream::lazy("http://127.0.0.1:4317")?;
//! let exporter = OtlpExporter::builder(collector).service_name("edge").start()?;
//! let tracer = Tracer::new(Sampler::ratio(0.01), &exporter);
//! let app: axum::Router = protogate::Gateway::new()
//!     .into_router()
//!     .layer(ObserveLayer::new().observer(tracer));
//! # drop(app);
//! // … serve `app`; once requests are done, export what is queued:
//! let stats = exporter.shutdown(std::time::Duration::from_secs(5));
//! assert_eq!(stats.dropped, 0);
//! # Ok(()) }
//! ```
//!
//! Its modules: `sampler`, `span` (what is recorded), `observer` (spans from a request's scope)
//! and `export` (the queue, the batches and OTLP). The headers and ids are the crate's
//! `trace_context` module, below the metadata rules that pass a caller's context on.

mod export;
mod observer;
mod sampler;
mod span;

use http::HeaderMap;

pub use self::export::{ExportCounts, ExportStats, OtlpBuilder, OtlpExporter};
pub use self::sampler::Sampler;
pub use self::span::{SpanKind, SpanRecord, SpanStatus, Value, attr};
pub use crate::trace_context::{
    Incoming, SpanId, TRACEPARENT, TRACESTATE, TraceId, TraceParent, TraceParentError, TraceState,
};

use self::export::SpanSink;

/// Decides which requests are traced and where their spans go: a [`Sampler`] and an
/// exporter's queue. Clones share the queue.
#[derive(Clone, Debug)]
pub struct Tracer {
    sampler: Sampler,
    sink: SpanSink,
}

impl Tracer {
    /// A tracer that samples with `sampler` and exports through `exporter`.
    pub fn new(sampler: Sampler, exporter: &OtlpExporter) -> Tracer {
        Tracer {
            sampler,
            sink: exporter.sink(),
        }
    }

    /// Its sampler.
    pub fn sampler(&self) -> Sampler {
        self.sampler
    }

    /// The trace of a request that arrived with `headers`: `None` when it is neither sampled
    /// nor continues a caller's trace (nothing to record or pass on).
    pub(crate) fn begin(&self, headers: &HeaderMap) -> Option<RequestTrace> {
        let incoming = Incoming::from_headers(headers);
        let Some(trace_id) = self.sampler.sample(incoming.as_ref().map(|i| &i.parent)) else {
            return incoming.map(RequestTrace::Passing);
        };
        let (parent, state) = match incoming {
            Some(incoming) => (Some(incoming.parent.span_id), incoming.state),
            None => (None, None),
        };
        Some(RequestTrace::Recording(Box::new(Recording {
            trace_id,
            server: SpanId::random(),
            client: SpanId::random(),
            parent,
            state,
        })))
    }

    /// Queues a finished span for export (dropped and counted if the queue is full): the
    /// gateway's own spans, or any other the application records in the same traces.
    pub fn record(&self, span: SpanRecord) {
        self.sink.send(span);
    }
}

/// A request's part in its trace.
#[derive(Debug)]
pub(crate) enum RequestTrace {
    /// Not sampled: the caller's context is passed on (its sampled flag off), no span made.
    Passing(Incoming),
    /// Sampled: its server span and the client span of its upstream call are recorded.
    Recording(Box<Recording>),
}

/// The ids of a sampled request's spans, drawn when it starts.
#[derive(Debug)]
pub(crate) struct Recording {
    pub(crate) trace_id: TraceId,
    /// The request's server span.
    pub(crate) server: SpanId,
    /// The client span of its upstream call, the parent the upstream is told of.
    pub(crate) client: SpanId,
    /// The caller's span, if the caller sent a `traceparent`.
    pub(crate) parent: Option<SpanId>,
    pub(crate) state: Option<TraceState>,
}

impl RequestTrace {
    /// The `traceparent` (and `tracestate`) the upstream call gets: naming the client span when
    /// recorded, the caller's unsampled context when passing.
    pub(crate) fn outgoing(&self) -> (TraceParent, Option<&TraceState>) {
        match self {
            RequestTrace::Passing(incoming) => (incoming.parent, incoming.state.as_ref()),
            RequestTrace::Recording(recording) => (
                TraceParent {
                    trace_id: recording.trace_id,
                    span_id: recording.client,
                    sampled: true,
                },
                recording.state.as_ref(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracer(sampler: Sampler) -> Tracer {
        let (sink, _) = SpanSink::for_test(1);
        Tracer { sampler, sink }
    }

    fn headers(traceparent: Option<&str>, tracestate: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = traceparent {
            headers.insert(TRACEPARENT, value.parse().expect("value"));
        }
        if let Some(value) = tracestate {
            headers.insert(TRACESTATE, value.parse().expect("value"));
        }
        headers
    }

    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    #[test]
    fn a_sampled_caller_is_continued_and_the_upstream_hears_of_the_client_span() {
        let trace = tracer(Sampler::never())
            .begin(&headers(Some(SAMPLED), Some("congo=t61")))
            .expect("traced");
        let RequestTrace::Recording(recording) = &trace else {
            panic!("recorded: {trace:?}");
        };
        assert_eq!(
            recording.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            recording.parent.map(|p| p.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_ne!(recording.server, recording.client);
        let (parent, state) = trace.outgoing();
        assert_eq!(parent.trace_id, recording.trace_id);
        assert_eq!(parent.span_id, recording.client);
        assert!(parent.sampled);
        assert_eq!(state.map(TraceState::as_str), Some("congo=t61"));
    }

    #[test]
    fn an_unsampled_caller_is_passed_on_as_it_came() {
        let trace = tracer(Sampler::always())
            .begin(&headers(Some(UNSAMPLED), Some("a=b")))
            .expect("passed on");
        assert!(matches!(trace, RequestTrace::Passing(_)), "{trace:?}");
        let (parent, state) = trace.outgoing();
        assert_eq!(parent.to_header(), UNSAMPLED);
        assert_eq!(state.map(TraceState::as_str), Some("a=b"));
    }

    #[test]
    fn without_a_caller_a_trace_starts_at_the_ratio() {
        let trace = tracer(Sampler::always())
            .begin(&headers(None, Some("a=b")))
            .expect("sampled");
        let RequestTrace::Recording(recording) = &trace else {
            panic!("recorded: {trace:?}");
        };
        assert_eq!(recording.parent, None);
        assert_eq!(recording.state, None, "a tracestate alone is not continued");
        assert!(
            tracer(Sampler::never())
                .begin(&headers(None, None))
                .is_none()
        );
        let bad = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let trace = tracer(Sampler::always()).begin(&headers(Some(bad), None));
        assert!(
            matches!(&trace, Some(RequestTrace::Recording(r)) if r.parent.is_none()),
            "a bad traceparent starts a new trace: {trace:?}"
        );
    }
}
