//! The admin listener, on an address of its own (nothing of it on the public port): `/healthz`
//! (the process is alive), `/readyz` (the config is loaded and every upstream a service uses has
//! an endpoint that can take calls, and the gateway is not shutting down) and `/config` (the
//! config in effect), and `/metrics` (Prometheus metrics, in the OpenMetrics text format) when
//! metrics are on.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;

use crate::reload::Live;
use crate::upstream::Plan;

/// The admin routes of the gateway whose config in effect is `live`; readiness fails once
/// `drain` starts; `/metrics` serves `metrics`, when given.
pub fn router(
    live: Arc<Live>,
    drain: protogate::Drain,
    metrics: Option<protogate::observe::Metrics>,
) -> Router {
    let config = Arc::clone(&live);
    let router = match metrics {
        Some(metrics) => Router::new().route(
            "/metrics",
            get(move || {
                let text = metrics.encode();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            protogate::observe::Metrics::CONTENT_TYPE,
                        )],
                        text,
                    )
                }
            }),
        ),
        None => Router::new(),
    };
    router
        .route("/healthz", get(|| async { (StatusCode::OK, "alive\n") }))
        .route(
            "/readyz",
            get(move || {
                let plan = live.plan();
                let drain = drain.clone();
                async move {
                    if drain.is_draining() {
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "shutting down\n".to_owned(),
                        );
                    }
                    readiness(&plan).await
                }
            }),
        )
        .route(
            "/config",
            get(move || {
                let text = config.text();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/toml")],
                        text.to_string(),
                    )
                }
            }),
        )
}

/// 200 when every upstream in use has an endpoint that can take calls; 503 naming those that
/// have none.
async fn readiness(plan: &Plan) -> (StatusCode, String) {
    let mut report = String::new();
    let mut ready = true;
    for (name, upstream) in plan.upstreams_in_use() {
        let available = upstream.available_endpoints().await;
        ready &= available > 0;
        report.push_str(&format!(
            "upstream `{name}`: {available} endpoint(s) available\n"
        ));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let verdict = if ready { "ready\n" } else { "not ready\n" };
    (status, format!("{verdict}{report}"))
}
