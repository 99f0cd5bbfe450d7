//! Opening a connection to one peer: TCP, TLS over TCP, or a Unix domain socket, then the HTTP/2
//! handshake, and a task that drives the connection and pings it while it lives.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite};

use super::address::{Peer, PeerAddr};
use super::tls;

/// The stream and connection windows the upstream may fill before the gateway reads: large
/// enough that a 64 KiB message does not wait for a window update on a fast link.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// HTTP/2 PINGs that tell a live connection from one whose peer stopped answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// How long after the last PING (or the handshake) the next one is sent.
    pub interval: Duration,
    /// How long a PING may go unanswered before the connection is closed and its endpoint
    /// marked down.
    pub timeout: Duration,
}

impl Default for Keepalive {
    /// A PING every 30 seconds, answered within 10.
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Closed by either side, or broken.
    Closed,
    /// A PING went unanswered: the gateway closed it.
    Unresponsive,
}

/// What every connection of an upstream is opened with.
#[derive(Clone, Debug)]
pub(crate) struct Dial {
    pub connect_timeout: Duration,
    pub tls: Option<tls::Connector>,
    pub keepalive: Option<Keepalive>,
    /// Where connections opened, closed and failed are counted.
    pub metrics: Option<crate::observe::UpstreamMetrics>,
}

impl Dial {
    /// Connects to `peer` and shakes hands. The connection then runs on a task of its own, which
    /// calls `on_end` when it ends.
    pub(crate) async fn open(
        &self,
        peer: &Peer,
        on_end: impl FnOnce(Ended) + Send + 'static,
    ) -> io::Result<SendRequest<Bytes>> {
        let opening = async {
            match &peer.address {
                PeerAddr::Tcp(socket) => {
                    let tcp = tokio::net::TcpStream::connect(socket).await?;
                    tcp.set_nodelay(true)?;
                    if !peer.tls {
                        return self.handshake(tcp, on_end).await;
                    }
                    let tls = self.tls.as_ref().ok_or_else(|| {
                        io::Error::other("an https:// endpoint without TLS settings")
                    })?;
                    let host = peer.authority.host();
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let stream = tls.connect(host, tcp).await?;
                    self.handshake(stream, on_end).await
                }
                #[cfg(unix)]
                PeerAddr::Unix(path) => {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    self.handshake(stream, on_end).await
                }
                #[cfg(not(unix))]
                PeerAddr::Unix(_) => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "Unix domain sockets are not available on this platform",
                )),
            }
        };
        tokio::time::timeout(self.connect_timeout, opening)
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("timed out after {:?}", self.connect_timeout),
                )
            })?
    }

    async fn handshake<IO>(
        &self,
        io: IO,
        on_end: impl FnOnce(Ended) + Send + 'static,
    ) -> io::Result<SendRequest<Bytes>>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, mut connection) = h2::client::Builder::new()
            // One stream until the upstream's SETTINGS tell its limit: calls beyond a limit it
            // has not told yet would be refused.
            .initial_max_send_streams(1)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(io::Error::other)?;
        let pings = self.keepalive.zip(connection.ping_pong());
        tokio::spawn(async move {
            let ended = match pings {
                None => {
                    let _ = connection.await;
                    Ended::Closed
                }
                Some((keepalive, pings)) => drive_with_pings(connection, pings, keepalive).await,
            };
            on_end(ended);
        });
        Ok(sender)
    }
}

/// Drives `connection`, sending a PING every `keepalive.interval`; gives up on it (dropping it,
/// which closes it) when one goes unanswered for `keepalive.timeout`.
async fn drive_with_pings<IO>(
    connection: h2::client::Connection<IO, Bytes>,
    mut pings: h2::PingPong,
    keepalive: Keepalive,
) -> Ended
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    tokio::pin!(connection);
    loop {
        tokio::select! {
            _ = &mut connection => return Ended::Closed,
            () = tokio::time::sleep(keepalive.interval) => {}
        }
        let pong = tokio::time::timeout(keepalive.timeout, pings.ping(h2::Ping::opaque()));
        tokio::select! {
            _ = &mut connection => return Ended::Closed,
            answer = pong => match answer {
                Ok(Ok(_)) => {}
                // No answer in time: the connection is dropped, and closed with it.
                Err(_) => return Ended::Unresponsive,
                // The connection failed while pinging: it is closing anyway.
                Ok(Err(_)) => return Ended::Closed,
            },
        }
    }
}
