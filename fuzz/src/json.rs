//! The JSON decoders of every message type of the test protos (generated-tests).

use arbitrary::Unstructured;
use generated_tests::pb::__PROTOGATE_REGISTRY as REGISTRY;
use protogate::__codegen::{AnyType, Codec, Reader, Registry, Value as ProtoValue, Writer};
use protogate::JsonOptions;
use protogate::fuzzing::{json_options, registry_types};
use serde_json::{Map, Number, Value};

use crate::roundtrip::{check_document, write};

/// The registered message type a fuzz input's byte picks.
fn entry(pick: u8) -> &'static AnyType {
    let types = registry_types(&REGISTRY);
    &types[usize::from(pick) % types.len()]
}

/// Arbitrary bytes as the JSON of a message: the first byte picks the type, the second the
/// options, the rest is the document. The reader refuses or reads it without panicking, and
/// what it reads survives a round trip (decode → encode → decode gives the same message).
pub fn json(data: &[u8]) {
    let [pick, options, document @ ..] = data else {
        return;
    };
    check_document(entry(*pick), document, json_options(*options));
}

/// Structure-aware: valid JSON of a message, edited as the input's bytes say. The first byte
/// picks the type, the second the options; the seed is the type's every field at its default
/// (written with `emit_defaults`), and the rest of the input drives edits of it: values
/// replaced by values of other types, huge or odd numbers and strings, fields added (known
/// names in both spellings, `@type`, unknown ones) and removed, values nested in arrays and
/// objects. Whatever the edited document, the reader refuses or reads it without panicking,
/// and what it reads survives a round trip.
pub fn json_mutate(data: &[u8]) {
    let [pick, options, edits @ ..] = data else {
        return;
    };
    let entry = entry(*pick);
    let options = json_options(*options);
    let Some(mut document) = seed(entry) else {
        return;
    };
    let mut u = Unstructured::new(edits);
    let mut names = Vec::new();
    field_names(&document, &mut names);
    for _ in 0..16 {
        if u.is_empty() || edit(&mut document, &names, &mut u, 0).is_err() {
            break;
        }
    }
    let text = raw_numbers(&document.to_string());
    check_document(entry, text.as_bytes(), options);
}

/// A message of type `entry` with every field written, at its default.
fn seed(entry: &AnyType) -> Option<Value> {
    let options = json_options(1);
    let json = write(entry, &[], options).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Every key of the objects in `value`, in their JSON spelling and in the proto one.
fn field_names(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                names.push(key.clone());
                names.push(snake(key));
                field_names(inner, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|inner| field_names(inner, names)),
        _ => {}
    }
}

/// `lowerCamel` as `lower_camel`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The prefix of a string that stands for a raw JSON number, put in after serialization
/// (serde_json's values cannot hold `1e400` or `-0` as written).
const RAW: &str = "\u{1}raw:";

/// The document's text with the raw-number placeholders replaced by the numbers.
fn raw_numbers(text: &str) -> String {
    let marker = "\"\\u0001raw:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..at]);
        let after = &rest[at + marker.len()..];
        let end = after.find('"').unwrap_or(after.len());
        out.push_str(&after[..end]);
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Numbers at and past the edges of every numeric type, as written in JSON.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.5",
    "1e3",
    "1E-7",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1e400",
    "-1e400",
    "3.4028235e38",
    "3.5e38",
    "1e-400",
    "4.9e-324",
    "123456789012345678901234567890",
    "1.0",
    "1.5e1",
];

/// Strings that some field type reads specially, or that are odd anywhere.
const STRINGS: &[&str] = &[
    "",
    "NaN",
    "Infinity",
    "-Infinity",
    "1",
    "-1",
    "1.5",
    "1e2",
    " 1",
    "0x10",
    "18446744073709551616",
    "-9223372036854775809",
    "true",
    "null",
    "AAAA",
    "AA==",
    "A===",
    "-_8=",
    "+/8=",
    "====",
    "1970-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "10000-01-01T00:00:00Z",
    "1972-06-30T23:59:60Z",
    "2024-02-30T00:00:00Z",
    "2024-01-01T00:00:00.1234567891Z",
    "2024-01-01T00:00:00+25:00",
    "2024-01-01T00:00:00-00:30",
    "1s",
    "-1.5s",
    "0.000000001s",
    "315576000000s",
    "315576000001s",
    "-315576000000.999999999s",
    "1.0000000001s",
    "s",
    "1",
    "a.b,c",
    "fooBar,baz_qux",
    ",",
    "a..b",
    "COLOR_UNSPECIFIED",
    "RED",
    "type.googleapis.com/google.protobuf.Duration",
    "type.googleapis.com/",
    "\u{0}",
    "\u{feff}",
    "é",
    "\u{10ffff}",
    "\\",
    "\"",
];

/// Something to put where a value was.
fn odd_value(names: &[String], u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=11)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::String(format!("{RAW}{}", u.choose(NUMBERS)?)),
        3 => Value::Number(Number::from(u.arbitrary::<i64>()?)),
        4 => Value::Number(Number::from(u.arbitrary::<u64>()?)),
        5 => Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        6 => Value::String((*u.choose(STRINGS)?).to_owned()),
        7 => Value::String(u.arbitrary()?),
        8 => Value::String("x".repeat(u.int_in_range(0..=5000)?)),
        9 if depth < 4 => {
            let count = u.int_in_range(0..=3)?;
            let mut items = Vec::new();
            for _ in 0..count {
                items.push(odd_value(names, u, depth + 1)?);
            }
            Value::Array(items)
        }
        10 if depth < 4 => {
            let mut map = Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                map.insert(key(names, u)?, odd_value(names, u, depth + 1)?);
            }
            Value::Object(map)
        }
        // An `Any` of a registered type, or one nested very deep.
        _ => {
            if u.arbitrary()? {
                let types = registry_types(&REGISTRY);
                let mut map = Map::new();
                map.insert(
                    "@type".to_owned(),
                    Value::String(format!(
                        "type.googleapis.com/{}",
                        u.choose(types)?.type_name
                    )),
                );
                Value::Object(map)
            } else {
                let mut value = Value::Null;
                for _ in 0..u.int_in_range(0..=150)? {
                    value = Value::Array(vec![value]);
                }
                value
            }
        }
    })
}

/// A key to add: a field name of the type in either spelling, `@type`, `value`, or anything.
fn key(names: &[String], u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=3)? {
        0 | 1 if !names.is_empty() => u.choose(names)?.clone(),
        2 => (*u.choose(&["@type", "value", "", "[foo.bar]"])?).to_owned(),
        _ => u.arbitrary()?,
    })
}

/// One edit somewhere in `value`: the input says whether to descend into a member or element
/// (and which), or to edit here.
fn edit(
    value: &mut Value,
    names: &[String],
    u: &mut Unstructured<'_>,
    depth: u32,
) -> arbitrary::Result<()> {
    let descend = u.ratio(2, 3)?;
    match value {
        Value::Object(map) if descend && !map.is_empty() => {
            let index = u.choose_index(map.len())?;
            if let Some((_, inner)) = map.iter_mut().nth(index) {
                return edit(inner, names, u, depth + 1);
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let index = u.choose_index(items.len())?;
            return edit(&mut items[index], names, u, depth + 1);
        }
        _ => {}
    }
    match u.int_in_range(0..=5)? {
        // Another value altogether.
        0 | 1 => *value = odd_value(names, u, depth)?,
        // A member added (or replaced).
        2 => {
            if let Value::Object(map) = value {
                map.insert(key(names, u)?, odd_value(names, u, depth + 1)?);
            } else {
                *value = odd_value(names, u, depth)?;
            }
        }
        // A member or an element removed.
        3 => match value {
            Value::Object(map) if !map.is_empty() => {
                let index = u.choose_index(map.len())?;
                if let Some(gone) = map.keys().nth(index).cloned() {
                    map.remove(&gone);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let index = u.choose_index(items.len())?;
                items.remove(index);
            }
            _ => *value = Value::Null,
        },
        // Nested one level down, in an array or an object.
        4 => {
            let inner = value.take();
            *value = if u.arbitrary()? {
                Value::Array(vec![inner])
            } else {
                let mut map = Map::new();
                map.insert(key(names, u)?, inner);
                Value::Object(map)
            };
        }
        // The same value twice in an array, or a member's value given to another key.
        _ => match value {
            Value::Array(items) if !items.is_empty() => {
                let index = u.choose_index(items.len())?;
                let copy = items[index].clone();
                items.push(copy);
            }
            Value::Object(map) if !map.is_empty() => {
                let index = u.choose_index(map.len())?;
                let copy = map.values().nth(index).cloned();
                if let Some(copy) = copy {
                    map.insert(key(names, u)?, copy);
                }
            }
            _ => *value = Value::Array(vec![value.take(), Value::Null]),
        },
    }
    Ok(())
}

/// Arbitrary bytes as one JSON value, with no message around it: the reader skips it or
/// refuses it without panicking, and what reads as a `google.protobuf.Value` writes back to
/// JSON that reads as the same value.
pub fn json_value(data: &[u8]) {
    let options = JsonOptions::default();
    let registry = &Registry::EMPTY;
    let mut reader = Reader::new(data, options, registry);
    let _ = reader.skip_value().and_then(|()| reader.finish());

    let mut reader = Reader::new(data, options, registry);
    let Ok(value) = <ProtoValue as Codec>::read(&mut reader) else {
        return;
    };
    let mut buf = Vec::new();
    let mut writer = Writer::new(&mut buf, options, registry);
    <ProtoValue as Codec>::write(&value, &mut writer);
    if let Err(error) = writer.finish() {
        panic!("{value:?} read from {data:?} does not write: {error}");
    }
    let mut again = Reader::new(&buf, options, registry);
    match <ProtoValue as Codec>::read(&mut again) {
        Ok(back) => assert_eq!(back, value, "{}", String::from_utf8_lossy(&buf)),
        Err(error) => panic!(
            "{value:?} wrote {} which does not read back: {error}",
            String::from_utf8_lossy(&buf)
        ),
    }
}
