//! What the gateway says about itself, from `[metrics]` and `[log]`: the observe layer every
//! worker's router wears (request ids, metrics, the access log), and the log subscriber.
//!
//! Gateway events (start, reloads, upstream endpoints down and up, Redis fallback) go to stderr,
//! access log lines to stdout, both as text or JSON lines. Access lines pass through a bounded
//! queue to a writer thread: when stdout falls behind, lines are dropped and counted
//! (`protogate_access_log_dropped_total`), never waited for.

use protogate::observe::{ACCESS_TARGET, AccessLog, Metrics, ObserveLayer};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{Config, LogFormat, LogLevel, LogSection};

/// The access log lines that may wait for the writer; beyond them, lines are dropped.
const ACCESS_QUEUE: usize = 64 * 1024;

/// The observability of one running gateway, built once at start.
#[derive(Clone)]
pub struct Observing {
    layer: ObserveLayer,
    metrics: Option<Metrics>,
}

impl Observing {
    /// What `config` asks for: metrics where there is an admin listener to serve them, unless
    /// `[metrics] enabled = false`; the access log when `[log] access = true`. Request ids are
    /// always given.
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
        if config.log.access_on() {
            layer = layer.observer(AccessLog);
        }
        Observing { layer, metrics }
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

/// Keeps the access log's writer thread until dropped (at exit), which writes what is queued.
pub struct LogGuard {
    _writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the process's log subscriber as `[log]` says; the access log's dropped lines are
/// counted into `metrics`.
pub fn init_logging(section: &LogSection, metrics: Option<&Metrics>) -> LogGuard {
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
    let events = events.with_filter(
        Targets::new()
            .with_default(level)
            .with_target(ACCESS_TARGET, LevelFilter::OFF),
    );
    let (access, guard) = if section.access_on() {
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(ACCESS_QUEUE)
            .thread_name("protogate-access-log")
            .finish(std::io::stdout());
        if let Some(metrics) = metrics {
            let dropped = writer.error_counter();
            metrics.polled_counter(
                "access_log_dropped",
                "Access log lines dropped because stdout fell behind",
                move || u64::try_from(dropped.dropped_lines()).unwrap_or(u64::MAX),
            );
        }
        let access = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false);
        let access = if json {
            access.json().flatten_event(true).boxed()
        } else {
            access.boxed()
        };
        let only_access = Targets::new().with_target(ACCESS_TARGET, LevelFilter::INFO);
        (Some(access.with_filter(only_access)), Some(guard))
    } else {
        (None, None)
    };
    // A subscriber set already (by a test harness) stays.
    let _ = tracing_subscriber::registry()
        .with(events)
        .with(access)
        .try_init();
    LogGuard { _writer: guard }
}
