//! The stock gateway's API description: the OpenAPI 3.1 document of every compiled service at
//! `/openapi.json`, and a documentation page at `/docs` rendering it with Swagger UI.
//!
//! The page loads Swagger UI from its CDN unless the gateway has the files locally
//! (`--docs-assets DIR`, the `swagger-ui-dist` package from npm): then it works with no internet.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Where the documentation page is served.
pub const DOCS_PATH: &str = "/docs";

/// The version of `swagger-ui-dist` the page is written for (and loads from the CDN).
pub const SWAGGER_UI_VERSION: &str = "5.35.0";

/// The files of `swagger-ui-dist` the page uses, served from a local copy when there is one.
const ASSETS: &[(&str, &str)] = &[
    ("swagger-ui-bundle.js", "text/javascript"),
    ("swagger-ui.css", "text/css"),
];

/// The document, as protogate-build generated it for this binary.
pub fn openapi() -> &'static str {
    crate::pb::OPENAPI
}

/// The documentation page, its assets under `assets` (a URL prefix ending in `/`).
pub fn page(assets: &str) -> String {
    include_str!("docs.html").replace("{assets}", assets)
}

/// `GET /openapi.json` and `GET /docs`, beside the gateway's routes; with `local_assets`, the
/// page's Swagger UI files are served from that directory under `/docs/assets/`.
pub fn router(local_assets: Option<PathBuf>) -> axum::Router {
    let prefix = match &local_assets {
        Some(_) => format!("{DOCS_PATH}/assets/"),
        None => format!("https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}/"),
    };
    let page: Arc<str> = page(&prefix).into();
    let mut router = axum::Router::new()
        .route(
            OPENAPI_PATH,
            axum::routing::get(|| async {
                ([(header::CONTENT_TYPE, "application/json")], openapi()).into_response()
            }),
        )
        .route(
            DOCS_PATH,
            axum::routing::get(move || {
                let page = Arc::clone(&page);
                async move { Html(page.to_string()) }
            }),
        );
    if let Some(dir) = local_assets {
        let dir = Arc::new(dir);
        router = router.route(
            &format!("{DOCS_PATH}/assets/{{file}}"),
            axum::routing::get(move |Path(file): Path<String>| {
                let dir = Arc::clone(&dir);
                async move { asset(&dir, &file).await }
            }),
        );
    }
    router
}

/// One of the page's files from the local copy; 404 for anything else.
async fn asset(dir: &std::path::Path, file: &str) -> Response {
    let Some((name, content_type)) = ASSETS.iter().find(|(name, _)| *name == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match tokio::fs::read(dir.join(name)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, *content_type)], bytes).into_response(),
        Err(error) => (
            StatusCode::NOT_FOUND,
            format!("{name} is not in the docs assets directory: {error}"),
        )
            .into_response(),
    }
}

/// The document as YAML: block style, every string and key double-quoted (JSON's quoting is
/// YAML's), so nothing needs guessing.
pub fn openapi_yaml() -> String {
    let document: serde_json::Value = serde_json::from_str(openapi()).unwrap_or_default();
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
