//! `[metrics]` and `[log]`: what the gateway says about itself. Both take effect at start (a
//! reload leaves them as they were). `src/main.rs` maps them onto `protogate::observe` (the
//! metrics registry and the access log) and the binary's log subscriber.

use serde::{Deserialize, Serialize};

/// `[metrics]`: Prometheus metrics, served at `/metrics` on the admin listener.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Count and serve metrics (on by default; counted only where there is an admin listener to
    /// serve them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl MetricsSection {
    /// Whether metrics are counted and served.
    pub fn on(&self) -> bool {
        self.enabled != Some(false)
    }
}

/// `[log]`: the gateway's own events (start, reloads, upstream endpoints down and up, Redis
/// fallback) on stderr, and the access log (one line per request or stream) on stdout.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// The least severe events written (`info` by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
    /// How lines are written: `text` (the default) or `json` (one object per line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
    /// Write an access log line for every request and stream, to stdout (off by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<bool>,
}

impl LogSection {
    /// Whether access log lines are written.
    pub fn access_on(&self) -> bool {
        self.access == Some(true)
    }
}

/// How severe an event is.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Failures only.
    Error,
    /// Failures and what may become one.
    Warn,
    /// What the gateway does: start, reloads, endpoints down and up.
    Info,
    /// Details for finding a problem.
    Debug,
    /// Everything.
    Trace,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// `key=value` text, for people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}
