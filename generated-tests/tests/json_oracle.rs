//! The generated JSON mappers against an oracle: for random messages of the test protos, the
//! mapper's JSON equals prost-reflect's proto3 JSON (as JSON values, with the same options), and
//! parsing either JSON gives back the same message.

use generated_tests::pb::__PROTOGATE_REGISTRY as REGISTRY;
use generated_tests::pb::protogate::tests::v1::{EchoRequest, Everything};
use proptest::prelude::*;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    SerializeOptions, Value,
};
use protogate::JsonOptions;
use protogate::{JsonMessage, decode_message, encode_message};

const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/protogate_descriptor.bin"));

fn pool() -> DescriptorPool {
    DescriptorPool::decode(DESCRIPTORS).expect("the build's descriptor set decodes")
}

/// A small deterministic generator (xorshift), seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn random_string(rng: &mut Rng) -> String {
    let pieces = [
        "a",
        "Z",
        "0",
        " ",
        "é",
        "\"",
        "\\",
        "\n",
        "\u{1}",
        "😀",
        "/",
        "snake_case",
    ];
    (0..rng.below(5)).map(|_| *rng.pick(&pieces)).collect()
}

fn random_f64(rng: &mut Rng) -> f64 {
    let random = (rng.next() as f64) / 7.0;
    *rng.pick(&[
        0.0,
        -0.5,
        1.0,
        1e300,
        -2.5e-8,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        random,
        12345.678,
    ])
}

fn random_f32(rng: &mut Rng) -> f32 {
    let random = (rng.next() % 100_000) as f32 / 3.0;
    *rng.pick(&[
        0.0f32,
        0.1,
        -3.5,
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::NAN,
        f32::NEG_INFINITY,
        random,
    ])
}

fn random_i64(rng: &mut Rng) -> i64 {
    let random = rng.next() as i64;
    *rng.pick(&[0, 1, -1, i64::MIN, i64::MAX, random, 9_007_199_254_740_993])
}

fn random_u64(rng: &mut Rng) -> u64 {
    let random = rng.next();
    *rng.pick(&[0, 1, u64::MAX, random, 9_007_199_254_740_993])
}

fn random_i32(rng: &mut Rng) -> i32 {
    let random = rng.next() as i32;
    *rng.pick(&[0, 1, -1, i32::MIN, i32::MAX, random])
}

fn random_u32(rng: &mut Rng) -> u32 {
    let random = rng.next() as u32;
    *rng.pick(&[0, 1, u32::MAX, random])
}

/// A random value for one element of `kind`.
fn random_value(kind: &Kind, rng: &mut Rng, depth: u32) -> Value {
    match kind {
        Kind::Double => Value::F64(random_f64(rng)),
        Kind::Float => Value::F32(random_f32(rng)),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(random_i32(rng)),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(random_i64(rng)),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(random_u32(rng)),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(random_u64(rng)),
        Kind::Bool => Value::Bool(rng.chance(2)),
        Kind::String => Value::String(random_string(rng)),
        Kind::Bytes => {
            let len = rng.below(6) as usize;
            Value::Bytes(
                (0..len)
                    .map(|_| rng.next() as u8)
                    .collect::<Vec<u8>>()
                    .into(),
            )
        }
        Kind::Enum(e) => {
            if e.full_name() == "google.protobuf.NullValue" {
                Value::EnumNumber(0)
            } else if rng.chance(8) {
                // A number the enum does not name: kept as a number.
                Value::EnumNumber(77)
            } else {
                let values: Vec<i32> = e.values().map(|v| v.number()).collect();
                Value::EnumNumber(*rng.pick(&values))
            }
        }
        Kind::Message(m) => Value::Message(random_message(m, rng, depth + 1)),
    }
}

fn random_map_key(kind: &Kind, rng: &mut Rng) -> MapKey {
    match random_value(kind, rng, 0) {
        Value::Bool(b) => MapKey::Bool(b),
        Value::I32(v) => MapKey::I32(v),
        Value::I64(v) => MapKey::I64(v),
        Value::U32(v) => MapKey::U32(v),
        Value::U64(v) => MapKey::U64(v),
        Value::String(s) => MapKey::String(s),
        other => panic!("not a map key kind: {other:?}"),
    }
}

/// A random message; well-known types get values their JSON form can hold.
fn random_message(desc: &MessageDescriptor, rng: &mut Rng, depth: u32) -> DynamicMessage {
    let mut message = DynamicMessage::new(desc.clone());
    match desc.full_name() {
        "google.protobuf.Timestamp" => {
            message.set_field_by_name(
                "seconds",
                Value::I64(*rng.pick(&[-62_135_596_800, 0, 253_402_300_799, 1_700_000_000])),
            );
            message.set_field_by_name(
                "nanos",
                Value::I32(*rng.pick(&[0, 1, 500_000_000, 999_999_999, 123_000])),
            );
            return message;
        }
        "google.protobuf.Duration" => {
            let seconds = *rng.pick(&[0i64, 1, 315_576_000_000, 42]);
            let nanos = *rng.pick(&[0i32, 1, 999_999_999, 500_000_000]);
            let sign = if rng.chance(2) { -1 } else { 1 };
            message.set_field_by_name("seconds", Value::I64(seconds * sign));
            message.set_field_by_name("nanos", Value::I32(nanos * sign as i32));
            return message;
        }
        "google.protobuf.FieldMask" => {
            let paths = (0..rng.below(3))
                .map(|_| {
                    Value::String(rng.pick(&["a", "title", "page_count", "a.b_c"]).to_string())
                })
                .collect();
            message.set_field_by_name("paths", Value::List(paths));
            return message;
        }
        "google.protobuf.Value" => {
            return random_json_value(desc, rng, depth);
        }
        // prost-reflect writes non-finite wrapped floats as `null` (serde_json's choice), where
        // proto3 JSON says "NaN"/"Infinity" like the bare types: keep those out of the comparison.
        "google.protobuf.DoubleValue" => {
            message.set_field_by_name("value", Value::F64(*rng.pick(&[0.0, 1.5, -1e300])));
            return message;
        }
        "google.protobuf.FloatValue" => {
            message.set_field_by_name("value", Value::F32(*rng.pick(&[0.0f32, 0.1, f32::MAX])));
            return message;
        }
        "google.protobuf.Any" => {
            // An empty Any has no proto3 JSON form the oracle accepts, so every Any holds a type.
            let pool = desc.parent_pool();
            let name = *rng.pick(&[
                "protogate.tests.v1.Scalars",
                "protogate.tests.other.v1.Remote",
                "google.protobuf.Duration",
                "google.protobuf.Struct",
                "google.rpc.BadRequest",
            ]);
            let inner_desc = pool.get_message_by_name(name).expect("known type");
            let inner = random_message(&inner_desc, rng, depth + 2);
            message.set_field_by_name(
                "type_url",
                Value::String(format!("type.googleapis.com/{name}")),
            );
            message.set_field_by_name("value", Value::Bytes(inner.encode_to_vec().into()));
            return message;
        }
        _ => {}
    }
    if depth > 4 {
        return message;
    }
    let mut oneofs_done = Vec::new();
    for field in desc.fields() {
        if let Some(oneof) = field.containing_oneof().filter(|o| !o.is_synthetic()) {
            if oneofs_done.contains(&oneof.name().to_owned()) {
                continue;
            }
            oneofs_done.push(oneof.name().to_owned());
            let members: Vec<FieldDescriptor> = oneof.fields().collect();
            if rng.chance(3) {
                continue;
            }
            let member = rng.pick(&members).clone();
            let value = random_value(&member.kind(), rng, depth);
            message.set_field(&member, value);
            continue;
        }
        if rng.chance(2) {
            continue;
        }
        let value = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                continue;
            };
            let key = entry.map_entry_key_field();
            let value = entry.map_entry_value_field();
            let map = (0..rng.below(3))
                .map(|_| {
                    (
                        random_map_key(&key.kind(), rng),
                        random_value(&value.kind(), rng, depth),
                    )
                })
                .collect();
            Value::Map(map)
        } else if field.is_list() {
            Value::List(
                (0..rng.below(3))
                    .map(|_| random_value(&field.kind(), rng, depth))
                    .collect(),
            )
        } else {
            random_value(&field.kind(), rng, depth)
        };
        message.set_field(&field, value);
    }
    message
}

/// A google.protobuf.Value holding JSON that round-trips (finite numbers only).
fn random_json_value(desc: &MessageDescriptor, rng: &mut Rng, depth: u32) -> DynamicMessage {
    let mut message = DynamicMessage::new(desc.clone());
    let pool = desc.parent_pool();
    let choice = if depth > 5 {
        rng.below(4)
    } else {
        rng.below(6)
    };
    match choice {
        0 => message.set_field_by_name("null_value", Value::EnumNumber(0)),
        1 => message.set_field_by_name("number_value", Value::F64(*rng.pick(&[0.0, 1.5, -2e10]))),
        2 => message.set_field_by_name("string_value", Value::String(random_string(rng))),
        3 => message.set_field_by_name("bool_value", Value::Bool(rng.chance(2))),
        4 => {
            let list_desc = pool
                .get_message_by_name("google.protobuf.ListValue")
                .expect("ListValue");
            let mut list = DynamicMessage::new(list_desc);
            let values = (0..rng.below(3))
                .map(|_| Value::Message(random_json_value(desc, rng, depth + 1)))
                .collect();
            list.set_field_by_name("values", Value::List(values));
            message.set_field_by_name("list_value", Value::Message(list));
        }
        _ => {
            let struct_desc = pool
                .get_message_by_name("google.protobuf.Struct")
                .expect("Struct");
            let mut object = DynamicMessage::new(struct_desc);
            let fields = (0..rng.below(3))
                .map(|i| {
                    (
                        MapKey::String(format!("k{i}")),
                        Value::Message(random_json_value(desc, rng, depth + 1)),
                    )
                })
                .collect();
            object.set_field_by_name("fields", Value::Map(fields));
            message.set_field_by_name("struct_value", Value::Message(object));
        }
    }
    message
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
    serde_json::from_slice(&serializer.into_inner()).expect("valid JSON")
}

/// Checks one random message of type `M` against the oracle.
fn check<M: JsonMessage>(pool: &DescriptorPool, seed: u64, options: JsonOptions) {
    let desc = pool
        .get_message_by_name(M::TYPE_NAME)
        .expect("the type is in the pool");
    let mut rng = Rng(seed | 1);
    let dynamic = random_message(&desc, &mut rng, 0);
    let typed = M::decode(dynamic.encode_to_vec().as_slice()).expect("the typed message decodes");

    let mut ours = Vec::new();
    encode_message(&typed, options, &REGISTRY, &mut ours).expect("the mapper writes it");
    let ours_value: serde_json::Value = serde_json::from_slice(&ours).expect("valid JSON");
    let theirs = oracle_json(&dynamic, options);
    assert_eq!(ours_value, theirs, "seed {seed}, options {options:?}");

    // Our JSON and the oracle's both parse back to a message that writes the same JSON.
    let parse_options = JsonOptions::default();
    for json in [
        ours.clone(),
        serde_json::to_vec(&theirs).expect("serializes"),
    ] {
        let back: M = decode_message(&json, parse_options, &REGISTRY)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {}", String::from_utf8_lossy(&json)));
        let mut again = Vec::new();
        encode_message(&back, options, &REGISTRY, &mut again).expect("writes again");
        let again: serde_json::Value = serde_json::from_slice(&again).expect("valid JSON");
        assert_eq!(again, theirs, "seed {seed}: parse and write again");
    }
}

fn options_strategy() -> impl Strategy<Value = JsonOptions> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(emit_defaults, proto_names, enums_as_ints)| JsonOptions {
            emit_defaults,
            proto_names,
            enums_as_ints,
            ignore_unknown: false,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn everything_matches_prost_reflect(seed in any::<u64>(), options in options_strategy()) {
        check::<Everything>(&pool(), seed, options);
    }

    #[test]
    fn echo_request_matches_prost_reflect(seed in any::<u64>(), options in options_strategy()) {
        check::<EchoRequest>(&pool(), seed, options);
    }
}

#[test]
fn mappers_parse_the_json_name_and_the_proto_name() {
    let by_json: Everything = decode_message(
        br#"{"jsonNames":{"renamedField":"x","snakeCaseField":1}}"#,
        JsonOptions::default(),
        &REGISTRY,
    )
    .expect("json names");
    let by_proto: Everything = decode_message(
        br#"{"json_names":{"custom":"x","snake_case_field":1}}"#,
        JsonOptions::default(),
        &REGISTRY,
    )
    .expect("proto names");
    assert_eq!(by_json, by_proto);
}
