//! Codecs: one zero-sized type per proto JSON representation, chosen by the generator per field.
//!
//! Input follows prost-reflect 0.16.5: integers come as JSON numbers (an integral fraction or
//! exponent form such as `1e2` is accepted, as serde_json hands those over as doubles) or as
//! decimal strings (`"12"`, `"+12"`; no exponent inside strings); floats as numbers, numeric
//! strings or `"NaN"`, `"Infinity"`, `"-Infinity"`.

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

    /// Reads a value that is not `null`, or `None` when the value is to be dropped as if it were
    /// absent: an enum name the enum does not have, with `ignore_unknown`.
    fn read_known(r: &mut Reader<'_>) -> Result<Option<Self::Value>, JsonError> {
        Self::read(r).map(Some)
    }

    /// What `null` means: nothing (the field stays unset) for most types, a value for
    /// `google.protobuf.Value` and `google.protobuf.NullValue`.
    fn from_null() -> Option<Self::Value> {
        None
    }

    /// Whether a field without presence holding this value is left out of the output.
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
    fn each<F: FnMut(&K, &V)>(&self, f: F);
    /// Inserts or replaces an entry.
    fn put(&mut self, key: K, value: V);
    /// Whether an entry has this key.
    fn contains(&self, key: &K) -> bool;
}

impl<K: Eq + Hash, V, S: BuildHasher + Default> MapLike<K, V> for HashMap<K, V, S> {
    fn len(&self) -> usize {
        HashMap::len(self)
    }
    fn each<F: FnMut(&K, &V)>(&self, mut f: F) {
        self.iter().for_each(|(k, v)| f(k, v));
    }
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
    fn contains(&self, key: &K) -> bool {
        self.contains_key(key)
    }
}

impl<K: Ord, V> MapLike<K, V> for BTreeMap<K, V> {
    fn len(&self) -> usize {
        BTreeMap::len(self)
    }
    fn each<F: FnMut(&K, &V)>(&self, mut f: F) {
        self.iter().for_each(|(k, v)| f(k, v));
    }
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
    fn contains(&self, key: &K) -> bool {
        self.contains_key(key)
    }
}

/// A number token or a string, as read for a numeric field.
enum Numeric<'a> {
    Number(&'a str),
    String(Cow<'a, str>),
}

fn numeric<'a>(r: &mut Reader<'a>, expected: &str) -> Result<Numeric<'a>, JsonError> {
    match r.peek()? {
        Peek::Number => r.number_text().map(Numeric::Number),
        Peek::String => r.string().map(Numeric::String),
        _ => Err(r.type_error(expected)),
    }
}

/// True for a JSON number token without fraction or exponent.
fn is_integer_token(text: &str) -> bool {
    !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// The integer types of proto: parsed from text, or from a double that must be integral.
trait Integer: Sized + std::str::FromStr + TryFrom<i128> {
    const MIN_F64: f64;
    const MAX_F64: f64;
    const SIGNED: bool;
    /// Rust's `as` conversion (saturating at the bounds), used after the range check.
    fn from_f64(value: f64) -> Self;

    /// The value of a sign and magnitude read by [`Reader::short_integer`], if in range and
    /// written as `FromStr` would take it (no `-` at all for unsigned types, not even `-0`).
    #[inline]
    fn from_parts(negative: bool, magnitude: u64) -> Option<Self> {
        if negative && !Self::SIGNED {
            return None;
        }
        let magnitude = i128::from(magnitude);
        Self::try_from(if negative { -magnitude } else { magnitude }).ok()
    }
}

macro_rules! integer {
    ($($ty:ty),*) => {$(
        impl Integer for $ty {
            const MIN_F64: f64 = <$ty>::MIN as f64;
            const MAX_F64: f64 = <$ty>::MAX as f64;
            const SIGNED: bool = <$ty>::MIN != 0;
            fn from_f64(value: f64) -> Self {
                value as $ty
            }
        }
    )*};
}
integer!(i32, u32, i64, u64);

fn expected<T>(what: &str, text: &str) -> Result<T, JsonError> {
    Err(JsonError::new(format!("expected {what}, found {text:?}")))
}

/// An integral double in range, as prost-reflect takes `1e2` or `5.0` for an integer field.
fn integer_from_double<T: Integer>(text: &str, what: &str) -> Result<T, JsonError> {
    let Ok(value) = text.parse::<f64>() else {
        return expected(what, text);
    };
    if !value.is_finite() || value.fract() != 0.0 {
        return expected(what, text);
    }
    if value < T::MIN_F64 || value > T::MAX_F64 {
        return Err(JsonError::new(format!("{text} is out of range for {what}")));
    }
    Ok(T::from_f64(value))
}

/// A JSON number token as an integer: digits exactly, a fraction or exponent form if integral.
fn integer_from_number<T: Integer>(text: &str, what: &str) -> Result<T, JsonError> {
    if is_integer_token(text) {
        text.parse()
            .map_err(|_| JsonError::new(format!("{text} is out of range for {what}")))
    } else {
        integer_from_double(text, what)
    }
}

/// A decimal string as an integer (an optional sign and digits, like Rust's `FromStr`).
fn integer_from_string<T: Integer>(text: &str, what: &str) -> Result<T, JsonError> {
    text.parse().or_else(|_| {
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            Err(JsonError::new(format!(
                "{text:?} is out of range for {what}"
            )))
        } else {
            expected(what, text)
        }
    })
}

fn read_integer<T: Integer>(r: &mut Reader<'_>, what: &str) -> Result<T, JsonError> {
    // Most integers are short digit runs, quoted or not: read in one pass. The rest, and
    // anything out of range, take the general path, which also words the errors.
    let start = r.position();
    if let Some((negative, magnitude)) = r.short_integer() {
        if let Some(value) = T::from_parts(negative, magnitude) {
            return Ok(value);
        }
        r.rewind(start);
    }
    match numeric(r, what)? {
        Numeric::Number(text) => integer_from_number(text, what),
        Numeric::String(text) => integer_from_string(&text, what),
    }
}

/// Query and path text: decimal digits, or an integral number with fraction or exponent.
fn integer_from_text<T: Integer>(text: &str, what: &str) -> Result<T, JsonError> {
    integer_from_string(text, what).or_else(|error| {
        let number_like = text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
        if number_like && !is_integer_token(text) {
            integer_from_double(text, what)
        } else {
            Err(error)
        }
    })
}

macro_rules! integer_codec {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $what:literal, $write:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Codec for $name {
            type Value = $ty;

            #[inline]
            fn write(value: &$ty, w: &mut Writer<'_>) {
                w.$write(*value);
            }

            fn read(r: &mut Reader<'_>) -> Result<$ty, JsonError> {
                read_integer(r, $what)
            }

            #[inline]
            fn is_default(value: &$ty) -> bool {
                *value == 0
            }

            fn parse_text(text: &str) -> Result<$ty, JsonError> {
                integer_from_text(text, $what)
            }
        }

        impl MapKey for $name {
            fn write_key(value: &$ty, w: &mut Writer<'_>) {
                w.key_str(itoa::Buffer::new().format(*value));
            }

            fn parse_key(key: &str) -> Result<$ty, JsonError> {
                key.parse().map_err(|_| {
                    JsonError::new(format!("map key {key:?} is not {}", $what))
                })
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

/// The non-finite values' names, which only come as strings.
fn special_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

fn out_of_range(text: &str, what: &str) -> JsonError {
    JsonError::new(format!("{text} is out of range for {what}"))
}

const DOUBLE: &str = "a 64-bit float";
const FLOAT: &str = "a 32-bit float";

/// A finite double from a number token or numeric text.
fn finite_f64(text: &str) -> Result<f64, JsonError> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err(out_of_range(text, DOUBLE)),
        Err(_) => expected(DOUBLE, text),
    }
}

/// A finite float, rounded once from the decimal text; overflowing f32 is out of range.
fn finite_f32(text: &str) -> Result<f32, JsonError> {
    match text.parse::<f32>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err(out_of_range(text, FLOAT)),
        Err(_) => expected(FLOAT, text),
    }
}

fn f64_from_text(text: &str) -> Result<f64, JsonError> {
    special_float(text).map_or_else(|| finite_f64(text), Ok)
}

fn f32_from_text(text: &str) -> Result<f32, JsonError> {
    match special_float(text) {
        Some(value) => Ok(value as f32),
        None => finite_f32(text),
    }
}

/// double: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct F64;

impl Codec for F64 {
    type Value = f64;

    #[inline]
    fn write(value: &f64, w: &mut Writer<'_>) {
        w.f64(*value);
    }

    fn read(r: &mut Reader<'_>) -> Result<f64, JsonError> {
        // A plain number token is read in one pass, and short decimals need no parsing after.
        if let Some((text, exact)) = r.float_token() {
            return exact.map_or_else(|| finite_f64(text), Ok);
        }
        match numeric(r, DOUBLE)? {
            Numeric::Number(text) => finite_f64(text),
            Numeric::String(text) => f64_from_text(&text),
        }
    }

    /// `-0.0` counts as default, as prost and prost-reflect compare with `==`.
    #[inline]
    fn is_default(value: &f64) -> bool {
        *value == 0.0
    }

    fn parse_text(text: &str) -> Result<f64, JsonError> {
        f64_from_text(text)
    }
}

/// float: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`; finite values must fit in f32.
#[derive(Debug, Clone, Copy, Default)]
pub struct F32;

impl Codec for F32 {
    type Value = f32;

    #[inline]
    fn write(value: &f32, w: &mut Writer<'_>) {
        w.f32(*value);
    }

    fn read(r: &mut Reader<'_>) -> Result<f32, JsonError> {
        match numeric(r, FLOAT)? {
            Numeric::Number(text) => finite_f32(text),
            Numeric::String(text) => f32_from_text(&text),
        }
    }

    /// `-0.0` counts as default, as prost and prost-reflect compare with `==`.
    #[inline]
    fn is_default(value: &f32) -> bool {
        *value == 0.0
    }

    fn parse_text(text: &str) -> Result<f32, JsonError> {
        f32_from_text(text)
    }
}

/// bool: `true`/`false`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bool;

impl Codec for Bool {
    type Value = bool;

    #[inline]
    fn write(value: &bool, w: &mut Writer<'_>) {
        w.bool(*value);
    }

    fn read(r: &mut Reader<'_>) -> Result<bool, JsonError> {
        r.bool()
    }

    #[inline]
    fn is_default(value: &bool) -> bool {
        !*value
    }

    fn parse_text(text: &str) -> Result<bool, JsonError> {
        match text {
            "true" | "True" | "TRUE" | "t" | "T" | "1" => Ok(true),
            "false" | "False" | "FALSE" | "f" | "F" | "0" => Ok(false),
            _ => expected("a boolean", text),
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

    #[inline]
    fn write(value: &String, w: &mut Writer<'_>) {
        w.str(value);
    }

    fn read(r: &mut Reader<'_>) -> Result<String, JsonError> {
        r.string().map(Cow::into_owned)
    }

    #[inline]
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

/// The runtime's one base64 decoder, for `bytes` fields and binary metadata alike: the standard
/// or the URL-safe alphabet (told apart by `-`/`_`), padded or not.
pub(crate) fn decode_base64_lenient(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let engine = if text.contains(['-', '_']) {
        &URL_SAFE
    } else {
        &STANDARD
    };
    engine.decode(text)
}

fn decode_base64(text: &str) -> Result<Vec<u8>, JsonError> {
    decode_base64_lenient(text).map_err(|e| JsonError::new(format!("invalid base64: {e}")))
}

impl<B: BytesValue> Codec for Bytes<B> {
    type Value = B;

    #[inline]
    fn write(value: &B, w: &mut Writer<'_>) {
        w.bytes(value.as_slice());
    }

    fn read(r: &mut Reader<'_>) -> Result<B, JsonError> {
        let text = r.string()?;
        decode_base64(&text).map(B::from_vec)
    }

    #[inline]
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

fn unknown_enum_name<E: ProtoEnum>(name: &str) -> JsonError {
    JsonError::new(format!(
        "{name:?} is not a value of enum `{}`",
        E::TYPE_NAME
    ))
}

impl<E: ProtoEnum> Codec for Enum<E> {
    type Value = i32;

    fn write(value: &i32, w: &mut Writer<'_>) {
        match E::name_of(*value) {
            Some(name) if !w.options().enums_as_ints => w.str(name),
            _ => w.i32(*value),
        }
    }

    /// An unknown name with `ignore_unknown` reads as 0 here; fields use
    /// [`Codec::read_known`], which leaves such a value out.
    fn read(r: &mut Reader<'_>) -> Result<i32, JsonError> {
        Self::read_known(r).map(Option::unwrap_or_default)
    }

    fn read_known(r: &mut Reader<'_>) -> Result<Option<i32>, JsonError> {
        const WHAT: &str = "an enum name or number";
        match numeric(r, WHAT)? {
            Numeric::String(name) => match E::value_of(&name) {
                Some(value) => Ok(Some(value)),
                None if r.options().ignore_unknown => Ok(None),
                None => Err(unknown_enum_name::<E>(&name)),
            },
            Numeric::Number(text) if is_integer_token(text) => text
                .parse()
                .map(Some)
                .map_err(|_| out_of_range(text, "an enum number")),
            Numeric::Number(text) => expected("an enum number", text),
        }
    }

    #[inline]
    fn is_default(value: &i32) -> bool {
        *value == 0
    }

    fn parse_text(text: &str) -> Result<i32, JsonError> {
        if let Some(value) = E::value_of(text) {
            return Ok(value);
        }
        text.parse().map_err(|_| unknown_enum_name::<E>(text))
    }
}

/// google.protobuf.NullValue: always `null`; reads `null` or `"NULL_VALUE"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullValue;

impl Codec for NullValue {
    type Value = i32;

    fn write(_: &i32, w: &mut Writer<'_>) {
        w.null();
    }

    fn read(r: &mut Reader<'_>) -> Result<i32, JsonError> {
        Self::read_known(r).map(Option::unwrap_or_default)
    }

    fn read_known(r: &mut Reader<'_>) -> Result<Option<i32>, JsonError> {
        if r.peek()? != Peek::String {
            return Err(r.type_error("null"));
        }
        match r.string()?.as_ref() {
            "NULL_VALUE" => Ok(Some(0)),
            _ if r.options().ignore_unknown => Ok(None),
            other => expected("null", other),
        }
    }

    fn from_null() -> Option<i32> {
        Some(0)
    }

    #[inline]
    fn is_default(value: &i32) -> bool {
        *value == 0
    }

    fn parse_text(text: &str) -> Result<i32, JsonError> {
        match text {
            "null" | "NULL_VALUE" | "0" => Ok(0),
            _ => expected("null", text),
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
pub(crate) mod tests {
    use super::*;
    use crate::json::{JsonOptions, Registry};

    pub(crate) fn read_with<C: Codec>(
        input: &str,
        options: JsonOptions,
    ) -> Result<Option<C::Value>, JsonError> {
        let mut r = Reader::new(input.as_bytes(), options, &Registry::EMPTY);
        let value = C::read_known(&mut r)?;
        r.finish()?;
        Ok(value)
    }

    fn read<C: Codec>(input: &str) -> Result<C::Value, JsonError> {
        let mut r = Reader::new(input.as_bytes(), JsonOptions::default(), &Registry::EMPTY);
        let value = C::read(&mut r)?;
        r.finish()?;
        Ok(value)
    }

    fn write_with<C: Codec>(value: &C::Value, options: JsonOptions) -> String {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, options, &Registry::EMPTY);
        C::write(value, &mut w);
        w.finish().expect("written");
        String::from_utf8(buf).expect("UTF-8")
    }

    fn write<C: Codec>(value: &C::Value) -> String {
        write_with::<C>(value, JsonOptions::default())
    }

    fn message<T>(result: Result<T, JsonError>) -> String {
        match result {
            Ok(_) => "ok".to_owned(),
            Err(error) => error.to_string(),
        }
    }

    /// The test enum: `UNSPECIFIED = 0; RED = 1; GREEN = 2; ALIAS_OF_GREEN = 2`.
    pub(crate) struct Color;

    impl ProtoEnum for Color {
        const TYPE_NAME: &'static str = "test.Color";
        fn name_of(value: i32) -> Option<&'static str> {
            match value {
                0 => Some("COLOR_UNSPECIFIED"),
                1 => Some("RED"),
                2 => Some("GREEN"),
                _ => None,
            }
        }
        fn value_of(name: &str) -> Option<i32> {
            match name {
                "COLOR_UNSPECIFIED" => Some(0),
                "RED" => Some(1),
                "GREEN" | "ALIAS_OF_GREEN" => Some(2),
                _ => None,
            }
        }
    }

    #[test]
    fn int32_accepts_numbers_strings_and_integral_exponents() {
        assert_eq!(read::<I32>("12"), Ok(12));
        assert_eq!(read::<I32>(" -12 "), Ok(-12));
        assert_eq!(read::<I32>("\"-12\""), Ok(-12));
        assert_eq!(read::<I32>("\"+12\""), Ok(12));
        assert_eq!(read::<I32>("1e2"), Ok(100));
        assert_eq!(read::<I32>("1E+2"), Ok(100));
        assert_eq!(read::<I32>("5.0"), Ok(5));
        assert_eq!(read::<I32>("-0"), Ok(0));
        assert_eq!(read::<I32>("2147483647"), Ok(i32::MAX));
        assert_eq!(read::<I32>("-2147483648"), Ok(i32::MIN));
        assert_eq!(read::<I32>("-2.147483648e9"), Ok(i32::MIN));
        assert_eq!(
            message(read::<I32>("1.5")),
            "expected a 32-bit integer, found \"1.5\""
        );
        assert!(read::<I32>("1e-2").is_err());
        assert_eq!(
            message(read::<I32>("2147483648")),
            "2147483648 is out of range for a 32-bit integer"
        );
        assert!(read::<I32>("-2147483649").is_err());
        assert!(read::<I32>("3e9").is_err());
        assert!(read::<I32>("1e400").is_err());
        assert!(
            read::<I32>("\"1e2\"").is_err(),
            "no exponent inside strings"
        );
        assert!(read::<I32>("\"1.0\"").is_err());
        assert!(read::<I32>("\" 1\"").is_err());
        assert!(read::<I32>("\"\"").is_err());
        assert_eq!(
            message(read::<I32>("\"x\"")),
            "expected a 32-bit integer, found \"x\""
        );
        assert_eq!(
            message(read::<I32>("\"99999999999\"")),
            "\"99999999999\" is out of range for a 32-bit integer"
        );
        assert_eq!(
            message(read::<I32>("true")),
            "expected a 32-bit integer, found a boolean"
        );
        assert!(read::<I32>("[1]").is_err());
        assert_eq!(write::<I32>(&i32::MIN), "-2147483648");
    }

    #[test]
    fn unsigned_and_64_bit_edges() {
        assert!(read::<U32>("-1").is_err());
        assert!(read::<U32>("\"-1\"").is_err());
        assert_eq!(read::<U32>("4294967295"), Ok(u32::MAX));
        assert!(read::<U32>("4294967296").is_err());
        assert_eq!(read::<I64>("\"-9223372036854775808\""), Ok(i64::MIN));
        assert_eq!(read::<I64>("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(read::<I64>("\"9223372036854775807\""), Ok(i64::MAX));
        assert!(read::<I64>("\"9223372036854775808\"").is_err());
        assert!(read::<I64>("9223372036854775808").is_err());
        assert_eq!(read::<I64>("1e2"), Ok(100));
        assert_eq!(read::<I64>("1.5e1"), Ok(15));
        assert_eq!(read::<U64>("\"18446744073709551615\""), Ok(u64::MAX));
        assert_eq!(read::<U64>("18446744073709551615"), Ok(u64::MAX));
        assert!(read::<U64>("18446744073709551616").is_err());
        assert!(read::<U64>("\"18446744073709551616\"").is_err());
        assert!(read::<U64>("-1").is_err());
        assert!(read::<U64>("1e20").is_err());
        assert_eq!(read::<U64>("1e19"), Ok(10_000_000_000_000_000_000));
        assert!(read::<I64>("true").is_err());
        assert!(
            read::<I64>("null").is_err(),
            "null is handled by the field helpers"
        );
        assert_eq!(write::<I64>(&i64::MIN), "\"-9223372036854775808\"");
        assert_eq!(write::<U64>(&u64::MAX), "\"18446744073709551615\"");
        assert_eq!(write::<U32>(&u32::MAX), "4294967295");
    }

    #[test]
    fn integer_text_and_map_keys() {
        assert_eq!(I32::parse_text("42"), Ok(42));
        assert_eq!(I32::parse_text("1e2"), Ok(100));
        assert!(I32::parse_text("1.5").is_err());
        assert!(I32::parse_text("abc").is_err());
        assert_eq!(U64::parse_text("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(I64::parse_key("-5"), Ok(-5));
        assert!(I32::parse_key("1e2").is_err());
        assert!(U32::parse_key("-1").is_err());
        assert_eq!(Bool::parse_key("true"), Ok(true));
        assert!(Bool::parse_key("True").is_err());
        assert_eq!(Str::parse_key("k"), Ok("k".to_owned()));
    }

    #[test]
    fn doubles() {
        assert!(read::<F64>("\"NaN\"").is_ok_and(f64::is_nan));
        assert_eq!(read::<F64>("\"Infinity\""), Ok(f64::INFINITY));
        assert_eq!(read::<F64>("\"-Infinity\""), Ok(f64::NEG_INFINITY));
        assert_eq!(read::<F64>("\"1.25\""), Ok(1.25));
        assert_eq!(read::<F64>("\"1e3\""), Ok(1000.0));
        assert_eq!(read::<F64>("-0"), Ok(-0.0));
        assert!(read::<F64>("-0").is_ok_and(|v| v.is_sign_negative()));
        assert_eq!(read::<F64>("1e308"), Ok(1e308));
        assert_eq!(read::<F64>("5e-324"), Ok(5e-324));
        assert_eq!(
            read::<F64>("18446744073709551616"),
            Ok(18446744073709551616.0)
        );
        assert!(read::<F64>("1e309").is_err());
        assert!(read::<F64>("\"1e309\"").is_err());
        assert!(read::<F64>("\"abc\"").is_err());
        assert!(read::<F64>("\"nan\"").is_err());
        assert!(read::<F64>("NaN").is_err());
        assert!(read::<F64>("true").is_err());
        assert_eq!(write::<F64>(&1.0), "1.0");
        assert_eq!(write::<F64>(&-0.0), "-0.0");
        assert_eq!(write::<F64>(&1e300), "1e+300");
        assert_eq!(write::<F64>(&1.5e-7), "1.5e-7");
        assert_eq!(write::<F64>(&1e16), "1e+16");
        assert_eq!(write::<F64>(&123456789012345.0), "123456789012345.0");
        assert_eq!(write::<F64>(&f64::NAN), "\"NaN\"");
        assert_eq!(write::<F64>(&f64::NEG_INFINITY), "\"-Infinity\"");
        assert!(F64::is_default(&-0.0));
        assert!(!F64::is_default(&f64::NAN));
        assert_eq!(F64::parse_text("Infinity"), Ok(f64::INFINITY));
    }

    #[test]
    fn floats() {
        assert_eq!(read::<F32>("3.5"), Ok(3.5));
        assert_eq!(read::<F32>("0.1"), Ok(0.1));
        assert_eq!(read::<F32>("\"0.1\""), Ok(0.1));
        assert_eq!(read::<F32>("3.4028235e38"), Ok(f32::MAX));
        assert_eq!(read::<F32>("3.4028235e+38"), Ok(f32::MAX));
        assert_eq!(read::<F32>("-3.4028235e38"), Ok(f32::MIN));
        assert_eq!(
            message(read::<F32>("1e39")),
            "1e39 is out of range for a 32-bit float"
        );
        assert!(read::<F32>("-1e39").is_err());
        assert!(read::<F32>("\"1e39\"").is_err());
        assert!(read::<F32>("3.5e38").is_err());
        assert_eq!(read::<F32>("\"-Infinity\""), Ok(f32::NEG_INFINITY));
        assert!(read::<F32>("\"NaN\"").is_ok_and(f32::is_nan));
        assert_eq!(read::<F32>("1e-50"), Ok(0.0));
        assert_eq!(write::<F32>(&0.1), "0.1");
        assert_eq!(write::<F32>(&1.1), "1.1");
        assert_eq!(write::<F32>(&16777216.0), "16777216.0");
        assert_eq!(write::<F32>(&f32::MAX), "3.4028235e+38");
        assert_eq!(write::<F32>(&f32::INFINITY), "\"Infinity\"");
        assert!(F32::is_default(&-0.0));
    }

    #[test]
    fn floats_print_like_serde_json() {
        for v in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e15,
            1e16,
            1e21,
            1e-5,
            1e-7,
            123456789.125,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
        ] {
            assert_eq!(
                write::<F64>(&v),
                serde_json::to_string(&v).expect("serde_json"),
                "{v}"
            );
        }
        for v in [0.0f32, 1.0, 0.1, 3.0e-40, f32::MAX, 16777217.0, 1e10] {
            assert_eq!(
                write::<F32>(&v),
                serde_json::to_string(&v).expect("serde_json"),
                "{v}"
            );
        }
    }

    #[test]
    fn booleans() {
        assert_eq!(read::<Bool>("true"), Ok(true));
        assert_eq!(read::<Bool>("false"), Ok(false));
        assert!(read::<Bool>("\"true\"").is_err());
        assert!(read::<Bool>("1").is_err());
        assert_eq!(Bool::parse_text("true"), Ok(true));
        assert_eq!(Bool::parse_text("0"), Ok(false));
        assert!(Bool::parse_text("yes").is_err());
        assert_eq!(write::<Bool>(&true), "true");
    }

    #[test]
    fn strings() {
        assert_eq!(
            read::<Str>(r#""a\"b\u00e9\ud83d\ude00""#),
            Ok("a\"bé😀".to_owned())
        );
        assert!(read::<Str>("12").is_err());
        assert!(read::<Str>(r#""\ud83d""#).is_err(), "lone surrogate");
        assert_eq!(
            write::<Str>(&"\u{7f}</script>\u{2028}".to_owned()),
            "\"\u{7f}</script>\u{2028}\""
        );
    }

    #[test]
    fn bytes_accept_both_alphabets_with_or_without_padding() {
        let expected = vec![0xfb, 0xff, 0xbf];
        assert_eq!(read::<Bytes>("\"+/+/\""), Ok(expected.clone()));
        assert_eq!(read::<Bytes>("\"-_-_\""), Ok(expected.clone()));
        assert_eq!(
            read::<Bytes<bytes::Bytes>>("\"-_-_\""),
            Ok(expected.clone().into())
        );
        assert_eq!(read::<Bytes>("\"YQ\""), Ok(b"a".to_vec()));
        assert_eq!(read::<Bytes>("\"YQ==\""), Ok(b"a".to_vec()));
        assert_eq!(read::<Bytes>("\"YWI\""), Ok(b"ab".to_vec()));
        assert_eq!(read::<Bytes>("\"YWI=\""), Ok(b"ab".to_vec()));
        assert_eq!(read::<Bytes>("\"\""), Ok(Vec::new()));
        assert!(read::<Bytes>("\"!!\"").is_err());
        assert!(read::<Bytes>("\"+-\"").is_err(), "mixed alphabets");
        assert!(read::<Bytes>("\"YQ= \"").is_err());
        assert!(read::<Bytes>("12").is_err());
        assert_eq!(write::<Bytes>(&b"a".to_vec()), "\"YQ==\"");
        assert_eq!(write::<Bytes>(&expected), "\"+/+/\"");
        assert_eq!(write::<Bytes>(&Vec::new()), "\"\"");
        assert_eq!(Bytes::<Vec<u8>>::parse_text("YWI"), Ok(b"ab".to_vec()));
    }

    #[test]
    fn enums() {
        let ignore = JsonOptions {
            ignore_unknown: true,
            ..JsonOptions::default()
        };
        assert_eq!(read::<Enum<Color>>("\"RED\""), Ok(1));
        assert_eq!(read::<Enum<Color>>("\"ALIAS_OF_GREEN\""), Ok(2));
        assert_eq!(read::<Enum<Color>>("2"), Ok(2));
        assert_eq!(
            read::<Enum<Color>>("77"),
            Ok(77),
            "unknown numbers are kept"
        );
        assert_eq!(read::<Enum<Color>>("-1"), Ok(-1));
        assert!(read::<Enum<Color>>("2147483648").is_err());
        assert!(read::<Enum<Color>>("1.0").is_err());
        assert!(read::<Enum<Color>>("\"1\"").is_err());
        assert!(read::<Enum<Color>>("true").is_err());
        assert_eq!(
            message(read::<Enum<Color>>("\"BLUE\"")),
            "\"BLUE\" is not a value of enum `test.Color`"
        );
        assert_eq!(read_with::<Enum<Color>>("\"BLUE\"", ignore), Ok(None));
        assert_eq!(read_with::<Enum<Color>>("\"RED\"", ignore), Ok(Some(1)));
        assert_eq!(write::<Enum<Color>>(&2), "\"GREEN\"");
        assert_eq!(write::<Enum<Color>>(&77), "77");
        let ints = JsonOptions {
            enums_as_ints: true,
            ..JsonOptions::default()
        };
        assert_eq!(write_with::<Enum<Color>>(&2, ints), "2");
        assert_eq!(Enum::<Color>::parse_text("RED"), Ok(1));
        assert_eq!(Enum::<Color>::parse_text("5"), Ok(5));
        assert!(Enum::<Color>::parse_text("BLUE").is_err());
    }

    #[test]
    fn null_value() {
        let ignore = JsonOptions {
            ignore_unknown: true,
            ..JsonOptions::default()
        };
        assert_eq!(NullValue::from_null(), Some(0));
        assert_eq!(read::<NullValue>("\"NULL_VALUE\""), Ok(0));
        assert!(read::<NullValue>("\"OTHER\"").is_err());
        assert!(read::<NullValue>("0").is_err());
        assert_eq!(read_with::<NullValue>("\"OTHER\"", ignore), Ok(None));
        assert_eq!(write::<NullValue>(&0), "null");
        assert!(NullValue::is_default(&0));
    }

    /// What [`read_integer`] gives without its one-pass path: the number or string read
    /// whole, then parsed.
    fn read_integer_in_full<T: Integer>(input: &str, what: &str) -> Result<T, JsonError> {
        let mut r = Reader::new(input.as_bytes(), JsonOptions::default(), &Registry::EMPTY);
        let value = match numeric(&mut r, what)? {
            Numeric::Number(text) => integer_from_number(text, what)?,
            Numeric::String(text) => integer_from_string(&text, what)?,
        };
        r.finish()?;
        Ok(value)
    }

    fn same_as_in_full<T: Integer + PartialEq + std::fmt::Debug>(input: &str) {
        let mut r = Reader::new(input.as_bytes(), JsonOptions::default(), &Registry::EMPTY);
        let fast = read_integer::<T>(&mut r, "an integer").and_then(|v| r.finish().map(|()| v));
        assert_eq!(
            fast,
            read_integer_in_full::<T>(input, "an integer"),
            "{input}"
        );
    }

    #[test]
    fn integers_read_in_one_pass_as_in_full() {
        for input in [
            "0",
            "-0",
            "\"-0\"",
            "\"+0\"",
            "7",
            "\"007\"",
            "00",
            "-",
            "\"-\"",
            "\"\"",
            "\"+\"",
            "+1",
            "1.0",
            "1e2",
            "-1E+2",
            "\"1e2\"",
            "\" 12\"",
            "\"12 \"",
            "\"1\\u0032\"",
            "2147483647",
            "2147483648",
            "-2147483648",
            "-2147483649",
            "4294967295",
            "4294967296",
            "\"9223372036854775807\"",
            "\"9223372036854775808\"",
            "-9223372036854775808",
            "-9223372036854775809",
            "9999999999999999999",
            "18446744073709551615",
            "\"18446744073709551616\"",
            "\"000000000000000000001\"",
            "12 ",
            "12x",
            "[12]",
            "\"12",
        ] {
            same_as_in_full::<i32>(input);
            same_as_in_full::<u32>(input);
            same_as_in_full::<i64>(input);
            same_as_in_full::<u64>(input);
        }
    }

    /// A double read whole and then parsed, as [`F64::read`] does without its one-pass path.
    fn f64_in_full(input: &str) -> Result<f64, JsonError> {
        let mut r = Reader::new(input.as_bytes(), JsonOptions::default(), &Registry::EMPTY);
        let value = match numeric(&mut r, DOUBLE)? {
            Numeric::Number(text) => finite_f64(text)?,
            Numeric::String(text) => f64_from_text(&text)?,
        };
        r.finish()?;
        Ok(value)
    }

    fn same_f64_as_in_full(input: &str) {
        let fast = read::<F64>(input).map(f64::to_bits);
        assert_eq!(fast, f64_in_full(input).map(f64::to_bits), "{input}");
    }

    #[test]
    fn doubles_read_in_one_pass_as_in_full() {
        for input in [
            "0",
            "-0",
            "4.25",
            "0.1",
            "-1.5e3",
            "1e22",
            "1e23",
            "1E-22",
            "1e308",
            "1e309",
            "-1e400",
            "1e-400",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "2.5x",
            "\"2.5\"",
            "\"NaN\"",
            "true",
            "9007199254740993",
            "1.6666666666666667",
            "[1]",
        ] {
            same_f64_as_in_full(input);
        }
    }

    proptest::proptest! {
        #[test]
        fn doubles_read_in_one_pass_as_in_full_for_any_number(
            input in "-?[0-9]{0,22}(\\.[0-9]{0,22})?([eE][+-]?[0-9]{0,4})?",
        ) {
            same_f64_as_in_full(&input);
        }

        #[test]
        fn integers_read_in_one_pass_as_in_full_for_any_digits(
            input in "\"?[-+]?[0-9]{0,22}(\\.[0-9]|e[0-9])?\"?",
        ) {
            same_as_in_full::<i32>(&input);
            same_as_in_full::<u32>(&input);
            same_as_in_full::<i64>(&input);
            same_as_in_full::<u64>(&input);
        }

        #[test]
        fn i64_round_trips(v in proptest::num::i64::ANY) {
            proptest::prop_assert_eq!(read::<I64>(&write::<I64>(&v)), Ok(v));
            proptest::prop_assert_eq!(read::<I64>(&v.to_string()), Ok(v));
            proptest::prop_assert_eq!(I64::parse_text(&v.to_string()), Ok(v));
        }

        #[test]
        fn u64_round_trips(v in proptest::num::u64::ANY) {
            proptest::prop_assert_eq!(read::<U64>(&write::<U64>(&v)), Ok(v));
            proptest::prop_assert_eq!(read::<U64>(&v.to_string()), Ok(v));
        }

        #[test]
        fn i32_round_trips(v in proptest::num::i32::ANY) {
            proptest::prop_assert_eq!(read::<I32>(&write::<I32>(&v)), Ok(v));
            proptest::prop_assert_eq!(read::<I32>(&format!("\"{v}\"")), Ok(v));
            proptest::prop_assert_eq!(read::<I32>(&format!("{v}.0")), Ok(v));
        }

        #[test]
        fn f64_round_trips(v in proptest::num::f64::ANY) {
            let text = write::<F64>(&v);
            let back = read::<F64>(&text).expect("reads back");
            proptest::prop_assert!(back.to_bits() == v.to_bits() || (v.is_nan() && back.is_nan()));
            if v.is_finite() {
                proptest::prop_assert_eq!(text, serde_json::to_string(&v).expect("serde_json"));
            }
        }

        #[test]
        fn f32_round_trips(v in proptest::num::f32::ANY) {
            let text = write::<F32>(&v);
            let back = read::<F32>(&text).expect("reads back");
            proptest::prop_assert!(back.to_bits() == v.to_bits() || (v.is_nan() && back.is_nan()));
            if v.is_finite() {
                proptest::prop_assert_eq!(text, serde_json::to_string(&v).expect("serde_json"));
            }
        }

        #[test]
        fn base64_round_trips(v in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            proptest::prop_assert_eq!(read::<Bytes>(&write::<Bytes>(&v)), Ok(v.clone()));
            let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&v);
            proptest::prop_assert_eq!(read::<Bytes>(&format!("\"{url}\"")), Ok(v));
        }
    }
}
