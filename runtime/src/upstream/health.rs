//! Active health checks: `grpc.health.v1.Health/Check` sent to every endpoint in turn, in the
//! background, on connections of their own. An endpoint whose check fails (NOT_SERVING, an error,
//! no answer in time) takes no calls until one passes.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::address::PeerAddr;
use super::connection::Connection;
use super::dial::Dial;
use super::directory::Directory;
use super::endpoint::PeerState;
use super::exchange::{self, Source};

/// Health checks with `grpc.health.v1.Health/Check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The service name asked about (empty: the server as a whole).
    pub service: String,
    /// Time between two rounds of checks.
    pub interval: Duration,
    /// How long a check may take before it counts as failed.
    pub timeout: Duration,
}

impl HealthCheck {
    /// Checks `service` every 5 seconds, each allowed 1 second.
    pub fn new(service: impl Into<String>) -> Self {
        HealthCheck {
            service: service.into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `ServingStatus.SERVING`.
const SERVING: i32 = 1;

/// Checks the endpoints of `directory` every `check.interval` until the upstream is gone.
pub(crate) async fn run(directory: Weak<Directory>, dial: Arc<Dial>, check: HealthCheck) {
    let body = frame(&HealthCheckRequest {
        service: check.service.clone(),
    });
    let mut connections: HashMap<PeerAddr, Arc<Connection>> = HashMap::new();
    loop {
        let Some(snapshot) = directory.upgrade().map(|directory| directory.snapshot()) else {
            return;
        };
        let rounds = snapshot.peers.iter().map(|state| {
            let connection = connections
                .entry(state.peer.address.clone())
                .or_insert_with(|| Arc::new(Connection::new(Arc::clone(state), Arc::clone(&dial))))
                .clone();
            let body = body.clone();
            async move {
                let serving = tokio::time::timeout(check.timeout, probe(&connection, state, body))
                    .await
                    .unwrap_or(false);
                state.checked(serving);
            }
        });
        futures_util::future::join_all(rounds).await;
        connections.retain(|address, _| {
            snapshot
                .peers
                .iter()
                .any(|state| &state.peer.address == address)
        });
        drop(snapshot);
        tokio::time::sleep(check.interval).await;
    }
}

/// One check: true when the endpoint answers SERVING.
async fn probe(connection: &Arc<Connection>, state: &PeerState, body: Bytes) -> bool {
    let Ok(sender) = connection.ready().await else {
        return false;
    };
    let Ok(request) = http::Request::post("/grpc.health.v1.Health/Check")
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(())
    else {
        return false;
    };
    let Ok(exchange) = exchange::send(
        sender,
        &state.peer,
        &state.peer.authority,
        request.into_parts().0,
        Source::Whole(Some(body)),
    )
    .await
    else {
        return false;
    };
    let (head, mut body) = exchange.response.into_parts();
    if grpc_status(&head.headers).is_some_and(|code| code != "0") {
        return false;
    }
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else {
            return false;
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let Ok(trailers) = body.trailers().await else {
        return false;
    };
    let ok = trailers
        .as_ref()
        .and_then(grpc_status)
        .or_else(|| grpc_status(&head.headers))
        == Some("0");
    ok && data.len() >= 5
        && <HealthCheckResponse as prost::Message>::decode(&data[5..])
            .is_ok_and(|answer| answer.status == SERVING)
}

fn grpc_status(headers: &http::HeaderMap) -> Option<&str> {
    headers.get("grpc-status")?.to_str().ok()
}

/// A message as one uncompressed gRPC frame.
fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer with room for the whole message cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}
