//! libFuzzer's entry for the `split` target; the body and its invariants are
//! `protogate_fuzz::split`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protogate_fuzz::split(data));
