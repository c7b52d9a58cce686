//! [`RoomClientModel`]: two members of one call, each the real [`RoomClient`] and the real
//! [`Negotiation`] of `icepact::room`, against the room service's real seat functions
//! (`icepact_signal::seats`) behind an abstract service, as a stateright [`Model`].
//!
//! The environment: the service answers joins, opens and handshakes in any order (each one
//! atomic step, as `Store::update` makes it); PINGs are answered (renewing the lease) or not (a
//! client that goes quiet loses its seat when the lease runs out); WebSockets drop; a service
//! instance crashes, with a shared store (seats survive) or the embedded one (every seat
//! forgotten); the clock advances one second at a time up to a horizon, and the clients' timers
//! fire when due. The members call each other (each may offer once, so both may at once: glare)
//! through `POST /signal`, which the service relays only to members connected at that moment.
//!
//! Properties:
//! - *no state outside the table*: every state change a client reports is an edge of
//!   `icepact::room::transition`;
//! - *one remote description at a time*: a member never applies a second remote description
//!   while one is being applied (perfect negotiation's queue);
//! - *no offer applied outside stable*: an offer is applied in `stable`, or after rolling the
//!   local one back on the polite side;
//! - *one seat per member*: a member never holds two live leases (ROOM_REJOIN: a token is
//!   replaced only once the service forgot it, or two-seat calls would fill up);
//! - *a live seat is never given up*: a member drops its token only when the service no longer
//!   has it (ROOM_REJOIN), so one that reconnects within its lease keeps its seat;
//! - *no silent wedge*: a member that is neither `Disconnected` nor up always has a request
//!   in flight or a timer armed (ROOM_DEADLINES, ROOM_RECONNECT);
//! - sometimes: both in the call; glare resolved by a rollback; back up and still in the call
//!   after a WebSocket drop; back in the call after an instance crash lost every seat; a seat
//!   lost to an expired lease and a new one taken.

use std::time::{Duration, Instant};

use icepact::room::{
    edges, ClientEvent, ClientOutput, ClientState, ClientTrigger, Decision, Incoming, JoinResult,
    Link, Negotiation, RoomClient, RoomConfig, SdpKind,
};
use icepact::{Backoff, Seed};
use icepact_signal::seats::{Millis, Seats, Token};
use stateright::{Model, Property};

/// One tick of the model's clock, in milliseconds.
pub const TICK: Millis = 1000;

/// The model's configuration.
#[derive(Clone, Debug)]
pub struct RoomClientModel {
    /// The seat lease, in ticks.
    pub lease_ticks: Millis,
    /// The clock stops here (ticks).
    pub horizon: Millis,
    /// WebSocket drops.
    pub drops: u8,
    /// Connections that go half-open (PONGs lost: the lease runs out).
    pub quiets: u8,
    /// Instance crashes (each with a shared or an embedded store).
    pub crashes: u8,
    /// Messages in flight at most (bounds the state space).
    pub max_inflight: usize,
    /// The service ignores the token a join proposes and draws a new one per join (seed 004's
    /// service as specified; without rule ROOM_ONE_TOKEN): *one seat per member* breaks.
    pub service_tokens: bool,
}

impl Default for RoomClientModel {
    /// A lease of 2 s, 3 s of time, one drop, one half-open connection, one instance crash.
    fn default() -> RoomClientModel {
        RoomClientModel {
            lease_ticks: 2,
            horizon: 3,
            drops: 1,
            quiets: 1,
            crashes: 1,
            max_inflight: 2,
            service_tokens: false,
        }
    }
}

/// What the service is doing for a member.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// Nothing.
    None,
    /// `GET /call?session=…` is on its way, proposing this token.
    Join(String),
    /// The WebSocket is opening.
    Open,
    /// The handshake is on its way (with this token).
    Handshake(String),
}

/// One member.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// The real client.
    pub client: RoomClient,
    /// The real negotiation with the other member.
    pub negotiation: Negotiation<()>,
    /// The service's side: what the client asked for and has no answer to yet.
    pub request: Request,
    /// The token of the member's handshaken WebSocket at the service, if one is open.
    pub socket: Option<String>,
    /// Remote descriptions being applied (the queue makes this at most one).
    pub applying: Vec<SdpKind>,
    /// Whether this member may still make its one offer.
    pub may_offer: bool,
    /// Its PONGs are lost (a half-open connection) until it handshakes again.
    pub quiet: bool,
    /// Every token the member ever proposed or was given.
    pub tokens: Vec<String>,
}

/// A state of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoomState {
    /// The store's seats of the call.
    pub seats: Seats,
    /// The clock, in milliseconds.
    pub now: Millis,
    /// The two members.
    pub members: [Member; 2],
    /// Descriptions on their way: (to, kind).
    pub inflight: Vec<(usize, SdpKind)>,
    /// Drops left.
    pub drops: u8,
    /// Half-open connections left.
    pub quiets: u8,
    /// Crashes left.
    pub crashes: u8,
    /// Violations and sightings recorded by steps.
    pub flags: Flags,
}

/// What steps saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// A state change that is not an edge.
    pub off_table: bool,
    /// An offer applied outside stable without a rollback.
    pub offer_outside_stable: bool,
    /// A member dropped a token the service still held.
    pub live_seat_dropped: bool,
    /// A glare resolved by a rollback.
    pub rolled_back: bool,
    /// A member came back up in a call after a drop.
    pub call_survived_drop: bool,
    /// A member came back up in a call after an instance crash lost every seat.
    pub call_survived_store_loss: bool,
    /// A member lost its seat to an expired lease and took a new one.
    pub rejoined_after_expiry: bool,
    /// A WebSocket dropped (since the member was last up).
    pub dropped: [bool; 2],
    /// The store was lost (since the member was last up).
    pub store_lost: [bool; 2],
    /// The member's lease expired (since it last joined).
    pub expired: [bool; 2],
}

/// What happens next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoomAction {
    /// The service answers member `i`'s pending request.
    Serve(usize),
    /// Member `i`'s connection goes half-open: its PONGs stop reaching the service.
    Quiet(usize),
    /// Member `i`'s WebSocket drops.
    Drop(usize),
    /// A service instance crashes; `store_lost` for the embedded store.
    Crash {
        /// Every seat is forgotten.
        store_lost: bool,
    },
    /// Member `i`'s timer fires.
    Timer(usize),
    /// One tick passes; the service PINGs every connected member and renews the lease of
    /// each that answers (or closes with 4001 a member whose lease ran out).
    Tick,
    /// Member `i` calls (makes its offer).
    Offer(usize),
    /// The next description to member `i` arrives.
    Deliver(usize),
    /// Member `i` finished applying a remote description.
    Applied(usize),
}

fn config() -> RoomConfig {
    let mut c = RoomConfig::default();
    // No jitter: the model's time is in whole ticks, and jitter only spreads retries.
    let mut b = Backoff::default();
    b.initial = Duration::from_millis(500);
    b.multiplier_permille = 2000;
    b.jitter_permille = 0;
    b.max = Duration::from_secs(2);
    c.backoff = b;
    c.deadline = Duration::from_secs(2);
    c.idle = None;
    c
}

fn base() -> Instant {
    // One fixed instant for every state (states must compare equal across runs).
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn at(now: Millis) -> Instant {
    base() + Duration::from_millis(now)
}

impl RoomState {
    fn live(&self, t: &str) -> bool {
        self.seats.is_member(self.now, &Token::from_raw(t))
    }
}

impl RoomClientModel {
    fn lease(&self) -> Millis {
        self.lease_ticks * TICK
    }

    /// Drains member `i`'s outputs into the service's view and the flags.
    fn drain(&self, s: &mut RoomState, i: usize) {
        while let Some(out) = s.members[i].client.poll_output() {
            match out {
                ClientOutput::Join { session } => {
                    if !s.members[i].tokens.contains(&session) {
                        s.members[i].tokens.push(session.clone());
                    }
                    s.members[i].request = Request::Join(session);
                }
                ClientOutput::Open => s.members[i].request = Request::Open,
                ClientOutput::Send(text) => {
                    let tok = s.members[i].client.session().unwrap_or_default().to_owned();
                    debug_assert!(text.contains(&tok));
                    s.members[i].request = Request::Handshake(tok);
                }
                ClientOutput::Close => {
                    s.members[i].socket = None;
                    if matches!(s.members[i].request, Request::Open | Request::Handshake(_)) {
                        s.members[i].request = Request::None;
                    }
                }
                ClientOutput::Event(ClientEvent::StateChanged { from, to })
                    if !edges().any(|(f, _, t)| f == from && t == to) =>
                {
                    s.flags.off_table = true;
                }
                _ => {}
            }
        }
    }

    fn before(&self, s: &RoomState, i: usize) -> Option<String> {
        s.members[i].client.session().map(str::to_owned)
    }

    /// Records a token given up while the service still held it.
    fn after(&self, s: &mut RoomState, i: usize, token_before: Option<String>) {
        if let Some(t) = token_before {
            if s.members[i].client.session() != Some(t.as_str()) && s.live(&t) {
                s.flags.live_seat_dropped = true;
            }
        }
        let m = &s.members[i];
        if m.client.link() == Link::Up && m.client.state().in_call() {
            if s.flags.dropped[i] {
                s.flags.call_survived_drop = true;
            }
            if s.flags.store_lost[i] {
                s.flags.call_survived_store_loss = true;
            }
        }
        if m.client.link() == Link::Up {
            s.flags.dropped[i] = false;
            s.flags.store_lost[i] = false;
        }
    }

    fn publish(&self, s: &mut RoomState, from: usize, kind: SdpKind) {
        let Some(t) = s.members[from].client.session().map(str::to_owned) else {
            return;
        };
        if !s.live(&t) {
            // 409: ROOM_REJOIN.
            let now = at(s.now);
            s.members[from].client.handle_publish_refused(now);
            return;
        }
        let to = 1 - from;
        // Relayed only to a member connected now (the service stores nothing).
        if s.members[to].socket.is_some() && s.inflight.len() < self.max_inflight {
            s.inflight.push((to, kind));
        }
    }
}

impl Model for RoomClientModel {
    type State = RoomState;
    type Action = RoomAction;

    fn init_states(&self) -> Vec<RoomState> {
        let member = |i: u8, local: &str, remote: &str| {
            let mut client =
                RoomClient::new("demo", config(), Seed::insecure_from_u64(u64::from(i)))
                    .expect("a valid call name");
            client.connect(at(0)).expect("an edge from Disconnected");
            Member {
                client,
                negotiation: Negotiation::new(local, remote),
                request: Request::None,
                socket: None,
                applying: Vec::new(),
                may_offer: true,
                quiet: false,
                tokens: Vec::new(),
            }
        };
        let mut s = RoomState {
            seats: Seats::default(),
            now: 0,
            members: [member(0, "a", "b"), member(1, "b", "a")],
            inflight: Vec::new(),
            drops: self.drops,
            quiets: self.quiets,
            crashes: self.crashes,
            flags: Flags::default(),
        };
        self.drain(&mut s, 0);
        self.drain(&mut s, 1);
        vec![s]
    }

    fn actions(&self, s: &RoomState, actions: &mut Vec<RoomAction>) {
        let now = at(s.now);
        for (i, m) in s.members.iter().enumerate() {
            if m.request != Request::None {
                actions.push(RoomAction::Serve(i));
            }
            if m.socket.is_some() {
                if s.drops > 0 {
                    actions.push(RoomAction::Drop(i));
                }
                if s.quiets > 0 && !m.quiet {
                    actions.push(RoomAction::Quiet(i));
                }
            }
            if m.client.poll_timeout().is_some_and(|t| t <= now) {
                actions.push(RoomAction::Timer(i));
            }
            if m.may_offer && m.client.state() == ClientState::InRoom {
                actions.push(RoomAction::Offer(i));
            }
            if s.inflight.iter().any(|(to, _)| *to == i) {
                actions.push(RoomAction::Deliver(i));
            }
            if !m.applying.is_empty() {
                actions.push(RoomAction::Applied(i));
            }
        }
        if s.crashes > 0 && s.members.iter().any(|m| m.socket.is_some()) {
            actions.push(RoomAction::Crash { store_lost: false });
            actions.push(RoomAction::Crash { store_lost: true });
        }
        if s.now < self.horizon * TICK {
            actions.push(RoomAction::Tick);
        }
    }

    fn next_state(&self, last: &RoomState, action: RoomAction) -> Option<RoomState> {
        let mut s = last.clone();
        let now = at(s.now);
        match action {
            RoomAction::Serve(i) => {
                let before = self.before(&s, i);
                match std::mem::replace(&mut s.members[i].request, Request::None) {
                    Request::None => {}
                    Request::Join(proposed) => {
                        let t = if self.service_tokens {
                            // A fresh token per join, as the service draws them.
                            let t = format!("{:032x}", (i << 8) | s.members[i].tokens.len());
                            s.members[i].tokens.push(t.clone());
                            t
                        } else {
                            proposed
                        };
                        let ok = s
                            .seats
                            .join(s.now, 2, Token::from_raw(&t), self.lease())
                            .is_ok();
                        let result = if ok {
                            if s.flags.expired[i] {
                                s.flags.rejoined_after_expiry = true;
                                s.flags.expired[i] = false;
                            }
                            JoinResult::Joined(t)
                        } else {
                            JoinResult::Full
                        };
                        let _ = s.members[i].client.handle_joined(now, result);
                    }
                    Request::Open => {
                        let _ = s.members[i].client.handle_open(now);
                    }
                    Request::Handshake(t) => {
                        if s.seats
                            .renew(s.now, &Token::from_raw(&t), self.lease())
                            .is_ok()
                        {
                            s.members[i].socket = Some(t);
                            s.members[i].quiet = false;
                            let _ = s.members[i].client.handle_message(now, Incoming::Welcome);
                        } else {
                            s.members[i].client.handle_closed(now, Some(4001));
                        }
                    }
                }
                self.drain(&mut s, i);
                self.after(&mut s, i, before);
            }
            RoomAction::Quiet(i) => {
                s.quiets -= 1;
                s.members[i].quiet = true;
            }
            RoomAction::Drop(i) => {
                s.drops -= 1;
                s.members[i].socket = None;
                s.flags.dropped[i] = true;
                if matches!(s.members[i].request, Request::Handshake(_)) {
                    s.members[i].request = Request::None;
                }
                let before = self.before(&s, i);
                s.members[i].client.handle_closed(now, None);
                self.drain(&mut s, i);
                self.after(&mut s, i, before);
            }
            RoomAction::Crash { store_lost } => {
                s.crashes -= 1;
                if store_lost {
                    s.seats = Seats::default();
                }
                for i in 0..2 {
                    let before = self.before(&s, i);
                    if s.members[i].socket.take().is_some() {
                        s.flags.dropped[i] = true;
                        s.flags.store_lost[i] |= store_lost;
                        s.members[i].client.handle_closed(now, None);
                    }
                    self.drain(&mut s, i);
                    self.after(&mut s, i, before);
                }
            }
            RoomAction::Timer(i) => {
                let before = self.before(&s, i);
                s.members[i].client.handle_timeout(now);
                self.drain(&mut s, i);
                self.after(&mut s, i, before);
            }
            RoomAction::Tick => {
                s.now += TICK;
                let now = at(s.now);
                for i in 0..2 {
                    if let Some(t) = s.members[i].client.session().map(str::to_owned) {
                        if !s.live(&t) {
                            s.flags.expired[i] = true;
                        }
                    }
                    let Some(t) = s.members[i].socket.clone() else {
                        continue;
                    };
                    let before = self.before(&s, i);
                    // The service's PING: a member whose lease ran out is closed with 4001;
                    // the others are PINGed and, unless quiet, renew with their PONG.
                    if !s.live(&t) {
                        s.members[i].socket = None;
                        s.members[i].client.handle_closed(now, Some(4001));
                    } else if !s.members[i].quiet {
                        let _ = s.seats.renew(s.now, &Token::from_raw(&t), self.lease());
                        s.members[i].client.handle_frame(now);
                    }
                    self.drain(&mut s, i);
                    self.after(&mut s, i, before);
                }
            }
            RoomAction::Offer(i) => {
                s.members[i].may_offer = false;
                if !s.members[i].negotiation.begin_offer() {
                    return None;
                }
                s.members[i].negotiation.end_offer(true);
                let _ = s.members[i].client.call_event(ClientTrigger::OfferSent);
                let before = self.before(&s, i);
                self.publish(&mut s, i, SdpKind::Offer);
                self.drain(&mut s, i);
                self.after(&mut s, i, before);
            }
            RoomAction::Deliver(i) => {
                let k = s.inflight.iter().position(|(to, _)| *to == i)?;
                let kind = s.inflight[k].1;
                let stable =
                    s.members[i].negotiation.signaling() == icepact::room::SignalingState::Stable;
                match s.members[i].negotiation.begin_remote(kind) {
                    Decision::Queue => return None,
                    Decision::Ignore => {}
                    Decision::Apply => {
                        if kind == SdpKind::Offer && !stable {
                            s.flags.offer_outside_stable = true;
                        }
                        s.members[i].applying.push(kind);
                    }
                    Decision::RollbackAndApply => {
                        s.flags.rolled_back = true;
                        s.members[i].applying.push(kind);
                    }
                }
                s.inflight.remove(k);
            }
            RoomAction::Applied(i) => {
                let kind = s.members[i].applying.remove(0);
                s.members[i].negotiation.end_remote(true);
                let before = self.before(&s, i);
                match kind {
                    SdpKind::Offer => {
                        let _ = s.members[i].client.call_event(ClientTrigger::OfferReceived);
                        self.publish(&mut s, i, SdpKind::Answer);
                    }
                    SdpKind::Answer => {
                        let _ = s.members[i]
                            .client
                            .call_event(ClientTrigger::AnswerReceived);
                    }
                }
                self.drain(&mut s, i);
                self.after(&mut s, i, before);
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no state outside the table", |_, s: &RoomState| {
                !s.flags.off_table
            }),
            Property::always("one remote description at a time", |_, s: &RoomState| {
                s.members.iter().all(|m| m.applying.len() <= 1)
            }),
            Property::always("no offer applied outside stable", |_, s: &RoomState| {
                !s.flags.offer_outside_stable
            }),
            Property::always("one seat per member", |_, s: &RoomState| {
                s.members
                    .iter()
                    .all(|m| m.tokens.iter().filter(|t| s.live(t)).count() <= 1)
            }),
            Property::always("a live seat is never given up", |_, s: &RoomState| {
                !s.flags.live_seat_dropped
            }),
            Property::always("no silent wedge", |_, s: &RoomState| {
                s.members.iter().all(|m| {
                    m.client.state() == ClientState::Disconnected
                        || m.client.link() == Link::Up
                        || m.request != Request::None
                        || m.client.poll_timeout().is_some()
                })
            }),
            Property::sometimes("both in the call", |_, s: &RoomState| {
                s.members
                    .iter()
                    .all(|m| m.client.state() == ClientState::InCall)
            }),
            Property::sometimes("glare resolved by a rollback", |_, s: &RoomState| {
                s.flags.rolled_back
            }),
            Property::sometimes(
                "in the call and up again after a drop",
                |_, s: &RoomState| s.flags.call_survived_drop,
            ),
            Property::sometimes(
                "in the call and up again after the store was lost",
                |_, s: &RoomState| s.flags.call_survived_store_loss,
            ),
            Property::sometimes("a new seat after an expired lease", |_, s: &RoomState| {
                s.flags.rejoined_after_expiry
            }),
        ]
    }
}

/// The rule each property checks.
fn rule_of(property: &str) -> &'static str {
    match property {
        "no state outside the table" => "client table",
        "one remote description at a time" | "no offer applied outside stable" => {
            "perfect negotiation"
        }
        "one seat per member" => "ROOM_ONE_TOKEN",
        "a live seat is never given up" => "ROOM_REJOIN",
        "no silent wedge" => "ROOM_DEADLINES",
        _ => "sanity",
    }
}

/// Checks the model exhaustively (breadth-first) and returns a row per property.
pub fn check(model: &RoomClientModel) -> Vec<crate::VerdictRow> {
    use crate::bfs::{search, Limits};
    let out = search(model, &Limits::default());
    let config = format!(
        "2 members, lease {} s, horizon {} s, {} drop, {} half-open, {} instance crash (shared or embedded store){}",
        model.lease_ticks,
        model.horizon,
        model.drops,
        model.quiets,
        model.crashes,
        if model.service_tokens {
            ", a token per join (without ROOM_ONE_TOKEN)"
        } else {
            ""
        }
    );
    crate::rows_of(model, &out, &config, rule_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bfs::{search, Limits};

    #[test]
    fn the_room_client_holds_exhaustively() {
        let m = RoomClientModel::default();
        let out = search(&m, &Limits::default());
        assert!(out.exhaustive);
        for p in m.properties() {
            let found = out.discoveries.contains_key(p.name);
            match p.expectation {
                stateright::Expectation::Always => {
                    assert!(!found, "{} violated: {:?}", p.name, out.discoveries[p.name])
                }
                _ => assert!(found, "{} not found", p.name),
            }
        }
        assert_eq!((out.unique_states, out.max_depth), (608_758, 39));

        // Without ROOM_ONE_TOKEN a join whose answer came too late leaves an orphan seat, and
        // the retry takes a second one.
        let broken = RoomClientModel {
            service_tokens: true,
            ..RoomClientModel::default()
        };
        let out = search(
            &broken,
            &Limits {
                stop_on: Some("one seat per member"),
                ..Limits::default()
            },
        );
        // Member 0's join is on its way when its 2 s deadline passes; the service then takes a
        // seat for it (the answer is ignored: the client gave up on it); the retry takes a second.
        use RoomAction::{Serve, Tick, Timer};
        assert_eq!(
            out.discoveries["one seat per member"],
            vec![Tick, Tick, Timer(0), Serve(0), Tick, Timer(0), Serve(0)]
        );
    }
}
