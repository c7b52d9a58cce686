//! The wire format's cost next to the bare crypto: sealing and opening a typical description
//! (credentials and 8 candidates) against `crypto_box` sealing and opening the same plaintext
//! bytes with a precomputed key. Prints both medians and their ratio at the end.
//!
//! `ICEPACT_WIRE_LOOP=<op>:<n>` (op: seal_encode, open_decode, raw_seal, raw_open, none) runs one
//! operation `n` times instead, for instruction counts under valgrind or `perf stat`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, Criterion};
use crypto_box::aead::generic_array::GenericArray;
use crypto_box::aead::Aead;
use crypto_box::SalsaBox;
use icepact::wire::{Body, Channel, Limits, Nonce, SecretKey};
use icepact::{Candidate, CandidateKind, Credentials, Description, SessionRef, Transport};

/// Credentials and 8 candidates: host, server-reflexive and relay, IPv4 and IPv6.
fn typical() -> Description {
    let mut candidates = Vec::new();
    for i in 0..4u8 {
        candidates.push(Candidate::host(([192, 168, 1, 10 + i], 51820).into()));
    }
    candidates.push(Candidate::host(
        "[2001:db8:1:2:3:4:5:6]:51820".parse().unwrap(),
    ));
    for (i, addr) in ["203.0.113.9:40001", "[2001:db8::99]:40002"]
        .iter()
        .enumerate()
    {
        candidates.push(Candidate {
            kind: CandidateKind::ServerReflexive,
            transport: Transport::Udp,
            addr: addr.parse().unwrap(),
            priority: 1_694_498_815 - i as u32,
            foundation: format!("srflx{i}").into(),
            component: 1,
            related: Some("192.168.1.10:51820".parse().unwrap()),
            tcp_type: None,
        });
    }
    candidates.push(Candidate {
        kind: CandidateKind::Relay,
        transport: Transport::Udp,
        addr: "198.51.100.7:3478".parse().unwrap(),
        priority: 16_777_215,
        foundation: "relay0".into(),
        component: 1,
        related: Some("203.0.113.9:40001".parse().unwrap()),
        tcp_type: None,
    });
    Description {
        session: SessionRef {
            epoch: 1_700_000_000_000_001,
            version: 9,
        },
        ack: Some(SessionRef {
            epoch: 1_700_000_000_000_777,
            version: 4,
        }),
        need_reply: true,
        credentials: Credentials {
            ufrag: "gQzBvTmWkLdNpRaE".into(),
            pwd: "XyHcFuJsOeIvPbKgNtDrMlAwQzEjUoYi".into(),
        },
        candidates,
        end_of_candidates: true,
        seen: None,
    }
}

fn bench(c: &mut Criterion) {
    let (a, b) = (
        SecretKey::from_bytes([1; 32]),
        SecretKey::from_bytes([2; 32]),
    );
    let a_to_b = Channel::new(&a, b.public_key()).unwrap();
    let b_from_a = Channel::new(&b, a.public_key()).unwrap();
    let d = typical();
    let nonce = Nonce([7; 24]);
    let envelope = a_to_b.seal(&d, nonce).unwrap();
    let plaintext = Body {
        sender: a.public_key(),
        recipient: b.public_key(),
        description: d.clone(),
    }
    .encode(&Limits::default())
    .unwrap();
    println!(
        "typical description: {} bytes of plaintext, {} bytes of envelope",
        plaintext.len(),
        envelope.len()
    );

    let raw = SalsaBox::new(
        &crypto_box::PublicKey::from_bytes(b.public_key().0),
        &crypto_box::SecretKey::from_bytes([1; 32]),
    );
    let raw_nonce = GenericArray::from_slice(&nonce.0);
    let sealed = raw.encrypt(raw_nonce, plaintext.as_slice()).unwrap();

    let mut g = c.benchmark_group("wire");
    g.bench_function("seal_encode", |bench| {
        bench.iter(|| a_to_b.seal(black_box(&d), nonce).unwrap())
    });
    g.bench_function("raw_seal", |bench| {
        bench.iter(|| {
            raw.encrypt(raw_nonce, black_box(plaintext.as_slice()))
                .unwrap()
        })
    });
    g.bench_function("open_decode", |bench| {
        bench.iter(|| b_from_a.open(black_box(&envelope)).unwrap())
    });
    g.bench_function("raw_open", |bench| {
        bench.iter(|| {
            raw.decrypt(raw_nonce, black_box(sealed.as_slice()))
                .unwrap()
        })
    });
    let limits = Limits::default();
    let body = Body {
        sender: a.public_key(),
        recipient: b.public_key(),
        description: d.clone(),
    };
    g.bench_function("body_encode", |bench| {
        bench.iter(|| black_box(&body).encode(&limits).unwrap())
    });
    g.bench_function("body_decode", |bench| {
        bench.iter(|| Body::decode(black_box(&plaintext), &limits).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);

/// The median of a finished benchmark, from criterion's `estimates.json`.
fn median_ns(name: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = dir
        .join("criterion/wire")
        .join(name)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let median = &text[text.find("\"median\"")?..];
    let value = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = value.find([',', '}'])?;
    value[..end].trim().parse().ok()
}

/// `ICEPACT_WIRE_LOOP=<op>:<n>` runs one operation `n` times and exits, for counting cycles
/// and instructions with `perf stat` (robust on a loaded machine, unlike wall time).
fn run_loop(spec: &str) {
    let (op, n) = spec.split_once(':').expect("ICEPACT_WIRE_LOOP=<op>:<n>");
    let n: u64 = n.parse().expect("a number of iterations");
    let (a, b) = (
        SecretKey::from_bytes([1; 32]),
        SecretKey::from_bytes([2; 32]),
    );
    let a_to_b = Channel::new(&a, b.public_key()).unwrap();
    let b_from_a = Channel::new(&b, a.public_key()).unwrap();
    let d = typical();
    let nonce = Nonce([7; 24]);
    let envelope = a_to_b.seal(&d, nonce).unwrap();
    let body = Body {
        sender: a.public_key(),
        recipient: b.public_key(),
        description: d.clone(),
    };
    let plaintext = body.encode(&Limits::default()).unwrap();
    let raw = SalsaBox::new(
        &crypto_box::PublicKey::from_bytes(b.public_key().0),
        &crypto_box::SecretKey::from_bytes([1; 32]),
    );
    let raw_nonce = GenericArray::from_slice(&nonce.0);
    let sealed = raw.encrypt(raw_nonce, plaintext.as_slice()).unwrap();
    for _ in 0..n {
        match op {
            "seal_encode" => drop(black_box(a_to_b.seal(black_box(&d), nonce))),
            "open_decode" => drop(black_box(b_from_a.open(black_box(&envelope)))),
            "raw_seal" => drop(black_box(
                raw.encrypt(raw_nonce, black_box(plaintext.as_slice())),
            )),
            "raw_open" => drop(black_box(
                raw.decrypt(raw_nonce, black_box(sealed.as_slice())),
            )),
            "none" => {}
            _ => panic!("unknown operation {op}"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("ICEPACT_WIRE_LOOP") {
        return run_loop(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    for (wire, raw) in [("seal_encode", "raw_seal"), ("open_decode", "raw_open")] {
        if let (Some(w), Some(r)) = (median_ns(wire), median_ns(raw)) {
            println!(
                "{wire}: median {w:.0} ns; {raw}: median {r:.0} ns; ratio {:.3}",
                w / r
            );
        }
    }
}
