//! The discrete-event world: nodes running real `icepact::Peer`s, a signaling backend, simulated
//! ICE agents with connectivity checks over a simulated data network, and the fault plan.
//!
//! Virtual time jumps from event to event. Everything random comes from one ChaCha8 stream
//! seeded by the run's seed, so a seed reproduces the run exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use icepact::invariants::{self, Invariant, Violation};
use icepact::{
    AgentCommand, AgentEvent, AgentId, Candidate, Config, Credentials, Description, Disposition,
    Event, Output, Peer, PublicKey, RestartPolicy,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::profile::{Episode, Plan};
use crate::trace::{Trace, TraceKind};

/// ICE agent timing of the simulated agent (pion's defaults).
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const DISCONNECTED_AFTER: Duration = Duration::from_secs(5);
const FAILED_AFTER: Duration = Duration::from_secs(30);
/// Old envelopes the backend keeps to replay.
const REPLAY_HISTORY: usize = 256;

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
}

impl SimConfig {
    /// Two peers, default core configuration, the given policy.
    pub fn new(peers: usize, policy: RestartPolicy) -> SimConfig {
        SimConfig {
            peers,
            core: Config {
                policy,
                ..Config::default()
            },
            trace: false,
            settle: Duration::from_secs(30),
        }
    }

    /// Rule LIVENESS_BOUND: once the last fault heals at T, every pair is converged by
    /// T + bound. The longest wait a healthy pair can face is a re-send back-off interval at
    /// its cap (`max · (1 + jitter)`, 90 s by default), after which the remote may still need
    /// to notice that an agent died (checking fails after 30 s), plus the core's disconnected
    /// timeout (25 s) and delivery slack (5 s).
    pub fn liveness_bound(&self) -> Duration {
        let b = &self.core.backoff;
        let (_, max_interval) = b.bounds(u32::MAX);
        max_interval + FAILED_AFTER + self.core.disconnected_timeout + Duration::from_secs(5)
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
    /// Agent faults.
    pub agent_faults: u64,
    /// Partitions.
    pub partitions: u64,
    /// Explicit restarts requested.
    pub restart_requests: u64,
    /// Session restarts (all peers).
    pub restarts: u64,
    /// Descriptions ignored as stale or duplicate.
    pub ignored: u64,
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
        d: Box<Description>,
    },
    Wake {
        node: usize,
        remote: usize,
    },
    AgentEvent {
        node: usize,
        remote: usize,
        agent: AgentId,
        event: AgentEvent,
    },
    Tick {
        node: usize,
        remote: usize,
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
    },
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AgentState {
    Gathering,
    /// Told to connect; becomes Checking when it reports so.
    Starting,
    Checking,
    Connected,
    Disconnected,
    Dead,
}

#[derive(Debug)]
struct SimAgent {
    id: AgentId,
    local: Credentials,
    remote: Option<Credentials>,
    connect_epoch: Option<u64>,
    candidate_epochs: Vec<u64>,
    state: AgentState,
    started: Duration,
    last_rx: Duration,
    broken: bool,
}

struct Slot {
    peer: Peer,
    agent: Option<SimAgent>,
    wake: Option<Duration>,
}

struct Node {
    key: PublicKey,
    up: bool,
    slots: Vec<Option<Slot>>,
}

/// One simulation run.
pub struct World {
    cfg: SimConfig,
    plan: Plan,
    rng: ChaCha8Rng,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<Node>,
    history: Vec<(usize, usize, Description)>,
    blocked: BTreeMap<(usize, usize), u32>,
    creds_owner: BTreeMap<Credentials, (usize, u64)>,
    unconverged: BTreeSet<(usize, usize)>,
    restarts_after_heal: BTreeMap<(usize, usize), u32>,
    converged_at: Option<Duration>,
    outcome: Outcome,
    trace: Trace,
}

impl World {
    /// A world for `seed` with the given plan.
    pub fn new(cfg: SimConfig, seed: u64, plan: Plan) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut keys = BTreeSet::new();
        while keys.len() < cfg.peers {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            keys.insert(k);
        }
        // Node order is not key order: shuffle so that node 0 is not always controlling.
        let mut keys: Vec<[u8; 32]> = keys.into_iter().collect();
        for i in (1..keys.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            keys.swap(i, j);
        }
        let nodes = keys
            .into_iter()
            .map(|k| Node {
                key: PublicKey(k),
                up: true,
                slots: Vec::new(),
            })
            .collect();
        let trace = Trace::new(cfg.trace);
        let mut world = World {
            cfg,
            plan,
            rng,
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            history: Vec::new(),
            blocked: BTreeMap::new(),
            creds_owner: BTreeMap::new(),
            unconverged: BTreeSet::new(),
            restarts_after_heal: BTreeMap::new(),
            converged_at: None,
            outcome: Outcome::default(),
            trace,
        };
        world.outcome.heal = world.plan.heal();
        for e in world.plan.episodes.clone() {
            let at = Duration::from_millis(match e {
                Episode::Partition { at_ms, .. }
                | Episode::Crash { at_ms, .. }
                | Episode::AgentFault { at_ms, .. }
                | Episode::Replay { at_ms, .. }
                | Episode::Restart { at_ms, .. } => at_ms,
            });
            world.schedule(at, Ev::Episode(e));
        }
        for n in 0..world.nodes.len() {
            world.boot(n);
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
            self.now = s.at;
            self.outcome.stats.events += 1;
            self.handle(s.ev);
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

    fn instant(&self) -> Instant {
        base() + self.now
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

    /// Starts (or restarts after a crash) a node's process: one fresh `Peer` per remote.
    fn boot(&mut self, n: usize) {
        let now = self.instant();
        // Rule EPOCH_ORDER across process restarts: the floor is the (virtual) wall clock in
        // microseconds, which exceeds every epoch the previous process used.
        let floor = self.now.as_micros() as u64 + 1;
        let count = self.nodes.len();
        let local = self.nodes[n].key;
        let mut slots = Vec::with_capacity(count);
        for r in 0..count {
            if r == n {
                slots.push(None);
                continue;
            }
            let seed = self.rng.next_u64();
            let peer = Peer::new(self.cfg.core, local, self.nodes[r].key, floor, seed, now)
                .expect("node keys are distinct");
            slots.push(Some(Slot {
                peer,
                agent: None,
                wake: None,
            }));
        }
        self.nodes[n].slots = slots;
        self.nodes[n].up = true;
        for r in 0..count {
            if r != n {
                self.unconverged.insert(pair(n, r));
                self.drain(n, r);
                if let (Some(a), Some(b)) = (self.slot(n, r), self.slot(r, n)) {
                    let roles = invariants::opposite_roles(&a.peer, &b.peer);
                    self.check(roles);
                }
            }
        }
    }

    fn slot(&self, n: usize, r: usize) -> Option<&Slot> {
        let node = &self.nodes[n];
        if !node.up {
            return None;
        }
        node.slots.get(r)?.as_ref()
    }

    fn slot_mut(&mut self, n: usize, r: usize) -> Option<&mut Slot> {
        let node = &mut self.nodes[n];
        if !node.up {
            return None;
        }
        node.slots.get_mut(r)?.as_mut()
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Signal { from, to, d } => self.deliver(from, to, &d),
            Ev::Wake { node, remote } => {
                let now = self.instant();
                let at = self.now;
                let Some(slot) = self.slot_mut(node, remote) else {
                    return;
                };
                if slot.wake != Some(at) {
                    return; // superseded wake-up
                }
                slot.wake = None;
                slot.peer
                    .handle_timeout(now)
                    .expect("virtual time never goes backwards");
                self.drain(node, remote);
            }
            Ev::AgentEvent {
                node,
                remote,
                agent,
                event,
            } => self.agent_event(node, remote, agent, event),
            Ev::Tick {
                node,
                remote,
                agent,
            } => self.tick(node, remote, agent),
            Ev::Check {
                from,
                to,
                src,
                dst,
                reply,
            } => self.check_arrives(from, to, src, dst, reply),
            Ev::Episode(e) => self.episode(e),
            Ev::PartitionEnd { from, to, one_way } => {
                self.trace.push(
                    self.now,
                    TraceKind::Fault {
                        what: format!("heal {from}-{to}"),
                    },
                );
                self.unblock(from, to);
                if !one_way {
                    self.unblock(to, from);
                }
            }
            Ev::Recover { node } => {
                self.trace.push(
                    self.now,
                    TraceKind::Fault {
                        what: format!("node {node} restarts"),
                    },
                );
                self.boot(node);
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
        let base_us = 2_000 + self.rng.next_u64() % 18_000;
        let extra_us = if jitter > 0 {
            self.rng.next_u64() % (jitter * 1000)
        } else {
            0
        };
        Duration::from_micros(base_us + extra_us)
    }

    /// The signaling backend: addressed by key, may drop, duplicate and reorder while faults
    /// last; discards for a recipient that is down; keeps only a bounded replay history.
    fn publish(&mut self, from: usize, to: usize, d: Description) {
        self.outcome.stats.sent += 1;
        if self.history.len() == REPLAY_HISTORY {
            let i = (self.rng.next_u64() % REPLAY_HISTORY as u64) as usize;
            self.history[i] = (from, to, d.clone());
        } else {
            self.history.push((from, to, d.clone()));
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
                        d: Box::new(d.clone()),
                    },
                );
            }
            if copies == 2 {
                "duplicated"
            } else {
                "sent"
            }
        };
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
                fate,
            },
        );
    }

    fn deliver(&mut self, from: usize, to: usize, d: &Description) {
        let now = self.instant();
        let Some(slot) = self.slot_mut(to, from) else {
            self.outcome.stats.undeliverable += 1;
            return;
        };
        let before = slot.peer.newest_applied();
        let result = slot.peer.handle_description(now, d);
        let after = slot.peer.newest_applied();
        self.outcome.stats.delivered += 1;
        let disposition = match &result {
            Ok(Disposition::Applied) => "applied".to_string(),
            Ok(Disposition::Ignored(reason)) => {
                self.outcome.stats.ignored += 1;
                format!("{reason:?}")
            }
            Err(e) => format!("error: {e}"),
        };
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
        if let Err(e) = result {
            // A correct remote never sends an invalid description; only a broken rule could.
            self.violate(Violation {
                invariant: Invariant::MonotonicVersions,
                detail: format!("a description from a correct peer was rejected: {e}"),
            });
        }
        self.check(invariants::monotonic_applied(before, after));
        self.drain(to, from);
    }

    /// Carries out everything a peer wants done, then re-arms its wake-up.
    fn drain(&mut self, n: usize, r: usize) {
        let mut outputs = Vec::new();
        let Some(slot) = self.slot_mut(n, r) else {
            return;
        };
        while let Some(o) = slot.peer.poll_output() {
            outputs.push(o);
        }
        let wake = slot.peer.poll_timeout().map(|t| t - base());
        let rearm = wake.filter(|&t| slot.wake != Some(t));
        if let Some(t) = rearm {
            slot.wake = Some(t);
        }
        if let Some(t) = rearm {
            self.schedule(t, Ev::Wake { node: n, remote: r });
        }
        for o in outputs {
            match o {
                Output::Send(d) => self.publish(n, r, d),
                Output::Agent(cmd) => self.agent_command(n, r, cmd),
                Output::Event(Event::StateChanged { from, to, .. }) => {
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
                    if to == icepact::ConnectionState::Connected {
                        if let (Some(a), Some(b)) = (self.slot(n, r), self.slot(r, n)) {
                            let ok =
                                invariants::connected_with_current_credentials(&a.peer, &b.peer);
                            self.check(ok);
                        }
                    }
                    self.refresh_pair(n, r);
                }
                Output::Event(Event::Restarted { cause, .. }) => {
                    self.outcome.stats.restarts += 1;
                    self.trace.push(
                        self.now,
                        TraceKind::Restart {
                            node: n,
                            remote: r,
                            cause: format!("{cause:?}"),
                        },
                    );
                    // Rule NO_STORM_AFTER_HEAL: once the last fault is over, what it left
                    // behind may restart each side of a pair once (a dead agent times out on one
                    // side, the other follows the new session); any more is a storm.
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
                Output::Event(_) => {}
                _ => {}
            }
        }
    }

    fn refresh_pair(&mut self, n: usize, r: usize) {
        let ok = match (self.slot(n, r), self.slot(r, n)) {
            (Some(a), Some(b)) => invariants::converged(&a.peer, &b.peer),
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
    // The simulated ICE agent

    fn agent_command(&mut self, n: usize, r: usize, cmd: AgentCommand) {
        let now = self.now;
        match cmd {
            AgentCommand::Create {
                agent, credentials, ..
            } => {
                let live = self.slot(n, r).is_some_and(|s| s.agent.is_some());
                self.check(invariants::one_agent(live));
                self.creds_owner.insert(credentials.clone(), (n, agent.0));
                if let Some(slot) = self.slot_mut(n, r) {
                    slot.agent = Some(SimAgent {
                        id: agent,
                        local: credentials,
                        remote: None,
                        connect_epoch: None,
                        candidate_epochs: Vec::new(),
                        state: AgentState::Gathering,
                        started: now,
                        last_rx: now,
                        broken: false,
                    });
                }
            }
            AgentCommand::Gather { agent } => {
                let host = tagged_candidate(agent.0, n, 1);
                let mut srflx = tagged_candidate(agent.0, n, 2);
                srflx.kind = icepact::CandidateKind::ServerReflexive;
                let t1 = now + Duration::from_millis(5 + self.rng.next_u64() % 20);
                let t2 = t1 + Duration::from_millis(20 + self.rng.next_u64() % 100);
                for (at, event) in [
                    (t1, AgentEvent::LocalCandidate(host)),
                    (t2, AgentEvent::LocalCandidate(srflx)),
                    (t2 + Duration::from_millis(1), AgentEvent::GatheringDone),
                ] {
                    self.schedule(
                        at,
                        Ev::AgentEvent {
                            node: n,
                            remote: r,
                            agent,
                            event,
                        },
                    );
                }
            }
            AgentCommand::AddRemoteCandidate { candidate, .. } => {
                let epoch = epoch_of(&candidate);
                if let Some(a) = self.slot_mut(n, r).and_then(|s| s.agent.as_mut()) {
                    a.candidate_epochs.push(epoch);
                }
                self.check_binding(n, r);
            }
            AgentCommand::Connect { agent, remote } => {
                let epoch = self.creds_owner.get(&remote).map(|&(_, e)| e);
                if let Some(a) = self.slot_mut(n, r).and_then(|s| s.agent.as_mut()) {
                    a.remote = Some(remote);
                    a.connect_epoch = epoch;
                    a.state = AgentState::Starting;
                }
                self.check_binding(n, r);
                let at = now + Duration::from_millis(1);
                self.schedule(
                    at,
                    Ev::AgentEvent {
                        node: n,
                        remote: r,
                        agent,
                        event: AgentEvent::Checking,
                    },
                );
                self.schedule(
                    at,
                    Ev::Tick {
                        node: n,
                        remote: r,
                        agent,
                    },
                );
            }
            AgentCommand::EndOfRemoteCandidates { .. } => {}
            AgentCommand::Close { agent } => {
                if let Some(slot) = self.slot_mut(n, r) {
                    if slot.agent.as_ref().is_some_and(|a| a.id == agent) {
                        slot.agent = None;
                    }
                }
            }
            _ => {}
        }
    }

    fn check_binding(&mut self, n: usize, r: usize) {
        let Some(a) = self.slot(n, r).and_then(|s| s.agent.as_ref()) else {
            return;
        };
        if a.remote.is_none() {
            return;
        }
        let result = invariants::candidate_binding(a.connect_epoch, a.candidate_epochs.clone());
        self.check(result);
    }

    fn agent_event(&mut self, n: usize, r: usize, agent: AgentId, event: AgentEvent) {
        let now = self.instant();
        let at = self.now;
        let Some(slot) = self.slot_mut(n, r) else {
            return;
        };
        if event == AgentEvent::Checking {
            if let Some(a) = slot.agent.as_mut().filter(|a| a.id == agent) {
                a.state = AgentState::Checking;
                a.started = at;
            }
        }
        // Events of an agent the peer has closed still reach it (the real race); the peer
        // must ignore them.
        match slot.peer.handle_agent_event(now, agent, event.clone()) {
            Ok(_) => {}
            Err(e) => {
                let v = Violation {
                    invariant: Invariant::TableEdgesOnly,
                    detail: format!("agent event {event:?} rejected: {e}"),
                };
                self.violate(v);
            }
        }
        self.drain(n, r);
    }

    fn tick(&mut self, n: usize, r: usize, agent: AgentId) {
        let now = self.now;
        let Some(a) = self
            .slot_mut(n, r)
            .and_then(|s| s.agent.as_mut())
            .filter(|a| a.id == agent)
        else {
            return;
        };
        if a.broken || a.state == AgentState::Dead {
            return;
        }
        let mut report = None;
        let next;
        match a.state {
            AgentState::Checking => {
                if now - a.started > FAILED_AFTER {
                    a.state = AgentState::Dead;
                    report = Some(AgentEvent::Failed);
                }
                next = CHECK_INTERVAL;
            }
            AgentState::Connected | AgentState::Disconnected => {
                let silent = now - a.last_rx;
                if silent > FAILED_AFTER {
                    a.state = AgentState::Dead;
                    report = Some(AgentEvent::Failed);
                } else if silent > DISCONNECTED_AFTER && a.state == AgentState::Connected {
                    a.state = AgentState::Disconnected;
                    report = Some(AgentEvent::Disconnected);
                }
                next = KEEPALIVE_INTERVAL;
            }
            AgentState::Gathering | AgentState::Starting | AgentState::Dead => return,
        }
        let probe = match (&a.remote, a.state) {
            (
                Some(remote),
                AgentState::Checking | AgentState::Connected | AgentState::Disconnected,
            ) => Some((a.local.clone(), remote.clone())),
            _ => None,
        };
        if let Some((src, dst)) = probe {
            self.send_check(n, r, src, dst, false);
            self.schedule(
                now + next,
                Ev::Tick {
                    node: n,
                    remote: r,
                    agent,
                },
            );
        }
        if let Some(event) = report {
            self.agent_event(n, r, agent, event);
        }
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
    /// the sender's current credentials.
    fn check_arrives(
        &mut self,
        from: usize,
        to: usize,
        src: Credentials,
        dst: Credentials,
        reply: bool,
    ) {
        let now = self.now;
        // A packet from an agent that was closed while it was in flight is discarded: a real
        // agent's late STUN response would make the receiver Connected on a dead session for
        // a moment, a data-plane race that consent checks repair and that the signaling
        // protocol cannot prevent (see docs/SIMULATOR.md).
        let sender_alive = self
            .slot(from, to)
            .and_then(|s| s.agent.as_ref())
            .is_some_and(|a| a.local == src && !a.broken);
        if !sender_alive {
            return;
        }
        let Some(a) = self.slot_mut(to, from).and_then(|s| s.agent.as_mut()) else {
            return;
        };
        if a.broken
            || a.state == AgentState::Dead
            || a.local != dst
            || a.remote.as_ref() != Some(&src)
        {
            return;
        }
        a.last_rx = now;
        let id = a.id;
        let event = match a.state {
            AgentState::Checking | AgentState::Disconnected => {
                a.state = AgentState::Connected;
                Some(AgentEvent::Connected)
            }
            _ => None,
        };
        let answer = (!reply).then(|| (a.local.clone(), src.clone()));
        if let Some((s, d)) = answer {
            self.send_check(to, from, s, d, true);
        }
        if let Some(event) = event {
            self.agent_event(to, from, id, event);
        }
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
                *self.blocked.entry((from, to)).or_default() += 1;
                if !one_way {
                    *self.blocked.entry((to, from)).or_default() += 1;
                }
                let at = self.now + Duration::from_millis(for_ms);
                self.schedule(at, Ev::PartitionEnd { from, to, one_way });
            }
            Episode::Crash { node, down_ms, .. } => {
                if !self.nodes[node].up {
                    return;
                }
                self.outcome.stats.crashes += 1;
                self.nodes[node].up = false;
                self.nodes[node].slots.clear();
                for r in 0..self.nodes.len() {
                    if r != node {
                        self.unconverged.insert(pair(node, r));
                    }
                }
                let at = self.now + Duration::from_millis(down_ms);
                self.schedule(at, Ev::Recover { node });
            }
            Episode::AgentFault { node, remote, .. } => {
                let Some(a) = self.slot_mut(node, remote).and_then(|s| s.agent.as_mut()) else {
                    return;
                };
                let event = match a.state {
                    AgentState::Checking => AgentEvent::Failed,
                    AgentState::Connected => AgentEvent::Disconnected,
                    _ => return,
                };
                a.broken = true;
                if event == AgentEvent::Failed {
                    a.state = AgentState::Dead;
                } else {
                    a.state = AgentState::Disconnected;
                }
                let id = a.id;
                self.outcome.stats.agent_faults += 1;
                self.agent_event(node, remote, id, event);
            }
            Episode::Replay { count, .. } => {
                for _ in 0..count {
                    if self.history.is_empty() {
                        return;
                    }
                    let i = (self.rng.next_u64() % self.history.len() as u64) as usize;
                    let (from, to, d) = self.history[i].clone();
                    self.outcome.stats.replayed += 1;
                    let at = self.now + self.delay();
                    self.schedule(
                        at,
                        Ev::Signal {
                            from,
                            to,
                            d: Box::new(d),
                        },
                    );
                }
            }
            Episode::Restart { node, remote, .. } => {
                let now = self.instant();
                let Some(slot) = self.slot_mut(node, remote) else {
                    return;
                };
                if slot.peer.restart(now).is_ok() {
                    self.outcome.stats.restart_requests += 1;
                }
                self.drain(node, remote);
            }
        }
    }
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// A candidate that names the session (epoch) it was gathered in, so the simulator can check
/// candidate/session binding at the agent.
fn tagged_candidate(epoch: u64, node: usize, n: u16) -> Candidate {
    let ip = Ipv4Addr::new(10, (node >> 8) as u8, node as u8, 1);
    invariants::tag_session(Candidate::host(SocketAddr::from((ip, 40_000 + n))), epoch)
}

fn epoch_of(c: &Candidate) -> u64 {
    // An untagged candidate names no session, so it can match no agent's connect epoch.
    invariants::tagged_session(c).unwrap_or(u64::MAX)
}
