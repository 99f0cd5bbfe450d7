//! Proto3 JSON mappers: one `JsonMessage` impl per message and one `ProtoEnum` impl per enum.
//!
//! Each field becomes one call into the runtime, parameterized by a codec type chosen here from
//! the field's proto type; the runtime does the work.

use proc_macro2::TokenStream;
use prost_reflect::{
    Cardinality, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, OneofDescriptor,
};
use quote::quote;

use crate::error::RuleError;
use crate::naming::{self, Scope};

/// How prost stores a singular field of message type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MessageStorage {
    /// A user message: `Option<M>` or `Option<Box<M>>`.
    User,
    /// A well-known type with its own codec: `Option<T>` (wrappers: `Option<primitive>`).
    WellKnown,
}

/// A field's codec and how prost stores it.
pub struct FieldCodec {
    /// The codec type, e.g. `__codegen::I64` or `__codegen::Msg<path::Book>`.
    pub codec: TokenStream,
    /// For user messages, the message type (for `Borrow`/`BorrowMut` on boxed fields).
    pub message: Option<TokenStream>,
    /// True for codecs that can parse a query or path value.
    pub textual: bool,
}

/// Writes the codec for a value of `kind`, seen from a module `depth` levels deep.
pub fn codec(
    depth: Scope<'_>,
    field: &FieldDescriptor,
    kind: &Kind,
) -> Result<FieldCodec, RuleError> {
    let scalar = |codec: TokenStream| FieldCodec {
        codec,
        message: None,
        textual: true,
    };
    Ok(match kind {
        Kind::Double => scalar(quote!(__codegen::F64)),
        Kind::Float => scalar(quote!(__codegen::F32)),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => scalar(quote!(__codegen::I32)),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => scalar(quote!(__codegen::I64)),
        Kind::Uint32 | Kind::Fixed32 => scalar(quote!(__codegen::U32)),
        Kind::Uint64 | Kind::Fixed64 => scalar(quote!(__codegen::U64)),
        Kind::Bool => scalar(quote!(__codegen::Bool)),
        Kind::String => scalar(quote!(__codegen::Str)),
        Kind::Bytes => scalar(quote!(__codegen::Bytes<::std::vec::Vec<u8>>)),
        Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => {
            scalar(quote!(__codegen::NullValue))
        }
        Kind::Enum(e) => {
            let path = naming::type_path(depth, e.package_name(), e.full_name());
            scalar(quote!(__codegen::Enum<#path>))
        }
        Kind::Message(m) => match well_known(m.full_name()) {
            Some((codec, textual)) => FieldCodec {
                codec,
                message: None,
                textual,
            },
            None if m.package_name() == "google.protobuf" => {
                return Err(RuleError::UnsupportedFieldType {
                    field: field.full_name().to_owned(),
                    type_name: m.full_name().to_owned(),
                });
            }
            None => {
                let path = naming::type_path(depth, m.package_name(), m.full_name());
                FieldCodec {
                    codec: quote!(__codegen::Msg<#path>),
                    message: Some(path),
                    textual: false,
                }
            }
        },
    })
}

/// The codec of a well-known type and whether it has a text form; wrappers are their scalars.
fn well_known(full_name: &str) -> Option<(TokenStream, bool)> {
    let name = full_name.strip_prefix("google.protobuf.")?;
    Some(match name {
        "DoubleValue" => (quote!(__codegen::F64), true),
        "FloatValue" => (quote!(__codegen::F32), true),
        "Int64Value" => (quote!(__codegen::I64), true),
        "UInt64Value" => (quote!(__codegen::U64), true),
        "Int32Value" => (quote!(__codegen::I32), true),
        "UInt32Value" => (quote!(__codegen::U32), true),
        "BoolValue" => (quote!(__codegen::Bool), true),
        "StringValue" => (quote!(__codegen::Str), true),
        "BytesValue" => (quote!(__codegen::Bytes<::std::vec::Vec<u8>>), true),
        "Timestamp" => (quote!(__codegen::Timestamp), true),
        "Duration" => (quote!(__codegen::Duration), true),
        "FieldMask" => (quote!(__codegen::FieldMask), true),
        "Struct" => (quote!(__codegen::Struct), false),
        "Value" => (quote!(__codegen::Value), false),
        "ListValue" => (quote!(__codegen::ListValue), false),
        "Any" => (quote!(__codegen::Any), false),
        "Empty" => (quote!(__codegen::Empty), false),
        _ => return None,
    })
}

/// How a field sits in its message's Rust struct.
enum Shape {
    Map {
        key: FieldCodec,
        value: FieldCodec,
    },
    Repeated(FieldCodec),
    /// `Option<T>`: messages, wrappers, proto3 `optional`, proto2 optional scalars.
    Optional(FieldCodec, MessageStorage),
    Plain(FieldCodec),
}

fn shape(depth: Scope<'_>, field: &FieldDescriptor) -> Result<Shape, RuleError> {
    if let Kind::Message(entry) = field.kind()
        && field.is_map()
    {
        let key = entry.map_entry_key_field();
        let value = entry.map_entry_value_field();
        return Ok(Shape::Map {
            key: codec(depth, &key, &key.kind())?,
            value: codec(depth, &value, &value.kind())?,
        });
    }
    let codec = codec(depth, field, &field.kind())?;
    Ok(if field.cardinality() == Cardinality::Repeated {
        Shape::Repeated(codec)
    } else if let Kind::Message(_) = field.kind() {
        let storage = if codec.message.is_some() {
            MessageStorage::User
        } else {
            MessageStorage::WellKnown
        };
        Shape::Optional(codec, storage)
    } else if field.supports_presence() && field.cardinality() != Cardinality::Required {
        // proto3 `optional` and proto2 `optional` scalars are `Option<T>`; proto2 `required`
        // ones are plain.
        Shape::Optional(codec, MessageStorage::WellKnown)
    } else {
        Shape::Plain(codec)
    })
}

/// The oneof a field belongs to, ignoring proto3 `optional`'s synthetic oneofs.
fn real_oneof(field: &FieldDescriptor) -> Option<OneofDescriptor> {
    field.containing_oneof().filter(|o| !o.is_synthetic())
}

fn field_ident(field: &FieldDescriptor) -> syn::Ident {
    naming::ident(&naming::snake(field.name()))
}

/// The match pattern for a field's JSON keys: its json name and, when different, its proto name.
fn key_pattern(field: &FieldDescriptor) -> TokenStream {
    let (json, proto) = (field.json_name(), field.name());
    if json == proto {
        quote!(#json)
    } else {
        quote!(#json | #proto)
    }
}

/// A statement reading one JSON value into field `slot` (an expression of the field's Rust type).
pub fn read_into(
    depth: Scope<'_>,
    field: &FieldDescriptor,
    slot: TokenStream,
) -> Result<TokenStream, RuleError> {
    Ok(match shape(depth, field)? {
        Shape::Map { key, value } => {
            let (k, v) = (key.codec, value.codec);
            quote!(__codegen::read_map::<#k, #v, _>(&mut #slot, r))
        }
        Shape::Repeated(c) => {
            let c = c.codec;
            quote!(__codegen::read_repeated::<#c>(&mut #slot, r))
        }
        Shape::Optional(c, MessageStorage::User) => {
            let m = c.message;
            quote!(__codegen::read_message::<#m, _>(&mut #slot, r))
        }
        Shape::Optional(c, MessageStorage::WellKnown) => {
            let c = c.codec;
            quote!(__codegen::read_optional::<#c>(&mut #slot, r))
        }
        Shape::Plain(c) => {
            let c = c.codec;
            quote!(__codegen::read_singular::<#c>(&mut #slot, r))
        }
    })
}

/// An expression writing field `field` of message `m` to writer `w` as a bare JSON value, default
/// or not: what `response_body` sends.
pub fn write_bare(depth: Scope<'_>, field: &FieldDescriptor) -> Result<TokenStream, RuleError> {
    if let Some(oneof) = real_oneof(field) {
        // A oneof member: its value when it is the member set, else the default of its type.
        let enum_path = oneof_path(depth, &oneof);
        let variant = naming::ident(&naming::camel(field.name()));
        let oneof_field = naming::ident(&naming::snake(oneof.name()));
        let c = codec(depth, field, &field.kind())?;
        let codec = c.codec;
        let inner = match c.message {
            Some(m) => quote!(<_ as ::core::borrow::Borrow<#m>>::borrow(v)),
            None => quote!(v),
        };
        return Ok(quote!(
            match &m.#oneof_field {
                ::core::option::Option::Some(#enum_path::#variant(v)) => __codegen::body_value::<#codec>(#inner, w),
                _ => __codegen::body_default::<#codec>(w),
            }
        ));
    }
    let ident = field_ident(field);
    Ok(match shape(depth, field)? {
        Shape::Map { key, value } => {
            let (k, v) = (key.codec, value.codec);
            quote!(__codegen::body_map::<#k, #v, _>(&m.#ident, w))
        }
        Shape::Repeated(c) => {
            let c = c.codec;
            quote!(__codegen::body_repeated::<#c>(&m.#ident, w))
        }
        Shape::Optional(c, MessageStorage::User) => {
            let message = c.message;
            quote!(__codegen::body_message::<#message, _>(&m.#ident, w))
        }
        Shape::Optional(c, MessageStorage::WellKnown) => {
            let c = c.codec;
            quote!(__codegen::body_optional::<#c>(&m.#ident, w))
        }
        Shape::Plain(c) => {
            let c = c.codec;
            quote!(__codegen::body_value::<#c>(&m.#ident, w))
        }
    })
}

/// A statement setting field `slot` from path text `text`, or `None` when the field has no text
/// form (maps, messages without one).
fn set_text_into(
    depth: Scope<'_>,
    field: &FieldDescriptor,
    slot: TokenStream,
) -> Result<Option<TokenStream>, RuleError> {
    Ok(match shape(depth, field)? {
        Shape::Map { .. } => None,
        Shape::Repeated(c) if c.textual => {
            let c = c.codec;
            Some(quote!(__codegen::push_text::<#c>(&mut #slot, text)))
        }
        Shape::Repeated(_) => None,
        Shape::Optional(c, MessageStorage::WellKnown) if c.textual => {
            let c = c.codec;
            Some(quote!(__codegen::set_text_optional::<#c>(&mut #slot, text)))
        }
        Shape::Optional(..) => None,
        Shape::Plain(c) => {
            let c = c.codec;
            Some(quote!(__codegen::set_text::<#c>(&mut #slot, text)))
        }
    })
}

/// The name of a message-typed field's type, for messages about what the query cannot set.
fn type_name(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Message(m) => m.full_name().to_owned(),
        other => format!("{other:?}"),
    }
}

/// An expression setting field `field` (at `self.<ident>`) from the query parameter `field`
/// (a `__codegen::TextField`): the runtime call for the field's shape, or the error for a field
/// the query cannot set.
fn query_arm(depth: Scope<'_>, field: &FieldDescriptor) -> Result<TokenStream, RuleError> {
    let ident = field_ident(field);
    let json = field.json_name();
    let unsupported = |what: String| quote!(field.unsupported(#json, #what));
    Ok(match shape(depth, field)? {
        Shape::Map { key, value } if value.textual => {
            let (k, v) = (key.codec, value.codec);
            quote!(field.map::<#k, #v, _>(#json, &mut self.#ident))
        }
        Shape::Map { .. } => {
            let value_type = match field.kind() {
                Kind::Message(entry) => type_name(&entry.map_entry_value_field()),
                _ => type_name(field),
            };
            unsupported(format!("a map with {value_type} values"))
        }
        Shape::Repeated(c) if c.textual => {
            let c = c.codec;
            quote!(field.repeated_value::<#c>(#json, &mut self.#ident))
        }
        Shape::Repeated(c) if c.message.is_some() => {
            unsupported("a repeated message field".to_owned())
        }
        Shape::Repeated(_) => unsupported(format!("a repeated {}", type_name(field))),
        Shape::Optional(c, MessageStorage::User) => {
            let m = c.message;
            quote!(field.message::<#m, _>(#json, &mut self.#ident))
        }
        Shape::Optional(c, MessageStorage::WellKnown) if c.textual => {
            let c = c.codec;
            quote!(field.optional::<#c>(#json, &mut self.#ident))
        }
        Shape::Optional(..) => unsupported(format!("a {}", type_name(field))),
        Shape::Plain(c) => {
            let c = c.codec;
            quote!(field.scalar::<#c>(#json, &mut self.#ident))
        }
    })
}

/// The path of a oneof's Rust enum.
fn oneof_path(depth: Scope<'_>, oneof: &OneofDescriptor) -> TokenStream {
    let message = oneof.parent_message();
    naming::type_path(
        depth,
        message.package_name(),
        &format!("{}.{}", message.full_name(), oneof.name()),
    )
}

/// The `JsonMessage` impl of one message, for the module of its package.
pub fn message_impl(message: &MessageDescriptor) -> Result<TokenStream, RuleError> {
    let depth = Scope::package(message.package_name());
    let path = naming::type_path(depth, message.package_name(), message.full_name());
    let type_name = message.full_name();

    let mut writes = Vec::new();
    let mut reads = Vec::new();
    let mut texts = Vec::new();
    let mut oneofs_done = Vec::new();

    for field in message.fields() {
        if let Some(oneof) = real_oneof(&field) {
            if oneofs_done.contains(&oneof.name().to_owned()) {
                continue;
            }
            oneofs_done.push(oneof.name().to_owned());
            oneof_code(depth, &oneof, &mut writes, &mut reads, &mut texts)?;
            continue;
        }
        let ident = field_ident(&field);
        let (json, proto) = (field.json_name(), field.name());
        let keys = key_pattern(&field);
        let write = match shape(depth, &field)? {
            Shape::Map { key, value } => {
                let (k, v) = (key.codec, value.codec);
                quote!(__codegen::write_map::<#k, #v, _>(w, #json, #proto, &self.#ident);)
            }
            Shape::Repeated(c) => {
                let c = c.codec;
                quote!(__codegen::write_repeated::<#c>(w, #json, #proto, &self.#ident);)
            }
            Shape::Optional(c, MessageStorage::User) => {
                let m = c.message;
                quote!(__codegen::write_message::<#m, _>(w, #json, #proto, &self.#ident);)
            }
            Shape::Optional(c, MessageStorage::WellKnown) => {
                let c = c.codec;
                quote!(__codegen::write_optional::<#c>(w, #json, #proto, &self.#ident);)
            }
            // proto2 `required` has no presence in prost but is always set: always written.
            Shape::Plain(c) if field.cardinality() == Cardinality::Required => {
                let c = c.codec;
                quote!(__codegen::write_present::<#c>(w, #json, #proto, &self.#ident);)
            }
            Shape::Plain(c) => {
                let c = c.codec;
                quote!(__codegen::write_singular::<#c>(w, #json, #proto, &self.#ident);)
            }
        };
        writes.push(write);
        let read = read_into(depth, &field, quote!(self.#ident))?;
        reads.push(quote!(#keys => #read.map(|()| true).map_err(|e| e.at(#json)),));

        let arm = query_arm(depth, &field)?;
        texts.push(quote!(#keys => #arm,));
    }

    let text_body = if texts.is_empty() {
        quote!(
            let _ = field;
            ::core::result::Result::Ok(false)
        )
    } else {
        quote!(
            match field.name() {
                #(#texts)*
                _ => ::core::result::Result::Ok(false),
            }
        )
    };
    let read_body = if reads.is_empty() {
        quote!(
            let _ = (key, r);
            ::core::result::Result::Ok(false)
        )
    } else {
        quote!(
            match key {
                #(#reads)*
                _ => ::core::result::Result::Ok(false),
            }
        )
    };
    let write_param = if writes.is_empty() {
        quote!(_w)
    } else {
        quote!(w)
    };

    Ok(quote! {
        #[allow(clippy::all, deprecated, unused_variables, unreachable_patterns)]
        impl __codegen::JsonMessage for #path {
            const TYPE_NAME: &'static str = #type_name;

            fn write_fields(&self, #write_param: &mut __codegen::Writer<'_>) {
                #(#writes)*
            }

            fn merge_json_field(
                &mut self,
                key: &str,
                r: &mut __codegen::Reader<'_>,
            ) -> ::core::result::Result<bool, __codegen::JsonError> {
                #read_body
            }

            fn set_text(
                &mut self,
                field: &mut __codegen::TextField<'_>,
            ) -> ::core::result::Result<bool, __codegen::JsonError> {
                #text_body
            }
        }
    })
}

/// Write, read and text arms for the members of one oneof.
fn oneof_code(
    depth: Scope<'_>,
    oneof: &OneofDescriptor,
    writes: &mut Vec<TokenStream>,
    reads: &mut Vec<TokenStream>,
    texts: &mut Vec<TokenStream>,
) -> Result<(), RuleError> {
    let enum_path = oneof_path(depth, oneof);
    let slot = naming::ident(&naming::snake(oneof.name()));
    let oneof_json = oneof.name();
    let mut arms = Vec::new();
    for field in oneof.fields() {
        let variant = naming::ident(&naming::camel(field.name()));
        let (json, proto) = (field.json_name(), field.name());
        let keys = key_pattern(&field);
        let c = codec(depth, &field, &field.kind())?;
        let codec = &c.codec;
        let value = match &c.message {
            Some(m) => quote!(<_ as ::core::borrow::Borrow<#m>>::borrow(v)),
            None => quote!(v),
        };
        arms.push(quote!(
            #enum_path::#variant(v) => __codegen::write_present::<#codec>(w, #json, #proto, #value),
        ));
        reads.push(quote!(
            #keys => {
                if let ::core::option::Option::Some(v) =
                    __codegen::read_nullable::<#codec>(r).map_err(|e| e.at(#json))?
                {
                    if self.#slot.is_some() {
                        return ::core::result::Result::Err(__codegen::JsonError::oneof_conflict(#oneof_json));
                    }
                    self.#slot = ::core::option::Option::Some(#enum_path::#variant(v.into()));
                }
                ::core::result::Result::Ok(true)
            }
        ));
        let member = if c.textual {
            Some(quote!(|f, v| f.optional::<#codec>(#json, v)))
        } else {
            c.message
                .as_ref()
                .map(|m| quote!(|f, v| f.message::<#m, _>(#json, v)))
        };
        texts.push(match member {
            Some(set) => quote!(
                #keys => field.oneof_member(
                    #json,
                    #oneof_json,
                    &mut self.#slot,
                    |o| match o {
                        #enum_path::#variant(v) => ::core::result::Result::Ok(v),
                        o => ::core::result::Result::Err(o),
                    },
                    #enum_path::#variant,
                    #set,
                ),
            ),
            None => {
                let what = format!("a {}", type_name(&field));
                quote!(#keys => field.unsupported(#json, #what),)
            }
        });
    }
    writes.push(quote!(
        if let ::core::option::Option::Some(v) = &self.#slot {
            match v {
                #(#arms)*
            }
        }
    ));
    Ok(())
}

/// The `ProtoEnum` impl of one enum.
pub fn enum_impl(e: &EnumDescriptor) -> TokenStream {
    let depth = Scope::package(e.package_name());
    let path = naming::type_path(depth, e.package_name(), e.full_name());
    let type_name = e.full_name();
    let mut seen = Vec::new();
    let mut to_name = Vec::new();
    let mut to_value = Vec::new();
    // Declaration order, so that of several aliases the first is the name written.
    for value in &e.enum_descriptor_proto().value {
        let (name, number) = (value.name(), value.number());
        to_value.push(quote!(#name => ::core::option::Option::Some(#number),));
        if !seen.contains(&number) {
            seen.push(number);
            to_name.push(quote!(#number => ::core::option::Option::Some(#name),));
        }
    }
    quote! {
        #[allow(clippy::all, deprecated)]
        impl __codegen::ProtoEnum for #path {
            const TYPE_NAME: &'static str = #type_name;

            fn name_of(value: i32) -> ::core::option::Option<&'static str> {
                match value {
                    #(#to_name)*
                    _ => ::core::option::Option::None,
                }
            }

            fn value_of(name: &str) -> ::core::option::Option<i32> {
                match name {
                    #(#to_value)*
                    _ => ::core::option::Option::None,
                }
            }
        }
    }
}

/// A block setting `field` of `owner` (a place expression) from the path value `text`.
pub fn text_setter(
    depth: Scope<'_>,
    field: &FieldDescriptor,
    owner: TokenStream,
) -> Result<TokenStream, RuleError> {
    if let Some(oneof) = real_oneof(field) {
        let enum_path = oneof_path(depth, &oneof);
        let variant = naming::ident(&naming::camel(field.name()));
        let slot = naming::ident(&naming::snake(oneof.name()));
        let codec = codec(depth, field, &field.kind())?.codec;
        let oneof_name = oneof.name();
        // The body and the query are applied before the path: another member set there is a
        // conflict, and so is the same member with a different value.
        return Ok(quote!({
            let v = __codegen::parse_text::<#codec>(text)?;
            match &#owner.#slot {
                ::core::option::Option::None => {}
                ::core::option::Option::Some(#enum_path::#variant(old)) => {
                    if *old != v {
                        return ::core::result::Result::Err(__codegen::JsonError::path_conflict());
                    }
                }
                #[allow(unreachable_patterns)]
                ::core::option::Option::Some(_) => {
                    return ::core::result::Result::Err(__codegen::JsonError::oneof_conflict(#oneof_name));
                }
            }
            #owner.#slot = ::core::option::Option::Some(#enum_path::#variant(v));
            ::core::result::Result::Ok(())
        }));
    }
    let ident = field_ident(field);
    set_text_into(depth, field, quote!(#owner.#ident))?.ok_or_else(|| {
        RuleError::UnsupportedFieldType {
            field: field.full_name().to_owned(),
            type_name: "a type with no text form".into(),
        }
    })
}
