//! JSON errors that name the field path (`book.chapters[2].title`) or the byte offset.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathPart {
    Field(String),
    Index(usize),
    Key(String),
}

/// Why a JSON value could not be read or written, and where.
///
/// One pointer wide, so that the `Result`s of the hot read paths stay small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    inner: Box<Inner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    message: String,
    /// Innermost first; reversed when displayed.
    path: Vec<PathPart>,
    offset: Option<usize>,
}

impl JsonError {
    /// An error with a message and no location yet.
    pub fn new(message: impl Into<String>) -> Self {
        JsonError {
            inner: Box::new(Inner {
                message: message.into(),
                path: Vec::new(),
                offset: None,
            }),
        }
    }

    /// A syntax error at a byte offset of the input.
    pub fn syntax(offset: usize, message: impl Into<String>) -> Self {
        let mut error = JsonError::new(message);
        error.inner.offset = Some(offset);
        error
    }

    /// Places the error inside field `field` (prepends it to the path).
    pub fn at(mut self, field: &str) -> Self {
        self.inner.path.push(PathPart::Field(field.to_owned()));
        self
    }

    /// Places the error at element `index` of a list (prepends `[index]`).
    pub fn at_index(mut self, index: usize) -> Self {
        self.inner.path.push(PathPart::Index(index));
        self
    }

    /// Places the error at entry `key` of a map (prepends `["key"]`).
    pub fn at_key(mut self, key: &str) -> Self {
        self.inner.path.push(PathPart::Key(key.to_owned()));
        self
    }

    /// A field that the message does not have.
    pub fn unknown_field(name: &str) -> Self {
        JsonError::new(format!("unknown field `{name}`"))
    }

    /// A second member of a oneof.
    pub fn oneof_conflict(oneof: &str) -> Self {
        JsonError::new(format!("more than one field of oneof `{oneof}` is set"))
    }

    /// A path variable whose field the body already set to a different value.
    pub fn path_conflict() -> Self {
        JsonError::new("the request body sets this field to a different value")
    }

    /// The field path, outermost first (`book.chapters[2].title`); `""` at the top level.
    pub fn path(&self) -> String {
        use fmt::Write as _;
        let mut out = String::new();
        for part in self.inner.path.iter().rev() {
            match part {
                PathPart::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                PathPart::Index(index) => {
                    let _ = write!(out, "[{index}]");
                }
                PathPart::Key(key) => {
                    let _ = write!(out, "[{key:?}]");
                }
            }
        }
        out
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The byte offset of a syntax error.
    pub fn offset(&self) -> Option<usize> {
        self.inner.offset
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        let message = &self.inner.message;
        match (self.inner.offset, path.is_empty()) {
            (Some(offset), true) => write!(f, "malformed JSON at byte {offset}: {message}"),
            (Some(offset), false) => write!(
                f,
                "malformed JSON in field `{path}` at byte {offset}: {message}"
            ),
            (None, true) => f.write_str(message),
            (None, false) => write!(f, "invalid value for field `{path}`: {message}"),
        }
    }
}

impl std::error::Error for JsonError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_outermost_first() {
        let error = JsonError::new("expected a number")
            .at("title")
            .at_index(2)
            .at("chapters")
            .at_key("k")
            .at("book");
        assert_eq!(error.path(), "book[\"k\"].chapters[2].title");
        assert_eq!(
            error.to_string(),
            "invalid value for field `book[\"k\"].chapters[2].title`: expected a number"
        );
        assert_eq!(error.message(), "expected a number");
        assert_eq!(error.offset(), None);
        assert_eq!(
            JsonError::syntax(7, "expected `:`").to_string(),
            "malformed JSON at byte 7: expected `:`"
        );
        assert_eq!(
            JsonError::syntax(7, "expected `:`").at("a").to_string(),
            "malformed JSON in field `a` at byte 7: expected `:`"
        );
        assert_eq!(JsonError::new("x").path(), "");
        assert_eq!(
            JsonError::unknown_field("nope")
                .at_index(0)
                .at("list")
                .to_string(),
            "invalid value for field `list[0]`: unknown field `nope`"
        );
        assert_eq!(
            std::mem::size_of::<JsonError>(),
            std::mem::size_of::<usize>()
        );
    }
}
