//! The fuzz targets' seed corpora (`fuzz/seeds/<target>/`, checked in; cargo-fuzz grows its
//! own `fuzz/corpus/` from them) reach the targets' deepest checks: a stated share of each
//! corpus must, so that a target that silently stops reaching its assertions (a new check up
//! front, a changed format) fails here, on stable, without a fuzzer. The targets' bodies are
//! `fuzz/src/targets.rs`, included below.
//!
//! `ICEPACT_WRITE_CORPUS=1 cargo test --test fuzz_corpus` rewrites the corpora from the proptest
//! strategies (bodies and sealed envelopes under the targets' fixed keys) and a seeded random
//! generator (input sequences).

#[path = "../fuzz/src/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::path::{Path, PathBuf};

use icepact::wire::{Body, Limits, Nonce};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use targets::Reach;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

/// A stable file name for an input (FNV-1a of its bytes).
fn name(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn write(target: &str, inputs: &[Vec<u8>]) {
    let dir = corpus_dir(target);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for data in inputs {
        std::fs::write(dir.join(name(data)), data).unwrap();
    }
}

/// Writes the corpora (only with `ICEPACT_WRITE_CORPUS` set).
fn regenerate() {
    let (a_to_b, _) = targets::channels();
    let mut runner = TestRunner::deterministic();
    let mut bodies = Vec::new();
    let mut envelopes = Vec::new();
    let mut n = 0u8;
    while bodies.len() < 48 {
        let d = icepact::strategies::description()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let body = Body {
            sender: a_to_b.local_key(),
            recipient: a_to_b.remote_key(),
            description: d.clone(),
        };
        // Some drawn descriptions cannot be sent (a priority over 2^31, for instance).
        let Ok(bytes) = body.encode(&Limits::default()) else {
            continue;
        };
        n = n.wrapping_add(1);
        envelopes.push(a_to_b.seal(&d, Nonce([n; 24])).unwrap());
        envelopes.push(bytes.clone());
        bodies.push(bytes);
    }
    write("decode_body", &bodies);
    write("open_envelope", &envelopes);
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let sequences: Vec<Vec<u8>> = (0..48)
        .map(|i| {
            let mut v = vec![0u8; 64 + 8 * i];
            rng.fill_bytes(&mut v);
            v
        })
        .collect();
    write("peer_sequence", &sequences);
    // The structure-aware targets and the endpoint read their input as choices: random bytes
    // of a few lengths.
    for (target, lengths) in [
        ("decode_body_structured", 128..176),
        ("open_envelope_structured", 128..176),
        ("endpoint_sequence", 1024..1072),
    ] {
        let inputs: Vec<Vec<u8>> = lengths
            .step_by(1)
            .map(|len| {
                let mut v = vec![0u8; len];
                rng.fill_bytes(&mut v);
                v
            })
            .collect();
        write(target, &inputs);
    }
    // The room service's requests: valid handshakes and signals, and a few broken ones.
    let mut messages = Vec::new();
    for i in 0..48u32 {
        let mut token = [0u8; 16];
        rng.fill_bytes(&mut token);
        let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
        let call = format!("call-{i}");
        let m = match i % 4 {
            0 | 1 => serde_json::json!({ "kind": "JOIN", "call": call, "session": token }),
            2 => {
                serde_json::json!({ "kind": "OFFER", "call": call, "session": token, "body": "v=0" })
            }
            _ => serde_json::json!({ "kind": "ANSWER", "call": call, "session": token }),
        };
        let mut bytes = m.to_string().into_bytes();
        if i % 8 == 7 {
            // Cut short: malformed JSON.
            bytes.truncate(bytes.len() / 2);
        }
        messages.push(bytes);
    }
    write("signal_messages", &messages);
}

/// Runs `target` over its corpus; returns (inputs, inputs that reached the deepest checks).
fn reach(target: &str, run: fn(&[u8]) -> Reach) -> (usize, usize) {
    let mut total = 0;
    let mut deep = 0;
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("no corpus for {target}: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let data = std::fs::read(&f).unwrap();
        total += 1;
        if run(&data) == Reach::Deep {
            deep += 1;
        }
    }
    (total, deep)
}

#[test]
fn seed_corpora_reach_the_deepest_checks() {
    if std::env::var_os("ICEPACT_WRITE_CORPUS").is_some() {
        regenerate();
    }
    for (target, run, at_least_percent) in [
        (
            "decode_body",
            targets::decode_body as fn(&[u8]) -> Reach,
            90,
        ),
        ("open_envelope", targets::open_envelope, 90),
        ("peer_sequence", targets::peer_sequence, 50),
        (
            "decode_body_structured",
            targets::decode_body_structured,
            50,
        ),
        (
            "open_envelope_structured",
            targets::open_envelope_structured,
            50,
        ),
        ("endpoint_sequence", targets::endpoint_sequence, 50),
        ("signal_messages", targets::signal_messages, 50),
    ] {
        let (total, deep) = reach(target, run);
        eprintln!("{target}: {deep} of {total} corpus inputs reach the deepest checks");
        assert!(total >= 32, "{target}: only {total} corpus inputs");
        assert!(
            deep * 100 >= total * at_least_percent,
            "{target}: {deep} of {total} reach the deepest checks, below {at_least_percent} %"
        );
    }
}

/// The reach of a grown corpus (docs/FUZZING.md's ten-minute table): with
/// `ICEPACT_FUZZ_CORPUS=<dir>` set, every target runs over `<dir>/<target>/` (cargo-fuzz's
/// `fuzz/corpus/`, say) and the share that gets to its deep checks is printed; without it the
/// test does nothing. `cargo test --release --test fuzz_corpus grown -- --nocapture`.
#[test]
fn grown_corpus_reach() {
    let Some(dir) = std::env::var_os("ICEPACT_FUZZ_CORPUS") else {
        return;
    };
    for (target, run) in [
        ("decode_body", targets::decode_body as fn(&[u8]) -> Reach),
        ("open_envelope", targets::open_envelope),
        ("peer_sequence", targets::peer_sequence),
        ("decode_body_structured", targets::decode_body_structured),
        (
            "open_envelope_structured",
            targets::open_envelope_structured,
        ),
        ("endpoint_sequence", targets::endpoint_sequence),
        ("signal_messages", targets::signal_messages),
    ] {
        let Ok(entries) = std::fs::read_dir(Path::new(&dir).join(target)) else {
            continue;
        };
        let (mut total, mut deep) = (0, 0);
        for entry in entries {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            total += 1;
            deep += usize::from(run(&data) == Reach::Deep);
        }
        println!(
            "{target}: {deep} of {total} ({:.0} %) reach the deep checks",
            100.0 * deep as f64 / total.max(1) as f64
        );
    }
}

/// Inputs on which a fuzzer once found a failure (`fuzz/regressions/<target>/`, each named
/// after what it found) pass now.
///
/// - `endpoint_sequence/late-input-behind-the-endpoint-clock`: an endpoint was given a `now`
///   that none of its sessions had a timer before, then an agent report stamped 1.4 s earlier;
///   the session, whose own clock was older still, took it and armed a timer before the
///   endpoint's latest `now`. The endpoint now applies LATE_INPUT against the latest `now` it
///   was given.
/// - `decode_body/an-overridden-address-that-is-not-utf8`: a candidate with two address
///   fields, the first not UTF-8: the fast decoder kept the second and accepted the body, prost
///   refuses it (protobuf strings are UTF-8, every occurrence). Every occurrence is checked now.
#[test]
fn fuzzer_findings_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut ran = 0;
    for (target, run) in [
        (
            "endpoint_sequence",
            targets::endpoint_sequence as fn(&[u8]) -> Reach,
        ),
        ("peer_sequence", targets::peer_sequence),
        ("decode_body", targets::decode_body),
        ("open_envelope", targets::open_envelope),
        ("decode_body_structured", targets::decode_body_structured),
        (
            "open_envelope_structured",
            targets::open_envelope_structured,
        ),
    ] {
        let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            eprintln!("{}", path.display());
            run(&std::fs::read(&path).unwrap());
            ran += 1;
        }
    }
    assert!(ran >= 1, "no regression input found");
}
