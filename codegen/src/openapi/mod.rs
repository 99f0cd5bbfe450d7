//! The OpenAPI 3.1 document of a build, from the same model as the handlers: every binding as
//! an operation whose parameters, request body and responses are what the gateway really takes
//! and sends.

mod docs;
mod paths;
mod schema;

use std::collections::HashSet;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use crate::model::{Binding, Body, Method, Model, Service};
use schema::{Form, Schemas};

/// The name of the document in the output directory.
pub const OPENAPI_FILE: &str = "protogate_openapi.json";

/// The `info` of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenApiInfo {
    /// The API's title.
    pub title: String,
    /// The API's version.
    pub version: String,
}

/// HTTP methods an OpenAPI path item can hold; bindings with other (custom) methods are left
/// out of the document.
const METHODS: &[&str] = &[
    "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE",
];

/// The document as pretty-printed JSON.
pub fn render(model: &Model, info: &OpenApiInfo) -> String {
    let mut text = serde_json::to_string_pretty(&document(model, info)).unwrap_or_default();
    text.push('\n');
    text
}

/// The document.
pub fn document(model: &Model, info: &OpenApiInfo) -> Value {
    let mut schemas = Schemas::new(&model.pool);
    let mut paths = Map::new();
    let mut tags = Vec::new();
    let mut operation_ids = HashSet::new();
    for service in &model.services {
        let mut tag = json!({"name": service.descriptor.name()});
        let (file, path) = (service.descriptor.parent_file(), service.descriptor.path());
        if let Some(text) = docs::leading(file, path) {
            tag["description"] = json!(text);
        }
        tags.push(tag);
        for method in &service.methods {
            for (index, binding) in method.bindings.iter().enumerate() {
                let verb = binding.http_method.as_str();
                if !METHODS.contains(&verb) {
                    continue;
                }
                let id = operation_id(service, method, index, &mut operation_ids);
                let (path, operation) = operation(&mut schemas, service, method, binding, id);
                let item = paths
                    .entry(path)
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .map(|item| {
                        item.insert(verb.to_ascii_lowercase(), operation);
                    });
                debug_assert!(item.is_some());
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": info.title, "version": info.version},
        "tags": tags,
        "paths": paths,
        "components": {"schemas": schemas.into_components()},
    })
}

/// `Service_Method`, with the binding's index after the first; qualified by package if two
/// services share a name.
fn operation_id(
    service: &Service,
    method: &Method,
    index: usize,
    taken: &mut HashSet<String>,
) -> String {
    let suffix = if index == 0 {
        String::new()
    } else {
        format!("_{index}")
    };
    let short = format!(
        "{}_{}{suffix}",
        service.descriptor.name(),
        method.descriptor.name()
    );
    let id = if taken.contains(&short) {
        format!(
            "{}_{}{suffix}",
            service.descriptor.full_name().replace('.', "_"),
            method.descriptor.name()
        )
    } else {
        short
    };
    taken.insert(id.clone());
    id
}

/// One binding as an operation: its OpenAPI path and the operation object.
fn operation(
    schemas: &mut Schemas<'_>,
    service: &Service,
    method: &Method,
    binding: &Binding,
    id: String,
) -> (String, Value) {
    let md = &method.descriptor;
    let input = md.input();
    let converted = paths::openapi_path(&binding.template);
    let path_fields: Vec<Vec<String>> = binding
        .variables
        .iter()
        .map(|v| v.fields.iter().map(|f| f.name().to_owned()).collect())
        .collect();

    let mut parameters = Vec::new();
    for param in &converted.params {
        let field = param.field.as_ref().and_then(|dotted| {
            binding
                .variables
                .iter()
                .find(|v| &v.field_path == dotted)
                .and_then(|v| v.fields.last().cloned())
        });
        let schema = match &field {
            Some(field) => schemas.field(field, Form::Request),
            None => json!({"type": "string"}),
        };
        let mut parameter =
            json!({"name": param.name, "in": "path", "required": true, "schema": schema});
        if !param.description.is_empty() {
            parameter["description"] = json!(param.description);
        }
        parameters.push(parameter);
    }
    let reads_query = match &binding.body {
        Body::Whole => false,
        Body::None | Body::Field(_) => true,
    };
    if reads_query {
        let mut skip = path_fields.clone();
        if let Body::Field(field) = &binding.body {
            skip.push(vec![field.name().to_owned()]);
        }
        query_parameters(schemas, &input, &skip, "", 0, &mut parameters);
    }

    let mut op = json!({
        "operationId": id,
        "tags": [service.descriptor.name()],
        "responses": responses(schemas, method, binding),
        // The RPC, by full name: how a gateway finds the operations of its methods to describe
        // their statuses and headers as it serves them.
        "x-protogate-rpc": md.full_name(),
    });
    if let Some(text) = docs::leading(md.parent_file(), md.path()) {
        op["summary"] = json!(docs::summary(&text));
        op["description"] = json!(text);
    }
    if !method.policy.is_empty() {
        op["x-protogate-policy"] = policy_extension(&method.policy);
    }
    if binding.unbound {
        // An RPC without a rule, at its gRPC path: a gateway serves it only when told to, and
        // leaves it out of the document it serves otherwise.
        op["x-protogate-unbound"] = json!(true);
    }
    if schema::is_deprecated(&md.options()) {
        op["deprecated"] = json!(true);
    }
    if !parameters.is_empty() {
        op["parameters"] = json!(parameters);
    }
    if let Some(body) = request_body(schemas, method, binding, &path_fields) {
        op["requestBody"] = body;
    }
    (converted.path, op)
}

/// A method's declared policy as the document's `x-protogate-policy` says it.
fn policy_extension(policy: &crate::policy::Policy) -> Value {
    let mut described = serde_json::Map::new();
    if policy.access != crate::policy::Access::Unspecified {
        described.insert("access".to_owned(), json!(policy.access.name()));
    }
    if !policy.scopes.is_empty() {
        described.insert("scopes".to_owned(), json!(policy.scopes));
    }
    if let Some(limit) = &policy.rate_limit {
        described.insert(
            "rateLimit".to_owned(),
            json!({
                "requests": limit.requests,
                "period": format!("{}s", limit.period.as_secs_f64()),
                "burst": limit.burst,
            }),
        );
    }
    Value::Object(described)
}

/// Query parameters for every field the query may set: scalars, enums, repeated scalars and the
/// well-known types written as one string, nested messages as dotted names.
fn query_parameters(
    schemas: &mut Schemas<'_>,
    message: &MessageDescriptor,
    skip: &[Vec<String>],
    prefix: &str,
    depth: usize,
    out: &mut Vec<Value>,
) {
    for field in message.fields() {
        if field.is_map() || skip.iter().any(|s| s.len() == 1 && s[0] == field.name()) {
            continue;
        }
        let name = format!("{prefix}{}", field.json_name());
        match field.kind() {
            Kind::Message(inner) if !takes_text(inner.full_name()) => {
                // Nested messages by their dotted field names, a few levels deep.
                if field.is_list() || depth >= 3 {
                    continue;
                }
                let nested: Vec<Vec<String>> = skip
                    .iter()
                    .filter(|s| s.len() > 1 && s[0] == field.name())
                    .map(|s| s[1..].to_vec())
                    .collect();
                query_parameters(
                    schemas,
                    &inner,
                    &nested,
                    &format!("{name}."),
                    depth + 1,
                    out,
                );
            }
            _ => out.push(query_parameter(schemas, &field, name)),
        }
    }
}

fn query_parameter(schemas: &mut Schemas<'_>, field: &FieldDescriptor, name: String) -> Value {
    let mut schema = schemas.field(field, Form::Request);
    // A query cannot say `null`: drop the nullable form of optional fields.
    if let Some(first) = schema
        .get("anyOf")
        .and_then(|any| any.as_array())
        .and_then(|any| any.first())
        .cloned()
    {
        schema = first;
    }
    json!({"name": name, "in": "query", "required": false, "schema": schema})
}

/// Well-known message types a query parameter sets from one string.
fn takes_text(name: &str) -> bool {
    crate::model::WellKnown::of(name).is_some_and(crate::model::WellKnown::has_text_form)
}

/// The request body: exactly what the binding reads from it, in the messages' request form.
fn request_body(
    schemas: &mut Schemas<'_>,
    method: &Method,
    binding: &Binding,
    path_fields: &[Vec<String>],
) -> Option<Value> {
    let input = method.descriptor.input();
    let schema = match &binding.body {
        Body::None => return None,
        Body::Whole if is_http_body(&input) => return Some(raw_request()),
        Body::Whole => schemas.message_without(&input, path_fields, Form::Request),
        Body::Field(field) => match field.kind() {
            Kind::Message(m) if is_http_body(&m) && !field.is_list() => {
                return Some(raw_request());
            }
            // Path variables inside the body field (`{note.name}` with body `note`) are not
            // the body's.
            Kind::Message(m) if !field.is_list() && !field.is_map() => {
                let inside: Vec<Vec<String>> = path_fields
                    .iter()
                    .filter(|path| path.len() > 1 && path[0] == field.name())
                    .map(|path| path[1..].to_vec())
                    .collect();
                schemas.message_without(&m, &inside, Form::Request)
            }
            _ => schemas.field(field, Form::Request),
        },
    };
    if method.shape().streams_requests() {
        // OpenAPI 3.1 has no schema for a body of many JSON values, and client generators
        // refuse `application/x-ndjson` bodies: the document gives the array form, which every
        // client can send, and says in words (and in an extension tools may read) that the same
        // messages may stream as NDJSON.
        return Some(json!({
            "required": true,
            "description": "The stream's messages: a JSON array, sent whole; or, with `Content-Type: application/x-ndjson`, one JSON value each, newline-delimited (or simply concatenated), each passed on as soon as it arrives.",
            "content": {"application/json": {"schema": {"type": "array", "items": schema.clone()}}},
            "x-protogate-streaming": {"contentType": "application/x-ndjson", "itemSchema": schema},
        }));
    }
    Some(json!({"required": true, "content": {"application/json": {"schema": schema}}}))
}

fn raw_request() -> Value {
    json!({
        "required": true,
        "description": "The raw bytes, with their content type.",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    })
}

/// The success response (what is really sent, `response_body` applied, in the messages'
/// response form) and the error response.
fn responses(schemas: &mut Schemas<'_>, method: &Method, binding: &Binding) -> Value {
    let output = method.descriptor.output();
    let raw = match &binding.response_body {
        Some(field) => matches!(field.kind(), Kind::Message(m) if is_http_body(&m)),
        None => is_http_body(&output),
    };
    let item = match &binding.response_body {
        Some(field) => schemas.field(field, Form::Response),
        None => schemas.message(&output, Form::Response),
    };
    let status = schemas.status_ref();
    let ok = if raw {
        json!({
            "description": "The raw bytes, with the content type the service gave them.",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        })
    } else {
        if !method.shape().streams_responses() {
            json!({
                "description": "OK",
                "content": {"application/json": {"schema": item}},
            })
        } else {
            json!({
                "description": "A stream of messages: one `{\"result\": …}` line each, and an `{\"error\": …}` line if the stream fails after its first message; Server-Sent Events (`data:` per message, `event: error`, `event: end`) for `Accept: text/event-stream`.",
                "content": {
                    "application/x-ndjson": {"schema": {
                        "type": "object",
                        "properties": {"result": item, "error": status.clone()},
                    }},
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            })
        }
    };
    json!({
        "200": ok,
        "default": {
            "description": "An error, as google.rpc.Status.",
            "content": {"application/json": {"schema": status}},
        },
    })
}

fn is_http_body(message: &MessageDescriptor) -> bool {
    message.full_name() == "google.api.HttpBody"
}
