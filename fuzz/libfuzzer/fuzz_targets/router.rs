//! libFuzzer's entry for the `router` target; the body and its invariants are
//! `protogate_fuzz::router`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protogate_fuzz::router(data));
