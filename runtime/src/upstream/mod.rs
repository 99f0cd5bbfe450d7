//! The connection to a remote service, and the trailers of its responses kept apart.
//!
//! tonic merges a unary response's trailers into its metadata. The gateway sends headers back as
//! `Grpc-Metadata-<key>` and trailers as `Grpc-Trailer-<key>`, so [`Upstream`] copies the
//! trailers aside as the body yields them and hands them over through the response extensions.

mod connection;
mod exchange;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderMap;

use self::connection::Connection;
use self::exchange::ResponseBody;

use crate::abort::{AbortSignal, Abortable};

/// Where the trailers of one response are copied to.
#[derive(Clone, Default, Debug)]
pub(crate) struct TrailerSlot(Arc<Mutex<Option<HeaderMap>>>);

impl TrailerSlot {
    /// The trailers, once the body has yielded them.
    pub(crate) fn take(&self) -> Option<HeaderMap> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }

    /// Keeps the trailers that can become headers; gRPC's own (`grpc-status`, …) stay behind,
    /// so a call that ends without metadata keeps an empty map and allocates nothing.
    fn put(&self, trailers: &HeaderMap) {
        let kept: HeaderMap = trailers
            .iter()
            .filter(|(name, _)| !crate::metadata::is_reserved(name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(kept);
        }
    }
}

/// An upstream gRPC server, reached over one HTTP/2 connection that every clone shares.
///
/// The connection opens on the first call and again on the first call after it closes, so an
/// upstream that restarts is reached again without the gateway doing anything. Calls that find
/// no upstream fail with UNAVAILABLE. The connection runs on the tokio runtime of the call that
/// opened it: give each runtime its own `Upstream` (the stock gateway does, per worker).
///
/// ```
/// let upstream = protogate::Upstream::lazy("http://127.0.0.1:50051")?;
/// # Ok::<(), protogate::UpstreamUrlError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Upstream {
    connection: Arc<Connection>,
}

impl Upstream {
    /// How long connecting may take unless [`Upstream::connect_timeout`] says otherwise.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    /// The upstream at `url` (`http://host:port`), connected to on first use.
    pub fn lazy(url: &str) -> Result<Upstream, UpstreamUrlError> {
        Ok(Upstream {
            connection: Arc::new(Connection::new(url, Self::DEFAULT_CONNECT_TIMEOUT)?),
        })
    }

    /// The same upstream, with a connection of its own that gives up connecting after
    /// `timeout` (the call then fails with UNAVAILABLE).
    pub fn connect_timeout(self, timeout: Duration) -> Upstream {
        Upstream {
            connection: Arc::new(self.connection.with_connect_timeout(timeout)),
        }
    }
}

/// Why a URL cannot name an upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamUrlError {
    /// Not a URL at all.
    #[error("upstream `{url}` is not a valid URL: {source}")]
    Invalid {
        /// The URL given.
        url: String,
        /// What the parser found wrong.
        source: http::uri::InvalidUri,
    },
    /// Not `http://`: the gateway speaks gRPC over cleartext HTTP/2 only.
    #[error("upstream `{url}` must start with http:// (cleartext HTTP/2; TLS is not supported)")]
    UnsupportedScheme {
        /// The URL given.
        url: String,
    },
    /// No host to connect to.
    #[error("upstream `{url}` names no host")]
    MissingHost {
        /// The URL given.
        url: String,
    },
    /// A path after the host, which gRPC has no use for.
    #[error("upstream `{url}` has a path; give only http://host:port")]
    HasPath {
        /// The URL given.
        url: String,
    },
}

impl tower::Service<http::Request<tonic::body::Body>> for Upstream {
    type Response = http::Response<ResponseBody>;
    type Error = tonic::Status;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call waits for its own stream: the connection's stream limit applies there.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // A request stream the gateway abandons must fail upstream, not end cleanly.
        let request = match request.extensions().get::<AbortSignal>().cloned() {
            Some(signal) => {
                request.map(|inner| tonic::body::Body::new(Abortable { inner, signal }))
            }
            None => request,
        };
        let connection = self.connection.clone();
        Box::pin(async move {
            let trailers = TrailerSlot::default();
            let mut response = exchange::send(&connection, request, trailers.clone()).await?;
            response.extensions_mut().insert(trailers);
            Ok(response)
        })
    }
}
