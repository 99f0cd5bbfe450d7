//! The round trips every decoded message must survive, shared by the targets that decode.

use generated_tests::pb::__PROTOGATE_REGISTRY as REGISTRY;
use protogate::__codegen::{AnyType, Reader, Writer};
use protogate::{JsonMessage, JsonOptions, decode_message, encode_message};

/// The options messages are written with for a round trip: the input's, except that unknown
/// fields are never ignored (the writer writes none).
fn strict(options: JsonOptions) -> JsonOptions {
    JsonOptions {
        ignore_unknown: false,
        ..options
    }
}

/// Reads `document` as a message of type `entry`: the message, protobuf-encoded.
pub(crate) fn read(
    entry: &AnyType,
    document: &[u8],
    options: JsonOptions,
) -> Result<Vec<u8>, protogate::JsonError> {
    let mut reader = Reader::new(document, options, &REGISTRY);
    let encoded = (entry.read)(&mut reader)?;
    reader.finish()?;
    Ok(encoded)
}

/// Writes the protobuf-encoded message of type `entry` as JSON.
pub(crate) fn write(
    entry: &AnyType,
    encoded: &[u8],
    options: JsonOptions,
) -> Result<Vec<u8>, protogate::JsonError> {
    let mut buf = Vec::new();
    let mut writer = Writer::new(&mut buf, options, &REGISTRY);
    writer.begin_object();
    let wrote = (entry.write)(encoded, &mut writer);
    writer.end_object();
    wrote?;
    writer.finish()?;
    Ok(buf)
}

/// Parses JSON the gateway wrote; it must be well-formed.
fn parsed(json: &[u8], what: &str) -> serde_json::Value {
    match serde_json::from_slice(json) {
        Ok(value) => value,
        Err(error) => panic!(
            "{what} wrote JSON that does not parse ({error}): {}",
            String::from_utf8_lossy(json)
        ),
    }
}

/// decode → encode → decode → encode: what a message of type `entry` read from `document`
/// writes reads back to a message that writes the same JSON (compared as JSON values, so that
/// map order does not count). A document the reader refuses is no concern of this check.
pub(crate) fn check_document(entry: &AnyType, document: &[u8], options: JsonOptions) {
    let Ok(encoded) = read(entry, document, options) else {
        return;
    };
    let name = entry.type_name;
    let options = strict(options);
    let first = write(entry, &encoded, options).unwrap_or_else(|error| {
        panic!(
            "{name} read from {} does not write: {error}",
            String::from_utf8_lossy(document)
        )
    });
    let again = read(entry, &first, options).unwrap_or_else(|error| {
        panic!(
            "{name} wrote {} which does not read back: {error}",
            String::from_utf8_lossy(&first)
        )
    });
    let second = write(entry, &again, options).unwrap_or_else(|error| {
        panic!(
            "{name} read back from {} does not write: {error}",
            String::from_utf8_lossy(&first)
        )
    });
    assert_eq!(
        parsed(&first, name),
        parsed(&second, name),
        "{name}: the message read from {} changed on a round trip",
        String::from_utf8_lossy(document)
    );
}

/// A typed message survives JSON (as in [`check_document`]) and protobuf round trips.
pub(crate) fn check_message<M: JsonMessage + std::fmt::Debug>(message: &M, options: JsonOptions) {
    let options = strict(options);
    let name = M::TYPE_NAME;
    let mut first = Vec::new();
    if let Err(error) = encode_message(message, options, &REGISTRY, &mut first) {
        panic!("{name} {message:?} does not write: {error}");
    }
    let back: M = decode_message(&first, options, &REGISTRY).unwrap_or_else(|error| {
        panic!(
            "{name} wrote {} which does not read back: {error}",
            String::from_utf8_lossy(&first)
        )
    });
    let mut second = Vec::new();
    if let Err(error) = encode_message(&back, options, &REGISTRY, &mut second) {
        panic!("{name} read back as {back:?} does not write: {error}");
    }
    assert_eq!(
        parsed(&first, name),
        parsed(&second, name),
        "{name} {message:?}"
    );

    let decoded = M::decode(message.encode_to_vec().as_slice()).unwrap_or_else(|error| {
        panic!("{name} {message:?} does not decode from protobuf: {error}")
    });
    let mut third = Vec::new();
    if let Err(error) = encode_message(&decoded, options, &REGISTRY, &mut third) {
        panic!("{name} decoded from protobuf as {decoded:?} does not write: {error}");
    }
    assert_eq!(
        parsed(&first, name),
        parsed(&third, name),
        "{name} {message:?}"
    );
}
