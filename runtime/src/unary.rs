//! The unary pipeline: HTTP request -> typed message (body, query, path) -> upstream call ->
//! JSON response with metadata headers.

use std::borrow::{Borrow, BorrowMut};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::GatewayError;
use crate::json::{self, Codec, JsonError, JsonMessage, MapKey, MapLike, Reader, Writer};
use crate::query;
use crate::service::{Call, RouteInfo, UnaryFuture};
use crate::upstream::TrailerSlot;

/// Where a binding's request body goes.
pub enum BodyRule<Req: 'static> {
    /// No body is read; every non-path field may come from the query.
    None,
    /// `body: "*"`: the whole body is the request message; the query is not read.
    Whole,
    /// `body: "field"`: the body is that field's value; other fields may come from the query.
    Field {
        /// The field's proto name.
        name: &'static str,
        /// Reads the body's JSON value into the field.
        read: fn(&mut Req, &mut Reader<'_>) -> Result<(), JsonError>,
    },
}

/// Sets the field bound to one path variable from its decoded text.
pub type PathSetter<Req> = fn(&mut Req, &str) -> Result<(), JsonError>;

/// Writes the `response_body` field of a response.
pub type ResponseBody<Resp> = fn(&Resp, &mut Writer<'_>);

/// Everything the runtime needs to serve one unary binding, generated as a `static`.
pub struct UnaryBinding<Req: 'static, Resp: 'static> {
    /// Method, template and RPC.
    pub route: &'static RouteInfo,
    /// Where the body goes.
    pub body: BodyRule<Req>,
    /// Dotted field paths (proto and JSON spellings) never taken from the query: path variables
    /// and the body field.
    pub query_skip: &'static [&'static str],
    /// One setter per template variable, in template order.
    pub path: &'static [PathSetter<Req>],
    /// The response field sent instead of the whole message.
    pub response_body: Option<ResponseBody<Resp>>,
}

/// Serves one request for `binding` by calling `call`.
pub(crate) async fn serve<Req, Resp, F>(
    binding: &'static UnaryBinding<Req, Resp>,
    call: &F,
    request: Call,
) -> Result<Response, GatewayError>
where
    Req: JsonMessage + Send,
    Resp: JsonMessage + Send,
    F: Fn(tonic::Request<Req>) -> UnaryFuture<Resp>,
{
    let Call {
        request,
        captures,
        settings,
    } = request;
    let registry = settings.registry;
    let (parts, body) = request.into_parts();
    let mut message = Req::default();

    if !matches!(binding.body, BodyRule::None) {
        let bytes = read_body(body, settings.max_body_bytes).await?;
        if !is_blank(&bytes) {
            let mut reader = Reader::new(&bytes, settings.read_options, registry);
            match &binding.body {
                BodyRule::Whole => json::merge_message(&mut message, &mut reader),
                BodyRule::Field { read, .. } => read(&mut message, &mut reader),
                BodyRule::None => Ok(()),
            }
            .and_then(|()| reader.finish())
            .map_err(GatewayError::Body)?;
        }
    }
    if !matches!(binding.body, BodyRule::Whole) {
        query::apply(
            &mut message,
            parts.uri.query().unwrap_or_default(),
            binding.query_skip,
            settings.reject_unknown_query,
        )?;
    }
    for ((field, value), set) in captures.iter().zip(binding.path) {
        set(&mut message, value).map_err(|error| GatewayError::Path {
            field: field.to_owned(),
            error,
        })?;
    }

    let remote = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    let mut upstream = tonic::Request::new(message);
    *upstream.metadata_mut() = crate::metadata::request_metadata(&parts.headers, remote)?;
    let timeout = crate::metadata::grpc_timeout(&parts.headers)?.or(settings.default_timeout);
    if let Some(timeout) = timeout {
        upstream.set_timeout(timeout);
    }
    let started = tokio::time::Instant::now();
    let pending = call(upstream);
    let past_deadline = |timeout| {
        tonic::Status::deadline_exceeded(format!(
            "{} did not answer within {timeout:?}",
            binding.route.rpc
        ))
    };
    let answer = match timeout {
        Some(timeout) => match tokio::time::timeout(timeout, pending).await {
            Err(_) => Err(past_deadline(timeout)),
            // The channel or the upstream may enforce the same deadline first, and report it as
            // CANCELLED: past the deadline, it is DEADLINE_EXCEEDED whoever noticed.
            Ok(Err(status))
                if started.elapsed() >= timeout
                    && matches!(
                        status.code(),
                        tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
                    ) =>
            {
                Err(past_deadline(timeout))
            }
            Ok(answer) => answer,
        },
        None => pending.await,
    }?;

    let (metadata, message, extensions) = answer.into_parts();
    let mut buf = Vec::with_capacity(settings.response_capacity);
    let mut writer = Writer::new(&mut buf, settings.write_options, registry);
    match binding.response_body {
        Some(write) => write(&message, &mut writer),
        None => {
            writer.begin_object();
            message.write_fields(&mut writer);
            writer.end_object();
        }
    }
    writer.finish().map_err(GatewayError::Encode)?;

    let mut response = Response::new(Body::from(buf));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // tonic merged the trailers into the metadata; `Upstream` kept a copy to tell them apart.
    match extensions.get::<TrailerSlot>().and_then(TrailerSlot::take) {
        Some(trailers) => {
            let mut header_part = metadata.into_headers();
            for name in trailers.keys() {
                header_part.remove(name);
            }
            let header_part = tonic::metadata::MetadataMap::from_headers(header_part);
            let trailers = tonic::metadata::MetadataMap::from_headers(trailers);
            crate::metadata::write_response_headers(&header_part, headers);
            crate::metadata::write_trailer_headers(&trailers, headers);
        }
        None => crate::metadata::write_response_headers(&metadata, headers),
    }
    Ok(response)
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// Reads the whole body, up to `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(GatewayError::BodyTooLarge { limit }),
        Err(error) => Err(GatewayError::BodyRead(error.to_string())),
    }
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
