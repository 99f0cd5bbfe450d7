//! Routing requests to bindings: compiled path templates in a trie, matched with the precedence
//! of google/api/http.proto (literal > `*` > `**`, segment by segment), custom verbs, and the
//! percent-decoding rules for variables.
//!
//! # `**` anywhere
//!
//! http.proto's grammar puts `**` last, but real APIs put it anywhere
//! (`/v1/{parent=projects/*/databases/*/documents/*/**}/{collection_id}`,
//! `/v1test2/{name=**/botSessions/*}`, `/v1/{parent=dataStores/**}/entries:purge`), and so does
//! this router. A template holds at most one `**` (protogate-build refuses a second one), and
//! every other segment matches exactly one path segment, so a path splits one way only:
//!
//! - **The split rule.** The segments after the `**` match the *last* segments of the path (the
//!   verb, if any, is taken off the last segment first); the `**` takes everything between what
//!   precedes it and those, possibly nothing. `/v1test2/{parent=**}/botSessions` on
//!   `/v1test2/a/botSessions/botSessions` gives `parent` = `a/botSessions`.
//! - **Precedence** stays segment by segment: at each position a literal is tried before `*`,
//!   and `*` before `**`, with the first match in that order winning. When several templates
//!   share a prefix up to a `**`, the one whose `**` takes the fewest segments wins (it is the one
//!   that continues with more of its own segments: `/v1/**/a/*` before `/v1/**/*`), and a
//!   template ending in `**` comes after all of them.
//! - **Captures.** A variable containing the `**` captures what the `**` took plus its own other
//!   segments, joined by `/`; like every multi-segment variable, `%2F` stays encoded in it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use http::Method;

use crate::percent::{self, PercentError, Plus, Slash};

/// One binding as the route table and documentation see it (defined beside the templates so
/// that the layers below the handlers can name a request's route).
#[derive(Debug)]
pub struct RouteInfo {
    /// Upper-case HTTP method.
    pub method: &'static str,
    /// The RPC's full name, `package.Service.Method`.
    pub rpc: &'static str,
    /// The compiled path template.
    pub template: Template,
    /// An unbound route: an RPC without a `google.api.http` rule, at `POST
    /// /{package}.{Service}/{Method}` with the whole request message as the body, which
    /// protogate-build generates with its `unbound_methods` option. A gateway serves it only
    /// when its [`unbound_methods`](crate::Gateway::unbound_methods) switch is on.
    pub unbound: bool,
}

/// One segment of a compiled template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Seg {
    /// Exactly this text.
    Literal(&'static str),
    /// `*`: any one non-empty segment.
    Any,
    /// `**`: any number of segments, including none. At most one per template, anywhere in it.
    Rest,
}

/// A template variable over the template segments `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    /// The dotted field path it binds.
    pub field: &'static str,
    /// Its first segment.
    pub start: usize,
    /// One past its last segment. A range holding the `**` spans as many path segments as the
    /// `**` takes.
    pub end: usize,
}

/// A compiled path template, written by generated code as a `static`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// The template as written in the proto.
    pub text: &'static str,
    /// Segments with variables flattened away.
    pub segments: &'static [Seg],
    /// The custom verb, without its `:`.
    pub verb: Option<&'static str>,
    /// The variables, in template order.
    pub vars: &'static [Var],
}

impl Template {
    /// Whether variable `var` spans exactly one segment, and so is fully percent-decoded.
    fn is_single_segment(&self, var: &Var) -> bool {
        var.end == var.start + 1 && self.segments.get(var.start) != Some(&Seg::Rest)
    }

    /// The path segment index where template segment `index` begins (or, for `index` equal to
    /// the template's length, the path's length), when the template matched `path_len` segments.
    fn path_index(&self, index: usize, path_len: usize) -> usize {
        match self.segments.iter().position(|s| *s == Seg::Rest) {
            // The `**` at `rest` took `path_len - (len - 1)` segments; later ones shift by that,
            // less the one place the `**` holds in the template.
            Some(rest) if index > rest => (index + path_len).saturating_sub(self.segments.len()),
            _ => index,
        }
        .min(path_len)
    }
}

/// Two bindings with the same method that match exactly the same requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method} {template} matches the same requests as {method} {existing}")]
pub struct Conflict {
    /// The shared HTTP method.
    pub method: Method,
    /// The template being added.
    pub template: &'static str,
    /// The template already in the table.
    pub existing: &'static str,
}

/// The values of a matched template's variables, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    values: Vec<(&'static str, String)>,
}

impl Captures {
    /// `(field path, value)` for each variable, in template order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values
            .iter()
            .map(|(field, value)| (*field, value.as_str()))
    }

    /// The value bound to `field`.
    #[cfg(test)]
    pub fn get(&self, field: &str) -> Option<&str> {
        self.iter().find(|(f, _)| *f == field).map(|(_, v)| v)
    }
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup<'t, T> {
    /// A binding matches.
    Found {
        /// What was inserted with the binding.
        value: &'t T,
        /// Its variables' values.
        captures: Captures,
    },
    /// The path matches bindings of other methods only.
    MethodNotAllowed {
        /// Those methods, sorted and without duplicates.
        allow: Vec<Method>,
    },
    /// Nothing matches the path.
    NotFound,
    /// The path matched, but a variable's value (or another segment) is not valid
    /// percent-encoded UTF-8; the message names it.
    BadPath(String),
}

struct Entry<T> {
    method: Method,
    template: &'static Template,
    value: T,
}

/// A binding at the end of a trie path.
#[derive(Clone, Copy)]
struct Leaf {
    verb: Option<&'static str>,
    entry: usize,
}

struct Node {
    literals: HashMap<&'static str, Node>,
    any: Option<Box<Node>>,
    /// What follows a `**` here that is not the template's last segment.
    double: Option<Box<Node>>,
    /// Bindings whose last segment is `**` here.
    rest: Vec<Leaf>,
    /// Bindings ending exactly here.
    leaves: Vec<Leaf>,
}

impl Node {
    fn new() -> Self {
        Node {
            literals: HashMap::new(),
            any: None,
            double: None,
            rest: Vec::new(),
            leaves: Vec::new(),
        }
    }
}

/// Every binding of a gateway, ready for lookups.
pub struct RouteTable<T> {
    entries: Vec<Entry<T>>,
    root: Node,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable::new()
    }
}

impl<T> fmt::Debug for RouteTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (&e.method, e.template.text)))
            .finish()
    }
}

impl<T> RouteTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        RouteTable {
            entries: Vec::new(),
            root: Node::new(),
        }
    }

    /// Adds a binding; fails when one with the same method matches exactly the same requests.
    pub fn insert(
        &mut self,
        method: Method,
        template: &'static Template,
        value: T,
    ) -> Result<(), Conflict> {
        let mut node = &mut self.root;
        let mut at_rest = false;
        let last = template.segments.len().saturating_sub(1);
        for (index, segment) in template.segments.iter().enumerate() {
            match segment {
                Seg::Literal(literal) => {
                    node = node.literals.entry(literal).or_insert_with(Node::new)
                }
                Seg::Any => node = node.any.get_or_insert_with(|| Box::new(Node::new())),
                Seg::Rest if index == last => {
                    at_rest = true;
                    break;
                }
                Seg::Rest => node = node.double.get_or_insert_with(|| Box::new(Node::new())),
            }
        }
        let leaves = if at_rest {
            &mut node.rest
        } else {
            &mut node.leaves
        };
        if let Some(existing) = leaves
            .iter()
            .map(|leaf| &self.entries[leaf.entry])
            .find(|e| e.method == method && e.template.verb == template.verb)
        {
            return Err(Conflict {
                method,
                template: template.text,
                existing: existing.template.text,
            });
        }
        leaves.push(Leaf {
            verb: template.verb,
            entry: self.entries.len(),
        });
        self.entries.push(Entry {
            method,
            template,
            value,
        });
        Ok(())
    }

    /// The table with only the bindings whose value `keep` accepts, in the same order.
    pub fn retain(self, keep: impl Fn(&T) -> bool) -> RouteTable<T> {
        let mut kept = RouteTable::new();
        for entry in self.entries {
            if keep(&entry.value) {
                // Part of a table is free of conflicts as the whole was: this cannot fail.
                let inserted = kept.insert(entry.method, entry.template, entry.value);
                debug_assert!(inserted.is_ok(), "{inserted:?}");
            }
        }
        kept
    }

    /// Finds the binding for `method` and `path` (the URI path, without the query).
    pub fn find(&self, method: &Method, path: &str) -> Lookup<'_, T> {
        let Some(rest) = path.strip_prefix('/') else {
            return Lookup::NotFound;
        };
        let mut segments: Vec<&str> = rest.split('/').collect();

        // A custom verb is the text after the last `:` of the last segment. Bindings with that
        // verb are tried first; then the whole last segment is matched by verbless bindings.
        let last = segments.len() - 1;
        let whole_last = segments[last];
        if let Some((base, verb)) = whole_last.rsplit_once(':') {
            segments[last] = base;
            if let Some(entry) = self.best(method, &segments, Some(verb)) {
                return self.found(entry, &segments);
            }
            segments[last] = whole_last;
        }
        if let Some(entry) = self.best(method, &segments, None) {
            return self.found(entry, &segments);
        }

        let mut allow = Vec::new();
        let mut collect = |segments: &[&str], verb| {
            visit(&self.root, segments, &mut |leaf| {
                if leaf.verb == verb {
                    allow.push(self.entries[leaf.entry].method.clone());
                }
                false
            });
        };
        if let Some((base, verb)) = whole_last.rsplit_once(':') {
            let mut with_verb = segments.clone();
            with_verb[last] = base;
            collect(&with_verb, Some(verb));
        }
        collect(&segments, None);
        if allow.is_empty() {
            return Lookup::NotFound;
        }
        allow.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        allow.dedup();
        Lookup::MethodNotAllowed { allow }
    }

    /// The highest-precedence binding for `method` matching `segments` with `verb`.
    fn best(&self, method: &Method, segments: &[&str], verb: Option<&str>) -> Option<usize> {
        let mut found = None;
        visit(&self.root, segments, &mut |leaf| {
            if leaf.verb == verb && self.entries[leaf.entry].method == *method {
                found = Some(leaf.entry);
                true
            } else {
                false
            }
        });
        found
    }

    fn found(&self, entry: usize, segments: &[&str]) -> Lookup<'_, T> {
        let entry = &self.entries[entry];
        let template = entry.template;
        let mut values = Vec::with_capacity(template.vars.len());
        for var in template.vars {
            let end = template.path_index(var.end, segments.len());
            let start = template.path_index(var.start, segments.len()).min(end);
            let raw = segments[start..end].join("/");
            match decode_var(&raw, template.is_single_segment(var)) {
                Ok(value) => values.push((var.field, value)),
                Err(error) => {
                    return Lookup::BadPath(format!(
                        "the value `{raw}` of path variable `{}` is not valid percent-encoded UTF-8: {error}",
                        var.field
                    ));
                }
            }
        }
        // Segments outside every variable (matched by a bare `*` or `**`) must be valid too.
        if let Some(message) = bad_segment(segments) {
            return Lookup::BadPath(message);
        }
        Lookup::Found {
            value: &entry.value,
            captures: Captures { values },
        }
    }
}

/// Depth-first over the trie in precedence order (literal, then `*`, then a `**` followed by more
/// segments, taking as few segments as it can first, then a last `**`), calling `hit` for every
/// binding that matches `segments`; stops as soon as `hit` returns true.
fn visit(node: &Node, segments: &[&str], hit: &mut dyn FnMut(Leaf) -> bool) -> bool {
    match segments.split_first() {
        None => {
            if node.leaves.iter().any(|leaf| hit(*leaf)) {
                return true;
            }
        }
        Some((first, rest)) => {
            if let Some(child) = node.literals.get(first)
                && visit(child, rest, hit)
            {
                return true;
            }
            if let Some(child) = &node.any
                && !first.is_empty()
                && visit(child, rest, hit)
            {
                return true;
            }
        }
    }
    if let Some(child) = &node.double
        && (0..=segments.len()).any(|taken| visit(child, &segments[taken..], hit))
    {
        return true;
    }
    node.rest.iter().any(|leaf| hit(*leaf))
}

/// A variable's value: fully decoded when it spans one segment; otherwise `%2F` stays encoded,
/// so it cannot be told from the `/` between segments. `+` is itself in a path.
fn decode_var(raw: &str, single_segment: bool) -> Result<String, PercentError> {
    let slash = if single_segment {
        Slash::Decode
    } else {
        Slash::Keep
    };
    percent::decode(raw, Plus::Literal, slash).map(Cow::into_owned)
}

/// The complaint about the first segment of a matched path that is not valid percent-encoded
/// UTF-8, bound to a variable or not.
fn bad_segment(segments: &[&str]) -> Option<String> {
    segments.iter().find_map(|segment| {
        percent::decode(segment, Plus::Literal, Slash::Decode)
            .err()
            .map(|error| {
                format!("path segment `{segment}` is not valid percent-encoded UTF-8: {error}")
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! template {
        ($text:expr, [$($seg:expr),*], $verb:expr, [$($var:expr),*]) => {{
            static T: Template = Template {
                text: $text,
                segments: &[$($seg),*],
                verb: $verb,
                vars: &[$($var),*],
            };
            &T
        }};
    }

    use Seg::{Any, Literal as L, Rest};

    /// A table of `(method, template, name)` rows, none conflicting.
    fn table_of(
        routes: Vec<(Method, &'static Template, &'static str)>,
    ) -> RouteTable<&'static str> {
        let mut table = RouteTable::new();
        for (method, template, name) in routes {
            table.insert(method, template, name).expect("no conflict");
        }
        table
    }

    fn table() -> RouteTable<&'static str> {
        table_of(vec![
            (
                Method::GET,
                template!(
                    "/v1/{name=shelves/*}",
                    [L("v1"), L("shelves"), Any],
                    None,
                    [Var {
                        field: "name",
                        start: 1,
                        end: 3
                    }]
                ),
                "get_shelf",
            ),
            (
                Method::GET,
                template!(
                    "/v1/shelves/special",
                    [L("v1"), L("shelves"), L("special")],
                    None,
                    []
                ),
                "special",
            ),
            (
                Method::GET,
                template!(
                    "/v1/{path=**}",
                    [L("v1"), Rest],
                    None,
                    [Var {
                        field: "path",
                        start: 1,
                        end: 2
                    }]
                ),
                "catch_all",
            ),
            (
                Method::POST,
                template!(
                    "/v1/{name=shelves/*/books/*}:archive",
                    [L("v1"), L("shelves"), Any, L("books"), Any],
                    Some("archive"),
                    [Var {
                        field: "name",
                        start: 1,
                        end: 5
                    }]
                ),
                "archive",
            ),
            (
                Method::POST,
                template!(
                    "/v1/{name=operations/**}:cancel",
                    [L("v1"), L("operations"), Rest],
                    Some("cancel"),
                    [Var {
                        field: "name",
                        start: 1,
                        end: 3
                    }]
                ),
                "cancel",
            ),
            (
                Method::DELETE,
                template!(
                    "/v1/{name=shelves/*}",
                    [L("v1"), L("shelves"), Any],
                    None,
                    [Var {
                        field: "name",
                        start: 1,
                        end: 3
                    }]
                ),
                "delete_shelf",
            ),
            (
                Method::GET,
                template!(
                    "/v1/books/{book.id}",
                    [L("v1"), L("books"), Any],
                    None,
                    [Var {
                        field: "book.id",
                        start: 2,
                        end: 3
                    }]
                ),
                "get_book",
            ),
        ])
    }

    fn found(
        table: &RouteTable<&'static str>,
        method: Method,
        path: &str,
    ) -> (&'static str, Vec<(String, String)>) {
        match table.find(&method, path) {
            Lookup::Found { value, captures } => (
                *value,
                captures
                    .iter()
                    .map(|(f, v)| (f.to_owned(), v.to_owned()))
                    .collect(),
            ),
            other => panic!("{method} {path}: expected a match, got {other:?}"),
        }
    }

    fn caps(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_retained_table_forgets_the_rest_entirely() {
        let kept = table().retain(|name| !matches!(*name, "special" | "archive"));
        // What a removed binding matched falls to the next in precedence, or to nothing: no
        // 405 names the method only a removed binding had.
        assert_eq!(
            found(&kept, Method::GET, "/v1/shelves/special").0,
            "get_shelf"
        );
        assert!(matches!(
            kept.find(&Method::POST, "/v1/shelves/s1/books/b1:archive"),
            Lookup::MethodNotAllowed { allow } if !allow.contains(&Method::POST)
        ));
        assert_eq!(
            found(&kept, Method::GET, "/v1/books/7"),
            ("get_book", caps(&[("book.id", "7")]))
        );
    }

    #[test]
    fn literal_beats_wildcard_beats_double_wildcard() {
        let table = table();
        assert_eq!(
            found(&table, Method::GET, "/v1/shelves/special").0,
            "special"
        );
        assert_eq!(
            found(&table, Method::GET, "/v1/shelves/s1"),
            ("get_shelf", caps(&[("name", "shelves/s1")]))
        );
        assert_eq!(
            found(&table, Method::GET, "/v1/shelves/s1/extra"),
            ("catch_all", caps(&[("path", "shelves/s1/extra")]))
        );
        // `**` matches zero segments too.
        assert_eq!(found(&table, Method::GET, "/v1").0, "catch_all");
    }

    #[test]
    fn custom_verbs() {
        let table = table();
        assert_eq!(
            found(&table, Method::POST, "/v1/shelves/s1/books/b2:archive"),
            ("archive", caps(&[("name", "shelves/s1/books/b2")]))
        );
        assert_eq!(
            found(&table, Method::POST, "/v1/operations/a/b/c:cancel"),
            ("cancel", caps(&[("name", "operations/a/b/c")]))
        );
        // A colon in a verbless last segment is part of the value.
        assert_eq!(
            found(&table, Method::GET, "/v1/shelves/a:b"),
            ("get_shelf", caps(&[("name", "shelves/a:b")]))
        );
    }

    #[test]
    fn nested_field_paths_capture() {
        let table = table();
        assert_eq!(
            found(&table, Method::GET, "/v1/books/42"),
            ("get_book", caps(&[("book.id", "42")]))
        );
    }

    #[test]
    fn single_segment_decodes_fully_multi_segment_keeps_slashes() {
        let table = table();
        assert_eq!(
            found(&table, Method::GET, "/v1/books/a%2Fb%20c"),
            ("get_book", caps(&[("book.id", "a/b c")]))
        );
        assert_eq!(
            found(&table, Method::GET, "/v1/x%2Fy/z%20w"),
            ("catch_all", caps(&[("path", "x%2Fy/z w")]))
        );
    }

    fn bad_path(table: &RouteTable<&'static str>, method: Method, path: &str) -> String {
        match table.find(&method, path) {
            Lookup::BadPath(message) => message,
            other => panic!("{method} {path}: expected a bad path, got {other:?}"),
        }
    }

    #[test]
    fn invalid_percent_encoding_is_a_bad_path() {
        let table = table();
        let message = bad_path(&table, Method::GET, "/v1/books/%FF");
        assert!(message.contains("`book.id`"), "{message}");
        assert!(message.contains("UTF-8"), "{message}");
        for path in ["/v1/books/%", "/v1/books/a%zz", "/v1/books/%4"] {
            let message = bad_path(&table, Method::GET, path);
            assert!(message.contains("path variable `book.id`"), "{message}");
            assert!(message.contains("hexadecimal"), "{message}");
        }
        // In a `**` variable, and before a custom verb.
        let message = bad_path(&table, Method::GET, "/v1/a/%G0/b");
        assert!(message.contains("`path`"), "{message}");
        let message = bad_path(&table, Method::POST, "/v1/operations/a/%:cancel");
        assert!(message.contains("`name`"), "{message}");
        // A bad escape in a wildcard segment that no variable binds names the segment.
        let mut table = RouteTable::new();
        table
            .insert(
                Method::GET,
                template!("/v1/*/x", [L("v1"), Any, L("x")], None, []),
                "unbound",
            )
            .expect("insert");
        let message = bad_path(&table, Method::GET, "/v1/%zz/x");
        assert!(message.contains("path segment `%zz`"), "{message}");
    }

    #[test]
    fn plus_in_a_path_is_a_plus() {
        let table = table();
        assert_eq!(
            found(&table, Method::GET, "/v1/books/a+b%2B"),
            ("get_book", caps(&[("book.id", "a+b+")]))
        );
    }

    #[test]
    fn wrong_method_is_405_with_allow_and_no_match_is_404() {
        let table = table();
        match table.find(&Method::PUT, "/v1/shelves/s1") {
            Lookup::MethodNotAllowed { allow } => {
                assert_eq!(allow, vec![Method::DELETE, Method::GET]);
            }
            other => panic!("expected 405, got {other:?}"),
        }
        assert!(matches!(
            table.find(&Method::GET, "/v2/shelves"),
            Lookup::NotFound
        ));
        assert!(matches!(table.find(&Method::GET, "v1"), Lookup::NotFound));
    }

    #[test]
    fn empty_segments_and_trailing_slashes() {
        let mut table = RouteTable::new();
        table
            .insert(
                Method::GET,
                template!(
                    "/v1/books/{id}",
                    [L("v1"), L("books"), Any],
                    None,
                    [Var {
                        field: "id",
                        start: 2,
                        end: 3
                    }]
                ),
                "book",
            )
            .expect("insert");
        assert!(matches!(
            table.find(&Method::GET, "/v1/books/"),
            Lookup::NotFound
        ));
        assert!(matches!(
            table.find(&Method::GET, "/v1//b"),
            Lookup::NotFound
        ));
        assert!(matches!(
            table.find(&Method::GET, "/v1/books"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn same_method_and_shape_conflict() {
        let mut table = table();
        let error = table
            .insert(
                Method::GET,
                template!(
                    "/v1/shelves/{id}",
                    [L("v1"), L("shelves"), Any],
                    None,
                    [Var {
                        field: "id",
                        start: 2,
                        end: 3
                    }]
                ),
                "again",
            )
            .expect_err("conflict");
        assert_eq!(error.existing, "/v1/{name=shelves/*}");
    }

    /// Templates with `**` followed by more segments, beside ordinary ones.
    fn double_wildcard_table() -> RouteTable<&'static str> {
        table_of(vec![
            (
                Method::GET,
                template!(
                    "/v1/{parent=projects/*/documents/*/**}/{collection_id}",
                    [L("v1"), L("projects"), Any, L("documents"), Any, Rest, Any],
                    None,
                    [
                        Var {
                            field: "parent",
                            start: 1,
                            end: 6
                        },
                        Var {
                            field: "collection_id",
                            start: 6,
                            end: 7
                        }
                    ]
                ),
                "list_documents",
            ),
            (
                Method::GET,
                template!(
                    "/v1/projects/{project}/documents/{doc}/meta",
                    [L("v1"), L("projects"), Any, L("documents"), Any, L("meta")],
                    None,
                    [
                        Var {
                            field: "project",
                            start: 2,
                            end: 3
                        },
                        Var {
                            field: "doc",
                            start: 4,
                            end: 5
                        }
                    ]
                ),
                "meta",
            ),
            (
                Method::GET,
                template!(
                    "/v1/{name=projects/*/documents/**}",
                    [L("v1"), L("projects"), Any, L("documents"), Rest],
                    None,
                    [Var {
                        field: "name",
                        start: 1,
                        end: 5
                    }]
                ),
                "get_document",
            ),
            (
                Method::POST,
                template!(
                    "/v1/{parent=projects/*/dataStores/**}/entries:purge",
                    [
                        L("v1"),
                        L("projects"),
                        Any,
                        L("dataStores"),
                        Rest,
                        L("entries")
                    ],
                    Some("purge"),
                    [Var {
                        field: "parent",
                        start: 1,
                        end: 5
                    }]
                ),
                "purge",
            ),
            (
                Method::POST,
                template!(
                    "/v1test2/{parent=**}/botSessions",
                    [L("v1test2"), Rest, L("botSessions")],
                    None,
                    [Var {
                        field: "parent",
                        start: 1,
                        end: 2
                    }]
                ),
                "create_bot_session",
            ),
            (
                Method::PATCH,
                template!(
                    "/v1test2/{name=**/botSessions/*}",
                    [L("v1test2"), Rest, L("botSessions"), Any],
                    None,
                    [Var {
                        field: "name",
                        start: 1,
                        end: 4
                    }]
                ),
                "update_bot_session",
            ),
            (
                Method::GET,
                template!(
                    "/v2/{a=**}/x/{b}",
                    [L("v2"), Rest, L("x"), Any],
                    None,
                    [
                        Var {
                            field: "a",
                            start: 1,
                            end: 2
                        },
                        Var {
                            field: "b",
                            start: 3,
                            end: 4
                        }
                    ]
                ),
                "longer_tail",
            ),
            (
                Method::GET,
                template!(
                    "/v2/{a=**}/{b}",
                    [L("v2"), Rest, Any],
                    None,
                    [
                        Var {
                            field: "a",
                            start: 1,
                            end: 2
                        },
                        Var {
                            field: "b",
                            start: 2,
                            end: 3
                        }
                    ]
                ),
                "shorter_tail",
            ),
        ])
    }

    #[test]
    fn double_wildcard_followed_by_a_wildcard_variable() {
        let table = double_wildcard_table();
        assert_eq!(
            found(
                &table,
                Method::GET,
                "/v1/projects/p/documents/c1/d1/c2/d2/c3"
            ),
            (
                "list_documents",
                caps(&[
                    ("parent", "projects/p/documents/c1/d1/c2/d2"),
                    ("collection_id", "c3")
                ])
            )
        );
        // The `**` may take nothing.
        assert_eq!(
            found(&table, Method::GET, "/v1/projects/p/documents/c1/c2"),
            (
                "list_documents",
                caps(&[
                    ("parent", "projects/p/documents/c1"),
                    ("collection_id", "c2")
                ])
            )
        );
        // `%2F` stays encoded in the multi-segment variable, and is one segment for the `**`.
        assert_eq!(
            found(
                &table,
                Method::GET,
                "/v1/projects/p/documents/c1/a%2Fb/c%20d"
            ),
            (
                "list_documents",
                caps(&[
                    ("parent", "projects/p/documents/c1/a%2Fb"),
                    ("collection_id", "c d")
                ])
            )
        );
    }

    #[test]
    fn double_wildcard_followed_by_a_literal() {
        let table = double_wildcard_table();
        assert_eq!(
            found(&table, Method::POST, "/v1test2/a/b/botSessions"),
            ("create_bot_session", caps(&[("parent", "a/b")]))
        );
        // The split rule: what follows the `**` matches the path's last segments.
        assert_eq!(
            found(&table, Method::POST, "/v1test2/a/botSessions/botSessions"),
            ("create_bot_session", caps(&[("parent", "a/botSessions")]))
        );
        assert_eq!(
            found(&table, Method::POST, "/v1test2/botSessions"),
            ("create_bot_session", caps(&[("parent", "")]))
        );
        assert_eq!(
            found(&table, Method::PATCH, "/v1test2/x/y/botSessions/s1"),
            (
                "update_bot_session",
                caps(&[("name", "x/y/botSessions/s1")])
            )
        );
        assert_eq!(
            found(
                &table,
                Method::PATCH,
                "/v1test2/botSessions/botSessions/botSessions/s1"
            ),
            (
                "update_bot_session",
                caps(&[("name", "botSessions/botSessions/botSessions/s1")])
            )
        );
        assert!(matches!(
            table.find(&Method::PATCH, "/v1test2/x/botSessions"),
            Lookup::MethodNotAllowed { .. }
        ));
        assert!(matches!(
            table.find(&Method::PATCH, "/v1test2/x/sessions/s1"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn double_wildcard_followed_by_a_custom_verb() {
        let table = double_wildcard_table();
        assert_eq!(
            found(
                &table,
                Method::POST,
                "/v1/projects/p/dataStores/a/b/entries:purge"
            ),
            ("purge", caps(&[("parent", "projects/p/dataStores/a/b")]))
        );
        assert_eq!(
            found(
                &table,
                Method::POST,
                "/v1/projects/p/dataStores/entries:purge"
            ),
            ("purge", caps(&[("parent", "projects/p/dataStores")]))
        );
        // Without the verb the path is not this binding's.
        assert!(!matches!(
            table.find(&Method::POST, "/v1/projects/p/dataStores/a/entries"),
            Lookup::Found { .. }
        ));
    }

    #[test]
    fn double_wildcard_precedence_beside_ordinary_routes() {
        let table = double_wildcard_table();
        // At the segment after `documents/{doc}`, the literal `meta` beats the `**`.
        assert_eq!(
            found(&table, Method::GET, "/v1/projects/p/documents/d/meta"),
            ("meta", caps(&[("project", "p"), ("doc", "d")]))
        );
        // A `**` followed by more segments comes before a `**` that ends the template.
        assert_eq!(
            found(&table, Method::GET, "/v1/projects/p/documents/c/d/e").0,
            "list_documents"
        );
        // Too short for the template that continues after its `**`: the one ending in `**`.
        assert_eq!(
            found(&table, Method::GET, "/v1/projects/p/documents/c"),
            ("get_document", caps(&[("name", "projects/p/documents/c")]))
        );
        // Both `/v2/**/x/*` and `/v2/**/*` match; the `**` taking fewer segments wins.
        assert_eq!(
            found(&table, Method::GET, "/v2/a/x/b"),
            ("longer_tail", caps(&[("a", "a"), ("b", "b")]))
        );
        assert_eq!(
            found(&table, Method::GET, "/v2/a/y/b"),
            ("shorter_tail", caps(&[("a", "a/y"), ("b", "b")]))
        );
        match table.find(&Method::DELETE, "/v1test2/a/botSessions") {
            Lookup::MethodNotAllowed { allow } => assert_eq!(allow, vec![Method::POST]),
            other => panic!("expected 405, got {other:?}"),
        }
    }

    #[test]
    fn double_wildcard_conflicts() {
        let mut table = double_wildcard_table();
        // The same shape with other variables matches the same requests.
        let error = table
            .insert(
                Method::POST,
                template!(
                    "/v1test2/{other=**}/botSessions",
                    [L("v1test2"), Rest, L("botSessions")],
                    None,
                    [Var {
                        field: "other",
                        start: 1,
                        end: 2
                    }]
                ),
                "again",
            )
            .expect_err("conflict");
        assert_eq!(error.existing, "/v1test2/{parent=**}/botSessions");
        // Other shapes, methods or verbs are not conflicts.
        table
            .insert(
                Method::GET,
                template!(
                    "/v1test2/{parent=**}/botSessions",
                    [L("v1test2"), Rest, L("botSessions")],
                    None,
                    [Var {
                        field: "parent",
                        start: 1,
                        end: 2
                    }]
                ),
                "list_bot_sessions",
            )
            .expect("another method");
        table
            .insert(
                Method::POST,
                template!(
                    "/v1test2/{parent=**}/botSessions:batch",
                    [L("v1test2"), Rest, L("botSessions")],
                    Some("batch"),
                    [Var {
                        field: "parent",
                        start: 1,
                        end: 2
                    }]
                ),
                "batch",
            )
            .expect("another verb");
        table
            .insert(
                Method::POST,
                template!(
                    "/v1test2/{parent=**}",
                    [L("v1test2"), Rest],
                    None,
                    [Var {
                        field: "parent",
                        start: 1,
                        end: 2
                    }]
                ),
                "rest",
            )
            .expect("a `**` that ends the template");
        assert_eq!(
            found(&table, Method::POST, "/v1test2/a/botSessions:batch"),
            ("batch", caps(&[("parent", "a")]))
        );
        assert_eq!(
            found(&table, Method::POST, "/v1test2/a/b"),
            ("rest", caps(&[("parent", "a/b")]))
        );
    }

    proptest::proptest! {
        /// A path built to match a random template (with a `**` anywhere, or none) is matched,
        /// and the captures of two variables splitting the template at a random place give back
        /// the path's segments on either side of that place.
        #[test]
        fn generated_paths_match_their_template(
            shape in proptest::collection::vec(0u8..3, 1..6),
            words in proptest::collection::vec("[a-z0-9]{1,6}", 12),
            rest_at in proptest::option::of(0usize..7),
            rest_len in 0usize..4,
            split in 0usize..8,
        ) {
            let mut segments = Vec::new();
            for (i, kind) in shape.iter().enumerate() {
                segments.push(match kind {
                    0 => Seg::Literal(Box::leak(words[i].clone().into_boxed_str())),
                    _ => Seg::Any,
                });
            }
            if let Some(at) = rest_at {
                segments.insert(at.min(segments.len()), Seg::Rest);
            }
            let split = split.min(segments.len());
            let segments: &'static [Seg] = Box::leak(segments.into_boxed_slice());
            let vars: &'static [Var] = Box::leak(vec![
                Var { field: "head", start: 0, end: split },
                Var { field: "tail", start: split, end: segments.len() },
            ].into_boxed_slice());
            let template: &'static Template = Box::leak(Box::new(Template {
                text: "generated",
                segments,
                verb: None,
                vars,
            }));
            let mut path_segments = Vec::new();
            let mut split_at = 0;
            for (i, segment) in segments.iter().enumerate() {
                if i == split {
                    split_at = path_segments.len();
                }
                match segment {
                    Seg::Literal(l) => path_segments.push((*l).to_owned()),
                    Seg::Any => path_segments.push(format!("{}x", words[(i + 6) % 12])),
                    Seg::Rest => {
                        path_segments.extend(words.iter().take(rest_len).cloned());
                    }
                }
            }
            if split == segments.len() {
                split_at = path_segments.len();
            }
            let path = format!("/{}", path_segments.join("/"));
            let mut table = RouteTable::new();
            table.insert(Method::GET, template, ()).expect("insert");
            match table.find(&Method::GET, &path) {
                Lookup::Found { captures, .. } => {
                    let head = path_segments[..split_at].join("/");
                    let tail = path_segments[split_at..].join("/");
                    proptest::prop_assert_eq!(captures.get("head"), Some(head.as_str()));
                    proptest::prop_assert_eq!(captures.get("tail"), Some(tail.as_str()));
                }
                other => proptest::prop_assert!(false, "{} did not match: {:?}", path, other),
            }
        }
    }
}
