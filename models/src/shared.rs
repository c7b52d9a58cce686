//! [`Shared`]: a part of a model state that successor states share until one changes it, with
//! its hash computed once per change.
//!
//! The checker clones a state for every successor and fingerprints every successor; most steps
//! change one peer end and leave the other ends, the replay history and the credential registry
//! as they were. Behind an [`Arc`], an unchanged part costs a reference count instead of a deep
//! copy, and its cached digest costs eight bytes of hashing instead of a walk over strings and
//! vectors.
//!
//! # Soundness
//!
//! Two states are merged by the checker when their fingerprints are equal. A `Shared` hashes as
//! its digest, a 64-bit hash of the whole value (ahash with fixed keys, the hasher stateright
//! fingerprints with), so a state's fingerprint is a hash of hashes: equal values always give
//! equal fingerprints, and unequal ones collide only if a 64-bit digest does, with the same odds
//! as stateright's own 64-bit fingerprints. The digest is dropped on every mutable access and
//! recomputed lazily, so a stale digest can never be hashed.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// Fixed keys: digests (and so fingerprints and pinned state counts) are the same in every run.
pub(crate) fn digest_of<T: Hash>(value: &T) -> u64 {
    ahash::RandomState::with_seeds(
        0x6963_6570_6163_7431,
        0x7368_6172_6564_2d31,
        0x6d6f_6465_6c2d_6469,
        0x6765_7374_2d6b_6579,
    )
    .hash_one(value)
}

/// A value shared between states until one of them changes it (copy on write), hashed as a
/// cached 64-bit digest of the value.
pub struct Shared<T> {
    value: Arc<T>,
    /// The digest of `value`, or `None` after a mutable access (recomputed by [`Shared::seal`]
    /// or, if not sealed, at every hash).
    digest: Option<u64>,
}

impl<T: Hash> Shared<T> {
    /// Shares `value`, with its digest computed now.
    pub fn new(value: T) -> Shared<T> {
        let digest = Some(digest_of(&value));
        Shared {
            value: Arc::new(value),
            digest,
        }
    }

    /// Computes the digest if a mutable access dropped it.
    pub fn seal(&mut self) {
        if self.digest.is_none() {
            self.digest = Some(digest_of(&*self.value));
        }
    }

    fn digest(&self) -> u64 {
        self.digest.unwrap_or_else(|| digest_of(&*self.value))
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            value: Arc::clone(&self.value),
            digest: self.digest,
        }
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Mutable access copies the value if another state shares it, and drops the digest.
impl<T: Clone> DerefMut for Shared<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.digest = None;
        Arc::make_mut(&mut self.value)
    }
}

impl<T: Hash> Hash for Shared<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.digest());
    }
}

impl<T: Hash + PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.value, &other.value)
            || (self.digest() == other.digest() && *self.value == *other.value)
    }
}

impl<T: Hash + Eq> Eq for Shared<T> {}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_hash_alike_whether_sealed_or_not() {
        let a = Shared::new(vec![1u32, 2, 3]);
        let mut b = Shared::new(vec![1u32]);
        b.extend([2, 3]);
        assert!(b.digest.is_none());
        assert_eq!(a.digest(), b.digest());
        b.seal();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a, b);
    }

    #[test]
    fn a_change_is_seen_and_copies_only_the_changed_state() {
        let a = Shared::new(vec![1u32]);
        let mut b = a.clone();
        b.push(2);
        b.seal();
        assert_eq!(*a, vec![1]);
        assert_ne!(a, b);
        assert_ne!(a.digest, b.digest);
    }
}
