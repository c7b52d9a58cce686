//! The bodies of the fuzz targets, shared by the cargo-fuzz binaries (`fuzz_targets/`, nightly)
//! and by the corpus-reach test of the main workspace (`tests/fuzz_corpus.rs`, stable), which
//! includes this file. Each returns how far its input got, so that a target that silently
//! stops reaching its assertions fails that test.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use icepact::wire::{proto, Body, Channel, Limits, Nonce, SecretKey};
use icepact::{
    AgentEvent, AgentId, Candidate, Config, Credentials, Description, Disposition, Event, Output,
    Peer, PeerSetup, PublicKey, Seed, SessionRef,
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
    let nonce = Nonce([2; 24]);
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
                // Time passes: milliseconds, or a jump of up to 2^32 s towards the end of
                // `Instant`'s range (a checked add that fails ends the run).
                let step = match input.u8() % 4 {
                    0 => Duration::from_secs(u64::from(input.u32())),
                    _ => Duration::from_millis(u64::from(input.u16())),
                };
                match now.checked_add(step) {
                    Some(t) => now = t,
                    None => break,
                }
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
                let event = match input.u8() % 8 {
                    0 => AgentEvent::LocalCandidate(candidate(&mut input)),
                    1 => AgentEvent::GatheringDone,
                    2 => AgentEvent::Checking,
                    3 => AgentEvent::Connected,
                    4 => AgentEvent::Completed,
                    5 => AgentEvent::Disconnected,
                    6 => AgentEvent::Failed,
                    _ => AgentEvent::Closed,
                };
                // Stamped up to ~2 s early: within LATE_INPUT's slack, or an error.
                let lag = Duration::from_millis(u64::from(input.u16()) % 2_048);
                let stamp = now.checked_sub(lag).unwrap_or(now);
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
