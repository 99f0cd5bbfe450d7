#![doc = include_str!("../README.md")]

pub mod admin;
pub mod auth;
pub mod config;
pub mod docs;
pub mod edge;
pub mod listen;
pub mod observe;
pub mod reload;
pub mod server;
pub mod traces;
pub mod upstream;

/// Everything protogate-build generated for this binary.
#[allow(missing_docs)]
pub mod pb {
    ::protogate::include_gateway!();
}
