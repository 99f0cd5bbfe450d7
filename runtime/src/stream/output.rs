//! Response-side streams over HTTP: newline-delimited JSON (grpc-gateway's `{"result":…}` and
//! `{"error":…}` lines), Server-Sent Events, or the raw bytes of `google.api.HttpBody` messages.
//! Each message is sent as soon as it arrives; nothing is buffered beyond it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body::Frame;

use super::ResponseStream;
use super::guard::{Guarded, Guards};
use crate::binding::{self, Binding, RawBody, ResponseRule};
use crate::call::Settings;
use crate::error::GatewayError;
use crate::json::JsonMessage;
use crate::observe::{Scope, StreamTransport};
use crate::upstream::TrailerSlot;

/// How response messages are framed.
pub(crate) enum Transport<Resp: 'static> {
    /// One `{"result":…}` line per message, `{"error":…}` for a failure.
    Ndjson,
    /// One `data:` event per message, an `error` event for a failure, an `end` event last.
    Sse,
    /// The bytes of each `HttpBody`, one after the other.
    Raw(fn(Resp) -> RawBody),
}

impl<Resp> Transport<Resp> {
    /// The framing for a request's `Accept` header and a binding's response rule.
    pub(crate) fn choose(headers: &HeaderMap, rule: &ResponseRule<Resp>) -> Self {
        if let ResponseRule::Raw(raw) = rule {
            return Transport::Raw(*raw);
        }
        let wants_events = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|accept| accept.contains("text/event-stream"));
        if wants_events {
            Transport::Sse
        } else {
            Transport::Ndjson
        }
    }
}

/// The response for a stream of messages. The first message is awaited before the status is
/// sent, so a call that fails before its first message gets the mapped HTTP status and the
/// google.rpc.Status body like a unary call.
pub(crate) async fn respond<Req, Resp>(
    binding: &'static Binding<Req, Resp>,
    settings: Arc<Settings>,
    transport: Transport<Resp>,
    answer: tonic::Response<ResponseStream<Resp>>,
    guards: Guards,
    scope: Option<Arc<Scope>>,
) -> Result<Response, GatewayError>
where
    Resp: JsonMessage + Send,
{
    let (metadata, messages, extensions) = answer.into_parts();
    let mut messages = Guarded::new(messages, guards);
    let events = matches!(transport, Transport::Sse);
    let encoder = Encoder {
        binding,
        settings,
        transport,
    };
    let (content_type, pending) = match messages.next().await {
        Some(Err(error)) => return Err(error),
        Some(Ok(first)) => {
            let (content_type, frame) = encoder.first(first)?;
            if let Some(scope) = &scope {
                scope.message_out();
            }
            (content_type, Some(frame))
        }
        None => (encoder.transport.content_type(), None),
    };
    // The headers first, while the encoder (and the settings' header mapping) is at hand.
    let mut headers = http::HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, content_type);
    if matches!(encoder.transport, Transport::Raw(_)) {
        crate::respond::forbid_sniffing(&mut headers);
    }
    if events {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    // Proxies in front must not hold messages back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    crate::metadata::write_response_headers(metadata, &mut headers, &encoder.settings.headers);
    let body = MessageBody {
        encoder,
        pending,
        messages,
        trailers: extensions.get::<TrailerSlot>().cloned(),
        state: State::Messages,
        scope,
    };
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = StatusCode::OK;
    *response.headers_mut() = headers;
    Ok(response)
}

impl<Resp> Transport<Resp> {
    /// The transport as observers name it.
    pub(crate) fn observed(&self) -> StreamTransport {
        match self {
            Transport::Ndjson => StreamTransport::Ndjson,
            Transport::Sse => StreamTransport::Sse,
            Transport::Raw(_) => StreamTransport::Raw,
        }
    }

    /// The content type of a stream, for a raw one when there is no message to take it from.
    fn content_type(&self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Transport::Ndjson => "application/x-ndjson",
            Transport::Sse => "text/event-stream",
            Transport::Raw(_) => "application/octet-stream",
        })
    }
}

/// Frames messages, failures and the end of a stream for one transport.
pub(crate) struct Encoder<Req: 'static, Resp: 'static> {
    pub binding: &'static Binding<Req, Resp>,
    pub settings: Arc<Settings>,
    pub transport: Transport<Resp>,
}

impl<Req, Resp: JsonMessage> Encoder<Req, Resp> {
    /// The first message as sent, and the content type of the stream: a raw stream has the
    /// first message's.
    pub(crate) fn first(&self, message: Resp) -> Result<(HeaderValue, Bytes), GatewayError> {
        match self.transport {
            Transport::Raw(raw) => {
                let raw = raw(message);
                let content_type = crate::respond::raw_content_type(&raw.content_type);
                Ok((content_type, Bytes::from(raw.data)))
            }
            _ => Ok((self.transport.content_type(), self.message(message)?)),
        }
    }

    /// One message as sent.
    pub(crate) fn message(&self, message: Resp) -> Result<Bytes, GatewayError> {
        let (prefix, suffix): (&[u8], &[u8]) = match self.transport {
            Transport::Ndjson => (b"{\"result\":", b"}\n"),
            Transport::Sse => (b"data: ", b"\n\n"),
            Transport::Raw(raw) => return Ok(Bytes::from(raw(message).data)),
        };
        let settings = &*self.settings;
        let mut buf = Vec::with_capacity(settings.response_capacity);
        buf.extend_from_slice(prefix);
        binding::write_json(&self.binding.response, &message, settings, &mut buf)?;
        buf.extend_from_slice(suffix);
        Ok(Bytes::from(buf))
    }

    /// A failure as the stream's last frame; `None` where the transport has no way to say it
    /// and the response must be cut off instead.
    pub(crate) fn failure(&self, error: GatewayError) -> Option<Bytes> {
        let (prefix, suffix): (&[u8], &[u8]) = match self.transport {
            Transport::Ndjson => (b"{\"error\":", b"}\n"),
            Transport::Sse => (b"event: error\ndata: ", b"\n\n"),
            Transport::Raw(_) => return None,
        };
        let mut buf = prefix.to_vec();
        crate::status::write_status_json(&error.into_status(), self.settings.registry, &mut buf);
        buf.extend_from_slice(suffix);
        Some(Bytes::from(buf))
    }

    /// What marks the stream's clean end: an `end` event for SSE, so that an `EventSource`
    /// can close instead of calling again.
    fn end(&self) -> Option<Bytes> {
        matches!(self.transport, Transport::Sse)
            .then(|| Bytes::from_static(b"event: end\ndata: {}\n\n"))
    }
}

enum State {
    Messages,
    Trailers,
    Done,
}

/// The response body: pulls one message from upstream each time the connection wants more, so
/// a slow reader slows the upstream through HTTP/2 flow control.
struct MessageBody<Req: 'static, Resp: 'static> {
    encoder: Encoder<Req, Resp>,
    pending: Option<Bytes>,
    messages: Guarded<ResponseStream<Resp>>,
    trailers: Option<TrailerSlot>,
    state: State,
    /// The request's record: each message sent, and how the stream ended.
    scope: Option<Arc<Scope>>,
}

impl<Req, Resp> MessageBody<Req, Resp> {
    fn sent_one(&self) {
        if let Some(scope) = &self.scope {
            scope.message_out();
        }
    }

    fn ended(&self, code: tonic::Code) {
        if let Some(scope) = &self.scope {
            scope.set_code(code);
        }
    }
}

impl<Req, Resp: JsonMessage> http_body::Body for MessageBody<Req, Resp> {
    type Data = Bytes;
    type Error = GatewayError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, GatewayError>>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Messages => {
                    if let Some(frame) = this.pending.take() {
                        return Poll::Ready(Some(Ok(Frame::data(frame))));
                    }
                    let failure = match this.messages.poll_next_unpin(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(message))) => match this.encoder.message(message) {
                            Ok(frame) => {
                                this.sent_one();
                                return Poll::Ready(Some(Ok(Frame::data(frame))));
                            }
                            Err(error) => error,
                        },
                        Poll::Ready(Some(Err(error))) => error,
                        Poll::Ready(None) => {
                            this.ended(tonic::Code::Ok);
                            this.state = State::Trailers;
                            if let Some(frame) = this.encoder.end() {
                                return Poll::Ready(Some(Ok(Frame::data(frame))));
                            }
                            continue;
                        }
                    };
                    this.state = State::Done;
                    this.ended(failure.code());
                    let message = failure.to_string();
                    return match this.encoder.failure(failure) {
                        Some(frame) => Poll::Ready(Some(Ok(Frame::data(frame)))),
                        None => Poll::Ready(Some(Err(GatewayError::StreamBroken(message)))),
                    };
                }
                State::Trailers => {
                    this.state = State::Done;
                    let trailers = this.trailers.take().and_then(|slot| slot.take());
                    if let Some(trailers) = trailers {
                        let mut headers = HeaderMap::new();
                        let trailers = tonic::metadata::MetadataMap::from_headers(trailers);
                        crate::metadata::write_trailer_headers(
                            trailers,
                            &mut headers,
                            &this.encoder.settings.headers,
                        );
                        if !headers.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::trailers(headers))));
                        }
                    }
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }
}
