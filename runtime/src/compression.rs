//! Compression, both ways, as a layer for [`crate::Gateway::route_layer`].
//!
//! Responses: compressed in `gzip`, `br` or `zstd` when the request's `Accept-Encoding` takes
//! one (the highest `q` wins; among equals, the order of [`Compression::encodings`]), for JSON,
//! NDJSON, Server-Sent Events and other text, when the body is at least
//! [`Compression::min_bytes`] long (a stream, whose length is not known, always is). Each frame
//! of the body is compressed and flushed on its own, so every message of a stream reaches the
//! client, decompressible, as soon as the upstream sends it. Never compressed: WebSocket
//! upgrades and other `1xx` answers, `204` and `304`, `HEAD`, bodies already encoded, and
//! responses marked `Cache-Control: no-transform`. Compressible responses say
//! `Vary: Accept-Encoding`.
//!
//! Requests: a body with `Content-Encoding: gzip`, `br` or `zstd` is decoded as the handler
//! reads it, so the body and stream limits ([`Limits`](crate::Limits),
//! [`Gateway::max_body_bytes`](crate::Gateway::max_body_bytes)) count decoded bytes: a small
//! body that would inflate past them is cut off there with `413`, never inflated whole. Another
//! coding, or several, gets `415` with a Status body and `Accept-Encoding` naming those
//! supported; a body that is not valid in its coding gets `400`.

use std::convert::Infallible;
use std::fmt;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use tower::ServiceExt as _;

use crate::call::BoxFuture;
use crate::error::GatewayError;
use crate::json::Registry;

/// A content coding the gateway speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `gzip` (`x-gzip` too, in requests).
    Gzip,
    /// `br`: Brotli.
    Brotli,
    /// `zstd`: Zstandard.
    Zstd,
}

impl Encoding {
    /// The coding's name in `Content-Encoding`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not `gzip`, `br` or `zstd`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown content coding `{0}`: gzip, br or zstd")]
pub struct UnknownEncoding(String);

impl FromStr for Encoding {
    type Err = UnknownEncoding;

    fn from_str(text: &str) -> Result<Self, UnknownEncoding> {
        let name = text.trim();
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            Ok(Encoding::Gzip)
        } else if name.eq_ignore_ascii_case("br") {
            Ok(Encoding::Brotli)
        } else if name.eq_ignore_ascii_case("zstd") {
            Ok(Encoding::Zstd)
        } else {
            Err(UnknownEncoding(name.to_owned()))
        }
    }
}

/// What to compress and how hard.
///
/// ```
/// use protogate::{Compression, CompressionLayer, Encoding};
///
/// let compression = Compression::new()
///     .min_bytes(512)
///     .encodings([Encoding::Zstd, Encoding::Gzip])
///     .zstd_level(3);
/// let gateway = protogate::Gateway::new().route_layer(CompressionLayer::new(compression));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Compression {
    min_bytes: usize,
    encodings: Vec<Encoding>,
    gzip_level: u32,
    brotli_quality: u32,
    zstd_level: i32,
    decompress_requests: bool,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            min_bytes: 1024,
            encodings: vec![Encoding::Brotli, Encoding::Zstd, Encoding::Gzip],
            gzip_level: 6,
            brotli_quality: 4,
            zstd_level: 3,
            decompress_requests: true,
        }
    }
}

impl Compression {
    /// The defaults: responses of 1 KiB or more (and every stream) in `br`, `zstd` or `gzip`
    /// (preferred in that order among codings the client likes as well), gzip level 6, Brotli
    /// quality 4, zstd level 3; request bodies decoded.
    pub fn new() -> Self {
        Compression::default()
    }

    /// The smallest body of known length that is compressed, in bytes.
    pub fn min_bytes(mut self, bytes: usize) -> Self {
        self.min_bytes = bytes;
        self
    }

    /// The codings offered for responses, preferred first (when the client likes several as
    /// much); none means no response is compressed.
    pub fn encodings(mut self, encodings: impl IntoIterator<Item = Encoding>) -> Self {
        self.encodings = Vec::new();
        for encoding in encodings {
            if !self.encodings.contains(&encoding) {
                self.encodings.push(encoding);
            }
        }
        self
    }

    /// gzip's level, 0 (none) to 9 (smallest); larger values are 9.
    pub fn gzip_level(mut self, level: u32) -> Self {
        self.gzip_level = level.min(9);
        self
    }

    /// Brotli's quality, 0 to 11; larger values are 11.
    pub fn brotli_quality(mut self, quality: u32) -> Self {
        self.brotli_quality = quality.min(11);
        self
    }

    /// zstd's level, 1 to 22 (negative ones are faster still); out of range values are
    /// clamped to what the library takes.
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level.clamp(-7, 22);
        self
    }

    /// Whether request bodies with a `Content-Encoding` are decoded (on by default); when off
    /// they reach the handler as sent.
    pub fn decompress_requests(mut self, on: bool) -> Self {
        self.decompress_requests = on;
        self
    }

    /// The coding to answer in, for a request's `Accept-Encoding`.
    fn choose(&self, accept: &HeaderMap) -> Option<Encoding> {
        let mut wildcard = None;
        let mut listed: Vec<(Encoding, u16)> = Vec::new();
        for item in accept
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
        {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let quality = parts
                .filter_map(|parameter| parameter.trim().split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1000), |(_, value)| parse_quality(value.trim()));
            let Some(quality) = quality else { continue };
            if name == "*" {
                wildcard = Some(quality);
            } else if let Ok(encoding) = name.parse::<Encoding>() {
                listed.push((encoding, quality));
            }
        }
        let quality_of = |encoding: Encoding| {
            listed
                .iter()
                .find(|(listed, _)| *listed == encoding)
                .map(|(_, quality)| *quality)
                .or(wildcard)
                .unwrap_or(0)
        };
        let mut best: Option<(Encoding, u16)> = None;
        for &encoding in &self.encodings {
            let quality = quality_of(encoding);
            if quality > 0 && best.is_none_or(|(_, best)| quality > best) {
                best = Some((encoding, quality));
            }
        }
        best.map(|(encoding, _)| encoding)
    }

    fn encoder(&self, encoding: Encoding) -> io::Result<Encoder> {
        Ok(match encoding {
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(self.gzip_level),
            )),
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                self.brotli_quality,
                22,
            ))),
            Encoding::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                self.zstd_level,
            )?),
        })
    }
}

/// A `q` value (`0` to `1`, three decimals at most) in thousandths.
fn parse_quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether a response of this content type is worth compressing: text, JSON and the streams
/// the gateway writes.
fn compressible(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/x-ndjson"
                | "application/javascript"
                | "application/xml"
                | "image/svg+xml"
        )
}

/// A response body's encoder.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// `data` compressed and flushed: everything the client needs to decode it so far.
    fn write(&mut self, data: &[u8]) -> io::Result<Bytes> {
        let output = match self {
            Encoder::Gzip(encoder) => {
                encoder.write_all(data)?;
                encoder.flush()?;
                encoder.get_mut()
            }
            Encoder::Brotli(encoder) => {
                encoder.write_all(data)?;
                encoder.flush()?;
                encoder.get_mut()
            }
            Encoder::Zstd(encoder) => {
                encoder.write_all(data)?;
                encoder.flush()?;
                encoder.get_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(output)))
    }

    /// `data`, then the end of the compressed stream.
    fn finish(self, data: &[u8]) -> io::Result<Bytes> {
        let output = match self {
            Encoder::Gzip(mut encoder) => {
                encoder.write_all(data)?;
                encoder.finish()?
            }
            Encoder::Brotli(mut encoder) => {
                encoder.write_all(data)?;
                encoder.into_inner()
            }
            Encoder::Zstd(mut encoder) => {
                encoder.write_all(data)?;
                encoder.finish()?
            }
        };
        Ok(Bytes::from(output))
    }
}

/// A response body compressed frame by frame.
struct Compressed {
    inner: Body,
    /// `None` once the compressed stream has ended.
    encoder: Option<Encoder>,
    /// The inner body's trailers, sent after the compressed stream's end.
    trailers: Option<HeaderMap>,
}

impl http_body::Body for Compressed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(trailers) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if this.encoder.is_none() {
                return Poll::Ready(None);
            }
            let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
            // A known-whole body's last data is compressed in one go, with no flush.
            let (data, trailers, last) = match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => (data, None, this.inner.is_end_stream()),
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => (Bytes::new(), Some(trailers), true),
                        Err(_) => continue,
                    },
                },
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => (Bytes::new(), None, true),
            };
            let written = if last {
                this.trailers = trailers;
                this.encoder
                    .take()
                    .map_or(Ok(Bytes::new()), |encoder| encoder.finish(&data))
            } else if data.is_empty() {
                continue;
            } else {
                match this.encoder.as_mut() {
                    Some(encoder) => encoder.write(&data),
                    None => Ok(Bytes::new()),
                }
            };
            match written {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Err(error) => {
                    this.encoder = None;
                    return Poll::Ready(Some(Err(axum::Error::new(error))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A request body decoded as it is read; a body that is not valid in its coding fails with
/// [`GatewayError::BadEncoding`], and a failure to read it with the read error.
fn decoded(body: Body, encoding: Encoding) -> Body {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
    use tokio::io::AsyncRead;

    let compressed =
        tokio_util::io::StreamReader::new(body.into_data_stream().map_err(io::Error::other));
    let reader: Pin<Box<dyn AsyncRead + Send>> = match encoding {
        Encoding::Gzip => {
            let mut decoder = GzipDecoder::new(compressed);
            decoder.multiple_members(true);
            Box::pin(decoder)
        }
        Encoding::Brotli => Box::pin(BrotliDecoder::new(compressed)),
        Encoding::Zstd => Box::pin(ZstdDecoder::with_params(
            compressed,
            // An 8 MiB window at most, as zstd's content coding for HTTP allows (RFC 9659):
            // a body cannot make the gateway hold more.
            &[async_compression::zstd::DParameter::window_log_max(23)],
        )),
    };
    let name = encoding.name();
    let chunks = tokio_util::io::ReaderStream::with_capacity(reader, 16 * 1024).map_err(
        move |error: io::Error| {
            if error
                .get_ref()
                .is_some_and(|inner| inner.is::<axum::Error>())
            {
                // The client's body itself failed: that error, as it came.
                return match error.into_inner() {
                    Some(inner) => GatewayError::BodyRead(inner),
                    None => GatewayError::BodyRead(Box::new(io::Error::other("read failed"))),
                };
            }
            GatewayError::BadEncoding {
                encoding: name,
                error,
            }
        },
    );
    Body::from_stream(chunks)
}

/// What a request's `Content-Encoding` asks of the gateway.
enum RequestCoding {
    /// None, or `identity`.
    Plain,
    Encoded(Encoding),
}

fn request_coding(headers: &HeaderMap) -> Result<RequestCoding, GatewayError> {
    let codings: Vec<String> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .flat_map(|value| {
            value
                .split(',')
                .map(|coding| coding.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
        .collect();
    match codings.as_slice() {
        [] => Ok(RequestCoding::Plain),
        [one] => one
            .parse()
            .map(RequestCoding::Encoded)
            .map_err(|_| GatewayError::UnsupportedEncoding(one.clone())),
        several => Err(GatewayError::UnsupportedEncoding(several.join(", "))),
    }
}

/// Compression as a layer for [`crate::Gateway::route_layer`]; see the module's description.
#[derive(Clone)]
pub struct CompressionLayer {
    compression: Arc<Compression>,
}

impl CompressionLayer {
    /// `compression` for every route.
    pub fn new(compression: Compression) -> Self {
        CompressionLayer {
            compression: Arc::new(compression),
        }
    }
}

impl fmt::Debug for CompressionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CompressionLayer")
            .field(&self.compression)
            .finish()
    }
}

impl<S> tower::Layer<S> for CompressionLayer {
    type Service = CompressionService<S>;

    fn layer(&self, inner: S) -> CompressionService<S> {
        CompressionService {
            compression: Arc::clone(&self.compression),
            inner,
        }
    }
}

/// The service of a [`CompressionLayer`].
#[derive(Clone)]
pub struct CompressionService<S> {
    compression: Arc<Compression>,
    inner: S,
}

impl<S> fmt::Debug for CompressionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressionService").finish_non_exhaustive()
    }
}

impl<S> tower::Service<Request<Body>> for CompressionService<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let compression = Arc::clone(&self.compression);
        let inner = self.inner.clone();
        Box::pin(async move {
            if crate::metadata::is_upgrade(request.headers()) {
                return inner.oneshot(request).await;
            }
            let request = if compression.decompress_requests {
                match decode_request(request) {
                    Ok(request) => request,
                    Err(error) => return Ok(unsupported(error)),
                }
            } else {
                request
            };
            let head = request.method() == Method::HEAD;
            let encoding = compression.choose(request.headers());
            let response = inner.oneshot(request).await?;
            Ok(compress(&compression, response, encoding, head))
        })
    }
}

/// `request` with its body decoded, or why it cannot be.
fn decode_request(mut request: Request<Body>) -> Result<Request<Body>, GatewayError> {
    match request_coding(request.headers())? {
        RequestCoding::Plain => Ok(request),
        RequestCoding::Encoded(encoding) => {
            let headers = request.headers_mut();
            headers.remove(header::CONTENT_ENCODING);
            headers.remove(header::CONTENT_LENGTH);
            let (parts, body) = request.into_parts();
            Ok(Request::from_parts(parts, decoded(body, encoding)))
        }
    }
}

/// A 415 (or other refusal) for a request body's coding, naming the codings taken.
fn unsupported(error: GatewayError) -> Response {
    let mut response = error.into_response(&Registry::EMPTY);
    if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        response.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, br, zstd"),
        );
    }
    response
}

/// `response`, compressed in `encoding` if it should be.
fn compress(
    compression: &Compression,
    response: Response,
    encoding: Option<Encoding>,
    head: bool,
) -> Response {
    let status = response.status();
    let headers = response.headers();
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || headers.contains_key(header::CONTENT_ENCODING)
        || !compressible(headers)
        || no_transform(headers)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    let small = body
        .size_hint()
        .exact()
        .is_some_and(|length| length < u64::try_from(compression.min_bytes).unwrap_or(u64::MAX));
    let encoder = match encoding {
        Some(encoding) if !head && !small => compression
            .encoder(encoding)
            .ok()
            .map(|encoder| (encoding, encoder)),
        _ => None,
    };
    let Some((encoding, encoder)) = encoder else {
        return Response::from_parts(parts, body);
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.name()),
    );
    let body = Body::new(Compressed {
        inner: body,
        encoder: Some(encoder),
        trailers: None,
    });
    Response::from_parts(parts, body)
}

fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|directive| directive.trim().eq_ignore_ascii_case("no-transform"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).expect("a value"),
        );
        headers
    }

    #[test]
    fn the_client_preference_wins_then_ours() {
        let compression = Compression::new();
        let chosen = |value: &str| compression.choose(&accept(value));
        assert_eq!(chosen("gzip, deflate, br, zstd"), Some(Encoding::Brotli));
        assert_eq!(chosen("gzip;q=1, br;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(
            chosen("zstd;q=0.9, br;q=0.8, gzip;q=0.1"),
            Some(Encoding::Zstd)
        );
        assert_eq!(chosen("br;q=0, *;q=0.5"), Some(Encoding::Zstd));
        assert_eq!(chosen("identity"), None);
        assert_eq!(chosen("deflate"), None);
        assert_eq!(chosen("gzip;q=0"), None);
        assert_eq!(chosen("gzip;q=2"), None, "an invalid q is ignored");
        assert_eq!(compression.choose(&HeaderMap::new()), None);
        let gzip_only = Compression::new().encodings([Encoding::Gzip]);
        assert_eq!(
            gzip_only.choose(&accept("br, gzip;q=0.1")),
            Some(Encoding::Gzip)
        );
    }

    #[test]
    fn qualities_parse_as_thousandths() {
        assert_eq!(parse_quality("1"), Some(1000));
        assert_eq!(parse_quality("1.000"), Some(1000));
        assert_eq!(parse_quality("0.5"), Some(500));
        assert_eq!(parse_quality("0.005"), Some(5));
        assert_eq!(parse_quality("0"), Some(0));
        assert_eq!(parse_quality("1.5"), None);
        assert_eq!(parse_quality("0.0001"), None);
        assert_eq!(parse_quality("x"), None);
    }

    #[test]
    fn request_codings_are_one_known_coding() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_str(value).expect("a value"),
            );
            headers
        };
        assert!(matches!(
            request_coding(&headers("GZIP")),
            Ok(RequestCoding::Encoded(Encoding::Gzip))
        ));
        assert!(matches!(
            request_coding(&headers("identity")),
            Ok(RequestCoding::Plain)
        ));
        assert!(matches!(
            request_coding(&headers("compress")),
            Err(GatewayError::UnsupportedEncoding(name)) if name == "compress"
        ));
        assert!(matches!(
            request_coding(&headers("gzip, br")),
            Err(GatewayError::UnsupportedEncoding(_))
        ));
    }
}
