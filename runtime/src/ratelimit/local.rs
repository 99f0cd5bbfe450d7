//! The buckets of one process, in memory: sharded maps of TATs, with idle buckets forgotten so
//! that memory follows the clients active within one limit's period, however many came before.
//!
//! A bucket whose TAT has passed is full, the same as one never seen ([`Gcra::is_idle`]), so
//! forgetting it changes no decision. Every `sweep_every`, the first request that notices sweeps
//! every shard; between sweeps, a shard that has doubled since its last sweep sweeps itself, so a
//! flood of new keys is paid for by the requests that bring them.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::gcra::{Decision, Gcra};

/// Shards: enough that workers on every core rarely wait for one another.
const SHARDS: usize = 32;

/// The size below which a shard never sweeps for growth alone.
const SMALL_SHARD: usize = 256;

#[derive(Default)]
struct Shard {
    tats: HashMap<Box<str>, u64>,
    /// Its size after its last sweep.
    swept_len: usize,
}

impl Shard {
    fn sweep(&mut self, now: u64) {
        self.tats.retain(|_, tat| !Gcra::is_idle(*tat, now));
        self.swept_len = self.tats.len();
    }
}

/// The in-memory buckets.
pub(crate) struct LocalStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// When the next full sweep is due (microseconds, on the caller's clock).
    next_sweep: AtomicU64,
    sweep_every: u64,
}

impl LocalStore {
    /// A store that sweeps every shard every `sweep_every` microseconds.
    pub fn new(sweep_every: u64) -> LocalStore {
        LocalStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            next_sweep: AtomicU64::new(sweep_every),
            sweep_every: sweep_every.max(1),
        }
    }

    /// Decides a request on the bucket `key` at `now` (microseconds on a clock that never goes
    /// back).
    pub fn decide(&self, key: &str, gcra: Gcra, now: u64) -> Decision {
        self.sweep_if_due(now);
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if shard.tats.len() >= (2 * shard.swept_len).max(SMALL_SHARD) {
            shard.sweep(now);
        }
        let tat = shard.tats.get(key).copied();
        let (decision, new_tat) = gcra.decide(tat, now);
        if let Some(new_tat) = new_tat {
            match shard.tats.get_mut(key) {
                Some(slot) => *slot = new_tat,
                None => {
                    shard.tats.insert(key.into(), new_tat);
                }
            }
        }
        decision
    }

    fn sweep_if_due(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let next = now.saturating_add(self.sweep_every);
        if self
            .next_sweep
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another request is sweeping.
            return;
        }
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .sweep(now);
        }
    }

    /// The buckets held, idle ones not yet swept included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .tats
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: u64 = 1_000_000;

    #[test]
    fn buckets_are_kept_apart() {
        let store = LocalStore::new(SECOND);
        let gcra = Gcra::new(2, Duration::from_secs(1), 2);
        let allowed = |key: &str| {
            (0..5)
                .filter(|_| store.decide(key, gcra, 10).allowed)
                .count()
        };
        assert_eq!(allowed("a"), 2);
        assert_eq!(allowed("b"), 2);
        assert_eq!(allowed("a"), 0);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn memory_follows_the_active_clients_not_all_that_ever_came() {
        let store = LocalStore::new(SECOND);
        let gcra = Gcra::new(10, Duration::from_secs(1), 10);
        let mut now = SECOND;
        // 200 000 clients, each seen once, 20 000 a second for ten seconds: each bucket is idle
        // 100 ms after its request.
        for second in 0..10u64 {
            for client in 0..20_000u64 {
                let key = format!("ip:{second}-{client}");
                assert!(store.decide(&key, gcra, now).allowed);
                now += 50;
            }
            // At no point more than about two seconds' worth of clients.
            assert!(store.len() <= 45_000, "{} buckets held", store.len());
        }
        // Once every bucket is idle, the next request sweeps them all.
        now += 2 * SECOND;
        store.decide("ip:last", gcra, now);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn sweeping_forgets_only_idle_buckets() {
        let store = LocalStore::new(SECOND);
        let gcra = Gcra::new(1, Duration::from_secs(10), 1);
        let quick = Gcra::new(1000, Duration::from_secs(1), 1);
        assert!(store.decide("busy", gcra, SECOND).allowed);
        assert!(store.decide("quick", quick, 2 * SECOND).allowed);
        assert_eq!(store.len(), 2);
        // The sweep at 3 s forgets "quick" (idle since 2.001 s) and keeps "busy" (not idle
        // before 11 s), which still refuses.
        assert!(!store.decide("busy", gcra, 3 * SECOND).allowed);
        assert_eq!(store.len(), 1);
        // At 12 s "busy" is idle too: forgotten, and allowed again as a fresh bucket.
        assert!(store.decide("busy", gcra, 12 * SECOND).allowed);
        assert_eq!(store.len(), 1);
    }
}
