//! The named properties of [`IceModel`], each with the rule it checks.
//!
//! Safety properties observed on a transition (an emitted state change, a peer input, an agent
//! command) are evaluated inside the step with the shared definitions of
//! [`icepact::invariants`] and recorded as sticky [`Flag`]s in the state; the property then
//! reads the flag. No rule of the core is re-implemented here.

use icepact::invariants;
use icepact::invariants::Invariant;
use stateright::{Expectation, Property};

use crate::model::{IceModel, State};

/// Sticky bits in [`State::flags`]: violations observed on a step, and sanity observations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// An emitted state change was not an edge of the table.
    TableEdges,
    /// Both ends of a session had the same role.
    OppositeRoles,
    /// An agent held a remote candidate of another session than the one it connects to.
    CandidateBinding,
    /// A peer's newest applied remote version went back.
    MonotonicVersions,
    /// A peer entered Connected without both holding each other's current credentials.
    ConnectedCurrent,
    /// More restarts than twice the faults in one session.
    RestartStorm,
    /// A peer refused an input that the environment may legally give.
    InputsAccepted,
    /// A command broke the agent contract (two live agents, command for a closed agent,
    /// connect twice or without candidates).
    AgentContract,
    /// A stale description was ignored (sanity).
    SeenStale,
    /// Both ends of a session restarted for a local cause before either reconnected (sanity).
    SeenGlare,
    /// An epoch catch-up happened where the node's floor never went back, or twice in one
    /// incarnation.
    CatchUpOnlyAfterRegression,
    /// An agent report was lost (sanity).
    SeenLostEvent,
    /// A peer caught up with its regressed epoch floor (sanity).
    SeenCatchUp,
    /// A peer went from Connected or Completed to Failed (sanity).
    SeenFailedConnected,
    /// An agent's gathering found no candidate (sanity).
    SeenNoCandidates,
    /// An agent was restarted in place (sanity).
    SeenInPlace,
    /// A restart after repeated failures waited (rule FAILURE_BACKOFF, sanity).
    SeenDeferred,
    /// More sessions of an endpoint establishing than its admission bound (endpoint mesh).
    AdmissionBound,
    /// A session held a description while it waited for admission (endpoint mesh, sanity).
    SeenHeld,
    /// A peer was added again after its removal (endpoint mesh, sanity).
    SeenReAdded,
    /// A node crashed (endpoint mesh, sanity).
    SeenCrash,
    /// A session restarted because its agent failed (endpoint mesh, sanity).
    SeenRestartAfterFailure,
}

impl Flag {
    /// The bit of this flag.
    pub fn bit(self) -> u32 {
        1 << (self as u16)
    }

    /// The property name this flag feeds.
    pub fn name(self) -> &'static str {
        match self {
            Flag::TableEdges => invariants::Invariant::TableEdgesOnly.name(),
            Flag::OppositeRoles => invariants::Invariant::OppositeRoles.name(),
            Flag::CandidateBinding => invariants::Invariant::CandidateBinding.name(),
            Flag::MonotonicVersions => invariants::Invariant::MonotonicVersions.name(),
            Flag::ConnectedCurrent => invariants::Invariant::ConnectedWithCurrentCredentials.name(),
            Flag::RestartStorm => invariants::Invariant::NoRestartStorm.name(),
            Flag::InputsAccepted => "legal inputs accepted",
            Flag::AgentContract => "agent contract",
            Flag::SeenStale => "stale ignored",
            Flag::SeenGlare => "glare",
            Flag::CatchUpOnlyAfterRegression => CATCH_UP,
            Flag::SeenLostEvent => "lost report",
            Flag::SeenCatchUp => "caught up",
            Flag::SeenFailedConnected => "failed from connected",
            Flag::SeenNoCandidates => "empty gathering",
            Flag::SeenInPlace => "restarted in place",
            Flag::SeenDeferred => "deferred restart",
            Flag::AdmissionBound => crate::endpoint_mesh::ADMISSION_BOUND,
            Flag::SeenHeld => "held while waiting",
            Flag::SeenReAdded => "added again",
            Flag::SeenCrash => "crash",
            Flag::SeenRestartAfterFailure => "restart after failure",
        }
    }
}

/// One property: its name, whether it is an invariant, the rule it checks and its condition.
#[derive(Clone, Copy, Debug)]
pub struct PropertyInfo {
    /// Name, as in verdict tables.
    pub name: &'static str,
    /// `always` (true) or `sometimes` (false).
    pub always: bool,
    /// The rule or scenario it checks (docs/PROTOCOL.md names, cunicu.md §6 ids).
    pub rule: &'static str,
    /// The condition on a state.
    pub condition: fn(&IceModel, &State) -> bool,
}

fn clean(s: &State, f: Flag) -> bool {
    s.flags & f.bit() == 0
}

fn seen(s: &State, f: Flag) -> bool {
    s.flags & f.bit() != 0
}

/// Name of the liveness property.
pub const LIVENESS: &str = "quiescent => converged";

/// Name of the property that replayed hints never cause a catch-up.
pub const CATCH_UP: &str = "catch-up only after regression";

/// Every property of the model, invariants first.
pub const PROPERTIES: &[PropertyInfo] = &[
    PropertyInfo {
        name: Invariant::TableEdgesOnly.name(),
        always: true,
        rule: "state.rs transition table (S3)",
        condition: |_, s| clean(s, Flag::TableEdges),
    },
    PropertyInfo {
        name: Invariant::OppositeRoles.name(),
        always: true,
        rule: "ROLE_BY_SMALLER_KEY (S1)",
        condition: |_, s| clean(s, Flag::OppositeRoles),
    },
    PropertyInfo {
        name: Invariant::CandidateBinding.name(),
        always: true,
        rule: "CANDIDATE_BINDING, CONNECT_GUARD (S2, S6)",
        condition: |_, s| clean(s, Flag::CandidateBinding),
    },
    PropertyInfo {
        name: Invariant::MonotonicVersions.name(),
        always: true,
        rule: "EPOCH_ORDER, STALE_DESCRIPTION (S6)",
        condition: |_, s| clean(s, Flag::MonotonicVersions),
    },
    PropertyInfo {
        name: Invariant::ConnectedWithCurrentCredentials.name(),
        always: true,
        rule: "CONNECT_GUARD, RESTART_ON_NEWER_CONFIRMED (S5)",
        condition: |_, s| clean(s, Flag::ConnectedCurrent),
    },
    PropertyInfo {
        name: Invariant::NoRestartStorm.name(),
        always: true,
        rule: "REBIND_UNCONFIRMED, RESTART_ON_NEWER_CONFIRMED (S7, L4-L6)",
        condition: |_, s| clean(s, Flag::RestartStorm),
    },
    PropertyInfo {
        name: "legal inputs accepted",
        always: true,
        rule: "Peer contract: no error on inputs a correct environment gives",
        condition: |_, s| clean(s, Flag::InputsAccepted),
    },
    PropertyInfo {
        name: "agent contract",
        always: true,
        rule: "NO_AGENT_AFTER_CLOSE, one agent per session (S4), connect once (S2)",
        condition: |_, s| clean(s, Flag::AgentContract),
    },
    PropertyInfo {
        name: CATCH_UP,
        always: true,
        rule: "EPOCH_CATCH_UP: only after a floor went back, once (replays never trigger it)",
        condition: |_, s| clean(s, Flag::CatchUpOnlyAfterRegression),
    },
    PropertyInfo {
        name: LIVENESS,
        always: true,
        rule: "liveness L1-L9: RESEND_UNACKED, DUPLICATE_DESCRIPTION, convergence",
        condition: |m, s| !m.quiescent(s) || m.converged(s),
    },
    PropertyInfo {
        name: "connected",
        always: false,
        rule: "sanity: every session converges somewhere",
        condition: |m, s| m.converged(s),
    },
    PropertyInfo {
        name: "reconnected after restart",
        always: false,
        rule: "sanity: a restart happened (in place, if so configured) and all sessions \
               converged again (L4, AGENT_RESTART)",
        condition: |m, s| {
            s.pairs.iter().any(|p| p.restarts > 0)
                && m.converged(s)
                && (!m.restarts_in_place() || seen(s, Flag::SeenInPlace))
        },
    },
    PropertyInfo {
        name: "reconnected after crash",
        always: false,
        rule: "sanity: a node crashed and all sessions converged again (L8)",
        condition: |m, s| s.crashes.iter().any(|&c| c > 0) && m.converged(s),
    },
    PropertyInfo {
        name: "reconnected after catch-up",
        always: false,
        rule: "sanity: a crash with a floor that went back, a catch-up, and convergence",
        condition: |m, s| seen(s, Flag::SeenCatchUp) && m.converged(s),
    },
    PropertyInfo {
        name: "reconnected after failed from connected",
        always: false,
        rule: "sanity: AGENT_REPORTS, Failed straight from Connected/Completed, then convergence",
        condition: |m, s| seen(s, Flag::SeenFailedConnected) && m.converged(s),
    },
    PropertyInfo {
        name: "reconnected after lost report",
        always: false,
        rule: "sanity: an agent report was lost (CHECKING_TIMEOUT), then convergence",
        condition: |m, s| seen(s, Flag::SeenLostEvent) && m.converged(s),
    },
    PropertyInfo {
        name: "reconnected after empty gathering",
        always: false,
        rule: "sanity: a gathering found no candidate (GATHERING_TIMEOUT), then convergence",
        condition: |m, s| seen(s, Flag::SeenNoCandidates) && m.converged(s),
    },
    PropertyInfo {
        name: "reconnected after deferred restart",
        always: false,
        rule: "sanity: failures in a row deferred a restart (FAILURE_BACKOFF), then convergence",
        condition: |m, s| seen(s, Flag::SeenDeferred) && m.converged(s),
    },
    PropertyInfo {
        name: "stale ignored",
        always: false,
        rule: "sanity: STALE_DESCRIPTION is exercised",
        condition: |_, s| seen(s, Flag::SeenStale),
    },
    PropertyInfo {
        name: "glare",
        always: false,
        rule: "sanity: both ends restart before either reconnects (L5)",
        condition: |_, s| seen(s, Flag::SeenGlare),
    },
];

/// Looks a property up by name.
pub fn info(name: &str) -> Option<&'static PropertyInfo> {
    PROPERTIES.iter().find(|p| p.name == name)
}

/// The properties as stateright [`Property`] values.
pub fn all() -> Vec<Property<IceModel>> {
    PROPERTIES
        .iter()
        .map(|p| Property {
            expectation: if p.always {
                Expectation::Always
            } else {
                Expectation::Sometimes
            },
            name: p.name,
            condition: p.condition,
        })
        .collect()
}
