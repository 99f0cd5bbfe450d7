//! Error responses written the way a team's clients expect: the gateway's google.rpc.Status
//! JSON (the default), RFC 9457 `application/problem+json`, or a hook of the team's own.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};

use crate::status::Failure;

type Render = dyn Fn(&Failure, Response) -> Response + Send + Sync;

/// How the gateway's error responses are written. Worn as a layer around the whole router
/// (`axum::Router::layer(error_body.layer())`), it rewrites every response that stands for a
/// [`Failure`] (routing errors, bad requests, upstream statuses, edge policies' refusals) and
/// leaves every other response alone. Errors inside a stream that has begun travel in the
/// stream (NDJSON `{"error": …}`, SSE `error` events, WebSocket close frames) and are not
/// affected.
///
/// ```
/// use axum::response::Response;
///
/// // RFC 9457 problem details instead of google.rpc.Status:
/// let app: axum::Router = axum::Router::new().layer(protogate::ErrorBody::problem_json().layer());
///
/// // Or a hook: keep the response, add a header naming the gRPC code.
/// let hook = protogate::ErrorBody::custom(|failure, mut response: Response| {
///     let code = i32::from(failure.status().code());
///     response.headers_mut().insert("x-grpc-code", code.into());
///     response
/// });
/// let app: axum::Router = axum::Router::new().layer(hook.layer());
/// ```
#[derive(Clone)]
pub struct ErrorBody {
    render: Arc<Render>,
    /// Writes problem details (and so can describe itself in a document).
    problem: bool,
}

impl ErrorBody {
    /// Writes each error response with `render`, from its failure and the response the gateway
    /// wrote (status code, headers such as `Retry-After` and `Allow`, and the Status body).
    pub fn custom(render: impl Fn(&Failure, Response) -> Response + Send + Sync + 'static) -> Self {
        ErrorBody {
            render: Arc::new(render),
            problem: false,
        }
    }

    /// RFC 9457 problem details (`application/problem+json`): `type` `about:blank`, `title`
    /// the HTTP status's reason phrase, `status`, `detail` the status message, and as
    /// extension members `code` (the gRPC code's number) and `details` (the google.rpc.Status
    /// details as the Status body has them).
    pub fn problem_json() -> Self {
        ErrorBody {
            problem: true,
            ..ErrorBody::custom(problem)
        }
    }

    /// The OpenAPI document `document` with its error responses as this body writes them:
    /// problem details for [`ErrorBody::problem_json`]; unchanged for a hook, whose body the
    /// document cannot know.
    pub fn openapi(&self, document: &str) -> String {
        if self.problem {
            crate::openapi::describe_problem_errors(document)
        } else {
            document.to_owned()
        }
    }

    /// The tower layer that applies it.
    pub fn layer(
        &self,
    ) -> tower::util::MapResponseLayer<impl Fn(Response) -> Response + Clone + Send + Sync + 'static>
    {
        let render = Arc::clone(&self.render);
        tower::util::MapResponseLayer::new(move |response: Response| {
            match Failure::of(&response).cloned() {
                Some(failure) => render(&failure, response),
                None => response,
            }
        })
    }
}

impl std::fmt::Debug for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorBody").finish_non_exhaustive()
    }
}

/// `response` written as problem details.
fn problem(failure: &Failure, response: Response) -> Response {
    let (mut parts, _) = response.into_parts();
    let details = serde_json::from_slice::<serde_json::Value>(failure.status_json())
        .ok()
        .and_then(|mut body| body.get_mut("details").map(serde_json::Value::take))
        .unwrap_or_else(|| serde_json::Value::Array(Vec::new()));
    let status = failure.status();
    let body = serde_json::json!({
        "type": "about:blank",
        "title": parts.status.canonical_reason().unwrap_or("Error"),
        "status": parts.status.as_u16(),
        "detail": status.message(),
        "code": i32::from(status.code()),
        "details": details,
    });
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Registry;
    use http_body_util::BodyExt as _;
    use tower::{Layer as _, ServiceExt as _};

    /// The response `make` gives, through `error_body`'s layer, and its body.
    async fn through(error_body: &ErrorBody, make: fn() -> Response) -> (Response, Vec<u8>) {
        let service = error_body
            .layer()
            .layer(tower::service_fn(move |()| async move {
                Ok::<_, std::convert::Infallible>(make())
            }));
        let Ok(response) = service.oneshot(()).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes().to_vec();
        (Response::from_parts(parts, Body::empty()), bytes)
    }

    fn shed() -> Response {
        let status = crate::status::retry_later(
            tonic::Code::Unavailable,
            "upstream `a` is full".to_owned(),
            std::time::Duration::from_secs(2),
        );
        crate::status::status_response(&status, None, &Registry::EMPTY)
    }

    fn shed_json() -> Vec<u8> {
        let response = shed();
        Failure::of(&response)
            .expect("a failure")
            .status_json()
            .to_vec()
    }

    fn fine() -> Response {
        Response::new(Body::from("{\"ok\":true}"))
    }

    #[tokio::test]
    async fn problem_details_keep_the_status_headers_and_details() {
        let (response, body) = through(&ErrorBody::problem_json(), shed).await;
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], "Service Unavailable");
        assert_eq!(body["status"], 503);
        assert_eq!(body["detail"], "upstream `a` is full");
        assert_eq!(body["code"], 14);
        let original: serde_json::Value =
            serde_json::from_slice(&shed_json()).expect("the Status body");
        assert_eq!(body["details"], original["details"]);
    }

    #[tokio::test]
    async fn other_responses_pass_untouched() {
        let (response, body) = through(&ErrorBody::problem_json(), fine).await;
        assert_eq!(response.status(), 200);
        assert_eq!(body, b"{\"ok\":true}");
    }

    #[tokio::test]
    async fn a_hook_sees_the_failure_and_the_response() {
        let hook = ErrorBody::custom(|failure, mut response| {
            let code = i32::from(failure.status().code());
            response.headers_mut().insert("x-grpc-code", code.into());
            response
        });
        let (response, body) = through(&hook, shed).await;
        assert_eq!(response.headers()["x-grpc-code"], "14");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["code"], 14, "the Status body is kept");
    }
}
