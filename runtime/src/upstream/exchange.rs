//! One call on an HTTP/2 stream: the request body pumped out as the upstream's flow control
//! allows, the response body read back with its messages held to a size, and HTTP/2 failures
//! told as gRPC statuses.
//!
//! A request body that is whole from the start (every unary request) is kept as one buffer, so
//! a call the upstream refused before processing it can be sent again. A body still streaming
//! once the response head has arrived (client and bidi streaming) moves to a task of its own,
//! which stops when the response is dropped.

use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use http::HeaderValue;
use http::uri::{Authority, PathAndQuery, Scheme};
use http_body::{Body, Frame};
use tokio::sync::oneshot;
use tonic::{Code, Status};

use super::address::Peer;

/// How the gateway introduces itself to upstreams, as gRPC clients do.
const USER_AGENT: &str = concat!("protogate/", env!("CARGO_PKG_VERSION"));

/// A request body as the exchange sends it.
pub(crate) enum Source {
    /// All of it, known before sending (`None` once sent): it can be sent again.
    Whole(Option<Bytes>),
    /// A body that yields as it goes.
    Streaming(tonic::body::Body),
}

impl Source {
    /// `body` as a whole buffer when it yields all its data at once, as a unary request's does;
    /// as a stream otherwise, with nothing lost of what was read to find out.
    pub(crate) fn of(body: tonic::body::Body) -> Source {
        let mut body = body;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Most bodies are one piece, kept without a list.
        let mut first: Option<Bytes> = None;
        let mut more: Vec<Bytes> = Vec::new();
        loop {
            let polled = Pin::new(&mut body).poll_frame(&mut cx);
            match polled {
                Poll::Ready(None) => {
                    return Source::Whole(Some(match first {
                        None => Bytes::new(),
                        Some(first) if more.is_empty() => first,
                        Some(first) => {
                            more.insert(0, first);
                            more.concat().into()
                        }
                    }));
                }
                Poll::Ready(Some(Ok(frame))) if frame.is_data() && more.len() < 8 => {
                    if let Ok(data) = frame.into_data() {
                        match first {
                            None => first = Some(data),
                            Some(_) => more.push(data),
                        }
                    }
                }
                // Still streaming (or a trailer, an error, or many pieces): sent as it comes,
                // starting with what was read already.
                next => {
                    let mut read: std::collections::VecDeque<_> = first
                        .into_iter()
                        .chain(more)
                        .map(|data| Ok(Frame::data(data)))
                        .collect();
                    if let Poll::Ready(Some(frame)) = next {
                        read.push_back(frame);
                    }
                    return Source::Streaming(tonic::body::Body::new(Resumed { read, rest: body }));
                }
            }
        }
    }

    /// A copy to send again, when the whole body is known.
    pub(crate) fn replay(&self) -> Option<Source> {
        match self {
            Source::Whole(data) => Some(Source::Whole(data.clone())),
            Source::Streaming(_) => None,
        }
    }
}

/// A body whose first frames were read already.
struct Resumed {
    read: std::collections::VecDeque<Result<Frame<Bytes>, Status>>,
    rest: tonic::body::Body,
}

impl Body for Resumed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match self.read.pop_front() {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }
}

/// A call that failed before its response head arrived.
#[derive(Debug)]
pub(crate) struct Failed {
    pub status: Status,
    /// The upstream said it did not process the call (REFUSED_STREAM, or a GOAWAY that left
    /// it out): it may be sent again.
    pub refused: bool,
    /// The connection broke: a failure of the endpoint, not of the call.
    pub broken: bool,
}

/// A response head, with the body still to come.
pub(crate) struct Exchange {
    pub response: http::Response<RecvStream>,
    /// Held while a streaming request is still being sent; dropping it stops that.
    pub request: Option<oneshot::Sender<Infallible>>,
}

/// Sends a request to `peer` on `sender` and waits for the head of its response. The head's URI
/// gives the path; the peer's scheme and `authority` complete it.
pub(crate) async fn send(
    mut sender: SendRequest<Bytes>,
    peer: &Peer,
    authority: &Authority,
    mut head: http::request::Parts,
    body: Source,
) -> Result<Exchange, Failed> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(if peer.tls {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    });
    uri.authority = Some(authority.clone());
    uri.path_and_query = Some(
        head.uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    head.uri = http::Uri::from_parts(uri).map_err(|e| Failed {
        status: Status::internal(format!("cannot address the upstream request: {e}")),
        refused: false,
        broken: false,
    })?;
    head.headers
        .entry(http::header::USER_AGENT)
        .or_insert(HeaderValue::from_static(USER_AGENT));
    let (response, send) = sender
        .send_request(http::Request::from_parts(head, ()), false)
        .map_err(|e| failed(&e))?;
    let mut response = response;
    let mut pump = Some(RequestPump::new(body, send));
    let response = poll_fn(|cx| {
        if let Some(running) = &mut pump
            && running.poll(cx).is_ready()
        {
            pump = None;
        }
        Pin::new(&mut response).poll(cx)
    })
    .await
    .map_err(|e| failed(&e))?;

    // The request is still streaming: it goes on by itself until the response is dropped.
    let request = pump.map(|mut pump| {
        let (dropped, watch) = oneshot::channel();
        pump.response_dropped = Some(watch);
        tokio::spawn(poll_fn(move |cx| pump.poll(cx)));
        dropped
    });
    Ok(Exchange { response, request })
}

fn failed(error: &h2::Error) -> Failed {
    // h2 fails a stream with the peer's GOAWAY only when the GOAWAY's last stream leaves it
    // out: the peer did not process it (RFC 9113, 6.8), whatever the GOAWAY's reason. A stream
    // it did process fails when the connection closes, as a broken pipe.
    let refused =
        error.reason() == Some(Reason::REFUSED_STREAM) || (error.is_go_away() && error.is_remote());
    Failed {
        status: status_of(error),
        refused,
        broken: error.is_io(),
    }
}

/// How a request stream that stops before its end is reset. Not CANCEL: a tonic upstream drops
/// its handler on a CANCEL without the handler's request stream failing, and the gateway wants
/// the upstream to see the stream fail, never end as though it were whole.
const ABANDONED: Reason = Reason::INTERNAL_ERROR;

/// Copies a request body onto its HTTP/2 stream, one flow-control window at a time. Dropped
/// before the end of the body, it resets the stream.
struct RequestPump {
    body: Source,
    send: SendStream<Bytes>,
    /// Nothing more to send: the body went out in full, or the stream is reset or closed.
    done: bool,
    /// Data the body yielded that the stream has no room for yet.
    waiting: Option<Bytes>,
    /// Closed once the response is dropped: nobody is listening any more.
    response_dropped: Option<oneshot::Receiver<Infallible>>,
}

impl RequestPump {
    fn new(body: Source, send: SendStream<Bytes>) -> Self {
        RequestPump {
            body,
            send,
            done: false,
            waiting: None,
            response_dropped: None,
        }
    }

    /// Ready once the body is sent in full, or once sending it no longer matters: the upstream
    /// reset the stream, the body failed, or the response was dropped (the last two reset it).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let dropped = self
            .response_dropped
            .as_mut()
            .is_some_and(|watch| Pin::new(watch).poll(cx).is_ready());
        let outcome = if dropped {
            Err(Stop::Abandoned)
        } else {
            match self.poll_send(cx) {
                Poll::Ready(outcome) => outcome,
                // Waiting for the body or for room: a reset from the upstream ends the wait.
                Poll::Pending => match self.send.poll_reset(cx) {
                    Poll::Ready(_) => Err(Stop::Reset),
                    Poll::Pending => return Poll::Pending,
                },
            }
        };
        if let Err(Stop::Abandoned) = outcome {
            self.send.send_reset(ABANDONED);
        }
        self.done = true;
        Poll::Ready(())
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Source::Whole(data) => data.is_none(),
            Source::Streaming(body) => body.is_end_stream(),
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match &mut self.body {
            Source::Whole(data) => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            Source::Streaming(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Stop>> {
        loop {
            if let Some(data) = &mut self.waiting {
                self.send.reserve_capacity(data.len());
                let room = match ready!(self.send.poll_capacity(cx)) {
                    Some(Ok(room)) => room,
                    Some(Err(_)) | None => return Poll::Ready(Err(Stop::Reset)),
                };
                let chunk = data.split_to(room.min(data.len()));
                let emptied = data.is_empty();
                if emptied {
                    self.waiting = None;
                }
                let last = emptied && self.is_end_stream();
                self.send.send_data(chunk, last).map_err(|_| Stop::Reset)?;
                if last {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match ready!(self.poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => self.waiting = Some(data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.send.send_trailers(trailers).map_err(|_| Stop::Reset)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(_)) => return Poll::Ready(Err(Stop::Abandoned)),
                None => {
                    self.send
                        .send_data(Bytes::new(), true)
                        .map_err(|_| Stop::Reset)?;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl Drop for RequestPump {
    fn drop(&mut self) {
        if !self.done {
            self.send.send_reset(ABANDONED);
        }
    }
}

/// Why a request body stopped before its end.
enum Stop {
    /// The stream can take no more: the upstream reset it or the connection closed.
    Reset,
    /// The gateway gave up on the call, or the body failed, as an abandoned request stream does.
    Abandoned,
}

/// Follows the gRPC frames of a response body and stops one larger than a limit as soon as its
/// length prefix arrives, before any of it is buffered.
#[derive(Debug)]
pub(crate) struct MessageLimit {
    max: usize,
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
}

impl MessageLimit {
    pub(crate) fn new(max: usize) -> Self {
        MessageLimit {
            max,
            prefix: [0; 5],
            prefix_len: 0,
            remaining: 0,
        }
    }

    /// The limit.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Follows `data`; `Err(len)` for the first message longer than the limit.
    pub(crate) fn check(&mut self, mut data: &[u8]) -> Result<(), usize> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
            data = &data[n..];
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let [_, a, b, c, d] = self.prefix;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                if len > self.max {
                    return Err(len);
                }
                self.remaining = len;
            }
        }
        Ok(())
    }
}

/// The gRPC status for an HTTP/2 failure, per gRPC's mapping of HTTP/2 error codes: a connection
/// that broke or went away is UNAVAILABLE, a cancelled stream CANCELLED.
pub(crate) fn status_of(error: &h2::Error) -> Status {
    if error.is_io() {
        return Status::unavailable(format!("the upstream connection broke: {error}"));
    }
    if error.is_go_away() {
        return Status::unavailable(format!("the upstream closed the connection: {error}"));
    }
    let code = match error.reason() {
        Some(Reason::REFUSED_STREAM) => Code::Unavailable,
        Some(Reason::CANCEL) => Code::Cancelled,
        Some(Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
        Some(Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
        Some(_) => Code::Internal,
        // Not a protocol error: the stream or connection was already closed on this side.
        None => Code::Unavailable,
    };
    Status::new(code, format!("the upstream stream failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_errors_map_to_grpc_codes() {
        let cases = [
            (Reason::REFUSED_STREAM, Code::Unavailable),
            (Reason::CANCEL, Code::Cancelled),
            (Reason::ENHANCE_YOUR_CALM, Code::ResourceExhausted),
            (Reason::INADEQUATE_SECURITY, Code::PermissionDenied),
            (Reason::PROTOCOL_ERROR, Code::Internal),
            (Reason::FLOW_CONTROL_ERROR, Code::Internal),
        ];
        for (reason, code) in cases {
            assert_eq!(
                status_of(&h2::Error::from(reason)).code(),
                code,
                "{reason:?}"
            );
        }
        assert!(failed(&h2::Error::from(Reason::REFUSED_STREAM)).refused);
        assert!(!failed(&h2::Error::from(Reason::CANCEL)).refused);
    }

    fn framed(len: u32) -> Vec<u8> {
        let mut frame = vec![0];
        frame.extend_from_slice(&len.to_be_bytes());
        frame.resize(5 + len as usize, 7);
        frame
    }

    #[test]
    fn the_message_limit_follows_frames_across_chunks() {
        let mut stream = framed(10);
        stream.extend(framed(0));
        stream.extend(framed(16));
        // Fed one byte at a time, or in one piece: the same verdict.
        let mut limit = MessageLimit::new(16);
        assert_eq!(stream.iter().try_for_each(|b| limit.check(&[*b])), Ok(()));
        assert_eq!(MessageLimit::new(16).check(&stream), Ok(()));

        stream.extend(framed(17));
        assert_eq!(MessageLimit::new(16).check(&stream), Err(17));
        let mut limit = MessageLimit::new(16);
        let (head, tail) = stream.split_at(stream.len() - 17 - 3);
        assert_eq!(limit.check(head), Ok(()), "the prefix is not whole yet");
        assert_eq!(limit.check(tail), Err(17));
    }

    #[test]
    fn a_body_whole_at_once_can_be_sent_again() {
        let body = tonic::body::Body::new(http_body_util::Full::new(Bytes::from_static(b"abc")));
        let source = Source::of(body);
        let Some(Source::Whole(Some(data))) = source.replay() else {
            panic!("a whole body");
        };
        assert_eq!(&data[..], b"abc");

        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Status>>(1);
        let body = http_body_util::StreamBody::new(tokio_stream_of(rx));
        assert!(Source::of(tonic::body::Body::new(body)).replay().is_none());
        drop(tx);
    }

    /// A stream over a channel's receiver, without another crate.
    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Status>>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Status>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
