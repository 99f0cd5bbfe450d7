//! Response-side streams over HTTP: newline-delimited JSON (grpc-gateway's `{"result":…}` and
//! `{"error":…}` lines), Server-Sent Events, or the raw bytes of `google.api.HttpBody` messages.
//! Each message is sent as soon as it arrives and nothing waits for more; messages that have
//! already arrived together go out together, in one body frame.

use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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

/// How long the response head of a JSON or event stream waits for the first message. A call
/// that fails at once still gets its mapped HTTP status and google.rpc.Status body like a unary
/// call, while a stream whose first message is slow to come (a watch, a feed) is answered now:
/// an `EventSource` opens, and proxies in front see a response before their timeouts.
const FIRST_MESSAGE_WAIT: Duration = Duration::from_millis(200);

/// The response for a stream of messages. The first message is awaited before the status is
/// sent, for at most [`FIRST_MESSAGE_WAIT`] (a raw stream waits for it, as its content type is
/// the first message's).
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
    let first = if matches!(encoder.transport, Transport::Raw(_)) {
        messages.next().await
    } else {
        // Taking the next message is cancel-safe: one that comes later is the body's.
        tokio::time::timeout(FIRST_MESSAGE_WAIT, messages.next())
            .await
            .unwrap_or_default()
    };
    let (content_type, pending) = match first {
        Some(Err(error)) => return Err(error),
        Some(Ok(first)) => {
            let (content_type, frame) = encoder.first(first)?;
            if let Some(scope) = &scope {
                scope.message_out();
            }
            (content_type, frame)
        }
        // Ended without a message, or none yet.
        None => (encoder.transport.content_type(), Vec::new()),
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
    fn first(&self, message: Resp) -> Result<(HeaderValue, Vec<u8>), GatewayError> {
        match self.transport {
            Transport::Raw(raw) => {
                let raw = raw(message);
                let content_type = crate::respond::raw_content_type(&raw.content_type);
                Ok((content_type, raw.data))
            }
            _ => {
                let mut buf = Vec::new();
                self.write(message, &mut buf)?;
                Ok((self.transport.content_type(), buf))
            }
        }
    }

    /// Appends one message as sent to `buf`; on an error, `buf` is as it was.
    fn write(&self, message: Resp, buf: &mut Vec<u8>) -> Result<(), GatewayError> {
        let (prefix, suffix): (&[u8], &[u8]) = match self.transport {
            Transport::Ndjson => (b"{\"result\":", b"}\n"),
            Transport::Sse => (b"data: ", b"\n\n"),
            Transport::Raw(raw) => {
                let data = raw(message).data;
                // A message that starts a frame is the frame: large downloads are not copied.
                if buf.is_empty() {
                    *buf = data;
                } else {
                    buf.extend_from_slice(&data);
                }
                return Ok(());
            }
        };
        let settings = &*self.settings;
        let start = buf.len();
        if start == 0 {
            buf.reserve(settings.response_capacity);
        }
        buf.extend_from_slice(prefix);
        if let Err(error) = binding::write_json(&self.binding.response, &message, settings, buf) {
            buf.truncate(start);
            return Err(error);
        }
        buf.extend_from_slice(suffix);
        Ok(())
    }

    /// Appends a failure as the stream's last words to `buf`, or gives it back where the
    /// transport has no way to say it and the response must be cut off instead.
    fn write_failure(&self, error: GatewayError, buf: &mut Vec<u8>) -> Result<(), GatewayError> {
        let (prefix, suffix): (&[u8], &[u8]) = match self.transport {
            Transport::Ndjson => (b"{\"error\":", b"}\n"),
            Transport::Sse => (b"event: error\ndata: ", b"\n\n"),
            Transport::Raw(_) => return Err(error),
        };
        buf.extend_from_slice(prefix);
        crate::status::write_status_json(&error.into_status(), self.settings.registry, buf);
        buf.extend_from_slice(suffix);
        Ok(())
    }

    /// What marks the stream's clean end: an `end` event for SSE, so that an `EventSource`
    /// can close instead of calling again.
    fn end(&self) -> &'static [u8] {
        match self.transport {
            Transport::Sse => b"event: end\ndata: {}\n\n",
            _ => b"",
        }
    }
}

enum State {
    Messages,
    Trailers,
    /// The upstream failed where the transport cannot say so: the body is cut off with this
    /// reason once the messages before the failure are sent.
    Broken(String),
    Done,
}

/// How a gathering of messages stopped.
enum Gathered {
    /// A frame's worth, or everything the upstream has sent for now.
    Enough,
    /// The upstream's last message is in.
    Finished,
    /// The upstream failed, or a message could not be written as JSON.
    Failed(GatewayError),
}

/// The most bytes of messages that have already arrived gathered into one body frame. Sending
/// a burst of small messages as one frame costs the connection one write instead of one per
/// message; a frame is never held back to wait for more.
const GATHER_BYTES: usize = 32 * 1024;

/// The response body: pulls messages from upstream each time the connection wants more, so a
/// slow reader slows the upstream through HTTP/2 flow control.
struct MessageBody<Req: 'static, Resp: 'static> {
    encoder: Encoder<Req, Resp>,
    /// Messages encoded and not yet handed to the connection.
    pending: Vec<u8>,
    messages: Guarded<ResponseStream<Resp>>,
    trailers: Option<TrailerSlot>,
    state: State,
    /// The request's record: each message sent, and how the stream ended.
    scope: Option<Arc<Scope>>,
}

impl<Req, Resp: JsonMessage> MessageBody<Req, Resp> {
    /// Writes the messages the upstream has already sent behind `pending`, up to
    /// [`GATHER_BYTES`]; never waits for one.
    ///
    /// Each message is a unit of the task's tokio budget: once the budget is spent the body
    /// stops for the turn and its task is polled again after the worker's other ready tasks.
    /// Without it, a stream whose upstream had a window's worth of messages ready (thousands)
    /// kept its worker for milliseconds at a time, and every other request on that worker
    /// waited behind it.
    fn gather(&mut self, cx: &mut Context<'_>) -> Gathered {
        while self.pending.len() < GATHER_BYTES {
            let Poll::Ready(budget) = tokio::task::coop::poll_proceed(cx) else {
                break;
            };
            match self.messages.poll_next_unpin(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(message))) => {
                    budget.made_progress();
                    if !self.pending.is_empty() && self.pending.capacity() < GATHER_BYTES {
                        // A burst: room for a frame's worth at once, not regrown message by
                        // message.
                        self.pending.reserve(GATHER_BYTES);
                    }
                    if let Err(error) = self.encoder.write(message, &mut self.pending) {
                        return Gathered::Failed(error);
                    }
                    if let Some(scope) = &self.scope {
                        scope.message_out();
                    }
                }
                Poll::Ready(Some(Err(error))) => return Gathered::Failed(error),
                Poll::Ready(None) => return Gathered::Finished,
            }
        }
        Gathered::Enough
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
            match &mut this.state {
                State::Messages => {
                    // The end of the stream goes out with the messages before it.
                    match this.gather(cx) {
                        Gathered::Enough => {}
                        Gathered::Finished => {
                            this.ended(tonic::Code::Ok);
                            this.state = State::Trailers;
                            this.pending.extend_from_slice(this.encoder.end());
                        }
                        Gathered::Failed(failure) => {
                            this.ended(failure.code());
                            this.state =
                                match this.encoder.write_failure(failure, &mut this.pending) {
                                    Ok(()) => State::Done,
                                    Err(failure) => State::Broken(failure.to_string()),
                                };
                        }
                    }
                    if !this.pending.is_empty() {
                        let frame = Bytes::from(mem::take(&mut this.pending));
                        return Poll::Ready(Some(Ok(Frame::data(frame))));
                    }
                    if matches!(this.state, State::Messages) {
                        return Poll::Pending;
                    }
                }
                State::Broken(reason) => {
                    let reason = mem::take(reason);
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(GatewayError::StreamBroken(reason))));
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

#[cfg(test)]
mod tests {
    use futures_util::{Stream, stream};
    use http_body_util::BodyExt as _;
    use prost_types::SourceContext;

    use super::*;
    use crate::binding::BodyRule;
    use crate::route::{RouteInfo, Template};
    use crate::stream::guard::{Activity, Limits};

    static ROUTE: RouteInfo = RouteInfo {
        method: "GET",
        rpc: "test.Files/Watch",
        template: Template {
            text: "/v1/files",
            segments: &[],
            verb: None,
            vars: &[],
        },
        unbound: false,
    };

    static MESSAGES: Binding<SourceContext, SourceContext> = Binding {
        route: &ROUTE,
        body: BodyRule::None,
        query_skip: &[],
        path: &[],
        response: ResponseRule::Message,
    };

    fn file(name: &str) -> Result<SourceContext, tonic::Status> {
        Ok(SourceContext {
            file_name: name.into(),
        })
    }

    /// The response to an upstream answering `messages`, with the default limits and settings.
    async fn respond_to(
        transport: Transport<SourceContext>,
        messages: impl Stream<Item = Result<SourceContext, tonic::Status>> + Send + 'static,
    ) -> Result<Response, GatewayError> {
        let answer = tonic::Response::new(Box::pin(messages) as ResponseStream<SourceContext>);
        let limits = Limits::default();
        let guards = Guards::new(limits, Activity::new(&limits), None);
        let settings = Arc::new(Settings::default());
        respond(&MESSAGES, settings, transport, answer, guards, None).await
    }

    /// The data frames of the response to `messages`, then the error that cut the body off,
    /// if one did. Stops at the first frame that is not ready.
    async fn frames(
        transport: Transport<SourceContext>,
        messages: impl Stream<Item = Result<SourceContext, tonic::Status>> + Send + 'static,
    ) -> (Vec<String>, Option<GatewayError>) {
        let response = respond_to(transport, messages).await.expect("a response");
        let mut body = response.into_body();
        let mut data = Vec::new();
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_millis(50), body.frame());
            match next.await {
                Err(_) | Ok(None) => return (data, None),
                Ok(Some(Ok(frame))) => {
                    if let Ok(bytes) = frame.into_data() {
                        data.push(String::from_utf8(bytes.to_vec()).expect("UTF-8"));
                    }
                }
                Ok(Some(Err(error))) => {
                    let error = error.into_inner().downcast::<GatewayError>().expect("ours");
                    return (data, Some(*error));
                }
            }
        }
    }

    #[tokio::test]
    async fn messages_that_arrived_together_go_out_in_one_frame() {
        let burst = stream::iter([file("a"), file("b"), file("c")]);
        let (data, error) = frames(Transport::Ndjson, burst).await;
        assert!(error.is_none());
        assert_eq!(
            data,
            [
                "{\"result\":{\"fileName\":\"a\"}}\n{\"result\":{\"fileName\":\"b\"}}\n{\"result\":{\"fileName\":\"c\"}}\n"
            ]
        );
    }

    #[tokio::test]
    async fn a_message_is_never_held_back_waiting_for_the_next() {
        // One message, then an upstream that has nothing for a moment, then another.
        let later = stream::once(async {
            tokio::task::yield_now().await;
            file("b")
        });
        let quiet = stream::iter([file("a")]).chain(later);
        let (data, error) = frames(Transport::Sse, quiet).await;
        assert!(error.is_none());
        assert_eq!(
            data,
            [
                "data: {\"fileName\":\"a\"}\n\n",
                "data: {\"fileName\":\"b\"}\n\nevent: end\ndata: {}\n\n"
            ]
        );
    }

    #[tokio::test]
    async fn a_long_burst_gives_its_worker_back_between_turns() {
        let burst = stream::iter((0..1000).map(|i| file(&format!("f{i}"))));
        let response = respond_to(Transport::Ndjson, burst)
            .await
            .expect("a response");
        let mut body = std::pin::pin!(response.into_body());
        let (mut lines, mut turns) = (0, 0);
        loop {
            // One turn of the task: frames until the body says it is not ready.
            turns += 1;
            let ended = std::future::poll_fn(|cx| {
                loop {
                    match http_body::Body::poll_frame(body.as_mut(), cx) {
                        Poll::Pending => return Poll::Ready(false),
                        Poll::Ready(None) => return Poll::Ready(true),
                        Poll::Ready(Some(frame)) => {
                            let frame = frame.expect("a frame");
                            if let Some(data) = frame.data_ref() {
                                lines += data.iter().filter(|b| **b == b'\n').count();
                            }
                        }
                    }
                }
            })
            .await;
            if ended {
                break;
            }
            // The next turn, with a fresh budget.
            tokio::task::yield_now().await;
        }
        assert_eq!(lines, 1000);
        // tokio's budget is 128 a turn.
        assert!(turns >= 1000 / 128, "{turns} turns");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_first_message_does_not_hold_the_head_back() {
        let slow = stream::once(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            file("late")
        });
        let started = tokio::time::Instant::now();
        let response = respond_to(Transport::Sse, slow).await.expect("a response");
        assert_eq!(started.elapsed(), FIRST_MESSAGE_WAIT);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        // The message is the body's, when it comes.
        let mut body = response.into_body();
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        let data = frame.into_data().expect("data");
        assert_eq!(
            &data[..],
            b"data: {\"fileName\":\"late\"}\n\nevent: end\ndata: {}\n\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_fails_at_once_gets_the_mapped_status() {
        let failing = stream::once(async {
            tokio::time::sleep(FIRST_MESSAGE_WAIT / 2).await;
            Err(tonic::Status::not_found("no such feed"))
        });
        let error = respond_to(Transport::Ndjson, failing)
            .await
            .expect_err("the call's failure");
        assert_eq!(error.code(), tonic::Code::NotFound);
    }

    #[tokio::test]
    async fn a_failure_after_a_burst_follows_every_message_before_it() {
        let failing = stream::iter([
            file("a"),
            file("b"),
            file("c"),
            Err(tonic::Status::unavailable("gone")),
        ]);
        let (data, error) = frames(Transport::Sse, failing).await;
        assert!(error.is_none());
        assert_eq!(data.len(), 1, "{data:?}");
        let events = "data: {\"fileName\":\"a\"}\n\ndata: {\"fileName\":\"b\"}\n\ndata: {\"fileName\":\"c\"}\n\n";
        let failure = data[0].strip_prefix(events).expect("the messages first");
        assert!(
            failure.starts_with("event: error\ndata: {\"code\":14"),
            "{failure}"
        );
    }

    #[tokio::test]
    async fn a_raw_stream_gathers_bytes_and_is_cut_off_after_them_on_a_failure() {
        let failing = stream::iter([
            file("one "),
            file("two "),
            file("three"),
            Err(tonic::Status::internal("broken")),
        ]);
        // Each message's file name as the raw bytes of an `HttpBody`.
        let raw = Transport::Raw(|message: SourceContext| RawBody {
            content_type: "text/plain".into(),
            data: message.file_name.into_bytes(),
        });
        let (data, error) = frames(raw, failing).await;
        assert_eq!(data, ["one two three"]);
        assert!(
            matches!(error, Some(GatewayError::StreamBroken(_))),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_frame_holds_at_most_the_gathering_limit_past_one_message() {
        let name = "x".repeat(1000);
        let many = stream::iter((0..200).map(move |_| file(&name)));
        let (data, error) = frames(Transport::Ndjson, many).await;
        assert!(error.is_none());
        let lines: usize = data.iter().map(|frame| frame.matches('\n').count()).sum();
        assert_eq!(lines, 200);
        let line = data[0].len();
        assert!(data.len() > 2, "{} frames", data.len());
        for frame in &data {
            assert!(frame.len() < GATHER_BYTES + line, "{}", frame.len());
        }
    }
}
