//! Requests an HTTP/2 client cancels before their answer, counted per connection.
//!
//! HTTP/2 lets a client open a stream and reset it at once, again and again, without waiting
//! for anything (the "rapid reset" attack, CVE-2023-44487). hyper closes a connection when
//! reset streams pile up unaccepted, but a stream it accepted has already reached the service,
//! and every request the gateway starts is an upstream call it must then cancel: the reset
//! goes on to the upstream, whose own guard may close the connection every other call shares.
//!
//! Two defences, both per connection:
//! - a request waits one turn of its worker before any work starts, which lets hyper see a
//!   reset that arrived with it (the attack's pattern: HEADERS and RST_STREAM in one write) and
//!   drop the request before it reaches the router;
//! - a connection on which more than half the requests were reset before their answer, once
//!   [`PREMATURE_LIMIT`] of them were, is asked to close (GOAWAY: requests under way finish,
//!   new ones are refused) and is closed [`CLOSE_GRACE`] later.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;

/// Requests reset before their answer that a connection may have had before it is judged.
pub(super) const PREMATURE_LIMIT: u32 = 100;

/// How long a connection asked to close for its resets keeps its requests under way.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often at most a warning says how many connections were closed for their resets: an
/// attack opens them by the hundred a second, and a line each would flood the log.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Counts a connection closed for its resets, for the process's log (see [`Reports`]).
pub(super) fn report_closed(client: SocketAddr) {
    static REPORTS: std::sync::OnceLock<Reports> = std::sync::OnceLock::new();
    REPORTS.get_or_init(Reports::new).closed(client);
}

/// Connections closed for their resets: each logged at `debug`, and a warning at most every
/// [`REPORT_EVERY`] with how many were closed since the previous warning and the latest client.
struct Reports {
    /// Closed since the last warning.
    closed: AtomicU64,
    /// The earliest the next warning may be, in seconds since `start`.
    next: AtomicU64,
    start: std::time::Instant,
}

impl Reports {
    fn new() -> Self {
        Reports {
            closed: AtomicU64::new(0),
            next: AtomicU64::new(0),
            start: std::time::Instant::now(),
        }
    }

    /// Counts one; returns whether it warned.
    fn closed(&self, client: SocketAddr) -> bool {
        tracing::debug!(
            %client,
            "an HTTP/2 client reset most of its requests before their answer: its connection is closed"
        );
        self.closed.fetch_add(1, Ordering::Relaxed);
        let now = self.start.elapsed().as_secs();
        let next = self.next.load(Ordering::Relaxed);
        let after = now + REPORT_EVERY.as_secs();
        if now < next
            || self
                .next
                .compare_exchange(next, after, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        let connections = self.closed.swap(0, Ordering::Relaxed).max(1);
        tracing::warn!(
            connections,
            latest = %client,
            "HTTP/2 clients reset most of their requests before their answer (the rapid-reset \
             pattern): their connections were closed"
        );
        true
    }
}

/// One HTTP/2 connection's count of its requests, and of those reset before their answer.
#[derive(Default)]
pub(super) struct Resets {
    opened: AtomicU32,
    premature: AtomicU32,
    /// Set once the connection is judged, so that it is told only once.
    judged: AtomicBool,
    abusive: Notify,
}

impl Resets {
    /// Counts a new request; the guard counts it as reset unless [`Opened::answered`] is called.
    pub(super) fn opened(self: &Arc<Self>) -> Opened {
        self.opened.fetch_add(1, Ordering::Relaxed);
        Opened {
            resets: Some(Arc::clone(self)),
        }
    }

    /// Resolves once the connection has reset too many of its requests before their answer.
    pub(super) async fn abusive(&self) {
        self.abusive.notified().await;
    }

    fn premature(&self) {
        let premature = self.premature.fetch_add(1, Ordering::Relaxed) + 1;
        let opened = self.opened.load(Ordering::Relaxed);
        if premature >= PREMATURE_LIMIT
            && premature.saturating_mul(2) > opened
            && !self.judged.swap(true, Ordering::Relaxed)
        {
            // A stored permit: the connection's task may be busy elsewhere right now.
            self.abusive.notify_one();
        }
    }
}

/// A request under way on a connection with [`Resets`]; dropped before
/// [`answered`](Opened::answered), it counts as reset before its answer.
pub(super) struct Opened {
    resets: Option<Arc<Resets>>,
}

impl Opened {
    /// The answer's head is ready: whatever happens to the request from now on, it was not
    /// reset prematurely.
    pub(super) fn answered(mut self) {
        self.resets = None;
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(resets) = self.resets.take() {
            resets.premature();
        }
    }
}

/// A future that is pending once, asking to be polled again at once: the worker's other ready
/// tasks (the connection's among them) run in between. A request waits on it before any work
/// starts, so that hyper, which looks for a reset each time the request is pending, drops a
/// request that was reset in the same breath as it came.
pub(super) fn one_turn() -> impl Future<Output = ()> {
    OneTurn { waited: false }
}

struct OneTurn {
    waited: bool,
}

impl Future for OneTurn {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.waited {
            return Poll::Ready(());
        }
        self.waited = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_abusive(resets: &Resets) -> bool {
        let waiting = resets.abusive();
        let mut waiting = std::pin::pin!(waiting);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        waiting.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn a_connection_is_judged_once_most_of_enough_requests_were_reset_before_their_answer() {
        let resets = Arc::new(Resets::default());
        for _ in 0..PREMATURE_LIMIT - 1 {
            drop(resets.opened());
        }
        assert!(!is_abusive(&resets), "below the limit");
        drop(resets.opened());
        assert!(is_abusive(&resets), "at the limit, every request reset");
    }

    #[test]
    fn a_connection_whose_requests_are_mostly_answered_is_not_judged() {
        let resets = Arc::new(Resets::default());
        for _ in 0..PREMATURE_LIMIT * 3 {
            resets.opened().answered();
            resets.opened().answered();
            drop(resets.opened());
        }
        assert!(
            !is_abusive(&resets),
            "a third of the requests reset, well past the limit in number"
        );
    }

    #[test]
    fn a_judged_connection_is_told_once() {
        let resets = Arc::new(Resets::default());
        for _ in 0..PREMATURE_LIMIT * 2 {
            drop(resets.opened());
        }
        assert!(is_abusive(&resets));
        assert!(!is_abusive(&resets), "told again");
    }

    #[test]
    fn closed_connections_are_warned_about_at_most_every_few_seconds() {
        let reports = Reports::new();
        let client = SocketAddr::from(([127, 0, 0, 1], 9));
        assert!(reports.closed(client), "the first is told at once");
        let again = (0..1000).filter(|_| reports.closed(client)).count();
        assert_eq!(again, 0, "told again within {REPORT_EVERY:?}");
        assert_eq!(
            reports.closed.load(Ordering::Relaxed),
            1000,
            "counted for the next one"
        );
    }

    #[test]
    fn one_turn_is_pending_once_and_wakes_itself() {
        let woken = Arc::new(AtomicBool::new(false));
        struct Flag(Arc<AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let waker = std::task::Waker::from(Arc::new(Flag(Arc::clone(&woken))));
        let mut cx = Context::from_waker(&waker);
        let mut turn = std::pin::pin!(one_turn());
        assert!(turn.as_mut().poll(&mut cx).is_pending());
        assert!(
            woken.load(Ordering::Relaxed),
            "it did not ask to be polled again"
        );
        assert!(turn.as_mut().poll(&mut cx).is_ready());
    }
}
