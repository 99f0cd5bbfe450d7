//! Query parameters into a request message: `a.b.c=v`, repeated keys for repeated fields,
//! `m[key]=v` for map entries, both field spellings.
//!
//! Nothing a client sends is dropped without a word, except a parameter naming no field of the
//! message (an error too under `reject_unknown`). Each of these is a 400 naming the parameter:
//! - a name that is empty, has an empty segment (`a..b`, `a.`), or a `[` that does not close at
//!   its end (`m[k`, `m[k]x`);
//! - a malformed percent-escape or non-UTF-8 bytes in the name or the value;
//! - a name that reaches a field it cannot set (a message, a field inside a repeated message, a
//!   map without `[key]`, `[key]` on a non-map field, a key that does not parse as the map's key
//!   type; see [`TextField`]);
//! - a value that does not parse as its field's type;
//! - a field set by the path or carried by the body;
//! - a singular field (or a map key) given twice, or two members of one oneof.

use std::borrow::Cow;

use crate::error::{GatewayError, QueryNameError};
use crate::json::{JsonError, JsonMessage, TextField};
use crate::percent::{self, PercentError, Plus, Slash};

/// A parameter's name: the field path and the map key of `m[key]`.
struct Name<'a> {
    fields: Vec<&'a str>,
    map_key: Option<&'a str>,
}

fn parse_name(name: &str) -> Result<Name<'_>, QueryNameError> {
    if name.is_empty() {
        return Err(QueryNameError::Empty);
    }
    let (path, map_key) = match name.split_once('[') {
        Some((path, rest)) => {
            let key = rest.strip_suffix(']').ok_or(QueryNameError::Brackets)?;
            (path, Some(key))
        }
        None if name.contains(']') => return Err(QueryNameError::Brackets),
        None => (name, None),
    };
    let fields: Vec<&str> = path.split('.').collect();
    if fields.iter().any(|f| f.is_empty()) {
        return Err(QueryNameError::EmptySegment);
    }
    Ok(Name { fields, map_key })
}

/// One `name=value` pair of a query, both percent-decoded.
struct Param<'q> {
    key: Cow<'q, str>,
    value: Cow<'q, str>,
}

/// The pairs of `query` (empty pairs, `&&`, carry nothing and are skipped), decoded.
fn params(query: &str) -> impl Iterator<Item = Result<Param<'_>, GatewayError>> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key).map_err(|error| GatewayError::Query {
            param: raw_key.to_owned(),
            error: JsonError::new(format!(
                "the name is not valid percent-encoded UTF-8: {error}"
            )),
        })?;
        let value = decode(raw_value).map_err(|error| GatewayError::Query {
            param: key.to_string(),
            error: JsonError::new(format!(
                "the value is not valid percent-encoded UTF-8: {error}"
            )),
        })?;
        Ok(Param { key, value })
    })
}

/// Sets the field `param` names on `message`: `Ok(None)` when it names no field, else the
/// field's JSON path and whether it is repeated.
fn set<M: JsonMessage>(
    message: &mut M,
    param: &Param<'_>,
) -> Result<Option<(String, bool)>, GatewayError> {
    let name = parse_name(&param.key).map_err(|error| GatewayError::QueryName {
        param: param.key.to_string(),
        error,
    })?;
    let mut field = TextField::new(&name.fields, name.map_key, &param.value);
    let known = message
        .set_text(&mut field)
        .map_err(|error| GatewayError::Query {
            param: param.key.to_string(),
            error,
        })?;
    if !known {
        return Ok(None);
    }
    let repeated = field.repeated();
    Ok(Some((field.into_path(), repeated)))
}

/// Sets the fields named by `query` (`application/x-www-form-urlencoded`) on `message`.
///
/// `bound` lists the dotted field paths (both spellings) the path or the body sets: a parameter
/// setting one of them, or a field inside one, is an error. Parameters naming no field are
/// ignored unless `reject_unknown`.
pub fn apply<M: JsonMessage>(
    message: &mut M,
    query: &str,
    bound: &[&str],
    reject_unknown: bool,
) -> Result<(), GatewayError> {
    // The singular fields set so far, by JSON path: a query names a few, so a list searched from
    // end to end costs less than hashing each one.
    let mut set_once: Vec<String> = Vec::new();
    for param in params(query) {
        let param = param?;
        let Some((path, repeated)) = set(message, &param)? else {
            if reject_unknown {
                return Err(GatewayError::UnknownQuery(param.key.into_owned()));
            }
            continue;
        };
        if bound.iter().any(|b| is_under(&path, b)) {
            return Err(GatewayError::QueryBound {
                param: param.key.into_owned(),
                field: path,
            });
        }
        if !repeated {
            if set_once.contains(&path) {
                return Err(GatewayError::QueryRepeated {
                    param: param.key.into_owned(),
                    field: path,
                });
            }
            set_once.push(path);
        }
    }
    Ok(())
}

/// For a binding whose body is the whole message (`body: "*"`): every parameter naming a field
/// of `M` is an error, since the body carries them all; the others are ignored unless
/// `reject_unknown`.
pub fn refuse_fields<M: JsonMessage>(
    query: &str,
    reject_unknown: bool,
) -> Result<(), GatewayError> {
    for param in params(query) {
        let param = param?;
        match set(&mut M::default(), &param) {
            Ok(None) if !reject_unknown => {}
            Ok(None) => return Err(GatewayError::UnknownQuery(param.key.into_owned())),
            Ok(Some((path, _))) => {
                return Err(GatewayError::QueryBound {
                    param: param.key.into_owned(),
                    field: path,
                });
            }
            Err(error) => return Err(error),
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
    fn bound_matches_whole_segments_only() {
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

    #[test]
    fn names_split_into_fields_and_a_map_key() {
        let name = parse_name("a.b_c.d").expect("plain");
        assert_eq!((name.fields, name.map_key), (vec!["a", "b_c", "d"], None));
        let name = parse_name("a.labels[x.y[z]]").expect("map");
        assert_eq!(
            (name.fields, name.map_key),
            (vec!["a", "labels"], Some("x.y[z]"))
        );
        let name = parse_name("m[]").expect("empty key");
        assert_eq!(name.map_key, Some(""));
        for (bad, error) in [
            ("", QueryNameError::Empty),
            ("a..b", QueryNameError::EmptySegment),
            (".a", QueryNameError::EmptySegment),
            ("a.", QueryNameError::EmptySegment),
            ("[k]", QueryNameError::EmptySegment),
            ("a.[k]", QueryNameError::EmptySegment),
            ("m[k", QueryNameError::Brackets),
            ("m[k]x", QueryNameError::Brackets),
            ("m]", QueryNameError::Brackets),
        ] {
            assert_eq!(parse_name(bad).err(), Some(error), "{bad:?}");
        }
    }
}
