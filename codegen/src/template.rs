//! Path templates of `google.api.http` rules, parsed to an AST.
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! http.proto's grammar puts `**` last, but real Google APIs write it anywhere
//! (`/v1/{parent=projects/*/databases/*/documents/*/**}/{collection_id}`, `/v1test2/{name=**/botSessions/*}`),
//! and Google's front ends serve them, so this parser accepts `**` at any position. A template may
//! hold only one `**`: with two, the segments between them could be split between the two in
//! several ways, and no API in googleapis needs it.

use std::fmt;

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    /// The segments after the leading `/`.
    pub segments: Vec<Segment>,
    /// The custom verb after the last `:`, if any.
    pub verb: Option<String>,
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// `*`: any one segment.
    Wildcard,
    /// `**`: any number of segments, including none; at most one per template, anywhere.
    DoubleWildcard,
    /// `{field=…}`: binds the segments it spans to a field.
    Variable(Variable),
}

/// A variable: a field path and the segments whose text it captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The dotted field path, split.
    pub field_path: Vec<String>,
    /// The segments it spans; `{f}` is `{f=*}`. Never contains a variable.
    pub segments: Vec<Segment>,
}

/// A template segment with variables flattened away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlatSegment {
    /// Matches exactly this text.
    Literal(String),
    /// `*`.
    Wildcard,
    /// `**`.
    DoubleWildcard,
}

/// A variable over the flat segments `start..end`. When the range holds the template's `**`, the
/// variable captures as many path segments as the `**` takes, plus one for every other segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatVariable {
    /// The dotted field path.
    pub field_path: String,
    /// Index of its first flat segment.
    pub start: usize,
    /// One past its last flat segment.
    pub end: usize,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 1-based character column of the problem.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for TemplateError {}

/// Parses a path template.
pub fn parse(template: &str) -> Result<PathTemplate, TemplateError> {
    let mut parser = Parser {
        chars: template.chars().collect(),
        pos: 0,
    };
    let parsed = parser.template()?;
    parsed.check()?;
    Ok(parsed)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

/// Characters a literal may hold: RFC 3986 unreserved and sub-delims except the template's own
/// syntax, plus `%` for percent-encoding and `@`.
fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'()+,;@".contains(c)
}

impl Parser {
    fn error<T>(&self, message: impl Into<String>) -> Result<T, TemplateError> {
        Err(TemplateError {
            column: self.pos + 1,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn template(&mut self) -> Result<PathTemplate, TemplateError> {
        if !self.eat('/') {
            return self.error("a path template must start with `/`");
        }
        let segments = self.segments(false)?;
        let verb = if self.eat(':') {
            let verb = self.literal()?;
            if verb.is_empty() {
                return self.error("expected a custom verb after `:`");
            }
            Some(verb)
        } else {
            None
        };
        if let Some(c) = self.peek() {
            return self.error(format!("unexpected `{c}`"));
        }
        Ok(PathTemplate { segments, verb })
    }

    fn segments(&mut self, in_variable: bool) -> Result<Vec<Segment>, TemplateError> {
        let mut segments = vec![self.segment(in_variable)?];
        while self.eat('/') {
            segments.push(self.segment(in_variable)?);
        }
        Ok(segments)
    }

    fn segment(&mut self, in_variable: bool) -> Result<Segment, TemplateError> {
        match self.peek() {
            Some('*') => {
                self.pos += 1;
                if self.eat('*') {
                    Ok(Segment::DoubleWildcard)
                } else {
                    Ok(Segment::Wildcard)
                }
            }
            Some('{') if in_variable => self.error("a variable cannot contain another variable"),
            Some('{') => {
                self.pos += 1;
                self.variable().map(Segment::Variable)
            }
            Some(c) if is_literal_char(c) => Ok(Segment::Literal(self.literal()?)),
            Some('/') => self.error("empty path segment"),
            Some(c) => self.error(format!("unexpected `{c}` in a path segment")),
            None => self.error("expected a path segment"),
        }
    }

    fn literal(&mut self) -> Result<String, TemplateError> {
        let start = self.pos;
        while let Some(c) = self.peek().filter(|c| is_literal_char(*c)) {
            if c == '%' {
                let hex = |i: usize| self.chars.get(i).is_some_and(char::is_ascii_hexdigit);
                if !(hex(self.pos + 1) && hex(self.pos + 2)) {
                    return self.error("`%` must be followed by two hex digits");
                }
                self.pos += 2;
            }
            self.pos += 1;
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn variable(&mut self) -> Result<Variable, TemplateError> {
        let mut field_path = Vec::new();
        loop {
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                self.pos += 1;
            }
            let ident: String = self.chars[start..self.pos].iter().collect();
            if ident.is_empty() || ident.starts_with(|c: char| c.is_ascii_digit()) {
                self.pos = start;
                return self.error("expected a field name");
            }
            field_path.push(ident);
            if !self.eat('.') {
                break;
            }
        }
        let segments = if self.eat('=') {
            self.segments(true)?
        } else {
            vec![Segment::Wildcard]
        };
        if !self.eat('}') {
            return match self.peek() {
                Some(c) => self.error(format!("expected `}}`, found `{c}`")),
                None => self.error("unclosed `{`: expected `}`"),
            };
        }
        Ok(Variable {
            field_path,
            segments,
        })
    }
}

impl PathTemplate {
    /// Checks what the grammar alone does not: one `**` at most, each field bound once.
    fn check(&self) -> Result<(), TemplateError> {
        let flat = self.flat();
        if let Some(index) = flat
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == FlatSegment::DoubleWildcard)
            .map(|(index, _)| index)
            .nth(1)
        {
            return Err(TemplateError {
                column: self.column_of_segment(index),
                message: "a path template may hold only one `**` (this is the second)".into(),
            });
        }
        let variables = self.variables();
        for (i, variable) in variables.iter().enumerate() {
            if variables[..i]
                .iter()
                .any(|v| v.field_path == variable.field_path)
            {
                return Err(TemplateError {
                    column: self.column_of_segment(variable.start),
                    message: format!("field `{}` is bound twice", variable.field_path),
                });
            }
        }
        Ok(())
    }

    /// The 1-based column where flat segment `index` begins in the canonical text.
    fn column_of_segment(&self, index: usize) -> usize {
        let mut column = 1;
        let mut seen = 0;
        for segment in &self.segments {
            column += 1; // the `/`
            let width = match segment {
                Segment::Variable(v) => v.segments.len(),
                _ => 1,
            };
            if seen + width > index {
                return column;
            }
            seen += width;
            column += segment.to_string().chars().count();
        }
        column
    }

    /// The segments with variables flattened away.
    pub fn flat(&self) -> Vec<FlatSegment> {
        let mut out = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Variable(v) => v.segments.iter().for_each(|s| flatten(s, &mut out)),
                other => flatten(other, &mut out),
            }
        }
        out
    }

    /// The variables, over flat segment ranges, in template order.
    pub fn variables(&self) -> Vec<FlatVariable> {
        let mut out = Vec::new();
        let mut index = 0;
        for segment in &self.segments {
            match segment {
                Segment::Variable(v) => {
                    let start = index;
                    index += v.segments.len();
                    out.push(FlatVariable {
                        field_path: v.field_path.join("."),
                        start,
                        end: index,
                    });
                }
                _ => index += 1,
            }
        }
        out
    }

    /// What decides which requests match: literals, `*`, `**` and the verb, variables erased.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for segment in self.flat() {
            out.push('/');
            match segment {
                FlatSegment::Literal(l) => out.push_str(&l),
                FlatSegment::Wildcard => out.push('*'),
                FlatSegment::DoubleWildcard => out.push_str("**"),
            }
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }
}

fn flatten(segment: &Segment, out: &mut Vec<FlatSegment>) {
    match segment {
        Segment::Literal(l) => out.push(FlatSegment::Literal(l.clone())),
        Segment::Wildcard => out.push(FlatSegment::Wildcard),
        Segment::DoubleWildcard => out.push(FlatSegment::DoubleWildcard),
        Segment::Variable(v) => v.segments.iter().for_each(|s| flatten(s, out)),
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Literal(l) => f.write_str(l),
            Segment::Wildcard => f.write_str("*"),
            Segment::DoubleWildcard => f.write_str("**"),
            Segment::Variable(v) => {
                write!(f, "{{{}", v.field_path.join("."))?;
                if v.segments != [Segment::Wildcard] {
                    f.write_str("=")?;
                    write_segments(f, &v.segments)?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_segments(f: &mut fmt::Formatter<'_>, segments: &[Segment]) -> fmt::Result {
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            f.write_str("/")?;
        }
        write!(f, "{segment}")?;
    }
    Ok(())
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("/")?;
        write_segments(f, &self.segments)?;
        if let Some(verb) = &self.verb {
            write!(f, ":{verb}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(template: &str) -> Vec<FlatSegment> {
        parse(template).expect("parses").flat()
    }

    #[test]
    fn every_grammar_feature() {
        let t = parse("/v1/{name=shelves/*/books/*}:archive").expect("parses");
        assert_eq!(t.verb.as_deref(), Some("archive"));
        assert_eq!(
            t.variables(),
            vec![FlatVariable {
                field_path: "name".into(),
                start: 1,
                end: 5
            }]
        );
        assert_eq!(t.shape(), "/v1/shelves/*/books/*:archive");

        let t = parse("/v1/{name=operations/**}:cancel").expect("parses");
        assert_eq!(t.variables()[0].end, 3);
        assert_eq!(t.shape(), "/v1/operations/**:cancel");

        let t = parse("/v1/{book.name}/x/*/{id=**}").expect("parses");
        assert_eq!(
            t.flat(),
            vec![
                FlatSegment::Literal("v1".into()),
                FlatSegment::Wildcard,
                FlatSegment::Literal("x".into()),
                FlatSegment::Wildcard,
                FlatSegment::DoubleWildcard,
            ]
        );
        let vars = t.variables();
        assert_eq!(vars[0].field_path, "book.name");
        assert_eq!((vars[1].start, vars[1].end), (4, 5));

        assert_eq!(
            flat("/v1/**"),
            vec![
                FlatSegment::Literal("v1".into()),
                FlatSegment::DoubleWildcard
            ]
        );
        assert_eq!(
            flat("/v1/a%20b"),
            vec![
                FlatSegment::Literal("v1".into()),
                FlatSegment::Literal("a%20b".into())
            ]
        );
    }

    #[test]
    fn double_wildcard_anywhere() {
        let t = parse("/v1/{parent=projects/*/databases/*/documents/*/**}/{collection_id}")
            .expect("parses");
        assert_eq!(t.shape(), "/v1/projects/*/databases/*/documents/*/**/*");
        let vars = t.variables();
        assert_eq!((vars[0].start, vars[0].end), (1, 8));
        assert_eq!((vars[1].start, vars[1].end), (8, 9));

        let t = parse("/v1test2/{name=**/botSessions/*}").expect("parses");
        assert_eq!(
            t.flat(),
            vec![
                FlatSegment::Literal("v1test2".into()),
                FlatSegment::DoubleWildcard,
                FlatSegment::Literal("botSessions".into()),
                FlatSegment::Wildcard,
            ]
        );
        assert_eq!((t.variables()[0].start, t.variables()[0].end), (1, 4));

        let t = parse(
            "/v1/{parent=projects/*/locations/*/dataStores/**}/suggestionDenyListEntries:purge",
        )
        .expect("parses");
        assert_eq!(
            t.shape(),
            "/v1/projects/*/locations/*/dataStores/**/suggestionDenyListEntries:purge"
        );
        assert_eq!(parse("/**/x").expect("parses").shape(), "/**/x");
    }

    #[test]
    fn display_is_canonical() {
        for text in [
            "/v1/{name}",
            "/v1/{name=shelves/*}/books",
            "/v1/{a.b.c=x/**}:do",
            "/*/**",
            "/v1test2/{parent=**}/botSessions",
            "/v1/{name=**/x/*}:do",
        ] {
            assert_eq!(parse(text).expect("parses").to_string(), text);
        }
        assert_eq!(
            parse("/v1/{name=*}").expect("parses").to_string(),
            "/v1/{name}"
        );
    }

    #[test]
    fn errors_name_the_column() {
        let cases = [
            ("v1/x", 1, "must start with `/`"),
            ("/v1/{name=things/*", 19, "unclosed `{`"),
            ("/v1/{a={b}}", 8, "cannot contain another variable"),
            ("/v1/**/x/**", 10, "only one `**`"),
            ("/v1/{a=**}/{b=x/**}", 12, "only one `**`"),
            ("/v1//x", 5, "empty path segment"),
            ("/v1/x:", 7, "custom verb"),
            ("/v1/{a}/{a}", 9, "bound twice"),
            ("/v1/{}", 6, "expected a field name"),
            ("/v1/{1a}", 6, "expected a field name"),
            ("/v1/a b", 6, "unexpected ` `"),
            ("/v1/%zz", 5, "two hex digits"),
            ("/v1/{a}x", 8, "unexpected `x`"),
            ("/", 2, "expected a path segment"),
        ];
        for (text, column, message) in cases {
            let error = parse(text).expect_err(text);
            assert_eq!(error.column, column, "{text}: {error}");
            assert!(error.message.contains(message), "{text}: {error}");
        }
    }

    fn segment_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof!["[a-z][a-z0-9_.~-]{0,5}", Just("*".to_owned()),]
    }

    proptest::proptest! {
        /// Random valid templates print canonically and parse back to the same AST.
        #[test]
        fn display_round_trips(
            segments in proptest::collection::vec(segment_strategy(), 1..5),
            variable in proptest::option::of(("[a-z]{1,4}(\\.[a-z]{1,4}){0,2}", proptest::collection::vec(segment_strategy(), 1..3))),
            rest in proptest::option::of(0usize..5),
            verb in proptest::option::of("[a-z]{1,6}"),
        ) {
            let mut segments = segments;
            // One `**`, at a random place among the leading segments or last.
            let rest_last = match rest {
                Some(at) if at < segments.len() => {
                    segments.insert(at, "**".to_owned());
                    false
                }
                Some(_) => true,
                None => false,
            };
            let mut text = format!("/{}", segments.join("/"));
            if let Some((field, inner)) = variable {
                text.push_str(&format!("/{{{field}={}}}", inner.join("/")));
            }
            if rest_last {
                text.push_str("/**");
            }
            if let Some(verb) = verb {
                text.push(':');
                text.push_str(&verb);
            }
            let parsed = parse(&text).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{text}: {e}")))?;
            let printed = parsed.to_string();
            proptest::prop_assert_eq!(parse(&printed).expect("reparses"), parsed);
        }

        /// Arbitrary input never panics.
        #[test]
        fn never_panics(text in "\\PC{0,40}") {
            let _ = parse(&text);
        }
    }
}
