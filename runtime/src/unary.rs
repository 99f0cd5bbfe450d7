//! The unary pipeline: HTTP request -> typed message (body, query, path) -> upstream call ->
//! JSON (or raw `HttpBody`) response with metadata headers.

use std::future::Future;
use std::time::Duration;

use axum::response::Response;

use crate::binding::{self, Binding, MessageSource};
use crate::call::{Call, UnaryFuture};
use crate::error::GatewayError;
use crate::json::JsonMessage;
use crate::respond::respond;

/// Serves one request for `binding` by calling `call`.
pub(crate) async fn serve<Req, Resp, F>(
    binding: &'static Binding<Req, Resp>,
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
        deadlines,
        success,
    } = request;
    let (parts, body) = request.into_parts();
    let source = MessageSource::new(binding, &parts, captures, settings);
    let message = source.read_one(body).await?;
    let settings = source.settings;
    let (upstream, timeout) =
        binding::upstream_request(message, &parts, deadlines, &settings.headers)?;
    let answer = with_deadline(call(upstream), timeout, binding.route.rpc).await?;
    respond(binding, answer, &settings, success)
}

/// Awaits an upstream call, reporting DEADLINE_EXCEEDED once `timeout` has passed.
pub(crate) async fn with_deadline<T>(
    pending: impl Future<Output = Result<T, tonic::Status>>,
    timeout: Option<Duration>,
    rpc: &str,
) -> Result<T, tonic::Status> {
    let Some(timeout) = timeout else {
        return pending.await;
    };
    let started = tokio::time::Instant::now();
    let past_deadline =
        || tonic::Status::deadline_exceeded(format!("{rpc} did not answer within {timeout:?}"));
    match tokio::time::timeout(timeout, pending).await {
        Err(_) => Err(past_deadline()),
        // The channel or the upstream may enforce the same deadline first, and report it as
        // CANCELLED: past the deadline, it is DEADLINE_EXCEEDED whoever noticed.
        Ok(Err(status))
            if started.elapsed() >= timeout
                && matches!(
                    status.code(),
                    tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
                ) =>
        {
            Err(past_deadline())
        }
        Ok(answer) => answer,
    }
}
