//! libFuzzer's entry for the `json_mutate` target; the body and its invariants are
//! `protogate_fuzz::json_mutate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protogate_fuzz::json_mutate(data));
