//! Server-, client- and bidi-streaming RPCs over HTTP (newline-delimited JSON, Server-Sent
//! Events, raw `HttpBody` bytes) and WebSocket.
//!
//! Request messages go upstream one by one as they complete in the body and response messages
//! come back one by one as they arrive, so a bidi call is full duplex wherever the client is.
//! Both directions are pulled, never buffered: a slow reader slows the upstream through HTTP/2
//! flow control, and a client that goes away drops the call, which cancels it upstream.

mod guard;
mod input;
mod output;
mod split;
mod ws;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use futures_util::{Stream, StreamExt};
use tonic::codec::Codec;

use crate::abort::{AbortSignal, Abortable};
use crate::binding::{self, Binding, MessageSource};
use crate::call::{BoxFuture, Call, Settings, UnaryFuture};
use crate::error::GatewayError;
use crate::json::JsonMessage;
use guard::{Activity, Guarded, Guards, Limits};
use input::{BodyMessages, Failure, LocalFrames};
use output::Transport;
pub(crate) use split::Splitter;
pub(crate) use ws::{close_frame, frame_message};

/// The messages a client streams to the upstream.
///
/// A named type rather than a boxed trait object alias: tonic's streaming client methods are
/// generic over the stream, and a concrete type keeps their futures provably `Send`.
pub struct RequestStream<T>(Pin<Box<dyn Stream<Item = T> + Send + 'static>>);

impl<T> RequestStream<T> {
    /// Wraps a stream of messages.
    pub fn new(messages: impl Stream<Item = T> + Send + 'static) -> Self {
        RequestStream(Box::pin(messages))
    }
}

impl<T> Stream for RequestStream<T> {
    type Item = T;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl<T> std::fmt::Debug for RequestStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestStream")
    }
}

/// The messages an upstream streams back, ended early by an error status.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

/// What a backend returns for a server- or bidi-streaming call.
pub type StreamFuture<T> = BoxFuture<Result<tonic::Response<ResponseStream<T>>, tonic::Status>>;

/// A tonic response stream (a remote `Streaming`, or an in-process service's own stream) as
/// the gateway takes it.
pub fn boxed_response<S, T>(response: tonic::Response<S>) -> tonic::Response<ResponseStream<T>>
where
    S: Stream<Item = Result<T, tonic::Status>> + Send + 'static,
{
    response.map(|messages| Box::pin(messages) as ResponseStream<T>)
}

/// A request stream as an in-process tonic service takes it: encoded and decoded as though it
/// had crossed the network, so the service reads it with tonic's own `Streaming`. A request
/// stream the gateway abandons reaches the service as an error, never as a clean end.
pub fn local_request<T>(
    request: tonic::Request<RequestStream<T>>,
) -> tonic::Request<tonic::Streaming<T>>
where
    T: prost::Message + Default + Send + 'static,
{
    let (metadata, extensions, messages) = request.into_parts();
    let signal = extensions.get::<AbortSignal>().cloned().unwrap_or_default();
    let decoder = tonic_prost::ProstCodec::<T, T>::default().decoder();
    let body = Abortable {
        inner: LocalFrames { messages },
        signal,
    };
    let streaming = tonic::Streaming::new_request(decoder, body, None, None);
    tonic::Request::from_parts(metadata, extensions, streaming)
}

/// How a route reaches a streaming RPC, by shape.
pub(crate) enum Rpc<Req, Resp> {
    Server(Arc<dyn Fn(tonic::Request<Req>) -> StreamFuture<Resp> + Send + Sync>),
    Client(Arc<dyn Fn(tonic::Request<RequestStream<Req>>) -> UnaryFuture<Resp> + Send + Sync>),
    Bidi(Arc<dyn Fn(tonic::Request<RequestStream<Req>>) -> StreamFuture<Resp> + Send + Sync>),
}

/// The request side of a streaming call, as a transport hands it to [`Rpc::call`].
pub(crate) enum Input<Req> {
    /// The one request message of a server-streaming call.
    One(Req),
    /// The request stream of a client- or bidi-streaming call.
    Stream(RequestStream<Req>),
}

/// What a streaming call answers.
pub(crate) enum Answer<Resp> {
    /// The one response message of a client-streaming call.
    One(tonic::Response<Resp>),
    /// The response stream of a server- or bidi-streaming call.
    Stream(tonic::Response<ResponseStream<Resp>>),
}

impl<Req: Send + 'static, Resp: Send + 'static> Rpc<Req, Resp> {
    /// Whether the client streams its requests (client and bidi streaming): a transport then
    /// hands [`Input::Stream`] to [`Rpc::call`], and [`Input::One`] otherwise.
    pub(crate) fn streams_requests(&self) -> bool {
        !matches!(self, Rpc::Server(_))
    }

    /// Starts the call: the one place that tells the three shapes apart, so that each transport
    /// deals only with one message or a stream of them, each way.
    pub(crate) fn call(
        &self,
        request: tonic::Request<Input<Req>>,
    ) -> BoxFuture<Result<Answer<Resp>, tonic::Status>> {
        let (metadata, extensions, input) = request.into_parts();
        match (self, input) {
            (Rpc::Server(call), Input::One(message)) => {
                let pending = call(tonic::Request::from_parts(metadata, extensions, message));
                Box::pin(async move { pending.await.map(Answer::Stream) })
            }
            (Rpc::Client(call), Input::Stream(messages)) => {
                let pending = call(tonic::Request::from_parts(metadata, extensions, messages));
                Box::pin(async move { pending.await.map(Answer::One) })
            }
            (Rpc::Bidi(call), Input::Stream(messages)) => {
                let pending = call(tonic::Request::from_parts(metadata, extensions, messages));
                Box::pin(async move { pending.await.map(Answer::Stream) })
            }
            // Transports ask `streams_requests` first; a mismatch is the gateway's own bug.
            _ => Box::pin(std::future::ready(Err(tonic::Status::internal(
                "the gateway built the wrong kind of request for this streaming call",
            )))),
        }
    }
}

impl<Req, Resp> Clone for Rpc<Req, Resp> {
    fn clone(&self) -> Self {
        match self {
            Rpc::Server(call) => Rpc::Server(Arc::clone(call)),
            Rpc::Client(call) => Rpc::Client(Arc::clone(call)),
            Rpc::Bidi(call) => Rpc::Bidi(Arc::clone(call)),
        }
    }
}

/// Serves one request of a streaming RPC over HTTP, or over WebSocket when it asks to upgrade.
pub(crate) async fn serve<Req, Resp>(
    binding: &'static Binding<Req, Resp>,
    rpc: &Rpc<Req, Resp>,
    call: Call,
) -> Result<Response, GatewayError>
where
    Req: JsonMessage + Send,
    Resp: JsonMessage + Send,
{
    if crate::metadata::is_upgrade(call.request.headers()) {
        return ws::serve(binding, rpc.clone(), call).await;
    }
    let Call {
        request,
        captures,
        settings,
        deadlines,
        success,
    } = call;
    let (mut parts, body) = request.into_parts();
    let transport = Transport::choose(&parts.headers, &binding.response);
    detach(&mut parts);
    let source = MessageSource::new(binding, &parts, captures, Arc::clone(&settings));
    let scope = source.scope.clone();
    if let Some(scope) = &scope {
        scope.stream_opened(transport.observed());
    }
    let (upstream, deadline) =
        binding::upstream_request((), &parts, deadlines.for_streams(), &settings.headers)?;
    let limits = limits(&settings, deadline);
    let activity = Activity::new(&limits);
    let rpc_name = binding.route.rpc;

    let (request, guards) = if rpc.streams_requests() {
        source.check_stream_length()?;
        body_stream(upstream, body, source, limits, activity)
    } else {
        let message = source.read_one(body).await?;
        let guards = Guards::new(limits, activity, None).until_drained(settings.drain.as_ref());
        (upstream.map(|()| Input::One(message)), guards)
    };
    let (answer, guards) = until_answer(rpc.call(request), guards, rpc_name).await?;
    match answer {
        Answer::One(answer) => crate::respond::respond(binding, answer, &settings, success),
        Answer::Stream(answer) => {
            output::respond(binding, settings, transport, answer, guards, scope).await
        }
    }
}

/// Copies the request's URI and `Content-Type` out of the buffer the connection read them into,
/// before a stream's [`MessageSource`] keeps them for the stream's life.
///
/// hyper hands out a request's head as slices of its connection's read buffer, and one slice
/// keeps the whole buffer (8 KiB or more) allocated. A held-open stream would keep a read buffer
/// its HTTP/1 connection has since replaced (it reads on while the response streams), or one a
/// WebSocket's connection no longer has: more than all else the stream holds.
pub(crate) fn detach(parts: &mut http::request::Parts) {
    if let Ok(uri) = http::Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    if let Some(value) = parts.headers.get_mut(http::header::CONTENT_TYPE)
        && let Ok(copy) = http::HeaderValue::from_bytes(value.as_bytes())
    {
        *value = copy;
    }
}

/// The upstream request of a client or bidi call: the messages of the request body, and the
/// guards that watch it for failure.
fn body_stream<Req: JsonMessage + Send, Resp: Send>(
    upstream: tonic::Request<()>,
    body: axum::body::Body,
    source: MessageSource<Req, Resp>,
    limits: Limits,
    activity: Activity,
) -> (tonic::Request<Input<Req>>, Guards) {
    let signal = AbortSignal::default();
    let (failure, failure_rx) = Failure::channel(signal.clone());
    let drain = source.settings.drain.clone();
    let messages = BodyMessages::new(body, Arc::new(source), failure, activity.clone());
    let mut request = upstream.map(|()| Input::Stream(RequestStream::new(messages)));
    request.extensions_mut().insert(signal);
    let guards = Guards::new(limits, activity, Some(failure_rx)).until_drained(drain.as_ref());
    (request, guards)
}

/// The stream limits of one call: the gateway's, and the client's `Grpc-Timeout` if sooner.
fn limits(settings: &Settings, deadline: Option<Duration>) -> Limits {
    let duration = match (settings.stream_max_duration, deadline) {
        (Some(limit), Some(deadline)) => Some(limit.min(deadline)),
        (limit, deadline) => limit.or(deadline),
    };
    Limits {
        idle: settings.stream_idle_timeout,
        duration,
    }
}

/// Awaits the upstream's answer (its headers, or its one message) while the guards watch; gives
/// the guards back to watch the rest of the call.
async fn until_answer<T>(
    pending: BoxFuture<Result<T, tonic::Status>>,
    guards: Guards,
    rpc: &str,
) -> Result<(T, Guards), GatewayError> {
    let mut guarded = Guarded::new(futures_util::stream::once(pending), guards);
    match guarded.next().await {
        Some(Ok(answer)) => Ok((answer, guarded.into_guards())),
        Some(Err(error)) => Err(error),
        None => Err(GatewayError::Upstream(tonic::Status::internal(format!(
            "{rpc} ended without an answer"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_detached_head_shares_nothing_with_the_buffer_it_was_read_into() {
        // As hyper reads a head: one buffer, the URI and the values slices of it.
        let read = Bytes::from(b"/v1/watch/s1?everyMs=2000 application/json".to_vec());
        let (mut parts, ()) = http::Request::builder()
            .uri(http::Uri::from_maybe_shared(read.slice(..25)).expect("a URI"))
            .header(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_maybe_shared(read.slice(26..)).expect("a value"),
            )
            .body(())
            .expect("a request")
            .into_parts();
        let within = |bytes: &[u8]| read.as_ptr_range().contains(&bytes.as_ptr());
        assert!(within(parts.uri.path().as_bytes()), "shared before");

        detach(&mut parts);
        assert_eq!(parts.uri, "/v1/watch/s1?everyMs=2000");
        assert_eq!(parts.uri.query(), Some("everyMs=2000"));
        assert!(!within(parts.uri.path().as_bytes()));
        assert!(!within(parts.uri.query().unwrap_or_default().as_bytes()));
        let content_type = &parts.headers[http::header::CONTENT_TYPE];
        assert_eq!(content_type, "application/json");
        assert!(!within(content_type.as_bytes()));
    }
}
