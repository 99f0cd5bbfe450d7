//! The backend of the streaming test service: ticks on demand (held, failed, padded, slowed),
//! sums, a chat that answers each message, and HttpBody downloads and uploads. It records what
//! it saw so tests can check what reached the upstream: messages sent, streams cancelled,
//! request streams that failed rather than ended.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::sync::{Notify, mpsc};
use tonic::{Request, Response, Status, Streaming};

use crate::pb::google::api::HttpBody;
use crate::pb::protogate::tests::v1::stream_service_gateway;
use crate::pb::protogate::tests::v1::stream_service_server::{StreamService, StreamServiceServer};
use crate::pb::protogate::tests::v1::{
    Addend, ChatMessage, CountRequest, DownloadRequest, Tick, Total, UploadChunk, UploadSummary,
};

/// What the backend observed, shared with the test.
#[derive(Debug, Default)]
pub struct Observed {
    gates: Mutex<HashMap<String, Arc<Notify>>>,
    /// Ticks handed to tonic so far.
    pub sent: AtomicU64,
    /// Response streams whose receiver went away before the end.
    pub cancelled: AtomicU64,
    /// Request streams that ended with an error instead of cleanly.
    pub request_errors: AtomicU64,
    /// Request streams that ended cleanly.
    pub request_ends: AtomicU64,
    changed: Notify,
}

impl Observed {
    /// Lets the gated stream `name` go on after its first tick, or the held upload `name` be
    /// read on.
    pub fn release(&self, name: &str) {
        self.gate(name).notify_one();
    }

    fn gate(&self, name: &str) -> Arc<Notify> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(gates.entry(name.to_owned()).or_default())
    }

    fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Waits until `counter` reaches `at_least`, up to `limit`; the value it had.
    pub async fn wait_for(&self, counter: &AtomicU64, at_least: u64, limit: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            let value = counter.load(Ordering::SeqCst);
            if value >= at_least || tokio::time::Instant::now() >= deadline {
                return value;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }
}

/// The streaming service.
#[derive(Debug, Default, Clone)]
pub struct StreamBackend {
    /// What it saw.
    pub observed: Arc<Observed>,
}

type Messages<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
type Reply<T> = Result<Response<T>, Status>;

/// A response stream fed by a task through a channel of one.
fn channel<T: Send + 'static>() -> (mpsc::Sender<Result<T, Status>>, Messages<T>) {
    let (sender, receiver) = mpsc::channel(1);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    (sender, Box::pin(stream))
}

impl StreamBackend {
    /// Reads a request stream to its end, counting how it ended.
    async fn drain<T>(&self, messages: Streaming<T>) -> Result<Vec<T>, Status> {
        self.drain_holding(messages, |_| None).await
    }

    /// Like [`StreamBackend::drain`], but after the first message stops reading until the gate
    /// `hold` names for it, if any, is released.
    async fn drain_holding<T>(
        &self,
        mut messages: Streaming<T>,
        hold: impl Fn(&T) -> Option<Arc<Notify>>,
    ) -> Result<Vec<T>, Status> {
        let mut all = Vec::new();
        loop {
            match messages.next().await {
                Some(Ok(message)) => {
                    if all.is_empty()
                        && let Some(gate) = hold(&message)
                    {
                        gate.notified().await;
                    }
                    all.push(message);
                }
                Some(Err(status)) => {
                    self.observed.bump(&self.observed.request_errors);
                    return Err(status);
                }
                None => {
                    self.observed.bump(&self.observed.request_ends);
                    return Ok(all);
                }
            }
        }
    }
}

#[tonic::async_trait]
impl StreamService for StreamBackend {
    type CountStream = Messages<Tick>;

    async fn count(&self, request: Request<CountRequest>) -> Reply<Self::CountStream> {
        let request = request.into_inner();
        if request.count < 0 {
            return Err(Status::invalid_argument("count must not be negative"));
        }
        let observed = Arc::clone(&self.observed);
        let (sender, stream) = channel();
        let gate = observed.gate(&request.name);
        tokio::spawn(async move {
            let padding = "p".repeat(usize::try_from(request.padding).unwrap_or(0));
            let interval = Duration::from_millis(u64::try_from(request.interval_ms).unwrap_or(0));
            for index in 0..request.count {
                let tick = Tick {
                    name: request.name.clone(),
                    index: index.into(),
                    padding: padding.clone(),
                };
                if sender.send(Ok(tick)).await.is_err() {
                    observed.bump(&observed.cancelled);
                    return;
                }
                observed.sent.fetch_add(1, Ordering::SeqCst);
                let wait = async {
                    if index == 0 && request.gated {
                        gate.notified().await;
                    }
                    if !interval.is_zero() {
                        tokio::time::sleep(interval).await;
                    }
                };
                tokio::select! {
                    () = sender.closed() => {
                        observed.bump(&observed.cancelled);
                        return;
                    }
                    () = wait => {}
                }
            }
            if request.fail_code != 0 {
                let status = Status::new(request.fail_code.into(), "asked to fail");
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(stream))
    }

    async fn sum(&self, request: Request<Streaming<Addend>>) -> Reply<Total> {
        let addends = self.drain(request.into_inner()).await?;
        let label = addends.first().map(|a| a.label.clone()).unwrap_or_default();
        Ok(Response::new(Total {
            label,
            sum: addends.iter().map(|a| a.value).sum(),
            count: i32::try_from(addends.len()).unwrap_or(i32::MAX),
        }))
    }

    type ChatStream = Messages<ChatMessage>;

    async fn chat(&self, request: Request<Streaming<ChatMessage>>) -> Reply<Self::ChatStream> {
        let mut incoming = request.into_inner();
        let (sender, stream) = channel();
        let observed = Arc::clone(&self.observed);
        tokio::spawn(async move {
            let mut seq = 0;
            loop {
                let answer = match incoming.next().await {
                    Some(Ok(message)) => {
                        seq += 1;
                        Ok(ChatMessage {
                            room: message.room,
                            text: message.text.to_uppercase(),
                            seq,
                        })
                    }
                    Some(Err(status)) => {
                        observed.bump(&observed.request_errors);
                        Err(status)
                    }
                    None => {
                        observed.bump(&observed.request_ends);
                        return;
                    }
                };
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() {
                    observed.bump(&observed.cancelled);
                    return;
                }
                if failed {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    type DownloadStream = Messages<HttpBody>;

    async fn download(&self, request: Request<DownloadRequest>) -> Reply<Self::DownloadStream> {
        let request = request.into_inner();
        let parts = (0..request.parts).map(move |index| {
            Ok(HttpBody {
                content_type: "text/plain; charset=utf-8".into(),
                data: format!("{} part {index}\n", request.name).into_bytes(),
                extensions: Vec::new(),
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(parts))))
    }

    /// An upload named `held-…` stops being read after its first chunk until the test releases
    /// its name.
    async fn upload(&self, request: Request<Streaming<UploadChunk>>) -> Reply<UploadSummary> {
        let held = |chunk: &UploadChunk| {
            (chunk.name.starts_with("held-")).then(|| self.observed.gate(&chunk.name))
        };
        let chunks = self.drain_holding(request.into_inner(), held).await?;
        let content = || chunks.iter().filter_map(|c| c.content.as_ref());
        Ok(Response::new(UploadSummary {
            name: chunks.first().map(|c| c.name.clone()).unwrap_or_default(),
            bytes: content().map(|c| c.data.len() as i64).sum(),
            chunks: i32::try_from(chunks.len()).unwrap_or(i32::MAX),
            content_type: content()
                .next()
                .map(|c| c.content_type.clone())
                .unwrap_or_default(),
        }))
    }

    async fn fetch(&self, request: Request<DownloadRequest>) -> Reply<HttpBody> {
        // A blob named `slow…` takes its time: a unary call that is still in flight.
        if request.get_ref().name.starts_with("slow") {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(Response::new(HttpBody {
            content_type: "text/plain; charset=utf-8".into(),
            data: format!("blob {}", request.into_inner().name).into_bytes(),
            extensions: Vec::new(),
        }))
    }
}

/// Starts the streaming backend on 127.0.0.1.
pub async fn start_stream_backend(backend: StreamBackend) -> std::io::Result<SocketAddr> {
    crate::serve_routes(tonic::service::Routes::new(StreamServiceServer::new(
        backend,
    )))
    .await
}

/// A gateway in front of `backend`, over a real connection (`remote`) or in process, with the
/// settings `configure` gives it; its base URL.
pub async fn stream_gateway(
    backend: &StreamBackend,
    remote: bool,
    configure: impl FnOnce(protogate::Gateway) -> protogate::Gateway,
) -> String {
    let service = if remote {
        let address = start_stream_backend(backend.clone())
            .await
            .expect("backend");
        let upstream =
            protogate::Upstream::lazy(&format!("http://{address}")).expect("upstream URL");
        stream_service_gateway::remote(upstream)
    } else {
        stream_service_gateway::local(backend.clone())
    };
    let gateway = configure(protogate::Gateway::new())
        .with(service)
        .expect("no conflicts");
    crate::serve_gateway(gateway).await.expect("gateway")
}
