//! Hot reload: the config is read again on SIGHUP and whenever its file changes. A valid one is
//! swapped in for the requests that follow (upstreams, limits, deadlines, JSON options), while
//! requests under way finish on the settings they started with and no connection is dropped; an
//! invalid one is logged with its file, line and key, and the running config stays.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::{self, Config};
use crate::upstream::Plan;

/// How often the config file is looked at for a change.
const POLL: Duration = Duration::from_secs(1);

/// The config in effect, shared by the workers (which build their routers from its plan), the
/// admin listener and the reloader.
pub struct Live {
    plan: RwLock<Arc<Plan>>,
    text: RwLock<Arc<str>>,
    server: RwLock<config::Server>,
    generation: Arc<AtomicU64>,
}

impl Live {
    /// The config first loaded and its plan.
    pub fn new(plan: Plan, config: &Config) -> Live {
        Live {
            plan: RwLock::new(Arc::new(plan)),
            text: RwLock::new(config::effective(config).into()),
            server: RwLock::new(config.server.clone()),
            generation: Arc::default(),
        }
    }

    /// The plan in effect.
    pub fn plan(&self) -> Arc<Plan> {
        Arc::clone(&self.plan.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The config in effect, as `config show` prints it.
    pub fn text(&self) -> Arc<str> {
        Arc::clone(&self.text.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The `[server]` section in effect (its docs and demo switches take effect at a reload).
    pub fn server(&self) -> config::Server {
        self.server
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Bumped at every reload: the workers' cue to build their routers again.
    pub fn generation(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.generation)
    }

    /// Puts `plan` and `config` in effect for the requests that follow.
    pub fn swap(&self, plan: Plan, config: &Config) {
        let before = std::mem::replace(
            &mut *self.server.write().unwrap_or_else(|e| e.into_inner()),
            config.server.clone(),
        );
        if before.listen != config.server.listen
            || before.workers != config.server.workers
            || before.header_read_timeout != config.server.header_read_timeout
            || before.send_timeout != config.server.send_timeout
            || before.max_connections != config.server.max_connections
        {
            tracing::warn!(
                "[server] listen, workers, header_read_timeout, send_timeout and max_connections take effect at the next start"
            );
        }
        let traced = |plan: &Plan| plan.tracing().map(|t| t.section().clone());
        if traced(&self.plan()) != traced(&plan) {
            tracing::warn!("[tracing] takes effect at the next start");
        }
        *self.plan.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(plan);
        *self.text.write().unwrap_or_else(|e| e.into_inner()) = config::effective(config).into();
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Reloads `live` with what `build` makes, on SIGHUP and when `file` changes, counting the
/// reloads into `metrics`; runs until the process ends.
pub async fn watch(
    live: Arc<Live>,
    file: Option<PathBuf>,
    metrics: Option<protogate::observe::Metrics>,
    build: impl Fn() -> Result<(Config, Plan), String>,
) {
    let read = || file.as_ref().and_then(|file| std::fs::read(file).ok());
    let mut last = read();
    let mut hangups = hangups();
    loop {
        let asked = tokio::select! {
            () = next(&mut hangups) => true,
            () = tokio::time::sleep(POLL) => false,
        };
        let now = read();
        if !asked && now == last {
            continue;
        }
        last = now;
        let built = build();
        if let Some(metrics) = &metrics {
            metrics.config_reloaded(built.is_ok());
        }
        match built {
            Ok((config, plan)) => {
                live.swap(plan, &config);
                tracing::info!("config reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "config not reloaded: the running one stays");
            }
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {}

/// The next SIGHUP (never, where there is none).
#[cfg(unix)]
async fn next(hangups: &mut Hangups) {
    match hangups {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn next(_: &mut Hangups) {
    std::future::pending::<()>().await;
}
