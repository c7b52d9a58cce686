//! The safety invariants of the protocol, defined once and checked by the tests, the model
//! checker (`icepact-models`) and the simulator (`icepact-sim`).
//!
//! Each check returns `Err(Violation)` naming the [`Invariant`] it guards; docs/PROTOCOL.md
//! lists them next to the rules they check. The checks only observe [`Peer`]s (and, where the
//! agent is involved, what the observer recorded about its agent); they never re-implement a
//! rule.

use std::fmt;

use crate::candidate::Candidate;
use crate::description::SessionRef;
use crate::peer::Peer;
use crate::state::{is_edge, ConnectionState};

/// A named safety invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Invariant {
    /// Every state change is an edge of the transition table.
    TableEdgesOnly,
    /// The two ends of a session never have the same role.
    OppositeRoles,
    /// No candidate of another session than the one the agent connects to reaches the agent.
    CandidateBinding,
    /// The newest applied remote `(epoch, version)` never goes back.
    MonotonicVersions,
    /// On entering Connected, both peers hold each other's current credentials.
    ConnectedWithCurrentCredentials,
    /// Restarts are bounded by the faults that cause them (no storms).
    NoRestartStorm,
    /// At most one live agent per session end, and none after shutdown.
    OneAgent,
    /// Liveness: once faults stop, every pair converges within the stated bound.
    Converges,
}

impl Invariant {
    /// A short stable name, used in verdict tables.
    pub const fn name(self) -> &'static str {
        match self {
            Invariant::TableEdgesOnly => "table edges only",
            Invariant::OppositeRoles => "never both controlling",
            Invariant::CandidateBinding => "candidate/session binding",
            Invariant::MonotonicVersions => "monotonic versions",
            Invariant::ConnectedWithCurrentCredentials => "connected with current creds",
            Invariant::NoRestartStorm => "restarts <= faults",
            Invariant::OneAgent => "one agent at a time",
            Invariant::Converges => "converges after heal",
        }
    }
}

/// A violated invariant and what was observed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant.name(), self.detail)
    }
}

fn check(ok: bool, invariant: Invariant, detail: impl FnOnce() -> String) -> Result<(), Violation> {
    if ok {
        Ok(())
    } else {
        Err(Violation {
            invariant,
            detail: detail(),
        })
    }
}

/// [`Invariant::TableEdgesOnly`] for one emitted state change.
pub fn table_edge(from: ConnectionState, to: ConnectionState) -> Result<(), Violation> {
    check(is_edge(from, to), Invariant::TableEdgesOnly, || {
        format!("{from} -> {to} is not an edge")
    })
}

/// [`Invariant::OppositeRoles`] for the two ends of a session.
pub fn opposite_roles(a: &Peer, b: &Peer) -> Result<(), Violation> {
    check(a.role() != b.role(), Invariant::OppositeRoles, || {
        format!("both are {:?}", a.role())
    })
}

/// [`Invariant::MonotonicVersions`] across one input to a peer.
pub fn monotonic_versions(before: &Peer, after: &Peer) -> Result<(), Violation> {
    monotonic_applied(before.newest_applied(), after.newest_applied())
}

/// [`Invariant::MonotonicVersions`] on the newest applied remote `(epoch, version)` before and
/// after one input (for callers that do not keep a copy of the peer).
pub fn monotonic_applied(
    before: Option<SessionRef>,
    after: Option<SessionRef>,
) -> Result<(), Violation> {
    check(after >= before, Invariant::MonotonicVersions, || {
        format!("newest applied went from {before:?} to {after:?}")
    })
}

/// [`Invariant::OneAgent`]: a `Create` command arrives while the previous agent of the same
/// session end is still live (`live`), or after shutdown.
pub fn one_agent(live: bool) -> Result<(), Violation> {
    check(!live, Invariant::OneAgent, || {
        "an agent was created while another was live".to_string()
    })
}

/// [`Invariant::ConnectedWithCurrentCredentials`]: call when `peer` enters Connected from
/// Connecting, Checking or Disconnected (a pair was found). Completed → Connected is not a new
/// pair (libwebrtc checks new pairs while the selected one stays usable), so it is not checked.
pub fn connected_with_current_credentials(peer: &Peer, remote: &Peer) -> Result<(), Violation> {
    let ok = peer.remote_credentials().is_some()
        && peer.remote_credentials() == remote.local_credentials()
        && remote.remote_credentials() == peer.local_credentials();
    check(ok, Invariant::ConnectedWithCurrentCredentials, || {
        format!(
            "{:?} connected holding {:?}/{:?}, remote {:?} holds {:?}/{:?}",
            peer.local_key(),
            peer.local_session(),
            peer.remote_session(),
            remote.local_key(),
            remote.local_session(),
            remote.remote_session()
        )
    })
}

/// [`Invariant::CandidateBinding`]: every remote candidate given to an agent belongs to the
/// remote session (epoch) whose credentials the agent connects with. `connect_epoch` is `None`
/// while the agent was not told to connect, and then it must hold no remote candidate either.
pub fn candidate_binding(
    connect_epoch: Option<u64>,
    candidate_epochs: impl IntoIterator<Item = u64>,
) -> Result<(), Violation> {
    for e in candidate_epochs {
        check(
            connect_epoch == Some(e),
            Invariant::CandidateBinding,
            || {
                format!("candidate of remote session {e} given to an agent connecting to {connect_epoch:?}")
            },
        )?;
    }
    Ok(())
}

/// Tags a test candidate with the local session (epoch) it was gathered in, by its foundation
/// (`e{epoch}`). The tests, the model checker and the simulator all tag their candidates this way
/// so that [`candidate_binding`] can tell which session a candidate at an agent came from.
pub fn tag_session(mut candidate: Candidate, epoch: u64) -> Candidate {
    candidate.foundation = smol_str::format_smolstr!("e{epoch}");
    candidate
}

/// The session a candidate was tagged with by [`tag_session`], if it was.
pub fn tagged_session(candidate: &Candidate) -> Option<u64> {
    candidate.foundation.strip_prefix('e')?.parse().ok()
}

/// [`Invariant::NoRestartStorm`]: each fault (an agent failure or disconnect, a crash, an
/// explicit restart) restarts its own side at most once and the other side at most once.
pub fn no_restart_storm(restarts: u64, faults: u64) -> Result<(), Violation> {
    check(restarts <= 2 * faults, Invariant::NoRestartStorm, || {
        format!("{restarts} restarts for {faults} faults")
    })
}

/// Convergence: both connected, each holding the other's current credentials.
pub fn converged(a: &Peer, b: &Peer) -> bool {
    a.state().is_connected()
        && b.state().is_connected()
        && connected_with_current_credentials(a, b).is_ok()
}
