//! The injected, seedable random source of a peer.
//!
//! The core never reads a global RNG: everything random (credentials, back-off jitter) comes from
//! this ChaCha8 stream, seeded by the caller with a 256-bit [`Seed`]. It is part of the peer's
//! state, so it must be `Clone + Eq + Hash`: the stream is identified by its seed, stream number
//! and word position.
//!
//! ChaCha8 rather than ChaCha20: with a secret 256-bit key, the best published attacks on
//! reduced-round ChaCha reach 7 rounds and are far from practical (Aumasson, "Too Much Crypto",
//! 2019, argues 8 rounds suffice); the stream only derives ICE credentials, which live for one
//! session and are sent sealed. The generator is pinned so seeds reproduce across versions.

use std::hash::{Hash, Hasher};

use rand_chacha::ChaCha8Rng;
use rand_core::{CryptoRng, OsRng, RngCore, SeedableRng, TryRngCore};
use smol_str::SmolStr;

/// The 256 secret bits behind a [`Peer`](crate::Peer)'s randomness: its ICE credentials and
/// its back-off jitter.
///
/// **Keep it secret and draw it fresh** for every peer and every process: whoever knows the
/// seed can compute every ufrag and password the peer will use. Draw it from a
/// cryptographically secure generator: [`Seed::from_os_rng`] (the usual choice),
/// [`Seed::from_rng`] with a CSPRNG, or [`Seed::from_bytes`] with bytes from `getrandom`. RFC 8445 §5.3 asks for at least 24 bits of
/// randomness in a ufrag and 128 in a password; the generated ufrag (16 letters, 91 bits) and
/// password (32 letters, 182 bits) carry that much as long as the seed does.
///
/// `Debug` does not print the bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Seed([u8; 32]);

impl Seed {
    /// 32 bytes from the operating system's random generator (`getrandom`).
    pub fn from_os_rng() -> Result<Seed, OsRandomError> {
        let mut bytes = [0; 32];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| OsRandomError(e.to_string()))?;
        Ok(Seed(bytes))
    }

    /// 32 bytes from a cryptographically secure generator (for example `rand::rngs::OsRng`, or
    /// a ChaCha generator seeded from it).
    pub fn from_rng<R: CryptoRng + ?Sized>(rng: &mut R) -> Seed {
        let mut bytes = [0; 32];
        rng.fill_bytes(&mut bytes);
        Seed(bytes)
    }

    /// These 32 bytes, which must be secret and uniformly random.
    pub const fn from_bytes(bytes: [u8; 32]) -> Seed {
        Seed(bytes)
    }

    /// The bytes, for generators inside the crate.
    pub(crate) fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// A seed expanded from a 64-bit number, for reproducible tests, model checkers and
    /// simulators only: 64 bits can be searched, so credentials derived from them are not
    /// secret. Gives the same stream as earlier versions' `u64` seeds.
    #[doc(hidden)]
    pub fn insecure_from_u64(n: u64) -> Seed {
        Seed(ChaCha8Rng::seed_from_u64(n).get_seed())
    }
}

/// The operating system's random generator failed (a sandbox without `getrandom`, an early
/// boot without entropy).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random generator failed: {0}")]
pub struct OsRandomError(String);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

/// A deterministic random stream (ChaCha8, pinned so seeds reproduce across versions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRng(ChaCha8Rng);

impl Hash for SessionRng {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Seed, stream and position determine every future output, so they identify the value
        // exactly as `Eq` (which compares the same three) does.
        self.0.get_seed().hash(state);
        self.0.get_stream().hash(state);
        self.0.get_word_pos().hash(state);
    }
}

impl SessionRng {
    /// The stream of `seed`.
    pub fn from_seed(seed: Seed) -> SessionRng {
        SessionRng(ChaCha8Rng::from_seed(seed.0))
    }

    /// A uniform value in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        // 53 random bits fill an f64 mantissa exactly.
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// 128 bits as 32 lowercase hex digits (a session token of the room service).
    pub(crate) fn hex_token(&mut self) -> String {
        let (a, b) = (self.0.next_u64(), self.0.next_u64());
        format!("{a:016x}{b:016x}")
    }

    /// `n` random ASCII letters.
    pub(crate) fn letters(&mut self, n: usize) -> SmolStr {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        (0..n)
            .map(|_| ALPHABET[(self.0.next_u32() % ALPHABET.len() as u32) as usize] as char)
            .collect()
    }
}
