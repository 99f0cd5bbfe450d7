//! protogate-build: compiles annotated protos into REST/JSON gateway code.

pub mod template;
