//! The stock gateway's API description: the OpenAPI 3.1 document of every compiled service.

use axum::http::header;
use axum::response::IntoResponse;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The document, as protogate-build generated it for this binary.
pub fn openapi() -> &'static str {
    crate::pb::OPENAPI
}

/// `GET /openapi.json`, beside the gateway's routes.
pub fn router() -> axum::Router {
    axum::Router::new().route(
        OPENAPI_PATH,
        axum::routing::get(|| async {
            ([(header::CONTENT_TYPE, "application/json")], openapi()).into_response()
        }),
    )
}
