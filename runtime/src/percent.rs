//! Strict percent-decoding, shared by path segments and query components.
//!
//! Every `%` must start an escape of two hexadecimal digits, and the decoded bytes must be UTF-8
//! (string fields need text, and a `bytes` field's text is base64). Malformed input is an error,
//! never passed through as it came.

use std::borrow::Cow;

/// What a `+` stands for in the text being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plus {
    /// `application/x-www-form-urlencoded` (a query): `+` is a space.
    Space,
    /// A path: `+` is itself.
    Literal,
}

/// What `%2F` becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slash {
    /// Decoded to `/` like any escape.
    Decode,
    /// Left as it was written (`%2F` or `%2f`): the value of a multi-segment path variable,
    /// where http.proto keeps encoded slashes apart from the separators.
    Keep,
}

/// Why percent-encoded text cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PercentError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("`%` at byte {offset} is not followed by two hexadecimal digits")]
    BadEscape {
        /// The `%`'s byte offset in the encoded text.
        offset: usize,
    },
    /// The decoded bytes are not UTF-8.
    #[error("the decoded bytes are not valid UTF-8 (at byte {offset} of the decoded value)")]
    NotUtf8 {
        /// The first invalid byte's offset in the decoded bytes.
        offset: usize,
    },
}

/// Decodes `raw`; text with nothing to decode is borrowed.
pub(crate) fn decode(raw: &str, plus: Plus, slash: Slash) -> Result<Cow<'_, str>, PercentError> {
    let has_plus = plus == Plus::Space && raw.contains('+');
    if !has_plus && !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escape = bytes
                    .get(i + 1..i + 3)
                    .ok_or(PercentError::BadEscape { offset: i })?;
                let (Some(high), Some(low)) = (hex(escape[0]), hex(escape[1])) else {
                    return Err(PercentError::BadEscape { offset: i });
                };
                let byte = high << 4 | low;
                if byte == b'/' && slash == Slash::Keep {
                    out.extend_from_slice(&bytes[i..i + 3]);
                } else {
                    out.push(byte);
                }
                i += 3;
            }
            b'+' if plus == Plus::Space => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|error| PercentError::NotUtf8 {
            offset: error.utf8_error().valid_up_to(),
        })
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

    fn path(raw: &str) -> Result<Cow<'_, str>, PercentError> {
        decode(raw, Plus::Literal, Slash::Decode)
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(path("abc+d"), Ok(Cow::Borrowed("abc+d"))));
        assert!(matches!(
            decode("abc", Plus::Space, Slash::Decode),
            Ok(Cow::Borrowed("abc"))
        ));
    }

    #[test]
    fn escapes_of_either_case_decode() {
        assert_eq!(path("a%2Fb%20c%e2%82%AC").as_deref(), Ok("a/b c€"));
        assert_eq!(path("%41%4a%4B").as_deref(), Ok("AJK"));
    }

    #[test]
    fn plus_is_a_space_in_a_query_only() {
        assert_eq!(
            decode("a+b%2B", Plus::Space, Slash::Decode).as_deref(),
            Ok("a b+")
        );
        assert_eq!(path("a+b%2B").as_deref(), Ok("a+b+"));
    }

    #[test]
    fn kept_slashes_stay_as_written() {
        assert_eq!(
            decode("a%2Fb%2f%20", Plus::Literal, Slash::Keep).as_deref(),
            Ok("a%2Fb%2f ")
        );
    }

    #[test]
    fn malformed_escapes_are_errors_with_their_offset() {
        for (raw, offset) in [
            ("%", 0),
            ("ab%", 2),
            ("ab%4", 2),
            ("%zz", 0),
            ("%4g", 0),
            ("ok%20%G1", 5),
            ("%%41", 0),
            ("%+1", 0),
        ] {
            assert_eq!(path(raw), Err(PercentError::BadEscape { offset }), "{raw}");
            assert_eq!(
                decode(raw, Plus::Space, Slash::Keep),
                Err(PercentError::BadEscape { offset }),
                "{raw}"
            );
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_errors() {
        assert_eq!(path("%FF"), Err(PercentError::NotUtf8 { offset: 0 }));
        assert_eq!(path("ab%C3"), Err(PercentError::NotUtf8 { offset: 2 }));
        assert_eq!(path("%C3%28"), Err(PercentError::NotUtf8 { offset: 0 }));
        assert_eq!(
            PercentError::BadEscape { offset: 3 }.to_string(),
            "`%` at byte 3 is not followed by two hexadecimal digits"
        );
    }

    proptest::proptest! {
        /// Any text, percent-encoded, decodes back to itself, in a path and in a query.
        #[test]
        fn encoded_text_decodes_to_itself(text in "\\PC*") {
            let encoded = utf8_percent_encode(&text, NON_ALPHANUMERIC).to_string();
            let in_path = path(&encoded);
            proptest::prop_assert_eq!(in_path.as_deref(), Ok(text.as_str()));
            let in_query = decode(&encoded, Plus::Space, Slash::Decode);
            proptest::prop_assert_eq!(in_query.as_deref(), Ok(text.as_str()));
        }

        /// Decoding never panics, and succeeds exactly when every `%` starts a hex escape and
        /// the result is UTF-8; what it returns is what a reference decoder returns.
        #[test]
        fn arbitrary_input_is_decoded_or_refused(raw in "[a-z%+/0-9A-Fg]{0,12}") {
            let bytes = raw.as_bytes();
            let escapes_ok = bytes.iter().enumerate().filter(|(_, b)| **b == b'%').all(|(i, _)| {
                bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
            });
            let reference = percent_encoding::percent_decode_str(&raw).decode_utf8();
            match path(&raw) {
                Ok(decoded) => {
                    proptest::prop_assert!(escapes_ok);
                    proptest::prop_assert_eq!(Ok(decoded), reference);
                }
                Err(PercentError::BadEscape { offset }) => {
                    proptest::prop_assert!(!escapes_ok);
                    proptest::prop_assert_eq!(bytes[offset], b'%');
                }
                Err(PercentError::NotUtf8 { .. }) => {
                    proptest::prop_assert!(escapes_ok);
                    proptest::prop_assert!(reference.is_err());
                }
            }
        }

        /// Keeping slashes changes exactly the encoded slashes.
        #[test]
        fn keeping_slashes_only_differs_on_encoded_slashes(parts in proptest::collection::vec("[a-z ]{0,4}", 1..4)) {
            let encoded: Vec<String> = parts
                .iter()
                .map(|p| utf8_percent_encode(p, NON_ALPHANUMERIC).to_string())
                .collect();
            let joined = encoded.join("%2F");
            let kept = decode(&joined, Plus::Literal, Slash::Keep).expect("valid");
            proptest::prop_assert_eq!(kept.as_ref(), parts.join("%2F"));
            let decoded = path(&joined).expect("valid");
            proptest::prop_assert_eq!(decoded.as_ref(), parts.join("/"));
        }
    }
}
