//! Configuration of a [`Peer`](crate::Peer).

use std::time::Duration;

use crate::backoff::Backoff;
use crate::rules::RestartPolicy;

/// Tunables of a peer. The defaults follow cunicu and pion where they have one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Back-off for re-sending an unacknowledged description.
    pub backoff: Backoff,
    /// How long Disconnected may last before the session is restarted, if the agent reports
    /// neither Connected nor Failed first (pion's failed timeout: 25 s).
    pub disconnected_timeout: Duration,
    /// Most candidates accepted in one remote description, and most local candidates kept.
    pub max_candidates: usize,
    /// The restart rule.
    pub policy: RestartPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backoff: Backoff::default(),
            disconnected_timeout: Duration::from_secs(25),
            max_candidates: 32,
            policy: RestartPolicy::Epoch,
        }
    }
}
