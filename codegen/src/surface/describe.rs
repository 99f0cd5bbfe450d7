//! The surface of a model: what its bindings make of the protos, as a REST client sees it.

use std::collections::{BTreeMap, HashMap};

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor,
    Value as ProtoValue,
};

use super::{
    BindingSurface, EnumSurface, EnumValueSurface, FieldSurface, MessageSurface, PathParameter,
    Payload, QueryParameter, SURFACE_FORMAT, Surface, ValueType,
};
use crate::model::{Binding, Body, Method, Model, Shape, WellKnown};

/// How deep the query reaches into nested messages (`a.b.c`), as the OpenAPI document lists it.
const QUERY_DEPTH: usize = 3;

/// `google.api.HttpBody`: raw bytes with a content type, not JSON.
const HTTP_BODY: &str = "google.api.HttpBody";

/// The surface of every binding of `model`.
pub(crate) fn describe(model: &Model) -> Surface {
    let mut describer = Describer {
        pool: &model.pool,
        places: HashMap::new(),
        messages: BTreeMap::new(),
        enums: BTreeMap::new(),
        pending: Vec::new(),
    };
    let mut bindings = Vec::new();
    for service in &model.services {
        for method in &service.methods {
            for binding in &method.bindings {
                bindings.push(describer.binding(method, binding));
            }
            describer.reach(&method.descriptor.input());
            describer.reach(&method.descriptor.output());
        }
    }
    describer.drain();
    Surface {
        protogate_rest_surface: SURFACE_FORMAT,
        bindings,
        messages: describer.messages,
        enums: describer.enums,
    }
}

/// The shape's name in the surface.
pub(super) fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Unary => "unary",
        Shape::ServerStreaming => "server_streaming",
        Shape::ClientStreaming => "client_streaming",
        Shape::BidiStreaming => "bidi_streaming",
    }
}

/// Whether a message has a JSON form of its own, so the surface names it without listing its
/// fields.
pub(super) fn is_opaque(full_name: &str) -> bool {
    full_name == HTTP_BODY || WellKnown::of(full_name).is_some()
}

struct Describer<'a> {
    pool: &'a DescriptorPool,
    /// Source positions by file, then by source-code-info path.
    places: HashMap<String, HashMap<Vec<i32>, String>>,
    messages: BTreeMap<String, MessageSurface>,
    enums: BTreeMap<String, EnumSurface>,
    /// Messages reached but not yet described.
    pending: Vec<MessageDescriptor>,
}

impl Describer<'_> {
    fn binding(&mut self, method: &Method, binding: &Binding) -> BindingSurface {
        let descriptor = &method.descriptor;
        let input = descriptor.input();
        let path_fields: Vec<Vec<String>> = binding
            .variables
            .iter()
            .map(|v| v.fields.iter().map(|f| f.name().to_owned()).collect())
            .collect();
        let path = binding
            .variables
            .iter()
            .filter_map(|variable| {
                let field = variable.fields.last()?;
                Some(PathParameter {
                    field: variable.field_path.clone(),
                    element: field.full_name().to_owned(),
                    location: self.place(field.parent_file(), field.path()),
                    value: value_type(field),
                })
            })
            .collect();
        let mut query = Vec::new();
        let (body, request) = match &binding.body {
            Body::None => (None, None),
            Body::Whole => (
                Some("*".to_owned()),
                Some(Payload {
                    value: message_type(&input),
                    omits: path_fields.iter().map(|p| p.join(".")).collect(),
                }),
            ),
            Body::Field(field) => (
                Some(field.name().to_owned()),
                Some(Payload {
                    value: value_type(field),
                    omits: path_fields
                        .iter()
                        .filter(|p| p.len() > 1 && p[0] == field.name())
                        .map(|p| p[1..].join("."))
                        .collect(),
                }),
            ),
        };
        if !matches!(binding.body, Body::Whole) {
            let mut skip = path_fields.clone();
            if let Body::Field(field) = &binding.body {
                skip.push(vec![field.name().to_owned()]);
            }
            self.query(&input, &skip, ("", ""), 0, &mut query);
        }
        let response = Payload {
            value: match &binding.response_body {
                Some(field) => value_type(field),
                None => message_type(&descriptor.output()),
            },
            omits: Vec::new(),
        };
        BindingSurface {
            rpc: descriptor.full_name().to_owned(),
            rpc_location: self.place(descriptor.parent_file(), descriptor.path()),
            location: binding.location.to_string(),
            shape: shape_name(method.shape()).to_owned(),
            method: binding.http_method.clone(),
            template: binding.template_text.clone(),
            route: format!("{} {}", binding.http_method, binding.template.shape()),
            body,
            response_body: binding.response_body.as_ref().map(|f| f.name().to_owned()),
            path,
            query,
            request,
            response,
        }
    }

    /// The query parameters of `message` under `prefix` (JSON names, proto names), leaving out
    /// the fields at `skip` (dotted proto paths, split).
    fn query(
        &mut self,
        message: &MessageDescriptor,
        skip: &[Vec<String>],
        prefix: (&str, &str),
        depth: usize,
        out: &mut Vec<QueryParameter>,
    ) {
        for field in message.fields() {
            if skip.iter().any(|s| s.len() == 1 && s[0] == field.name()) {
                continue;
            }
            let name = format!("{}{}", prefix.0, field.json_name());
            let proto = format!("{}{}", prefix.1, field.name());
            match field.kind() {
                Kind::Message(inner)
                    if !field.is_map()
                        && !WellKnown::of(inner.full_name())
                            .is_some_and(WellKnown::has_text_form) =>
                {
                    if field.is_list() || depth >= QUERY_DEPTH {
                        continue;
                    }
                    let nested: Vec<Vec<String>> = skip
                        .iter()
                        .filter(|s| s.len() > 1 && s[0] == field.name())
                        .map(|s| s[1..].to_vec())
                        .collect();
                    self.query(
                        &inner,
                        &nested,
                        (&format!("{name}."), &format!("{proto}.")),
                        depth + 1,
                        out,
                    );
                }
                _ => {
                    let required = self.behaviors(&field).iter().any(|b| b == "REQUIRED");
                    out.push(QueryParameter {
                        name,
                        field: proto,
                        element: field.full_name().to_owned(),
                        location: self.place(field.parent_file(), field.path()),
                        required,
                        value: value_type(&field),
                    });
                }
            }
        }
    }

    /// Notes that `message` is reached; it is described by [`Describer::drain`].
    fn reach(&mut self, message: &MessageDescriptor) {
        if !is_opaque(message.full_name()) && !self.messages.contains_key(message.full_name()) {
            // Reserve the name, so that a message holding itself is described once.
            self.messages.insert(
                message.full_name().to_owned(),
                MessageSurface {
                    location: String::new(),
                    fields: Vec::new(),
                },
            );
            self.pending.push(message.clone());
        }
    }

    /// Describes every message reached, and every message and enum they reach.
    fn drain(&mut self) {
        while let Some(message) = self.pending.pop() {
            let mut fields = Vec::new();
            for field in message.fields() {
                match field.kind() {
                    Kind::Message(inner) => self.reach(&inner),
                    Kind::Enum(e) => self.enumeration(&e),
                    _ => {}
                }
                fields.push(FieldSurface {
                    name: field.name().to_owned(),
                    json_name: field.json_name().to_owned(),
                    number: field.number(),
                    oneof: field
                        .containing_oneof()
                        .filter(|o| !o.is_synthetic())
                        .map(|o| o.name().to_owned()),
                    behavior: self.behaviors(&field),
                    location: self.place(field.parent_file(), field.path()),
                    value: value_type(&field),
                });
            }
            let location = self.place(message.parent_file(), message.path());
            self.messages.insert(
                message.full_name().to_owned(),
                MessageSurface { location, fields },
            );
        }
    }

    fn enumeration(&mut self, e: &EnumDescriptor) {
        if self.enums.contains_key(e.full_name()) || e.full_name() == "google.protobuf.NullValue" {
            return;
        }
        let values = e
            .values()
            .map(|value| EnumValueSurface {
                name: value.name().to_owned(),
                number: value.number(),
                location: self.place(value.parent_file(), value.path()),
            })
            .collect();
        let location = self.place(e.parent_file(), e.path());
        self.enums
            .insert(e.full_name().to_owned(), EnumSurface { location, values });
    }

    /// The `google.api.field_behavior` values of a field, by name.
    fn behaviors(&self, field: &FieldDescriptor) -> Vec<String> {
        let Some(extension) = self.pool.get_extension_by_name("google.api.field_behavior") else {
            return Vec::new();
        };
        let options = field.options();
        if !options.has_extension(&extension) {
            return Vec::new();
        }
        let numbers = match options.get_extension(&extension).as_ref() {
            ProtoValue::List(values) => values
                .iter()
                .filter_map(ProtoValue::as_enum_number)
                .collect(),
            ProtoValue::EnumNumber(value) => vec![*value],
            _ => Vec::new(),
        };
        let Kind::Enum(behavior) = extension.kind() else {
            return Vec::new();
        };
        numbers
            .into_iter()
            .map(|number| match behavior.get_value(number) {
                Some(value) => value.name().to_owned(),
                None => number.to_string(),
            })
            .collect()
    }

    /// `file:line:column` of the element at `path` in `file`.
    fn place(&mut self, file: FileDescriptor, path: &[i32]) -> String {
        let places = self
            .places
            .entry(file.name().to_owned())
            .or_insert_with(|| {
                let mut places = HashMap::new();
                let proto = file.file_descriptor_proto();
                for location in proto.source_code_info.iter().flat_map(|i| &i.location) {
                    if let (Some(line), Some(column)) =
                        (location.span.first(), location.span.get(1))
                    {
                        places.entry(location.path.clone()).or_insert_with(|| {
                            format!("{}:{}:{}", file.name(), line + 1, column + 1)
                        });
                    }
                }
                places
            });
        match places.get(path) {
            Some(place) => place.clone(),
            None => crate::model::locate_in(file, path).to_string(),
        }
    }
}

/// The type of a field's value.
fn value_type(field: &FieldDescriptor) -> ValueType {
    if field.is_map()
        && let Kind::Message(entry) = field.kind()
    {
        let key = entry.map_entry_key_field();
        let mut value = single(&entry.map_entry_value_field());
        value.map_key = Some(scalar_name(&key.kind()).to_owned());
        value.json = format!("object of {}", value.json);
        return value;
    }
    let mut value = single(field);
    if field.is_list() {
        value.repeated = true;
        value.json = format!("array of {}", value.json);
    }
    value
}

/// The type of one value of a field (its repetition left aside).
fn single(field: &FieldDescriptor) -> ValueType {
    match field.kind() {
        Kind::Message(message) => message_type(&message),
        Kind::Enum(e) => ValueType {
            proto_type: "enum".to_owned(),
            message: None,
            r#enum: Some(e.full_name().to_owned()),
            repeated: false,
            map_key: None,
            json: if e.full_name() == "google.protobuf.NullValue" {
                "null".to_owned()
            } else {
                format!("string (enum {})", e.full_name())
            },
        },
        kind => ValueType {
            proto_type: scalar_name(&kind).to_owned(),
            message: None,
            r#enum: None,
            repeated: false,
            map_key: None,
            json: scalar_json(&kind).to_owned(),
        },
    }
}

/// The type of a message value.
fn message_type(message: &MessageDescriptor) -> ValueType {
    let name = message.full_name();
    let json = match WellKnown::of(name) {
        _ if name == HTTP_BODY => "raw bytes (google.api.HttpBody)".to_owned(),
        Some(known) => well_known_json(known).to_owned(),
        None => format!("object ({name})"),
    };
    ValueType {
        proto_type: "message".to_owned(),
        message: Some(name.to_owned()),
        r#enum: None,
        repeated: false,
        map_key: None,
        json,
    }
}

fn scalar_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Double => "double",
        Kind::Float => "float",
        Kind::Int32 => "int32",
        Kind::Int64 => "int64",
        Kind::Uint32 => "uint32",
        Kind::Uint64 => "uint64",
        Kind::Sint32 => "sint32",
        Kind::Sint64 => "sint64",
        Kind::Fixed32 => "fixed32",
        Kind::Fixed64 => "fixed64",
        Kind::Sfixed32 => "sfixed32",
        Kind::Sfixed64 => "sfixed64",
        Kind::Bool => "bool",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Message(_) => "message",
        Kind::Enum(_) => "enum",
    }
}

fn scalar_json(kind: &Kind) -> &'static str {
    match kind {
        Kind::Double => "number (double)",
        Kind::Float => "number (float)",
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => "integer (int32)",
        Kind::Uint32 | Kind::Fixed32 => "integer (uint32)",
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => "string (int64)",
        Kind::Uint64 | Kind::Fixed64 => "string (uint64)",
        Kind::Bool => "boolean",
        Kind::String => "string",
        Kind::Bytes => "string (base64)",
        Kind::Message(_) => "object",
        Kind::Enum(_) => "string (enum)",
    }
}

fn well_known_json(known: WellKnown) -> &'static str {
    match known {
        WellKnown::DoubleValue => "number (double) or null",
        WellKnown::FloatValue => "number (float) or null",
        WellKnown::Int64Value => "string (int64) or null",
        WellKnown::UInt64Value => "string (uint64) or null",
        WellKnown::Int32Value => "integer (int32) or null",
        WellKnown::UInt32Value => "integer (uint32) or null",
        WellKnown::BoolValue => "boolean or null",
        WellKnown::StringValue => "string or null",
        WellKnown::BytesValue => "string (base64) or null",
        WellKnown::Timestamp => "string (date-time)",
        WellKnown::Duration => "string (duration)",
        WellKnown::FieldMask => "string (field mask)",
        WellKnown::Struct => "object (any properties)",
        WellKnown::Value => "any JSON value",
        WellKnown::ListValue => "array (any values)",
        WellKnown::Any => "object (with @type)",
        WellKnown::Empty => "object (empty)",
    }
}
