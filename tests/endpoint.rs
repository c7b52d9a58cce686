//! The sans-IO [`Endpoint`]: sessions added and removed at any time, envelopes routed by sender
//! and checked before they are opened, one output queue and one timer for all sessions.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use icepact::reference_agent::{AgentKind, ReferenceAgent};
use icepact::wire::SecretKey;
use icepact::{
    ConnectionState, Disposition, Endpoint, EndpointConfig, EndpointError, EndpointOutput,
    PublicKey, Refusal, Seed,
};

/// Endpoints on one lossless signaling backend, each session with a reference agent; agents
/// told to connect to each other connect.
struct Mesh {
    now: Instant,
    endpoints: BTreeMap<PublicKey, Endpoint>,
    agents: BTreeMap<(PublicKey, PublicKey), ReferenceAgent>,
    /// Envelopes in flight: (to, bytes).
    wire: VecDeque<(PublicKey, Vec<u8>)>,
    /// Every envelope ever sent, for replays.
    sent: Vec<(PublicKey, Vec<u8>)>,
}

fn secret(n: u8) -> SecretKey {
    SecretKey::from_bytes([n; 32])
}

impl Mesh {
    fn new(nodes: &[u8]) -> Mesh {
        Mesh::with(nodes, EndpointConfig::default())
    }

    fn with(nodes: &[u8], config: EndpointConfig) -> Mesh {
        let now = Instant::now();
        let endpoints = nodes
            .iter()
            .map(|&n| {
                let ep = Endpoint::new(
                    config,
                    secret(n),
                    1_000,
                    Seed::insecure_from_u64(u64::from(n)),
                );
                (ep.local_key(), ep)
            })
            .collect();
        Mesh {
            now,
            endpoints,
            agents: BTreeMap::new(),
            wire: VecDeque::new(),
            sent: Vec::new(),
        }
    }

    fn key(n: u8) -> PublicKey {
        secret(n).public_key()
    }

    fn ep(&mut self, n: u8) -> &mut Endpoint {
        self.endpoints.get_mut(&Self::key(n)).expect("endpoint")
    }

    /// Adds a session between `a` and `b` on both sides.
    fn link(&mut self, a: u8, b: u8) {
        let now = self.now;
        self.ep(a).add_peer(now, Self::key(b)).unwrap();
        self.ep(b).add_peer(now, Self::key(a)).unwrap();
        self.drain();
    }

    /// Carries out every output of every endpoint.
    /// Delivers the envelopes on the wire and nothing else (no agent work, so nothing
    /// connects and admission slots stay taken).
    fn deliver_envelopes(&mut self) {
        while let Some((to, bytes)) = self.wire.pop_front() {
            let now = self.now;
            let _ = self
                .endpoints
                .get_mut(&to)
                .unwrap()
                .handle_envelope(now, &bytes);
            self.drain();
        }
    }

    fn drain(&mut self) {
        let keys: Vec<PublicKey> = self.endpoints.keys().copied().collect();
        for local in keys {
            while let Some(out) = self.endpoints.get_mut(&local).unwrap().poll_output() {
                match out {
                    EndpointOutput::Agent { remote, command } => {
                        let agent = self
                            .agents
                            .entry((local, remote))
                            .or_insert_with(|| ReferenceAgent::new(AgentKind::Libwebrtc, 1));
                        agent
                            .handle_command(command, |_| None)
                            .expect("the endpoint keeps the agent contract");
                    }
                    EndpointOutput::Event { .. } => {}
                    other => panic!("unknown output {other:?}"),
                }
            }
            while let Some(t) = self.endpoints.get_mut(&local).unwrap().poll_transmit() {
                self.sent.push((t.to, t.envelope.clone()));
                self.wire.push_back((t.to, t.envelope));
            }
        }
    }

    /// One step: an envelope, else an agent report, else agents meeting, else a timer. False
    /// when nothing is left.
    fn step(&mut self) -> bool {
        let now = self.now;
        if let Some((to, bytes)) = self.wire.pop_front() {
            if let Some(ep) = self.endpoints.get_mut(&to) {
                let _ = ep.handle_envelope(now, &bytes);
            }
            self.drain();
            return true;
        }
        let pending = self
            .agents
            .iter()
            .find(|(_, a)| a.has_events())
            .map(|(k, _)| *k);
        if let Some((local, remote)) = pending {
            let (id, event) = self
                .agents
                .get_mut(&(local, remote))
                .unwrap()
                .poll_event()
                .unwrap();
            if let Some(ep) = self.endpoints.get_mut(&local) {
                // Reports of a removed session's agent have no session to go to.
                let _ = ep.handle_agent_event(now, remote, id, event);
            }
            self.drain();
            return true;
        }
        let pairs: Vec<(PublicKey, PublicKey)> = self.agents.keys().copied().collect();
        for (a, b) in pairs {
            let (Some(x), Some(y)) = (self.agents.get(&(a, b)), self.agents.get(&(b, a))) else {
                continue;
            };
            let checking = |r: &ReferenceAgent| {
                r.live()
                    .is_some_and(|l| l.phase == icepact::reference_agent::Phase::Checking)
            };
            if x.told_to_meet(y) && checking(x) && checking(y) {
                self.agents.get_mut(&(a, b)).unwrap().pair_found();
                self.agents.get_mut(&(b, a)).unwrap().pair_found();
                return true;
            }
        }
        let next = self
            .endpoints
            .values()
            .filter_map(Endpoint::poll_timeout)
            .min();
        let Some(t) = next else { return false };
        // The test moves the clock by hand too: a deadline it jumped over fires now.
        let t = t.max(self.now);
        self.now = t;
        for ep in self.endpoints.values_mut() {
            ep.handle_timeout(t).unwrap();
            assert!(
                ep.poll_timeout().is_none_or(|next| next > t),
                "timer at or before now"
            );
        }
        self.drain();
        true
    }

    fn state(&self, a: u8, b: u8) -> Option<ConnectionState> {
        self.endpoints[&Self::key(a)]
            .peer(&Self::key(b))
            .map(|p| p.state())
    }

    fn connected(&self, a: u8, b: u8) -> bool {
        self.state(a, b).is_some_and(|s| s.is_connected())
            && self.state(b, a).is_some_and(|s| s.is_connected())
    }

    fn run_until(&mut self, mut done: impl FnMut(&Mesh) -> bool) {
        for _ in 0..100_000 {
            if done(self) {
                return;
            }
            assert!(self.step(), "nothing left to do before the goal");
        }
        panic!("no progress in 100,000 steps");
    }

    fn restarts(&self, a: u8, b: u8) -> u32 {
        self.endpoints[&Self::key(a)]
            .peer(&Self::key(b))
            .map_or(0, |p| p.restarts())
    }
}

/// Rule ADMISSION: with one establishing session allowed per endpoint, a full mesh of five
/// comes up in waves (never two sessions establishing at once on one endpoint), with no
/// restart and no deadlock; the descriptions that waited were held, not lost, and the waiting
/// sessions' re-sends were held back (ADMISSION_QUIET).
#[test]
fn admission_brings_a_mesh_up_in_waves() {
    let mut config = EndpointConfig::default();
    config.max_establishing = 1;
    let nodes = [1, 2, 3, 4, 5];
    let mut m = Mesh::with(&nodes, config);
    for a in nodes {
        for b in nodes {
            if a < b {
                m.link(a, b);
            }
        }
    }
    let mut max_slots = 0;
    let mut waited = 0;
    for _ in 0..100_000 {
        for ep in m.endpoints.values() {
            let (slots, waiting) = ep.admission();
            max_slots = max_slots.max(slots);
            waited = waited.max(waiting);
        }
        let all = nodes
            .iter()
            .all(|&a| nodes.iter().all(|&b| a == b || m.connected(a, b)));
        if all {
            break;
        }
        assert!(m.step(), "nothing left to do before the mesh is up");
    }
    assert!(nodes
        .iter()
        .all(|&a| nodes.iter().all(|&b| a == b || m.connected(a, b))));
    assert_eq!(max_slots, 1, "one session establishing at a time");
    assert!(waited >= 2, "sessions waited their turn ({waited})");
    let (mut held, mut quieted) = (0, 0);
    for a in nodes {
        for b in nodes {
            if a != b {
                assert_eq!(m.restarts(a, b), 0, "{a}-{b}");
                let stats = m.endpoints[&Mesh::key(a)].stats(&Mesh::key(b)).unwrap();
                held += stats.held;
                quieted += stats.quieted;
            }
        }
    }
    assert!(
        held > 0,
        "descriptions were held while their sessions waited"
    );
    // Nothing waited long enough here for a re-send (ADMISSION_QUIET, next test).
    assert_eq!(quieted, 0);
}

/// Node 1 with one admission slot and sessions with nodes 2 and 3, after the first envelopes
/// (no agent work): one session holds the slot, the other (returned) waits and holds its
/// remote's description.
fn node_1_with_one_slot_and_a_waiting_session() -> (Mesh, u8) {
    let mut config = EndpointConfig::default();
    config.max_establishing = 1;
    let mut m = Mesh::with(&[1, 2, 3], config);
    m.link(1, 2);
    m.link(1, 3);
    m.deliver_envelopes();
    assert_eq!(m.ep(1).admission(), (1, 1));
    let waiting = [2, 3]
        .into_iter()
        .find(|&n| {
            let stats = m.ep(1).stats(&Mesh::key(n)).unwrap();
            stats.held > 0 && stats.applied == 0
        })
        .expect("a session of node 1 waits");
    (m, waiting)
}

/// Rule ADMISSION_QUIET: a session waiting for a slot sent its description once and does not
/// re-send it while it waits (its remote's descriptions are held, so the remote is alive and
/// our answer follows admission); once admitted it connects as usual.
#[test]
fn a_waiting_session_does_not_re_send() {
    let (mut m, waiting) = node_1_with_one_slot_and_a_waiting_session();
    let before = m.ep(1).stats(&Mesh::key(waiting)).unwrap();
    // 20 s pass: the remote re-sends (its description is unacknowledged), we do not.
    for _ in 0..200 {
        m.now += std::time::Duration::from_millis(100);
        let now = m.now;
        for ep in m.endpoints.values_mut() {
            ep.handle_timeout(now).unwrap();
        }
        m.drain();
        m.deliver_envelopes();
    }
    assert_eq!(m.ep(1).admission(), (1, 1), "still waiting");
    let after = m.ep(1).stats(&Mesh::key(waiting)).unwrap();
    assert_eq!(
        after.sent, before.sent,
        "a waiting session re-sent: {before:?} {after:?}"
    );
    assert!(after.quieted > before.quieted, "{after:?}");
    assert!(after.held > before.held, "the remote re-sent: {after:?}");
    // With the agents at work everything connects, the waiting session too.
    m.run_until(|m| m.connected(1, 2) && m.connected(1, 3));
}

/// A description held for a waiting session is an input like any other: the session's due
/// timers fire first, so no timer is left behind the endpoint's clock.
#[test]
fn a_held_description_fires_the_waiting_sessions_due_timers_first() {
    let (mut m, waiting) = node_1_with_one_slot_and_a_waiting_session();
    let waiting = Mesh::key(waiting);
    let timer = |m: &mut Mesh| m.ep(1).peer(&waiting).unwrap().poll_timeout();
    let due = timer(&mut m).expect("the waiting session has a timer (its re-send)");
    // Node 1 is not woken for its timers; the others are, and re-send to it long after.
    m.now += Duration::from_secs(20);
    assert!(due < m.now);
    let now = m.now;
    for n in [2, 3] {
        m.endpoints
            .get_mut(&Mesh::key(n))
            .unwrap()
            .handle_timeout(now)
            .unwrap();
    }
    m.drain();
    m.deliver_envelopes();
    assert_eq!(m.ep(1).admission(), (1, 1), "still waiting");
    assert!(
        m.ep(1).stats(&waiting).unwrap().held >= 2,
        "the remote re-sent"
    );
    // The held re-send fired the waiting session's due timers first, as any input would.
    let next = timer(&mut m);
    assert!(
        next.is_none_or(|t| t > m.now),
        "{next:?} not after {:?}",
        m.now
    );
}

#[test]
fn sessions_come_and_go_without_disturbing_the_others() {
    // Node 1 starts with no sessions and meets 2, 3 and 4 one after the other.
    let mut m = Mesh::new(&[1, 2, 3, 4]);
    assert_eq!(m.ep(1).peers().count(), 0);
    assert_eq!(m.ep(1).poll_timeout(), None);
    m.link(1, 2);
    m.run_until(|m| m.connected(1, 2));
    m.now += Duration::from_secs(1);
    m.link(1, 3);
    m.run_until(|m| m.connected(1, 3));
    m.now += Duration::from_secs(1);
    m.link(1, 4);
    m.run_until(|m| m.connected(1, 4) && m.connected(1, 2) && m.connected(1, 3));
    assert_eq!(m.ep(1).peers().count(), 3);
    let sessions = |m: &mut Mesh, n: u8| {
        let key = Mesh::key(n);
        m.ep(1).peer(&key).and_then(|p| p.local_session())
    };
    let (s2, s4) = (sessions(&mut m, 2), sessions(&mut m, 4));

    // Node 1 drops node 3 mid-session; node 3 keeps trying for a while, and its envelopes are
    // refused as coming from no session of ours.
    let now = m.now;
    m.ep(1).remove_peer(now, Mesh::key(3)).unwrap();
    m.drain();
    // 1's agent for 3 is closed, so 3's agent stops hearing it.
    m.agents
        .get_mut(&(Mesh::key(3), Mesh::key(1)))
        .unwrap()
        .pair_lost();
    assert!(m.ep(1).peer(&Mesh::key(3)).is_none());
    assert_eq!(
        m.ep(1).remove_peer(now, Mesh::key(3)),
        Err(EndpointError::UnknownPeer(Mesh::key(3)))
    );
    let before = m.ep(1).unrouted().misrouted;
    m.now += Duration::from_secs(60);
    for _ in 0..2_000 {
        if !m.step() {
            break;
        }
    }
    assert!(
        m.ep(1).unrouted().misrouted > before,
        "3's envelopes are refused"
    );
    // The other sessions were not touched: same sessions, still connected, no restart.
    assert!(m.connected(1, 2) && m.connected(1, 4));
    assert_eq!(sessions(&mut m, 2), s2);
    assert_eq!(sessions(&mut m, 4), s4);
    assert_eq!(m.restarts(1, 2) + m.restarts(2, 1), 0);
    assert_eq!(m.restarts(1, 4) + m.restarts(4, 1), 0);

    // Node 3 is added again: its new session starts above every epoch the old one used.
    let old_epoch = m.endpoints[&Mesh::key(3)]
        .peer(&Mesh::key(1))
        .and_then(|p| p.newest_applied())
        .map(|s| s.epoch)
        .expect("3 applied 1's old session");
    let now = m.now;
    m.ep(1).add_peer(now, Mesh::key(3)).unwrap();
    assert_eq!(
        m.ep(1).add_peer(now, Mesh::key(3)),
        Err(EndpointError::PeerExists(Mesh::key(3)))
    );
    m.drain();
    let new_epoch = m
        .ep(1)
        .peer(&Mesh::key(3))
        .unwrap()
        .local_session()
        .unwrap()
        .epoch;
    assert!(new_epoch > old_epoch, "{new_epoch} <= {old_epoch}");
    m.run_until(|m| m.connected(1, 3) && m.connected(1, 2) && m.connected(1, 4));
}

#[test]
fn envelopes_are_checked_before_they_reach_a_session() {
    let mut m = Mesh::new(&[1, 2, 5]);
    m.link(1, 2);
    m.run_until(|m| m.connected(1, 2));
    let (k1, k2, k5) = (Mesh::key(1), Mesh::key(2), Mesh::key(5));
    let now = m.now;
    let session = m.ep(1).peer(&k2).unwrap().clone();
    let stats = m.ep(1).stats(&k2).unwrap();

    // Garbage, and an envelope for someone else, reach no session.
    assert!(matches!(
        m.ep(1).handle_envelope(now, b"\x0f\x00garbage"),
        Err(Refusal::Garbage(_))
    ));
    let to_2 = m
        .sent
        .iter()
        .find(|(to, _)| *to == k2)
        .map(|(_, e)| e.clone())
        .unwrap();
    assert_eq!(m.ep(1).handle_envelope(now, &to_2), Err(Refusal::NotForUs));

    // A replay of an envelope 1 already opened is refused before it is opened.
    let to_1 = m
        .sent
        .iter()
        .find(|(to, _)| *to == k1)
        .map(|(_, e)| e.clone())
        .unwrap();
    assert_eq!(m.ep(1).handle_envelope(now, &to_1), Err(Refusal::Replayed));

    // Node 5 has no session with 1: its envelopes are refused by sender.
    m.ep(5).add_peer(now, k1).unwrap();
    let from_5 = m.ep(5).poll_transmit().expect("5 sends to 1").envelope;
    assert_eq!(
        m.ep(1).handle_envelope(now, &from_5),
        Err(Refusal::UnknownSender(k5))
    );

    // A flood from 2 runs into its rate limit (replays of old envelopes would be refused as
    // replays, so 2 seals new ones: its restarts).
    let limit = EndpointConfig::default().limits.burst;
    let mut limited = 0;
    for _ in 0..(limit * 2) {
        m.ep(2).restart(now, k1).unwrap();
        while m.ep(2).poll_output().is_some() {}
        while let Some(t) = m.ep(2).poll_transmit() {
            if m.ep(1).handle_envelope(now, &t.envelope) == Err(Refusal::RateLimited) {
                limited += 1;
            }
        }
    }
    assert!(limited > 0, "no envelope was rate-limited");
    let after = m.ep(1).stats(&k2).unwrap();
    assert_eq!(after.rate_limited, limited);
    assert_eq!(after.replayed, stats.replayed + 1);
    assert!(after.applied > stats.applied);
    // Before the flood the session was exactly as it was: the refusals changed nothing.
    let _ = session;
    assert_eq!(m.ep(1).unrouted().garbage, 1);
    assert_eq!(m.ep(1).unrouted().misrouted, 2);
}

#[test]
fn agent_events_and_restarts_name_a_session() {
    let mut m = Mesh::new(&[1, 2]);
    let now = m.now;
    let k9 = Mesh::key(9);
    assert_eq!(
        m.ep(1).restart(now, k9),
        Err(EndpointError::UnknownPeer(k9))
    );
    assert_eq!(
        m.ep(1)
            .handle_agent_event(now, k9, icepact::AgentId(1), icepact::AgentEvent::Checking),
        Err(EndpointError::UnknownPeer(k9))
    );
    assert!(matches!(
        m.ep(1).add_peer(now, Mesh::key(1)),
        Err(EndpointError::Key(_) | EndpointError::Peer(_))
    ));
    m.link(1, 2);
    m.run_until(|m| m.connected(1, 2));
    let now = m.now;
    m.ep(1).restart(now, Mesh::key(2)).unwrap();
    m.drain();
    m.run_until(|m| m.connected(1, 2));
    assert_eq!(m.restarts(1, 2), 1);
    let now = m.now;
    let ok = m.ep(1).handle_agent_event(
        now,
        Mesh::key(2),
        icepact::AgentId(1),
        icepact::AgentEvent::Checking,
    );
    assert!(matches!(ok, Ok(Disposition::Ignored(_))), "{ok:?}");
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Arbitrary bytes, and real envelopes with bytes flipped, cut or appended: the
        /// endpoint never panics, and an envelope it refuses changes no session.
        #[test]
        fn hostile_envelopes_never_panic_and_refusals_change_nothing(
            garbage in proptest::collection::vec(any::<u8>(), 0..600),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut m = Mesh::new(&[1, 2]);
            m.link(1, 2);
            m.run_until(|m| m.connected(1, 2));
            let now = m.now;
            let k1 = Mesh::key(1);
            let genuine = m
                .sent
                .iter()
                .rev()
                .find(|(to, _)| *to == k1)
                .map(|(_, e)| e.clone())
                .unwrap();
            let mut mutated = genuine.clone();
            for (i, x) in &flips {
                let len = mutated.len();
                mutated[i % len] ^= x | 1;
            }
            mutated.truncate(cut % (genuine.len() + 1));
            mutated.extend_from_slice(&tail);
            for bytes in [garbage, mutated] {
                let before = m.ep(1).peer(&Mesh::key(2)).cloned();
                let result = m.ep(1).handle_envelope(now, &bytes);
                if result.is_err() {
                    prop_assert_eq!(m.ep(1).peer(&Mesh::key(2)).cloned(), before);
                }
            }
        }
    }
}
