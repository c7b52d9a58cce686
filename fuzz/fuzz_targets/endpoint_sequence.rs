//! Two real endpoints over an adversarial network driven by the input (see
//! `icepact_fuzz::targets::endpoint_sequence`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = icepact_fuzz::targets::endpoint_sequence(data);
});
