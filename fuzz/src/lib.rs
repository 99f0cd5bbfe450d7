//! The bodies of protogate's fuzz targets: one function of arbitrary bytes per target, which
//! returns quietly for any input and panics only when an invariant of the code under test
//! breaks. Two harnesses run them: `cargo test -p protogate-fuzz` over the committed seed
//! corpus (`fuzz/corpus/<target>`) and a bounded number of mutated inputs, and libFuzzer through
//! the thin wrappers of `fuzz/libfuzzer` (see `fuzz/run` and FUZZING.md).

mod config;
mod json;
mod jwt;
mod query;
mod roundtrip;
mod router;
mod split;
mod template;
mod websocket;

pub use config::config;
pub use json::{json, json_mutate, json_value};
pub use jwt::{jwks, jwt};
pub use query::query;
pub use router::router;
pub use split::split;
pub use template::template;
pub use websocket::websocket;

/// A fuzz target: any bytes in, a panic only for a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name (the name of its libFuzzer binary and of its corpus directory).
pub const TARGETS: &[(&str, Target)] = &[
    ("template", template),
    ("router", router),
    ("query", query),
    ("json", json),
    ("json_value", json_value),
    ("json_mutate", json_mutate),
    ("split", split),
    ("websocket", websocket),
    ("config", config),
    ("jwt", jwt),
    ("jwks", jwks),
];
