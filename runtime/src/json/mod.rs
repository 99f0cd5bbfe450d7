//! Proto3 JSON without reflection: a streaming [`Writer`] and [`Reader`], codecs for every proto
//! type and well-known type, and the helpers generated message mappers call, field by field.
//!
//! Semantics follow prost-reflect 0.16.5's serde implementation (the oracle of the tests), with
//! these deliberate differences, all on input prost-reflect itself treats oddly:
//! - an integer written as a plain JSON number token must fit the field exactly (prost-reflect
//!   lets serde_json turn an overflowing token into a double and saturates it);
//! - a float field takes the decimal rounded once to f32, so `3.4028235e38` (how `f32::MAX` is
//!   printed) reads back; `"inf"`-style strings other than `"NaN"`, `"Infinity"`, `"-Infinity"`
//!   are errors;
//! - wrapper types print `NaN`/`Infinity` as strings like the bare types (prost-reflect prints
//!   `null`);
//! - the empty `Any` is `{}` both ways (prost-reflect refuses it), and a type URL without `/`
//!   is all type name;
//! - a `Duration` whose seconds and nanos differ in sign cannot be written (prost-reflect
//!   prints it with the wrong sign).
//!
//! Notes on the API:
//! - `JsonMessage::merge_json_field` is not called `merge_field`: `prost::Message`, a supertrait,
//!   already has a `merge_field` method, so calls would be ambiguous.
//! - [`Codec::read_known`] drops an unknown enum name under `ignore_unknown` (field left as it
//!   was, list element and map entry skipped, oneof left unset) as prost-reflect does;
//!   `Codec::Value` is `Default`.
//! - [`MapLike`] abstracts over `HashMap` and `BTreeMap` map fields.
//! - [`Reader::rewind`] returns to an offset at the same nesting depth; `Any` restores the
//!   depth as well through a crate-private method.

mod codec;
mod error;
mod message;
mod reader;
mod text;
mod wkt;
mod writer;

pub(crate) use codec::decode_base64_lenient;
pub use codec::{
    Bool, Bytes, Codec, Enum, F32, F64, I32, I64, MapKey, MapLike, Msg, NullValue, ProtoEnum, Str,
    U32, U64,
};
pub use error::JsonError;
pub use message::{
    JsonMessage, decode_message, encode_message, merge_message, parse_text, push_text, read_map,
    read_message, read_nullable, read_optional, read_repeated, read_singular, set_text,
    set_text_optional, write_map, write_map_value, write_message, write_optional, write_present,
    write_repeated, write_singular,
};
pub use reader::{Peek, Reader};
pub use text::TextField;
pub use wkt::{
    Any, AnyType, Duration, Empty, FieldMask, ListValue, Registry, Struct, Timestamp, Value,
};
pub use writer::Writer;

/// Options of the JSON mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// Output: write fields without presence even when they hold their default value.
    pub emit_defaults: bool,
    /// Output: use proto field names instead of lowerCamelCase JSON names.
    pub proto_names: bool,
    /// Output: write enums as numbers instead of names.
    pub enums_as_ints: bool,
    /// Input: skip unknown fields (and unknown enum names) instead of failing.
    pub ignore_unknown: bool,
}
