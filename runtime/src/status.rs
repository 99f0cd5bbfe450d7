//! gRPC status codes to HTTP, and the google.rpc.Status JSON body every failure is sent as.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use tonic::Code;

use crate::json::{self, Codec, JsonOptions, Registry, Writer};

/// The HTTP status for a gRPC status code, as grpc-gateway and Envoy map them.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// google.rpc.Status as it travels in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// google.rpc.RetryInfo: how long the client should wait before trying again.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<prost_types::Duration>,
}

const RETRY_INFO: &str = "google.rpc.RetryInfo";

/// A status whose details carry a google.rpc.RetryInfo of `after`: its HTTP response then says
/// `Retry-After` too.
pub(crate) fn retry_later(
    code: Code,
    message: String,
    after: std::time::Duration,
) -> tonic::Status {
    let info = RetryInfo {
        retry_delay: Some(prost_types::Duration {
            seconds: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(after.subsec_nanos()).unwrap_or(0),
        }),
    };
    let status = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: format!("type.googleapis.com/{RETRY_INFO}"),
            value: prost::Message::encode_to_vec(&info),
        }],
    };
    tonic::Status::with_details(code, message, prost::Message::encode_to_vec(&status).into())
}

fn details_of(status: &tonic::Status) -> Vec<prost_types::Any> {
    if status.details().is_empty() {
        return Vec::new();
    }
    <RpcStatus as prost::Message>::decode(status.details())
        .map(|s| s.details)
        .unwrap_or_default()
}

/// Whole seconds, rounded up: what `Retry-After` says for a delay.
pub(crate) fn whole_seconds(delay: std::time::Duration) -> u64 {
    delay.as_secs() + u64::from(delay.subsec_nanos() > 0)
}

/// The whole seconds a RetryInfo among `details` asks the client to wait, rounded up.
fn retry_after(details: &[prost_types::Any]) -> Option<u64> {
    let detail = details
        .iter()
        .find(|d| type_name(&d.type_url) == RETRY_INFO)?;
    let delay = <RetryInfo as prost::Message>::decode(detail.value.as_slice())
        .ok()?
        .retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    Some(seconds + u64::from(delay.nanos > 0))
}

/// Writes `{"code":N,"message":"…","details":[…]}` for `status`, details rendered as JSON `Any`s
/// (a detail of a type this build does not know is left out rather than failing the response).
pub fn write_status_json(status: &tonic::Status, registry: &Registry, buf: &mut Vec<u8>) {
    write_json(status, &details_of(status), registry, buf);
}

fn write_json(
    status: &tonic::Status,
    details: &[prost_types::Any],
    registry: &Registry,
    buf: &mut Vec<u8>,
) {
    let options = JsonOptions::default();
    let mut w = Writer::new(buf, options, registry);
    w.begin_object();
    w.key_str("code");
    w.i32(status.code() as i32);
    w.key_str("message");
    w.str(status.message());
    w.key_str("details");
    w.begin_array();
    for detail in details {
        if registry.find(type_name(&detail.type_url)).is_some() {
            <json::Any as Codec>::write(detail, &mut w);
        }
    }
    w.end_array();
    w.end_object();
    // Every detail written is of a known type, so rendering cannot fail.
    let _ = w.finish();
}

fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// The failure an error response of the gateway stands for, in the response's extensions:
/// what an [`ErrorBody`](crate::ErrorBody) layer writes the response anew from.
#[derive(Clone, Debug)]
pub struct Failure {
    status: std::sync::Arc<tonic::Status>,
    json: bytes::Bytes,
}

impl Failure {
    /// The failure `response` stands for, when the gateway wrote it.
    pub fn of<B>(response: &http::Response<B>) -> Option<&Failure> {
        response.extensions().get::<Failure>()
    }

    /// The status.
    pub fn status(&self) -> &tonic::Status {
        &self.status
    }

    /// The google.rpc.Status JSON body the gateway wrote for it (details included).
    pub fn status_json(&self) -> &[u8] {
        &self.json
    }
}

/// The complete HTTP response for a failed call: mapped status code and Status JSON body, and
/// `Retry-After` when the status carries a google.rpc.RetryInfo. The response carries its
/// [`Failure`].
pub fn status_response(
    status: &tonic::Status,
    http: Option<StatusCode>,
    registry: &Registry,
) -> Response {
    let details = details_of(status);
    let mut buf = Vec::with_capacity(96 + status.message().len());
    write_json(status, &details, registry, &mut buf);
    let json = bytes::Bytes::from(buf);
    let mut response = Response::new(Body::from(json.clone()));
    response.extensions_mut().insert(Failure {
        status: std::sync::Arc::new(status.clone()),
        json,
    });
    response
        .extensions_mut()
        .insert(crate::observe::FailureCode(status.code()));
    *response.status_mut() = http.unwrap_or_else(|| http_status(status.code()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    crate::metadata::write_trailer_headers(
        status.metadata().clone(),
        response.headers_mut(),
        &crate::metadata::HeaderMapping::NONE,
    );
    if let Some(seconds) = retry_after(&details) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_like_grpc_gateway() {
        let table = [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
        ];
        for (code, http) in table {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn a_retry_info_detail_becomes_retry_after() {
        let status = retry_later(
            Code::Unavailable,
            "shed".to_owned(),
            std::time::Duration::from_millis(1500),
        );
        let response = status_response(&status, None, &Registry::EMPTY);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let plain = status_response(&tonic::Status::unavailable("down"), None, &Registry::EMPTY);
        assert!(plain.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn status_body_has_code_message_and_details() {
        let status = tonic::Status::not_found("no shelf \"x\"");
        let mut buf = Vec::new();
        write_status_json(&status, &Registry::EMPTY, &mut buf);
        let value: serde_json::Value = serde_json::from_slice(&buf).expect("valid JSON");
        assert_eq!(
            value,
            serde_json::json!({"code": 5, "message": "no shelf \"x\"", "details": []})
        );
    }
}
