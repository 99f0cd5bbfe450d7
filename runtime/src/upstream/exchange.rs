//! One call on an HTTP/2 stream: the request body pumped out as the upstream's flow control
//! allows, the response body read back, and HTTP/2 failures told as gRPC statuses.
//!
//! A unary request body is sent while the call waits for the response head, on the caller's own
//! task. A body still streaming once the head has arrived (client and bidi streaming) moves to a
//! task of its own, which stops when the response is dropped.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use http_body::{Body, Frame};
use tokio::sync::oneshot;
use tonic::{Code, Status};

use super::TrailerSlot;
use super::connection::Connection;

/// Sends `request` to the upstream and waits for the head of its response, whose body will copy
/// its trailers into `trailers`.
pub(crate) async fn send(
    connection: &Arc<Connection>,
    request: http::Request<tonic::body::Body>,
    trailers: TrailerSlot,
) -> Result<http::Response<ResponseBody>, Status> {
    let (head, body) = request.into_parts();
    let mut stream = connection.open(head).await?;
    let mut pump = Some(RequestPump::new(body, stream.send));
    let response = poll_fn(|cx| {
        if let Some(running) = &mut pump
            && running.poll(cx).is_ready()
        {
            pump = None;
        }
        Pin::new(&mut stream.response).poll(cx)
    })
    .await
    .map_err(|e| status_of(&e))?;

    // The request is still streaming: it goes on by itself until the response is dropped.
    let response_dropped = pump.map(|mut pump| {
        let (dropped, watch) = oneshot::channel();
        pump.response_dropped = Some(watch);
        tokio::spawn(poll_fn(move |cx| pump.poll(cx)));
        dropped
    });
    Ok(response.map(|recv| ResponseBody {
        recv,
        data_done: false,
        trailers,
        _request: response_dropped,
    }))
}

/// How a request stream that stops before its end is reset. Not CANCEL: a tonic upstream drops
/// its handler on a CANCEL without the handler's request stream failing, and the gateway wants
/// the upstream to see the stream fail, never end as though it were whole.
const ABANDONED: Reason = Reason::INTERNAL_ERROR;

/// Copies a request body onto its HTTP/2 stream, one flow-control window at a time. Dropped
/// before the end of the body, it resets the stream.
struct RequestPump {
    body: tonic::body::Body,
    send: SendStream<Bytes>,
    /// Nothing more to send: the body went out in full, or the stream is reset or closed.
    done: bool,
    /// Data the body yielded that the stream has no room for yet.
    waiting: Option<Bytes>,
    /// Closed once the response is dropped: nobody is listening any more.
    response_dropped: Option<oneshot::Receiver<std::convert::Infallible>>,
}

impl RequestPump {
    fn new(body: tonic::body::Body, send: SendStream<Bytes>) -> Self {
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

    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Stop>> {
        loop {
            if let Some(data) = &mut self.waiting {
                self.send.reserve_capacity(data.len());
                let room = match ready!(self.send.poll_capacity(cx)) {
                    Some(Ok(room)) => room,
                    Some(Err(_)) | None => return Poll::Ready(Err(Stop::Reset)),
                };
                let chunk = data.split_to(room.min(data.len()));
                let last = data.is_empty() && self.body.is_end_stream();
                if data.is_empty() {
                    self.waiting = None;
                }
                self.send.send_data(chunk, last).map_err(|_| Stop::Reset)?;
                if last {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
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

/// The body of an upstream response: its data as the upstream sends it, then its trailers, which
/// it also copies aside (tonic folds them into the response's metadata).
pub struct ResponseBody {
    recv: RecvStream,
    data_done: bool,
    trailers: TrailerSlot,
    /// Held while a streaming request is still being sent; dropping it stops that.
    _request: Option<oneshot::Sender<std::convert::Infallible>>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Read: the upstream may send as much again.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(status_of(&error)))),
                None => this.data_done = true,
            }
        }
        Poll::Ready(match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => {
                this.trailers.put(&trailers);
                Some(Ok(Frame::trailers(trailers)))
            }
            Ok(None) => None,
            Err(error) => Some(Err(status_of(&error))),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
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
    }
}
