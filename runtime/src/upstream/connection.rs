//! One HTTP/2 connection to an upstream: opened by the first call, shared by every call after it,
//! and opened again by the next call once it closes.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use h2::SendStream;
use h2::client::{ResponseFuture, SendRequest};
use http::HeaderValue;
use http::uri::{Authority, PathAndQuery, Scheme};
use tokio::sync::OnceCell;

use super::UpstreamUrlError;

/// The stream and connection windows the upstream may fill before the gateway reads: large
/// enough that a 64 KiB message does not wait for a window update on a fast link.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// How the gateway introduces itself to upstreams, as gRPC clients do.
const USER_AGENT: &str = concat!("protogate/", env!("CARGO_PKG_VERSION"));

/// Where the upstream is and how its requests are addressed.
#[derive(Clone, Debug)]
struct Target {
    scheme: Scheme,
    authority: Authority,
    /// The host to resolve, without the brackets of an IPv6 literal.
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Result<Target, UpstreamUrlError> {
        let uri: http::Uri = url.parse().map_err(|source| UpstreamUrlError::Invalid {
            url: url.to_owned(),
            source,
        })?;
        let unsupported = || UpstreamUrlError::UnsupportedScheme {
            url: url.to_owned(),
        };
        let scheme = uri.scheme().cloned().ok_or_else(unsupported)?;
        if scheme != Scheme::HTTP {
            return Err(unsupported());
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| UpstreamUrlError::MissingHost {
                url: url.to_owned(),
            })?;
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(UpstreamUrlError::HasPath {
                url: url.to_owned(),
            });
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(80);
        Ok(Target {
            scheme,
            authority,
            host,
            port,
        })
    }
}

/// One attempt at a connection. Its sender is set once the handshake succeeds; an attempt whose
/// handshake failed stays empty and the next call tries again.
#[derive(Default)]
struct Attempt {
    sender: OnceCell<SendRequest<Bytes>>,
}

/// A lazily opened, self-renewing HTTP/2 connection.
pub(crate) struct Connection {
    target: Target,
    connect_timeout: Duration,
    current: Mutex<Arc<Attempt>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("scheme", &self.target.scheme)
            .field("authority", &self.target.authority)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The two halves of a request's HTTP/2 stream.
pub(crate) struct Stream {
    pub response: ResponseFuture,
    pub send: SendStream<Bytes>,
}

impl Connection {
    pub(crate) fn new(
        url: &str,
        connect_timeout: Duration,
    ) -> Result<Connection, UpstreamUrlError> {
        Ok(Connection::to(Target::parse(url)?, connect_timeout))
    }

    /// A connection to the same upstream, not yet open, that connects with `connect_timeout`.
    pub(crate) fn with_connect_timeout(&self, connect_timeout: Duration) -> Connection {
        Connection::to(self.target.clone(), connect_timeout)
    }

    fn to(target: Target, connect_timeout: Duration) -> Connection {
        Connection {
            target,
            connect_timeout,
            current: Mutex::default(),
        }
    }

    /// Sends the head of a request on a new stream, connecting first if need be. The head's URI
    /// gives the path; the upstream's scheme and authority complete it.
    pub(crate) async fn open(
        self: &Arc<Self>,
        mut head: http::request::Parts,
    ) -> Result<Stream, tonic::Status> {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.target.scheme.clone());
        uri.authority = Some(self.target.authority.clone());
        uri.path_and_query = Some(
            head.uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        head.uri = http::Uri::from_parts(uri).map_err(|e| {
            tonic::Status::internal(format!("cannot address the upstream request: {e}"))
        })?;
        head.headers
            .entry(http::header::USER_AGENT)
            .or_insert(HeaderValue::from_static(USER_AGENT));
        let request = http::Request::from_parts(head, ());

        // A connection that was ready a moment ago may have closed since (the upstream restarted
        // or sent GOAWAY). The request has not gone out then, so it is sent once more on a new
        // connection.
        let mut renewed = false;
        loop {
            let attempt = self.current();
            let sender = attempt
                .sender
                .get_or_try_init(|| self.connect(Arc::downgrade(&attempt)))
                .await?;
            match sender.clone().ready().await {
                Ok(mut sender) => {
                    let (response, send) = sender
                        .send_request(request, false)
                        .map_err(|e| super::exchange::status_of(&e))?;
                    return Ok(Stream { response, send });
                }
                Err(error) => {
                    self.retire(&Arc::downgrade(&attempt));
                    if renewed {
                        return Err(super::exchange::status_of(&error));
                    }
                    renewed = true;
                }
            }
        }
    }

    fn current(&self) -> Arc<Attempt> {
        self.lock_current().clone()
    }

    /// Forgets `attempt` if it is still the current one, so that the next call connects anew.
    fn retire(&self, attempt: &Weak<Attempt>) {
        let mut current = self.lock_current();
        if std::ptr::eq(Arc::as_ptr(&current), attempt.as_ptr()) {
            *current = Arc::default();
        }
    }

    /// The current attempt, locked. Nothing panics while holding it, and the slot is valid
    /// whatever happened, so a poisoned lock is used as it is.
    fn lock_current(&self) -> std::sync::MutexGuard<'_, Arc<Attempt>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens the TCP connection and shakes hands; the connection then runs on its own task,
    /// which retires `attempt` when it ends.
    async fn connect(
        self: &Arc<Self>,
        attempt: Weak<Attempt>,
    ) -> Result<SendRequest<Bytes>, tonic::Status> {
        let authority = &self.target.authority;
        let handshake = async {
            let tcp = tokio::net::TcpStream::connect((self.target.host.as_str(), self.target.port))
                .await?;
            tcp.set_nodelay(true)?;
            h2::client::Builder::new()
                // One stream until the upstream's SETTINGS tell its limit: calls beyond a limit
                // it has not told yet would be refused.
                .initial_max_send_streams(1)
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .enable_push(false)
                .handshake::<_, Bytes>(tcp)
                .await
                .map_err(std::io::Error::other)
        };
        let (sender, connection) = tokio::time::timeout(self.connect_timeout, handshake)
            .await
            .map_err(|_| {
                tonic::Status::unavailable(format!(
                    "connecting to the upstream {authority} timed out after {:?}",
                    self.connect_timeout
                ))
            })?
            .map_err(|e| {
                tonic::Status::unavailable(format!(
                    "cannot connect to the upstream {authority}: {e}"
                ))
            })?;
        // The task holds the connection weakly: once every handle to it is gone, the connection
        // closes and the task ends.
        let owner = Arc::downgrade(self);
        tokio::spawn(async move {
            let _ = connection.await;
            if let Some(owner) = owner.upgrade() {
                owner.retire(&attempt);
            }
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_host_port_and_reject_what_cannot_be_reached() {
        let target = Target::parse("http://[::1]:50051").expect("IPv6 literal");
        assert_eq!(target.host, "::1");
        assert_eq!(target.port, 50051);
        assert_eq!(target.authority.as_str(), "[::1]:50051");
        let target = Target::parse("http://backend.internal").expect("default port");
        assert_eq!(
            (target.host.as_str(), target.port),
            ("backend.internal", 80)
        );
        assert!(Target::parse("http://backend:1/").is_ok());

        assert!(matches!(
            Target::parse("https://backend:443"),
            Err(UpstreamUrlError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Target::parse("backend:443"),
            Err(UpstreamUrlError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Target::parse("http://backend:1/prefix"),
            Err(UpstreamUrlError::HasPath { .. })
        ));
        assert!(matches!(
            Target::parse("http://bad host"),
            Err(UpstreamUrlError::Invalid { .. })
        ));
    }
}
