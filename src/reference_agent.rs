//! A reference model of an ICE agent, as real agents behave (feature `reference-agent`).
//!
//! The test harness, the model checker (`icepact-models`) and the simulator (`icepact-sim`) all
//! drive [`Peer`](crate::Peer)s against this one model instead of three fakes of their own, so
//! a quirk of a real agent that one of them knows, all of them know. The model carries out the
//! core's [`AgentCommand`]s, checks the agent contract (one live agent, commands name it,
//! connect once and only with remote candidates) and queues the reports a real agent of the
//! chosen [`AgentKind`] gives. Whether connectivity checks succeed is the environment's
//! business: the caller says so with [`pair_found`](ReferenceAgent::pair_found),
//! [`pair_lost`](ReferenceAgent::pair_lost) and [`give_up`](ReferenceAgent::give_up).
//!
//! What the kinds report (from their sources; docs/PROTOCOL.md, "Agent reports", has the
//! mapping to the core's states):
//!
//! | kind | after `Connect` | pair found | pair lost | after `Close` |
//! |---|---|---|---|---|
//! | [`Pion`](AgentKind::Pion) | Checking | Connected | Disconnected (Failed after its failed timeout) | Closed |
//! | [`PionNoDisconnect`](AgentKind::PionNoDisconnect) (`DisconnectedTimeout = 0`) | Checking | Connected | Failed straight from Connected (after its failed timeout) | Closed |
//! | [`Str0m`](AgentKind::Str0m) (and `is`) | Checking | Connected, Completed | Disconnected | nothing |
//! | [`Libwebrtc`](AgentKind::Libwebrtc) | Checking | Connected, Completed | Disconnected | Closed |
//!
//! Quirks ([`quirk`](ReferenceAgent::quirk)): a report repeated (pion and str0m report only
//! changes, but embeddings that report from two callbacks, or answer
//! [`ReportState`](crate::AgentCommand::ReportState), repeat), and libwebrtc's step back from
//! Completed to Connected when it checks new pairs. pion never reports Completed. Reports sit in a
//! queue until the caller hands them to the peer, so they can be late, and the caller may lose
//! one ([`lose_event`](ReferenceAgent::lose_event)): agents never repeat a lost report. A
//! gathering may find nothing at all ([`gather_nothing`](ReferenceAgent::gather_nothing)).
//!
//! An in-place [`Restart`](crate::AgentCommand::Restart) renames the live agent and forgets its
//! remote side; an agent that was past Checking reports Checking at once under its new name, as
//! pion's `Agent.Restart` and str0m's `ice_restart` do. libwebrtc is modelled the same way (not
//! checked against its source).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};

use crate::agent::{AgentCommand, AgentEvent, AgentId};
use crate::candidate::{Candidate, CandidateKind};
use crate::credentials::Credentials;
use crate::invariants::{self, Violation};

/// Which real agent the reference model behaves like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum AgentKind {
    /// pion/ice with its defaults (disconnected 5 s, failed 25 s).
    Pion,
    /// pion/ice with `DisconnectedTimeout = 0`: a lost pair is reported Failed straight from
    /// Connected, after the failed timeout, with no Disconnected first (and so after a host
    /// suspend before pion/ice PR #846). The caller decides when the pair is lost.
    PionNoDisconnect,
    /// str0m's ICE agent (`is`): reports Completed after Connected, nothing after close.
    Str0m,
    /// libwebrtc (browsers): Completed after Connected, steps back to Connected when it checks
    /// new pairs, reports Closed after close.
    Libwebrtc,
}

impl AgentKind {
    /// Every kind.
    pub const ALL: [AgentKind; 4] = [
        AgentKind::Pion,
        AgentKind::PionNoDisconnect,
        AgentKind::Str0m,
        AgentKind::Libwebrtc,
    ];

    /// True if the kind reports Completed once checking is over.
    pub fn completes(self) -> bool {
        matches!(self, AgentKind::Str0m | AgentKind::Libwebrtc)
    }

    /// True if the kind reports Closed after it was closed (an event of a dead agent).
    pub fn reports_close(self) -> bool {
        !matches!(self, AgentKind::Str0m)
    }
}

/// Where a live agent's connectivity stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Created, maybe gathering, not told to connect.
    New,
    /// Told to connect; checking.
    Checking,
    /// A pair works.
    Connected,
    /// A pair works and checking is over.
    Completed,
    /// The selected pair went silent.
    Disconnected,
    /// The agent gave up.
    Failed,
}

/// A command that breaks the agent contract (the core must never emit one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContractBreach {
    /// `Create` while another agent is live.
    #[error("agent {new} created while agent {live} is live")]
    TwoLiveAgents {
        /// The live agent.
        live: u64,
        /// The one created.
        new: u64,
    },
    /// A command names an agent that is not the live one.
    #[error("command for agent {0}, which is not live")]
    NotLive(u64),
    /// `Connect` twice on one agent.
    #[error("connect twice on one agent")]
    ConnectTwice,
    /// `Connect` before any remote candidate.
    #[error("connect without remote candidates")]
    ConnectWithoutCandidates,
    /// End-of-candidates before `Connect`, or twice.
    #[error("end of remote candidates before connect or twice")]
    EndOfCandidates,
}

/// The live agent of a [`ReferenceAgent`] slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LiveAgent {
    /// Its id.
    pub id: AgentId,
    /// Its local credentials.
    pub local: Credentials,
    /// The remote credentials it was told to connect with.
    pub remote: Option<Credentials>,
    /// The remote session (epoch) those credentials belong to, as the caller resolved it
    /// (`u64::MAX` if no session has them).
    pub remote_session: Option<u64>,
    /// The sessions of the remote candidates it was given, in order (see
    /// [`invariants::tag_session`]; `u64::MAX` for an untagged candidate).
    pub remote_candidates: Vec<u64>,
    /// End-of-candidates was given.
    pub end_of_remote: bool,
    /// Where connectivity stands.
    pub phase: Phase,
}

impl LiveAgent {
    /// A new agent (or one restarted in place) with only its local credentials.
    fn fresh(id: AgentId, local: Credentials) -> LiveAgent {
        LiveAgent {
            id,
            local,
            remote: None,
            remote_session: None,
            remote_candidates: Vec::new(),
            end_of_remote: false,
            phase: Phase::New,
        }
    }
}

/// One peer's agent slot: at most one live agent, and the reports not yet handed to the peer
/// (including reports of agents closed since).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReferenceAgent {
    kind: AgentKind,
    gathers: u16,
    live: Option<LiveAgent>,
    events: VecDeque<(AgentId, AgentEvent)>,
    created: u32,
    restarted: u32,
    closed: u32,
}

impl ReferenceAgent {
    /// An empty slot for agents of `kind` that gather `gathers` local candidates each.
    pub fn new(kind: AgentKind, gathers: u16) -> ReferenceAgent {
        ReferenceAgent {
            kind,
            gathers,
            live: None,
            events: VecDeque::new(),
            created: 0,
            restarted: 0,
            closed: 0,
        }
    }

    /// The kind.
    pub fn kind(&self) -> AgentKind {
        self.kind
    }

    /// The live agent, if any.
    pub fn live(&self) -> Option<&LiveAgent> {
        self.live.as_ref()
    }

    /// Agents created so far.
    pub fn created(&self) -> u32 {
        self.created
    }

    /// In-place restarts so far.
    pub fn restarted(&self) -> u32 {
        self.restarted
    }

    /// Agents closed so far.
    pub fn closed(&self) -> u32 {
        self.closed
    }

    /// The candidate the agent of `agent` gathers as its `n`-th (1-based), tagged with the
    /// session it belongs to.
    pub fn candidate(agent: AgentId, n: u16) -> Candidate {
        let addr = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 1000u16.saturating_add(n)));
        let mut c = Candidate::host(addr);
        if n > 1 {
            c.kind = CandidateKind::ServerReflexive;
        }
        invariants::tag_session(c, agent.0)
    }

    /// Carries out a command of the core. `session_of` names the remote session that the
    /// credentials of a `Connect` belong to (the caller keeps that registry).
    ///
    /// A command that breaks the agent contract is refused with what it broke and changes
    /// nothing (a `Create` while another agent is live replaces it anyway, as a real embedding
    /// would leak the old one).
    pub fn handle_command(
        &mut self,
        cmd: AgentCommand,
        session_of: impl FnOnce(&Credentials) -> Option<u64>,
    ) -> Result<(), ContractBreach> {
        let live_id = self.live.as_ref().map(|a| a.id);
        let named = |id: AgentId| {
            if live_id == Some(id) {
                Ok(())
            } else {
                Err(ContractBreach::NotLive(id.0))
            }
        };
        match cmd {
            AgentCommand::Create {
                agent, credentials, ..
            } => {
                self.created += 1;
                self.live = Some(LiveAgent::fresh(agent, credentials));
                if let Some(live) = live_id {
                    return Err(ContractBreach::TwoLiveAgents {
                        live: live.0,
                        new: agent.0,
                    });
                }
            }
            AgentCommand::Gather { agent } => {
                named(agent)?;
                for n in 1..=self.gathers {
                    self.events
                        .push_back((agent, AgentEvent::LocalCandidate(Self::candidate(agent, n))));
                }
                self.events.push_back((agent, AgentEvent::GatheringDone));
            }
            AgentCommand::AddRemoteCandidate { agent, candidate } => {
                named(agent)?;
                let session = invariants::tagged_session(&candidate).unwrap_or(u64::MAX);
                if let Some(a) = self.live.as_mut() {
                    a.remote_candidates.push(session);
                }
            }
            AgentCommand::Connect { agent, remote } => {
                named(agent)?;
                let Some(a) = self.live.as_mut() else {
                    return Err(ContractBreach::NotLive(agent.0));
                };
                if a.remote.is_some() {
                    return Err(ContractBreach::ConnectTwice);
                }
                if a.remote_candidates.is_empty() {
                    return Err(ContractBreach::ConnectWithoutCandidates);
                }
                a.remote_session = Some(session_of(&remote).unwrap_or(u64::MAX));
                a.remote = Some(remote);
                a.phase = Phase::Checking;
                self.events.push_back((agent, AgentEvent::Checking));
            }
            AgentCommand::EndOfRemoteCandidates { agent } => {
                named(agent)?;
                if let Some(a) = self.live.as_mut() {
                    if a.remote.is_none() || a.end_of_remote {
                        return Err(ContractBreach::EndOfCandidates);
                    }
                    a.end_of_remote = true;
                }
            }
            AgentCommand::ReportState { agent } => {
                named(agent)?;
                let report = self.live.as_ref().and_then(|a| match a.phase {
                    Phase::New => None,
                    Phase::Checking => Some(AgentEvent::Checking),
                    Phase::Connected => Some(AgentEvent::Connected),
                    Phase::Completed => Some(AgentEvent::Completed),
                    Phase::Disconnected => Some(AgentEvent::Disconnected),
                    Phase::Failed => Some(AgentEvent::Failed),
                });
                if let Some(report) = report {
                    self.events.push_back((agent, report));
                }
            }
            AgentCommand::Restart {
                agent,
                new,
                credentials,
            } => {
                named(agent)?;
                let Some(a) = self.live.as_mut() else {
                    return Err(ContractBreach::NotLive(agent.0));
                };
                self.restarted += 1;
                let before = a.phase;
                *a = LiveAgent::fresh(new, credentials);
                // pion's `Agent.Restart` and str0m's `ice_restart` move a running agent to
                // Checking at once, before it has remote credentials, and report it if that is
                // a change; the report names the new agent (the embedding tags reports with the
                // agent's current name).
                if !matches!(before, Phase::New | Phase::Checking) {
                    self.events.push_back((new, AgentEvent::Checking));
                }
            }
            AgentCommand::Close { agent } => {
                named(agent)?;
                self.live = None;
                self.closed += 1;
                if self.kind.reports_close() {
                    // pion and libwebrtc report their own closing: an event of a dead agent
                    // that the peer must recognise and ignore.
                    self.events.push_back((agent, AgentEvent::Closed));
                }
            }
        }
        Ok(())
    }

    /// The next report for the peer, oldest first.
    pub fn poll_event(&mut self) -> Option<(AgentId, AgentEvent)> {
        self.events.pop_front()
    }

    /// The next report, without taking it.
    pub fn peek_event(&self) -> Option<&(AgentId, AgentEvent)> {
        self.events.front()
    }

    /// True if reports are waiting.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The environment loses the next report that is not a local candidate (an embedding's
    /// channel dropped it, a callback raced a close). Returns it. Local-candidate reports are
    /// kept: losing all of them is a gathering failure, a different fault.
    pub fn lose_event(&mut self) -> Option<(AgentId, AgentEvent)> {
        let i = self.lossy_event()?;
        self.events.remove(i)
    }

    /// The index of the report [`lose_event`](Self::lose_event) would lose.
    pub fn lossy_event(&self) -> Option<usize> {
        self.events
            .iter()
            .position(|(_, e)| !matches!(e, AgentEvent::LocalCandidate(_)))
    }

    /// True if the live agent checks with `remote` as the remote's local credentials and the
    /// other agent checks with ours: both ends were told to connect to each other.
    pub fn told_to_meet(&self, other: &ReferenceAgent) -> bool {
        match (&self.live, &other.live) {
            (Some(a), Some(b)) => {
                a.remote.as_ref() == Some(&b.local) && b.remote.as_ref() == Some(&a.local)
            }
            _ => false,
        }
    }

    /// Connectivity checks succeeded (or resumed): the agent reports Connected (and Completed,
    /// for the kinds that complete). Nothing if it is not checking or disconnected.
    pub fn pair_found(&mut self) {
        let kind = self.kind;
        let Some(a) = self.live.as_mut() else { return };
        if !matches!(a.phase, Phase::Checking | Phase::Disconnected) {
            return;
        }
        let id = a.id;
        self.events.push_back((id, AgentEvent::Connected));
        a.phase = Phase::Connected;
        if kind.completes() {
            self.events.push_back((id, AgentEvent::Completed));
            a.phase = Phase::Completed;
        }
    }

    /// The selected pair went silent long enough for the agent to say so: Disconnected, or
    /// Failed straight from Connected for [`AgentKind::PionNoDisconnect`]. Nothing if no pair
    /// works.
    pub fn pair_lost(&mut self) {
        let kind = self.kind;
        let Some(a) = self.live.as_mut() else { return };
        if !matches!(a.phase, Phase::Connected | Phase::Completed) {
            return;
        }
        let (phase, event) = if kind == AgentKind::PionNoDisconnect {
            (Phase::Failed, AgentEvent::Failed)
        } else {
            (Phase::Disconnected, AgentEvent::Disconnected)
        };
        a.phase = phase;
        self.events.push_back((a.id, event));
    }

    /// The agent gives up, whatever its phase (checks ran out, consent expired, a suspended
    /// host woke up): it reports Failed. Nothing if it already failed or none is live.
    pub fn give_up(&mut self) {
        let Some(a) = self.live.as_mut() else { return };
        if a.phase == Phase::Failed {
            return;
        }
        a.phase = Phase::Failed;
        self.events.push_back((a.id, AgentEvent::Failed));
    }

    /// Gathering finds nothing (no usable interface, a bind address that is not local, every
    /// STUN/TURN server unreachable): the live agent's local-candidate reports not yet handed
    /// to the peer are dropped, and it reports only GatheringDone. Returns false if the live
    /// agent has none queued. Later agents gather normally (one failure, not a broken host).
    pub fn gather_nothing(&mut self) -> bool {
        let Some(id) = self.live.as_ref().map(|a| a.id) else {
            return false;
        };
        let before = self.events.len();
        self.events
            .retain(|(a, e)| !(*a == id && matches!(e, AgentEvent::LocalCandidate(_))));
        self.events.len() != before
    }

    /// True if the live agent has local-candidate reports queued (so
    /// [`gather_nothing`](Self::gather_nothing) can strike).
    pub fn gathering(&self) -> bool {
        self.live.as_ref().is_some_and(|a| {
            self.events
                .iter()
                .any(|(id, e)| *id == a.id && matches!(e, AgentEvent::LocalCandidate(_)))
        })
    }

    /// A benign quirk: the current report once more (an embedding that reports from two
    /// callbacks), or, when Completed, libwebrtc's step back to Connected and forward again
    /// while it checks new pairs. Returns false if there is nothing to repeat.
    pub fn quirk(&mut self) -> bool {
        let Some(a) = self.live.as_ref() else {
            return false;
        };
        let id = a.id;
        let events: &[AgentEvent] = match a.phase {
            Phase::New | Phase::Failed => return false,
            Phase::Checking => &[AgentEvent::Checking],
            Phase::Connected => &[AgentEvent::Connected],
            Phase::Completed => &[AgentEvent::Connected, AgentEvent::Completed],
            Phase::Disconnected => &[AgentEvent::Disconnected],
        };
        for e in events {
            self.events.push_back((id, e.clone()));
        }
        true
    }

    /// [`Invariant::CandidateBinding`](invariants::Invariant::CandidateBinding) for the live
    /// agent: every remote candidate it holds belongs to the session it connects to.
    pub fn check_binding(&self) -> Result<(), Violation> {
        match &self.live {
            Some(a) => {
                invariants::candidate_binding(a.remote_session, a.remote_candidates.iter().copied())
            }
            None => Ok(()),
        }
    }
}
