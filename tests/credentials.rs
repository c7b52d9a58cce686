//! ICE credentials carry the randomness RFC 8445 §5.3 asks for: "The ufrag MUST contain at
//! least 24 bits of randomness, and the password MUST contain at least 128 bits of randomness."
//! Credentials come from the peer's 256-bit secret seed, all of whose bits matter.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use icepact::{Config, Peer, PeerSetup, PublicKey, Seed, PWD_LEN, UFRAG_LEN};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn credentials(seed: Seed) -> (String, String) {
    let peer = Peer::new(
        Config::default(),
        PeerSetup {
            local: PublicKey([1; 32]),
            remote: PublicKey([2; 32]),
            epoch_floor: 1,
            seed,
        },
        Instant::now(),
    )
    .unwrap();
    let c = peer.local_credentials().expect("a new peer has a session");
    (c.ufrag.to_string(), c.pwd.to_string())
}

#[test]
fn every_bit_of_the_seed_changes_the_credentials() {
    // Seeds that agree on 248 of 256 bits: a 64-bit seed in disguise would give equal ones.
    let base = [0x5a; 32];
    let reference = credentials(Seed::from_bytes(base));
    for byte in 0..32 {
        let mut other = base;
        other[byte] ^= 1;
        assert_ne!(
            credentials(Seed::from_bytes(other)),
            reference,
            "byte {byte} of the seed is ignored"
        );
    }
}

#[test]
fn generated_credentials_meet_rfc_8445_entropy() {
    const PEERS: usize = 20_000;
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    let mut ufrags = BTreeSet::new();
    let mut pwds = BTreeSet::new();
    let mut letters: BTreeMap<char, u64> = BTreeMap::new();
    for _ in 0..PEERS {
        let (ufrag, pwd) = credentials(Seed::from_rng(&mut rng));
        assert_eq!(ufrag.len(), UFRAG_LEN);
        assert_eq!(pwd.len(), PWD_LEN);
        for c in ufrag.chars().chain(pwd.chars()) {
            assert!(c.is_ascii_alphabetic(), "{c:?} is not an ICE-safe letter");
            *letters.entry(c).or_default() += 1;
        }
        assert!(ufrags.insert(ufrag), "a ufrag repeated");
        assert!(pwds.insert(pwd), "a password repeated");
    }
    // Every letter of the 52-letter alphabet, with the empirical (Shannon) entropy per letter
    // close to log2(52) = 5.70 bits.
    assert_eq!(letters.len(), 52);
    let total: u64 = letters.values().sum();
    let entropy: f64 = letters
        .values()
        .map(|&n| {
            let p = n as f64 / total as f64;
            -p * p.log2()
        })
        .sum();
    assert!(entropy > 5.69, "{entropy} bits per letter");
    // Uniform letters: chi-square with 51 degrees of freedom stays below its 0.1 % quantile
    // (87.0) unless the generator is biased.
    let expected = total as f64 / 52.0;
    let chi2: f64 = letters
        .values()
        .map(|&n| (n as f64 - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 87.0, "chi-square {chi2}");
    // So the ufrag carries ≥ 24 bits and the password ≥ 128 bits (RFC 8445 §5.3).
    let ufrag_bits = entropy * UFRAG_LEN as f64;
    let pwd_bits = entropy * PWD_LEN as f64;
    assert!(ufrag_bits >= 24.0, "ufrag {ufrag_bits} bits");
    assert!(pwd_bits >= 128.0, "password {pwd_bits} bits");
}

#[test]
fn seeds_do_not_print_their_bytes() {
    assert_eq!(format!("{:?}", Seed::from_bytes([0xab; 32])), "Seed(..)");
}

#[test]
fn the_os_generator_gives_distinct_seeds() {
    let a = Seed::from_os_rng().expect("getrandom works here");
    let b = Seed::from_os_rng().expect("getrandom works here");
    assert_ne!(a, b);
    assert_ne!(credentials(a), credentials(b));
}

#[test]
fn secret_keys_are_generated_and_read_as_wireguard_writes_them() {
    use icepact::wire::SecretKey;
    let a = SecretKey::from_os_rng().expect("getrandom works here");
    let b = SecretKey::generate(&mut ChaCha20Rng::from_seed([3; 32]));
    assert_ne!(a.public_key(), b.public_key());
    let text = a.to_base64();
    assert_eq!(text.len(), 44);
    let back: SecretKey = text.parse().unwrap();
    assert_eq!(back.public_key(), a.public_key());
    // The public key round-trips too, and Debug never shows the secret.
    let public: PublicKey = a.public_key().to_string().parse().unwrap();
    assert_eq!(public, a.public_key());
    assert!(!format!("{a:?}").contains(&text));
    assert!("too short".parse::<SecretKey>().is_err());
}

/// A public key with bit 255 set (or a u-coordinate of 2^255 − 19 or more) is the same X25519
/// key as a canonical one under other bytes: refused when parsed and when a channel or an
/// endpoint session is made with it, so one peer can never appear as two.
#[test]
fn non_canonical_public_keys_are_refused_at_the_boundary() {
    use icepact::wire::{Channel, Error, KeyError, SecretKey};
    use icepact::{Endpoint, EndpointConfig, EndpointError, KeyParseError};
    let ours = SecretKey::from_bytes([3; 32]);
    let theirs = SecretKey::from_bytes([4; 32]).public_key();
    assert!(theirs.is_canonical());
    let mut high = theirs;
    high.0[31] |= 0x80;
    // u = 2^255 − 19 + 1 (= u 1 after reduction), and 2^255 − 1.
    let mut p_plus_1 = PublicKey([0xff; 32]);
    p_plus_1.0[0] = 0xee;
    p_plus_1.0[31] = 0x7f;
    let mut max = PublicKey([0xff; 32]);
    max.0[31] = 0x7f;
    let mut p_minus_1 = p_plus_1;
    p_minus_1.0[0] = 0xec;
    assert!(p_minus_1.is_canonical());
    for bad in [high, p_plus_1, max] {
        assert!(!bad.is_canonical(), "{bad:?}");
        assert_eq!(
            bad.to_string().parse::<PublicKey>(),
            Err(KeyParseError::NonCanonical)
        );
        assert!(matches!(
            Channel::new(&ours, bad),
            Err(Error::Key(KeyError::NonCanonical))
        ));
        let mut endpoint = Endpoint::new(
            EndpointConfig::default(),
            ours.clone(),
            1,
            Seed::from_bytes([5; 32]),
        );
        assert!(matches!(
            endpoint.add_peer(std::time::Instant::now(), bad),
            Err(EndpointError::Key(Error::Key(KeyError::NonCanonical)))
        ));
    }
    assert_eq!(theirs.to_string().parse::<PublicKey>(), Ok(theirs));
}
