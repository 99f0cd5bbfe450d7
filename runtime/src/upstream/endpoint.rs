//! One endpoint of an upstream: its health, shared by every worker, and each worker's own
//! connection to it with the calls it has in flight.
//!
//! Passive health: an endpoint that fails `consecutive_failures` times in a row (a connection
//! refused, timed out or unanswered, an UNAVAILABLE answer) is ejected for a backoff that doubles
//! with each ejection in a row, then tried again. Active health, when configured, marks an
//! endpoint down while its health check fails.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::address::Peer;
use super::connection::Connection;
use super::dial::Dial;
use crate::observe::EndpointMetrics;

/// When an endpoint is taken out of rotation after failing, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ejection {
    /// Failures in a row that eject the endpoint (connection refused or timed out, an
    /// UNAVAILABLE answer). At least 1.
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; each one in a row doubles it.
    pub base: Duration,
    /// The longest an ejection lasts.
    pub max: Duration,
}

impl Default for Ejection {
    /// Ejected after 5 failures in a row, for 1 s doubling up to 30 s.
    fn default() -> Self {
        Ejection {
            consecutive_failures: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Ejection {
    fn backoff(&self, ejections: u32) -> Duration {
        let doubled = self
            .base
            .checked_mul(1u32 << ejections.min(20))
            .unwrap_or(self.max);
        doubled.min(self.max)
    }
}

/// What the active health check last said.
const UNCHECKED: u8 = 0;
const SERVING: u8 = 1;
const NOT_SERVING: u8 = 2;

/// An endpoint's health, seen by every worker's connection to it.
#[derive(Debug)]
pub(crate) struct PeerState {
    pub peer: Peer,
    /// Its address as metrics and logs name it (`ip:port`, `unix:/path`), written once.
    pub label: Arc<str>,
    ejection: Ejection,
    failures: AtomicU32,
    ejections: AtomicU32,
    /// Set while ejected (a quick check before the lock).
    ejected: AtomicBool,
    down: Mutex<Option<Down>>,
    checked: AtomicU8,
    /// Its series, where the upstream counts metrics.
    metrics: Option<EndpointMetrics>,
}

#[derive(Debug)]
struct Down {
    until: Instant,
    reason: String,
}

impl PeerState {
    pub(crate) fn new(peer: Peer, ejection: Ejection) -> Self {
        PeerState {
            label: peer.address.to_string().into(),
            peer,
            ejection,
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected: AtomicBool::new(false),
            down: Mutex::new(None),
            checked: AtomicU8::new(UNCHECKED),
            metrics: None,
        }
    }

    /// The same state, counted into `metrics` (it takes calls from now).
    pub(crate) fn watched_by(mut self, metrics: EndpointMetrics) -> Self {
        metrics.up.set(1);
        self.metrics = Some(metrics);
        self
    }

    /// Tells the gauge whether it takes calls now.
    fn show(&self, up: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.up.set(i64::from(up));
        }
    }

    /// A call it took got its response's headers `elapsed` after it was sent.
    pub(crate) fn answered(&self, elapsed: Duration) {
        if let Some(metrics) = &self.metrics {
            metrics.call_duration.observe(elapsed.as_secs_f64());
        }
    }

    /// Whether calls may go to it now. Past its ejection, an endpoint is tried again.
    pub(crate) fn available(&self, now: Instant) -> bool {
        if self.checked.load(Ordering::Relaxed) == NOT_SERVING {
            return false;
        }
        if !self.ejected.load(Ordering::Relaxed) {
            return true;
        }
        self.lock_down()
            .as_ref()
            .is_none_or(|down| now >= down.until)
    }

    /// Why it is not available, for the message of a call that found no endpoint.
    pub(crate) fn why_down(&self) -> String {
        if self.checked.load(Ordering::Relaxed) == NOT_SERVING {
            return "its health check fails".to_owned();
        }
        match self.lock_down().as_ref() {
            Some(down) => format!(
                "{}; tried again in {:.1?}",
                down.reason,
                down.until.saturating_duration_since(Instant::now())
            ),
            None => "up".to_owned(),
        }
    }

    /// A call reached it and it answered.
    pub(crate) fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejected.load(Ordering::Relaxed) {
            self.ejected.store(false, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
            *self.lock_down() = None;
            self.show(self.checked.load(Ordering::Relaxed) != NOT_SERVING);
            tracing::info!(endpoint = %self.peer, "upstream endpoint is back");
        }
    }

    /// It failed a call: refused or timed out a connection, or answered UNAVAILABLE.
    pub(crate) fn failed(&self, reason: &str) {
        self.failed_at(reason, Instant::now());
    }

    /// [`PeerState::failed`] at `now`.
    ///
    /// While it is ejected, the failures of calls sent before the ejection (a burst of calls
    /// in flight that all fail together, as in a GOAWAY storm) say nothing new and change
    /// nothing: counted, each would double the backoff again and a moment's burst would keep
    /// the endpoint out for the longest ejection. Past its ejection, it is being tried again,
    /// and goes back out at its first failure, for twice as long.
    fn failed_at(&self, reason: &str, now: Instant) {
        if self.ejected.load(Ordering::Relaxed) {
            let tried_again = self
                .lock_down()
                .as_ref()
                .is_none_or(|down| now >= down.until);
            if tried_again {
                self.eject(format!("{reason} (tried again after an ejection)"), now);
            }
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.ejection.consecutive_failures.max(1) {
            self.eject(format!("{reason} ({failures} failures in a row)"), now);
        }
    }

    /// It stopped answering on a connection that was open: out at once.
    pub(crate) fn mark_down(&self, reason: &str) {
        self.eject(reason.to_owned(), Instant::now());
    }

    fn eject(&self, reason: String, now: Instant) {
        let ejections = self.ejections.fetch_add(1, Ordering::Relaxed);
        let backoff = self.ejection.backoff(ejections);
        self.failures.store(0, Ordering::Relaxed);
        tracing::warn!(endpoint = %self.peer, %reason, ?backoff, "upstream endpoint ejected");
        *self.lock_down() = Some(Down {
            until: now + backoff,
            reason,
        });
        self.ejected.store(true, Ordering::Relaxed);
        self.show(false);
    }

    /// Records what its health check said.
    pub(crate) fn checked(&self, serving: bool) {
        let now = if serving { SERVING } else { NOT_SERVING };
        let before = self.checked.swap(now, Ordering::Relaxed);
        if before != now {
            self.show(serving && !self.ejected.load(Ordering::Relaxed));
            if serving {
                tracing::info!(endpoint = %self.peer, "upstream endpoint passes its health check");
            } else {
                tracing::warn!(endpoint = %self.peer, "upstream endpoint fails its health check");
            }
        }
    }

    fn lock_down(&self) -> std::sync::MutexGuard<'_, Option<Down>> {
        self.down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A worker's view of one endpoint: its connection and how many calls it has in flight there.
pub(crate) struct Endpoint {
    pub state: Arc<PeerState>,
    pub connection: Arc<Connection>,
    outstanding: AtomicUsize,
}

impl Endpoint {
    pub(crate) fn new(state: Arc<PeerState>, dial: Arc<Dial>) -> Self {
        Endpoint {
            connection: Arc::new(Connection::new(Arc::clone(&state), dial)),
            state,
            outstanding: AtomicUsize::new(0),
        }
    }

    /// Calls in flight on it from this worker.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a call in flight until the returned guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

/// One call in flight on an endpoint.
pub(crate) struct InFlight(Arc<Endpoint>);

impl InFlight {
    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::address::Address;

    fn state(ejection: Ejection) -> PeerState {
        let peer = Address::parse("http://127.0.0.1:1")
            .unwrap()
            .fixed_peer()
            .unwrap();
        PeerState::new(peer, ejection)
    }

    #[test]
    fn failures_in_a_row_eject_with_a_doubling_backoff() {
        let ejection = Ejection {
            consecutive_failures: 3,
            base: Duration::from_millis(100),
            max: Duration::from_millis(300),
        };
        assert_eq!(ejection.backoff(0), Duration::from_millis(100));
        assert_eq!(ejection.backoff(1), Duration::from_millis(200));
        assert_eq!(ejection.backoff(2), Duration::from_millis(300));
        assert_eq!(ejection.backoff(40), Duration::from_millis(300));

        let state = state(ejection);
        let now = Instant::now();
        state.failed("refused");
        state.failed("refused");
        state.succeeded();
        state.failed("refused");
        state.failed("refused");
        assert!(
            state.available(now),
            "a success in between resets the count"
        );
        state.failed("refused");
        assert!(!state.available(Instant::now()));
        assert!(state.why_down().contains("refused (3 failures in a row)"));
        assert!(state.available(Instant::now() + Duration::from_millis(150)));

        // Tried again and failing once more: out at once, for twice as long.
        let retried = Instant::now() + Duration::from_millis(150);
        state.failed_at("refused", retried);
        assert!(!state.available(retried + Duration::from_millis(150)));
        assert!(state.available(retried + Duration::from_millis(250)));
        assert!(state.why_down().contains("tried again after an ejection"));
        state.succeeded();
        assert!(state.available(Instant::now()));
    }

    #[test]
    fn calls_in_flight_that_fail_after_the_ejection_do_not_lengthen_it() {
        let ejection = Ejection {
            consecutive_failures: 2,
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
        };
        let state = state(ejection);
        let now = Instant::now();
        state.failed_at("its connection broke", now);
        state.failed_at("its connection broke", now);
        assert!(!state.available(now));
        // A burst of calls sent before the ejection, failing together as a storm ends them.
        for _ in 0..40 {
            state.failed_at("its connection broke", now + Duration::from_millis(10));
        }
        assert!(
            state.available(now + Duration::from_millis(100)),
            "{}",
            state.why_down()
        );
        assert!(state.why_down().contains("2 failures in a row"));
    }

    #[test]
    fn a_failing_health_check_takes_an_endpoint_out_until_it_passes() {
        let state = state(Ejection::default());
        let now = Instant::now();
        assert!(state.available(now));
        state.checked(false);
        assert!(!state.available(now));
        assert_eq!(state.why_down(), "its health check fails");
        state.checked(true);
        assert!(state.available(now));
    }
}
