//! Parses arbitrary bytes as the room service's requests (see
//! `icepact_fuzz::targets::signal_messages`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = icepact_fuzz::targets::signal_messages(data);
});
