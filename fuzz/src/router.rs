//! The runtime's router (`runtime/src/route.rs`) against a naive reference matcher.
//!
//! The reference tries every template on its own and ranks each match by the choices it made
//! segment by segment: a literal before `*`, `*` before a `**` followed by more segments (the
//! fewer segments that `**` takes the better), and a trailing `**` last; a template that ends
//! where the path ends comes before one that goes on with a `**`. The best-ranked match of the
//! request's method and verb wins, as http.proto's precedence says; the router, a trie walked
//! depth-first, must agree on every path.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use arbitrary::Unstructured;
use http::Method;
use protogate::__codegen::{Seg, Template, Var};
use protogate::fuzzing::{Lookup, RouteTable};

const LITERALS: &[&str] = &["a", "b", "v1", "x.y"];
const VERBS: &[Option<&str>] = &[None, None, Some("do"), Some("undo")];
const FIELDS: &[&str] = &["name", "parent", "x.y"];
const METHODS: &[Method] = &[Method::GET, Method::POST, Method::DELETE];
/// Path segments besides the literals: empty, odd, percent-encoded, bad escapes, verbs.
const PATH_SEGMENTS: &[&str] = &[
    "", "c", "a:do", "do", "%2F", "%2f", "a%2Fb", "%zz", "%", "%C3%A9", "%FF", "a+b", "v1:undo",
    ":do", "é",
];

/// The interned parts of a template.
type Key = (
    Vec<Seg>,
    Option<&'static str>,
    Vec<(&'static str, usize, usize)>,
);

/// Templates made so far: the route table takes `&'static` ones, so each distinct template is
/// leaked once and reused (their alphabet is small, so there are few). A static, never dropped,
/// keeps them reachable to the end, as a leak checker wants.
static TEMPLATES: LazyLock<Mutex<HashMap<Key, &'static Template>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn intern(key: Key) -> &'static Template {
    let mut templates = TEMPLATES.lock().unwrap_or_else(PoisonError::into_inner);
    let template: &mut &'static Template = templates.entry(key).or_insert_with_key(|key| {
        let (segments, verb, vars) = key;
        let text = describe(segments, *verb);
        Box::leak(Box::new(Template {
            text: Box::leak(text.into_boxed_str()),
            segments: Box::leak(segments.clone().into_boxed_slice()),
            verb: *verb,
            vars: Box::leak(
                vars.iter()
                    .map(|&(field, start, end)| Var { field, start, end })
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            ),
        }))
    });
    template
}

fn describe(segments: &[Seg], verb: Option<&str>) -> String {
    let mut text = String::new();
    for segment in segments {
        text.push('/');
        text.push_str(match segment {
            Seg::Literal(literal) => literal,
            Seg::Any => "*",
            Seg::Rest => "**",
        });
    }
    if let Some(verb) = verb {
        text.push(':');
        text.push_str(verb);
    }
    text
}

fn template(u: &mut Unstructured<'_>) -> arbitrary::Result<&'static Template> {
    let len = u.int_in_range(1..=4)?;
    let rest = if u.ratio(1, 3)? {
        Some(u.choose_index(len)?)
    } else {
        None
    };
    let mut segments = Vec::with_capacity(len);
    for index in 0..len {
        segments.push(if rest == Some(index) {
            Seg::Rest
        } else if u.ratio(1, 4)? {
            Seg::Any
        } else {
            Seg::Literal(u.choose(LITERALS)?)
        });
    }
    let mut vars = Vec::new();
    let mut at = 0;
    while at < len {
        if u.ratio(1, 3)? {
            let end = u.int_in_range(at + 1..=len)?;
            vars.push((*u.choose(FIELDS)?, at, end));
            at = end;
        } else {
            at += 1;
        }
    }
    Ok(intern((segments, *u.choose(VERBS)?, vars)))
}

/// A path, most often one made to fit a template of the table.
fn path(rows: &[Row], u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let mut segments: Vec<String> = Vec::new();
    let mut verb = None;
    if !rows.is_empty() && u.ratio(3, 4)? {
        let row = u.choose(rows)?;
        for segment in row.template.segments {
            match segment {
                Seg::Literal(literal) if u.ratio(7, 8)? => segments.push((*literal).to_owned()),
                Seg::Rest => {
                    for _ in 0..u.int_in_range(0..=3)? {
                        segments.push(any_segment(u)?);
                    }
                }
                _ => segments.push(any_segment(u)?),
            }
        }
        verb = row.template.verb;
    } else {
        for _ in 0..u.int_in_range(0..=5)? {
            segments.push(any_segment(u)?);
        }
    }
    let mut path = format!("/{}", segments.join("/"));
    if u.ratio(1, 8)? {
        path = path.trim_start_matches('/').to_owned();
    }
    match (verb, u.int_in_range(0..=3)?) {
        (Some(verb), 0..=2) => path = format!("{path}:{verb}"),
        (_, 3) => path = format!("{path}:{}", u.choose(&["do", "", "x"])?),
        _ => {}
    }
    Ok(path)
}

fn any_segment(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(if u.arbitrary()? {
        (*u.choose(LITERALS)?).to_owned()
    } else {
        (*u.choose(PATH_SEGMENTS)?).to_owned()
    })
}

struct Row {
    method: Method,
    template: &'static Template,
}

/// Random templates with random methods go into a table (the reference predicting exactly which
/// are refused as conflicts), then random paths, most made to fit some template, are looked up
/// with random methods: the router's answer (the binding found and its captures, 405 with its
/// `Allow` list, 404, or a bad path) is the reference's.
pub fn router(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let mut table = RouteTable::new();
    let mut rows: Vec<Row> = Vec::new();
    for _ in 0..u.int_in_range(1..=8)? {
        let method = u.choose(METHODS)?.clone();
        let template = template(u)?;
        let conflict = rows.iter().any(|row| {
            row.method == method
                && row.template.segments == template.segments
                && row.template.verb == template.verb
        });
        let inserted = table.insert(method.clone(), template, rows.len());
        assert_eq!(
            inserted.is_err(),
            conflict,
            "{method} {} into {:?}: {inserted:?}",
            template.text,
            table
        );
        if !conflict {
            rows.push(Row { method, template });
        }
    }
    for _ in 0..u.int_in_range(1..=8)? {
        let method = u.choose(METHODS)?.clone();
        let path = path(&rows, u)?;
        let got = match table.find(&method, &path) {
            Lookup::Found { value, captures } => Answer::Found(
                *value,
                captures
                    .iter()
                    .map(|(field, value)| (field, value.to_owned()))
                    .collect(),
            ),
            Lookup::MethodNotAllowed { allow } => Answer::NotAllowed(allow),
            Lookup::NotFound => Answer::NotFound,
            Lookup::BadPath(_) => Answer::BadPath,
        };
        let expected = reference(&rows, &method, &path);
        assert_eq!(got, expected, "{method} {path} in {:?}", table);
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Found(usize, Vec<(&'static str, String)>),
    NotAllowed(Vec<Method>),
    NotFound,
    BadPath,
}

/// One choice a match made at a segment; matches compare by their choices in order.
type Rank = Vec<(u8, usize)>;

/// How `template` matches `segments`: its rank, and where each template segment begins in the
/// path (one more entry for the end).
fn matches(template: &Template, segments: &[&str]) -> Option<(Rank, Vec<usize>)> {
    let len = template.segments.len();
    let rest = template.segments.iter().position(|s| *s == Seg::Rest);
    let taken = match rest {
        Some(_) => segments.len().checked_sub(len - 1)?,
        None if segments.len() == len => 1,
        None => return None,
    };
    let mut rank = Vec::new();
    let mut starts = Vec::new();
    let mut at = 0;
    for (index, segment) in template.segments.iter().enumerate() {
        starts.push(at);
        match segment {
            Seg::Literal(literal) => {
                if segments[at] != *literal {
                    return None;
                }
                rank.push((0, 0));
                at += 1;
            }
            Seg::Any => {
                if segments[at].is_empty() {
                    return None;
                }
                rank.push((1, 0));
                at += 1;
            }
            Seg::Rest if index == len - 1 => {
                rank.push((3, 0));
                at += taken;
            }
            Seg::Rest => {
                rank.push((2, taken));
                at += taken;
            }
        }
    }
    starts.push(at);
    if rest != Some(len - 1) {
        // Ends where the path ends: tried before anything that goes on from here.
        rank.push((0, 0));
    }
    Some((rank, starts))
}

fn reference(rows: &[Row], method: &Method, path: &str) -> Answer {
    let Some(rest) = path.strip_prefix('/') else {
        return Answer::NotFound;
    };
    let whole: Vec<&str> = rest.split('/').collect();
    let last = whole.len() - 1;
    let with_verb = whole[last].rsplit_once(':').map(|(base, verb)| {
        let mut segments = whole.clone();
        segments[last] = base;
        (segments, verb)
    });
    let best = |segments: &[&str], verb: Option<&str>, method: Option<&Method>| {
        rows.iter()
            .enumerate()
            .filter(|(_, row)| row.template.verb == verb && method.is_none_or(|m| row.method == *m))
            .filter_map(|(index, row)| {
                matches(row.template, segments).map(|(rank, starts)| (rank, index, starts))
            })
            .min_by(|a, b| a.0.cmp(&b.0))
    };
    if let Some((segments, verb)) = &with_verb
        && let Some((_, index, starts)) = best(segments, Some(*verb), Some(method))
    {
        return found(rows, index, &starts, segments);
    }
    if let Some((_, index, starts)) = best(&whole, None, Some(method)) {
        return found(rows, index, &starts, &whole);
    }
    let mut allow: Vec<Method> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let fits = with_verb.as_ref().is_some_and(|(segments, verb)| {
            row.template.verb == Some(*verb) && matches(row.template, segments).is_some()
        }) || (row.template.verb.is_none() && matches(row.template, &whole).is_some());
        if fits {
            allow.push(rows[index].method.clone());
        }
    }
    if allow.is_empty() {
        return Answer::NotFound;
    }
    allow.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    allow.dedup();
    Answer::NotAllowed(allow)
}

fn found(rows: &[Row], index: usize, starts: &[usize], segments: &[&str]) -> Answer {
    let template = rows[index].template;
    let mut captures = Vec::new();
    for var in template.vars {
        let raw = segments[starts[var.start]..starts[var.end]].join("/");
        let single = var.end == var.start + 1 && template.segments[var.start] != Seg::Rest;
        match percent_decode(&raw, !single) {
            Some(value) => captures.push((var.field, value)),
            None => return Answer::BadPath,
        }
    }
    if segments.iter().any(|s| percent_decode(s, false).is_none()) {
        return Answer::BadPath;
    }
    Answer::Found(index, captures)
}

/// Percent-decoding as http.proto says for path variables: `+` is itself, and an encoded `/`
/// stays encoded (as written) in a multi-segment value; `None` for a bad escape or bytes that
/// are not UTF-8.
fn percent_decode(raw: &str, keep_slash: bool) -> Option<String> {
    let mut out = Vec::new();
    let mut rest = raw.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        if byte != b'%' {
            out.push(byte);
            rest = after;
            continue;
        }
        let escape = after.get(..2)?;
        let text = std::str::from_utf8(escape).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let decoded = u8::from_str_radix(text, 16).ok()?;
        if decoded == b'/' && keep_slash {
            out.extend_from_slice(&rest[..3]);
        } else {
            out.push(decoded);
        }
        rest = &after[2..];
    }
    String::from_utf8(out).ok()
}
