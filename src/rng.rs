//! The injected, seedable random source of a peer.
//!
//! The core never reads a global RNG: everything random (credentials, back-off jitter) comes from
//! this ChaCha8 stream, seeded by the caller. It is part of the peer's state, so it must be
//! `Clone + Eq + Hash`: the stream is identified by its seed, stream number and word position.

use std::hash::{Hash, Hasher};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use smol_str::SmolStr;

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
    /// A stream from a 64-bit seed.
    pub fn from_seed(seed: u64) -> SessionRng {
        SessionRng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A uniform value in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        // 53 random bits fill an f64 mantissa exactly.
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` random ASCII letters.
    pub(crate) fn letters(&mut self, n: usize) -> SmolStr {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        (0..n)
            .map(|_| ALPHABET[(self.0.next_u32() % ALPHABET.len() as u32) as usize] as char)
            .collect()
    }
}
