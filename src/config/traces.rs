//! `[tracing]`: OpenTelemetry traces, exported over OTLP/gRPC; off without the section.
//! `src/traces.rs` maps it onto `protogate::trace::{OtlpExporter, Sampler, Tracer}`.

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

use super::{Span, Tls};

/// `[tracing]`: where spans go and which requests make them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSection {
    /// The collector's OTLP/gRPC endpoint: `http://host:4317`, or `https://` with TLS.
    pub endpoint: String,
    /// The share of traces started at the gateway that are sampled, 0 to 1 (1 by default); a
    /// request whose caller sent a `traceparent` follows the caller's decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
    /// The `service.name` of the spans (`protogate` by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The most spans in one export (512 by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<NonZeroUsize>,
    /// How long a span may wait for its batch to fill (5 s by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_interval: Option<Span>,
    /// The most spans waiting for export (2048 by default); beyond it spans are dropped, and
    /// requests never wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<NonZeroUsize>,
    /// How long one export may take (10 s by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_timeout: Option<Span>,
    /// TLS to an `https://` collector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}
