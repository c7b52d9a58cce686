//! A two-peer, in-memory test harness (in the spirit of quinn-proto's `Pair`): two real `Peer`s,
//! a fake ICE agent each, a message queue per direction with fault hooks, and a clock that
//! jumps to the next `poll_timeout` when nothing else is pending.
//!
//! The fake agent connects only when both agents were told to connect with each other's
//! *current* local credentials and hold at least one remote candidate of that session.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use icepact::invariants;
use icepact::{
    AgentCommand, AgentEvent, AgentId, Candidate, Config, ConnectionState, Credentials,
    Description, Event, Output, Peer, PublicKey, SessionRef,
};

pub const A_KEY: PublicKey = PublicKey([1; 32]);
pub const B_KEY: PublicKey = PublicKey([2; 32]);

/// One fixed start instant per test process, so that two harness runs of the same inputs give
/// equal peers.
pub fn base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// The fake agent of one peer.
#[derive(Clone, Debug, Default)]
pub struct FakeAgent {
    pub id: Option<AgentId>,
    pub local: Option<Credentials>,
    pub remote: Option<Credentials>,
    pub remote_candidates: Vec<Candidate>,
    pub connecting: bool,
    pub connected: bool,
    pub end_of_remote_candidates: bool,
    /// `Connect` was carried out on this agent (never reset, unlike `connecting`).
    pub connect_told: bool,
    pub created: u32,
    pub closed: u32,
}

/// One peer with its agent, its inbox and what it did.
#[derive(Debug)]
pub struct Node {
    pub peer: Peer,
    pub agent: FakeAgent,
    pub inbox: VecDeque<Description>,
    pub events: VecDeque<(AgentId, AgentEvent)>,
    pub transitions: Vec<(ConnectionState, ConnectionState)>,
    pub sent: Vec<Description>,
    pub restarts: Vec<icepact::RestartCause>,
}

impl Node {
    pub fn new(peer: Peer) -> Node {
        Node {
            peer,
            agent: FakeAgent::default(),
            inbox: VecDeque::new(),
            events: VecDeque::new(),
            transitions: Vec::new(),
            sent: Vec::new(),
            restarts: Vec::new(),
        }
    }
}

/// A candidate that names the session (epoch) it was gathered in, so the harness can check that
/// no candidate of an old session reaches an agent.
pub fn candidate_of(epoch: u64, n: u16) -> Candidate {
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
        let now = base();
        let a = Peer::new(config, A_KEY, B_KEY, 100, seed_a, now).unwrap();
        let b = Peer::new(config, B_KEY, A_KEY, 100, seed_b, now).unwrap();
        let mut pair = Pair {
            now,
            a: Node::new(a),
            b: Node::new(b),
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
                Output::Event(_) => {}
                other => panic!("unknown output {other:?}"),
            }
        }
    }

    fn agent_command(&mut self, is_a: bool, cmd: AgentCommand) {
        let node = self.node(is_a);
        match cmd {
            AgentCommand::Create {
                agent, credentials, ..
            } => {
                assert!(node.agent.id.is_none(), "two live agents at once (B5)");
                node.agent = FakeAgent {
                    id: Some(agent),
                    local: Some(credentials.clone()),
                    created: node.agent.created + 1,
                    closed: node.agent.closed,
                    ..FakeAgent::default()
                };
                self.creds.insert(credentials, (is_a, agent.0));
            }
            AgentCommand::Gather { agent } => {
                assert_eq!(node.agent.id, Some(agent));
                node.events
                    .push_back((agent, AgentEvent::LocalCandidate(candidate_of(agent.0, 1))));
                node.events
                    .push_back((agent, AgentEvent::LocalCandidate(candidate_of(agent.0, 2))));
                node.events.push_back((agent, AgentEvent::GatheringDone));
            }
            AgentCommand::AddRemoteCandidate { agent, candidate } => {
                assert_eq!(node.agent.id, Some(agent));
                node.agent.remote_candidates.push(candidate);
            }
            AgentCommand::Connect { agent, remote } => {
                assert_eq!(node.agent.id, Some(agent));
                assert!(!node.agent.connecting, "connect twice on one agent");
                assert!(
                    !node.agent.remote_candidates.is_empty(),
                    "connect without candidates"
                );
                assert!(
                    !node.peer.local_candidates().is_empty(),
                    "connect before a local candidate (CONNECT_GUARD)"
                );
                node.agent.remote = Some(remote);
                node.agent.connecting = true;
                node.agent.connect_told = true;
                node.events.push_back((agent, AgentEvent::Checking));
            }
            AgentCommand::EndOfRemoteCandidates { agent } => {
                assert_eq!(node.agent.id, Some(agent));
                assert!(node.agent.connect_told, "end-of-candidates before connect");
                assert!(
                    !node.agent.end_of_remote_candidates,
                    "end-of-candidates told twice"
                );
                node.agent.end_of_remote_candidates = true;
            }
            AgentCommand::Close { agent } => {
                assert_eq!(
                    node.agent.id,
                    Some(agent),
                    "closing an agent that is not live"
                );
                node.agent.id = None;
                node.agent.closed += 1;
            }
            other => panic!("unknown command {other:?}"),
        }
        self.check_candidate_binding(is_a);
    }

    /// No candidate of another session than the one the agent connects to reaches the agent.
    fn check_candidate_binding(&self, is_a: bool) {
        let node = if is_a { &self.a } else { &self.b };
        let Some(remote) = &node.agent.remote else {
            return;
        };
        let (owner_a, epoch) = self.creds[remote];
        assert_eq!(
            owner_a, !is_a,
            "connected with our own credentials (reflection)"
        );
        for c in &node.agent.remote_candidates {
            assert_eq!(
                epoch_of(c),
                epoch,
                "candidate of another session reached the agent"
            );
        }
    }

    /// Both agents connect when each was told to connect with the other's current credentials.
    pub fn agents_meet(&mut self) -> bool {
        let (a, b) = (&self.a.agent, &self.b.agent);
        let ok = a.id.is_some()
            && b.id.is_some()
            && a.connecting
            && b.connecting
            && !(a.connected && b.connected)
            && a.remote == b.local
            && b.remote == a.local;
        if !ok
            || self
                .a
                .events
                .iter()
                .chain(&self.b.events)
                .any(|(_, e)| *e == AgentEvent::Checking)
        {
            return false;
        }
        for is_a in [true, false] {
            let node = self.node(is_a);
            if !node.agent.connected {
                node.agent.connected = true;
                let id = node.agent.id.unwrap();
                node.events.push_back((id, AgentEvent::Connected));
            }
        }
        true
    }

    /// Handles the next pending event of a peer's agent. False if none.
    pub fn agent_step(&mut self, is_a: bool) -> bool {
        let Some((id, ev)) = self.node(is_a).events.pop_front() else {
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
            && self.a.events.is_empty()
            && self.b.events.is_empty()
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
                assert_eq!(node.agent.remote.as_ref(), node.peer.remote_credentials());
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
