//! `[rate_limit]`, `[redis]`, and the `rate_limit` of a `[[routes]]` rule.
//!
//! `[rate_limit]` gives the default limit (none when `requests` is left out), whose requests
//! are counted together (`key`), which proxies' `X-Forwarded-For` is believed, and what happens
//! while Redis is unreachable. A rule's `rate_limit` is its routes' own limit, or `false` for
//! none. `[redis]` is the server every replica shares its limits through (the one piece of state
//! replicas share); without it each replica counts alone, in memory.
//!
//! `src/edge.rs` checks these and builds the runtime's `protogate::RateLimit` from them.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::Span;

/// `[rate_limit]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    /// The default limit: this many requests every `per`. No default limit without it (only
    /// the routes' rules limit then).
    pub requests: Option<u32>,
    /// The period of `requests` (1 s by default).
    pub per: Option<Span>,
    /// Requests allowed at once after a quiet spell (`requests` by default).
    pub burst: Option<u32>,
    /// Whose requests share a bucket: `ip` (default), `principal` or `route`; the default of
    /// the routes' limits too.
    pub key: Option<KeyName>,
    /// Networks of proxies whose `X-Forwarded-For` is believed (`10.0.0.0/8`, `::1`): the
    /// client of a request from one of them is the right-most address that is not in them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// How many leading bits of a client's IPv4 address name the client, 1 to 32 (32 by
    /// default: each address is a client).
    pub ipv4_prefix: Option<u8>,
    /// How many leading bits of a client's IPv6 address name the client, 1 to 128 (64 by
    /// default: a client is its `/64`, which it could otherwise walk through for fresh
    /// buckets).
    pub ipv6_prefix: Option<u8>,
    /// While `[redis]` is unreachable: `local` (default: each replica counts alone) or
    /// `refuse` (503 for every limited request).
    pub on_redis_failure: Option<RedisFailure>,
    /// What the limits' keys in Redis start with (`protogate:rate:` by default).
    pub redis_key_prefix: Option<String>,
}

/// Whose requests share a bucket.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyName {
    /// The client's address.
    Ip,
    /// The principal's subject (the address when there is none).
    Principal,
    /// One bucket per route, for every client.
    Route,
}

/// What rate limits do while Redis is unreachable.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailure {
    /// Each replica counts alone.
    Local,
    /// Limited requests are refused with 503.
    Refuse,
}

/// `[redis]`: the server shared state lives in.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://[user:password@]host:port[/db]`. Printed (`config show`, the admin `/config`)
    /// with its password hidden.
    #[serde(serialize_with = "without_password")]
    pub url: String,
    /// How long connecting may take (1 s by default).
    #[serde(default)]
    pub connect_timeout: Option<Span>,
    /// How long a command may take (250 ms by default); a request waits at most both.
    #[serde(default)]
    pub command_timeout: Option<Span>,
}

/// `url` with the password of its user part, if any, written `***`.
fn without_password<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hide_password(url))
}

fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let Some((name, _password)) = rest[..at].split_once(':') else {
        // A user name alone: nothing secret.
        return url.to_owned();
    };
    format!("{scheme}://{name}:***{}", &rest[at..])
}

/// A `[[routes]]` rule's `rate_limit`: a limit of its own, or `false` for none.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum RouteRateLimit {
    /// `false`: the routes are not limited.
    Off(bool),
    /// `{ requests = 10, per = "1s" }`.
    Limit(RouteLimit),
}

/// A rule's limit.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteLimit {
    /// This many requests every `per`.
    pub requests: u32,
    /// The period (1 s by default).
    #[serde(default)]
    pub per: Option<Span>,
    /// Requests allowed at once (`requests` by default).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Whose requests share a bucket (`[rate_limit] key` by default).
    #[serde(default)]
    pub key: Option<KeyName>,
    /// The name refusals and the `RateLimit` fields give it (the rule's `match` by default).
    #[serde(default)]
    pub name: Option<String>,
}

// By hand rather than `untagged`, so that a mistake inside the table is reported as itself
// (an unknown field, a missing `requests`) instead of "matches no variant".
impl<'de> Deserialize<'de> for RouteRateLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;

        impl<'de> Visitor<'de> for Either {
            type Value = RouteRateLimit;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`false` (no limit) or a table like { requests = 10, per = \"1s\" }")
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<RouteRateLimit, E> {
                if value {
                    return Err(E::custom(
                        "`true` says nothing: write `false` for no limit, or a table like { requests = 10, per = \"1s\" }",
                    ));
                }
                Ok(RouteRateLimit::Off(false))
            }

            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RouteRateLimit, M::Error> {
                RouteLimit::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RouteRateLimit::Limit)
            }
        }

        deserializer.deserialize_any(Either)
    }
}

#[cfg(test)]
mod tests {
    use super::hide_password;

    #[test]
    fn printed_redis_urls_hide_their_password() {
        for (url, printed) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:s3cret@cache:6379/2", "redis://:***@cache:6379/2"),
            ("rediss://app:p@ss@cache", "rediss://app:***@cache"),
            ("redis://app@cache", "redis://app@cache"),
            ("redis://cache/0?x=a@b", "redis://cache/0?x=a@b"),
        ] {
            assert_eq!(hide_password(url), printed, "{url}");
        }
    }
}
