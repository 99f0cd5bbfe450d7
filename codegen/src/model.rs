//! The typed model both back ends generate from: services, methods and their HTTP bindings,
//! validated once, with errors that point at the proto file and line of the rule.

use std::collections::HashMap;

use prost_reflect::{
    Cardinality, DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor,
    MethodDescriptor, ServiceDescriptor, Value,
};

use crate::error::{BindingConflict, LocatedError, Location, RuleError};
use crate::policy::Policy;
use crate::template::{self, PathTemplate};

/// Field number of `google.api.http` in `google.protobuf.MethodOptions`.
const HTTP_EXTENSION: i32 = 72295728;
/// Field number of `options` in `MethodDescriptorProto`.
const METHOD_OPTIONS: i32 = 4;
/// Field number of `additional_bindings` in `HttpRule`.
const ADDITIONAL_BINDINGS: i32 = 11;

/// The google.protobuf message types with a JSON form of their own: the one list of them in
/// protogate-build. Every other place matches on this enum, so a type added here must be handled
/// everywhere. The other google.protobuf messages that map to JSON are ordinary messages, decided
/// by their file ([`ORDINARY_FILES`], [`is_ordinary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WellKnown {
    /// `google.protobuf.DoubleValue`.
    DoubleValue,
    /// `google.protobuf.FloatValue`.
    FloatValue,
    /// `google.protobuf.Int64Value`.
    Int64Value,
    /// `google.protobuf.UInt64Value`.
    UInt64Value,
    /// `google.protobuf.Int32Value`.
    Int32Value,
    /// `google.protobuf.UInt32Value`.
    UInt32Value,
    /// `google.protobuf.BoolValue`.
    BoolValue,
    /// `google.protobuf.StringValue`.
    StringValue,
    /// `google.protobuf.BytesValue`.
    BytesValue,
    /// `google.protobuf.Timestamp`: an RFC 3339 string.
    Timestamp,
    /// `google.protobuf.Duration`: `"1.5s"`.
    Duration,
    /// `google.protobuf.FieldMask`: `"a.b,c"`.
    FieldMask,
    /// `google.protobuf.Struct`: a JSON object.
    Struct,
    /// `google.protobuf.Value`: any JSON value.
    Value,
    /// `google.protobuf.ListValue`: a JSON array.
    ListValue,
    /// `google.protobuf.Any`: an object with `@type`.
    Any,
    /// `google.protobuf.Empty`: `{}`.
    Empty,
}

impl WellKnown {
    /// Every well-known message type.
    pub const ALL: &'static [WellKnown] = &[
        WellKnown::DoubleValue,
        WellKnown::FloatValue,
        WellKnown::Int64Value,
        WellKnown::UInt64Value,
        WellKnown::Int32Value,
        WellKnown::UInt32Value,
        WellKnown::BoolValue,
        WellKnown::StringValue,
        WellKnown::BytesValue,
        WellKnown::Timestamp,
        WellKnown::Duration,
        WellKnown::FieldMask,
        WellKnown::Struct,
        WellKnown::Value,
        WellKnown::ListValue,
        WellKnown::Any,
        WellKnown::Empty,
    ];

    /// The well-known type of this full name, if it is one.
    pub fn of(full_name: &str) -> Option<WellKnown> {
        let name = full_name.strip_prefix("google.protobuf.")?;
        WellKnown::ALL.iter().copied().find(|w| w.name() == name)
    }

    /// The name inside package `google.protobuf`.
    pub fn name(self) -> &'static str {
        match self {
            WellKnown::DoubleValue => "DoubleValue",
            WellKnown::FloatValue => "FloatValue",
            WellKnown::Int64Value => "Int64Value",
            WellKnown::UInt64Value => "UInt64Value",
            WellKnown::Int32Value => "Int32Value",
            WellKnown::UInt32Value => "UInt32Value",
            WellKnown::BoolValue => "BoolValue",
            WellKnown::StringValue => "StringValue",
            WellKnown::BytesValue => "BytesValue",
            WellKnown::Timestamp => "Timestamp",
            WellKnown::Duration => "Duration",
            WellKnown::FieldMask => "FieldMask",
            WellKnown::Struct => "Struct",
            WellKnown::Value => "Value",
            WellKnown::ListValue => "ListValue",
            WellKnown::Any => "Any",
            WellKnown::Empty => "Empty",
        }
    }

    /// A wrapper type (`Int32Value`…), written as its bare scalar.
    pub fn is_wrapper(self) -> bool {
        matches!(
            self,
            WellKnown::DoubleValue
                | WellKnown::FloatValue
                | WellKnown::Int64Value
                | WellKnown::UInt64Value
                | WellKnown::Int32Value
                | WellKnown::UInt32Value
                | WellKnown::BoolValue
                | WellKnown::StringValue
                | WellKnown::BytesValue
        )
    }

    /// Written as one JSON scalar, so it may be set from a path or query value.
    pub fn has_text_form(self) -> bool {
        self.is_wrapper()
            || matches!(
                self,
                WellKnown::Timestamp | WellKnown::Duration | WellKnown::FieldMask
            )
    }
}

/// The google.protobuf files whose messages and enums have no JSON form of their own: they map
/// like any message, and the runtime carries their mappers, generated by protogate-build for
/// prost-types' types (`runtime/src/json/api_types.rs`), less what [`PROST_TYPES_LACKS`] names.
pub const ORDINARY_FILES: [&str; 4] = [
    "google/protobuf/api.proto",
    "google/protobuf/descriptor.proto",
    "google/protobuf/source_context.proto",
    "google/protobuf/type.proto",
];

/// What prost-types 0.14 has no Rust type or field for in [`ORDINARY_FILES`] (it predates
/// editions), by full name: messages, enums and fields (`google.protobuf.Type.edition`). The
/// nested types and fields of a name here are left out with it. Sorted; a test of
/// protogate-build checks it against prost-types itself, entry by entry.
pub const PROST_TYPES_LACKS: &[&str] = &[
    "google.protobuf.Edition",
    "google.protobuf.Enum.edition",
    "google.protobuf.EnumOptions.deprecated_legacy_json_field_conflicts",
    "google.protobuf.EnumOptions.features",
    "google.protobuf.EnumValueOptions.debug_redact",
    "google.protobuf.EnumValueOptions.features",
    "google.protobuf.ExtensionRangeOptions.Declaration",
    "google.protobuf.ExtensionRangeOptions.VerificationState",
    "google.protobuf.ExtensionRangeOptions.declaration",
    "google.protobuf.ExtensionRangeOptions.features",
    "google.protobuf.ExtensionRangeOptions.verification",
    "google.protobuf.FeatureSet",
    "google.protobuf.FeatureSetDefaults",
    "google.protobuf.FieldOptions.EditionDefault",
    "google.protobuf.FieldOptions.OptionRetention",
    "google.protobuf.FieldOptions.OptionTargetType",
    "google.protobuf.FieldOptions.debug_redact",
    "google.protobuf.FieldOptions.edition_defaults",
    "google.protobuf.FieldOptions.features",
    "google.protobuf.FieldOptions.retention",
    "google.protobuf.FieldOptions.targets",
    "google.protobuf.FieldOptions.unverified_lazy",
    "google.protobuf.FileDescriptorProto.edition",
    "google.protobuf.FileOptions.features",
    "google.protobuf.GeneratedCodeInfo.Annotation.Semantic",
    "google.protobuf.GeneratedCodeInfo.Annotation.semantic",
    "google.protobuf.MessageOptions.deprecated_legacy_json_field_conflicts",
    "google.protobuf.MessageOptions.features",
    "google.protobuf.MethodOptions.features",
    "google.protobuf.OneofOptions.features",
    "google.protobuf.ServiceOptions.features",
    "google.protobuf.Type.edition",
];

/// Whether `full_name`, a message, enum or field declared in `file`, maps like any message with
/// a mapper the runtime carries: declared in one of [`ORDINARY_FILES`], and prost-types has it.
pub fn is_ordinary(file: &str, full_name: &str) -> bool {
    ORDINARY_FILES.contains(&file) && !prost_types_lacks(full_name)
}

/// Whether prost-types lacks `full_name` or the type it is nested in.
pub fn prost_types_lacks(full_name: &str) -> bool {
    PROST_TYPES_LACKS.iter().any(|lack| {
        full_name
            .strip_prefix(lack)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

/// What the model is built with: the [`crate::Builder`] settings that change which bindings
/// there are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Two bindings matching the same requests are an error rather than a warning.
    pub strict_bindings: bool,
    /// Every RPC without a `google.api.http` rule gets an unbound binding
    /// ([`Binding::unbound`]).
    pub unbound_methods: bool,
}

/// The package of protogate's own built-in services (`protogate/api/auth.proto`): the gateway
/// calls them, clients never reach them through it, so they get no unbound binding.
const OWN_PACKAGE: &str = "protogate.api";

/// Every service of the build that has at least one HTTP binding.
pub struct Model {
    /// The descriptors everything refers to.
    pub pool: DescriptorPool,
    /// Services with bindings, in file order.
    pub services: Vec<Service>,
    /// Bindings left out because an earlier one has the same method and shape (only when
    /// duplicates are not errors): each names both bindings.
    pub warnings: Vec<LocatedError>,
}

/// A gRPC service with HTTP bindings.
pub struct Service {
    /// The service's descriptor.
    pub descriptor: ServiceDescriptor,
    /// Its methods that have at least one binding.
    pub methods: Vec<Method>,
}

/// An RPC and its bindings.
pub struct Method {
    /// The method's descriptor.
    pub descriptor: MethodDescriptor,
    /// The primary binding first, then `additional_bindings` in order.
    pub bindings: Vec<Binding>,
    /// The edge policy it declares (`(protogate.api.policy)` over its service's default).
    pub policy: Policy,
}

/// The streaming shape of an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// Streams both ways.
    BidiStreaming,
}

impl Shape {
    /// Whether the client sends a stream of requests (client and bidi streaming): what the
    /// generated signatures, the request body's media types and the handler's input follow.
    pub fn streams_requests(self) -> bool {
        matches!(self, Shape::ClientStreaming | Shape::BidiStreaming)
    }

    /// Whether the upstream answers with a stream (server and bidi streaming).
    pub fn streams_responses(self) -> bool {
        matches!(self, Shape::ServerStreaming | Shape::BidiStreaming)
    }
}

impl Method {
    /// The RPC's streaming shape.
    pub fn shape(&self) -> Shape {
        match (
            self.descriptor.is_client_streaming(),
            self.descriptor.is_server_streaming(),
        ) {
            (false, false) => Shape::Unary,
            (false, true) => Shape::ServerStreaming,
            (true, false) => Shape::ClientStreaming,
            (true, true) => Shape::BidiStreaming,
        }
    }
}

/// One HTTP method + path template bound to an RPC.
pub struct Binding {
    /// Upper-case HTTP method (`GET`, or a custom kind).
    pub http_method: String,
    /// The parsed template.
    pub template: PathTemplate,
    /// The template as written in the proto.
    pub template_text: String,
    /// Where the request body goes.
    pub body: Body,
    /// The response field sent as the body instead of the whole message.
    pub response_body: Option<FieldDescriptor>,
    /// The template's variables, resolved to fields.
    pub variables: Vec<PathVariable>,
    /// Where the rule is written (for an unbound binding, the RPC's declaration).
    pub location: Location,
    /// Synthesized for an RPC without a `google.api.http` rule (with
    /// [`Options::unbound_methods`]): `POST /{package}.{Service}/{Method}`, the whole request
    /// message as the body.
    pub unbound: bool,
}

/// What the HTTP body holds.
pub enum Body {
    /// No body: every non-path field comes from the query.
    None,
    /// `body: "*"`: every non-path field comes from the body.
    Whole,
    /// `body: "field"`: that field from the body, the rest from the query.
    Field(FieldDescriptor),
}

/// A template variable and the chain of fields it names.
pub struct PathVariable {
    /// The dotted proto field path, as written.
    pub field_path: String,
    /// Each field along the path; the last is the one set.
    pub fields: Vec<FieldDescriptor>,
}

impl Model {
    /// Builds and validates the model for the services declared in `files`.
    ///
    /// Two bindings with the same HTTP method and path shape match the same requests. With
    /// `strict_bindings` that is an error; otherwise the one declared first (in file, service,
    /// method and binding order) serves, the later one is left out of the model (so out of the
    /// route table and the OpenAPI document) and named in [`Model::warnings`]. A method left with
    /// no binding is left out too.
    ///
    /// With `unbound_methods`, every RPC without a rule (of every service declared in `files`,
    /// but protogate's own `protogate.api` ones) gets an [unbound](Binding::unbound) binding.
    /// An annotated binding always wins over an unbound one matching the same requests,
    /// wherever either is declared: the unbound one is the one left out (or, with
    /// `strict_bindings`, the error). An RPC whose request or response is a well-known type
    /// other than Empty cannot be served unbound either: it is left out with a warning (an
    /// error with `strict_bindings`), where an annotated one is always an error.
    pub fn build(
        pool: DescriptorPool,
        files: &[String],
        options: Options,
    ) -> Result<Model, Vec<LocatedError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut services = Vec::new();
        let http = pool.get_extension_by_name("google.api.http");
        for file in pool.files().filter(|f| files.iter().any(|n| n == f.name())) {
            for descriptor in file.services() {
                let unbound = options.unbound_methods && descriptor.package_name() != OWN_PACKAGE;
                let mut methods = Vec::new();
                for method in descriptor.methods() {
                    let rule = http.as_ref().and_then(|http| {
                        let options = method.options();
                        if !options.has_extension(http) {
                            return None;
                        }
                        match options.get_extension(http).into_owned() {
                            Value::Message(rule) => Some(rule),
                            _ => None,
                        }
                    });
                    let bindings = match rule {
                        Some(rule) => read_rule(&method, &rule, &mut errors),
                        None if unbound => match unbound_binding(&method) {
                            Ok(binding) => vec![binding],
                            Err(error) if options.strict_bindings => {
                                errors.push(*error);
                                continue;
                            }
                            Err(warning) => {
                                warnings.push(*warning);
                                continue;
                            }
                        },
                        None => continue,
                    };
                    let policy = crate::policy::declared(&pool, &method).unwrap_or_else(|error| {
                        errors.push(*error);
                        Policy::default()
                    });
                    if !bindings.is_empty() {
                        methods.push(Method {
                            descriptor: method,
                            bindings,
                            policy,
                        });
                    }
                }
                if !methods.is_empty() {
                    services.push(Service {
                        descriptor,
                        methods,
                    });
                }
            }
        }
        let mut duplicates = find_duplicates(&services);
        if options.strict_bindings {
            errors.extend(duplicates.into_iter().map(|(_, error)| error));
        } else {
            let mut left_out = Vec::new();
            // Remove from the back so that earlier indices stay valid.
            duplicates.sort_by_key(|(index, _)| *index);
            for ((service, method, binding), warning) in duplicates.into_iter().rev() {
                services[service].methods[method].bindings.remove(binding);
                left_out.push(warning);
            }
            left_out.reverse();
            warnings.extend(left_out);
            for service in &mut services {
                service.methods.retain(|m| !m.bindings.is_empty());
            }
            services.retain(|s| !s.methods.is_empty());
        }
        if errors.is_empty() {
            Ok(Model {
                pool,
                services,
                warnings,
            })
        } else {
            Err(errors)
        }
    }
}

/// The unbound binding of an RPC without a rule: `POST /{package}.{Service}/{Method}`, body `*`,
/// placed at the RPC's declaration. An RPC whose messages cannot be served over JSON has none.
fn unbound_binding(method: &MethodDescriptor) -> Result<Binding, Box<LocatedError>> {
    let location = locate(method, method.path());
    let rpc = method.full_name().to_owned();
    let placed = |error| {
        Box::new(LocatedError {
            location: location.clone(),
            error,
        })
    };
    check_rpc_types(method).map_err(placed)?;
    let template_text = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let template = template::parse(&template_text).map_err(|error| {
        placed(RuleError::Template {
            template: template_text.clone(),
            error,
        })
    })?;
    debug_assert!(template.variables().is_empty(), "{rpc}: a literal template");
    Ok(Binding {
        http_method: "POST".to_owned(),
        template,
        template_text,
        body: Body::Whole,
        response_body: None,
        variables: Vec::new(),
        location,
        unbound: true,
    })
}

/// Refuses an RPC whose request or response is a google.protobuf type other than Empty.
fn check_rpc_types(method: &MethodDescriptor) -> Result<(), RuleError> {
    for (role, message) in [("request", method.input()), ("response", method.output())] {
        if message.package_name() == "google.protobuf"
            && message.full_name() != "google.protobuf.Empty"
        {
            return Err(RuleError::UnsupportedRpcType {
                rpc: method.full_name().to_owned(),
                role,
                type_name: message.full_name().to_owned(),
            });
        }
    }
    Ok(())
}

/// Reads the primary rule and its additional bindings.
fn read_rule(
    method: &MethodDescriptor,
    rule: &DynamicMessage,
    errors: &mut Vec<LocatedError>,
) -> Vec<Binding> {
    let mut base_path = method.path().to_vec();
    base_path.extend([METHOD_OPTIONS, HTTP_EXTENSION]);
    let mut bindings = Vec::new();
    let mut push = |rule: &DynamicMessage, path: &[i32], errors: &mut Vec<LocatedError>| {
        let location = locate(method, path);
        match read_binding(method, rule, location.clone()) {
            Ok(binding) => bindings.push(binding),
            Err(error) => errors.push(LocatedError { location, error }),
        }
    };
    push(rule, &base_path, errors);
    if let Some(Value::List(additional)) = rule
        .get_field_by_name("additional_bindings")
        .map(|v| v.into_owned())
    {
        for (index, extra) in additional.iter().enumerate() {
            if let Value::Message(extra) = extra {
                let mut path = base_path.clone();
                path.extend([ADDITIONAL_BINDINGS, index as i32]);
                push(extra, &path, errors);
            }
        }
    }
    bindings
}

fn string_field(message: &DynamicMessage, name: &str) -> Option<String> {
    if !message.has_field_by_name(name) {
        return None;
    }
    match message.get_field_by_name(name)?.as_ref() {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn read_binding(
    method: &MethodDescriptor,
    rule: &DynamicMessage,
    location: Location,
) -> Result<Binding, RuleError> {
    let rpc = method.full_name().to_owned();
    check_rpc_types(method)?;
    let (http_method, template_text) = pattern(rule).ok_or_else(|| RuleError::MissingPattern {
        rpc: rpc.clone(),
        message: "the http rule sets no pattern (get, put, post, delete, patch or custom)".into(),
    })?;
    if http_method.is_empty() {
        return Err(RuleError::MissingPattern {
            rpc,
            message: "the custom pattern has an empty kind".into(),
        });
    }
    let template = template::parse(&template_text).map_err(|error| RuleError::Template {
        template: template_text.clone(),
        error,
    })?;

    let input = method.input();
    let variables = template
        .variables()
        .into_iter()
        .map(|variable| resolve_path_variable(&rpc, &input, &variable.field_path))
        .collect::<Result<Vec<_>, _>>()?;

    let body = match string_field(rule, "body").as_deref() {
        None | Some("") => Body::None,
        Some(body) if http_method == "GET" => {
            return Err(RuleError::BodyOnGet {
                rpc,
                template: template_text,
                body: body.to_owned(),
            });
        }
        Some("*") => Body::Whole,
        Some(name) => match input.get_field_by_name(name) {
            Some(field) => Body::Field(field),
            None => {
                return Err(RuleError::UnknownBodyField {
                    rpc,
                    field: name.to_owned(),
                    message: input.full_name().to_owned(),
                });
            }
        },
    };
    if method.is_client_streaming() && matches!(body, Body::None) {
        return Err(RuleError::StreamWithoutBody {
            rpc,
            template: template_text,
        });
    }
    let response_body = match string_field(rule, "response_body").as_deref() {
        None | Some("") => None,
        Some(name) => {
            let output = method.output();
            let field = output.get_field_by_name(name).ok_or_else(|| {
                RuleError::UnknownResponseBodyField {
                    rpc: rpc.clone(),
                    field: name.to_owned(),
                    message: output.full_name().to_owned(),
                }
            })?;
            Some(field)
        }
    };
    Ok(Binding {
        http_method,
        template,
        template_text,
        body,
        response_body,
        variables,
        location,
        unbound: false,
    })
}

/// The HTTP method and template of a rule, from whichever pattern field is set.
fn pattern(rule: &DynamicMessage) -> Option<(String, String)> {
    for verb in ["get", "put", "post", "delete", "patch"] {
        if let Some(path) = string_field(rule, verb) {
            return Some((verb.to_ascii_uppercase(), path));
        }
    }
    if !rule.has_field_by_name("custom") {
        return None;
    }
    let custom = rule.get_field_by_name("custom")?;
    let Value::Message(custom) = custom.as_ref() else {
        return None;
    };
    let kind = string_field(custom, "kind").unwrap_or_default();
    let path = string_field(custom, "path").unwrap_or_default();
    Some((kind.to_ascii_uppercase(), path))
}

fn resolve_path_variable(
    rpc: &str,
    input: &MessageDescriptor,
    field_path: &str,
) -> Result<PathVariable, RuleError> {
    let mut fields = Vec::new();
    let mut message = input.clone();
    let segments: Vec<&str> = field_path.split('.').collect();
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        let field =
            message
                .get_field_by_name(segment)
                .ok_or_else(|| RuleError::UnknownPathField {
                    rpc: rpc.to_owned(),
                    variable: field_path.to_owned(),
                    segment: (*segment).to_owned(),
                    message: message.full_name().to_owned(),
                })?;
        let not_scalar = |reason| RuleError::PathFieldNotScalar {
            rpc: rpc.to_owned(),
            variable: field_path.to_owned(),
            field: field.full_name().to_owned(),
            reason,
        };
        if field.is_map() {
            return Err(not_scalar("a map"));
        }
        if field.cardinality() == Cardinality::Repeated {
            return Err(not_scalar("repeated"));
        }
        match field.kind() {
            Kind::Message(next) if !last => message = next,
            Kind::Message(inner)
                if !WellKnown::of(inner.full_name()).is_some_and(WellKnown::has_text_form) =>
            {
                return Err(not_scalar("a message"));
            }
            _ if !last => return Err(not_scalar("not a message, so it has no fields")),
            _ => {}
        }
        fields.push(field);
    }
    Ok(PathVariable {
        field_path: field_path.to_owned(),
        fields,
    })
}

/// Bindings with the same HTTP method and template shape as an earlier one (they match the same
/// requests), by (service, method, binding) index, each with the error naming both. Annotated
/// bindings come first, in declaration order, then unbound ones: an unbound binding is always
/// the later one of a pair.
fn find_duplicates(services: &[Service]) -> Vec<((usize, usize, usize), LocatedError)> {
    let mut seen: HashMap<(String, String), (&Method, &Binding)> = HashMap::new();
    let mut duplicates = Vec::new();
    for unbound in [false, true] {
        for (s, service) in services.iter().enumerate() {
            for (m, method) in service.methods.iter().enumerate() {
                for (b, binding) in method.bindings.iter().enumerate() {
                    if binding.unbound != unbound {
                        continue;
                    }
                    let key = (binding.http_method.clone(), binding.template.shape());
                    match seen.get(&key) {
                        Some((other, first)) => duplicates.push((
                            (s, m, b),
                            LocatedError {
                                location: binding.location.clone(),
                                error: RuleError::Conflict(Box::new(BindingConflict {
                                    rpc: method.descriptor.full_name().to_owned(),
                                    unbound: binding.unbound,
                                    method: binding.http_method.clone(),
                                    template: binding.template_text.clone(),
                                    other_rpc: other.descriptor.full_name().to_owned(),
                                    other_method: first.http_method.clone(),
                                    other_template: first.template_text.clone(),
                                    other_location: first.location.clone(),
                                })),
                            },
                        )),
                        None => {
                            seen.insert(key, (method, binding));
                        }
                    }
                }
            }
        }
    }
    duplicates
}

/// The source position of `path` in the method's file, or of its closest recorded ancestor.
fn locate(method: &MethodDescriptor, path: &[i32]) -> Location {
    locate_in(method.parent_file(), path)
}

/// Where the element at `path` (a source-code-info path) is written in `file`: the closest
/// enclosing element that has a position.
pub(crate) fn locate_in(file: prost_reflect::FileDescriptor, path: &[i32]) -> Location {
    let proto = file.file_descriptor_proto();
    let mut best: Option<&prost_types::source_code_info::Location> = None;
    if let Some(info) = &proto.source_code_info {
        for location in &info.location {
            let len = location.path.len();
            if len <= path.len()
                && path[..len] == location.path[..]
                && best.is_none_or(|b| b.path.len() < len)
            {
                best = Some(location);
            }
        }
    }
    let (line, column) = best
        .and_then(|l| Some((*l.span.first()?, *l.span.get(1)?)))
        .map_or((0, 0), |(line, column)| {
            (line as u32 + 1, column as u32 + 1)
        });
    Location {
        file: file.name().to_owned(),
        line,
        column,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model of `body` (services and messages after a header that imports annotations.proto
    /// and declares `Req` and `Resp`), as `test.proto`.
    fn build(body: &str, options: Options) -> Result<Model, Vec<LocatedError>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = format!(
            "syntax = \"proto3\";\npackage test.v1;\nimport \"google/api/annotations.proto\";\n\
             import \"google/protobuf/wrappers.proto\";\n\
             message Req {{ string name = 1; }}\nmessage Resp {{ string name = 1; }}\n{body}"
        );
        std::fs::write(dir.path().join("test.proto"), source).expect("write proto");
        let loaded = crate::load::compile(&["test.proto".into()], &[dir.path().to_owned()])
            .expect("compiles");
        Model::build(loaded.pool, &loaded.requested, options)
    }

    const UNBOUND: Options = Options {
        strict_bindings: false,
        unbound_methods: true,
    };

    /// `(rpc, method, template, unbound)` of every binding.
    fn bindings(model: &Model) -> Vec<(String, String, String, bool)> {
        model
            .services
            .iter()
            .flat_map(|s| &s.methods)
            .flat_map(|m| {
                m.bindings.iter().map(|b| {
                    (
                        m.descriptor.name().to_owned(),
                        b.http_method.clone(),
                        b.template_text.clone(),
                        b.unbound,
                    )
                })
            })
            .collect()
    }

    const MIXED: &str = r#"
service Mixed {
  rpc Get(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{name}" }; }
  rpc Plain(Req) returns (Resp);
  rpc Watch(Req) returns (stream Resp);
  rpc Upload(stream Req) returns (Resp);
  rpc Chat(stream Req) returns (stream Resp);
}
service Bare {
  rpc Ping(Req) returns (Resp);
}
"#;

    #[test]
    fn without_the_option_rpcs_without_rules_have_no_binding() {
        let model = build(MIXED, Options::default()).expect("valid");
        assert_eq!(
            bindings(&model),
            [("Get".into(), "GET".into(), "/v1/{name}".into(), false)]
        );
    }

    #[test]
    fn every_rpc_without_a_rule_gets_a_post_to_its_grpc_path_with_the_whole_body() {
        let model = build(MIXED, UNBOUND).expect("valid");
        let post = |rpc: &str, path: &str| (rpc.into(), "POST".into(), path.into(), true);
        assert_eq!(
            bindings(&model),
            [
                ("Get".into(), "GET".into(), "/v1/{name}".into(), false),
                post("Plain", "/test.v1.Mixed/Plain"),
                post("Watch", "/test.v1.Mixed/Watch"),
                post("Upload", "/test.v1.Mixed/Upload"),
                post("Chat", "/test.v1.Mixed/Chat"),
                // A service with no rule at all is served too.
                post("Ping", "/test.v1.Bare/Ping"),
            ]
        );
        let shapes: Vec<Shape> = model.services[0]
            .methods
            .iter()
            .map(Method::shape)
            .collect();
        assert_eq!(
            shapes,
            [
                Shape::Unary,
                Shape::Unary,
                Shape::ServerStreaming,
                Shape::ClientStreaming,
                Shape::BidiStreaming
            ]
        );
        let plain = &model.services[0].methods[1].bindings[0];
        assert!(matches!(plain.body, Body::Whole));
        assert!(plain.response_body.is_none() && plain.variables.is_empty());
        assert_eq!(plain.template.verb, None);
        // Placed at the RPC's declaration.
        assert_eq!(
            (plain.location.file.as_str(), plain.location.line),
            ("test.proto", 10)
        );
        assert!(model.warnings.is_empty());
    }

    #[test]
    fn protogate_own_services_are_never_unbound() {
        let dir = tempfile::tempdir().expect("temp dir");
        let loaded = crate::load::compile(
            &["protogate/api/auth.proto".into()],
            &[dir.path().to_owned()],
        )
        .expect("compiles");
        let model = Model::build(loaded.pool, &loaded.requested, UNBOUND).expect("valid");
        assert!(model.services.is_empty());
    }

    const CLASH: &str = r#"
service First {
  rpc Plain(Req) returns (Resp);
}
service Later {
  rpc Shadow(Req) returns (Resp) {
    option (google.api.http) = { post: "/test.v1.First/Plain" body: "*" };
  }
}
"#;

    #[test]
    fn an_annotated_binding_wins_over_an_unbound_one_declared_before_it() {
        let model = build(CLASH, UNBOUND).expect("a warning, not an error");
        assert_eq!(
            bindings(&model),
            [(
                "Shadow".into(),
                "POST".into(),
                "/test.v1.First/Plain".into(),
                false
            )]
        );
        assert_eq!(model.warnings.len(), 1, "{:?}", model.warnings);
        let warning = model.warnings[0].to_string();
        assert!(
            warning.starts_with("test.proto:9:3: the unbound route POST /test.v1.First/Plain of `test.v1.First.Plain` matches the same requests as POST /test.v1.First/Plain of `test.v1.Later.Shadow` (at test.proto:13:5)"),
            "{warning}"
        );
    }

    #[test]
    fn with_strict_bindings_the_clash_is_an_error_at_the_unbound_rpc() {
        let strict = Options {
            strict_bindings: true,
            unbound_methods: true,
        };
        let errors = build(CLASH, strict).err().expect("an error");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].location.line, 9);
        assert!(
            matches!(&errors[0].error, RuleError::Conflict(c) if c.unbound && c.other_rpc == "test.v1.Later.Shadow"),
            "{errors:?}"
        );
    }

    const WRAPPED: &str = r#"
service Wrapped {
  rpc Plain(Req) returns (Resp);
  rpc Text(google.protobuf.StringValue) returns (Resp);
}
"#;

    #[test]
    fn an_rpc_of_well_known_types_is_left_out_with_a_warning() {
        let model = build(WRAPPED, UNBOUND).expect("a warning, not an error");
        assert_eq!(
            bindings(&model),
            [(
                "Plain".into(),
                "POST".into(),
                "/test.v1.Wrapped/Plain".into(),
                true
            )]
        );
        assert_eq!(model.warnings.len(), 1, "{:?}", model.warnings);
        assert!(matches!(
            &model.warnings[0].error,
            RuleError::UnsupportedRpcType { rpc, role: "request", .. } if rpc == "test.v1.Wrapped.Text"
        ));
        let strict = Options {
            strict_bindings: true,
            unbound_methods: true,
        };
        let errors = build(WRAPPED, strict).err().expect("an error");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].location.line, 10);
    }
}
