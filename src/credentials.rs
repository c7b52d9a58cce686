//! ICE credentials (username fragment and password) of one session.

use smol_str::SmolStr;

use crate::rng::SessionRng;

/// Length of a generated username fragment (cunicu: 16 letters; RFC 8445 §5.3 asks for ≥ 4).
pub const UFRAG_LEN: usize = 16;
/// Length of a generated password (cunicu: 32 letters; RFC 8445 §5.3 asks for ≥ 22).
pub const PWD_LEN: usize = 32;
/// Longest ufrag or pwd accepted from a remote (RFC 8839 §5.4 allows up to 256 characters).
pub const MAX_CREDENTIAL_LEN: usize = 256;

/// ICE credentials (seed 000 / cunicu `Credentials`, without `need_creds`, which lives on the
/// description as [`Description::need_reply`](crate::Description::need_reply)).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Credentials {
    /// ICE username fragment.
    pub ufrag: SmolStr,
    /// ICE password.
    pub pwd: SmolStr,
}

impl Credentials {
    /// Fresh random credentials from the session RNG (letters, as cunicu generates them).
    pub(crate) fn generate(rng: &mut SessionRng) -> Credentials {
        Credentials {
            ufrag: rng.letters(UFRAG_LEN),
            pwd: rng.letters(PWD_LEN),
        }
    }

    /// True if both parts are non-empty and within [`MAX_CREDENTIAL_LEN`].
    pub fn is_well_formed(&self) -> bool {
        let ok = |s: &str| !s.is_empty() && s.len() <= MAX_CREDENTIAL_LEN;
        ok(&self.ufrag) && ok(&self.pwd)
    }
}
