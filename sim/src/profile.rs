//! Swarm fault profiles and the explicit fault plan derived from a seed.
//!
//! A seed decides everything: first a [`Profile`] (which fault classes are on and how intense,
//! swarm testing in the sense of Groce et al.), then a [`Plan`] of fault episodes drawn from it,
//! and the kind of ICE agent every node runs. The plan is an explicit list so that a failing run
//! can be shrunk episode by episode.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use icepact::reference_agent::AgentKind;
use icepact::{AgentRestart, Config};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Serialize, Serializer};

/// The longest signaling delay without jitter (the backend delays by 2–20 ms).
pub const MAX_SIGNALING_DELAY_MS: u64 = 20;

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
    /// Lost agent reports to inject.
    pub lost_events: u32,
    /// Agent quirks (repeated reports, Completed → Connected → Completed) to inject.
    pub quirks: u32,
    /// Agent reports reach the peer stamped up to this many ms before the current instant
    /// (another thread's clock reading; rule LATE_INPUT). 0: stamped on time. Applies to the
    /// whole run.
    pub late_ms: u64,
    /// Peers removed from a node's endpoint and added again later.
    pub leaves: u32,
}

impl Profile {
    /// No fault at all.
    pub fn calm() -> Profile {
        Profile {
            drop_permille: 0,
            dup_permille: 0,
            jitter_ms: 0,
            partitions: 0,
            crashes: 0,
            agent_faults: 0,
            replays: 0,
            restarts: 0,
            lost_events: 0,
            quirks: 0,
            late_ms: 0,
            leaves: 0,
        }
    }
}

/// The epoch floor a crashed node's new process starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum CrashFloor {
    /// 0 (a board without a clock, a floor passed as a constant).
    Zero,
    /// The old process's first epoch minus `gap` (the clock stepped back); 0 if that is
    /// negative.
    Below {
        /// How far below.
        gap: u64,
    },
    /// The old process's first epoch (a snapshot restored, the same constant passed again).
    Equal,
    /// The virtual wall clock in µs + 1: above every epoch used before (rule EPOCH_ORDER's
    /// recommendation).
    Above,
}

impl CrashFloor {
    /// The fault kind a crash with this floor is.
    pub fn fault_kind(self) -> FaultKind {
        match self {
            CrashFloor::Zero => FaultKind::CrashFloorZero,
            CrashFloor::Below { .. } => FaultKind::CrashFloorBelow,
            CrashFloor::Equal => FaultKind::CrashFloorEqual,
            CrashFloor::Above => FaultKind::CrashFloorAbove,
        }
    }
}

/// What an agent fault does, once the agent is in the phase it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum AgentFaultKind {
    /// A checking agent gives up (`give_up()` while Checking): no pair can be formed.
    FailChecking,
    /// A connected agent loses its pair (`pair_lost()`) and stays broken: no check gets
    /// through any more, so it fails 30 s after the last packet. Disconnected for most kinds,
    /// Failed at once for pion without a disconnected timeout.
    Disconnect,
    /// A connected agent gives up straight from Connected or Completed (`give_up()`): consent
    /// expired, a suspended host woke up.
    FailConnected,
    /// A new agent's gathering finds nothing (`gather_nothing()` while its candidates are
    /// still queued and the peer has none): no usable interface for a while. The next agent
    /// gathers normally.
    NoCandidates,
}

impl AgentFaultKind {
    /// The fault kind it is.
    pub fn fault_kind(self) -> FaultKind {
        match self {
            AgentFaultKind::FailChecking => FaultKind::AgentFailedChecking,
            AgentFaultKind::Disconnect => FaultKind::AgentDisconnected,
            AgentFaultKind::FailConnected => FaultKind::AgentFailedConnected,
            AgentFaultKind::NoCandidates => FaultKind::AgentNoCandidates,
        }
    }
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
    /// Node crashes, loses all state, and comes back after `down_ms` with a new process whose
    /// epoch floor is `floor`.
    Crash {
        /// When.
        at_ms: u64,
        /// Node.
        node: usize,
        /// Down time.
        down_ms: u64,
        /// The new process's epoch floor.
        floor: CrashFloor,
    },
    /// The agent of `node` towards `remote` fails as `kind` says, the first time within
    /// `[at_ms, at_ms + within_ms]` that it is in the phase the fault needs (Checking for
    /// [`AgentFaultKind::FailChecking`], New with candidates queued for
    /// [`AgentFaultKind::NoCandidates`], Connected or Completed otherwise). The pair stays
    /// broken, except after a gathering that found nothing.
    AgentFault {
        /// From when.
        at_ms: u64,
        /// Node.
        node: usize,
        /// Remote.
        remote: usize,
        /// What fails.
        kind: AgentFaultKind,
        /// How long the fault waits for its phase.
        within_ms: u64,
    },
    /// The environment loses a report of the live agent of `node` towards `remote` (a
    /// connectivity report, not a local candidate or end of gathering): it lets `skip` such
    /// reports through and loses the next one, if it comes within `[at_ms, at_ms + within_ms]`.
    LoseEvent {
        /// From when.
        at_ms: u64,
        /// Node.
        node: usize,
        /// Remote.
        remote: usize,
        /// Reports let through first.
        skip: u32,
        /// How long the loss waits for its report.
        within_ms: u64,
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
    /// The agent of `node` towards `remote` shows a benign quirk of real agents
    /// (`ReferenceAgent::quirk`: its current report once more, or Completed → Connected →
    /// Completed).
    Quirk {
        /// When.
        at_ms: u64,
        /// Node.
        node: usize,
        /// Remote.
        remote: usize,
    },
    /// `node` removes `remote` from its endpoint (`Endpoint::remove_peer`: its session and
    /// agent end, its envelopes are refused) and adds it again `away_ms` later, as a mesh
    /// member that leaves and rejoins; `remote` keeps its session all along.
    Leave {
        /// When.
        at_ms: u64,
        /// Node.
        node: usize,
        /// The remote it removes.
        remote: usize,
        /// How long until it is added again.
        away_ms: u64,
    },
}

impl Episode {
    /// When the episode starts.
    pub fn at_ms(&self) -> u64 {
        match *self {
            Episode::Partition { at_ms, .. }
            | Episode::Crash { at_ms, .. }
            | Episode::AgentFault { at_ms, .. }
            | Episode::LoseEvent { at_ms, .. }
            | Episode::Replay { at_ms, .. }
            | Episode::Restart { at_ms, .. }
            | Episode::Quirk { at_ms, .. }
            | Episode::Leave { at_ms, .. } => at_ms,
        }
    }

    /// When the episode is over (the heal time it contributes; for a replay, when it starts:
    /// [`Plan::end_ms`] adds the delivery of what it replays).
    pub fn end_ms(&self) -> u64 {
        match *self {
            Episode::Partition { at_ms, for_ms, .. } => at_ms + for_ms,
            Episode::Crash { at_ms, down_ms, .. } => at_ms + down_ms,
            Episode::Leave { at_ms, away_ms, .. } => at_ms + away_ms,
            Episode::AgentFault {
                at_ms, within_ms, ..
            }
            | Episode::LoseEvent {
                at_ms, within_ms, ..
            } => at_ms + within_ms,
            Episode::Replay { at_ms, .. }
            | Episode::Restart { at_ms, .. }
            | Episode::Quirk { at_ms, .. } => at_ms,
        }
    }

    /// Whether it counts as a fault that may legitimately restart sessions.
    pub fn restarts_sessions(&self) -> bool {
        !matches!(self, Episode::Replay { .. } | Episode::Quirk { .. })
    }

    /// The fault kind it is, for the per-fault figures.
    pub fn fault_kind(&self) -> FaultKind {
        match *self {
            Episode::Partition { .. } => FaultKind::Partition,
            Episode::Crash { floor, .. } => floor.fault_kind(),
            Episode::AgentFault { kind, .. } => kind.fault_kind(),
            Episode::LoseEvent { .. } => FaultKind::LostEvent,
            Episode::Replay { .. } => FaultKind::Replay,
            Episode::Restart { .. } => FaultKind::RestartRequest,
            Episode::Quirk { .. } => FaultKind::Quirk,
            Episode::Leave { .. } => FaultKind::Leave,
        }
    }
}

/// A kind of fault, for the per-fault figures of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum FaultKind {
    /// A crash; the new process's epoch floor is 0.
    CrashFloorZero,
    /// A crash; the floor is below the old process's first epoch.
    CrashFloorBelow,
    /// A crash; the floor equals the old process's first epoch.
    CrashFloorEqual,
    /// A crash; the floor is above every epoch used before.
    CrashFloorAbove,
    /// An agent gives up while checking.
    AgentFailedChecking,
    /// A connected agent loses its pair and stays broken.
    AgentDisconnected,
    /// A connected agent reports Failed straight from Connected or Completed.
    AgentFailedConnected,
    /// An agent's gathering finds no candidate.
    AgentNoCandidates,
    /// An agent report is lost.
    LostEvent,
    /// A partition.
    Partition,
    /// A backend replay burst.
    Replay,
    /// An explicit restart request.
    RestartRequest,
    /// Signaling drops, duplicates or reorders (the lossy window).
    Lossy,
    /// Agent reports stamped up to a few ms early (LATE_INPUT).
    LateEvents,
    /// An agent quirk.
    Quirk,
    /// A node removes a peer and adds it again later.
    Leave,
    /// No fault at all.
    None,
}

impl FaultKind {
    /// Every kind, in table order.
    pub const ALL: [FaultKind; 17] = [
        FaultKind::CrashFloorZero,
        FaultKind::CrashFloorBelow,
        FaultKind::CrashFloorEqual,
        FaultKind::CrashFloorAbove,
        FaultKind::AgentFailedChecking,
        FaultKind::AgentDisconnected,
        FaultKind::AgentFailedConnected,
        FaultKind::AgentNoCandidates,
        FaultKind::LostEvent,
        FaultKind::Partition,
        FaultKind::Replay,
        FaultKind::RestartRequest,
        FaultKind::Lossy,
        FaultKind::LateEvents,
        FaultKind::Quirk,
        FaultKind::Leave,
        FaultKind::None,
    ];

    /// A short stable name.
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::CrashFloorZero => "crash-floor-0",
            FaultKind::CrashFloorBelow => "crash-floor-below",
            FaultKind::CrashFloorEqual => "crash-floor-equal",
            FaultKind::CrashFloorAbove => "crash-floor-above",
            FaultKind::AgentFailedChecking => "agent-failed-checking",
            FaultKind::AgentDisconnected => "agent-disconnected",
            FaultKind::AgentFailedConnected => "agent-failed-connected",
            FaultKind::AgentNoCandidates => "agent-no-candidates",
            FaultKind::LostEvent => "lost-event",
            FaultKind::Partition => "partition",
            FaultKind::Replay => "replay",
            FaultKind::RestartRequest => "restart-request",
            FaultKind::Lossy => "drop/dup/reorder",
            FaultKind::LateEvents => "late-events",
            FaultKind::Quirk => "quirk",
            FaultKind::Leave => "peer-leave",
            FaultKind::None => "none",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
    /// The kind of ICE agent each node runs (a node beyond the list runs pion's).
    #[serde(serialize_with = "kind_names")]
    pub agents: Vec<AgentKind>,
    /// Which nodes restart their agents in place ([`AgentRestart::InPlace`]) rather than
    /// closing and creating them (a node beyond the list creates).
    pub in_place: Vec<bool>,
}

fn kind_names<S: Serializer>(kinds: &[AgentKind], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(kinds.iter().map(|k| format!("{k:?}")))
}

impl Plan {
    /// When the last fault is over: from here on the network is reliable.
    pub fn heal(&self) -> Duration {
        let end = self
            .episodes
            .iter()
            .map(|e| self.end_ms(e))
            .max()
            .unwrap_or(0);
        Duration::from_millis(end.max(self.lossy_until_ms))
    }

    /// When an episode of this plan is over. An empty gathering is over when the core's
    /// gathering timeout (default) has noticed it. A replay is over when the backend has delivered
    /// what it replays: 20 ms at most, plus the jitter if it happens while the network is
    /// lossy. (Replayed envelopes of a process whose successor started below its epochs are
    /// news to the remote, rule EPOCH_CATCH_UP; they are the fault, not its aftermath.)
    pub fn end_ms(&self, e: &Episode) -> u64 {
        match *e {
            // A gathering that finds nothing is over when the core gives up on it, a gathering
            // timeout after it struck (rule GATHERING_TIMEOUT; the next agent gathers
            // normally): that restart, and the remote following it, are the fault itself.
            Episode::AgentFault {
                kind: AgentFaultKind::NoCandidates,
                ..
            } => e.end_ms() + Config::default().gathering_timeout.as_millis() as u64,
            Episode::Replay { at_ms, .. } => {
                let jitter = if at_ms < self.lossy_until_ms {
                    self.profile.jitter_ms
                } else {
                    0
                };
                at_ms + MAX_SIGNALING_DELAY_MS + jitter
            }
            _ => e.end_ms(),
        }
    }

    /// A plan with no faults at all (every node runs pion's agent).
    pub fn calm() -> Plan {
        Plan {
            profile: Profile::calm(),
            lossy_until_ms: 0,
            episodes: Vec::new(),
            agents: Vec::new(),
            in_place: Vec::new(),
        }
    }

    /// The agent kind node `n` runs.
    pub fn agent(&self, n: usize) -> AgentKind {
        self.agents.get(n).copied().unwrap_or(AgentKind::Pion)
    }

    /// How node `n` replaces its agents when a session restarts.
    pub fn agent_restart(&self, n: usize) -> AgentRestart {
        if self.in_place.get(n).copied().unwrap_or(false) {
            AgentRestart::InPlace
        } else {
            AgentRestart::Recreate
        }
    }

    /// The fault kinds this plan contains ([`FaultKind::None`] alone if it has none).
    pub fn fault_kinds(&self) -> BTreeSet<FaultKind> {
        let mut kinds: BTreeSet<FaultKind> =
            self.episodes.iter().map(Episode::fault_kind).collect();
        if self.lossy_until_ms > 0 {
            kinds.insert(FaultKind::Lossy);
        }
        if self.profile.late_ms > 0 {
            kinds.insert(FaultKind::LateEvents);
        }
        if kinds.is_empty() {
            kinds.insert(FaultKind::None);
        }
        kinds
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
            lost_events: if on(&mut r) { 1 + r(3) as u32 } else { 0 },
            quirks: if on(&mut r) { 1 + r(4) as u32 } else { 0 },
            // "A few ms": up to 5 ms, the lag of a callback thread's clock reading.
            late_ms: if on(&mut r) { 1 + r(5) } else { 0 },
            leaves: if on(&mut r) { 1 + r(2) as u32 } else { 0 },
        };
        const WINDOW: u64 = 120_000;
        /// How long an agent fault or a loss waits at most for the phase or report it needs.
        const ARMED: u64 = 30_000;
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
            let (at_ms, node, down_ms) = (r(WINDOW), r(peers as u64) as usize, r(20_000));
            let floor = match r(4) {
                0 => CrashFloor::Zero,
                1 => CrashFloor::Below {
                    // Just below (the new process reuses the old one's epochs after a restart
                    // or two), or far below.
                    gap: if r(2) == 0 {
                        1 + r(3)
                    } else {
                        1_000 + r(1_000_000_000)
                    },
                },
                2 => CrashFloor::Equal,
                _ => CrashFloor::Above,
            };
            episodes.push(Episode::Crash {
                at_ms,
                node,
                down_ms,
                floor,
            });
        }
        for _ in 0..profile.agent_faults {
            let (node, remote) = pair(&mut r);
            let kind = match r(4) {
                0 => AgentFaultKind::FailChecking,
                1 => AgentFaultKind::Disconnect,
                2 => AgentFaultKind::FailConnected,
                _ => AgentFaultKind::NoCandidates,
            };
            episodes.push(Episode::AgentFault {
                at_ms: r(WINDOW),
                node,
                remote,
                kind,
                within_ms: r(ARMED),
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
        for _ in 0..profile.lost_events {
            let (node, remote) = pair(&mut r);
            episodes.push(Episode::LoseEvent {
                at_ms: r(WINDOW),
                node,
                remote,
                skip: r(3) as u32,
                within_ms: r(ARMED),
            });
        }
        for _ in 0..profile.quirks {
            let (node, remote) = pair(&mut r);
            episodes.push(Episode::Quirk {
                at_ms: r(WINDOW),
                node,
                remote,
            });
        }
        for _ in 0..profile.leaves {
            let (node, remote) = pair(&mut r);
            episodes.push(Episode::Leave {
                at_ms: r(WINDOW),
                node,
                remote,
                away_ms: r(60_000),
            });
        }
        episodes.sort();
        let lossy = profile.drop_permille > 0 || profile.dup_permille > 0 || profile.jitter_ms > 0;
        let lossy_until_ms = if lossy { 10_000 + r(WINDOW) } else { 0 };
        let agents = (0..peers)
            .map(|_| AgentKind::ALL[r(AgentKind::ALL.len() as u64) as usize])
            .collect();
        let in_place = (0..peers).map(|_| r(2) == 1).collect();
        Plan {
            lossy_until_ms,
            profile,
            episodes,
            agents,
            in_place,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.profile;
        writeln!(
            f,
            "profile: drop {}‰, dup {}‰, jitter {} ms (until {} ms), partitions {}, crashes {}, agent faults {}, replays {}, restarts {}, lost events {}, quirks {}, late reports {} ms, leaves {}",
            p.drop_permille,
            p.dup_permille,
            p.jitter_ms,
            self.lossy_until_ms,
            p.partitions,
            p.crashes,
            p.agent_faults,
            p.replays,
            p.restarts,
            p.lost_events,
            p.quirks,
            p.late_ms,
            p.leaves
        )?;
        writeln!(f, "agents: {:?}", self.agents)?;
        writeln!(f, "restart in place: {:?}", self.in_place)?;
        for e in &self.episodes {
            writeln!(f, "  {e:?}")?;
        }
        write!(f, "heal at {:?}", self.heal())
    }
}
