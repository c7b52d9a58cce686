//! A ping-pong workload that measures how many signaling messages per second the simulator
//! pushes through real cores: two confirmed peers, an event queue with 1 ms latency, and every
//! message handled by `Peer::handle_description` and answered through `poll_output`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use icepact::{
    AgentEvent, Candidate, Config, Description, Output, Peer, PeerSetup, PublicKey, Seed,
};

/// Optional sealing of every message on the wire (the crypto-on figure).
pub trait Seal {
    /// The keys (A, B) the peers must use, if sealing depends on them.
    fn keys(&self) -> Option<(PublicKey, PublicKey)> {
        None
    }
    /// Seals a description sent by `from_a` (true: A → B).
    fn seal(&mut self, from_a: bool, d: &Description) -> Vec<u8>;
    /// Opens it at the recipient.
    fn open(&mut self, from_a: bool, bytes: &[u8]) -> Description;
}

/// Messages moved and the wall time it took.
#[derive(Clone, Copy, Debug)]
pub struct PingPong {
    /// Signaling messages delivered to a peer.
    pub messages: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl PingPong {
    /// Messages per wall-clock second (one thread).
    pub fn per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

enum Payload {
    Plain(Box<Description>),
    Sealed(Vec<u8>),
}

/// Runs `rounds` request/reply rounds (2 messages each) between two bound peers.
pub fn ping_pong(rounds: u64, mut sealer: Option<&mut dyn Seal>) -> PingPong {
    let base = Instant::now();
    let (ka, kb) = sealer
        .as_deref()
        .and_then(|s| s.keys())
        .unwrap_or((PublicKey([1; 32]), PublicKey([2; 32])));
    let mut a = Peer::new(
        Config::default(),
        PeerSetup {
            local: ka,
            remote: kb,
            epoch_floor: 1,
            seed: Seed::insecure_from_u64(1),
        },
        base,
    )
    .expect("distinct keys");
    let mut b = Peer::new(
        Config::default(),
        PeerSetup {
            local: kb,
            remote: ka,
            epoch_floor: 1,
            seed: Seed::insecure_from_u64(2),
        },
        base,
    )
    .expect("distinct keys");
    // Bind and confirm both sides, each with two candidates, like a real session.
    for round in 0..8 {
        let from_a = sends(&mut a);
        let from_b = sends(&mut b);
        for d in &from_a {
            let _ = b.handle_description(base, d);
        }
        for d in &from_b {
            let _ = a.handle_description(base, d);
        }
        if round == 1 {
            for (p, port) in [(&mut a, 1000u16), (&mut b, 2000)] {
                for i in 0..2 {
                    let c = Candidate::host(([10, 0, 0, 1], port + i).into());
                    let agent = p.agent().expect("live");
                    let _ = p.handle_agent_event(base, agent, AgentEvent::LocalCandidate(c));
                }
            }
        }
    }
    sends(&mut a);
    sends(&mut b);

    let mut ping = a.description().expect("live");
    ping.need_reply = true;
    let mut queue: BinaryHeap<Reverse<(Duration, u64, bool)>> = BinaryHeap::new();
    let mut payloads: Vec<Option<Payload>> = Vec::new();
    let mut now = Duration::ZERO;
    let mut messages = 0u64;
    let start = Instant::now();
    let push = |queue: &mut BinaryHeap<_>, payloads: &mut Vec<Option<Payload>>, at, to_b, p| {
        payloads.push(Some(p));
        queue.push(Reverse((at, payloads.len() as u64 - 1, to_b)));
    };
    for _ in 0..rounds {
        let first = match sealer.as_deref_mut() {
            Some(s) => Payload::Sealed(s.seal(true, &ping)),
            None => Payload::Plain(Box::new(ping.clone())),
        };
        push(
            &mut queue,
            &mut payloads,
            now + Duration::from_millis(1),
            true,
            first,
        );
        while let Some(Reverse((at, idx, to_b))) = queue.pop() {
            now = at;
            let payload = payloads[idx as usize]
                .take()
                .expect("each payload is delivered once");
            let d = match payload {
                Payload::Plain(d) => *d,
                Payload::Sealed(bytes) => sealer
                    .as_deref_mut()
                    .expect("sealed payloads only with a sealer")
                    .open(to_b, &bytes),
            };
            let peer = if to_b { &mut b } else { &mut a };
            let _ = peer.handle_description(base + now, &d);
            messages += 1;
            while let Some(o) = peer.poll_output() {
                if let Output::Send(reply) = o {
                    let p = match sealer.as_deref_mut() {
                        Some(s) => Payload::Sealed(s.seal(!to_b, &reply)),
                        None => Payload::Plain(Box::new(reply)),
                    };
                    push(
                        &mut queue,
                        &mut payloads,
                        now + Duration::from_millis(1),
                        !to_b,
                        p,
                    );
                }
            }
        }
        payloads.clear();
    }
    PingPong {
        messages,
        elapsed: start.elapsed(),
    }
}

fn sends(p: &mut Peer) -> Vec<Description> {
    let mut out = Vec::new();
    while let Some(o) = p.poll_output() {
        if let Output::Send(d) = o {
            out.push(d);
        }
    }
    out
}

/// Seals with the real wire format: NaCl `crypto_box` envelopes between the ping-pong keys.
pub struct WireSeal {
    a_to_b: icepact::wire::Channel,
    b_to_a: icepact::wire::Channel,
    rng: rand_chacha::ChaCha8Rng,
}

impl WireSeal {
    /// Channels for the ping-pong's two keys (derived from fixed secrets).
    pub fn new() -> WireSeal {
        use icepact::wire::{Channel, SecretKey};
        use rand_core::SeedableRng;
        let (sa, sb) = (
            SecretKey::from_bytes([11; 32]),
            SecretKey::from_bytes([22; 32]),
        );
        let (pa, pb) = (sa.public_key(), sb.public_key());
        WireSeal {
            a_to_b: Channel::new(&sa, pb).expect("distinct keys"),
            b_to_a: Channel::new(&sb, pa).expect("distinct keys"),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(3),
        }
    }

    /// The public keys (A, B) the peers must use.
    pub fn keys(&self) -> (PublicKey, PublicKey) {
        (self.a_to_b.local_key(), self.a_to_b.remote_key())
    }
}

impl Default for WireSeal {
    fn default() -> Self {
        Self::new()
    }
}

impl Seal for WireSeal {
    fn keys(&self) -> Option<(PublicKey, PublicKey)> {
        Some(WireSeal::keys(self))
    }

    fn seal(&mut self, from_a: bool, d: &Description) -> Vec<u8> {
        let ch = if from_a { &self.a_to_b } else { &self.b_to_a };
        ch.seal(d, icepact::wire::Nonce::random(&mut self.rng))
            .expect("the core's own descriptions are within the wire limits")
    }

    fn open(&mut self, from_a: bool, bytes: &[u8]) -> Description {
        // Opened by the recipient: B opens what A sealed with the B→A channel's keys.
        let ch = if from_a { &self.b_to_a } else { &self.a_to_b };
        ch.open(bytes).expect("an untampered envelope opens")
    }
}
