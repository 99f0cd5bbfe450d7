//! The benchmark's service, its payloads, and the backend that answers them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::{Request, Response, Status};

/// The generated messages, clients, servers and gateway of `proto/`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    ::protogate::include_gateway!();
}

use pb::bench::v1::{
    Batch, BatchSummary, Entry, FailRequest, Kind, LookupRequest, Small, StreamRequest,
    WatchRequest,
    bench_service_server::{BenchService, BenchServiceServer},
};

/// The encoded descriptor set of the benchmark protos, for Envoy's transcoder.
pub const DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/protogate_descriptor.bin"));

/// A scenario of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// POST with body "*", a ~150-byte message.
    Small,
    /// GET with two path variables and five query parameters.
    Query,
    /// POST of a ~64 KiB message.
    Large,
    /// GET of a server stream of [`STREAM_MESSAGES`] small messages.
    Stream,
}

/// Messages in the server stream of scenario (d).
pub const STREAM_MESSAGES: i32 = 1_000;

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Scenario; 4] = [
        Scenario::Small,
        Scenario::Query,
        Scenario::Large,
        Scenario::Stream,
    ];

    /// The label used in the results table.
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Small => "(a) POST 150 B",
            Scenario::Query => "(b) GET path+query",
            Scenario::Large => "(c) POST 64 KiB",
            Scenario::Stream => "(d) stream of 1,000",
        }
    }

    /// Method, path and query, and body of the HTTP request.
    pub fn http(self) -> (http::Method, String, Vec<u8>) {
        match self {
            Scenario::Small => (
                http::Method::POST,
                "/v1/echo".into(),
                serde_json::to_vec(&small_json()).unwrap_or_default(),
            ),
            Scenario::Query => (
                http::Method::GET,
                "/v1/users/u-42/items/1234?limit=10&verbose=true&since=2024-01-01T00:00:00Z&kind=BOOK&tag=new"
                    .into(),
                Vec::new(),
            ),
            Scenario::Large => (
                http::Method::POST,
                "/v1/batches".into(),
                serde_json::to_vec(&large_json()).unwrap_or_default(),
            ),
            Scenario::Stream => (
                http::Method::GET,
                format!("/v1/streams/{STREAM_MESSAGES}"),
                Vec::new(),
            ),
        }
    }
}

impl Scenario {
    /// Whether an HTTP response body is complete: a stream must hold every message (each names
    /// the small message's id once, in NDJSON lines or in Envoy's JSON array alike).
    pub fn complete(self, body: &[u8]) -> bool {
        match self {
            Scenario::Stream => {
                let id = b"item-000123";
                let count = body.windows(id.len()).filter(|w| w == id).count();
                count == STREAM_MESSAGES as usize
            }
            _ => true,
        }
    }
}

/// The small message as JSON.
pub fn small_json() -> serde_json::Value {
    serde_json::json!({
        "id": "item-000123",
        "title": "A Study in Scarlet",
        "count": "1887",
        "kind": "BOOK",
        "active": true,
        "score": 4.25,
        "updated": "2024-05-06T07:08:09Z",
        "tags": ["mystery", "classic"]
    })
}

/// The small message.
pub fn small() -> Small {
    Small {
        id: "item-000123".into(),
        title: "A Study in Scarlet".into(),
        count: 1887,
        kind: Kind::Book as i32,
        active: true,
        score: 4.25,
        updated: Some(prost_types::Timestamp {
            seconds: 1_714_979_289,
            nanos: 0,
        }),
        tags: vec!["mystery".into(), "classic".into()],
    }
}

/// The lookup request of scenario (b), as gRPC.
pub fn lookup() -> LookupRequest {
    LookupRequest {
        user_id: "u-42".into(),
        item_id: 1234,
        limit: 10,
        verbose: true,
        since: Some(prost_types::Timestamp {
            seconds: 1_704_067_200,
            nanos: 0,
        }),
        kind: Kind::Book as i32,
        tag: "new".into(),
    }
}

/// Entries in the large batch: enough for about 64 KiB of JSON.
const LARGE_ENTRIES: i64 = 310;

/// The large message.
pub fn large() -> Batch {
    let entries = (0..LARGE_ENTRIES)
        .map(|i| Entry {
            sequence: 1_000_000_000_000 + i,
            name: format!("entry-{i:05}"),
            at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000 + i,
                nanos: (i as i32) * 1_000_000,
            }),
            labels: [("region", "eu-west"), ("tier", "gold")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), format!("{v}-{}", i % 7)))
                .collect(),
            values: (0..4).map(|j| i * 1_000_003 + j).collect(),
            weight: i as f64 / 3.0,
        })
        .collect();
    Batch {
        source: "bench".into(),
        entries,
        totals: (0..16)
            .map(|i| (format!("total-{i}"), i * 12_345))
            .collect(),
    }
}

/// The large message as JSON, written by protogate's mapper.
pub fn large_json() -> serde_json::Value {
    let mut buf = Vec::new();
    protogate::encode_message(
        &large(),
        protogate::JsonOptions::default(),
        &pb::__PROTOGATE_REGISTRY,
        &mut buf,
    )
    .ok();
    serde_json::from_slice(&buf).unwrap_or_default()
}

/// The backend: cheap answers, so that it is never the bottleneck.
#[derive(Debug, Default, Clone, Copy)]
pub struct Backend;

#[tonic::async_trait]
impl BenchService for Backend {
    async fn echo(&self, request: Request<Small>) -> Result<Response<Small>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    async fn lookup(&self, request: Request<LookupRequest>) -> Result<Response<Small>, Status> {
        let request = request.into_inner();
        Ok(Response::new(Small {
            id: format!("{}/{}", request.user_id, request.item_id),
            title: request.tag,
            count: i64::from(request.limit),
            kind: request.kind,
            active: request.verbose,
            updated: request.since,
            ..Small::default()
        }))
    }

    type StreamStream =
        Counted<futures_util::stream::Iter<std::iter::RepeatN<Result<Small, Status>>>>;

    async fn stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let count = usize::try_from(request.into_inner().count).unwrap_or(0);
        Ok(Response::new(Counted::new(futures_util::stream::iter(
            std::iter::repeat_n(Ok(small()), count),
        ))))
    }

    type WatchStream =
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Small, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let WatchRequest {
            id,
            every_ms,
            count,
        } = request.into_inner();
        // At least 10 ms apart: the stream is held open, not a load of its own.
        let every = std::time::Duration::from_millis(u64::try_from(every_ms).unwrap_or(0).max(10));
        let count = i64::from(count.max(0));
        let ticks = futures_util::stream::unfold(0i64, move |sent| {
            let id = id.clone();
            async move {
                if sent == count {
                    return None;
                }
                tokio::time::sleep(every).await;
                let tick = Small {
                    id,
                    count: sent,
                    ..Small::default()
                };
                Some((Ok(tick), sent + 1))
            }
        });
        Ok(Response::new(Box::pin(ticks)))
    }

    async fn collect(
        &self,
        request: Request<tonic::Streaming<Small>>,
    ) -> Result<Response<BatchSummary>, Status> {
        let mut messages = request.into_inner();
        let (mut entries, mut values) = (0i64, 0i64);
        let mut source = String::new();
        while let Some(message) = messages.message().await? {
            if entries == 0 {
                source = message.id;
            }
            entries += 1;
            values += message.count;
        }
        Ok(Response::new(BatchSummary {
            source,
            entries,
            values,
        }))
    }

    type ChatStream =
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Small, Status>> + Send + 'static>>;

    async fn chat(
        &self,
        request: Request<tonic::Streaming<Small>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        use futures_util::StreamExt as _;
        // Each message back as it arrives, its count one more: the answer tells it was seen.
        let answers = request.into_inner().map(|message| {
            message.map(|message| Small {
                count: message.count + 1,
                ..message
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn fail(&self, request: Request<FailRequest>) -> Result<Response<Small>, Status> {
        let FailRequest { code, message } = request.into_inner();
        Err(Status::new(tonic::Code::from_i32(code), message))
    }

    async fn ingest(&self, request: Request<Batch>) -> Result<Response<BatchSummary>, Status> {
        let batch = request.into_inner();
        Ok(Response::new(BatchSummary {
            entries: batch.entries.len() as i64,
            values: batch.entries.iter().map(|e| e.values.len() as i64).sum(),
            source: batch.source,
        }))
    }
}

/// Server streams of the `Stream` RPC open now in this process's backend: a stream whose client
/// went away must end here too, the gateway cancelling the call.
static OPEN_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// How many `Stream` calls this process's backend is answering now.
pub fn open_streams() -> usize {
    OPEN_STREAMS.load(Ordering::Relaxed)
}

/// A response stream counted in [`open_streams`] from its start until it is dropped (ended or
/// cancelled).
pub struct Counted<S>(S);

impl<S> Counted<S> {
    fn new(stream: S) -> Self {
        OPEN_STREAMS.fetch_add(1, Ordering::Relaxed);
        Counted(stream)
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        OPEN_STREAMS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S: futures_util::Stream + Unpin> futures_util::Stream for Counted<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        std::pin::Pin::new(&mut self.0).poll_next(cx)
    }
}

/// Serves the backend until the process ends; over TLS when given a PEM certificate chain and
/// its key.
pub async fn serve_backend(
    listen: SocketAddr,
    tls: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<(), tonic::transport::Error> {
    let mut server = tonic::transport::Server::builder();
    if let Some((cert, key)) = tls {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        server = server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    server
        .add_service(BenchServiceServer::new(Backend))
        .serve(listen)
        .await
}

/// PEM files of a throwaway certificate authority and of a server certificate it signed for
/// `localhost` (and 127.0.0.1).
pub struct Pki {
    /// The authority's certificate, which clients trust.
    pub ca: String,
    /// The server's certificate.
    pub cert: String,
    /// The server's private key.
    pub key: String,
}

/// Makes a fresh [`Pki`] (ECDSA P-256 keys).
pub fn make_pki() -> Result<Pki, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "protogate-bench CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = server.signed_by(&key, &Issuer::new(ca, ca_key))?;
    Ok(Pki {
        ca: ca_cert.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// An OTLP/gRPC trace collector that counts the spans it receives and keeps nothing: where the
/// traced setups export to.
pub struct OtlpCollector {
    /// Where it listens, on 127.0.0.1.
    pub address: SocketAddr,
    spans: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

/// The collector's `TraceService`.
#[derive(Clone, Default)]
struct SpanCounter(Arc<AtomicUsize>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for SpanCounter
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.0.fetch_add(spans, Ordering::Relaxed);
        Ok(tonic::Response::new(Default::default()))
    }
}

impl OtlpCollector {
    /// Starts one on a free port, on the current tokio runtime; it stops when dropped.
    pub async fn start() -> std::io::Result<OtlpCollector> {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let counter = SpanCounter::default();
        let spans = Arc::clone(&counter.0);
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(counter))
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(OtlpCollector {
            address,
            spans,
            _task: task,
        })
    }

    /// The spans received so far.
    pub fn spans(&self) -> usize {
        self.spans.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        self._task.abort();
    }
}
