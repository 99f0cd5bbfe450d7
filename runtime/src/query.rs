//! Query parameters into a request message: `a.b.c=v`, repeated keys, both field spellings.

use std::borrow::Cow;

use crate::error::GatewayError;
use crate::json::JsonMessage;
use crate::percent::{self, PercentError, Plus, Slash};

/// Sets the fields named by `query` (`application/x-www-form-urlencoded`) on `message`.
///
/// Parameters naming a field in `skip` (or a field under it) are ignored: those fields come from
/// the path or the body. Parameters naming no field are ignored unless `reject_unknown`.
pub fn apply<M: JsonMessage>(
    message: &mut M,
    query: &str,
    skip: &[&str],
    reject_unknown: bool,
) -> Result<(), GatewayError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key).map_err(|error| GatewayError::Query {
            param: raw_key.to_owned(),
            error: crate::json::JsonError::new(error.to_string()),
        })?;
        let value = decode(raw_value).map_err(|error| GatewayError::Query {
            param: key.to_string(),
            error: crate::json::JsonError::new(error.to_string()),
        })?;
        if skip.iter().any(|s| is_under(&key, s)) {
            continue;
        }
        let path: Vec<&str> = key.split('.').collect();
        let known = message
            .set_text(&path, &value)
            .map_err(|error| GatewayError::Query {
                param: key.to_string(),
                error,
            })?;
        if !known && reject_unknown {
            return Err(GatewayError::UnknownQuery(key.into_owned()));
        }
    }
    Ok(())
}

/// True when `key` is `field` or a field nested under it.
fn is_under(key: &str, field: &str) -> bool {
    key.strip_prefix(field)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Decodes one form-encoded component: `+` is a space, then strict percent-decoding to UTF-8.
/// Plain components are borrowed.
fn decode(component: &str) -> Result<Cow<'_, str>, PercentError> {
    percent::decode(component, Plus::Space, Slash::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_matches_whole_segments_only() {
        assert!(is_under("book", "book"));
        assert!(is_under("book.title", "book"));
        assert!(!is_under("bookmark", "book"));
    }

    #[test]
    fn components_decode_plus_and_percent() {
        assert_eq!(decode("a+b%2Fc").as_deref(), Ok("a b/c"));
        assert!(matches!(decode("plain"), Ok(Cow::Borrowed("plain"))));
        assert!(decode("%FF").is_err());
        assert!(decode("%").is_err());
        assert!(decode("a%2").is_err());
        assert!(decode("%zz").is_err());
    }
}
