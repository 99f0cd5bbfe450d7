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

/// Writes `{"code":N,"message":"…","details":[…]}` for `status`, details rendered as JSON `Any`s
/// (a detail of a type this build does not know is left out rather than failing the response).
pub fn write_status_json(status: &tonic::Status, registry: &Registry, buf: &mut Vec<u8>) {
    let details = if status.details().is_empty() {
        Vec::new()
    } else {
        <RpcStatus as prost::Message>::decode(status.details())
            .map(|s| s.details)
            .unwrap_or_default()
    };
    let options = JsonOptions::default();
    let mut w = Writer::new(buf, options, registry);
    w.begin_object();
    w.key_str("code");
    w.i32(status.code() as i32);
    w.key_str("message");
    w.str(status.message());
    w.key_str("details");
    w.begin_array();
    for detail in &details {
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

/// The complete HTTP response for a failed call: mapped status code and Status JSON body.
pub fn status_response(
    status: &tonic::Status,
    http: Option<StatusCode>,
    registry: &Registry,
) -> Response {
    let mut buf = Vec::with_capacity(96 + status.message().len());
    write_status_json(status, registry, &mut buf);
    let mut response = Response::new(Body::from(buf));
    *response.status_mut() = http.unwrap_or_else(|| http_status(status.code()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    crate::metadata::write_trailer_headers(status.metadata().clone(), response.headers_mut());
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
