//! Query parameters into fields: the walk down a parameter's dotted name (`a.b.c`, or
//! `labels[key]` for a map entry), one generated `set_text` call per message on the way.
//!
//! A parameter sets one leaf: a scalar, an enum, a well-known type with a text form (Timestamp,
//! Duration, FieldMask, wrappers), a repeated one of those (one value per parameter), or one
//! entry of a map whose values are such leaves. Anything else it names — a message, a field
//! inside a repeated message, a map without `[key]` — is an error naming the field, never a
//! parameter quietly dropped.

use std::borrow::BorrowMut;

use super::{Codec, JsonError, JsonMessage, MapKey, MapLike};

/// One query parameter on its way to the field it names.
///
/// Generated `set_text` methods match [`TextField::name`] against their fields' names and call
/// the method for the field's shape, which checks that the parameter fits that shape, records the
/// field in [`TextField::path`], and sets the value (or walks into a message).
#[derive(Debug)]
pub struct TextField<'a> {
    /// The field names still to resolve; the first is the current one.
    names: &'a [&'a str],
    /// The `key` of `name[key]`.
    map_key: Option<&'a str>,
    text: &'a str,
    /// The fields resolved so far, by JSON name, dotted.
    path: String,
    repeated: bool,
}

impl<'a> TextField<'a> {
    /// A parameter naming the field path `names` (at least one name), the map entry `map_key` of
    /// its last field if given, with the value `text`.
    pub fn new(names: &'a [&'a str], map_key: Option<&'a str>, text: &'a str) -> Self {
        TextField {
            names,
            map_key,
            text,
            path: String::new(),
            repeated: false,
        }
    }

    /// The name to look up in the current message (JSON or proto spelling).
    pub fn name(&self) -> &'a str {
        self.names.first().copied().unwrap_or_default()
    }

    /// The field the parameter set, by JSON names (`nested.displayName`; a map field without the
    /// key), once a `set_text` call returned `Ok(true)`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The field's path, as [`TextField::path`] gives it, without a copy.
    pub fn into_path(self) -> String {
        self.path
    }

    /// Whether the field takes a value per parameter (a repeated field, or a map's entries), so
    /// that several parameters may name it.
    pub fn repeated(&self) -> bool {
        self.repeated
    }

    fn enter(&mut self, json: &str) {
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(json);
    }

    /// Enters field `json`, which must be where the parameter's name ends, with no `[key]`.
    fn leaf(&mut self, json: &str) -> Result<(), JsonError> {
        self.enter(json);
        if self.names.len() > 1 {
            return Err(JsonError::new(format!(
                "field `{}` has no fields of its own to set (`{}`)",
                self.path, self.names[1]
            )));
        }
        if self.map_key.is_some() {
            return Err(self.not_a_map());
        }
        Ok(())
    }

    fn not_a_map(&self) -> JsonError {
        JsonError::new(format!(
            "field `{}` is not a map; `[key]` names an entry of a map field only",
            self.path
        ))
    }

    /// A field without presence: the parameter's value replaces it.
    pub fn scalar<C: Codec>(&mut self, json: &str, slot: &mut C::Value) -> Result<bool, JsonError> {
        self.leaf(json)?;
        *slot = C::parse_text(self.text)?;
        Ok(true)
    }

    /// A field with presence (proto3 `optional`, a text-form well-known type, a oneof member).
    pub fn optional<C: Codec>(
        &mut self,
        json: &str,
        slot: &mut Option<C::Value>,
    ) -> Result<bool, JsonError> {
        self.leaf(json)?;
        *slot = Some(C::parse_text(self.text)?);
        Ok(true)
    }

    /// A repeated field: each parameter appends one value (`?tag=a&tag=b`).
    pub fn repeated_value<C: Codec>(
        &mut self,
        json: &str,
        slot: &mut Vec<C::Value>,
    ) -> Result<bool, JsonError> {
        self.leaf(json)?;
        self.repeated = true;
        slot.push(C::parse_text(self.text)?);
        Ok(true)
    }

    /// A map field: `name[key]=value` sets one entry; each key once.
    pub fn map<K, V, M>(&mut self, json: &str, slot: &mut M) -> Result<bool, JsonError>
    where
        K: MapKey,
        V: Codec,
        M: MapLike<K::Value, V::Value>,
    {
        self.enter(json);
        if self.names.len() > 1 {
            return Err(JsonError::new(format!(
                "map field `{}` is set as `{}[key]=value`, not through `.{}`",
                self.path, self.path, self.names[1]
            )));
        }
        let Some(key) = self.map_key else {
            return Err(JsonError::new(format!(
                "map field `{}` is set one entry at a time, as `{}[key]=value`",
                self.path, self.path
            )));
        };
        let parsed = K::parse_key(key)?;
        if slot.contains(&parsed) {
            return Err(JsonError::new(format!(
                "map field `{}` is given key {key:?} more than once",
                self.path
            )));
        }
        let value = V::parse_text(self.text).map_err(|e| e.at_key(key).at(json))?;
        self.repeated = true;
        slot.put(parsed, value);
        Ok(true)
    }

    /// A singular message field: the parameter must name one of its fields, which is set in
    /// the message (created if absent; not left behind if nothing was set).
    pub fn message<M, S>(&mut self, json: &str, slot: &mut Option<S>) -> Result<bool, JsonError>
    where
        M: JsonMessage,
        S: BorrowMut<M> + Default,
    {
        self.enter(json);
        if self.map_key.is_some() && self.names.len() == 1 {
            return Err(self.not_a_map());
        }
        if self.names.len() == 1 {
            return Err(JsonError::new(format!(
                "field `{}` is a message; a query parameter sets one of its fields, as `{}.<field>`",
                self.path, self.path
            )));
        }
        self.names = &self.names[1..];
        let created = slot.is_none();
        let result = slot
            .get_or_insert_with(S::default)
            .borrow_mut()
            .set_text(self);
        if created && !matches!(result, Ok(true)) {
            *slot = None;
        }
        result
    }

    /// A field the query cannot set at all (a repeated message, a map of messages, a well-known
    /// type without a text form); `what` says which.
    pub fn unsupported(&mut self, json: &str, what: &str) -> Result<bool, JsonError> {
        self.enter(json);
        Err(JsonError::new(format!(
            "field `{}` is {what}, which query parameters cannot set",
            self.path
        )))
    }

    /// Member `json` of oneof `oneof` (stored in `slot`): refused when another member is set
    /// (by the body or an earlier parameter); otherwise `set` sets the member's value, taken out
    /// of the oneof by `unwrap` and put back with `wrap` (not at all if nothing was set in it).
    pub fn oneof_member<O, S>(
        &mut self,
        json: &str,
        oneof: &str,
        slot: &mut Option<O>,
        unwrap: fn(O) -> Result<S, O>,
        wrap: fn(S) -> O,
        set: impl FnOnce(&mut Self, &mut Option<S>) -> Result<bool, JsonError>,
    ) -> Result<bool, JsonError> {
        let mut member = match slot.take().map(unwrap) {
            None => None,
            Some(Ok(value)) => Some(value),
            Some(Err(other)) => {
                *slot = Some(other);
                self.enter(json);
                return Err(JsonError::new(format!(
                    "field `{}` is a member of oneof `{oneof}`, another member of which is already set",
                    self.path
                )));
            }
        };
        let result = set(self, &mut member);
        *slot = member.map(wrap);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Bool, Enum, I32, I64, ProtoEnum, Str, Timestamp, U32};
    use std::collections::{BTreeMap, HashMap};

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Color {}

    impl ProtoEnum for Color {
        const TYPE_NAME: &'static str = "test.Color";
        fn name_of(value: i32) -> Option<&'static str> {
            (value == 1).then_some("RED")
        }
        fn value_of(name: &str) -> Option<i32> {
            (name == "RED").then_some(1)
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Inner {
        #[prost(string, tag = "1")]
        display_name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Outer {
        #[prost(int64, tag = "1")]
        count: i64,
        #[prost(string, repeated, tag = "2")]
        tags: Vec<String>,
        #[prost(message, optional, tag = "3")]
        inner: Option<Inner>,
        #[prost(message, repeated, tag = "4")]
        items: Vec<Inner>,
        #[prost(map = "string, int32", tag = "5")]
        labels: HashMap<String, i32>,
        #[prost(btree_map = "uint32, enumeration(i32)", tag = "6")]
        colors: BTreeMap<u32, i32>,
        #[prost(map = "bool, string", tag = "7")]
        flags: HashMap<bool, String>,
        #[prost(map = "int64, message", tag = "8")]
        inners: HashMap<i64, Inner>,
        #[prost(message, optional, tag = "9")]
        at: Option<prost_types::Timestamp>,
    }

    impl JsonMessage for Inner {
        const TYPE_NAME: &'static str = "test.Inner";
        fn write_fields(&self, _: &mut crate::json::Writer<'_>) {}
        fn merge_json_field(
            &mut self,
            _: &str,
            _: &mut crate::json::Reader<'_>,
        ) -> Result<bool, JsonError> {
            Ok(false)
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

    impl JsonMessage for Outer {
        const TYPE_NAME: &'static str = "test.Outer";
        fn write_fields(&self, _: &mut crate::json::Writer<'_>) {}
        fn merge_json_field(
            &mut self,
            _: &str,
            _: &mut crate::json::Reader<'_>,
        ) -> Result<bool, JsonError> {
            Ok(false)
        }
        fn set_text(&mut self, field: &mut TextField<'_>) -> Result<bool, JsonError> {
            match field.name() {
                "count" => field.scalar::<I64>("count", &mut self.count),
                "tags" => field.repeated_value::<Str>("tags", &mut self.tags),
                "inner" => field.message::<Inner, _>("inner", &mut self.inner),
                "items" => field.unsupported("items", "a repeated message field"),
                "labels" => field.map::<Str, I32, _>("labels", &mut self.labels),
                "colors" => field.map::<U32, Enum<Color>, _>("colors", &mut self.colors),
                "flags" => field.map::<Bool, Str, _>("flags", &mut self.flags),
                "inners" => field.unsupported("inners", "a map of messages"),
                "at" => field.optional::<Timestamp>("at", &mut self.at),
                _ => Ok(false),
            }
        }
    }

    /// Sets `name` (split at dots, with an optional map key) to `text`; the field path set.
    fn set(outer: &mut Outer, name: &str, key: Option<&str>, text: &str) -> Result<String, String> {
        let names: Vec<&str> = name.split('.').collect();
        let mut field = TextField::new(&names, key, text);
        match outer.set_text(&mut field) {
            Ok(true) => Ok(field.path().to_owned()),
            Ok(false) => Err("unknown".into()),
            Err(error) => Err(error.to_string()),
        }
    }

    #[test]
    fn leaves_are_set_and_their_path_recorded() {
        let mut outer = Outer::default();
        assert_eq!(set(&mut outer, "count", None, "5"), Ok("count".into()));
        assert_eq!(set(&mut outer, "tags", None, "a"), Ok("tags".into()));
        assert_eq!(set(&mut outer, "tags", None, "b"), Ok("tags".into()));
        assert_eq!(
            set(&mut outer, "inner.display_name", None, "x"),
            Ok("inner.displayName".into())
        );
        assert_eq!(
            set(&mut outer, "at", None, "1970-01-01T00:00:01Z"),
            Ok("at".into())
        );
        assert_eq!(outer.count, 5);
        assert_eq!(outer.tags, ["a", "b"]);
        assert_eq!(
            outer.inner.as_ref().map(|i| i.display_name.as_str()),
            Some("x")
        );
        assert_eq!(outer.at.map(|t| t.seconds), Some(1));
    }

    #[test]
    fn map_entries_by_key_of_every_kind() {
        let mut outer = Outer::default();
        assert_eq!(
            set(&mut outer, "labels", Some("a.b"), "7"),
            Ok("labels".into())
        );
        assert_eq!(
            set(&mut outer, "labels", Some(""), "-1"),
            Ok("labels".into())
        );
        assert_eq!(
            set(&mut outer, "colors", Some("3"), "RED"),
            Ok("colors".into())
        );
        assert_eq!(
            set(&mut outer, "colors", Some("4"), "1"),
            Ok("colors".into())
        );
        assert_eq!(
            set(&mut outer, "flags", Some("true"), "yes"),
            Ok("flags".into())
        );
        assert_eq!(outer.labels.get("a.b"), Some(&7));
        assert_eq!(outer.labels.get(""), Some(&-1));
        assert_eq!(outer.colors, BTreeMap::from([(3, 1), (4, 1)]));
        assert_eq!(outer.flags.get(&true).map(String::as_str), Some("yes"));

        let error = set(&mut outer, "labels", Some("a.b"), "8").expect_err("repeated key");
        assert!(error.contains("more than once"), "{error}");
        let error = set(&mut outer, "colors", Some("x"), "RED").expect_err("bad key");
        assert!(error.contains("\"x\""), "{error}");
        let error = set(&mut outer, "colors", Some("-1"), "RED").expect_err("negative key");
        assert!(error.contains("\"-1\""), "{error}");
        let error = set(&mut outer, "flags", Some("1"), "x").expect_err("bool key");
        assert!(error.contains("\"1\""), "{error}");
        let error = set(&mut outer, "colors", Some("9"), "BLUE").expect_err("bad value");
        assert!(error.contains("colors[\"9\"]"), "{error}");
        assert!(!outer.colors.contains_key(&9), "no entry for a bad value");
    }

    #[test]
    fn what_a_parameter_cannot_set_is_an_error_naming_the_field() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("inner", None, "field `inner` is a message"),
            ("inner", Some("k"), "field `inner` is not a map"),
            (
                "inner.display_name.x",
                None,
                "`inner.displayName` has no fields",
            ),
            (
                "inner.display_name",
                Some("k"),
                "`inner.displayName` is not a map",
            ),
            ("items", None, "`items` is a repeated message field"),
            (
                "items.display_name",
                None,
                "`items` is a repeated message field",
            ),
            (
                "labels",
                None,
                "map field `labels` is set one entry at a time",
            ),
            (
                "labels.key",
                None,
                "map field `labels` is set as `labels[key]=value`",
            ),
            ("labels.key", Some("k"), "map field `labels` is set as"),
            ("inners", Some("1"), "`inners` is a map of messages"),
            ("count", Some("1"), "field `count` is not a map"),
            ("count.x", None, "field `count` has no fields"),
            ("at.seconds", None, "field `at` has no fields"),
        ];
        for (name, key, expected) in cases {
            let mut outer = Outer::default();
            let error = set(&mut outer, name, *key, "1").expect_err(name);
            assert!(error.contains(expected), "{name}: {error}");
            assert_eq!(outer, Outer::default(), "{name}: nothing is left behind");
        }
    }

    #[test]
    fn unknown_names_are_unknown_at_any_depth() {
        let mut outer = Outer::default();
        assert_eq!(set(&mut outer, "nope", None, "1"), Err("unknown".into()));
        assert_eq!(
            set(&mut outer, "inner.nope", None, "1"),
            Err("unknown".into())
        );
        assert_eq!(
            outer.inner, None,
            "no message is created for an unknown field"
        );
    }
}
