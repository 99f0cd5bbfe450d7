//! Which endpoints an upstream has now: its fixed addresses, and the addresses its DNS names
//! resolve to, resolved again in the background from time to time.
//!
//! The endpoints are kept as numbered snapshots. A worker compares a number to see whether its
//! own connections still match; an endpoint that leaves keeps its connection until the calls on
//! it finish.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::address::{Address, Peer};
use super::endpoint::{Ejection, PeerState};
use crate::observe::UpstreamMetrics;

/// Finds the addresses of a host name. The gateway resolves through the system
/// ([`SystemResolver`]) unless given another, for instance one that reads a service registry,
/// or a test's own.
pub trait Resolve: Send + Sync + 'static {
    /// The socket addresses of `host` at `port`.
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;
}

/// Resolves names as the system does (`getaddrinfo`, on a blocking thread).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The shortest time between two resolutions of an upstream's names, whatever is configured.
pub(crate) const MIN_RESOLVE_INTERVAL: Duration = Duration::from_millis(100);

/// The endpoints at one moment.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub version: u64,
    pub peers: Vec<Arc<PeerState>>,
    /// Why a name could not be resolved the last time, if it could not.
    pub problem: Option<String>,
}

pub(crate) struct Directory {
    metrics: Option<UpstreamMetrics>,
    sources: Vec<Address>,
    /// Some source is a name to resolve.
    named: bool,
    resolver: Arc<dyn Resolve>,
    every: Duration,
    ejection: Ejection,
    snapshot: RwLock<Arc<Snapshot>>,
    version: AtomicU64,
    /// Set once the names have been resolved a first time.
    initial: OnceCell<()>,
    refreshing: AtomicBool,
    last_refresh: Mutex<Instant>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("sources", &self.sources)
            .field("every", &self.every)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Directory {
    pub(crate) fn new(
        sources: Vec<Address>,
        resolver: Arc<dyn Resolve>,
        every: Duration,
        ejection: Ejection,
        metrics: Option<UpstreamMetrics>,
    ) -> Directory {
        let directory = Directory {
            metrics,
            resolver,
            every: every.max(MIN_RESOLVE_INTERVAL),
            ejection,
            snapshot: RwLock::default(),
            version: AtomicU64::new(0),
            initial: OnceCell::new(),
            refreshing: AtomicBool::new(false),
            last_refresh: Mutex::new(Instant::now()),
            named: sources.iter().any(|source| source.name().is_some()),
            sources,
        };
        if !directory.has_names() {
            // Nothing to resolve: the endpoints are known now and for good.
            let peers = directory
                .sources
                .iter()
                .filter_map(Address::fixed_peer)
                .map(|peer| Arc::new(directory.peer_state(peer)))
                .collect();
            directory.publish(peers, None);
            let _ = directory.initial.set(());
        }
        directory
    }

    /// The state of a peer seen for the first time, its health counted where metrics are.
    fn peer_state(&self, peer: Peer) -> PeerState {
        let state = PeerState::new(peer, self.ejection);
        match &self.metrics {
            Some(metrics) => {
                let series = metrics.endpoint(&state.label);
                state.watched_by(series)
            }
            None => state,
        }
    }

    pub(crate) fn has_names(&self) -> bool {
        self.named
    }

    /// The number of the current snapshot: a worker whose own is the same needs not look.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The endpoints now. The first call waits for the names to be resolved; after that a
    /// resolution that is due runs in the background while calls go on with what is known.
    /// `urgent` asks for one sooner (every endpoint is down), though never more often than
    /// [`MIN_RESOLVE_INTERVAL`].
    pub(crate) async fn current(self: &Arc<Self>, urgent: bool) -> Arc<Snapshot> {
        if self.has_names() {
            if self.initial.initialized() {
                self.refresh_if_due(urgent);
            } else {
                self.initial.get_or_init(|| self.refresh()).await;
            }
        }
        self.snapshot()
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .snapshot
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn refresh_if_due(self: &Arc<Self>, urgent: bool) {
        let due = {
            let last = self
                .last_refresh
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let every = if urgent {
                MIN_RESOLVE_INTERVAL
            } else {
                self.every
            };
            last.elapsed() >= every
        };
        // One resolution at a time, in the background.
        if due && !self.refreshing.swap(true, Ordering::AcqRel) {
            let directory = Arc::clone(self);
            tokio::spawn(async move {
                directory.refresh().await;
                directory.refreshing.store(false, Ordering::Release);
            });
        }
    }

    /// Resolves every name and publishes the endpoints found. A name that fails to resolve keeps
    /// the endpoints it had.
    async fn refresh(&self) {
        let previous = self.snapshot();
        let known: HashMap<&Peer, &Arc<PeerState>> = previous
            .peers
            .iter()
            .map(|state| (&state.peer, state))
            .collect();
        let mut peers: Vec<Peer> = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        for source in &self.sources {
            let Some((host, port)) = source.name() else {
                peers.extend(source.fixed_peer());
                continue;
            };
            match self.resolver.resolve(host, port).await {
                Ok(sockets) if !sockets.is_empty() => {
                    peers.extend(sockets.into_iter().map(|s| source.resolved_peer(s)));
                }
                outcome => {
                    let why = match outcome {
                        Err(error) => error.to_string(),
                        Ok(_) => "no address".to_owned(),
                    };
                    tracing::warn!(url = %source.url, error = %why, "cannot resolve upstream");
                    problems.push(format!("cannot resolve {host}: {why}"));
                    peers.extend(
                        previous
                            .peers
                            .iter()
                            .filter(|state| state.peer.authority == source.authority)
                            .map(|state| state.peer.clone()),
                    );
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        peers.retain(|peer| seen.insert(peer.clone()));
        let states: Vec<Arc<PeerState>> = peers
            .into_iter()
            .map(|peer| match known.get(&peer) {
                Some(state) => Arc::clone(state),
                None => Arc::new(self.peer_state(peer)),
            })
            .collect();
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        let changed = states.len() != previous.peers.len()
            || states
                .iter()
                .zip(&previous.peers)
                .any(|(now, before)| !Arc::ptr_eq(now, before));
        drop(known);
        *self
            .last_refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        if changed || problem != previous.problem {
            self.publish(states, problem);
        }
    }

    fn publish(&self, peers: Vec<Arc<PeerState>>, problem: Option<String>) {
        let mut slot = self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let version = slot.version + 1;
        *slot = Arc::new(Snapshot {
            version,
            peers,
            problem,
        });
        self.version.store(version, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers from a table the test changes.
    #[derive(Default)]
    struct Table(Mutex<HashMap<String, io::Result<Vec<SocketAddr>>>>);

    impl Table {
        fn set(&self, host: &str, answer: io::Result<Vec<SocketAddr>>) {
            self.0.lock().unwrap().insert(host.to_owned(), answer);
        }
    }

    impl Resolve for Table {
        fn resolve<'a>(
            &'a self,
            host: &'a str,
            _port: u16,
        ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
            let answer = match self.0.lock().unwrap().get(host) {
                Some(Ok(sockets)) => Ok(sockets.clone()),
                Some(Err(error)) => Err(io::Error::new(error.kind(), error.to_string())),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "unknown host")),
            };
            Box::pin(async move { answer })
        }
    }

    fn sockets(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn addresses(snapshot: &Snapshot) -> Vec<String> {
        snapshot
            .peers
            .iter()
            .map(|state| state.peer.address.to_string())
            .collect()
    }

    #[tokio::test]
    async fn names_resolve_and_keep_their_endpoints_health_across_refreshes() {
        let table = Arc::new(Table::default());
        table.set("svc.test", Ok(sockets(&["10.0.0.1:80", "10.0.0.2:80"])));
        let sources = vec![
            Address::parse("http://svc.test").unwrap(),
            Address::parse("http://10.0.0.9:81").unwrap(),
        ];
        let resolver: Arc<dyn Resolve> = table.clone();
        let directory = Arc::new(Directory::new(
            sources,
            resolver,
            Duration::ZERO,
            Ejection::default(),
            None,
        ));
        let first = directory.current(false).await;
        assert_eq!(
            addresses(&first),
            ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.9:81"]
        );
        assert_eq!(first.peers[0].peer.authority.as_str(), "svc.test");

        table.set("svc.test", Ok(sockets(&["10.0.0.2:80", "10.0.0.3:80"])));
        directory.refresh().await;
        let second = directory.snapshot();
        assert!(second.version > first.version);
        assert_eq!(
            addresses(&second),
            ["10.0.0.2:80", "10.0.0.3:80", "10.0.0.9:81"]
        );
        assert!(
            Arc::ptr_eq(&second.peers[0], &first.peers[1]),
            "an endpoint that stays keeps its state"
        );

        // A failed resolution keeps what the name had, and says why.
        table.set("svc.test", Err(io::Error::other("SERVFAIL")));
        directory.refresh().await;
        let third = directory.snapshot();
        assert_eq!(addresses(&third), addresses(&second));
        assert!(third.problem.as_deref().unwrap().contains("SERVFAIL"));

        // Nothing changed: the same snapshot number.
        directory.refresh().await;
        assert_eq!(directory.snapshot().version, third.version);
    }

    #[tokio::test]
    async fn fixed_addresses_need_no_resolving() {
        let resolver: Arc<dyn Resolve> = Arc::new(Table::default());
        let directory = Arc::new(Directory::new(
            vec![Address::parse("unix:///run/svc.sock").unwrap()],
            resolver,
            Duration::from_secs(30),
            Ejection::default(),
            None,
        ));
        assert_eq!(directory.version(), 1);
        assert_eq!(
            addresses(&*directory.current(false).await),
            ["unix:/run/svc.sock"]
        );
    }
}
