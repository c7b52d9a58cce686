//! The discrete-event world: nodes running real `icepact::Endpoint`s (a `Peer` per remote,
//! sealed envelopes, the endpoint's inbound checks), a signaling backend, the
//! reference ICE agent (`icepact::reference_agent`) with connectivity checks over a simulated
//! data network, and the fault plan.
//!
//! The agent's states and reports are the reference model's, the one the tests and the model
//! checker use too. The data plane is the simulator's: checks every 200 ms, keepalives every
//! second, a pair lost after 5 s of silence and the agent failing after 30 s (pion's timings).
//! It tells the agent what happens with `pair_found`, `pair_lost` and `give_up`, and hands the
//! reports the agent queues to the peer later, through the event queue, so they can be late,
//! stamped a little early, or lost.
//!
//! Virtual time jumps from event to event. Everything random comes from ChaCha8 streams seeded
//! by the run's seed, so a seed reproduces the run exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use icepact::invariants::{self, Invariant, Violation};
use icepact::reference_agent::{AgentKind, ContractBreach, Phase, ReferenceAgent};
use icepact::wire::{Channel, SecretKey};
use icepact::{
    AgentCommand, AgentEvent, AgentId, Config, Credentials, Description, Disposition, Endpoint,
    EndpointConfig, EndpointError, EndpointOutput, Event, Peer, PublicKey, Refusal, RestartCause,
    RestartPolicy, Seed,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::profile::{AgentFaultKind, CrashFloor, Episode, FaultKind, Plan};
use crate::trace::{Trace, TraceKind};

/// ICE agent timing of the simulated data plane (pion's defaults).
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const DISCONNECTED_AFTER: Duration = Duration::from_secs(5);
const FAILED_AFTER: Duration = Duration::from_secs(30);
/// A connectivity report reaches the peer this long after what caused it.
const REPORT_DELAY: Duration = Duration::from_millis(1);
/// Local candidates every agent gathers: a host and a server-reflexive one.
const GATHERS: u16 = 2;
/// Old envelopes the backend keeps to replay.
const REPLAY_HISTORY: usize = 256;
/// The virtual wall clock at virtual time zero, in µs. A process that follows rule
/// EPOCH_ORDER's advice takes its epoch floor from it ([`CrashFloor::Above`]).
pub const WALL_CLOCK_START_US: u64 = 1_000_000_000;

/// What a run simulates.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Nodes in the full mesh.
    pub peers: usize,
    /// The core's configuration (its restart policy is the one under test).
    pub core: Config,
    /// Record a full trace (slower; on for replays and failures).
    pub trace: bool,
    /// Extra simulated time after the liveness deadline, to see that converged pairs stay so.
    pub settle: Duration,
    /// CPU as a resource (none: every event is handled the instant it happens).
    pub cpu: Option<Cpu>,
    /// Rule STAMP_ARRIVAL: a node hands its core each input with the instant the input arrived
    /// and each timer with its deadline, in arrival order, not the instant a busy CPU got to
    /// it. Off, the core sees the instant of handling (what the runtime did before the rule).
    pub stamp_arrival: bool,
    /// End the run once every pair has been converged for `settle` (load runs; sweeps run to
    /// the liveness deadline to see that nothing breaks later).
    pub stop_when_settled: bool,
    /// Each endpoint's rule ADMISSION bound (`EndpointConfig::max_establishing`, default 16; 0:
    /// none).
    pub max_establishing: usize,
}

/// A node's CPU: each event the node handles costs time, and a node handles one event at a
/// time, so its events queue behind each other (first come, first served) and are handled
/// late when it is overloaded. What a node does: open and handle an envelope, fire a timer,
/// take an agent report, and run its agents (their ticks and connectivity checks: the runtime
/// drives its agents on the same event loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// Cost of an envelope (open, check, handle).
    pub envelope: Duration,
    /// Cost of any other event.
    pub event: Duration,
    /// Every node on one CPU (one process running the whole mesh, as the runtime's mesh
    /// benchmark does) instead of one CPU each.
    pub shared: bool,
}

impl Cpu {
    /// Cost of an event other than an envelope in the load runs: 10 µs.
    pub const EVENT: Duration = Duration::from_micros(10);

    /// A CPU of its own for every node, `envelope` per envelope.
    pub fn own(envelope: Duration) -> Cpu {
        Cpu {
            envelope,
            event: Self::EVENT,
            shared: false,
        }
    }

    /// One CPU for all the nodes (one process running the whole mesh), `envelope` per
    /// envelope.
    pub fn one_for_all(envelope: Duration) -> Cpu {
        Cpu {
            shared: true,
            ..Self::own(envelope)
        }
    }
}

impl SimConfig {
    /// Two peers, default core configuration, the given policy.
    pub fn new(peers: usize, policy: RestartPolicy) -> SimConfig {
        SimConfig {
            peers,
            core: {
                let mut core = Config::default();
                core.policy = policy;
                core
            },
            trace: false,
            settle: Duration::from_secs(30),
            cpu: None,
            stamp_arrival: true,
            max_establishing: icepact::DEFAULT_MAX_ESTABLISHING,
            stop_when_settled: false,
        }
    }

    /// Rule LIVENESS_BOUND: once the last fault heals at T, every pair is converged by
    /// T + bound. The longest wait a healthy pair can face is a re-send back-off interval at
    /// its cap (`max · (1 + jitter)`, 90 s by default), after which the remote may still need
    /// to notice that an agent died: an agent checks a dead session for 30 s before it fails,
    /// and the core gives up on an agent that does not connect after its checking timeout
    /// (also 30 s; rule CHECKING_TIMEOUT covers a lost or never-given report, so the longer of
    /// the two counts), plus the core's disconnected timeout (25 s) and delivery slack (5 s):
    /// 150 s by default.
    ///
    /// The faults this bound now also covers need no more: a regressed epoch floor
    /// (EPOCH_CATCH_UP) costs one reply round trip after the new process's first description
    /// gets through (the rate limit of the reply is the initial back-off, 0.5 s, well inside
    /// the slack), and a lost report is repaired by the checking timeout, already counted. A
    /// gathering that finds nothing costs the gathering timeout (10 s) in New, before any
    /// `Connect`, in place of the checking timeout counted.
    pub fn liveness_bound(&self) -> Duration {
        let b = &self.core.backoff;
        let (_, max_interval) = b.bounds(u32::MAX);
        max_interval
            + FAILED_AFTER.max(self.core.checking_timeout)
            + self.core.disconnected_timeout
            + Duration::from_secs(5)
    }
}

/// What one run produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The first violated invariant, if any.
    pub violation: Option<Violation>,
    /// Heal time (end of the last fault).
    pub heal: Duration,
    /// When every pair was converged after heal (time after heal), if it happened.
    pub converged_after: Option<Duration>,
    /// The fault kinds that actually struck (a crash on a node that is already down, an agent
    /// fault whose phase never came, a loss whose report never came do not).
    pub struck: BTreeSet<FaultKind>,
    /// Counters.
    pub stats: Stats,
    /// Hash of the full event sequence (equal for equal runs).
    pub trace_hash: u64,
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Descriptions handed to the backend.
    pub sent: u64,
    /// Descriptions delivered to a peer.
    pub delivered: u64,
    /// Dropped by loss.
    pub dropped: u64,
    /// Duplicated.
    pub duplicated: u64,
    /// Lost to partitions (signaling).
    pub partitioned: u64,
    /// Discarded because the recipient was down.
    pub undeliverable: u64,
    /// Replayed by the backend.
    pub replayed: u64,
    /// Crashes.
    pub crashes: u64,
    /// Crashes whose new process started with an epoch floor not above the old epochs.
    pub regressed_floors: u64,
    /// Agent faults that struck.
    pub agent_faults: u64,
    /// Agent reports lost.
    pub lost_events: u64,
    /// Agent quirks shown.
    pub quirks: u64,
    /// Agent reports handed to the peer stamped before the current instant.
    pub late_reports: u64,
    /// Partitions.
    pub partitions: u64,
    /// Explicit restarts requested.
    pub restart_requests: u64,
    /// Session restarts (all peers).
    pub restarts: u64,
    /// Restarts by rule EPOCH_CATCH_UP.
    pub catch_ups: u64,
    /// Restarts by rule CHECKING_TIMEOUT.
    pub checking_timeouts: u64,
    /// Peers removed from an endpoint (and added again later).
    pub leaves: u64,
    /// Envelopes the recipient's endpoint refused (a replayed or duplicated nonce, a sender
    /// that is not a peer any more, the rate limit).
    pub refused: u64,
    /// Descriptions ignored as stale or duplicate.
    pub ignored: u64,
    /// Agents created, by kind (in the order of `AgentKind::ALL`).
    pub agents: [u64; 4],
    /// Agents restarted in place (rule AGENT_RESTART) instead of closed and created again.
    pub in_place_restarts: u64,
    /// Restarts by cause (`RestartCause`'s name), for load runs.
    pub causes: BTreeMap<&'static str, u64>,
    /// When the first restart happened.
    pub first_restart: Option<Duration>,
    /// Events a busy CPU made wait ([`Cpu`]).
    pub cpu_queued: u64,
    /// The longest such wait.
    pub cpu_max_wait: Duration,
}

/// Key pairs the runs draw their nodes' keys from (more than the largest mesh).
const KEY_POOL: usize = 1024;

/// The key pool, generated once per process from a fixed seed.
fn key_pool() -> &'static [(PublicKey, SecretKey)] {
    static POOL: OnceLock<Vec<(PublicKey, SecretKey)>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut rng = ChaCha8Rng::seed_from_u64(0x6b65_7973);
        let mut pool: BTreeMap<PublicKey, SecretKey> = BTreeMap::new();
        while pool.len() < KEY_POOL {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            let secret = SecretKey::from_bytes(k);
            pool.insert(secret.public_key(), secret);
        }
        pool.into_iter().collect()
    })
}

/// The fixed base instant of virtual time zero.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

#[derive(Debug)]
enum Ev {
    Signal {
        from: usize,
        to: usize,
        envelope: Vec<u8>,
    },
    Wake {
        node: usize,
        gen: u32,
    },
    AgentEvent {
        node: usize,
        remote: usize,
        gen: u32,
        agent: AgentId,
        event: AgentEvent,
    },
    Tick {
        node: usize,
        remote: usize,
        gen: u32,
        agent: AgentId,
    },
    Check {
        from: usize,
        to: usize,
        src: Credentials,
        dst: Credentials,
        reply: bool,
    },
    Episode(Episode),
    PartitionEnd {
        from: usize,
        to: usize,
        one_way: bool,
    },
    Recover {
        node: usize,
        floor: CrashFloor,
    },
    Rejoin {
        node: usize,
        remote: usize,
        gen: u32,
    },
    /// A node's CPU is free again: it handles the next event of its backlog.
    CpuFree {
        node: usize,
    },
}

impl Ev {
    /// The node whose CPU handles the event, and whether it is an envelope.
    fn cpu(&self) -> Option<(usize, bool)> {
        match *self {
            Ev::Signal { to, .. } => Some((to, true)),
            Ev::Check { to, .. } => Some((to, false)),
            Ev::Wake { node, .. }
            | Ev::AgentEvent { node, .. }
            | Ev::Tick { node, .. }
            | Ev::Rejoin { node, .. } => Some((node, false)),
            _ => None,
        }
    }
}

struct Scheduled {
    at: Duration,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The environment's side of the live agent: its data path.
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    /// When it was told to connect.
    started: Duration,
    /// When a check or keepalive last got through to it.
    last_rx: Duration,
    /// An agent fault broke it: nothing gets through any more.
    broken: bool,
}

/// The environment's side of one session of a node: the agent and its data path. The session
/// itself (the `Peer`) lives in the node's endpoint.
struct Slot {
    agent: ReferenceAgent,
    link: Link,
    /// When the latest connectivity report was scheduled: reports reach the peer in the order
    /// the agent gave them.
    report_at: Duration,
}

struct Node {
    key: PublicKey,
    secret: SecretKey,
    /// The process's endpoint (none while the node is down).
    endpoint: Option<Endpoint>,
    /// When the endpoint's earliest timer is due (the armed wake-up).
    wake: Option<Duration>,
    up: bool,
    /// Incarnation: bumped at every crash, so that what the dead process had in flight (agent
    /// reports, ticks, wake-ups) dies with it.
    gen: u32,
    /// The epoch floor the current process started with (its first epoch).
    first_epoch: u64,
    slots: Vec<Option<Slot>>,
}

/// An agent fault waiting for its phase.
struct Armed {
    node: usize,
    remote: usize,
    kind: AgentFaultKind,
    until: Duration,
}

/// A loss waiting for its report.
struct Loss {
    node: usize,
    remote: usize,
    skip: u32,
    until: Duration,
}

fn slot_in(nodes: &mut [Node], n: usize, r: usize) -> Option<&mut Slot> {
    let node = nodes.get_mut(n)?;
    if !node.up {
        return None;
    }
    node.slots.get_mut(r)?.as_mut()
}

/// One simulation run.
pub struct World {
    cfg: SimConfig,
    plan: Plan,
    rng: ChaCha8Rng,
    /// A separate stream for the early stamps of late reports, so that switching them off
    /// (shrinking) leaves every other random choice as it was.
    lag_rng: ChaCha8Rng,
    now: Duration,
    /// The instant the core is told: the arrival of the event being handled (rule
    /// STAMP_ARRIVAL), or `now`.
    core_now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<Node>,
    history: Vec<(usize, usize, Vec<u8>)>,
    /// Node index by public key (the endpoint names remotes by key).
    index: BTreeMap<PublicKey, usize>,
    blocked: BTreeMap<(usize, usize), u32>,
    creds_owner: BTreeMap<Credentials, (usize, u64)>,
    armed: Vec<Armed>,
    losses: Vec<Loss>,
    unconverged: BTreeSet<(usize, usize)>,
    /// Per node: when its CPU is free, and the events waiting for it (with their due time).
    busy: Vec<Duration>,
    backlog: Vec<VecDeque<(Duration, Ev)>>,
    restarts_after_heal: BTreeMap<(usize, usize), u32>,
    converged_at: Option<Duration>,
    outcome: Outcome,
    trace: Trace,
}

impl World {
    /// A world for `seed` with the given plan.
    pub fn new(cfg: SimConfig, seed: u64, plan: Plan) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let lag_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1a7e_0000_0000_0000);
        // Distinct keys from a fixed pool (deriving a public key is a scalar multiplication,
        // the most expensive step of a short run), in an order drawn from the seed.
        let pool = key_pool();
        let mut picked = BTreeSet::new();
        while picked.len() < cfg.peers.min(pool.len()) {
            picked.insert((rng.next_u64() % pool.len() as u64) as usize);
        }
        let mut keys: Vec<(PublicKey, SecretKey)> =
            picked.into_iter().map(|i| pool[i].clone()).collect();
        // Node order is not key order: shuffle so that node 0 is not always controlling.
        for i in (1..keys.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            keys.swap(i, j);
        }
        let index = keys.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect();
        let nodes = keys
            .into_iter()
            .map(|(key, secret)| Node {
                key,
                secret,
                endpoint: None,
                wake: None,
                up: true,
                gen: 0,
                first_epoch: 0,
                slots: Vec::new(),
            })
            .collect();
        let trace = Trace::new(cfg.trace);
        let peers = cfg.peers;
        let mut world = World {
            cfg,
            plan,
            rng,
            lag_rng,
            now: Duration::ZERO,
            core_now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            history: Vec::new(),
            index,
            blocked: BTreeMap::new(),
            creds_owner: BTreeMap::new(),
            armed: Vec::new(),
            losses: Vec::new(),
            unconverged: BTreeSet::new(),
            busy: vec![Duration::ZERO; peers],
            backlog: (0..peers).map(|_| VecDeque::new()).collect(),
            restarts_after_heal: BTreeMap::new(),
            converged_at: None,
            outcome: Outcome::default(),
            trace,
        };
        world.outcome.heal = world.plan.heal();
        if world.plan.lossy_until_ms > 0 {
            world.outcome.struck.insert(FaultKind::Lossy);
        }
        if world.plan.fault_kinds().contains(&FaultKind::None) {
            world.outcome.struck.insert(FaultKind::None);
        }
        for e in world.plan.episodes.clone() {
            let at = Duration::from_millis(e.at_ms());
            world.schedule(at, Ev::Episode(e));
        }
        for n in 0..world.nodes.len() {
            world.boot(n, None);
        }
        world
    }

    /// Runs to the end: heal + liveness bound + settle time, or the first violation.
    pub fn run(mut self) -> (Outcome, Trace) {
        let deadline = self.outcome.heal + self.cfg.liveness_bound();
        let end = deadline + self.cfg.settle;
        while let Some(Reverse(s)) = self.queue.pop() {
            if s.at > end || self.outcome.violation.is_some() {
                break;
            }
            let settled = self
                .converged_at
                .is_some_and(|t| s.at > t.saturating_add(self.cfg.settle));
            if self.cfg.stop_when_settled && settled && self.unconverged.is_empty() {
                break;
            }
            self.now = s.at;
            let (due, ev, queued) = match s.ev {
                // A wake-up left over from a crashed process's backlog is not this one's.
                Ev::CpuFree { node } if self.busy[node] != self.now => continue,
                Ev::CpuFree { node } => match self.backlog[node].pop_front() {
                    Some((due, ev)) => (due, ev, true),
                    None => continue,
                },
                ev => (s.at, ev, false),
            };
            if let (Some(cpu), Some((node, envelope))) = (self.cfg.cpu, ev.cpu()) {
                let n = if cpu.shared { 0 } else { node };
                // One event at a time per node, in arrival order.
                if !queued && (self.busy[n] > self.now || !self.backlog[n].is_empty()) {
                    if self.backlog[n].is_empty() {
                        let free = self.busy[n];
                        self.schedule(free, Ev::CpuFree { node: n });
                    }
                    self.outcome.stats.cpu_queued += 1;
                    self.backlog[n].push_back((due, ev));
                    continue;
                }
                let wait = self.now.saturating_sub(due);
                self.outcome.stats.cpu_max_wait = self.outcome.stats.cpu_max_wait.max(wait);
                self.busy[n] = self.now + if envelope { cpu.envelope } else { cpu.event };
                if queued && !self.backlog[n].is_empty() {
                    let free = self.busy[n];
                    self.schedule(free, Ev::CpuFree { node: n });
                }
            }
            self.outcome.stats.events += 1;
            self.core_now = if self.cfg.stamp_arrival {
                due
            } else {
                self.now
            };
            self.handle(ev, due);
            self.track_convergence();
        }
        if self.outcome.violation.is_none() {
            match self.converged_at {
                Some(t) if t <= deadline => {}
                _ => {
                    let pending: Vec<_> = self.unconverged.iter().take(4).collect();
                    self.violate(Violation {
                        invariant: Invariant::Converges,
                        detail: format!(
                            "not converged by heal {:?} + bound {:?}; unconverged pairs {pending:?}",
                            self.outcome.heal,
                            self.cfg.liveness_bound()
                        ),
                    });
                }
            }
        }
        self.outcome.converged_after = self
            .converged_at
            .map(|t| t.saturating_sub(self.outcome.heal));
        self.outcome.trace_hash = self.trace.hash();
        (self.outcome, self.trace)
    }

    fn schedule(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev,
        }));
    }

    /// The instant the core is told (rule STAMP_ARRIVAL).
    fn instant(&self) -> Instant {
        base() + self.core_now
    }

    fn violate(&mut self, v: Violation) {
        self.trace.push(
            self.now,
            TraceKind::Violation {
                what: v.to_string(),
            },
        );
        if self.outcome.violation.is_none() {
            self.outcome.violation = Some(v);
        }
    }

    fn check(&mut self, r: Result<(), Violation>) {
        if let Err(v) = r {
            self.violate(v);
        }
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.trace.is_enabled() {
            self.trace.push(self.now, TraceKind::Fault { what: what() });
        }
    }

    /// Starts (or restarts after a crash) a node's process: one fresh `Peer` and agent slot per
    /// remote. `floor` is the crash's choice of epoch floor; the first boot, like
    /// [`CrashFloor::Above`], takes the virtual wall clock in µs + 1.
    fn boot(&mut self, n: usize, floor: Option<CrashFloor>) {
        let now = self.instant();
        let wall = WALL_CLOCK_START_US + self.now.as_micros() as u64;
        let old = self.nodes[n].first_epoch;
        // Rule EPOCH_ORDER asks for a floor above every epoch the key used before; a crash may
        // choose one that is not (rule EPOCH_CATCH_UP must repair it).
        // Seed 001's session ids are random: under its policy a new process never repeats or
        // undercuts an old one, so every floor is a fresh one (as in the model checker).
        let floor = if self.cfg.core.policy == RestartPolicy::Seed {
            floor.map(|_| CrashFloor::Above)
        } else {
            floor
        };
        let epoch_floor = match floor {
            None | Some(CrashFloor::Above) => wall + 1,
            Some(CrashFloor::Zero) => 0,
            Some(CrashFloor::Below { gap }) => old.saturating_sub(gap),
            Some(CrashFloor::Equal) => old,
        };
        if let Some(f) = floor {
            self.outcome.struck.insert(f.fault_kind());
            if f != CrashFloor::Above {
                self.outcome.stats.regressed_floors += 1;
            }
        }
        self.note(|| format!("node {n} starts with epoch floor {epoch_floor} (previous {old})"));
        self.nodes[n].first_epoch = epoch_floor;
        let kind = self.plan.agent(n);
        let mut config = EndpointConfig::default();
        config.max_establishing = self.cfg.max_establishing;
        config.peer = self.cfg.core;
        config.peer.agent_restart = self.plan.agent_restart(n);
        let seed = Seed::insecure_from_u64(self.rng.next_u64());
        let mut endpoint = Endpoint::new(config, self.nodes[n].secret.clone(), epoch_floor, seed);
        let count = self.nodes.len();
        let mut slots = Vec::with_capacity(count);
        for r in 0..count {
            slots.push((r != n).then(|| Slot {
                agent: ReferenceAgent::new(kind, GATHERS),
                link: Link::default(),
                report_at: Duration::ZERO,
            }));
            if r != n {
                endpoint
                    .add_peer(now, self.nodes[r].key)
                    .expect("node keys are distinct X25519 keys");
            }
        }
        let node = &mut self.nodes[n];
        node.endpoint = Some(endpoint);
        node.slots = slots;
        node.wake = None;
        node.up = true;
        for r in 0..count {
            if r != n {
                self.unconverged.insert(pair(n, r));
                if let (Some(a), Some(b)) = (self.peer(n, r), self.peer(r, n)) {
                    let roles = invariants::opposite_roles(a, b);
                    self.check(roles);
                }
            }
        }
        self.drain(n);
    }

    /// The session of node `n` with node `r`, if `n` is up and has one.
    fn peer(&self, n: usize, r: usize) -> Option<&Peer> {
        let node = &self.nodes[n];
        if !node.up {
            return None;
        }
        node.endpoint.as_ref()?.peer(&self.nodes[r].key)
    }

    fn slot(&self, n: usize, r: usize) -> Option<&Slot> {
        let node = &self.nodes[n];
        if !node.up {
            return None;
        }
        node.slots.get(r)?.as_ref()
    }

    fn slot_mut(&mut self, n: usize, r: usize) -> Option<&mut Slot> {
        slot_in(&mut self.nodes, n, r)
    }

    /// Handles `ev`, due at `due` (earlier than now when a busy CPU made it wait).
    fn handle(&mut self, ev: Ev, due: Duration) {
        match ev {
            Ev::Signal { from, to, envelope } => self.deliver(from, to, envelope),
            Ev::Wake { node, gen } => {
                if self.nodes[node].gen != gen || self.nodes[node].wake != Some(due) {
                    return; // the process that armed it is gone, or a superseded wake-up
                }
                self.nodes[node].wake = None;
                let now = self.instant();
                if let Some(endpoint) = self.nodes[node].endpoint.as_mut() {
                    endpoint
                        .handle_timeout(now)
                        .expect("virtual time never goes backwards");
                }
                self.drain(node);
            }
            Ev::AgentEvent {
                node,
                remote,
                gen,
                agent,
                event,
            } => self.agent_event(node, remote, gen, agent, event),
            Ev::Tick {
                node,
                remote,
                gen,
                agent,
            } => self.tick(node, remote, gen, agent),
            Ev::Check {
                from,
                to,
                src,
                dst,
                reply,
            } => self.check_arrives(from, to, src, dst, reply),
            Ev::Episode(e) => self.episode(e),
            Ev::PartitionEnd { from, to, one_way } => {
                self.note(|| format!("heal {from}-{to}"));
                self.unblock(from, to);
                if !one_way {
                    self.unblock(to, from);
                }
            }
            Ev::Recover { node, floor } => {
                self.note(|| format!("node {node} restarts"));
                self.boot(node, Some(floor));
            }
            Ev::CpuFree { .. } => {}
            Ev::Rejoin { node, remote, gen } => {
                if self.nodes[node].gen != gen {
                    return; // the node crashed since: its new process has every peer
                }
                self.note(|| format!("node {node} adds {remote} again"));
                let now = self.instant();
                let key = self.nodes[remote].key;
                if let Some(endpoint) = self.nodes[node].endpoint.as_mut() {
                    // The peer may be there already (a second leave of the pair rejoined
                    // first).
                    let _ = endpoint.add_peer(now, key);
                }
                self.drain(node);
            }
        }
    }

    fn unblock(&mut self, a: usize, b: usize) {
        if let Some(c) = self.blocked.get_mut(&(a, b)) {
            *c -= 1;
            if *c == 0 {
                self.blocked.remove(&(a, b));
            }
        }
    }

    fn is_blocked(&self, a: usize, b: usize) -> bool {
        self.blocked.contains_key(&(a, b))
    }

    fn faulty(&self) -> bool {
        self.now < Duration::from_millis(self.plan.lossy_until_ms)
    }

    fn chance(&mut self, permille: u32) -> bool {
        permille > 0 && (self.rng.next_u64() % 1000) < u64::from(permille)
    }

    fn delay(&mut self) -> Duration {
        let jitter = if self.faulty() {
            self.plan.profile.jitter_ms
        } else {
            0
        };
        let base_us =
            2_000 + self.rng.next_u64() % (crate::profile::MAX_SIGNALING_DELAY_MS * 1000 - 2_000);
        let extra_us = if jitter > 0 {
            self.rng.next_u64() % (jitter * 1000)
        } else {
            0
        };
        Duration::from_micros(base_us + extra_us)
    }

    /// What an envelope from `from` to `to` says, opened with the recipient's key (for
    /// traces only: the simulator never needs it to run).
    fn observe(&self, from: usize, to: usize, envelope: &[u8]) -> Option<Description> {
        Channel::new(&self.nodes[to].secret, self.nodes[from].key)
            .ok()?
            .open(envelope)
            .ok()
    }

    /// The signaling backend: addressed by key, may drop, duplicate and reorder while faults
    /// last; discards for a recipient that is down; keeps only a bounded replay history.
    fn publish(&mut self, from: usize, to: usize, envelope: Vec<u8>) {
        self.outcome.stats.sent += 1;
        if self.history.len() == REPLAY_HISTORY {
            let i = (self.rng.next_u64() % REPLAY_HISTORY as u64) as usize;
            self.history[i] = (from, to, envelope.clone());
        } else {
            self.history.push((from, to, envelope.clone()));
        }
        let fate = if self.is_blocked(from, to) {
            self.outcome.stats.partitioned += 1;
            "partitioned"
        } else if self.faulty() && self.chance(self.plan.profile.drop_permille) {
            self.outcome.stats.dropped += 1;
            "dropped"
        } else {
            let copies = if self.faulty() && self.chance(self.plan.profile.dup_permille) {
                self.outcome.stats.duplicated += 1;
                2
            } else {
                1
            };
            for _ in 0..copies {
                let at = self.now + self.delay();
                self.schedule(
                    at,
                    Ev::Signal {
                        from,
                        to,
                        envelope: envelope.clone(),
                    },
                );
            }
            if copies == 2 {
                "duplicated"
            } else {
                "sent"
            }
        };
        if self.trace.is_enabled() {
            if let Some(d) = self.observe(from, to, &envelope) {
                self.trace.push(
                    self.now,
                    TraceKind::Send {
                        from,
                        to,
                        epoch: d.session.epoch,
                        version: d.session.version,
                        ack: d.ack.map(|a| (a.epoch, a.version)),
                        need_reply: d.need_reply,
                        candidates: d.candidates.len(),
                        fate: fate.to_string(),
                    },
                );
            }
        }
    }

    /// The recipient's endpoint checks, opens and applies an envelope. Refusals that a correct
    /// sender meets (a replayed or duplicated nonce, a sender that is no longer a peer, the
    /// rate limit) are counted; any other refusal of a correct sender's envelope is a
    /// violation.
    fn deliver(&mut self, from: usize, to: usize, envelope: Vec<u8>) {
        let now = self.instant();
        let key = self.nodes[from].key;
        let node = &mut self.nodes[to];
        let Some(endpoint) = node.endpoint.as_mut().filter(|_| node.up) else {
            self.outcome.stats.undeliverable += 1;
            return;
        };
        let before = endpoint.peer(&key).and_then(Peer::newest_applied);
        let result = endpoint.handle_envelope(now, &envelope);
        let after = endpoint.peer(&key).and_then(Peer::newest_applied);
        self.outcome.stats.delivered += 1;
        let disposition = match &result {
            Ok(Disposition::Applied) => "applied".to_string(),
            Ok(Disposition::Ignored(reason)) => {
                self.outcome.stats.ignored += 1;
                format!("{reason:?}")
            }
            Err(refusal) => {
                self.outcome.stats.refused += 1;
                format!("refused: {refusal}")
            }
        };
        if self.trace.is_enabled() {
            if let Some(d) = self.observe(from, to, &envelope) {
                self.trace.push(
                    self.now,
                    TraceKind::Deliver {
                        from,
                        to,
                        epoch: d.session.epoch,
                        version: d.session.version,
                        disposition,
                    },
                );
            }
        }
        match result {
            Ok(_) | Err(Refusal::Replayed | Refusal::UnknownSender(_) | Refusal::RateLimited) => {}
            // A correct remote never sends an invalid description; only a broken rule could.
            Err(Refusal::Rejected(e)) => self.violate(Violation {
                invariant: Invariant::MonotonicVersions,
                detail: format!("a description from a correct peer was rejected: {e}"),
            }),
            Err(other) => self.violate(Violation {
                invariant: Invariant::MonotonicVersions,
                detail: format!("an envelope from a correct peer was refused: {other}"),
            }),
        }
        self.check(invariants::monotonic_applied(before, after));
        self.drain(to);
    }

    /// Carries out everything node `n`'s endpoint wants done, then re-arms its wake-up.
    fn drain(&mut self, n: usize) {
        let now = self.now;
        let gen = self.nodes[n].gen;
        let node = &mut self.nodes[n];
        let Some(endpoint) = node.endpoint.as_mut().filter(|_| node.up) else {
            return;
        };
        let mut outputs = Vec::new();
        while let Some(o) = endpoint.poll_output() {
            outputs.push(o);
        }
        let mut transmits = Vec::new();
        while let Some(t) = endpoint.poll_transmit() {
            transmits.push(t);
        }
        // After an input stamped a little early (rule LATE_INPUT) a timer may fall between the
        // peer's latest `now` and the simulator's: it is due now.
        let wake = endpoint.poll_timeout().map(|t| (t - base()).max(now));
        if let Some(t) = wake.filter(|&t| node.wake != Some(t)) {
            node.wake = Some(t);
            self.schedule(t, Ev::Wake { node: n, gen });
        }
        let mut commanded = BTreeSet::new();
        for t in transmits {
            let r = self.index[&t.to];
            self.publish(n, r, t.envelope);
        }
        for o in outputs {
            match o {
                EndpointOutput::Agent { remote, command } => {
                    let r = self.index[&remote];
                    commanded.insert(r);
                    self.agent_command(n, r, command);
                }
                EndpointOutput::Event { remote, event } => {
                    let r = self.index[&remote];
                    match event {
                        Event::StateChanged { from, to, .. } => {
                            self.trace.push(
                                self.now,
                                TraceKind::State {
                                    node: n,
                                    remote: r,
                                    from: format!("{from}"),
                                    to: format!("{to}"),
                                },
                            );
                            self.check(invariants::table_edge(from, to));
                            self.refresh_pair(n, r);
                        }
                        Event::Restarted { cause, .. } => self.restarted(n, r, cause),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        // Rule CANDIDATE_BINDING at the agent, once the peer's commands are carried out: every
        // remote candidate it holds belongs to the session it connects to (and it holds none
        // before it connects).
        for r in commanded {
            if let Some(slot) = self.slot(n, r) {
                let ok = slot.agent.check_binding();
                self.check(ok);
            }
        }
    }

    fn restarted(&mut self, n: usize, r: usize, cause: RestartCause) {
        self.outcome.stats.restarts += 1;
        let stats = &mut self.outcome.stats;
        let name = match cause {
            RestartCause::Requested => "requested",
            RestartCause::AgentFailed => "agent failed",
            RestartCause::AgentClosed => "agent closed",
            RestartCause::DisconnectedTimeout => "disconnected timeout",
            RestartCause::CheckingTimeout => {
                stats.checking_timeouts += 1;
                "checking timeout"
            }
            RestartCause::GatheringTimeout => "gathering timeout",
            RestartCause::EpochCatchUp { .. } => {
                stats.catch_ups += 1;
                "epoch catch-up"
            }
            RestartCause::RemoteRestart { .. } => "remote restart",
            _ => "other",
        };
        *stats.causes.entry(name).or_default() += 1;
        stats.first_restart.get_or_insert(self.now);
        self.trace.push(
            self.now,
            TraceKind::Restart {
                node: n,
                remote: r,
                cause: format!("{cause:?}"),
            },
        );
        // Rule NO_STORM_AFTER_HEAL: once the last fault is over, what it left behind may
        // restart each side of a pair once (a dead agent times out on one side, the other
        // follows the new session); any more is a storm.
        if self.now >= self.outcome.heal {
            let count = self.restarts_after_heal.entry(pair(n, r)).or_default();
            *count += 1;
            let count = *count;
            let ok = invariants::no_restart_storm(u64::from(count), 1);
            if ok.is_err() {
                self.check(ok.map_err(|mut v| {
                    v.detail = format!(
                        "pair {:?} restarted {count} times after heal (last: node {n}, {cause:?})",
                        pair(n, r)
                    );
                    v
                }));
            }
        }
    }

    /// A pair is converged when both peers are converged (both Connected or Completed, each
    /// holding the other's current credentials) and both agents have a working pair: a peer
    /// that stays Connected over an agent that failed (its report lost) is not.
    fn refresh_pair(&mut self, n: usize, r: usize) {
        let working = |s: &Slot| {
            !s.link.broken
                && s.agent
                    .live()
                    .is_some_and(|a| matches!(a.phase, Phase::Connected | Phase::Completed))
        };
        let ok = match (
            self.slot(n, r),
            self.slot(r, n),
            self.peer(n, r),
            self.peer(r, n),
        ) {
            (Some(a), Some(b), Some(pa), Some(pb)) => {
                invariants::converged(pa, pb) && working(a) && working(b)
            }
            _ => false,
        };
        if ok {
            self.unconverged.remove(&pair(n, r));
        } else {
            self.unconverged.insert(pair(n, r));
        }
    }

    /// Liveness is judged on the final, stable convergence: a pair may still wobble right after
    /// heal (an agent notices silence a keepalive interval later), but by the deadline every
    /// pair must be converged and stay so until the end of the run.
    fn track_convergence(&mut self) {
        if self.now < self.outcome.heal {
            return;
        }
        if !self.unconverged.is_empty() {
            self.converged_at = None;
        } else if self.converged_at.is_none() {
            self.converged_at = Some(self.now);
            self.trace.push(
                self.now,
                TraceKind::Fault {
                    what: "all pairs converged".into(),
                },
            );
        }
    }

    // -------------------------------------------------------------------------------------
    // The ICE agent: the reference model, driven by the core's commands and the data plane

    fn agent_command(&mut self, n: usize, r: usize, cmd: AgentCommand) {
        let now = self.now;
        let gen = self.nodes[n].gen;
        let mut created = false;
        let restart = matches!(cmd, AgentCommand::Restart { .. });
        let mut connect = None;
        match &cmd {
            AgentCommand::Create {
                agent, credentials, ..
            }
            | AgentCommand::Restart {
                new: agent,
                credentials,
                ..
            } => {
                self.creds_owner.insert(credentials.clone(), (n, agent.0));
                created = true;
            }
            AgentCommand::Connect { agent, .. } => connect = Some(*agent),
            _ => {}
        }
        let binding = matches!(
            cmd,
            AgentCommand::AddRemoteCandidate { .. } | AgentCommand::Connect { .. }
        );
        let owner = &self.creds_owner;
        let Some(slot) = slot_in(&mut self.nodes, n, r) else {
            return;
        };
        let result = slot
            .agent
            .handle_command(cmd, |c| owner.get(c).map(|&(_, epoch)| epoch));
        if created {
            // A new agent, or one restarted in place: either way its pairs are new.
            slot.link = Link {
                started: now,
                last_rx: now,
                broken: false,
            };
        }
        if restart {
            self.outcome.stats.in_place_restarts += 1;
        } else if created {
            let kind = slot.agent.kind();
            let i = AgentKind::ALL.iter().position(|&k| k == kind).unwrap_or(0);
            self.outcome.stats.agents[i] += 1;
        }
        let connected = connect.filter(|_| result.is_ok());
        if connected.is_some() {
            slot.link.started = now;
            slot.link.last_rx = now;
        }
        // Checked at every candidate once the agent connects, as the commands arrive.
        let bound = (binding && slot.agent.live().is_some_and(|a| a.remote.is_some()))
            .then(|| slot.agent.check_binding());
        if let Err(breach) = result {
            self.violate(contract_violation(breach));
        }
        if let Some(ok) = bound {
            self.check(ok);
        }
        if let Some(agent) = connected {
            self.schedule(
                now + Duration::from_millis(1),
                Ev::Tick {
                    node: n,
                    remote: r,
                    gen,
                    agent,
                },
            );
        }
        self.pump(n, r);
    }

    /// Strikes armed agent faults whose phase has come, then hands every report the agent
    /// queued to the event queue: local candidates and end of gathering with gathering delays,
    /// connectivity reports a millisecond later and in order. A loss waiting for a report of
    /// the live agent takes it here.
    fn pump(&mut self, n: usize, r: usize) {
        self.strike(n, r);
        // The agent's phase may have changed (a pair found or lost, a fault): so may the pair's
        // convergence, even if no report of it ever reaches the peer.
        self.refresh_pair(n, r);
        let now = self.now;
        let gen = self.nodes[n].gen;
        if !self.losses.is_empty() {
            self.losses.retain(|l| now <= l.until);
        }
        let mut gathered: Option<Duration> = None;
        loop {
            let Some(slot) = slot_in(&mut self.nodes, n, r) else {
                return;
            };
            let Some((agent, event)) = slot.agent.peek_event().cloned() else {
                return;
            };
            let of_live = slot.agent.live().is_some_and(|a| a.id == agent);
            let report = !matches!(
                event,
                AgentEvent::LocalCandidate(_) | AgentEvent::GatheringDone
            );
            if report && of_live {
                if let Some(loss) = self
                    .losses
                    .iter_mut()
                    .find(|l| l.node == n && l.remote == r)
                {
                    if loss.skip > 0 {
                        loss.skip -= 1;
                    } else {
                        self.losses.retain(|l| !(l.node == n && l.remote == r));
                        // The front report is not a local candidate, so it is the one lost.
                        let lost = slot.agent.lose_event();
                        self.outcome.stats.lost_events += 1;
                        self.outcome.struck.insert(FaultKind::LostEvent);
                        self.note(|| format!("node {n} to {r}: agent report {lost:?} lost"));
                        continue;
                    }
                }
            }
            slot.agent.poll_event();
            let at = match event {
                AgentEvent::LocalCandidate(_) => {
                    let t = match gathered {
                        None => now + Duration::from_millis(5 + self.rng.next_u64() % 20),
                        Some(t) => t + Duration::from_millis(20 + self.rng.next_u64() % 100),
                    };
                    gathered = Some(t);
                    t
                }
                AgentEvent::GatheringDone => gathered.unwrap_or(now) + Duration::from_millis(1),
                _ => {
                    let t = (now + REPORT_DELAY).max(slot.report_at);
                    slot.report_at = t;
                    t
                }
            };
            self.schedule(
                at,
                Ev::AgentEvent {
                    node: n,
                    remote: r,
                    gen,
                    agent,
                    event,
                },
            );
        }
    }

    /// The first armed fault of this agent whose phase has come strikes: the agent breaks and
    /// reports what the fault says.
    fn strike(&mut self, n: usize, r: usize) {
        if self.armed.is_empty() {
            return;
        }
        let now = self.now;
        self.armed.retain(|a| now <= a.until);
        let no_local = self
            .peer(n, r)
            .is_some_and(|p| p.local_candidates().is_empty());
        let Some(slot) = slot_in(&mut self.nodes, n, r) else {
            return;
        };
        let Some(phase) = slot.agent.live().map(|a| a.phase) else {
            return;
        };
        let connected = matches!(phase, Phase::Connected | Phase::Completed);
        let gathering = slot.agent.gathering() && no_local;
        let Some(i) = self.armed.iter().position(|a| {
            a.node == n
                && a.remote == r
                && match a.kind {
                    AgentFaultKind::FailChecking => phase == Phase::Checking,
                    AgentFaultKind::Disconnect | AgentFaultKind::FailConnected => connected,
                    AgentFaultKind::NoCandidates => gathering,
                }
        }) else {
            return;
        };
        let kind = self.armed.remove(i).kind;
        match kind {
            AgentFaultKind::FailChecking | AgentFaultKind::FailConnected => {
                slot.link.broken = true;
                slot.agent.give_up();
            }
            AgentFaultKind::Disconnect => {
                slot.link.broken = true;
                slot.agent.pair_lost();
            }
            // The agent has no candidate: the pair cannot form, but the link is fine for the
            // next agent.
            AgentFaultKind::NoCandidates => {
                slot.agent.gather_nothing();
            }
        }
        self.outcome.stats.agent_faults += 1;
        self.outcome.struck.insert(kind.fault_kind());
        self.note(|| format!("agent fault {kind:?} strikes node {n} to {r} in {phase:?}"));
    }

    /// A report reaches the peer, stamped up to `late_ms` before the current instant when the
    /// plan says so (rule LATE_INPUT: it must be accepted). Reports of an agent the peer has
    /// closed still reach it (the real race); the peer must ignore them.
    fn agent_event(&mut self, n: usize, r: usize, gen: u32, agent: AgentId, event: AgentEvent) {
        if self.nodes[n].gen != gen {
            return; // the process crashed, and its agent with it
        }
        let late_ms = self.plan.profile.late_ms;
        let key = self.nodes[r].key;
        let node = &mut self.nodes[n];
        let Some(endpoint) = node.endpoint.as_mut().filter(|_| node.up) else {
            return;
        };
        let lag = if late_ms > 0 {
            Duration::from_micros(self.lag_rng.next_u64() % (late_ms * 1000 + 1))
        } else {
            Duration::ZERO
        };
        let stamp = base() + self.core_now.saturating_sub(lag);
        let result = match endpoint.handle_agent_event(stamp, key, agent, event.clone()) {
            // The session was removed (the remote left): its agent's reports go nowhere.
            Err(EndpointError::UnknownPeer(_)) => return,
            other => other,
        };
        if !lag.is_zero() {
            self.outcome.stats.late_reports += 1;
            self.outcome.struck.insert(FaultKind::LateEvents);
        }
        if self.trace.is_enabled() {
            let disposition = match &result {
                Ok(Disposition::Applied) => "applied".to_string(),
                Ok(Disposition::Ignored(reason)) => format!("{reason:?}"),
                Err(e) => format!("error: {e}"),
            };
            self.trace.push(
                self.now,
                TraceKind::Agent {
                    node: n,
                    remote: r,
                    agent: agent.0,
                    event: event_name(&event),
                    early_us: lag.as_micros() as u64,
                    disposition,
                },
            );
        }
        if let Err(e) = result {
            // Rule AGENT_REPORTS: every report of a correct agent has an outcome.
            self.violate(Violation {
                invariant: Invariant::TableEdgesOnly,
                detail: format!("agent event {event:?} rejected: {e}"),
            });
        }
        self.drain(n);
    }

    /// The data plane's clock for one agent: connectivity checks while checking, keepalives
    /// once connected, and the agent's timeouts (pair lost after 5 s of silence, given up after
    /// 30 s of checking or silence).
    fn tick(&mut self, n: usize, r: usize, gen: u32, agent: AgentId) {
        if self.nodes[n].gen != gen {
            return;
        }
        let now = self.now;
        let Some(slot) = slot_in(&mut self.nodes, n, r) else {
            return;
        };
        let Some(a) = slot.agent.live().filter(|a| a.id == agent) else {
            return;
        };
        let (phase, local, remote) = (a.phase, a.local.clone(), a.remote.clone());
        let next = match phase {
            Phase::Checking => {
                if now - slot.link.started > FAILED_AFTER {
                    slot.agent.give_up();
                }
                CHECK_INTERVAL
            }
            Phase::Connected | Phase::Completed | Phase::Disconnected => {
                let silent = now - slot.link.last_rx;
                if silent > FAILED_AFTER {
                    slot.agent.give_up();
                } else if silent > DISCONNECTED_AFTER && phase != Phase::Disconnected {
                    slot.agent.pair_lost();
                }
                KEEPALIVE_INTERVAL
            }
            Phase::New | Phase::Failed => return,
        };
        let alive = slot.agent.live().is_some_and(|a| a.phase != Phase::Failed);
        let probe = remote.filter(|_| alive && !slot.link.broken);
        if let Some(dst) = probe {
            self.send_check(n, r, local, dst, false);
        }
        if alive {
            self.schedule(
                now + next,
                Ev::Tick {
                    node: n,
                    remote: r,
                    gen,
                    agent,
                },
            );
        }
        self.pump(n, r);
    }

    fn send_check(
        &mut self,
        from: usize,
        to: usize,
        src: Credentials,
        dst: Credentials,
        reply: bool,
    ) {
        if self.is_blocked(from, to) {
            return;
        }
        let at = self.now + Duration::from_micros(1_000 + self.rng.next_u64() % 19_000);
        self.schedule(
            at,
            Ev::Check {
                from,
                to,
                src,
                dst,
                reply,
            },
        );
    }

    /// A connectivity check (or its answer) arrives: it succeeds only if the receiving agent's
    /// local credentials are the ones the check was made with, and it was told to connect with
    /// the sender's current credentials. A success makes a checking or disconnected agent find
    /// its pair.
    fn check_arrives(
        &mut self,
        from: usize,
        to: usize,
        src: Credentials,
        dst: Credentials,
        reply: bool,
    ) {
        let now = self.now;
        // A packet from an agent that was closed (or broke, or gave up) while it was in flight
        // is discarded: a real agent's late STUN response would make the receiver Connected on
        // a dead session for a moment, a data-plane race that consent checks repair and that
        // the signaling protocol cannot prevent (see docs/SIMULATOR.md).
        let sender_alive = self.slot(from, to).is_some_and(|s| {
            !s.link.broken
                && s.agent
                    .live()
                    .is_some_and(|a| a.local == src && a.phase != Phase::Failed)
        });
        if !sender_alive {
            return;
        }
        let Some(slot) = self.slot_mut(to, from) else {
            return;
        };
        let Some(a) = slot.agent.live() else {
            return;
        };
        if slot.link.broken
            || matches!(a.phase, Phase::New | Phase::Failed)
            || a.local != dst
            || a.remote.as_ref() != Some(&src)
        {
            return;
        }
        let (phase, local) = (a.phase, a.local.clone());
        slot.link.last_rx = now;
        if matches!(phase, Phase::Checking | Phase::Disconnected) {
            slot.agent.pair_found();
            // Invariant ConnectedWithCurrentCredentials, when the agent connects: both peers
            // hold each other's current credentials. Its report reaches the peer a moment
            // later, and the remote may restart in between (or a quirk may step back from
            // Completed to Connected long after): a race no signaling can prevent, so the
            // check is made here, where the connection is made.
            if let (Some(a), Some(b)) = (self.peer(to, from), self.peer(from, to)) {
                let ok = invariants::connected_with_current_credentials(a, b);
                self.check(ok);
            }
        }
        if !reply {
            self.send_check(to, from, local, src, true);
        }
        self.pump(to, from);
    }

    // -------------------------------------------------------------------------------------
    // Faults

    fn episode(&mut self, e: Episode) {
        self.trace.push(
            self.now,
            TraceKind::Fault {
                what: format!("{e:?}"),
            },
        );
        match e {
            Episode::Partition {
                for_ms,
                from,
                to,
                one_way,
                ..
            } => {
                self.outcome.stats.partitions += 1;
                self.outcome.struck.insert(FaultKind::Partition);
                *self.blocked.entry((from, to)).or_default() += 1;
                if !one_way {
                    *self.blocked.entry((to, from)).or_default() += 1;
                }
                let at = self.now + Duration::from_millis(for_ms);
                self.schedule(at, Ev::PartitionEnd { from, to, one_way });
            }
            Episode::Crash {
                node,
                down_ms,
                floor,
                ..
            } => {
                if !self.nodes[node].up {
                    return;
                }
                self.outcome.stats.crashes += 1;
                self.nodes[node].up = false;
                self.nodes[node].gen += 1;
                // The process's queued work dies with it (on a CPU of its own; a shared CPU's
                // queue holds other nodes' work, and the dead process's is discarded by the
                // incarnation checks when its turn comes).
                if !self.cfg.cpu.is_some_and(|c| c.shared) {
                    self.backlog[node].clear();
                    self.busy[node] = self.now;
                }
                self.nodes[node].slots.clear();
                self.nodes[node].endpoint = None;
                self.nodes[node].wake = None;
                for r in 0..self.nodes.len() {
                    if r != node {
                        self.unconverged.insert(pair(node, r));
                    }
                }
                let at = self.now + Duration::from_millis(down_ms);
                self.schedule(at, Ev::Recover { node, floor });
            }
            Episode::AgentFault {
                node,
                remote,
                kind,
                within_ms,
                ..
            } => {
                self.armed.push(Armed {
                    node,
                    remote,
                    kind,
                    until: self.now + Duration::from_millis(within_ms),
                });
                self.pump(node, remote);
            }
            Episode::LoseEvent {
                node,
                remote,
                skip,
                within_ms,
                ..
            } => {
                self.losses.push(Loss {
                    node,
                    remote,
                    skip,
                    until: self.now + Duration::from_millis(within_ms),
                });
            }
            Episode::Quirk { node, remote, .. } => {
                let Some(slot) = self.slot_mut(node, remote) else {
                    return;
                };
                if slot.agent.quirk() {
                    self.outcome.stats.quirks += 1;
                    self.outcome.struck.insert(FaultKind::Quirk);
                }
                self.pump(node, remote);
            }
            Episode::Replay { count, .. } => {
                for _ in 0..count {
                    if self.history.is_empty() {
                        return;
                    }
                    let i = (self.rng.next_u64() % self.history.len() as u64) as usize;
                    let (from, to, envelope) = self.history[i].clone();
                    self.outcome.stats.replayed += 1;
                    self.outcome.struck.insert(FaultKind::Replay);
                    let at = self.now + self.delay();
                    self.schedule(at, Ev::Signal { from, to, envelope });
                }
            }
            Episode::Leave {
                node,
                remote,
                away_ms,
                ..
            } => {
                let now = self.instant();
                let key = self.nodes[remote].key;
                let n = &mut self.nodes[node];
                let removed = n.up
                    && n.endpoint
                        .as_mut()
                        .is_some_and(|e| e.remove_peer(now, key).is_ok());
                if !removed {
                    return;
                }
                self.outcome.stats.leaves += 1;
                self.outcome.struck.insert(FaultKind::Leave);
                self.drain(node);
                self.unconverged.insert(pair(node, remote));
                let gen = self.nodes[node].gen;
                let at = self.now + Duration::from_millis(away_ms);
                self.schedule(at, Ev::Rejoin { node, remote, gen });
            }
            Episode::Restart { node, remote, .. } => {
                let now = self.instant();
                let key = self.nodes[remote].key;
                let n = &mut self.nodes[node];
                let restarted = n.up
                    && n.endpoint
                        .as_mut()
                        .is_some_and(|e| e.restart(now, key).is_ok());
                if restarted {
                    self.outcome.stats.restart_requests += 1;
                    self.outcome.struck.insert(FaultKind::RestartRequest);
                }
                self.drain(node);
            }
        }
    }
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// A command of the core that breaks the agent contract, as the invariant it breaks.
fn contract_violation(breach: ContractBreach) -> Violation {
    let invariant = match breach {
        // NO_AGENT_AFTER_CLOSE and the Close-before-Create order.
        ContractBreach::TwoLiveAgents { .. } | ContractBreach::NotLive(_) => Invariant::OneAgent,
        // CONNECT_GUARD and CANDIDATE_BINDING.
        ContractBreach::ConnectTwice
        | ContractBreach::ConnectWithoutCandidates
        | ContractBreach::EndOfCandidates => Invariant::CandidateBinding,
        _ => Invariant::TableEdgesOnly,
    };
    Violation {
        invariant,
        detail: format!("agent contract: {breach}"),
    }
}

/// A short name of an agent report for traces (a candidate by the session it is tagged with).
fn event_name(event: &AgentEvent) -> String {
    match event {
        AgentEvent::LocalCandidate(c) => match invariants::tagged_session(c) {
            Some(e) => format!("LocalCandidate(e{e})"),
            None => "LocalCandidate".into(),
        },
        other => format!("{other:?}"),
    }
}
