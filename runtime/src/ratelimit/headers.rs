//! The `RateLimit-Policy` and `RateLimit` response fields of the IETF httpapi working group's
//! draft (draft-ietf-httpapi-ratelimit-headers-11, May 2026): each a Structured Fields list
//! with one item per policy, a String naming it, and parameters.
//!
//! ```text
//! RateLimit-Policy: "default";q=100;w=60
//! RateLimit: "default";r=42;t=1
//! ```
//!
//! `q` is the quota and `w` its window in whole seconds (the limit's period rounded up, the
//! quota scaled to it); `r` the requests available at once, and `t` the seconds within which no
//! more than `r` can be used: until the next request is earned when one was allowed, until the
//! refused one would be allowed when it was refused (the same figure as `Retry-After`).

use std::time::Duration;

use http::HeaderValue;

use super::gcra::Decision;
use crate::status::whole_seconds;

/// A policy's name as a Structured Fields String: printable ASCII, `"` and `\` escaped.
pub(crate) fn sf_string(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// `RateLimit-Policy` for a limit of `requests` per `period`.
pub(crate) fn policy(name: &str, requests: u32, period: Duration) -> HeaderValue {
    let window = whole_seconds(period).max(1);
    // The quota over the whole window: the same rate, in whole requests.
    let quota = (u128::from(requests) * u128::from(window) * 1_000_000) / period.as_micros().max(1);
    let text = format!("{};q={quota};w={window}", sf_string(name));
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("\"limit\";q=0"))
}

/// `RateLimit` after `decision`.
pub(crate) fn service_limit(quoted_name: &str, decision: &Decision) -> HeaderValue {
    let text = format!(
        "{quoted_name};r={};t={}",
        decision.remaining,
        whole_seconds(decision.wait)
    );
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("\"limit\";r=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_structured_field_strings() {
        assert_eq!(sf_string("default"), "\"default\"");
        assert_eq!(sf_string("GET /v1/**"), "\"GET /v1/**\"");
        assert_eq!(sf_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(sf_string("tab\there é"), "\"tab?here ?\"");
    }

    #[test]
    fn the_policy_gives_the_quota_over_whole_seconds() {
        let value = |requests, millis| {
            policy("p", requests, Duration::from_millis(millis))
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(value(100, 60_000), "\"p\";q=100;w=60");
        assert_eq!(value(5, 1_000), "\"p\";q=5;w=1");
        // 10 per 500 ms: 20 in the one-second window.
        assert_eq!(value(10, 500), "\"p\";q=20;w=1");
        // 3 per 1.5 s: the window is 2 s, the quota 4.
        assert_eq!(value(3, 1_500), "\"p\";q=4;w=2");
    }

    #[test]
    fn the_service_limit_rounds_the_wait_up() {
        let decision = Decision {
            allowed: true,
            remaining: 7,
            wait: Duration::from_millis(1_200),
        };
        assert_eq!(service_limit("\"p\"", &decision), "\"p\";r=7;t=2");
        let refused = Decision {
            allowed: false,
            remaining: 0,
            wait: Duration::from_secs(3),
        };
        assert_eq!(service_limit("\"p\"", &refused), "\"p\";r=0;t=3");
    }
}
