//! [`Endpoint`]: every session of one local key, behind the inbound checks, in sans-IO style.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::agent::{AgentCommand, AgentEvent, AgentId};
use crate::config::Config;
use crate::description::{Description, SessionRef};
use crate::error::{Disposition, Error, IgnoreReason};
use crate::guard::{nonce_of, InboundLimits, PeerStats, ReplayCache, TokenBucket};
use crate::keys::PublicKey;
use crate::peer::{late_input, Event, Output, Peer, PeerSetup};
use crate::rng::Seed;
use crate::wire::{self, Channel, Header, Limits, Nonce, SecretKey};

/// Configuration of an [`Endpoint`]: the configuration of every session and the limits on what
/// each remote may send. Start from [`EndpointConfig::default`] and set the fields you need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct EndpointConfig {
    /// Configuration of each session's [`Peer`].
    pub peer: Config,
    /// Limits applied to envelopes from each remote before they are opened.
    pub limits: InboundLimits,
    /// Rule ADMISSION: how many sessions may be establishing at once (gathering and checking,
    /// until each first connects); the others wait their turn. Default 16; 0: no limit.
    pub max_establishing: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            peer: Config::default(),
            limits: InboundLimits::default(),
            max_establishing: DEFAULT_MAX_ESTABLISHING,
        }
    }
}

/// The default of [`EndpointConfig::max_establishing`]: enough for a small mesh to start at
/// once, few enough that a node with hundreds of peers (or a process running a whole mesh)
/// is not buried under their connectivity checks (`icepact-sim load`, docs/SIMULATOR.md).
pub const DEFAULT_MAX_ESTABLISHING: usize = 16;

/// Rule ADMISSION: a slot taken by a session that did not connect is given back after this
/// long (a remote that never answers must not hold a slot for ever; the session goes on).
pub const ADMISSION_TIMEOUT: Duration = Duration::from_secs(60);

/// Descriptions a waiting session holds (the newest; the session discards stale ones).
const HELD: usize = 4;

/// A sealed envelope to publish on the signaling backend, polled from
/// [`Endpoint::poll_transmit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The recipient.
    pub to: PublicKey,
    /// The sealed envelope.
    pub envelope: Vec<u8>,
}

/// Work the embedding must carry out, polled from [`Endpoint::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointOutput {
    /// Pass this command to the ICE agent of the session with `remote`.
    Agent {
        /// The remote peer.
        remote: PublicKey,
        /// The command.
        command: AgentCommand,
    },
    /// Something happened in the session with `remote`.
    Event {
        /// The remote peer.
        remote: PublicKey,
        /// What happened.
        event: Event,
    },
}

/// Why an envelope was refused before it reached a session. Every refusal is also counted in
/// the [`PeerStats`] of the claimed sender (or in [`Endpoint::unrouted`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Larger than [`InboundLimits::max_envelope_len`].
    #[error("envelope larger than the limit")]
    Oversized,
    /// Not a well-formed envelope or body.
    #[error("malformed envelope: {0}")]
    Garbage(wire::Error),
    /// Addressed to another key.
    #[error("envelope addressed to another key")]
    NotForUs,
    /// From a key that has no session here.
    #[error("no session with the sender {0:?}")]
    UnknownSender(PublicKey),
    /// The sender exceeded its rate limit.
    #[error("rate limit exceeded")]
    RateLimited,
    /// A nonce seen before: a replayed or duplicated envelope.
    #[error("replayed envelope")]
    Replayed,
    /// The box did not open, or its sealed keys contradict the envelope (wrong key, forged,
    /// reflected).
    #[error("envelope does not authenticate: {0}")]
    WrongKey(wire::Error),
    /// Opened, and refused by the session as breaking the protocol.
    #[error("description refused: {0}")]
    Rejected(Error),
}

/// Errors of the [`Endpoint`]'s commands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// No session with this key.
    #[error("no session with {0:?}")]
    UnknownPeer(PublicKey),
    /// A session with this key exists already.
    #[error("a session with {0:?} exists already")]
    PeerExists(PublicKey),
    /// The remote's key is not a usable X25519 key, or equals ours.
    #[error(transparent)]
    Key(#[from] wire::Error),
    /// The session refused the input.
    #[error(transparent)]
    Peer(#[from] Error),
}

/// One session and its inbound guard.
#[derive(Clone, Debug)]
struct Session {
    peer: Peer,
    channel: Channel,
    stats: PeerStats,
    limiter: TokenBucket,
    replay: ReplayCache,
    /// Rule ADMISSION: the remote's descriptions are applied (always, without a limit).
    admitted: bool,
    /// The session has been connected (its admission slot, if any, is given back).
    connected_once: bool,
    /// Descriptions received while waiting for admission, oldest first.
    held: VecDeque<Description>,
    /// The session and version of the last description sent (rule ADMISSION_QUIET).
    last_sent: Option<SessionRef>,
    /// Rule ADMISSION: the remote, which controls this session, sent a session of its own
    /// again without acknowledging ours: it lacks our description and cannot go on without
    /// our answer.
    nudged: bool,
    /// The session's next timer as last seen (its entry in `Endpoint::timers`).
    timer: Option<Instant>,
}

/// Every session of one local key: a [`Peer`] per remote, created and removed at any time,
/// behind the checks every envelope passes before it is opened.
///
/// # Contract
///
/// The same as [`Peer`]'s, for many peers at once. *Inputs*:
/// - [`handle_envelope`](Endpoint::handle_envelope): bytes from the signaling backend. The
///   envelope is routed by its sender key and checked, in order, for size, the sender's rate
///   limit, a replayed nonce and authentication, before the description reaches the session;
///   a refusal is a typed [`Refusal`], counted, and changes no session;
/// - [`handle_agent_event`](Endpoint::handle_agent_event): a report of the ICE agent of one
///   session;
/// - [`handle_timeout`](Endpoint::handle_timeout): time has passed;
/// - [`add_peer`](Endpoint::add_peer), [`remove_peer`](Endpoint::remove_peer),
///   [`restart`](Endpoint::restart): commands of the embedding, at any time.
///
/// *Outputs*: after every input, drain [`poll_output`](Endpoint::poll_output) (agent commands
/// and events, each naming its remote) and carry them out, feed what the agents report back,
/// and when that settles drain [`poll_transmit`](Endpoint::poll_transmit) (sealed envelopes to
/// publish); then call [`handle_timeout`](Endpoint::handle_timeout) at
/// [`poll_timeout`](Endpoint::poll_timeout).
///
/// At most [`EndpointConfig::max_establishing`] sessions gather and check at once (rule
/// ADMISSION): the others hold their remote's descriptions (the envelope's disposition is
/// `Ignored(Waiting)`) and are admitted in turn; [`admission`](Endpoint::admission) tells how
/// many establish and how many wait.
///
/// Envelopes wait for [`poll_transmit`](Endpoint::poll_transmit) one per remote: a newer
/// description for the same remote replaces one not yet polled (rule SUPERSEDED_SEND). An
/// embedding that feeds the agents' immediate reports (a candidate, the end of gathering)
/// before polling envelopes sends one description where it would send three.
///
/// The endpoint reads no clock and no global RNG: envelope nonces and the sessions' seeds come
/// from the [`Seed`] given to [`Endpoint::new`]. It is deliberately not `Clone`: two copies
/// would seal with the same nonces under the same keys.
#[derive(Debug)]
pub struct Endpoint {
    secret: SecretKey,
    local: PublicKey,
    config: EndpointConfig,
    sessions: BTreeMap<PublicKey, Session>,
    unrouted: PeerStats,
    /// The seeds of new sessions.
    rng: ChaCha20Rng,
    /// Envelope nonces (a stream of their own: how many envelopes were sealed changes nothing
    /// else, so the model checker can leave it out of what it compares).
    nonces: ChaCha20Rng,
    /// The epoch floor of the next session: above every epoch a removed session used, so that a
    /// remote removed and added again starts above its old epochs (rule EPOCH_ORDER).
    next_floor: u64,
    queue: VecDeque<EndpointOutput>,
    /// The newest description for each remote, not yet polled (rule SUPERSEDED_SEND); sealed
    /// when polled, so a superseded one costs no encryption.
    transmits: BTreeMap<PublicKey, Pending>,
    /// The latest `now` a session took: a late input is taken at it by every session (rule
    /// LATE_INPUT across the endpoint), so that no session arms a timer before a `now` the
    /// endpoint was given, even one whose own clock is behind (it had nothing due).
    latest: Option<Instant>,
    /// Every session's next timer, earliest first: `poll_timeout` and `handle_timeout` cost
    /// O(log n), not O(n), with hundreds of sessions (updated by `drain`, which follows every
    /// input to a session).
    timers: BTreeSet<(Instant, PublicKey)>,
    /// Rule ADMISSION: sessions establishing in a slot, with when they were admitted.
    slots: BTreeMap<PublicKey, Instant>,
    /// Rule ADMISSION: sessions holding descriptions and waiting for a slot, in arrival order.
    waiting: VecDeque<PublicKey>,
}

impl Endpoint {
    /// An endpoint with no sessions for the key pair of `secret`.
    ///
    /// `epoch_floor` is the first epoch of every session, with the contract of
    /// [`Peer::new`]: above every epoch this key used before (the Unix time in microseconds at
    /// start-up is the usual choice). `seed` must be secret and fresh (see [`Seed`]).
    pub fn new(config: EndpointConfig, secret: SecretKey, epoch_floor: u64, seed: Seed) -> Self {
        let rng = ChaCha20Rng::from_seed(seed.to_bytes());
        let mut nonces = rng.clone();
        nonces.set_stream(1);
        Endpoint {
            local: secret.public_key(),
            secret,
            config,
            sessions: BTreeMap::new(),
            unrouted: PeerStats::default(),
            rng,
            nonces,
            next_floor: epoch_floor,
            queue: VecDeque::new(),
            transmits: BTreeMap::new(),
            latest: None,
            timers: BTreeSet::new(),
            slots: BTreeMap::new(),
            waiting: VecDeque::new(),
        }
    }

    /// A copy for the model checker, which keeps every state it explores and seals nothing
    /// (see [`handle_description`](Endpoint::handle_description)). Not for embeddings: two
    /// copies that both seal would use the same nonces under the same keys.
    #[doc(hidden)]
    pub fn clone_for_model(&self) -> Endpoint {
        Endpoint {
            secret: self.secret.clone(),
            local: self.local,
            config: self.config,
            sessions: self.sessions.clone(),
            unrouted: self.unrouted,
            rng: self.rng.clone(),
            nonces: self.nonces.clone(),
            next_floor: self.next_floor,
            queue: self.queue.clone(),
            transmits: self.transmits.clone(),
            latest: self.latest,
            timers: self.timers.clone(),
            slots: self.slots.clone(),
            waiting: self.waiting.clone(),
        }
    }

    /// Our public key.
    pub fn local_key(&self) -> PublicKey {
        self.local
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Starts a session with `remote`: its first agent command and description are queued.
    pub fn add_peer(&mut self, now: Instant, remote: PublicKey) -> Result<(), EndpointError> {
        if self.sessions.contains_key(&remote) {
            return Err(EndpointError::PeerExists(remote));
        }
        let now = self.clock(now)?;
        let limits = Limits {
            max_envelope_len: self.config.limits.max_envelope_len,
            max_candidates: self.config.peer.max_candidates,
        };
        let channel = Channel::between(&self.secret, self.local, remote)?.with_limits(limits);
        let seed = Seed::from_rng(&mut self.rng);
        let peer = Peer::new(
            self.config.peer,
            PeerSetup {
                local: self.local,
                remote,
                epoch_floor: self.next_floor,
                seed,
            },
            now,
        )?;
        self.tick(now);
        self.sessions.insert(
            remote,
            Session {
                peer,
                channel,
                stats: PeerStats::default(),
                limiter: TokenBucket::for_limits(&self.config.limits, now),
                replay: ReplayCache::new(self.config.limits.replay_window),
                admitted: self.config.max_establishing == 0,
                connected_once: false,
                held: VecDeque::new(),
                last_sent: None,
                nudged: false,
                timer: None,
            },
        );
        self.drain(remote);
        Ok(())
    }

    /// Ends the session with `remote`: its agent's `Close` is queued, and envelopes from
    /// `remote` are refused from now on. A session added again later starts above every epoch
    /// this one used.
    pub fn remove_peer(&mut self, now: Instant, remote: PublicKey) -> Result<(), EndpointError> {
        let now = self.clock(now)?;
        let session = self
            .sessions
            .get_mut(&remote)
            .ok_or(EndpointError::UnknownPeer(remote))?;
        let used = session.peer.local_session().map(|s| s.epoch);
        session.peer.close(now)?;
        self.tick(now);
        self.drain(remote);
        if let Some(mut s) = self.sessions.remove(&remote) {
            if let Some(t) = s.timer {
                self.timers.remove(&(t, remote));
            }
            // What it wanted to send still goes out, sealed while the channel exists.
            if let Some(Pending::Open(d)) = self.transmits.remove(&remote) {
                if let Some(envelope) = s.seal(&d, &mut self.nonces) {
                    self.transmits.insert(remote, Pending::Sealed(d, envelope));
                }
            }
        }
        self.slots.remove(&remote);
        self.waiting.retain(|k| *k != remote);
        if let Some(epoch) = used {
            self.next_floor = self.next_floor.max(epoch.saturating_add(1));
        }
        self.admit(now);
        Ok(())
    }

    /// Restarts the session with `remote` (new epoch, credentials and agent).
    pub fn restart(&mut self, now: Instant, remote: PublicKey) -> Result<(), EndpointError> {
        let now = self.clock(now)?;
        let session = self.session_mut(remote)?;
        session.peer.restart(now)?;
        self.tick(now);
        self.drain(remote);
        Ok(())
    }

    /// Checks, opens and applies an envelope from the signaling backend.
    pub fn handle_envelope(
        &mut self,
        now: Instant,
        envelope: &[u8],
    ) -> Result<Disposition, Refusal> {
        let header = match Header::peek(envelope, &Limits::default()) {
            Ok(h) => h,
            Err(wire::Error::TooLarge { .. }) => {
                self.unrouted.oversized += 1;
                return Err(Refusal::Oversized);
            }
            Err(e) => {
                self.unrouted.garbage += 1;
                return Err(Refusal::Garbage(e));
            }
        };
        if header.recipient != self.local {
            self.unrouted.misrouted += 1;
            return Err(Refusal::NotForUs);
        }
        let (now, session) = self.route(now, header.sender)?;
        let result = session
            .open(now, envelope)
            .and_then(|d| session.take(now, &d));
        self.settle(now, header.sender, result)
    }

    /// Applies a description from `from` as if it had arrived in an envelope that passed every
    /// check: the same session logic as [`handle_envelope`](Endpoint::handle_envelope) without
    /// the box, for the model checker (`icepact-models`), which explores the sessions' rules
    /// and leaves the cryptography to the tests and the fuzzers. Not for embeddings: the
    /// inbound checks are what make an untrusted backend safe.
    #[doc(hidden)]
    pub fn handle_description(
        &mut self,
        now: Instant,
        from: PublicKey,
        description: &Description,
    ) -> Result<Disposition, Refusal> {
        let (now, session) = self.route(now, from)?;
        let result = session.take(now, description);
        self.settle(now, from, result)
    }

    /// The session an input from `sender` goes to, and the instant it is taken at.
    fn route(
        &mut self,
        now: Instant,
        sender: PublicKey,
    ) -> Result<(Instant, &mut Session), Refusal> {
        let clock = self.clock(now);
        let Some(session) = self.sessions.get_mut(&sender) else {
            self.unrouted.misrouted += 1;
            return Err(Refusal::UnknownSender(sender));
        };
        match clock {
            Ok(t) => Ok((t, session)),
            Err(e) => {
                session.stats.rejected += 1;
                Err(Refusal::Rejected(e))
            }
        }
    }

    /// After a description from `sender` was taken or refused: the endpoint's clock, the
    /// waiting line, the session's outputs and admission.
    fn settle(
        &mut self,
        now: Instant,
        sender: PublicKey,
        result: Result<Disposition, Refusal>,
    ) -> Result<Disposition, Refusal> {
        if result.is_ok() {
            self.tick(now);
        }
        if result == Ok(Disposition::Ignored(IgnoreReason::Waiting))
            && !self.waiting.contains(&sender)
        {
            self.waiting.push_back(sender);
        }
        self.drain(sender);
        self.admit(now);
        result
    }

    /// Applies a report of the ICE agent `agent` of the session with `remote`.
    pub fn handle_agent_event(
        &mut self,
        now: Instant,
        remote: PublicKey,
        agent: AgentId,
        event: AgentEvent,
    ) -> Result<Disposition, EndpointError> {
        let now = self.clock(now)?;
        let session = self.session_mut(remote)?;
        let result = session.peer.handle_agent_event(now, agent, event);
        if result.is_ok() {
            self.tick(now);
        }
        self.drain(remote);
        self.admit(now);
        Ok(result?)
    }

    /// Fires the timers due at `now` in every session. A session that refuses the time (it
    /// went backwards) is skipped; the first such error is returned after all were tried.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), EndpointError> {
        let now = self.clock(now)?;
        // Every session's timers are now either fired or later than `now`.
        self.tick(now);
        let due: Vec<PublicKey> = self
            .timers
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, k)| *k)
            .collect();
        let mut first = None;
        for remote in due {
            if let Some(s) = self.sessions.get_mut(&remote) {
                if let Err(e) = s.peer.handle_timeout(now) {
                    first.get_or_insert(e);
                }
            }
            self.drain(remote);
        }
        self.admit(now);
        first.map_or(Ok(()), |e| Err(e.into()))
    }

    /// The next agent command or event, or `None` when drained.
    pub fn poll_output(&mut self) -> Option<EndpointOutput> {
        self.queue.pop_front()
    }

    /// The next sealed envelope to publish (in order of remote key), or `None` when drained:
    /// the newest description for each remote that has one waiting.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        while let Some((to, pending)) = self.transmits.pop_first() {
            let description = match pending {
                Pending::Sealed(_, envelope) => return Some(Transmit { to, envelope }),
                Pending::Open(d) => d,
            };
            let Some(session) = self.sessions.get_mut(&to) else {
                continue;
            };
            if let Some(envelope) = session.seal(&description, &mut self.nonces) {
                return Some(Transmit { to, envelope });
            }
        }
        None
    }

    /// The next description to send, unsealed: what [`poll_transmit`](Endpoint::poll_transmit)
    /// would seal next, for the model checker (see
    /// [`handle_description`](Endpoint::handle_description)).
    #[doc(hidden)]
    pub fn poll_description(&mut self) -> Option<(PublicKey, Description)> {
        let (to, pending) = self.transmits.pop_first()?;
        match pending {
            Pending::Open(d) | Pending::Sealed(d, _) => Some((to, d)),
        }
    }

    /// Feeds what decides the endpoint's future behaviour into `state`, for the model checker:
    /// the sessions, their admission and their timers, what waits to be sent, the clock and the
    /// generator of new sessions' seeds. Left out: counters, rate limits, the nonce replay
    /// cache and the nonces (they act only on sealed envelopes, which the model checker does
    /// not send; see [`handle_description`](Endpoint::handle_description)).
    #[doc(hidden)]
    pub fn hash_protocol_state<H: Hasher>(&self, state: &mut H) {
        self.local.hash(state);
        self.sessions.len().hash(state);
        for (k, s) in &self.sessions {
            k.hash(state);
            s.peer.hash(state);
            (s.admitted, s.connected_once, &s.held, s.last_sent, s.timer).hash(state);
            s.nudged.hash(state);
        }
        self.next_floor.hash(state);
        self.queue.hash(state);
        self.transmits.len().hash(state);
        for (k, p) in &self.transmits {
            k.hash(state);
            match p {
                Pending::Open(d) | Pending::Sealed(d, _) => d.hash(state),
            }
        }
        (self.latest, &self.timers, &self.slots, &self.waiting).hash(state);
        self.rng.get_seed().hash(state);
        self.rng.get_word_pos().hash(state);
    }

    /// When [`handle_timeout`](Endpoint::handle_timeout) should be called next: the earliest
    /// timer of any session.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let slots = if self.waiting.is_empty() {
            None
        } else {
            // A slot given back on time lets a waiting session in (rule ADMISSION).
            self.slots
                .values()
                .filter_map(|at| at.checked_add(ADMISSION_TIMEOUT))
                .min()
        };
        self.timers
            .first()
            .map(|(t, _)| *t)
            .into_iter()
            .chain(slots)
            .min()
    }

    /// Rule ADMISSION: sessions in a slot (establishing) and sessions waiting for one.
    pub fn admission(&self) -> (usize, usize) {
        (self.slots.len(), self.waiting.len())
    }

    /// The session with `remote`.
    pub fn peer(&self, remote: &PublicKey) -> Option<&Peer> {
        self.sessions.get(remote).map(|s| &s.peer)
    }

    /// Every session, by remote key.
    pub fn peers(&self) -> impl Iterator<Item = (&PublicKey, &Peer)> {
        self.sessions.iter().map(|(k, s)| (k, &s.peer))
    }

    /// What happened to envelopes from `remote` and descriptions sent to it.
    pub fn stats(&self, remote: &PublicKey) -> Option<PeerStats> {
        self.sessions.get(remote).map(|s| s.stats)
    }

    /// Envelopes that reached no session: malformed, addressed to another key, or from a key
    /// with no session here.
    pub fn unrouted(&self) -> PeerStats {
        self.unrouted
    }

    /// Records that the embedding could not publish a [`Transmit`] to `to`
    /// (the backend refused it, its queue was full), so that the session's
    /// [`PeerStats::send_failed`] counts every lost send. The session re-sends what is not
    /// acknowledged, so nothing else is needed.
    pub fn transmit_failed(&mut self, to: &PublicKey) {
        if let Some(s) = self.sessions.get_mut(to) {
            s.stats.sent = s.stats.sent.saturating_sub(1);
            s.stats.send_failed += 1;
        }
    }

    /// The instant an input stamped `now` is taken at (rule LATE_INPUT, against the latest
    /// `now` any session took).
    fn clock(&self, now: Instant) -> Result<Instant, Error> {
        late_input(self.latest, now, self.config.peer.max_input_lag)
    }

    /// Records that a session took `now`.
    fn tick(&mut self, now: Instant) {
        self.latest = Some(self.latest.map_or(now, |l| l.max(now)));
    }

    fn session_mut(&mut self, remote: PublicKey) -> Result<&mut Session, EndpointError> {
        self.sessions
            .get_mut(&remote)
            .ok_or(EndpointError::UnknownPeer(remote))
    }

    /// Rule ADMISSION: at most `max_establishing` sessions gather and check at once; the
    /// others hold the descriptions of their remote (the expensive work starts when the
    /// remote's credentials are applied) and wait. A slot is given back when its session first
    /// connects, or after [`ADMISSION_TIMEOUT`].
    ///
    /// Who gets a free slot, each group in arrival order: (1) sessions whose remote is
    /// admitted already (its description carries candidates, gathered after its own
    /// admission); (2) sessions whose remote says our epochs went back (a crash with a floor
    /// below the old epochs: rule EPOCH_CATCH_UP needs our answer); (3) sessions this side
    /// controls (the smaller key); (4) sessions whose controlling remote sent its session
    /// again without acknowledging ours (*nudged*: it lacks our description); (5) the rest,
    /// sessions the remote controls on its first description, and only while one slot stays
    /// free for groups 1–4.
    ///
    /// Why no cycle of waits can form: a slot holder of groups 1, 2 and 4 waits for no slot,
    /// its remote is admitted (a waiting remote applies nothing of ours, so its descriptions
    /// carry no candidates and prove no regression, and it sends no re-send, ADMISSION_QUIET);
    /// one of group 3 waits only for a remote with a larger key. A node stuck with full slots holds at least one session of groups 1–4, so the
    /// largest key among stuck nodes would wait for a larger stuck key: none is stuck. A
    /// session of group 5 that waits at a node with only the reserved slot free is answered
    /// by its controller's candidates or re-sends (groups 1 and 4). Admitting group 5 into the
    /// last slot, as a first version did, let three nodes with one slot each hold the sessions
    /// A–C, B–A and C–B, each waiting for the next until [`ADMISSION_TIMEOUT`] (found by the
    /// model checker's endpoint mesh).
    fn admit(&mut self, now: Instant) {
        let max = self.config.max_establishing;
        if max == 0 {
            return;
        }
        self.slots
            .retain(|_, at| at.checked_add(ADMISSION_TIMEOUT).is_none_or(|t| t > now));
        while self.slots.len() < max && !self.waiting.is_empty() {
            let local = self.local;
            let position = |f: &dyn Fn(&PublicKey, &Session) -> bool| {
                self.waiting
                    .iter()
                    .position(|k| self.sessions.get(k).is_some_and(|s| f(k, s)))
            };
            let Some(i) = position(&|_, s| s.held.iter().any(|d| !d.candidates.is_empty()))
                .or_else(|| position(&|_, s| s.held.iter().any(|d| s.proves_regressed(d))))
                .or_else(|| position(&|k, _| local < *k))
                .or_else(|| position(&|_, s| s.nudged))
                // The rest (sessions the remote controls, on its first word) only while a slot
                // stays free for the groups above: see the proof above.
                .or_else(|| (self.slots.len() + 1 < max).then_some(0))
            else {
                return;
            };
            let Some(remote) = self.waiting.remove(i) else {
                return;
            };
            let Some(session) = self.sessions.get_mut(&remote) else {
                continue;
            };
            session.admitted = true;
            self.slots.insert(remote, now);
            while let Some(d) = session.held.pop_front() {
                // Counted like any description; a refusal changes nothing in the session.
                let _ = session.apply(now, &d);
            }
            self.drain(remote);
        }
    }

    /// Moves the outputs of the session with `remote` to the queue, sealing descriptions.
    fn drain(&mut self, remote: PublicKey) {
        let Some(session) = self.sessions.get_mut(&remote) else {
            return;
        };
        if !session.connected_once && session.peer.state().is_connected() {
            session.connected_once = true;
            self.slots.remove(&remote);
        }
        let timer = session.peer.poll_timeout();
        if timer != session.timer {
            if let Some(t) = session.timer {
                self.timers.remove(&(t, remote));
            }
            if let Some(t) = timer {
                self.timers.insert((t, remote));
            }
            session.timer = timer;
        }
        while let Some(out) = session.peer.poll_output() {
            let out = match out {
                Output::Send(d) => {
                    if !session.admitted
                        && !session.held.is_empty()
                        && session.last_sent == Some(d.session)
                    {
                        // Rule ADMISSION_QUIET: a session waiting for a slot holds its remote's
                        // description, so the remote is alive and our answer follows when we
                        // apply it; a re-send of what we sent already tells it nothing.
                        session.stats.quieted += 1;
                        continue;
                    }
                    session.last_sent = Some(d.session);
                    // Rule SUPERSEDED_SEND: descriptions are cumulative (each carries the
                    // session, the credentials, every candidate gathered so far and the newest
                    // acknowledgement), so one not yet handed to the backend tells the remote
                    // nothing the newer one does not. The model checker's links make the same
                    // replacement in flight (a send to a full link loses the older description).
                    if self.transmits.insert(remote, Pending::Open(d)).is_some() {
                        session.stats.superseded += 1;
                    } else {
                        session.stats.sent += 1;
                    }
                    continue;
                }
                Output::Agent(command) => EndpointOutput::Agent { remote, command },
                Output::Event(event) => EndpointOutput::Event { remote, event },
            };
            self.queue.push_back(out);
        }
    }
}

impl Session {
    /// The checks before opening, then the box.
    fn open(&mut self, now: Instant, envelope: &[u8]) -> Result<Description, Refusal> {
        if envelope.len() > self.channel.limits().max_envelope_len {
            self.stats.oversized += 1;
            return Err(Refusal::Oversized);
        }
        if !self.limiter.allow(now) {
            self.stats.rate_limited += 1;
            return Err(Refusal::RateLimited);
        }
        let Some(nonce) = nonce_of(envelope) else {
            self.stats.garbage += 1;
            return Err(Refusal::Garbage(wire::Error::Envelope(
                wire::EnvelopeError::MissingContents,
            )));
        };
        if self.replay.contains(&nonce) {
            self.stats.replayed += 1;
            return Err(Refusal::Replayed);
        }
        let description = match self.channel.open(envelope) {
            Ok(d) => d,
            Err(e @ (wire::Error::Authentication | wire::Error::Binding(_))) => {
                self.stats.wrong_key += 1;
                return Err(Refusal::WrongKey(e));
            }
            Err(wire::Error::NotForUs) => {
                self.stats.misrouted += 1;
                return Err(Refusal::NotForUs);
            }
            Err(wire::Error::UnexpectedSender) => {
                self.stats.misrouted += 1;
                return Err(Refusal::UnknownSender(self.channel.remote_key()));
            }
            Err(e) => {
                self.stats.garbage += 1;
                return Err(Refusal::Garbage(e));
            }
        };
        // Only an authenticated envelope's nonce is remembered: a forger cannot fill the cache.
        self.replay.insert(nonce);
        Ok(description)
    }

    /// An opened description: held while the session waits for admission, applied otherwise.
    fn take(&mut self, now: Instant, description: &Description) -> Result<Disposition, Refusal> {
        if !self.admitted {
            // Time has passed for a held description as for any input of a `Peer`: the
            // session's due timers fire first, so `poll_timeout` stays after every `now` given.
            if self.peer.poll_timeout().is_some_and(|t| t <= now) {
                self.peer.handle_timeout(now).map_err(Refusal::Rejected)?;
            }
            // The remote controls the session and sends a session of its own again without
            // acknowledging ours: it lacks our description (see `Endpoint::admit`).
            let ours = self.peer.local_session().map(|s| s.epoch);
            if self
                .held
                .iter()
                .any(|h| h.session.epoch == description.session.epoch)
                && description.ack.map(|a| a.epoch) != ours
            {
                self.nudged = true;
            }
            // Rule ADMISSION: held until the session gets a slot.
            if self.held.len() == HELD {
                self.held.pop_front();
            }
            self.held.push_back(description.clone());
            self.stats.held += 1;
            return Ok(Disposition::Ignored(IgnoreReason::Waiting));
        }
        self.apply(now, description).map_err(Refusal::Rejected)
    }

    /// True if `d` shows that the remote holds a session of ours newer than our current one
    /// (rule EPOCH_CATCH_UP: our floor went back).
    fn proves_regressed(&self, d: &Description) -> bool {
        match (self.peer.local_session(), self.peer.local_credentials()) {
            (Some(current), Some(c)) => crate::rules::regressed(current, &c.ufrag, d).is_some(),
            _ => false,
        }
    }

    /// Seals a description for the remote, or counts why it could not be sent.
    fn seal(&mut self, description: &Description, nonces: &mut ChaCha20Rng) -> Option<Vec<u8>> {
        match self.channel.seal(description, Nonce::random(nonces)) {
            Ok(envelope) => Some(envelope),
            Err(_) => {
                // A description the wire cannot carry (more candidates than its limits):
                // counted; the session re-sends, and the remote's acknowledgements stay where
                // they are.
                self.stats.sent = self.stats.sent.saturating_sub(1);
                self.stats.send_failed += 1;
                None
            }
        }
    }

    /// Hands an opened description to the session and counts what became of it.
    fn apply(&mut self, now: Instant, description: &Description) -> Result<Disposition, Error> {
        let result = self.peer.handle_description(now, description);
        match &result {
            Ok(Disposition::Applied) => self.stats.applied += 1,
            Ok(Disposition::Ignored(IgnoreReason::Duplicate(_))) => self.stats.duplicate += 1,
            Ok(Disposition::Ignored(_)) => self.stats.stale += 1,
            Err(_) => self.stats.rejected += 1,
        }
        result
    }
}

/// A description waiting for [`Endpoint::poll_transmit`].
#[derive(Clone, Debug)]
enum Pending {
    /// Sealed when polled.
    Open(Description),
    /// Sealed already: its session was removed, and its channel with it.
    Sealed(Description, Vec<u8>),
}
