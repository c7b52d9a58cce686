//! The boundary to the ICE agent: commands the core emits and events it takes.
//!
//! The real ICE implementation lives outside the core. Every command and event names the agent
//! it belongs to by [`AgentId`], so an event of an agent that has since been closed is recognised
//! and ignored rather than applied to its successor.

use crate::candidate::Candidate;
use crate::credentials::Credentials;
use crate::keys::Role;

/// Identifies one agent: the local session epoch it was created for (one agent per session).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AgentId(pub u64);

/// Work for the embedding's ICE agent. Carry them out in the order they are polled.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AgentCommand {
    /// Create an agent with these local credentials and role. The previous agent, if any, has
    /// been closed by an earlier [`AgentCommand::Close`].
    Create {
        /// The new agent.
        agent: AgentId,
        /// Local credentials.
        credentials: Credentials,
        /// Our ICE role.
        role: Role,
    },
    /// Start gathering local candidates.
    Gather {
        /// The agent.
        agent: AgentId,
    },
    /// Add a remote candidate of the bound remote session.
    AddRemoteCandidate {
        /// The agent.
        agent: AgentId,
        /// The candidate.
        candidate: Candidate,
    },
    /// Start connectivity checks with the remote credentials (dial if controlling, accept if
    /// controlled).
    Connect {
        /// The agent.
        agent: AgentId,
        /// Remote credentials of the bound remote session.
        remote: Credentials,
    },
    /// The remote signalled end-of-candidates for the bound session (RFC 8838 §14).
    EndOfRemoteCandidates {
        /// The agent.
        agent: AgentId,
    },
    /// Report the agent's current connectivity state again, as an [`AgentEvent`] (Checking,
    /// Connected, Completed, Disconnected or Failed; nothing if it has none yet). Repeats are
    /// ignored by the peer, so answering is always safe; not answering loses the repair of a
    /// lost report (rule REPORT_POLL).
    ReportState {
        /// The agent.
        agent: AgentId,
    },
    /// Restart the live agent `agent` in place for a new session (an ICE restart, RFC 8445
    /// §9): forget the remote credentials, the remote candidates and every candidate pair, take
    /// these local credentials, and name the agent `new` from now on. Gather again when told
    /// to (a [`Gather`](AgentCommand::Gather) for `new` follows, as after `Create`). Reports
    /// about the new credentials carry `new`; a report the agent gave before the restart
    /// carries `agent` and is ignored. Only emitted with [`AgentRestart::InPlace`]
    /// (str0m's `ice_restart`, pion's `Agent.Restart`).
    Restart {
        /// The live agent.
        agent: AgentId,
        /// Its name from now on.
        new: AgentId,
        /// The new local credentials.
        credentials: Credentials,
    },
    /// Close the agent. No further command names it.
    Close {
        /// The agent.
        agent: AgentId,
    },
}

/// How a session's agent is replaced when the session restarts (rule AGENT_RESTART).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AgentRestart {
    /// [`Close`](AgentCommand::Close) the old agent and [`Create`](AgentCommand::Create) a new
    /// one. Works with every agent; the new agent binds new sockets.
    #[default]
    Recreate,
    /// [`Restart`](AgentCommand::Restart) the live agent with new credentials, keeping its
    /// sockets (str0m's `ice_restart`, pion's `Agent.Restart`). An agent that reported
    /// [`Closed`](AgentEvent::Closed) is gone, so its successor is still created.
    InPlace,
}

/// What the ICE agent reports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A local candidate was gathered.
    LocalCandidate(Candidate),
    /// Gathering is complete.
    GatheringDone,
    /// Connectivity checks are running.
    Checking,
    /// A usable pair was selected.
    Connected,
    /// Checking finished with a usable pair.
    Completed,
    /// The selected pair lost connectivity.
    Disconnected,
    /// The agent gave up.
    Failed,
    /// The agent closed.
    Closed,
}
