//! Peer identity: the 32-byte X25519 public key, and the ICE role it decides.

use std::fmt;
use std::str::FromStr;

use base64ct::{Base64, Encoding};

/// A peer's 32-byte X25519 public key: its address on the signaling backend and its identity.
///
/// Written and parsed as WireGuard writes keys: 44 characters of standard base64
/// (`Display`, `FromStr`); `Debug` shows a short prefix in hex for logs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// True if these bytes are the canonical encoding of an X25519 public key: the
    /// u-coordinate below 2^255 − 19, little-endian, so bit 255 is clear (RFC 7748 §5). Other
    /// encodings name the same key as a canonical one (implementations ignore bit 255 and
    /// reduce modulo the prime), so code that identifies peers by key bytes would see one peer
    /// as two; [`Channel::new`](crate::wire::Channel::new) and [`str::parse`] refuse them.
    pub fn is_canonical(&self) -> bool {
        let b = &self.0;
        if b[31] & 0x80 != 0 {
            return false;
        }
        // 2^255 − 19 little-endian: ed ff … ff 7f. Only u in [p, 2^255) is left to refuse.
        let at_least_p = b[31] == 0x7f && b[1..31].iter().all(|&x| x == 0xff) && b[0] >= 0xed;
        !at_least_p
    }
}

/// A key string that is not 32 bytes in standard base64.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyParseError {
    /// Not standard base64 (with padding).
    #[error("not base64")]
    Base64,
    /// Decodes to another length than 32 bytes.
    #[error("{0} bytes, not 32")]
    Length(usize),
    /// Not the canonical encoding of an X25519 public key (see [`PublicKey::is_canonical`]).
    #[error("not the canonical encoding of an X25519 public key")]
    NonCanonical,
}

/// 32 bytes from standard base64, as WireGuard keys are written.
pub(crate) fn decode_key(s: &str) -> Result<[u8; 32], KeyParseError> {
    // 48 bytes hold any string a 32-byte key could be confused with, and tell a wrong length.
    let mut buf = [0u8; 48];
    let bytes = Base64::decode(s.trim(), &mut buf).map_err(|e| match e {
        base64ct::Error::InvalidLength => KeyParseError::Length(s.trim().len() * 3 / 4),
        base64ct::Error::InvalidEncoding => KeyParseError::Base64,
    })?;
    <[u8; 32]>::try_from(bytes).map_err(|_| KeyParseError::Length(bytes.len()))
}

/// 32 bytes as standard base64 (constant time: used for secret keys too).
pub(crate) fn encode_key(bytes: &[u8; 32]) -> String {
    Base64::encode_string(bytes)
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_key(&self.0))
    }
}

impl FromStr for PublicKey {
    type Err = KeyParseError;

    fn from_str(s: &str) -> Result<PublicKey, KeyParseError> {
        let key = PublicKey(decode_key(s)?);
        if key.is_canonical() {
            Ok(key)
        } else {
            Err(KeyParseError::NonCanonical)
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

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

    #[test]
    fn keys_round_trip_through_base64_as_wireguard_writes_them() {
        // A WireGuard public key as `wg pubkey` prints it (all zero bytes but the last).
        let mut bytes = [0u8; 32];
        bytes[31] = 1;
        let key = PublicKey(bytes);
        let text = key.to_string();
        assert_eq!(text, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=");
        assert_eq!(text.parse::<PublicKey>(), Ok(key));
        assert_eq!(format!(" {text}\n").parse::<PublicKey>(), Ok(key));
        assert_eq!("AAAA".parse::<PublicKey>(), Err(KeyParseError::Length(3)));
        assert_eq!(
            "not base64!".parse::<PublicKey>(),
            Err(KeyParseError::Base64)
        );
        let long = encode_key(&[7; 32]) + "AAAA";
        assert!(long.parse::<PublicKey>().is_err());
        assert_eq!("".parse::<PublicKey>(), Err(KeyParseError::Length(0)));
    }
}
