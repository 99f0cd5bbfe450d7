//! descriptor.proto's messages (BigQuery Storage's `ProtoSchema` holds a `DescriptorProto`) map to
//! proto3 JSON like any message: checked against prost-reflect's serde (the oracle) on a
//! hand-built schema and on every real descriptor of this build, inside an `Any`, and over a real
//! socket through the generated gateway.

use generated_tests::pb::__PROTOGATE_REGISTRY as REGISTRY;
use generated_tests::pb::protogate::tests::descriptor::v1::{
    ProtoSchema, schema_service_gateway, schema_service_server::SchemaService,
};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
    FieldOptions, FileDescriptorSet, MessageOptions, OneofDescriptorProto, descriptor_proto,
};
use protogate::{JsonOptions, decode_message, encode_message};
use serde_json::json;

const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/protogate_descriptor.bin"));

fn pool() -> DescriptorPool {
    DescriptorPool::decode(DESCRIPTORS).expect("the build's descriptor set decodes")
}

/// Every combination of the output options.
fn all_options() -> Vec<JsonOptions> {
    let mut all = Vec::new();
    for bits in 0..8u8 {
        all.push(JsonOptions {
            emit_defaults: bits & 1 != 0,
            proto_names: bits & 2 != 0,
            enums_as_ints: bits & 4 != 0,
            ignore_unknown: false,
        });
    }
    all
}

/// Repeated fields of descriptor.proto that prost-types 0.14 has no place for: with
/// `emit_defaults` the oracle writes them as `[]`, the mappers (for prost-types' types) do not.
const LACKING_REPEATED: &[&str] = &[
    "targets",
    "editionDefaults",
    "edition_defaults",
    "declaration",
];

fn without_lacking(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|key, v| !(LACKING_REPEATED.contains(&key.as_str()) && *v == json!([])));
            map.values_mut().for_each(without_lacking);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_lacking),
        _ => {}
    }
}

fn oracle_json(message: &DynamicMessage, options: JsonOptions) -> serde_json::Value {
    let mut serializer = serde_json::Serializer::new(Vec::new());
    let serialize_options = SerializeOptions::new()
        .skip_default_fields(!options.emit_defaults)
        .use_proto_field_name(options.proto_names)
        .use_enum_numbers(options.enums_as_ints);
    message
        .serialize_with_options(&mut serializer, &serialize_options)
        .expect("prost-reflect serializes");
    let mut value = serde_json::from_slice(&serializer.into_inner()).expect("valid JSON");
    without_lacking(&mut value);
    value
}

fn ours(schema: &ProtoSchema, options: JsonOptions) -> serde_json::Value {
    let mut buf = Vec::new();
    encode_message(schema, options, &REGISTRY, &mut buf).expect("the mapper writes it");
    serde_json::from_slice(&buf).expect("valid JSON")
}

/// `schema`'s JSON equals the oracle's under every option, and both JSONs parse back to it.
fn check(pool: &DescriptorPool, schema: &ProtoSchema) {
    let descriptor = pool
        .get_message_by_name("protogate.tests.descriptor.v1.ProtoSchema")
        .expect("in the pool");
    let dynamic = DynamicMessage::decode(descriptor, schema.encode_to_vec().as_slice())
        .expect("prost-reflect decodes it");
    for options in all_options() {
        let theirs = oracle_json(&dynamic, options);
        assert_eq!(ours(schema, options), theirs, "options {options:?}");
        let back: ProtoSchema = decode_message(
            theirs.to_string().as_bytes(),
            JsonOptions::default(),
            &REGISTRY,
        )
        .unwrap_or_else(|e| panic!("{e}: {theirs}"));
        assert_eq!(&back, schema, "options {options:?}");
    }
}

/// A message with a nested message, a nested enum, a oneof, a map, options, and fields whose
/// proto2 optional members are set to their defaults or left unset.
fn book_descriptor() -> DescriptorProto {
    let field = |name: &str, number, label: Label, kind: Type| FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(label as i32),
        r#type: Some(kind as i32),
        json_name: Some(name.into()),
        ..Default::default()
    };
    DescriptorProto {
        name: Some("Book".into()),
        field: vec![
            FieldDescriptorProto {
                options: Some(FieldOptions {
                    deprecated: Some(true),
                    packed: Some(false),
                    ..Default::default()
                }),
                ..field("title", 1, Label::Optional, Type::String)
            },
            FieldDescriptorProto {
                type_name: Some(".acme.Book.Chapter".into()),
                ..field("chapters", 2, Label::Repeated, Type::Message)
            },
            FieldDescriptorProto {
                type_name: Some(".acme.Book.Format".into()),
                // Set to its default: present, so written.
                oneof_index: Some(0),
                ..field("format", 3, Label::Optional, Type::Enum)
            },
            FieldDescriptorProto {
                default_value: Some("-1".into()),
                ..field("page_count", 4, Label::Required, Type::Int64)
            },
        ],
        nested_type: vec![DescriptorProto {
            name: Some("Chapter".into()),
            field: vec![field("name", 1, Label::Optional, Type::String)],
            options: Some(MessageOptions {
                map_entry: Some(false),
                ..Default::default()
            }),
            reserved_range: vec![descriptor_proto::ReservedRange {
                start: Some(5),
                end: Some(10),
            }],
            reserved_name: vec!["old".into()],
            ..Default::default()
        }],
        enum_type: vec![EnumDescriptorProto {
            name: Some("Format".into()),
            value: vec![
                EnumValueDescriptorProto {
                    name: Some("FORMAT_UNSPECIFIED".into()),
                    number: Some(0),
                    options: None,
                },
                EnumValueDescriptorProto {
                    name: Some("PAPERBACK".into()),
                    number: Some(-2),
                    options: None,
                },
            ],
            ..Default::default()
        }],
        extension_range: vec![descriptor_proto::ExtensionRange {
            start: Some(100),
            end: Some(536_870_912),
            options: None,
        }],
        oneof_decl: vec![OneofDescriptorProto {
            name: Some("kind".into()),
            options: None,
        }],
        options: Some(MessageOptions {
            deprecated: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_descriptor_proto_maps_like_any_message() {
    let schema = ProtoSchema {
        proto_descriptor: Some(book_descriptor()),
        ..Default::default()
    };
    let json = ours(&schema, JsonOptions::default());
    let book = &json["protoDescriptor"];
    assert_eq!(book["name"], "Book");
    assert_eq!(
        book["field"][0],
        json!({
            "name": "title", "number": 1, "label": "LABEL_OPTIONAL", "type": "TYPE_STRING",
            "jsonName": "title", "options": {"packed": false, "deprecated": true}
        })
    );
    // proto2 optional fields: set to a default is written, unset is not.
    assert_eq!(book["field"][2]["oneofIndex"], 0);
    assert!(book["field"][0].get("oneofIndex").is_none());
    assert!(book["field"][0].get("typeName").is_none());
    assert_eq!(book["field"][3]["defaultValue"], "-1");
    assert_eq!(
        book["nestedType"][0]["reservedRange"],
        json!([{"start": 5, "end": 10}])
    );
    assert_eq!(
        book["enumType"][0]["value"][1],
        json!({"name": "PAPERBACK", "number": -2})
    );
    assert_eq!(book["extensionRange"][0]["end"], 536_870_912);
    check(&pool(), &schema);
}

/// Every file of this build (with source info, options, services and the google.api.http
/// extension, which prost-types keeps as nothing) and every message in it, through the mappers
/// and the oracle.
#[test]
fn every_descriptor_of_this_build_matches_prost_reflect() {
    let pool = pool();
    let set = FileDescriptorSet::decode(DESCRIPTORS).expect("prost-types decodes it");
    assert!(set.file.len() > 5);
    for file in &set.file {
        let info = file.source_code_info.clone();
        check(
            &pool,
            &ProtoSchema {
                files: vec![file.clone()],
                source_code_info: info,
                ..Default::default()
            },
        );
        for message in &file.message_type {
            check(
                &pool,
                &ProtoSchema {
                    proto_descriptor: Some(message.clone()),
                    ..Default::default()
                },
            );
        }
    }
}

#[test]
fn an_any_holds_a_descriptor_proto() {
    let book = book_descriptor();
    let schema = ProtoSchema {
        any: Some(prost_types::Any {
            type_url: "type.googleapis.com/google.protobuf.DescriptorProto".into(),
            value: book.encode_to_vec(),
        }),
        ..Default::default()
    };
    let json = ours(&schema, JsonOptions::default());
    assert_eq!(
        json["any"]["@type"],
        "type.googleapis.com/google.protobuf.DescriptorProto"
    );
    assert_eq!(json["any"]["nestedType"][0]["name"], "Chapter");
    check(&pool(), &schema);
}

#[test]
fn an_unknown_enum_name_in_a_descriptor_is_an_error_naming_the_field() {
    let error = decode_message::<ProtoSchema>(
        br#"{"protoDescriptor":{"field":[{"label":"LABEL_SOMETIMES"}]}}"#,
        JsonOptions::default(),
        &REGISTRY,
    )
    .expect_err("not a label");
    let message = error.to_string();
    assert!(message.contains("protoDescriptor.field"), "{message}");
    // A field of descriptor.proto that prost-types lacks is an unknown field.
    let error = decode_message::<ProtoSchema>(
        br#"{"protoDescriptor":{"options":{"features":{}}}}"#,
        JsonOptions::default(),
        &REGISTRY,
    )
    .expect_err("prost-types has no `features`");
    assert!(error.to_string().contains("features"), "{error}");
}

/// Sends the schema back, in process.
struct Echo;

#[tonic::async_trait]
impl SchemaService for Echo {
    async fn echo(
        &self,
        request: tonic::Request<ProtoSchema>,
    ) -> Result<tonic::Response<ProtoSchema>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }
}

#[tokio::test]
async fn a_schema_travels_through_the_gateway() {
    let gateway = protogate::Gateway::new()
        .with(schema_service_gateway::local(Echo))
        .expect("the service mounts");
    let base = generated_tests::serve_gateway(gateway)
        .await
        .expect("serves");
    let schema = ProtoSchema {
        proto_descriptor: Some(book_descriptor()),
        ..Default::default()
    };
    let sent = ours(&schema, JsonOptions::default());
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/v1/schemas:echo"))
        .json(&sent)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body, sent);

    let response = client
        .post(format!("{base}/v1/schemas:echo"))
        .json(&json!({"protoDescriptor": {"field": [{"number": "x"}]}}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 3);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("protoDescriptor.field"),
        "{body}"
    );
}
