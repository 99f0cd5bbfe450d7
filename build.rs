//! Compiles the demo protos.
fn main() {}
