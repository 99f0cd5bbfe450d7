//! The REST surface of a build: what a REST client of it can see, written as deterministic JSON
//! that a team commits (`rest-surface.json`) and compares the next build against.
//!
//! A wire-compatible proto change can still break every REST client: a renamed field changes
//! its JSON name, a new `body` moves fields out of the query, a field becomes `REQUIRED`, a server
//! stream becomes unary. The surface records, for every binding, what the HTTP mapping makes of
//! the protos: the RPC and its streaming shape, the HTTP method and template, `body` and
//! `response_body`, the path variables and query parameters (JSON names and types), and the
//! values of the request body and of the response; and, for every message and enum they reach,
//! its fields (JSON names, types, `google.api.field_behavior`, oneofs) or values. Each element
//! carries its place in the protos (`file:line:column`), so a report can point at it.
//!
//! [`compare`] classifies every difference between two surfaces as breaking or compatible, as a
//! client sees it: requests and responses apart (a field newly `REQUIRED` breaks a request, not a
//! response; a removed enum value breaks whoever sends it, not whoever receives).

mod compare;
mod describe;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use compare::{Acceptance, Change, ChangeKind, Occurrence, Report, Severity, compare};
pub(crate) use describe::describe;

/// The version of the surface format this build writes and reads.
pub const SURFACE_FORMAT: u32 = 1;

/// The REST surface of a build. Serialized with [`Surface::to_json`]; the same protos always give
/// the same text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Surface {
    /// The format version ([`SURFACE_FORMAT`]).
    pub protogate_rest_surface: u32,
    /// Every binding, in file, service, method and binding order.
    pub bindings: Vec<BindingSurface>,
    /// Every message a binding reaches (requests and responses, however deep), by full name;
    /// well-known types and `google.api.HttpBody`, which have JSON forms of their own, are not
    /// listed.
    pub messages: BTreeMap<String, MessageSurface>,
    /// Every enum those messages use, by full name.
    pub enums: BTreeMap<String, EnumSurface>,
}

/// One HTTP binding of an RPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingSurface {
    /// The RPC's full name (`acme.library.v1.LibraryService.GetBook`).
    pub rpc: String,
    /// Where the RPC is declared.
    pub rpc_location: String,
    /// Where the rule (or additional binding) is written.
    pub location: String,
    /// The RPC's streaming shape: `unary`, `server_streaming`, `client_streaming` or
    /// `bidi_streaming`.
    pub shape: String,
    /// The HTTP method (`GET`, or a custom kind).
    pub method: String,
    /// The path template as written.
    pub template: String,
    /// The requests it matches: the method and the template with variables flattened
    /// (`GET /v1/shelves/*/books/*`). Two bindings with the same route serve the same requests.
    pub route: String,
    /// `body`: absent for none, `*` for the whole request, or a field name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `response_body`: absent for the whole response, or a field name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// The template's variables, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<PathParameter>,
    /// The fields the query may set, by their JSON names (`filter`, `page.size`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<QueryParameter>,
    /// What the request body holds: absent without a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Payload>,
    /// What the response body holds (`response_body` applied): one message, or one per line of
    /// a stream.
    pub response: Payload,
}

/// A template variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathParameter {
    /// The dotted proto field path it sets (`book.name`).
    pub field: String,
    /// The full name of the field set (the last of the path).
    pub element: String,
    /// Where that field is declared.
    pub location: String,
    /// Its value.
    #[serde(flatten)]
    pub value: ValueType,
}

/// A query parameter: a field (or a field of a field) the query may set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryParameter {
    /// Its name: JSON names joined by `.` (`pageSize`, `filter.genre`).
    pub name: String,
    /// The dotted proto field path it sets (`page_size`).
    pub field: String,
    /// The full name of the field set.
    pub element: String,
    /// Where that field is declared.
    pub location: String,
    /// Whether the field is `REQUIRED` (`google.api.field_behavior`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Its value.
    #[serde(flatten)]
    pub value: ValueType,
}

/// The value a request or response body holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Its type.
    #[serde(flatten)]
    pub value: ValueType,
    /// Fields of the message left out of it because the path sets them (dotted proto paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omits: Vec<String>,
}

/// The type of a value, in proto terms and in JSON terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueType {
    /// The proto type: a scalar type (`int32`, `sint64`, `string`…), `message` or `enum`.
    #[serde(rename = "type")]
    pub proto_type: String,
    /// The message's full name, when `type` is `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The enum's full name, when `type` is `enum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#enum: Option<String>,
    /// Whether it is a list of such values.
    #[serde(default, skip_serializing_if = "is_false")]
    pub repeated: bool,
    /// For a map, the proto type of its keys (the type above is then the values').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_key: Option<String>,
    /// What a client sees in proto3 JSON: `integer`, `string (int64)`, `array of object`…
    pub json: String,
}

/// A message a binding reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSurface {
    /// Where it is declared.
    pub location: String,
    /// Its fields, in declaration order.
    pub fields: Vec<FieldSurface>,
}

/// A field of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSurface {
    /// The proto name.
    pub name: String,
    /// The JSON name (what a client reads and writes).
    pub json_name: String,
    /// The field number.
    pub number: u32,
    /// The (real, not synthetic) oneof it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oneof: Option<String>,
    /// Its `google.api.field_behavior` values, by name (`REQUIRED`, `OUTPUT_ONLY`…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behavior: Vec<String>,
    /// Where it is declared.
    pub location: String,
    /// Its value.
    #[serde(flatten)]
    pub value: ValueType,
}

/// An enum a message uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumSurface {
    /// Where it is declared.
    pub location: String,
    /// Its values, in declaration order.
    pub values: Vec<EnumValueSurface>,
}

/// One value of an enum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumValueSurface {
    /// Its name: what proto3 JSON writes.
    pub name: String,
    /// Its number.
    pub number: i32,
    /// Where it is declared.
    pub location: String,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Why a surface could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SurfaceError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a surface.
    #[error("{origin}: not a protogate REST surface: {source}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// What serde_json found.
        #[source]
        source: serde_json::Error,
    },
    /// The surface was written by a protogate-build with another format.
    #[error(
        "{origin}: REST surface format {found}; this protogate-build reads format {SURFACE_FORMAT} (write the snapshot again with `protogate-build surface`)"
    )]
    Format {
        /// Where the text came from.
        origin: String,
        /// The format the file says it has.
        found: u32,
    },
}

impl Surface {
    /// The surface as pretty-printed JSON, ending with a newline.
    pub fn to_json(&self) -> String {
        // A tree of strings, numbers and maps with string keys always serializes.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a surface from its JSON text; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Surface, SurfaceError> {
        #[derive(Deserialize)]
        struct Version {
            protogate_rest_surface: u32,
        }
        let parse = |source| SurfaceError::Parse {
            origin: origin.to_owned(),
            source,
        };
        let version: Version = serde_json::from_str(text).map_err(parse)?;
        if version.protogate_rest_surface != SURFACE_FORMAT {
            return Err(SurfaceError::Format {
                origin: origin.to_owned(),
                found: version.protogate_rest_surface,
            });
        }
        serde_json::from_str(text).map_err(parse)
    }

    /// Reads a surface from a file.
    pub fn read(path: impl AsRef<Path>) -> Result<Surface, SurfaceError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SurfaceError::Read {
            path: path.to_owned(),
            source,
        })?;
        Surface::from_json(&text, &path.display().to_string())
    }

    /// Writes the surface to a file.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), SurfaceError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json()).map_err(|source| SurfaceError::Write {
            path: path.to_owned(),
            source,
        })
    }
}
