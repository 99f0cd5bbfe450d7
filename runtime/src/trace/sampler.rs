//! Which requests are traced: the caller's decision when it sent one, the configured ratio for
//! traces that start here.

use crate::trace_context::{TraceId, TraceParent};

/// A parent-based ratio sampler: a request whose `traceparent` is sampled is sampled, one whose
/// `traceparent` is not sampled is not, and a trace that starts at the gateway is sampled with
/// the given probability.
///
/// A new trace's decision is read from its id (the last 56 bits, which W3C Trace Context level 2
/// makes random), so every sampler with the same ratio agrees on it, and raising the ratio
/// keeps every trace sampled before.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampler {
    /// Ids whose last 56 bits are below this are sampled: `ratio × 2⁵⁶`.
    threshold: u64,
    ratio: f64,
}

impl Sampler {
    /// The range of the bits that decide.
    const SPAN: u64 = 1 << 56;

    /// Samples new traces with probability `ratio` (clamped to 0..=1; NaN samples none).
    pub fn ratio(ratio: f64) -> Sampler {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        // Exact for 0 and 1; within 2⁻⁵⁶ elsewhere.
        let threshold = (ratio * Self::SPAN as f64) as u64;
        Sampler { threshold, ratio }
    }

    /// Every new trace sampled.
    pub fn always() -> Sampler {
        Sampler::ratio(1.0)
    }

    /// No new trace sampled (a caller's sampled trace still is).
    pub fn never() -> Sampler {
        Sampler::ratio(0.0)
    }

    /// The probability a new trace is sampled.
    pub fn probability(&self) -> f64 {
        self.ratio
    }

    /// The trace a request is recorded in, if it is sampled: its caller's if it sent a
    /// `traceparent` marked sampled, none if the caller's is not sampled, and without one a new
    /// trace, drawn only if the ratio can sample it, and kept at the ratio.
    pub fn sample(&self, parent: Option<&TraceParent>) -> Option<TraceId> {
        match parent {
            Some(parent) => parent.sampled.then_some(parent.trace_id),
            None if self.threshold == 0 => None,
            None => Some(TraceId::random()).filter(|id| self.samples_root(*id)),
        }
    }

    /// Whether a trace starting here with `trace_id` is sampled.
    pub fn samples_root(&self, trace_id: TraceId) -> bool {
        let bytes = trace_id.to_bytes();
        let mut low = [0; 8];
        low[1..].copy_from_slice(&bytes[9..]);
        u64::from_be_bytes(low) < self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace_context::SpanId;

    fn parent(sampled: bool) -> TraceParent {
        TraceParent {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            sampled,
        }
    }

    #[test]
    fn the_callers_decision_is_followed_whatever_the_ratio() {
        for sampler in [Sampler::never(), Sampler::ratio(0.5), Sampler::always()] {
            let sampled = parent(true);
            assert_eq!(sampler.sample(Some(&sampled)), Some(sampled.trace_id));
            assert_eq!(sampler.sample(Some(&parent(false))), None);
        }
    }

    #[test]
    fn new_traces_are_sampled_at_the_ratio() {
        let count = |sampler: Sampler| (0..10_000).filter_map(|_| sampler.sample(None)).count();
        assert_eq!(count(Sampler::always()), 10_000);
        assert_eq!(count(Sampler::never()), 0);
        // 10,000 draws at 0.25: 2,500 ± 43 for one standard deviation.
        let quarter = count(Sampler::ratio(0.25));
        assert!((2200..2800).contains(&quarter), "{quarter}");
        let ids: std::collections::HashSet<TraceId> = (0..100)
            .filter_map(|_| Sampler::always().sample(None))
            .collect();
        assert_eq!(ids.len(), 100, "a new trace each time");
    }

    #[test]
    fn the_decision_is_read_from_the_trace_id() {
        let id = |low: u64| {
            let mut bytes = [0; 16];
            bytes[0] = 1;
            bytes[8..].copy_from_slice(&low.to_be_bytes());
            TraceId::from_bytes(bytes).expect("not zero")
        };
        let half = Sampler::ratio(0.5);
        assert!(half.samples_root(id(0)));
        assert!(half.samples_root(id((1 << 55) - 1)));
        assert!(!half.samples_root(id(1 << 55)));
        // The eighth byte is not among the random ones: it does not count.
        assert!(half.samples_root(id(0xff00_0000_0000_0000)));
        let id = TraceId::random();
        assert_eq!(half.samples_root(id), half.samples_root(id), "consistent");
        assert_eq!(Sampler::ratio(f64::NAN), Sampler::never());
        assert_eq!(Sampler::ratio(7.0), Sampler::always());
        assert_eq!(Sampler::ratio(-1.0).probability(), 0.0);
    }
}
