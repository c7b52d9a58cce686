//! The wire format: descriptions as protobuf, sealed with NaCl `crypto_box`, in envelopes
//! byte-compatible with cunicu's signaling `Envelope`.
//!
//! The core ([`Peer`](crate::Peer)) never needs this module; it is one way to carry its
//! [`Description`](crate::Description)s over an untrusted backend. One [`Channel`] per remote
//! key holds the precomputed shared key:
//!
//! ```
//! use icepact::wire::{Channel, Nonce, SecretKey};
//! use icepact::{Credentials, Description, SessionRef};
//!
//! let (a, b) = (SecretKey::from_bytes([1; 32]), SecretKey::from_bytes([2; 32]));
//! let a_to_b = Channel::new(&a, b.public_key())?;
//! let b_from_a = Channel::new(&b, a.public_key())?;
//!
//! let d = Description {
//!     session: SessionRef { epoch: 7, version: 0 },
//!     ack: None,
//!     need_reply: true,
//!     credentials: Credentials { ufrag: "ufrag".into(), pwd: "a-password-of-22-chars".into() },
//!     candidates: vec![],
//!     end_of_candidates: false,
//!     seen: None,
//! };
//! // Use `seal` with a cryptographic RNG in real code; the nonce must never repeat.
//! let envelope = a_to_b.seal(&d, Nonce([9; 24]))?;
//! assert_eq!(b_from_a.open(&envelope)?, d);
//!
//! // The same envelope bounced back to A with the keys swapped opens under the same box key,
//! // but the keys sealed inside tell it was A's own message.
//! assert!(a_to_b.open(&envelope).is_err());
//! # Ok::<(), icepact::wire::Error>(())
//! ```
//!
//! See `docs/WIRE.md` for the format, the limits and why the keys are sealed in the body.

mod body;
mod channel;
mod error;
mod pb;
pub mod proto;

pub use body::{Body, MAX_FOUNDATION_LEN};
pub use channel::{Channel, Header, Nonce, SecretKey, NONCE_LEN, TAG_LEN};
pub use error::{BindingError, BodyError, CandidateError, EnvelopeError, Error, KeyError};

use crate::Config;

/// Default largest envelope accepted or sealed: 64 KiB.
pub const DEFAULT_MAX_ENVELOPE_LEN: usize = 64 * 1024;

/// Bounds on what is accepted (and sealed): everything is checked before it costs memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Largest encoded envelope, checked before decoding.
    pub max_envelope_len: usize,
    /// Most candidates in one description ([`Config::max_candidates`]), counted before any is
    /// decoded.
    pub max_candidates: usize,
}

impl Limits {
    /// The limits matching a peer's configuration.
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            max_envelope_len: DEFAULT_MAX_ENVELOPE_LEN,
            max_candidates: config.max_candidates,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_config(&Config::default())
    }
}
