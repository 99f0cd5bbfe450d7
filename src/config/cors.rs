//! `[cors]`, `[limits]` and `[compression]`: the edge policies of browsers, request sizes and
//! content codings, each on when its section is present (or, for CORS and limits, when a
//! `[[routes]]` rule sets it). A `[[routes]]` rule's `cors` and `limits` tables say, field by
//! field, what differs from the section for the routes it covers; `cors = false` turns CORS off
//! there. `src/edge.rs` maps them onto `protogate::{CorsLayer, LimitsLayer, CompressionLayer}`.

use serde::{Deserialize, Serialize};

use super::Span;

/// `[cors]`, or a route's `cors` table: which pages may call the gateway from a browser.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSection {
    /// Origins allowed: `https://app.example.com`, `https://*.example.com`, or `*` (any, without
    /// credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    /// Methods a preflight may ask for (the binding's own method by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    /// Request headers a preflight may ask for (`content-type` by default; `*` for any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    /// Response headers the page may read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    /// Cookies and HTTP authentication allowed (off by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// How long a browser may reuse a preflight's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Span>,
}

impl CorsSection {
    /// These settings where they say something, `defaults`' elsewhere.
    pub fn over(&self, defaults: &CorsSection) -> CorsSection {
        fn pick<T: Clone>(mine: &Option<T>, theirs: &Option<T>) -> Option<T> {
            mine.clone().or_else(|| theirs.clone())
        }
        CorsSection {
            allow_origins: pick(&self.allow_origins, &defaults.allow_origins),
            allow_methods: pick(&self.allow_methods, &defaults.allow_methods),
            allow_headers: pick(&self.allow_headers, &defaults.allow_headers),
            expose_headers: pick(&self.expose_headers, &defaults.expose_headers),
            allow_credentials: pick(&self.allow_credentials, &defaults.allow_credentials),
            max_age: pick(&self.max_age, &defaults.max_age),
        }
    }
}

/// A `[[routes]]` rule's `cors`: `false` for none, or a table over `[cors]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum RouteCors {
    /// `cors = false`: no CORS on these routes (`true` means `[cors]` as it is).
    Switch(bool),
    /// `cors = { allow_origins = […], … }`.
    Policy(CorsSection),
}

/// `[limits]`, or a route's `limits` table: request sizes, in bytes.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// The largest body of a call that sends one message (413). In `[limits]` it is the same
    /// setting as `[gateway] max_body_bytes`: give one of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<usize>,
    /// The most bytes of request headers, names and values (431).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_bytes: Option<usize>,
    /// The longest URL, path and query (414).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_bytes: Option<usize>,
    /// The most bytes a request stream may send in all (413, or the stream's error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_bytes: Option<usize>,
}

impl LimitsSection {
    /// These limits where they say something, `defaults`' elsewhere.
    pub fn over(&self, defaults: &LimitsSection) -> LimitsSection {
        LimitsSection {
            body_bytes: self.body_bytes.or(defaults.body_bytes),
            header_bytes: self.header_bytes.or(defaults.header_bytes),
            url_bytes: self.url_bytes.or(defaults.url_bytes),
            stream_bytes: self.stream_bytes.or(defaults.stream_bytes),
        }
    }
}

/// `[compression]`: responses compressed, compressed request bodies decoded.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionSection {
    /// The smallest response body of known length compressed (1024 by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_bytes: Option<usize>,
    /// The codings offered, preferred first (`["br", "zstd", "gzip"]` by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encodings: Option<Vec<String>>,
    /// gzip's level, 0 to 9 (6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gzip_level: Option<u32>,
    /// Brotli's quality, 0 to 11 (4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brotli_quality: Option<u32>,
    /// zstd's level (3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zstd_level: Option<i32>,
    /// Decode request bodies sent with `Content-Encoding` (on by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decompress_requests: Option<bool>,
}
