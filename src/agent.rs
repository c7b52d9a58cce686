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
    /// Close the agent. No further command names it.
    Close {
        /// The agent.
        agent: AgentId,
    },
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
