//! Swarm fault profiles and the explicit fault plan derived from a seed.
//!
//! A seed decides everything: first a [`Profile`] (which fault classes are on and how intense,
//! swarm testing in the sense of Groce et al.), then a [`Plan`] of fault episodes drawn from it.
//! The plan is an explicit list so that a failing run can be shrunk episode by episode.

use std::fmt;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::Serialize;

/// Which fault classes a run injects, and how hard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Signaling drop probability in per mille, while faults last.
    pub drop_permille: u32,
    /// Signaling duplicate probability in per mille, while faults last.
    pub dup_permille: u32,
    /// Extra signaling delay jitter (uniform), which reorders messages.
    pub jitter_ms: u64,
    /// Partitions to inject.
    pub partitions: u32,
    /// Peer crashes (with state loss) to inject.
    pub crashes: u32,
    /// Agent failures to inject.
    pub agent_faults: u32,
    /// Backend replay bursts to inject.
    pub replays: u32,
    /// Explicit restart requests to inject.
    pub restarts: u32,
}

/// One fault episode.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Episode {
    /// Traffic from `from` to `to` (and back unless `one_way`) is lost, signaling and data.
    Partition {
        /// Start.
        at_ms: u64,
        /// Duration.
        for_ms: u64,
        /// One side.
        from: usize,
        /// Other side.
        to: usize,
        /// Only `from → to` is cut.
        one_way: bool,
    },
    /// Node crashes, loses all state, and comes back after `down_ms` with a new process.
    Crash {
        /// When.
        at_ms: u64,
        /// Node.
        node: usize,
        /// Down time.
        down_ms: u64,
    },
    /// The agent of `node` towards `remote` fails (Failed while checking, Disconnected while
    /// connected, after which it stays broken).
    AgentFault {
        /// When.
        at_ms: u64,
        /// Node.
        node: usize,
        /// Remote.
        remote: usize,
    },
    /// The backend re-delivers `count` old envelopes.
    Replay {
        /// When.
        at_ms: u64,
        /// How many.
        count: u32,
    },
    /// The embedding of `node` asks its peer towards `remote` to restart.
    Restart {
        /// When.
        at_ms: u64,
        /// Node.
        node: usize,
        /// Remote.
        remote: usize,
    },
}

impl Episode {
    /// When the episode is over (the heal time it contributes).
    pub fn end_ms(&self) -> u64 {
        match *self {
            Episode::Partition { at_ms, for_ms, .. } => at_ms + for_ms,
            Episode::Crash { at_ms, down_ms, .. } => at_ms + down_ms,
            Episode::AgentFault { at_ms, .. }
            | Episode::Replay { at_ms, .. }
            | Episode::Restart { at_ms, .. } => at_ms,
        }
    }

    /// Whether it counts as a fault that may legitimately restart sessions.
    pub fn restarts_sessions(&self) -> bool {
        !matches!(self, Episode::Replay { .. })
    }
}

/// The explicit fault plan of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The swarm profile it was drawn from.
    pub profile: Profile,
    /// Message loss, duplication and jitter apply until this time.
    pub lossy_until_ms: u64,
    /// The episodes, sorted by start time.
    pub episodes: Vec<Episode>,
}

impl Plan {
    /// When the last fault is over: from here on the network is reliable.
    pub fn heal(&self) -> Duration {
        let end = self.episodes.iter().map(Episode::end_ms).max().unwrap_or(0);
        Duration::from_millis(end.max(self.lossy_until_ms))
    }

    /// A plan with no faults at all.
    pub fn calm() -> Plan {
        Plan {
            profile: Profile {
                drop_permille: 0,
                dup_permille: 0,
                jitter_ms: 0,
                partitions: 0,
                crashes: 0,
                agent_faults: 0,
                replays: 0,
                restarts: 0,
            },
            lossy_until_ms: 0,
            episodes: Vec::new(),
        }
    }

    /// Derives the swarm profile and plan of `seed` for `peers` nodes. Faults happen within
    /// the first two minutes.
    pub fn from_seed(seed: u64, peers: usize) -> Plan {
        // A separate stream from the run's own, so a plan can be shrunk without changing the
        // randomness of message delays.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_f4a1_7000_0000);
        let mut r = |n: u64| if n == 0 { 0 } else { rng.next_u64() % n };
        let on = |r: &mut dyn FnMut(u64) -> u64| r(2) == 1;
        let profile = Profile {
            drop_permille: if on(&mut r) { r(400) as u32 } else { 0 },
            dup_permille: if on(&mut r) { r(300) as u32 } else { 0 },
            jitter_ms: if on(&mut r) { r(2_000) } else { 0 },
            partitions: if on(&mut r) { 1 + r(3) as u32 } else { 0 },
            crashes: if on(&mut r) { 1 + r(2) as u32 } else { 0 },
            agent_faults: if on(&mut r) { 1 + r(3) as u32 } else { 0 },
            replays: if on(&mut r) { 1 + r(3) as u32 } else { 0 },
            restarts: if on(&mut r) { 1 + r(2) as u32 } else { 0 },
        };
        const WINDOW: u64 = 120_000;
        let pair = |r: &mut dyn FnMut(u64) -> u64| {
            let a = r(peers as u64) as usize;
            let b = (a + 1 + r(peers as u64 - 1) as usize) % peers;
            (a, b)
        };
        let mut episodes = Vec::new();
        for _ in 0..profile.partitions {
            let (from, to) = pair(&mut r);
            episodes.push(Episode::Partition {
                at_ms: r(WINDOW),
                for_ms: 500 + r(60_000),
                from,
                to,
                one_way: r(2) == 1,
            });
        }
        for _ in 0..profile.crashes {
            episodes.push(Episode::Crash {
                at_ms: r(WINDOW),
                node: r(peers as u64) as usize,
                down_ms: r(20_000),
            });
        }
        for _ in 0..profile.agent_faults {
            let (node, remote) = pair(&mut r);
            episodes.push(Episode::AgentFault {
                at_ms: r(WINDOW),
                node,
                remote,
            });
        }
        for _ in 0..profile.replays {
            episodes.push(Episode::Replay {
                at_ms: r(WINDOW),
                count: 1 + r(10) as u32,
            });
        }
        for _ in 0..profile.restarts {
            let (node, remote) = pair(&mut r);
            episodes.push(Episode::Restart {
                at_ms: r(WINDOW),
                node,
                remote,
            });
        }
        episodes.sort();
        let lossy = profile.drop_permille > 0 || profile.dup_permille > 0 || profile.jitter_ms > 0;
        Plan {
            lossy_until_ms: if lossy { 10_000 + r(WINDOW) } else { 0 },
            profile,
            episodes,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.profile;
        writeln!(
            f,
            "profile: drop {}‰, dup {}‰, jitter {} ms (until {} ms), partitions {}, crashes {}, agent faults {}, replays {}, restarts {}",
            p.drop_permille,
            p.dup_permille,
            p.jitter_ms,
            self.lossy_until_ms,
            p.partitions,
            p.crashes,
            p.agent_faults,
            p.replays,
            p.restarts
        )?;
        for e in &self.episodes {
            writeln!(f, "  {e:?}")?;
        }
        write!(f, "heal at {:?}", self.heal())
    }
}
