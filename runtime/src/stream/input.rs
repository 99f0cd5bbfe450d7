//! Request-side streams: the messages of an HTTP request body, parsed as they complete.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use http_body::{Body as _, Frame};
use tokio::sync::oneshot;

use super::guard::Activity;
use super::split::{SplitError, Splitter};
use crate::abort::AbortSignal;
use crate::binding::{BodyRule, MessageSource};
use crate::error::GatewayError;
use crate::json::JsonMessage;

/// Where a failure of the request stream is reported, and the state every message source
/// shares.
pub(crate) struct Failure {
    report: Option<oneshot::Sender<GatewayError>>,
    signal: AbortSignal,
}

impl Failure {
    /// A failure channel: the sender side for the request stream, the receiver for the guards.
    pub(crate) fn channel(signal: AbortSignal) -> (Self, oneshot::Receiver<GatewayError>) {
        let (report, receiver) = oneshot::channel();
        (
            Failure {
                report: Some(report),
                signal,
            },
            receiver,
        )
    }

    /// Reports `error` and stops the request stream upstream.
    pub(crate) fn fail(&mut self, error: GatewayError) {
        self.signal.trigger();
        if let Some(report) = self.report.take() {
            let _ = report.send(error);
        }
    }
}

enum State {
    Reading,
    Ended,
    Failed,
}

/// The messages of a request body: JSON values cut out as they complete, or the raw pieces of
/// the body for a `google.api.HttpBody` target. A failure is reported to the guards and leaves
/// the stream pending: it never ends as though the client had finished.
pub(crate) struct BodyMessages<Req: 'static, Resp: 'static> {
    body: Body,
    splitter: Option<Splitter>,
    source: Arc<MessageSource<Req, Resp>>,
    failure: Failure,
    activity: Activity,
    index: usize,
    /// Bytes of the body so far, and the most it may send in all.
    received: usize,
    stream_limit: Option<usize>,
    state: State,
}

impl<Req: JsonMessage, Resp> BodyMessages<Req, Resp> {
    pub(crate) fn new(
        body: Body,
        source: Arc<MessageSource<Req, Resp>>,
        failure: Failure,
        activity: Activity,
    ) -> Self {
        let rule = &source.binding.body;
        let splitter = match rule {
            BodyRule::Raw { .. } => None,
            _ => Some(Splitter::new(
                source.settings.max_message_bytes,
                rule.arrays_hold_messages(),
            )),
        };
        BodyMessages {
            body,
            splitter,
            stream_limit: source.stream_limit,
            received: 0,
            source,
            failure,
            activity,
            index: 0,
            state: State::Reading,
        }
    }

    fn emit(&mut self, value: &[u8], cx: &Context<'_>) -> Poll<Option<Req>> {
        match self.source.message(value) {
            Ok(message) => {
                self.index += 1;
                self.activity.touch();
                if let Some(scope) = &self.source.scope {
                    scope.message_in();
                }
                Poll::Ready(Some(message))
            }
            Err(error) => self.fail(
                GatewayError::StreamMessage {
                    index: self.index,
                    error: Box::new(error),
                },
                cx,
            ),
        }
    }

    fn fail(&mut self, error: GatewayError, cx: &Context<'_>) -> Poll<Option<Req>> {
        self.state = State::Failed;
        self.failure.fail(error);
        // Whatever polls this stream looks at the abort signal when polled again.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<Req: JsonMessage, Resp> Stream for BodyMessages<Req, Resp> {
    type Item = Req;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Req>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Failed => return Poll::Pending,
                State::Ended => return Poll::Ready(None),
                State::Reading => {}
            }
            if let Some(splitter) = &mut this.splitter {
                match splitter.next_value() {
                    Ok(Some(value)) => return this.emit(&value, cx),
                    Ok(None) => {}
                    Err(error) => return this.fail(split_error(error), cx),
                }
            }
            let frame = match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(frame) => frame,
            };
            match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    this.received = this.received.saturating_add(data.len());
                    if let Some(limit) = this.stream_limit
                        && this.received > limit
                    {
                        return this.fail(GatewayError::StreamTooLarge { limit }, cx);
                    }
                    match &mut this.splitter {
                        Some(splitter) => splitter.push(&data),
                        None if data.is_empty() => {}
                        None => return this.emit(&data, cx),
                    }
                }
                Some(Err(error)) => {
                    return this.fail(GatewayError::from_body(error.into()), cx);
                }
                None => {
                    this.state = State::Ended;
                    let last = this.splitter.as_mut().map(Splitter::finish);
                    match last {
                        Some(Ok(Some(value))) => return this.emit(&value, cx),
                        Some(Err(error)) => return this.fail(split_error(error), cx),
                        Some(Ok(None)) | None => return Poll::Ready(None),
                    }
                }
            }
        }
    }
}

/// A splitter failure as the gateway reports it.
pub(crate) fn split_error(error: SplitError) -> GatewayError {
    match error {
        SplitError::TooLarge { index, limit } => GatewayError::MessageTooLarge { index, limit },
        SplitError::Syntax { .. } => GatewayError::StreamSyntax(error.to_string()),
    }
}

/// A request stream as an in-process service receives it: encoded as gRPC frames and decoded by
/// tonic, as though it had crossed the network, so a service written for tonic reads it unchanged.
/// Wrapped in [`Abortable`](crate::abort::Abortable), like a request stream that goes over the network.
pub(crate) struct LocalFrames<T> {
    pub messages: super::RequestStream<T>,
}

impl<T: prost::Message> http_body::Body for LocalFrames<T> {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        match Pin::new(&mut self.messages).poll_next(cx) {
            Poll::Ready(Some(message)) => {
                let length = message.encoded_len();
                let mut frame = BytesMut::with_capacity(5 + length);
                frame.put_u8(0);
                frame.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
                message
                    .encode(&mut frame)
                    .map_err(|error| tonic::Status::internal(error.to_string()))?;
                Poll::Ready(Some(Ok(Frame::data(frame.freeze()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
