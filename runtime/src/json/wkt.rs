//! The well-known types in their special JSON forms, and `Any` with its type registry.

use std::borrow::Cow;
use std::str::FromStr;

use prost::Message;

use super::{Codec, JsonError, JsonMessage, Peek, Reader, Writer};

const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;

fn no_text<T>(what: &str) -> Result<T, JsonError> {
    Err(JsonError::new(format!("a {what} cannot be given as text")))
}

/// Writes the text form of a value that passed its range check, or fails the writer.
fn write_checked(value: &impl std::fmt::Display, check: Result<(), JsonError>, w: &mut Writer<'_>) {
    match check {
        Ok(()) => w.display_str(value),
        Err(error) => {
            w.fail(error);
            w.null();
        }
    }
}

/// google.protobuf.Timestamp: RFC 3339 in UTC, `"2024-01-02T03:04:05.123Z"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timestamp;

fn check_timestamp(value: &prost_types::Timestamp) -> Result<(), JsonError> {
    if (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&value.seconds)
        && (0..1_000_000_000).contains(&value.nanos)
    {
        Ok(())
    } else {
        Err(JsonError::new(
            "timestamp out of range (0001-01-01 to 9999-12-31, nanos 0 to 999999999)",
        ))
    }
}

impl Codec for Timestamp {
    type Value = prost_types::Timestamp;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        write_checked(value, check_timestamp(value), w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        Self::parse_text(&r.string()?)
    }

    fn is_default(value: &Self::Value) -> bool {
        value.seconds == 0 && value.nanos == 0
    }

    fn parse_text(text: &str) -> Result<Self::Value, JsonError> {
        let value = prost_types::Timestamp::from_str(text)
            .map_err(|_| JsonError::new(format!("{text:?} is not an RFC 3339 timestamp")))?;
        check_timestamp(&value)?;
        Ok(value)
    }
}

/// google.protobuf.Duration: seconds with an `s` suffix, `"1.5s"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Duration;

fn check_duration(value: &prost_types::Duration) -> Result<(), JsonError> {
    let same_sign =
        value.seconds == 0 || value.nanos == 0 || (value.seconds < 0) == (value.nanos < 0);
    if value.seconds.unsigned_abs() <= MAX_DURATION_SECONDS
        && value.nanos.unsigned_abs() < 1_000_000_000
        && same_sign
    {
        Ok(())
    } else {
        Err(JsonError::new("duration out of range (±315576000000s)"))
    }
}

impl Codec for Duration {
    type Value = prost_types::Duration;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        write_checked(value, check_duration(value), w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        Self::parse_text(&r.string()?)
    }

    fn is_default(value: &Self::Value) -> bool {
        value.seconds == 0 && value.nanos == 0
    }

    fn parse_text(text: &str) -> Result<Self::Value, JsonError> {
        let value = prost_types::Duration::from_str(text)
            .map_err(|_| JsonError::new(format!("{text:?} is not a duration like \"1.5s\"")))?;
        check_duration(&value)?;
        Ok(value)
    }
}

/// google.protobuf.FieldMask: comma-separated lowerCamel paths, `"title,author.name"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FieldMask;

/// `snake_case` to `lowerCamel`; `None` when the name would not come back the same way.
fn snake_to_camel(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            if upper {
                return None;
            }
            upper = true;
        } else if upper {
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else if c.is_ascii_uppercase() {
            return None;
        } else {
            out.push(c);
        }
    }
    (!upper).then_some(out)
}

fn camel_to_snake(name: &str) -> Result<String, JsonError> {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c == '_' {
            return Err(JsonError::new(format!(
                "field mask path {name:?} must be in lowerCamelCase"
            )));
        }
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl Codec for FieldMask {
    type Value = prost_types::FieldMask;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        let mut text = String::new();
        for (i, path) in value.paths.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            for (j, part) in path.split('.').enumerate() {
                if j > 0 {
                    text.push('.');
                }
                match snake_to_camel(part) {
                    Some(camel) => text.push_str(&camel),
                    None => w.fail(JsonError::new(format!(
                        "field mask path {path:?} cannot be written in lowerCamelCase"
                    ))),
                }
            }
        }
        w.str(&text);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        Self::parse_text(&r.string()?)
    }

    fn is_default(value: &Self::Value) -> bool {
        value.paths.is_empty()
    }

    fn parse_text(text: &str) -> Result<Self::Value, JsonError> {
        let paths = text
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|path| {
                path.split('.')
                    .map(camel_to_snake)
                    .collect::<Result<Vec<_>, _>>()
                    .map(|parts| parts.join("."))
            })
            .collect::<Result<_, _>>()?;
        Ok(prost_types::FieldMask { paths })
    }
}

/// google.protobuf.Empty: `{}` (prost maps it to `()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Empty;

impl Codec for Empty {
    type Value = ();

    fn write(_: &(), w: &mut Writer<'_>) {
        w.begin_object();
        w.end_object();
    }

    fn read(r: &mut Reader<'_>) -> Result<(), JsonError> {
        r.begin_object()?;
        while let Some(key) = r.next_key()? {
            if !r.options().ignore_unknown {
                return Err(JsonError::unknown_field(&key));
            }
            r.skip_value()?;
        }
        Ok(())
    }

    fn is_default(_: &()) -> bool {
        false
    }

    fn parse_text(_: &str) -> Result<(), JsonError> {
        no_text("google.protobuf.Empty")
    }
}

/// google.protobuf.Value: any JSON value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Value;

fn write_value(value: &prost_types::Value, w: &mut Writer<'_>) {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => w.null(),
        Some(Kind::NumberValue(n)) => {
            if !n.is_finite() {
                w.fail(JsonError::new(
                    "google.protobuf.Value cannot hold NaN or Infinity",
                ));
            }
            w.f64(*n);
        }
        Some(Kind::StringValue(s)) => w.str(s),
        Some(Kind::BoolValue(b)) => w.bool(*b),
        Some(Kind::StructValue(s)) => write_struct(s, w),
        Some(Kind::ListValue(l)) => write_list(l, w),
    }
}

fn write_struct(value: &prost_types::Struct, w: &mut Writer<'_>) {
    w.begin_object();
    for (key, field) in &value.fields {
        w.key_str(key);
        write_value(field, w);
    }
    w.end_object();
}

fn write_list(value: &prost_types::ListValue, w: &mut Writer<'_>) {
    w.begin_array();
    for item in &value.values {
        write_value(item, w);
    }
    w.end_array();
}

fn read_value(r: &mut Reader<'_>) -> Result<prost_types::Value, JsonError> {
    use prost_types::value::Kind;
    let kind = match r.peek()? {
        Peek::Null => {
            r.try_null()?;
            Kind::NullValue(0)
        }
        Peek::Bool => Kind::BoolValue(r.bool()?),
        Peek::Number => {
            let text = r.number_text()?;
            let number: f64 = text
                .parse()
                .map_err(|_| JsonError::new(format!("invalid number {text:?}")))?;
            if !number.is_finite() {
                return Err(JsonError::new(format!("{text} is out of range")));
            }
            Kind::NumberValue(number)
        }
        Peek::String => Kind::StringValue(r.string()?.into_owned()),
        Peek::Array => Kind::ListValue(read_list(r)?),
        Peek::Object => Kind::StructValue(read_struct(r)?),
    };
    Ok(prost_types::Value { kind: Some(kind) })
}

fn read_struct(r: &mut Reader<'_>) -> Result<prost_types::Struct, JsonError> {
    let mut out = prost_types::Struct::default();
    r.begin_object()?;
    while let Some(key) = r.next_key()? {
        let value = read_value(r).map_err(|e| e.at_key(&key))?;
        out.fields.insert(key.into_owned(), value);
    }
    Ok(out)
}

fn read_list(r: &mut Reader<'_>) -> Result<prost_types::ListValue, JsonError> {
    let mut out = prost_types::ListValue::default();
    r.begin_array()?;
    while r.next_element()? {
        let index = out.values.len();
        out.values
            .push(read_value(r).map_err(|e| e.at_index(index))?);
    }
    Ok(out)
}

impl Codec for Value {
    type Value = prost_types::Value;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        write_value(value, w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        read_value(r)
    }

    fn from_null() -> Option<Self::Value> {
        Some(prost_types::Value {
            kind: Some(prost_types::value::Kind::NullValue(0)),
        })
    }

    fn is_default(_: &Self::Value) -> bool {
        false
    }

    fn parse_text(_: &str) -> Result<Self::Value, JsonError> {
        no_text("google.protobuf.Value")
    }
}

/// google.protobuf.Struct: a JSON object.
#[derive(Debug, Clone, Copy, Default)]
pub struct Struct;

impl Codec for Struct {
    type Value = prost_types::Struct;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        write_struct(value, w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        read_struct(r)
    }

    fn is_default(_: &Self::Value) -> bool {
        false
    }

    fn parse_text(_: &str) -> Result<Self::Value, JsonError> {
        no_text("google.protobuf.Struct")
    }
}

/// google.protobuf.ListValue: a JSON array.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListValue;

impl Codec for ListValue {
    type Value = prost_types::ListValue;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        write_list(value, w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        read_list(r)
    }

    fn is_default(_: &Self::Value) -> bool {
        false
    }

    fn parse_text(_: &str) -> Result<Self::Value, JsonError> {
        no_text("google.protobuf.ListValue")
    }
}

/// How to write and read one message type inside an `Any`.
#[derive(Clone, Copy)]
pub struct AnyType {
    /// The full proto name, the part of the type URL after the last `/`.
    pub type_name: &'static str,
    /// Writes the keys after `"@type"` for the encoded message.
    pub write: fn(&[u8], &mut Writer<'_>) -> Result<(), JsonError>,
    /// Reads the object (positioned at its `{`), skipping `"@type"`, and encodes the message.
    pub read: fn(&mut Reader<'_>) -> Result<Vec<u8>, JsonError>,
}

impl std::fmt::Debug for AnyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.type_name)
    }
}

fn decode<M: Message + Default>(bytes: &[u8], type_name: &str) -> Result<M, JsonError> {
    M::decode(bytes).map_err(|e| {
        JsonError::new(format!(
            "the Any's `{type_name}` payload does not decode: {e}"
        ))
    })
}

fn write_any_message<M: JsonMessage>(bytes: &[u8], w: &mut Writer<'_>) -> Result<(), JsonError> {
    let message: M = decode(bytes, M::TYPE_NAME)?;
    message.write_fields(w);
    Ok(())
}

fn read_any_message<M: JsonMessage>(r: &mut Reader<'_>) -> Result<Vec<u8>, JsonError> {
    let mut message = M::default();
    r.begin_object()?;
    while let Some(key) = r.next_key()? {
        if key == "@type" {
            r.skip_value()?;
        } else if !message.merge_json_field(&key, r)? {
            if !r.options().ignore_unknown {
                return Err(JsonError::unknown_field(&key));
            }
            r.skip_value()?;
        }
    }
    Ok(message.encode_to_vec())
}

fn write_any_wkt<C: Codec>(bytes: &[u8], w: &mut Writer<'_>) -> Result<(), JsonError>
where
    C::Value: Message,
{
    let value: C::Value = decode(bytes, "well-known type")?;
    w.key_str("value");
    C::write(&value, w);
    Ok(())
}

fn read_any_wkt<C: Codec>(r: &mut Reader<'_>) -> Result<Vec<u8>, JsonError>
where
    C::Value: Message,
{
    let mut value = None;
    r.begin_object()?;
    while let Some(key) = r.next_key()? {
        match key.as_ref() {
            "@type" => r.skip_value()?,
            "value" => {
                value = if r.try_null()? {
                    C::from_null()
                } else {
                    Some(C::read(r).map_err(|e| e.at("value"))?)
                };
            }
            _ if r.options().ignore_unknown => r.skip_value()?,
            _ => return Err(JsonError::unknown_field(&key)),
        }
    }
    Ok(value.unwrap_or_default().encode_to_vec())
}

impl AnyType {
    /// The entry for a generated message type.
    pub const fn message<M: JsonMessage>() -> Self {
        AnyType {
            type_name: M::TYPE_NAME,
            write: write_any_message::<M>,
            read: read_any_message::<M>,
        }
    }

    const fn well_known<C: Codec>(type_name: &'static str) -> Self
    where
        C::Value: Message,
    {
        AnyType {
            type_name,
            write: write_any_wkt::<C>,
            read: read_any_wkt::<C>,
        }
    }
}

/// Every message type `Any` can hold in one build, sorted by name.
#[derive(Debug)]
pub struct Registry {
    types: &'static [AnyType],
}

/// Sorted by name.
static WELL_KNOWN: &[AnyType] = &[
    AnyType::well_known::<Any>("google.protobuf.Any"),
    AnyType::well_known::<super::Bool>("google.protobuf.BoolValue"),
    AnyType::well_known::<super::Bytes>("google.protobuf.BytesValue"),
    AnyType::well_known::<super::F64>("google.protobuf.DoubleValue"),
    AnyType::well_known::<Duration>("google.protobuf.Duration"),
    AnyType::well_known::<Empty>("google.protobuf.Empty"),
    AnyType::well_known::<FieldMask>("google.protobuf.FieldMask"),
    AnyType::well_known::<super::F32>("google.protobuf.FloatValue"),
    AnyType::well_known::<super::I32>("google.protobuf.Int32Value"),
    AnyType::well_known::<super::I64>("google.protobuf.Int64Value"),
    AnyType::well_known::<ListValue>("google.protobuf.ListValue"),
    AnyType::well_known::<super::Str>("google.protobuf.StringValue"),
    AnyType::well_known::<Struct>("google.protobuf.Struct"),
    AnyType::well_known::<Timestamp>("google.protobuf.Timestamp"),
    AnyType::well_known::<super::U32>("google.protobuf.UInt32Value"),
    AnyType::well_known::<super::U64>("google.protobuf.UInt64Value"),
    AnyType::well_known::<Value>("google.protobuf.Value"),
];

impl Registry {
    /// A registry of `types`, which must be sorted by `type_name`.
    pub const fn new(types: &'static [AnyType]) -> Self {
        Registry { types }
    }

    /// A registry that knows the well-known types only.
    pub const EMPTY: Registry = Registry::new(&[]);

    /// The entry for a full type name.
    pub fn find(&self, type_name: &str) -> Option<&'static AnyType> {
        let search = |types: &'static [AnyType]| {
            types
                .binary_search_by(|t| t.type_name.cmp(type_name))
                .ok()
                .map(|i| &types[i])
        };
        search(self.types).or_else(|| search(WELL_KNOWN))
    }
}

fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// google.protobuf.Any: `{"@type": url, …fields}`, or `{"@type": url, "value": …}` for a
/// well-known type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Any;

impl Codec for Any {
    type Value = prost_types::Any;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        w.begin_object();
        if value.type_url.is_empty() && value.value.is_empty() {
            w.end_object();
            return;
        }
        w.key_str("@type");
        w.str(&value.type_url);
        match w.registry().find(type_name(&value.type_url)) {
            Some(entry) => {
                if let Err(error) = (entry.write)(&value.value, w) {
                    w.fail(error);
                }
            }
            None => w.fail(JsonError::new(format!(
                "cannot write an Any holding `{}`: the type is not part of this build",
                value.type_url
            ))),
        }
        w.end_object();
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        let start = r.position();
        r.begin_object()?;
        let mut type_url: Option<Cow<'_, str>> = None;
        while let Some(key) = r.next_key()? {
            if key == "@type" {
                type_url = Some(r.string().map_err(|e| e.at("@type"))?);
            } else {
                r.skip_value()?;
            }
        }
        let Some(type_url) = type_url else {
            // `{}` is the empty Any; anything else needs a type.
            let end = r.position();
            r.rewind(start);
            r.begin_object()?;
            if r.next_key()?.is_some() {
                return Err(JsonError::new("an Any with fields must have `@type`"));
            }
            r.rewind(end);
            return Ok(prost_types::Any::default());
        };
        let type_url = type_url.into_owned();
        let entry = r
            .registry()
            .find(type_name(&type_url))
            .ok_or_else(|| JsonError::new(format!("unknown type `{type_url}` in an Any")))?;
        r.rewind(start);
        let value = (entry.read)(r)?;
        Ok(prost_types::Any { type_url, value })
    }

    fn is_default(_: &Self::Value) -> bool {
        false
    }

    fn parse_text(_: &str) -> Result<Self::Value, JsonError> {
        no_text("google.protobuf.Any")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::JsonOptions;

    fn read<C: Codec>(input: &str) -> Result<C::Value, JsonError> {
        let mut r = Reader::new(input.as_bytes(), JsonOptions::default(), &Registry::EMPTY);
        let value = C::read(&mut r)?;
        r.finish()?;
        Ok(value)
    }

    fn write<C: Codec>(value: &C::Value) -> Result<String, JsonError> {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, JsonOptions::default(), &Registry::EMPTY);
        C::write(value, &mut w);
        w.finish()?;
        Ok(String::from_utf8(buf).expect("UTF-8"))
    }

    #[test]
    fn well_known_registry_is_sorted() {
        assert!(
            WELL_KNOWN
                .windows(2)
                .all(|w| w[0].type_name < w[1].type_name)
        );
    }

    #[test]
    fn timestamps() {
        let ts = read::<Timestamp>("\"1970-01-01T00:00:01.5+01:00\"").expect("parses");
        assert_eq!((ts.seconds, ts.nanos), (-3599, 500_000_000));
        assert_eq!(
            write::<Timestamp>(&ts).expect("writes"),
            "\"1969-12-31T23:00:01.500Z\""
        );
        assert!(read::<Timestamp>("\"10000-01-01T00:00:00Z\"").is_err());
        let bad = prost_types::Timestamp {
            seconds: MAX_TIMESTAMP_SECONDS + 1,
            nanos: 0,
        };
        assert!(write::<Timestamp>(&bad).is_err());
    }

    #[test]
    fn durations() {
        let d = read::<Duration>("\"-1.000000001s\"").expect("parses");
        assert_eq!((d.seconds, d.nanos), (-1, -1));
        assert_eq!(write::<Duration>(&d).expect("writes"), "\"-1.000000001s\"");
        assert_eq!(
            write::<Duration>(&prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000
            })
            .expect("writes"),
            "\"1.500s\""
        );
        assert!(read::<Duration>("\"1.5\"").is_err());
        assert!(read::<Duration>("\"315576000001s\"").is_err());
    }

    #[test]
    fn field_masks() {
        let mask = read::<FieldMask>("\"title,author.displayName\"").expect("parses");
        assert_eq!(mask.paths, vec!["title", "author.display_name"]);
        assert_eq!(
            write::<FieldMask>(&mask).expect("writes"),
            "\"title,author.displayName\""
        );
        let bad = prost_types::FieldMask {
            paths: vec!["a__b".into()],
        };
        assert!(write::<FieldMask>(&bad).is_err());
    }

    #[test]
    fn struct_value_list() {
        let input = r#"{"a":[1.5,"x",true,null,{"b":{}}]}"#;
        let value = read::<Struct>(input).expect("parses");
        let back = write::<Struct>(&value).expect("writes");
        let a: serde_json::Value = serde_json::from_str(input).expect("json");
        let b: serde_json::Value = serde_json::from_str(&back).expect("json");
        assert_eq!(a, b);
        assert_eq!(
            Value::from_null(),
            Some(prost_types::Value {
                kind: Some(prost_types::value::Kind::NullValue(0))
            })
        );
    }

    #[test]
    fn any_of_well_known_types() {
        let input = r#"{"value":"2020-01-01T00:00:00Z","@type":"type.googleapis.com/google.protobuf.Timestamp"}"#;
        let any = read::<Any>(input).expect("parses");
        assert_eq!(
            any.type_url,
            "type.googleapis.com/google.protobuf.Timestamp"
        );
        let ts = prost_types::Timestamp::decode(any.value.as_slice()).expect("decodes");
        assert_eq!(ts.seconds, 1_577_836_800);
        assert_eq!(
            write::<Any>(&any).expect("writes"),
            r#"{"@type":"type.googleapis.com/google.protobuf.Timestamp","value":"2020-01-01T00:00:00Z"}"#
        );
        assert!(read::<Any>(r#"{"@type":"x/unknown.Type"}"#).is_err());
        assert!(read::<Any>(r#"{"a":1}"#).is_err());
        assert_eq!(read::<Any>("{}"), Ok(prost_types::Any::default()));
    }
}
