//! API keys: where a request carries one (a header, a query parameter), the keys known by the
//! SHA-256 of their text (never the text itself), and the constant-time lookup of the key a
//! request sent.

use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use subtle::ConstantTimeEq as _;

use super::AuthError;
use crate::percent::{self, Plus, Slash};

/// One client's API key: a name that identifies the client (it becomes the request's
/// [`Principal`](crate::Principal) subject) and the SHA-256 of the key, never the key itself.
#[derive(Clone)]
pub struct ApiKey {
    name: Arc<str>,
    sha256: [u8; 32],
    scopes: Vec<String>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not the key, but it is no one's business either.
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// The key of client `name`, given by the SHA-256 of its text as 64 hexadecimal digits
    /// (what `printf %s KEY | sha256sum` prints, or [`ApiKey::hash`]).
    pub fn from_sha256_hex(name: impl Into<String>, sha256: &str) -> Result<ApiKey, AuthError> {
        let name = name.into();
        let digest =
            parse_hex(sha256.trim()).ok_or_else(|| AuthError::BadKeyHash { name: name.clone() })?;
        if name.is_empty() {
            return Err(AuthError::EmptyKeyName);
        }
        Ok(ApiKey {
            name: name.into(),
            sha256: digest,
            scopes: Vec::new(),
        })
    }

    /// The scopes a request with this key is granted, for routes that require some.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The SHA-256 of `key` as 64 lower-case hexadecimal digits: what to store in place of it.
    pub fn hash(key: &str) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let mut hex = String::with_capacity(64);
        for byte in digest.as_ref() {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        hex
    }

    /// The client's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    pub(crate) fn granted_scopes(&self) -> &[String] {
        &self.scopes
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let digit = |b: u8| {
            char::from(b)
                .to_digit(16)
                .and_then(|d| u8::try_from(d).ok())
        };
        *slot = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The API keys a gateway accepts and where requests carry them.
///
/// By default a key travels in the `x-api-key` header; a query parameter can be allowed too
/// ([`ApiKeys::query`]), though query strings end up in access logs more often than headers.
/// The parameter is taken off the request before it reaches the route, so it never becomes a
/// field of the request message.
///
/// ```
/// use protogate::{ApiKey, ApiKeys};
///
/// let keys = ApiKeys::new()
///     .header("x-api-key")
///     .query("api_key")
///     .key(ApiKey::from_sha256_hex("ci-pipeline", &ApiKey::hash("s3cret"))?);
/// # Ok::<(), protogate::AuthError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
    header: Option<String>,
    query: Option<String>,
}

impl Default for ApiKeys {
    fn default() -> Self {
        ApiKeys::new()
    }
}

impl ApiKeys {
    /// No keys yet; read from the `x-api-key` header, not from the query.
    pub fn new() -> Self {
        ApiKeys {
            keys: Vec::new(),
            header: Some("x-api-key".to_owned()),
            query: None,
        }
    }

    /// Accepts `key`.
    pub fn key(mut self, key: ApiKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Reads keys from the header `name` (`x-api-key` by default).
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// Reads no key from any header.
    pub fn no_header(mut self) -> Self {
        self.header = None;
        self
    }

    /// Reads keys from the query parameter `name` too (none by default).
    pub fn query(mut self, name: impl Into<String>) -> Self {
        self.query = Some(name.into());
        self
    }

    pub(crate) fn build(self) -> Result<KeyTable, AuthError> {
        let header = self
            .header
            .map(|name| {
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| AuthError::BadHeaderName { name })
            })
            .transpose()?;
        if header.is_none() && self.query.is_none() {
            return Err(AuthError::NowhereForKeys);
        }
        if let Some(query) = &self.query
            && query.is_empty()
        {
            return Err(AuthError::EmptyQueryName);
        }
        for (index, key) in self.keys.iter().enumerate() {
            if self.keys[..index]
                .iter()
                .any(|other| other.name == key.name)
            {
                return Err(AuthError::DuplicateKeyName {
                    name: key.name.to_string(),
                });
            }
        }
        // A header name is valid with the prefix too: the prefix is lower-case token text.
        let as_metadata = header.as_ref().and_then(|header| {
            HeaderName::from_bytes(
                format!("{}{header}", crate::metadata::METADATA_PREFIX).as_bytes(),
            )
            .ok()
        });
        Ok(KeyTable {
            keys: self.keys,
            header,
            as_metadata,
            query: self.query,
        })
    }
}

/// [`ApiKeys`], checked and ready for requests.
#[derive(Debug)]
pub(crate) struct KeyTable {
    keys: Vec<ApiKey>,
    pub(crate) header: Option<HeaderName>,
    /// The key's header as a client would send it straight to the upstream as metadata
    /// (`grpc-metadata-x-api-key`).
    pub(crate) as_metadata: Option<HeaderName>,
    pub(crate) query: Option<String>,
}

impl KeyTable {
    /// The key whose hash is that of `presented`. Every stored hash is compared, in constant
    /// time, whichever matches: how long it takes says nothing of which key came close.
    pub(crate) fn find(&self, presented: &str) -> Option<&ApiKey> {
        let digest = ring::digest::digest(&ring::digest::SHA256, presented.as_bytes());
        let mut found = None;
        for key in &self.keys {
            let equal: bool = key.sha256.ct_eq(digest.as_ref()).into();
            if equal && found.is_none() {
                found = Some(key);
            }
        }
        found
    }

    /// Where keys are read from, as a challenge's parameters say it.
    pub(crate) fn places(&self) -> String {
        let mut places = Vec::new();
        if let Some(header) = &self.header {
            places.push(format!("header=\"{header}\""));
        }
        if let Some(query) = &self.query {
            places.push(format!("query=\"{}\"", query.replace(['"', '\\'], "")));
        }
        places.join(", ")
    }
}

/// The value of the query parameter `name` in `query` (percent-decoded), and the query without
/// any parameter of that name (`None` when nothing is left).
pub(crate) fn take_query_param(query: &str, name: &str) -> (Option<String>, Option<String>, bool) {
    let mut value = None;
    let mut kept: Vec<&str> = Vec::new();
    let mut removed = false;
    for pair in query.split('&') {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let matches = percent::decode(raw_name, Plus::Space, Slash::Decode)
            .is_ok_and(|decoded| decoded == name);
        if matches {
            removed = true;
            if value.is_none() {
                value = percent::decode(raw_value, Plus::Space, Slash::Decode)
                    .ok()
                    .map(|v| v.into_owned());
            }
        } else if !pair.is_empty() {
            kept.push(pair);
        }
    }
    let rest = (!kept.is_empty()).then(|| kept.join("&"));
    (value, rest, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_hex() {
        // printf %s abc | sha256sum
        assert_eq!(
            ApiKey::hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let key = ApiKey::from_sha256_hex(
            "x",
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        )
        .expect("upper case is fine");
        assert_eq!(key.sha256[0], 0xba);
    }

    #[test]
    fn bad_hashes_are_refused_by_name() {
        for text in ["", "abc", &"g".repeat(64), &"a".repeat(63)] {
            let error = ApiKey::from_sha256_hex("ci", text).expect_err(text);
            assert!(error.to_string().contains("`ci`"), "{error}");
        }
    }

    #[test]
    fn the_key_whose_hash_matches_is_found() {
        let table = ApiKeys::new()
            .key(ApiKey::from_sha256_hex("one", &ApiKey::hash("first")).expect("hash"))
            .key(ApiKey::from_sha256_hex("two", &ApiKey::hash("second")).expect("hash"))
            .build()
            .expect("valid");
        assert_eq!(table.find("second").map(ApiKey::name), Some("two"));
        assert_eq!(table.find("first").map(ApiKey::name), Some("one"));
        assert!(table.find("third").is_none());
        assert!(table.find("").is_none());
    }

    #[test]
    fn two_keys_with_one_name_are_refused() {
        let hash = ApiKey::hash("k");
        let error = ApiKeys::new()
            .key(ApiKey::from_sha256_hex("same", &hash).expect("hash"))
            .key(ApiKey::from_sha256_hex("same", &ApiKey::hash("j")).expect("hash"))
            .build()
            .expect_err("duplicate");
        assert!(error.to_string().contains("`same`"));
    }

    #[test]
    fn the_key_parameter_is_taken_out_of_the_query() {
        assert_eq!(
            take_query_param("a=1&api_key=s%2Bx&b=2", "api_key"),
            (Some("s+x".to_owned()), Some("a=1&b=2".to_owned()), true)
        );
        assert_eq!(
            take_query_param("api_key=k", "api_key"),
            (Some("k".to_owned()), None, true)
        );
        assert_eq!(
            take_query_param("a=1", "api_key"),
            (None, Some("a=1".to_owned()), false)
        );
        // Every copy goes; the first one counts.
        assert_eq!(
            take_query_param("api%5Fkey=1&api_key=2", "api_key"),
            (Some("1".to_owned()), None, true)
        );
    }
}
