//! A worker's endpoints and the choice of one per call: the less loaded of two picked at random
//! (power of two choices over calls in flight), or each in turn.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::dial::Dial;
use super::directory::Snapshot;
use super::endpoint::Endpoint;

/// How a call's endpoint is chosen among those available.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Of two endpoints picked at random, the one with fewer calls in flight from this worker.
    #[default]
    LeastRequests,
    /// Each endpoint in turn.
    RoundRobin,
}

/// One worker's connections, one per endpoint, kept in step with the upstream's endpoints.
pub(crate) struct Pool {
    dial: Arc<Dial>,
    balance: Balance,
    endpoints: Mutex<Endpoints>,
    turn: AtomicUsize,
    random: AtomicU64,
}

#[derive(Default)]
struct Endpoints {
    version: u64,
    list: Arc<[Arc<Endpoint>]>,
}

impl Pool {
    pub(crate) fn new(dial: Arc<Dial>, balance: Balance) -> Self {
        Pool {
            dial,
            balance,
            endpoints: Mutex::default(),
            turn: AtomicUsize::new(0),
            random: AtomicU64::new(0x853c_49e6_748f_ea9b),
        }
    }

    /// This worker's endpoints for snapshot `version`, made from `snapshot()` when the worker's
    /// own are older. An endpoint that stays keeps its connection; one that left is dropped
    /// here, and its connection closes once the calls still on it finish.
    pub(crate) fn endpoints(
        &self,
        version: u64,
        snapshot: impl FnOnce() -> Arc<Snapshot>,
    ) -> Arc<[Arc<Endpoint>]> {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if endpoints.version != version {
            let snapshot = snapshot();
            let list = snapshot
                .peers
                .iter()
                .map(|state| {
                    endpoints
                        .list
                        .iter()
                        .find(|endpoint| Arc::ptr_eq(&endpoint.state, state))
                        .cloned()
                        .unwrap_or_else(|| {
                            Arc::new(Endpoint::new(Arc::clone(state), Arc::clone(&self.dial)))
                        })
                })
                .collect();
            *endpoints = Endpoints {
                version: snapshot.version,
                list,
            };
        }
        Arc::clone(&endpoints.list)
    }

    /// The endpoint for the next call among `list`, leaving out those `tried` already (unless
    /// nothing else is left); `None` when no endpoint is available.
    pub(crate) fn pick(
        &self,
        list: &[Arc<Endpoint>],
        tried: &[Arc<Endpoint>],
    ) -> Option<Arc<Endpoint>> {
        let now = Instant::now();
        let usable = |endpoint: &Arc<Endpoint>| {
            !tried.iter().any(|t| Arc::ptr_eq(t, endpoint)) && endpoint.state.available(now)
        };
        let chosen = match list {
            [] => None,
            [only] => usable(only).then_some(only),
            _ => match self.balance {
                Balance::LeastRequests => {
                    let n = list.len();
                    let first = self.random(n);
                    let second = (first + 1 + self.random(n - 1)) % n;
                    let (a, b) = (&list[first], &list[second]);
                    match (usable(a), usable(b)) {
                        (true, true) if b.outstanding() < a.outstanding() => Some(b),
                        (true, _) => Some(a),
                        (false, true) => Some(b),
                        (false, false) => scan(list, first, usable),
                    }
                }
                Balance::RoundRobin => {
                    // A retry takes the next endpoint of its call's turn, not a turn of its own.
                    let turn = if tried.is_empty() {
                        self.turn.fetch_add(1, Ordering::Relaxed)
                    } else {
                        self.turn.load(Ordering::Relaxed).wrapping_sub(1)
                    };
                    let start = turn % list.len();
                    scan(list, start, usable)
                }
            },
        };
        chosen.cloned()
    }

    /// A number below `n` (n > 0), from a splitmix64 sequence: cheap, lock-free, and good
    /// enough to spread calls.
    fn random(&self, n: usize) -> usize {
        let mut z = self
            .random
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % n as u64) as usize
    }
}

/// The first endpoint from `start` on (wrapping around) that is usable.
fn scan(
    list: &[Arc<Endpoint>],
    start: usize,
    usable: impl Fn(&Arc<Endpoint>) -> bool,
) -> Option<&Arc<Endpoint>> {
    (0..list.len())
        .map(|i| &list[(start + i) % list.len()])
        .find(|endpoint| usable(endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::upstream::address::Address;
    use crate::upstream::endpoint::{Ejection, PeerState};

    fn pool(balance: Balance, ports: &[u16]) -> (Pool, Arc<[Arc<Endpoint>]>) {
        let dial = Arc::new(Dial {
            connect_timeout: Duration::from_secs(1),
            tls: None,
            keepalive: None,
            stream_window: crate::upstream::dial::DEFAULT_STREAM_WINDOW,
            metrics: None,
        });
        let pool = Pool::new(dial, balance);
        let peers = ports
            .iter()
            .map(|port| {
                let address = Address::parse(&format!("http://127.0.0.1:{port}")).unwrap();
                Arc::new(PeerState::new(
                    address.fixed_peer().unwrap(),
                    Ejection {
                        consecutive_failures: 1,
                        ..Ejection::default()
                    },
                ))
            })
            .collect();
        let list = pool.endpoints(1, || {
            Arc::new(Snapshot {
                version: 1,
                peers,
                problem: None,
            })
        });
        (pool, list)
    }

    fn port(endpoint: &Endpoint) -> String {
        endpoint.state.peer.address.to_string()
    }

    #[test]
    fn round_robin_takes_each_endpoint_in_turn_and_skips_ejected_ones() {
        let (pool, list) = pool(Balance::RoundRobin, &[1, 2, 3]);
        let picks: Vec<String> = (0..4)
            .map(|_| port(&pool.pick(&list, &[]).unwrap()))
            .collect();
        assert_eq!(
            picks,
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:1"]
        );
        list[1].state.failed("refused");
        let picks: Vec<String> = (0..3)
            .map(|_| port(&pool.pick(&list, &[]).unwrap()))
            .collect();
        assert!(!picks.contains(&"127.0.0.1:2".to_owned()), "{picks:?}");
    }

    #[test]
    fn least_requests_prefers_the_endpoint_with_fewer_calls_in_flight() {
        let (pool, list) = pool(Balance::LeastRequests, &[1, 2]);
        // With two endpoints both are always compared: the idle one wins every time.
        let _busy: Vec<_> = (0..3).map(|_| list[0].start()).collect();
        for _ in 0..20 {
            assert_eq!(port(&pool.pick(&list, &[]).unwrap()), "127.0.0.1:2");
        }
        // An endpoint already tried is left out while another is available.
        let tried = [Arc::clone(&list[1])];
        assert_eq!(port(&pool.pick(&list, &tried).unwrap()), "127.0.0.1:1");
        list[0].state.failed("refused");
        assert!(pool.pick(&list, &tried).is_none());
    }

    #[test]
    fn least_requests_spreads_calls_over_every_endpoint() {
        let (pool, list) = pool(Balance::LeastRequests, &[1, 2, 3, 4]);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(port(&pool.pick(&list, &[]).unwrap()));
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
    }

    #[test]
    fn a_new_snapshot_keeps_the_connections_of_endpoints_that_stay() {
        let (pool, list) = pool(Balance::RoundRobin, &[1, 2]);
        let kept = Arc::clone(&list[1].state);
        let again = pool.endpoints(2, || {
            Arc::new(Snapshot {
                version: 2,
                peers: vec![kept],
                problem: None,
            })
        });
        assert_eq!(again.len(), 1);
        assert!(Arc::ptr_eq(&again[0], &list[1]));
    }
}
