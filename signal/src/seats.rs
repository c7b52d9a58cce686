//! The seats of one call: a counting semaphore whose leases expire unless renewed.
//!
//! This is the whole seat algorithm, as pure functions over a [`Seats`] value. A store applies
//! one of them atomically (compare-and-set on a version, [`crate::store::Store::update`]), so
//! that service instances sharing a store count seats as one; the model checker runs the same
//! functions.
//!
//! Rules (seed 004):
//! - SEAT_CAPACITY: never more than `capacity` live leases in a call.
//! - SEAT_LEASE: a lease lives until `expires`; a renewal before then moves it to
//!   `now + lease`. A seat whose holder stopped renewing is free only once its lease expired
//!   (the seed's anti-hijack: a newcomer cannot take a dead client's seat before the timeout).
//! - SEAT_TOKEN: a seat is held by a session token (128 random bits); only that token renews it
//!   or speaks for it, and only while its lease lives (a client with an unreliable connection
//!   rejoins with it).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds on the service's clock (Unix time; instances sharing a store must agree on it
/// to within a fraction of the lease).
pub type Millis = u64;

/// A session token: 128 bits from the OS generator, as 32 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// A fresh token from the OS random generator.
    pub fn generate() -> Result<Token, rand_core::OsError> {
        use rand_core::TryRngCore;
        let mut bytes = [0u8; 16];
        rand_core::OsRng.try_fill_bytes(&mut bytes)?;
        Ok(Token(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// Parses a token as a client sends it: exactly 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Token> {
        icepact::room::valid_token(s).then(|| Token(s.to_owned()))
    }

    /// A token from any string, for tests and models.
    #[doc(hidden)]
    pub fn from_raw(s: &str) -> Token {
        Token(s.to_owned())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A token is a credential: never in logs whole.
        write!(f, "Token({}…)", &self.0[..self.0.len().min(4)])
    }
}

/// Why a seat operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeatError {
    /// Every seat has a live lease.
    #[error("no seat is free")]
    Full,
    /// The token holds no live lease in this call (never did, or it expired).
    #[error("the session is not a member of the call (or its lease expired)")]
    NotMember,
}

/// The leases of one call, by token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Seats {
    leases: BTreeMap<Token, Millis>,
}

impl Seats {
    /// Drops the leases that expired at `now`.
    fn expire(&mut self, now: Millis) {
        self.leases.retain(|_, expires| *expires > now);
    }

    /// Takes a seat for `token` with a lease until `now + lease` (rules SEAT_CAPACITY,
    /// SEAT_LEASE). A token that already holds a live lease renews it.
    pub fn join(
        &mut self,
        now: Millis,
        capacity: usize,
        token: Token,
        lease: Millis,
    ) -> Result<(), SeatError> {
        self.expire(now);
        let expires = now.saturating_add(lease);
        if let Some(e) = self.leases.get_mut(&token) {
            *e = expires;
            return Ok(());
        }
        if self.leases.len() >= capacity {
            return Err(SeatError::Full);
        }
        self.leases.insert(token, expires);
        Ok(())
    }

    /// Renews the lease of `token` to `now + lease`, if it is live (rules SEAT_LEASE,
    /// SEAT_TOKEN).
    pub fn renew(&mut self, now: Millis, token: &Token, lease: Millis) -> Result<(), SeatError> {
        self.expire(now);
        match self.leases.get_mut(token) {
            Some(e) => {
                *e = now.saturating_add(lease);
                Ok(())
            }
            None => Err(SeatError::NotMember),
        }
    }

    /// Deliberately wrong, for the model checker only: renews without checking that the lease
    /// still lives, so an expired token takes a seat back even after a newcomer took it. The
    /// seat model finds the broken capacity in 7 steps (`icepact-models`, `seats`).
    #[doc(hidden)]
    pub fn renew_unchecked(
        &mut self,
        now: Millis,
        token: &Token,
        lease: Millis,
    ) -> Result<(), SeatError> {
        self.expire(now);
        self.leases.insert(token.clone(), now.saturating_add(lease));
        Ok(())
    }

    /// Gives up the seat of `token` (a client that leaves for good).
    pub fn leave(&mut self, now: Millis, token: &Token) {
        self.expire(now);
        self.leases.remove(token);
    }

    /// Whether `token` holds a live lease at `now`.
    pub fn is_member(&self, now: Millis, token: &Token) -> bool {
        self.leases.get(token).is_some_and(|e| *e > now)
    }

    /// Live leases at `now`.
    pub fn holders(&self, now: Millis) -> usize {
        self.leases.values().filter(|e| **e > now).count()
    }

    /// No lease at all (the store may forget the call).
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// When the last lease expires.
    pub fn last_expiry(&self) -> Option<Millis> {
        self.leases.values().copied().max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Token {
        Token::from_raw(s)
    }

    #[test]
    fn capacity_lease_and_token() {
        let mut s = Seats::default();
        assert_eq!(s.join(0, 2, t("a"), 100), Ok(()));
        assert_eq!(s.join(10, 2, t("b"), 100), Ok(()));
        assert_eq!(s.join(20, 2, t("c"), 100), Err(SeatError::Full));
        // a renews in time; b does not: c gets b's seat only once b's lease expired.
        assert_eq!(s.renew(90, &t("a"), 100), Ok(()));
        assert_eq!(s.join(109, 2, t("c"), 100), Err(SeatError::Full));
        assert_eq!(s.join(110, 2, t("c"), 100), Ok(()));
        assert!(s.is_member(150, &t("a")) && !s.is_member(150, &t("b")));
        assert_eq!(s.renew(150, &t("b"), 100), Err(SeatError::NotMember));
        assert_eq!(s.holders(150), 2);
        s.leave(150, &t("a"));
        assert_eq!(s.holders(150), 1);
    }

    #[test]
    fn tokens_are_128_bit_hex_and_parsed_strictly() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(Token::parse(a.as_str()), Some(a.clone()));
        assert_eq!(Token::parse(&a.as_str().to_uppercase()), None);
        assert_eq!(Token::parse(&a.as_str()[1..]), None);
        assert!(!format!("{a:?}").contains(a.as_str()));
    }
}
