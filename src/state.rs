//! The ICE connection state of one peer session and its transition table.
//!
//! This file is the one place that says which state changes exist. [`transition`] maps a
//! (state, trigger) pair to the next state; the [`Peer`](crate::Peer) changes its state only
//! through it, so every change it makes is an edge of this table by construction, and the model
//! checker and the simulator check the emitted events against [`is_edge`].
//!
//! The table is seed 000's state diagram plus a few edges the diagram lacks. Each added edge is
//! marked `ADDED` with the reason beside it.

use std::fmt;

/// The connection state of a peer session (seed 000's `ConnectionState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// No agent exists yet.
    Unknown,
    /// An agent exists; local credentials are sent (and re-sent with back-off) until the remote's
    /// arrive.
    Idle,
    /// Remote credentials are known; local candidates are being gathered.
    New,
    /// The agent was told to connect.
    Connecting,
    /// The agent is running connectivity checks.
    Checking,
    /// The agent has a usable candidate pair.
    Connected,
    /// The agent finished checking and has a usable pair.
    Completed,
    /// The agent lost connectivity on the selected pair (transient).
    Disconnected,
    /// The agent gave up.
    Failed,
    /// The agent was closed: either on the way to a new session or for good after shutdown.
    Closed,
}

impl ConnectionState {
    /// Every state, in declaration order.
    pub const ALL: [ConnectionState; 10] = [
        Self::Unknown,
        Self::Idle,
        Self::New,
        Self::Connecting,
        Self::Checking,
        Self::Connected,
        Self::Completed,
        Self::Disconnected,
        Self::Failed,
        Self::Closed,
    ];

    /// True while a live agent belongs to the current session.
    pub fn has_agent(self) -> bool {
        !matches!(self, Self::Unknown | Self::Closed)
    }

    /// True in Connected and Completed: the session has a usable pair.
    pub fn is_connected(self) -> bool {
        matches!(self, Self::Connected | Self::Completed)
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What makes the state change. The core never sets a state directly, only through a trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Trigger {
    /// A new agent is created and the local credentials are sent.
    CreateAgent,
    /// The remote session's credentials were accepted; gathering starts.
    RemoteCredentials,
    /// The connect guard holds: the agent is told to connect.
    Connect,
    /// The agent reported checking.
    AgentChecking,
    /// The agent reported connected.
    AgentConnected,
    /// The agent reported completed.
    AgentCompleted,
    /// The agent reported disconnected.
    AgentDisconnected,
    /// The agent reported failed.
    AgentFailed,
    /// The session is torn down to be replaced: local failure, disconnect timeout, an explicit
    /// restart request, a remote restart or an agent that closed by itself.
    Restart,
    /// The peer is shut down for good.
    Shutdown,
}

impl Trigger {
    /// Every trigger, in declaration order.
    pub const ALL: [Trigger; 10] = [
        Self::CreateAgent,
        Self::RemoteCredentials,
        Self::Connect,
        Self::AgentChecking,
        Self::AgentConnected,
        Self::AgentCompleted,
        Self::AgentDisconnected,
        Self::AgentFailed,
        Self::Restart,
        Self::Shutdown,
    ];
}

/// The transition table: the state `trigger` leads to from `from`, or `None` if the trigger
/// makes no sense there.
pub fn transition(from: ConnectionState, trigger: Trigger) -> Option<ConnectionState> {
    use ConnectionState::*;
    use Trigger::*;
    Some(match (from, trigger) {
        // Seed 000: "[*] --> Unknown; Unknown --> Idle: create new agent, send local credentials".
        (Unknown, CreateAgent) => Idle,
        // Seed 000: "Closed --> Idle: create new agent, send local credentials".
        (Closed, CreateAgent) => Idle,
        // Seed 000: "Idle --> New: on remote credentials, start gathering".
        (Idle, RemoteCredentials) => New,
        // Seed 000: "New --> Connecting: on remote candidate, connect". The guard is stricter
        // than the diagram's label (see `rules::connect_guard`).
        (New, Connect) => Connecting,
        // Seed 000: "Connecting --> Checking", "Checking --> Connected", "Checking --> Failed".
        (Connecting, AgentChecking) => Checking,
        (Checking, AgentConnected) => Connected,
        (Checking, AgentFailed) => Failed,
        // ADDED: an agent may give up before it reports checking (no pair could be formed, e.g.
        // every remote candidate was unusable); pion and rtc-ice can report Failed straight away.
        (Connecting, AgentFailed) => Failed,
        // ADDED: a Checking report can be skipped (an agent that finds a pair at once) or lost
        // on the way (agents never re-send a report); the Connected that follows is the truth.
        (Connecting, AgentConnected) => Connected,
        // ADDED: libwebrtc may report Completed without a Connected first (reports are
        // coalesced when checks finish in one go); a lost Connected report does the same.
        (Connecting | Checking, AgentCompleted) => Completed,
        // ADDED: libwebrtc goes back from Completed to Connected when new remote candidates
        // start new checks; the selected pair stays usable, so this is not a failure.
        (Completed, AgentConnected) => Connected,
        // ADDED: a pair that recovers from Disconnected may report Completed straight away.
        (Disconnected, AgentCompleted) => Completed,
        // ADDED: pion reports Failed straight from Connected when its disconnected timeout is 0
        // and after a host suspend (before pion/ice PR #846); consent freshness (RFC 7675) can
        // fail a pair without a Disconnected first. Without this edge a peer stays Connected
        // over a dead agent (NetBird #6424 and #7327 are this class). Failed leads to a restart.
        (Connected | Completed, AgentFailed) => Failed,
        // Seed 000: "Connected --> Completed", "Connected --> Disconnected",
        // "Completed --> Disconnected".
        (Connected, AgentCompleted) => Completed,
        (Connected, AgentDisconnected) => Disconnected,
        (Completed, AgentDisconnected) => Disconnected,
        // ADDED: Disconnected is transient. pion and the W3C spec let a pair recover
        // (Disconnected -> Connected when traffic resumes); cunicu restarts at once instead,
        // which throws that recovery away (notes/cunicu.md B7).
        (Disconnected, AgentConnected) => Connected,
        // ADDED: pion reports Failed after Disconnected when the failed timeout expires; the
        // diagram routes Disconnected only to Closed, so failure there closes the session.
        (Disconnected, AgentFailed) => Closed,
        // Seed 000: "Failed --> Closed", "Disconnected --> Closed", "Completed --> Closed".
        (Failed | Disconnected | Completed, Restart) => Closed,
        // ADDED: a session that has an agent is closed when it must be replaced: an explicit
        // restart request (any state with an agent), a remote restart (RFC 8445 §9: all
        // previous state is flushed), or the agent closing by itself. The diagram only shows
        // the failure paths.
        (Idle | New | Connecting | Checking | Connected, Restart) => Closed,
        // ADDED: shutdown closes the agent from any state that has one, and is a no-op edge
        // from Unknown (no agent was ever created). Closed after shutdown is terminal; the
        // `Peer` refuses CreateAgent then (no agent after close: notes/cunicu.md B5).
        (
            Unknown | Idle | New | Connecting | Checking | Connected | Completed | Disconnected
            | Failed,
            Shutdown,
        ) => Closed,
        _ => return None,
    })
}

/// A connectivity report of an ICE agent: every [`AgentEvent`](crate::AgentEvent) that is not
/// about local candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Report {
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
    /// The agent closed by itself.
    Closed,
}

impl Report {
    /// Every report, in declaration order.
    pub const ALL: [Report; 6] = [
        Self::Checking,
        Self::Connected,
        Self::Completed,
        Self::Disconnected,
        Self::Failed,
        Self::Closed,
    ];

    /// The trigger a report is, where it is one.
    pub fn trigger(self) -> Option<Trigger> {
        Some(match self {
            Report::Checking => Trigger::AgentChecking,
            Report::Connected => Trigger::AgentConnected,
            Report::Completed => Trigger::AgentCompleted,
            Report::Disconnected => Trigger::AgentDisconnected,
            Report::Failed => Trigger::AgentFailed,
            Report::Closed => return None,
        })
    }
}

/// What an agent report does in a state (rule AGENT_REPORTS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportOutcome {
    /// The report follows this edge of the table (then Failed and Closed restart).
    Edge(Trigger),
    /// The session is replaced without an edge of its own (the agent gave up or closed before
    /// it was told to connect).
    Restart,
    /// The report changes nothing here: a repeat (Connected while Connected), a benign step
    /// back (Checking while Connected: libwebrtc checks new pairs while the selected one stays
    /// usable), a report before `Connect` that a correct agent never gives, or Disconnected
    /// before any pair was selected (nothing to lose; the checking timeout covers an agent that
    /// is stuck).
    Ignored,
}

/// Rule AGENT_REPORTS: every report of a live agent in every state has a defined outcome, so
/// that the union of what pion, str0m and libwebrtc report (docs/PROTOCOL.md, "Agent reports")
/// is never an error. A report that is an edge of the table follows it; Failed and Closed
/// always end the session; anything else is ignored.
pub fn report_outcome(state: ConnectionState, report: Report) -> ReportOutcome {
    if !state.has_agent() {
        return ReportOutcome::Ignored;
    }
    match report.trigger() {
        Some(trigger) if transition(state, trigger).is_some() => ReportOutcome::Edge(trigger),
        // Failed with no edge (Idle, New: the agent gave up before it was told to connect) and
        // Closed anywhere: the agent is gone, so the session is replaced.
        None | Some(Trigger::AgentFailed) => ReportOutcome::Restart,
        Some(_) => ReportOutcome::Ignored,
    }
}

/// True if `from -> to` is an edge of the table (for some trigger).
pub fn is_edge(from: ConnectionState, to: ConnectionState) -> bool {
    Trigger::ALL
        .iter()
        .any(|&t| transition(from, t) == Some(to))
}

/// Every edge of the table as `(from, trigger, to)`, in a fixed order.
pub fn edges() -> impl Iterator<Item = (ConnectionState, Trigger, ConnectionState)> {
    ConnectionState::ALL.into_iter().flat_map(|from| {
        Trigger::ALL
            .into_iter()
            .filter_map(move |t| transition(from, t).map(|to| (from, t, to)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionState::*;

    #[test]
    fn seed_000_diagram_edges_are_all_present() {
        let diagram = [
            (Unknown, Idle),
            (Idle, New),
            (New, Connecting),
            (Connecting, Checking),
            (Checking, Connected),
            (Checking, Failed),
            (Completed, Disconnected),
            (Connected, Disconnected),
            (Connected, Completed),
            (Completed, Closed),
            (Disconnected, Closed),
            (Closed, Idle),
            (Failed, Closed),
        ];
        for (from, to) in diagram {
            assert!(is_edge(from, to), "{from} -> {to} missing");
        }
    }

    #[test]
    fn illegal_jumps_are_not_edges() {
        assert!(!is_edge(Idle, Connected));
        assert!(!is_edge(New, Checking));
        assert!(!is_edge(Unknown, Connected));
        assert!(!is_edge(Closed, Connected));
        assert!(!is_edge(Failed, Connected));
        assert!(!is_edge(Closed, Closed));
    }

    #[test]
    fn table_size_is_pinned() {
        // 13 diagram edges + the failure/recovery edges real agents need + restart and
        // shutdown edges, as (from, trigger) pairs. A change here must be deliberate and
        // documented (docs/PROTOCOL.md).
        assert_eq!(edges().count(), 37);
    }

    #[test]
    fn every_report_in_every_state_with_an_agent_has_an_outcome() {
        let mut ignored = 0;
        for state in ConnectionState::ALL.into_iter().filter(|s| s.has_agent()) {
            for report in Report::ALL {
                match report_outcome(state, report) {
                    ReportOutcome::Edge(t) => assert!(transition(state, t).is_some()),
                    ReportOutcome::Restart => {
                        assert!(matches!(report, Report::Failed | Report::Closed))
                    }
                    ReportOutcome::Ignored => ignored += 1,
                }
            }
        }
        // Failed never stays, whatever the state: it leads to a restart.
        for state in ConnectionState::ALL.into_iter().filter(|s| s.has_agent()) {
            for report in [Report::Failed, Report::Closed] {
                assert_ne!(
                    report_outcome(state, report),
                    ReportOutcome::Ignored,
                    "{state}"
                );
            }
        }
        assert_eq!(
            report_outcome(Connected, Report::Failed),
            ReportOutcome::Edge(Trigger::AgentFailed)
        );
        assert_eq!(
            report_outcome(Completed, Report::Connected),
            ReportOutcome::Edge(Trigger::AgentConnected)
        );
        assert_eq!(
            report_outcome(Connected, Report::Checking),
            ReportOutcome::Ignored
        );
        assert_eq!(
            report_outcome(Connected, Report::Connected),
            ReportOutcome::Ignored
        );
        // Pinned: the number of (state, report) cells that change nothing.
        assert_eq!(ignored, 21);
    }
}
