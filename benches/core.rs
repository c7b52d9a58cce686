//! Core hot paths: an in-session description update, a stale description, a timer firing.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use icepact::{
    AgentEvent, Candidate, Config, Description, Output, Peer, PeerSetup, PublicKey, Seed,
};
use std::hint::black_box;

/// B bound to A's session (and confirmed), plus A's newest description.
fn bound_pair() -> (Peer, Description, Instant) {
    let now = Instant::now();
    let (ka, kb) = (PublicKey([1; 32]), PublicKey([2; 32]));
    let mut a = Peer::new(
        Config::default(),
        PeerSetup {
            local: ka,
            remote: kb,
            epoch_floor: 1,
            seed: Seed::insecure_from_u64(1),
        },
        now,
    )
    .unwrap();
    let mut b = Peer::new(
        Config::default(),
        PeerSetup {
            local: kb,
            remote: ka,
            epoch_floor: 1,
            seed: Seed::insecure_from_u64(2),
        },
        now,
    )
    .unwrap();
    // Exchange until quiet, feeding one local candidate to each agent.
    for round in 0..6 {
        let from_a = drain(&mut a);
        let from_b = drain(&mut b);
        for d in &from_a {
            let _ = b.handle_description(now, d).unwrap();
        }
        for d in &from_b {
            let _ = a.handle_description(now, d).unwrap();
        }
        if round == 1 {
            for (p, port) in [(&mut a, 1000), (&mut b, 2000)] {
                let c = Candidate::host(([10, 0, 0, 1], port).into());
                let agent = p.agent().unwrap();
                let _ = p
                    .handle_agent_event(now, agent, AgentEvent::LocalCandidate(c))
                    .unwrap();
            }
        }
    }
    drain(&mut b);
    let d = a.description().unwrap();
    (b, d, now)
}

fn drain(p: &mut Peer) -> Vec<Description> {
    let mut out = Vec::new();
    while let Some(o) = p.poll_output() {
        if let Output::Send(d) = o {
            out.push(d);
        }
    }
    out
}

fn benches(c: &mut Criterion) {
    let (b, newest, now) = bound_pair();
    assert!(b.is_confirmed());

    // A newer version of the bound session with one more candidate.
    let mut update = newest.clone();
    update.session.version += 1;
    update
        .candidates
        .push(Candidate::host(([10, 0, 0, 2], 1001).into()));
    c.bench_function("in_session_update", |bench| {
        bench.iter_batched_ref(
            || b.clone(),
            |peer| {
                let r = peer.handle_description(now, black_box(&update));
                while peer.poll_output().is_some() {}
                r
            },
            BatchSize::SmallInput,
        )
    });

    // An older version of the same session (a late or replayed message).
    let mut stale = newest.clone();
    stale.session.version -= 1;
    let mut peer = b.clone();
    c.bench_function("stale_description", |bench| {
        bench.iter(|| peer.handle_description(now, black_box(&stale)))
    });

    // A re-send timer firing on an Idle peer (jittered back-off, description queued).
    let idle = Peer::new(
        Config::default(),
        PeerSetup {
            local: PublicKey([1; 32]),
            remote: PublicKey([2; 32]),
            epoch_floor: 1,
            seed: Seed::insecure_from_u64(1),
        },
        now,
    )
    .unwrap();
    let mut idle = idle;
    while idle.poll_output().is_some() {}
    c.bench_function("timeout_resend", |bench| {
        bench.iter_batched_ref(
            || idle.clone(),
            |peer| {
                let t = peer.poll_timeout().unwrap() + Duration::from_millis(1);
                peer.handle_timeout(black_box(t))
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(core, benches);
criterion_main!(core);
