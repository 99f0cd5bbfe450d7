//! Reading a config file: its form by extension, every mistake with its key, line and column,
//! and `PROTOGATE_…` environment variables over its keys.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::Config;

/// The forms a config file can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.toml`, and any other extension.
    Toml,
    /// `.yaml` or `.yml`.
    Yaml,
    /// `.json`.
    Json,
}

impl Format {
    /// The form of the file at `path`, by its extension.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            Some("json") => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// A config that cannot be used: where, which key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or the environment variable) the mistake is in.
    pub origin: String,
    /// The key path, `upstreams.orders.max_in_flight`; empty for the whole document.
    pub key: String,
    /// 1-based line and column, where known.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// A mistake at `key` in the file `origin`, placed in `text` where it can be found.
    pub fn at(origin: &str, text: &str, format: Format, key: &str, message: String) -> Self {
        ConfigError {
            origin: origin.to_owned(),
            key: key.to_owned(),
            position: locate(text, format, key),
            message,
        }
    }
}

/// The environment variables that override keys: `PROTOGATE_SECTION__KEY[__KEY…]`. Names without
/// a `__` (`PROTOGATE_PROTO_DIR`, …) are the build's, not the config's.
const ENV_PREFIX: &str = "PROTOGATE_";

/// Reads the config file at `path`, with the environment's `PROTOGATE_…` overrides from `env`.
pub fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Config, String), ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        key: String::new(),
        position: None,
        message: format!("cannot read it: {e}"),
    })?;
    let config = load_text(&text, Format::of(path), &origin, env)?;
    Ok((config, text))
}

/// Reads a config from `text` in `format`; `origin` names it in errors.
pub fn load_text(
    text: &str,
    format: Format,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let config: Config = parse(text, format, origin)?;
    let overrides: Vec<(String, Vec<String>, String)> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            rest.contains("__").then(|| {
                let path = rest.split("__").map(str::to_ascii_lowercase).collect();
                (name.clone(), path, value)
            })
        })
        .collect();
    if overrides.is_empty() {
        return Ok(config);
    }
    // The file as a plain tree, the overrides set in it, and the tree read again.
    let mut tree = serde_json::to_value(&config).map_err(|e| ConfigError {
        origin: origin.to_owned(),
        key: String::new(),
        position: None,
        message: e.to_string(),
    })?;
    let mut names = Vec::new();
    for (name, path, value) in overrides {
        set(&mut tree, &path, env_value(&value));
        names.push(name);
    }
    serde_path_to_error::deserialize(tree).map_err(|e| ConfigError {
        origin: format!("the environment ({})", names.join(", ")),
        key: key_of(e.path()),
        position: None,
        message: e.into_inner().to_string(),
    })
}

/// A variable's value as the key would take it: a number, a boolean or a list when it reads as
/// one (in JSON), text otherwise.
fn env_value(value: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(
            parsed @ (serde_json::Value::Number(_)
            | serde_json::Value::Bool(_)
            | serde_json::Value::Array(_)
            | serde_json::Value::Object(_)),
        ) => parsed,
        _ => serde_json::Value::String(value.to_owned()),
    }
}

fn set(tree: &mut serde_json::Value, path: &[String], value: serde_json::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for key in parents {
        if !node.is_object() {
            *node = serde_json::Value::Object(serde_json::Map::new());
        }
        node = node
            .as_object_mut()
            .map(|object| object.entry(key.clone()).or_insert(serde_json::Value::Null))
            .expect("an object");
        if node.is_null() {
            *node = serde_json::Value::Object(serde_json::Map::new());
        }
    }
    if let Some(object) = node.as_object_mut() {
        object.insert(last.clone(), value);
    }
}

/// The typed config in `text`, or the first mistake with its key and place.
fn parse<T: DeserializeOwned>(text: &str, format: Format, origin: &str) -> Result<T, ConfigError> {
    let error = |key: String, position: Option<(usize, usize)>, message: String| ConfigError {
        origin: origin.to_owned(),
        position: position.or_else(|| locate(text, format, &key)),
        key,
        message,
    };
    match format {
        Format::Toml => {
            let deserializer = toml::Deserializer::parse(text).map_err(|e| {
                error(
                    String::new(),
                    e.span().map(|s| position(text, s.start)),
                    e.message().to_owned(),
                )
            })?;
            serde_path_to_error::deserialize(deserializer).map_err(|e| {
                let key = key_of(e.path());
                let inner = e.into_inner();
                let at = inner.span().map(|s| position(text, s.start));
                error(key, at, inner.message().to_owned())
            })
        }
        Format::Yaml => {
            let deserializer = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(deserializer).map_err(|e| {
                let key = key_of(e.path());
                let inner = e.into_inner();
                let at = inner.location().map(|l| (l.line(), l.column()));
                error(key, at, without_position(&inner.to_string()))
            })
        }
        Format::Json => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
                let key = key_of(e.path());
                let inner = e.into_inner();
                let at = (inner.line() > 0).then(|| (inner.line(), inner.column()));
                error(key, at, without_position(&inner.to_string()))
            })
        }
    }
}

/// A parser's message without the position it ends with (` at line L column C`), which the
/// error gives apart.
fn without_position(message: &str) -> String {
    message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned()
}

/// `upstreams.orders.tls`, from serde_path_to_error's path (`.` for the root).
fn key_of(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." { String::new() } else { text }
}

/// The 1-based line and column of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// Where the value of `key` is written in `text`: the line of its last part, found below the
/// lines of its parents. Good enough to point at a mistake found after parsing (an unknown
/// service, a bad address) in any of the three forms.
fn locate(text: &str, format: Format, key: &str) -> Option<(usize, usize)> {
    if key.is_empty() {
        return None;
    }
    let parts: Vec<&str> = key.split('.').collect();
    let mut from = 0;
    let mut found = None;
    for part in &parts {
        // `routes[2]`: the third element of the array `routes`.
        let (part, index) = match part.strip_suffix(']').and_then(|p| p.split_once('[')) {
            Some((name, index)) => (name, index.parse::<usize>().ok()),
            None => (*part, None),
        };
        let quoted_json = format!("\"{part}\"");
        let written = |line: &str| match format {
            Format::Json => line.find(&quoted_json),
            Format::Toml | Format::Yaml => find_key(line, part),
        };
        let (mut offset, mut column) = text
            .lines()
            .enumerate()
            .skip(from)
            .find_map(|(n, line)| written(line).map(|column| (n, column)))?;
        if let Some(index) = index {
            (offset, column) =
                element(text, format, offset, index, &written).unwrap_or((offset, column));
        }
        from = offset;
        found = Some((offset + 1, column + 1));
    }
    found
}

/// Where element `index` of the array whose key is on line `at` begins: in TOML the `[[name]]`
/// header of that number, in YAML the `- ` item of that number; JSON arrays are not counted.
fn element(
    text: &str,
    format: Format,
    at: usize,
    index: usize,
    written: &dyn Fn(&str) -> Option<usize>,
) -> Option<(usize, usize)> {
    let mut lines = text.lines().enumerate().skip(at);
    match format {
        Format::Toml => lines
            .filter(|(_, line)| line.trim_start().starts_with("[[") && written(line).is_some())
            .nth(index)
            .map(|(n, line)| (n, line.len() - line.trim_start().len())),
        Format::Yaml => {
            lines.next();
            let items = lines.filter_map(|(n, line)| {
                let item = line.trim_start();
                item.starts_with("- ").then(|| (n, line.len() - item.len()))
            });
            let mut items = items.peekable();
            let indent = items.peek()?.1;
            items.filter(|(_, column)| *column == indent).nth(index)
        }
        Format::Json => None,
    }
}

/// The column where `key` is written as a key (or a table name) on `line`.
fn find_key(line: &str, key: &str) -> Option<usize> {
    let mut start = 0;
    while let Some(at) = line[start..].find(key) {
        let at = start + at;
        let before = line[..at].chars().last();
        let after = line[at + key.len()..].chars().next();
        let bounded_before = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let bounded_after = after.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if bounded_before && bounded_after {
            return Some(at);
        }
        start = at + key.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(text: &str) -> Result<Config, ConfigError> {
        load_text(text, Format::Toml, "gw.toml", Vec::new())
    }

    #[test]
    fn an_unknown_key_is_an_error_with_its_path_line_and_column() {
        let error = toml("[server]\nlisten = \"127.0.0.1:80\"\n\n[upstreams.orders]\nendpoints = [\"http://a:1\"]\nmax_inflight = 3\n")
            .expect_err("unknown key");
        assert_eq!(error.position.map(|p| p.0), Some(6), "{error}");
        assert!(error.message.contains("max_inflight"), "{error}");
        assert!(error.to_string().starts_with("gw.toml:6:"), "{error}");
    }

    #[test]
    fn an_array_element_is_placed_at_its_own_entry() {
        let toml = "[[routes]]\nmatch = \"/a\"\n\n[[routes]]\nmatch = \"/b\"\n";
        assert_eq!(locate(toml, Format::Toml, "routes[1].match"), Some((5, 1)));
        let yaml = "routes:\n  - match: /a\n  - match: /b\n    more:\n      - x\n";
        assert_eq!(locate(yaml, Format::Yaml, "routes[1].match"), Some((3, 5)));
        assert_eq!(locate(yaml, Format::Yaml, "routes[0]"), Some((2, 3)));
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key() {
        let error =
            toml("[upstreams.orders]\nendpoints = [\"http://a:1\"]\nmax_in_flight = \"many\"\n")
                .expect_err("wrong type");
        assert_eq!(error.key, "upstreams.orders.max_in_flight", "{error}");
        assert_eq!(error.position.map(|p| p.0), Some(3), "{error}");
        let error = toml("[server]\nheader_read_timeout = \"5 days\"\n").expect_err("bad duration");
        assert_eq!(error.key, "server.header_read_timeout", "{error}");
        assert!(error.message.contains("unknown unit"), "{error}");
    }

    #[test]
    fn yaml_and_json_say_where_too() {
        let error = load_text(
            "server:\n  listen: 127.0.0.1:80\n  workerz: 2\n",
            Format::Yaml,
            "gw.yaml",
            Vec::new(),
        )
        .expect_err("unknown key");
        assert_eq!(error.position.map(|p| p.0), Some(3), "{error}");
        let error = load_text(
            "{\n  \"server\": {\n    \"workers\": \"two\"\n  }\n}\n",
            Format::Json,
            "gw.json",
            Vec::new(),
        )
        .expect_err("wrong type");
        assert_eq!(error.key, "server.workers", "{error}");
        assert_eq!(error.position.map(|p| p.0), Some(3), "{error}");
    }

    #[test]
    fn environment_variables_override_keys() {
        let env = [
            ("PROTOGATE_SERVER__WORKERS".to_owned(), "3".to_owned()),
            (
                "PROTOGATE_UPSTREAMS__ORDERS__MAX_IN_FLIGHT".to_owned(),
                "7".to_owned(),
            ),
            ("PROTOGATE_PROTO_DIR".to_owned(), "/not/a/key".to_owned()),
        ];
        let config = load_text(
            "[server]\nworkers = 1\n[upstreams.orders]\nendpoints = [\"http://a:1\"]\n",
            Format::Toml,
            "gw.toml",
            env,
        )
        .expect("valid");
        assert_eq!(config.server.workers.map(|w| w.get()), Some(3));
        assert_eq!(
            config.upstreams["orders"].max_in_flight.map(|n| n.get()),
            Some(7)
        );
        let error = load_text(
            "",
            Format::Toml,
            "gw.toml",
            [("PROTOGATE_SERVER__LISTEN".to_owned(), "nowhere".to_owned())],
        )
        .expect_err("bad address");
        assert_eq!(error.key, "server.listen");
        assert!(error.origin.contains("PROTOGATE_SERVER__LISTEN"), "{error}");
    }

    #[test]
    fn keys_are_located_in_every_form() {
        let text =
            "[upstreams.orders]\nendpoints = [\"x\"]\n\n[upstreams.billing]\nendpoints = [\"y\"]\n";
        assert_eq!(
            locate(text, Format::Toml, "upstreams.billing.endpoints"),
            Some((5, 1))
        );
        let json = "{\"upstreams\": {\n \"billing\": {\n  \"endpoints\": []}}}";
        assert_eq!(
            locate(json, Format::Json, "upstreams.billing.endpoints"),
            Some((3, 3))
        );
    }
}
