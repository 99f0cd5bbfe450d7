//! HTTP headers to gRPC metadata and back, with grpc-gateway's default rules so that services
//! moving from it see the same metadata:
//!
//! - `Grpc-Metadata-<Key>: v` becomes metadata `<key>: v` (`-bin` keys carry base64 values).
//! - `Authorization` is forwarded as `authorization`.
//! - Other standard HTTP request headers are forwarded as `grpcgateway-<header>`.
//! - `x-forwarded-host` (from `Host`) and `x-forwarded-for` (the client address appended) are set.
//! - `Grpc-Timeout` (`<digits><H|M|S|m|u|n>`) sets the call's deadline.
//! - Response metadata comes back as `Grpc-Metadata-<key>` headers, trailers as
//!   `Grpc-Trailer-<key>`.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tonic::metadata::{
    AsciiMetadataKey, AsciiMetadataValue, BinaryMetadataKey, BinaryMetadataValue, KeyAndValueRef,
    MetadataMap,
};

/// The prefix that marks a request header as gRPC metadata, and response metadata as a header.
pub const METADATA_PREFIX: &str = "grpc-metadata-";
/// The prefix of response headers carrying trailers.
pub const TRAILER_PREFIX: &str = "grpc-trailer-";
/// The prefix grpc-gateway gives forwarded standard HTTP headers.
pub const FORWARDED_PREFIX: &str = "grpcgateway-";

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
const PERMANENT_HEADERS: &[(&str, &str)] = &[
    ("accept", "grpcgateway-accept"),
    ("accept-charset", "grpcgateway-accept-charset"),
    ("accept-language", "grpcgateway-accept-language"),
    ("accept-ranges", "grpcgateway-accept-ranges"),
    ("cache-control", "grpcgateway-cache-control"),
    ("content-type", "grpcgateway-content-type"),
    ("cookie", "grpcgateway-cookie"),
    ("date", "grpcgateway-date"),
    ("expect", "grpcgateway-expect"),
    ("from", "grpcgateway-from"),
    ("host", "grpcgateway-host"),
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

/// Metadata keys gRPC itself uses; never forwarded in either direction.
fn is_reserved(key: &str) -> bool {
    key.starts_with("grpc-")
        || matches!(
            key,
            "content-type" | "te" | "user-agent" | "content-length" | "connection" | "host"
        )
}

/// The metadata for an upstream call made for a request with these headers.
pub fn request_metadata(
    headers: &HeaderMap,
    remote: Option<SocketAddr>,
) -> Result<MetadataMap, MetadataError> {
    let mut metadata = MetadataMap::new();
    let mut forwarded_for: Option<String> = None;
    for (name, value) in headers {
        let name = name.as_str();
        if let Some(key) = name.strip_prefix(METADATA_PREFIX) {
            if !is_reserved(key) {
                insert(&mut metadata, name, key, value)?;
            }
        } else if name == "authorization" {
            insert_static(&mut metadata, name, "authorization", value)?;
        } else if name == "x-forwarded-for" {
            forwarded_for = value.to_str().ok().map(str::to_owned);
        } else if let Some((_, key)) = PERMANENT_HEADERS.iter().find(|(h, _)| *h == name) {
            insert_static(&mut metadata, name, key, value)?;
        }
    }
    if let Some(host) = headers.get(http::header::HOST) {
        insert_static(&mut metadata, "host", "x-forwarded-host", host)?;
    }
    let client = remote.map(|addr| addr.ip().to_string());
    let chain = match (forwarded_for, client) {
        (Some(chain), Some(client)) => Some(format!("{chain}, {client}")),
        (Some(chain), None) => Some(chain),
        (None, client) => client,
    };
    if let Some(chain) = chain {
        let value = HeaderValue::from_str(&chain).map_err(|_| MetadataError::InvalidValue {
            header: "x-forwarded-for".into(),
        })?;
        insert_static(&mut metadata, "x-forwarded-for", "x-forwarded-for", &value)?;
    }
    Ok(metadata)
}

/// Inserts an ASCII value under a key known at compile time.
fn insert_static(
    metadata: &mut MetadataMap,
    header: &str,
    key: &'static str,
    value: &HeaderValue,
) -> Result<(), MetadataError> {
    let value = value
        .to_str()
        .ok()
        .and_then(|text| AsciiMetadataValue::try_from(text).ok())
        .ok_or_else(|| MetadataError::InvalidValue {
            header: header.to_owned(),
        })?;
    metadata.append(AsciiMetadataKey::from_static(key), value);
    Ok(())
}

fn insert(
    metadata: &mut MetadataMap,
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
    if key.ends_with("-bin") {
        let key = BinaryMetadataKey::from_bytes(key.as_bytes()).map_err(|_| invalid_key())?;
        // The header carries base64 (padded or not); the metadata carries the bytes.
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let bytes =
            base64::Engine::decode(&engine, value.as_bytes()).map_err(|_| invalid_value())?;
        metadata.append_bin(key, BinaryMetadataValue::from_bytes(&bytes));
    } else {
        let key = AsciiMetadataKey::from_bytes(key.as_bytes()).map_err(|_| invalid_key())?;
        let text = value.to_str().map_err(|_| invalid_value())?;
        let value = AsciiMetadataValue::try_from(text).map_err(|_| invalid_value())?;
        metadata.append(key, value);
    }
    Ok(())
}

/// The deadline a request asks for with `Grpc-Timeout`.
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

/// Response metadata as `Grpc-Metadata-<key>` headers.
pub fn write_response_headers(metadata: &MetadataMap, headers: &mut HeaderMap) {
    write_prefixed(metadata, headers, METADATA_PREFIX);
}

/// Trailers as `Grpc-Trailer-<key>` headers.
pub fn write_trailer_headers(metadata: &MetadataMap, headers: &mut HeaderMap) {
    write_prefixed(metadata, headers, TRAILER_PREFIX);
}

fn write_prefixed(metadata: &MetadataMap, headers: &mut HeaderMap, prefix: &str) {
    for entry in metadata.iter() {
        let (key, value) = match entry {
            KeyAndValueRef::Ascii(key, value) => (key.as_str(), value.as_bytes()),
            KeyAndValueRef::Binary(key, value) => (key.as_str(), value.as_encoded_bytes()),
        };
        if is_reserved(key) {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(format!("{prefix}{key}").as_bytes()),
            HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        headers.append(name, value);
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

    #[test]
    fn request_headers_follow_grpc_gateway_defaults() {
        let map = headers(&[
            ("grpc-metadata-tenant", "acme"),
            ("grpc-metadata-trace-bin", "AQID"),
            ("authorization", "Bearer t"),
            ("user-agent", "curl"),
            ("host", "api.example"),
            ("x-custom", "dropped"),
            ("grpc-metadata-grpc-status", "0"),
        ]);
        let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let md = request_metadata(&map, Some(addr)).expect("metadata");
        assert_eq!(md.get("tenant").and_then(|v| v.to_str().ok()), Some("acme"));
        assert_eq!(
            md.get_bin("trace-bin")
                .and_then(|v| v.to_bytes().ok())
                .as_deref(),
            Some(&[1u8, 2, 3][..])
        );
        assert_eq!(
            md.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer t")
        );
        assert_eq!(
            md.get("grpcgateway-user-agent")
                .and_then(|v| v.to_str().ok()),
            Some("curl")
        );
        assert_eq!(
            md.get("x-forwarded-host").and_then(|v| v.to_str().ok()),
            Some("api.example")
        );
        assert_eq!(
            md.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
            Some("127.0.0.1")
        );
        assert!(md.get("x-custom").is_none());
        assert!(md.get("grpc-status").is_none());
    }

    #[test]
    fn forwarded_for_chain_is_extended() {
        let map = headers(&[("x-forwarded-for", "10.1.1.1")]);
        let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let md = request_metadata(&map, Some(addr)).expect("metadata");
        assert_eq!(
            md.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
            Some("10.1.1.1, 127.0.0.1")
        );
    }

    #[test]
    fn invalid_binary_metadata_names_the_header() {
        let map = headers(&[("grpc-metadata-x-bin", "!!!")]);
        let error = request_metadata(&map, None).expect_err("bad base64");
        assert!(error.to_string().contains("grpc-metadata-x-bin"), "{error}");
    }

    #[test]
    fn timeouts() {
        let t = |v: &str| grpc_timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("100m"), Ok(Some(Duration::from_millis(100))));
        assert_eq!(t("2S"), Ok(Some(Duration::from_secs(2))));
        assert_eq!(t("1H"), Ok(Some(Duration::from_secs(3600))));
        assert!(t("123456789S").is_err());
        assert!(t("5x").is_err());
        assert!(t("S").is_err());
        assert_eq!(grpc_timeout(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn response_metadata_becomes_prefixed_headers() {
        let mut md = MetadataMap::new();
        md.insert("x-request-id", "abc".parse().expect("value"));
        md.insert("content-type", "application/grpc".parse().expect("value"));
        let mut out = HeaderMap::new();
        write_response_headers(&md, &mut out);
        write_trailer_headers(&md, &mut out);
        assert_eq!(
            out.get("grpc-metadata-x-request-id").map(|v| v.as_bytes()),
            Some(&b"abc"[..])
        );
        assert_eq!(
            out.get("grpc-trailer-x-request-id").map(|v| v.as_bytes()),
            Some(&b"abc"[..])
        );
        assert!(out.get("grpc-metadata-content-type").is_none());
    }
}
