//! Two surfaces compared as a REST client sees them: each difference breaking or compatible,
//! named in proto terms (the element and its place) and in HTTP terms (the binding and the
//! parameter or JSON property).
//!
//! Bindings are paired by the requests they match (method and flattened template), then, for
//! those left, by RPC (a changed verb or template). Inside a pair, what a client sends and what
//! it receives are compared apart, because the same change reads differently each way:
//!
//! | change | in what a client sends | in what it receives |
//! |---|---|---|
//! | field added | compatible (breaking when `REQUIRED`) | compatible |
//! | field removed, renamed (JSON name), moved | breaking | breaking |
//! | field newly `REQUIRED` | breaking | compatible |
//! | number widened (`int32` → `int64`, `float` → `double`) | compatible: proto3 JSON readers take numbers and strings for every integer | breaking: `int64` is written as a string |
//! | enum value added | compatible | compatible |
//! | enum value removed | breaking | compatible |
//! | field moved into a oneof (now exclusive with a sibling) | breaking | compatible |
//! | field moved out of a oneof | compatible | breaking |
//!
//! Messages are compared by structure, not by name: a message renamed with the same fields is
//! the same JSON, and an RPC renamed behind the same route is the same REST call.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::Path;

use super::describe::is_opaque;
use super::{
    BindingSurface, FieldSurface, MessageSurface, Payload, Surface, SurfaceError, ValueType,
};

/// How a change affects existing clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Existing clients keep working.
    Compatible,
    /// Some existing client may fail, or be misunderstood.
    Breaking,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Compatible => "compatible",
            Severity::Breaking => "BREAKING",
        })
    }
}

/// What changed. Its [`ChangeKind::name`] starts every change's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A binding of the previous surface serves no more.
    BindingRemoved,
    /// A new binding.
    BindingAdded,
    /// The same route is served by another RPC.
    RpcChanged,
    /// A binding's HTTP method changed.
    MethodChanged,
    /// A binding's path template matches other requests.
    PathChanged,
    /// The RPC's streaming shape changed.
    ShapeChanged,
    /// `body` changed.
    BodyChanged,
    /// `response_body` changed.
    ResponseBodyChanged,
    /// A path variable sets another field.
    PathVariableChanged,
    /// A field is set from another part of the request (path, query or body).
    FieldMoved,
    /// A query parameter is no longer read.
    QueryParameterRemoved,
    /// A new query parameter.
    QueryParameterAdded,
    /// A field is gone.
    FieldRemoved,
    /// A new field.
    FieldAdded,
    /// A field's JSON name changed (renamed, or a new `json_name`).
    JsonNameChanged,
    /// A field's number changed, its JSON name did not.
    FieldNumberChanged,
    /// A value's type changed.
    TypeChanged,
    /// A value became repeated, a map, or singular.
    CardinalityChanged,
    /// A field became `REQUIRED`.
    FieldRequired,
    /// A field is no longer `REQUIRED`.
    FieldNoLongerRequired,
    /// A field became `OUTPUT_ONLY` (left out of requests) or `INPUT_ONLY` (out of responses).
    FieldHidden,
    /// A field joined, left or changed oneof.
    OneofChanged,
    /// An enum value is gone.
    EnumValueRemoved,
    /// A new enum value.
    EnumValueAdded,
    /// An enum value's name changed (the same number).
    EnumValueRenamed,
}

impl ChangeKind {
    /// The kind's name, as ids and reports write it (`field-removed`).
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::BindingRemoved => "binding-removed",
            ChangeKind::BindingAdded => "binding-added",
            ChangeKind::RpcChanged => "rpc-changed",
            ChangeKind::MethodChanged => "method-changed",
            ChangeKind::PathChanged => "path-changed",
            ChangeKind::ShapeChanged => "shape-changed",
            ChangeKind::BodyChanged => "body-changed",
            ChangeKind::ResponseBodyChanged => "response-body-changed",
            ChangeKind::PathVariableChanged => "path-variable-changed",
            ChangeKind::FieldMoved => "field-moved",
            ChangeKind::QueryParameterRemoved => "query-parameter-removed",
            ChangeKind::QueryParameterAdded => "query-parameter-added",
            ChangeKind::FieldRemoved => "field-removed",
            ChangeKind::FieldAdded => "field-added",
            ChangeKind::JsonNameChanged => "json-name-changed",
            ChangeKind::FieldNumberChanged => "field-number-changed",
            ChangeKind::TypeChanged => "type-changed",
            ChangeKind::CardinalityChanged => "cardinality-changed",
            ChangeKind::FieldRequired => "field-required",
            ChangeKind::FieldNoLongerRequired => "field-no-longer-required",
            ChangeKind::FieldHidden => "field-hidden",
            ChangeKind::OneofChanged => "oneof-changed",
            ChangeKind::EnumValueRemoved => "enum-value-removed",
            ChangeKind::EnumValueAdded => "enum-value-added",
            ChangeKind::EnumValueRenamed => "enum-value-renamed",
        }
    }
}

/// One place in the HTTP surface where a change shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// How the change reads here.
    pub severity: Severity,
    /// The binding and the part of it: ``GET /v1/{name=books/*}: response property `pageCount` ``.
    pub http: String,
}

/// One change of the surface, with every place it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Stable id: the kind and the proto element (`field-removed:acme.v1.Book.title`); list it
    /// in an acceptance file to accept the change.
    pub id: String,
    /// What changed.
    pub kind: ChangeKind,
    /// The proto element: a field, enum value or RPC full name, or an RPC's binding
    /// (`acme.v1.Books.Get@GET:/v1/{name=books/*}`).
    pub element: String,
    /// Where the element is declared: in the current protos when it still exists there, else in
    /// the previous surface.
    pub location: String,
    /// What changed, in a sentence.
    pub summary: String,
    /// Where it shows in the HTTP surface.
    pub occurrences: Vec<Occurrence>,
    /// Whether an acceptance file lists it.
    pub accepted: bool,
}

impl Change {
    /// The worst of its occurrences.
    pub fn severity(&self) -> Severity {
        self.occurrences
            .iter()
            .map(|o| o.severity)
            .max()
            .unwrap_or(Severity::Compatible)
    }
}

/// Every change between two surfaces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Breaking changes first, then by id.
    pub changes: Vec<Change>,
}

impl Report {
    /// The breaking changes, accepted or not.
    pub fn breaking(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| c.severity() == Severity::Breaking)
    }

    /// The breaking changes no acceptance covers: what fails a check.
    pub fn unaccepted(&self) -> impl Iterator<Item = &Change> {
        self.breaking().filter(|c| !c.accepted)
    }

    /// Whether every breaking change is accepted.
    pub fn passes(&self) -> bool {
        self.unaccepted().next().is_none()
    }

    /// Marks the changes `acceptance` lists as accepted, and returns the ids it lists that
    /// match no change (stale entries, or typing mistakes).
    pub fn accept(&mut self, acceptance: &Acceptance) -> Vec<String> {
        for change in &mut self.changes {
            change.accepted = acceptance.ids.contains(&change.id);
        }
        acceptance
            .ids
            .iter()
            .filter(|id| !self.changes.iter().any(|c| &c.id == *id))
            .cloned()
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            let severity = change.severity();
            let accepted = if change.accepted { " (accepted)" } else { "" };
            writeln!(f, "{severity}{accepted} {}", change.id)?;
            writeln!(
                f,
                "  {} ({}): {}",
                change.element, change.location, change.summary
            )?;
            for occurrence in &change.occurrences {
                if occurrence.severity == severity {
                    writeln!(f, "    {}", occurrence.http)?;
                } else {
                    writeln!(f, "    {} [{}]", occurrence.http, occurrence.severity)?;
                }
            }
        }
        let breaking = self.breaking().count();
        let accepted = self.breaking().filter(|c| c.accepted).count();
        let compatible = self.changes.len() - breaking;
        if self.changes.is_empty() {
            writeln!(f, "no change to the REST surface")
        } else {
            writeln!(
                f,
                "{breaking} breaking ({accepted} accepted), {compatible} compatible"
            )
        }
    }
}

/// Breaking changes accepted on purpose: one change id a line, as a report prints them; blank
/// lines and `#` comments are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acceptance {
    ids: BTreeSet<String>,
}

impl Acceptance {
    /// Reads the ids of an acceptance file's text.
    pub fn parse(text: &str) -> Acceptance {
        let ids = text
            .lines()
            .map(|line| line.split_once('#').map_or(line, |(id, _)| id).trim())
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect();
        Acceptance { ids }
    }

    /// Reads an acceptance file.
    pub fn read(path: impl AsRef<Path>) -> Result<Acceptance, SurfaceError> {
        let path = path.as_ref();
        std::fs::read_to_string(path)
            .map(|text| Acceptance::parse(&text))
            .map_err(|source| SurfaceError::Read {
                path: path.to_owned(),
                source,
            })
    }

    /// The ids it lists.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }
}

/// Compares the surface of the current protos (`new`) with a previous one (`old`).
pub fn compare(old: &Surface, new: &Surface) -> Report {
    let mut changes = Changes::default();
    let pairs = pair(&old.bindings, &new.bindings);
    for (o, n) in pairs {
        match (o, n) {
            (Some(o), Some(n)) => {
                let mut pair = PairCompare {
                    old,
                    new,
                    o,
                    n,
                    label: format!("{} {}", n.method, n.template),
                    changes: &mut changes,
                };
                pair.run();
            }
            (Some(o), None) => {
                let still = new.bindings.iter().any(|b| b.rpc == o.rpc);
                let why = if still {
                    format!("no longer served; `{}` keeps its other bindings", o.rpc)
                } else {
                    format!("no longer served (`{}` has no binding left)", o.rpc)
                };
                changes.add(
                    ChangeKind::BindingRemoved,
                    binding_element(o),
                    o.location.clone(),
                    why,
                    Severity::Breaking,
                    format!("{} {}", o.method, o.template),
                );
            }
            (None, Some(n)) => changes.add(
                ChangeKind::BindingAdded,
                binding_element(n),
                n.location.clone(),
                format!("new binding of `{}`", n.rpc),
                Severity::Compatible,
                format!("{} {}", n.method, n.template),
            ),
            (None, None) => {}
        }
    }
    changes.into_report()
}

/// `rpc@METHOD:template`: a binding as an element of a change id.
fn binding_element(binding: &BindingSurface) -> String {
    format!("{}@{}:{}", binding.rpc, binding.method, binding.template)
}

/// Bindings paired: by route first, then by RPC among those left; the rest alone.
type Pairs<'a> = Vec<(Option<&'a BindingSurface>, Option<&'a BindingSurface>)>;

fn pair<'a>(old: &'a [BindingSurface], new: &'a [BindingSurface]) -> Pairs<'a> {
    let mut taken = vec![false; new.len()];
    let mut pairs: Pairs<'a> = Vec::new();
    let mut left = Vec::new();
    for o in old {
        match (0..new.len()).find(|&i| !taken[i] && new[i].route == o.route) {
            Some(i) => {
                taken[i] = true;
                pairs.push((Some(o), Some(&new[i])));
            }
            None => left.push(o),
        }
    }
    for o in left {
        match (0..new.len()).find(|&i| !taken[i] && new[i].rpc == o.rpc) {
            Some(i) => {
                taken[i] = true;
                pairs.push((Some(o), Some(&new[i])));
            }
            None => pairs.push((Some(o), None)),
        }
    }
    for (i, n) in new.iter().enumerate() {
        if !taken[i] {
            pairs.push((None, Some(n)));
        }
    }
    pairs
}

/// Changes collected by id, each with its occurrences.
#[derive(Default)]
struct Changes {
    by_id: BTreeMap<String, Change>,
}

impl Changes {
    fn add(
        &mut self,
        kind: ChangeKind,
        element: String,
        location: String,
        summary: String,
        severity: Severity,
        http: String,
    ) {
        let id = format!("{}:{element}", kind.name());
        let change = self.by_id.entry(id.clone()).or_insert_with(|| Change {
            id,
            kind,
            element,
            location,
            summary,
            occurrences: Vec::new(),
            accepted: false,
        });
        let occurrence = Occurrence { severity, http };
        if !change.occurrences.contains(&occurrence) {
            change.occurrences.push(occurrence);
        }
    }

    fn into_report(self) -> Report {
        let mut changes: Vec<Change> = self.by_id.into_values().collect();
        changes.sort_by(|a, b| b.severity().cmp(&a.severity()).then(a.id.cmp(&b.id)));
        Report { changes }
    }
}

/// Which part of a request or response a value travels in: what decides how a change reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The request body, as JSON.
    Body,
    /// A query parameter, as text.
    Query,
    /// A path variable, as text.
    Path,
    /// The response body, as JSON.
    Response,
}

impl Part {
    /// Whether the client writes it (rather than reads it).
    fn sent(self) -> bool {
        !matches!(self, Part::Response)
    }
}

/// A place in the HTTP surface: a part of a binding, and a JSON path in it.
#[derive(Clone)]
struct Site<'a> {
    label: &'a str,
    part: Part,
    path: String,
}

impl Site<'_> {
    fn http(&self) -> String {
        let label = self.label;
        let path = &self.path;
        match (self.part, path.is_empty()) {
            (Part::Body, true) => format!("{label}: request body"),
            (Part::Body, false) => format!("{label}: request body property `{path}`"),
            (Part::Response, true) => format!("{label}: response"),
            (Part::Response, false) => format!("{label}: response property `{path}`"),
            (Part::Query, _) => format!("{label}: query parameter `{path}`"),
            (Part::Path, _) => format!("{label}: path variable `{{{path}}}`"),
        }
    }

    fn child(&self, json_name: &str) -> Self {
        let path = if self.path.is_empty() {
            json_name.to_owned()
        } else {
            format!("{}.{json_name}", self.path)
        };
        Site {
            path,
            ..self.clone()
        }
    }

    fn within(&self, value: &ValueType) -> Self {
        let suffix = match (value.repeated, &value.map_key) {
            (_, Some(_)) => "[key]",
            (true, None) => "[]",
            (false, None) => return self.clone(),
        };
        Site {
            path: format!("{}{suffix}", self.path),
            ..self.clone()
        }
    }
}

/// A proto element named in a change.
struct Element {
    name: String,
    location: String,
}

/// One pair of bindings compared.
struct PairCompare<'a, 'c> {
    old: &'a Surface,
    new: &'a Surface,
    o: &'a BindingSurface,
    n: &'a BindingSurface,
    label: String,
    changes: &'c mut Changes,
}

impl PairCompare<'_, '_> {
    fn run(&mut self) {
        let (o, n) = (self.o, self.n);
        let binding = Element {
            name: binding_element(o),
            location: n.location.clone(),
        };
        let http = self.label.clone();
        if o.rpc != n.rpc {
            self.add(
                ChangeKind::RpcChanged,
                &Element {
                    name: n.rpc.clone(),
                    location: n.rpc_location.clone(),
                },
                format!(
                    "`{}` now serves the route of `{}`; its JSON is compared below",
                    n.rpc, o.rpc
                ),
                Severity::Compatible,
                http.clone(),
            );
        }
        if o.method != n.method {
            self.add(
                ChangeKind::MethodChanged,
                &binding,
                format!("{} is now {}", o.method, n.method),
                Severity::Breaking,
                http.clone(),
            );
        }
        if route_path(&o.route) != route_path(&n.route) {
            self.add(
                ChangeKind::PathChanged,
                &binding,
                format!("`{}` is now `{}`: other URLs match", o.template, n.template),
                Severity::Breaking,
                http.clone(),
            );
        }
        if o.shape != n.shape {
            self.add(
                ChangeKind::ShapeChanged,
                &Element {
                    name: n.rpc.clone(),
                    location: n.rpc_location.clone(),
                },
                format!(
                    "{} is now {}: {}",
                    o.shape,
                    n.shape,
                    shape_consequence(&o.shape, &n.shape)
                ),
                Severity::Breaking,
                http.clone(),
            );
        }
        self.path_variables();
        if o.body != n.body {
            self.add(
                ChangeKind::BodyChanged,
                &binding,
                format!(
                    "body {} is now {}",
                    selector(o.body.as_deref()),
                    selector(n.body.as_deref())
                ),
                Severity::Breaking,
                http.clone(),
            );
            self.body_moves();
        } else if let (Some(op), Some(np)) = (&o.request, &n.request) {
            self.walk_payload(op, np, Part::Body, "request-body");
        }
        self.query();
        if o.response_body != n.response_body {
            self.add(
                ChangeKind::ResponseBodyChanged,
                &binding,
                format!(
                    "response_body {} is now {}",
                    selector(o.response_body.as_deref()),
                    selector(n.response_body.as_deref())
                ),
                Severity::Breaking,
                http,
            );
        } else {
            self.walk_payload(&o.response, &n.response, Part::Response, "response");
        }
    }

    /// Compares a whole request body or response, `part` of the binding, named `what`.
    fn walk_payload(&mut self, old: &Payload, new: &Payload, part: Part, what: &str) {
        let site = Site {
            label: &self.label,
            part,
            path: String::new(),
        };
        let root = self.root(self.n, what);
        let mut walk = Walk {
            old: self.old,
            new: self.new,
            changes: self.changes,
            visited: HashSet::new(),
        };
        walk.payload(old, new, &root, &site);
    }

    fn add(
        &mut self,
        kind: ChangeKind,
        element: &Element,
        summary: String,
        severity: Severity,
        http: String,
    ) {
        self.changes.add(
            kind,
            element.name.clone(),
            element.location.clone(),
            summary,
            severity,
            http,
        );
    }

    /// The element a change of a whole body or response names: the RPC.
    fn root(&self, n: &BindingSurface, what: &str) -> Element {
        Element {
            name: format!("{}:{what}", n.rpc),
            location: n.location.clone(),
        }
    }

    fn path_variables(&mut self) {
        let (o, n) = (self.o, self.n);
        for index in 0..o.path.len().max(n.path.len()) {
            match (o.path.get(index), n.path.get(index)) {
                (Some(op), Some(np)) if op.field == np.field => {
                    let site = Site {
                        label: &self.label,
                        part: Part::Path,
                        path: np.field.clone(),
                    };
                    let element = Element {
                        name: np.element.clone(),
                        location: np.location.clone(),
                    };
                    let mut walk = Walk {
                        old: self.old,
                        new: self.new,
                        changes: self.changes,
                        visited: HashSet::new(),
                    };
                    walk.value(&op.value, &np.value, &element, &site);
                }
                (Some(op), Some(np)) => {
                    let element = Element {
                        name: np.element.clone(),
                        location: np.location.clone(),
                    };
                    let summary = format!(
                        "the path segment that set `{}` now sets `{}`{}",
                        op.field,
                        np.field,
                        self.now_where(&op.field)
                    );
                    let http = format!("{}: path variable `{{{}}}`", self.label, op.field);
                    self.add(
                        ChangeKind::PathVariableChanged,
                        &element,
                        summary,
                        Severity::Breaking,
                        http,
                    );
                }
                (Some(op), None) => {
                    let element = Element {
                        name: op.element.clone(),
                        location: op.location.clone(),
                    };
                    let summary =
                        format!("no longer set from the path{}", self.now_where(&op.field));
                    let http = format!("{}: path variable `{{{}}}`", self.label, op.field);
                    self.add(
                        ChangeKind::PathVariableChanged,
                        &element,
                        summary,
                        Severity::Breaking,
                        http,
                    );
                }
                (None, Some(np)) => {
                    let was = match placement(o, &np.field) {
                        // The query's comparison reports the move.
                        Placement::Query(_) => continue,
                        Placement::Body => " (it was in the request body)",
                        Placement::Path | Placement::Nowhere => "",
                    };
                    let element = Element {
                        name: np.element.clone(),
                        location: np.location.clone(),
                    };
                    let http = format!("{}: path variable `{{{}}}`", self.label, np.field);
                    self.add(
                        ChangeKind::PathVariableChanged,
                        &element,
                        format!("now set from the path{was}"),
                        Severity::Breaking,
                        http,
                    );
                }
                (None, None) => {}
            }
        }
    }

    /// Where the new binding reads a field (a dotted proto path) from, as a clause.
    fn now_where(&self, field: &str) -> String {
        match placement(self.n, field) {
            Placement::Path => " (it is still in the path)".to_owned(),
            Placement::Query(name) => format!(" (it is now query parameter `{name}`)"),
            Placement::Body => " (it is now in the request body)".to_owned(),
            Placement::Nowhere => String::new(),
        }
    }

    /// After a change of `body`: every field the old binding read from the body that the new
    /// one reads from the query or the path, and every query parameter now in the body.
    fn body_moves(&mut self) {
        let (o, n) = (self.o, self.n);
        let mut moved: Vec<(String, Element, String)> = Vec::new();
        if let Some(body) = &o.request
            && let Some(name) = &body.value.message
            && let Some(message) = self.old.messages.get(name)
        {
            // The body was a message: its fields, by proto path from the request.
            let prefix = match o.body.as_deref() {
                Some("*") | None => String::new(),
                Some(field) => format!("{field}."),
            };
            for field in &message.fields {
                if body.omits.contains(&field.name) {
                    continue;
                }
                let proto = format!("{prefix}{}", field.name);
                let element = Element {
                    name: format!("{name}.{}", field.name),
                    location: field.location.clone(),
                };
                let target = match placement(n, &proto) {
                    Placement::Query(query) => format!("query parameter `{query}`"),
                    Placement::Path => "the path".to_owned(),
                    Placement::Body | Placement::Nowhere => continue,
                };
                let json = &field.json_name;
                moved.push((
                    format!("moved from the request body (`{json}`) to {target}"),
                    element,
                    format!("{}: request body property `{json}`", self.label),
                ));
            }
        }
        for (summary, element, http) in moved {
            self.add(
                ChangeKind::FieldMoved,
                &element,
                summary,
                Severity::Breaking,
                http,
            );
        }
    }

    fn query(&mut self) {
        let (o, n) = (self.o, self.n);
        let mut renamed_to = HashSet::new();
        let label = self.label.clone();
        for op in &o.query {
            let site = Site {
                label: &label,
                part: Part::Query,
                path: op.name.clone(),
            };
            if let Some(np) = n.query.iter().find(|p| p.name == op.name) {
                let element = Element {
                    name: np.element.clone(),
                    location: np.location.clone(),
                };
                if np.required && !op.required {
                    self.add(
                        ChangeKind::FieldRequired,
                        &element,
                        "now REQUIRED".to_owned(),
                        Severity::Breaking,
                        site.http(),
                    );
                } else if op.required && !np.required {
                    self.add(
                        ChangeKind::FieldNoLongerRequired,
                        &element,
                        "no longer REQUIRED".to_owned(),
                        Severity::Compatible,
                        site.http(),
                    );
                }
                let mut walk = Walk {
                    old: self.old,
                    new: self.new,
                    changes: self.changes,
                    visited: HashSet::new(),
                };
                walk.value(&op.value, &np.value, &element, &site);
                continue;
            }
            let target = match placement(n, &op.field) {
                Placement::Path => "the path",
                Placement::Body => "the request body",
                Placement::Query(name) => {
                    // The same field under another JSON name.
                    let element = self.current(&op.element, &op.location);
                    self.add(
                        ChangeKind::JsonNameChanged,
                        &element,
                        format!("query parameter `{}` is now `{name}`", op.name),
                        Severity::Breaking,
                        site.http(),
                    );
                    renamed_to.insert(name);
                    continue;
                }
                Placement::Nowhere => "",
            };
            if !target.is_empty() {
                let element = self.current(&op.element, &op.location);
                self.add(
                    ChangeKind::FieldMoved,
                    &element,
                    format!("moved from query parameter `{}` to {target}", op.name),
                    Severity::Breaking,
                    site.http(),
                );
                continue;
            }
            if let Some(np) = self.renamed_query(&op.element) {
                renamed_to.insert(np.name.clone());
                let element = Element {
                    name: np.element.clone(),
                    location: np.location.clone(),
                };
                self.add(
                    ChangeKind::JsonNameChanged,
                    &element,
                    format!("query parameter `{}` is now `{}`", op.name, np.name),
                    Severity::Breaking,
                    site.http(),
                );
                continue;
            }
            let element = self.current(&op.element, &op.location);
            self.add(
                ChangeKind::QueryParameterRemoved,
                &element,
                format!("query parameter `{}` is no longer read", op.name),
                Severity::Breaking,
                site.http(),
            );
        }
        for np in &n.query {
            if o.query.iter().any(|p| p.name == np.name) || renamed_to.contains(&np.name) {
                continue;
            }
            // A field the old binding read from elsewhere is reported as moved (by the path's
            // comparison when it was in the path).
            if matches!(placement(o, &np.field), Placement::Path) {
                continue;
            }
            if !matches!(placement(o, &np.field), Placement::Nowhere) {
                let element = Element {
                    name: np.element.clone(),
                    location: np.location.clone(),
                };
                let summary = format!("now query parameter `{}`", np.name);
                let http = format!("{}: query parameter `{}`", self.label, np.name);
                if o.body == n.body {
                    self.add(
                        ChangeKind::FieldMoved,
                        &element,
                        summary,
                        Severity::Breaking,
                        http,
                    );
                }
                continue;
            }
            let element = Element {
                name: np.element.clone(),
                location: np.location.clone(),
            };
            let (severity, summary) = if np.required {
                (
                    Severity::Breaking,
                    format!("new REQUIRED query parameter `{}`", np.name),
                )
            } else {
                (
                    Severity::Compatible,
                    format!("new query parameter `{}`", np.name),
                )
            };
            let http = format!("{}: query parameter `{}`", self.label, np.name);
            self.add(
                ChangeKind::QueryParameterAdded,
                &element,
                summary,
                severity,
                http,
            );
        }
    }

    /// The new query parameter that sets the field `old_element` had, renamed: the field of the
    /// same number in the message of the same name.
    fn renamed_query(&self, old_element: &str) -> Option<&super::QueryParameter> {
        let (message, field) = old_element.rsplit_once('.')?;
        let number = self
            .old
            .messages
            .get(message)?
            .fields
            .iter()
            .find(|f| f.name == field)?
            .number;
        let renamed = self
            .new
            .messages
            .get(message)?
            .fields
            .iter()
            .find(|f| f.number == number)?;
        let element = format!("{message}.{}", renamed.name);
        self.n
            .query
            .iter()
            .find(|p| p.element == element && !self.o.query.iter().any(|q| q.name == p.name))
    }

    /// An element as the current protos place it when they still have it, else as the previous
    /// surface did.
    fn current(&self, element: &str, old_location: &str) -> Element {
        let location = element
            .rsplit_once('.')
            .and_then(|(message, field)| {
                let found = self.new.messages.get(message)?;
                found.fields.iter().find(|f| f.name == field)
            })
            .map_or_else(|| old_location.to_owned(), |f| f.location.clone());
        Element {
            name: element.to_owned(),
            location,
        }
    }
}

/// The template part of a route (`GET /v1/*` gives `/v1/*`).
fn route_path(route: &str) -> &str {
    route.split_once(' ').map_or(route, |(_, path)| path)
}

fn selector(value: Option<&str>) -> String {
    match value {
        None => "(none)".to_owned(),
        Some(field) => format!("`{field}`"),
    }
}

fn shape_consequence(old: &str, new: &str) -> &'static str {
    let streams = |shape: &str| shape.starts_with("server") || shape.starts_with("bidi");
    let takes = |shape: &str| shape.starts_with("client") || shape.starts_with("bidi");
    match (streams(old) != streams(new), takes(old) != takes(new)) {
        (true, _) if streams(new) => {
            "the response is now a stream (NDJSON lines, SSE events), not one JSON message"
        }
        (true, _) => "the response is now one JSON message, not a stream of lines",
        (false, true) if takes(new) => {
            "the request body is now a stream of messages, not one JSON message"
        }
        (false, true) => "the request body is now one JSON message, not a stream",
        (false, false) => "the call changes",
    }
}

/// Where a binding reads a field (a dotted proto path from the request) from.
enum Placement {
    Path,
    Query(String),
    Body,
    Nowhere,
}

fn placement(binding: &BindingSurface, field: &str) -> Placement {
    let first = field.split('.').next().unwrap_or(field);
    if binding.path.iter().any(|p| p.field == field) {
        return Placement::Path;
    }
    if let Some(query) = binding.query.iter().find(|q| q.field == field) {
        return Placement::Query(query.name.clone());
    }
    match binding.body.as_deref() {
        Some("*") => Placement::Body,
        Some(body) if body == first => Placement::Body,
        _ => Placement::Nowhere,
    }
}

/// A walk through the values of one payload of a pair of bindings, each pair of messages once.
struct Walk<'a, 'c> {
    old: &'a Surface,
    new: &'a Surface,
    changes: &'c mut Changes,
    visited: HashSet<(String, String)>,
}

impl Walk<'_, '_> {
    fn payload(&mut self, old: &Payload, new: &Payload, root: &Element, site: &Site<'_>) {
        if old.value.repeated == new.value.repeated
            && old.value.map_key == new.value.map_key
            && let (Some(om), Some(nm)) = (&old.value.message, &new.value.message)
            && !is_opaque(om)
            && !is_opaque(nm)
        {
            self.message(om, nm, &old.omits, &new.omits, &site.within(&new.value));
            return;
        }
        self.value(&old.value, &new.value, root, site);
    }

    /// Two values of an element at `site`.
    fn value(&mut self, old: &ValueType, new: &ValueType, element: &Element, site: &Site<'_>) {
        let http = site.http();
        if old.repeated != new.repeated || old.map_key != new.map_key {
            self.changes.add(
                ChangeKind::CardinalityChanged,
                element.name.clone(),
                element.location.clone(),
                format!("`{}` is now `{}`", old.json, new.json),
                Severity::Breaking,
                http,
            );
            return;
        }
        let inner = site.within(new);
        match (old.proto_type.as_str(), new.proto_type.as_str()) {
            ("message", "message") => {
                let (Some(om), Some(nm)) = (&old.message, &new.message) else {
                    return;
                };
                if !is_opaque(om) && !is_opaque(nm) {
                    self.message(om, nm, &[], &[], &inner);
                    return;
                }
            }
            ("enum", "enum") => {
                if let (Some(oe), Some(ne)) = (&old.r#enum, &new.r#enum) {
                    self.enumeration(oe, ne, &inner);
                }
                return;
            }
            _ => {}
        }
        let (from, to) = (normal(old), normal(new));
        if from == to {
            return;
        }
        let severity = type_change(&from, &to, site.part);
        self.changes.add(
            ChangeKind::TypeChanged,
            element.name.clone(),
            element.location.clone(),
            format!(
                "`{}` ({}) is now `{}` ({})",
                shown(old),
                old.json,
                shown(new),
                new.json
            ),
            severity,
            http,
        );
    }

    fn message(
        &mut self,
        old_name: &str,
        new_name: &str,
        old_omits: &[String],
        new_omits: &[String],
        site: &Site<'_>,
    ) {
        let plain = old_omits.is_empty() && new_omits.is_empty();
        if plain
            && !self
                .visited
                .insert((old_name.to_owned(), new_name.to_owned()))
        {
            return;
        }
        let (Some(old), Some(new)) = (
            self.old.messages.get(old_name),
            self.new.messages.get(new_name),
        ) else {
            return;
        };
        let part = site.part;
        let mut matched = HashSet::new();
        for of in &old.fields {
            if old_omits.contains(&of.name) || !visible(of, part) {
                continue;
            }
            let by_json = new.fields.iter().find(|f| f.json_name == of.json_name);
            let by_number = || {
                new.fields.iter().find(|f| {
                    f.number == of.number && !old.fields.iter().any(|g| g.json_name == f.json_name)
                })
            };
            let here = site.child(&of.json_name);
            let Some(nf) = by_json.or_else(by_number) else {
                self.changes.add(
                    ChangeKind::FieldRemoved,
                    format!("{old_name}.{}", of.name),
                    of.location.clone(),
                    format!("removed (JSON property `{}`)", of.json_name),
                    Severity::Breaking,
                    here.http(),
                );
                continue;
            };
            matched.insert(nf.name.clone());
            let element = Element {
                name: format!("{new_name}.{}", nf.name),
                location: nf.location.clone(),
            };
            if nf.json_name != of.json_name {
                let proto = if nf.name == of.name {
                    String::new()
                } else {
                    format!(" (proto name `{}` is now `{}`)", of.name, nf.name)
                };
                self.add(
                    ChangeKind::JsonNameChanged,
                    &element,
                    format!(
                        "JSON name `{}` is now `{}`{proto}",
                        of.json_name, nf.json_name
                    ),
                    Severity::Breaking,
                    &here,
                );
            }
            if !visible(nf, part) {
                let summary = if part.sent() {
                    "now OUTPUT_ONLY: what a client sends is ignored"
                } else {
                    "now INPUT_ONLY: left out of responses"
                };
                self.add(
                    ChangeKind::FieldHidden,
                    &element,
                    summary.to_owned(),
                    Severity::Breaking,
                    &here,
                );
                continue;
            }
            if nf.number != of.number && nf.json_name == of.json_name {
                self.add(
                    ChangeKind::FieldNumberChanged,
                    &element,
                    format!(
                        "field number {} is now {}: the wire changes, the JSON does not",
                        of.number, nf.number
                    ),
                    Severity::Compatible,
                    &here,
                );
            }
            let (was, is) = (required(of), required(nf));
            if is && !was {
                let severity = if part.sent() {
                    Severity::Breaking
                } else {
                    Severity::Compatible
                };
                self.add(
                    ChangeKind::FieldRequired,
                    &element,
                    "now REQUIRED".to_owned(),
                    severity,
                    &here,
                );
            } else if was && !is && part.sent() {
                self.add(
                    ChangeKind::FieldNoLongerRequired,
                    &element,
                    "no longer REQUIRED".to_owned(),
                    Severity::Compatible,
                    &here,
                );
            }
            self.oneof(old, new, of, nf, &element, &here);
            let nested_old = nested(old_omits, &of.name);
            let nested_new = nested(new_omits, &nf.name);
            match (&of.value.message, &nf.value.message) {
                (Some(om), Some(nm))
                    if (!nested_old.is_empty() || !nested_new.is_empty())
                        && of.value.repeated == nf.value.repeated
                        && of.value.map_key == nf.value.map_key =>
                {
                    self.message(om, nm, &nested_old, &nested_new, &here);
                }
                _ => self.value(&of.value, &nf.value, &element, &here),
            }
        }
        for nf in &new.fields {
            if matched.contains(&nf.name) || new_omits.contains(&nf.name) || !visible(nf, part) {
                continue;
            }
            let (severity, summary) = if part.sent() && required(nf) {
                (
                    Severity::Breaking,
                    format!("new REQUIRED field (JSON property `{}`)", nf.json_name),
                )
            } else {
                (
                    Severity::Compatible,
                    format!("new field (JSON property `{}`)", nf.json_name),
                )
            };
            let element = Element {
                name: format!("{new_name}.{}", nf.name),
                location: nf.location.clone(),
            };
            self.add(
                ChangeKind::FieldAdded,
                &element,
                summary,
                severity,
                &site.child(&nf.json_name),
            );
        }
    }

    /// A field's oneof: which siblings it excludes, before and after (of the fields both
    /// surfaces have).
    fn oneof(
        &mut self,
        old: &MessageSurface,
        new: &MessageSurface,
        of: &FieldSurface,
        nf: &FieldSurface,
        element: &Element,
        site: &Site<'_>,
    ) {
        let siblings = |message: &MessageSurface, field: &FieldSurface, other: &MessageSurface| {
            let Some(oneof) = &field.oneof else {
                return BTreeSet::new();
            };
            message
                .fields
                .iter()
                .filter(|f| f.oneof.as_ref() == Some(oneof) && f.name != field.name)
                .filter(|f| other.fields.iter().any(|g| g.json_name == f.json_name))
                .map(|f| f.json_name.clone())
                .collect::<BTreeSet<_>>()
        };
        let before = siblings(old, of, new);
        let after = siblings(new, nf, old);
        if before == after {
            return;
        }
        // A field that stays in its oneof only changes through a sibling that joined or left:
        // that sibling's change is the one reported.
        let moved = |json: &String| {
            let was = old.fields.iter().find(|f| &f.json_name == json);
            let is = new.fields.iter().find(|f| &f.json_name == json);
            was.map(|f| &f.oneof) != is.map(|f| &f.oneof)
        };
        if of.oneof == nf.oneof && before.symmetric_difference(&after).all(moved) {
            return;
        }
        let gained: Vec<String> = after
            .difference(&before)
            .map(|s| format!("`{s}`"))
            .collect();
        let lost: Vec<String> = before
            .difference(&after)
            .map(|s| format!("`{s}`"))
            .collect();
        let breaking = if site.part.sent() {
            !gained.is_empty()
        } else {
            !lost.is_empty()
        };
        let mut summary = format!(
            "moved from {} to {}",
            oneof_name(of.oneof.as_deref()),
            oneof_name(nf.oneof.as_deref())
        );
        if !gained.is_empty() {
            summary.push_str(&format!("; now exclusive with {}", gained.join(", ")));
        }
        if !lost.is_empty() {
            summary.push_str(&format!("; no longer exclusive with {}", lost.join(", ")));
        }
        self.add(
            ChangeKind::OneofChanged,
            element,
            summary,
            if breaking {
                Severity::Breaking
            } else {
                Severity::Compatible
            },
            site,
        );
    }

    fn enumeration(&mut self, old_name: &str, new_name: &str, site: &Site<'_>) {
        if !self
            .visited
            .insert((format!("enum {old_name}"), new_name.to_owned()))
        {
            return;
        }
        let (Some(old), Some(new)) = (self.old.enums.get(old_name), self.new.enums.get(new_name))
        else {
            return;
        };
        let http = site.http();
        let mut matched = HashSet::new();
        for ov in &old.values {
            if let Some(nv) = new.values.iter().find(|v| v.name == ov.name) {
                matched.insert(nv.name.clone());
                continue;
            }
            let renamed = new
                .values
                .iter()
                .find(|v| v.number == ov.number && !old.values.iter().any(|w| w.name == v.name));
            match renamed {
                Some(nv) => {
                    matched.insert(nv.name.clone());
                    self.changes.add(
                        ChangeKind::EnumValueRenamed,
                        format!("{new_name}.{}", nv.name),
                        nv.location.clone(),
                        format!("`{}` is now `{}` (number {})", ov.name, nv.name, nv.number),
                        Severity::Breaking,
                        http.clone(),
                    );
                }
                None => {
                    let severity = if site.part.sent() {
                        Severity::Breaking
                    } else {
                        Severity::Compatible
                    };
                    self.changes.add(
                        ChangeKind::EnumValueRemoved,
                        format!("{old_name}.{}", ov.name),
                        ov.location.clone(),
                        format!(
                            "`{}` removed: a client sending it is refused; one receiving it \
                             never sees it again",
                            ov.name
                        ),
                        severity,
                        http.clone(),
                    );
                }
            }
        }
        for nv in &new.values {
            if !matched.contains(&nv.name) {
                self.changes.add(
                    ChangeKind::EnumValueAdded,
                    format!("{new_name}.{}", nv.name),
                    nv.location.clone(),
                    format!("new value `{}`", nv.name),
                    Severity::Compatible,
                    http.clone(),
                );
            }
        }
    }

    fn add(
        &mut self,
        kind: ChangeKind,
        element: &Element,
        summary: String,
        severity: Severity,
        site: &Site<'_>,
    ) {
        self.changes.add(
            kind,
            element.name.clone(),
            element.location.clone(),
            summary,
            severity,
            site.http(),
        );
    }
}

/// Whether a field travels in `part`: `OUTPUT_ONLY` fields are not read from requests,
/// `INPUT_ONLY` ones not written to responses.
fn visible(field: &FieldSurface, part: Part) -> bool {
    let hidden = if part.sent() {
        "OUTPUT_ONLY"
    } else {
        "INPUT_ONLY"
    };
    !field.behavior.iter().any(|b| b == hidden)
}

fn required(field: &FieldSurface) -> bool {
    field.behavior.iter().any(|b| b == "REQUIRED")
}

/// The omitted paths under `field`.
fn nested(omits: &[String], field: &str) -> Vec<String> {
    omits
        .iter()
        .filter_map(|path| path.strip_prefix(field)?.strip_prefix('.'))
        .map(str::to_owned)
        .collect()
}

fn oneof_name(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("oneof `{name}`"),
        None => "no oneof".to_owned(),
    }
}

/// A type as the report names it: the scalar, or the message or enum.
fn shown(value: &ValueType) -> &str {
    value
        .message
        .as_deref()
        .or(value.r#enum.as_deref())
        .unwrap_or(&value.proto_type)
}

/// The proto3 JSON form of a type: scalars that read and write alike are one.
fn normal(value: &ValueType) -> String {
    match value.proto_type.as_str() {
        "int32" | "sint32" | "sfixed32" => "int32".to_owned(),
        "uint32" | "fixed32" => "uint32".to_owned(),
        "int64" | "sint64" | "sfixed64" => "int64".to_owned(),
        "uint64" | "fixed64" => "uint64".to_owned(),
        "message" => format!("message {}", value.message.as_deref().unwrap_or_default()),
        "enum" => format!("enum {}", value.r#enum.as_deref().unwrap_or_default()),
        other => other.to_owned(),
    }
}

/// How a change of type reads in `part`. What a client sends must still be accepted: proto3 JSON
/// readers take numbers and strings for every integer type and numbers for floats, so a wider
/// number is compatible; as text (path, query) a string field takes anything. What a client
/// receives must still parse as before: only a narrower float is.
fn type_change(from: &str, to: &str, part: Part) -> Severity {
    let widened = matches!(
        (from, to),
        ("int32", "int64")
            | ("uint32", "int64")
            | ("uint32", "uint64")
            | ("float", "double")
            | ("int32", "double")
            | ("uint32", "double")
    );
    let compatible = match part {
        Part::Body => widened,
        Part::Query | Part::Path => widened || to == "string",
        Part::Response => matches!((from, to), ("double", "float")),
    };
    if compatible {
        Severity::Compatible
    } else {
        Severity::Breaking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceptance_files_take_one_id_a_line_with_comments() {
        let acceptance = Acceptance::parse(
            "# reviewed\n\n  field-removed:a.B.c  # gone on purpose\nshape-changed:a.S.M\n",
        );
        assert_eq!(
            acceptance.ids().collect::<Vec<_>>(),
            ["field-removed:a.B.c", "shape-changed:a.S.M"]
        );
    }

    #[test]
    fn wider_numbers_are_compatible_only_where_the_client_writes_them() {
        for part in [Part::Body, Part::Query, Part::Path] {
            assert_eq!(type_change("int32", "int64", part), Severity::Compatible);
            assert_eq!(type_change("float", "double", part), Severity::Compatible);
            assert_eq!(type_change("int64", "int32", part), Severity::Breaking);
            assert_eq!(type_change("string", "bytes", part), Severity::Breaking);
        }
        assert_eq!(
            type_change("int32", "int64", Part::Response),
            Severity::Breaking
        );
        assert_eq!(
            type_change("double", "float", Part::Response),
            Severity::Compatible
        );
        // As text, a string field takes whatever was sent before.
        assert_eq!(
            type_change("int64", "string", Part::Query),
            Severity::Compatible
        );
        assert_eq!(
            type_change("int64", "string", Part::Body),
            Severity::Breaking
        );
    }

    #[test]
    fn scalars_with_one_json_form_are_one_type() {
        let value = |proto_type: &str| ValueType {
            proto_type: proto_type.to_owned(),
            message: None,
            r#enum: None,
            repeated: false,
            map_key: None,
            json: String::new(),
        };
        assert_eq!(normal(&value("sint32")), normal(&value("sfixed32")));
        assert_eq!(normal(&value("fixed64")), "uint64");
        assert_ne!(normal(&value("int32")), normal(&value("uint32")));
    }

    #[test]
    fn shape_changes_say_what_the_client_sees() {
        assert!(shape_consequence("server_streaming", "unary").contains("one JSON message"));
        assert!(shape_consequence("unary", "bidi_streaming").contains("now a stream"));
        assert!(shape_consequence("unary", "client_streaming").contains("request body"));
    }

    #[test]
    fn omitted_paths_descend_by_field() {
        let omits = [
            "name".to_owned(),
            "book.name".to_owned(),
            "bookish.x".to_owned(),
        ];
        assert_eq!(nested(&omits, "book"), ["name"]);
        assert!(nested(&omits, "name").is_empty());
    }
}
