//! Build errors: typed, and pointing at the proto file and line that caused them.

use std::fmt;
use std::path::PathBuf;

use crate::template::TemplateError;

/// A place in a `.proto` file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The file name as imported (relative to its include root).
    pub file: String,
    /// 1-based line, or 0 when the compiler recorded no source position.
    pub line: u32,
    /// 1-based column, or 0 when unknown.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.file),
            (line, 0) => write!(f, "{}:{line}", self.file),
            (line, column) => write!(f, "{}:{line}:{column}", self.file),
        }
    }
}

/// What is wrong with one `google.api.http` rule (or with a field the generator cannot map).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The path template does not follow the grammar of google/api/http.proto.
    #[error("malformed path template `{template}` at {error}")]
    Template {
        /// The template as written.
        template: String,
        /// Where in the template, and what is wrong.
        #[source]
        error: TemplateError,
    },
    /// A template variable names a field that does not exist.
    #[error("path variable `{{{variable}}}` in `{rpc}`: `{segment}` is not a field of `{message}`")]
    UnknownPathField {
        /// The RPC's full name.
        rpc: String,
        /// The dotted field path of the variable.
        variable: String,
        /// The path segment that did not resolve.
        segment: String,
        /// The message searched.
        message: String,
    },
    /// A template variable names a field that cannot be written as a path segment.
    #[error(
        "path variable `{{{variable}}}` in `{rpc}`: field `{field}` is {reason}; a path variable must name a singular scalar, enum or well-known scalar field"
    )]
    PathFieldNotScalar {
        /// The RPC's full name.
        rpc: String,
        /// The dotted field path of the variable.
        variable: String,
        /// The offending field's full name.
        field: String,
        /// "repeated", "a map" or "a message".
        reason: &'static str,
    },
    /// `body` names a field that does not exist in the request message.
    #[error("body `{field}` in `{rpc}` is not a field of `{message}`")]
    UnknownBodyField {
        /// The RPC's full name.
        rpc: String,
        /// The field named by `body`.
        field: String,
        /// The request message.
        message: String,
    },
    /// `response_body` names a field that does not exist in the response message.
    #[error("response_body `{field}` in `{rpc}` is not a field of `{message}`")]
    UnknownResponseBodyField {
        /// The RPC's full name.
        rpc: String,
        /// The field named by `response_body`.
        field: String,
        /// The response message.
        message: String,
    },
    /// A GET binding declares a body.
    #[error("`{rpc}` binds GET {template} with body `{body}`: a GET request has no body")]
    BodyOnGet {
        /// The RPC's full name.
        rpc: String,
        /// The path template.
        template: String,
        /// The declared body.
        body: String,
    },
    /// A `(protogate.api.policy)` that cannot apply.
    #[error("`{rpc}`: policy: {message}")]
    Policy {
        /// The RPC's full name.
        rpc: String,
        /// What is wrong.
        message: String,
    },
    /// A rule with no pattern, or a custom pattern without a kind.
    #[error("`{rpc}`: {message}")]
    MissingPattern {
        /// The RPC's full name.
        rpc: String,
        /// What is missing.
        message: String,
    },
    /// A client- or bidi-streaming RPC bound without a body to carry its request stream.
    #[error(
        "`{rpc}` streams its requests, so its binding `{template}` needs a body (`*` or a field) to carry them"
    )]
    StreamWithoutBody {
        /// The RPC's full name.
        rpc: String,
        /// The path template.
        template: String,
    },
    /// Two bindings would match exactly the same requests.
    #[error("{0}")]
    Conflict(Box<BindingConflict>),
    /// An RPC whose request or response is a well-known type other than Empty.
    #[error(
        "`{rpc}` uses `{type_name}` as its {role}; protogate supports google.protobuf.Empty and messages of your own there"
    )]
    UnsupportedRpcType {
        /// The RPC's full name.
        rpc: String,
        /// "request" or "response".
        role: &'static str,
        /// The type.
        type_name: String,
    },
    /// A message field whose type the JSON mappers cannot represent.
    #[error("field `{field}` has type `{type_name}`, which protogate cannot map to JSON")]
    UnsupportedFieldType {
        /// The field's full name.
        field: String,
        /// The unsupported type.
        type_name: String,
    },
}

/// Two bindings with the same HTTP method and the same path shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}{method} {template} of `{rpc}` matches the same requests as {other_method} {other_template} of `{other_rpc}` (at {other_location})",
    if *.unbound { "the unbound route " } else { "" }
)]
pub struct BindingConflict {
    /// The RPC whose binding was found second (an unbound binding is always second to an
    /// annotated one).
    pub rpc: String,
    /// Whether its binding is the unbound route of an RPC without a rule
    /// (see [`crate::Builder::unbound_methods`]).
    pub unbound: bool,
    /// Its HTTP method.
    pub method: String,
    /// Its template.
    pub template: String,
    /// The RPC bound first.
    pub other_rpc: String,
    /// The HTTP method of the first binding.
    pub other_method: String,
    /// The template of the first binding.
    pub other_template: String,
    /// Where the first binding is declared.
    pub other_location: Location,
}

/// A [`RuleError`] with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedError {
    /// Where in which proto file.
    pub location: Location,
    /// What is wrong.
    pub error: RuleError,
}

impl std::error::Error for LocatedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl fmt::Display for LocatedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.error)
    }
}

/// Everything that can stop a protogate build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The protos did not compile (syntax, imports, types); the message names file and line.
    #[error("{}", describe_compile_error(.0))]
    Compile(#[from] Box<protox::Error>),
    /// The compiled descriptors could not be loaded.
    #[error("invalid descriptor set: {0}")]
    Descriptor(#[from] Box<prost_reflect::DescriptorError>),
    /// One or more `google.api.http` rules are invalid.
    #[error("{}", display_rules(.0))]
    Rules(Vec<LocatedError>),
    /// prost-build or tonic-prost-build failed.
    #[error("generating messages and clients failed: {0}")]
    Prost(#[source] std::io::Error),
    /// Writing a generated file failed.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The generated Rust did not parse (a bug in protogate-build).
    #[error("generated code for {file} does not parse: {message}")]
    Syntax {
        /// The generated file.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// `OUT_DIR` is not set and no output directory was configured.
    #[error("OUT_DIR is not set: call protogate-build from a build script or set `out_dir`")]
    NoOutDir,
}

/// `file:line:column: message` for a protox error, from its diagnostic labels.
fn describe_compile_error(error: &protox::Error) -> String {
    use miette::Diagnostic;
    let position = error
        .labels()
        .and_then(|mut labels| labels.next())
        .and_then(|label| {
            let source = error.source_code()?;
            let contents = source.read_span(label.inner(), 0, 0).ok()?;
            Some((contents.line() + 1, contents.column() + 1))
        });
    match (error.file(), position) {
        (Some(file), Some((line, column))) => format!("{file}:{line}:{column}: {error}"),
        (Some(file), None) if !error.to_string().contains(file) => format!("{file}: {error}"),
        _ => error.to_string(),
    }
}

fn display_rules(errors: &[LocatedError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

impl From<protox::Error> for Error {
    fn from(error: protox::Error) -> Self {
        Error::Compile(Box::new(error))
    }
}

impl From<prost_reflect::DescriptorError> for Error {
    fn from(error: prost_reflect::DescriptorError) -> Self {
        Error::Descriptor(Box::new(error))
    }
}
