//! libFuzzer's entry for the `json` target; the body and its invariants are
//! `protogate_fuzz::json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protogate_fuzz::json(data));
