//! libFuzzer's entry for the `jwks` target; the body and its invariants are
//! `protogate_fuzz::jwks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protogate_fuzz::jwks(data));
