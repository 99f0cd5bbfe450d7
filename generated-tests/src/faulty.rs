//! A misbehaving gRPC upstream, for the fault tests: a raw HTTP/2 server on 127.0.0.1 (the `h2`
//! crate directly, since tonic cannot misbehave on demand) that does one fault per call.
//!
//! Which fault is chosen per call by the request header `x-fault` (what a client sends to the
//! gateway as `Grpc-Metadata-X-Fault`), or else by the server's default ([`Faulty::set`]). Its
//! value is a [`Fault`] as text: `ok`, `kill`, `silent`, `stall`, `oversized:BYTES`,
//! `reset:CODE`, `goaway:CODE`, `trailers-only:CODE`, `invalid`; followed by `@N` to send N answer
//! messages first (`kill@2`: two messages, then the connection cut).
//!
//! The server knows no proto: an answer message is a copy of a request message, which suits
//! services whose responses start with the same fields as their requests (echoes, and the test
//! streams whose field 1 is a string in both). Each answer message echoes the next request
//! message while the request stream is open, the last one after it ended. A healthy call (`ok`)
//! echoes every request message and ends with `grpc-status: 0`; with the header `x-reply: once`
//! it answers a whole request stream with one message, as a client-streaming method does.
//!
//! What it counts tells whether the gateway let go of what it opened: streams still open here
//! ([`Faulty::open_streams`]) are calls the gateway neither finished nor reset.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, HeaderValue};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How long the messages before an abrupt fault are given to be read.
const SETTLE: Duration = Duration::from_millis(100);

/// The request header that picks a call's fault.
pub const FAULT_HEADER: &str = "x-fault";

/// The request header that asks for one answer to a whole request stream (`once`).
pub const REPLY_HEADER: &str = "x-reply";

/// What the server does with one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answers correctly: an echo of each request message, then `grpc-status: 0`.
    Ok,
    /// Closes the TCP connection, with every call on it.
    Kill,
    /// Never answers; lets go of the stream only once the client resets it.
    Silent,
    /// Sends the response headers, then nothing more until the client resets the stream.
    Stall,
    /// Sends a message of this many bytes (all of it, after its length prefix).
    Oversized(usize),
    /// Resets the stream (RST_STREAM) with this HTTP/2 error code.
    Reset(Reason),
    /// Closes the connection with GOAWAY and this error code (naming the streams it
    /// processed, this one among them), with the call unanswered.
    GoAway(Reason),
    /// A trailers-only answer: `grpc-status` with this code, `grpc-message` and
    /// `grpc-status-details-bin` in the one HEADERS frame that ends the stream.
    TrailersOnly(u16),
    /// A message whose bytes are not valid protobuf, then `grpc-status: 0`.
    Invalid,
    /// Answers correctly, with this many bytes of metadata in the response headers (`x-pad-N`
    /// headers of up to 4 KiB each).
    HeavyHead(usize),
}

/// A fault, and how many answer messages go out before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The fault.
    pub fault: Fault,
    /// Answer messages sent first.
    pub after: usize,
}

impl Plan {
    /// `fault` straight away.
    pub fn now(fault: Fault) -> Plan {
        Plan { fault, after: 0 }
    }

    /// `fault` after `after` answer messages.
    pub fn after(fault: Fault, after: usize) -> Plan {
        Plan { fault, after }
    }

    /// The plan as the `x-fault` header writes it.
    pub fn header(&self) -> String {
        let fault = match &self.fault {
            Fault::Ok => "ok".to_owned(),
            Fault::Kill => "kill".to_owned(),
            Fault::Silent => "silent".to_owned(),
            Fault::Stall => "stall".to_owned(),
            Fault::Oversized(len) => format!("oversized:{len}"),
            Fault::Reset(reason) => format!("reset:{}", u32::from(*reason)),
            Fault::GoAway(reason) => format!("goaway:{}", u32::from(*reason)),
            Fault::TrailersOnly(code) => format!("trailers-only:{code}"),
            Fault::Invalid => "invalid".to_owned(),
            Fault::HeavyHead(len) => format!("heavy-head:{len}"),
        };
        if self.after == 0 {
            fault
        } else {
            format!("{fault}@{}", self.after)
        }
    }

    /// The plan an `x-fault` header value writes; `None` for one that is not a plan.
    pub fn parse(text: &str) -> Option<Plan> {
        let (fault, after) = match text.split_once('@') {
            Some((fault, after)) => (fault, after.parse().ok()?),
            None => (text, 0),
        };
        let (name, argument) = match fault.split_once(':') {
            Some((name, argument)) => (name, Some(argument)),
            None => (fault, None),
        };
        let fault = match (name, argument) {
            ("ok", None) => Fault::Ok,
            ("kill", None) => Fault::Kill,
            ("silent", None) => Fault::Silent,
            ("stall", None) => Fault::Stall,
            ("oversized", Some(len)) => Fault::Oversized(len.parse().ok()?),
            ("reset", Some(code)) => Fault::Reset(Reason::from(code.parse::<u32>().ok()?)),
            ("goaway", Some(code)) => Fault::GoAway(Reason::from(code.parse::<u32>().ok()?)),
            ("trailers-only", Some(code)) => Fault::TrailersOnly(code.parse().ok()?),
            ("invalid", None) => Fault::Invalid,
            ("heavy-head", Some(len)) => Fault::HeavyHead(len.parse().ok()?),
            _ => return None,
        };
        Some(Plan { fault, after })
    }
}

/// The length of each padding header of a [`Fault::HeavyHead`] answer.
const PAD_BYTES: usize = 4096;

/// The `grpc-message` of a trailers-only answer.
pub const TRAILERS_ONLY_MESSAGE: &str = "no such thing here";

/// The `grpc-status-details-bin` of a trailers-only answer: a `google.rpc.Status` (code 5,
/// the message above, and one `google.rpc.ResourceInfo` detail whose resource type is `thing`
/// and name `shelves/9`), base64 without padding as gRPC writes it.
pub const TRAILERS_ONLY_DETAILS: &str = "CAUSEm5vIHN1Y2ggdGhpbmcgaGVyZRpBCit0eXBlLmdvb2dsZWFwaXMuY29tL2dvb2dsZS5ycGMuUmVzb3VyY2VJbmZvEhIKBXRoaW5nEglzaGVsdmVzLzk";

/// The body of an [`Fault::Invalid`] message: a field tag with wire type 7, which protobuf
/// does not have.
pub const INVALID_PROTOBUF: &[u8] = b"\x0f\xff\xff";

/// What the server shares with its connections and with the test.
#[derive(Debug, Default)]
struct State {
    default: Mutex<Option<Plan>>,
    storm: AtomicBool,
    connections: AtomicU64,
    open_connections: AtomicUsize,
    open_streams: AtomicUsize,
    calls: AtomicU64,
}

/// A running misbehaving upstream.
#[derive(Clone, Debug)]
pub struct Faulty {
    /// Its address, on 127.0.0.1.
    pub address: SocketAddr,
    state: Arc<State>,
}

impl Faulty {
    /// Starts one on a free port of 127.0.0.1; it serves until the test's runtime ends.
    pub async fn start() -> std::io::Result<Faulty> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(State::default());
        tokio::spawn(accept(listener, Arc::clone(&state)));
        Ok(Faulty { address, state })
    }

    /// Its URL, as an upstream endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The plan of calls that carry no `x-fault` header (`None`: answer correctly).
    pub fn set(&self, plan: Option<Plan>) {
        *self
            .state
            .default
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = plan;
    }

    /// A GOAWAY storm (`true`): every connection is sent GOAWAY (NO_ERROR, no stream processed)
    /// as soon as its handshake is done, and closed.
    pub fn storm(&self, on: bool) {
        self.state.storm.store(on, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.state.open_connections.load(Ordering::SeqCst)
    }

    /// Streams open now: calls neither answered in full nor reset by the client.
    pub fn open_streams(&self) -> usize {
        self.state.open_streams.load(Ordering::SeqCst)
    }

    /// Calls received so far.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Waits up to `limit` for no stream to be open here; the streams still open then.
    pub async fn settled(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let open = self.open_streams();
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Counts one open thing while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    while let Ok((socket, _)) = listener.accept().await {
        state.connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(serve_connection(socket, Arc::clone(&state)));
    }
}

/// What a call can do to the connection it came on.
#[derive(Default)]
struct Switches {
    kill: Notify,
    go_away: Notify,
    /// The error code of the GOAWAY that `go_away` asks for.
    reason: Mutex<Option<Reason>>,
}

impl Switches {
    /// Asks for the connection to be closed with GOAWAY and `reason`.
    fn go_away(&self, reason: Reason) {
        *self
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
        self.go_away.notify_one();
    }

    fn reason(&self) -> Reason {
        self.reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or(Reason::NO_ERROR)
    }
}

async fn serve_connection(socket: tokio::net::TcpStream, state: Arc<State>) {
    let _open = Counted::new(&state.open_connections);
    let Ok(mut connection) = h2::server::handshake(socket).await else {
        return;
    };
    if state.storm.load(Ordering::SeqCst) {
        connection.abrupt_shutdown(Reason::NO_ERROR);
        // Flushes the GOAWAY; whatever the client still sends is refused.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            poll_fn(|cx| connection.poll_closed(cx)),
        )
        .await;
        return;
    }
    let switches = Arc::new(Switches::default());
    loop {
        tokio::select! {
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    state.calls.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve_call(request, respond, Arc::clone(&state), Arc::clone(&switches)));
                }
                Some(Err(_)) | None => return,
            },
            // Dropping the connection closes the socket, with every stream on it.
            () = switches.kill.notified() => return,
            () = switches.go_away.notified() => {
                connection.abrupt_shutdown(switches.reason());
                let _ = tokio::time::timeout(Duration::from_secs(1), poll_fn(|cx| connection.poll_closed(cx))).await;
                return;
            }
        }
    }
}

/// The gRPC messages of a request body, one at a time.
struct Messages {
    body: RecvStream,
    buffer: BytesMut,
    ended: bool,
    last: Option<Bytes>,
}

impl Messages {
    /// The next whole message; `None` once the body ended (or failed).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.buffer.len() >= 5 {
                let len = u32::from_be_bytes([
                    self.buffer[1],
                    self.buffer[2],
                    self.buffer[3],
                    self.buffer[4],
                ]) as usize;
                if self.buffer.len() >= 5 + len {
                    self.buffer.advance(5);
                    let message = self.buffer.split_to(len).freeze();
                    self.last = Some(message.clone());
                    return Some(message);
                }
            }
            if self.ended {
                return None;
            }
            match self.body.data().await {
                Some(Ok(data)) => {
                    let _ = self.body.flow_control().release_capacity(data.len());
                    self.buffer.extend_from_slice(&data);
                }
                Some(Err(_)) | None => self.ended = true,
            }
        }
    }

    /// The next message, or the last one again once the stream ended.
    async fn next_or_last(&mut self) -> Bytes {
        match self.next().await {
            Some(message) => message,
            None => self.last.clone().unwrap_or_default(),
        }
    }
}

/// `payload` as one uncompressed gRPC frame.
fn frame(payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + payload.len());
    frame.extend_from_slice(&[0]);
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(payload);
    frame.freeze()
}

/// The status of a `trailers-only:CODE` fault: the code, a message and a `ResourceInfo`
/// detail, in a trailers-only head or in trailers after messages.
fn write_status(headers: &mut HeaderMap, code: u16) {
    headers.insert("grpc-status", HeaderValue::from(code));
    headers.insert(
        "grpc-message",
        HeaderValue::from_static("no%20such%20thing%20here"),
    );
    headers.insert(
        "grpc-status-details-bin",
        HeaderValue::from_static(TRAILERS_ONLY_DETAILS),
    );
}

fn grpc_head() -> http::Response<()> {
    let mut head = http::Response::new(());
    head.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    head
}

fn ok_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers
}

/// Waits until the client resets the stream (or the connection ends).
async fn until_reset_of_response(respond: &mut SendResponse<Bytes>) {
    let _ = poll_fn(|cx| respond.poll_reset(cx)).await;
}

async fn until_reset_of_stream(send: &mut SendStream<Bytes>) {
    let _ = poll_fn(|cx| send.poll_reset(cx)).await;
}

async fn serve_call(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    state: Arc<State>,
    switches: Arc<Switches>,
) {
    let _open = Counted::new(&state.open_streams);
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let plan = header(FAULT_HEADER)
        .and_then(|text| Plan::parse(&text))
        .or_else(|| {
            state
                .default
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
        .unwrap_or(Plan::now(Fault::Ok));
    let once = header(REPLY_HEADER).as_deref() == Some("once");
    let mut messages = Messages {
        body: request.into_body(),
        buffer: BytesMut::new(),
        ended: false,
        last: None,
    };
    // Every call waits for its first request message (or the end of the request) first.
    let first = messages.next().await;
    // A request without any message is answered as though it were an empty one.
    let empty_request = first.is_none();

    // Faults before any answer.
    if plan.after == 0 {
        match &plan.fault {
            Fault::Kill => {
                // Held until the connection is gone: dropped first, the stream would be reset.
                switches.kill.notify_one();
                until_reset_of_response(&mut respond).await;
                return;
            }
            Fault::Silent => {
                until_reset_of_response(&mut respond).await;
                return;
            }
            Fault::Reset(reason) => {
                respond.send_reset(*reason);
                return;
            }
            Fault::GoAway(reason) => {
                switches.go_away(*reason);
                until_reset_of_response(&mut respond).await;
                return;
            }
            Fault::TrailersOnly(code) => {
                let mut head = grpc_head();
                write_status(head.headers_mut(), *code);
                let _ = respond.send_response(head, true);
                return;
            }
            _ => {}
        }
    }

    let mut head = grpc_head();
    if let Fault::HeavyHead(len) = plan.fault {
        let pad = HeaderValue::from_bytes(&[b'p'; PAD_BYTES]).expect("visible ASCII");
        let headers = head.headers_mut();
        for index in 0..len.div_ceil(PAD_BYTES) {
            if let Ok(name) = http::HeaderName::from_bytes(format!("x-pad-{index}").as_bytes()) {
                headers.insert(name, pad.clone());
            }
        }
    }
    let Ok(mut send) = respond.send_response(head, false) else {
        return;
    };
    if once {
        // One answer to the whole request stream: the last message, once it ended.
        while messages.next().await.is_some() {}
    }
    let mut pending = first;
    for _ in 0..plan.after {
        let message = match pending.take() {
            Some(message) => message,
            None => messages.next_or_last().await,
        };
        if send.send_data(frame(&message), false).is_err() {
            return;
        }
    }
    if plan.after > 0 && matches!(plan.fault, Fault::Kill | Fault::Reset(_) | Fault::GoAway(_)) {
        // A client discards what a reset or cut stream had not read yet: the messages are
        // given time to be read first, as a stream that had been running a while would be.
        tokio::time::sleep(SETTLE).await;
    }
    match plan.fault {
        Fault::Ok | Fault::HeavyHead(_) => {
            if once {
                let last = messages.last.clone().unwrap_or_default();
                let _ = send.send_data(frame(&last), false);
            } else {
                if let Some(message) = pending.take() {
                    let _ = send.send_data(frame(&message), false);
                }
                while let Some(message) = messages.next().await {
                    if send.send_data(frame(&message), false).is_err() {
                        return;
                    }
                }
                if plan.after == 0 && empty_request {
                    let _ = send.send_data(frame(b""), false);
                }
            }
            let _ = send.send_trailers(ok_trailers());
        }
        Fault::Kill => {
            switches.kill.notify_one();
            until_reset_of_stream(&mut send).await;
        }
        Fault::Silent | Fault::Stall => until_reset_of_stream(&mut send).await,
        Fault::Oversized(len) => {
            let big = vec![b'x'; len];
            send.reserve_capacity(5 + len);
            // Sent as flow control allows, until the client resets the stream.
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                let mut rest = frame(&big);
                while !rest.is_empty() {
                    match poll_fn(|cx| send.poll_capacity(cx)).await {
                        Some(Ok(room)) if room > 0 => {
                            let chunk = rest.split_to(room.min(rest.len()));
                            if send.send_data(chunk, false).is_err() {
                                return;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return,
                    }
                }
                let _ = send.send_trailers(ok_trailers());
            })
            .await;
        }
        Fault::Reset(reason) => send.send_reset(reason),
        Fault::GoAway(reason) => {
            switches.go_away(reason);
            until_reset_of_stream(&mut send).await;
        }
        Fault::TrailersOnly(code) => {
            // After messages, the status can only come in trailers.
            let mut trailers = HeaderMap::new();
            write_status(&mut trailers, code);
            let _ = send.send_trailers(trailers);
        }
        Fault::Invalid => {
            let _ = send.send_data(frame(INVALID_PROTOBUF), false);
            let _ = send.send_trailers(ok_trailers());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_read_back_from_their_headers() {
        for plan in [
            Plan::now(Fault::Ok),
            Plan::after(Fault::Kill, 2),
            Plan::now(Fault::Silent),
            Plan::after(Fault::Stall, 1),
            Plan::now(Fault::Oversized(1 << 20)),
            Plan::now(Fault::Reset(Reason::REFUSED_STREAM)),
            Plan::now(Fault::GoAway(Reason::NO_ERROR)),
            Plan::now(Fault::TrailersOnly(5)),
            Plan::after(Fault::Invalid, 3),
            Plan::now(Fault::HeavyHead(100_000)),
        ] {
            assert_eq!(Plan::parse(&plan.header()), Some(plan.clone()), "{plan:?}");
        }
        assert_eq!(Plan::parse("nonsense"), None);
        assert_eq!(Plan::parse("reset"), None);
        assert_eq!(Plan::parse("kill@x"), None);
    }
}
