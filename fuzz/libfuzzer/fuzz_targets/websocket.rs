//! libFuzzer's entry for the `websocket` target; the body and its invariants are
//! `protogate_fuzz::websocket`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protogate_fuzz::websocket(data));
