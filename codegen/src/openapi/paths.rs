//! Path templates as OpenAPI paths. A variable that spans several segments
//! (`{name=shelves/*/books/*}`) becomes its literal segments and one parameter per wildcard
//! (`/shelves/{shelf}/books/{book}`), so a generated client fills in exactly the route's shape.
//!
//! A `**` (anywhere in the template: `/v1/{parent=databases/*/documents/**}/{collection_id}`)
//! becomes one parameter too, but OpenAPI has no multi-segment parameter: its value is several
//! segments joined by `/`, sent as they are. A generated client percent-encodes a `/` in a path
//! parameter as `%2F`; the gateway then sees one segment, and `%2F` stays encoded in the value it
//! passes on (multi-segment variables keep `%2F`, as http.proto specifies), so the backend gets
//! `a%2Fb` where `a/b` was meant. The parameter's description says so; a client must build such
//! paths itself (or leave `/` unencoded in that parameter).

use crate::template::{PathTemplate, Segment};

/// What a client must send for a `**`.
const MULTI_SEGMENT: &str = "Any number of path segments (possibly none), joined by `/` and sent \
     with the `/` unencoded: `a/b/c`. A `/` sent as `%2F` is not a separator: the value passed on \
     then holds `%2F` literally.";

/// One path parameter.
pub(super) struct PathParam {
    /// Its name in the OpenAPI path.
    pub name: String,
    /// The dotted proto path of the field it sets, when it is a whole variable (`{f}`); its
    /// schema is then the field's.
    pub field: Option<String>,
    /// What it is part of, for its description.
    pub description: String,
}

/// An OpenAPI path and its parameters, in order.
pub(super) struct OpenApiPath {
    pub path: String,
    pub params: Vec<PathParam>,
}

/// The OpenAPI path of a template.
pub(super) fn openapi_path(template: &PathTemplate) -> OpenApiPath {
    let mut segments: Vec<String> = Vec::new();
    let mut params: Vec<PathParam> = Vec::new();
    let add = |params: &mut Vec<PathParam>, wanted: String, field, description| {
        let mut name = wanted.clone();
        let mut n = 2;
        while params.iter().any(|p| p.name == name) {
            name = format!("{wanted}_{n}");
            n += 1;
        }
        params.push(PathParam {
            name: name.clone(),
            field,
            description,
        });
        format!("{{{name}}}")
    };
    for segment in &template.segments {
        match segment {
            Segment::Literal(literal) => segments.push(literal.clone()),
            Segment::Wildcard => {
                let wanted = after(&segments).unwrap_or_else(|| "segment".into());
                segments.push(add(
                    &mut params,
                    wanted,
                    None,
                    "Any one path segment.".into(),
                ));
            }
            Segment::DoubleWildcard => {
                let wanted = after(&segments).unwrap_or_else(|| "rest".into());
                segments.push(add(&mut params, wanted, None, MULTI_SEGMENT.into()));
            }
            Segment::Variable(variable) => {
                let field = variable.field_path.join(".");
                if variable.segments == [Segment::Wildcard] {
                    segments.push(add(&mut params, field.clone(), Some(field), String::new()));
                    continue;
                }
                let shape = shape(&variable.segments);
                for (index, inner) in variable.segments.iter().enumerate() {
                    match inner {
                        Segment::Literal(literal) => segments.push(literal.clone()),
                        Segment::Wildcard | Segment::DoubleWildcard => {
                            // A leading `**` (`{name=**/botSessions/*}`) is named after the
                            // field, not after a segment outside the variable.
                            let leading_rest =
                                index == 0 && matches!(inner, Segment::DoubleWildcard);
                            let wanted = after(&segments)
                                .filter(|_| !leading_rest)
                                .unwrap_or_else(|| field.clone());
                            let mut description =
                                format!("One segment of `{field}`, which is `{shape}`.");
                            if matches!(inner, Segment::DoubleWildcard) {
                                description = format!(
                                    "The `**` part of `{field}` (`{shape}`). {MULTI_SEGMENT}"
                                );
                            }
                            segments.push(add(&mut params, wanted, None, description));
                        }
                        Segment::Variable(_) => {}
                    }
                }
            }
        }
    }
    let mut path = format!("/{}", segments.join("/"));
    if let Some(verb) = &template.verb {
        path.push(':');
        path.push_str(verb);
    }
    OpenApiPath { path, params }
}

/// A variable's own pattern, as written: `shelves/*/books/*`.
fn shape(segments: &[Segment]) -> String {
    let parts: Vec<&str> = segments
        .iter()
        .map(|segment| match segment {
            Segment::Literal(literal) => literal.as_str(),
            Segment::Wildcard => "*",
            Segment::DoubleWildcard => "**",
            Segment::Variable(_) => "",
        })
        .collect();
    parts.join("/")
}

/// The parameter name for a wildcard after a collection's literal: `shelves` gives `shelf`.
fn after(segments: &[String]) -> Option<String> {
    let last = segments.last()?;
    if last.starts_with('{') || last.is_empty() {
        return None;
    }
    Some(singular(last))
}

/// The singular of a collection name, by the common English endings.
fn singular(word: &str) -> String {
    for (plural, single) in [
        ("lves", "lf"),
        ("ies", "y"),
        ("sses", "ss"),
        ("xes", "x"),
        ("ches", "ch"),
        ("shes", "sh"),
    ] {
        if let Some(stem) = word.strip_suffix(plural) {
            return format!("{stem}{single}");
        }
    }
    match word.strip_suffix('s') {
        Some(stem) if !stem.is_empty() && !word.ends_with("ss") && !word.ends_with("us") => {
            stem.to_owned()
        }
        _ => word.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template;

    fn path(text: &str) -> (String, Vec<String>) {
        let converted = openapi_path(&template::parse(text).expect("template"));
        let names = converted.params.into_iter().map(|p| p.name).collect();
        (converted.path, names)
    }

    #[test]
    fn multi_segment_variables_become_one_parameter_per_wildcard() {
        assert_eq!(
            path("/v1/{name=shelves/*/books/*}:archive"),
            (
                "/v1/shelves/{shelf}/books/{book}:archive".to_owned(),
                vec!["shelf".to_owned(), "book".to_owned()]
            )
        );
        assert_eq!(
            path("/v1/{parent=shelves/*}/books"),
            (
                "/v1/shelves/{shelf}/books".to_owned(),
                vec!["shelf".to_owned()]
            )
        );
        assert_eq!(
            path("/v1/{name=operations/**}:cancel"),
            (
                "/v1/operations/{operation}:cancel".to_owned(),
                vec!["operation".to_owned()]
            )
        );
    }

    #[test]
    fn double_wildcards_anywhere_become_one_parameter_that_says_what_to_send() {
        assert_eq!(
            path("/v1/{parent=projects/*/databases/*/documents/*/**}/{collection_id}"),
            (
                "/v1/projects/{project}/databases/{database}/documents/{document}/{parent}/{collection_id}"
                    .to_owned(),
                vec![
                    "project".to_owned(),
                    "database".to_owned(),
                    "document".to_owned(),
                    "parent".to_owned(),
                    "collection_id".to_owned()
                ]
            )
        );
        assert_eq!(
            path("/v1/{parent=projects/*/dataStores/**}/entries:purge").0,
            "/v1/projects/{project}/dataStores/{dataStore}/entries:purge"
        );
        let converted =
            openapi_path(&template::parse("/v1test2/{name=**/botSessions/*}").expect("template"));
        assert_eq!(converted.path, "/v1test2/{name}/botSessions/{botSession}");
        let rest = &converted.params[0].description;
        assert!(rest.contains("The `**` part of `name`"), "{rest}");
        assert!(rest.contains("`/` unencoded"), "{rest}");
        assert!(rest.contains("`%2F` literally"), "{rest}");
    }

    #[test]
    fn whole_variables_keep_their_field_names_and_names_stay_unique() {
        assert_eq!(
            path("/v1/{book.name}/{id}"),
            (
                "/v1/{book.name}/{id}".to_owned(),
                vec!["book.name".to_owned(), "id".to_owned()]
            )
        );
        assert_eq!(
            path("/v1/{a=items/*}/{b=items/*}"),
            (
                "/v1/items/{item}/items/{item_2}".to_owned(),
                vec!["item".to_owned(), "item_2".to_owned()]
            )
        );
        assert_eq!(path("/v1/*/x").0, "/v1/{v1}/x");
    }

    #[test]
    fn singulars_of_common_collection_names() {
        for (plural, single) in [
            ("shelves", "shelf"),
            ("books", "book"),
            ("policies", "policy"),
            ("addresses", "address"),
            ("boxes", "box"),
            ("status", "status"),
            ("archive", "archive"),
        ] {
            assert_eq!(singular(plural), single);
        }
    }
}
