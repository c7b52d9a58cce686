//! The wire format: known-answer vectors (NaCl's crypto_box example, our golden envelope),
//! reflection, re-addressing and replay, and one test per hostile-input error.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::EdwardsPoint;
use icepact::wire::proto;
use icepact::wire::{
    BindingError, Body, BodyError, CandidateError, Channel, EnvelopeError, Error, Header, KeyError,
    Limits, Nonce, SecretKey,
};
use icepact::{
    Candidate, CandidateKind, Config, Credentials, Description, Disposition, IgnoreReason, Output,
    Peer, PeerSetup, PublicKey, Seed, SessionRef, TcpType, Transport,
};
use prost::Message as _;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// `name = hex` lines of a vector file.
fn vectors(text: &str) -> Vec<(&str, Vec<u8>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, hex) = l.split_once('=').expect("vector lines are `name = hex`");
            (name.trim(), unhex(hex.trim()))
        })
        .collect()
}

fn vector(all: &[(&str, Vec<u8>)], name: &str) -> Vec<u8> {
    all.iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("vector {name} missing"))
        .1
        .clone()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn key32(v: Vec<u8>) -> [u8; 32] {
    v.try_into().expect("32-byte key")
}

// ---------------------------------------------------------------------------------------------
// Known answers

#[test]
fn nacl_crypto_box_example_seals_and_opens_byte_for_byte() {
    let v = vectors(include_str!("vectors/nacl_box.hex"));
    let alice = SecretKey::from_bytes(key32(vector(&v, "alice_sk")));
    let bob = SecretKey::from_bytes(key32(vector(&v, "bob_sk")));
    assert_eq!(alice.public_key().0.to_vec(), vector(&v, "alice_pk"));
    assert_eq!(bob.public_key().0.to_vec(), vector(&v, "bob_pk"));
    let nonce = Nonce(vector(&v, "nonce").try_into().unwrap());
    let message = vector(&v, "message");
    let boxed = vector(&v, "box");
    assert_eq!((message.len(), boxed.len()), (131, 147));

    let alice_to_bob = Channel::new(&alice, PublicKey(key32(vector(&v, "bob_pk")))).unwrap();
    let bob_from_alice = Channel::new(&bob, PublicKey(key32(vector(&v, "alice_pk")))).unwrap();
    assert_eq!(hex(&alice_to_bob.seal_box(nonce, &message)), hex(&boxed));
    assert_eq!(bob_from_alice.open_box(nonce, &boxed).unwrap(), message);

    // One flipped bit of the tag, and the box no longer opens.
    let mut forged = boxed.clone();
    forged[0] ^= 1;
    assert_eq!(
        bob_from_alice.open_box(nonce, &forged),
        Err(Error::Authentication)
    );
}

#[test]
fn low_order_and_equal_keys_are_refused() {
    let v = vectors(include_str!("vectors/nacl_box.hex"));
    let alice = SecretKey::from_bytes(key32(vector(&v, "alice_sk")));
    let small = PublicKey(key32(vector(&v, "small_order_pk")));
    assert_eq!(
        Channel::new(&alice, small).unwrap_err(),
        Error::Key(KeyError::LowOrder)
    );
    // The all-zero key (u = 0) is of order 2.
    assert_eq!(
        Channel::new(&alice, PublicKey([0; 32])).unwrap_err(),
        Error::Key(KeyError::LowOrder)
    );
    // An honest key plus a point of order 8: not of low order, but outside the prime-order
    // subgroup, where crypto_box implementations disagree.
    let mixed = (EdwardsPoint::mul_base_clamped([9; 32]) + EIGHT_TORSION[1]).to_montgomery();
    assert_eq!(
        Channel::new(&alice, PublicKey(mixed.to_bytes())).unwrap_err(),
        Error::Key(KeyError::NotPrimeOrder)
    );
    let honest = EdwardsPoint::mul_base_clamped([9; 32]).to_montgomery();
    assert!(Channel::new(&alice, PublicKey(honest.to_bytes())).is_ok());
    assert_eq!(
        Channel::new(&alice, alice.public_key()).unwrap_err(),
        Error::Key(KeyError::EqualKeys)
    );
}

/// Fixed inputs of the golden envelope.
fn golden_inputs() -> (SecretKey, SecretKey, Nonce, Description) {
    let a = SecretKey::from_bytes(std::array::from_fn(|i| i as u8 + 1));
    let b = SecretKey::from_bytes(std::array::from_fn(|i| 0xa0 ^ i as u8));
    let nonce = Nonce(std::array::from_fn(|i| 0x30 + i as u8));
    let d = Description {
        session: SessionRef {
            epoch: 1_700_000_000_000_001,
            version: 3,
        },
        ack: Some(SessionRef {
            epoch: 42,
            version: 1,
        }),
        need_reply: true,
        credentials: Credentials {
            ufrag: "gQzBvTmWkLdNpRaE".into(),
            pwd: "XyHcFuJsOeIvPbKgNtDrMlAwQzEjUoYi".into(),
        },
        candidates: vec![
            Candidate::host("192.0.2.10:51820".parse().unwrap()),
            Candidate {
                kind: CandidateKind::ServerReflexive,
                transport: Transport::Udp,
                addr: "[2001:db8::1]:40000".parse().unwrap(),
                priority: 1_694_498_815,
                foundation: "srflx+1/a".into(),
                component: 1,
                related: Some("[fe80::1]:51820".parse().unwrap()),
                tcp_type: None,
            },
            Candidate {
                kind: CandidateKind::Relay,
                transport: Transport::Tcp,
                addr: "198.51.100.7:443".parse().unwrap(),
                priority: 16_777_215,
                foundation: "9".into(),
                component: 2,
                related: Some("203.0.113.5:3478".parse().unwrap()),
                tcp_type: None,
            },
        ],
        end_of_candidates: true,
        seen: None,
    };
    (a, b, nonce, d)
}

/// The golden envelope, recomputed and compared byte for byte. A change of the wire format
/// must be deliberate: regenerate with `ICEPACT_BLESS=1 cargo test --test wire golden`.
#[test]
fn golden_envelope_v1_is_stable() {
    let (a, b, nonce, d) = golden_inputs();
    let a_to_b = Channel::new(&a, b.public_key()).unwrap();
    let envelope = a_to_b.seal(&d, nonce).unwrap();
    let body = Body {
        sender: a.public_key(),
        recipient: b.public_key(),
        description: d.clone(),
    }
    .encode(&Limits::default())
    .unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/envelope_v1.hex");
    if std::env::var_os("ICEPACT_BLESS").is_some() {
        let text = format!(
            "# icepact wire format v1: golden envelope (see tests/wire.rs, golden_inputs).\n\
             # `body` is the sealed plaintext (protobuf SessionDescription), `envelope` the\n\
             # protobuf Envelope as published. Regenerate only for a deliberate format change.\n\
             sender_sk = {}\nrecipient_sk = {}\nnonce = {}\nbody = {}\nenvelope = {}\n",
            hex(&std::array::from_fn::<u8, 32, _>(|i| i as u8 + 1)),
            hex(&std::array::from_fn::<u8, 32, _>(|i| 0xa0 ^ i as u8)),
            hex(&nonce.0),
            hex(&body),
            hex(&envelope)
        );
        std::fs::write(path, text).unwrap();
    }
    let text = std::fs::read_to_string(path).expect("tests/vectors/envelope_v1.hex");
    let v = vectors(&text);
    assert_eq!(
        hex(&body),
        hex(&vector(&v, "body")),
        "body encoding changed"
    );
    assert_eq!(
        hex(&envelope),
        hex(&vector(&v, "envelope")),
        "envelope encoding changed"
    );

    // The vector opens, and the hand-written envelope encoder is the canonical protobuf one.
    let b_from_a = Channel::new(&b, a.public_key()).unwrap();
    assert_eq!(b_from_a.open(&envelope).unwrap(), d);
    let parsed = proto::Envelope::decode(envelope.as_slice()).unwrap();
    assert_eq!(parsed.encode_to_vec(), envelope);
    let contents = parsed.contents.unwrap();
    assert_eq!(contents.nonce, nonce.0);
    assert_eq!(b_from_a.open_box(nonce, &contents.body).unwrap(), body);
}

// ---------------------------------------------------------------------------------------------
// Reflection, re-addressing, forged bindings, replay

struct Trio {
    a: SecretKey,
    b: SecretKey,
    c: SecretKey,
}

fn trio() -> Trio {
    Trio {
        a: SecretKey::from_bytes([0x11; 32]),
        b: SecretKey::from_bytes([0x22; 32]),
        c: SecretKey::from_bytes([0x33; 32]),
    }
}

fn description() -> Description {
    let (_, _, _, d) = golden_inputs();
    d
}

fn envelope_proto(bytes: &[u8]) -> proto::Envelope {
    proto::Envelope::decode(bytes).unwrap()
}

/// An envelope with an arbitrary (possibly hostile) body, properly sealed by `from` for `to`.
fn forge(from: &Channel, sender: PublicKey, recipient: PublicKey, body: &[u8]) -> Vec<u8> {
    let nonce = Nonce([7; 24]);
    proto::Envelope {
        sender: sender.0.to_vec(),
        recipient: recipient.0.to_vec(),
        contents: Some(proto::EncryptedMessage {
            body: from.seal_box(nonce, body),
            nonce: nonce.0.to_vec(),
        }),
    }
    .encode_to_vec()
}

fn body_proto(from: &Channel, d: &Description) -> proto::SessionDescription {
    let bytes = Body {
        sender: from.local_key(),
        recipient: from.remote_key(),
        description: d.clone(),
    }
    .encode(&Limits::default())
    .unwrap();
    proto::SessionDescription::decode(bytes.as_slice()).unwrap()
}

#[test]
fn reflected_envelope_is_rejected() {
    let t = trio();
    let a_b = Channel::new(&t.a, t.b.public_key()).unwrap();
    let envelope = a_b.seal(&description(), Nonce([1; 24])).unwrap();
    // The backend swaps sender and recipient and hands A its own message.
    let mut e = envelope_proto(&envelope);
    std::mem::swap(&mut e.sender, &mut e.recipient);
    let reflected = e.encode_to_vec();
    // The box opens (the key is symmetric), but the sealed keys give it away.
    assert_eq!(
        a_b.open(&reflected),
        Err(Error::Binding(BindingError::Reflected))
    );
}

#[test]
fn re_addressed_envelope_is_rejected() {
    let t = trio();
    let a_b = Channel::new(&t.a, t.b.public_key()).unwrap();
    let b_a = Channel::new(&t.b, t.a.public_key()).unwrap();
    let c_a = Channel::new(&t.c, t.a.public_key()).unwrap();
    let b_c = Channel::new(&t.b, t.c.public_key()).unwrap();
    let envelope = a_b.seal(&description(), Nonce([2; 24])).unwrap();
    assert!(b_a.open(&envelope).is_ok());

    // Recipient rewritten to C: B sees it is not addressed to it; C cannot open it.
    let mut e = envelope_proto(&envelope);
    e.recipient = t.c.public_key().0.to_vec();
    let to_c = e.encode_to_vec();
    assert_eq!(b_a.open(&to_c), Err(Error::NotForUs));
    assert_eq!(c_a.open(&to_c), Err(Error::Authentication));

    // Sender rewritten to C: B's channel with A refuses the sender, its channel with C the box.
    let mut e = envelope_proto(&envelope);
    e.sender = t.c.public_key().0.to_vec();
    let from_c = e.encode_to_vec();
    assert_eq!(b_a.open(&from_c), Err(Error::UnexpectedSender));
    assert_eq!(b_c.open(&from_c), Err(Error::Authentication));
}

#[test]
fn body_bound_to_other_keys_is_rejected() {
    let t = trio();
    let a_b = Channel::new(&t.a, t.b.public_key()).unwrap();
    let b_a = Channel::new(&t.b, t.a.public_key()).unwrap();
    let (pa, pb, pc) = (t.a.public_key(), t.b.public_key(), t.c.public_key());
    // A (or anyone holding the A-B key) seals a body naming C as its recipient.
    let mut m = body_proto(&a_b, &description());
    m.recipient = pc.0.to_vec();
    let e = forge(&a_b, pa, pb, &m.encode_to_vec());
    assert_eq!(b_a.open(&e), Err(Error::Binding(BindingError::Recipient)));
    // ... or naming C as its sender.
    let mut m = body_proto(&a_b, &description());
    m.sender = pc.0.to_vec();
    let e = forge(&a_b, pa, pb, &m.encode_to_vec());
    assert_eq!(b_a.open(&e), Err(Error::Binding(BindingError::Sender)));
}

/// Drains a peer and seals every description it wants sent.
fn drain_sealed(p: &mut Peer, ch: &Channel, rng: &mut ChaCha20Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(o) = p.poll_output() {
        if let Output::Send(d) = o {
            out.push(ch.seal(&d, Nonce::random(rng)).unwrap());
        }
    }
    out
}

#[test]
fn replayed_envelope_is_ignored_by_the_peer() {
    let t = trio();
    let (pa, pb) = (t.a.public_key(), t.b.public_key());
    let a_b = Channel::new(&t.a, pb).unwrap();
    let b_a = Channel::new(&t.b, pa).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let now = Instant::now();
    let mut a = Peer::new(
        Config::default(),
        PeerSetup {
            local: pa,
            remote: pb,
            epoch_floor: 10,
            seed: Seed::insecure_from_u64(1),
        },
        now,
    )
    .unwrap();
    let mut b = Peer::new(
        Config::default(),
        PeerSetup {
            local: pb,
            remote: pa,
            epoch_floor: 20,
            seed: Seed::insecure_from_u64(2),
        },
        now,
    )
    .unwrap();

    let first = drain_sealed(&mut a, &a_b, &mut rng);
    assert_eq!(first.len(), 1);
    assert_eq!(
        b_a.deliver(&mut b, now, &first[0]).unwrap(),
        Disposition::Applied
    );
    // A hears from B and sends a newer version of its session (acknowledging B's).
    for e in drain_sealed(&mut b, &b_a, &mut rng) {
        let _ = a_b.deliver(&mut a, now, &e).unwrap();
    }
    let newer = drain_sealed(&mut a, &a_b, &mut rng);
    let newest = newer.last().expect("A answers B");
    assert_eq!(
        b_a.deliver(&mut b, now, newest).unwrap(),
        Disposition::Applied
    );
    let applied = b.newest_applied().unwrap();
    assert!(
        applied
            > SessionRef {
                epoch: 10,
                version: 0
            }
    );

    // The backend replays the first envelope: authentic, but stale.
    assert_eq!(
        b_a.deliver(&mut b, now, &first[0]).unwrap(),
        Disposition::Ignored(IgnoreReason::Stale {
            got: SessionRef {
                epoch: 10,
                version: 0
            },
            newest: applied
        })
    );
    // ... and the newest one again: a duplicate.
    assert_eq!(
        b_a.deliver(&mut b, now, newest).unwrap(),
        Disposition::Ignored(IgnoreReason::Duplicate(applied))
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile input: each error, and the peer untouched

/// The A→B and B←A channels, made once (key checks are slow in debug builds).
fn channels() -> &'static (Channel, Channel) {
    static CHANNELS: OnceLock<(Channel, Channel)> = OnceLock::new();
    CHANNELS.get_or_init(|| {
        let t = trio();
        (
            Channel::new(&t.a, t.b.public_key()).unwrap(),
            Channel::new(&t.b, t.a.public_key()).unwrap(),
        )
    })
}

/// B's peer bound to A's first description, B's channel with A, and A's channel.
fn bound_b() -> (Peer, &'static Channel, &'static Channel, Instant) {
    let (a_b, b_a) = channels();
    let (pa, pb) = (a_b.local_key(), a_b.remote_key());
    let now = Instant::now();
    let mut a = Peer::new(
        Config::default(),
        PeerSetup {
            local: pa,
            remote: pb,
            epoch_floor: 10,
            seed: Seed::insecure_from_u64(1),
        },
        now,
    )
    .unwrap();
    let mut b = Peer::new(
        Config::default(),
        PeerSetup {
            local: pb,
            remote: pa,
            epoch_floor: 20,
            seed: Seed::insecure_from_u64(2),
        },
        now,
    )
    .unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    for e in drain_sealed(&mut a, a_b, &mut rng) {
        let _ = b_a.deliver(&mut b, now, &e).unwrap();
    }
    while b.poll_output().is_some() {}
    (b, b_a, a_b, now)
}

/// Delivers `envelope` to B and checks the error and that B did not change.
fn rejected(envelope: &[u8], expected: Error) {
    let (mut b, b_a, _, now) = bound_b();
    let before = b.clone();
    assert_eq!(b_a.deliver(&mut b, now, envelope), Err(expected));
    assert_eq!(b, before, "a rejected envelope changed the peer");
}

/// A properly sealed A→B envelope around the body `edit` makes of a valid one.
fn with_body(edit: impl FnOnce(&mut proto::SessionDescription)) -> Vec<u8> {
    let (_, _, a_b, _) = bound_b();
    let mut m = body_proto(a_b, &description());
    edit(&mut m);
    forge(a_b, a_b.local_key(), a_b.remote_key(), &m.encode_to_vec())
}

/// A valid A→B envelope with its outer protobuf edited.
fn with_envelope(edit: impl FnOnce(&mut proto::Envelope)) -> Vec<u8> {
    let (_, _, a_b, _) = bound_b();
    let e = a_b.seal(&description(), Nonce([5; 24])).unwrap();
    let mut p = envelope_proto(&e);
    edit(&mut p);
    p.encode_to_vec()
}

#[test]
fn oversized_envelope_is_refused_before_decoding() {
    // Not even protobuf: the size check comes first.
    let huge = vec![0xff; 64 * 1024 + 1];
    rejected(
        &huge,
        Error::TooLarge {
            len: 64 * 1024 + 1,
            max: 64 * 1024,
        },
    );
    // A smaller configured limit applies to sealing too.
    let t = trio();
    let small = Channel::new(&t.a, t.b.public_key())
        .unwrap()
        .with_limits(Limits {
            max_envelope_len: 100,
            max_candidates: 32,
        });
    assert!(matches!(
        small.seal(&description(), Nonce([0; 24])),
        Err(Error::TooLarge { max: 100, .. })
    ));
}

#[test]
fn malformed_envelopes_are_refused() {
    rejected(&[0x0a, 0x05, 1], Error::Envelope(EnvelopeError::Framing));
    rejected(
        &with_envelope(|e| e.sender.truncate(31)),
        Error::Envelope(EnvelopeError::KeyLength {
            field: "sender",
            len: 31,
        }),
    );
    rejected(
        &with_envelope(|e| e.recipient.push(0)),
        Error::Envelope(EnvelopeError::KeyLength {
            field: "recipient",
            len: 33,
        }),
    );
    rejected(
        &with_envelope(|e| e.contents.as_mut().unwrap().nonce.truncate(12)),
        Error::Envelope(EnvelopeError::NonceLength(12)),
    );
    rejected(
        &with_envelope(|e| e.contents = None),
        Error::Envelope(EnvelopeError::MissingContents),
    );
    rejected(
        &with_envelope(|e| e.recipient = vec![0x44; 32]),
        Error::NotForUs,
    );
    rejected(
        &with_envelope(|e| e.sender = vec![0x44; 32]),
        Error::UnexpectedSender,
    );
    rejected(
        &with_envelope(|e| e.contents.as_mut().unwrap().body[20] ^= 0x80),
        Error::Authentication,
    );
    rejected(
        &with_envelope(|e| e.contents.as_mut().unwrap().nonce[0] ^= 1),
        Error::Authentication,
    );
    rejected(
        &with_envelope(|e| e.contents.as_mut().unwrap().body.truncate(15)),
        Error::Authentication,
    );
}

fn candidate_error(index: usize, error: CandidateError) -> Error {
    Error::Body(BodyError::Candidate { index, error })
}

#[test]
fn hostile_bodies_are_refused() {
    rejected(
        &with_body(|m| m.candidates[1].r#type = 9),
        candidate_error(1, CandidateError::Type(9)),
    );
    rejected(
        &with_body(|m| m.candidates[0].r#type = 0),
        candidate_error(0, CandidateError::Type(0)),
    );
    rejected(
        &with_body(|m| m.candidates[2].network_type = -1),
        candidate_error(2, CandidateError::NetworkType(-1)),
    );
    rejected(
        &with_body(|m| m.candidates[0].network_type = proto::NetworkType::Udp6.into()),
        candidate_error(0, CandidateError::FamilyMismatch),
    );
    rejected(
        &with_body(|m| m.candidates[0].address = "192.0.2.256".into()),
        candidate_error(0, CandidateError::Address),
    );
    rejected(
        &with_body(|m| m.candidates[1].related_address.as_mut().unwrap().address = "::g".into()),
        candidate_error(1, CandidateError::Address),
    );
    rejected(
        &with_body(|m| m.candidates[0].port = 65536),
        candidate_error(0, CandidateError::Port(65536)),
    );
    rejected(
        &with_body(|m| m.candidates[2].related_address.as_mut().unwrap().port = -1),
        candidate_error(2, CandidateError::Port(-1)),
    );
    rejected(
        &with_body(|m| m.candidates[0].foundation = "f".repeat(33)),
        candidate_error(0, CandidateError::Foundation),
    );
    rejected(
        &with_body(|m| m.candidates[0].foundation = "a b".into()),
        candidate_error(0, CandidateError::Foundation),
    );
    rejected(
        &with_body(|m| m.candidates[0].component = 0),
        candidate_error(0, CandidateError::Component(0)),
    );
    rejected(
        &with_body(|m| m.candidates[0].component = 257),
        candidate_error(0, CandidateError::Component(257)),
    );
    rejected(
        &with_body(|m| m.candidates[0].priority = -5),
        candidate_error(0, CandidateError::Priority(-5)),
    );
    rejected(
        &with_body(|m| m.credentials = None),
        Error::Body(BodyError::MissingCredentials),
    );
    rejected(
        &with_body(|m| m.credentials.as_mut().unwrap().pwd = "p".repeat(257)),
        Error::Body(BodyError::CredentialLength {
            field: "pwd",
            len: 257,
            max: 256,
        }),
    );
    rejected(
        &with_body(|m| m.credentials.as_mut().unwrap().ufrag.clear()),
        Error::Body(BodyError::CredentialLength {
            field: "ufrag",
            len: 0,
            max: 256,
        }),
    );
    rejected(
        &with_body(|m| {
            let c = m.candidates[0].clone();
            m.candidates = vec![c; 33];
        }),
        Error::Body(BodyError::TooManyCandidates { count: 33, max: 32 }),
    );
    // Candidates past the limit are counted, never decoded: 1,000 of them (within the envelope size
    // limit) are refused without allocating 1,000 candidates.
    rejected(
        &with_body(|m| {
            let c = m.candidates[0].clone();
            m.candidates = vec![c; 1_000];
        }),
        Error::Body(BodyError::TooManyCandidates {
            count: 1_000,
            max: 32,
        }),
    );
    // Candidates are parsed in order: an invalid one within the limit is reported first.
    rejected(
        &with_body(|m| m.candidates = vec![proto::Candidate::default(); 30_000]),
        candidate_error(0, CandidateError::Type(0)),
    );
    let (_, _, a_b, _) = bound_b();
    let garbage = forge(a_b, a_b.local_key(), a_b.remote_key(), &[0x0f]);
    rejected(&garbage, Error::Body(BodyError::Framing));
}

#[test]
fn peer_with_other_keys_is_refused() {
    let (_, b_a, _, now) = bound_b();
    let mut other = Peer::new(
        Config::default(),
        PeerSetup {
            local: b_a.local_key(),
            remote: PublicKey([0x77; 32]),
            epoch_floor: 1,
            seed: Seed::insecure_from_u64(1),
        },
        now,
    )
    .unwrap();
    let e = with_envelope(|_| {});
    assert_eq!(
        b_a.deliver(&mut other, now, &e),
        Err(Error::Key(KeyError::PeerMismatch))
    );
}

#[test]
fn seal_refuses_what_the_receiver_would_reject() {
    let (_, _, a_b, _) = bound_b();
    let mut d = description();
    d.candidates = vec![d.candidates[0].clone(); 33];
    assert_eq!(
        a_b.seal(&d, Nonce([0; 24])),
        Err(Error::Body(BodyError::TooManyCandidates {
            count: 33,
            max: 32
        }))
    );
    let mut d = description();
    d.candidates[1].priority = 1 << 31;
    assert_eq!(
        a_b.seal(&d, Nonce([0; 24])),
        Err(candidate_error(1, CandidateError::Priority(1 << 31)))
    );
    let mut d = description();
    d.candidates[0].component = 0;
    assert_eq!(
        a_b.seal(&d, Nonce([0; 24])),
        Err(candidate_error(0, CandidateError::Component(0)))
    );
    let mut d = description();
    d.credentials.pwd = Default::default();
    assert!(matches!(
        a_b.seal(&d, Nonce([0; 24])),
        Err(Error::Body(BodyError::CredentialLength {
            field: "pwd",
            ..
        }))
    ));
}

#[test]
fn header_peek_reads_the_addressing() {
    let (_, b_a, a_b, _) = bound_b();
    let e = a_b.seal(&description(), Nonce([0; 24])).unwrap();
    assert_eq!(
        Header::peek(&e, &Limits::default()).unwrap(),
        Header {
            sender: b_a.remote_key(),
            recipient: b_a.local_key(),
        }
    );
}

#[test]
fn ipv6_and_tcp_candidates_round_trip() {
    let (_, b_a, a_b, _) = bound_b();
    let mut d = description();
    d.candidates.push(Candidate {
        kind: CandidateKind::PeerReflexive,
        transport: Transport::Tcp,
        addr: SocketAddr::from(([0xfd00, 0, 0, 0, 0, 0, 0, 9], 9)),
        priority: 0,
        foundation: "Z".into(),
        component: 256,
        related: None,
        tcp_type: Some(TcpType::Passive),
    });
    let e = a_b.seal(&d, Nonce([0; 24])).unwrap();
    assert_eq!(b_a.open(&e).unwrap(), d);
}

/// cunicu's `Candidate.tcp_type` (field 3, RFC 6544 `tcptype`): a TCP candidate with it decodes
/// to the same `TcpType` through the fast decoder and through prost (the whole body used to be
/// refused as `Framing`); a UDP candidate with one and an unknown value are typed errors; and
/// cunicu's `relay_protocol` (field 10) is skipped like any unknown field.
#[test]
fn cunicu_tcp_types_decode_and_bad_ones_are_typed_errors() {
    let (_, b_a, _, _) = bound_b();
    // Candidate 2 of `description()` is a TCP relay candidate.
    for (wire, typed) in [
        (proto::TcpType::Active, TcpType::Active),
        (proto::TcpType::Passive, TcpType::Passive),
        (proto::TcpType::SimultaneousOpen, TcpType::SimultaneousOpen),
    ] {
        let envelope = with_body(|m| m.candidates[2].tcp_type = wire.into());
        let d = b_a.open(&envelope).expect("a cunicu TCP candidate decodes");
        assert_eq!(d.candidates[2].tcp_type, Some(typed));
        let mut expected = description();
        expected.candidates[2].tcp_type = Some(typed);
        assert_eq!(d, expected);
    }
    // The prost reference path parses the same message to the same candidate.
    let (_, _, a_b, _) = bound_b();
    let mut m = body_proto(a_b, &description());
    m.candidates[2].tcp_type = proto::TcpType::Passive.into();
    let limits = icepact::wire::Limits::default();
    let fast = icepact::wire::Body::decode(&m.encode_to_vec(), &limits).unwrap();
    let reference = icepact::wire::Body::from_proto(m, &limits).unwrap();
    assert_eq!(fast, reference);
    rejected(
        &with_body(|m| m.candidates[0].tcp_type = proto::TcpType::Active.into()),
        candidate_error(0, CandidateError::TcpTypeOnUdp),
    );
    rejected(
        &with_body(|m| m.candidates[2].tcp_type = 7),
        candidate_error(2, CandidateError::TcpType(7)),
    );
    // relay_protocol = TLS (3) on the relay candidate: skipped.
    let with_relay_protocol = with_body_bytes(|bytes| {
        // Append field 10 (varint 3) inside candidate 2: re-encode that candidate by hand.
        let mut m = proto::SessionDescription::decode(&bytes[..]).unwrap();
        let mut c = m.candidates[2].encode_to_vec();
        c.extend_from_slice(&[10 << 3, 3]);
        m.candidates.truncate(2);
        let mut out = m.encode_to_vec();
        out.extend_from_slice(&[(7 << 3) | 2, c.len() as u8]);
        out.extend_from_slice(&c);
        out
    });
    let d = b_a
        .open(&with_relay_protocol)
        .expect("relay_protocol is skipped");
    assert_eq!(d.candidates.len(), 3);
    assert_eq!(d.candidates[2], description().candidates[2]);
}

/// A properly sealed A→B envelope around the bytes `edit` makes of a valid body.
fn with_body_bytes(edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let (_, _, a_b, _) = bound_b();
    let bytes = edit(body_proto(a_b, &description()).encode_to_vec());
    forge(a_b, a_b.local_key(), a_b.remote_key(), &bytes)
}
