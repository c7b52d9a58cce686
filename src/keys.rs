//! Peer identity: the 32-byte X25519 public key, and the ICE role it decides.

use std::fmt;

/// A peer's 32-byte X25519 public key: its address on the signaling backend and its identity.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits identify a key in logs and counterexamples without flooding them.
        write!(f, "pk:")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Which side of the ICE session this peer plays (RFC 8445 §6.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Nominates the pair (dials).
    Controlling,
    /// Accepts the nomination.
    Controlled,
}

impl Role {
    /// Rule ROLE_BY_SMALLER_KEY (seed 000): "The smaller public key (PK) of the two peers takes
    /// the role of the controlling agent." Keys are compared byte-wise, which is the unsigned
    /// big-endian comparison cunicu performs with `big.Int.Cmp`. Both sides compute the same
    /// answer from the same two keys, so exactly one is controlling; no tie-breaker message is
    /// needed. Equal keys have no answer and are rejected.
    pub fn from_keys(local: &PublicKey, remote: &PublicKey) -> Option<Role> {
        match local.0.cmp(&remote.0) {
            std::cmp::Ordering::Less => Some(Role::Controlling),
            std::cmp::Ordering::Greater => Some(Role::Controlled),
            std::cmp::Ordering::Equal => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaller_key_controls_and_roles_are_opposite() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        a[0] = 1;
        b[0] = 2;
        b[31] = 0; // first differing byte decides, not the last
        a[31] = 9;
        let (a, b) = (PublicKey(a), PublicKey(b));
        assert_eq!(Role::from_keys(&a, &b), Some(Role::Controlling));
        assert_eq!(Role::from_keys(&b, &a), Some(Role::Controlled));
        assert_eq!(Role::from_keys(&a, &a), None);
    }
}
