//! Configuration of a [`Peer`](crate::Peer).

use std::time::Duration;

use crate::agent::AgentRestart;
use crate::backoff::Backoff;
use crate::rules::RestartPolicy;

/// Tunables of a peer. The defaults follow cunicu and pion where they have one.
///
/// Start from [`Config::default`] and set the fields you need (new fields may be added, so the
/// struct cannot be written out in full outside this crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Config {
    /// Back-off for re-sending an unacknowledged description.
    pub backoff: Backoff,
    /// How long Disconnected may last before the session is restarted, if the agent reports
    /// neither Connected nor Failed first (pion's failed timeout: 25 s).
    pub disconnected_timeout: Duration,
    /// How long the agent may take from `Connect` to Connected or Completed before the session
    /// is restarted (rule CHECKING_TIMEOUT). One deadline covers Connecting and Checking,
    /// because an agent may skip or lose its Checking report. Default 30 s: pion's
    /// disconnected plus failed timeout, the time pion checks before it reports Failed.
    pub checking_timeout: Duration,
    /// How long the agent may take from `Gather` to its first local candidate before the
    /// session is restarted (rule GATHERING_TIMEOUT). A gathering that finds nothing (no usable
    /// interface, a bind address that is not local, every STUN server unreachable) would
    /// otherwise leave both peers in New for good. The deadline doubles with each consecutive
    /// gathering timeout, up to 8 times this value, and is back to this value once a candidate
    /// arrives. Default 10 s.
    pub gathering_timeout: Duration,
    /// How often the peer asks a Connected or Completed agent to report its state again
    /// ([`AgentCommand::ReportState`](crate::AgentCommand::ReportState), rule REPORT_POLL).
    /// These states have no deadline (a pair may live for days) and agents never repeat a
    /// report, so without the poll one lost Failed report on each side leaves both peers
    /// Connected over dead agents forever. Default 10 s.
    pub report_poll_interval: Duration,
    /// How far an input's `now` may lag behind the latest `now` the peer was given (rule
    /// LATE_INPUT). Such an input is taken as happening at the latest `now`; agent events are
    /// often stamped on another thread a little earlier. Further back is
    /// [`Error::TimeWentBackwards`](crate::Error::TimeWentBackwards). Default 1 s.
    pub max_input_lag: Duration,
    /// Most candidates accepted in one remote description, and most local candidates kept.
    pub max_candidates: usize,
    /// The restart rule.
    pub policy: RestartPolicy,
    /// How the agent is replaced when a session restarts: closed and created again (the
    /// default, every agent supports it) or restarted in place.
    pub agent_restart: AgentRestart,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backoff: Backoff::default(),
            disconnected_timeout: Duration::from_secs(25),
            checking_timeout: Duration::from_secs(30),
            gathering_timeout: Duration::from_secs(10),
            report_poll_interval: Duration::from_secs(10),
            max_input_lag: Duration::from_secs(1),
            max_candidates: 32,
            policy: RestartPolicy::Epoch,
            agent_restart: AgentRestart::Recreate,
        }
    }
}
