//! The stock gateway's API description: the OpenAPI 3.1 document of every compiled service at
//! `/openapi.json`, and a documentation page at `/docs` rendering it with Swagger UI.
//!
//! Swagger UI's files are inside the binary (the `swagger-ui-dist` crate packages them), so the
//! page needs nothing but the gateway: it works with no internet, and a reader's browser asks no
//! one else for anything.

use axum::extract::{Path, Request};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Where the documentation page is served.
pub const DOCS_PATH: &str = "/docs";

/// Where the page's Swagger UI files are served.
const ASSETS_PATH: &str = "/docs/assets";

/// The files of Swagger UI the gateway serves under [`ASSETS_PATH`]: the two the page loads,
/// and their source maps for a browser's developer tools.
const ASSETS: &[&str] = &[
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "swagger-ui-bundle.js.map",
    "swagger-ui.css.map",
];

/// The document, as protogate-build generated it for this binary: every route, unbound ones
/// included (marked `x-protogate-unbound`).
pub fn openapi() -> &'static str {
    crate::pb::OPENAPI
}

/// The document of a gateway that serves unbound routes or not: without their operations when
/// it does not (`protogate openapi`, and what `/openapi.json` starts from).
pub fn openapi_of(unbound_methods: bool) -> String {
    protogate::Gateway::new()
        .unbound_methods(unbound_methods)
        .openapi(openapi())
}

/// The documentation page, its assets under `assets` (a URL prefix ending in `/`).
pub fn page(assets: &str) -> String {
    include_str!("docs.html").replace("{assets}", assets)
}

/// `GET /openapi.json` (serving `document`: [`openapi`] as the gateway describes its answers),
/// `GET /docs` and the page's Swagger UI files under `/docs/assets/`, beside the gateway's
/// routes.
pub fn router(document: String) -> axum::Router {
    let document = axum::body::Bytes::from(document);
    let page = page(&format!("{ASSETS_PATH}/"));
    // The crate's router serves the embedded files (and a page of its own, which is not
    // exposed: only the files in ASSETS reach it).
    let swagger_ui = swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
        uri_prefix: ASSETS_PATH,
        api_definition: swagger_ui_dist::OpenApiSource::Uri(OPENAPI_PATH),
        title: None,
    });
    axum::Router::new()
        .route(
            OPENAPI_PATH,
            axum::routing::get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document).into_response() }
            }),
        )
        .route(
            DOCS_PATH,
            axum::routing::get(move || {
                let page = page.clone();
                async move { Html(page) }
            }),
        )
        .route(
            &format!("{ASSETS_PATH}/{{file}}"),
            axum::routing::get(move |Path(file): Path<String>, request: Request| {
                let swagger_ui = swagger_ui.clone();
                async move { asset(swagger_ui, &file, request).await }
            }),
        )
}

/// One of the page's files; 404 for anything else.
async fn asset(swagger_ui: axum::Router, file: &str, request: Request) -> Response {
    if !ASSETS.contains(&file) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match swagger_ui.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// `document` (JSON) as YAML: block style, every string and key double-quoted (JSON's quoting
/// is YAML's), so nothing needs guessing.
pub fn openapi_yaml(document: &str) -> String {
    let document: serde_json::Value = serde_json::from_str(document).unwrap_or_default();
    let mut out = String::new();
    yaml(&document, 0, &mut out);
    out
}

fn yaml(value: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value;
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                out.push_str(&pad);
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                yaml_item(item, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                yaml_item(item, indent, out);
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

/// What follows a key or a dash: a scalar (or empty collection) on the same line, anything else
/// on the lines below, indented.
fn yaml_item(item: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value;
    match item {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml(item, indent + 2, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            yaml(item, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_block_style_with_quoted_strings() {
        let value = serde_json::json!({
            "a": {"b": [1, {"c": "x: y"}, []], "d": {}},
            "e": null,
        });
        let mut out = String::new();
        yaml(&value, 0, &mut out);
        assert_eq!(
            out,
            "\"a\":\n  \"b\":\n    - 1\n    -\n      \"c\": \"x: y\"\n    - []\n  \"d\": {}\n\"e\": null\n"
        );
    }
}
