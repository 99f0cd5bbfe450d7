//! Messages: the trait generated mappers implement, and the per-field helpers they call.

use std::borrow::{Borrow, BorrowMut};
use std::hash::Hash;

use super::{
    Codec, FieldKey, JsonError, JsonOptions, MapKey, MapLike, Reader, Registry, TextField, Writer,
};

/// A message with generated proto3-JSON mappers.
pub trait JsonMessage: prost::Message + Default + Sized + 'static {
    /// The full proto name, `acme.library.v1.Book`.
    const TYPE_NAME: &'static str;

    /// Writes the fields (without braces).
    fn write_fields(&self, w: &mut Writer<'_>);

    /// Reads the value of field `key` (JSON or proto name) into `self`; `false` when the message
    /// has no such field, in which case the value is left unread.
    ///
    /// (Not `merge_field`: `prost::Message`, a supertrait, already has a method of that name, and
    /// calls on a `M: JsonMessage` would be ambiguous.)
    fn merge_json_field(&mut self, key: &str, r: &mut Reader<'_>) -> Result<bool, JsonError>;

    /// Sets the field a query parameter names (see [`TextField`]); `false` when the message has
    /// no field of that name, an error when the parameter does not fit the field it names.
    fn set_text(&mut self, field: &mut TextField<'_>) -> Result<bool, JsonError>;
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
pub fn write_singular<C: Codec>(w: &mut Writer<'_>, key: FieldKey, value: &C::Value) {
    if w.options().emit_defaults || !C::is_default(value) {
        w.field_key(key);
        C::write(value, w);
    }
}

/// A field with presence stored as `Option` (proto3 `optional`, wrappers, well-known types).
pub fn write_optional<C: Codec>(w: &mut Writer<'_>, key: FieldKey, value: &Option<C::Value>) {
    if let Some(value) = value {
        w.field_key(key);
        C::write(value, w);
    }
}

/// A field that is set (a oneof member): always written.
pub fn write_present<C: Codec>(w: &mut Writer<'_>, key: FieldKey, value: &C::Value) {
    w.field_key(key);
    C::write(value, w);
}

/// A message field, boxed or not.
pub fn write_message<M: JsonMessage, S: Borrow<M>>(
    w: &mut Writer<'_>,
    key: FieldKey,
    value: &Option<S>,
) {
    if let Some(value) = value {
        w.field_key(key);
        w.begin_object();
        value.borrow().write_fields(w);
        w.end_object();
    }
}

/// A repeated field: left out when empty, unless `emit_defaults`.
pub fn write_repeated<C: Codec>(w: &mut Writer<'_>, key: FieldKey, values: &[C::Value]) {
    if w.options().emit_defaults || !values.is_empty() {
        w.field_key(key);
        w.begin_array();
        for value in values {
            C::write(value, w);
        }
        w.end_array();
    }
}

/// A map field: left out when empty, unless `emit_defaults`.
pub fn write_map<K, V, M>(w: &mut Writer<'_>, key: FieldKey, map: &M)
where
    K: MapKey,
    V: Codec,
    M: MapLike<K::Value, V::Value>,
{
    if w.options().emit_defaults || !map.is_empty() {
        w.field_key(key);
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
    map.each(|key, value| {
        K::write_key(key, w);
        V::write(value, w);
    });
    w.end_object();
}

/// Reads a field without presence; `null` is the default. An enum name the enum does not have
/// leaves the field as it was, with `ignore_unknown`.
pub fn read_singular<C: Codec>(slot: &mut C::Value, r: &mut Reader<'_>) -> Result<(), JsonError> {
    if r.try_null()? {
        *slot = C::from_null().unwrap_or_default();
    } else if let Some(value) = C::read_known(r)? {
        *slot = value;
    }
    Ok(())
}

/// Reads an `Option` field; `null` clears it (or is a value, for `Value` and `NullValue`).
pub fn read_optional<C: Codec>(
    slot: &mut Option<C::Value>,
    r: &mut Reader<'_>,
) -> Result<(), JsonError> {
    if r.try_null()? {
        *slot = C::from_null();
    } else if let Some(value) = C::read_known(r)? {
        *slot = Some(value);
    }
    Ok(())
}

/// Reads a value that may be `null` (oneof members): `None` for `null` (unless it is a value of
/// the type) and for a dropped unknown enum name.
pub fn read_nullable<C: Codec>(r: &mut Reader<'_>) -> Result<Option<C::Value>, JsonError> {
    if r.try_null()? {
        Ok(C::from_null())
    } else {
        C::read_known(r)
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

/// One element of a list or map value: `null` only where it is a value of the type.
fn read_element<C: Codec>(r: &mut Reader<'_>) -> Result<Option<C::Value>, JsonError> {
    if r.try_null()? {
        match C::from_null() {
            Some(value) => Ok(Some(value)),
            None => Err(JsonError::new("null is not allowed here")),
        }
    } else {
        C::read_known(r)
    }
}

/// Reads a repeated field from an array, appending; `null` adds nothing. Errors name the index.
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
        if let Some(value) = read_element::<C>(r).map_err(|e| e.at_index(index))? {
            slot.push(value);
        }
        index += 1;
    }
    Ok(())
}

/// Reads a map field from an object, adding entries (a repeated key replaces the entry);
/// `null` adds nothing. Errors name the key.
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
        if let Some(value) = read_element::<V>(r).map_err(|e| e.at_key(&key))? {
            slot.put(parsed, value);
        }
    }
    Ok(())
}

/// Parses query or path text for one value.
pub fn parse_text<C: Codec>(text: &str) -> Result<C::Value, JsonError> {
    C::parse_text(text)
}

/// Sets a field without presence from a path value. The body, read first, may hold the same
/// value (clients often send a resource's name in both); a different one is an error.
pub fn set_text<C: Codec>(slot: &mut C::Value, text: &str) -> Result<(), JsonError>
where
    C::Value: PartialEq,
{
    let value = C::parse_text(text)?;
    if !C::is_default(slot) && *slot != value {
        return Err(JsonError::path_conflict());
    }
    *slot = value;
    Ok(())
}

/// Sets an `Option` field from a path value; a different value already set is an error, as for
/// [`set_text`].
pub fn set_text_optional<C: Codec>(slot: &mut Option<C::Value>, text: &str) -> Result<(), JsonError>
where
    C::Value: PartialEq,
{
    let value = C::parse_text(text)?;
    if slot.as_ref().is_some_and(|old| *old != value) {
        return Err(JsonError::path_conflict());
    }
    *slot = Some(value);
    Ok(())
}

/// Appends to a repeated field from text (`?tag=a&tag=b`).
pub fn push_text<C: Codec>(slot: &mut Vec<C::Value>, text: &str) -> Result<(), JsonError> {
    slot.push(C::parse_text(text)?);
    Ok(())
}

/// google.protobuf.Empty, which prost maps to `()`, as a request or response: `{}`.
impl JsonMessage for () {
    const TYPE_NAME: &'static str = "google.protobuf.Empty";

    fn write_fields(&self, _: &mut Writer<'_>) {}

    fn merge_json_field(&mut self, _: &str, _: &mut Reader<'_>) -> Result<bool, JsonError> {
        Ok(false)
    }

    fn set_text(&mut self, _: &mut TextField<'_>) -> Result<bool, JsonError> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use prost::Message as _;
    use serde_json::json;

    use super::*;
    use crate::json::codec::tests::Color;
    use crate::json::{Any, AnyType, Bytes, Enum, F64, I32, I64, Msg, Str, Timestamp, Value};

    #[derive(Clone, PartialEq, prost::Message)]
    struct Author {
        #[prost(string, tag = "1")]
        display_name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Book {
        #[prost(string, tag = "1")]
        title: String,
        #[prost(int64, tag = "2")]
        page_count: i64,
        #[prost(message, optional, tag = "3")]
        author: Option<Author>,
        #[prost(message, repeated, tag = "4")]
        co_authors: Vec<Author>,
        #[prost(string, repeated, tag = "5")]
        tags: Vec<String>,
        #[prost(map = "string, int32", tag = "6")]
        counts: HashMap<String, i32>,
        #[prost(btree_map = "int64, message", tag = "7")]
        by_id: BTreeMap<i64, Author>,
        #[prost(int32, optional, tag = "8")]
        rating: Option<i32>,
        #[prost(int32, tag = "9")]
        color: i32,
        #[prost(int32, repeated, tag = "10")]
        colors: Vec<i32>,
        #[prost(message, optional, tag = "11")]
        published: Option<prost_types::Timestamp>,
        #[prost(message, optional, tag = "12")]
        extra: Option<prost_types::Any>,
        #[prost(message, optional, tag = "13")]
        wrapped: Option<i64>,
        #[prost(message, optional, boxed, tag = "14")]
        sequel: Option<Box<Book>>,
        #[prost(btree_map = "string, message", tag = "15")]
        attrs: BTreeMap<String, prost_types::Value>,
        #[prost(bytes = "bytes", tag = "16")]
        cover: bytes::Bytes,
        #[prost(double, tag = "17")]
        price: f64,
        #[prost(btree_map = "bool, int32", tag = "18")]
        shades: BTreeMap<bool, i32>,
        #[prost(oneof = "Format", tags = "20, 21")]
        format: Option<Format>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    enum Format {
        #[prost(string, tag = "20")]
        Ebook(String),
        #[prost(message, tag = "21")]
        Paper(Author),
    }

    // What protogate-build generates, written out by hand.
    impl JsonMessage for Author {
        const TYPE_NAME: &'static str = "test.Author";

        fn write_fields(&self, w: &mut Writer<'_>) {
            write_singular::<Str>(
                w,
                FieldKey::new(r#""displayName":"#, r#""display_name":"#),
                &self.display_name,
            );
        }

        fn merge_json_field(&mut self, key: &str, r: &mut Reader<'_>) -> Result<bool, JsonError> {
            match key {
                "displayName" | "display_name" => read_singular::<Str>(&mut self.display_name, r)
                    .map(|()| true)
                    .map_err(|e| e.at("displayName")),
                _ => Ok(false),
            }
        }

        fn set_text(&mut self, field: &mut TextField<'_>) -> Result<bool, JsonError> {
            match field.name() {
                "displayName" | "display_name" => {
                    field.scalar::<Str>("displayName", &mut self.display_name)
                }
                _ => Ok(false),
            }
        }
    }

    impl JsonMessage for Book {
        const TYPE_NAME: &'static str = "test.Book";

        fn write_fields(&self, w: &mut Writer<'_>) {
            write_singular::<Str>(w, FieldKey::new(r#""title":"#, r#""title":"#), &self.title);
            write_singular::<I64>(
                w,
                FieldKey::new(r#""pageCount":"#, r#""page_count":"#),
                &self.page_count,
            );
            write_message::<Author, _>(
                w,
                FieldKey::new(r#""author":"#, r#""author":"#),
                &self.author,
            );
            write_repeated::<Msg<Author>>(
                w,
                FieldKey::new(r#""coAuthors":"#, r#""co_authors":"#),
                &self.co_authors,
            );
            write_repeated::<Str>(w, FieldKey::new(r#""tags":"#, r#""tags":"#), &self.tags);
            write_map::<Str, I32, _>(
                w,
                FieldKey::new(r#""counts":"#, r#""counts":"#),
                &self.counts,
            );
            write_map::<I64, Msg<Author>, _>(
                w,
                FieldKey::new(r#""byId":"#, r#""by_id":"#),
                &self.by_id,
            );
            write_optional::<I32>(
                w,
                FieldKey::new(r#""rating":"#, r#""rating":"#),
                &self.rating,
            );
            write_singular::<Enum<Color>>(
                w,
                FieldKey::new(r#""color":"#, r#""color":"#),
                &self.color,
            );
            write_repeated::<Enum<Color>>(
                w,
                FieldKey::new(r#""colors":"#, r#""colors":"#),
                &self.colors,
            );
            write_optional::<Timestamp>(
                w,
                FieldKey::new(r#""published":"#, r#""published":"#),
                &self.published,
            );
            write_optional::<Any>(w, FieldKey::new(r#""extra":"#, r#""extra":"#), &self.extra);
            write_optional::<I64>(
                w,
                FieldKey::new(r#""wrapped":"#, r#""wrapped":"#),
                &self.wrapped,
            );
            write_message::<Book, _>(
                w,
                FieldKey::new(r#""sequel":"#, r#""sequel":"#),
                &self.sequel,
            );
            write_map::<Str, Value, _>(w, FieldKey::new(r#""attrs":"#, r#""attrs":"#), &self.attrs);
            write_singular::<Bytes<bytes::Bytes>>(
                w,
                FieldKey::new(r#""cover":"#, r#""cover":"#),
                &self.cover,
            );
            write_singular::<F64>(w, FieldKey::new(r#""price":"#, r#""price":"#), &self.price);
            write_map::<crate::json::Bool, Enum<Color>, _>(
                w,
                FieldKey::new(r#""shades":"#, r#""shades":"#),
                &self.shades,
            );
            if let Some(format) = &self.format {
                match format {
                    Format::Ebook(v) => {
                        write_present::<Str>(w, FieldKey::new(r#""ebook":"#, r#""ebook":"#), v)
                    }
                    Format::Paper(v) => write_present::<Msg<Author>>(
                        w,
                        FieldKey::new(r#""paper":"#, r#""paper":"#),
                        v,
                    ),
                }
            }
        }

        fn merge_json_field(&mut self, key: &str, r: &mut Reader<'_>) -> Result<bool, JsonError> {
            match key {
                "title" => read_singular::<Str>(&mut self.title, r)
                    .map(|()| true)
                    .map_err(|e| e.at("title")),
                "pageCount" | "page_count" => read_singular::<I64>(&mut self.page_count, r)
                    .map(|()| true)
                    .map_err(|e| e.at("pageCount")),
                "author" => read_message::<Author, _>(&mut self.author, r)
                    .map(|()| true)
                    .map_err(|e| e.at("author")),
                "coAuthors" | "co_authors" => read_repeated::<Msg<Author>>(&mut self.co_authors, r)
                    .map(|()| true)
                    .map_err(|e| e.at("coAuthors")),
                "tags" => read_repeated::<Str>(&mut self.tags, r)
                    .map(|()| true)
                    .map_err(|e| e.at("tags")),
                "counts" => read_map::<Str, I32, _>(&mut self.counts, r)
                    .map(|()| true)
                    .map_err(|e| e.at("counts")),
                "byId" | "by_id" => read_map::<I64, Msg<Author>, _>(&mut self.by_id, r)
                    .map(|()| true)
                    .map_err(|e| e.at("byId")),
                "rating" => read_optional::<I32>(&mut self.rating, r)
                    .map(|()| true)
                    .map_err(|e| e.at("rating")),
                "color" => read_singular::<Enum<Color>>(&mut self.color, r)
                    .map(|()| true)
                    .map_err(|e| e.at("color")),
                "colors" => read_repeated::<Enum<Color>>(&mut self.colors, r)
                    .map(|()| true)
                    .map_err(|e| e.at("colors")),
                "published" => read_optional::<Timestamp>(&mut self.published, r)
                    .map(|()| true)
                    .map_err(|e| e.at("published")),
                "extra" => read_optional::<Any>(&mut self.extra, r)
                    .map(|()| true)
                    .map_err(|e| e.at("extra")),
                "wrapped" => read_optional::<I64>(&mut self.wrapped, r)
                    .map(|()| true)
                    .map_err(|e| e.at("wrapped")),
                "sequel" => read_message::<Book, _>(&mut self.sequel, r)
                    .map(|()| true)
                    .map_err(|e| e.at("sequel")),
                "attrs" => read_map::<Str, Value, _>(&mut self.attrs, r)
                    .map(|()| true)
                    .map_err(|e| e.at("attrs")),
                "cover" => read_singular::<Bytes<bytes::Bytes>>(&mut self.cover, r)
                    .map(|()| true)
                    .map_err(|e| e.at("cover")),
                "price" => read_singular::<F64>(&mut self.price, r)
                    .map(|()| true)
                    .map_err(|e| e.at("price")),
                "shades" => read_map::<crate::json::Bool, Enum<Color>, _>(&mut self.shades, r)
                    .map(|()| true)
                    .map_err(|e| e.at("shades")),
                "ebook" => {
                    if let Some(v) = read_nullable::<Str>(r).map_err(|e| e.at("ebook"))? {
                        if self.format.is_some() {
                            return Err(JsonError::oneof_conflict("format"));
                        }
                        self.format = Some(Format::Ebook(v));
                    }
                    Ok(true)
                }
                "paper" => {
                    if let Some(v) = read_nullable::<Msg<Author>>(r).map_err(|e| e.at("paper"))? {
                        if self.format.is_some() {
                            return Err(JsonError::oneof_conflict("format"));
                        }
                        self.format = Some(Format::Paper(v));
                    }
                    Ok(true)
                }
                _ => Ok(false),
            }
        }

        fn set_text(&mut self, field: &mut TextField<'_>) -> Result<bool, JsonError> {
            match field.name() {
                "title" => field.scalar::<Str>("title", &mut self.title),
                "pageCount" | "page_count" => {
                    field.scalar::<I64>("pageCount", &mut self.page_count)
                }
                "tags" => field.repeated_value::<Str>("tags", &mut self.tags),
                "rating" => field.optional::<I32>("rating", &mut self.rating),
                "color" => field.scalar::<Enum<Color>>("color", &mut self.color),
                "published" => field.optional::<Timestamp>("published", &mut self.published),
                "author" => field.message::<Author, _>("author", &mut self.author),
                "sequel" => field.message::<Book, _>("sequel", &mut self.sequel),
                "ebook" => field.oneof_member(
                    "ebook",
                    "format",
                    &mut self.format,
                    |o| match o {
                        Format::Ebook(v) => Ok(v),
                        o => Err(o),
                    },
                    Format::Ebook,
                    |f, v| f.optional::<Str>("ebook", v),
                ),
                "paper" => field.oneof_member(
                    "paper",
                    "format",
                    &mut self.format,
                    |o| match o {
                        Format::Paper(v) => Ok(v),
                        o => Err(o),
                    },
                    Format::Paper,
                    |f, v| f.message::<Author, _>("paper", v),
                ),
                _ => Ok(false),
            }
        }
    }

    static TYPES: &[AnyType] = &[AnyType::message::<Author>(), AnyType::message::<Book>()];
    static REGISTRY: Registry = Registry::new(TYPES);

    fn ignoring() -> JsonOptions {
        JsonOptions {
            ignore_unknown: true,
            ..JsonOptions::default()
        }
    }

    fn encode_with<M: JsonMessage>(message: &M, options: JsonOptions) -> serde_json::Value {
        let mut buf = Vec::new();
        encode_message(message, options, &REGISTRY, &mut buf).expect("encodes");
        serde_json::from_slice(&buf).expect("valid JSON")
    }

    fn encode<M: JsonMessage>(message: &M) -> serde_json::Value {
        encode_with(message, JsonOptions::default())
    }

    fn decode_with(input: &str, options: JsonOptions) -> Result<Book, JsonError> {
        decode_message(input.as_bytes(), options, &REGISTRY)
    }

    fn decode(input: &str) -> Result<Book, JsonError> {
        decode_with(input, JsonOptions::default())
    }

    fn author(name: &str) -> Author {
        Author {
            display_name: name.to_owned(),
        }
    }

    fn full_book() -> Book {
        Book {
            title: "Dune \"1\"\n".to_owned(),
            page_count: i64::MIN,
            author: Some(author("Frank")),
            co_authors: vec![author(""), author("B")],
            tags: vec!["sf".into(), "é😀".into()],
            counts: HashMap::from([("a".to_owned(), 1), ("".to_owned(), -2)]),
            by_id: BTreeMap::from([(-7, author("x")), (9_007_199_254_740_993, author("y"))]),
            rating: Some(0),
            color: 2,
            colors: vec![1, 0, 77],
            published: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5_000,
            }),
            extra: Some(prost_types::Any {
                type_url: "type.googleapis.com/test.Author".into(),
                value: author("inside").encode_to_vec(),
            }),
            wrapped: Some(0),
            sequel: Some(Box::new(Book {
                title: "Messiah".into(),
                format: Some(Format::Paper(author("p"))),
                ..Book::default()
            })),
            attrs: BTreeMap::from([
                (
                    "n".to_owned(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::NullValue(0)),
                    },
                ),
                (
                    "x".to_owned(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::NumberValue(1.5)),
                    },
                ),
            ]),
            cover: bytes::Bytes::from_static(b"\x00\xff"),
            price: f64::NAN,
            shades: BTreeMap::from([(true, 1), (false, 5)]),
            format: Some(Format::Ebook("epub".into())),
        }
    }

    fn full_json() -> serde_json::Value {
        json!({
            "title": "Dune \"1\"\n",
            "pageCount": "-9223372036854775808",
            "author": {"displayName": "Frank"},
            "coAuthors": [{}, {"displayName": "B"}],
            "tags": ["sf", "é😀"],
            "counts": {"a": 1, "": -2},
            "byId": {"-7": {"displayName": "x"}, "9007199254740993": {"displayName": "y"}},
            "rating": 0,
            "color": "GREEN",
            "colors": ["RED", "COLOR_UNSPECIFIED", 77],
            "published": "2023-11-14T22:13:20.000005Z",
            "extra": {"@type": "type.googleapis.com/test.Author", "displayName": "inside"},
            "wrapped": "0",
            "sequel": {"title": "Messiah", "paper": {"displayName": "p"}},
            "attrs": {"n": null, "x": 1.5},
            "cover": "AP8=",
            "price": "NaN",
            "shades": {"false": 5, "true": "RED"},
            "ebook": "epub"
        })
    }

    #[test]
    fn everything_round_trips() {
        let book = full_book();
        assert_eq!(encode(&book), full_json());
        let mut buf = Vec::new();
        encode_message(&book, JsonOptions::default(), &REGISTRY, &mut buf).expect("encodes");
        let back: Book = decode_message(&buf, JsonOptions::default(), &REGISTRY).expect("decodes");
        // NaN != NaN: compare the rest, then the price.
        assert!(back.price.is_nan());
        let (mut a, mut b) = (book.clone(), back);
        a.price = 0.0;
        b.price = 0.0;
        assert_eq!(a, b);
        // The same text through serde_json (reformatted, reordered keys) reads back the same.
        let reformatted = serde_json::to_string_pretty(&full_json()).expect("serializes");
        let mut again = decode(&reformatted).expect("decodes");
        again.price = 0.0;
        assert_eq!(again, a);
    }

    #[test]
    fn defaults_are_left_out_unless_asked_for() {
        assert_eq!(encode(&Book::default()), json!({}));
        let emit = JsonOptions {
            emit_defaults: true,
            ..JsonOptions::default()
        };
        assert_eq!(
            encode_with(&Book::default(), emit),
            json!({
                "title": "", "pageCount": "0", "coAuthors": [], "tags": [], "counts": {},
                "byId": {}, "color": "COLOR_UNSPECIFIED", "colors": [], "attrs": {},
                "cover": "", "price": 0.0, "shades": {}
            })
        );
        let negative_zero = Book {
            price: -0.0,
            ..Book::default()
        };
        assert_eq!(
            encode(&negative_zero),
            json!({}),
            "-0.0 is default, as in prost"
        );
        let set_to_default = Book {
            rating: Some(0),
            wrapped: Some(0),
            author: Some(Author::default()),
            format: Some(Format::Ebook(String::new())),
            ..Book::default()
        };
        assert_eq!(
            encode(&set_to_default),
            json!({"rating": 0, "wrapped": "0", "author": {}, "ebook": ""}),
            "fields with presence are written when set"
        );
    }

    #[test]
    fn proto_names_and_enum_numbers() {
        let book = Book {
            page_count: 3,
            co_authors: vec![author("a")],
            color: 1,
            ..Book::default()
        };
        let options = JsonOptions {
            proto_names: true,
            enums_as_ints: true,
            ..JsonOptions::default()
        };
        assert_eq!(
            encode_with(&book, options),
            json!({"page_count": "3", "co_authors": [{"display_name": "a"}], "color": 1})
        );
        assert_eq!(
            decode(r#"{"page_count":"3","co_authors":[{"display_name":"a"}],"color":1}"#),
            Ok(book)
        );
    }

    #[test]
    fn nulls_mean_default_or_absent() {
        let book = decode(
            r#"{"title":null,"pageCount":null,"author":null,"coAuthors":null,"counts":null,
                "rating":null,"color":null,"published":null,"extra":null,"wrapped":null,
                "sequel":null,"cover":null,"ebook":null,"paper":null}"#,
        )
        .expect("nulls");
        assert_eq!(book, Book::default());
        let book = decode(r#"{"rating":5,"rating":null}"#).expect("cleared");
        assert_eq!(book.rating, None);
        let book = decode(r#"{"title":"x","title":null}"#).expect("cleared");
        assert_eq!(book.title, "");
        let book = decode(r#"{"attrs":{"a":null}}"#).expect("a null Value");
        assert_eq!(
            book.attrs.get("a").and_then(|v| v.kind.clone()),
            Some(prost_types::value::Kind::NullValue(0))
        );
        let error = decode(r#"{"tags":["a",null]}"#).expect_err("null element");
        assert_eq!(error.path(), "tags[1]");
        let error = decode(r#"{"counts":{"a":null}}"#).expect_err("null map value");
        assert_eq!(error.path(), "counts[\"a\"]");
    }

    #[test]
    fn unknown_fields_fail_unless_ignored() {
        let input = r#"{"title":"t","nope":{"deep":[1,{"x":"\u00e9"}]},"author":{"zzz":1}}"#;
        let error = decode(input).expect_err("unknown");
        assert_eq!(error.to_string(), "unknown field `nope`");
        let book = decode_with(input, ignoring()).expect("ignored");
        assert_eq!(book.title, "t");
        assert_eq!(book.author, Some(Author::default()));
        let error = decode(r#"{"author":{"zzz":1}}"#).expect_err("nested unknown");
        assert_eq!(
            error.to_string(),
            "invalid value for field `author`: unknown field `zzz`"
        );
        // Skipped values must still be well formed.
        assert!(decode_with(r#"{"nope":[1,}"#, ignoring()).is_err());
    }

    #[test]
    fn unknown_enum_names_are_dropped_when_ignoring() {
        let input = r#"{"color":"BLUE","colors":["RED","BLUE","GREEN"],"shades":{"true":"BLUE","false":"RED"}}"#;
        let error = decode(input).expect_err("unknown name");
        assert_eq!(error.path(), "color");
        let book = decode_with(input, ignoring()).expect("dropped");
        assert_eq!(book.color, 0);
        assert_eq!(book.colors, vec![1, 2]);
        assert_eq!(book.shades, BTreeMap::from([(false, 1)]));
        let book = decode_with(r#"{"color":"RED","color":"BLUE"}"#, ignoring()).expect("kept");
        assert_eq!(book.color, 1, "a dropped value leaves the field as it was");
    }

    #[test]
    fn errors_name_the_field_path() {
        let cases = [
            (r#"{"author":{"displayName":5}}"#, "author.displayName"),
            (
                r#"{"coAuthors":[{},{"displayName":true}]}"#,
                "coAuthors[1].displayName",
            ),
            (r#"{"counts":{"a":"x"}}"#, "counts[\"a\"]"),
            (r#"{"byId":{"x":{}}}"#, "byId[\"x\"]"),
            (
                r#"{"byId":{"1":{"display_name":[]}}}"#,
                "byId[\"1\"].displayName",
            ),
            (
                r#"{"sequel":{"sequel":{"pageCount":"1.5"}}}"#,
                "sequel.sequel.pageCount",
            ),
            (r#"{"published":"yesterday"}"#, "published"),
            (
                r#"{"extra":{"@type":"x/test.Author","displayName":1}}"#,
                "extra.displayName",
            ),
            (r#"{"cover":"!"}"#, "cover"),
            (r#"{"shades":{"yes":1}}"#, "shades[\"yes\"]"),
        ];
        for (input, path) in cases {
            let error = decode(input).expect_err(input);
            assert_eq!(error.path(), path, "{input}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("invalid value for field `{path}`: ")),
                "{error}"
            );
        }
        let error = decode(r#"{"pageCount":"x"}"#).expect_err("bad int");
        assert_eq!(
            error.to_string(),
            "invalid value for field `pageCount`: expected a 64-bit integer, found \"x\""
        );
        let error = decode(r#"{"title":"a" "b"}"#).expect_err("syntax");
        assert_eq!(error.offset(), Some(13));
        assert_eq!(
            error.to_string(),
            "malformed JSON at byte 13: expected `,` or `}`"
        );
        let error = decode(r#"{"author":{"displayName":"a",]}}"#).expect_err("syntax");
        assert!(
            error
                .to_string()
                .starts_with("malformed JSON in field `author` at byte 29"),
            "{error}"
        );
        assert!(decode("[]").is_err());
        assert!(decode("{} {}").is_err());
        assert!(decode("").is_err());
    }

    #[test]
    fn oneofs() {
        let book = decode(r#"{"paper":{"displayName":"p"}}"#).expect("member");
        assert_eq!(book.format, Some(Format::Paper(author("p"))));
        let error = decode(r#"{"ebook":"e","paper":{}}"#).expect_err("two members");
        assert_eq!(
            error.to_string(),
            "more than one field of oneof `format` is set"
        );
        assert!(
            decode(r#"{"ebook":"e","ebook":"f"}"#).is_err(),
            "as prost-reflect"
        );
        let book = decode(r#"{"ebook":null,"paper":{}}"#).expect("null is not set");
        assert_eq!(book.format, Some(Format::Paper(Author::default())));
        let book = decode(r#"{"paper":{},"ebook":null}"#).expect("null is not set");
        assert_eq!(book.format, Some(Format::Paper(Author::default())));
    }

    #[test]
    fn duplicate_keys_later_wins_and_lists_append() {
        let book = decode(
            r#"{"title":"a","title":"b","tags":["x"],"tags":["y"],"counts":{"k":1},"counts":{"k":2,"j":3},
                "author":{"displayName":"a"},"author":{}}"#,
        )
        .expect("duplicates");
        assert_eq!(book.title, "b");
        assert_eq!(book.tags, vec!["x", "y"]);
        assert_eq!(
            book.counts,
            HashMap::from([("k".into(), 2), ("j".into(), 3)])
        );
        assert_eq!(book.author, Some(author("a")), "messages merge");
    }

    #[test]
    fn any_holding_a_message_or_a_timestamp() {
        let inner = Book {
            title: "in".into(),
            page_count: 5,
            extra: Some(prost_types::Any {
                type_url: "type.googleapis.com/google.protobuf.Timestamp".into(),
                value: prost_types::Timestamp {
                    seconds: 1,
                    nanos: 0,
                }
                .encode_to_vec(),
            }),
            ..Book::default()
        };
        let outer = Book {
            extra: Some(prost_types::Any {
                type_url: "type.googleapis.com/test.Book".into(),
                value: inner.encode_to_vec(),
            }),
            ..Book::default()
        };
        let expected = json!({"extra": {
            "@type": "type.googleapis.com/test.Book",
            "title": "in",
            "pageCount": "5",
            "extra": {
                "@type": "type.googleapis.com/google.protobuf.Timestamp",
                "value": "1970-01-01T00:00:01Z"
            }
        }});
        assert_eq!(encode(&outer), expected);
        assert_eq!(decode(&expected.to_string()), Ok(outer.clone()));
        // `@type` after the fields.
        let late = r#"{"extra":{"title":"in","extra":{"value":"1970-01-01T00:00:01Z",
            "@type":"type.googleapis.com/google.protobuf.Timestamp"},"pageCount":5,
            "@type":"type.googleapis.com/test.Book"}}"#;
        assert_eq!(decode(late), Ok(outer.clone()));
        // Output options apply inside the Any.
        let emit = JsonOptions {
            proto_names: true,
            ..JsonOptions::default()
        };
        assert_eq!(encode_with(&outer, emit)["extra"]["page_count"], json!("5"));
        // Unknown fields inside the Any.
        let unknown = r#"{"extra":{"@type":"x/test.Author","nope":1}}"#;
        assert!(decode(unknown).is_err());
        assert_eq!(
            decode_with(unknown, ignoring()).map(|b| b.extra.map(|a| a.value)),
            Ok(Some(Vec::new()))
        );
        // Types outside the registry.
        let error = decode(r#"{"extra":{"@type":"x/other.Type"}}"#).expect_err("unknown type");
        assert_eq!(error.path(), "extra.@type");
        let unregistered = Book {
            extra: Some(prost_types::Any {
                type_url: "x/other.Type".into(),
                value: Vec::new(),
            }),
            ..Book::default()
        };
        let mut buf = Vec::new();
        assert!(
            encode_message(&unregistered, JsonOptions::default(), &REGISTRY, &mut buf).is_err()
        );
        let mut buf = Vec::new();
        assert!(
            encode_message(&outer, JsonOptions::default(), &Registry::EMPTY, &mut buf).is_err(),
            "test.Book is not in the empty registry"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = r#"{"sequel":"#.repeat(150) + "{}" + &"}".repeat(150);
        let error = decode(&deep).expect_err("too deep");
        assert!(
            error.to_string().contains("nesting deeper than 100"),
            "{error}"
        );
        let ok = r#"{"sequel":"#.repeat(99) + "{}" + &"}".repeat(99);
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn path_values_must_agree_with_the_body() {
        let mut book = Book::default();
        assert_eq!(set_text::<Str>(&mut book.title, "t"), Ok(()));
        assert_eq!(
            set_text::<Str>(&mut book.title, "t"),
            Ok(()),
            "the same value"
        );
        let error = set_text::<Str>(&mut book.title, "u").expect_err("a different value");
        assert!(error.message().contains("different"), "{error}");
        assert_eq!(book.title, "t");
        assert_eq!(set_text_optional::<I32>(&mut book.rating, "0"), Ok(()));
        assert_eq!(set_text_optional::<I32>(&mut book.rating, "0"), Ok(()));
        assert!(set_text_optional::<I32>(&mut book.rating, "1").is_err());
        assert_eq!(book.rating, Some(0));
    }

    #[test]
    fn text_setters() {
        let mut book = Book::default();
        let set = |book: &mut Book, name: &str, text: &str| {
            let names: Vec<&str> = name.split('.').collect();
            book.set_text(&mut TextField::new(&names, None, text))
        };
        assert_eq!(set(&mut book, "title", "t"), Ok(true));
        assert_eq!(set(&mut book, "page_count", "12"), Ok(true));
        assert_eq!(set(&mut book, "tags", "a"), Ok(true));
        assert_eq!(set(&mut book, "tags", "b"), Ok(true));
        assert_eq!(set(&mut book, "rating", "3"), Ok(true));
        assert_eq!(set(&mut book, "color", "GREEN"), Ok(true));
        assert_eq!(
            set(&mut book, "published", "1970-01-01T00:00:00Z"),
            Ok(true)
        );
        assert_eq!(set(&mut book, "author.displayName", "A"), Ok(true));
        assert_eq!(set(&mut book, "sequel.author.display_name", "S"), Ok(true));
        assert_eq!(set(&mut book, "ebook", "e"), Ok(true));
        assert_eq!(set(&mut book, "nope", "x"), Ok(false));
        assert_eq!(set(&mut book, "sequel.nope", "x"), Ok(false));
        assert!(set(&mut book, "pageCount", "x").is_err());
        assert_eq!(book.title, "t");
        assert_eq!(book.page_count, 12);
        assert_eq!(book.tags, vec!["a", "b"]);
        assert_eq!(book.rating, Some(3));
        assert_eq!(book.color, 2);
        assert_eq!(book.author, Some(author("A")));
        assert_eq!(
            book.sequel.as_ref().and_then(|s| s.author.clone()),
            Some(author("S"))
        );
        assert_eq!(book.format, Some(Format::Ebook("e".into())));
        let error = set(&mut book, "paper.displayName", "p").expect_err("second member");
        assert!(error.message().contains("oneof `format`"), "{error}");
        assert_eq!(
            book.format,
            Some(Format::Ebook("e".into())),
            "the first stays"
        );
        let mut other = Book::default();
        assert_eq!(set(&mut other, "paper.displayName", "p"), Ok(true));
        assert_eq!(set(&mut other, "paper.nope", "p"), Ok(false));
        assert_eq!(other.format, Some(Format::Paper(author("p"))));
        assert!(set(&mut other, "ebook", "e").is_err());

        let mut fresh = Book::default();
        assert_eq!(set(&mut fresh, "author.nope", "x"), Ok(false));
        assert_eq!(
            fresh.author, None,
            "no message is left behind for an unknown path"
        );
        assert!(set(&mut fresh, "sequel.pageCount", "x").is_err());
        assert_eq!(fresh.sequel, None, "nor for a bad value");
    }

    #[test]
    fn empty_message_and_read_message_merges() {
        let mut buf = Vec::new();
        encode_message(&(), JsonOptions::default(), &REGISTRY, &mut buf).expect("encodes");
        assert_eq!(buf, b"{}");
        assert_eq!(
            decode_message::<()>(b" {} ", JsonOptions::default(), &REGISTRY),
            Ok(())
        );
        assert!(decode_message::<()>(b"{\"a\":1}", JsonOptions::default(), &REGISTRY).is_err());

        let mut slot = Some(Box::new(Book {
            title: "kept".into(),
            ..Book::default()
        }));
        let mut r = Reader::new(br#"{"pageCount":"2"}"#, JsonOptions::default(), &REGISTRY);
        read_message::<Book, _>(&mut slot, &mut r).expect("merges");
        assert_eq!(
            slot.as_ref().map(|b| (b.title.as_str(), b.page_count)),
            Some(("kept", 2))
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = decode_message::<Book>(&input, JsonOptions::default(), &REGISTRY);
            let _ = decode_message::<Book>(&input, ignoring(), &REGISTRY);
        }

        #[test]
        fn decoding_json_like_input_never_panics(
            input in "\\{(\"(title|pageCount|author|tags|counts|byId|extra|attrs|sequel|ebook|paper|colors|@type|value|displayName|x)\":[\\[\\]{}:,\"0-9a-zA-Z.\\-@/_ ]{0,16},?){0,6}\\}?"
        ) {
            let _ = decode_message::<Book>(input.as_bytes(), JsonOptions::default(), &REGISTRY);
            let _ = decode_message::<Book>(input.as_bytes(), ignoring(), &REGISTRY);
        }

        #[test]
        fn books_round_trip(
            title in ".{0,8}",
            page_count in proptest::num::i64::ANY,
            tags in proptest::collection::vec(".{0,4}", 0..3),
            counts in proptest::collection::hash_map(".{0,4}", proptest::num::i32::ANY, 0..3),
            by_id in proptest::collection::btree_map(proptest::num::i64::ANY, ".{0,4}", 0..3),
            price in proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
            rating in proptest::option::of(proptest::num::i32::ANY),
        ) {
            let book = Book {
                title,
                page_count,
                tags,
                counts,
                by_id: by_id.into_iter().map(|(k, v)| (k, author(&v))).collect(),
                price,
                rating,
                ..Book::default()
            };
            let mut buf = Vec::new();
            encode_message(&book, JsonOptions::default(), &REGISTRY, &mut buf).expect("encodes");
            let back: Book = decode_message(&buf, JsonOptions::default(), &REGISTRY).expect("decodes");
            proptest::prop_assert_eq!(back, book);
        }
    }
}
