//! [`IceModel`]: the real [`icepact::Peer`]s of a mesh, an abstract ICE agent per peer and an
//! adversarial environment with budgets, as a stateright [`Model`].
//!
//! The model is written against the plain [`Model`] trait rather than stateright's
//! `ActorModel`, because `ActorModel` cannot bound message drops and has no environment state
//! (replay history, fault budgets, the abstract agents).
//!
//! # Time
//!
//! A [`Peer`] takes [`Instant`]s. The model stores one base instant in its configuration and
//! keeps the model time in the state as an offset from it: the latest instant any peer was given.
//! A timer action calls `handle_timeout(poll_timeout())` and moves the model time up to it; every
//! other input uses the current model time. Time therefore never goes backwards for any peer.
//!
//! # Finiteness and fairness
//!
//! Every environment fault spends a budget ([`Budgets`]). Progress actions (delivering a message,
//! delivering an agent event, the two agents finding each other) consume what they act on. Timer
//! firings come in two kinds:
//! - an *early* firing (budget `early_timers`) may happen at any moment, racing with messages in
//!   flight;
//! - a *due* firing happens only when no delivery, agent event or connection is enabled: the
//!   fairness assumption "the network and the agent are faster than back-off". Only the earliest
//!   armed timer fires, and none in a converged state (there they would only spend the cap on
//!   repeats before the next fault; a later fault makes the state unconverged again). Due firings are capped by `timer_cap`, early ones by their
//!   own budget, so every path is finite. An early firing moves the clock to its deadline;
//!   another peer's timer that is then in the past fires at the current time (a late wake-up).
//!
//! Liveness is then the safety property "quiescent ⇒ converged", where *quiescent* means no
//! progress action is enabled (faults are the environment's choice and never needed for
//! progress). A path that runs out of `timer_cap` before converging ends in a quiescent,
//! non-converged state and is reported, so the cap can only produce false alarms, never hide one.
//! With a `recovery` budget such a path goes on instead: the environment stops injecting faults
//! (every fault budget goes to zero on that branch; the faults it could still inject there are
//! sibling branches, explored as before) and the earliest timer keeps firing, up to `recovery`
//! more times. The property then reads "once the faults stop, the sessions converge within
//! `recovery` timer firings", and a cap too small for the faults before it no longer shows as a
//! violation.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use icepact::invariants;
use icepact::reference_agent::{AgentKind, ContractBreach, Phase, ReferenceAgent};
use icepact::{
    AgentCommand, AgentEvent, AgentRestart, Candidate, Config, ConnectionState, Credentials,
    Description, Disposition, Error, Event, IgnoreReason, Output, Peer, PeerSetup, PublicKey,
    RestartCause, RestartPolicy, Seed,
};
use stateright::{Model, Property};

use crate::properties::{self, Flag};
use crate::shared::Shared;

/// Budgets of the environment. Each fault spends one unit of its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Budgets {
    /// Messages the network may lose.
    pub drops: u8,
    /// Descriptions the network may deliver again: duplicates of one in flight, or replays of
    /// an initial description (version 0) of any earlier session.
    pub replays: u8,
    /// Crash-and-restart of a node with state loss.
    pub crashes: u8,
    /// Agent failures: Failed while checking; Disconnected or Failed while Connected or
    /// Completed.
    pub failures: u8,
    /// Agent reports the environment loses (any report but a local candidate).
    pub lost_events: u8,
    /// Benign quirks of real agents: a repeated report, Completed → Connected → Completed.
    pub quirks: u8,
    /// Explicit `Peer::restart` requests of the embedding.
    pub restarts: u8,
    /// Timer firings at arbitrary moments (racing with messages in flight).
    pub early_timers: u8,
    /// Most due timer firings along one path while the environment may still inject faults.
    pub timer_cap: u8,
    /// Due timer firings after the cap is spent (0: none). A path that spends `timer_cap`
    /// without converging would otherwise end in a quiescent, unconverged state: a false alarm
    /// when recovery only needs more time. With `recovery` > 0 the environment stops injecting
    /// faults there (every fault budget goes to zero) and the system gets `recovery` more due
    /// firings to converge, so the liveness property reads "after the last fault, the
    /// sessions converge within `recovery` timer firings".
    pub recovery: u8,
    /// Most descriptions in flight per direction of a session; a send to a full link loses
    /// the oldest one in flight (superseded by the newer, cumulative description).
    pub link_capacity: u8,
}

impl Budgets {
    /// The default budgets of the 2-peer configuration: a crash (its new process's floor
    /// above, equal to or below the old epochs), an agent failure (Failed while checking,
    /// Disconnected or Failed while connected) and a lost agent report, all at once.
    pub const TWO_PEERS: Budgets = Budgets {
        crashes: 1,
        failures: 1,
        lost_events: 1,
        ..Budgets::NONE
    };

    /// Replays after a crash: a replayed description of any earlier session (the crashed
    /// process's included) beside a crash with any floor, and a benign agent quirk. This is
    /// where a replayed hint could start a spurious epoch catch-up.
    pub const TWO_PEERS_REPLAY: Budgets = Budgets {
        replays: 1,
        crashes: 1,
        quirks: 1,
        ..Budgets::NONE
    };

    /// The 2-peer configuration with loss: a drop, a replay and a crash.
    pub const TWO_PEERS_LOSSY: Budgets = Budgets {
        drops: 1,
        replays: 1,
        crashes: 1,
        ..Budgets::NONE
    };

    /// The network's, the process's, the agent's and the embedding's faults at once, one of
    /// each: a drop, a replay or duplicate, a crash with any floor, an agent failure of either
    /// kind, a restart request and an early timer (the verification run's `--deep` suite; lost
    /// reports are in [`Budgets::TWO_PEERS`], quirks in [`Budgets::TWO_PEERS_REPLAY`]).
    pub const TWO_PEERS_ALL: Budgets = Budgets {
        drops: 1,
        replays: 1,
        crashes: 1,
        failures: 1,
        restarts: 1,
        early_timers: 1,
        recovery: 8,
        ..Budgets::NONE
    };

    /// The network's faults with a crash and a restart request: a drop, a replay or duplicate,
    /// a crash with any floor and a restart request, with 8 recovery firings after the cap
    /// (the configuration where a stale replay once took a regressed node two epoch
    /// catch-ups; `docs/MODEL-CHECKING.md`).
    pub const TWO_PEERS_RESTART: Budgets = Budgets {
        drops: 1,
        replays: 1,
        crashes: 1,
        restarts: 1,
        recovery: 8,
        ..Budgets::NONE
    };

    /// The default budgets of the 3-peer mesh: a crash of any node with any floor, and one
    /// timer firing per path (exhaustive with partial-order reduction).
    pub const THREE_PEERS: Budgets = Budgets {
        crashes: 1,
        timer_cap: 1,
        ..Budgets::NONE
    };

    /// The 3-peer mesh with a crash of any node with any floor and an agent failure of any
    /// kind in any session (exhaustive with the split crash, [`IceModel::split_crash`]).
    pub const THREE_PEERS_FAILURE: Budgets = Budgets {
        failures: 1,
        ..Budgets::THREE_PEERS
    };

    /// No faults at all (a base to build small configurations from).
    pub const NONE: Budgets = Budgets {
        drops: 0,
        replays: 0,
        crashes: 0,
        failures: 0,
        lost_events: 0,
        quirks: 0,
        restarts: 0,
        early_timers: 0,
        timer_cap: 3,
        recovery: 0,
        link_capacity: 1,
    };

    /// The default budgets for `peers` nodes.
    pub fn for_peers(peers: usize) -> Budgets {
        if peers <= 2 {
            Self::TWO_PEERS
        } else {
            Self::THREE_PEERS
        }
    }
}

/// A description in flight (or in the replay history) to the peer end `to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Msg {
    /// The receiving peer end.
    pub to: usize,
    /// The description.
    pub d: Description,
}

impl Msg {
    fn cmp_key(&self, other: &Msg) -> Ordering {
        self.to
            .cmp(&other.to)
            .then_with(|| cmp_descriptions(&self.d, &other.d))
    }
}

/// A total order of descriptions (the network is kept sorted by it: a multiset, so that the
/// order in which messages were sent does not split states).
pub(crate) fn cmp_descriptions(a: &Description, b: &Description) -> Ordering {
    (a.session, a.ack, a.need_reply, a.end_of_candidates)
        .cmp(&(b.session, b.ack, b.need_reply, b.end_of_candidates))
        .then_with(|| a.credentials.cmp(&b.credentials))
        .then_with(|| a.candidates.cmp(&b.candidates))
        .then_with(|| a.seen.cmp(&b.seen))
}

/// True if two agents can find their pair now: each was told to connect with the other's
/// current credentials, neither gave up, at least one still checks (or lost its pair), and
/// both reported everything queued before (their Checking in particular).
pub(crate) fn agents_can_meet(a: &ReferenceAgent, b: &ReferenceAgent) -> bool {
    let phase = |x: &ReferenceAgent| x.live().map(|l| l.phase);
    let alive = |x: &ReferenceAgent| !matches!(phase(x), None | Some(Phase::Failed));
    let waiting =
        |x: &ReferenceAgent| matches!(phase(x), Some(Phase::Checking | Phase::Disconnected));
    let idle = !a.has_events() && !b.has_events();
    idle && a.told_to_meet(b) && alive(a) && alive(b) && (waiting(a) || waiting(b))
}

/// The reference agent carries out `cmd`, with the credentials an agent is created or restarted
/// with recorded in the registry `creds` (which names the session a remote's credentials
/// belong to when the agent is told to connect).
pub(crate) fn registered_command(
    creds: &mut Shared<Vec<(Credentials, u64)>>,
    agent: &mut ReferenceAgent,
    cmd: AgentCommand,
) -> Result<(), ContractBreach> {
    if let AgentCommand::Create {
        agent: id,
        credentials,
        ..
    }
    | AgentCommand::Restart {
        new: id,
        credentials,
        ..
    } = &cmd
    {
        // Kept sorted: the registry is a set (looked up by credentials), and the order in which
        // sessions of different peer ends were created must not split states.
        let entry = (credentials.clone(), id.0);
        if let Err(at) = creds.binary_search(&entry) {
            creds.insert(at, entry);
        }
    }
    let creds = &**creds;
    agent.handle_command(cmd, |remote| {
        creds
            .iter()
            .find(|(c, _)| c == remote)
            .map(|(_, epoch)| *epoch)
    })
}

/// True if the agent has a working pair (a peer that believes Connected over an agent that
/// failed is not converged).
pub(crate) fn agent_works(a: &ReferenceAgent) -> bool {
    matches!(
        a.live().map(|l| l.phase),
        Some(Phase::Connected | Phase::Completed)
    )
}

/// One peer end: a node's [`Peer`] for one remote node and its agent (the reference agent of
/// the core, shared with the tests and the simulator).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct End {
    /// The real peer.
    pub peer: Peer,
    /// Its agent, with the reports not yet handed to the peer.
    pub agent: ReferenceAgent,
    /// Restarted for a local cause (fault, request, crash) and not connected since: two such
    /// ends of one session at once are glare.
    pub local_restart: bool,
    /// Epoch catch-ups of this end in the current incarnation of its node.
    pub catch_ups: u8,
    /// This end's process started with a floor not above its earlier epochs (a crash with
    /// floor zero or equal). Kept per end, not per node, so that a split crash
    /// ([`IceModel::split_crash`]) replaces each end of the node with its own flag.
    pub regressed: bool,
}

/// Per-session (pair) counters for the restart-storm property.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PairStats {
    /// Restarted events of both ends.
    pub restarts: u32,
    /// Faults that may cause restarts: agent failures, crashes and restart requests.
    pub faults: u32,
}

/// Which session (or, for crashes, which node) each fault class may strike, fixed by the first
/// step of a mesh model (see [`IceModel::reduce`]). [`Owners::ANY`] leaves a class shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owners {
    /// The node that may crash.
    pub crash: u8,
    /// The floor its new process starts with, fixed here with a split crash
    /// ([`IceModel::split_crash`]); unused otherwise.
    pub floor: Floor,
    /// The session of each per-session class, in [`FaultClass`] order.
    pub session: [u8; 6],
}

/// The fault classes that strike one session (crashes strike a node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultClass {
    /// Budget `drops`.
    Drops,
    /// Budget `replays` (replays and duplicates).
    Replays,
    /// Budget `failures`.
    Failures,
    /// Budget `lost_events`.
    LostEvents,
    /// Budget `quirks`.
    Quirks,
    /// Budget `restarts`.
    Restarts,
}

impl FaultClass {
    const ALL: [FaultClass; 6] = [
        FaultClass::Drops,
        FaultClass::Replays,
        FaultClass::Failures,
        FaultClass::LostEvents,
        FaultClass::Quirks,
        FaultClass::Restarts,
    ];

    fn budget(self, b: &Budgets) -> u8 {
        match self {
            FaultClass::Drops => b.drops,
            FaultClass::Replays => b.replays,
            FaultClass::Failures => b.failures,
            FaultClass::LostEvents => b.lost_events,
            FaultClass::Quirks => b.quirks,
            FaultClass::Restarts => b.restarts,
        }
    }
}

impl Owners {
    /// Every class shared by every session and node.
    pub const ANY: Owners = Owners {
        crash: u8::MAX,
        floor: Floor::Above,
        session: [u8::MAX; 6],
    };

    fn allows(&self, class: FaultClass, session: usize) -> bool {
        let o = self.session[class as usize];
        o == u8::MAX || usize::from(o) == session
    }

    fn allows_crash(&self, node: usize) -> bool {
        self.crash == u8::MAX || usize::from(self.crash) == node
    }
}

/// Most nodes of a model mesh: fixed-size per-node and per-session arrays need no allocation.
pub const MAX_NODES: usize = 3;

/// The model state: the peers, the environment and what was observed on the way.
///
/// The peer ends, the messages in flight, the replay history and the credential registry are
/// [`Shared`]: a successor state copies only what its step changes, and fingerprints hash their
/// cached digests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Model time since the base instant.
    pub now: Duration,
    /// Peer ends, two per session: end `2p` is the lower node of pair `p`, `2p + 1` the higher.
    pub ends: Vec<Shared<End>>,
    /// Descriptions in flight, sorted (a multiset: reordering is free).
    pub net: Vec<Shared<Msg>>,
    /// The first description (version 0) of every session sent so far, sorted, to replay
    /// from (emptied once no replay is left, so that it does not split states).
    pub history: Shared<Vec<Shared<Msg>>>,
    /// What is left of the budgets.
    pub left: Budgets,
    /// Crashes per node.
    pub crashes: [u8; MAX_NODES],
    /// The epoch floor of each node's current incarnation.
    pub floors: [u64; MAX_NODES],
    /// Sessions whose end on the crashing node was replaced by a split crash still under way
    /// (a bit per session; [`IceModel::split_crash`]).
    pub crash_halves: u8,
    /// Counters per session.
    pub pairs: [PairStats; MAX_NODES],
    /// Every credential ever created, with its epoch (to name the session an agent connects to).
    pub creds: Shared<Vec<(Credentials, u64)>>,
    /// Which session or node each fault class may strike; `None` before the first step of a
    /// mesh model with reduction, which chooses.
    pub owners: Option<Owners>,
    /// Sticky flags: violations and sanity observations ([`Flag`]).
    pub flags: u32,
    /// The first violation, in words.
    pub detail: Option<String>,
}

impl State {
    /// Computes the digests of the parts the last step changed.
    fn seal(&mut self) {
        for e in &mut self.ends {
            e.seal();
        }
        self.history.seal();
        self.creds.seal();
    }
}

/// What the model does in one step.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Deliver `net[i]`.
    Deliver(usize),
    /// Lose `net[i]` (budget `drops`).
    Drop(usize),
    /// Put `history[i]` back in flight (budget `replays`).
    Replay(usize),
    /// Duplicate `net[i]` (budget `replays`).
    Duplicate(usize),
    /// Hand the oldest queued agent event of peer end `e` to its peer.
    AgentEvent(usize),
    /// Lose the oldest queued report (not a local candidate) of peer end `e`'s agent (budget
    /// `lost_events`).
    LoseEvent(usize),
    /// Peer end `e`'s agent shows a benign quirk (budget `quirks`).
    Quirk(usize),
    /// The agents of session `p` find each other: each reports Connected at once.
    Meet(usize),
    /// The agents of session `p` find each other, but the reports of peer end `e`'s agent are
    /// lost on the way (budget `lost_events`): its agent is connected, its peer never hears.
    MeetLosing(usize, usize),
    /// The earliest due timer of peer end `e` fires (fair: nothing else can happen).
    Timer(usize),
    /// Peer end `e`'s timer fires early (budget `early_timers`).
    EarlyTimer(usize),
    /// Peer end `e`'s agent fails this way (budget `failures`).
    Fail(usize, Failure),
    /// Node `n` crashes and restarts with state loss and this epoch floor (budget `crashes`).
    Crash(usize, Floor),
    /// A split crash ([`IceModel::split_crash`]) replaces the crashing node's end of session
    /// `p` (budget `crashes`, spent when every session of the node has been struck).
    CrashHalf(usize),
    /// The embedding asks peer end `e` to restart (budget `restarts`).
    Restart(usize),
    /// The environment fixes which session or node each fault class may strike (the first
    /// step of a mesh model with reduction).
    Assign(Owners),
}

/// How an agent fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// The selected pair goes silent: Disconnected (from Connected or Completed).
    PairLost,
    /// The agent gives up: Failed, from Checking, Connected or Completed.
    GiveUp,
    /// The agent's gathering finds no local candidate (before the peer has one).
    NoCandidates,
}

/// The epoch floor a crashed node's new process starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Floor {
    /// Above every epoch used before (the contract of `Peer::new`).
    Above,
    /// Equal to the floor of the process that crashed (a constant, a clock stepped back).
    Equal,
    /// Zero (a board without a real-time clock booting at 1970).
    Zero,
}

/// What happened in a step, for readable traces and sequence diagrams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A peer end sent a description.
    Send {
        /// Sender end.
        from: usize,
        /// The description, in short form.
        d: String,
    },
    /// A connection state changed.
    State {
        /// The end.
        end: usize,
        /// Old state.
        from: ConnectionState,
        /// New state.
        to: ConnectionState,
    },
    /// A session was restarted.
    Restarted {
        /// The end.
        end: usize,
        /// Why.
        cause: String,
    },
    /// A description was ignored.
    Ignored {
        /// The receiving end.
        end: usize,
        /// Why.
        reason: String,
    },
    /// A command reached an agent.
    Agent {
        /// The end.
        end: usize,
        /// The command, in short form.
        cmd: String,
    },
    /// A property was violated.
    Violation(String),
}

/// The model of `peers` nodes in a full mesh, each session driven by two real [`Peer`]s.
#[derive(Clone, Debug)]
pub struct IceModel {
    /// Number of nodes (2 or 3).
    pub peers: usize,
    /// Which real agent the reference agent behaves like.
    pub agent: AgentKind,
    /// The restart rule every peer applies.
    pub policy: RestartPolicy,
    /// Environment budgets.
    pub budgets: Budgets,
    /// The fixed instant model time counts from.
    pub base: Instant,
    /// Partial-order reduction of the independent sessions of a mesh (see
    /// [`IceModel::reduce`]); on by default, no effect with 2 peers.
    pub reduction: bool,
    /// Split a crash of a mesh node into one step per session of the node (see
    /// [`IceModel::reduce`], "split crash"): the sessions stay independent, so the reduction
    /// applies to them before the crash too. Off by default.
    pub split_crash: bool,
    config: Config,
    keys: Vec<PublicKey>,
    pairs: Vec<(usize, usize)>,
}

/// First session epoch of a node that crashed `crashes` times with [`Floor::Above`] (strictly
/// above every epoch the previous incarnations could have used within the budgets).
pub(crate) fn epoch_floor(crashes: u8) -> u64 {
    100 + 1000 * u64::from(crashes)
}

/// Local candidates each model agent gathers.
pub(crate) const GATHERS: u16 = 1;

/// The candidate the agent of session `epoch` gathers, naming it as foundation `e{epoch}`.
pub fn candidate_of(epoch: u64) -> Candidate {
    ReferenceAgent::candidate(icepact::AgentId(epoch), 1)
}

/// The epoch a model candidate names, if it is one.
pub fn epoch_of(c: &Candidate) -> Option<u64> {
    icepact::invariants::tagged_session(c)
}

/// Short form of a description: `e100v2 ack=e101v1 reply 1c eoc`.
pub fn short(d: &Description) -> String {
    let mut s = format!("e{}v{}", d.session.epoch, d.session.version);
    match d.ack {
        Some(a) => {
            let _ = write!(s, " ack=e{}v{}", a.epoch, a.version);
        }
        None => s.push_str(" ack=-"),
    }
    if d.need_reply {
        s.push_str(" reply");
    }
    let _ = write!(s, " {}c", d.candidates.len());
    if d.end_of_candidates {
        s.push_str(" eoc");
    }
    s
}

impl IceModel {
    /// A model of `peers` nodes (2 or 3) under `policy` with `budgets`.
    pub fn new(peers: usize, policy: RestartPolicy, budgets: Budgets) -> IceModel {
        Self::with_agent(peers, policy, budgets, AgentKind::Libwebrtc)
    }

    /// A model whose agents behave like `agent`.
    pub fn with_agent(
        peers: usize,
        policy: RestartPolicy,
        budgets: Budgets,
        agent: AgentKind,
    ) -> IceModel {
        let peers = peers.clamp(2, 3);
        let keys = (0..peers)
            .map(|n| PublicKey([n as u8 + 1; 32]))
            .collect::<Vec<_>>();
        let mut pairs = Vec::new();
        for i in 0..peers {
            for j in i + 1..peers {
                pairs.push((i, j));
            }
        }
        IceModel {
            peers,
            agent,
            policy,
            budgets,
            base: Instant::now(),
            reduction: true,
            split_crash: false,
            // The model polls agents every 60 s, after the other rules' deadlines (checking 30 s,
            // disconnected 25 s): correctness does not depend on the interval, and a shorter one
            // only spends the timer cap on repeats that are ignored before the other deadlines
            // come due (a false alarm of the cap, never a hidden stuck state).
            config: {
                let mut config = Config::default();
                config.policy = policy;
                config.report_poll_interval = Duration::from_secs(60);
                config
            },
            keys,
            pairs,
        }
    }

    /// The same nodes with only the sessions of node A: a star around A (with 3 nodes, the
    /// sessions A–B and A–C and no B–C). Each leaf node then has one session, and the two
    /// sessions depend on each other only through A (its crash); small enough to explore
    /// without partial-order reduction with faults on (`models/tests/pinned.rs` compares the
    /// reduced and unreduced runs on it).
    pub fn star(mut self) -> IceModel {
        self.pairs.retain(|&(i, _)| i == 0);
        self
    }

    /// The same model with agents restarted as `mode` says (rule AGENT_RESTART).
    pub fn with_agent_restart(mut self, mode: AgentRestart) -> IceModel {
        self.config.agent_restart = mode;
        self
    }

    /// True if agents are restarted in place.
    pub fn restarts_in_place(&self) -> bool {
        self.config.agent_restart == AgentRestart::InPlace
    }

    /// Number of peer ends (two per session).
    pub fn end_count(&self) -> usize {
        2 * self.pairs.len()
    }

    /// The node peer end `e` belongs to.
    pub fn node_of(&self, e: usize) -> usize {
        let (i, j) = self.pairs[e / 2];
        if e.is_multiple_of(2) {
            i
        } else {
            j
        }
    }

    /// A name for node `n`: A, B, C.
    pub fn node_name(n: usize) -> char {
        (b'A' + n as u8) as char
    }

    /// A name for peer end `e`: the node, and in a mesh the remote node in brackets.
    pub fn end_name(&self, e: usize) -> String {
        let n = Self::node_name(self.node_of(e));
        if self.peers == 2 {
            n.to_string()
        } else {
            format!("{n}({})", Self::node_name(self.node_of(e ^ 1)))
        }
    }

    fn at(&self, s: &State) -> Instant {
        self.base + s.now
    }

    fn seed(e: usize, crashes: u8) -> u64 {
        1 + e as u64 + 100 * u64::from(crashes)
    }

    fn new_peer(&self, e: usize, crashes: u8, floor: u64, now: Instant) -> Result<Peer, Error> {
        let (local, remote) = (self.node_of(e), self.node_of(e ^ 1));
        Peer::new(
            self.config,
            PeerSetup {
                local: self.keys[local],
                remote: self.keys[remote],
                epoch_floor: floor,
                seed: Seed::insecure_from_u64(Self::seed(e, crashes)),
            },
            now,
        )
    }

    /// Node `n`'s new process after a crash: its incarnation count and epoch floor.
    fn new_incarnation(s: &mut State, n: usize, floor: Floor) {
        s.crashes[n] += 1;
        s.floors[n] = match floor {
            Floor::Above => epoch_floor(s.crashes[n]),
            Floor::Equal => s.floors[n],
            Floor::Zero => 0,
        };
    }

    /// Replaces end `e` by a new peer of its node's new incarnation (after
    /// [`IceModel::new_incarnation`]) and carries out what the new peer sends.
    fn crash_end(
        &self,
        s: &mut State,
        e: usize,
        floor: Floor,
        now: Instant,
        log: &mut Option<&mut Vec<Note>>,
    ) {
        let n = self.node_of(e);
        s.pairs[e / 2].faults += 1;
        match self.new_peer(e, s.crashes[n], s.floors[n], now) {
            Ok(peer) => {
                let mut end = self.new_end(peer, true);
                end.regressed = floor != Floor::Above;
                s.ends[e] = Shared::new(end);
                self.drain(s, e, log);
            }
            Err(err) => Self::violate(
                s,
                Flag::InputsAccepted,
                format!("Peer::new after a crash failed: {err}"),
                log,
            ),
        }
    }

    /// The node a split crash strikes and its new floor, as `Assign` fixed them.
    fn split_crash_of(s: &State) -> (usize, Floor) {
        // A split crash is enabled only with the owners assigned (`splits_crash` implies
        // `assigns`, whose first step is `Assign`).
        let o = s.owners.expect("a split crash after Assign");
        (usize::from(o.crash), o.floor)
    }

    /// The sessions of node `n`, a bit each.
    fn sessions_of(&self, n: usize) -> u8 {
        (0..self.pairs.len())
            .filter(|&p| self.pairs[p].0 == n || self.pairs[p].1 == n)
            .fold(0, |m, p| m | 1 << p)
    }

    fn new_end(&self, peer: Peer, local_restart: bool) -> End {
        End {
            peer,
            agent: ReferenceAgent::new(self.agent, GATHERS),
            local_restart,
            catch_ups: 0,
            regressed: false,
        }
    }

    fn violate(s: &mut State, flag: Flag, detail: String, log: &mut Option<&mut Vec<Note>>) {
        // The smallest detail, not the first: independent steps taken in either order must
        // reach the same state (see `IceModel::reduce`).
        if s.detail.as_ref().is_none_or(|d| detail < *d) {
            s.detail = Some(detail.clone());
        }
        s.flags |= flag.bit();
        if let Some(log) = log {
            log.push(Note::Violation(format!("{}: {detail}", flag.name())));
        }
    }

    /// True if every session has both ends connected on each other's current credentials, over
    /// agents that really have a working pair (a peer that believes Connected over an agent
    /// that failed is not converged).
    pub fn converged(&self, s: &State) -> bool {
        let working = |e: &End| agent_works(&e.agent);
        (0..self.pairs.len()).all(|p| {
            let (a, b) = (&s.ends[2 * p], &s.ends[2 * p + 1]);
            invariants::converged(&a.peer, &b.peer) && working(a) && working(b)
        })
    }

    fn meet_enabled(&self, s: &State, p: usize) -> bool {
        agents_can_meet(&s.ends[2 * p].agent, &s.ends[2 * p + 1].agent)
    }

    /// The earliest armed timer of all peers, if any.
    fn earliest_timer(&self, s: &State) -> Option<Instant> {
        s.ends.iter().filter_map(|e| e.peer.poll_timeout()).min()
    }

    /// True if a delivery, an agent event or a meeting is enabled.
    fn busy(&self, s: &State) -> bool {
        s.crash_halves != 0
            || !s.net.is_empty()
            || s.ends.iter().any(|e| e.agent.has_events())
            || (0..self.pairs.len()).any(|p| self.meet_enabled(s, p))
    }

    /// True if no progress action (delivery, agent event, meeting, due timer) is enabled.
    pub fn quiescent(&self, s: &State) -> bool {
        !self.busy(s)
            && ((s.left.timer_cap == 0 && s.left.recovery == 0)
                || self.earliest_timer(s).is_none()
                || self.converged(s))
    }

    /// Applies `action` to `last`, recording what happened in `log` if given.
    pub fn step(&self, last: &State, action: &Action, mut log: Option<&mut Vec<Note>>) -> State {
        let mut s = last.clone();
        let now = self.at(&s);
        match *action {
            Action::Deliver(i) => {
                let m = s.net.remove(i);
                self.input(&mut s, m.to, &mut log, |p| p.handle_description(now, &m.d));
            }
            Action::Drop(i) => {
                s.net.remove(i);
                s.left.drops -= 1;
            }
            Action::Replay(i) => {
                let m = s.history[i].clone();
                s.left.replays -= 1;
                Self::push_net(&mut s, m);
            }
            Action::Duplicate(i) => {
                let m = s.net[i].clone();
                s.left.replays -= 1;
                Self::push_net(&mut s, m);
            }
            Action::AgentEvent(e) => {
                if let Some((id, ev)) = s.ends[e].agent.poll_event() {
                    self.input(&mut s, e, &mut log, |p| p.handle_agent_event(now, id, ev));
                }
            }
            Action::LoseEvent(e) => {
                s.left.lost_events -= 1;
                s.pairs[e / 2].faults += 1;
                s.flags |= Flag::SeenLostEvent.bit();
                let _ = s.ends[e].agent.lose_event();
            }
            Action::Quirk(e) => {
                s.left.quirks -= 1;
                let _ = s.ends[e].agent.quirk();
            }
            Action::Meet(p) | Action::MeetLosing(p, _) => {
                // Both agents find the pair and report it in the same step: the pair exists at
                // this moment. Queuing these reports would let a crash of the remote slip in
                // between, and "entering Connected with the remote's current credentials" would
                // then fail for a reason no protocol can prevent (a data-plane race that
                // consent checks repair). Every other report is queued and may be late.
                for e in [2 * p, 2 * p + 1] {
                    s.ends[e].agent.pair_found();
                }
                if let Action::MeetLosing(_, lost) = *action {
                    s.left.lost_events -= 1;
                    s.pairs[p].faults += 1;
                    s.flags |= Flag::SeenLostEvent.bit();
                    while s.ends[lost].agent.poll_event().is_some() {}
                }
                for e in [2 * p, 2 * p + 1] {
                    while let Some((id, ev)) = s.ends[e].agent.poll_event() {
                        self.input(&mut s, e, &mut log, |p| p.handle_agent_event(now, id, ev));
                    }
                }
            }
            Action::Timer(e) | Action::EarlyTimer(e) => {
                if matches!(action, Action::EarlyTimer(_)) {
                    // A timer firing before the messages and reports in flight arrive: they are
                    // late, which is a fault of the environment (a restart it causes counts
                    // against `restarts <= faults` like any other fault's).
                    s.left.early_timers -= 1;
                    s.pairs[e / 2].faults += 1;
                } else if s.left.timer_cap > 0 {
                    s.left.timer_cap -= 1;
                } else {
                    // The cap is spent and the sessions have not converged: the environment
                    // stops injecting faults, and the system gets the recovery firings.
                    s.left = Budgets {
                        timer_cap: 0,
                        recovery: s.left.recovery - 1,
                        link_capacity: s.left.link_capacity,
                        ..Budgets::NONE
                    };
                }
                if let Some(t) = s.ends[e].peer.poll_timeout() {
                    // After an early firing moved the clock, another peer's timer may be due in
                    // the past: it fires now, as a late wake-up of a real runtime does (every
                    // deadline that passed meanwhile at once).
                    let at = t.max(now);
                    s.now = at.saturating_duration_since(self.base);
                    self.input(&mut s, e, &mut log, |p| {
                        p.handle_timeout(at).map(|()| Disposition::Applied)
                    });
                }
            }
            Action::Fail(e, how) => {
                s.left.failures -= 1;
                s.pairs[e / 2].faults += 1;
                let end = &mut s.ends[e];
                match how {
                    Failure::PairLost => end.agent.pair_lost(),
                    Failure::GiveUp => {
                        end.local_restart = true;
                        end.agent.give_up();
                    }
                    Failure::NoCandidates => {
                        end.agent.gather_nothing();
                        s.flags |= Flag::SeenNoCandidates.bit();
                    }
                }
            }
            Action::Crash(n, floor) => {
                s.left.crashes -= 1;
                Self::new_incarnation(&mut s, n, floor);
                for e in 0..s.ends.len() {
                    if self.node_of(e) == n {
                        self.crash_end(&mut s, e, floor, now, &mut log);
                    }
                }
            }
            Action::CrashHalf(p) => {
                let (n, floor) = Self::split_crash_of(&s);
                // The first session struck starts the node's new incarnation; the others join
                // it (the same floor, the same instant: no timer fires in between).
                if s.crash_halves == 0 {
                    Self::new_incarnation(&mut s, n, floor);
                }
                s.crash_halves |= 1 << p;
                let e = if self.pairs[p].0 == n {
                    2 * p
                } else {
                    2 * p + 1
                };
                self.crash_end(&mut s, e, floor, now, &mut log);
                if s.crash_halves == self.sessions_of(n) {
                    s.crash_halves = 0;
                    s.left.crashes -= 1;
                }
            }
            Action::Assign(owners) => s.owners = Some(owners),
            Action::Restart(e) => {
                s.left.restarts -= 1;
                s.pairs[e / 2].faults += 1;
                s.ends[e].local_restart = true;
                self.input(&mut s, e, &mut log, |p| {
                    p.restart(now).map(|()| Disposition::Applied)
                });
            }
        }
        if s.left.replays == 0 && !s.history.is_empty() {
            s.history = Shared::new(Vec::new());
        }
        self.check_global(&mut s, &mut log);
        s.seal();
        s
    }

    /// Feeds one input to peer end `e`, checks the per-input invariants and drains the outputs.
    fn input(
        &self,
        s: &mut State,
        e: usize,
        log: &mut Option<&mut Vec<Note>>,
        f: impl FnOnce(&mut Peer) -> Result<Disposition, Error>,
    ) {
        let before = s.ends[e].peer.newest_applied();
        match f(&mut s.ends[e].peer) {
            Ok(Disposition::Applied) => {}
            Ok(Disposition::Ignored(reason)) => {
                if matches!(reason, IgnoreReason::Stale { .. }) {
                    s.flags |= Flag::SeenStale.bit();
                }
                if let Some(log) = log {
                    log.push(Note::Ignored {
                        end: e,
                        reason: format!("{reason:?}"),
                    });
                }
            }
            Err(err) => Self::violate(
                s,
                Flag::InputsAccepted,
                format!("{} refused a legal input: {err}", self.end_name(e)),
                log,
            ),
        }
        if let Err(v) = invariants::monotonic_applied(before, s.ends[e].peer.newest_applied()) {
            Self::violate(
                s,
                Flag::MonotonicVersions,
                format!("{}: {}", self.end_name(e), v.detail),
                log,
            );
        }
        self.drain(s, e, log);
    }

    fn push_net(s: &mut State, m: Shared<Msg>) {
        let at = s.net.partition_point(|x| x.cmp_key(&m) == Ordering::Less);
        s.net.insert(at, m);
    }

    /// Carries out peer end `e`'s outputs: sends go to the network, commands to the agent,
    /// events are checked.
    fn drain(&self, s: &mut State, e: usize, log: &mut Option<&mut Vec<Note>>) {
        while let Some(out) = s.ends[e].peer.poll_output() {
            match out {
                Output::Send(d) => {
                    if let Some(log) = log {
                        log.push(Note::Send {
                            from: e,
                            d: short(&d),
                        });
                    }
                    let m = Shared::new(Msg { to: e ^ 1, d });
                    // The replay history keeps the first description (version 0) of every
                    // session, sorted: the late initial offer is the replay that matters
                    // (cunicu B1, seed 001's restart rule), and a history of every version
                    // would split states by the path taken without adding behaviours that
                    // duplicates of in-flight descriptions and drops do not already give.
                    if s.left.replays > 0 && m.d.session.version == 0 && !s.history.contains(&m) {
                        let at = s
                            .history
                            .partition_point(|x| x.cmp_key(&m) == Ordering::Less);
                        s.history.insert(at, m.clone());
                    }
                    // A full link loses its oldest (lowest epoch and version) description.
                    let cap = usize::from(self.budgets.link_capacity.max(1));
                    while s.net.iter().filter(|x| x.to == m.to).count() >= cap {
                        match s.net.iter().position(|x| x.to == m.to) {
                            Some(i) => {
                                s.net.remove(i);
                            }
                            None => break,
                        }
                    }
                    Self::push_net(s, m);
                }
                Output::Agent(cmd) => self.agent_command(s, e, cmd, log),
                Output::Event(Event::StateChanged { from, to, .. }) => {
                    if let Some(log) = log {
                        log.push(Note::State { end: e, from, to });
                    }
                    if let Err(v) = invariants::table_edge(from, to) {
                        Self::violate(
                            s,
                            Flag::TableEdges,
                            format!("{}: {}", self.end_name(e), v.detail),
                            log,
                        );
                    }
                    if from.is_connected() && to == ConnectionState::Failed {
                        s.flags |= Flag::SeenFailedConnected.bit();
                    }
                    // Completed -> Connected is libwebrtc checking new pairs while the selected
                    // one stays: not a new connection, so not checked again.
                    if to == ConnectionState::Connected && from != ConnectionState::Completed {
                        s.ends[e].local_restart = false;
                        if let Err(v) = invariants::connected_with_current_credentials(
                            &s.ends[e].peer,
                            &s.ends[e ^ 1].peer,
                        ) {
                            Self::violate(s, Flag::ConnectedCurrent, v.detail, log);
                        }
                    }
                }
                Output::Event(Event::Restarted { cause, .. }) => {
                    if let Some(log) = log {
                        log.push(Note::Restarted {
                            end: e,
                            cause: format!("{cause:?}"),
                        });
                    }
                    s.pairs[e / 2].restarts += 1;
                    if !matches!(cause, RestartCause::RemoteRestart { .. }) {
                        s.ends[e].local_restart = true;
                    }
                    if let RestartCause::EpochCatchUp { seen } = cause {
                        s.flags |= Flag::SeenCatchUp.bit();
                        let end = &mut s.ends[e];
                        end.catch_ups = end.catch_ups.saturating_add(1);
                        let regressed = end.regressed;
                        if !regressed || end.catch_ups > 1 {
                            let detail = format!(
                                "{} caught up (catch-up {}, saw {seen:?}) though its floor {}",
                                self.end_name(e),
                                end.catch_ups,
                                if regressed {
                                    "went back only once"
                                } else {
                                    "never went back"
                                }
                            );
                            Self::violate(s, Flag::CatchUpOnlyAfterRegression, detail, log);
                        }
                    }
                }
                Output::Event(Event::RestartDeferred { .. }) => {
                    s.flags |= Flag::SeenDeferred.bit();
                }
                Output::Event(_) | _ => {}
            }
        }
        if let Err(v) = s.ends[e].agent.check_binding() {
            Self::violate(
                s,
                Flag::CandidateBinding,
                format!("{}: {}", self.end_name(e), v.detail),
                log,
            );
        }
        if s.ends[e].local_restart && s.ends[e ^ 1].local_restart {
            s.flags |= Flag::SeenGlare.bit();
        }
    }

    /// The reference agent carries out one command of peer end `e`.
    fn agent_command(
        &self,
        s: &mut State,
        e: usize,
        cmd: AgentCommand,
        log: &mut Option<&mut Vec<Note>>,
    ) {
        if let Some(log) = log {
            let name = match &cmd {
                AgentCommand::Create { agent, .. } => format!("create agent {}", agent.0),
                AgentCommand::Gather { .. } => "gather".to_string(),
                AgentCommand::AddRemoteCandidate { candidate, .. } => {
                    format!("add remote candidate {}", candidate.foundation)
                }
                AgentCommand::Connect { .. } => "connect".to_string(),
                AgentCommand::EndOfRemoteCandidates { .. } => {
                    "end of remote candidates".to_string()
                }
                AgentCommand::Restart { agent, new, .. } => {
                    format!("restart agent {} in place as {}", agent.0, new.0)
                }
                AgentCommand::Close { agent } => format!("close agent {}", agent.0),
                other => format!("{other:?}"),
            };
            log.push(Note::Agent { end: e, cmd: name });
        }
        if matches!(cmd, AgentCommand::Restart { .. }) {
            s.flags |= Flag::SeenInPlace.bit();
        }
        let result = registered_command(&mut s.creds, &mut s.ends[e].agent, cmd);
        if let Err(breach) = result {
            Self::violate(
                s,
                Flag::AgentContract,
                format!("{}: {breach}", self.end_name(e)),
                log,
            );
        }
    }

    /// Checks the state invariants that relate both ends of a session.
    fn check_global(&self, s: &mut State, log: &mut Option<&mut Vec<Note>>) {
        for p in 0..self.pairs.len() {
            if let Err(v) = invariants::opposite_roles(&s.ends[2 * p].peer, &s.ends[2 * p + 1].peer)
            {
                Self::violate(s, Flag::OppositeRoles, v.detail, log);
            }
            let stats = s.pairs[p];
            if let Err(v) =
                invariants::no_restart_storm(u64::from(stats.restarts), u64::from(stats.faults))
            {
                Self::violate(s, Flag::RestartStorm, v.detail, log);
            }
        }
    }

    /// Every enabled action of `s`, without reduction.
    pub fn all_actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.ends.len() != self.end_count() {
            return;
        }
        for i in 0..s.net.len() {
            // Equal messages are adjacent; delivering or dropping either copy is the same step.
            if i > 0 && s.net[i - 1] == s.net[i] {
                continue;
            }
            actions.push(Action::Deliver(i));
            if s.left.drops > 0 {
                actions.push(Action::Drop(i));
            }
            if s.left.replays > 0 {
                actions.push(Action::Duplicate(i));
            }
        }
        if s.left.replays > 0 {
            actions.extend((0..s.history.len()).map(Action::Replay));
        }
        for (e, end) in s.ends.iter().enumerate() {
            if end.agent.has_events() {
                actions.push(Action::AgentEvent(e));
            }
            if s.left.lost_events > 0 && end.agent.lossy_event().is_some() {
                actions.push(Action::LoseEvent(e));
            }
            let phase = end.agent.live().map(|l| l.phase);
            if s.left.quirks > 0
                && matches!(
                    phase,
                    Some(Phase::Checking | Phase::Connected | Phase::Completed)
                )
            {
                actions.push(Action::Quirk(e));
            }
        }
        for p in 0..self.pairs.len() {
            if self.meet_enabled(s, p) {
                actions.push(Action::Meet(p));
                if s.left.lost_events > 0 {
                    actions.push(Action::MeetLosing(p, 2 * p));
                    actions.push(Action::MeetLosing(p, 2 * p + 1));
                }
            }
        }
        let due_left = s.left.timer_cap > 0 || s.left.recovery > 0;
        if (due_left || s.left.early_timers > 0) && s.crash_halves == 0 {
            // (No timer while a split crash is under way: its steps share one instant.)
            // Due timers drive a stuck system towards convergence; in a converged one they
            // would only spend the cap on ignored repeats (REPORT_POLL) before the next fault.
            let busy = self.busy(s) || self.converged(s);
            let earliest = self.earliest_timer(s);
            for (e, end) in s.ends.iter().enumerate() {
                let Some(t) = end.peer.poll_timeout() else {
                    continue;
                };
                if !busy && Some(t) == earliest {
                    if due_left {
                        actions.push(Action::Timer(e));
                    }
                } else if s.left.early_timers > 0 {
                    actions.push(Action::EarlyTimer(e));
                }
            }
        }
        if s.left.failures > 0 {
            for (e, end) in s.ends.iter().enumerate() {
                if end.peer.local_candidates().is_empty() && end.agent.gathering() {
                    actions.push(Action::Fail(e, Failure::NoCandidates));
                }
                match end.agent.live().map(|l| l.phase) {
                    Some(Phase::Checking) => actions.push(Action::Fail(e, Failure::GiveUp)),
                    Some(Phase::Connected | Phase::Completed) => {
                        actions.push(Action::Fail(e, Failure::PairLost));
                        actions.push(Action::Fail(e, Failure::GiveUp));
                    }
                    _ => {}
                }
            }
        }
        if s.left.crashes > 0 && self.splits_crash() {
            let (n, _) = Self::split_crash_of(s);
            let pending = self.sessions_of(n) & !s.crash_halves;
            actions.extend(
                (0..self.pairs.len())
                    .filter(|p| pending & (1 << p) != 0)
                    .map(Action::CrashHalf),
            );
        } else if s.left.crashes > 0 {
            for n in 0..self.peers {
                actions.push(Action::Crash(n, Floor::Above));
                // Seed 001's session ids are random: a new process never repeats or undercuts an
                // old one, so under its policy only a fresh epoch models a new process.
                if self.policy == RestartPolicy::Seed {
                    continue;
                }
                actions.push(Action::Crash(n, Floor::Zero));
                // Equal to the crashed process's floor, unless that is zero already.
                if s.floors[n] != 0 {
                    actions.push(Action::Crash(n, Floor::Equal));
                }
            }
        }
        if s.left.restarts > 0 {
            for (e, end) in s.ends.iter().enumerate() {
                if !end.peer.is_shut_down() {
                    actions.push(Action::Restart(e));
                }
            }
        }
    }

    /// True if the first step assigns every fault class to one session (and crashes to one
    /// node): a mesh with reduction whose budgets are all at most one. A budget of one spent on
    /// some session is the same behaviour as that budget owned by that session from the start,
    /// so the assignment loses nothing; it makes faults of different sessions independent.
    pub fn assigns(&self) -> bool {
        let b = &self.budgets;
        self.reduction
            && self.pairs.len() > 1
            && b.crashes <= 1
            && FaultClass::ALL.iter().all(|c| c.budget(b) <= 1)
    }

    /// True if crashes are split into one step per session of the node
    /// ([`IceModel::split_crash`], a mesh with reduction and at most one crash).
    pub fn splits_crash(&self) -> bool {
        self.split_crash && self.assigns()
    }

    /// Every assignment of the budgeted fault classes to sessions and of a crash to a node
    /// (and, with a split crash, of the floor its new process starts with).
    fn assignments(&self) -> Vec<Owners> {
        let mut all = vec![Owners::ANY];
        if self.budgets.crashes > 0 {
            let floors: &[Floor] = if !self.splits_crash() {
                &[Floor::Above]
            } else if self.policy == RestartPolicy::Seed {
                // As in `all_actions`: under seed 001's policy a new process is a fresh epoch.
                &[Floor::Above]
            } else {
                // The first crash: the floor before it is `epoch_floor(0)`, never zero.
                &[Floor::Above, Floor::Zero, Floor::Equal]
            };
            let mut crashes = Vec::new();
            for n in 0..self.peers {
                for &floor in floors {
                    crashes.extend(all.iter().map(|o| Owners {
                        crash: n as u8,
                        floor,
                        ..*o
                    }));
                }
            }
            all = crashes;
        }
        for class in FaultClass::ALL {
            if class.budget(&self.budgets) == 0 {
                continue;
            }
            all = (0..self.pairs.len())
                .flat_map(|p| {
                    all.iter().map(move |o| {
                        let mut o = *o;
                        o.session[class as usize] = p as u8;
                        o
                    })
                })
                .collect();
        }
        all
    }

    /// The fault class of an action and the session it strikes, if it is a per-session fault.
    fn fault_of(s: &State, action: &Action) -> Option<(FaultClass, usize)> {
        Some(match *action {
            Action::Drop(i) => (FaultClass::Drops, s.net.get(i)?.to / 2),
            Action::Duplicate(i) => (FaultClass::Replays, s.net.get(i)?.to / 2),
            Action::Replay(i) => (FaultClass::Replays, s.history.get(i)?.to / 2),
            Action::LoseEvent(e) => (FaultClass::LostEvents, e / 2),
            Action::MeetLosing(p, _) => (FaultClass::LostEvents, p),
            Action::Quirk(e) => (FaultClass::Quirks, e / 2),
            Action::Fail(e, _) => (FaultClass::Failures, e / 2),
            Action::Restart(e) => (FaultClass::Restarts, e / 2),
            _ => return None,
        })
    }

    /// True unless `action` is a fault the assignment gives to another session or node.
    fn owned(&self, s: &State, owners: &Owners, action: &Action) -> bool {
        if let Action::Crash(n, _) = *action {
            return owners.allows_crash(n);
        }
        if let Action::CrashHalf(p) = *action {
            let (i, j) = self.pairs[p];
            return owners.allows_crash(i) || owners.allows_crash(j);
        }
        Self::fault_of(s, action).is_none_or(|(class, p)| owners.allows(class, p))
    }

    /// The session an action acts on, if it is a *progress* action (a delivery, an agent
    /// report, two agents meeting): one that spends no budget, does not move model time and
    /// touches nothing of the other sessions.
    fn progress_session(s: &State, action: &Action) -> Option<usize> {
        match *action {
            // The rest of a split crash under way must happen (a process crashes whole).
            Action::CrashHalf(p) if s.crash_halves != 0 => Some(p),
            Action::Deliver(i) => s.net.get(i).map(|m| m.to / 2),
            Action::AgentEvent(e) => Some(e / 2),
            Action::Meet(p) => Some(p),
            _ => None,
        }
    }

    /// The one session an enabled action touches, or `None` if it touches several or moves
    /// model time (crashes of a node with two sessions, timers).
    fn session_of(&self, s: &State, action: &Action) -> Option<usize> {
        match *action {
            Action::Crash(..) | Action::Timer(_) | Action::EarlyTimer(_) | Action::Assign(_) => {
                None
            }
            Action::CrashHalf(p) => Some(p),
            _ => Self::progress_session(s, action).or(Self::fault_of(s, action).map(|f| f.1)),
        }
    }

    /// Partial-order reduction of a mesh (on with [`IceModel::assigns`]): explores only the
    /// actions of one session `p` when `p` has a progress action, no early timer is left, and
    /// no crash left can strike `p`'s nodes (unless crashes are split: then each session's
    /// crash step is a fault it owns, [`IceModel::split_crash`]); `p` is the lowest such
    /// session. Every other
    /// enabled action then touches other sessions only (faults are owned by one session) and
    /// commutes with `p`'s actions without disabling them, and nothing but `p`'s own actions
    /// can touch `p` before one of them runs. So every state in which no progress action is
    /// enabled (every quiescent state, every end state with its sticky violation flags) stays
    /// reachable. The argument in full is in docs/MODEL-CHECKING.md ("Partial-order
    /// reduction", "Split crash"); `models/tests/pinned.rs` checks that reduced and unreduced
    /// runs agree, and split and whole crashes.
    pub fn reduce(&self, s: &State, actions: &mut Vec<Action>) {
        if !self.assigns() || s.left.early_timers > 0 {
            return;
        }
        let Some(owners) = s.owners else {
            return;
        };
        let crash_node =
            (s.left.crashes > 0 && !self.splits_crash()).then_some(usize::from(owners.crash));
        let eligible = |p: usize| {
            let (i, j) = self.pairs[p];
            crash_node.is_none_or(|n| n != i && n != j)
                && actions
                    .iter()
                    .any(|a| Self::progress_session(s, a) == Some(p))
        };
        let Some(p) = (0..self.pairs.len()).find(|&p| eligible(p)) else {
            return;
        };
        actions.retain(|a| self.session_of(s, a) == Some(p));
    }

    /// A readable one-line description of an action in state `s`.
    pub fn describe(&self, s: &State, action: &Action) -> String {
        let link = |m: &Msg| format!("{}→{}", self.end_name(m.to ^ 1), self.end_name(m.to));
        match *action {
            Action::Deliver(i) => {
                let m = &s.net[i];
                format!("deliver {} {}", link(m), short(&m.d))
            }
            Action::Drop(i) => {
                let m = &s.net[i];
                format!("FAULT drop {} {}", link(m), short(&m.d))
            }
            Action::Replay(i) => {
                let m = &s.history[i];
                format!("FAULT replay {} {}", link(m), short(&m.d))
            }
            Action::Duplicate(i) => {
                let m = &s.net[i];
                format!("FAULT duplicate {} {}", link(m), short(&m.d))
            }
            Action::AgentEvent(e) => match s.ends[e].agent.peek_event() {
                Some((id, ev)) => format!(
                    "{} agent {} reports {}",
                    self.end_name(e),
                    id.0,
                    event_name(ev)
                ),
                None => format!("{} agent event", self.end_name(e)),
            },
            Action::Meet(p) => format!(
                "agents of {} and {} connect",
                self.end_name(2 * p),
                self.end_name(2 * p + 1)
            ),
            Action::MeetLosing(p, e) => format!(
                "agents of {} and {} connect, FAULT {}'s reports are lost",
                self.end_name(2 * p),
                self.end_name(2 * p + 1),
                self.end_name(e)
            ),
            Action::Timer(e) => format!("{} timer fires (due)", self.end_name(e)),
            Action::EarlyTimer(e) => format!("FAULT {} timer fires early", self.end_name(e)),
            Action::LoseEvent(e) => {
                let what = s.ends[e]
                    .agent
                    .lossy_event()
                    .map_or(String::new(), |_| " report".to_string());
                format!("FAULT {} agent{what} lost", self.end_name(e))
            }
            Action::Quirk(e) => format!("{} agent repeats a report (quirk)", self.end_name(e)),
            Action::Fail(e, Failure::PairLost) => {
                format!(
                    "FAULT {} agent loses its pair (Disconnected)",
                    self.end_name(e)
                )
            }
            Action::Fail(e, Failure::GiveUp) => {
                format!("FAULT {} agent gives up (Failed)", self.end_name(e))
            }
            Action::Fail(e, Failure::NoCandidates) => {
                format!("FAULT {} agent gathers no candidate", self.end_name(e))
            }
            Action::Crash(n, floor) => format!(
                "FAULT node {} crashes (state lost), restarts with floor {floor:?}",
                Self::node_name(n)
            ),
            Action::CrashHalf(p) => {
                let (n, floor) = Self::split_crash_of(s);
                format!(
                    "FAULT node {} crashes (state lost), restarts with floor {floor:?}: its end of {}–{}",
                    Self::node_name(n),
                    Self::node_name(self.pairs[p].0),
                    Self::node_name(self.pairs[p].1)
                )
            }
            Action::Restart(e) => format!("FAULT {} restart requested", self.end_name(e)),
            Action::Assign(o) => {
                let mut out = String::from("faults may strike:");
                if o.crash != u8::MAX {
                    let _ = write!(out, " crash node {}", Self::node_name(usize::from(o.crash)));
                }
                for class in FaultClass::ALL {
                    let p = o.session[class as usize];
                    if p != u8::MAX {
                        let (i, j) = self.pairs[usize::from(p)];
                        let _ = write!(
                            out,
                            " {class:?} {}{}",
                            Self::node_name(i),
                            Self::node_name(j)
                        );
                    }
                }
                out
            }
        }
    }
}

fn event_name(ev: &AgentEvent) -> String {
    match ev {
        AgentEvent::LocalCandidate(c) => format!("local candidate {}", c.foundation),
        other => format!("{other:?}"),
    }
}

impl Model for IceModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let now = self.base;
        let mut s = State {
            now: Duration::ZERO,
            ends: Vec::new(),
            net: Vec::new(),
            history: Shared::new(Vec::new()),
            left: self.budgets,
            crashes: [0; MAX_NODES],
            floors: [epoch_floor(0); MAX_NODES],
            crash_halves: 0,
            pairs: [PairStats::default(); MAX_NODES],
            creds: Shared::new(Vec::new()),
            owners: if self.assigns() {
                None
            } else {
                Some(Owners::ANY)
            },
            flags: 0,
            detail: None,
        };
        let mut log = None;
        for e in 0..self.end_count() {
            match self.new_peer(e, 0, epoch_floor(0), now) {
                Ok(peer) => s.ends.push(Shared::new(self.new_end(peer, false))),
                // Keys are distinct by construction, so `Peer::new` cannot fail; should it
                // anyway, the model has no peers to check and says so through the flag.
                Err(err) => {
                    Self::violate(&mut s, Flag::InputsAccepted, err.to_string(), &mut log);
                    return vec![s];
                }
            }
        }
        for e in 0..self.end_count() {
            self.drain(&mut s, e, &mut log);
        }
        if s.left.replays == 0 {
            s.history = Shared::new(Vec::new());
        }
        s.seal();
        vec![s]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let Some(owners) = s.owners else {
            actions.extend(self.assignments().into_iter().map(Action::Assign));
            return;
        };
        self.all_actions(s, actions);
        if owners != Owners::ANY {
            actions.retain(|a| self.owned(s, &owners, a));
        }
        if self.reduction {
            self.reduce(s, actions);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        Some(self.step(last, &action, None))
    }

    fn format_action(&self, action: &Action) -> String {
        format!("{action:?}")
    }

    fn format_step(&self, last: &State, action: Action) -> Option<String> {
        let mut notes = Vec::new();
        let next = self.step(last, &action, Some(&mut notes));
        let mut out = self.describe(last, &action);
        for n in &notes {
            out.push_str("\n  ");
            out.push_str(&crate::trace::note_text(self, n));
        }
        let _ = write!(out, "\n\n{next:#?}");
        Some(out)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        properties::all()
    }
}
