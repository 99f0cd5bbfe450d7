//! Proto3 JSON without reflection: a streaming [`Writer`] and [`Reader`], codecs for every proto
//! type and well-known type, and the helpers generated message mappers call, field by field.

mod codec;
mod error;
mod message;
mod reader;
mod wkt;
mod writer;

pub use codec::{
    Bool, Bytes, BytesValue, Codec, Enum, F32, F64, I32, I64, MapKey, MapLike, Msg, NullValue,
    ProtoEnum, Str, U32, U64,
};
pub use error::JsonError;
pub use message::{
    JsonMessage, decode_message, encode_message, merge_message, parse_text, push_text, read_map,
    read_message, read_nullable, read_optional, read_repeated, read_singular, set_text,
    set_text_nested, set_text_optional, write_map, write_map_value, write_message, write_optional,
    write_present, write_repeated, write_singular,
};
pub use reader::{MAX_DEPTH, Peek, Reader};
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
