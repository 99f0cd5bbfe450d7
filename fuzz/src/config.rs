//! The stock gateway's config file parser (`src/config/load.rs`): TOML, YAML and JSON, with
//! `PROTOGATE_…` environment overrides.

use protogate_gateway::config::{Format, load_text};

/// Overrides a fuzz input may turn on, as the environment would give them.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("PROTOGATE_SERVER__LISTEN", "127.0.0.1:9999"),
    ("PROTOGATE_GATEWAY__MAX_BODY_BYTES", "1024"),
    ("PROTOGATE_DEFAULTS__TIMEOUT", "[1, 2]"),
    (
        "PROTOGATE_UPSTREAMS__A__ENDPOINTS",
        "[\"http://127.0.0.1:1\"]",
    ),
    ("PROTOGATE_NO__SUCH__KEY", "true"),
];

/// Arbitrary text as a config file: the first byte picks the form and which environment
/// overrides apply, the rest is the file. Loading gives a config or an error naming where,
/// never a panic; and a config that loads, written as JSON, loads back to a config written the
/// same way. (Not always to the same config: secrets are written hidden, so a Redis URL with a
/// password, `redis://user:pass@host`, comes back with `***` for it.)
pub fn config(data: &[u8]) {
    let [pick, text @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let format = match pick % 3 {
        0 => Format::Toml,
        1 => Format::Yaml,
        _ => Format::Json,
    };
    let environment = ENVIRONMENT
        .iter()
        .enumerate()
        .filter(|(index, _)| (pick >> 2) & (1 << index) != 0)
        .map(|(_, (name, value))| ((*name).to_owned(), (*value).to_owned()));
    let Ok(config) = load_text(text, format, "fuzz", environment) else {
        return;
    };
    let json = match serde_json::to_string(&config) {
        Ok(json) => json,
        Err(error) => panic!("{config:?} does not serialize: {error}"),
    };
    match load_text(&json, Format::Json, "written", Vec::new()) {
        Ok(again) => match serde_json::to_string(&again) {
            Ok(rewritten) => assert_eq!(rewritten, json, "{text:?} read back as {again:?}"),
            Err(error) => panic!("{again:?} does not serialize: {error}"),
        },
        Err(error) => panic!("{text:?} loads, but written as {json} it does not: {error}"),
    }
}
