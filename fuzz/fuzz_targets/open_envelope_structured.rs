//! Seals a description built from the input under the real keys, mutates or forges it, and
//! opens it (see `icepact_fuzz::targets::open_envelope_structured`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = icepact_fuzz::targets::open_envelope_structured(data);
});
