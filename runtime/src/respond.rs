//! Responses shared by the unary and streaming pipelines: one response message as an HTTP
//! response, and upstream metadata as headers.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::binding::{self, Binding, Encoded};
use crate::call::Settings;
use crate::error::GatewayError;
use crate::json::JsonMessage;
use crate::metadata::HeaderMapping;
use crate::upstream::TrailerSlot;

/// The HTTP response for one response message: its body as the binding says, metadata as
/// `Grpc-Metadata-*` headers and trailers as `Grpc-Trailer-*` headers (or under the headers
/// the gateway maps them to), with status `success` (200 unless the route says otherwise); 204
/// and 304 carry no body.
pub(crate) fn respond<Req, Resp: JsonMessage>(
    binding: &'static Binding<Req, Resp>,
    answer: tonic::Response<Resp>,
    settings: &Settings,
    success: Option<StatusCode>,
) -> Result<Response, GatewayError> {
    let (metadata, message, extensions) = answer.into_parts();
    let status = success.unwrap_or(StatusCode::OK);
    let mut response = if has_body(status) {
        let (content_type, body, raw) = match binding::encode(&binding.response, message, settings)?
        {
            Encoded::Json(json) => (HeaderValue::from_static("application/json"), json, false),
            Encoded::Raw(raw) => (raw_content_type(&raw.content_type), raw.data, true),
        };
        let mut response = Response::new(Body::from(body));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
        if raw {
            forbid_sniffing(response.headers_mut());
        }
        response
    } else {
        Response::new(Body::empty())
    };
    *response.status_mut() = status;
    let trailers = extensions.get::<TrailerSlot>().and_then(TrailerSlot::take);
    write_metadata(
        metadata,
        trailers,
        response.headers_mut(),
        &settings.headers,
    );
    Ok(response)
}

/// Whether a response with `status` carries a body: 204 and 304 never do.
fn has_body(status: StatusCode) -> bool {
    !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// The content type of a raw body, `application/octet-stream` when it names none or an invalid
/// one.
pub(crate) fn raw_content_type(content_type: &str) -> HeaderValue {
    match HeaderValue::from_str(content_type) {
        Ok(value) if !content_type.is_empty() => value,
        _ => HeaderValue::from_static("application/octet-stream"),
    }
}

/// Marks a raw body's content type (the upstream's choice, from a `google.api.HttpBody`) as
/// final: a browser must not take a `text/plain` body that looks like HTML for a page.
pub(crate) fn forbid_sniffing(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// Writes response metadata as headers. tonic merged the trailers into the metadata; when
/// `Upstream` kept a copy of them, they are told apart and written as `Grpc-Trailer-*`.
pub(crate) fn write_metadata(
    metadata: tonic::metadata::MetadataMap,
    trailers: Option<HeaderMap>,
    headers: &mut HeaderMap,
    mapping: &HeaderMapping,
) {
    match trailers {
        Some(trailers) => {
            let mut header_part = metadata.into_headers();
            for name in trailers.keys() {
                header_part.remove(name);
            }
            let header_part = tonic::metadata::MetadataMap::from_headers(header_part);
            let trailers = tonic::metadata::MetadataMap::from_headers(trailers);
            crate::metadata::write_response_headers(header_part, headers, mapping);
            crate::metadata::write_trailer_headers(trailers, headers, mapping);
        }
        None => crate::metadata::write_response_headers(metadata, headers, mapping),
    }
}
