//! Errors and ignore reasons.
//!
//! The split is deliberate: an [`Error`] is input that a correct remote or embedding never
//! produces (malformed, contradictory or impossible in the current state); an [`IgnoreReason`]
//! is input that an unreliable network legitimately produces (late, duplicated or replayed
//! messages, events of an agent already closed). Neither changes the peer's state.

use std::time::Instant;

use crate::agent::AgentId;
use crate::description::SessionRef;
use crate::state::{ConnectionState, Report};

/// Everything that can go wrong on an input. An input that returns an error changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The local and remote public keys are equal, so no role can be assigned.
    #[error("local and remote public keys are equal: no ICE role can be assigned")]
    EqualKeys,
    /// The epoch floor leaves no room for further sessions (it is within 2^32 of `u64::MAX`;
    /// Unix time in microseconds is about 2^51).
    #[error("epoch floor {0} is too close to the end of the epoch range")]
    EpochFloorTooHigh(u64),
    /// `now` is earlier than an instant the peer has already been given.
    #[error("time went backwards: the peer has already seen a later instant")]
    TimeWentBackwards,
    /// A remote description violates the protocol.
    #[error("invalid description: {0}")]
    Description(#[from] DescriptionError),
    /// An agent event makes no sense in the current state.
    #[error("illegal transition: {0}")]
    Transition(#[from] TransitionError),
    /// The peer was shut down; it takes no more commands.
    #[error("the peer was shut down")]
    ShutDown,
}

/// A remote description that breaks a protocol rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptionError {
    /// ufrag or pwd is empty or longer than the limit.
    #[error("credentials are empty or too long")]
    BadCredentials,
    /// More candidates than the configured limit.
    #[error("{count} candidates exceed the limit of {max}")]
    TooManyCandidates {
        /// Candidates in the description.
        count: usize,
        /// The configured limit.
        max: usize,
    },
    /// The description acknowledges a local session or version that does not exist yet.
    #[error("acknowledges {ack:?}, but our session is {current:?}")]
    AckFromFuture {
        /// The acknowledged session.
        ack: SessionRef,
        /// Our current session.
        current: SessionRef,
    },
    /// A newer version of a session does not extend the previous candidate list.
    #[error("candidate list is not an extension of the previous version's")]
    CandidatesRewritten,
    /// A newer version of a session withdrew end-of-candidates (RFC 8838 §13: none may follow).
    #[error("end-of-candidates withdrawn")]
    EndOfCandidatesWithdrawn,
}

/// An agent event that has no edge from the current state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("agent event {event} in state {state}")]
pub struct TransitionError {
    /// The state the peer is in (and stays in).
    pub state: ConnectionState,
    /// The event's name.
    pub event: &'static str,
}

/// Why an input was accepted but changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum IgnoreReason {
    /// Rule STALE_DESCRIPTION: older than a description already applied.
    Stale {
        /// The description's session and version.
        got: SessionRef,
        /// The newest applied.
        newest: SessionRef,
    },
    /// Rule DUPLICATE_DESCRIPTION: the same version as the newest applied (only a reply, if one
    /// was asked for, and the piggybacked acknowledgement are processed).
    Duplicate(SessionRef),
    /// Rule EPOCH_REUSED: a description of the bound session (or of the newest applied
    /// version) with other credentials. The remote's epoch floor went back and it reuses an
    /// epoch of an earlier process; the description is not applied and the reply carries our
    /// [`Seen`](crate::Seen) so that the remote moves its epoch on (EPOCH_CATCH_UP).
    EpochReused(SessionRef),
    /// Rule EPOCH_CATCH_UP: the description says our epoch floor went back, but a catch-up
    /// happened shortly before; this one is deferred (the remote re-sends). Repeated, it means
    /// two live processes share our key, a configuration error no protocol can settle.
    CatchUpDeferred(SessionRef),
    /// Rule AGENT_REPORTS: an agent report that changes nothing in this state.
    AgentReport {
        /// The report.
        report: Report,
        /// The state it changed nothing in.
        state: ConnectionState,
    },
    /// Seed policy only: another session's description with a version other than 0.
    SeedNotVersionZero(SessionRef),
    /// An event of an agent that has since been closed.
    StaleAgent(AgentId),
    /// Rule ADMISSION: the session waits for a slot; the description is held and applied when
    /// the session is admitted.
    Waiting,
    /// Rule FAILURE_BACKOFF: the session failed repeatedly and the next one starts at
    /// `until`; until then there is no session to apply a description to (the remote re-sends).
    BackingOff {
        /// When the next session starts.
        until: Instant,
    },
    /// A local candidate after gathering was done (RFC 8838 §13).
    AfterEndOfCandidates,
    /// The local candidate limit is reached.
    TooManyLocalCandidates,
    /// The peer was shut down.
    ShutDown,
}

/// What became of an accepted input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub enum Disposition {
    /// The input was applied (it may have changed nothing visible).
    Applied,
    /// The input was ignored, for this reason.
    Ignored(IgnoreReason),
}
