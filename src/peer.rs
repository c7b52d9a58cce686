//! [`Peer`]: the sans-IO session state machine for one remote peer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::agent::{AgentCommand, AgentEvent, AgentId, AgentRestart};
use crate::candidate::Candidate;
use crate::config::Config;
use crate::credentials::Credentials;
use crate::description::{Description, Seen, SessionRef};
use crate::error::{DescriptionError, Disposition, Error, IgnoreReason, TransitionError};
use crate::keys::{PublicKey, Role};
use crate::rng::{Seed, SessionRng};
use crate::rules::{self, RestartPolicy, Verdict, View};
use crate::state::{report_outcome, transition, ConnectionState, Report, ReportOutcome, Trigger};

/// How often a stale or reused-epoch description is answered at most (rule EPOCH_CATCH_UP).
const HINT_INTERVAL: Duration = Duration::from_millis(500);

/// Shortest timer: a zero duration in the configuration must not arm a timer at `now` (which
/// `poll_timeout` promises never to return).
const MIN_TIMER: Duration = Duration::from_millis(1);

/// Consecutive gathering timeouts double the deadline up to `2^MAX_GATHERING_DOUBLINGS` times
/// [`Config::gathering_timeout`] (rule GATHERING_TIMEOUT).
const MAX_GATHERING_DOUBLINGS: u32 = 3;

/// Floors and epochs a remote can make us catch up to stay below this, so that neither an
/// embedding nor a malicious (authenticated) remote can put us at the end of the range, where
/// epochs would stop growing.
const EPOCH_CEILING: u64 = u64::MAX - (1 << 32);

/// How far above the evidence an epoch catch-up moves (rule EPOCH_CATCH_UP). The evidence can be
/// stale: a late or replayed description names the newest of our sessions its sender had seen
/// *when it sent it*, and the earlier process of our key may have started more sessions since.
/// Moving to just above the evidence could land on an epoch that process used, which the remote
/// answers with EPOCH_REUSED, so a second catch-up would follow after the back-off. A process
/// starts a session at most once per failure, request or remote restart, so 2^16 sessions cover
/// every earlier session a stale description can miss in practice; epochs are 64-bit, so the
/// jump costs nothing.
const CATCH_UP_MARGIN: u64 = 1 << 16;

/// `now + d` (at least [`MIN_TIMER`]), or `None` beyond the end of `Instant`'s range: such a
/// timer is not armed.
fn after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d.max(MIN_TIMER))
}

/// Disarms `slot` and returns true if it is armed at or before `now` (a timer that fired, or a
/// rate limit that passed).
fn take_due(slot: &mut Option<Instant>, now: Instant) -> bool {
    let due = slot.is_some_and(|t| t <= now);
    if due {
        *slot = None;
    }
    due
}

/// Rule LATE_INPUT: an input stamped a little before the latest `now` (another thread's clock
/// reading) happened, as far as we can tell, at the latest `now`; refusing it would lose an
/// agent report for good (agents never repeat them). One stamped more than `max_lag` before it
/// means the clock went backwards. Returns the instant the input is taken at.
pub(crate) fn late_input(
    latest: Option<Instant>,
    now: Instant,
    max_lag: Duration,
) -> Result<Instant, Error> {
    match latest {
        Some(last) if now < last => {
            if last.duration_since(now) > max_lag {
                return Err(Error::TimeWentBackwards);
            }
            Ok(last)
        }
        _ => Ok(now),
    }
}

/// The session state machine for one remote peer, in sans-IO style.
///
/// # Contract
///
/// *Inputs* mutate the peer; each takes the current time, which must not go backwards by more
/// than [`Config::max_input_lag`] (an input stamped a little earlier than the latest `now` is
/// taken as happening at the latest `now`, rule LATE_INPUT):
/// - [`handle_description`](Peer::handle_description): a description the remote sent us;
/// - [`handle_agent_event`](Peer::handle_agent_event): something our ICE agent reported;
/// - [`handle_timeout`](Peer::handle_timeout): time has passed (call it at or after
///   [`poll_timeout`](Peer::poll_timeout));
/// - [`restart`](Peer::restart) and [`close`](Peer::close): commands of the embedding.
///
/// Every input first fires the timers that are due at `now`, exactly as
/// [`handle_timeout`](Peer::handle_timeout)`(now)` would (time has passed, whatever the input
/// turns out to be), then applies itself. An input that returns `Err` changes nothing beyond
/// those due timers; `Err(TimeWentBackwards)` changes nothing at all. No input panics, whatever
/// the `Instant`: a timer that would fall beyond the end of `Instant`'s range is not armed.
///
/// *Outputs* are polled: after **every** input, drain [`poll_output`](Peer::poll_output) until
/// it returns `None`, carrying out each [`Output`] in order (send the description to the remote,
/// pass the command to the agent), then ask [`poll_timeout`](Peer::poll_timeout) when to call
/// [`handle_timeout`](Peer::handle_timeout) next. `poll_timeout` never returns an instant at or
/// before the latest `now` the peer was given.
///
/// The peer reads no clock and no global RNG: time comes in as arguments and randomness
/// (credentials, jitter) from the secret [`Seed`] given to [`Peer::new`]. The same inputs give the same
/// outputs, and the whole value is `Clone + Eq + Hash` with deterministic iteration, so the model
/// checker and the simulator run this code, not a copy of its rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    config: Config,
    local_key: PublicKey,
    remote_key: PublicKey,
    role: Role,
    rng: SessionRng,
    state: ConnectionState,
    shut_down: bool,
    next_epoch: u64,
    session: Option<LocalSession>,
    /// The newest remote description ever applied, across local sessions (what
    /// [`Description::seen`] tells the remote).
    newest: Option<Seen>,
    /// Before this instant a stale or reused-epoch description gets no reply (rule
    /// EPOCH_CATCH_UP's rate limit: replays cannot amplify).
    hint_after: Option<Instant>,
    /// Epoch catch-ups so far, and before when another one is deferred (EPOCH_CATCH_UP's back
    /// off).
    catch_ups: u32,
    catch_up_after: Option<Instant>,
    timers: Timers,
    /// Gathering timeouts since the last local candidate (rule GATHERING_TIMEOUT's back-off).
    gathering_timeouts: u32,
    /// Restarts caused by a failure since the last Connected (rule FAILURE_BACKOFF).
    failures: u32,
    /// While a restart is deferred (rule FAILURE_BACKOFF, in-place agents): the live agent the
    /// next session restarts in place.
    parked: Option<AgentId>,
    restarts: u32,
    last_now: Option<Instant>,
    send_pending: bool,
    queue: VecDeque<Output>,
}

/// Work the embedding must carry out, polled from [`Peer::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Output {
    /// Send this description to the remote peer (seal it and publish it on the backend).
    Send(Description),
    /// Pass this command to the ICE agent.
    Agent(AgentCommand),
    /// Something happened that the embedding may want to know.
    Event(Event),
}

/// Notifications, emitted only on change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// The connection state changed along an edge of the transition table.
    StateChanged {
        /// Previous state.
        from: ConnectionState,
        /// New state.
        to: ConnectionState,
        /// What caused it.
        trigger: Trigger,
    },
    /// The local session was replaced by a new one.
    Restarted {
        /// Why.
        cause: RestartCause,
        /// Restarts so far, this one included.
        restarts: u32,
    },
    /// The agent finished gathering without a single local candidate: the session cannot
    /// connect. Usual causes: no usable network interface, a bind address that is not local,
    /// every STUN/TURN server unreachable. The peer restarts the session when the gathering
    /// deadline passes (rule GATHERING_TIMEOUT, [`RestartCause::GatheringTimeout`]), with a
    /// growing deadline while this keeps happening.
    NoLocalCandidates {
        /// Gathering timeouts in a row before this gathering.
        timeouts: u32,
    },
    /// The session failed again before it ever connected: the next one starts at `at`, not
    /// at once (rule FAILURE_BACKOFF). Until then the peer is Closed, has no agent and ignores
    /// the remote's descriptions ([`IgnoreReason::BackingOff`](crate::IgnoreReason::BackingOff));
    /// [`Peer::restart`] starts the next session at once.
    RestartDeferred {
        /// Failures in a row (this one included) since the session last connected.
        failures: u32,
        /// When the next session starts.
        at: Instant,
    },
    /// Remote candidates that arrived after the remote's end-of-candidates were dropped
    /// (RFC 8838 §14: "MUST ignore newly received candidates").
    CandidatesAfterEndOfCandidates {
        /// How many.
        count: usize,
    },
}

/// Why the local session restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum RestartCause {
    /// The embedding asked for it.
    Requested,
    /// The agent reported Failed.
    AgentFailed,
    /// The agent closed by itself.
    AgentClosed,
    /// Disconnected lasted longer than [`Config::disconnected_timeout`].
    DisconnectedTimeout,
    /// The agent did not reach Connected within [`Config::checking_timeout`] of `Connect`
    /// (rule CHECKING_TIMEOUT).
    CheckingTimeout,
    /// The agent gathered no local candidate within [`Config::gathering_timeout`] (doubled
    /// per consecutive timeout) of `Gather` (rule GATHERING_TIMEOUT).
    GatheringTimeout,
    /// The remote applied a session of ours that this process never sent: our epoch floor went
    /// back, and the session moved above it (rule EPOCH_CATCH_UP).
    EpochCatchUp {
        /// The newest session of ours the remote had seen.
        seen: SessionRef,
    },
    /// The remote started a newer session (rule RESTART_ON_NEWER_CONFIRMED).
    RemoteRestart {
        /// The remote session we were bound to.
        from: SessionRef,
        /// The remote's new session.
        to: SessionRef,
    },
}

impl RestartCause {
    /// True for the causes that say this session failed (the agent failed or closed, a
    /// Disconnected or checking deadline passed): rule FAILURE_BACKOFF spaces out such restarts
    /// when they repeat. A request of the embedding, a restart of the remote and an epoch
    /// catch-up are not failures; a gathering timeout has its own growing deadline.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            RestartCause::AgentFailed
                | RestartCause::AgentClosed
                | RestartCause::DisconnectedTimeout
                | RestartCause::CheckingTimeout
        )
    }
}

/// The local half of the current session.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LocalSession {
    epoch: u64,
    version: u32,
    credentials: Credentials,
    candidates: Vec<Candidate>,
    end_of_candidates: bool,
    /// The newest of our versions the remote acknowledged.
    acked: Option<u32>,
    remote: Option<RemoteSession>,
}

impl LocalSession {
    /// Its epoch and newest version: the newest `(epoch, version)` this process sent, since
    /// both only grow.
    fn current(&self) -> SessionRef {
        SessionRef {
            epoch: self.epoch,
            version: self.version,
        }
    }
}

/// The remote session the local session is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RemoteSession {
    /// The newest applied version of it.
    session: SessionRef,
    credentials: Credentials,
    candidates: Vec<Candidate>,
    end_of_candidates: bool,
    /// The remote acknowledged our current epoch: it holds our current credentials.
    confirmed: bool,
    /// How many of `candidates` were given to the agent. Candidates are held here, bounded by
    /// [`Config::max_candidates`], until the connect guard holds (rule CANDIDATE_BINDING).
    added: usize,
    /// End-of-candidates was passed to the agent.
    end_told: bool,
}

/// The peer's timers: a closed set, each armed or not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Timers {
    /// Re-send the current description: armed while our newest version is unacknowledged.
    resend: Option<Instant>,
    /// Back-off attempt of the next re-send.
    resend_attempt: u32,
    /// Restart if still Disconnected.
    disconnected: Option<Instant>,
    /// Restart if still Connecting or Checking (rule CHECKING_TIMEOUT).
    checking: Option<Instant>,
    /// Restart if still without a local candidate (rule GATHERING_TIMEOUT).
    gathering: Option<Instant>,
    /// Ask a Connected or Completed agent for its state again (rule REPORT_POLL).
    poll: Option<Instant>,
    /// Start the next session: armed only while a restart is deferred (rule FAILURE_BACKOFF).
    start: Option<Instant>,
}

/// Who a [`Peer`] is and where its sessions start, by name: the arguments of [`Peer::new`]
/// that would be easy to swap as positional ones (two keys, a number and a seed).
#[derive(Clone, Debug)]
pub struct PeerSetup {
    /// Our public key.
    pub local: PublicKey,
    /// The remote peer's public key.
    pub remote: PublicKey,
    /// The first session epoch. It must exceed every epoch this local key has used before, also
    /// in earlier runs of the process (rule EPOCH_ORDER), for example the Unix time in
    /// microseconds at start-up, or a persisted counter. If it does not (the clock stepped back,
    /// a snapshot was restored), the remote's replies tell, and the peer moves its epoch above
    /// on its own (rule EPOCH_CATCH_UP): one extra restart, no outage.
    pub epoch_floor: u64,
    /// Seeds the peer's random stream (ICE credentials and back-off jitter): secret and fresh
    /// for every peer and process (see [`Seed`]).
    pub seed: Seed,
}

impl Peer {
    /// Creates the peer for the session of `setup.local` with `setup.remote`, creates the first
    /// agent and queues the first description (see [`PeerSetup`] for what each field must be).
    /// Equal keys are [`Error::EqualKeys`]; a floor within 2^32 of `u64::MAX` is
    /// [`Error::EpochFloorTooHigh`].
    pub fn new(config: Config, setup: PeerSetup, now: Instant) -> Result<Peer, Error> {
        let PeerSetup {
            local: local_key,
            remote: remote_key,
            epoch_floor,
            seed,
        } = setup;
        let role = Role::from_keys(&local_key, &remote_key).ok_or(Error::EqualKeys)?;
        if epoch_floor >= EPOCH_CEILING {
            return Err(Error::EpochFloorTooHigh(epoch_floor));
        }
        let mut peer = Peer {
            config,
            local_key,
            remote_key,
            role,
            rng: SessionRng::from_seed(seed),
            state: ConnectionState::Unknown,
            shut_down: false,
            next_epoch: epoch_floor,
            session: None,
            newest: None,
            hint_after: None,
            catch_ups: 0,
            catch_up_after: None,
            timers: Timers::default(),
            gathering_timeouts: 0,
            failures: 0,
            parked: None,
            restarts: 0,
            last_now: Some(now),
            send_pending: false,
            queue: VecDeque::new(),
        };
        peer.start_session(now, None)?;
        Ok(peer)
    }

    // ---------------------------------------------------------------------------------------
    // Inputs

    /// Applies a description received from the remote peer.
    ///
    /// Returns what became of it; a stale or duplicate description is `Ok(Ignored(reason))`
    /// and changes nothing (a duplicate still gets the reply it asks for).
    pub fn handle_description(
        &mut self,
        now: Instant,
        d: &Description,
    ) -> Result<Disposition, Error> {
        let now = self.advance(now)?;
        if self.shut_down {
            return Ok(Disposition::Ignored(IgnoreReason::ShutDown));
        }
        self.validate(d)?;
        if let Some(until) = self.timers.start {
            // Rule FAILURE_BACKOFF: no session to bind to until the deferred restart; the
            // remote re-sends what is unacknowledged, and our next session tells it anyway.
            return Ok(Disposition::Ignored(IgnoreReason::BackingOff { until }));
        }
        let mut caught_up = false;
        if self.config.policy == RestartPolicy::Epoch {
            // Every description is checked, stale ones too: a replayed description of a remote
            // process that has since crashed may know more of our old epochs than the remote's
            // current process does.
            let evidence = self
                .session
                .as_ref()
                .and_then(|s| rules::regressed(s.current(), &s.credentials.ufrag, d));
            if let Some(seen) = evidence {
                if self.catch_up_after.is_some_and(|t| now < t) {
                    // A catch-up shortly after the last one: two live processes share our key,
                    // or replays of dead processes name several old epochs. Back off; the
                    // remote re-sends, and the evidence comes back.
                    return Ok(Disposition::Ignored(IgnoreReason::CatchUpDeferred(seen)));
                }
                // The remote holds a session of ours this process never sent: move above it
                // and start one new session, then judge `d` against it.
                self.catch_up(now, seen)?;
                caught_up = true;
            }
        }
        self.validate_ack(d)?;
        let verdict = rules::classify(self.config.policy, self.view(), d.session);
        let result = self.judge(now, d, verdict);
        match result {
            // The catch-up changed the peer: what became of `d` itself does not matter then.
            Ok(Disposition::Ignored(_)) if caught_up => Ok(Disposition::Applied),
            other => other,
        }
    }

    /// Applies a description by its verdict (after EPOCH_CATCH_UP and ACK_FROM_FUTURE).
    fn judge(
        &mut self,
        now: Instant,
        d: &Description,
        verdict: Verdict,
    ) -> Result<Disposition, Error> {
        if matches!(verdict, Verdict::Update | Verdict::Duplicate) && self.reuses_epoch(d) {
            // Rule EPOCH_REUSED: the remote's floor went back and it reuses an epoch with new
            // credentials. Nothing of it is applied; the reply tells the remote what we saw.
            self.hint(now);
            return Ok(Disposition::Ignored(IgnoreReason::EpochReused(d.session)));
        }
        if verdict == Verdict::Update {
            self.validate_update(d)?;
        }
        match verdict {
            Verdict::Stale { newest } => {
                // Rule EPOCH_CATCH_UP: a stale description that asks for a reply may come from a
                // remote whose floor went back; the reply's `seen` tells it (rate-limited).
                if d.need_reply && self.config.policy == RestartPolicy::Epoch {
                    self.hint(now);
                }
                Ok(Disposition::Ignored(IgnoreReason::Stale {
                    got: d.session,
                    newest,
                }))
            }
            Verdict::SeedNotVersionZero => Ok(Disposition::Ignored(
                IgnoreReason::SeedNotVersionZero(d.session),
            )),
            Verdict::Duplicate => {
                self.take_ack(d);
                self.send_pending |= d.need_reply;
                Ok(Disposition::Ignored(IgnoreReason::Duplicate(d.session)))
            }
            Verdict::RemoteRestart => {
                let from = self.bound().map(|(r, _)| r).unwrap_or(d.session);
                self.restart_session(
                    now,
                    RestartCause::RemoteRestart {
                        from,
                        to: d.session,
                    },
                )?;
                // Seed 001: after a restart, "publish new offer" (version 0) and "wait for
                // first offer including candidates from remote". Our rule keeps the trigger.
                if self.config.policy == RestartPolicy::Epoch {
                    self.bind(now, d)?;
                }
                Ok(Disposition::Applied)
            }
            Verdict::Bind | Verdict::Rebind => {
                self.bind(now, d)?;
                Ok(Disposition::Applied)
            }
            Verdict::Update => {
                self.update(d);
                self.progress(now);
                Ok(Disposition::Applied)
            }
        }
    }

    /// Applies an event of the ICE agent `agent`.
    ///
    /// Every report of the live agent has a defined outcome in every state (rule AGENT_REPORTS,
    /// [`state::report_outcome`](crate::state::report_outcome)): it follows an edge, restarts
    /// the session (Failed, Closed) or is `Ignored(AgentReport)`. Events of an agent that was
    /// already closed are `Ignored(StaleAgent)`.
    pub fn handle_agent_event(
        &mut self,
        now: Instant,
        agent: AgentId,
        event: AgentEvent,
    ) -> Result<Disposition, Error> {
        let now = self.advance(now)?;
        if self.shut_down {
            return Ok(Disposition::Ignored(IgnoreReason::ShutDown));
        }
        if Some(agent) != self.agent() {
            return Ok(Disposition::Ignored(IgnoreReason::StaleAgent(agent)));
        }
        let state = self.state;
        let illegal = |event: &'static str| Error::Transition(TransitionError { state, event });
        match event {
            AgentEvent::LocalCandidate(candidate) => {
                if !self.is_gathering() {
                    return Err(illegal("LocalCandidate"));
                }
                let max = self.config.max_candidates;
                let session = self.session_mut();
                if session.end_of_candidates {
                    return Ok(Disposition::Ignored(IgnoreReason::AfterEndOfCandidates));
                }
                if session.candidates.len() >= max {
                    return Ok(Disposition::Ignored(IgnoreReason::TooManyLocalCandidates));
                }
                session.candidates.push(candidate);
                // Rule GATHERING_TIMEOUT: gathering works; the deadline is met and its back-off
                // starts over.
                self.timers.gathering = None;
                self.gathering_timeouts = 0;
                self.publish(now, true);
                self.progress(now);
            }
            AgentEvent::GatheringDone => {
                if !self.is_gathering() {
                    return Err(illegal("GatheringDone"));
                }
                let session = self.session_mut();
                if session.end_of_candidates {
                    return Ok(Disposition::Ignored(IgnoreReason::AfterEndOfCandidates));
                }
                session.end_of_candidates = true;
                let none = session.candidates.is_empty();
                self.publish(now, true);
                if none {
                    // Nothing to connect with: tell the embedding now (its configuration is the
                    // usual cause); GATHERING_TIMEOUT restarts the session at its deadline.
                    self.queue
                        .push_back(Output::Event(Event::NoLocalCandidates {
                            timeouts: self.gathering_timeouts,
                        }));
                }
            }
            AgentEvent::Checking => return self.report(now, Report::Checking),
            AgentEvent::Connected => return self.report(now, Report::Connected),
            AgentEvent::Completed => return self.report(now, Report::Completed),
            AgentEvent::Disconnected => return self.report(now, Report::Disconnected),
            AgentEvent::Failed => return self.report(now, Report::Failed),
            AgentEvent::Closed => return self.report(now, Report::Closed),
        }
        Ok(Disposition::Applied)
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.advance(now).map(|_| ())
    }

    /// Replaces the current session with a new one (new agent, new credentials, new epoch).
    pub fn restart(&mut self, now: Instant) -> Result<(), Error> {
        let now = self.advance(now)?;
        if self.shut_down {
            return Err(Error::ShutDown);
        }
        self.restart_session(now, RestartCause::Requested)
    }

    /// Shuts the peer down for good: the agent is closed and no agent is ever created again.
    /// Closing twice is a no-op.
    pub fn close(&mut self, now: Instant) -> Result<(), Error> {
        self.advance(now)?;
        if self.shut_down {
            return Ok(());
        }
        let agent = self.agent().or(self.parked.take());
        if self.state != ConnectionState::Closed {
            // Closed (a deferred restart, rule FAILURE_BACKOFF) already is the final state.
            self.set_state(Trigger::Shutdown)?;
        }
        if let Some(agent) = agent {
            self.queue
                .push_back(Output::Agent(AgentCommand::Close { agent }));
        }
        self.shut_down = true;
        self.session = None;
        self.timers = Timers::default();
        self.send_pending = false;
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Outputs

    /// The next piece of work, or `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(out) = self.queue.pop_front() {
            return Some(out);
        }
        if std::mem::take(&mut self.send_pending) {
            return self.description().map(Output::Send);
        }
        None
    }

    /// When [`handle_timeout`](Peer::handle_timeout) should be called next, or `None` if no
    /// timer is armed. Always later than the latest `now` given.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.resend,
            self.timers.disconnected,
            self.timers.checking,
            self.timers.gathering,
            self.timers.poll,
            self.timers.start,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---------------------------------------------------------------------------------------
    // Observers

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Our ICE role towards this remote.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Our public key.
    pub fn local_key(&self) -> PublicKey {
        self.local_key
    }

    /// The remote's public key.
    pub fn remote_key(&self) -> PublicKey {
        self.remote_key
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current agent, if one is live.
    pub fn agent(&self) -> Option<AgentId> {
        self.session.as_ref().map(|s| AgentId(s.epoch))
    }

    /// Our current session and its newest version.
    pub fn local_session(&self) -> Option<SessionRef> {
        self.session.as_ref().map(LocalSession::current)
    }

    /// Our current credentials.
    pub fn local_credentials(&self) -> Option<&Credentials> {
        self.session.as_ref().map(|s| &s.credentials)
    }

    /// The remote session we are bound to (its newest applied version).
    pub fn remote_session(&self) -> Option<SessionRef> {
        self.bound().map(|(r, _)| r)
    }

    /// The credentials of the remote session we are bound to.
    pub fn remote_credentials(&self) -> Option<&Credentials> {
        self.remote().map(|r| &r.credentials)
    }

    /// True if the remote acknowledged our current session.
    pub fn is_confirmed(&self) -> bool {
        self.bound().is_some_and(|(_, c)| c)
    }

    /// The newest remote `(epoch, version)` ever applied (never goes back).
    pub fn newest_applied(&self) -> Option<SessionRef> {
        self.newest.as_ref().map(|s| s.session)
    }

    /// How many remote candidates were passed to the current agent.
    pub fn remote_candidates_added(&self) -> usize {
        self.remote().map_or(0, |r| r.added)
    }

    /// Our local candidates of the current session.
    pub fn local_candidates(&self) -> &[Candidate] {
        self.session.as_ref().map_or(&[], |s| &s.candidates)
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// True after [`close`](Peer::close).
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// The description of our current session, as it would be sent now.
    pub fn description(&self) -> Option<Description> {
        let s = self.session.as_ref()?;
        Some(Description {
            session: s.current(),
            ack: s.remote.as_ref().map(|r| r.session),
            need_reply: s.acked != Some(s.version),
            credentials: s.credentials.clone(),
            candidates: s.candidates.clone(),
            end_of_candidates: s.end_of_candidates,
            seen: self.newest.clone(),
        })
    }

    // ---------------------------------------------------------------------------------------
    // Internals

    /// Checks the clock and fires due timers; returns the `now` the input is applied at.
    fn advance(&mut self, now: Instant) -> Result<Instant, Error> {
        let now = late_input(self.last_now, now, self.config.max_input_lag)?;
        self.last_now = Some(now);
        // Rate limits that have passed are forgotten, so that equal histories give equal peers.
        take_due(&mut self.hint_after, now);
        take_due(&mut self.catch_up_after, now);
        if take_due(&mut self.timers.disconnected, now)
            && self.state == ConnectionState::Disconnected
        {
            self.restart_session(now, RestartCause::DisconnectedTimeout)?;
        }
        if take_due(&mut self.timers.checking, now) {
            // Rule CHECKING_TIMEOUT: a lost or refused agent report must not leave the peer
            // waiting in Connecting or Checking forever (agents never repeat a report).
            if matches!(
                self.state,
                ConnectionState::Connecting | ConnectionState::Checking
            ) {
                self.restart_session(now, RestartCause::CheckingTimeout)?;
            }
        }
        if take_due(&mut self.timers.gathering, now) && self.local_candidates().is_empty() {
            // Rule GATHERING_TIMEOUT: an agent that gathers nothing reports nothing more, and
            // the connect guard waits for a local candidate: without a deadline both peers sit
            // in New for good. A new session gets a new agent (and the remote a new session,
            // which restarts its side too); the deadline grows while gathering keeps failing,
            // so a host without a usable interface restarts rarely rather than in a loop.
            self.gathering_timeouts = self.gathering_timeouts.saturating_add(1);
            self.restart_session(now, RestartCause::GatheringTimeout)?;
        }
        if take_due(&mut self.timers.poll, now) {
            // Rule REPORT_POLL: a Connected or Completed peer waits for its agent's reports
            // with no deadline; a lost Failed report (agents never repeat one) would leave it
            // there over a dead agent. Ask again; a repeat is ignored (AGENT_REPORTS).
            if self.state.is_connected() {
                if let Some(agent) = self.agent() {
                    self.queue
                        .push_back(Output::Agent(AgentCommand::ReportState { agent }));
                    self.timers.poll = after(now, self.config.report_poll_interval);
                }
            }
        }
        if take_due(&mut self.timers.start, now) {
            // Rule FAILURE_BACKOFF: the deferred restart is due.
            let parked = self.parked.take();
            self.start_session(now, parked)?;
        }
        if self.timers.resend.is_some_and(|t| t <= now) {
            // Rule RESEND_UNACKED: re-send the newest description with back-off until the
            // remote acknowledges it. cunicu re-sends only while Idle, so a lost candidate
            // message stalls until ICE fails 30 s later; a lost reply deadlocks (B2).
            self.timers.resend_attempt = self.timers.resend_attempt.saturating_add(1);
            let delay = self
                .config
                .backoff
                .interval(self.timers.resend_attempt, &mut self.rng);
            self.timers.resend = now.checked_add(delay);
            self.send_pending = true;
        }
        Ok(now)
    }

    /// Applies one agent report (rule AGENT_REPORTS).
    fn report(&mut self, now: Instant, report: Report) -> Result<Disposition, Error> {
        let state = self.state;
        match report_outcome(state, report) {
            ReportOutcome::Ignored => Ok(Disposition::Ignored(IgnoreReason::AgentReport {
                report,
                state,
            })),
            ReportOutcome::Restart => {
                let cause = if report == Report::Closed {
                    RestartCause::AgentClosed
                } else {
                    RestartCause::AgentFailed
                };
                self.restart_session(now, cause)?;
                Ok(Disposition::Applied)
            }
            ReportOutcome::Edge(trigger) => {
                self.set_state(trigger)?;
                match self.state {
                    ConnectionState::Connected | ConnectionState::Completed => {
                        // Rule FAILURE_BACKOFF: the session works; the next failure restarts
                        // at once again.
                        self.failures = 0;
                        self.timers.disconnected = None;
                        self.timers.checking = None;
                        if self.timers.poll.is_none() {
                            self.timers.poll = after(now, self.config.report_poll_interval);
                        }
                    }
                    ConnectionState::Disconnected => {
                        self.timers.poll = None;
                        self.timers.disconnected = after(now, self.config.disconnected_timeout);
                    }
                    // Failed (from Connecting, Checking, Connected, Completed) or Closed (from
                    // Disconnected): the session is replaced (seed 000: "Failed --> Closed -->
                    // Idle").
                    ConnectionState::Failed | ConnectionState::Closed => {
                        self.restart_session(now, RestartCause::AgentFailed)?;
                    }
                    _ => {}
                }
                Ok(Disposition::Applied)
            }
        }
    }

    /// Rule EPOCH_CATCH_UP: our floor went back; the next epoch moves strictly above what the
    /// remote has seen, and exactly one new session starts.
    fn catch_up(&mut self, now: Instant, seen: SessionRef) -> Result<(), Error> {
        if seen.epoch >= EPOCH_CEILING {
            // No honest floor gets here (Unix time in µs is about 2^51); moving there would
            // leave no room for further sessions.
            let current = self.local_session().unwrap_or(seen);
            return Err(DescriptionError::AckFromFuture { ack: seen, current }.into());
        }
        // `seen.epoch < EPOCH_CEILING`: the sum cannot overflow, and the result, at most the
        // ceiling, is still above `seen.epoch`.
        let above = (seen.epoch + CATCH_UP_MARGIN).min(EPOCH_CEILING);
        self.next_epoch = self.next_epoch.max(above);
        // Back off further catch-ups (growing like the re-send back-off, capped): a second
        // process with our key would otherwise take the epoch back every round trip.
        let wait = self.config.backoff.nominal(self.catch_ups);
        self.catch_ups = self.catch_ups.saturating_add(1);
        self.catch_up_after = after(now, wait.max(HINT_INTERVAL));
        self.restart_session(now, RestartCause::EpochCatchUp { seen })
    }

    /// Queues our description as a reply to a stale or reused-epoch description, at most once
    /// per [`HINT_INTERVAL`] (so that replays cannot amplify).
    fn hint(&mut self, now: Instant) {
        if self.hint_after.is_some_and(|t| now < t) {
            return;
        }
        self.send_pending = true;
        self.hint_after = after(now, HINT_INTERVAL);
    }

    /// True if `d` names the newest applied session (or the bound one) with other credentials.
    fn reuses_epoch(&self, d: &Description) -> bool {
        let bound = self
            .remote()
            .filter(|r| r.session.epoch == d.session.epoch)
            .map(|r| &r.credentials.ufrag);
        let newest = self
            .newest
            .as_ref()
            .filter(|n| n.session.epoch == d.session.epoch)
            .map(|n| &n.ufrag);
        bound.or(newest).is_some_and(|u| *u != d.credentials.ufrag)
    }

    /// Shape checks that need no state: a description failing them is never applied.
    fn validate(&self, d: &Description) -> Result<(), DescriptionError> {
        if !d.credentials.is_well_formed() {
            return Err(DescriptionError::BadCredentials);
        }
        if d.candidates.len() > self.config.max_candidates {
            return Err(DescriptionError::TooManyCandidates {
                count: d.candidates.len(),
                max: self.config.max_candidates,
            });
        }
        Ok(())
    }

    /// Rule ACK_FROM_FUTURE: nobody can have applied a session or version we never sent. After
    /// EPOCH_CATCH_UP this only refuses the seed policy's descriptions and an epoch at the end
    /// of the range.
    fn validate_ack(&self, d: &Description) -> Result<(), DescriptionError> {
        let Some(current) = self.local_session() else {
            // Unreachable: a live peer always has a session; nothing to compare against.
            return Ok(());
        };
        match d.ack {
            Some(ack) if ack > current => Err(DescriptionError::AckFromFuture { ack, current }),
            _ => Ok(()),
        }
    }

    /// A newer version of the bound session must extend it, never rewrite it.
    fn validate_update(&self, d: &Description) -> Result<(), DescriptionError> {
        let r = self
            .remote()
            .expect("Update is only judged for a bound session");
        if !d.candidates.starts_with(&r.candidates) {
            return Err(DescriptionError::CandidatesRewritten);
        }
        if r.end_of_candidates && !d.end_of_candidates {
            return Err(DescriptionError::EndOfCandidatesWithdrawn);
        }
        Ok(())
    }

    fn view(&self) -> View {
        View {
            newest_applied: self.newest_applied(),
            bound: self.bound(),
        }
    }

    fn bound(&self) -> Option<(SessionRef, bool)> {
        self.remote().map(|r| (r.session, r.confirmed))
    }

    fn remote(&self) -> Option<&RemoteSession> {
        self.session.as_ref()?.remote.as_ref()
    }

    fn session_mut(&mut self) -> &mut LocalSession {
        // Inputs reach here only after the shut-down check, and a live peer always has a
        // session (start_session runs in `new` and at the end of every restart).
        self.session
            .as_mut()
            .expect("a live peer always has a session")
    }

    /// Local candidates are taken from every state with a live agent: from New on they answer
    /// `Gather`; in Idle they come from agents that gather on creation (libwebrtc's candidate
    /// pool, pion with pre-gathering).
    fn is_gathering(&self) -> bool {
        use ConnectionState::*;
        matches!(
            self.state,
            Idle | New | Connecting | Checking | Connected | Completed | Disconnected
        )
    }

    /// Rules BIND / REBIND_UNCONFIRMED: accept `d`'s session as the remote of the current
    /// local session.
    fn bind(&mut self, now: Instant, d: &Description) -> Result<(), Error> {
        let policy = self.config.policy;
        let session = self.session_mut();
        session.remote = Some(RemoteSession {
            session: d.session,
            credentials: d.credentials.clone(),
            candidates: d.candidates.clone(),
            end_of_candidates: d.end_of_candidates,
            // Seed 001 has no acknowledgement: its peers connect as soon as they can.
            confirmed: policy == RestartPolicy::Seed,
            added: 0,
            end_told: false,
        });
        self.record_applied(d);
        self.take_ack(d);
        // Our description now acknowledges another remote session: a new version.
        self.publish(now, true);
        if self.state == ConnectionState::Idle {
            let agent = self.agent().expect("a live peer always has a session");
            self.set_state(Trigger::RemoteCredentials)?;
            self.queue
                .push_back(Output::Agent(AgentCommand::Gather { agent }));
            if self.local_candidates().is_empty() {
                // Rule GATHERING_TIMEOUT (agents that gather on creation may have delivered
                // candidates already).
                let doublings = self.gathering_timeouts.min(MAX_GATHERING_DOUBLINGS);
                let deadline = self.config.gathering_timeout.saturating_mul(1 << doublings);
                self.timers.gathering = after(now, deadline);
            }
        }
        self.progress(now);
        Ok(())
    }

    /// Rule UPDATE: apply a newer version of the bound remote session.
    fn update(&mut self, d: &Description) {
        let session = self.session_mut();
        let r = session
            .remote
            .as_mut()
            .expect("Update is only judged for a bound session");
        let mut dropped = 0;
        if r.end_of_candidates {
            // Rule END_OF_CANDIDATES: after end-of-candidates, further candidates of that
            // session are ignored (RFC 8838 §14).
            dropped = d.candidates.len() - r.candidates.len();
        } else {
            // validate_update checked that `d.candidates` extends `r.candidates`.
            let known = r.candidates.len();
            r.candidates.extend_from_slice(&d.candidates[known..]);
            r.end_of_candidates = d.end_of_candidates;
        }
        r.session = d.session;
        self.record_applied(d);
        self.take_ack(d);
        self.send_pending |= d.need_reply;
        if dropped > 0 {
            self.queue
                .push_back(Output::Event(Event::CandidatesAfterEndOfCandidates {
                    count: dropped,
                }));
        }
    }

    /// `d` is the newest remote description applied (BIND, UPDATE). An update keeps its
    /// session's credentials, so the stored ufrag is usually this one already: no allocation.
    fn record_applied(&mut self, d: &Description) {
        match &mut self.newest {
            Some(n) if n.ufrag == d.credentials.ufrag => n.session = d.session,
            newest => {
                *newest = Some(Seen {
                    session: d.session,
                    ufrag: d.credentials.ufrag.clone(),
                })
            }
        }
    }

    /// Processes the acknowledgement piggybacked on a description of the bound session: it
    /// confirms the binding and stops re-sends once our newest version is acknowledged.
    fn take_ack(&mut self, d: &Description) {
        let session = self.session_mut();
        let Some(ack) = d.ack.filter(|a| a.epoch == session.epoch) else {
            return;
        };
        session.acked = session.acked.max(Some(ack.version));
        if let Some(r) = session.remote.as_mut() {
            if r.session.epoch == d.session.epoch {
                r.confirmed = true;
            }
        }
        if session.acked == Some(session.version) {
            self.timers.resend = None;
            self.timers.resend_attempt = 0;
        }
    }

    /// Drives the agent after any change: the connect guard, then trickling remote candidates
    /// and end-of-candidates to a connecting or connected agent.
    fn progress(&mut self, now: Instant) {
        let state = self.state;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let agent = AgentId(session.epoch);
        let local = session.candidates.len();
        let Some(r) = session.remote.as_mut() else {
            return;
        };
        let connect = state == ConnectionState::New
            && rules::connect_guard(r.confirmed, local, r.candidates.len());
        // Rule CANDIDATE_BINDING: only the bound, confirmed session's candidates ever reach
        // the agent, and only once it connects; earlier they are held in `r.candidates`.
        if connect || (r.added > 0 && state.has_agent()) {
            for candidate in &r.candidates[r.added..] {
                self.queue
                    .push_back(Output::Agent(AgentCommand::AddRemoteCandidate {
                        agent,
                        candidate: candidate.clone(),
                    }));
            }
            r.added = r.candidates.len();
        }
        if connect {
            self.queue.push_back(Output::Agent(AgentCommand::Connect {
                agent,
                remote: r.credentials.clone(),
            }));
        }
        if r.added > 0 && r.end_of_candidates && !r.end_told {
            r.end_told = true;
            self.queue
                .push_back(Output::Agent(AgentCommand::EndOfRemoteCandidates { agent }));
        }
        if connect {
            // The guard checked the state is New, which has a Connect edge.
            let _ = self.set_state(Trigger::Connect);
            self.timers.checking = after(now, self.config.checking_timeout);
        }
    }

    /// Queues the current description and (re)arms the re-send timer from the first attempt.
    fn publish(&mut self, now: Instant, bump: bool) {
        let session = self.session_mut();
        if bump {
            session.version = session.version.saturating_add(1);
        }
        let unacked = session.acked != Some(session.version);
        self.send_pending = true;
        self.timers.resend_attempt = 0;
        self.timers.resend = if unacked {
            now.checked_add(self.config.backoff.interval(0, &mut self.rng))
        } else {
            None
        };
    }

    /// The only place the state changes: along an edge of the transition table.
    fn set_state(&mut self, trigger: Trigger) -> Result<(), Error> {
        let from = self.state;
        let to = transition(from, trigger).ok_or(TransitionError {
            state: from,
            event: "internal",
        })?;
        self.state = to;
        if from != to {
            self.queue
                .push_back(Output::Event(Event::StateChanged { from, to, trigger }));
        }
        Ok(())
    }

    /// Rule NEW_SESSION: a new epoch, fresh credentials and a new agent, announced at once.
    ///
    /// `restart_in_place` names the live agent to restart in place instead of creating one
    /// (rule AGENT_RESTART).
    fn start_session(
        &mut self,
        now: Instant,
        restart_in_place: Option<AgentId>,
    ) -> Result<(), Error> {
        // Rule NO_AGENT_AFTER_CLOSE (cunicu B5): a shut-down peer never creates an agent, and
        // the previous agent was closed before (commands are carried out in order).
        if self.shut_down {
            return Err(Error::ShutDown);
        }
        let epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.saturating_add(1);
        let credentials = Credentials::generate(&mut self.rng);
        self.set_state(Trigger::CreateAgent)?;
        let command = match restart_in_place {
            Some(agent) => AgentCommand::Restart {
                agent,
                new: AgentId(epoch),
                credentials: credentials.clone(),
            },
            None => AgentCommand::Create {
                agent: AgentId(epoch),
                credentials: credentials.clone(),
                role: self.role,
            },
        };
        self.queue.push_back(Output::Agent(command));
        self.session = Some(LocalSession {
            epoch,
            version: 0,
            credentials,
            candidates: Vec::new(),
            end_of_candidates: false,
            acked: None,
            remote: None,
        });
        self.publish(now, false);
        Ok(())
    }

    /// Closes the current session (if not already Closed) and starts a new one.
    fn restart_session(&mut self, now: Instant, cause: RestartCause) -> Result<(), Error> {
        if self.state != ConnectionState::Closed {
            self.set_state(Trigger::Restart)?;
        }
        // Rule AGENT_RESTART: with in-place restarts the live agent takes the new session's
        // credentials and keeps its sockets; an agent that reported Closed is gone and is
        // created again, like every agent in the default mode.
        let in_place = self.config.agent_restart == AgentRestart::InPlace
            && cause != RestartCause::AgentClosed;
        let mut reuse = None;
        // A deferred restart (rule FAILURE_BACKOFF) may have parked the live agent.
        if let Some(agent) = self.agent().or(self.parked.take()) {
            if in_place {
                reuse = Some(agent);
            } else {
                self.queue
                    .push_back(Output::Agent(AgentCommand::Close { agent }));
            }
        }
        self.session = None;
        self.timers = Timers::default();
        self.restarts = self.restarts.saturating_add(1);
        self.queue.push_back(Output::Event(Event::Restarted {
            cause,
            restarts: self.restarts,
        }));
        if cause.is_failure() {
            self.failures = self.failures.saturating_add(1);
            // Rule FAILURE_BACKOFF: the first failure since the session last connected restarts
            // at once (a network change must heal fast); each further one waits a jittered,
            // growing interval (the re-send back-off, attempt `failures - 2`). Without it an
            // agent that fails at once (a broken interface, a remote it cannot reach) restarts
            // both sides at the speed of the signaling backend, and under overload the
            // restarts' messages and gatherings feed the overload (issue 16's cascade). The
            // jitter keeps the peers of an overloaded node from coming back in step.
            if self.failures >= 2 {
                let delay = self
                    .config
                    .backoff
                    .interval(self.failures - 2, &mut self.rng);
                if let Some(at) = after(now, delay) {
                    self.timers.start = Some(at);
                    self.parked = reuse;
                    self.queue.push_back(Output::Event(Event::RestartDeferred {
                        failures: self.failures,
                        at,
                    }));
                    return Ok(());
                }
            }
        }
        self.start_session(now, reuse)
    }
}
