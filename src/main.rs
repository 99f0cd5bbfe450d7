//! The stock protogate gateway.
fn main() {}
