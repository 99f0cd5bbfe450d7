//! What keeps one upstream from taking the gateway down with it: a bulkhead (a bound on its calls
//! in flight, with a short queue, past which calls are shed at once) and a retry budget (retries
//! as a fraction of recent calls, so that a failing upstream does not get a storm of them).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::observe::BulkheadMetrics;

/// A bound on an upstream's calls in flight, shared by every worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bulkhead {
    /// Calls in flight at most; a streaming call counts until it ends.
    pub max_in_flight: usize,
    /// Calls that may wait for a free place; beyond them, calls are shed at once.
    pub queue: usize,
    /// How long a call may wait in the queue before it is shed.
    pub queue_timeout: Duration,
}

impl Bulkhead {
    /// `max_in_flight` calls, with a queue of a tenth as many (at least one) that waits at most
    /// 100 ms.
    pub fn new(max_in_flight: usize) -> Self {
        Bulkhead {
            max_in_flight,
            queue: (max_in_flight / 10).max(1),
            queue_timeout: Duration::from_millis(100),
        }
    }
}

/// How long a client told that a call was shed is asked to wait.
pub(crate) const SHED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A bulkhead in force.
#[derive(Debug)]
pub(crate) struct Gate {
    limit: Bulkhead,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    metrics: BulkheadMetrics,
}

/// A call's place in a bulkhead, given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    _permit: OwnedSemaphorePermit,
    in_flight: Gauge,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl Gate {
    pub(crate) fn new(limit: Bulkhead, metrics: BulkheadMetrics) -> Self {
        Gate {
            permits: Arc::new(Semaphore::new(limit.max_in_flight)),
            waiting: AtomicUsize::new(0),
            limit,
            metrics,
        }
    }

    /// A place for one call, held until the call ends; `None` when the call is to be shed.
    pub(crate) async fn enter(&self) -> Option<Place> {
        let place = |permit| {
            self.metrics.in_flight.inc();
            Place {
                _permit: permit,
                in_flight: self.metrics.in_flight.clone(),
            }
        };
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Some(place(permit));
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limit.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.metrics.shed.inc();
            return None;
        }
        self.metrics.queued.inc();
        let waited = tokio::time::timeout(
            self.limit.queue_timeout,
            Arc::clone(&self.permits).acquire_owned(),
        )
        .await;
        self.metrics.queued.dec();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited.ok().and_then(Result::ok) {
            Some(permit) => Some(place(permit)),
            None => {
                self.metrics.shed.inc();
                None
            }
        }
    }

    /// Why a call was shed.
    pub(crate) fn shed_message(&self, upstream: &str) -> String {
        format!(
            "upstream `{upstream}` is at its limit of {} calls in flight with {} waiting: the call was shed; retry later",
            self.limit.max_in_flight, self.limit.queue
        )
    }
}

/// How many retries an upstream may take: a fraction of its recent calls, plus a few per second
/// however few the calls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    /// Retries allowed per call made (0.2: one retry for every five calls).
    pub ratio: f64,
    /// Retries allowed every second in any case.
    pub min_per_second: u32,
}

impl Default for RetryBudget {
    /// One retry per five calls, and ten a second in any case.
    fn default() -> Self {
        RetryBudget {
            ratio: 0.2,
            min_per_second: 10,
        }
    }
}

/// Thousandths of a retry: the unit the budget counts in.
const ONE: i64 = 1000;

/// The calls a budget remembers: deposits beyond what this many calls earn are not kept.
const REMEMBERED_CALLS: i64 = 1000;

/// A retry budget in force, shared by every worker.
#[derive(Debug)]
pub(crate) struct Budget {
    deposit: i64,
    cap: i64,
    min_per_second: u32,
    balance: AtomicI64,
    /// The second (since `epoch`) that `spent_this_second` counts for.
    second: AtomicU64,
    spent_this_second: AtomicU32,
    epoch: Instant,
}

impl Budget {
    pub(crate) fn new(budget: RetryBudget) -> Self {
        let deposit = (budget.ratio.clamp(0.0, 1000.0) * ONE as f64) as i64;
        Budget {
            deposit,
            cap: deposit.saturating_mul(REMEMBERED_CALLS),
            min_per_second: budget.min_per_second,
            balance: AtomicI64::new(0),
            second: AtomicU64::new(0),
            spent_this_second: AtomicU32::new(0),
            epoch: Instant::now(),
        }
    }

    /// A call was made: it earns its share of a retry.
    pub(crate) fn deposit(&self) {
        if self.deposit == 0 {
            return;
        }
        let before = self.balance.fetch_add(self.deposit, Ordering::Relaxed);
        if before + self.deposit > self.cap {
            self.balance.fetch_min(self.cap, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget, if it has one.
    pub(crate) fn withdraw(&self) -> bool {
        if self.balance.fetch_sub(ONE, Ordering::Relaxed) >= ONE {
            return true;
        }
        self.balance.fetch_add(ONE, Ordering::Relaxed);
        let second = self.epoch.elapsed().as_secs();
        if self.second.swap(second, Ordering::Relaxed) != second {
            self.spent_this_second.store(0, Ordering::Relaxed);
        }
        self.spent_this_second.fetch_add(1, Ordering::Relaxed) < self.min_per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_earned_by_calls() {
        let budget = Budget::new(RetryBudget {
            ratio: 0.5,
            min_per_second: 0,
        });
        assert!(!budget.withdraw(), "no call made, no retry earned");
        budget.deposit();
        assert!(!budget.withdraw(), "half a retry is not one");
        budget.deposit();
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }

    #[test]
    fn a_few_retries_a_second_are_allowed_whatever_the_calls() {
        let budget = Budget::new(RetryBudget {
            ratio: 0.0,
            min_per_second: 2,
        });
        budget.deposit();
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }

    #[test]
    fn deposits_are_capped() {
        let budget = Budget::new(RetryBudget {
            ratio: 1.0,
            min_per_second: 0,
        });
        for _ in 0..5000 {
            budget.deposit();
        }
        let retries = std::iter::from_fn(|| budget.withdraw().then_some(()))
            .take(5000)
            .count();
        assert_eq!(retries, REMEMBERED_CALLS as usize);
    }

    #[tokio::test]
    async fn a_full_bulkhead_queues_a_few_calls_briefly_and_sheds_the_rest() {
        let metrics = BulkheadMetrics::default();
        let gate = Gate::new(
            Bulkhead {
                max_in_flight: 2,
                queue: 1,
                queue_timeout: Duration::from_millis(50),
            },
            metrics.clone(),
        );
        let first = gate.enter().await.expect("room");
        let _second = gate.enter().await.expect("room");
        // The queue holds one: a call waiting there gets the first place freed.
        let waiting = gate.enter();
        tokio::pin!(waiting);
        let still_waiting = tokio::time::timeout(Duration::from_millis(10), &mut waiting).await;
        assert!(still_waiting.is_err(), "a place must free up first");
        assert_eq!(metrics.queued.get(), 1);
        assert!(gate.enter().await.is_none(), "queue full: shed at once");
        assert_eq!(metrics.in_flight.get(), 2);
        drop(first);
        let _third = waiting.await.expect("the freed place");
        assert_eq!((metrics.in_flight.get(), metrics.queued.get()), (2, 0));
        // Nothing frees up in time: shed after the queue timeout.
        assert!(gate.enter().await.is_none());
        assert_eq!(metrics.shed.get(), 2);
        assert!(gate.shed_message("orders").contains("`orders`"));
    }
}
