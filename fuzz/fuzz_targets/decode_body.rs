//! Decodes arbitrary bytes as a sealed body (see `icepact_fuzz::targets::decode_body`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = icepact_fuzz::targets::decode_body(data);
});
