//! Inbound protection of an [`Endpoint`](crate::Endpoint): rate limit, replay cache and the
//! counters that record what was refused.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use crate::wire::NONCE_LEN;

/// Limits on what one remote peer may send us, applied before an envelope is opened. Start
/// from [`InboundLimits::default`] and set the fields you need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct InboundLimits {
    /// Largest envelope accepted from this peer, in bytes.
    pub max_envelope_len: usize,
    /// Envelopes accepted in a burst (token bucket size).
    pub burst: u32,
    /// Sustained envelopes per second (token refill rate).
    pub per_second: u32,
    /// Nonces remembered per peer to detect replays.
    pub replay_window: usize,
}

impl Default for InboundLimits {
    fn default() -> Self {
        InboundLimits {
            max_envelope_len: 16 * 1024,
            burst: 64,
            per_second: 32,
            replay_window: 1024,
        }
    }
}

/// What happened to envelopes claiming to come from one peer (or, for
/// [`Endpoint::unrouted`](crate::Endpoint::unrouted), from no peer of ours), and to the
/// descriptions sent to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct PeerStats {
    /// Opened and applied by the peer.
    pub applied: u64,
    /// Opened, and a duplicate of the newest applied description (answered if asked).
    pub duplicate: u64,
    /// Opened, and older than the newest applied description: ignored.
    pub stale: u64,
    /// Opened, and rejected by the peer as breaking the protocol.
    pub rejected: u64,
    /// Refused by the rate limit before opening.
    pub rate_limited: u64,
    /// Refused as larger than the limit before opening.
    pub oversized: u64,
    /// Not a well-formed envelope or body.
    pub garbage: u64,
    /// The box did not open or its sealed keys contradict the envelope (wrong key, forged,
    /// reflected).
    pub wrong_key: u64,
    /// A nonce seen before: a replayed or duplicated envelope, refused before opening.
    pub replayed: u64,
    /// Addressed to another key, or from a sender we have no peer for.
    pub misrouted: u64,
    /// Descriptions sealed for the backend (and not superseded or reported failed since).
    pub sent: u64,
    /// Descriptions replaced by a newer one for the same remote before they were polled
    /// (rule SUPERSEDED_SEND): never sent, and nothing lost.
    pub superseded: u64,
    /// Descriptions that could not be sealed or published (reported with
    /// [`Endpoint::transmit_failed`](crate::Endpoint::transmit_failed)).
    pub send_failed: u64,
    /// Descriptions held while the session waited for admission (rule ADMISSION).
    pub held: u64,
    /// Re-sends not sent while the session waited for admission (rule ADMISSION_QUIET).
    pub quieted: u64,
}

/// A token bucket: up to `burst` events at once, refilled at `per_second`. The endpoint limits
/// each peer's envelopes with one ([`InboundLimits`]); the room service limits requests per
/// client address and per session with the same type.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens (at least one) at `now`, refilled at `per_second`.
    pub fn new(per_second: u32, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            tokens: burst,
            burst,
            per_second: f64::from(per_second),
            last: now,
        }
    }

    /// The bucket of an endpoint's per-peer limit.
    pub(crate) fn for_limits(limits: &InboundLimits, now: Instant) -> TokenBucket {
        TokenBucket::new(limits.per_second, limits.burst, now)
    }

    /// Takes a token if there is one. A `now` before the last one given refills nothing.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The last instant the bucket was given.
    pub fn last(&self) -> Instant {
        self.last
    }
}

/// The most recent nonces of opened envelopes, bounded.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReplayCache {
    order: VecDeque<[u8; NONCE_LEN]>,
    set: HashSet<[u8; NONCE_LEN]>,
    capacity: usize,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity: capacity.max(1),
            ..ReplayCache::default()
        }
    }

    pub(crate) fn contains(&self, nonce: &[u8; NONCE_LEN]) -> bool {
        self.set.contains(nonce)
    }

    pub(crate) fn insert(&mut self, nonce: [u8; NONCE_LEN]) {
        if !self.set.insert(nonce) {
            return;
        }
        self.order.push_back(nonce);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// Reads the nonce of an envelope that [`Header::peek`](crate::wire::Header::peek) accepted.
pub(crate) fn nonce_of(envelope: &[u8]) -> Option<[u8; NONCE_LEN]> {
    use prost::Message;
    let e = crate::wire::proto::Envelope::decode(envelope).ok()?;
    <[u8; NONCE_LEN]>::try_from(e.contents?.nonce.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_and_caps() {
        let now = Instant::now();
        let limits = InboundLimits {
            burst: 2,
            per_second: 10,
            ..InboundLimits::default()
        };
        let mut r = TokenBucket::for_limits(&limits, now);
        assert!(r.allow(now) && r.allow(now));
        assert!(!r.allow(now));
        assert!(r.allow(now + Duration::from_millis(100)));
        let later = now + Duration::from_secs(10);
        assert!(r.allow(later) && r.allow(later) && !r.allow(later));
    }

    #[test]
    fn replay_cache_is_bounded() {
        let mut c = ReplayCache::new(2);
        c.insert([1; NONCE_LEN]);
        c.insert([2; NONCE_LEN]);
        c.insert([3; NONCE_LEN]);
        assert!(!c.contains(&[1; NONCE_LEN]));
        assert!(c.contains(&[2; NONCE_LEN]) && c.contains(&[3; NONCE_LEN]));
    }
}
