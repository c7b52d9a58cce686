//! A sans-IO client of a room signaling service (`icepact-signal`, seed 004), with the
//! signaling states of seed 003 and the rules that make its "common mistakes" impossible.
//!
//! A [`RoomClient`] keeps one member of one call: it joins (`GET /call/{call}`), opens the
//! WebSocket, sends the `JOIN` handshake, waits for `WELCOME`, and from then on follows the
//! call's offer/answer exchange. It does no I/O and reads no clock: the driver performs what
//! [`RoomClient::poll_output`] asks, reports what happened through the `handle_*` methods, and
//! calls [`RoomClient::handle_timeout`] at [`RoomClient::poll_timeout`].
//!
//! [`ClientState`] changes only through [`transition`], the one table of this module; the
//! browser demo page of `icepact-signal` reads the same table (as JSON) and checks each of its
//! own changes against it. The signaling connection ([`Link`]) is a second, independent
//! component: it drops and comes back while a call goes on (seed 003: "media keeps flowing").
//!
//! Rules, each named where it lives:
//! - ROOM_RECONNECT: a lost connection is reopened with back-off and jitter, with the same
//!   session token while the service knows it, so the member keeps its seat; the call state
//!   (`Calling`, `InCall`) survives the drop.
//! - ROOM_REJOIN: a session the service no longer knows (close code 4001, or 409 on a publish)
//!   joins the call again.
//! - ROOM_ONE_TOKEN: a member draws its token once and proposes it with every join
//!   (`GET /call/{call}?session=…`); the service renews the seat a token already holds. So a join
//!   whose answer was lost (its deadline passed, but the service took the seat) and is retried
//!   cannot take a second seat, which would fill a two-seat call until the orphan's lease ran
//!   out. The model checker found that wedge when the service drew a token per join.
//! - ROOM_DEADLINES: joining, opening, the handshake and (optionally) an idle connection each
//!   have a deadline; none of them waits for ever.
//! - ROOM_REFUSED: a refusal the client cannot fix by retrying (the call is full, the name is
//!   invalid) ends in `Disconnected` with an event, not in a retry loop.
//! - [`Negotiation`]: perfect negotiation (one offer handled at a time, the polite side rolls
//!   back on glare, candidates queued until a remote description exists).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::rng::{Seed, SessionRng};

/// Seed 003's signaling states, adapted to a room service whose seat is the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ClientState {
    /// No seat and no connection.
    Disconnected,
    /// Taking a seat (`GET /call`) or opening the WebSocket.
    Connecting,
    /// The WebSocket is open and the handshake sent; `WELCOME` has not arrived.
    Connected,
    /// In the room: the seat is held, the service relays the call's messages; no call.
    InRoom,
    /// An offer is out; no answer yet.
    Calling,
    /// The offer/answer exchange is complete.
    InCall,
}

impl ClientState {
    /// Every state, in declaration order.
    pub const ALL: [ClientState; 6] = [
        Self::Disconnected,
        Self::Connecting,
        Self::Connected,
        Self::InRoom,
        Self::Calling,
        Self::InCall,
    ];

    /// True in `Calling` and `InCall`: a call exists and survives a lost connection.
    pub fn in_call(self) -> bool {
        matches!(self, Self::Calling | Self::InCall)
    }
}

impl fmt::Display for ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What makes a [`ClientState`] change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ClientTrigger {
    /// The user joins the call.
    Connect,
    /// The WebSocket opened (the handshake goes out with it).
    SocketOpen,
    /// The service's `WELCOME` arrived: the seat is live.
    Welcome,
    /// The WebSocket closed or failed, or a deadline passed.
    SocketLost,
    /// The service refused in a way retrying cannot fix (call full, invalid name).
    Refused,
    /// A local offer was sent.
    OfferSent,
    /// A remote offer was accepted (and answered).
    OfferReceived,
    /// The answer to our offer arrived.
    AnswerReceived,
    /// The user hung up (the call ends, the seat stays).
    Hangup,
    /// The user left the call (the seat and the connection are given up).
    Leave,
}

impl ClientTrigger {
    /// Every trigger, in declaration order.
    pub const ALL: [ClientTrigger; 10] = [
        Self::Connect,
        Self::SocketOpen,
        Self::Welcome,
        Self::SocketLost,
        Self::Refused,
        Self::OfferSent,
        Self::OfferReceived,
        Self::AnswerReceived,
        Self::Hangup,
        Self::Leave,
    ];
}

/// The transition table: the next state for `trigger` in `state`, or `None` where seed 003
/// (with the edges marked ADDED) has no edge.
pub fn transition(state: ClientState, trigger: ClientTrigger) -> Option<ClientState> {
    use ClientState as S;
    use ClientTrigger as T;
    Some(match (state, trigger) {
        // Seed 003: Disconnected → Connecting on ws.connect().
        (S::Disconnected, T::Connect) => S::Connecting,
        // Seed 003: Connecting → Connected on onopen.
        (S::Connecting, T::SocketOpen) => S::Connected,
        // Seed 003: Connecting → Disconnected on onerror. Here only for a refusal retrying
        // cannot fix (ROOM_REFUSED); a transient error retries in Connecting (below).
        (S::Connecting | S::Connected, T::Refused) => S::Disconnected,
        // ADDED (ROOM_RECONNECT): a failed attempt is retried with back-off.
        (S::Connecting | S::Connected | S::InRoom, T::SocketLost) => S::Connecting,
        // Seed 003: Connected → InRoom on join(room). The service's room is the seat, joined
        // before the socket opens; WELCOME confirms it.
        (S::Connected, T::Welcome) => S::InRoom,
        // Seed 003: InRoom → Calling on "send offer".
        (S::InRoom, T::OfferSent) => S::Calling,
        // Seed 003: Calling → InCall on "receive answer".
        (S::Calling, T::AnswerReceived) => S::InCall,
        // ADDED: the answering side is in the call once it accepted the offer (and answered);
        // on glare the polite side rolls its own offer back and does the same.
        (S::InRoom | S::Calling, T::OfferReceived) => S::InCall,
        // ADDED: renegotiation inside a call (an ICE restart) keeps the call.
        (S::InCall, T::OfferSent | T::OfferReceived | T::AnswerReceived) => S::InCall,
        // Seed 003: InCall → InRoom on hangup; ADDED: hanging up while calling.
        (S::Calling | S::InCall, T::Hangup) => S::InRoom,
        // ADDED (ROOM_RECONNECT): the call survives a lost signaling connection (seed 003's
        // "common bug": media keeps flowing), and the reconnection's WELCOME keeps it.
        (S::Calling | S::InCall, T::SocketLost | T::Welcome) => state,
        // Seed 003: InRoom → Connected → Disconnected on leave and ws.close(). The service's
        // room is the seat, so leaving gives up both at once.
        (S::Connecting | S::Connected | S::InRoom | S::Calling | S::InCall, T::Leave) => {
            S::Disconnected
        }
        _ => return None,
    })
}

/// Every edge of the table, `(from, trigger, to)`, in a fixed order.
pub fn edges() -> impl Iterator<Item = (ClientState, ClientTrigger, ClientState)> {
    ClientState::ALL.into_iter().flat_map(|s| {
        ClientTrigger::ALL
            .into_iter()
            .filter_map(move |t| transition(s, t).map(|to| (s, t, to)))
    })
}

/// The table as JSON (`{"states":[…],"edges":[[from,trigger,to],…]}`), for clients written in
/// other languages (the demo page of `icepact-signal` checks its changes against it).
pub fn table_json() -> String {
    let states: Vec<String> = ClientState::ALL
        .iter()
        .map(|s| format!("\"{s:?}\""))
        .collect();
    let edges: Vec<String> = edges()
        .map(|(f, t, to)| format!("[\"{f:?}\",\"{t:?}\",\"{to:?}\"]"))
        .collect();
    format!(
        "{{\"states\":[{}],\"edges\":[{}]}}",
        states.join(","),
        edges.join(",")
    )
}

/// The signaling connection, independent of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Link {
    /// Nothing open; waiting for the user (`Disconnected`) or for the next attempt.
    Down,
    /// `GET /call/{call}` is on its way.
    Joining,
    /// The WebSocket is opening.
    Opening,
    /// The handshake is sent; waiting for `WELCOME`.
    Handshaking,
    /// `WELCOME` arrived: the seat is live and messages are relayed.
    Up,
}

/// How a `GET /call/{call}` ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JoinResult {
    /// A seat, with its session token.
    Joined(String),
    /// 409: every seat is taken.
    Full,
    /// 400: the service refused the call name.
    Invalid,
    /// Anything transient: no answer, 429, 503, a reset connection.
    Unavailable,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientOutput {
    /// Send `GET /call/{call}?session={session}` and report with
    /// [`RoomClient::handle_joined`]. The member proposes its own token, the same on every
    /// attempt, so a join retried after a lost answer renews the seat the first one took
    /// instead of taking a second (rule ROOM_ONE_TOKEN).
    Join {
        /// The member's token.
        session: String,
    },
    /// Open the WebSocket (`GET /ws`) and report with [`RoomClient::handle_open`] or
    /// [`RoomClient::handle_closed`].
    Open,
    /// Send this text frame on the WebSocket (the `JOIN` handshake).
    Send(String),
    /// Close the WebSocket (if one is open).
    Close,
    /// Something the user should know.
    Event(ClientEvent),
}

/// What happened, for the user.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The state changed along an edge of [`transition`].
    StateChanged {
        /// The old state.
        from: ClientState,
        /// The new state.
        to: ClientState,
    },
    /// The connection is being re-established (attempt number, from 1), after `reason`.
    Reconnecting {
        /// How many attempts failed in a row.
        attempt: u32,
        /// Why the last connection ended.
        reason: LostReason,
    },
    /// The service forgot the session (it restarted, or the lease expired): the call is
    /// joined again, and the seat may be gone.
    SessionExpired,
    /// Every seat is taken (409): the client gave up; the user may try later.
    CallFull,
    /// The service refused the call name (400).
    InvalidCall,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LostReason {
    /// The join request failed in a way worth retrying.
    JoinFailed,
    /// The WebSocket closed (with this close code, if any).
    Closed(Option<u16>),
    /// A deadline of ROOM_DEADLINES passed.
    Deadline,
}

/// A message the service relays (`kind` of its JSON), as the client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Incoming {
    /// The handshake's answer.
    Welcome,
    /// Another member completed its handshake.
    Available,
    /// A member's `OFFER`, `ANSWER` or `CANDIDATE`: for the application.
    Relay,
    /// A kind this client does not know (ignored).
    Unknown,
}

impl Incoming {
    /// The message's `kind` field, parsed.
    pub fn from_kind(kind: &str) -> Incoming {
        match kind {
            "WELCOME" => Incoming::Welcome,
            "AVAILABLE" => Incoming::Available,
            "OFFER" | "ANSWER" | "CANDIDATE" => Incoming::Relay,
            _ => Incoming::Unknown,
        }
    }
}

/// WebSocket close codes of the room service (seed 004; application range 4000–4999), one
/// list for the service and its clients.
pub mod close_code {
    /// The handshake was not valid JSON of kind `JOIN` with a call and a session.
    pub const MALFORMED_HANDSHAKE: u16 = 4000;
    /// The session holds no live seat (never joined, expired, not renewed): ROOM_REJOIN.
    pub const SESSION_EXPIRED: u16 = 4001;
    /// No handshake within the handshake timeout.
    pub const HANDSHAKE_TIMEOUT: u16 = 4008;
    /// The service's store could not be reached.
    pub const UNAVAILABLE: u16 = 4503;
    /// The instance is shutting down (RFC 6455 "going away"): reconnect at once, to another
    /// instance if there is one; the seat's lease lives on.
    pub const GOING_AWAY: u16 = 1001;
}

/// The room service's message format (seed 004): `{kind, call, session, body}`, as JSON with
/// the feature `serde`. One definition for the service and its clients.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Message {
    /// What the message is (`JOIN`, `WELCOME`, `OFFER`, `ANSWER`, `CANDIDATE`, `AVAILABLE`).
    pub kind: String,
    /// The call.
    pub call: String,
    /// The session token (in `JOIN` and in what a client sends; never in what it receives).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub session: Option<String>,
    /// The body, opaque to the service.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub body: Option<String>,
}

/// Timing of a [`RoomClient`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RoomConfig {
    /// Back-off between reconnection attempts (ROOM_RECONNECT). Default: 250 ms, ×2, ±25 %,
    /// at most 5 s — well inside the service's default 15 s lease, so a member that reconnects
    /// keeps its seat.
    pub backoff: Backoff,
    /// How long `GET /call`, opening the socket, and the handshake may each take (default 5 s).
    pub deadline: Duration,
    /// A connection that carried no frame for this long is taken as half-open and reopened.
    /// `None` where the driver cannot see frames (a browser's WebSocket hides PINGs); the
    /// service then closes a dead connection when renewals stop. Default: 60 s (the service
    /// PINGs every 5 s).
    pub idle: Option<Duration>,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            backoff: Backoff {
                initial: Duration::from_millis(250),
                multiplier_permille: 2000,
                jitter_permille: 250,
                max: Duration::from_secs(5),
            },
            deadline: Duration::from_secs(5),
            idle: Some(Duration::from_secs(60)),
        }
    }
}

/// One member of one call of a room service: the seed 003 state machine (see the module docs).
///
/// Sans-IO: feed it what the network did (`handle_joined`, `handle_open`, `handle_message`,
/// `handle_frame`, `handle_closed`, `handle_publish_refused`) and the time (`handle_timeout` at
/// `poll_timeout`), and drain `poll_output`. The state is `Clone + Eq + Hash`: the model
/// checker runs this very code.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoomClient {
    call: String,
    config: RoomConfig,
    state: ClientState,
    link: Link,
    /// The member's token (ROOM_ONE_TOKEN): drawn once, proposed with every join.
    token: String,
    /// The token the service confirmed by a join, while the client believes it holds a seat.
    session: Option<String>,
    /// Failed attempts in a row (reset by WELCOME).
    attempt: u32,
    /// The next attempt (while `link` is `Down` and a retry is due), or the deadline of the
    /// current step, or the idle deadline.
    timer: Option<Instant>,
    rng: SessionRng,
    out: VecDeque<ClientOutput>,
}

/// Why a [`RoomClient`] refused an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The call name is not 1 to 128 characters of `A–Z a–z 0–9 . _ ~ -`.
    #[error("invalid call name")]
    InvalidCall,
    /// The trigger has no edge from the current state.
    #[error("no edge for {trigger:?} from {state}")]
    NoEdge {
        /// The current state.
        state: ClientState,
        /// The refused trigger.
        trigger: ClientTrigger,
    },
    /// The session token is not 32 lowercase hex digits.
    #[error("malformed session token")]
    MalformedToken,
}

/// Whether `token` is a session token as the service hands them out and accepts them: exactly
/// 32 lowercase hex digits (128 bits).
pub fn valid_token(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `call` is a call name the service accepts (1 to 128 characters of
/// `A–Z a–z 0–9 . _ ~ -`).
pub fn valid_call(call: &str) -> bool {
    (1..=128).contains(&call.len())
        && call
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

impl RoomClient {
    /// A client for `call`, `Disconnected`. `seed` draws the member's session token and the
    /// back-off jitter: it must be secret (anyone who can compute the token can speak for the
    /// member and hold its seat), so take it from the OS ([`Seed::from_os_rng`]).
    pub fn new(call: &str, config: RoomConfig, seed: Seed) -> Result<RoomClient, RoomError> {
        if !valid_call(call) {
            return Err(RoomError::InvalidCall);
        }
        let mut rng = SessionRng::from_seed(seed);
        let token = rng.hex_token();
        Ok(RoomClient {
            call: call.to_owned(),
            config,
            state: ClientState::Disconnected,
            link: Link::Down,
            token,
            session: None,
            attempt: 0,
            timer: None,
            rng,
            out: VecDeque::new(),
        })
    }

    /// The call.
    pub fn call(&self) -> &str {
        &self.call
    }

    /// The signaling state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The signaling connection.
    pub fn link(&self) -> Link {
        self.link
    }

    /// The session token, once joined (needed for `POST /signal`).
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Whether messages may be published now: a seat is held (the token is known).
    pub fn can_publish(&self) -> bool {
        self.session.is_some() && self.state != ClientState::Disconnected
    }

    fn go(&mut self, trigger: ClientTrigger) -> Result<(), RoomError> {
        let to = transition(self.state, trigger).ok_or(RoomError::NoEdge {
            state: self.state,
            trigger,
        })?;
        if to != self.state {
            let from = self.state;
            self.state = to;
            self.out
                .push_back(ClientOutput::Event(ClientEvent::StateChanged { from, to }));
        }
        Ok(())
    }

    fn deadline(&mut self, now: Instant, after: Duration) {
        // A deadline past the end of `Instant`'s range never fires (checked arithmetic).
        self.timer = now.checked_add(after);
    }

    /// Starts the next attempt: a join without a token, else the WebSocket.
    fn attempt_now(&mut self, now: Instant) {
        if self.session.is_some() {
            self.link = Link::Opening;
            self.out.push_back(ClientOutput::Open);
        } else {
            self.link = Link::Joining;
            self.out.push_back(ClientOutput::Join {
                session: self.token.clone(),
            });
        }
        self.deadline(now, self.config.deadline);
    }

    /// Rule ROOM_RECONNECT: the connection ended; the next attempt after back-off (at once
    /// after a graceful shutdown of the instance, whose clients all come back anyway).
    fn lost(&mut self, now: Instant, reason: LostReason) {
        if self.state == ClientState::Disconnected {
            return;
        }
        if self.link != Link::Joining && self.link != Link::Down {
            self.out.push_back(ClientOutput::Close);
        }
        // The table has a SocketLost edge from every state but Disconnected.
        let _ = self.go(ClientTrigger::SocketLost);
        self.link = Link::Down;
        let attempt = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        self.out
            .push_back(ClientOutput::Event(ClientEvent::Reconnecting {
                attempt: self.attempt,
                reason,
            }));
        let delay = if reason == LostReason::Closed(Some(close_code::GOING_AWAY)) && attempt == 0 {
            Duration::ZERO
        } else if self.config.backoff.jitter_permille == 0 {
            // Without jitter the generator is not consulted (its position would only split
            // otherwise equal states in the model checker).
            self.config.backoff.nominal(attempt)
        } else {
            self.config.backoff.interval(attempt, &mut self.rng)
        };
        self.deadline(now, delay);
    }

    /// The user joins the call (from `Disconnected`).
    pub fn connect(&mut self, now: Instant) -> Result<(), RoomError> {
        self.go(ClientTrigger::Connect)?;
        self.attempt = 0;
        self.attempt_now(now);
        Ok(())
    }

    /// The user leaves: the connection closes and the client is `Disconnected` (the seat's
    /// lease runs out at the service).
    pub fn leave(&mut self) -> Result<(), RoomError> {
        self.go(ClientTrigger::Leave)?;
        if self.link != Link::Down {
            self.out.push_back(ClientOutput::Close);
        }
        self.link = Link::Down;
        self.session = None;
        self.timer = None;
        Ok(())
    }

    /// How `GET /call/{call}` ended. Ignored unless a join was asked for.
    pub fn handle_joined(&mut self, now: Instant, result: JoinResult) -> Result<(), RoomError> {
        if self.link != Link::Joining {
            return Ok(());
        }
        match result {
            JoinResult::Joined(token) => {
                if !valid_token(&token) {
                    self.lost(now, LostReason::JoinFailed);
                    return Err(RoomError::MalformedToken);
                }
                // A service that does not take proposals hands out its own token: it becomes
                // the member's.
                self.token.clone_from(&token);
                self.session = Some(token);
                self.attempt_now(now);
            }
            // ROOM_REFUSED: retrying cannot fix these. In a call, the seat is gone for good
            // (another member took it); the call ends with it.
            JoinResult::Full | JoinResult::Invalid => {
                let event = if result == JoinResult::Full {
                    ClientEvent::CallFull
                } else {
                    ClientEvent::InvalidCall
                };
                if self.state.in_call() {
                    self.go(ClientTrigger::Hangup)?;
                }
                if self.state == ClientState::InRoom {
                    self.go(ClientTrigger::SocketLost)?;
                }
                self.go(ClientTrigger::Refused)?;
                self.link = Link::Down;
                self.timer = None;
                self.out.push_back(ClientOutput::Event(event));
            }
            JoinResult::Unavailable => self.lost(now, LostReason::JoinFailed),
        }
        Ok(())
    }

    /// The WebSocket opened: the handshake goes out.
    pub fn handle_open(&mut self, now: Instant) -> Result<(), RoomError> {
        if self.link != Link::Opening {
            return Ok(());
        }
        let Some(token) = self.session.clone() else {
            return Ok(());
        };
        if self.state == ClientState::Connecting {
            self.go(ClientTrigger::SocketOpen)?;
        }
        self.link = Link::Handshaking;
        // Call names and tokens are validated: nothing in them needs JSON escaping.
        self.out.push_back(ClientOutput::Send(format!(
            "{{\"kind\":\"JOIN\",\"call\":\"{}\",\"session\":\"{token}\"}}",
            self.call
        )));
        self.deadline(now, self.config.deadline);
        Ok(())
    }

    /// A text message from the WebSocket, by its `kind`. Returns true when it is for the
    /// application (a relayed `OFFER`/`ANSWER`/`CANDIDATE` or `AVAILABLE`, received while up).
    pub fn handle_message(&mut self, now: Instant, kind: Incoming) -> Result<bool, RoomError> {
        self.handle_frame(now);
        match (kind, self.link) {
            (Incoming::Welcome, Link::Handshaking) => {
                self.go(ClientTrigger::Welcome)?;
                self.link = Link::Up;
                self.attempt = 0;
                // Up now: the step's deadline gives way to the idle deadline (or none).
                self.handle_frame(now);
                Ok(false)
            }
            (Incoming::Relay | Incoming::Available, Link::Up) => Ok(true),
            _ => Ok(false),
        }
    }

    /// Any frame (PING included) arrived: the connection is alive.
    pub fn handle_frame(&mut self, now: Instant) {
        if self.link == Link::Up {
            self.timer = self.config.idle.and_then(|d| now.checked_add(d));
        }
    }

    /// The WebSocket closed (with its close code, if any) or failed.
    pub fn handle_closed(&mut self, now: Instant, code: Option<u16>) {
        if matches!(self.link, Link::Down | Link::Joining) {
            return;
        }
        if code == Some(close_code::SESSION_EXPIRED) {
            self.expire();
        }
        self.lost(now, LostReason::Closed(code));
    }

    /// `POST /signal` answered 409: the service no longer knows the session (ROOM_REJOIN).
    pub fn handle_publish_refused(&mut self, now: Instant) {
        if self.session.is_none() || self.state == ClientState::Disconnected {
            return;
        }
        self.expire();
        if self.link != Link::Joining {
            self.lost(now, LostReason::Closed(Some(close_code::SESSION_EXPIRED)));
        }
    }

    /// Rule ROOM_REJOIN: the session is dead; the next attempt joins again (with the same
    /// token, ROOM_ONE_TOKEN).
    fn expire(&mut self) {
        if self.session.take().is_some() {
            self.out
                .push_back(ClientOutput::Event(ClientEvent::SessionExpired));
        }
    }

    /// When [`RoomClient::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// Fires what is due at `now`: the next attempt, or a missed deadline (ROOM_DEADLINES).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.timer {
            Some(at) if at <= now => {}
            _ => return,
        }
        self.timer = None;
        match self.link {
            Link::Down => {
                if self.state != ClientState::Disconnected {
                    self.attempt_now(now);
                }
            }
            Link::Joining | Link::Opening | Link::Handshaking | Link::Up => {
                self.lost(now, LostReason::Deadline)
            }
        }
    }

    /// The call's offer/answer exchange moved on (see [`Negotiation`] for when).
    pub fn call_event(&mut self, trigger: ClientTrigger) -> Result<(), RoomError> {
        match trigger {
            ClientTrigger::OfferSent
            | ClientTrigger::OfferReceived
            | ClientTrigger::AnswerReceived
            | ClientTrigger::Hangup => self.go(trigger),
            _ => Err(RoomError::NoEdge {
                state: self.state,
                trigger,
            }),
        }
    }

    /// What to do next.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }
}

/// A description's type, as WebRTC names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SdpKind {
    /// `offer`.
    Offer,
    /// `answer`.
    Answer,
}

/// WebRTC's signaling state, as far as negotiation needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignalingState {
    /// `stable`: no exchange in progress.
    Stable,
    /// `have-local-offer`: our offer is out.
    HaveLocalOffer,
    /// `have-remote-offer`: an offer is being answered.
    HaveRemoteOffer,
}

/// What to do with a remote description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Apply it (`setRemoteDescription`); answer it if it is an offer.
    Apply,
    /// Roll the local offer back, then apply it and answer (the polite side on glare).
    RollbackAndApply,
    /// Ignore it (the impolite side on glare; or an answer with no offer out).
    Ignore,
    /// Queue it: a remote description is being handled now (one at a time).
    Queue,
}

/// Perfect negotiation (W3C WebRTC 1.0, §10.7 "Perfect negotiation example"): both sides may
/// offer at any time; on glare the *polite* side rolls its offer back and answers, the
/// *impolite* one ignores the incoming offer. The roles come from comparing the two members'
/// ids, the way icepact chooses the controlling agent: the smaller id is impolite
/// (controlling), the larger polite.
///
/// Also seed 003's "common mistakes", made impossible here: no offer is applied outside
/// `stable` unless rolled back first; one remote description is handled at a time (a second
/// waits, [`Decision::Queue`]); remote candidates wait until a remote description exists.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Negotiation<C> {
    polite: bool,
    signaling: SignalingState,
    making_offer: bool,
    handling: bool,
    has_remote_description: bool,
    pending_candidates: Vec<C>,
}

impl<C> Negotiation<C> {
    /// The negotiation between member `local` and member `remote` (their ids).
    pub fn new(local: &str, remote: &str) -> Negotiation<C> {
        Negotiation {
            polite: local > remote,
            signaling: SignalingState::Stable,
            making_offer: false,
            handling: false,
            has_remote_description: false,
            pending_candidates: Vec::new(),
        }
    }

    /// True on the side that yields on glare.
    pub fn polite(&self) -> bool {
        self.polite
    }

    /// The signaling state.
    pub fn signaling(&self) -> SignalingState {
        self.signaling
    }

    /// True while a remote description is being handled.
    pub fn handling(&self) -> bool {
        self.handling
    }

    /// A local offer is being made (`setLocalDescription()` started). False if one cannot be
    /// made now (not `stable`, or a remote description is being handled).
    pub fn begin_offer(&mut self) -> bool {
        if self.signaling != SignalingState::Stable || self.handling || self.making_offer {
            return false;
        }
        self.making_offer = true;
        true
    }

    /// The local offer is set (and sent); `ok` false if setting it failed.
    pub fn end_offer(&mut self, ok: bool) {
        self.making_offer = false;
        if ok {
            self.signaling = SignalingState::HaveLocalOffer;
        }
    }

    /// A remote description of `kind` arrived: what to do with it. With [`Decision::Apply`] or
    /// [`Decision::RollbackAndApply`] the caller applies it and then calls
    /// [`Negotiation::end_remote`].
    pub fn begin_remote(&mut self, kind: SdpKind) -> Decision {
        if self.handling {
            return Decision::Queue;
        }
        let decision = match kind {
            SdpKind::Offer => {
                let collision = self.making_offer || self.signaling != SignalingState::Stable;
                match (collision, self.polite) {
                    (false, _) => Decision::Apply,
                    (true, true) => Decision::RollbackAndApply,
                    (true, false) => Decision::Ignore,
                }
            }
            SdpKind::Answer if self.signaling == SignalingState::HaveLocalOffer => Decision::Apply,
            SdpKind::Answer => Decision::Ignore,
        };
        if decision != Decision::Ignore {
            self.handling = true;
            if decision == Decision::RollbackAndApply {
                self.making_offer = false;
            }
            self.signaling = match kind {
                SdpKind::Offer => SignalingState::HaveRemoteOffer,
                SdpKind::Answer => SignalingState::HaveLocalOffer,
            };
        }
        decision
    }

    /// The remote description was applied (and an offer answered); `ok` false if applying
    /// failed. Returns the candidates that waited for it.
    pub fn end_remote(&mut self, ok: bool) -> Vec<C> {
        self.handling = false;
        if !ok {
            self.signaling = SignalingState::Stable;
            return Vec::new();
        }
        self.signaling = SignalingState::Stable;
        self.has_remote_description = true;
        std::mem::take(&mut self.pending_candidates)
    }

    /// A remote candidate arrived: `Some` to add it now, `None` if it waits for the remote
    /// description (it comes back from [`Negotiation::end_remote`]).
    pub fn remote_candidate(&mut self, candidate: C) -> Option<C> {
        if self.has_remote_description && !self.handling {
            Some(candidate)
        } else {
            self.pending_candidates.push(candidate);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> (RoomClient, Instant) {
        let c = RoomClient::new("demo", RoomConfig::default(), Seed::from_bytes([1; 32])).unwrap();
        (c, Instant::now())
    }

    fn drain(c: &mut RoomClient) -> Vec<ClientOutput> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn up(c: &mut RoomClient, now: Instant) {
        c.connect(now).unwrap();
        c.handle_joined(now, JoinResult::Joined(TOKEN.into()))
            .unwrap();
        c.handle_open(now).unwrap();
        c.handle_message(now, Incoming::Welcome).unwrap();
        assert_eq!((c.state(), c.link()), (ClientState::InRoom, Link::Up));
        drain(c);
    }

    #[test]
    fn every_edge_is_in_the_table_and_the_json() {
        let json = table_json();
        for (f, t, to) in edges() {
            assert!(json.contains(&format!("[\"{f:?}\",\"{t:?}\",\"{to:?}\"]")));
        }
        assert_eq!(
            transition(ClientState::Disconnected, ClientTrigger::Welcome),
            None
        );
        assert_eq!(edges().count(), 26);
    }

    #[test]
    fn join_open_handshake_welcome() {
        let (mut c, now) = client();
        c.connect(now).unwrap();
        let token = c.token.clone();
        assert_eq!(token.len(), 32);
        assert_eq!(drain(&mut c)[1], ClientOutput::Join { session: token });
        c.handle_joined(now, JoinResult::Joined(TOKEN.into()))
            .unwrap();
        assert_eq!(drain(&mut c), vec![ClientOutput::Open]);
        c.handle_open(now).unwrap();
        let out = drain(&mut c);
        assert!(
            matches!(&out[1], ClientOutput::Send(s) if s.contains(TOKEN) && s.contains("\"JOIN\""))
        );
        assert_eq!(
            c.handle_message(now, Incoming::Relay),
            Ok(false),
            "nothing relayed before WELCOME"
        );
        c.handle_message(now, Incoming::Welcome).unwrap();
        assert_eq!(c.state(), ClientState::InRoom);
        assert_eq!(c.handle_message(now, Incoming::Relay), Ok(true));
    }

    #[test]
    fn a_call_survives_a_dropped_connection_with_the_same_token() {
        let (mut c, now) = client();
        up(&mut c, now);
        c.call_event(ClientTrigger::OfferSent).unwrap();
        c.call_event(ClientTrigger::AnswerReceived).unwrap();
        c.handle_closed(now, Some(1006));
        assert_eq!((c.state(), c.link()), (ClientState::InCall, Link::Down));
        assert_eq!(c.session(), Some(TOKEN));
        let retry = c.poll_timeout().unwrap();
        assert!(retry > now && retry <= now + Duration::from_millis(313));
        c.handle_timeout(retry);
        assert!(
            drain(&mut c).contains(&ClientOutput::Open),
            "reopens with the token, no new join"
        );
        c.handle_open(retry).unwrap();
        c.handle_message(retry, Incoming::Welcome).unwrap();
        assert_eq!((c.state(), c.link()), (ClientState::InCall, Link::Up));
    }

    #[test]
    fn an_expired_session_rejoins_and_a_full_call_gives_up() {
        let (mut c, now) = client();
        up(&mut c, now);
        c.handle_closed(now, Some(close_code::SESSION_EXPIRED));
        assert_eq!(c.session(), None);
        assert_eq!(c.state(), ClientState::Connecting);
        let t = c.poll_timeout().unwrap();
        c.handle_timeout(t);
        let again = ClientOutput::Join {
            session: TOKEN.into(),
        };
        assert!(drain(&mut c).contains(&again), "the same token again");
        c.handle_joined(t, JoinResult::Full).unwrap();
        assert_eq!(c.state(), ClientState::Disconnected);
        assert_eq!(c.poll_timeout(), None);
        assert!(drain(&mut c).contains(&ClientOutput::Event(ClientEvent::CallFull)));
    }

    #[test]
    fn every_waiting_step_has_a_deadline() {
        let (mut c, now) = client();
        c.connect(now).unwrap();
        for _ in 0..3 {
            let t = c.poll_timeout().expect("a deadline");
            c.handle_timeout(t);
            assert_eq!(c.link(), Link::Down);
            let t = c.poll_timeout().expect("a retry");
            c.handle_timeout(t);
        }
        c.handle_joined(now, JoinResult::Joined(TOKEN.into()))
            .unwrap();
        assert!(c.poll_timeout().is_some(), "opening");
        c.handle_open(now).unwrap();
        assert!(c.poll_timeout().is_some(), "handshaking");
        c.handle_message(now, Incoming::Welcome).unwrap();
        assert_eq!(
            c.poll_timeout(),
            Some(now + Duration::from_secs(60)),
            "idle"
        );
        // Back-off grows to its cap and resets on WELCOME.
        assert_eq!(c.attempt, 0);
    }

    #[test]
    fn going_away_reconnects_at_once() {
        let (mut c, now) = client();
        up(&mut c, now);
        c.handle_closed(now, Some(close_code::GOING_AWAY));
        assert_eq!(c.poll_timeout(), Some(now));
    }

    #[test]
    fn perfect_negotiation_on_glare() {
        let mut a: Negotiation<u8> = Negotiation::new("a", "b");
        let mut b: Negotiation<u8> = Negotiation::new("b", "a");
        assert!(!a.polite() && b.polite());
        assert!(a.begin_offer() && b.begin_offer());
        a.end_offer(true);
        b.end_offer(true);
        // Each gets the other's offer: the impolite ignores, the polite rolls back.
        assert_eq!(a.begin_remote(SdpKind::Offer), Decision::Ignore);
        assert_eq!(b.begin_remote(SdpKind::Offer), Decision::RollbackAndApply);
        assert_eq!(
            b.begin_remote(SdpKind::Offer),
            Decision::Queue,
            "one at a time"
        );
        assert_eq!(
            b.remote_candidate(7),
            None,
            "queued until the description is applied"
        );
        assert_eq!(b.end_remote(true), vec![7]);
        assert_eq!(a.begin_remote(SdpKind::Answer), Decision::Apply);
        a.end_remote(true);
        assert_eq!(a.signaling(), SignalingState::Stable);
        assert_eq!(a.remote_candidate(9), Some(9));
        assert_eq!(
            a.begin_remote(SdpKind::Answer),
            Decision::Ignore,
            "no offer out"
        );
    }
}
