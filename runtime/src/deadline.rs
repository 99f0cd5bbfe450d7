//! Deadlines: the one a call gets when its client sends no `Grpc-Timeout`, and the most a client
//! may ask for. Set on the gateway, an upstream, a service and a method; the most specific
//! default wins, and every maximum on the way applies.

use std::time::Duration;

/// The deadline rules of a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deadlines {
    /// The deadline of a call whose request carries no `Grpc-Timeout`.
    pub default: Option<Duration>,
    /// The longest deadline a client may ask for with `Grpc-Timeout`; a longer one is cut to it.
    pub max: Option<Duration>,
}

impl Deadlines {
    /// No default and no maximum.
    pub const NONE: Deadlines = Deadlines {
        default: None,
        max: None,
    };

    /// These rules where they say something, `fallback`'s elsewhere: the default of the more
    /// specific rules wins, and both maxima apply.
    pub fn or(self, fallback: Deadlines) -> Deadlines {
        Deadlines {
            default: self.default.or(fallback.default),
            max: match (self.max, fallback.max) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// The rules of a streaming call: only the maximum (a stream's duration has limits of its
    /// own, [`crate::Gateway::stream_max_duration`]).
    pub(crate) fn for_streams(self) -> Deadlines {
        Deadlines {
            default: None,
            max: self.max,
        }
    }

    /// The deadline of a call whose client asked for `requested`.
    pub fn resolve(self, requested: Option<Duration>) -> Option<Duration> {
        let deadline = requested.or(self.default);
        match (deadline, self.max) {
            (Some(deadline), Some(max)) => Some(deadline.min(max)),
            (deadline, _) => deadline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Option<Duration> = |s| Some(Duration::from_secs(s));

    #[test]
    fn the_specific_default_wins_and_every_maximum_applies() {
        let method = Deadlines {
            default: S(2),
            max: None,
        };
        let upstream = Deadlines {
            default: S(10),
            max: S(30),
        };
        let gateway = Deadlines {
            default: S(60),
            max: S(20),
        };
        let merged = method.or(upstream).or(gateway);
        assert_eq!(
            merged,
            Deadlines {
                default: S(2),
                max: S(20)
            }
        );
        assert_eq!(merged.resolve(None), S(2));
        assert_eq!(merged.resolve(S(5)), S(5));
        assert_eq!(merged.resolve(S(3600)), S(20), "capped");
        assert_eq!(Deadlines::NONE.resolve(None), None);
        assert_eq!(
            Deadlines {
                default: S(50),
                max: S(20)
            }
            .resolve(None),
            S(20),
            "a default above the maximum is cut too"
        );
    }
}
