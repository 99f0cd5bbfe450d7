//! Unary calls on the built-in upstream, without tonic's client codec.
//!
//! A unary call is one message each way, so the request is encoded once into a single gRPC
//! frame and the response is read whole: its one message decoded, its status taken from the
//! trailers (or from the headers of a trailers-only answer). tonic's client treats every call
//! as a stream of frames behind boxed bodies and a decoder state machine; skipping that is
//! about a sixth of the gateway's own work per unary call. Streaming calls still go through
//! tonic's client (`streaming.rs`).

use std::future::Future;
use std::pin::Pin;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use super::{Response, Upstream};

/// A unary call's answer to come (the same type as the generated backends' `UnaryFuture`,
/// which lives above this layer).
type UnaryFuture<T> = Pin<Box<dyn Future<Output = Result<tonic::Response<T>, Status>> + Send>>;

/// Bytes before each gRPC message: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// The generated backend of a service reached over an [`Upstream`]: unary calls go straight
/// onto the upstream's HTTP/2 streams, streaming calls through tonic's client over the same
/// upstream, with a codec whose buffers start empty (a held-open stream is mostly idle).
#[derive(Clone, Debug)]
pub struct Remote {
    upstream: Upstream,
}

impl Remote {
    /// The backend that calls `upstream`.
    pub fn new(upstream: Upstream) -> Self {
        Remote { upstream }
    }

    /// The upstream called.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Calls the unary method at `path` (`/package.Service/Method`) with `request`.
    pub fn unary<Req, Resp>(
        &self,
        path: &'static str,
        request: tonic::Request<Req>,
    ) -> UnaryFuture<Resp>
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let upstream = self.upstream.clone();
        Box::pin(async move {
            let request = http_request(path, request)?;
            read_answer(upstream.send(request).await?).await
        })
    }
}

/// The HTTP/2 request of a unary call: its metadata as headers, its message as one frame.
fn http_request<Req: prost::Message>(
    path: &'static str,
    request: tonic::Request<Req>,
) -> Result<http::Request<tonic::body::Body>, Status> {
    let (metadata, extensions, message) = request.into_parts();
    let frame = encode_frame(&message)?;
    let mut request = http::Request::new(tonic::body::Body::new(http_body_util::Full::new(frame)));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static(path);
    *request.headers_mut() = metadata.into_headers();
    *request.extensions_mut() = extensions;
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    Ok(request)
}

/// `message` as one uncompressed gRPC frame.
fn encode_frame<M: prost::Message>(message: &M) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    let prefix_len = u32::try_from(len).map_err(|_| {
        Status::resource_exhausted(format!(
            "the request message ({len} bytes) is larger than a gRPC frame can carry"
        ))
    })?;
    let mut frame = BytesMut::with_capacity(PREFIX + len);
    frame.put_u8(0);
    frame.put_u32(prefix_len);
    message.encode_raw(&mut frame);
    Ok(frame.freeze())
}

/// The message of a unary answer, or the status it failed with.
async fn read_answer<Resp: prost::Message + Default>(
    response: Response,
) -> Result<tonic::Response<Resp>, Status> {
    let (parts, mut body) = response.into_parts();
    // A trailers-only answer carries its status in the headers.
    let head_status = status_in(&parts.headers);
    if let Some(status) = head_status
        .as_ref()
        .filter(|status| status.code() != Code::Ok)
    {
        return Err(status.clone());
    }
    if head_status.is_none() && parts.status != StatusCode::OK {
        return Err(status_of_http(parts.status));
    }

    let mut data = Whole::default();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(chunk) => data.push(chunk),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    match trailers.as_ref().and_then(status_in) {
        Some(status) if status.code() != Code::Ok => return Err(status),
        Some(_) => {}
        None if head_status.is_some() => {}
        None => {
            return Err(Status::internal(
                "the upstream ended its answer without a grpc-status",
            ));
        }
    }
    let message = decode_one(data.into_bytes())?;
    Ok(tonic::Response::from_parts(
        MetadataMap::from_headers(parts.headers),
        message,
        parts.extensions,
    ))
}

/// The status `headers` carry, if any. OK, by far the most common, is read without building a
/// `Status` (which parses the message and details too).
fn status_in(headers: &http::HeaderMap) -> Option<Status> {
    match headers.get("grpc-status") {
        None => None,
        Some(code) if code == "0" => Some(Status::new(Code::Ok, "")),
        Some(_) => Status::from_header_map(headers),
    }
}

/// The data of a body, kept without copying when it comes in one piece (as it mostly does).
#[derive(Default)]
struct Whole {
    first: Bytes,
    rest: Option<BytesMut>,
}

impl Whole {
    fn push(&mut self, chunk: Bytes) {
        if let Some(rest) = &mut self.rest {
            rest.extend_from_slice(&chunk);
        } else if self.first.is_empty() {
            self.first = chunk;
        } else {
            let mut joined = BytesMut::with_capacity(self.first.len() + chunk.len());
            joined.extend_from_slice(&self.first);
            joined.extend_from_slice(&chunk);
            self.rest = Some(joined);
        }
    }

    fn into_bytes(self) -> Bytes {
        match self.rest {
            Some(joined) => joined.freeze(),
            None => self.first,
        }
    }
}

/// The one message of a unary answer's `data`: exactly one uncompressed frame.
fn decode_one<M: prost::Message + Default>(mut data: Bytes) -> Result<M, Status> {
    if data.is_empty() {
        return Err(Status::internal(
            "the upstream answered OK without a message",
        ));
    }
    if data.len() < PREFIX {
        return Err(Status::internal(format!(
            "the upstream's answer ends inside a frame header ({} bytes)",
            data.len()
        )));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    match compressed {
        0 => {}
        1 => {
            return Err(Status::internal(
                "the upstream compressed its answer, which the gateway did not ask for",
            ));
        }
        flag => {
            return Err(Status::internal(format!(
                "the upstream's answer has an invalid frame flag {flag}"
            )));
        }
    }
    if data.len() < len {
        return Err(Status::internal(format!(
            "the upstream's answer ends inside a message: {} of {len} bytes",
            data.len()
        )));
    }
    if data.len() > len {
        return Err(Status::internal(
            "the upstream answered a unary call with more than one message",
        ));
    }
    M::decode(data).map_err(|error| {
        Status::internal(format!(
            "the upstream's answer is not valid protobuf: {error}"
        ))
    })
}

/// The status of an answer that is not gRPC (no `grpc-status`), from its HTTP status, as the
/// gRPC specification maps them.
fn status_of_http(status: StatusCode) -> Status {
    let code = match status {
        StatusCode::BAD_REQUEST => Code::Internal,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::Unimplemented,
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(
        code,
        format!(
            "the upstream answered HTTP {} without a grpc-status",
            status.as_u16()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![flag];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn a_message_makes_one_frame_and_reads_back() {
        let message = prost_types::Duration {
            seconds: 7,
            nanos: 9,
        };
        let frame = encode_frame(&message).expect("encoded");
        assert_eq!(frame[0], 0);
        assert_eq!(
            u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize,
            frame.len() - PREFIX
        );
        let back: prost_types::Duration = decode_one(frame).expect("decoded");
        assert_eq!(back, message);
    }

    #[test]
    fn an_empty_message_is_a_frame_of_its_own() {
        let frame = encode_frame(&()).expect("encoded");
        assert_eq!(&frame[..], &[0, 0, 0, 0, 0]);
        decode_one::<()>(frame).expect("an empty message is a message");
    }

    #[test]
    fn pieces_are_joined_in_order() {
        let frame = framed(0, b"\x08\x07");
        let mut whole = Whole::default();
        for byte in &frame {
            whole.push(Bytes::copy_from_slice(std::slice::from_ref(byte)));
        }
        assert_eq!(&whole.into_bytes()[..], &frame[..]);
    }

    #[test]
    fn malformed_answers_are_internal_errors_that_say_why() {
        let cases: [(Vec<u8>, &str); 6] = [
            (Vec::new(), "without a message"),
            (vec![0, 0, 0], "inside a frame header"),
            (framed(1, b"\x08\x07"), "compressed"),
            (framed(2, b""), "invalid frame flag 2"),
            (framed(0, b"\x08\x07")[..6].to_vec(), "1 of 2 bytes"),
            (
                [framed(0, b""), framed(0, b"")].concat(),
                "more than one message",
            ),
        ];
        for (data, why) in cases {
            let status =
                decode_one::<prost_types::Duration>(Bytes::from(data)).expect_err("malformed");
            assert_eq!(status.code(), Code::Internal);
            assert!(
                status.message().contains(why),
                "{why}: {}",
                status.message()
            );
        }
        let status = decode_one::<prost_types::Duration>(Bytes::from(framed(0, b"\xff")))
            .expect_err("not protobuf");
        assert!(
            status.message().contains("not valid protobuf"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn answers_without_grpc_status_map_their_http_status() {
        for (http, code) in [
            (StatusCode::BAD_REQUEST, Code::Internal),
            (StatusCode::UNAUTHORIZED, Code::Unauthenticated),
            (StatusCode::FORBIDDEN, Code::PermissionDenied),
            (StatusCode::NOT_FOUND, Code::Unimplemented),
            (StatusCode::TOO_MANY_REQUESTS, Code::Unavailable),
            (StatusCode::BAD_GATEWAY, Code::Unavailable),
            (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
            (StatusCode::GATEWAY_TIMEOUT, Code::Unavailable),
            (StatusCode::IM_A_TEAPOT, Code::Unknown),
        ] {
            let status = status_of_http(http);
            assert_eq!(status.code(), code, "{http}");
            assert!(
                status.message().contains(http.as_str()),
                "{}",
                status.message()
            );
        }
    }
}
