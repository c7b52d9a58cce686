//! proptest for the wire format: every valid description survives seal → open; every
//! truncation, bit flip or random input is an error and never a panic; the hand-written codec
//! agrees with the prost-generated reference on everything either accepts.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Instant;

use icepact::strategies;
use icepact::wire::{proto, Body, Channel, Limits, Nonce, SecretKey};
use icepact::{Config, Description, Peer, PeerSetup, Seed};
use proptest::prelude::*;
use prost::Message as _;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// A→B and B←A, made once.
fn channels() -> &'static (Channel, Channel) {
    static CHANNELS: OnceLock<(Channel, Channel)> = OnceLock::new();
    CHANNELS.get_or_init(|| {
        let (a, b) = (
            SecretKey::from_bytes([0x5a; 32]),
            SecretKey::from_bytes([0xa5; 32]),
        );
        (
            Channel::new(&a, b.public_key()).unwrap(),
            Channel::new(&b, a.public_key()).unwrap(),
        )
    })
}

/// Any description within the wire limits: the core's strategy, with priorities in the
/// protobuf `int32` range (RFC 8445 priorities are below 2^31 anyway) and some addresses moved
/// to IPv6 so both families and their text forms are exercised.
fn wire_description() -> impl Strategy<Value = Description> {
    (
        strategies::description(),
        proptest::collection::vec((any::<bool>(), any::<bool>(), any::<[u16; 8]>()), 4),
    )
        .prop_map(|(mut d, v6)| {
            for (c, (addr6, rel6, segs)) in d.candidates.iter_mut().zip(v6) {
                c.priority &= 0x7fff_ffff;
                let ip6 = IpAddr::V6(Ipv6Addr::from(segs));
                if addr6 {
                    c.addr = SocketAddr::new(ip6, c.addr.port());
                }
                if let (true, Some(r)) = (rel6, c.related.as_mut()) {
                    *r = SocketAddr::new(ip6, r.port());
                }
            }
            d
        })
}

/// An envelope A sealed for B, with the description it carries.
fn sealed() -> impl Strategy<Value = (Description, Vec<u8>)> {
    (wire_description(), any::<u64>()).prop_map(|(d, seed)| {
        let e = channels()
            .0
            .seal(&d, Nonce::random(&mut ChaCha20Rng::seed_from_u64(seed)))
            .unwrap();
        (d, e)
    })
}

/// The reference decode: prost's generated types, then the shared checks.
fn reference_decode(bytes: &[u8]) -> Option<Body> {
    let m = proto::SessionDescription::decode(bytes).ok()?;
    Body::from_proto(m, &Limits::default()).ok()
}

/// Cases per property (each case is a seal and an open: cheap).
const CASES: u32 = 512;

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn valid_descriptions_round_trip((d, envelope) in sealed()) {
        let (a_b, b_a) = channels();
        prop_assert_eq!(b_a.open(&envelope).unwrap(), d.clone());
        // The hand-written encoder writes exactly what prost writes for the generated message.
        let body = Body { sender: a_b.local_key(), recipient: a_b.remote_key(), description: d };
        let fast = body.encode(&Limits::default()).unwrap();
        let reference = body.to_proto(&Limits::default()).unwrap().encode_to_vec();
        prop_assert_eq!(&fast, &reference);
        prop_assert_eq!(Body::decode(&fast, &Limits::default()).unwrap(), body.clone());
        prop_assert_eq!(reference_decode(&fast), Some(body));
        // And the envelope is the canonical encoding of the generated Envelope.
        let parsed = proto::Envelope::decode(envelope.as_slice()).unwrap();
        prop_assert_eq!(parsed.encode_to_vec(), envelope);
    }

    #[test]
    fn truncated_envelopes_are_errors((_, envelope) in sealed(), cut in any::<prop::sample::Index>()) {
        let len = cut.index(envelope.len());
        prop_assert!(channels().1.open(&envelope[..len]).is_err());
    }

    #[test]
    fn bit_flipped_envelopes_are_errors((_, envelope) in sealed(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut e = envelope;
        let i = at.index(e.len());
        e[i] ^= 1 << bit;
        prop_assert!(channels().1.open(&e).is_err());
    }

    #[test]
    fn random_bytes_are_errors(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        prop_assert!(channels().1.open(&bytes).is_err());
    }

    /// Hostile envelopes delivered to a real peer: rejected, and the peer is unchanged.
    #[test]
    fn mangled_envelopes_leave_the_peer_untouched(
        (_, envelope) in sealed(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let (a_b, b_a) = channels();
        let now = Instant::now();
        let mut peer = Peer::new(Config::default(), PeerSetup { local: b_a.local_key(), remote: a_b.local_key(), epoch_floor: 1, seed: Seed::insecure_from_u64(1) }, now).unwrap();
        let mut e = envelope;
        for (at, byte) in edits {
            let i = at.index(e.len());
            if e[i] == byte { e[i] ^= 0x40 } else { e[i] = byte }
        }
        let before = peer.clone();
        prop_assert!(b_a.deliver(&mut peer, now, &e).is_err());
        prop_assert_eq!(peer, before);
    }

    /// The fast decoder never panics, and whatever it accepts the reference accepts, equal.
    #[test]
    fn body_decoder_agrees_with_the_reference(
        (d, flips, junk) in (
            wire_description(),
            proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..3),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
    ) {
        let (a_b, _) = channels();
        let body = Body { sender: a_b.local_key(), recipient: a_b.remote_key(), description: d };
        let mut bytes = body.encode(&Limits::default()).unwrap();
        for (at, bit) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        for input in [&bytes[..], &junk[..]] {
            if let Ok(fast) = Body::decode(input, &Limits::default()) {
                prop_assert_eq!(reference_decode(input), Some(fast));
            }
        }
    }
}
