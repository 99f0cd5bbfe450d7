//! Messages: the trait generated mappers implement, and the per-field helpers they call.

use std::borrow::{Borrow, BorrowMut};
use std::hash::Hash;

use super::{Codec, JsonError, JsonOptions, MapKey, MapLike, Reader, Registry, Writer};

/// A message with generated proto3-JSON mappers.
pub trait JsonMessage: prost::Message + Default + Sized + 'static {
    /// The full proto name, `acme.library.v1.Book`.
    const TYPE_NAME: &'static str;

    /// Writes the fields (without braces).
    fn write_fields(&self, w: &mut Writer<'_>);

    /// Reads the value of field `key` (JSON or proto name) into `self`; `false` when the message
    /// has no such field, in which case the value is left unread.
    fn merge_json_field(&mut self, key: &str, r: &mut Reader<'_>) -> Result<bool, JsonError>;

    /// Sets the field at `path` (dotted names, split) from query or path text; `false` when no
    /// such field takes text.
    fn set_text(&mut self, path: &[&str], text: &str) -> Result<bool, JsonError>;
}

/// Writes `message` as a JSON object into `buf`.
pub fn encode_message<M: JsonMessage>(
    message: &M,
    options: JsonOptions,
    registry: &Registry,
    buf: &mut Vec<u8>,
) -> Result<(), JsonError> {
    let mut w = Writer::new(buf, options, registry);
    w.begin_object();
    message.write_fields(&mut w);
    w.end_object();
    w.finish()
}

/// Reads a whole JSON document as a message.
pub fn decode_message<M: JsonMessage>(
    input: &[u8],
    options: JsonOptions,
    registry: &Registry,
) -> Result<M, JsonError> {
    let mut r = Reader::new(input, options, registry);
    let mut message = M::default();
    merge_message(&mut message, &mut r)?;
    r.finish()?;
    Ok(message)
}

/// Reads a JSON object into `message`, field by field; unknown fields fail unless ignored.
pub fn merge_message<M: JsonMessage>(message: &mut M, r: &mut Reader<'_>) -> Result<(), JsonError> {
    r.begin_object()?;
    while let Some(key) = r.next_key()? {
        if !message.merge_json_field(&key, r)? {
            if !r.options().ignore_unknown {
                return Err(JsonError::unknown_field(&key));
            }
            r.skip_value()?;
        }
    }
    Ok(())
}

/// A field without presence: left out when default, unless `emit_defaults`.
pub fn write_singular<C: Codec>(w: &mut Writer<'_>, json: &str, proto: &str, value: &C::Value) {
    if w.options().emit_defaults || !C::is_default(value) {
        w.key(json, proto);
        C::write(value, w);
    }
}

/// A field with presence stored as `Option` (proto3 `optional`, wrappers, well-known types).
pub fn write_optional<C: Codec>(
    w: &mut Writer<'_>,
    json: &str,
    proto: &str,
    value: &Option<C::Value>,
) {
    if let Some(value) = value {
        w.key(json, proto);
        C::write(value, w);
    }
}

/// A field that is set (a oneof member): always written.
pub fn write_present<C: Codec>(w: &mut Writer<'_>, json: &str, proto: &str, value: &C::Value) {
    w.key(json, proto);
    C::write(value, w);
}

/// A message field, boxed or not.
pub fn write_message<M: JsonMessage, S: Borrow<M>>(
    w: &mut Writer<'_>,
    json: &str,
    proto: &str,
    value: &Option<S>,
) {
    if let Some(value) = value {
        w.key(json, proto);
        w.begin_object();
        value.borrow().write_fields(w);
        w.end_object();
    }
}

/// A repeated field: left out when empty, unless `emit_defaults`.
pub fn write_repeated<C: Codec>(w: &mut Writer<'_>, json: &str, proto: &str, values: &[C::Value]) {
    if w.options().emit_defaults || !values.is_empty() {
        w.key(json, proto);
        w.begin_array();
        for value in values {
            C::write(value, w);
        }
        w.end_array();
    }
}

/// A map field: left out when empty, unless `emit_defaults`.
pub fn write_map<K, V, M>(w: &mut Writer<'_>, json: &str, proto: &str, map: &M)
where
    K: MapKey,
    V: Codec,
    M: MapLike<K::Value, V::Value>,
{
    if w.options().emit_defaults || !map.is_empty() {
        w.key(json, proto);
        write_map_value::<K, V, M>(map, w);
    }
}

/// A map as a JSON object, empty or not.
pub fn write_map_value<K, V, M>(map: &M, w: &mut Writer<'_>)
where
    K: MapKey,
    V: Codec,
    M: MapLike<K::Value, V::Value>,
{
    w.begin_object();
    map.each(&mut |key, value| {
        K::write_key(key, w);
        V::write(value, w);
    });
    w.end_object();
}

/// Reads a field without presence; `null` is the default.
pub fn read_singular<C: Codec>(slot: &mut C::Value, r: &mut Reader<'_>) -> Result<(), JsonError> {
    *slot = if r.try_null()? {
        C::from_null().unwrap_or_default()
    } else {
        C::read(r)?
    };
    Ok(())
}

/// Reads an `Option` field; `null` clears it (or is a value, for `Value`).
pub fn read_optional<C: Codec>(
    slot: &mut Option<C::Value>,
    r: &mut Reader<'_>,
) -> Result<(), JsonError> {
    *slot = read_nullable::<C>(r)?;
    Ok(())
}

/// Reads a value that may be `null` (oneof members).
pub fn read_nullable<C: Codec>(r: &mut Reader<'_>) -> Result<Option<C::Value>, JsonError> {
    if r.try_null()? {
        Ok(C::from_null())
    } else {
        C::read(r).map(Some)
    }
}

/// Reads a message field, merging into the message already there; `null` clears it.
pub fn read_message<M: JsonMessage, S: BorrowMut<M> + Default>(
    slot: &mut Option<S>,
    r: &mut Reader<'_>,
) -> Result<(), JsonError> {
    if r.try_null()? {
        *slot = None;
        return Ok(());
    }
    let message = slot.get_or_insert_with(S::default);
    merge_message(message.borrow_mut(), r)
}

/// Reads a repeated field from an array (appending); `null` is empty.
pub fn read_repeated<C: Codec>(
    slot: &mut Vec<C::Value>,
    r: &mut Reader<'_>,
) -> Result<(), JsonError> {
    if r.try_null()? {
        return Ok(());
    }
    r.begin_array()?;
    let mut index = 0;
    while r.next_element()? {
        let value = if r.try_null()? {
            C::from_null()
                .ok_or_else(|| JsonError::new("null is not allowed in a list").at_index(index))?
        } else {
            C::read(r).map_err(|e| e.at_index(index))?
        };
        slot.push(value);
        index += 1;
    }
    Ok(())
}

/// Reads a map field from an object (adding entries); `null` is empty.
pub fn read_map<K, V, M>(slot: &mut M, r: &mut Reader<'_>) -> Result<(), JsonError>
where
    K: MapKey,
    K::Value: Eq + Hash + Ord,
    V: Codec,
    M: MapLike<K::Value, V::Value>,
{
    if r.try_null()? {
        return Ok(());
    }
    r.begin_object()?;
    while let Some(key) = r.next_key()? {
        let parsed = K::parse_key(&key).map_err(|e| e.at_key(&key))?;
        let value = if r.try_null()? {
            V::from_null().unwrap_or_default()
        } else {
            V::read(r).map_err(|e| e.at_key(&key))?
        };
        slot.put(parsed, value);
    }
    Ok(())
}

/// Parses query or path text for one value.
pub fn parse_text<C: Codec>(text: &str) -> Result<C::Value, JsonError> {
    C::parse_text(text)
}

/// Sets a field without presence from text.
pub fn set_text<C: Codec>(slot: &mut C::Value, text: &str) -> Result<(), JsonError> {
    *slot = C::parse_text(text)?;
    Ok(())
}

/// Sets an `Option` field from text.
pub fn set_text_optional<C: Codec>(
    slot: &mut Option<C::Value>,
    text: &str,
) -> Result<(), JsonError> {
    *slot = Some(C::parse_text(text)?);
    Ok(())
}

/// Appends to a repeated field from text (`?tag=a&tag=b`).
pub fn push_text<C: Codec>(slot: &mut Vec<C::Value>, text: &str) -> Result<(), JsonError> {
    slot.push(C::parse_text(text)?);
    Ok(())
}

/// Sets a field of a nested message from text, creating the message if needed.
pub fn set_text_nested<M: JsonMessage, S: BorrowMut<M> + Default>(
    slot: &mut Option<S>,
    path: &[&str],
    text: &str,
) -> Result<bool, JsonError> {
    let created = slot.is_none();
    let known = slot
        .get_or_insert_with(S::default)
        .borrow_mut()
        .set_text(path, text)?;
    if !known && created {
        *slot = None;
    }
    Ok(known)
}

/// google.protobuf.Empty, which prost maps to `()`, as a request or response: `{}`.
impl JsonMessage for () {
    const TYPE_NAME: &'static str = "google.protobuf.Empty";

    fn write_fields(&self, _: &mut Writer<'_>) {}

    fn merge_json_field(&mut self, _: &str, _: &mut Reader<'_>) -> Result<bool, JsonError> {
        Ok(false)
    }

    fn set_text(&mut self, _: &[&str], _: &str) -> Result<bool, JsonError> {
        Ok(false)
    }
}
