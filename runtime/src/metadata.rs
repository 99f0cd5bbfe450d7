//! HTTP headers to gRPC metadata and back, following grpc-gateway's default rules so that a
//! service moving from it sees the same metadata:
//!
//! - `Grpc-Metadata-<Key>: v` becomes metadata `<key>: v`; for `-bin` keys the header carries
//!   base64 (padded or not) and the metadata carries the decoded bytes.
//! - The standard HTTP request headers IANA lists as permanent (`Accept`, `Cookie`, `User-Agent`,
//!   …) are forwarded as `grpcgateway-<header>`. `Authorization` is forwarded twice: as
//!   `grpcgateway-authorization` and, unprefixed, as `authorization`.
//! - `x-forwarded-host` is the incoming `X-Forwarded-Host`, or else `Host`; `x-forwarded-for` is
//!   the incoming `X-Forwarded-For` chain with the client's address appended.
//! - A valid W3C `traceparent` goes on as it came, with its `tracestate` (well-formed members
//!   only), so the upstream's spans join the caller's trace; with traces recorded, the
//!   gateway's own client span takes the parent's place (`crate::trace`).
//! - Every other header stays behind, and so do keys gRPC reserves (`grpc-*`, `content-type`,
//!   `te`, hop-by-hop headers), whichever way they travel.
//! - A client cannot spell, with `Grpc-Metadata-`, a key that the gateway itself makes from the
//!   request: `authorization`, `grpcgateway-*`, `x-forwarded-for`, `x-forwarded-host`,
//!   `traceparent` and `tracestate`. An upstream can trust those to say what the gateway saw
//!   (and, for `authorization`, what the auth layer let through), not what a client wrote.
//! - `Grpc-Timeout` (`<1–8 digits><H|M|S|m|u|n>`) sets the call's deadline.
//! - Response metadata comes back as `Grpc-Metadata-<key>` headers, trailers as
//!   `Grpc-Trailer-<key>`; binary values stay base64-encoded.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tonic::metadata::{BinaryMetadataValue, MetadataMap};

/// The prefix that marks a request header as gRPC metadata, and response metadata as a header.
pub const METADATA_PREFIX: &str = "grpc-metadata-";
/// The prefix of response headers carrying trailers.
pub const TRAILER_PREFIX: &str = "grpc-trailer-";

/// A header that cannot become metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The header's value is not valid metadata (non-ASCII text, or bad base64 for `-bin`).
    #[error("header `{header}` has a value that is not valid gRPC metadata")]
    InvalidValue {
        /// The header.
        header: String,
    },
    /// The header's name is not a valid metadata key.
    #[error("header `{header}` does not name a valid gRPC metadata key")]
    InvalidKey {
        /// The header.
        header: String,
    },
    /// `Grpc-Timeout` is malformed.
    #[error(
        "header `grpc-timeout` must be 1 to 8 digits and a unit (H, M, S, m, u, n), got {value:?}"
    )]
    InvalidTimeout {
        /// The value received.
        value: String,
    },
}

/// Standard HTTP request headers that grpc-gateway forwards with the `grpcgateway-` prefix, with
/// their metadata keys spelled out so that forwarding them allocates no key.
///
/// grpc-gateway's list also names `Host`, but Go's HTTP server takes `Host` out of the header
/// map before the gateway sees it, so it never arrives upstream as `grpcgateway-host`; it goes
/// as `x-forwarded-host` instead, and so it does here.
const PERMANENT_HEADERS: &[(&str, &str)] = &[
    ("accept", "grpcgateway-accept"),
    ("accept-charset", "grpcgateway-accept-charset"),
    ("accept-language", "grpcgateway-accept-language"),
    ("accept-ranges", "grpcgateway-accept-ranges"),
    ("authorization", "grpcgateway-authorization"),
    ("cache-control", "grpcgateway-cache-control"),
    ("content-type", "grpcgateway-content-type"),
    ("cookie", "grpcgateway-cookie"),
    ("date", "grpcgateway-date"),
    ("expect", "grpcgateway-expect"),
    ("from", "grpcgateway-from"),
    ("if-match", "grpcgateway-if-match"),
    ("if-modified-since", "grpcgateway-if-modified-since"),
    ("if-none-match", "grpcgateway-if-none-match"),
    ("if-schedule-tag-match", "grpcgateway-if-schedule-tag-match"),
    ("if-unmodified-since", "grpcgateway-if-unmodified-since"),
    ("max-forwards", "grpcgateway-max-forwards"),
    ("origin", "grpcgateway-origin"),
    ("pragma", "grpcgateway-pragma"),
    ("referer", "grpcgateway-referer"),
    ("user-agent", "grpcgateway-user-agent"),
    ("via", "grpcgateway-via"),
    ("warning", "grpcgateway-warning"),
];

/// Keys that gRPC or HTTP/2 reserve for themselves; never forwarded in either direction.
pub(crate) fn is_reserved(key: &str) -> bool {
    key.starts_with("grpc-")
        || matches!(
            key,
            "content-type"
                | "te"
                | "user-agent"
                | "content-length"
                | "host"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
                | "upgrade"
        )
}

/// Keys the gateway makes from the request itself (from `Authorization`, the standard headers,
/// the connection and the trace context), which a client cannot set with `Grpc-Metadata-`.
fn is_made_by_gateway(key: &str) -> bool {
    key.starts_with("grpcgateway-")
        || matches!(
            key,
            "authorization" | "x-forwarded-for" | "x-forwarded-host" | "traceparent" | "tracestate"
        )
}

/// Whether a request with these headers asks to become a WebSocket. Here, low in the layers,
/// because the layers that wear a route (authentication, CORS, compression) ask it too.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.eq_ignore_ascii_case("websocket"))
}

/// The metadata for an upstream call made for a request with these headers and URI authority
/// (HTTP/2's `:authority`, when the URI has one), from a client at `remote` (when known).
///
/// Fails, naming the header, when a header that is forwarded cannot be metadata: a value that is
/// not visible ASCII, a `-bin` value that is not base64, or a `Grpc-Metadata-` name that is not a
/// valid metadata key.
pub fn request_metadata(
    headers: &HeaderMap,
    authority: Option<&str>,
    remote: Option<SocketAddr>,
    mapping: &HeaderMapping,
) -> Result<MetadataMap, MetadataError> {
    // Built as plain headers: the values are the request's own, shared rather than copied.
    let mut metadata = HeaderMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if let Some(key) = name.strip_prefix(METADATA_PREFIX) {
            if !is_reserved(key) && !is_made_by_gateway(key) {
                insert(&mut metadata, name, key, value)?;
            }
        } else if let Some((_, key)) = PERMANENT_HEADERS.iter().find(|(h, _)| *h == name) {
            if name == "authorization" {
                // grpc-gateway also passes the credentials on unprefixed, where gRPC
                // services look for them.
                insert_static(&mut metadata, name, "authorization", value)?;
            }
            insert_static(&mut metadata, name, key, value)?;
        }
    }
    if let Some((header, host)) = headers
        .get("x-forwarded-host")
        .map(|host| ("x-forwarded-host", host))
        .or_else(|| headers.get(http::header::HOST).map(|host| ("host", host)))
    {
        insert_static(&mut metadata, header, "x-forwarded-host", host)?;
    } else if let Some(authority) = authority.and_then(|a| HeaderValue::from_str(a).ok()) {
        // HTTP/2 names the host in `:authority`, which carries no `Host` header.
        insert_static(&mut metadata, ":authority", "x-forwarded-host", &authority)?;
    }
    // The chain so far, as the first X-Forwarded-For header has it; the client's address joins
    // it when known, as the proxy that the gateway is.
    let chain = headers
        .get("x-forwarded-for")
        .filter(|chain| !chain.is_empty());
    let value = match (chain, remote) {
        (Some(chain), Some(addr)) => {
            let mut joined = chain.as_bytes().to_vec();
            joined.extend_from_slice(format!(", {}", addr.ip()).as_bytes());
            Some(HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)))
        }
        (Some(chain), None) => Some(Ok(chain.clone())),
        (None, Some(addr)) => Some(address_value(addr.ip())),
        (None, None) => None,
    };
    if let Some(value) = value {
        let value = value.map_err(|_| MetadataError::InvalidValue {
            header: "x-forwarded-for".into(),
        })?;
        insert_static(&mut metadata, "x-forwarded-for", "x-forwarded-for", &value)?;
    }
    // The caller's W3C trace context, when it is a valid one, so that the upstream's spans join
    // the caller's trace; a gateway that records traces puts its own span in its place
    // (`crate::trace`, through the observe seam).
    if let Some(incoming) = crate::trace_context::Incoming::from_headers(headers) {
        if let Some(value) = headers.get(crate::trace_context::TRACEPARENT) {
            let mut value = value.clone();
            crate::observe::unique_per_request(&mut value);
            metadata.insert(
                HeaderName::from_static(crate::trace_context::TRACEPARENT),
                value,
            );
        }
        if let Some(state) = incoming.state {
            metadata.insert(
                HeaderName::from_static(crate::trace_context::TRACESTATE),
                state.to_header(),
            );
        }
    }
    for (header, key) in &mapping.request {
        for value in headers.get_all(header) {
            if !is_ascii_metadata(value) {
                return Err(MetadataError::InvalidValue {
                    header: header.as_str().to_owned(),
                });
            }
            metadata.append(key.clone(), value.clone());
        }
    }
    Ok(MetadataMap::from_headers(metadata))
}

/// Headers and metadata mapped to each other by name, beyond the default rules: request
/// headers a service wants as metadata keys of its own (`X-Tenant` → `tenant`), and response
/// metadata a client should see as plain headers (`location` → `Location`, `set-cookie` →
/// `Set-Cookie`) rather than as `Grpc-Metadata-*`.
///
/// ```
/// let mapping = protogate::HeaderMapping::default()
///     .request_header("x-tenant", "tenant")?
///     .response_header("location", "Location")?;
/// let gateway = protogate::Gateway::new().header_mapping(mapping);
/// # Ok::<(), protogate::MetadataError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct HeaderMapping {
    /// Request header → metadata key.
    request: Vec<(HeaderName, HeaderName)>,
    /// Response metadata key → header.
    response: Vec<(HeaderName, HeaderName)>,
}

impl HeaderMapping {
    /// No mapping: the default rules alone.
    pub const NONE: HeaderMapping = HeaderMapping {
        request: Vec::new(),
        response: Vec::new(),
    };

    /// Forwards the request header `header` (every value of it) as metadata `key`.
    pub fn request_header(mut self, header: &str, key: &str) -> Result<Self, MetadataError> {
        let header = header_name(header)?;
        let key = metadata_key(key)?;
        self.request.push((header, key));
        Ok(self)
    }

    /// Writes response metadata `key` (headers and trailers, every value) as the header
    /// `header`, instead of `Grpc-Metadata-<key>` / `Grpc-Trailer-<key>`.
    pub fn response_header(mut self, key: &str, header: &str) -> Result<Self, MetadataError> {
        let key = metadata_key(key)?;
        let header = header_name(header)?;
        if is_reserved(header.as_str()) {
            return Err(MetadataError::InvalidKey {
                header: header.as_str().to_owned(),
            });
        }
        self.response.push((key, header));
        Ok(self)
    }

    /// Each mapped response metadata key with the header it is written as.
    pub(crate) fn response_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.response
            .iter()
            .map(|(key, header)| (key.as_str(), header.as_str()))
    }

    /// The header response metadata `key` is written as, when mapped.
    fn response_name(&self, key: &str) -> Option<&HeaderName> {
        self.response
            .iter()
            .find(|(mapped, _)| mapped.as_str() == key)
            .map(|(_, header)| header)
    }
}

fn header_name(header: &str) -> Result<HeaderName, MetadataError> {
    HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()).map_err(|_| {
        MetadataError::InvalidKey {
            header: header.to_owned(),
        }
    })
}

/// A key for ASCII metadata that gRPC leaves to applications.
fn metadata_key(key: &str) -> Result<HeaderName, MetadataError> {
    let name = header_name(key)?;
    if is_reserved(name.as_str()) || name.as_str().ends_with("-bin") {
        return Err(MetadataError::InvalidKey {
            header: key.to_owned(),
        });
    }
    Ok(name)
}

/// An IP address as a header value, written without an intermediate string.
fn address_value(ip: IpAddr) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    // The longest address, an IPv6 one with an embedded IPv4 part, has 45 characters.
    const ROOM: usize = 48;
    let mut buf = [0u8; ROOM];
    let mut rest = &mut buf[..];
    match std::io::Write::write_fmt(&mut rest, format_args!("{ip}")) {
        Ok(()) => {
            let written = ROOM - rest.len();
            HeaderValue::from_bytes(&buf[..written])
        }
        Err(_) => HeaderValue::try_from(ip.to_string()),
    }
}

/// Adds an ASCII value under a key known at compile time.
fn insert_static(
    metadata: &mut HeaderMap,
    header: &str,
    key: &'static str,
    value: &HeaderValue,
) -> Result<(), MetadataError> {
    if !is_ascii_metadata(value) {
        return Err(MetadataError::InvalidValue {
            header: header.to_owned(),
        });
    }
    metadata.append(HeaderName::from_static(key), value.clone());
    Ok(())
}

/// Whether `value` may be an ASCII metadata value: visible ASCII and spaces, as
/// [`HeaderValue::to_str`] accepts.
fn is_ascii_metadata(value: &HeaderValue) -> bool {
    value.to_str().is_ok()
}

fn insert(
    metadata: &mut HeaderMap,
    header: &str,
    key: &str,
    value: &HeaderValue,
) -> Result<(), MetadataError> {
    let invalid_value = || MetadataError::InvalidValue {
        header: header.to_owned(),
    };
    let invalid_key = || MetadataError::InvalidKey {
        header: header.to_owned(),
    };
    // gRPC allows fewer characters in keys than HTTP does in header names.
    let valid = !key.is_empty()
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if !valid {
        return Err(invalid_key());
    }
    let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| invalid_key())?;
    let value = if key.ends_with("-bin") {
        // The header carries base64 (either alphabet, padded or not); the metadata carries the
        // bytes, which tonic keeps base64-encoded in its own spelling.
        let text = value.to_str().map_err(|_| invalid_value())?;
        let bytes = crate::json::decode_base64_lenient(text).map_err(|_| invalid_value())?;
        HeaderValue::from_bytes(BinaryMetadataValue::from_bytes(&bytes).as_encoded_bytes())
            .map_err(|_| invalid_value())?
    } else if is_ascii_metadata(value) {
        value.clone()
    } else {
        return Err(invalid_value());
    };
    metadata.append(name, value);
    Ok(())
}

/// The deadline a request asks for with `Grpc-Timeout`: 1 to 8 ASCII digits followed by a unit,
/// `H` (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds) or `n`
/// (nanoseconds). `None` without the header; an error naming it when the value is malformed.
pub fn grpc_timeout(headers: &HeaderMap) -> Result<Option<Duration>, MetadataError> {
    let Some(value) = headers.get("grpc-timeout") else {
        return Ok(None);
    };
    let invalid = || MetadataError::InvalidTimeout {
        value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
    };
    let text = value.to_str().map_err(|_| invalid())?;
    let split = text.len().checked_sub(1).ok_or_else(invalid)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let amount: u64 = digits.parse().map_err(|_| invalid())?;
    let duration = match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return Err(invalid()),
    };
    Ok(Some(duration))
}

/// Appends response metadata to `headers` as `Grpc-Metadata-<key>` headers, skipping reserved
/// keys; binary (`-bin`) values stay base64-encoded. Keys `mapping` names go under their
/// own header instead.
pub fn write_response_headers(
    metadata: MetadataMap,
    headers: &mut HeaderMap,
    mapping: &HeaderMapping,
) {
    write_prefixed(metadata, headers, METADATA_PREFIX, mapping);
}

/// Appends trailing metadata to `headers` as `Grpc-Trailer-<key>` headers, with the same rules as
/// [`write_response_headers`].
pub fn write_trailer_headers(
    metadata: MetadataMap,
    headers: &mut HeaderMap,
    mapping: &HeaderMapping,
) {
    write_prefixed(metadata, headers, TRAILER_PREFIX, mapping);
}

/// Moves each value under its key with `prefix` added (or under the header `mapping` gives
/// the key); no value is copied.
fn write_prefixed(
    metadata: MetadataMap,
    headers: &mut HeaderMap,
    prefix: &str,
    mapping: &HeaderMapping,
) {
    let mut spelled = Vec::new();
    // `into_iter` names a key once, then gives `None` for the key's further values.
    let mut forwarded = false;
    let mut mapped = None;
    for (key, value) in metadata.into_headers() {
        if let Some(key) = key {
            forwarded = !is_reserved(key.as_str());
            mapped = mapping.response_name(key.as_str()).cloned();
            if forwarded && mapped.is_none() {
                spelled.clear();
                spelled.reserve(prefix.len() + key.as_str().len());
                spelled.extend_from_slice(prefix.as_bytes());
                spelled.extend_from_slice(key.as_str().as_bytes());
            }
        }
        if !forwarded {
            continue;
        }
        if let Some(header) = &mapped {
            headers.append(header.clone(), value);
        // A new name for each value costs what cloning one would.
        } else if let Ok(name) = HeaderName::from_bytes(&spelled) {
            headers.append(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn text<'a>(md: &'a MetadataMap, key: &str) -> Option<&'a str> {
        md.get(key).and_then(|v| v.to_str().ok())
    }

    fn all(md: &MetadataMap, key: &str) -> Vec<String> {
        md.get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().expect("addr")
    }

    #[test]
    fn grpc_metadata_headers_lose_their_prefix() {
        let md = request_metadata(
            &headers(&[
                ("grpc-metadata-tenant", "acme"),
                ("grpc-metadata-x-id", "7"),
            ]),
            None,
            None,
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        assert_eq!(text(&md, "tenant"), Some("acme"));
        assert_eq!(text(&md, "x-id"), Some("7"));
        assert_eq!(md.len(), 2);
    }

    #[test]
    fn repeated_headers_keep_every_value() {
        let md = request_metadata(
            &headers(&[
                ("grpc-metadata-tag", "a"),
                ("grpc-metadata-tag", "b"),
                ("accept", "text/plain"),
                ("accept", "application/json"),
            ]),
            None,
            None,
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        assert_eq!(all(&md, "tag"), ["a", "b"]);
        assert_eq!(
            all(&md, "grpcgateway-accept"),
            ["text/plain", "application/json"]
        );
    }

    #[test]
    fn binary_headers_are_base64_decoded_padded_or_not() {
        let md = request_metadata(
            &headers(&[
                ("grpc-metadata-trace-bin", "AQID"),
                ("grpc-metadata-padded-bin", "AQI="),
                ("grpc-metadata-raw-bin", "AQI"),
                ("grpc-metadata-url-bin", "-_8"),
            ]),
            None,
            None,
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        let bytes = |key: &str| md.get_bin(key).and_then(|v| v.to_bytes().ok());
        assert_eq!(bytes("trace-bin").as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(bytes("padded-bin").as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(bytes("raw-bin").as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(bytes("url-bin").as_deref(), Some(&[0xfbu8, 0xff][..]));
    }

    #[test]
    fn permanent_headers_get_the_grpcgateway_prefix() {
        for (header, key) in PERMANENT_HEADERS {
            let md = request_metadata(&headers(&[(header, "v")]), None, None, &HeaderMapping::NONE)
                .expect("metadata");
            assert_eq!(text(&md, key), Some("v"), "{header}");
        }
        let md = request_metadata(
            &headers(&[("user-agent", "curl"), ("cookie", "a=1")]),
            None,
            None,
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        assert_eq!(text(&md, "grpcgateway-user-agent"), Some("curl"));
        assert_eq!(text(&md, "grpcgateway-cookie"), Some("a=1"));
        assert!(md.get("user-agent").is_none());
    }

    #[test]
    fn authorization_goes_both_prefixed_and_bare() {
        let md = request_metadata(
            &headers(&[("authorization", "Bearer t")]),
            None,
            None,
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        assert_eq!(text(&md, "authorization"), Some("Bearer t"));
        assert_eq!(text(&md, "grpcgateway-authorization"), Some("Bearer t"));
    }

    #[test]
    fn other_headers_stay_behind() {
        let md = request_metadata(
            &headers(&[
                ("x-custom", "dropped"),
                ("content-length", "3"),
                ("grpc-timeout", "1S"),
                ("accept-encoding", "gzip"),
            ]),
            None,
            None,
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        assert!(md.is_empty(), "{md:?}");
    }

    #[test]
    fn the_uri_authority_is_the_forwarded_host_when_no_header_names_one() {
        // HTTP/2: `:authority`, no `Host` header.
        let md = request_metadata(
            &HeaderMap::new(),
            Some("api.example.com"),
            None,
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        assert_eq!(text(&md, "x-forwarded-host"), Some("api.example.com"));
        let md = request_metadata(
            &headers(&[("host", "h1.example.com")]),
            Some("api.example.com"),
            None,
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        assert_eq!(text(&md, "x-forwarded-host"), Some("h1.example.com"));
    }

    #[test]
    fn keys_the_gateway_makes_cannot_be_spelled_by_a_client() {
        let md = request_metadata(
            &headers(&[
                ("grpc-metadata-authorization", "Bearer smuggled"),
                ("grpc-metadata-grpcgateway-authorization", "Bearer smuggled"),
                ("grpc-metadata-grpcgateway-cookie", "a=1"),
                ("grpc-metadata-x-forwarded-for", "10.0.0.1"),
                ("grpc-metadata-x-forwarded-host", "admin.internal"),
                (
                    "grpc-metadata-traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
                ("grpc-metadata-tracestate", "a=b"),
                ("grpc-metadata-tenant", "acme"),
            ]),
            None,
            Some(addr()),
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        assert_eq!(all(&md, "x-forwarded-for"), ["127.0.0.1"]);
        for key in [
            "authorization",
            "grpcgateway-authorization",
            "grpcgateway-cookie",
            "x-forwarded-host",
            "traceparent",
            "tracestate",
        ] {
            assert!(md.get(key).is_none(), "{key}: {md:?}");
        }
        assert_eq!(text(&md, "tenant"), Some("acme"));
    }

    #[test]
    fn reserved_keys_are_not_forwarded_upstream() {
        let md = request_metadata(
            &headers(&[
                ("grpc-metadata-grpc-status", "0"),
                ("grpc-metadata-grpc-message", "x"),
                ("grpc-metadata-grpc-status-details-bin", "AQID"),
                ("grpc-metadata-content-type", "text/plain"),
                ("grpc-metadata-te", "trailers"),
                ("grpc-metadata-connection", "close"),
                ("grpc-metadata-user-agent", "x"),
                ("grpc-metadata-host", "x"),
            ]),
            None,
            None,
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        assert!(md.is_empty(), "{md:?}");
    }

    #[test]
    fn forwarded_host_comes_from_the_header_or_else_host() {
        let md = request_metadata(
            &headers(&[("host", "api.example")]),
            None,
            None,
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        assert_eq!(text(&md, "x-forwarded-host"), Some("api.example"));
        assert!(md.get("grpcgateway-host").is_none());

        let md = request_metadata(
            &headers(&[("host", "inner:8080"), ("x-forwarded-host", "api.example")]),
            None,
            None,
            &HeaderMapping::NONE,
        )
        .expect("metadata");
        assert_eq!(all(&md, "x-forwarded-host"), ["api.example"]);
    }

    #[test]
    fn forwarded_for_is_the_client_address() {
        let md = request_metadata(&HeaderMap::new(), None, Some(addr()), &HeaderMapping::NONE)
            .expect("metadata");
        assert_eq!(text(&md, "x-forwarded-for"), Some("127.0.0.1"));
        let v6: SocketAddr = "[::1]:80".parse().expect("addr");
        let md = request_metadata(&HeaderMap::new(), None, Some(v6), &HeaderMapping::NONE)
            .expect("metadata");
        assert_eq!(text(&md, "x-forwarded-for"), Some("::1"));
        let longest = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let wide: SocketAddr = format!("[{longest}]:80").parse().expect("addr");
        let md = request_metadata(&HeaderMap::new(), None, Some(wide), &HeaderMapping::NONE)
            .expect("metadata");
        assert_eq!(text(&md, "x-forwarded-for"), Some(longest));
        let md = request_metadata(&HeaderMap::new(), None, None, &HeaderMapping::NONE)
            .expect("metadata");
        assert!(md.get("x-forwarded-for").is_none());
    }

    #[test]
    fn forwarded_for_chain_is_extended() {
        let map = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        let md =
            request_metadata(&map, None, Some(addr()), &HeaderMapping::NONE).expect("metadata");
        assert_eq!(
            all(&md, "x-forwarded-for"),
            ["10.1.1.1, 10.2.2.2, 127.0.0.1"]
        );
        // Without a known client the chain goes on as it came.
        let md = request_metadata(&map, None, None, &HeaderMapping::NONE).expect("metadata");
        assert_eq!(all(&md, "x-forwarded-for"), ["10.1.1.1, 10.2.2.2"]);
    }

    #[test]
    fn a_valid_trace_context_goes_on_and_an_invalid_one_stays_behind() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let md = request_metadata(
            &headers(&[
                ("traceparent", parent),
                ("tracestate", "rojo=1 , congo=2"),
                ("grpc-metadata-traceparent", "forged"),
            ]),
            None,
            None,
            &HeaderMapping::NONE,
        )
        .unwrap();
        assert_eq!(all(&md, "traceparent"), [parent]);
        assert_eq!(all(&md, "tracestate"), ["rojo=1,congo=2"]);
        // A trace context belongs to one request: HTTP/2 never adds it to its header table.
        let forwarded = md.get("traceparent").expect("traceparent");
        assert!(forwarded.is_sensitive());

        let md = request_metadata(
            &headers(&[
                (
                    "traceparent",
                    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ),
                ("tracestate", "rojo=1"),
            ]),
            None,
            None,
            &HeaderMapping::NONE,
        )
        .unwrap();
        assert_eq!(text(&md, "traceparent"), None);
        assert_eq!(text(&md, "tracestate"), None);
    }

    #[test]
    fn invalid_binary_metadata_names_the_header() {
        let map = headers(&[("grpc-metadata-x-bin", "!!!")]);
        let error =
            request_metadata(&map, None, None, &HeaderMapping::NONE).expect_err("bad base64");
        assert!(error.to_string().contains("grpc-metadata-x-bin"), "{error}");
    }

    #[test]
    fn non_ascii_values_are_errors_naming_the_header() {
        for name in ["grpc-metadata-note", "user-agent", "authorization", "host"] {
            let mut map = HeaderMap::new();
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(b"caf\xe9").expect("obs-text is a valid header value"),
            );
            let error =
                request_metadata(&map, None, None, &HeaderMapping::NONE).expect_err("not ASCII");
            assert_eq!(
                error,
                MetadataError::InvalidValue {
                    header: name.into()
                }
            );
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn invalid_keys_are_errors_naming_the_header() {
        for name in [
            "grpc-metadata-",
            "grpc-metadata-a!b",
            "grpc-metadata-x~y-bin",
        ] {
            let mut map = HeaderMap::new();
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
                HeaderValue::from_static("AQID"),
            );
            let error =
                request_metadata(&map, None, None, &HeaderMapping::NONE).expect_err("bad key");
            assert_eq!(
                error,
                MetadataError::InvalidKey {
                    header: name.into()
                }
            );
        }
    }

    #[test]
    fn timeouts_take_every_unit() {
        let t = |v: &str| grpc_timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("2H"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(t("3M"), Ok(Some(Duration::from_secs(180))));
        assert_eq!(t("2S"), Ok(Some(Duration::from_secs(2))));
        assert_eq!(t("100m"), Ok(Some(Duration::from_millis(100))));
        assert_eq!(t("5u"), Ok(Some(Duration::from_micros(5))));
        assert_eq!(t("7n"), Ok(Some(Duration::from_nanos(7))));
        assert_eq!(t("0S"), Ok(Some(Duration::ZERO)));
        assert_eq!(
            t("99999999H"),
            Ok(Some(Duration::from_secs(99_999_999 * 3600)))
        );
        assert_eq!(grpc_timeout(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn malformed_timeouts_are_errors_naming_the_header() {
        let t = |v: &str| grpc_timeout(&headers(&[("grpc-timeout", v)]));
        for bad in [
            "",
            "S",
            "5",
            "5x",
            "5s",
            "123456789S",
            "-1S",
            "+1S",
            " 1S",
            "1 S",
            "1.5S",
            "0x1S",
        ] {
            let error = t(bad).expect_err(bad);
            assert!(error.to_string().contains("grpc-timeout"), "{error}");
        }
        let mut map = HeaderMap::new();
        map.insert(
            "grpc-timeout",
            HeaderValue::from_bytes(b"1\xe9").expect("value"),
        );
        assert!(grpc_timeout(&map).is_err());
    }

    fn response_metadata() -> MetadataMap {
        let mut md = MetadataMap::new();
        md.insert("x-request-id", "abc".parse().expect("value"));
        md.append("x-tag", "a".parse().expect("value"));
        md.append("x-tag", "b".parse().expect("value"));
        md.insert_bin("trace-bin", BinaryMetadataValue::from_bytes(&[1, 2, 3]));
        for reserved in [
            "content-type",
            "grpc-status",
            "grpc-message",
            "grpc-encoding",
            "te",
            "content-length",
        ] {
            md.insert(
                tonic::metadata::AsciiMetadataKey::from_static(reserved),
                "x".parse().expect("value"),
            );
        }
        md.insert_bin(
            "grpc-status-details-bin",
            BinaryMetadataValue::from_bytes(&[8, 5]),
        );
        md
    }

    fn written(prefix: &str, out: &HeaderMap) -> Vec<(String, String)> {
        out.iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .filter(|(k, _)| k.starts_with(prefix))
            .collect()
    }

    #[test]
    fn response_metadata_becomes_grpc_metadata_headers() {
        let mut out = HeaderMap::new();
        write_response_headers(response_metadata(), &mut out, &HeaderMapping::NONE);
        let mut got = written("", &out);
        got.sort();
        let expected = [
            ("grpc-metadata-trace-bin", "AQID"),
            ("grpc-metadata-x-request-id", "abc"),
            ("grpc-metadata-x-tag", "a"),
            ("grpc-metadata-x-tag", "b"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn mapped_headers_and_metadata_keep_their_own_names() {
        let mapping = HeaderMapping::default()
            .request_header("X-Tenant", "tenant")
            .and_then(|m| m.response_header("x-tag", "X-Tags"))
            .expect("valid names");
        let md = request_metadata(
            &headers(&[
                ("x-tenant", "acme"),
                ("x-tenant", "beta"),
                ("x-other", "no"),
            ]),
            None,
            None,
            &mapping,
        )
        .expect("metadata");
        assert_eq!(all(&md, "tenant"), ["acme", "beta"]);
        assert!(md.get("x-other").is_none());

        let mut out = HeaderMap::new();
        write_response_headers(response_metadata(), &mut out, &mapping);
        let tags: Vec<_> = out.get_all("x-tags").iter().collect();
        assert_eq!(tags, ["a", "b"]);
        assert!(out.get("grpc-metadata-x-tag").is_none());
        assert_eq!(out["grpc-metadata-x-request-id"], "abc");

        for (header, key) in [
            ("x-a", "grpc-status"),
            ("x-a", "te"),
            ("x a", "k"),
            ("x-a", "k-bin"),
        ] {
            assert!(
                HeaderMapping::default()
                    .request_header(header, key)
                    .is_err(),
                "{header} {key}"
            );
        }
        assert!(
            HeaderMapping::default()
                .response_header("k", "content-length")
                .is_err()
        );
    }

    #[test]
    fn trailers_become_grpc_trailer_headers() {
        let mut out = HeaderMap::new();
        out.insert("content-type", HeaderValue::from_static("application/json"));
        write_trailer_headers(response_metadata(), &mut out, &HeaderMapping::NONE);
        let mut got = written("grpc-", &out);
        got.sort();
        let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "grpc-trailer-trace-bin",
                "grpc-trailer-x-request-id",
                "grpc-trailer-x-tag",
                "grpc-trailer-x-tag"
            ]
        );
        // Existing headers are left as they were.
        assert_eq!(
            out.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
    }
}
