//! A small OTLP collector for tests: a tonic server of `opentelemetry.proto.collector.trace.v1.
//! TraceService` on a free 127.0.0.1 port that keeps every span it receives, served as the other
//! test backends are (`support::serve_grpc`); `#[path]`-included beside `mod support`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;

/// What the collector received: each export's spans, with their resource's `service.name`.
#[derive(Default)]
struct Received {
    exports: Vec<Vec<Span>>,
    services: Vec<String>,
}

#[derive(Clone, Default)]
struct Service(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = self.0.lock().expect("not poisoned");
        let mut spans = Vec::new();
        for resource in request.into_inner().resource_spans {
            let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
            for attribute in attributes {
                if attribute.key == "service.name"
                    && let Some(Value::StringValue(name)) = attribute.value.and_then(|v| v.value)
                {
                    received.services.push(name);
                }
            }
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        received.exports.push(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A running collector; it stops with the test's runtime.
#[derive(Clone)]
pub struct Collector {
    /// Where it listens.
    pub address: SocketAddr,
    received: Service,
}

impl Collector {
    /// Starts one on a free 127.0.0.1 port, on the current tokio runtime.
    pub async fn start() -> Collector {
        Collector::start_over(None).await
    }

    /// Starts one behind TLS with `tls`'s identity.
    pub async fn start_tls(tls: tonic::transport::ServerTlsConfig) -> Collector {
        Collector::start_over(Some(tls)).await
    }

    async fn start_over(tls: Option<tonic::transport::ServerTlsConfig>) -> Collector {
        let received = Service::default();
        let router = tonic::service::Routes::new(TraceServiceServer::new(received.clone()))
            .into_axum_router();
        let address = match tls {
            None => crate::support::serve_grpc(router).await,
            Some(tls) => crate::support::serve_grpc_tls(router, tls).await,
        };
        Collector { address, received }
    }

    /// Its URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far, in order.
    pub fn spans(&self) -> Vec<Span> {
        let received = self.received.0.lock().expect("not poisoned");
        received.exports.iter().flatten().cloned().collect()
    }

    /// How many spans each export call carried, in order.
    pub fn batches(&self) -> Vec<usize> {
        let received = self.received.0.lock().expect("not poisoned");
        received.exports.iter().map(Vec::len).collect()
    }

    /// The `service.name` of each export's resource.
    pub fn services(&self) -> Vec<String> {
        self.received
            .0
            .lock()
            .expect("not poisoned")
            .services
            .clone()
    }

    /// The spans received once there are at least `count`, waiting up to `timeout` for them;
    /// what there is when the time is up.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if spans.len() >= count || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The value of `span`'s attribute `key`, as text (integers and booleans written out).
pub fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(|value| match value {
            Value::StringValue(text) => text.clone(),
            Value::IntValue(number) => number.to_string(),
            Value::BoolValue(flag) => flag.to_string(),
            other => format!("{other:?}"),
        })
}

/// Lowercase hex of an id's bytes, as `traceparent` writes them.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
