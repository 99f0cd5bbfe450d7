//! libFuzzer's entry for the `jwt` target; the body and its invariants are
//! `protogate_fuzz::jwt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protogate_fuzz::jwt(data));
