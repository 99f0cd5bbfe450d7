//! The api.proto, type.proto and descriptor.proto mappers against the proto3 JSON mapping:
//! lowerCamelCase names, enums by name, 64-bit-free messages as plain objects, `Any` with its
//! `@type` (every registry knows these messages), and round trips.

use prost::Message;
use prost_types::{Api, Enum, EnumValue, Field, Method, Mixin, SourceContext, Syntax, Type, field};

use super::{AnyType, JsonOptions, Registry, decode_message, encode_message};

static REGISTRY: Registry = Registry::new(&[AnyType::message::<SourceContext>()]);

fn to_json<M: super::JsonMessage>(message: &M, options: JsonOptions) -> serde_json::Value {
    let mut buf = Vec::new();
    encode_message(message, options, &REGISTRY, &mut buf).expect("encodes");
    serde_json::from_slice(&buf).expect("valid JSON")
}

fn from_json<M: super::JsonMessage>(json: &serde_json::Value) -> M {
    decode_message(
        json.to_string().as_bytes(),
        JsonOptions::default(),
        &REGISTRY,
    )
    .expect("decodes")
}

fn api() -> Api {
    Api {
        name: "acme.Library".into(),
        methods: vec![Method {
            name: "GetBook".into(),
            request_type_url: "type.googleapis.com/acme.GetBookRequest".into(),
            request_streaming: false,
            response_type_url: "type.googleapis.com/acme.Book".into(),
            response_streaming: true,
            options: vec![prost_types::Option {
                name: "deprecated".into(),
                value: Some(prost_types::Any {
                    type_url: "type.googleapis.com/google.protobuf.SourceContext".into(),
                    value: SourceContext {
                        file_name: "x.proto".into(),
                    }
                    .encode_to_vec(),
                }),
            }],
            syntax: Syntax::Proto3 as i32,
        }],
        options: vec![],
        version: "v1".into(),
        source_context: Some(SourceContext {
            file_name: "acme/library.proto".into(),
        }),
        mixins: vec![Mixin {
            name: "google.longrunning.Operations".into(),
            root: "v1/ops".into(),
        }],
        syntax: Syntax::Proto3 as i32,
    }
}

#[test]
fn api_is_an_ordinary_message() {
    let json = to_json(&api(), JsonOptions::default());
    assert_eq!(
        json,
        serde_json::json!({
            "name": "acme.Library",
            "methods": [{
                "name": "GetBook",
                "requestTypeUrl": "type.googleapis.com/acme.GetBookRequest",
                "responseTypeUrl": "type.googleapis.com/acme.Book",
                "responseStreaming": true,
                "options": [{
                    "name": "deprecated",
                    "value": {
                        "@type": "type.googleapis.com/google.protobuf.SourceContext",
                        "fileName": "x.proto"
                    }
                }],
                "syntax": "SYNTAX_PROTO3"
            }],
            "version": "v1",
            "sourceContext": {"fileName": "acme/library.proto"},
            "mixins": [{"name": "google.longrunning.Operations", "root": "v1/ops"}],
            "syntax": "SYNTAX_PROTO3"
        })
    );
    assert_eq!(from_json::<Api>(&json), api());
    // Proto names are accepted on input, and written with `proto_names`.
    let proto_names = to_json(
        &api(),
        JsonOptions {
            proto_names: true,
            ..JsonOptions::default()
        },
    );
    assert_eq!(
        proto_names["source_context"]["file_name"],
        "acme/library.proto"
    );
    assert_eq!(from_json::<Api>(&proto_names), api());
}

fn ty() -> Type {
    Type {
        name: "acme.Book".into(),
        fields: vec![Field {
            kind: field::Kind::TypeInt64 as i32,
            cardinality: field::Cardinality::Repeated as i32,
            number: 3,
            name: "page_counts".into(),
            type_url: String::new(),
            oneof_index: 1,
            packed: true,
            options: vec![],
            json_name: "pageCounts".into(),
            default_value: "0".into(),
        }],
        oneofs: vec!["choice".into()],
        options: vec![],
        source_context: None,
        syntax: Syntax::Proto2 as i32,
    }
}

#[test]
fn type_field_and_enum_are_ordinary_messages() {
    let json = to_json(&ty(), JsonOptions::default());
    assert_eq!(
        json,
        serde_json::json!({
            "name": "acme.Book",
            "fields": [{
                "kind": "TYPE_INT64",
                "cardinality": "CARDINALITY_REPEATED",
                "number": 3,
                "name": "page_counts",
                "oneofIndex": 1,
                "packed": true,
                "jsonName": "pageCounts",
                "defaultValue": "0"
            }],
            // SYNTAX_PROTO2 is the enum's zero: a default, not written.
            "oneofs": ["choice"]
        })
    );
    assert_eq!(from_json::<Type>(&json), ty());

    let e = Enum {
        name: "acme.Genre".into(),
        enumvalue: vec![EnumValue {
            name: "GENRE_FICTION".into(),
            number: 1,
            options: vec![],
        }],
        options: vec![],
        source_context: None,
        syntax: Syntax::Proto3 as i32,
    };
    let json = to_json(&e, JsonOptions::default());
    assert_eq!(
        json,
        serde_json::json!({
            "name": "acme.Genre",
            "enumvalue": [{"name": "GENRE_FICTION", "number": 1}],
            "syntax": "SYNTAX_PROTO3",
        })
    );
    assert_eq!(from_json::<Enum>(&json), e);
    // Enums by number on input, and as numbers with `enums_as_ints`.
    let by_number: Field = from_json(&serde_json::json!({"kind": 9, "cardinality": 1}));
    assert_eq!(by_number.kind, field::Kind::TypeString as i32);
    let as_ints = to_json(
        &by_number,
        JsonOptions {
            enums_as_ints: true,
            ..JsonOptions::default()
        },
    );
    assert_eq!(as_ints, serde_json::json!({"kind": 9, "cardinality": 1}));
}

#[test]
fn unknown_enum_names_are_errors_naming_the_field() {
    let error = decode_message::<Field>(
        br#"{"kind":"TYPE_NOPE"}"#,
        JsonOptions::default(),
        &REGISTRY,
    )
    .expect_err("unknown enum name");
    assert!(error.to_string().contains("kind"), "{error}");
    // prost-types' `Type` has no `edition`, so it is an unknown field.
    let error = decode_message::<Type>(br#"{"edition":"2023"}"#, JsonOptions::default(), &REGISTRY)
        .expect_err("unknown field");
    assert!(error.to_string().contains("edition"), "{error}");
}

/// The ordinary well-known messages are found for `Any` by every registry, and the generated
/// list is sorted (the registry searches it by halves).
#[test]
fn every_registry_knows_the_ordinary_messages() {
    assert!(
        super::api_types::TYPES
            .windows(2)
            .all(|w| w[0].type_name < w[1].type_name)
    );
    for name in [
        "google.protobuf.Api",
        "google.protobuf.DescriptorProto",
        "google.protobuf.DescriptorProto.ExtensionRange",
        "google.protobuf.FileDescriptorSet",
        "google.protobuf.SourceCodeInfo.Location",
        "google.protobuf.UninterpretedOption.NamePart",
    ] {
        assert_eq!(Registry::EMPTY.find(name).map(|t| t.type_name), Some(name));
    }
    assert!(Registry::EMPTY.find("google.protobuf.FeatureSet").is_none());

    let any = prost_types::Any {
        type_url: "type.googleapis.com/google.protobuf.FileDescriptorSet".into(),
        value: prost_types::FileDescriptorSet {
            file: vec![prost_types::FileDescriptorProto {
                name: Some("a.proto".into()),
                ..Default::default()
            }],
        }
        .encode_to_vec(),
    };
    let mut buf = Vec::new();
    encode_message(
        &Type {
            options: vec![prost_types::Option {
                name: "o".into(),
                value: Some(any),
            }],
            ..Default::default()
        },
        JsonOptions::default(),
        &Registry::EMPTY,
        &mut buf,
    )
    .expect("encodes");
    let json: serde_json::Value = serde_json::from_slice(&buf).expect("valid JSON");
    assert_eq!(
        json["options"][0]["value"],
        serde_json::json!({
            "@type": "type.googleapis.com/google.protobuf.FileDescriptorSet",
            "file": [{"name": "a.proto"}]
        })
    );
}
