//! libFuzzer's entry for the `config` target; the body and its invariants are
//! `protogate_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protogate_fuzz::config(data));
