//! The OpenAPI document as a gateway serves it: protogate-build's document, with what the
//! gateway was told at run time written in (success statuses, bodiless 204s, headers mapped
//! from metadata, the error body's form).
//!
//! Operations are found by the `x-protogate-rpc` extension protogate-build writes on each.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// What the document should say of one RPC's successful answers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Answer {
    /// The success status, when not 200.
    pub status: Option<http::StatusCode>,
    /// Headers the answer may carry, with the metadata key each comes from.
    pub headers: Vec<(String, String)>,
}

/// The HTTP methods an OpenAPI path item holds operations under.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `document` with each operation's successful answer as `answer` (given the RPC's full name)
/// says; the document unchanged when it is not JSON.
pub(crate) fn describe_answers(document: &str, answer: impl Fn(&str) -> Answer) -> String {
    edit(document, |root| {
        let mut changed = false;
        for operation in operations(root) {
            let Some(rpc) = operation.get("x-protogate-rpc").and_then(Value::as_str) else {
                continue;
            };
            let answer = answer(rpc);
            if answer.status.is_none() && answer.headers.is_empty() {
                continue;
            }
            changed = true;
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let Some(mut ok) = responses.remove("200") else {
                continue;
            };
            let status = answer.status.unwrap_or(http::StatusCode::OK);
            if let Some(ok) = ok.as_object_mut() {
                if matches!(status.as_u16(), 204 | 304) {
                    ok.remove("content");
                }
                if status != http::StatusCode::OK {
                    ok.insert(
                        "description".to_owned(),
                        json!(status.canonical_reason().unwrap_or("Success")),
                    );
                }
                if !answer.headers.is_empty() {
                    let headers = answer
                        .headers
                        .iter()
                        .map(|(header, key)| {
                            let described = json!({
                                "description": format!("The upstream's `{key}` metadata, when it sends one."),
                                "schema": {"type": "string"},
                            });
                            (header.clone(), described)
                        })
                        .collect::<Map<_, _>>();
                    ok.insert("headers".to_owned(), Value::Object(headers));
                }
            }
            // Put back first, as it was.
            let rest = std::mem::take(responses);
            responses.insert(status.as_str().to_owned(), ok);
            responses.extend(rest);
        }
        changed
    })
}

/// `document` with `schemes` among its security schemes and each operation's `security` as
/// `security_of` says (given the RPC's full name and the operation's HTTP method, lower case);
/// operations it says nothing of are left alone.
pub(crate) fn describe_security(
    document: &str,
    schemes: Map<String, Value>,
    security_of: impl Fn(&str, &str) -> Option<Value>,
) -> String {
    if schemes.is_empty() {
        return document.to_owned();
    }
    edit(document, |root| {
        let Some(paths) = root.get_mut("paths").and_then(Value::as_object_mut) else {
            return false;
        };
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for (method, operation) in item.iter_mut() {
                if !METHODS.contains(&method.as_str()) {
                    continue;
                }
                let Some(operation) = operation.as_object_mut() else {
                    continue;
                };
                let rpc = operation.get("x-protogate-rpc").and_then(Value::as_str);
                if let Some(security) = rpc.and_then(|rpc| security_of(rpc, method)) {
                    operation.insert("security".to_owned(), security);
                }
            }
        }
        let described = root
            .as_object_mut()
            .map(|root| root.entry("components").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
            .map(|components| {
                components
                    .entry("securitySchemes")
                    .or_insert_with(|| json!({}))
            })
            .and_then(Value::as_object_mut);
        if let Some(described) = described {
            described.extend(schemes);
        }
        true
    })
}

/// `document` without the operations of unbound routes (those protogate-build marks
/// `x-protogate-unbound: true`), the path items left with no operation, and the tags that only
/// those operations used; unchanged when it has none.
pub(crate) fn without_unbound(document: &str) -> String {
    edit(document, |root| {
        let Some(paths) = root.get_mut("paths").and_then(Value::as_object_mut) else {
            return false;
        };
        let mut dropped_tags = BTreeSet::new();
        let mut changed = false;
        paths.retain(|_, item| {
            let Some(item) = item.as_object_mut() else {
                return true;
            };
            let before = item.len();
            item.retain(|method, operation| {
                let unbound = METHODS.contains(&method.as_str())
                    && operation.get("x-protogate-unbound") == Some(&Value::Bool(true));
                if let Some(operation) = operation.as_object().filter(|_| unbound) {
                    dropped_tags.extend(tags_of(operation));
                }
                !unbound
            });
            if item.len() == before {
                return true;
            }
            changed = true;
            item.keys().any(|key| METHODS.contains(&key.as_str()))
        });
        if !changed {
            return false;
        }
        let used: BTreeSet<String> = operations(root)
            .flat_map(|operation| tags_of(operation))
            .collect();
        if let Some(tags) = root.get_mut("tags").and_then(Value::as_array_mut) {
            tags.retain(|tag| {
                tag.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(|name| used.contains(name) || !dropped_tags.contains(name))
            });
        }
        true
    })
}

/// The tags an operation names.
fn tags_of(operation: &Map<String, Value>) -> Vec<String> {
    operation
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// `document` with every error response (`default`) written as RFC 9457 problem details.
pub(crate) fn describe_problem_errors(document: &str) -> String {
    edit(document, |root| {
        for operation in operations(root) {
            let default = operation
                .get_mut("responses")
                .and_then(|responses| responses.get_mut("default"));
            if let Some(default) = default {
                *default = json!({
                    "description": "An error, as RFC 9457 problem details.",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/protogate.Problem"}
                        }
                    }
                });
            }
        }
        let schemas = root
            .as_object_mut()
            .map(|root| root.entry("components").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
            .map(|components| components.entry("schemas").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut);
        if let Some(schemas) = schemas {
            schemas.insert("protogate.Problem".to_owned(), problem_schema());
        }
        true
    })
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "RFC 9457 problem details for a failed call.",
        "properties": {
            "type": {"type": "string", "description": "Always `about:blank`."},
            "title": {"type": "string", "description": "The HTTP status's reason phrase."},
            "status": {"type": "integer", "format": "int32", "description": "The HTTP status."},
            "detail": {"type": "string", "description": "The status message."},
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
            "details": {
                "type": "array",
                "description": "The google.rpc.Status details, each with its `@type`.",
                "items": {"type": "object", "additionalProperties": true}
            }
        },
        "required": ["type", "title", "status", "code"]
    })
}

/// Every operation object of the document.
fn operations(root: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    root.get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| {
            item.iter_mut()
                .filter(|(method, _)| METHODS.contains(&method.as_str()))
                .filter_map(|(_, operation)| operation.as_object_mut())
        })
}

/// `document` parsed, changed by `change`, written back (pretty, as protogate-build writes
/// it); the text unchanged when it is not JSON or `change` says it changed nothing.
fn edit(document: &str, change: impl FnOnce(&mut Value) -> bool) -> String {
    let Ok(mut root) = serde_json::from_str::<Value>(document) else {
        return document.to_owned();
    };
    if !change(&mut root) {
        return document.to_owned();
    }
    serde_json::to_string_pretty(&root).unwrap_or_else(|_| document.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENT: &str = r##"{
      "openapi": "3.1.0",
      "paths": {
        "/v1/books": {
          "post": {
            "x-protogate-rpc": "acme.Library.CreateBook",
            "responses": {
              "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Book"}}}},
              "default": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}}}
            }
          },
          "delete": {
            "x-protogate-rpc": "acme.Library.DeleteBooks",
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
          },
          "parameters": []
        }
      },
      "components": {"schemas": {}}
    }"##;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).expect("JSON")
    }

    #[test]
    fn statuses_and_headers_are_written_where_the_rpc_is() {
        let shaped = describe_answers(DOCUMENT, |rpc| match rpc {
            "acme.Library.CreateBook" => Answer {
                status: Some(http::StatusCode::CREATED),
                headers: vec![("Location".to_owned(), "location".to_owned())],
            },
            _ => Answer {
                status: Some(http::StatusCode::NO_CONTENT),
                headers: Vec::new(),
            },
        });
        let shaped = parsed(&shaped);
        let create = &shaped["paths"]["/v1/books"]["post"]["responses"];
        assert!(create.get("200").is_none());
        assert_eq!(create["201"]["description"], "Created");
        assert_eq!(
            create["201"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Book"
        );
        assert_eq!(
            create["201"]["headers"]["Location"]["schema"]["type"],
            "string"
        );
        assert!(create.get("default").is_some());
        let delete = &shaped["paths"]["/v1/books"]["delete"]["responses"];
        assert!(delete["204"].get("content").is_none());
    }

    #[test]
    fn errors_become_problem_details() {
        let shaped = parsed(&describe_problem_errors(DOCUMENT));
        let default = &shaped["paths"]["/v1/books"]["post"]["responses"]["default"];
        assert_eq!(
            default["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/protogate.Problem"
        );
        assert_eq!(
            shaped["components"]["schemas"]["protogate.Problem"]["properties"]["code"]["type"],
            "integer"
        );
    }

    #[test]
    fn unbound_operations_go_with_what_only_they_used() {
        let document = r##"{
          "openapi": "3.1.0",
          "tags": [{"name": "Library"}, {"name": "Admin"}, {"name": "Spare"}],
          "paths": {
            "/v1/books": {
              "get": {"tags": ["Library"], "responses": {}},
              "parameters": []
            },
            "/acme.Library/Compact": {
              "post": {"tags": ["Library"], "x-protogate-unbound": true, "responses": {}},
              "parameters": []
            },
            "/acme.Admin/Purge": {
              "post": {"tags": ["Admin"], "x-protogate-unbound": true, "responses": {}}
            }
          }
        }"##;
        let bound = parsed(&without_unbound(document));
        let paths: Vec<&String> = bound["paths"].as_object().expect("paths").keys().collect();
        assert_eq!(paths, ["/v1/books"]);
        // A tag still used stays, as does one no operation ever used; one only the removed
        // operations used goes.
        assert_eq!(
            bound["tags"],
            json!([{"name": "Library"}, {"name": "Spare"}])
        );
        assert_eq!(without_unbound(DOCUMENT), DOCUMENT);
    }

    #[test]
    fn a_document_with_nothing_to_change_is_left_as_written() {
        assert_eq!(describe_problem_errors("not json"), "not json");
        let untouched = describe_answers(DOCUMENT, |_| Answer::default());
        assert_eq!(untouched, DOCUMENT);
    }
}
