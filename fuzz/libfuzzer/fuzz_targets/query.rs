//! libFuzzer's entry for the `query` target; the body and its invariants are
//! `protogate_fuzz::query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protogate_fuzz::query(data));
