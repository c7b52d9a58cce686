//! Feeds one `Peer` an arbitrary sequence of inputs (see
//! `icepact_fuzz::targets::peer_sequence`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = icepact_fuzz::targets::peer_sequence(data);
});
