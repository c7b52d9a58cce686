//! The bodies of the fuzz targets, shared by the cargo-fuzz binaries (`fuzz_targets/`, nightly)
//! and by the corpus-reach test of the main workspace (`tests/fuzz_corpus.rs`, stable), which
//! includes this file. Each returns how far its input got, so that a target that silently
//! stops reaching its assertions fails that test.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use icepact::wire::{self, proto, Body, Channel, Limits, Nonce, SecretKey};
use icepact::{
    AgentEvent, AgentId, Candidate, CandidateKind, Config, Credentials, Description, Disposition,
    Endpoint, EndpointConfig, EndpointOutput, Event, Output, Peer, PeerSetup, PublicKey, Seed,
    Seen, SessionRef, TcpType, Transport,
};
use prost::Message as _;

/// How far one input got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Refused before the target's deepest checks.
    Shallow,
    /// The deepest checks of the target ran on it.
    Deep,
}

/// Decodes `data` as a sealed body: never a panic; whatever the fast decoder accepts, the
/// prost-generated reference accepts too, equal; and it re-encodes to itself. Deep: decoded.
pub fn decode_body(data: &[u8]) -> Reach {
    let limits = Limits::default();
    let Ok(body) = Body::decode(data, &limits) else {
        return Reach::Shallow;
    };
    let m = proto::SessionDescription::decode(data).expect("reference accepts what we accept");
    assert_eq!(Body::from_proto(m, &limits).as_ref(), Ok(&body));
    let bytes = body.encode(&limits).expect("a decoded body can be encoded");
    assert_eq!(Body::decode(&bytes, &limits).as_ref(), Ok(&body));
    Reach::Deep
}

/// The fixed keys of the envelope targets and their corpus: A (`0x5a` × 32) to B (`0xa5` × 32).
pub fn channels() -> &'static (Channel, Channel) {
    static CHANNELS: OnceLock<(Channel, Channel)> = OnceLock::new();
    CHANNELS.get_or_init(|| {
        let (a, b) = (
            SecretKey::from_bytes([0x5a; 32]),
            SecretKey::from_bytes([0xa5; 32]),
        );
        (
            Channel::new(&a, b.public_key()).expect("fixed valid keys"),
            Channel::new(&b, a.public_key()).expect("fixed valid keys"),
        )
    })
}

/// Opens `data` as an envelope from A to B, and as the sealed plaintext of a correctly sealed
/// envelope (random bytes almost never authenticate): never a panic; what opens is a
/// description that seals and opens again to itself. Deep: something opened and the re-seal
/// check ran.
pub fn open_envelope(data: &[u8]) -> Reach {
    let (a_to_b, b_from_a) = channels();
    let mut reach = Reach::Shallow;
    for envelope in [data.to_vec(), wrap(a_to_b, data)] {
        if let Ok(d) = b_from_a.open(&envelope) {
            let again = a_to_b
                .seal(&d, Nonce([1; 24]))
                .expect("an opened description can be sealed");
            assert_eq!(b_from_a.open(&again).expect("and opened"), d);
            reach = Reach::Deep;
        }
    }
    reach
}

/// An envelope from A to B whose sealed plaintext is `plaintext`.
pub fn wrap(a_to_b: &Channel, plaintext: &[u8]) -> Vec<u8> {
    wrap_with(a_to_b, Nonce([2; 24]), plaintext)
}

/// An envelope from A to B whose sealed plaintext is `plaintext`, under `nonce`.
fn wrap_with(a_to_b: &Channel, nonce: Nonce, plaintext: &[u8]) -> Vec<u8> {
    proto::Envelope {
        sender: a_to_b.local_key().0.to_vec(),
        recipient: a_to_b.remote_key().0.to_vec(),
        contents: Some(proto::EncryptedMessage {
            body: a_to_b.seal_box(nonce, plaintext),
            nonce: nonce.0.to_vec(),
        }),
    }
    .encode_to_vec()
}

/// Reads the input a byte or a few at a time; zeros once it is used up.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// The core's whole input surface through the public API of one `Peer`: descriptions with
/// arbitrary fields, agent events naming any agent, time moving by any amount (up to the end of
/// `Instant`'s range) and stamps a little in the past, timeouts, restarts and a close. Asserts no
/// panic, `poll_timeout` always after the latest `now` given, and every state change an edge of
/// the table. Deep: a description and an agent report were both applied.
pub fn peer_sequence(data: &[u8]) -> Reach {
    let mut input = Bytes(data);
    let local = PublicKey([1; 32]);
    let remote = PublicKey([2; 32]);
    let floor = u64::from(input.u16());
    let start = Instant::now();
    let setup = PeerSetup {
        local,
        remote,
        epoch_floor: floor,
        seed: Seed::from_bytes([input.u8(); 32]),
    };
    let Ok(mut peer) = Peer::new(Config::default(), setup, start) else {
        return Reach::Shallow;
    };
    let (mut now, mut latest) = (start, start);
    let (mut applied_description, mut applied_report) = (false, false);
    drain(&mut peer, latest);
    while !input.done() {
        // The instant the peer is given, if any: the deadline check is against the latest one.
        let mut given = Some(now);
        let result = match input.u8() % 8 {
            0 => {
                let Some(t) = later(&mut input, now) else {
                    break;
                };
                now = t;
                given = None;
                Ok(Disposition::Applied)
            }
            1 => {
                now = peer.poll_timeout().unwrap_or(now).max(now);
                given = Some(now);
                peer.handle_timeout(now).map(|()| Disposition::Applied)
            }
            2 | 3 => {
                let agent = match input.u8() % 4 {
                    0 => AgentId(u64::from(input.u16())),
                    _ => peer.agent().unwrap_or(AgentId(0)),
                };
                let event = agent_event(&mut input);
                let stamp = early(&mut input, now);
                given = Some(stamp);
                let r = peer.handle_agent_event(stamp, agent, event);
                applied_report |= r == Ok(Disposition::Applied);
                r
            }
            4 | 5 => {
                let d = description(&mut input);
                let r = peer.handle_description(now, &d);
                applied_description |= r == Ok(Disposition::Applied);
                r
            }
            6 => peer.restart(now).map(|()| Disposition::Applied),
            _ => {
                if input.u8().is_multiple_of(8) {
                    peer.close(now).map(|()| Disposition::Applied)
                } else {
                    given = None;
                    Ok(Disposition::Applied)
                }
            }
        };
        // A refused input is fine (and leaves the peer's clock alone); a late one is taken at
        // the latest instant (rule LATE_INPUT).
        if let (Ok(_), Some(t)) = (&result, given) {
            latest = latest.max(t);
        }
        drain(&mut peer, latest);
    }
    if applied_description && applied_report {
        Reach::Deep
    } else {
        Reach::Shallow
    }
}

/// Time passes: milliseconds, or a jump of up to 2^32 s towards the end of `Instant`'s range;
/// `None` past its end (which ends the run).
fn later(input: &mut Bytes<'_>, now: Instant) -> Option<Instant> {
    let step = match input.u8() % 4 {
        0 => Duration::from_secs(u64::from(input.u32())),
        _ => Duration::from_millis(u64::from(input.u16())),
    };
    now.checked_add(step)
}

/// An agent report's stamp: up to ~2 s before `now`, within LATE_INPUT's slack or beyond it
/// (an error).
fn early(input: &mut Bytes<'_>, now: Instant) -> Instant {
    let lag = Duration::from_millis(u64::from(input.u16()) % 2_048);
    now.checked_sub(lag).unwrap_or(now)
}

/// Drains the peer's outputs, checking every state change and the next deadline.
fn drain(peer: &mut Peer, latest: Instant) {
    while let Some(out) = peer.poll_output() {
        if let Output::Event(Event::StateChanged { from, to, .. }) = out {
            assert!(icepact::state::is_edge(from, to), "{from} -> {to}");
        }
    }
    if let Some(t) = peer.poll_timeout() {
        assert!(
            t > latest,
            "poll_timeout {t:?} not after the latest now {latest:?}"
        );
    }
}

fn candidate(input: &mut Bytes<'_>) -> Candidate {
    let ip = [10, 0, input.u8(), input.u8()];
    let mut c = Candidate::host((ip, input.u16()).into());
    if input.u8().is_multiple_of(4) {
        c.foundation = "".into();
    }
    c
}

fn description(input: &mut Bytes<'_>) -> Description {
    let session = |input: &mut Bytes<'_>| SessionRef {
        epoch: u64::from(input.u8() % 8),
        version: u32::from(input.u8() % 8),
    };
    let session_now = session(input);
    let ack = (input.u8().is_multiple_of(2)).then(|| session(input));
    let count = input.u8() % 4;
    Description {
        session: session_now,
        ack,
        need_reply: input.u8().is_multiple_of(2),
        credentials: Credentials {
            ufrag: ["abcd", "efgh", "", "ijkl"][usize::from(input.u8() % 4)].into(),
            pwd: "0123456789abcdefghijkl".into(),
        },
        candidates: (0..count).map(|_| candidate(input)).collect(),
        end_of_candidates: input.u8().is_multiple_of(4),
        seen: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Structure-aware targets: a valid value is built from the input (`arbitrary`), encoded, and then
// mutated a few bytes at a time, so that most inputs get past the parsers to the deep checks.
// ---------------------------------------------------------------------------------------------

/// The characters of ICE credentials and foundations (RFC 8445 `ice-char`).
const ICE_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";

/// `true` one time in `n`, and never once the input is used up (so that a short input still
/// builds a valid value: `Unstructured` answers 0s and lower bounds when it runs dry).
fn rarely(u: &mut Unstructured<'_>, n: u8) -> arbitrary::Result<bool> {
    Ok(!u.ratio(n - 1, n)?)
}

/// Mostly a well-formed ICE string of 1 to `max` characters; one time in 32 any string
/// (empty, too long or not ASCII).
fn arb_text(u: &mut Unstructured<'_>, max: usize) -> arbitrary::Result<String> {
    if rarely(u, 32)? {
        return String::arbitrary(u);
    }
    let len = u.int_in_range(1..=max)?;
    (0..len)
        .map(|_| u.choose(ICE_CHARS).map(|&b| char::from(b)))
        .collect()
}

fn arb_addr(u: &mut Unstructured<'_>) -> arbitrary::Result<SocketAddr> {
    let port = u16::arbitrary(u)?;
    Ok(if u.ratio(3, 4)? {
        SocketAddr::from((<[u8; 4]>::arbitrary(u)?, port))
    } else {
        SocketAddr::from((<[u16; 8]>::arbitrary(u)?, port))
    })
}

fn arb_candidate(u: &mut Unstructured<'_>) -> arbitrary::Result<Candidate> {
    let transport = if u.ratio(1, 4)? {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let tcp_types = [TcpType::Active, TcpType::Passive, TcpType::SimultaneousOpen];
    // A TCP type on a TCP candidate, and now and then where it does not belong.
    let tcp_type = match (transport, rarely(u, 64)?) {
        (Transport::Tcp, false) | (Transport::Udp, true) => Some(*u.choose(&tcp_types)?),
        _ => None,
    };
    Ok(Candidate {
        kind: *u.choose(&[
            CandidateKind::Host,
            CandidateKind::ServerReflexive,
            CandidateKind::PeerReflexive,
            CandidateKind::Relay,
        ])?,
        transport,
        addr: arb_addr(u)?,
        priority: if rarely(u, 64)? {
            u32::arbitrary(u)?
        } else {
            u32::arbitrary(u)? >> 1
        },
        foundation: arb_text(u, 32)?.into(),
        component: if rarely(u, 64)? {
            u16::arbitrary(u)?
        } else {
            u.int_in_range(1..=2)?
        },
        related: if u.arbitrary()? {
            Some(arb_addr(u)?)
        } else {
            None
        },
        tcp_type,
    })
}

fn arb_session(u: &mut Unstructured<'_>) -> arbitrary::Result<SessionRef> {
    Ok(SessionRef {
        epoch: u64::arbitrary(u)?,
        version: u32::arbitrary(u)?,
    })
}

/// A description with arbitrary fields, mostly within what the wire accepts.
pub fn arb_description(u: &mut Unstructured<'_>) -> arbitrary::Result<Description> {
    let session = arb_session(u)?;
    let ack = if u.arbitrary()? {
        Some(arb_session(u)?)
    } else {
        None
    };
    let need_reply = u.arbitrary()?;
    let credentials = Credentials {
        ufrag: arb_text(u, 32)?.into(),
        pwd: arb_text(u, 64)?.into(),
    };
    let count = u.int_in_range(0..=4)?;
    let candidates = (0..count)
        .map(|_| arb_candidate(u))
        .collect::<arbitrary::Result<_>>()?;
    let end_of_candidates = u.arbitrary()?;
    let seen = if u.ratio(1, 4)? {
        Some(Seen {
            session: arb_session(u)?,
            ufrag: arb_text(u, 32)?.into(),
        })
    } else {
        None
    };
    Ok(Description {
        session,
        ack,
        need_reply,
        credentials,
        candidates,
        end_of_candidates,
        seen,
    })
}

/// None (half of the time) or up to three byte-level mutations (flip, cut, insert, remove);
/// whether any was made.
fn mutate(u: &mut Unstructured<'_>, bytes: &mut Vec<u8>) -> arbitrary::Result<bool> {
    let n = if u.ratio(1, 2)? {
        0
    } else {
        u.int_in_range(1..=3)?
    };
    let mut changed = false;
    for _ in 0..n {
        if bytes.is_empty() {
            break;
        }
        let before = bytes.clone();
        match u.int_in_range(0..=3)? {
            0 => {
                let i = u.choose_index(bytes.len())?;
                bytes[i] ^= u8::arbitrary(u)?.max(1);
            }
            1 => {
                let i = u.choose_index(bytes.len())?;
                bytes.truncate(i);
            }
            2 => {
                let i = u.choose_index(bytes.len() + 1)?;
                bytes.insert(i, u8::arbitrary(u)?);
            }
            _ => {
                let i = u.choose_index(bytes.len())?;
                bytes.remove(i);
            }
        }
        changed |= *bytes != before;
    }
    Ok(changed)
}

/// Builds a body from the input, encodes it and mutates the bytes: an encodable body decodes
/// to itself, and the mutated bytes go through [`decode_body`]'s checks. Deep: the mutated
/// bytes decoded (the differential and round-trip checks ran).
pub fn decode_body_structured(data: &[u8]) -> Reach {
    let mut u = Unstructured::new(data);
    let (a_to_b, _) = channels();
    let Ok(description) = arb_description(&mut u) else {
        return Reach::Shallow;
    };
    let body = Body {
        sender: a_to_b.local_key(),
        recipient: a_to_b.remote_key(),
        description,
    };
    let limits = Limits::default();
    let Ok(mut bytes) = body.encode(&limits) else {
        return Reach::Shallow;
    };
    assert_eq!(
        Body::decode(&bytes, &limits).as_ref(),
        Ok(&body),
        "an encoded body decodes to itself"
    );
    if mutate(&mut u, &mut bytes).is_err() {
        return Reach::Shallow;
    }
    decode_body(&bytes)
}

/// C (`0x3c` × 32), a third key that is neither A nor B.
fn third() -> &'static (Channel, Channel) {
    static THIRD: OnceLock<(Channel, Channel)> = OnceLock::new();
    THIRD.get_or_init(|| {
        let c = SecretKey::from_bytes([0x3c; 32]);
        let b = SecretKey::from_bytes([0xa5; 32]);
        (
            Channel::new(&c, b.public_key()).expect("fixed valid keys"),
            Channel::new(&b, c.public_key()).expect("fixed valid keys"),
        )
    })
}

/// The envelope with its header rewritten to claim `sender` → `recipient`.
fn readdress(envelope: &[u8], sender: PublicKey, recipient: PublicKey) -> Vec<u8> {
    let mut e = proto::Envelope::decode(envelope).expect("a sealed envelope decodes");
    e.sender = sender.0.to_vec();
    e.recipient = recipient.0.to_vec();
    e.encode_to_vec()
}

/// Seals a description built from the input under the real keys and opens it, in one of three
/// ways: the envelope mutated after sealing; the body mutated before sealing (so the box opens
/// and the body and key-binding checks run on it); or an attack that must be refused with its
/// own error (a third key claiming to be A, B's own envelope reflected back to B). Whatever
/// opens seals and opens again to itself; an unmutated envelope opens to what was sealed.
/// Deep: opened and re-sealed, or an attack refused by the check made for it.
pub fn open_envelope_structured(data: &[u8]) -> Reach {
    let (a_to_b, b_from_a) = channels();
    let mut u = Unstructured::new(data);
    let Ok(description) = arb_description(&mut u) else {
        return Reach::Shallow;
    };
    let Ok(nonce) = <[u8; 24]>::arbitrary(&mut u).map(Nonce) else {
        return Reach::Shallow;
    };
    let reseal = |d: &Description| {
        let again = a_to_b
            .seal(d, Nonce([1; 24]))
            .expect("an opened description can be sealed");
        assert_eq!(&b_from_a.open(&again).expect("and opened"), d);
    };
    match u.int_in_range(0..=2).unwrap_or(0) {
        0 => {
            let Ok(mut envelope) = a_to_b.seal(&description, nonce) else {
                return Reach::Shallow;
            };
            let Ok(mutated) = mutate(&mut u, &mut envelope) else {
                return Reach::Shallow;
            };
            match b_from_a.open(&envelope) {
                Ok(d) => {
                    if !mutated {
                        assert_eq!(d, description, "an envelope opens to what was sealed");
                    }
                    reseal(&d);
                    Reach::Deep
                }
                Err(e) => {
                    assert!(mutated, "a sealed envelope did not open: {e}");
                    Reach::Shallow
                }
            }
        }
        1 => {
            let body = Body {
                sender: a_to_b.local_key(),
                recipient: a_to_b.remote_key(),
                description,
            };
            let Ok(mut bytes) = body.encode(&Limits::default()) else {
                return Reach::Shallow;
            };
            let Ok(mutated) = mutate(&mut u, &mut bytes) else {
                return Reach::Shallow;
            };
            match b_from_a.open(&wrap_with(a_to_b, nonce, &bytes)) {
                Ok(d) => {
                    if !mutated {
                        assert_eq!(d, body.description);
                    }
                    reseal(&d);
                    Reach::Deep
                }
                Err(e) => {
                    assert!(mutated, "a sealed body did not open: {e}");
                    Reach::Shallow
                }
            }
        }
        _ => {
            let (c_to_b, _) = third();
            let (a, b) = (a_to_b.local_key(), a_to_b.remote_key());
            if u.arbitrary().unwrap_or(false) {
                // C seals to B and claims to be A: the box does not open under A's key.
                let Ok(envelope) = c_to_b.seal(&description, nonce) else {
                    return Reach::Shallow;
                };
                let forged = readdress(&envelope, a, b);
                assert_eq!(b_from_a.open(&forged), Err(wire::Error::Authentication));
            } else {
                // B's own envelope to A, readdressed to B: the box opens (the key is the same
                // both ways), and the keys bound inside give it away.
                let Ok(envelope) = b_from_a.seal(&description, nonce) else {
                    return Reach::Shallow;
                };
                let reflected = readdress(&envelope, a, b);
                assert!(
                    matches!(b_from_a.open(&reflected), Err(wire::Error::Binding(_))),
                    "a reflected envelope must fail the key binding"
                );
            }
            Reach::Deep
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The multi-peer endpoint.
// ---------------------------------------------------------------------------------------------

/// Most envelopes in flight, and kept for replays.
const FLIGHT: usize = 32;

/// Two real [`Endpoint`]s, A and B, talking through an adversarial network driven by the
/// input: deliveries in any order, losses, replays, envelopes with bytes flipped, cut or
/// appended, garbage, a third key's forgeries; agent reports naming any agent, stamped a little
/// in the past; time moving by any amount; restarts, and the remote removed and added again.
/// Asserts no panic; a refused envelope changes no session; `poll_timeout` always after the
/// latest `now`; every state change an edge of the table. Deep: both endpoints applied an
/// envelope, one refused one, and a session was removed and added again.
pub fn endpoint_sequence(data: &[u8]) -> Reach {
    let mut input = Bytes(data);
    let secrets = [
        SecretKey::from_bytes([0x5a; 32]),
        SecretKey::from_bytes([0xa5; 32]),
    ];
    let keys = [secrets[0].public_key(), secrets[1].public_key()];
    let start = Instant::now();
    let seed = input.u8();
    let floor = u64::from(input.u8());
    // Rule ADMISSION with slots to spare, with one slot (the larger key waits for the
    // smaller's candidates or re-sends) and switched off.
    let mut config = EndpointConfig::default();
    config.max_establishing = [16, 1, 0][usize::from(seed % 3)];
    let mut endpoints = secrets.map(|secret| {
        let tag = secret.public_key().0[0];
        Endpoint::new(config, secret, floor, Seed::from_bytes([seed ^ tag; 32]))
    });
    // The latest instant each endpoint was given.
    let (mut now, mut latest) = (start, [start; 2]);
    let mut flight: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut history: Vec<(usize, Vec<u8>)> = Vec::new();
    let (mut applied, mut refused, mut re_added) = ([false; 2], false, false);
    for (i, endpoint) in endpoints.iter_mut().enumerate() {
        endpoint
            .add_peer(start, keys[1 - i])
            .expect("distinct valid keys");
        drain_endpoint(endpoint, i, latest[i], &mut flight);
    }
    while !input.done() {
        let i = usize::from(input.u8() & 1);
        let remote = keys[1 - i];
        // Which endpoint was given which instant, if any.
        let mut given = Some((i, now));
        let ok = match input.u8() % 10 {
            0 => {
                let Some(t) = later(&mut input, now) else {
                    break;
                };
                now = t;
                given = None;
                true
            }
            1 => {
                now = endpoints[i].poll_timeout().unwrap_or(now).max(now);
                endpoints[i].handle_timeout(now).is_ok()
            }
            kind @ 2..=6 => {
                // Deliver (2, 3), lose (4), replay (5) or corrupt (6) an envelope in flight.
                let picked = match (kind, flight.len(), history.len()) {
                    (5, _, h) if h > 0 => Some(history[usize::from(input.u8()) % h].clone()),
                    (_, f, _) if f > 0 => Some(flight.remove(usize::from(input.u8()) % f)),
                    _ => None,
                };
                if let (Some((to, mut envelope)), false) = (picked, kind == 4) {
                    if kind == 6 {
                        corrupt(&mut input, &mut envelope);
                    }
                    if history.len() == FLIGHT {
                        history.remove(0);
                    }
                    history.push((to, envelope.clone()));
                    given = Some((to, now));
                    let r = deliver(&mut endpoints[to], now, keys[1 - to], &envelope);
                    applied[to] |= r == Ok(Disposition::Applied);
                    refused |= r.is_err();
                    r.is_ok()
                } else {
                    // Nothing to deliver, or a loss: no input reached an endpoint.
                    given = None;
                    true
                }
            }
            7 => {
                let agent = match input.u8() % 4 {
                    0 => AgentId(u64::from(input.u16())),
                    _ => endpoints[i]
                        .peer(&remote)
                        .and_then(Peer::agent)
                        .unwrap_or(AgentId(0)),
                };
                let event = agent_event(&mut input);
                let stamp = early(&mut input, now);
                given = Some((i, stamp));
                endpoints[i]
                    .handle_agent_event(stamp, remote, agent, event)
                    .is_ok()
            }
            8 => endpoints[i].restart(now, remote).is_ok(),
            _ => {
                if input.u8() % 2 == 0 {
                    // Garbage, or a forgery by a third key claiming to be the remote.
                    let len = usize::from(input.u8());
                    let bytes: Vec<u8> = (0..len).map(|_| input.u8()).collect();
                    let r = deliver(&mut endpoints[i], now, remote, &bytes);
                    refused |= r.is_err();
                    given = None;
                    true
                } else if endpoints[i].peer(&remote).is_some() {
                    endpoints[i].remove_peer(now, remote).is_ok()
                } else {
                    let r = endpoints[i].add_peer(now, remote);
                    re_added |= r.is_ok();
                    r.is_ok()
                }
            }
        };
        if let (true, Some((j, t))) = (ok, given) {
            latest[j] = latest[j].max(t);
        }
        for (j, endpoint) in endpoints.iter_mut().enumerate() {
            drain_endpoint(endpoint, j, latest[j], &mut flight);
        }
    }
    if applied == [true; 2] && refused && re_added {
        Reach::Deep
    } else {
        Reach::Shallow
    }
}

/// Hands `envelope` to `endpoint` and checks that a refusal left the session with `remote`
/// exactly as it was.
fn deliver(
    endpoint: &mut Endpoint,
    now: Instant,
    remote: PublicKey,
    envelope: &[u8],
) -> Result<Disposition, icepact::Refusal> {
    let before = endpoint.peer(&remote).cloned();
    let r = endpoint.handle_envelope(now, envelope);
    if let Err(refusal) = &r {
        assert_eq!(
            endpoint.peer(&remote),
            before.as_ref(),
            "refused ({refusal}) and yet the session changed"
        );
    }
    r
}

/// Flips, cuts or extends an envelope.
fn corrupt(input: &mut Bytes<'_>, envelope: &mut Vec<u8>) {
    if envelope.is_empty() {
        return;
    }
    let at = usize::from(input.u16()) % envelope.len();
    match input.u8() % 3 {
        0 => envelope[at] ^= input.u8().max(1),
        1 => envelope.truncate(at),
        _ => envelope.extend((0..=input.u8() % 8).map(|_| input.u8())),
    }
}

fn agent_event(input: &mut Bytes<'_>) -> AgentEvent {
    match input.u8() % 8 {
        0 => AgentEvent::LocalCandidate(candidate(input)),
        1 => AgentEvent::GatheringDone,
        2 => AgentEvent::Checking,
        3 => AgentEvent::Connected,
        4 => AgentEvent::Completed,
        5 => AgentEvent::Disconnected,
        6 => AgentEvent::Failed,
        _ => AgentEvent::Closed,
    }
}

/// Moves endpoint `i`'s envelopes into flight (the oldest lost when full) and checks its
/// state changes and next deadline.
fn drain_endpoint(
    endpoint: &mut Endpoint,
    i: usize,
    latest: Instant,
    flight: &mut Vec<(usize, Vec<u8>)>,
) {
    while let Some(out) = endpoint.poll_output() {
        if let EndpointOutput::Event {
            event: Event::StateChanged { from, to, .. },
            ..
        } = out
        {
            assert!(icepact::state::is_edge(from, to), "{from} -> {to}");
        }
    }
    while let Some(t) = endpoint.poll_transmit() {
        if flight.len() == FLIGHT {
            flight.remove(0);
        }
        flight.push((1 - i, t.envelope));
    }
    if let Some(t) = endpoint.poll_timeout() {
        assert!(
            t > latest,
            "poll_timeout {t:?} not after the latest now {latest:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The room service's parsers.
// ---------------------------------------------------------------------------------------------

/// Parses `data` as a `POST /signal` body and, if it is UTF-8, as a WebSocket handshake: never
/// a panic; a parsed request serialises back to JSON that parses to the same request; a parsed
/// handshake has a valid call name and a token that parses to itself. Deep: either parsed.
pub fn signal_messages(data: &[u8]) -> Reach {
    use icepact_signal::seats::Token;
    use icepact_signal::server::{parse_handshake, parse_signal, valid_call};
    use icepact_signal::Envelope;
    let mut deep = false;
    if let Ok(signal) = parse_signal(data) {
        let again = serde_json::to_vec(&Envelope {
            kind: signal.kind.clone(),
            call: signal.call.clone(),
            session: Some(signal.session.as_str().to_owned()),
            body: signal.body.clone(),
        })
        .expect("plain strings serialise");
        assert_eq!(parse_signal(&again).ok(), Some(signal));
        deep = true;
    }
    if let Some((token, call)) = std::str::from_utf8(data).ok().and_then(parse_handshake) {
        assert!(valid_call(&call), "{call:?}");
        assert_eq!(Token::parse(token.as_str()), Some(token));
        deep = true;
    }
    if deep {
        Reach::Deep
    } else {
        Reach::Shallow
    }
}
