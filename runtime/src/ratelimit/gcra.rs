//! The generic cell rate algorithm: one number per bucket, the theoretical arrival time (TAT) of
//! the next request, in microseconds on some clock.
//!
//! A limit of `requests` per `period` with a burst of `burst` has an emission interval
//! `T = period / requests` and a tolerance `τ = burst · T`. A request at `now` is allowed when
//! `max(TAT, now) + T - now <= τ`, and then moves the TAT to `max(TAT, now) + T`. It behaves as a
//! token bucket of `burst` tokens refilled one every `T`, but keeps one number instead of two
//! and needs no refill step, which is what lets the Redis script (`redis.rs`) be a single GET and
//! SET: the arithmetic here and in that script is the same, step for step.

use std::time::Duration;

/// A limit's parameters in the algorithm's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// `T`, microseconds between two requests at the sustained rate (at least 1).
    pub interval: u64,
    /// `τ = burst · T`, microseconds.
    pub tolerance: u64,
}

/// What the algorithm says about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Requests that would be allowed right after this one, at once.
    pub remaining: u64,
    /// Allowed: how long until one more request is available. Refused: how long until this
    /// request would be allowed.
    pub wait: Duration,
}

impl Gcra {
    /// `requests` per `period`, `burst` at once.
    pub fn new(requests: u32, period: Duration, burst: u32) -> Gcra {
        let period = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        let interval = (period / u64::from(requests.max(1))).max(1);
        Gcra {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
        }
    }

    /// Decides a request arriving at `now` on a bucket whose TAT is `tat` (`None`: a bucket never
    /// seen, or forgotten, which is the same as a full one). Returns the decision and, when the
    /// request is allowed, the bucket's new TAT.
    pub fn decide(&self, tat: Option<u64>, now: u64) -> (Decision, Option<u64>) {
        let tat = tat.unwrap_or(now).max(now);
        let new_tat = tat.saturating_add(self.interval);
        // How far ahead of the clock the bucket would be: allowed within the tolerance. (Kept
        // as a difference, so that a clock that starts at 0 works as well as any other.)
        let ahead = new_tat - now;
        if ahead > self.tolerance {
            let decision = Decision {
                allowed: false,
                remaining: 0,
                wait: Duration::from_micros(ahead - self.tolerance),
            };
            return (decision, None);
        }
        let slack = self.tolerance - ahead;
        let remaining = slack / self.interval;
        let decision = Decision {
            allowed: true,
            remaining,
            wait: Duration::from_micros(
                (remaining + 1)
                    .saturating_mul(self.interval)
                    .saturating_sub(slack),
            ),
        };
        (decision, Some(new_tat))
    }

    /// Whether a bucket whose TAT is `tat` is full again at `now`, and so can be forgotten.
    pub fn is_idle(tat: u64, now: u64) -> bool {
        tat <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    /// A bucket and a clock the test moves.
    struct Bucket {
        gcra: Gcra,
        tat: Option<u64>,
        now: u64,
    }

    impl Bucket {
        fn new(requests: u32, period: Duration, burst: u32) -> Bucket {
            Bucket {
                gcra: Gcra::new(requests, period, burst),
                tat: None,
                // Any origin: the algorithm only compares times.
                now: 1_700_000_000 * SECOND,
            }
        }

        fn advance(&mut self, micros: u64) {
            self.now += micros;
        }

        fn request(&mut self) -> Decision {
            let (decision, tat) = self.gcra.decide(self.tat, self.now);
            if let Some(tat) = tat {
                self.tat = Some(tat);
            }
            decision
        }

        fn allowed_now(&mut self, attempts: usize) -> usize {
            (0..attempts).filter(|_| self.request().allowed).count()
        }
    }

    #[test]
    fn a_fresh_bucket_allows_its_burst_then_refuses() {
        let mut bucket = Bucket::new(10, Duration::from_secs(1), 10);
        for expected_remaining in (0..10).rev() {
            let decision = bucket.request();
            assert!(decision.allowed);
            assert_eq!(decision.remaining, expected_remaining);
        }
        let refused = bucket.request();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // The next request is allowed one interval (100 ms) after the burst began.
        assert_eq!(refused.wait, Duration::from_millis(100));
    }

    #[test]
    fn the_sustained_rate_is_one_request_per_interval() {
        let mut bucket = Bucket::new(10, Duration::from_secs(1), 10);
        assert_eq!(bucket.allowed_now(20), 10);
        // 99 ms later nothing has come back; at 100 ms exactly one request has.
        bucket.advance(99_000);
        assert_eq!(bucket.allowed_now(5), 0);
        bucket.advance(1_000);
        assert_eq!(bucket.allowed_now(5), 1);
        // Over 3 more seconds, 30 more requests and no more.
        let mut allowed = 0;
        for _ in 0..300 {
            bucket.advance(10_000);
            allowed += bucket.allowed_now(3);
        }
        assert_eq!(allowed, 30);
    }

    #[test]
    fn a_refusal_does_not_consume_anything() {
        let mut bucket = Bucket::new(2, Duration::from_secs(1), 2);
        assert_eq!(bucket.allowed_now(2), 2);
        let before = bucket.tat;
        assert_eq!(bucket.allowed_now(100), 0);
        assert_eq!(bucket.tat, before);
        // The wait shrinks as time passes, and ends when the request is allowed.
        let first = bucket.request().wait;
        bucket.advance(200_000);
        assert_eq!(bucket.request().wait, first - Duration::from_millis(200));
        bucket.advance(u64::try_from(first.as_micros()).unwrap() - 200_000);
        assert!(bucket.request().allowed);
    }

    #[test]
    fn the_burst_is_separate_from_the_rate() {
        // 60 a minute, 5 at once.
        let mut bucket = Bucket::new(60, Duration::from_secs(60), 5);
        assert_eq!(bucket.allowed_now(10), 5);
        bucket.advance(SECOND);
        assert_eq!(bucket.allowed_now(10), 1);
        // An idle bucket refills to the burst, not beyond.
        bucket.advance(3600 * SECOND);
        assert_eq!(bucket.allowed_now(10), 5);
    }

    #[test]
    fn allowed_requests_say_when_the_next_one_comes() {
        let mut bucket = Bucket::new(4, Duration::from_secs(1), 2);
        let first = bucket.request();
        assert_eq!((first.allowed, first.remaining), (true, 1));
        // One left now; a second one 250 ms from now.
        assert_eq!(first.wait, Duration::from_millis(250));
        let second = bucket.request();
        assert_eq!((second.allowed, second.remaining), (true, 0));
        assert_eq!(second.wait, Duration::from_millis(250));
        bucket.advance(100_000);
        let refused = bucket.request();
        assert!(!refused.allowed);
        assert_eq!(refused.wait, Duration::from_millis(150));
    }

    #[test]
    fn a_bucket_is_idle_once_its_tat_has_passed() {
        let mut bucket = Bucket::new(1, Duration::from_secs(1), 1);
        bucket.request();
        let tat = bucket.tat.unwrap();
        assert!(!Gcra::is_idle(tat, bucket.now));
        assert!(Gcra::is_idle(tat, bucket.now + SECOND));
        // Forgetting an idle bucket changes nothing: a fresh one decides the same.
        bucket.advance(SECOND);
        let remembered = bucket.gcra.decide(bucket.tat, bucket.now);
        let forgotten = bucket.gcra.decide(None, bucket.now);
        assert_eq!(remembered, forgotten);
    }

    #[test]
    fn a_clock_that_starts_at_zero_decides_like_any_other() {
        let gcra = Gcra::new(3, Duration::from_secs(60), 3);
        let (first, _) = gcra.decide(None, 1);
        assert_eq!((first.allowed, first.remaining), (true, 2));
        let (later, _) = gcra.decide(None, 1_700_000_000 * SECOND);
        assert_eq!(first, later);
    }

    #[test]
    fn extreme_parameters_do_not_overflow() {
        let gcra = Gcra::new(u32::MAX, Duration::from_nanos(1), u32::MAX);
        assert_eq!(gcra.interval, 1);
        let (decision, _) = gcra.decide(Some(u64::MAX - 1), u64::MAX - 2);
        assert!(decision.allowed);
        let slow = Gcra::new(1, Duration::MAX, 1);
        let (decision, tat) = slow.decide(None, 5);
        assert!(decision.allowed);
        assert_eq!(tat, Some(u64::MAX));
    }
}
