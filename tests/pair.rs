//! Two real peers through the in-memory harness: the rules of docs/PROTOCOL.md, one test each.

mod harness;

use std::time::Duration;

use harness::{candidate_of, Fate, Pair};
use icepact::{
    AgentCommand, AgentEvent, Config, ConnectionState::*, DescriptionError, Disposition, Error,
    IgnoreReason, Output, RestartCause, RestartPolicy,
};

#[test]
fn cold_peers_connect_along_the_diagram() {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let path = [
        (Unknown, Idle),
        (Idle, New),
        (New, Connecting),
        (Connecting, Checking),
        (Checking, Connected),
    ];
    assert_eq!(p.a.transitions, path);
    assert_eq!(p.b.transitions, path);
    // Both gathered two candidates; the second trickled in after connecting, and the remote's
    // end-of-candidates reached each agent once.
    for node in [&p.a, &p.b] {
        assert_eq!(node.remote_candidates(), 2);
        assert!(node.agent.live().unwrap().end_of_remote);
    }
    assert_eq!((p.a.peer.restarts(), p.b.peer.restarts()), (0, 0));
    assert!(p.a.peer.is_confirmed() && p.b.peer.is_confirmed());
    // Each holds the other's current credentials.
    assert_eq!(p.a.peer.remote_credentials(), p.b.peer.local_credentials());
    assert_eq!(p.b.peer.remote_credentials(), p.a.peer.local_credentials());
    // Once everything is acknowledged, nobody re-sends: the only timer left is REPORT_POLL, and
    // firing it asks the agent for its state and sends nothing.
    for node in [&mut p.a, &mut p.b] {
        let t = node.peer.poll_timeout().expect("REPORT_POLL is armed");
        node.peer.handle_timeout(t).unwrap();
        let outs: Vec<_> = std::iter::from_fn(|| node.peer.poll_output()).collect();
        assert!(
            matches!(outs[..], [Output::Agent(AgentCommand::ReportState { .. })]),
            "{outs:?}"
        );
    }
}

#[test]
fn b2_lost_reply_is_recovered_by_resend_and_answered_duplicate() {
    // Drop B's first two messages (its initial description and its reply to A).
    let mut dropped = 0;
    let mut p = Pair::new(Config::default());
    p.b.inbox.clear();
    p.a.inbox.clear();
    p.filter = Box::new(move |from_a, _| {
        if !from_a && dropped < 2 {
            dropped += 1;
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    // A's initial description was already queued at B by `Pair::new`; re-send it.
    let d = p.a.peer.description().unwrap();
    p.b.inbox.push_back(d);
    assert!(p.run_until_connected(10_000));
    assert_eq!((p.a.peer.restarts(), p.b.peer.restarts()), (0, 0));
}

#[test]
fn remote_restart_causes_exactly_one_local_restart() {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let now = p.now;
    p.a.peer.restart(now).unwrap();
    p.drain(true);
    assert!(p.run_until_connected(10_000));
    assert_eq!(p.a.restarts, [RestartCause::Requested]);
    assert_eq!(p.b.restarts.len(), 1);
    assert!(matches!(
        p.b.restarts[0],
        RestartCause::RemoteRestart { .. }
    ));
    // Connected implies both hold each other's *current* credentials.
    assert_eq!(p.a.peer.remote_credentials(), p.b.peer.local_credentials());
    assert_eq!(p.b.peer.remote_credentials(), p.a.peer.local_credentials());
    // B went Connected -> Closed -> Idle (the added remote-restart edge).
    assert!(p.b.transitions.contains(&(Connected, Closed)));
}

#[test]
fn glare_both_fail_at_once_and_converge_with_one_restart_each() {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let (ida, idb) = (p.a.agent_id().unwrap(), p.b.agent_id().unwrap());
    let now = p.now;
    let _ =
        p.a.peer
            .handle_agent_event(now, ida, AgentEvent::Disconnected)
            .unwrap();
    let _ =
        p.b.peer
            .handle_agent_event(now, idb, AgentEvent::Disconnected)
            .unwrap();
    let _ =
        p.a.peer
            .handle_agent_event(now, ida, AgentEvent::Failed)
            .unwrap();
    let _ =
        p.b.peer
            .handle_agent_event(now, idb, AgentEvent::Failed)
            .unwrap();
    p.drain(true);
    p.drain(false);
    assert!(p.run_until_connected(10_000));
    assert_eq!(p.a.restarts, [RestartCause::AgentFailed]);
    assert_eq!(p.b.restarts, [RestartCause::AgentFailed]);
}

#[test]
fn disconnected_recovers_without_restart_or_restarts_after_timeout() {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let id = p.a.agent_id().unwrap();
    let now = p.now;
    let _ =
        p.a.peer
            .handle_agent_event(now, id, AgentEvent::Disconnected)
            .unwrap();
    let _ =
        p.a.peer
            .handle_agent_event(now, id, AgentEvent::Connected)
            .unwrap();
    assert_eq!(p.a.peer.state(), Connected);
    assert_eq!(p.a.peer.restarts(), 0);
    assert_eq!(
        p.a.peer.poll_timeout(),
        Some(now + Config::default().report_poll_interval),
        "recovery disarms the disconnected timer; only REPORT_POLL is left"
    );

    let _ =
        p.a.peer
            .handle_agent_event(now, id, AgentEvent::Disconnected)
            .unwrap();
    let wake = p.a.peer.poll_timeout().unwrap();
    assert_eq!(wake, now + Config::default().disconnected_timeout);
    p.drain(true);
    assert!(p.run_until_connected(10_000));
    assert_eq!(p.a.restarts, [RestartCause::DisconnectedTimeout]);
    assert_eq!(p.b.restarts.len(), 1);
}

#[test]
fn stale_duplicate_and_replayed_descriptions_change_nothing() {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let now = p.now;
    p.a.peer.restart(now).unwrap();
    p.drain(true);
    assert!(p.run_until_connected(10_000));
    // Replay everything A ever sent, both sessions, in reverse order.
    let before = p.b.peer.clone();
    let replay: Vec<_> = p.a.sent.iter().rev().cloned().collect();
    let newest = before.newest_applied().unwrap();
    for d in &replay {
        let got = p.b.peer.handle_description(now, d).unwrap();
        match got {
            Disposition::Ignored(IgnoreReason::Stale { newest: n, .. }) => assert_eq!(n, newest),
            Disposition::Ignored(IgnoreReason::Duplicate(s)) => assert_eq!(s, newest),
            other => panic!("replayed {:?} gave {other:?}", d.session),
        }
    }
    // Nothing changed but a queued reply (to a duplicate that asked for one, or one answer to
    // stale descriptions, rule EPOCH_CATCH_UP) and its rate limit, which passes in one initial
    // back-off interval.
    while p.b.peer.poll_output().is_some() {}
    let later = now + Config::default().backoff.initial;
    let (mut after, mut before) = (p.b.peer.clone(), before);
    for peer in [&mut after, &mut before] {
        while peer.poll_output().is_some() {}
        peer.handle_timeout(later).unwrap();
        while peer.poll_output().is_some() {}
    }
    assert_eq!(after, before);
    assert_eq!(p.b.peer.restarts(), 1);
}

#[test]
fn crashed_peer_without_memory_is_accepted_and_both_converge() {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    // B's process dies; a new one starts with the same keys, no memory, a higher epoch floor.
    let now = p.now + Duration::from_secs(3);
    p.now = now;
    let fresh = icepact::Peer::new(
        Config::default(),
        icepact::PeerSetup {
            local: harness::B_KEY,
            remote: harness::A_KEY,
            epoch_floor: 10_000,
            seed: icepact::Seed::insecure_from_u64(99),
        },
        now,
    )
    .unwrap();
    p.b = harness::Node::new(fresh, icepact::reference_agent::AgentKind::Pion);
    p.drain(false);
    // A's old messages may still be in flight to the new B: replay them too.
    for d in p.a.sent.clone() {
        p.b.inbox.push_back(d);
    }
    assert!(p.run_until_connected(10_000));
    assert_eq!(
        p.a.peer.restarts(),
        1,
        "one restart for the remote's new session"
    );
    assert_eq!(p.b.peer.restarts(), 0);
    assert_eq!(p.a.peer.remote_credentials(), p.b.peer.local_credentials());
}

#[test]
fn candidates_are_held_until_confirmation_and_bound_to_their_session() {
    let mut p = Pair::new(Config::default());
    // A's first description to B is lost; A binds B's first session and gathers.
    p.b.inbox.clear();
    let now = p.now;
    while let Some(d) = p.a.inbox.pop_front() {
        let _ = p.a.peer.handle_description(now, &d).unwrap();
        p.drain(true);
        while let Some((id, ev)) = p.a.agent.poll_event() {
            let _ = p.a.peer.handle_agent_event(now, id, ev).unwrap();
            p.drain(true);
        }
    }
    // Meanwhile B restarted: A's descriptions carry candidates but acknowledge B's old session.
    p.b.peer.restart(now).unwrap();
    p.drain(false);
    let from_a: Vec<_> = p.b.inbox.drain(..).collect();
    assert!(from_a.last().unwrap().candidates.len() == 2);
    for d in &from_a {
        assert_ne!(
            d.ack.unwrap().epoch,
            p.b.peer.local_session().unwrap().epoch
        );
        let _ = p.b.peer.handle_description(now, d).unwrap();
        p.drain(false);
        assert!(!p.b.peer.is_confirmed());
        assert_eq!(
            p.b.peer.remote_candidates_added(),
            0,
            "held, not given to the agent"
        );
        assert_eq!(p.b.remote_candidates(), 0);
    }
    // Rebinding and confirmation happen without a restart on either side beyond B's own.
    assert!(p.run_until_connected(10_000));
    assert_eq!((p.a.peer.restarts(), p.b.peer.restarts()), (0, 1));
}

#[test]
fn candidates_after_end_of_candidates_are_ignored() {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let mut d = p.a.sent.last().unwrap().clone();
    assert!(d.end_of_candidates);
    let known = d.candidates.len();
    let now = p.now;
    let events = |peer: &mut icepact::Peer| {
        let mut dropped = Vec::new();
        while let Some(out) = peer.poll_output() {
            if let icepact::Output::Event(icepact::Event::CandidatesAfterEndOfCandidates {
                count,
            }) = out
            {
                dropped.push(count);
            }
            assert!(
                !matches!(out, icepact::Output::Agent(_)),
                "nothing reaches the agent"
            );
        }
        dropped
    };
    // A newer version after end-of-candidates with nothing new: no event.
    d.session.version += 1;
    assert_eq!(
        p.b.peer.handle_description(now, &d).unwrap(),
        Disposition::Applied
    );
    assert_eq!(events(&mut p.b.peer), Vec::<usize>::new());
    // Three more candidates: all three dropped and reported.
    d.session.version += 1;
    for i in 0..3 {
        d.candidates.push(candidate_of(d.session.epoch, 42 + i));
    }
    assert_eq!(
        p.b.peer.handle_description(now, &d).unwrap(),
        Disposition::Applied
    );
    assert_eq!(events(&mut p.b.peer), vec![3]);
    assert_eq!(p.b.peer.remote_candidates_added(), known);
    // Withdrawing end-of-candidates is a protocol error and changes nothing.
    let before = p.b.peer.clone();
    d.session.version += 1;
    d.end_of_candidates = false;
    assert_eq!(
        p.b.peer.handle_description(now, &d),
        Err(Error::Description(
            DescriptionError::EndOfCandidatesWithdrawn
        ))
    );
    assert_eq!(p.b.peer, before);
}

#[test]
fn the_candidate_limit_is_inclusive() {
    let config = Config::default();
    let mut p = Pair::new(config);
    p.b.inbox.clear();
    let now = p.now;
    let mut d = p.a.peer.description().unwrap();
    let max = config.max_candidates as u16;
    d.candidates = (0..max).map(|i| candidate_of(d.session.epoch, i)).collect();
    assert_eq!(
        p.b.peer.handle_description(now, &d).unwrap(),
        Disposition::Applied
    );
    d.session.version += 1;
    d.candidates.push(candidate_of(d.session.epoch, max));
    assert!(matches!(
        p.b.peer.handle_description(now, &d),
        Err(Error::Description(DescriptionError::TooManyCandidates { count, max: m })) if count == m + 1
    ));
}

#[test]
fn malformed_descriptions_are_typed_errors_and_change_nothing() {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let now = p.now;
    let good = p.a.sent.last().unwrap().clone();
    let before = p.b.peer.clone();
    let mut cases = Vec::new();
    let mut d = good.clone();
    d.session.version += 1;
    d.credentials.pwd = Default::default();
    cases.push((d, "BadCredentials"));
    let mut d = good.clone();
    d.session.version += 1;
    d.credentials.ufrag = "x".repeat(icepact::MAX_CREDENTIAL_LEN + 1).into();
    cases.push((d, "BadCredentials"));
    let mut d = good.clone();
    d.session.version += 1;
    d.candidates = (0..40).map(|i| candidate_of(d.session.epoch, i)).collect();
    cases.push((d, "TooManyCandidates"));
    let mut d = good.clone();
    d.session.version += 1;
    d.candidates.reverse();
    d.candidates.push(candidate_of(d.session.epoch, 7));
    cases.push((d, "CandidatesRewritten"));
    // An acknowledgement from the future starts EPOCH_CATCH_UP (tests/liveness.rs); one of the
    // last epoch there is has nothing to catch up to and is an error.
    let mut d = good.clone();
    d.session.version += 1;
    d.ack = Some(icepact::SessionRef {
        epoch: u64::MAX,
        version: 0,
    });
    cases.push((d, "AckFromFuture"));
    for (d, name) in cases {
        let err = p.b.peer.handle_description(now, &d).unwrap_err();
        assert!(format!("{err:?}").contains(name), "{name}: got {err:?}");
        assert_eq!(p.b.peer, before, "{name} changed the peer");
    }
}

#[test]
fn agent_events_out_of_place_are_errors_and_old_agents_are_ignored() {
    let mut p = Pair::new(Config::default());
    let id = p.a.agent_id().unwrap();
    let now = p.now;
    let before = p.a.peer.clone();
    // Rule AGENT_REPORTS: a report with no edge is ignored, named, and changes nothing.
    assert_eq!(
        p.a.peer
            .handle_agent_event(now, id, AgentEvent::Connected)
            .unwrap(),
        Disposition::Ignored(IgnoreReason::AgentReport {
            report: icepact::Report::Connected,
            state: Idle
        })
    );
    assert_eq!(p.a.peer, before);
    // A local candidate before `Gather` (an agent with a candidate pool) is taken.
    assert_eq!(
        p.a.peer
            .handle_agent_event(now, id, AgentEvent::LocalCandidate(candidate_of(id.0, 1)))
            .unwrap(),
        Disposition::Applied
    );
    assert_eq!(p.a.peer.local_candidates().len(), 1);
    p.drain(true);
    assert!(p.run_until_connected(1_000));
    // An event of the agent of a closed session is ignored (no restart from a zombie, B5).
    p.a.peer.restart(now).unwrap();
    p.drain(true);
    assert_eq!(
        p.a.peer
            .handle_agent_event(now, id, AgentEvent::Failed)
            .unwrap(),
        Disposition::Ignored(IgnoreReason::StaleAgent(id))
    );
    assert_eq!(p.a.peer.restarts(), 1);
}

#[test]
fn time_going_backwards_is_an_error() {
    let mut p = Pair::new(Config::default());
    let later = p.now + Duration::from_secs(2);
    p.a.peer.handle_timeout(later).unwrap();
    let before = p.a.peer.clone();
    assert_eq!(
        p.a.peer.handle_timeout(p.now),
        Err(Error::TimeWentBackwards)
    );
    assert_eq!(p.a.peer, before);
}

#[test]
fn after_close_no_agent_is_ever_created() {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let now = p.now;
    p.a.peer.close(now).unwrap();
    p.drain(true);
    assert_eq!(p.a.peer.state(), Closed);
    assert_eq!(p.a.agent_id(), None);
    assert_eq!(p.a.peer.restart(now), Err(Error::ShutDown));
    let d = p.b.peer.description().unwrap();
    assert_eq!(
        p.a.peer.handle_description(now, &d).unwrap(),
        Disposition::Ignored(IgnoreReason::ShutDown)
    );
    p.a.peer.close(now).unwrap();
    assert_eq!(p.a.peer.poll_output(), None);
    assert_eq!(p.a.peer.poll_timeout(), None);
    assert_eq!(p.a.agent.created(), 1);
}

#[test]
fn equal_keys_are_rejected() {
    let err = icepact::Peer::new(
        Config::default(),
        icepact::PeerSetup {
            local: harness::A_KEY,
            remote: harness::A_KEY,
            epoch_floor: 1,
            seed: icepact::Seed::insecure_from_u64(1),
        },
        std::time::Instant::now(),
    )
    .unwrap_err();
    assert_eq!(err, Error::EqualKeys);
}

/// The seed 001 restart rule restarts on a late initial offer of an *old* session; the project's
/// epoch rule ignores it.
#[test]
fn seed_policy_restarts_on_a_late_old_offer_epoch_policy_does_not() {
    for (policy, expect_restart) in [(RestartPolicy::Epoch, false), (RestartPolicy::Seed, true)] {
        let mut config = Config::default();
        config.policy = policy;
        let mut p = Pair::new(config);
        assert!(p.run_until_connected(1_000), "{policy:?}");
        let now = p.now;
        p.a.peer.restart(now).unwrap();
        p.drain(true);
        assert!(p.run_until_connected(10_000), "{policy:?}");
        let restarts = p.b.peer.restarts();
        // The initial offer of A's first session arrives late.
        let late = p.a.sent[0].clone();
        assert_eq!(late.session.version, 0);
        let _ = p.b.peer.handle_description(now, &late).unwrap();
        assert_eq!(p.b.peer.restarts() > restarts, expect_restart, "{policy:?}");
    }
}

/// Rule DUPLICATE_DESCRIPTION / cunicu B2: a duplicate, and a newer version, that ask for a
/// reply get one, carrying the acknowledgement of what was received; one that asks for none
/// gets none. (Liveness does not depend on it — RESEND_UNACKED repairs a lost reply — but the
/// reply saves a back-off interval, so it is pinned here.)
#[test]
fn requested_replies_are_sent_for_duplicates_and_updates_only_when_asked() {
    let mut p = Pair::new(Config::default());
    assert!(p.run_until_connected(1_000));
    let now = p.now;
    let newest = p.b.peer.newest_applied().unwrap();
    let mut d =
        p.a.sent
            .iter()
            .rev()
            .find(|d| d.session == newest)
            .unwrap()
            .clone();
    let sends = |peer: &mut icepact::Peer| {
        let mut n = Vec::new();
        while let Some(o) = peer.poll_output() {
            if let icepact::Output::Send(s) = o {
                n.push(s);
            }
        }
        n
    };
    for (need, update) in [(true, false), (false, false), (true, true), (false, true)] {
        if update {
            d.session.version += 1;
        }
        d.need_reply = need;
        let got = p.b.peer.handle_description(now, &d).unwrap();
        assert_eq!(got == Disposition::Applied, update);
        let replies = sends(&mut p.b.peer);
        if need {
            assert_eq!(replies.len(), 1, "need {need} update {update}");
            assert_eq!(replies[0].ack, Some(d.session), "the reply acknowledges it");
        } else {
            assert!(replies.is_empty(), "need {need} update {update}");
        }
    }
}
