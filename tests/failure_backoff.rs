//! Rule FAILURE_BACKOFF: the first failure since a session last connected restarts at once;
//! each further one waits a jittered interval that grows with the failures in a row (the
//! re-send back-off's), during which the peer has no agent and applies nothing; a Connected
//! session starts the count over. Each test fails on a core that restarts every failure at once.

mod harness;

use std::time::{Duration, Instant};

use harness::Pair;
use icepact::reference_agent::AgentKind;
use icepact::{
    AgentCommand, AgentEvent, AgentId, AgentRestart, Backoff, Config, ConnectionState, Disposition,
    Event, IgnoreReason, Output, Peer, PeerSetup, PublicKey, RestartCause, Seed,
};

fn peer(config: Config, seed: u64, now: Instant) -> Peer {
    Peer::new(
        config,
        PeerSetup {
            local: PublicKey([1; 32]),
            remote: PublicKey([2; 32]),
            epoch_floor: 10,
            seed: Seed::insecure_from_u64(seed),
        },
        now,
    )
    .unwrap()
}

fn drain(p: &mut Peer) -> Vec<Output> {
    std::iter::from_fn(|| p.poll_output()).collect()
}

/// The live agent reports Failed at `now`; returns the outputs.
fn fail(p: &mut Peer, now: Instant) -> Vec<Output> {
    let agent = p.agent().expect("a live agent to fail");
    assert_eq!(
        p.handle_agent_event(now, agent, AgentEvent::Failed),
        Ok(Disposition::Applied)
    );
    drain(p)
}

fn created(out: &[Output]) -> bool {
    out.iter().any(|o| {
        matches!(
            o,
            Output::Agent(AgentCommand::Create { .. } | AgentCommand::Restart { .. })
        )
    })
}

fn deferred(out: &[Output]) -> Option<(u32, Instant)> {
    out.iter().find_map(|o| match o {
        Output::Event(Event::RestartDeferred { failures, at }) => Some((*failures, *at)),
        _ => None,
    })
}

#[test]
fn repeated_failures_wait_growing_jittered_intervals() {
    let t0 = Instant::now();
    let mut p = peer(Config::default(), 1, t0);
    drain(&mut p);
    // The first failure restarts at once.
    let out = fail(&mut p, t0);
    assert!(created(&out), "{out:?}");
    assert_eq!(deferred(&out), None);
    // Each further one waits the back-off interval of attempt `failures - 2`.
    let backoff = Backoff::default();
    let mut now = t0;
    for failures in 2..12u32 {
        let out = fail(&mut p, now);
        assert!(
            !created(&out),
            "failure {failures} restarted at once: {out:?}"
        );
        let (n, at) = deferred(&out).expect("a deferred restart");
        assert_eq!(n, failures);
        let (lo, hi) = backoff.bounds(failures - 2);
        let wait = at - now;
        assert!(
            wait >= lo && wait <= hi,
            "{failures}: {wait:?} not in [{lo:?}, {hi:?}]"
        );
        // Waiting: Closed, no agent, nothing to send, the start is the next timer.
        assert_eq!(p.state(), ConnectionState::Closed);
        assert_eq!(p.agent(), None);
        assert_eq!(p.poll_timeout(), Some(at));
        // Just before: still waiting. At `at`: a new agent and a new session.
        p.handle_timeout(at - Duration::from_millis(1)).unwrap();
        assert!(drain(&mut p).is_empty());
        p.handle_timeout(at).unwrap();
        let out = drain(&mut p);
        assert!(created(&out), "{out:?}");
        assert!(out.iter().any(|o| matches!(o, Output::Send(_))));
        assert_eq!(p.state(), ConnectionState::Idle);
        now = at;
    }
    // Eleven failures in a row took at least the sum of the lower bounds (28 s here): far from
    // a loop at the signaling backend's speed.
    let least: Duration = (0..10).map(|k| backoff.bounds(k).0).sum();
    assert!(least > Duration::from_secs(28), "{least:?}");
    assert!(now - t0 >= least, "{:?}", now - t0);
}

#[test]
fn two_peers_back_off_apart() {
    // The jitter comes from each peer's own seed: peers of one overloaded node that fail
    // together do not come back together.
    let t0 = Instant::now();
    let at: Vec<Instant> = (0..8)
        .map(|seed| {
            let mut p = peer(Config::default(), seed, t0);
            drain(&mut p);
            fail(&mut p, t0);
            deferred(&fail(&mut p, t0)).expect("deferred").1
        })
        .collect();
    let mut distinct = at.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), at.len(), "{at:?}");
}

#[test]
fn a_waiting_peer_applies_nothing_and_a_request_ends_the_wait() {
    let t0 = Instant::now();
    let remote = Peer::new(
        Config::default(),
        PeerSetup {
            local: PublicKey([2; 32]),
            remote: PublicKey([1; 32]),
            epoch_floor: 10,
            seed: Seed::insecure_from_u64(9),
        },
        t0,
    )
    .unwrap();
    let d = remote.description().unwrap();
    let mut p = peer(Config::default(), 1, t0);
    drain(&mut p);
    fail(&mut p, t0);
    let (_, at) = deferred(&fail(&mut p, t0)).unwrap();
    assert_eq!(
        p.handle_description(t0, &d),
        Ok(Disposition::Ignored(IgnoreReason::BackingOff { until: at }))
    );
    assert_eq!(p.newest_applied(), None);
    assert!(drain(&mut p).is_empty());
    // An agent event of the closed agent is stale.
    assert_eq!(
        p.handle_agent_event(t0, AgentId(11), AgentEvent::Connected),
        Ok(Disposition::Ignored(IgnoreReason::StaleAgent(AgentId(11))))
    );
    // The embedding's restart starts the next session now.
    p.restart(t0).unwrap();
    let out = drain(&mut p);
    assert!(created(&out), "{out:?}");
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::Restarted {
            cause: RestartCause::Requested,
            ..
        })
    )));
    assert_eq!(p.poll_timeout().filter(|t| *t == at), None);
    assert_eq!(p.handle_description(t0, &d), Ok(Disposition::Applied));
}

#[test]
fn in_place_agents_are_parked_and_closed_on_shutdown() {
    let t0 = Instant::now();
    let mut config = Config::default();
    config.agent_restart = AgentRestart::InPlace;
    let mut p = peer(config, 1, t0);
    drain(&mut p);
    fail(&mut p, t0);
    let live = p.agent().unwrap();
    let (_, at) = deferred(&fail(&mut p, t0)).unwrap();
    // The failed agent is kept for the next session (no Close), and restarted in place then.
    p.handle_timeout(at).unwrap();
    let out = drain(&mut p);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Agent(AgentCommand::Restart { agent, .. }) if *agent == live
        )),
        "{out:?}"
    );
    // Shut down while waiting: the parked agent is closed, nothing is created again.
    let live = p.agent().unwrap();
    let (_, at) = deferred(&fail(&mut p, at)).unwrap();
    p.close(at - Duration::from_millis(1)).unwrap();
    let out = drain(&mut p);
    assert_eq!(
        out,
        [Output::Agent(AgentCommand::Close { agent: live })],
        "{out:?}"
    );
    p.handle_timeout(at + Duration::from_secs(100)).unwrap();
    assert!(drain(&mut p).is_empty());
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn a_connected_session_starts_the_count_over() {
    // A pair that connects, then fails twice in a row (the second time before it connects
    // again): the second restart waits. After it connects again, a failure restarts at once.
    let mut p = Pair::with_agents(Config::default(), 1, 2, AgentKind::Pion);
    assert!(p.run_until_connected(1_000));
    p.a.agent.give_up();
    // Run until A restarted once, then fail its new agent before it connects.
    for _ in 0..1_000 {
        if !p.a.restarts.is_empty() {
            break;
        }
        assert!(p.step());
    }
    assert_eq!(p.a.restarts, [RestartCause::AgentFailed]);
    let now = p.now;
    let agent = p.a.peer.agent().unwrap();
    let _ = p.a.peer.handle_agent_event(now, agent, AgentEvent::Failed);
    p.drain(true);
    assert!(
        p.a.events
            .iter()
            .any(|e| matches!(e, Event::RestartDeferred { failures: 2, .. })),
        "{:?}",
        p.a.events
    );
    assert!(p.run_until_connected(10_000));
    // Connected again: the next failure is the first in a row.
    p.a.events.clear();
    p.a.agent.give_up();
    assert!(p.run_until_connected(10_000));
    assert!(
        !p.a.events
            .iter()
            .any(|e| matches!(e, Event::RestartDeferred { .. })),
        "{:?}",
        p.a.events
    );
}
