//! Codecs: one zero-sized type per proto JSON representation, chosen by the generator per field.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::{JsonError, JsonMessage, Peek, Reader, Writer};

/// How values of one proto type are written and read as JSON and parsed from query/path text.
pub trait Codec {
    /// The Rust type prost uses for one value.
    type Value: Default;

    /// Writes a value.
    fn write(value: &Self::Value, w: &mut Writer<'_>);

    /// Reads a value that is not `null`.
    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError>;

    /// What `null` means: nothing (the default) for most types, a value for `Value`/`NullValue`.
    fn from_null() -> Option<Self::Value> {
        None
    }

    /// Whether a field holding this value is left out of the output.
    fn is_default(value: &Self::Value) -> bool;

    /// Parses the text form used in query parameters and path variables.
    fn parse_text(text: &str) -> Result<Self::Value, JsonError>;
}

/// Codecs whose values can be map keys: always JSON strings.
pub trait MapKey: Codec {
    /// Writes the value as an object key.
    fn write_key(value: &Self::Value, w: &mut Writer<'_>);
    /// Parses an object key.
    fn parse_key(key: &str) -> Result<Self::Value, JsonError>;
}

/// The map types prost generates: `HashMap` and `BTreeMap`.
pub trait MapLike<K, V>: Default {
    /// Number of entries.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `f` for every entry.
    fn each(&self, f: &mut dyn FnMut(&K, &V));
    /// Inserts or replaces an entry.
    fn put(&mut self, key: K, value: V);
}

impl<K: Eq + Hash, V, S: BuildHasher + Default> MapLike<K, V> for HashMap<K, V, S> {
    fn len(&self) -> usize {
        HashMap::len(self)
    }
    fn each(&self, f: &mut dyn FnMut(&K, &V)) {
        self.iter().for_each(|(k, v)| f(k, v));
    }
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
}

impl<K: Ord, V> MapLike<K, V> for BTreeMap<K, V> {
    fn len(&self) -> usize {
        BTreeMap::len(self)
    }
    fn each(&self, f: &mut dyn FnMut(&K, &V)) {
        self.iter().for_each(|(k, v)| f(k, v));
    }
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
}

/// The text of a number or of a string holding one.
fn numeric_text<'a>(r: &mut Reader<'a>, expected: &str) -> Result<Cow<'a, str>, JsonError> {
    match r.peek()? {
        Peek::Number => r.number_text().map(Cow::Borrowed),
        Peek::String => r.string(),
        _ => Err(r.type_error(expected)),
    }
}

/// Parses an integer written as digits, or as an integral number with a fraction or exponent.
fn parse_integer<T>(text: &str, what: &str) -> Result<T, JsonError>
where
    T: TryFrom<i128> + std::str::FromStr,
{
    if let Ok(value) = text.parse::<T>() {
        return Ok(value);
    }
    let out_of_range = || JsonError::new(format!("{text:?} is out of range for {what}"));
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        // All digits but did not parse: out of range.
        return Err(out_of_range());
    }
    let float: f64 = text
        .parse()
        .map_err(|_| JsonError::new(format!("expected {what}, found {text:?}")))?;
    if !float.is_finite() || float.fract() != 0.0 {
        return Err(JsonError::new(format!("expected {what}, found {text:?}")));
    }
    if float.abs() > 1.8e19 {
        return Err(out_of_range());
    }
    T::try_from(float as i128).map_err(|_| out_of_range())
}

fn parse_float(text: &str, what: &str) -> Result<f64, JsonError> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| JsonError::new(format!("expected {what}, found {text:?}"))),
    }
}

macro_rules! integer_codec {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $what:literal, $write:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Codec for $name {
            type Value = $ty;

            fn write(value: &$ty, w: &mut Writer<'_>) {
                w.$write(*value);
            }

            fn read(r: &mut Reader<'_>) -> Result<$ty, JsonError> {
                let text = numeric_text(r, $what)?;
                parse_integer(&text, $what)
            }

            fn is_default(value: &$ty) -> bool {
                *value == 0
            }

            fn parse_text(text: &str) -> Result<$ty, JsonError> {
                parse_integer(text, $what)
            }
        }

        impl MapKey for $name {
            fn write_key(value: &$ty, w: &mut Writer<'_>) {
                w.key_str(itoa::Buffer::new().format(*value));
            }

            fn parse_key(key: &str) -> Result<$ty, JsonError> {
                key.parse()
                    .map_err(|_| JsonError::new(format!("map key {key:?} is not {}", $what)))
            }
        }
    };
}

integer_codec!(
    /// int32, sint32, sfixed32: a JSON number.
    I32, i32, "a 32-bit integer", i32
);
integer_codec!(
    /// uint32, fixed32: a JSON number.
    U32, u32, "an unsigned 32-bit integer", u32
);
integer_codec!(
    /// int64, sint64, sfixed64: a decimal string (numbers accepted).
    I64, i64, "a 64-bit integer", i64
);
integer_codec!(
    /// uint64, fixed64: a decimal string (numbers accepted).
    U64, u64, "an unsigned 64-bit integer", u64
);

/// double: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct F64;

impl Codec for F64 {
    type Value = f64;

    fn write(value: &f64, w: &mut Writer<'_>) {
        w.f64(*value);
    }

    fn read(r: &mut Reader<'_>) -> Result<f64, JsonError> {
        let text = numeric_text(r, "a number")?;
        parse_float(&text, "a number")
    }

    fn is_default(value: &f64) -> bool {
        *value == 0.0 && value.is_sign_positive()
    }

    fn parse_text(text: &str) -> Result<f64, JsonError> {
        parse_float(text, "a number")
    }
}

/// float: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`; finite values must fit in f32.
#[derive(Debug, Clone, Copy, Default)]
pub struct F32;

/// Parses straight to f32 (rounding once, as the writer's shortest form expects); a finite text
/// that overflows f32 is out of range.
fn parse_f32(text: &str) -> Result<f32, JsonError> {
    match text {
        "NaN" => return Ok(f32::NAN),
        "Infinity" => return Ok(f32::INFINITY),
        "-Infinity" => return Ok(f32::NEG_INFINITY),
        _ => {}
    }
    let value: f32 = text
        .parse()
        .map_err(|_| JsonError::new(format!("expected a number, found {text:?}")))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(JsonError::new(format!(
            "{text} is out of range for a 32-bit float"
        )))
    }
}

impl Codec for F32 {
    type Value = f32;

    fn write(value: &f32, w: &mut Writer<'_>) {
        w.f32(*value);
    }

    fn read(r: &mut Reader<'_>) -> Result<f32, JsonError> {
        let text = numeric_text(r, "a number")?;
        parse_f32(&text)
    }

    fn is_default(value: &f32) -> bool {
        *value == 0.0 && value.is_sign_positive()
    }

    fn parse_text(text: &str) -> Result<f32, JsonError> {
        parse_f32(text)
    }
}

/// bool: `true`/`false`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bool;

impl Codec for Bool {
    type Value = bool;

    fn write(value: &bool, w: &mut Writer<'_>) {
        w.bool(*value);
    }

    fn read(r: &mut Reader<'_>) -> Result<bool, JsonError> {
        r.bool()
    }

    fn is_default(value: &bool) -> bool {
        !*value
    }

    fn parse_text(text: &str) -> Result<bool, JsonError> {
        match text {
            "true" | "True" | "TRUE" | "t" | "T" | "1" => Ok(true),
            "false" | "False" | "FALSE" | "f" | "F" | "0" => Ok(false),
            _ => Err(JsonError::new(format!(
                "expected a boolean, found {text:?}"
            ))),
        }
    }
}

impl MapKey for Bool {
    fn write_key(value: &bool, w: &mut Writer<'_>) {
        w.key_str(if *value { "true" } else { "false" });
    }

    fn parse_key(key: &str) -> Result<bool, JsonError> {
        match key {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(JsonError::new(format!("map key {key:?} is not a boolean"))),
        }
    }
}

/// string.
#[derive(Debug, Clone, Copy, Default)]
pub struct Str;

impl Codec for Str {
    type Value = String;

    fn write(value: &String, w: &mut Writer<'_>) {
        w.str(value);
    }

    fn read(r: &mut Reader<'_>) -> Result<String, JsonError> {
        r.string().map(Cow::into_owned)
    }

    fn is_default(value: &String) -> bool {
        value.is_empty()
    }

    fn parse_text(text: &str) -> Result<String, JsonError> {
        Ok(text.to_owned())
    }
}

impl MapKey for Str {
    fn write_key(value: &String, w: &mut Writer<'_>) {
        w.key_str(value);
    }

    fn parse_key(key: &str) -> Result<String, JsonError> {
        Ok(key.to_owned())
    }
}

/// The Rust types prost uses for `bytes`.
pub trait BytesValue: Default {
    /// The bytes.
    fn as_slice(&self) -> &[u8];
    /// From decoded bytes.
    fn from_vec(bytes: Vec<u8>) -> Self;
}

impl BytesValue for Vec<u8> {
    fn as_slice(&self) -> &[u8] {
        self
    }
    fn from_vec(bytes: Vec<u8>) -> Self {
        bytes
    }
}

impl BytesValue for bytes::Bytes {
    fn as_slice(&self) -> &[u8] {
        self
    }
    fn from_vec(bytes: Vec<u8>) -> Self {
        bytes.into()
    }
}

/// bytes: standard base64 out; standard or URL-safe, padded or not, in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes<B = Vec<u8>>(PhantomData<B>);

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

fn decode_base64(text: &str) -> Result<Vec<u8>, JsonError> {
    let engine = if text.contains(['-', '_']) {
        &URL_SAFE
    } else {
        &STANDARD
    };
    engine
        .decode(text)
        .map_err(|e| JsonError::new(format!("invalid base64: {e}")))
}

impl<B: BytesValue> Codec for Bytes<B> {
    type Value = B;

    fn write(value: &B, w: &mut Writer<'_>) {
        w.bytes(value.as_slice());
    }

    fn read(r: &mut Reader<'_>) -> Result<B, JsonError> {
        let text = r.string()?;
        decode_base64(&text).map(B::from_vec)
    }

    fn is_default(value: &B) -> bool {
        value.as_slice().is_empty()
    }

    fn parse_text(text: &str) -> Result<B, JsonError> {
        decode_base64(text).map(B::from_vec)
    }
}

/// What the generator writes for every proto enum.
pub trait ProtoEnum {
    /// The enum's full proto name.
    const TYPE_NAME: &'static str;
    /// The name of a number, if the enum has one.
    fn name_of(value: i32) -> Option<&'static str>;
    /// The number of a name.
    fn value_of(name: &str) -> Option<i32>;
}

/// An enum: its value name (or the number when unknown, or with `enums_as_ints`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Enum<E>(PhantomData<E>);

impl<E: ProtoEnum> Codec for Enum<E> {
    type Value = i32;

    fn write(value: &i32, w: &mut Writer<'_>) {
        match E::name_of(*value) {
            Some(name) if !w.options().enums_as_ints => w.str(name),
            _ => w.i32(*value),
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<i32, JsonError> {
        match r.peek()? {
            Peek::String => {
                let name = r.string()?;
                match E::value_of(&name) {
                    Some(value) => Ok(value),
                    None if r.options().ignore_unknown => Ok(0),
                    None => Err(JsonError::new(format!(
                        "{name:?} is not a value of enum `{}`",
                        E::TYPE_NAME
                    ))),
                }
            }
            Peek::Number => parse_integer(r.number_text()?, "an enum number"),
            _ => Err(r.type_error("an enum name or number")),
        }
    }

    fn is_default(value: &i32) -> bool {
        *value == 0
    }

    fn parse_text(text: &str) -> Result<i32, JsonError> {
        if let Some(value) = E::value_of(text) {
            return Ok(value);
        }
        text.parse().map_err(|_| {
            JsonError::new(format!(
                "{text:?} is not a value of enum `{}`",
                E::TYPE_NAME
            ))
        })
    }
}

/// google.protobuf.NullValue: always `null`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullValue;

impl Codec for NullValue {
    type Value = i32;

    fn write(_: &i32, w: &mut Writer<'_>) {
        w.null();
    }

    fn read(r: &mut Reader<'_>) -> Result<i32, JsonError> {
        match r.string()?.as_ref() {
            "NULL_VALUE" => Ok(0),
            other => Err(JsonError::new(format!("expected null, found {other:?}"))),
        }
    }

    fn from_null() -> Option<i32> {
        Some(0)
    }

    fn is_default(_: &i32) -> bool {
        true
    }

    fn parse_text(text: &str) -> Result<i32, JsonError> {
        match text {
            "null" | "NULL_VALUE" | "0" => Ok(0),
            _ => Err(JsonError::new(format!("expected null, found {text:?}"))),
        }
    }
}

/// A message: a JSON object of its fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Msg<M>(PhantomData<M>);

impl<M: JsonMessage> Codec for Msg<M> {
    type Value = M;

    fn write(value: &M, w: &mut Writer<'_>) {
        w.begin_object();
        value.write_fields(w);
        w.end_object();
    }

    fn read(r: &mut Reader<'_>) -> Result<M, JsonError> {
        let mut message = M::default();
        super::merge_message(&mut message, r)?;
        Ok(message)
    }

    fn is_default(_: &M) -> bool {
        false
    }

    fn parse_text(_: &str) -> Result<M, JsonError> {
        Err(JsonError::new(format!(
            "a `{}` message cannot be given as text",
            M::TYPE_NAME
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{JsonOptions, Registry};

    fn read<C: Codec>(input: &str) -> Result<C::Value, JsonError> {
        let mut r = Reader::new(input.as_bytes(), JsonOptions::default(), &Registry::EMPTY);
        let value = C::read(&mut r)?;
        r.finish()?;
        Ok(value)
    }

    fn write<C: Codec>(value: &C::Value) -> String {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, JsonOptions::default(), &Registry::EMPTY);
        C::write(value, &mut w);
        w.finish().expect("written");
        String::from_utf8(buf).expect("UTF-8")
    }

    #[test]
    fn integers_accept_numbers_strings_and_integral_exponents() {
        assert_eq!(read::<I32>("12"), Ok(12));
        assert_eq!(read::<I32>("\"-12\""), Ok(-12));
        assert_eq!(read::<I32>("1e2"), Ok(100));
        assert_eq!(read::<I32>("5.0"), Ok(5));
        assert!(read::<I32>("1.5").is_err());
        assert!(read::<I32>("2147483648").is_err());
        assert!(read::<U32>("-1").is_err());
        assert_eq!(read::<I64>("\"-9223372036854775808\""), Ok(i64::MIN));
        assert_eq!(read::<U64>("\"18446744073709551615\""), Ok(u64::MAX));
        assert_eq!(read::<U64>("18446744073709551615"), Ok(u64::MAX));
        assert!(read::<U64>("18446744073709551616").is_err());
        assert!(read::<I64>("true").is_err());
        assert_eq!(write::<I64>(&i64::MIN), "\"-9223372036854775808\"");
        assert_eq!(write::<U32>(&u32::MAX), "4294967295");
    }

    #[test]
    fn floats() {
        assert!(read::<F64>("\"NaN\"").is_ok_and(f64::is_nan));
        assert_eq!(read::<F64>("\"-Infinity\""), Ok(f64::NEG_INFINITY));
        assert_eq!(read::<F64>("\"1.25\""), Ok(1.25));
        assert_eq!(read::<F32>("3.5"), Ok(3.5));
        assert!(read::<F32>("1e39").is_err());
        assert_eq!(read::<F32>("3.4028235e38"), Ok(f32::MAX));
        assert!(read::<F64>("\"abc\"").is_err());
        assert_eq!(write::<F32>(&0.1), "0.1");
    }

    #[test]
    fn bytes_accept_both_alphabets_with_or_without_padding() {
        let expected = vec![0xfb, 0xff, 0xbf];
        assert_eq!(read::<Bytes>("\"+/+/\""), Ok(expected.clone()));
        assert_eq!(read::<Bytes>("\"-_-_\""), Ok(expected));
        assert_eq!(read::<Bytes>("\"YQ\""), Ok(b"a".to_vec()));
        assert_eq!(read::<Bytes>("\"YQ==\""), Ok(b"a".to_vec()));
        assert!(read::<Bytes>("\"!!\"").is_err());
        assert_eq!(write::<Bytes>(&b"a".to_vec()), "\"YQ==\"");
    }

    #[test]
    fn booleans_in_text() {
        assert_eq!(Bool::parse_text("true"), Ok(true));
        assert_eq!(Bool::parse_text("0"), Ok(false));
        assert!(Bool::parse_text("yes").is_err());
    }

    proptest::proptest! {
        #[test]
        fn i64_round_trips(v in proptest::num::i64::ANY) {
            proptest::prop_assert_eq!(read::<I64>(&write::<I64>(&v)), Ok(v));
        }

        #[test]
        fn u64_round_trips(v in proptest::num::u64::ANY) {
            proptest::prop_assert_eq!(read::<U64>(&write::<U64>(&v)), Ok(v));
        }

        #[test]
        fn f64_round_trips(v in proptest::num::f64::ANY) {
            let back = read::<F64>(&write::<F64>(&v)).expect("reads back");
            proptest::prop_assert!(back == v || (v.is_nan() && back.is_nan()));
        }

        #[test]
        fn f32_round_trips(v in proptest::num::f32::ANY) {
            let back = read::<F32>(&write::<F32>(&v)).expect("reads back");
            proptest::prop_assert!(back == v || (v.is_nan() && back.is_nan()));
        }
    }
}
