//! Opens arbitrary bytes as an envelope from A to B (see
//! `icepact_fuzz::targets::open_envelope`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = icepact_fuzz::targets::open_envelope(data);
});
