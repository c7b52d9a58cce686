//! A two-peer, in-memory test harness (in the spirit of quinn-proto's `Pair`): two real `Peer`s,
//! the core's reference ICE agent each (`icepact::reference_agent`, the same model the model
//! checker and the simulator use), a message queue per direction with fault hooks, and a clock
//! that jumps to the next `poll_timeout` when nothing else is pending.
//!
//! The agents find each other only when both were told to connect with each other's *current*
//! local credentials (and so hold at least one remote candidate of that session).

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use icepact::invariants;
use icepact::reference_agent::{AgentKind, Phase, ReferenceAgent};
use icepact::{
    AgentCommand, AgentId, Candidate, Config, ConnectionState, Credentials, Description, Event,
    Output, Peer, PeerSetup, PublicKey, Seed, SessionRef,
};

pub const A_KEY: PublicKey = PublicKey([1; 32]);
pub const B_KEY: PublicKey = PublicKey([2; 32]);

/// One fixed start instant per test process, so that two harness runs of the same inputs give
/// equal peers.
pub fn base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// One peer with its agent, its inbox and what it did.
#[derive(Debug)]
pub struct Node {
    pub peer: Peer,
    pub agent: ReferenceAgent,
    pub inbox: VecDeque<Description>,
    pub transitions: Vec<(ConnectionState, ConnectionState)>,
    pub sent: Vec<Description>,
    pub restarts: Vec<icepact::RestartCause>,
    /// Every other event, in order.
    pub events: Vec<Event>,
}

impl Node {
    pub fn new(peer: Peer, kind: AgentKind) -> Node {
        Node {
            peer,
            agent: ReferenceAgent::new(kind, 2),
            inbox: VecDeque::new(),
            transitions: Vec::new(),
            sent: Vec::new(),
            restarts: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The live agent's id.
    pub fn agent_id(&self) -> Option<AgentId> {
        self.agent.live().map(|a| a.id)
    }

    /// The remote candidates the live agent holds.
    pub fn remote_candidates(&self) -> usize {
        self.agent.live().map_or(0, |a| a.remote_candidates.len())
    }
}

/// A candidate that names the session (epoch) it was gathered in, so the harness can check that
/// no candidate of an old session reaches an agent (the reference agent gathers `n = 1, 2`).
pub fn candidate_of(epoch: u64, n: u16) -> Candidate {
    if n >= 1 {
        return ReferenceAgent::candidate(AgentId(epoch), n);
    }
    let addr = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 1000 + n));
    invariants::tag_session(Candidate::host(addr), epoch)
}

pub fn epoch_of(c: &Candidate) -> u64 {
    invariants::tagged_session(c).expect("harness candidates name their epoch")
}

/// What a delivery filter decides for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    Duplicate,
}

/// Decides the fate of each sent message (`true` = sent by A).
pub type Filter = Box<dyn FnMut(bool, &Description) -> Fate>;

pub struct Pair {
    pub now: Instant,
    pub a: Node,
    pub b: Node,
    pub filter: Filter,
    /// Credentials → (owner is A, epoch), for the candidate-binding check.
    pub creds: BTreeMap<Credentials, (bool, u64)>,
    pub steps: u64,
}

impl Pair {
    pub fn new(config: Config) -> Pair {
        Self::with_seeds(config, 1, 2)
    }

    pub fn with_seeds(config: Config, seed_a: u64, seed_b: u64) -> Pair {
        Self::with_agents(config, seed_a, seed_b, AgentKind::Pion)
    }

    /// Two peers whose agents behave like `kind`.
    pub fn with_agents(config: Config, seed_a: u64, seed_b: u64, kind: AgentKind) -> Pair {
        let now = base();
        let a = Peer::new(
            config,
            PeerSetup {
                local: A_KEY,
                remote: B_KEY,
                epoch_floor: 100,
                seed: Seed::insecure_from_u64(seed_a),
            },
            now,
        )
        .unwrap();
        let b = Peer::new(
            config,
            PeerSetup {
                local: B_KEY,
                remote: A_KEY,
                epoch_floor: 100,
                seed: Seed::insecure_from_u64(seed_b),
            },
            now,
        )
        .unwrap();
        let mut pair = Pair {
            now,
            a: Node::new(a, kind),
            b: Node::new(b, kind),
            filter: Box::new(|_, _| Fate::Deliver),
            creds: BTreeMap::new(),
            steps: 0,
        };
        pair.drain(true);
        pair.drain(false);
        pair
    }

    pub fn node(&mut self, is_a: bool) -> &mut Node {
        if is_a {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// Drains a peer's outputs: messages go to the other inbox (through the filter), commands
    /// to the fake agent, events are checked against the transition table.
    pub fn drain(&mut self, is_a: bool) {
        while let Some(out) = self.node(is_a).peer.poll_output() {
            match out {
                Output::Send(d) => {
                    self.node(is_a).sent.push(d.clone());
                    match (self.filter)(is_a, &d) {
                        Fate::Deliver => self.node(!is_a).inbox.push_back(d),
                        Fate::Drop => {}
                        Fate::Duplicate => {
                            self.node(!is_a).inbox.push_back(d.clone());
                            self.node(!is_a).inbox.push_back(d);
                        }
                    }
                }
                Output::Agent(cmd) => self.agent_command(is_a, cmd),
                Output::Event(Event::StateChanged { from, to, .. }) => {
                    invariants::table_edge(from, to).unwrap();
                    self.node(is_a).transitions.push((from, to));
                }
                Output::Event(Event::Restarted { cause, .. }) => {
                    self.node(is_a).restarts.push(cause)
                }
                Output::Event(e) => self.node(is_a).events.push(e),
                other => panic!("unknown output {other:?}"),
            }
        }
        self.check_candidate_binding(is_a);
    }

    fn agent_command(&mut self, is_a: bool, cmd: AgentCommand) {
        match &cmd {
            AgentCommand::Create {
                agent, credentials, ..
            }
            | AgentCommand::Restart {
                new: agent,
                credentials,
                ..
            } => {
                self.creds.insert(credentials.clone(), (is_a, agent.0));
            }
            AgentCommand::Connect { remote, .. } => {
                let (owner_a, _) = self.creds[remote];
                assert_eq!(
                    owner_a, !is_a,
                    "connected with our own credentials (reflection)"
                );
                assert!(
                    !self.node(is_a).peer.local_candidates().is_empty(),
                    "connect before a local candidate (CONNECT_GUARD)"
                );
            }
            _ => {}
        }
        let creds = &self.creds;
        let node = if is_a { &mut self.a } else { &mut self.b };
        node.agent
            .handle_command(cmd, |remote| creds.get(remote).map(|&(_, epoch)| epoch))
            .unwrap_or_else(|breach| panic!("agent contract: {breach}"));
    }

    /// No candidate of another session than the one the agent connects to reaches the agent.
    fn check_candidate_binding(&self, is_a: bool) {
        let node = if is_a { &self.a } else { &self.b };
        node.agent.check_binding().unwrap();
    }

    /// Both agents connect when each was told to connect with the other's current credentials
    /// and has reported everything before (its Checking in particular).
    pub fn agents_meet(&mut self) -> bool {
        let waiting = |n: &Node| {
            matches!(
                n.agent.live().map(|l| l.phase),
                Some(Phase::Checking | Phase::Disconnected)
            )
        };
        let failed = |n: &Node| n.agent.live().map(|l| l.phase) == Some(Phase::Failed);
        let ok = self.a.agent.told_to_meet(&self.b.agent)
            && (waiting(&self.a) || waiting(&self.b))
            && !failed(&self.a)
            && !failed(&self.b)
            && !self.a.agent.has_events()
            && !self.b.agent.has_events();
        if !ok {
            return false;
        }
        self.a.agent.pair_found();
        self.b.agent.pair_found();
        true
    }

    /// Handles the next pending event of a peer's agent. False if none.
    pub fn agent_step(&mut self, is_a: bool) -> bool {
        let Some((id, ev)) = self.node(is_a).agent.poll_event() else {
            return false;
        };
        let now = self.now;
        let _ = self
            .node(is_a)
            .peer
            .handle_agent_event(now, id, ev)
            .unwrap();
        self.drain(is_a);
        self.check_invariants();
        true
    }

    /// Delivers the message at `idx` (modulo the inbox length) of a peer's inbox: any message,
    /// not just the first, so the network reorders. False if the inbox is empty.
    pub fn deliver(&mut self, is_a: bool, idx: usize) -> bool {
        let inbox = &mut self.node(is_a).inbox;
        if inbox.is_empty() {
            return false;
        }
        let d = inbox.remove(idx % inbox.len()).unwrap();
        let now = self.now;
        let before = self.node(is_a).peer.clone();
        let _ = self.node(is_a).peer.handle_description(now, &d).unwrap();
        invariants::monotonic_versions(&before, &self.node(is_a).peer).unwrap();
        self.drain(is_a);
        self.check_invariants();
        true
    }

    /// One step: an agent event, else a message, else agents meeting, else a timer.
    /// Returns false when nothing at all is pending.
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        for is_a in [true, false] {
            if self.agent_step(is_a) {
                return true;
            }
        }
        for is_a in [true, false] {
            if self.deliver(is_a, 0) {
                return true;
            }
        }
        if self.agents_meet() {
            return true;
        }
        self.fire_next_timer()
    }

    /// Jumps the clock to the earliest timer and fires it.
    pub fn fire_next_timer(&mut self) -> bool {
        let next = [self.a.peer.poll_timeout(), self.b.peer.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(t) = next else { return false };
        assert!(
            t > self.now,
            "poll_timeout returned a time that is not in the future"
        );
        self.now = t;
        for is_a in [true, false] {
            let now = self.now;
            self.node(is_a).peer.handle_timeout(now).unwrap();
            self.drain(is_a);
        }
        self.check_invariants();
        true
    }

    pub fn both_connected(&self) -> bool {
        self.a.peer.state().is_connected() && self.b.peer.state().is_connected()
    }

    /// Runs until both are connected and nothing but timers is pending, or `max` steps.
    pub fn run_until_connected(&mut self, max: u64) -> bool {
        for _ in 0..max {
            if self.both_connected() && self.quiet() {
                return true;
            }
            if !self.step() {
                break;
            }
        }
        self.both_connected()
    }

    pub fn quiet(&self) -> bool {
        self.a.inbox.is_empty()
            && self.b.inbox.is_empty()
            && !self.a.agent.has_events()
            && !self.b.agent.has_events()
    }

    pub fn check_invariants(&self) {
        assert_ne!(
            self.a.peer.role(),
            self.b.peer.role(),
            "both peers have the same role"
        );
        for node in [&self.a, &self.b] {
            // The agent holds the credentials the peer says it holds.
            if node.peer.state().is_connected() {
                let remote = node.agent.live().and_then(|a| a.remote.as_ref());
                assert_eq!(remote, node.peer.remote_credentials());
            }
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }
}

/// The newest (epoch, version) a peer applied, for monotonicity checks.
pub fn newest(node: &Node) -> Option<SessionRef> {
    node.peer.newest_applied()
}
