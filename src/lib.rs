//! The stock protogate gateway: every service compiled into it (the demo, plus the protos under
//! `$PROTOGATE_PROTO_DIR` at build time) served as REST/JSON, in front of gRPC upstreams or, for
//! the demo, of its in-process implementation.

pub mod demo;
pub mod upstream;

/// Everything protogate-build generated for this binary.
pub mod pb {
    ::protogate::include_gateway!();
}
