//! libFuzzer's entry for the `template` target; the body and its invariants are
//! `protogate_fuzz::template`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protogate_fuzz::template(data));
