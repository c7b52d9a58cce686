//! Builds a body from the input, encodes and mutates it (see
//! `icepact_fuzz::targets::decode_body_structured`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = icepact_fuzz::targets::decode_body_structured(data);
});
