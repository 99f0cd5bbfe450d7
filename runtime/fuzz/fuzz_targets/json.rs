//! The JSON reader and the well-known-type codecs on arbitrary input: never a panic, and what
//! reads as a google.protobuf.Value writes back to JSON that reads as the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protogate::JsonOptions;
use protogate::__codegen::{Codec, Reader, Registry, Value, Writer};

fuzz_target!(|data: &[u8]| {
    let options = JsonOptions::default();
    let mut reader = Reader::new(data, options, &Registry::EMPTY);
    let _ = reader.skip_value().and_then(|()| reader.finish());

    let mut reader = Reader::new(data, options, &Registry::EMPTY);
    let Ok(value) = <Value as Codec>::read(&mut reader) else {
        return;
    };
    let mut buf = Vec::new();
    let mut writer = Writer::new(&mut buf, options, &Registry::EMPTY);
    <Value as Codec>::write(&value, &mut writer);
    if writer.finish().is_ok() {
        let mut again = Reader::new(&buf, options, &Registry::EMPTY);
        let back = <Value as Codec>::read(&mut again).expect("written JSON reads back");
        assert_eq!(back, value);
    }
});
