//! The query parser of the runtime (`runtime/src/query.rs`).

use generated_tests::pb::protogate::tests::v1::{EchoRequest, Everything};
use protogate::JsonMessage;
use protogate::fuzzing::{apply_query, json_options, refuse_query_fields};

use crate::roundtrip::check_message;

/// What a path or a body sets on an `EchoRequest` in the test protos' bindings: a query
/// parameter may not set these.
const ECHO_BOUND: &[&str] = &["name", "nested", "nested.name", "tags"];

/// Arbitrary text as a request's query: the first byte picks the message (`Everything`, whose
/// fields cover every type and shape, or `EchoRequest` with some fields bound elsewhere), whether
/// unknown parameters are refused, and the JSON options of the round trip. Parsing never
/// panics; a message the query sets survives JSON and protobuf round trips; a parameter that
/// sets a bound field is always refused; and for a body that carries the whole message, a
/// query that sets nothing is the only one let through.
pub fn query(data: &[u8]) {
    let [pick, rest @ ..] = data else {
        return;
    };
    let query = String::from_utf8_lossy(rest);
    let reject_unknown = pick & 1 != 0;
    let options = json_options(pick >> 4);
    match (pick >> 1) % 3 {
        0 => {
            let set = apply::<Everything>(&query, &[], reject_unknown, options);
            if set.is_some() {
                // A body carrying the whole message takes no parameter naming one of its fields.
                if refuse_query_fields::<Everything>(&query, reject_unknown).is_ok() {
                    assert_eq!(set, Some(Everything::default()), "query `{query}`");
                }
            }
        }
        1 => {
            if let Some(echo) = apply::<EchoRequest>(&query, ECHO_BOUND, reject_unknown, options) {
                assert!(
                    echo.name.is_empty() && echo.nested.is_none() && echo.tags.is_empty(),
                    "query `{query}` set a bound field: {echo:?}"
                );
            }
        }
        _ => {
            let _ = refuse_query_fields::<EchoRequest>(&query, reject_unknown);
        }
    }
}

/// The message `query` sets, checked for round trips; `None` when it is refused.
fn apply<M: JsonMessage + std::fmt::Debug>(
    query: &str,
    bound: &[&str],
    reject_unknown: bool,
    options: protogate::JsonOptions,
) -> Option<M> {
    let mut message = M::default();
    apply_query(&mut message, query, bound, reject_unknown).ok()?;
    check_message(&message, options);
    Some(message)
}
