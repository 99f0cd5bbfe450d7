//! Runtime for protogate-generated REST/JSON gateways.

pub mod json;
pub mod metadata;
pub mod route;
