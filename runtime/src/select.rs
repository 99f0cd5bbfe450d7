//! Which routes a rule of an edge policy applies to: by RPC name or by path pattern, first
//! match wins, with a default.

use std::fmt;
use std::str::FromStr;

use crate::call::RouteInfo;
use crate::percent::{self, Plus, Slash};

/// The routes one rule covers.
///
/// Written as text (the stock gateway's config uses the same forms):
/// - `acme.library.v1.Library.GetBook`: one RPC by full name;
/// - `acme.library.v1.Library.*`, `acme.library.*`: every RPC under a service or package;
/// - `/v1/shelves/*/books/**`, `GET /v1/**`: requests whose path matches, optionally with
///   one HTTP method; `*` is one segment, `**` (last) any number, `/v1/**` matches `/v1` too;
/// - `*`: every route.
///
/// RPC names match the binding the gateway routed the request to ([`RouteInfo::of`]); a
/// request with no binding (outside a gateway's route layers) matches only path patterns.
///
/// Path patterns compare each segment as the service will see it: percent-decoded, so that
/// `/v1/shelves/%70rivate` is covered by `/v1/shelves/private` (the captured value a service
/// receives is `private` either way). The method of a routed request is its binding's: a
/// WebSocket upgrade (a `GET`) to a `POST` binding is covered by `POST …` patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSelector {
    kind: Kind,
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Any,
    /// A full name, or a prefix ending in `.` when the pattern ended in `.*`.
    Rpc {
        name: String,
        prefix: bool,
    },
    Path {
        method: Option<http::Method>,
        segments: Vec<PathSegment>,
        /// Ends in `**`.
        rest: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PathSegment {
    /// A segment's decoded text.
    Literal(String),
    Any,
}

/// Why a route selector's text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route selector `{text}`: {problem}")]
pub struct SelectorError {
    text: String,
    problem: &'static str,
}

impl FromStr for RouteSelector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, SelectorError> {
        let error = |problem| SelectorError {
            text: text.to_owned(),
            problem,
        };
        let trimmed = text.trim();
        let kind = if trimmed == "*" {
            Kind::Any
        } else if let Some((method, path)) = trimmed.split_once(' ') {
            let method = http::Method::from_bytes(method.as_bytes())
                .map_err(|_| error("the text before the path is not an HTTP method"))?;
            path_kind(Some(method), path.trim_start()).map_err(error)?
        } else if trimmed.starts_with('/') {
            path_kind(None, trimmed).map_err(error)?
        } else {
            rpc_kind(trimmed).map_err(error)?
        };
        Ok(RouteSelector {
            kind,
            text: trimmed.to_owned(),
        })
    }
}

fn rpc_kind(text: &str) -> Result<Kind, &'static str> {
    let (name, prefix) = match text.strip_suffix(".*") {
        Some(scope) => (format!("{scope}."), true),
        None => (text.to_owned(), false),
    };
    let valid = name.trim_end_matches('.').split('.').all(|part| {
        !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    if !valid {
        return Err("an RPC pattern is `package.Service.Method`, or a name followed by `.*`");
    }
    Ok(Kind::Rpc { name, prefix })
}

fn path_kind(method: Option<http::Method>, text: &str) -> Result<Kind, &'static str> {
    let Some(body) = text.strip_prefix('/') else {
        return Err("a path pattern starts with `/`");
    };
    let mut segments = Vec::new();
    let mut rest = false;
    let parts: Vec<&str> = if body.is_empty() {
        Vec::new()
    } else {
        body.split('/').collect()
    };
    for (index, part) in parts.iter().enumerate() {
        match *part {
            "**" if index + 1 == parts.len() => rest = true,
            "**" => return Err("`**` may only end a path pattern"),
            "*" => segments.push(PathSegment::Any),
            "" => return Err("a path pattern has an empty segment"),
            literal if literal.contains('*') => {
                return Err("`*` stands for a whole segment, not part of one");
            }
            literal => {
                let decoded = percent::decode(literal, Plus::Literal, Slash::Decode)
                    .map_err(|_| "a path pattern's segment is not valid percent-encoded UTF-8")?;
                if decoded.contains('/') {
                    return Err("a path pattern's segment cannot hold an encoded `/`");
                }
                segments.push(PathSegment::Literal(decoded.into_owned()));
            }
        }
    }
    Ok(Kind::Path {
        method,
        segments,
        rest,
    })
}

impl RouteSelector {
    /// A selector of every route.
    pub fn any() -> Self {
        RouteSelector {
            kind: Kind::Any,
            text: "*".to_owned(),
        }
    }

    /// Whether `request` is one this selector covers.
    pub fn matches<B>(&self, request: &http::Request<B>) -> bool {
        self.matches_parts(
            RouteInfo::of(request),
            request.method(),
            request.uri().path(),
        )
    }

    /// Whether a request with this route (if routed), method and path is covered.
    pub fn matches_parts(
        &self,
        route: Option<&RouteInfo>,
        method: &http::Method,
        path: &str,
    ) -> bool {
        match &self.kind {
            Kind::Any => true,
            Kind::Rpc { name, prefix } => route.is_some_and(|route| {
                if *prefix {
                    route.rpc.starts_with(name.as_str())
                } else {
                    route.rpc == name
                }
            }),
            Kind::Path {
                method: wanted,
                segments,
                rest,
            } => {
                // A routed request is its binding's method (a WebSocket upgrade is a GET
                // to whichever binding it opens).
                let method = route.map_or(method.as_str(), |route| route.method);
                if wanted
                    .as_ref()
                    .is_some_and(|wanted| wanted.as_str() != method)
                {
                    return false;
                }
                path_matches(segments, *rest, path)
            }
        }
    }

    /// Whether this selector names RPCs (and so can be checked against the compiled services).
    pub fn rpc_pattern(&self) -> Option<&str> {
        match &self.kind {
            Kind::Rpc { .. } => Some(&self.text),
            _ => None,
        }
    }

    /// Whether the RPC `rpc` (a full name) is covered, for selectors that name RPCs; path
    /// selectors and `*` answer `true` when they could cover it.
    pub fn covers_rpc(&self, rpc: &str) -> bool {
        match &self.kind {
            Kind::Rpc { name, prefix: true } => rpc.starts_with(name.as_str()),
            Kind::Rpc {
                name,
                prefix: false,
            } => rpc == name,
            Kind::Any | Kind::Path { .. } => true,
        }
    }
}

fn path_matches(segments: &[PathSegment], rest: bool, path: &str) -> bool {
    let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
    if path == "/" {
        // The root path has no segment.
        parts.next();
    }
    for segment in segments {
        match (segment, parts.next()) {
            (PathSegment::Any, Some(part)) if !part.is_empty() => {}
            (PathSegment::Literal(literal), Some(part)) if segment_is(part, literal) => {}
            _ => return false,
        }
    }
    rest || parts.next().is_none()
}

/// Whether a path segment, as the client encoded it, is `literal` once decoded. A segment that
/// does not decode is no literal (the router refuses such a path with 400 anyway).
fn segment_is(part: &str, literal: &str) -> bool {
    if !part.contains('%') {
        return part == literal;
    }
    percent::decode(part, Plus::Literal, Slash::Decode).is_ok_and(|decoded| decoded == literal)
}

impl fmt::Display for RouteSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A value per route: rules tried in order, the first whose selector matches wins, else the
/// default. What every edge policy is configured with.
///
/// ```
/// use protogate::{PerRoute, RouteSelector};
///
/// let limits: PerRoute<u32> = PerRoute::new(100)
///     .rule("acme.library.v1.Library.CreateBook".parse::<RouteSelector>()?, 10)
///     .rule("GET /v1/**".parse::<RouteSelector>()?, 1000);
/// let request = http::Request::get("/v1/shelves/1").body(()).unwrap();
/// assert_eq!(*limits.get(&request), 1000);
/// # Ok::<(), protogate::SelectorError>(())
/// ```
#[derive(Clone, Debug)]
pub struct PerRoute<T> {
    rules: Vec<(RouteSelector, T)>,
    default: T,
}

impl<T> PerRoute<T> {
    /// `default` for every route.
    pub fn new(default: T) -> Self {
        PerRoute {
            rules: Vec::new(),
            default,
        }
    }

    /// `value` for the routes `selector` covers, unless an earlier rule covers them.
    pub fn rule(mut self, selector: RouteSelector, value: T) -> Self {
        self.rules.push((selector, value));
        self
    }

    /// The value for `request`.
    pub fn get<B>(&self, request: &http::Request<B>) -> &T {
        self.get_parts(
            RouteInfo::of(request),
            request.method(),
            request.uri().path(),
        )
    }

    /// The value for a request with this route (if routed), method and path.
    pub fn get_parts(&self, route: Option<&RouteInfo>, method: &http::Method, path: &str) -> &T {
        self.rules
            .iter()
            .find(|(selector, _)| selector.matches_parts(route, method, path))
            .map_or(&self.default, |(_, value)| value)
    }

    /// The default value.
    pub fn default_value(&self) -> &T {
        &self.default
    }

    /// The rules, in order.
    pub fn rules(&self) -> impl Iterator<Item = (&RouteSelector, &T)> {
        self.rules.iter().map(|(selector, value)| (selector, value))
    }

    /// Every value, the rules' and the default.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.rules
            .iter()
            .map(|(_, value)| value)
            .chain([&self.default])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(text: &str) -> RouteSelector {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn get(path: &str) -> (http::Method, String) {
        (http::Method::GET, path.to_owned())
    }

    fn covers(text: &str, (method, path): (http::Method, String)) -> bool {
        selector(text).matches_parts(None, &method, &path)
    }

    #[test]
    fn path_patterns_match_whole_segments() {
        assert!(covers("/v1/books", get("/v1/books")));
        assert!(!covers("/v1/books", get("/v1/books/1")));
        assert!(covers("/v1/*/books", get("/v1/shelf/books")));
        assert!(!covers("/v1/*/books", get("/v1//books")));
        assert!(covers("/v1/**", get("/v1")));
        assert!(covers("/v1/**", get("/v1/a/b/c")));
        assert!(!covers("/v1/**", get("/v2/a")));
        assert!(covers("/**", get("/")));
        assert!(covers("GET /v1/**", get("/v1/x")));
        assert!(!covers("POST /v1/**", get("/v1/x")));
    }

    #[test]
    fn path_patterns_compare_segments_decoded() {
        // A service receives `private` either way: the rule covers both spellings.
        assert!(covers("/v1/shelves/private", get("/v1/shelves/%70rivate")));
        assert!(covers(
            "/v1/shelves/private",
            get("/v1/%73helves/priv%61te")
        ));
        assert!(covers(
            "GET /v1/shelves/private/**",
            get("/v1/shelves/%70rivate/x")
        ));
        // A pattern may spell a segment encoded; it means the decoded text.
        assert!(covers("/v1/a%20b", get("/v1/a b")));
        assert!(covers("/v1/a%20b", get("/v1/a%20b")));
        // An encoded slash is part of a segment, never a separator.
        assert!(!covers("/v1/a/b", get("/v1/a%2Fb")));
        assert!(covers("/v1/*", get("/v1/a%2Fb")));
        // A segment that does not decode is no literal.
        assert!(!covers("/v1/x", get("/v1/%zz")));
        for (text, problem) in [("/v1/%zz", "percent-encoded"), ("/v1/a%2Fb", "encoded `/`")] {
            let error = text.parse::<RouteSelector>().expect_err(text).to_string();
            assert!(error.contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn a_routed_request_is_matched_by_its_bindings_method() {
        // A WebSocket upgrade is a GET to a POST binding.
        let info = RouteInfo {
            method: "POST",
            rpc: "acme.chat.v1.Chat.Talk",
            template: crate::route::Template {
                text: "/v1/talk",
                segments: &[],
                verb: None,
                vars: &[],
            },
            unbound: false,
        };
        let upgrade =
            |text: &str| selector(text).matches_parts(Some(&info), &http::Method::GET, "/v1/talk");
        assert!(upgrade("POST /v1/**"));
        assert!(!upgrade("GET /v1/**"));
        assert!(upgrade("/v1/talk"));
    }

    #[test]
    fn rpc_patterns_need_a_route() {
        let info = RouteInfo {
            method: "GET",
            rpc: "acme.library.v1.Library.GetBook",
            template: crate::route::Template {
                text: "/v1/books/{id}",
                segments: &[],
                verb: None,
                vars: &[],
            },
            unbound: false,
        };
        let matches = |text: &str| {
            selector(text).matches_parts(Some(&info), &http::Method::GET, "/v1/books/1")
        };
        assert!(matches("acme.library.v1.Library.GetBook"));
        assert!(matches("acme.library.v1.Library.*"));
        assert!(matches("acme.*"));
        assert!(!matches("acme.library.v1.Library.Get"));
        assert!(!matches("acme.lib.*"));
        assert!(!selector("acme.*").matches_parts(None, &http::Method::GET, "/v1/books/1"));
        assert!(matches("*"));
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        for (text, problem) in [
            ("/v1/**/x", "`**` may only end"),
            ("/v1/bo*", "whole segment"),
            ("GET v1/books", "starts with `/`"),
            ("/v1//books", "empty segment"),
            ("v1/books", "RPC pattern"),
            ("acme..Get", "RPC pattern"),
            ("G(T /v1", "HTTP method"),
        ] {
            let error = text.parse::<RouteSelector>().expect_err(text).to_string();
            assert!(error.contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let table = PerRoute::new("default")
            .rule(selector("/v1/books/**"), "books")
            .rule(selector("/v1/**"), "v1");
        let value = |path| *table.get_parts(None, &http::Method::GET, path);
        assert_eq!(value("/v1/books/1"), "books");
        assert_eq!(value("/v1/shelves"), "v1");
        assert_eq!(value("/v2"), "default");
    }
}
