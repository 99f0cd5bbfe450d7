//! Streaming RPCs over WebSocket, on the same routes as over HTTP.
//!
//! - Requests: each text (or binary) frame is one request message, read like an HTTP body with
//!   the query and path applied. An empty frame ends the request stream (a half close: the
//!   responses still come); a close frame ends the whole call. For a server-streaming RPC whose
//!   binding has a body, the first frame is that body.
//! - Responses: one text frame per message (a binary frame per raw `HttpBody`); a clean end
//!   closes with 1000, a failure with 4000 + the gRPC code and the google.rpc.Status JSON (code
//!   and message, shortened to fit) as the reason.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::guard::{Activity, Guarded, Guards, Limits};
use super::input::Failure;
use super::{Answer, Input, RequestStream, ResponseStream, Rpc, limits, until_answer};
use crate::abort::AbortSignal;
use crate::binding::{self, Binding, BodyRule, Encoded, MessageSource};
use crate::call::Call;
use crate::error::GatewayError;
use crate::json::JsonMessage;
use crate::observe::{Hold, StreamTransport};

/// Accepts the upgrade and runs the call on the socket. Problems found before the upgrade
/// (headers, path, query) are answered over HTTP.
pub(crate) async fn serve<Req, Resp>(
    binding: &'static Binding<Req, Resp>,
    rpc: Rpc<Req, Resp>,
    call: Call,
) -> Result<Response, GatewayError>
where
    Req: JsonMessage + Send,
    Resp: JsonMessage + Send,
{
    let Call {
        request,
        captures,
        settings,
        deadlines,
        // A WebSocket answers in messages, never with an HTTP status of its own.
        success: _,
    } = call;
    let (mut parts, _) = request.into_parts();
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|rejection| GatewayError::WebSocket(rejection.into()))?;
    // The session outlives the connection's HTTP/1 state, read buffer included.
    super::detach(&mut parts);
    let source = MessageSource::new(binding, &parts, captures, Arc::clone(&settings));
    // A request with no body to wait for is built, and checked, before the upgrade is accepted.
    let opening = match binding.body {
        BodyRule::None if !rpc.streams_requests() => Some(source.message(&[])?),
        _ => None,
    };
    let (upstream, deadline) =
        binding::upstream_request((), &parts, deadlines.for_streams(), &settings.headers)?;
    // The request goes on past its 101 answer, for as long as the session lasts.
    let hold = source.scope.as_ref().map(|scope| {
        scope.stream_opened(StreamTransport::WebSocket);
        scope.hold()
    });
    let session = Session {
        source: Arc::new(source),
        upstream,
        limits: limits(&settings, deadline),
        hold,
    };
    Ok(upgrade
        .max_message_size(settings.max_message_bytes)
        .max_frame_size(settings.max_message_bytes)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .on_upgrade(move |socket| session.run(socket, rpc, opening)))
}

/// What a WebSocket session reads from its connection at a time. The library's default, 128 KiB
/// allocated up front for every session, made a held-open stream cost some 150 KiB: a gateway
/// holding thousands of streams reads small messages, and a larger one still arrives whole (the
/// frame buffer grows to it, up to `max_message_bytes`). Written messages go out at once (a
/// write buffer of 0): each one is a stream item the client waits for.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// How long the closing frame may wait for a client to take it before the connection is
/// dropped without it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

struct Session<Req: 'static, Resp: 'static> {
    source: Arc<MessageSource<Req, Resp>>,
    upstream: tonic::Request<()>,
    limits: Limits,
    /// Keeps the request open until the session ends.
    hold: Option<Hold>,
}

/// What ends a session: messages went through, or a failure to close with.
type Outcome = Result<(), GatewayError>;

type Sink = SplitSink<WebSocket, Message>;
type Frames = SplitStream<WebSocket>;

/// What the reader does with the frames after the first.
enum Reader<Req> {
    /// Feeds them upstream as request messages; dropping the sender ends the request stream.
    Messages(mpsc::Sender<Req>),
    /// Only watches for the client going away: the call has its one request message.
    Watch,
}

impl<Req, Resp> Session<Req, Resp>
where
    Req: JsonMessage + Send,
    Resp: JsonMessage + Send,
{
    /// Runs the call; `opening` is its request message when it was built before the upgrade.
    async fn run(mut self, socket: WebSocket, rpc: Rpc<Req, Resp>, opening: Option<Req>) {
        let (mut sink, frames) = socket.split();
        let hold = self.hold.take();
        let outcome = self.exchange(&mut sink, frames, rpc, opening).await;
        if let Some(hold) = &hold {
            hold.scope().set_code(match &outcome {
                Ok(()) => tonic::Code::Ok,
                Err(error) => error.code(),
            });
        }
        let close = match outcome {
            Ok(()) => CloseFrame {
                code: 1000,
                reason: Utf8Bytes::from_static(""),
            },
            // Going away: the client may call again, elsewhere.
            Err(GatewayError::Draining) => CloseFrame {
                code: 1001,
                reason: Utf8Bytes::from_static("the gateway is shutting down"),
            },
            Err(error) => close_frame(&error.into_status()),
        };
        // The client may be gone already, or not reading: there is nobody left to tell, and
        // the session is not held for it.
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(close)))).await;
    }

    async fn exchange(
        self,
        sink: &mut Sink,
        mut frames: Frames,
        rpc: Rpc<Req, Resp>,
        opening: Option<Req>,
    ) -> Outcome {
        let Session {
            source,
            upstream,
            limits,
            hold: _,
        } = self;
        let rpc_name = source.binding.route.rpc;
        // A send that waits this long on a client that does not read ends the session, as an
        // idle stream would: its messages stay stuck in the gateway meanwhile.
        let stall = limits.idle;
        let activity = Activity::new(&limits);
        let signal = AbortSignal::default();
        let (failure, failure_rx) = Failure::channel(signal.clone());
        let guards = Guards::new(limits, activity.clone(), Some(failure_rx))
            .until_drained(source.settings.drain.as_ref());
        // The reader runs beside the call and is stopped when the call ends.
        let read = |frames, reader| {
            AbortOnDrop(tokio::spawn(read_frames(
                frames,
                reader,
                Arc::clone(&source),
                failure,
                activity,
            )))
        };
        let (request, reader) = if rpc.streams_requests() {
            let (sender, receiver) = mpsc::channel::<Req>(1);
            let messages = request_stream(receiver, signal.clone());
            let mut request = upstream.map(|()| Input::Stream(messages));
            request.extensions_mut().insert(signal.clone());
            (request, Reader::Messages(sender))
        } else {
            let message = match opening {
                Some(message) => message,
                None => match next_data(&mut frames).await {
                    Some(body) => {
                        observe_in(&source, &body);
                        source.message(&body)?
                    }
                    None => return Err(GatewayError::ClientClosed),
                },
            };
            (upstream.map(|()| Input::One(message)), Reader::Watch)
        };
        let _reader = read(frames, reader);
        let (answer, guards) = until_answer(rpc.call(request), guards, rpc_name).await?;
        match answer {
            Answer::One(answer) => send(sink, &source, answer.into_inner(), stall).await,
            Answer::Stream(answer) => {
                forward(
                    sink,
                    &source,
                    Guarded::new(answer.into_inner(), guards),
                    stall,
                )
                .await
            }
        }
    }
}

/// Sends every response message, then ends with the stream's outcome.
async fn forward<Req, Resp: JsonMessage>(
    sink: &mut Sink,
    source: &MessageSource<Req, Resp>,
    mut responses: Guarded<ResponseStream<Resp>>,
    stall: Option<Duration>,
) -> Outcome {
    while let Some(message) = responses.next().await {
        send(sink, source, message?, stall).await?;
    }
    Ok(())
}

/// Sends one response message as a frame; fails with [`GatewayError::StreamIdle`] when the
/// client has not taken it within `stall`.
async fn send<Req, Resp: JsonMessage>(
    sink: &mut Sink,
    source: &MessageSource<Req, Resp>,
    message: Resp,
    stall: Option<Duration>,
) -> Outcome {
    let encoded = binding::encode(&source.binding.response, message, &source.settings)?;
    if let Some(scope) = &source.scope {
        scope.message_out();
        scope.add_bytes_out(match &encoded {
            Encoded::Json(json) => json.len(),
            Encoded::Raw(raw) => raw.data.len(),
        });
    }
    let frame = match encoded {
        Encoded::Json(json) => match String::from_utf8(json) {
            Ok(text) => Message::Text(text.into()),
            Err(error) => Message::Binary(error.into_bytes().into()),
        },
        Encoded::Raw(raw) => Message::Binary(raw.data.into()),
    };
    let sent = match stall {
        Some(limit) => tokio::time::timeout(limit, sink.send(frame))
            .await
            .map_err(|_| GatewayError::StreamIdle { limit })?,
        None => sink.send(frame).await,
    };
    sent.map_err(|error| GatewayError::WebSocket(error.into()))
}

/// Counts one request message of `data` into the request's record.
fn observe_in<Req, Resp>(source: &MessageSource<Req, Resp>, data: &[u8]) {
    if let Some(scope) = &source.scope {
        scope.message_in();
        scope.add_bytes_in(data.len());
    }
}

/// The payload of the next data frame; `None` once the client closes or goes away.
async fn next_data(frames: &mut Frames) -> Option<Bytes> {
    loop {
        match frames.next().await? {
            Ok(Message::Text(text)) => return Some(Bytes::from(text)),
            Ok(Message::Binary(data)) => return Some(data),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}

/// Reads the frames after the first: request messages, the end of the request stream (an empty
/// frame), or the client leaving, which fails the call so that it is cancelled upstream.
async fn read_frames<Req: JsonMessage, Resp>(
    mut frames: Frames,
    mut reader: Reader<Req>,
    source: Arc<MessageSource<Req, Resp>>,
    mut failure: Failure,
    activity: Activity,
) {
    let mut index = 0;
    let error = loop {
        let Some(data) = next_data(&mut frames).await else {
            break GatewayError::ClientClosed;
        };
        let Reader::Messages(sender) = &reader else {
            break GatewayError::WebSocket(
                "no more request messages are taken: the request stream has ended".into(),
            );
        };
        let message = match frame_message(&source, &data, index) {
            Ok(Some(message)) => message,
            Ok(None) => {
                reader = Reader::Watch;
                continue;
            }
            Err(error) => break error,
        };
        index += 1;
        activity.touch();
        if sender.send(message).await.is_err() {
            // The call no longer reads requests: it has ended.
            return;
        }
    };
    failure.fail(error);
}

/// The request message of a data frame after the first, the `index`-th of the stream: `None`
/// for a blank frame, which ends the request stream.
pub(crate) fn frame_message<Req: JsonMessage, Resp>(
    source: &MessageSource<Req, Resp>,
    data: &[u8],
    index: usize,
) -> Result<Option<Req>, GatewayError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    observe_in(source, data);
    source
        .message(data)
        .map(Some)
        .map_err(|error| GatewayError::StreamMessage {
            index,
            error: Box::new(error),
        })
}

/// The request stream fed by the reader. When the reader stops on a failure, the stream stays
/// pending (the abort signal fails the call) instead of ending as though the client had finished.
fn request_stream<Req: Send + 'static>(
    receiver: mpsc::Receiver<Req>,
    signal: AbortSignal,
) -> RequestStream<Req> {
    RequestStream::new(futures_util::stream::unfold(
        (receiver, signal),
        |(mut receiver, signal)| async move {
            match receiver.recv().await {
                Some(message) => Some((message, (receiver, signal))),
                None if signal.is_triggered() => std::future::pending().await,
                None => None,
            }
        },
    ))
}

/// The close frame for a failed call: 4000 + the gRPC code, and the status as JSON, its message
/// shortened to fit the 123 bytes a close reason may have.
pub(crate) fn close_frame(status: &tonic::Status) -> CloseFrame {
    let code = status.code() as u16;
    let mut message = status.message().to_owned();
    let reason = loop {
        let mut reason = Vec::new();
        let shortened = tonic::Status::new(status.code(), message.clone());
        crate::status::write_status_json(&shortened, &crate::json::Registry::EMPTY, &mut reason);
        if reason.len() <= 123 || message.is_empty() {
            break String::from_utf8(reason).unwrap_or_default();
        }
        let mut cut = message.len().saturating_sub(reason.len() - 120);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    };
    CloseFrame {
        code: 4000 + code,
        reason: reason.into(),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_in_a_close_frame() {
        let status = tonic::Status::invalid_argument("é".repeat(200));
        let frame = close_frame(&status);
        assert_eq!(frame.code, 4003);
        assert!(frame.reason.len() <= 123, "{}", frame.reason.len());
        let value: serde_json::Value =
            serde_json::from_str(frame.reason.as_str()).expect("JSON reason");
        assert_eq!(value["code"], 3);
        assert!(value["message"].as_str().expect("message").ends_with('…'));

        let frame = close_frame(&tonic::Status::not_found("no such room"));
        assert_eq!(frame.code, 4005);
        assert_eq!(
            frame.reason.as_str(),
            r#"{"code":5,"message":"no such room","details":[]}"#
        );
    }
}
