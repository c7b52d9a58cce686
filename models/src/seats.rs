//! [`SeatModel`]: the room signaling service's seats (`icepact_signal::seats`, the real
//! functions) over an abstract atomic store, as a stateright [`Model`].
//!
//! Every action of a client is one atomic store update, as `Store::update` makes it (a lock, or
//! a compare-and-set on Redis), so requests through several service instances interleave
//! exactly as these actions do; an instance holds no seat state of its own, and its crash drops
//! the WebSockets of the clients connected through it. The environment: clients join
//! (`GET /call`), open their WebSocket (the handshake renews the lease), answer PINGs (each
//! PONG renews it) or stop answering, crash for good, lose their connection when an instance
//! crashes and rejoin with their token; the clock advances by one tick at a time up to a
//! horizon.
//!
//! Properties:
//! - *at most N holders*: never more live leases than seats (SEAT_CAPACITY);
//! - *a renewed lease is kept*: a client whose last join or renewal granted it a lease that has
//!   not run out holds its seat (SEAT_LEASE);
//! - *a dead holder's seat frees in time*: no seat outlives the lease its holder was last
//!   granted, so a crashed client's seat is free once that lease ran out (SEAT_LEASE);
//! - *no expired token renews*: a renewal succeeds only for a token whose lease lives
//!   (SEAT_TOKEN);
//! - sometimes: every seat taken; a seat taken over from a crashed client; a client back on
//!   its seat after an instance crash.

use icepact_signal::seats::{Millis, SeatError, Seats, Token};
use stateright::{Model, Property};

/// The seat model's configuration.
#[derive(Clone, Debug)]
pub struct SeatModel {
    /// Clients (each with its own token).
    pub clients: usize,
    /// Seats of the call.
    pub capacity: usize,
    /// The lease, in ticks.
    pub lease: Millis,
    /// The clock stops here.
    pub horizon: Millis,
    /// Client crashes (for good).
    pub crashes: u8,
    /// Instance crashes (every connected client loses its WebSocket).
    pub instance_crashes: u8,
    /// Renew with [`Seats::renew_unchecked`] (deliberately broken) instead of
    /// [`Seats::renew`].
    pub broken: bool,
}

impl Default for SeatModel {
    /// Three clients for two seats, a lease of three ticks, a horizon of eight, one client
    /// crash and one instance crash.
    fn default() -> SeatModel {
        SeatModel {
            clients: 3,
            capacity: 2,
            lease: 3,
            horizon: 8,
            crashes: 1,
            instance_crashes: 1,
            broken: false,
        }
    }
}

/// Where a client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Conn {
    /// No seat (not joined yet, or told its session expired).
    Out,
    /// Joined (a token), no WebSocket open.
    Joined,
    /// WebSocket open: answering PINGs.
    Connected,
    /// Crashed for good.
    Dead,
}

/// One client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    /// Where it is.
    pub conn: Conn,
    /// The end of the lease its last successful join or renewal granted.
    pub granted_until: Option<Millis>,
}

/// A state of the seat model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeatState {
    /// The store's value for the call.
    pub seats: Seats,
    /// The clock.
    pub now: Millis,
    /// The clients.
    pub clients: Vec<Client>,
    /// Client crashes left.
    pub crashes: u8,
    /// Instance crashes left.
    pub instance_crashes: u8,
    /// A renewal succeeded for an expired lease.
    pub expired_renewed: bool,
    /// A client took a seat while a crashed client had held one.
    pub taken_over: bool,
    /// A client got back on its seat after an instance crash.
    pub rejoined: bool,
}

/// What happens next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeatAction {
    /// `GET /call`: client `i` asks for a seat.
    Join(usize),
    /// Client `i` opens its WebSocket: the handshake renews its lease.
    Handshake(usize),
    /// Client `i` answers a PING: the PONG renews its lease.
    Pong(usize),
    /// One tick passes.
    Tick,
    /// Client `i` crashes for good.
    Crash(usize),
    /// A service instance crashes: every connected client loses its WebSocket.
    InstanceCrash,
}

/// The token of client `i`.
fn token(i: usize) -> Token {
    Token::from_raw(&format!("client-{i}"))
}

impl SeatModel {
    fn renew(&self, seats: &mut Seats, now: Millis, t: &Token) -> Result<(), SeatError> {
        if self.broken {
            seats.renew_unchecked(now, t, self.lease)
        } else {
            seats.renew(now, t, self.lease)
        }
    }
}

impl Model for SeatModel {
    type State = SeatState;
    type Action = SeatAction;

    fn init_states(&self) -> Vec<SeatState> {
        vec![SeatState {
            seats: Seats::default(),
            now: 0,
            clients: vec![
                Client {
                    conn: Conn::Out,
                    granted_until: None
                };
                self.clients
            ],
            crashes: self.crashes,
            instance_crashes: self.instance_crashes,
            expired_renewed: false,
            taken_over: false,
            rejoined: false,
        }]
    }

    fn actions(&self, s: &SeatState, actions: &mut Vec<SeatAction>) {
        for (i, c) in s.clients.iter().enumerate() {
            match c.conn {
                Conn::Out => actions.push(SeatAction::Join(i)),
                Conn::Joined => actions.push(SeatAction::Handshake(i)),
                Conn::Connected => actions.push(SeatAction::Pong(i)),
                Conn::Dead => {}
            }
            if c.conn != Conn::Dead && c.granted_until.is_some() && s.crashes > 0 {
                actions.push(SeatAction::Crash(i));
            }
        }
        if s.now < self.horizon {
            actions.push(SeatAction::Tick);
        }
        if s.instance_crashes > 0 && s.clients.iter().any(|c| c.conn == Conn::Connected) {
            actions.push(SeatAction::InstanceCrash);
        }
    }

    fn next_state(&self, last: &SeatState, action: SeatAction) -> Option<SeatState> {
        let mut s = last.clone();
        let now = s.now;
        match action {
            SeatAction::Join(i) => {
                let dead_held = s
                    .clients
                    .iter()
                    .any(|c| c.conn == Conn::Dead && c.granted_until.is_some());
                if s.seats
                    .join(now, self.capacity, token(i), self.lease)
                    .is_ok()
                {
                    s.clients[i].conn = Conn::Joined;
                    s.clients[i].granted_until = Some(now + self.lease);
                    s.taken_over |= dead_held && s.seats.holders(now) == self.capacity;
                }
            }
            SeatAction::Handshake(i) | SeatAction::Pong(i) => {
                let granted = s.clients[i].granted_until;
                let t = token(i);
                let ok = self.renew(&mut s.seats, now, &t).is_ok();
                if ok {
                    s.expired_renewed |= granted.is_none_or(|g| g <= now);
                    s.rejoined |= matches!(action, SeatAction::Handshake(_))
                        && s.instance_crashes < self.instance_crashes;
                    s.clients[i].conn = Conn::Connected;
                    s.clients[i].granted_until = Some(now + self.lease);
                } else {
                    // The server closes with "session expired": the client starts over.
                    s.clients[i].conn = Conn::Out;
                    s.clients[i].granted_until = None;
                }
            }
            SeatAction::Tick => s.now += 1,
            SeatAction::Crash(i) => {
                s.crashes -= 1;
                s.clients[i].conn = Conn::Dead;
            }
            SeatAction::InstanceCrash => {
                s.instance_crashes -= 1;
                for c in &mut s.clients {
                    if c.conn == Conn::Connected {
                        c.conn = Conn::Joined;
                    }
                }
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("at most N holders", |m: &SeatModel, s: &SeatState| {
                s.seats.holders(s.now) <= m.capacity
            }),
            Property::always("a renewed lease is kept", |_, s: &SeatState| {
                s.clients.iter().enumerate().all(|(i, c)| {
                    c.conn == Conn::Dead
                        || c.granted_until.is_none_or(|g| g <= s.now)
                        || s.seats.is_member(s.now, &token(i))
                })
            }),
            Property::always("a dead holder's seat frees in time", |_, s: &SeatState| {
                s.clients.iter().enumerate().all(|(i, c)| {
                    !s.seats.is_member(s.now, &token(i))
                        || c.granted_until.is_some_and(|g| g > s.now)
                })
            }),
            Property::always("no expired token renews", |_, s: &SeatState| {
                !s.expired_renewed
            }),
            Property::sometimes("every seat taken", |m: &SeatModel, s: &SeatState| {
                s.seats.holders(s.now) == m.capacity
            }),
            Property::sometimes(
                "seat taken over from a crashed client",
                |_, s: &SeatState| s.taken_over,
            ),
            Property::sometimes(
                "back on its seat after an instance crash",
                |_, s: &SeatState| s.rejoined,
            ),
        ]
    }
}

/// The rule each property checks.
fn rule_of(property: &str) -> &'static str {
    match property {
        "at most N holders" => "SEAT_CAPACITY",
        "a renewed lease is kept" | "a dead holder's seat frees in time" => "SEAT_LEASE",
        "no expired token renews" => "SEAT_TOKEN",
        _ => "sanity",
    }
}

/// Checks the seat model exhaustively (breadth-first: counterexamples are shortest) and returns
/// a row per property.
pub fn check(model: &SeatModel) -> Vec<crate::VerdictRow> {
    use crate::bfs::{search, Limits};
    let out = search(model, &Limits::default());
    let config = format!(
        "{} clients, {} seats, lease {} ticks, horizon {}, {} crash, {} instance crash{}",
        model.clients,
        model.capacity,
        model.lease,
        model.horizon,
        model.crashes,
        model.instance_crashes,
        if model.broken {
            ", renewal unchecked (broken)"
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
    fn the_seat_protocol_holds_exhaustively_and_the_broken_renewal_is_found() {
        let m = SeatModel::default();
        let out = search(&m, &Limits::default());
        assert!(out.exhaustive);
        assert_eq!((out.unique_states, out.max_depth), (121_221, 19));
        for p in [
            "at most N holders",
            "a renewed lease is kept",
            "a dead holder's seat frees in time",
            "no expired token renews",
        ] {
            assert!(!out.discoveries.contains_key(p), "{p} violated");
        }
        for p in [
            "every seat taken",
            "seat taken over from a crashed client",
            "back on its seat after an instance crash",
        ] {
            assert!(out.discoveries.contains_key(p), "{p} not found");
        }
        let broken = SeatModel {
            broken: true,
            ..SeatModel::default()
        };
        let out = search(&broken, &Limits::default());
        // A joins at 0 (lease until 3), B at 1 (until 4); at 3 A's lease has run out and C
        // takes its seat; A's late handshake takes it back: three holders of two seats.
        let path = &out.discoveries["at most N holders"];
        assert_eq!(
            path,
            &[
                SeatAction::Join(0),
                SeatAction::Tick,
                SeatAction::Join(1),
                SeatAction::Tick,
                SeatAction::Tick,
                SeatAction::Join(2),
                SeatAction::Handshake(0),
            ],
            "the shortest counterexample: an expired token takes its seat back"
        );
    }
}
