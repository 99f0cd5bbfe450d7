//! The access log: one `tracing` event per request or stream, at its end, under the target
//! [`ACCESS_TARGET`], so the program's own subscriber decides where the lines go and how they
//! look (the stock gateway writes them to stdout, as text or one JSON object per line, from a
//! thread of their own).

use super::Observer;
use super::scope::{Scope, code_name};

/// The `tracing` target of access log events.
pub const ACCESS_TARGET: &str = "protogate::access";

/// Writes an access log event when each request ends, with these fields: `request_id`,
/// `client`, `method`, `route` (the template, absent for a request no route matched), `rpc`,
/// `status`, `code` (the gRPC code's name), `bytes_in`, `bytes_out`, `duration_ms`, and where
/// known `upstream`, `endpoint`, `subject`, `auth_failure`, and for a stream `transport`,
/// `messages_in`, `messages_out`. Nothing is formatted when no subscriber takes the events.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessLog;

impl Observer for AccessLog {
    fn on_end(&self, scope: &Scope) {
        if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
            return;
        }
        let route = scope.route();
        let upstream = scope.upstream();
        let stream = scope.stream();
        let duration = scope.duration().unwrap_or_default();
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = scope.id().as_str(),
            client = scope.client().map(tracing::field::display),
            method = scope.method().as_str(),
            route = route.map(|route| route.template.text),
            rpc = route.map(|route| route.rpc),
            status = scope.status().map_or(0, |status| status.as_u16()),
            code = scope.code().map(code_name),
            bytes_in = scope.bytes_in(),
            bytes_out = scope.bytes_out(),
            duration_ms = duration.as_secs_f64() * 1000.0,
            upstream = upstream.map(|target| &*target.upstream),
            endpoint = upstream.map(|target| &*target.endpoint),
            subject = scope.subject(),
            auth_failure = scope.auth_failure(),
            transport = stream.map(|transport| transport.name()),
            messages_in = stream.map(|_| scope.messages_in()),
            messages_out = stream.map(|_| scope.messages_out()),
            "access"
        );
    }
}
