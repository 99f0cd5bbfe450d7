//! `[[routes]]`: the edge policies of the routes a selector covers.
//!
//! Each policy (auth, rate limits, CORS, limits, response shaping) has a section of its own for
//! what it needs once (providers, the Redis server) and for its default, and a field here for
//! the routes that differ. A rule sets only the policies it names; for each policy the first
//! rule that covers a request and sets it wins (`src/edge.rs` builds one
//! `protogate::PerRoute` per policy from them).

use serde::{Deserialize, Serialize};

use super::{LimitsSection, RouteAuth, RouteCors, RouteRateLimit};

/// `[[routes]]`: a selector and the policies of the routes it covers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Which routes: an RPC (`pkg.Service.Method`), every RPC under a name (`pkg.Service.*`),
    /// a path pattern (`/v1/books/**`, `GET /v1/*/x`), or `*` (see `protogate::RouteSelector`).
    #[serde(rename = "match")]
    pub selector: String,
    /// CORS on these routes: `false` for none, or a table over `[cors]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<RouteCors>,
    /// Size limits on these routes: a table over `[limits]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSection>,
    /// What these routes require of a request's credentials (`[auth]` must be present):
    /// `"public"`, `"authenticated"`, or `{ scopes = […], claims = {…} }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RouteAuth>,
    /// The routes' rate limit (`{ requests = 10, per = "1s" }`), or `false` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RouteRateLimit>,
}
