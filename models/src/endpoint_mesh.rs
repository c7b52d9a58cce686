//! [`EndpointMesh`]: a mesh of real [`Endpoint`]s, one per node, as a stateright [`Model`].
//!
//! [`IceModel`](crate::model::IceModel) checks the rules of one session with two real
//! [`Peer`](icepact::Peer)s per session. What couples the sessions of one node lives a layer
//! above, in the [`Endpoint`] that owns them: rule ADMISSION (at most
//! `max_establishing` sessions gather and check at once, the others hold their remote's
//! descriptions and wait), ADMISSION_QUIET (a waiting session does not re-send), SUPERSEDED_SEND
//! (one description per remote on its way out), LATE_INPUT across the endpoint, and peers
//! removed and added again at any time (the next session starts above every epoch the removed
//! one used). This model runs exactly that code: each node is an `Endpoint`, driven through the
//! same calls the runtime and the simulator make, with descriptions handed over unsealed
//! (`Endpoint::handle_description` / `poll_description`: the same session logic without the
//! box; the inbound checks are tested and fuzzed elsewhere).
//!
//! The environment is the one of `IceModel`: the core's reference agent per session (reports
//! queued and handed over by an action, so late), two agents meeting when both were told to
//! connect with each other's current credentials, links of capacity one that lose the older
//! description, due timers only when nothing else can progress (capped), and faults with
//! budgets: a lost description, an agent that gives up, a crash of a node (the new process
//! starts with its floor above, equal to or below its old epochs, and every peer again), and a
//! peer removed by one node and added again later. Liveness is *quiescent ⇒ converged*, as
//! there (see [`crate::model`]). There is no partial-order reduction: with admission the
//! sessions of a node are not independent.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use icepact::invariants::{self, Invariant};
use icepact::reference_agent::{AgentKind, Phase, ReferenceAgent};
use icepact::{
    AgentCommand, ConnectionState, Credentials, Description, Disposition, Endpoint, EndpointConfig,
    EndpointError, EndpointOutput, Event, IgnoreReason, PublicKey, Refusal, Seed, SessionRef,
};
use stateright::{Expectation, Model, Property};

use crate::model::{
    agent_works, agents_can_meet, cmp_descriptions, epoch_floor, registered_command, Floor,
    PairStats, GATHERS, MAX_NODES,
};
use crate::properties::Flag;
use crate::shared::{digest_of, Shared};

/// Budgets of the environment of an [`EndpointMesh`]; each fault spends one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MeshBudgets {
    /// Descriptions lost in flight.
    pub drops: u8,
    /// Agents that give up (Failed) while checking or connected.
    pub failures: u8,
    /// Node crashes (floor above, equal to or below the old epochs).
    pub crashes: u8,
    /// A node removes one of its peers; the model adds it again later (a progress action).
    pub removals: u8,
    /// Due timer firings.
    pub timer_cap: u8,
}

impl MeshBudgets {
    /// The verification run's: a crash with any floor and a peer removed and added again.
    /// Timers fire only where nothing else can progress, so a larger cap costs few states:
    /// eight firings let a lost or ignored description be re-sent until it gets through.
    pub const VERIFY: MeshBudgets = MeshBudgets {
        drops: 0,
        failures: 0,
        crashes: 1,
        removals: 1,
        timer_cap: 8,
    };

    /// No fault; timers for recovery only.
    pub const NONE: MeshBudgets = MeshBudgets {
        drops: 0,
        failures: 0,
        crashes: 0,
        removals: 0,
        timer_cap: 2,
    };
}

/// A description in flight from node `from` to node `to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    /// Receiving node.
    pub to: u8,
    /// Sending node.
    pub from: u8,
    /// The description (sealed and opened in a real deployment).
    pub d: Description,
}

impl Packet {
    fn cmp_key(&self, other: &Packet) -> Ordering {
        (self.to, self.from)
            .cmp(&(other.to, other.from))
            .then_with(|| cmp_descriptions(&self.d, &other.d))
    }
}

/// One node: its real endpoint and an agent per session.
#[derive(Debug)]
pub struct Node {
    /// The real endpoint.
    pub endpoint: Endpoint,
    /// The agent of the session with each node (`None`: no session, or the node itself).
    pub agents: [Option<ReferenceAgent>; MAX_NODES],
}

impl Clone for Node {
    fn clone(&self) -> Self {
        Node {
            endpoint: self.endpoint.clone_for_model(),
            agents: self.agents.clone(),
        }
    }
}

/// Hashes what decides the node's future: the endpoint's protocol state (not its counters,
/// rate limits, replay cache or nonces, which act only on sealed envelopes) and the agents.
impl Hash for Node {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.endpoint.hash_protocol_state(state);
        self.agents.hash(state);
    }
}

/// Equal when their hashes are: the model compares states by fingerprint anyway.
impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        digest_of(self) == digest_of(other)
    }
}

impl Eq for Node {}

/// The model state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MeshState {
    /// Model time since the base instant.
    pub now: Duration,
    /// The nodes.
    pub nodes: Vec<Shared<Node>>,
    /// Descriptions in flight, sorted (a multiset).
    pub net: Vec<Packet>,
    /// What is left of the budgets.
    pub left: MeshBudgets,
    /// Crashes per node.
    pub crashes: [u8; MAX_NODES],
    /// The epoch floor of each node's current process.
    pub floors: [u64; MAX_NODES],
    /// A node and the peer it removed, to be added again.
    pub removed: Option<(u8, u8)>,
    /// Restarts and faults per session (pair index).
    pub pairs: [PairStats; MAX_NODES],
    /// Every credential created, with its epoch (sorted; names what an agent connects to).
    pub creds: Shared<Vec<(Credentials, u64)>>,
    /// Sticky [`Flag`] bits.
    pub flags: u32,
    /// The first (smallest) violation, in words.
    pub detail: Option<String>,
}

/// What the model does in one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MeshAction {
    /// Deliver `net[i]`.
    Deliver(usize),
    /// Lose `net[i]`.
    Drop(usize),
    /// The agent of node `.0`'s session with node `.1` hands over its next report.
    Report(u8, u8),
    /// The agents of session `.0`–`.1` find their pair.
    Meet(u8, u8),
    /// The earliest timer of node `.0` fires.
    Timer(u8),
    /// The agent of node `.0`'s session with `.1` gives up.
    Fail(u8, u8),
    /// Node `.0` crashes; its new process starts with this floor and every peer.
    Crash(u8, Floor),
    /// Node `.0` removes its peer `.1`.
    Remove(u8, u8),
    /// Node `.0` adds its peer `.1` again.
    Add(u8, u8),
}

/// The model: `nodes` real endpoints in a full mesh.
#[derive(Clone, Debug)]
pub struct EndpointMesh {
    /// Number of nodes (2 or 3).
    pub nodes: usize,
    /// Rule ADMISSION's bound of each endpoint (0: none).
    pub max_establishing: usize,
    /// Environment budgets.
    pub budgets: MeshBudgets,
    /// Which real agent the reference agent behaves like.
    pub agent: AgentKind,
    /// The fixed instant model time counts from.
    pub base: Instant,
    config: EndpointConfig,
    secrets: Vec<icepact::wire::SecretKey>,
    keys: Vec<PublicKey>,
}

impl EndpointMesh {
    /// `nodes` endpoints (2 or 3) admitting `max_establishing` sessions at once, with `budgets`.
    pub fn new(nodes: usize, max_establishing: usize, budgets: MeshBudgets) -> EndpointMesh {
        let nodes = nodes.clamp(2, MAX_NODES);
        // Fixed secrets, ordered by public key: node A has the smallest key (it controls).
        let mut secrets: Vec<_> = (0..nodes)
            .map(|n| icepact::wire::SecretKey::from_bytes([n as u8 + 1; 32]))
            .collect();
        secrets.sort_by_key(|s| s.public_key());
        let keys = secrets.iter().map(|s| s.public_key()).collect();
        let mut config = EndpointConfig::default();
        config.max_establishing = max_establishing;
        // As in IceModel: agents are polled after the other deadlines (correctness does not
        // depend on the interval; a shorter one spends the timer cap on ignored repeats).
        config.peer.report_poll_interval = Duration::from_secs(60);
        EndpointMesh {
            nodes,
            max_establishing,
            budgets,
            agent: AgentKind::Libwebrtc,
            base: Instant::now(),
            config,
            secrets,
            keys,
        }
    }

    /// A name for node `n`: A, B, C.
    pub fn name(n: usize) -> char {
        (b'A' + n as u8) as char
    }

    fn node_of(&self, key: &PublicKey) -> usize {
        self.keys
            .iter()
            .position(|k| k == key)
            .unwrap_or(usize::MAX)
    }

    fn pair(a: usize, b: usize) -> usize {
        // Sessions AB, AC, BC.
        match (a.min(b), a.max(b)) {
            (0, 1) => 0,
            (0, _) => 1,
            _ => 2,
        }
    }

    fn sessions(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.nodes).flat_map(move |a| (a + 1..self.nodes).map(move |b| (a, b)))
    }

    fn at(&self, s: &MeshState) -> Instant {
        self.base + s.now
    }

    /// A fresh process of node `n` after `crashes` crashes, with every peer.
    fn start(&self, s: &mut MeshState, n: usize, floor: u64) {
        let seed = Seed::insecure_from_u64(1 + n as u64 + 100 * u64::from(s.crashes[n]));
        let now = self.at(s);
        let endpoint = Endpoint::new(self.config, self.secrets[n].clone(), floor, seed);
        s.nodes[n] = Shared::new(Node {
            endpoint,
            agents: Default::default(),
        });
        for m in 0..self.nodes {
            if m != n {
                self.add(s, n, m, now);
            }
        }
    }

    fn add(&self, s: &mut MeshState, n: usize, m: usize, now: Instant) {
        let key = self.keys[m];
        let node = &mut s.nodes[n];
        node.agents[m] = Some(ReferenceAgent::new(self.agent, GATHERS));
        if let Err(e) = node.endpoint.add_peer(now, key) {
            let detail = format!("{}: add_peer({}) failed: {e}", Self::name(n), Self::name(m));
            Self::violate(s, Flag::InputsAccepted, detail);
        }
        self.drain(s, n);
    }

    fn violate(s: &mut MeshState, flag: Flag, detail: String) {
        if s.detail.as_ref().is_none_or(|d| detail < *d) {
            s.detail = Some(detail);
        }
        s.flags |= flag.bit();
    }

    /// True if every session has both ends connected on each other's current credentials,
    /// over agents with a working pair.
    pub fn converged(&self, s: &MeshState) -> bool {
        self.sessions().all(|(a, b)| {
            let (na, nb) = (&s.nodes[a], &s.nodes[b]);
            let (Some(pa), Some(pb)) = (
                na.endpoint.peer(&self.keys[b]),
                nb.endpoint.peer(&self.keys[a]),
            ) else {
                return false;
            };
            invariants::converged(pa, pb)
                && na.agents[b].as_ref().is_some_and(agent_works)
                && nb.agents[a].as_ref().is_some_and(agent_works)
        })
    }

    fn meet_enabled(&self, s: &MeshState, a: usize, b: usize) -> bool {
        match (&s.nodes[a].agents[b], &s.nodes[b].agents[a]) {
            (Some(x), Some(y)) => agents_can_meet(x, y),
            _ => false,
        }
    }

    /// True if a delivery, a report, a meeting or a re-add is enabled.
    fn busy(&self, s: &MeshState) -> bool {
        !s.net.is_empty()
            || s.removed.is_some()
            || s.nodes
                .iter()
                .any(|n| n.agents.iter().flatten().any(ReferenceAgent::has_events))
            || self.sessions().any(|(a, b)| self.meet_enabled(s, a, b))
    }

    fn earliest_timer(s: &MeshState) -> Option<Instant> {
        s.nodes
            .iter()
            .filter_map(|n| n.endpoint.poll_timeout())
            .min()
    }

    /// True if no progress action (delivery, report, meeting, re-add, due timer) is enabled.
    pub fn quiescent(&self, s: &MeshState) -> bool {
        !self.busy(s)
            && (s.left.timer_cap == 0 || Self::earliest_timer(s).is_none() || self.converged(s))
    }

    /// Applies `action` to `last`.
    pub fn step(&self, last: &MeshState, action: MeshAction) -> MeshState {
        let mut s = last.clone();
        let now = self.at(&s);
        match action {
            MeshAction::Deliver(i) => {
                let p = s.net.remove(i);
                let from = self.keys[usize::from(p.from)];
                self.input(&mut s, usize::from(p.to), |e| {
                    e.handle_description(now, from, &p.d).map_err(|r| match r {
                        // From a peer this node removed (or that removed it and sent from an
                        // earlier session): refused by routing, which is legal.
                        Refusal::UnknownSender(_) => None,
                        r => Some(r.to_string()),
                    })
                });
            }
            MeshAction::Drop(i) => {
                s.net.remove(i);
                s.left.drops -= 1;
            }
            MeshAction::Report(n, m) => {
                let (n, m) = (usize::from(n), usize::from(m));
                let event = s.nodes[n].agents[m].as_mut().and_then(|a| a.poll_event());
                if let Some((id, ev)) = event {
                    let remote = self.keys[m];
                    self.input(&mut s, n, |e| {
                        e.handle_agent_event(now, remote, id, ev).map_err(illegal)
                    });
                }
            }
            MeshAction::Meet(a, b) => {
                let (a, b) = (usize::from(a), usize::from(b));
                for (n, m) in [(a, b), (b, a)] {
                    if let Some(agent) = s.nodes[n].agents[m].as_mut() {
                        agent.pair_found();
                    }
                }
                for (n, m) in [(a, b), (b, a)] {
                    let remote = self.keys[m];
                    while let Some((id, ev)) =
                        s.nodes[n].agents[m].as_mut().and_then(|x| x.poll_event())
                    {
                        self.input(&mut s, n, |e| {
                            e.handle_agent_event(now, remote, id, ev).map_err(illegal)
                        });
                    }
                }
            }
            MeshAction::Timer(n) => {
                let n = usize::from(n);
                s.left.timer_cap -= 1;
                if let Some(t) = s.nodes[n].endpoint.poll_timeout() {
                    let at = t.max(now);
                    s.now = at.saturating_duration_since(self.base);
                    self.input(&mut s, n, |e| {
                        e.handle_timeout(at)
                            .map(|()| Disposition::Applied)
                            .map_err(illegal)
                    });
                }
            }
            MeshAction::Fail(n, m) => {
                s.left.failures -= 1;
                s.pairs[Self::pair(usize::from(n), usize::from(m))].faults += 1;
                if let Some(agent) = s.nodes[usize::from(n)].agents[usize::from(m)].as_mut() {
                    agent.give_up();
                }
            }
            MeshAction::Crash(n, floor) => {
                let n = usize::from(n);
                s.left.crashes -= 1;
                s.crashes[n] += 1;
                s.flags |= Flag::SeenCrash.bit();
                let value = match floor {
                    Floor::Above => epoch_floor(s.crashes[n]),
                    Floor::Equal => s.floors[n],
                    Floor::Zero => 0,
                };
                s.floors[n] = value;
                for m in (0..self.nodes).filter(|m| *m != n) {
                    s.pairs[Self::pair(n, m)].faults += 1;
                }
                // The new process has every peer again, a removed one included.
                if s.removed.is_some_and(|(r, _)| usize::from(r) == n) {
                    s.removed = None;
                }
                self.start(&mut s, n, value);
            }
            MeshAction::Remove(n, m) => {
                let (n, m) = (usize::from(n), usize::from(m));
                s.left.removals -= 1;
                s.pairs[Self::pair(n, m)].faults += 1;
                let remote = self.keys[m];
                self.input(&mut s, n, |e| {
                    e.remove_peer(now, remote)
                        .map(|()| Disposition::Applied)
                        .map_err(illegal)
                });
                s.nodes[n].agents[m] = None;
                s.removed = Some((n as u8, m as u8));
            }
            MeshAction::Add(n, m) => {
                s.removed = None;
                s.flags |= Flag::SeenReAdded.bit();
                self.add(&mut s, usize::from(n), usize::from(m), now);
            }
        }
        self.check_global(&mut s);
        for n in &mut s.nodes {
            n.seal();
        }
        s.creds.seal();
        s
    }

    /// Feeds one input to node `n`'s endpoint, checks the per-input invariants and carries out
    /// what it wants done.
    fn input(
        &self,
        s: &mut MeshState,
        n: usize,
        f: impl FnOnce(&mut Endpoint) -> Result<Disposition, Option<String>>,
    ) {
        let before: Vec<(PublicKey, Option<SessionRef>)> = s.nodes[n]
            .endpoint
            .peers()
            .map(|(k, p)| (*k, p.newest_applied()))
            .collect();
        match f(&mut s.nodes[n].endpoint) {
            Ok(Disposition::Ignored(IgnoreReason::Waiting)) => {
                s.flags |= Flag::SeenHeld.bit();
            }
            Ok(_) | Err(None) => {}
            Err(Some(e)) => {
                let detail = format!("{} refused a legal input: {e}", Self::name(n));
                Self::violate(s, Flag::InputsAccepted, detail);
            }
        }
        for (k, was) in before {
            if let Some(p) = s.nodes[n].endpoint.peer(&k) {
                if let Err(v) = invariants::monotonic_applied(was, p.newest_applied()) {
                    let detail = format!("{}: {}", Self::name(n), v.detail);
                    Self::violate(s, Flag::MonotonicVersions, detail);
                }
            }
        }
        self.drain(s, n);
    }

    /// Carries out node `n`'s outputs: agent commands to its agents, events checked,
    /// descriptions to the network.
    fn drain(&self, s: &mut MeshState, n: usize) {
        while let Some(out) = s.nodes[n].endpoint.poll_output() {
            match out {
                EndpointOutput::Agent { remote, command } => {
                    let m = self.node_of(&remote);
                    self.agent_command(s, n, m, command);
                }
                EndpointOutput::Event { remote, event } => {
                    let m = self.node_of(&remote);
                    self.event(s, n, m, event);
                }
                _ => {}
            }
        }
        while let Some((to, d)) = s.nodes[n].endpoint.poll_description() {
            let p = Packet {
                to: self.node_of(&to) as u8,
                from: n as u8,
                d,
            };
            // A link holds one description; a newer one replaces the older in flight.
            if let Some(i) = s.net.iter().position(|x| (x.to, x.from) == (p.to, p.from)) {
                s.net.remove(i);
            }
            let at = s.net.partition_point(|x| x.cmp_key(&p) == Ordering::Less);
            s.net.insert(at, p);
        }
        for m in 0..self.nodes {
            if let Some(Err(v)) = s.nodes[n].agents[m].as_ref().map(|a| a.check_binding()) {
                let detail = format!("{}({}): {}", Self::name(n), Self::name(m), v.detail);
                Self::violate(s, Flag::CandidateBinding, detail);
            }
        }
    }

    fn event(&self, s: &mut MeshState, n: usize, m: usize, event: Event) {
        let name = || format!("{}({})", Self::name(n), Self::name(m));
        match event {
            Event::StateChanged { from, to, .. } => {
                if let Err(v) = invariants::table_edge(from, to) {
                    Self::violate(s, Flag::TableEdges, format!("{}: {}", name(), v.detail));
                }
                if to == ConnectionState::Connected && from != ConnectionState::Completed {
                    let (a, b) = (
                        s.nodes[n].endpoint.peer(&self.keys[m]),
                        s.nodes[m].endpoint.peer(&self.keys[n]),
                    );
                    let ok = match (a, b) {
                        (Some(a), Some(b)) => invariants::connected_with_current_credentials(a, b)
                            .map_err(|v| v.detail),
                        _ => Err("the remote has no session".to_string()),
                    };
                    if let Err(detail) = ok {
                        Self::violate(s, Flag::ConnectedCurrent, format!("{}: {detail}", name()));
                    }
                }
            }
            Event::Restarted { cause, .. } => {
                s.pairs[Self::pair(n, m)].restarts += 1;
                if cause.is_failure() {
                    s.flags |= Flag::SeenRestartAfterFailure.bit();
                }
            }
            _ => {}
        }
    }

    fn agent_command(&self, s: &mut MeshState, n: usize, m: usize, cmd: AgentCommand) {
        let node = &mut s.nodes[n];
        let Some(agent) = node.agents.get_mut(m).and_then(Option::as_mut) else {
            let detail = format!(
                "{}: a command for {}, which has no agent",
                Self::name(n),
                Self::name(m)
            );
            Self::violate(s, Flag::AgentContract, detail);
            return;
        };
        let result = registered_command(&mut s.creds, agent, cmd);
        if let Err(breach) = result {
            let detail = format!("{}({}): {breach}", Self::name(n), Self::name(m));
            Self::violate(s, Flag::AgentContract, detail);
        }
    }

    fn check_global(&self, s: &mut MeshState) {
        for (a, b) in self.sessions() {
            if let (Some(pa), Some(pb)) = (
                s.nodes[a].endpoint.peer(&self.keys[b]),
                s.nodes[b].endpoint.peer(&self.keys[a]),
            ) {
                if let Err(v) = invariants::opposite_roles(pa, pb) {
                    Self::violate(s, Flag::OppositeRoles, v.detail);
                }
            }
            let stats = s.pairs[Self::pair(a, b)];
            if let Err(v) =
                invariants::no_restart_storm(u64::from(stats.restarts), u64::from(stats.faults))
            {
                Self::violate(s, Flag::RestartStorm, v.detail);
            }
        }
        if self.max_establishing > 0 {
            for n in 0..self.nodes {
                let (establishing, _) = s.nodes[n].endpoint.admission();
                if establishing > self.max_establishing {
                    let detail = format!(
                        "{}: {establishing} sessions establishing, bound {}",
                        Self::name(n),
                        self.max_establishing
                    );
                    Self::violate(s, Flag::AdmissionBound, detail);
                }
            }
        }
    }

    /// A one-line description of `action` in `s`.
    pub fn describe(&self, s: &MeshState, action: MeshAction) -> String {
        let node = |n: u8| Self::name(usize::from(n));
        match action {
            MeshAction::Deliver(i) | MeshAction::Drop(i) => {
                let verb = if matches!(action, MeshAction::Deliver(_)) {
                    "deliver"
                } else {
                    "drop"
                };
                match s.net.get(i) {
                    Some(p) => format!(
                        "{verb} {}->{}: {}",
                        node(p.from),
                        node(p.to),
                        crate::model::short(&p.d)
                    ),
                    None => format!("{verb} #{i}"),
                }
            }
            MeshAction::Report(n, m) => {
                let mut out = format!("{}({}) agent reports", node(n), node(m));
                if let Some((_, ev)) = s.nodes[usize::from(n)].agents[usize::from(m)]
                    .as_ref()
                    .and_then(ReferenceAgent::peek_event)
                {
                    let _ = write!(out, " {ev:?}");
                }
                out
            }
            MeshAction::Meet(a, b) => format!("agents of {}{} meet", node(a), node(b)),
            MeshAction::Timer(n) => format!("{} timer", node(n)),
            MeshAction::Fail(n, m) => format!("{}({}) agent gives up", node(n), node(m)),
            MeshAction::Crash(n, f) => format!("{} crashes, floor {f:?}", node(n)),
            MeshAction::Remove(n, m) => format!("{} removes {}", node(n), node(m)),
            MeshAction::Add(n, m) => format!("{} adds {} again", node(n), node(m)),
        }
    }
}

impl EndpointMesh {
    /// The steps of `path` from the initial state, each with what it did and the state of
    /// every session after it (for counterexamples).
    pub fn explain(&self, path: &[MeshAction]) -> String {
        let mut out = String::new();
        let Some(mut s) = self.init_states().pop() else {
            return out;
        };
        for (i, a) in path.iter().enumerate() {
            let _ = writeln!(out, "{:>3}. {}", i + 1, self.describe(&s, *a));
            s = self.step(&s, *a);
            for n in 0..self.nodes {
                let e = &s.nodes[n].endpoint;
                let (slots, waiting) = e.admission();
                let _ = write!(
                    out,
                    "       {}: slots {slots} waiting {waiting};",
                    Self::name(n)
                );
                for (k, p) in e.peers() {
                    let m = self.node_of(k);
                    let _ = write!(
                        out,
                        " {}: {} e{}",
                        Self::name(m),
                        p.state(),
                        p.local_session().map_or(0, |x| x.epoch)
                    );
                }
                let _ = writeln!(
                    out,
                    " timer {:?}",
                    e.poll_timeout()
                        .map(|t| t.saturating_duration_since(self.base))
                );
            }
        }
        if let Some(d) = &s.detail {
            let _ = writeln!(out, "     {d}");
        }
        out
    }
}

impl Model for EndpointMesh {
    type State = MeshState;
    type Action = MeshAction;

    fn init_states(&self) -> Vec<MeshState> {
        let placeholder = Node {
            endpoint: Endpoint::new(
                self.config,
                self.secrets[0].clone(),
                0,
                Seed::insecure_from_u64(0),
            ),
            agents: Default::default(),
        };
        let mut s = MeshState {
            now: Duration::ZERO,
            nodes: vec![Shared::new(placeholder); self.nodes],
            net: Vec::new(),
            left: self.budgets,
            crashes: [0; MAX_NODES],
            floors: [epoch_floor(0); MAX_NODES],
            removed: None,
            pairs: [PairStats::default(); MAX_NODES],
            creds: Shared::new(Vec::new()),
            flags: 0,
            detail: None,
        };
        for n in 0..self.nodes {
            self.start(&mut s, n, epoch_floor(0));
        }
        self.check_global(&mut s);
        vec![s]
    }

    fn actions(&self, s: &MeshState, actions: &mut Vec<MeshAction>) {
        for i in 0..s.net.len() {
            actions.push(MeshAction::Deliver(i));
            if s.left.drops > 0 {
                actions.push(MeshAction::Drop(i));
            }
        }
        let pairs: Vec<(usize, usize)> = (0..self.nodes)
            .flat_map(|n| {
                (0..self.nodes)
                    .filter(move |m| *m != n)
                    .map(move |m| (n, m))
            })
            .collect();
        for &(n, m) in &pairs {
            let Some(agent) = s.nodes[n].agents[m].as_ref() else {
                continue;
            };
            if agent.has_events() {
                actions.push(MeshAction::Report(n as u8, m as u8));
            }
            if s.left.failures > 0
                && matches!(
                    agent.live().map(|l| l.phase),
                    Some(Phase::Checking | Phase::Connected | Phase::Completed)
                )
            {
                actions.push(MeshAction::Fail(n as u8, m as u8));
            }
        }
        for (a, b) in self.sessions() {
            if self.meet_enabled(s, a, b) {
                actions.push(MeshAction::Meet(a as u8, b as u8));
            }
        }
        if let Some((n, m)) = s.removed {
            actions.push(MeshAction::Add(n, m));
        }
        if s.left.timer_cap > 0 && !self.busy(s) && !self.converged(s) {
            let earliest = Self::earliest_timer(s);
            for n in 0..self.nodes {
                if earliest.is_some() && s.nodes[n].endpoint.poll_timeout() == earliest {
                    actions.push(MeshAction::Timer(n as u8));
                }
            }
        }
        if s.left.crashes > 0 {
            for n in 0..self.nodes {
                actions.push(MeshAction::Crash(n as u8, Floor::Above));
                actions.push(MeshAction::Crash(n as u8, Floor::Zero));
                if s.floors[n] != 0 {
                    actions.push(MeshAction::Crash(n as u8, Floor::Equal));
                }
            }
        }
        if s.left.removals > 0 && s.removed.is_none() {
            for &(n, m) in &pairs {
                if s.nodes[n].agents[m].is_some() {
                    actions.push(MeshAction::Remove(n as u8, m as u8));
                }
            }
        }
    }

    fn next_state(&self, last: &MeshState, action: MeshAction) -> Option<MeshState> {
        Some(self.step(last, action))
    }

    fn format_action(&self, action: &MeshAction) -> String {
        format!("{action:?}")
    }

    fn properties(&self) -> Vec<Property<Self>> {
        fn clean(s: &MeshState, f: Flag) -> bool {
            s.flags & f.bit() == 0
        }
        fn seen(s: &MeshState, f: Flag) -> bool {
            s.flags & f.bit() != 0
        }
        type Cond = fn(&EndpointMesh, &MeshState) -> bool;
        let always = |name: &'static str, condition: Cond| Property {
            expectation: Expectation::Always,
            name,
            condition,
        };
        let sometimes = |name: &'static str, condition: Cond| Property {
            expectation: Expectation::Sometimes,
            name,
            condition,
        };
        vec![
            always(Invariant::TableEdgesOnly.name(), |_, s| {
                clean(s, Flag::TableEdges)
            }),
            always(Invariant::OppositeRoles.name(), |_, s| {
                clean(s, Flag::OppositeRoles)
            }),
            always(Invariant::CandidateBinding.name(), |_, s| {
                clean(s, Flag::CandidateBinding)
            }),
            always(Invariant::MonotonicVersions.name(), |_, s| {
                clean(s, Flag::MonotonicVersions)
            }),
            always(Invariant::ConnectedWithCurrentCredentials.name(), |_, s| {
                clean(s, Flag::ConnectedCurrent)
            }),
            always(Invariant::NoRestartStorm.name(), |_, s| {
                clean(s, Flag::RestartStorm)
            }),
            always("legal inputs accepted", |_, s| {
                clean(s, Flag::InputsAccepted)
            }),
            always("agent contract", |_, s| clean(s, Flag::AgentContract)),
            always(ADMISSION_BOUND, |_, s| clean(s, Flag::AdmissionBound)),
            always(crate::properties::LIVENESS, |m, s| {
                !m.quiescent(s) || m.converged(s)
            }),
            sometimes("connected", |m, s| m.converged(s)),
            sometimes("connected after waiting for admission", |m, s| {
                seen(s, Flag::SeenHeld) && m.converged(s)
            }),
            sometimes("reconnected after crash", |m, s| {
                seen(s, Flag::SeenCrash) && m.converged(s)
            }),
            sometimes("reconnected after remove and add", |m, s| {
                seen(s, Flag::SeenReAdded) && m.converged(s)
            }),
            sometimes("reconnected after failure", |m, s| {
                seen(s, Flag::SeenRestartAfterFailure) && m.converged(s)
            }),
        ]
    }
}

/// An error of an input the environment may legally give.
fn illegal(e: EndpointError) -> Option<String> {
    Some(e.to_string())
}

/// Name of the admission property.
pub const ADMISSION_BOUND: &str = "at most max_establishing establishing";

/// The rule a property of this model checks.
pub fn rule_of(property: &str) -> &'static str {
    match property {
        ADMISSION_BOUND => "ADMISSION",
        "legal inputs accepted" => "Endpoint contract",
        "agent contract" => "NO_AGENT_AFTER_CLOSE, one agent per session",
        crate::properties::LIVENESS => "ADMISSION, ADMISSION_QUIET, liveness L1-L9",
        p if p == Invariant::MonotonicVersions.name() => "EPOCH_ORDER across remove and add",
        p if p.contains(" after ") || p == "connected" => "sanity",
        _ => "as in the 2-peer model",
    }
}

/// Checks `model` exhaustively (depth-first on `threads` threads, the counterexample shown step
/// by step) and returns a row per property.
pub fn check(
    model: &EndpointMesh,
    threads: usize,
    timeout: Option<Duration>,
) -> Vec<crate::VerdictRow> {
    let out = crate::dfs::search(model, threads, timeout);
    let out = crate::bfs::SearchOutcome {
        unique_states: out.unique_states,
        max_depth: out.max_depth,
        seconds: out.seconds,
        exhaustive: out.exhaustive,
        discoveries: out.paths.into_iter().collect(),
    };
    let b = &model.budgets;
    let config = format!(
        "{} endpoints, {} slot(s), {} drop, {} failure, {} crash, {} remove+add, timer cap {}",
        model.nodes,
        model.max_establishing,
        b.drops,
        b.failures,
        b.crashes,
        b.removals,
        b.timer_cap
    );
    let mut rows = crate::rows_of(model, &out, &config, rule_of);
    // A sanity example of a fault the budgets leave out cannot be found: no row for it.
    rows.retain(|r| match r.property {
        "reconnected after crash" => b.crashes > 0,
        "reconnected after remove and add" => b.removals > 0,
        "reconnected after failure" => b.failures > 0,
        "connected after waiting for admission" => model.max_establishing > 0,
        _ => true,
    });
    for row in rows.iter_mut().filter(|r| r.trace.is_some()) {
        if let Some(path) = out.discoveries.get(row.property) {
            row.trace = Some(model.explain(path));
        }
    }
    rows
}
