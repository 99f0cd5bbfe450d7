//! What the gateway says about itself, from `[metrics]` and `[log]`: the observe layer every
//! worker's router wears (request ids, metrics, the access log), and the log subscriber.
//!
//! Gateway events (start, reloads, upstream endpoints down and up, Redis fallback) go to stderr,
//! access log lines to stdout, both as text or JSON lines. Access lines gather in a bounded
//! buffer that a writer thread empties every 100 ms: when stdout falls behind, lines are dropped
//! and counted (`protogate_access_log_dropped_total`), never waited for.

use protogate::observe::{AccessFormat, AccessLog, AccessLogWriter, Metrics, ObserveLayer};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{Config, LogFormat, LogLevel, LogSection};

/// The observability of one running gateway, built once at start.
pub struct Observing {
    layer: ObserveLayer,
    metrics: Option<Metrics>,
    /// The access log's writer thread, which writes what is queued when the gateway stops.
    _access: Option<AccessLogWriter>,
}

impl Observing {
    /// What `config` asks for: metrics where there is an admin listener to serve them, unless
    /// `[metrics] enabled = false`; the access log on stdout when `[log] access = true` (its
    /// dropped lines counted into the metrics). Request ids are always given.
    pub fn new(config: &Config) -> Observing {
        let mut layer = ObserveLayer::new();
        let served = config.admin.is_some();
        let metrics = (config.metrics.on() && served).then(|| {
            let metrics = Metrics::new();
            let rpcs: std::collections::BTreeSet<&str> = crate::pb::SERVICES
                .iter()
                .flat_map(|service| service.routes.iter().map(|route| route.rpc))
                .collect();
            let protos = env!("PROTOGATE_PROTOS_COMPILED").parse().unwrap_or(0);
            metrics.build_info(env!("CARGO_PKG_VERSION"), protos, rpcs.len());
            metrics
        });
        if let Some(metrics) = &metrics {
            layer = layer.observer(metrics.clone());
        }
        let mut access = None;
        if config.log.access_on() {
            let format = match config.log.format {
                Some(LogFormat::Json) => AccessFormat::Json,
                Some(LogFormat::Text) | None => AccessFormat::Text,
            };
            let (log, writer) = AccessLog::builder().format(format).to_stdout();
            if let Some(metrics) = &metrics {
                let dropped = log.clone();
                metrics.polled_counter(
                    "access_log_dropped",
                    "Access log lines dropped because stdout fell behind",
                    move || dropped.dropped(),
                );
            }
            layer = layer.observer(log);
            access = Some(writer);
        }
        Observing {
            layer,
            metrics,
            _access: access,
        }
    }

    /// The layer each worker's router wears, outermost.
    pub fn layer(&self) -> ObserveLayer {
        self.layer.clone()
    }

    /// The metrics, when they are on.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }
}

/// Installs the process's log subscriber for the gateway's own events, as `[log]` says.
pub fn init_logging(section: &LogSection) {
    let level = match section.level.unwrap_or(LogLevel::Info) {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let json = section.format == Some(LogFormat::Json);
    let events = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(!json && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let events = if json {
        events.json().flatten_event(true).boxed()
    } else {
        events.boxed()
    };
    // A subscriber set already (by a test harness) stays.
    let _ = tracing_subscriber::registry()
        .with(events.with_filter(log_filter(level)))
        .try_init();
}

/// What the log shows at `level`. h2 warns about every peer that breaks its rules, a line per
/// connection: a rapid-reset attack would be thousands of lines. The gateway reports those
/// clients itself, counted; h2's own lines show from `debug` on.
fn log_filter(level: LevelFilter) -> Targets {
    let h2 = if level >= LevelFilter::DEBUG {
        level
    } else {
        LevelFilter::ERROR
    };
    Targets::new().with_default(level).with_target("h2", h2)
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn h2s_own_warnings_show_only_from_debug_on() {
        let info = log_filter(LevelFilter::INFO);
        assert!(!info.would_enable("h2::proto::streams::recv", &Level::WARN));
        assert!(info.would_enable("h2::proto::connection", &Level::ERROR));
        assert!(info.would_enable("protogate_gateway::server::resets", &Level::WARN));
        assert!(info.would_enable("protogate::upstream", &Level::INFO));
        assert!(!info.would_enable("protogate::upstream", &Level::DEBUG));
        let debug = log_filter(LevelFilter::DEBUG);
        assert!(debug.would_enable("h2::proto::streams::recv", &Level::DEBUG));
    }
}
