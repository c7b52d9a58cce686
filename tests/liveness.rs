//! The liveness holes of issue 9, each as it happens with real agents and real clocks: a crash
//! whose new process starts below (or at) the epochs it used before, an agent that fails straight
//! from Connected, an agent report that is lost or stamped a little early, and an `Instant` at
//! the end of its range, a gathering that finds nothing. Each test fails on a core without
//! EPOCH_CATCH_UP, AGENT_REPORTS, CHECKING_TIMEOUT, LATE_INPUT, GATHERING_TIMEOUT and checked
//! time arithmetic.

mod harness;

use std::time::{Duration, Instant};

use harness::{Pair, A_KEY, B_KEY};
use icepact::reference_agent::AgentKind;
use icepact::{
    AgentEvent, Config, ConnectionState, Disposition, Error, Event, IgnoreReason, Peer, PeerSetup,
    Report, RestartCause, Seed,
};

use ConnectionState::*;

/// B's process restarts with no memory and `floor` as its epoch floor (seed `seed`).
fn crash_b(p: &mut Pair, floor: u64, seed: u64) {
    let now = p.now;
    let fresh = Peer::new(
        Config::default(),
        PeerSetup {
            local: B_KEY,
            remote: A_KEY,
            epoch_floor: floor,
            seed: Seed::insecure_from_u64(seed),
        },
        now,
    )
    .unwrap();
    p.b = harness::Node::new(fresh, AgentKind::Pion);
    p.a.inbox.clear();
    p.drain(false);
}

/// B's epoch catch-ups so far.
fn catch_ups_of_b(p: &Pair) -> usize {
    p.b.restarts
        .iter()
        .filter(|c| matches!(c, RestartCause::EpochCatchUp { .. }))
        .count()
}

/// Replays everything both sides ever sent (every incarnation), newest first, then runs until
/// quiet; returns the restarts this caused.
fn replay_everything(p: &mut Pair, sent_by_old_b: &[icepact::Description]) -> u32 {
    let before = p.a.peer.restarts() + p.b.peer.restarts();
    let to_b: Vec<_> = p.a.sent.iter().rev().cloned().collect();
    let to_a: Vec<_> =
        p.b.sent
            .iter()
            .chain(sent_by_old_b)
            .rev()
            .cloned()
            .collect();
    p.b.inbox.extend(to_b);
    p.a.inbox.extend(to_a);
    assert!(p.run_until_connected(20_000), "replays broke the session");
    p.a.peer.restarts() + p.b.peer.restarts() - before
}

fn crash_and_recover(floor: u64, seed: u64) -> Pair {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let old_b = std::mem::take(&mut p.b.sent);
    let old_epoch = p.b.peer.local_session().unwrap().epoch;
    crash_b(&mut p, floor, seed);
    assert!(
        p.run_until_connected(20_000),
        "floor {floor}: no convergence: A {:?} B {:?}",
        p.a.peer.state(),
        p.b.peer.state()
    );
    // B's session is above the epoch its earlier process used: A accepts it.
    assert!(p.b.peer.local_session().unwrap().epoch > old_epoch);
    let catch_ups = catch_ups_of_b(&p);
    if floor > old_epoch {
        assert_eq!(p.b.restarts, [], "floor above: nothing to catch up");
    } else {
        // Exactly one new session on B (EPOCH_CATCH_UP) ...
        assert_eq!(catch_ups, 1, "floor {floor}: {:?}", p.b.restarts);
        assert_eq!(p.b.restarts.len(), 1);
    }
    // ... and A replaced its confirmed binding once (RESTART_ON_NEWER_CONFIRMED).
    assert!(
        matches!(p.a.restarts[..], [RestartCause::RemoteRestart { .. }]),
        "{:?}",
        p.a.restarts
    );
    // After recovery, replays of both incarnations' descriptions restart nothing.
    assert_eq!(replay_everything(&mut p, &old_b), 0);
    p
}

#[test]
fn crash_with_floor_zero_catches_up_once() {
    crash_and_recover(0, 3);
}

#[test]
fn crash_with_floor_below_catches_up_once() {
    crash_and_recover(50, 3);
}

#[test]
fn crash_with_floor_equal_catches_up_once() {
    // The same epoch with other credentials (EPOCH_REUSED at A, then EPOCH_CATCH_UP at B).
    crash_and_recover(100, 3);
}

#[test]
fn crash_with_the_same_floor_and_seed_catches_up_once() {
    // An embedder that passes constants: the new process repeats the old one's first session
    // exactly, credentials included.
    crash_and_recover(100, 2);
}

#[test]
fn crash_with_floor_above_restarts_only_the_other_side() {
    crash_and_recover(10_000, 3);
}

#[test]
fn stale_evidence_from_a_replay_still_takes_one_catch_up() {
    // Found by the model checker (a replay, a restart request and a crash with floor zero at
    // once): A restarts, so both sessions move to epoch 101; B's process crashes and starts at
    // floor zero; the first thing the new B hears is a late copy of A's first description of
    // epoch 101, whose `seen` names B's epoch 100 (what A had seen when it sent it). Catching up
    // to `seen + 1` would land on 101, which the old B used too: A would answer EPOCH_REUSED and
    // B would have to catch up a second time, after its back-off.
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let now = p.now;
    p.a.peer.restart(now).unwrap();
    p.drain(true);
    let late =
        p.a.sent
            .iter()
            .rev()
            .find(|d| d.session.version == 0)
            .cloned()
            .unwrap();
    assert!(p.run_until_connected(20_000));
    let old_epoch = p.b.peer.local_session().unwrap().epoch;
    assert!(late.seen.as_ref().unwrap().session.epoch < old_epoch);
    crash_b(&mut p, 0, 3);
    p.b.inbox.push_front(late);
    assert!(p.run_until_connected(20_000));
    assert!(p.b.peer.local_session().unwrap().epoch > old_epoch);
    let catch_ups = catch_ups_of_b(&p);
    assert_eq!(catch_ups, 1, "{:?}", p.b.restarts);
}

#[test]
fn a_floor_that_went_back_after_the_new_process_bound_is_caught_up() {
    // The equal-floor wedge of issue 9: the new B binds a new session of A and reaches the
    // versions the old B had, with other credentials. A must not call them duplicates forever.
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let now = p.now;
    // A restarts too (its agent failed), so its new session is unbound and binds anything.
    p.a.peer.restart(now).unwrap();
    p.drain(true);
    crash_b(&mut p, 100, 3);
    assert!(p.run_until_connected(20_000));
    assert!(p.b.peer.local_session().unwrap().epoch > 100);
    assert!(p.a.peer.remote_credentials() == p.b.peer.local_credentials());
}

#[test]
fn failed_straight_from_connected_restarts_one_side_once() {
    for kind in [AgentKind::Pion, AgentKind::Libwebrtc] {
        let mut p = Pair::with_agents(Config::default(), 1, 2, kind);
        assert!(p.run_until_connected(1_000));
        p.a.agent.give_up();
        assert!(p.run_until_connected(10_000), "{kind:?}");
        assert!(
            p.a.transitions.contains(&(Connected, Failed))
                || p.a.transitions.contains(&(Completed, Failed)),
            "{kind:?}: {:?}",
            p.a.transitions
        );
        assert_eq!(p.a.restarts, [RestartCause::AgentFailed], "{kind:?}");
        assert!(matches!(
            p.b.restarts[..],
            [RestartCause::RemoteRestart { .. }]
        ));
        assert_eq!(replay_everything(&mut p, &[]), 0, "{kind:?}");
    }
}

#[test]
fn failed_straight_from_connected_on_both_sides_reconverges() {
    let mut p = Pair::with_agents(Config::default(), 1, 2, AgentKind::PionNoDisconnect);
    assert!(p.run_until_connected(1_000));
    // pion with DisconnectedTimeout = 0: a lost pair is Failed at once, on both sides.
    p.a.agent.pair_lost();
    p.b.agent.pair_lost();
    assert!(p.run_until_connected(10_000));
    assert!(p.a.transitions.contains(&(Connected, Failed)));
    assert!(p.b.transitions.contains(&(Connected, Failed)));
    // Glare: one restart each, nothing more.
    assert_eq!(p.a.restarts, [RestartCause::AgentFailed]);
    assert_eq!(p.b.restarts, [RestartCause::AgentFailed]);
    assert_eq!(replay_everything(&mut p, &[]), 0);
}

#[test]
fn failed_reports_lost_on_both_sides_are_recovered_by_the_report_poll() {
    let mut p = Pair::with_agents(Config::default(), 1, 2, AgentKind::PionNoDisconnect);
    assert!(p.run_until_connected(1_000));
    p.a.agent.pair_lost();
    p.b.agent.pair_lost();
    // Both Failed reports are lost: without REPORT_POLL both peers stay Connected forever.
    assert_eq!(
        p.a.agent.lose_event().map(|(_, e)| e),
        Some(AgentEvent::Failed)
    );
    assert_eq!(
        p.b.agent.lose_event().map(|(_, e)| e),
        Some(AgentEvent::Failed)
    );
    // Both peers still believe Connected; only time passing can tell them.
    assert!(p.both_connected());
    let mut steps = 0;
    while p.a.peer.restarts() + p.b.peer.restarts() < 2 && steps < 1_000 {
        assert!(p.step(), "nothing left to do: the pair is wedged");
        steps += 1;
    }
    assert!(p.run_until_connected(10_000));
    assert_eq!(p.a.restarts, [RestartCause::AgentFailed]);
    assert_eq!(p.b.restarts, [RestartCause::AgentFailed]);
    assert_eq!(p.a.peer.restarts() + p.b.peer.restarts(), 2);
    assert_eq!(replay_everything(&mut p, &[]), 0);
}

#[test]
fn a_lost_connected_report_is_recovered_by_the_checking_timeout() {
    let mut p = Pair::new(Config::default());
    // Run until both agents are checking and their reports are in.
    while !(p.a.peer.state() == Checking && p.b.peer.state() == Checking && p.quiet()) {
        assert!(p.step());
    }
    assert!(p.agents_meet());
    // A's Connected report is lost on the way; B's arrives.
    let lost = p.a.agent.lose_event();
    assert_eq!(lost.map(|(_, e)| e), Some(AgentEvent::Connected));
    let start = p.now;
    assert!(p.run_until_connected(10_000));
    assert_eq!(p.a.restarts, [RestartCause::CheckingTimeout]);
    assert!(p.now - start >= Config::default().checking_timeout);
    assert_eq!(replay_everything(&mut p, &[]), 0);
}

#[test]
fn a_lost_checking_report_is_harmless() {
    let mut p = Pair::new(Config::default());
    while p.a.peer.state() != Connecting {
        assert!(p.step());
    }
    let lost = p.a.agent.lose_event();
    assert_eq!(lost.map(|(_, e)| e), Some(AgentEvent::Checking));
    assert!(p.run_until_connected(10_000));
    assert!(p.a.transitions.contains(&(Connecting, Connected)));
    assert_eq!(p.a.peer.restarts() + p.b.peer.restarts(), 0);
}

#[test]
fn an_event_stamped_2_ms_early_is_accepted() {
    let mut p = Pair::new(Config::default());
    while p.a.peer.state() != Connecting {
        assert!(p.step());
    }
    let (id, ev) = p.a.agent.poll_event().unwrap();
    assert_eq!(ev, AgentEvent::Checking);
    // The peer has seen a later instant (a timer on the driver's thread) ...
    let later = p.now + Duration::from_millis(10);
    p.a.peer.handle_timeout(later).unwrap();
    // ... than the agent's thread stamped its report with.
    let stamped = later - Duration::from_millis(2);
    assert_eq!(
        p.a.peer.handle_agent_event(stamped, id, ev).unwrap(),
        Disposition::Applied
    );
    assert_eq!(p.a.peer.state(), Checking);
    // Far behind (beyond `max_input_lag`) is still an error that changes nothing.
    let before = p.a.peer.clone();
    let way_back = later - Config::default().max_input_lag - Duration::from_millis(1);
    assert_eq!(
        p.a.peer.handle_timeout(way_back),
        Err(Error::TimeWentBackwards)
    );
    assert_eq!(p.a.peer, before);
}

#[test]
fn benign_reports_of_real_agents_are_never_errors() {
    // Every report in every state a live agent can be in has an outcome (AGENT_REPORTS).
    for kind in AgentKind::ALL {
        for target in [
            Idle,
            New,
            Connecting,
            Checking,
            Connected,
            Completed,
            Disconnected,
        ] {
            let mut p = Pair::with_agents(Config::default(), 1, 2, kind);
            let mut steps = 0;
            while p.a.peer.state() != target && steps < 1_000 {
                if target == Disconnected && p.a.peer.state().is_connected() {
                    p.a.agent.pair_lost();
                }
                if !p.step() {
                    break;
                }
                steps += 1;
            }
            if p.a.peer.state() != target {
                // Completed only for kinds that complete; Disconnected only for those that
                // report it.
                assert!(
                    matches!(target, Completed | Disconnected),
                    "{kind:?}: {target} not reached"
                );
                continue;
            }
            let id = p.a.agent_id().unwrap();
            for report in Report::ALL {
                let event = match report {
                    Report::Checking => AgentEvent::Checking,
                    Report::Connected => AgentEvent::Connected,
                    Report::Completed => AgentEvent::Completed,
                    Report::Disconnected => AgentEvent::Disconnected,
                    Report::Failed => AgentEvent::Failed,
                    _ => AgentEvent::Closed,
                };
                let mut peer = p.a.peer.clone();
                let got = peer.handle_agent_event(p.now, id, event);
                match got {
                    Ok(Disposition::Applied) => {}
                    Ok(Disposition::Ignored(IgnoreReason::AgentReport { report: r, state })) => {
                        assert_eq!((r, state), (report, target));
                    }
                    other => panic!("{kind:?} {target} {report:?}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn quirks_of_real_agents_restart_nothing() {
    for kind in AgentKind::ALL {
        let mut p = Pair::with_agents(Config::default(), 1, 2, kind);
        assert!(p.run_until_connected(1_000));
        for _ in 0..3 {
            assert!(p.a.agent.quirk());
            assert!(p.b.agent.quirk());
            assert!(p.run_until_connected(1_000));
        }
        assert_eq!(p.a.peer.restarts() + p.b.peer.restarts(), 0, "{kind:?}");
    }
}

/// The largest `Instant` this platform represents (to within a nanosecond).
fn instant_max() -> Instant {
    let mut t = Instant::now();
    let mut step = Duration::from_secs(1 << 62);
    while step > Duration::ZERO {
        match t.checked_add(step) {
            Some(next) => t = next,
            None => step /= 2,
        }
    }
    t
}

#[test]
fn an_instant_at_the_end_of_its_range_never_panics() {
    for back in [0, 1, 500, 30_000] {
        let now = instant_max() - Duration::from_millis(back);
        let mut a = Peer::new(
            Config::default(),
            PeerSetup {
                local: A_KEY,
                remote: B_KEY,
                epoch_floor: 1,
                seed: Seed::insecure_from_u64(1),
            },
            now,
        )
        .unwrap();
        let mut b = Peer::new(
            Config::default(),
            PeerSetup {
                local: B_KEY,
                remote: A_KEY,
                epoch_floor: 1,
                seed: Seed::insecure_from_u64(2),
            },
            now,
        )
        .unwrap();
        while a.poll_output().is_some() {}
        while b.poll_output().is_some() {}
        // A timer that would fall beyond the range is not armed; one that fits is later.
        if let Some(t) = a.poll_timeout() {
            assert!(t > now);
        }
        let d = b.description().unwrap();
        let _ = a.handle_description(now, &d).unwrap();
        let id = a.agent().unwrap();
        let _ = a
            .handle_agent_event(now, id, AgentEvent::Disconnected)
            .unwrap();
        a.handle_timeout(now).unwrap();
        a.restart(now).unwrap();
        while a.poll_output().is_some() {}
        a.close(now).unwrap();
    }
}

#[test]
fn a_remote_cannot_push_our_epoch_to_the_end_of_its_range() {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let now = p.now;
    let before = p.b.peer.clone();
    let mut d = p.a.peer.description().unwrap();
    d.session.version += 1;
    d.seen = Some(icepact::Seen {
        session: icepact::SessionRef {
            epoch: u64::MAX - 1,
            version: 0,
        },
        ufrag: "someoneelse".into(),
    });
    let err = p.b.peer.handle_description(now, &d).unwrap_err();
    assert!(format!("{err:?}").contains("AckFromFuture"), "{err:?}");
    assert_eq!(p.b.peer, before);
}

#[test]
fn two_live_processes_with_one_key_back_off_their_catch_ups() {
    // B1 and B2 run with the same key (a snapshot restored while the original still runs).
    // Each learns from A that the other's epoch is higher and takes it back: without a back-off
    // that is a restart per round trip, forever.
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let mut b2 = Peer::new(
        Config::default(),
        PeerSetup {
            local: B_KEY,
            remote: A_KEY,
            epoch_floor: 50,
            seed: Seed::insecure_from_u64(9),
        },
        p.now,
    )
    .unwrap();
    let start = p.now;
    let mut catch_ups = 0;
    for _ in 0..2_000 {
        // A's newest description goes to both processes; both answer A.
        let now = p.now;
        let d = p.a.peer.description().unwrap();
        let _ = b2.handle_description(now, &d);
        let _ = p.b.peer.handle_description(now, &d);
        p.drain(false);
        while let Some(out) = b2.poll_output() {
            if let icepact::Output::Event(icepact::Event::Restarted {
                cause: RestartCause::EpochCatchUp { .. },
                ..
            }) = out
            {
                catch_ups += 1;
            }
            if let icepact::Output::Send(d) = out {
                p.a.inbox.push_back(d);
            }
        }
        while p.deliver(true, 0) {}
        while p.agent_step(true) || p.agent_step(false) {}
        p.advance(Duration::from_millis(50));
        let now = p.now;
        b2.handle_timeout(now).unwrap();
        p.a.peer.handle_timeout(now).unwrap();
        p.b.peer.handle_timeout(now).unwrap();
        p.drain(true);
        p.drain(false);
    }
    let elapsed = p.now - start;
    assert_eq!(elapsed, Duration::from_secs(100));
    catch_ups +=
        p.b.restarts
            .iter()
            .filter(|c| matches!(c, RestartCause::EpochCatchUp { .. }))
            .count();
    // 100 s of ping-pong in 2,000 rounds: the back-off (0.5 s growing ×1.5) allows about a
    // dozen per process, not one per round.
    assert!(catch_ups >= 2, "the processes never noticed each other");
    assert!(catch_ups <= 30, "{catch_ups} catch-ups in 100 s");
}

#[test]
fn zero_durations_in_the_configuration_never_arm_a_timer_at_now() {
    let mut config = Config::default();
    config.checking_timeout = Duration::ZERO;
    config.disconnected_timeout = Duration::ZERO;
    config.report_poll_interval = Duration::ZERO;
    config.gathering_timeout = Duration::ZERO;
    let mut p = Pair::new(config);
    for _ in 0..2_000 {
        if !p.step() {
            break;
        }
        for peer in [&p.a.peer, &p.b.peer] {
            // The harness asserts `poll_timeout > now` on every timer it fires; check it here
            // for every step as well.
            if let Some(t) = peer.poll_timeout() {
                assert!(t > p.now);
            }
        }
    }
}

#[test]
fn a_floor_at_the_end_of_the_range_is_refused() {
    let now = Instant::now();
    for floor in [u64::MAX, u64::MAX - 1, u64::MAX - (1 << 32)] {
        assert_eq!(
            Peer::new(
                Config::default(),
                PeerSetup {
                    local: A_KEY,
                    remote: B_KEY,
                    epoch_floor: floor,
                    seed: Seed::insecure_from_u64(1)
                },
                now
            ),
            Err(Error::EpochFloorTooHigh(floor))
        );
    }
    assert!(Peer::new(
        Config::default(),
        PeerSetup {
            local: A_KEY,
            remote: B_KEY,
            epoch_floor: u64::MAX - (1 << 32) - 1,
            seed: Seed::insecure_from_u64(1)
        },
        now
    )
    .is_ok());
}

/// Runs until A's agent has local candidates queued and A has none yet (A's gathering began).
fn until_a_gathers(p: &mut Pair) {
    let mut steps = 0;
    while !(p.a.agent.gathering() && p.a.peer.local_candidates().is_empty()) {
        assert!(p.step(), "A never gathered");
        steps += 1;
        assert!(steps < 1_000);
    }
}

#[test]
fn a_gathering_that_finds_nothing_is_reported_and_restarted_after_the_deadline() {
    let mut p = Pair::new(Config::default());
    until_a_gathers(&mut p);
    assert!(p.a.agent.gather_nothing());
    let start = p.now;
    // A hears GatheringDone with no candidate: the embedding learns it at once.
    let mut steps = 0;
    while !p
        .a
        .events
        .contains(&Event::NoLocalCandidates { timeouts: 0 })
    {
        assert!(p.step(), "no NoLocalCandidates event");
        steps += 1;
        assert!(steps < 1_000);
    }
    assert_eq!(p.a.peer.state(), New);
    assert_eq!(p.a.restarts, []);
    assert!(p.run_until_connected(10_000), "the pair never connected");
    // One restart on each side: A's GATHERING_TIMEOUT, then B's restart on A's new session.
    assert_eq!(p.a.restarts, [RestartCause::GatheringTimeout]);
    assert!(
        matches!(p.b.restarts[..], [RestartCause::RemoteRestart { .. }]),
        "{:?}",
        p.b.restarts
    );
    assert!(p.now - start >= Config::default().gathering_timeout);
    assert_eq!(replay_everything(&mut p, &[]), 0);
}

#[test]
fn repeated_empty_gatherings_back_off_and_a_candidate_resets_the_deadline() {
    let config = Config::default();
    let base = config.gathering_timeout;
    let mut p = Pair::new(config);
    let mut restarted_at = Vec::new();
    // Three gatherings in a row find nothing: the deadline doubles each time.
    for round in 0..3u32 {
        until_a_gathers(&mut p);
        assert!(p.a.agent.gather_nothing());
        let gather_at = p.now;
        while p.a.restarts.len() as u32 == round {
            assert!(p.step(), "wedged in round {round}");
        }
        let waited = p.now - gather_at;
        let deadline = base * (1 << round);
        assert!(
            waited >= deadline && waited < deadline + Duration::from_secs(1),
            "round {round}: waited {waited:?}, deadline {deadline:?}"
        );
        restarted_at.push(p.now);
    }
    assert!(p
        .a
        .events
        .contains(&Event::NoLocalCandidates { timeouts: 2 }));
    assert!(p
        .a
        .restarts
        .iter()
        .all(|c| *c == RestartCause::GatheringTimeout));
    // The fourth gathering works: the session connects, and the back-off starts over.
    assert!(p.run_until_connected(10_000));
    let restarts = p.a.restarts.len();
    let now = p.now;
    p.a.peer.restart(now).unwrap();
    p.drain(true);
    until_a_gathers(&mut p);
    assert!(p.a.agent.gather_nothing());
    let gather_at = p.now;
    while p.a.restarts.len() == restarts + 1 {
        assert!(p.step());
    }
    assert!(p.now - gather_at < base + Duration::from_secs(1));
    assert!(p.run_until_connected(10_000));
}
