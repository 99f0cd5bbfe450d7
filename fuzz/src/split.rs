//! The request stream splitter (`runtime/src/stream/split.rs`): NDJSON, concatenated values, or
//! the elements of one top-level array.

use protogate::fuzzing::split_stream;
use serde_json::Value;

/// Arbitrary bytes as a streamed request body: the first byte picks array mode, a small or a
/// large limit, and the size of the pieces the body arrives in. Checked:
/// - the values and the outcome do not depend on where the body was cut;
/// - every value is a piece of the body, in order, never longer than the limit, never blank;
/// - a body that serde_json reads as a stream of values (or as one array, in array mode) gives
///   exactly those values;
/// - those values written as NDJSON, and as one array, split back into the same values.
pub fn split(data: &[u8]) {
    let [pick, body @ ..] = data else {
        return;
    };
    let arrays = pick & 1 != 0;
    let limit = if pick & 2 != 0 { 8 } else { 1 << 20 };
    let piece = usize::from(pick >> 2) + 1;

    let (values, outcome) = split_stream(&[body], limit, arrays);
    let chunks: Vec<&[u8]> = body.chunks(piece).collect();
    let (in_pieces, outcome_in_pieces) = split_stream(&chunks, limit, arrays);
    assert_eq!(
        (&in_pieces, &outcome_in_pieces),
        (&values, &outcome),
        "{body:?} in pieces of {piece}"
    );

    let mut from = 0;
    for value in &values {
        assert!(
            value.len() <= limit,
            "a value of {} bytes passed the limit of {limit}: {value:?}",
            value.len()
        );
        assert!(
            !value.is_empty() && !value.iter().all(u8::is_ascii_whitespace),
            "a blank value in {body:?}"
        );
        let at = find(&body[from..], value)
            .unwrap_or_else(|| panic!("{value:?} is not a piece of {body:?} after byte {from}"));
        from += at + value.len();
    }

    if limit < body.len() {
        return;
    }
    if let Some(expected) = reference(body, arrays) {
        assert_eq!(
            outcome,
            Ok(()),
            "{body:?} holds the values {expected:?} (arrays: {arrays})"
        );
        let got: Vec<Option<Value>> = values
            .iter()
            .map(|v| serde_json::from_slice(v).ok())
            .collect();
        let expected_some: Vec<Option<Value>> = expected.iter().cloned().map(Some).collect();
        assert_eq!(got, expected_some, "{body:?} (arrays: {arrays})");

        let ndjson: Vec<String> = expected.iter().map(Value::to_string).collect();
        // Written again, a value may be longer than it was (`-2.3e30` is written in full):
        // these splits take the largest limit.
        let (values, outcome) = split_stream(&[ndjson.join("\n").as_bytes()], 1 << 20, false);
        assert_eq!(outcome, Ok(()), "{ndjson:?}");
        let got: Vec<&[u8]> = values.iter().map(|v| v.as_ref()).collect();
        let want: Vec<&[u8]> = ndjson.iter().map(String::as_bytes).collect();
        assert_eq!(got, want);

        let array = format!("[{}]", ndjson.join(","));
        let (values, outcome) = split_stream(&[array.as_bytes()], 1 << 20, true);
        assert_eq!(outcome, Ok(()), "{array}");
        let got: Vec<&[u8]> = values.iter().map(|v| v.as_ref()).collect();
        assert_eq!(got, want);
    }
}

/// The values serde_json reads in `body`: the elements of its one top-level array in array
/// mode (when it starts with `[`), else the stream of values; `None` when it reads no such
/// thing.
fn reference(body: &[u8], arrays: bool) -> Option<Vec<Value>> {
    let start = body.iter().position(|b| !is_json_space(*b));
    if arrays && start.is_some_and(|at| body[at] == b'[') {
        return match serde_json::from_slice(body).ok()? {
            Value::Array(items) => Some(items),
            _ => None,
        };
    }
    serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

/// JSON's own whitespace.
fn is_json_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// The offset of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len().max(1))
        .position(|window| window == needle)
}
