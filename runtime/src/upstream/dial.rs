//! Opening a connection to one peer: TCP, TLS over TCP, or a Unix domain socket, then the HTTP/2
//! handshake, and a task that drives the connection and pings it while it lives.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite};

use super::address::{Peer, PeerAddr};
use super::tls;

/// The window each stream gives the upstream before the gateway reads, unless the upstream's
/// settings say otherwise: a few 64 KiB messages, so that one does not wait for a window update
/// on a fast link (256 KiB a millisecond of round trip). It is also what one stream may hold in
/// the gateway's memory while its client does not read, and what the upstream produces for
/// nothing when a client reads a little of a long stream and leaves: at 2 MiB, 64 WebSocket
/// clients that never read held the gateway at 165 MiB, and each client that left a long stream
/// early cost the upstream about 2 MiB of messages.
pub(crate) const DEFAULT_STREAM_WINDOW: u32 = 256 * 1024;
/// The connection's window: HTTP/2's largest, so that it never runs out before the streams'
/// own windows do. Every call of a worker shares one connection, and a window smaller than the
/// sum of its streams' let a few clients that stop reading (each stream holding its window of
/// unread data) stall the calls of everyone else on it; each stream is bounded by its own
/// window instead.
const CONNECTION_WINDOW: u32 = MAX_WINDOW;
/// HTTP/2's bounds on a window: the initial one every peer starts from, and the largest.
pub(crate) const MIN_WINDOW: u32 = 65_535;
pub(crate) const MAX_WINDOW: u32 = (1 << 31) - 1;
/// Streams the gateway cancelled (a client went away) that are remembered, for
/// [`RESET_MEMORY`], so that the data the upstream sent before it learnt of the cancellation
/// is dropped quietly. h2 remembers 50 for a second: past that, under many cancellations, such
/// data looks like a stream the upstream made up, which h2 answers with a reset of its own.
const RESET_STREAMS_REMEMBERED: usize = 4096;
const RESET_MEMORY: Duration = Duration::from_secs(5);
/// The most an upstream's response headers (or trailers) may take, as HTTP/2 counts them
/// (`SETTINGS_MAX_HEADER_LIST_SIZE`): 64 KiB, as Envoy's default, and eight times the 8 KiB of
/// metadata gRPC's own implementations take. A larger list fails the call, where h2's default
/// of 16 MiB let an upstream hand every client megabytes of headers, which the gateway copies
/// into the response.
const HEADER_LIST: u32 = 64 * 1024;

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
    /// The HTTP/2 window of each stream, in bytes.
    pub stream_window: u32,
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
        let (sender, mut connection) = client_builder(self.stream_window)
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

/// The HTTP/2 settings of every upstream connection, with `stream_window` bytes for each stream.
fn client_builder(stream_window: u32) -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        // One stream until the upstream's SETTINGS tell its limit: calls beyond a limit it has
        // not told yet would be refused.
        .initial_max_send_streams(1)
        .initial_window_size(stream_window)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .max_concurrent_reset_streams(RESET_STREAMS_REMEMBERED)
        .reset_stream_duration(RESET_MEMORY)
        .max_header_list_size(HEADER_LIST)
        // h2 closes a connection once it has itself reset 1,024 streams over its whole life (a
        // server's guard against clients that provoke resets). Here the peer is the gateway's
        // own upstream, and every client that goes away mid-stream may cost one: a long-lived
        // connection would be closed, with the calls on it, every thousand cancellations.
        .max_local_error_reset_streams(None);
    builder
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A dial with nothing but the HTTP/2 settings.
    fn dial() -> Dial {
        Dial {
            connect_timeout: Duration::from_secs(5),
            tls: None,
            keepalive: None,
            stream_window: DEFAULT_STREAM_WINDOW,
            metrics: None,
        }
    }

    /// One HTTP/2 frame.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = u32::try_from(payload.len()).expect("small").to_be_bytes();
        let mut frame = length[1..].to_vec();
        frame.extend([kind, flags]);
        frame.extend(stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// An upstream written frame by frame: it answers each request with its headers and some
    /// data, and sends more data on a stream after the gateway has reset it, as a server does
    /// whose frames were on their way when the reset came.
    async fn upstream_sending_after_resets(mut io: tokio::io::DuplexStream) {
        let mut preface = [0u8; 24];
        if io.read_exact(&mut preface).await.is_err() {
            return;
        }
        let _ = io.write_all(&frame(0x4, 0, 0, &[])).await;
        let data = [b'x'; 100];
        loop {
            let mut header = [0u8; 9];
            if io.read_exact(&mut header).await.is_err() {
                return;
            }
            let length =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let mut payload = vec![0u8; length];
            if io.read_exact(&mut payload).await.is_err() {
                return;
            }
            let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
            let answer = match header[3] {
                // SETTINGS (not an ACK): acknowledged.
                0x4 if header[4] & 0x1 == 0 => frame(0x4, 0x1, 0, &[]),
                // HEADERS: `:status 200` (static table entry 8), then data.
                0x1 => {
                    let mut answer = frame(0x1, 0x4, stream, &[0x88]);
                    answer.extend(frame(0x0, 0, stream, &data));
                    answer
                }
                // RST_STREAM: more data, already on its way.
                0x3 => frame(0x0, 0, stream, &data),
                _ => continue,
            };
            if io.write_all(&answer).await.is_err() {
                return;
            }
        }
    }

    #[tokio::test]
    async fn a_connection_outlives_thousands_of_streams_cancelled_while_the_upstream_sends() {
        let (gateway, upstream) = tokio::io::duplex(1 << 20);
        tokio::spawn(upstream_sending_after_resets(upstream));
        let mut sender = dial().handshake(gateway, |_| {}).await.expect("handshake");
        // Past h2's default of 1,024 resets of its own over a connection's life, and far past
        // the 50 cancelled streams it remembers by default.
        for call in 0..3_000 {
            sender = sender
                .ready()
                .await
                .unwrap_or_else(|e| panic!("call {call}: {e}"));
            let request = http::Request::get("http://upstream/")
                .body(())
                .expect("request");
            let (response, _) = sender
                .send_request(request, true)
                .unwrap_or_else(|e| panic!("call {call}: {e}"));
            let response = response
                .await
                .unwrap_or_else(|e| panic!("call {call}: {e}"));
            // The client goes away: the stream is cancelled with data still coming.
            drop(response);
        }
    }

    #[tokio::test]
    async fn each_stream_gets_the_window_its_upstream_is_given() {
        for window in [65_535, DEFAULT_STREAM_WINDOW, 1 << 20] {
            let (gateway, upstream) = tokio::io::duplex(1 << 20);
            // A real HTTP/2 server that would send 4 MiB at once (and may buffer that much):
            // what it may send before the gateway reads is the stream's window.
            let granted = tokio::spawn(async move {
                let mut connection = h2::server::Builder::new()
                    .max_send_buffer_size(8 << 20)
                    .handshake::<_, Bytes>(upstream)
                    .await
                    .expect("server");
                let (_, mut respond) = connection
                    .accept()
                    .await
                    .expect("a stream")
                    .expect("accepted");
                tokio::spawn(async move { while connection.accept().await.is_some() {} });
                let mut send = respond
                    .send_response(http::Response::new(()), false)
                    .expect("response");
                send.reserve_capacity(4 << 20);
                let mut granted = 0;
                loop {
                    let next = std::future::poll_fn(|cx| send.poll_capacity(cx));
                    match tokio::time::timeout(Duration::from_millis(500), next).await {
                        Ok(Some(Ok(now))) => granted = now,
                        _ => return granted,
                    }
                }
            });
            let dial = Dial {
                stream_window: window,
                ..dial()
            };
            let mut sender = dial.handshake(gateway, |_| {}).await.expect("handshake");
            sender = sender.ready().await.expect("ready");
            let request = http::Request::get("http://upstream/")
                .body(())
                .expect("request");
            let (response, _) = sender.send_request(request, true).expect("sent");
            let _unread = response.await.expect("response");
            assert_eq!(granted.await.expect("served"), window as usize, "{window}");
        }
    }

    #[tokio::test]
    async fn streams_nobody_reads_do_not_stall_the_others_on_their_connection() {
        let (gateway, upstream) = tokio::io::duplex(1 << 20);
        // A real HTTP/2 server, which respects the gateway's windows: the first three streams
        // are sent a whole stream window each, the fourth a few bytes.
        tokio::spawn(async move {
            let mut connection = h2::server::handshake(upstream).await.expect("server");
            let mut served = 0;
            while let Some(Ok((_, mut respond))) = connection.accept().await {
                let size = if served < 3 {
                    DEFAULT_STREAM_WINDOW as usize
                } else {
                    10
                };
                served += 1;
                let mut send = respond
                    .send_response(http::Response::new(()), false)
                    .expect("response");
                send.send_data(Bytes::from(vec![b'x'; size]), true)
                    .expect("data");
            }
        });
        let mut sender = dial().handshake(gateway, |_| {}).await.expect("handshake");
        let mut unread = Vec::new();
        for _ in 0..4 {
            sender = sender.ready().await.expect("ready");
            let request = http::Request::get("http://upstream/")
                .body(())
                .expect("request");
            let (response, _) = sender.send_request(request, true).expect("sent");
            unread.push(response.await.expect("response").into_body());
        }
        let mut read = unread.pop().expect("the fourth");
        let answer = tokio::time::timeout(Duration::from_secs(5), read.data())
            .await
            .expect("the fourth stream's data arrives beside three full streams nobody reads");
        assert_eq!(answer.expect("data").expect("no error").len(), 10);
    }
}
