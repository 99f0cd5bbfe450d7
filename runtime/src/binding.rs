//! What generated code says about each binding, and the two conversions every RPC shape shares:
//! request parts (body value, query, path) into a message, and a response message into a body.

use std::borrow::{Borrow, BorrowMut};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderValue, Uri, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::call::{BodyLimits, RouteInfo, Settings};
use crate::deadline::Deadlines;
use crate::error::GatewayError;
use crate::json::{self, Codec, JsonError, JsonMessage, MapKey, MapLike, Reader, Writer};
use crate::query;
use crate::route::Captures;

/// Where a binding's request body goes.
pub enum BodyRule<Req: 'static> {
    /// No body is read; every non-path field may come from the query.
    None,
    /// `body: "*"`: the whole body is the request message; a query parameter naming a field is
    /// refused.
    Whole,
    /// `body: "field"`: the body is that field's value; other fields may come from the query.
    Field {
        /// The field's proto name.
        name: &'static str,
        /// Reads the body's JSON value into the field.
        read: fn(&mut Req, &mut Reader<'_>) -> Result<(), JsonError>,
        /// The field's JSON value may itself be an array (a repeated field, `ListValue`,
        /// `Value`), so a top-level array in a message stream is one value, not a list of them.
        array_value: bool,
    },
    /// The body target is a `google.api.HttpBody`: it takes the raw bytes and content type.
    Raw {
        /// Sets the `HttpBody` from the request's content type and a piece of its body.
        set: fn(&mut Req, &str, &[u8]),
        /// `body: "*"`: a query parameter naming a field is refused.
        whole: bool,
    },
}

impl<Req> BodyRule<Req> {
    /// Whether the query may set fields (else the body carries them all).
    fn reads_query(&self) -> bool {
        !matches!(self, BodyRule::Whole | BodyRule::Raw { whole: true, .. })
    }

    /// Whether a top-level JSON array in a message stream holds the messages.
    pub(crate) fn arrays_hold_messages(&self) -> bool {
        match self {
            BodyRule::Field { array_value, .. } => !array_value,
            _ => true,
        }
    }
}

/// Sets the field bound to one path variable from its decoded text.
pub type PathSetter<Req> = fn(&mut Req, &str) -> Result<(), JsonError>;

/// What a response message is sent as.
pub enum ResponseRule<Resp: 'static> {
    /// The whole message as JSON.
    Message,
    /// `response_body`: one field's JSON value.
    Field(fn(&Resp, &mut Writer<'_>)),
    /// A `google.api.HttpBody` (the message or its `response_body` field): written raw.
    Raw(fn(Resp) -> RawBody),
}

/// The parts of a `google.api.HttpBody` the gateway sends.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawBody {
    /// The `Content-Type` of the bytes.
    pub content_type: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Everything the runtime needs to serve one binding, generated as a `static`.
pub struct Binding<Req: 'static, Resp: 'static> {
    /// Method, template and RPC.
    pub route: &'static RouteInfo,
    /// Where the body goes.
    pub body: BodyRule<Req>,
    /// Dotted field paths (proto and JSON spellings) the path variables and the body field set:
    /// a query parameter setting one of them (or a field inside one) is refused.
    pub query_skip: &'static [&'static str],
    /// One setter per template variable, in template order.
    pub path: &'static [PathSetter<Req>],
    /// How each response message is sent.
    pub response: ResponseRule<Resp>,
}

/// What the messages of one call are built from besides their body: the query, the path values
/// and the request's content type.
pub(crate) struct MessageSource<Req: 'static, Resp: 'static> {
    pub binding: &'static Binding<Req, Resp>,
    pub settings: Arc<Settings>,
    /// The request URI, for its query (a cheap, shared copy).
    uri: Uri,
    captures: Captures,
    content_type: Option<HeaderValue>,
    /// The request's `Content-Length`, if it gave one.
    content_length: Option<u64>,
    /// The largest body of a call that sends one message: the route's, else the gateway's.
    pub body_limit: usize,
    /// The most bytes a request stream may send in all: the route's, if it sets one.
    pub stream_limit: Option<usize>,
    /// The request's record, when an observe layer watches it: streams count their messages.
    pub scope: Option<Arc<crate::observe::Scope>>,
}

impl<Req: JsonMessage, Resp> MessageSource<Req, Resp> {
    pub(crate) fn new(
        binding: &'static Binding<Req, Resp>,
        parts: &Parts,
        captures: Captures,
        settings: Arc<Settings>,
    ) -> Self {
        let limits = parts
            .extensions
            .get::<BodyLimits>()
            .copied()
            .unwrap_or_default();
        MessageSource {
            binding,
            uri: parts.uri.clone(),
            captures,
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            content_length: parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse().ok()),
            body_limit: limits.body.unwrap_or(settings.max_body_bytes),
            stream_limit: limits.stream,
            scope: crate::observe::Scope::in_extensions(&parts.extensions).cloned(),
            settings,
        }
    }

    /// The one message of a call whose client sends one: the whole body (up to the body limit,
    /// refused unread when its `Content-Length` says it is larger, not read at all when the
    /// binding takes none), the query and the path.
    pub(crate) async fn read_one(&self, body: Body) -> Result<Req, GatewayError> {
        let body = match self.binding.body {
            BodyRule::None => Bytes::new(),
            _ => {
                let limit = self.body_limit;
                if self.declares_more_than(limit) {
                    return Err(GatewayError::BodyTooLarge { limit });
                }
                let time = self.settings.body_timeout;
                tokio::time::timeout(time, read_body(body, limit))
                    .await
                    .map_err(|_| GatewayError::BodyTooSlow { limit: time })??
            }
        };
        self.message(&body)
    }

    /// Refuses a request stream whose `Content-Length` is beyond the stream limit, before the
    /// call starts.
    pub(crate) fn check_stream_length(&self) -> Result<(), GatewayError> {
        match self.stream_limit {
            Some(limit) if self.declares_more_than(limit) => {
                Err(GatewayError::StreamTooLarge { limit })
            }
            _ => Ok(()),
        }
    }

    /// Whether the request's `Content-Length` is beyond `limit`.
    fn declares_more_than(&self, limit: usize) -> bool {
        self.content_length
            .is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX))
    }

    /// A message from one body value (for a message stream, one element of it), the query and
    /// the path, in that order, so the path wins.
    pub(crate) fn message(&self, body: &[u8]) -> Result<Req, GatewayError> {
        let binding = self.binding;
        let mut message = Req::default();
        match &binding.body {
            BodyRule::None => {}
            BodyRule::Raw { set, .. } => {
                let content_type = self.content_type.as_ref().and_then(|v| v.to_str().ok());
                set(&mut message, content_type.unwrap_or_default(), body);
            }
            BodyRule::Whole | BodyRule::Field { .. } if is_blank(body) => {}
            rule @ (BodyRule::Whole | BodyRule::Field { .. }) => {
                let settings = &*self.settings;
                let mut reader = Reader::new(body, settings.read_options, settings.registry);
                match rule {
                    BodyRule::Field { read, .. } => read(&mut message, &mut reader),
                    _ => json::merge_message(&mut message, &mut reader),
                }
                .and_then(|()| reader.finish())
                .map_err(GatewayError::Body)?;
            }
        }
        let query = self.uri.query().unwrap_or_default();
        if binding.body.reads_query() {
            query::apply(
                &mut message,
                query,
                binding.query_skip,
                self.settings.reject_unknown_query,
            )?;
        } else {
            query::refuse_fields::<Req>(query, self.settings.reject_unknown_query)?;
        }
        for ((field, value), set) in self.captures.iter().zip(binding.path) {
            set(&mut message, value).map_err(|error| GatewayError::Path {
                field: field.to_owned(),
                error,
            })?;
        }
        Ok(message)
    }
}

/// A response message as sent.
pub(crate) enum Encoded {
    /// JSON text.
    Json(Vec<u8>),
    /// A raw `HttpBody`.
    Raw(RawBody),
}

/// Writes `message` as JSON (whole or its `response_body` field) into `buf`.
pub(crate) fn write_json<Resp: JsonMessage>(
    rule: &ResponseRule<Resp>,
    message: &Resp,
    settings: &Settings,
    buf: &mut Vec<u8>,
) -> Result<(), GatewayError> {
    let mut writer = Writer::new(buf, settings.write_options, settings.registry);
    match rule {
        ResponseRule::Field(write) => write(message, &mut writer),
        ResponseRule::Message | ResponseRule::Raw(_) => {
            writer.begin_object();
            message.write_fields(&mut writer);
            writer.end_object();
        }
    }
    writer.finish().map_err(GatewayError::Encode)
}

/// One response message as its rule says.
pub(crate) fn encode<Resp: JsonMessage>(
    rule: &ResponseRule<Resp>,
    message: Resp,
    settings: &Settings,
) -> Result<Encoded, GatewayError> {
    match rule {
        ResponseRule::Raw(raw) => Ok(Encoded::Raw(raw(message))),
        _ => {
            let mut buf = Vec::with_capacity(settings.response_capacity);
            write_json(rule, &message, settings, &mut buf)?;
            Ok(Encoded::Json(buf))
        }
    }
}

/// The upstream request for `message`: metadata from the headers, and the deadline that
/// `deadlines` give for the client's `Grpc-Timeout` (or its absence).
pub(crate) fn upstream_request<T>(
    message: T,
    parts: &Parts,
    deadlines: Deadlines,
    mapping: &crate::metadata::HeaderMapping,
) -> Result<(tonic::Request<T>, Option<Duration>), GatewayError> {
    let remote = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    let mut upstream = tonic::Request::new(message);
    *upstream.metadata_mut() = crate::metadata::request_metadata(
        &parts.headers,
        parts.uri.authority().map(http::uri::Authority::as_str),
        remote,
        mapping,
    )?;
    // The request's record goes along: the metadata it adds (its id, a trace context), and to
    // the transport, which tonic hands the request's extensions (the built-in upstream notes
    // its endpoint there).
    if let Some(scope) = crate::observe::Scope::in_extensions(&parts.extensions) {
        scope.write_upstream_metadata(upstream.metadata_mut());
        upstream.extensions_mut().insert(Arc::clone(scope));
    }
    let timeout = deadlines.resolve(crate::metadata::grpc_timeout(&parts.headers)?);
    if let Some(timeout) = timeout {
        upstream.set_timeout(timeout);
    }
    Ok((upstream, timeout))
}

/// Reads the whole body, up to `limit` bytes.
///
/// A body in one piece is kept as it came; one in several is copied into a buffer of its own as
/// it comes. Each piece the server hands over is a slice of its read buffer and keeps that whole
/// buffer alive: kept piece by piece, a body sent a byte at a time held about 4 KiB of memory
/// per byte received (200 such clients took the gateway from 14 to 68 MiB in 30 s).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            if error.is::<LengthLimitError>() {
                GatewayError::BodyTooLarge { limit }
            } else {
                GatewayError::from_body(error)
            }
        })?;
        // Trailers are not part of a message.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if first.is_none() && joined.is_empty() {
            first = Some(data);
            continue;
        }
        if let Some(first) = first.take() {
            joined.extend_from_slice(&first);
        }
        joined.extend_from_slice(&data);
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// The message in an optional (possibly boxed) field, created if absent: for nested path fields.
pub fn message_mut<M: Default, S: BorrowMut<M> + Default>(slot: &mut Option<S>) -> &mut M {
    slot.get_or_insert_with(S::default).borrow_mut()
}

/// `response_body` of a singular field: its value, default or not.
pub fn body_value<C: Codec>(value: &C::Value, w: &mut Writer<'_>) {
    C::write(value, w);
}

/// `response_body` of a oneof member that is not set: the default of its type.
pub fn body_default<C: Codec>(w: &mut Writer<'_>)
where
    C::Value: Default,
{
    C::write(&C::Value::default(), w);
}

/// `response_body` of an optional field or well-known type: `null` when absent.
pub fn body_optional<C: Codec>(value: &Option<C::Value>, w: &mut Writer<'_>) {
    match value {
        Some(value) => C::write(value, w),
        None => w.null(),
    }
}

/// `response_body` of a message field: the message, or an empty object when absent.
pub fn body_message<M: JsonMessage, S: Borrow<M>>(value: &Option<S>, w: &mut Writer<'_>) {
    w.begin_object();
    if let Some(message) = value {
        message.borrow().write_fields(w);
    }
    w.end_object();
}

/// `response_body` of a repeated field: an array, empty or not.
pub fn body_repeated<C: Codec>(values: &[C::Value], w: &mut Writer<'_>) {
    w.begin_array();
    for value in values {
        C::write(value, w);
    }
    w.end_array();
}

/// `response_body` of a map field: an object, empty or not.
pub fn body_map<K, V, M>(map: &M, w: &mut Writer<'_>)
where
    K: MapKey,
    V: Codec,
    K::Value: Eq + std::hash::Hash + Ord,
    M: MapLike<K::Value, V::Value>,
{
    json::write_map_value::<K, V, M>(map, w);
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::StreamExt as _;
    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;

    /// A server's read buffer, counted while alive.
    struct ReadBuffer(Arc<AtomicUsize>, Vec<u8>);

    impl AsRef<[u8]> for ReadBuffer {
        fn as_ref(&self) -> &[u8] {
            &self.1
        }
    }

    impl Drop for ReadBuffer {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A body of `pieces`, each one byte sliced out of an 8 KiB read buffer of its own; `most`
    /// is the most read buffers alive at once while it is read.
    fn trickled(pieces: u8, alive: &Arc<AtomicUsize>, most: &Arc<AtomicUsize>) -> Body {
        let (alive, most) = (Arc::clone(alive), Arc::clone(most));
        let frames = futures_util::stream::iter(0..pieces).map(move |i| {
            let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let buffer = ReadBuffer(Arc::clone(&alive), vec![b'a' + i % 26; 8192]);
            Ok::<_, Infallible>(Frame::data(Bytes::from_owner(buffer).slice(0..1)))
        });
        Body::new(StreamBody::new(frames))
    }

    #[tokio::test]
    async fn a_body_in_pieces_keeps_none_of_the_buffers_they_came_in() {
        let (alive, most) = (Arc::default(), Arc::default());
        let read = read_body(trickled(100, &alive, &most), 1024)
            .await
            .expect("read");
        assert_eq!(read.len(), 100);
        assert_eq!(&read[..3], b"abc");
        // The first piece is kept until a second comes; each later one is copied at once.
        assert!(
            most.load(Ordering::SeqCst) <= 2,
            "{most:?} read buffers alive at once"
        );
        assert_eq!(alive.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_body_in_one_piece_is_kept_as_it_came() {
        let piece = Bytes::from_static(b"{\"name\":\"x\"}");
        let read = read_body(Body::from(piece.clone()), 1024)
            .await
            .expect("read");
        assert_eq!(read.as_ptr(), piece.as_ptr(), "copied");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_naming_it() {
        let (alive, most) = (Arc::default(), Arc::default());
        let error = read_body(trickled(100, &alive, &most), 99)
            .await
            .expect_err("too large");
        assert!(
            matches!(error, GatewayError::BodyTooLarge { limit: 99 }),
            "{error:?}"
        );
    }
}
