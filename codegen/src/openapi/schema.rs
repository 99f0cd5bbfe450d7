//! Proto types as JSON Schema (the OpenAPI 3.1 dialect), in their proto3 JSON forms: one
//! component per message and enum, referenced from fields and operations.
//!
//! `google.api.field_behavior` describes two forms of a message. `REQUIRED` binds what a client
//! sends, never what it receives (a service may leave a required field empty in an answer), so
//! `required` appears only in the request form. An `OUTPUT_ONLY` field is left out of the request
//! form (the service sets it and ignores what a client sends), and an `INPUT_ONLY` field out of
//! the response form (the service never returns it); both keep their `readOnly` / `writeOnly`
//! annotation where they do appear. A message whose two forms are the same, itself and every
//! message it contains, has one component; one whose forms differ has two: the response form
//! under the message's full name (`acme.v1.Book`) and the request form under that name with
//! [`INPUT_SUFFIX`] (`acme.v1.Book-Input`).

use std::collections::{BTreeMap, HashMap, HashSet};

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, OneofDescriptor,
    Value as ProtoValue,
};
use serde_json::{Map, Value, json};

use super::docs;
use crate::model::WellKnown;

/// `google.api.field_behavior` values the document uses.
const REQUIRED: i32 = 2;
const OUTPUT_ONLY: i32 = 3;
const INPUT_ONLY: i32 = 4;

/// What the request form of a message is called: its full name and this suffix. A `-` is never
/// part of a proto name (identifiers are letters, digits and `_`, joined by `.`), yet OpenAPI
/// allows it in component names, so `acme.v1.Book-Input` cannot collide with any message's
/// component, not even a nested message called `Input` (`acme.v1.Book.Input`).
pub(super) const INPUT_SUFFIX: &str = "-Input";

/// Which way a value travels: the form of its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// Sent by the client: `REQUIRED` fields are required, `OUTPUT_ONLY` ones left out.
    Request,
    /// Received by the client: nothing is required, `INPUT_ONLY` fields are left out.
    Response,
}

/// The components of a document, filled as operations refer to types.
pub(super) struct Schemas<'a> {
    pool: &'a DescriptorPool,
    components: BTreeMap<String, Value>,
    /// Whether a message's request and response forms differ, by full name.
    forms_differ: HashMap<String, bool>,
}

impl<'a> Schemas<'a> {
    pub(super) fn new(pool: &'a DescriptorPool) -> Self {
        let mut schemas = Schemas {
            pool,
            components: BTreeMap::new(),
            forms_differ: HashMap::new(),
        };
        schemas.components.insert(STATUS.into(), status_schema());
        schemas
    }

    /// The components, by name.
    pub(super) fn into_components(self) -> Map<String, Value> {
        self.components.into_iter().collect()
    }

    /// A reference to the error body every operation may answer with.
    pub(super) fn status_ref(&self) -> Value {
        reference(STATUS)
    }

    /// The schema of a message in `form`: a reference to its component, or the JSON form of a
    /// well-known type.
    pub(super) fn message(&mut self, message: &MessageDescriptor, form: Form) -> Value {
        if let Some(schema) = well_known(message.full_name()) {
            return schema;
        }
        let name = self.component_name(message, form);
        if !self.components.contains_key(&name) {
            // Reserve the name first: a message may contain itself.
            self.components.insert(name.clone(), json!({}));
            let schema = self.message_schema(message, &[], form);
            self.components.insert(name.clone(), schema);
        }
        reference(&name)
    }

    /// A message's schema in `form` without the fields at `omit` (dotted proto paths): the
    /// body of a request whose path sets those fields.
    pub(super) fn message_without(
        &mut self,
        message: &MessageDescriptor,
        omit: &[Vec<String>],
        form: Form,
    ) -> Value {
        if omit.is_empty() {
            return self.message(message, form);
        }
        self.message_schema(message, omit, form)
    }

    /// The component of a message in `form`: its full name, with [`INPUT_SUFFIX`] for the
    /// request form of a message whose forms differ.
    fn component_name(&mut self, message: &MessageDescriptor, form: Form) -> String {
        match form {
            Form::Request if self.forms_differ(message) => {
                format!("{}{INPUT_SUFFIX}", message.full_name())
            }
            Form::Request | Form::Response => message.full_name().to_owned(),
        }
    }

    /// Whether a message's request and response forms differ: whether it or any message it
    /// contains, however deep (through repeated fields and map values too), has a field whose
    /// behavior is `REQUIRED`, `OUTPUT_ONLY` or `INPUT_ONLY`.
    fn forms_differ(&mut self, message: &MessageDescriptor) -> bool {
        if let Some(known) = self.forms_differ.get(message.full_name()) {
            return *known;
        }
        // Everything the message contains, itself included: recursive messages end here.
        let mut seen = HashSet::from([message.full_name().to_owned()]);
        let mut queue = vec![message.clone()];
        let mut differ = false;
        while let Some(next) = queue.pop() {
            for field in next.fields() {
                let behaviors = field_behaviors(self.pool, &field);
                if behaviors
                    .iter()
                    .any(|b| matches!(*b, REQUIRED | OUTPUT_ONLY | INPUT_ONLY))
                {
                    differ = true;
                }
                if let Kind::Message(inner) = field.kind()
                    && seen.insert(inner.full_name().to_owned())
                {
                    queue.push(inner);
                }
            }
        }
        self.forms_differ
            .insert(message.full_name().to_owned(), differ);
        differ
    }

    /// The schema of one field's value in `form`: repeated, map, optional and nullable forms
    /// included.
    pub(super) fn field(&mut self, field: &FieldDescriptor, form: Form) -> Value {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return json!({});
            };
            let value = entry.map_entry_value_field();
            return json!({
                "type": "object",
                "additionalProperties": self.singular(&value, form),
            });
        }
        let singular = self.singular(field, form);
        if field.is_list() {
            return json!({"type": "array", "items": singular});
        }
        // proto3 `optional` fields and wrappers may be sent as `null`, meaning "not set".
        let optional = field.containing_oneof().is_some_and(|o| o.is_synthetic());
        let wrapper = matches!(field.kind(), Kind::Message(m) if is_wrapper(m.full_name()));
        if optional || wrapper {
            json!({"anyOf": [singular, {"type": "null"}]})
        } else {
            singular
        }
    }

    /// The schema of one value of a field's type.
    fn singular(&mut self, field: &FieldDescriptor, form: Form) -> Value {
        match field.kind() {
            Kind::Double => float("double"),
            Kind::Float => float("float"),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "format": "uint32", "minimum": 0, "maximum": u32::MAX})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"})
            }
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "format": "byte", "contentEncoding": "base64"}),
            Kind::Enum(e) => self.enumeration(&e),
            Kind::Message(m) => self.message(&m, form),
        }
    }

    fn enumeration(&mut self, e: &EnumDescriptor) -> Value {
        if e.full_name() == "google.protobuf.NullValue" {
            return json!({"type": "null"});
        }
        let name = e.full_name().to_owned();
        if !self.components.contains_key(&name) {
            let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
            let mut schema = json!({"type": "string", "enum": names});
            let mut lines = Vec::new();
            if let Some(text) = docs::leading(e.parent_file(), e.path()) {
                lines.push(text);
            }
            for value in e.values() {
                if let Some(text) = docs::leading(value.parent_file(), value.path()) {
                    lines.push(format!("- `{}`: {}", value.name(), text.replace('\n', " ")));
                }
            }
            if !lines.is_empty() {
                schema["description"] = json!(lines.join("\n"));
            }
            self.components.insert(name.clone(), schema);
        }
        reference(&name)
    }

    /// A message's schema in `form`, leaving out the fields at `omit`.
    fn message_schema(
        &mut self,
        message: &MessageDescriptor,
        omit: &[Vec<String>],
        form: Form,
    ) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            let nested: Vec<Vec<String>> = omit
                .iter()
                .filter(|path| path.first().is_some_and(|f| f == field.name()) && path.len() > 1)
                .map(|path| path[1..].to_vec())
                .collect();
            let omitted = omit
                .iter()
                .any(|path| path.len() == 1 && path[0] == field.name());
            let behaviors = field_behaviors(self.pool, &field);
            let other_form = match form {
                Form::Request => OUTPUT_ONLY,
                Form::Response => INPUT_ONLY,
            };
            if omitted || behaviors.contains(&other_form) {
                continue;
            }
            let mut schema = match (field.kind(), nested.is_empty()) {
                (Kind::Message(inner), false) => self.message_without(&inner, &nested, form),
                _ => self.field(&field, form),
            };
            annotate(&mut schema, &field, &behaviors);
            if form == Form::Request && behaviors.contains(&REQUIRED) {
                required.push(field.json_name().to_owned());
            }
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut schema = json!({"type": "object", "properties": properties});
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
        let oneofs: Vec<Value> = message
            .oneofs()
            .filter(|oneof| !oneof.is_synthetic())
            .filter_map(|oneof| at_most_one(&oneof, &properties_of(&schema)))
            .collect();
        if !oneofs.is_empty() {
            schema["allOf"] = json!(oneofs);
        }
        if let Some(text) = docs::leading(message.parent_file(), message.path()) {
            schema["description"] = json!(text);
        }
        if is_deprecated(&message.options()) {
            schema["deprecated"] = json!(true);
        }
        schema
    }
}

const STATUS: &str = "google.rpc.Status";

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn properties_of(schema: &Value) -> Vec<String> {
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// A oneof as a constraint: at most one of its members is present (exactly one branch of the
/// `oneOf` matches: one per member, and one for none).
fn at_most_one(oneof: &OneofDescriptor, present: &[String]) -> Option<Value> {
    let members: Vec<String> = oneof
        .fields()
        .map(|f| f.json_name().to_owned())
        .filter(|name| present.contains(name))
        .collect();
    if members.len() < 2 {
        return None;
    }
    let each: Vec<Value> = members.iter().map(|m| json!({"required": [m]})).collect();
    let mut branches = each.clone();
    branches.push(json!({"not": {"anyOf": each}}));
    Some(json!({"oneOf": branches}))
}

/// Description, deprecation and `google.api.field_behavior` on a field's schema.
fn annotate(schema: &mut Value, field: &FieldDescriptor, behaviors: &[i32]) {
    let mut extra = Map::new();
    if let Some(text) = docs::leading(field.parent_file(), field.path()) {
        extra.insert("description".into(), json!(text));
    }
    if behaviors.contains(&OUTPUT_ONLY) {
        extra.insert("readOnly".into(), json!(true));
    }
    if behaviors.contains(&INPUT_ONLY) {
        extra.insert("writeOnly".into(), json!(true));
    }
    if is_deprecated(&field.options()) {
        extra.insert("deprecated".into(), json!(true));
    }
    if let Some(object) = schema.as_object_mut() {
        object.extend(extra);
    }
}

/// The `google.api.field_behavior` values of a field.
fn field_behaviors(pool: &DescriptorPool, field: &FieldDescriptor) -> Vec<i32> {
    let Some(extension) = pool.get_extension_by_name("google.api.field_behavior") else {
        return Vec::new();
    };
    let options = field.options();
    if !options.has_extension(&extension) {
        return Vec::new();
    }
    match options.get_extension(&extension).as_ref() {
        ProtoValue::List(values) => values
            .iter()
            .filter_map(ProtoValue::as_enum_number)
            .collect(),
        ProtoValue::EnumNumber(value) => vec![*value],
        _ => Vec::new(),
    }
}

/// Whether the `deprecated` option is set on a descriptor's options.
pub(super) fn is_deprecated(options: &prost_reflect::DynamicMessage) -> bool {
    options
        .get_field_by_name("deprecated")
        .is_some_and(|value| value.as_bool() == Some(true))
}

/// A float in proto3 JSON: a number, or one of the strings for the values JSON has no number
/// for.
fn float(format: &str) -> Value {
    json!({"oneOf": [
        {"type": "number", "format": format},
        {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]},
    ]})
}

/// Whether a message is one of the wrapper types (`google.protobuf.Int32Value`…).
pub(super) fn is_wrapper(name: &str) -> bool {
    WellKnown::of(name).is_some_and(WellKnown::is_wrapper)
}

/// The JSON form of a well-known type, which has no component of its own.
fn well_known(name: &str) -> Option<Value> {
    Some(match WellKnown::of(name)? {
        WellKnown::Timestamp => json!({"type": "string", "format": "date-time"}),
        WellKnown::Duration => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"})
        }
        WellKnown::FieldMask => json!({"type": "string"}),
        WellKnown::Struct => json!({"type": "object"}),
        WellKnown::Value => json!({}),
        WellKnown::ListValue => json!({"type": "array"}),
        WellKnown::Empty => json!({"type": "object"}),
        WellKnown::Any => json!({
            "type": "object",
            "properties": {"@type": {"type": "string"}},
        }),
        WellKnown::DoubleValue => float("double"),
        WellKnown::FloatValue => float("float"),
        WellKnown::Int64Value => json!({"type": "string", "format": "int64"}),
        WellKnown::UInt64Value => json!({"type": "string", "format": "uint64"}),
        WellKnown::Int32Value => json!({"type": "integer", "format": "int32"}),
        WellKnown::UInt32Value => json!({"type": "integer", "format": "uint32"}),
        WellKnown::BoolValue => json!({"type": "boolean"}),
        WellKnown::StringValue => json!({"type": "string"}),
        WellKnown::BytesValue => {
            json!({"type": "string", "format": "byte", "contentEncoding": "base64"})
        }
    })
}

/// google.rpc.Status as the gateway writes every error.
fn status_schema() -> Value {
    json!({
        "type": "object",
        "description": "An error: its gRPC code, a message for developers, and details (google.rpc error details as JSON `Any`s).",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"@type": {"type": "string"}},
                    "required": ["@type"],
                },
            },
        },
        "required": ["code", "message"],
    })
}
