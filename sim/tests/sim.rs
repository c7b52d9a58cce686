//! The simulator's own guarantees: exact reproducibility, that it catches a broken policy,
//! that it shrinks, and that the default policy survives a swarm sweep; and pinned runs of the
//! faults the core must survive: crashes that restart with an epoch floor not above the old
//! epochs (rule EPOCH_CATCH_UP), agents that fail straight from Connected (rule
//! AGENT_REPORTS) and lost agent reports (rule CHECKING_TIMEOUT).

use icepact::reference_agent::AgentKind;
use icepact::RestartPolicy;
use icepact_sim::{
    run_seed, shrink, sweep, AgentFaultKind, CrashFloor, Episode, FaultKind, Outcome, Plan,
    SimConfig, Trace, TraceKind, World,
};

fn traced(policy: RestartPolicy) -> SimConfig {
    let mut cfg = SimConfig::new(2, policy);
    cfg.trace = true;
    cfg
}

#[test]
fn the_same_seed_reproduces_the_same_trace() {
    let cfg = traced(RestartPolicy::Epoch);
    for seed in [1, 42, 4242] {
        let (a, ta) = run_seed(&cfg, seed);
        let (b, tb) = run_seed(&cfg, seed);
        assert_ne!(a.trace_hash, 0);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(ta.entries(), tb.entries());
        assert_eq!(a.stats, b.stats);
    }
    // And different seeds differ.
    assert_ne!(
        run_seed(&cfg, 1).0.trace_hash,
        run_seed(&cfg, 2).0.trace_hash
    );
}

#[test]
fn plans_are_derived_from_the_seed_alone() {
    assert_eq!(Plan::from_seed(99, 2), Plan::from_seed(99, 2));
    let plans: Vec<_> = (0..50).map(|s| Plan::from_seed(s, 2)).collect();
    // Swarm: profiles differ between seeds, and some seeds inject no faults of a class.
    assert!(plans.iter().any(|p| p.profile.crashes == 0));
    assert!(plans.iter().any(|p| p.profile.crashes > 0));
    assert!(plans.iter().any(|p| p.profile.drop_permille == 0));
    assert!(plans.iter().any(|p| p.profile.drop_permille > 0));
    // Every fault kind and every agent kind is drawn.
    let plans: Vec<_> = (0..500).map(|s| Plan::from_seed(s, 2)).collect();
    for kind in FaultKind::ALL {
        if kind != FaultKind::None {
            assert!(
                plans.iter().any(|p| p.fault_kinds().contains(&kind)),
                "{kind} never drawn"
            );
        }
    }
    for kind in AgentKind::ALL {
        assert!(
            plans.iter().any(|p| p.agents.contains(&kind)),
            "{kind:?} never drawn"
        );
    }
}

#[test]
fn a_calm_run_connects_quickly_with_no_restart() {
    let cfg = traced(RestartPolicy::Epoch);
    let (out, trace) = World::new(cfg, 5, Plan::calm()).run();
    assert!(out.violation.is_none(), "{:?}", out.violation);
    assert_eq!(out.stats.restarts, 0);
    let t = out.converged_after.expect("converged");
    assert!(t.as_secs_f64() < 2.0, "took {t:?}");
    let connected = trace
        .entries()
        .iter()
        .filter(|e| matches!(&e.kind, TraceKind::State { to, .. } if to == "Connected"))
        .count();
    assert_eq!(connected, 2);
    assert!(trace.to_jsonl().lines().count() == trace.entries().len());
    assert!(trace.to_mermaid(2, 1000).starts_with("sequenceDiagram\n"));
}

#[test]
fn the_default_policy_survives_a_swarm_sweep() {
    let cfg = SimConfig::new(2, RestartPolicy::Epoch);
    let s = sweep(&cfg, 0, 300, 2, false);
    assert_eq!(s.seeds, 300);
    assert!(s.violations.is_empty(), "{:?}", s.violations.first());
    assert_eq!(s.converged, 300);
    // The sweep did inject every fault class, and the core's new rules did their work.
    let st = &s.stats;
    for (name, n) in [
        ("drops", st.dropped),
        ("duplicates", st.duplicated),
        ("partitioned", st.partitioned),
        ("replays", st.replayed),
        ("crashes", st.crashes),
        ("crashes with a regressed floor", st.regressed_floors),
        ("agent faults", st.agent_faults),
        ("lost agent reports", st.lost_events),
        ("quirks", st.quirks),
        ("reports stamped early", st.late_reports),
        ("restart requests", st.restart_requests),
        ("epoch catch-ups", st.catch_ups),
        ("checking timeouts", st.checking_timeouts),
    ] {
        assert!(n > 0, "no {name} injected");
    }
    // All four agent kinds ran.
    for (kind, n) in AgentKind::ALL.iter().zip(st.agents) {
        assert!(n > 0, "no {kind:?} agent ran");
    }
    // Every fault kind struck somewhere, and the per-fault figures add up.
    for kind in FaultKind::ALL {
        let Some(f) = s.by_fault.get(&kind) else {
            assert_eq!(kind, FaultKind::None, "{kind} in no plan");
            continue;
        };
        assert!(f.struck > 0, "{kind} never struck");
        assert_eq!(f.converged, f.runs, "{kind}");
        assert_eq!(f.convergence.len() as u64, f.runs, "{kind}");
    }
    // The sweep and the verification run print them.
    let table = s.fault_table();
    for kind in FaultKind::ALL {
        assert_eq!(
            table.contains(&format!("| {kind} |")),
            s.by_fault.contains_key(&kind),
            "{table}"
        );
    }
    assert!(icepact_sim::sim_figures(&cfg, &s).contains("0 violations, 300/300 converged"));
}

#[test]
fn a_mesh_of_eight_converges() {
    let cfg = SimConfig::new(8, RestartPolicy::Epoch);
    let s = sweep(&cfg, 0, 10, 2, false);
    assert!(s.violations.is_empty(), "{:?}", s.violations.first());
    assert_eq!(s.converged, 10);
}

#[test]
fn the_seed_policy_is_caught_and_its_failure_shrinks() {
    let cfg = SimConfig::new(2, RestartPolicy::Seed);
    let s = sweep(&cfg, 0, 300, 2, false);
    let (seed, _) = s
        .violations
        .first()
        .cloned()
        .expect("seed 001's rule breaks");
    let plan = Plan::from_seed(seed, 2);
    let (min, _runs) = shrink(&cfg, seed, &plan);
    let (out, _) = World::new(cfg.clone(), seed, min.clone()).run();
    assert!(out.violation.is_some(), "the shrunk plan still fails");
    assert!(min.episodes.len() <= plan.episodes.len());
}

#[test]
fn ping_pong_moves_two_messages_per_round_with_and_without_crypto() {
    let plain = icepact_sim::ping_pong(100, None);
    assert_eq!(plain.messages, 200);
    let mut seal = icepact_sim::WireSeal::new();
    let sealed = icepact_sim::ping_pong(100, Some(&mut seal));
    assert_eq!(sealed.messages, 200);
}

// -------------------------------------------------------------------------------------------
// Pinned faults

/// A run of `episodes` on a calm network, every node running `agents`' kinds.
fn pinned(seed: u64, agents: [AgentKind; 2], episodes: Vec<Episode>) -> (Outcome, Trace) {
    let mut plan = Plan::calm();
    plan.agents = agents.to_vec();
    plan.episodes = episodes;
    let (out, trace) = World::new(traced(RestartPolicy::Epoch), seed, plan).run();
    assert!(out.violation.is_none(), "{:?}", out.violation);
    assert!(out.converged_after.is_some(), "never converged");
    (out, trace)
}

/// The restarts of `node` in the trace whose cause starts with `cause`.
fn restarts(trace: &Trace, node: usize, cause: &str) -> usize {
    trace
        .entries()
        .iter()
        .filter(|e| {
            matches!(&e.kind, TraceKind::Restart { node: n, cause: c, .. }
                if *n == node && c.starts_with(cause))
        })
        .count()
}

#[test]
fn a_crash_with_a_regressed_epoch_floor_catches_up_and_reconverges() {
    for floor in [
        CrashFloor::Zero,
        CrashFloor::Below { gap: 1 },
        CrashFloor::Equal,
    ] {
        for seed in [3, 11] {
            let crash = Episode::Crash {
                at_ms: 10_000,
                node: 1,
                down_ms: 1_000,
                floor,
            };
            let (out, trace) = pinned(seed, [AgentKind::Pion, AgentKind::Libwebrtc], vec![crash]);
            assert_eq!(out.stats.crashes, 1);
            assert_eq!(out.stats.regressed_floors, 1, "{floor:?}");
            assert!(out.struck.contains(&floor.fault_kind()));
            // The new process learned from node 0's reply that its floor went back, and moved
            // its epoch above once (rule EPOCH_CATCH_UP); node 0 followed once.
            assert_eq!(
                restarts(&trace, 1, "EpochCatchUp"),
                1,
                "{floor:?} seed {seed}"
            );
            assert_eq!(out.stats.catch_ups, 1, "{floor:?} seed {seed}");
            assert_eq!(
                restarts(&trace, 0, "RemoteRestart"),
                1,
                "{floor:?} seed {seed}"
            );
            assert!(
                out.stats.restarts <= 2,
                "{floor:?} seed {seed}: {:?}",
                out.stats
            );
        }
    }
    // The control: a floor above the old epochs needs no catch-up.
    let crash = Episode::Crash {
        at_ms: 10_000,
        node: 1,
        down_ms: 1_000,
        floor: CrashFloor::Above,
    };
    let (out, trace) = pinned(3, [AgentKind::Pion, AgentKind::Pion], vec![crash]);
    assert_eq!(out.stats.regressed_floors, 0);
    assert_eq!(restarts(&trace, 1, "EpochCatchUp"), 0);
    assert_eq!(restarts(&trace, 0, "RemoteRestart"), 1);
}

#[test]
fn an_agent_failing_straight_from_connected_restarts_once_and_reconverges() {
    for kind in AgentKind::ALL {
        // One side.
        let fault = |node, remote| Episode::AgentFault {
            at_ms: 10_000,
            node,
            remote,
            kind: AgentFaultKind::FailConnected,
            within_ms: 0,
        };
        let (out, trace) = pinned(7, [kind, kind], vec![fault(0, 1)]);
        assert_eq!(out.stats.agent_faults, 1, "{kind:?}");
        assert!(out.struck.contains(&FaultKind::AgentFailedConnected));
        assert_eq!(restarts(&trace, 0, "AgentFailed"), 1, "{kind:?}");
        assert_eq!(restarts(&trace, 1, "RemoteRestart"), 1, "{kind:?}");
        // The peer followed the table's edge Connected/Completed -> Failed.
        assert!(trace.entries().iter().any(|e| matches!(&e.kind,
            TraceKind::State { node: 0, from, to, .. }
                if (from == "Connected" || from == "Completed") && to == "Failed")));
        assert_eq!(out.stats.restarts, 2, "{kind:?}");

        // Both sides at once: each restarts once, and each binds the other's new session
        // without restarting again.
        let (out, trace) = pinned(7, [kind, kind], vec![fault(0, 1), fault(1, 0)]);
        assert_eq!(out.stats.agent_faults, 2, "{kind:?}");
        assert_eq!(restarts(&trace, 0, "AgentFailed"), 1, "{kind:?}");
        assert_eq!(restarts(&trace, 1, "AgentFailed"), 1, "{kind:?}");
        assert_eq!(out.stats.restarts, 2, "{kind:?}");
    }
}

#[test]
fn a_lost_connected_report_is_repaired_by_the_checking_timeout() {
    // Node 0 restarts; of its new agent's reports it lets Checking through and loses
    // Connected (pion reports no Completed after it). Its peer waits in Checking over a
    // working agent until the checking timeout restarts the session.
    let episodes = vec![
        Episode::Restart {
            at_ms: 10_000,
            node: 0,
            remote: 1,
        },
        Episode::LoseEvent {
            at_ms: 10_000,
            node: 0,
            remote: 1,
            skip: 1,
            within_ms: 5_000,
        },
    ];
    let (out, trace) = pinned(5, [AgentKind::Pion, AgentKind::Pion], episodes);
    assert_eq!(out.stats.lost_events, 1);
    assert!(trace.entries().iter().any(|e| matches!(&e.kind,
        TraceKind::Fault { what } if what.contains("Connected)) lost"))));
    assert_eq!(restarts(&trace, 0, "CheckingTimeout"), 1);
    assert_eq!(out.stats.checking_timeouts, 1);
    // 30 s of checking after the restart at 10 s, then a reconnect; heal was at 15 s.
    let t = out.converged_after.expect("converged").as_secs_f64();
    assert!((24.0..30.0).contains(&t), "converged {t} s after heal");
}

#[test]
fn reports_stamped_early_are_accepted() {
    let mut plan = Plan::calm();
    plan.profile.late_ms = 5;
    plan.agents = AgentKind::ALL[..2].to_vec();
    plan.episodes = vec![Episode::Restart {
        at_ms: 5_000,
        node: 1,
        remote: 0,
    }];
    let (out, trace) = World::new(traced(RestartPolicy::Epoch), 9, plan).run();
    assert!(out.violation.is_none(), "{:?}", out.violation);
    assert!(out.stats.late_reports > 0);
    assert!(trace.entries().iter().any(|e| matches!(&e.kind,
        TraceKind::Agent { early_us, disposition, .. } if *early_us > 0 && disposition == "applied")));
}

/// Both agents are pion without a disconnected timeout: a partition makes both lose their pair
/// and report Failed straight from Connected, and both reports are lost (agents never repeat
/// one). Before rule REPORT_POLL the core had no timer in Connected, so both peers stayed
/// Connected over dead agents forever; now the poll gets the Failed again. Shrunk from swarm
/// seed 78957.
#[test]
fn failed_reports_lost_on_both_sides_while_connected_still_reconverge() {
    let mut plan = Plan::calm();
    plan.agents = vec![AgentKind::PionNoDisconnect; 2];
    plan.episodes = vec![
        Episode::Partition {
            at_ms: 25_382,
            for_ms: 15_106,
            from: 1,
            to: 0,
            one_way: false,
        },
        Episode::LoseEvent {
            at_ms: 15_427,
            node: 0,
            remote: 1,
            skip: 0,
            within_ms: 20_533,
        },
        Episode::LoseEvent {
            at_ms: 20_148,
            node: 1,
            remote: 0,
            skip: 0,
            within_ms: 15_416,
        },
    ];
    let (out, trace) = World::new(traced(RestartPolicy::Epoch), 78957, plan).run();
    assert_eq!(out.stats.lost_events, 2, "both Failed reports were lost");
    if out.violation.is_some() {
        for e in trace.entries() {
            eprintln!("{:>10.6}s {:?}", e.at_us as f64 / 1e6, e.kind);
        }
    }
    assert!(out.violation.is_none(), "{:?}", out.violation);
}

/// Issue 10's mesh churn, through the real `Endpoint`: node 0 removes node 1 at 5 s (its
/// session and agent end; node 1 keeps its own session, sees its agent fail and restarts it)
/// and adds it back at 65 s. Node 1's envelopes in between are refused as from an unknown sender, node 0's new
/// session starts above every epoch the removed one used, and the pair converges again without
/// a violation. A 3-node mesh where one pair churns leaves the other two sessions untouched.
#[test]
fn a_peer_removed_and_added_again_reconverges_through_the_endpoint() {
    let leave = |node, remote| Episode::Leave {
        at_ms: 5_000,
        node,
        remote,
        away_ms: 60_000,
    };
    let (out, trace) = pinned(7, [AgentKind::Str0m, AgentKind::Pion], vec![leave(0, 1)]);
    assert_eq!(out.stats.leaves, 1);
    assert!(out.struck.contains(&FaultKind::Leave));
    assert!(
        out.stats.refused > 0,
        "node 1's re-sends were refused while it was away"
    );
    let epochs: Vec<u64> = trace
        .entries()
        .iter()
        .filter_map(|e| match e.kind {
            TraceKind::Send { from: 0, epoch, .. } => Some(epoch),
            _ => None,
        })
        .collect();
    let first = epochs[0];
    let last = *epochs.last().unwrap();
    assert!(
        last > first,
        "the re-added session starts above the old one"
    );
    // Three nodes: only the pair (0, 2) churns; (0, 1) and (1, 2) never restart.
    let mut cfg = SimConfig::new(3, RestartPolicy::Epoch);
    cfg.trace = true;
    let mut plan = Plan::calm();
    plan.episodes = vec![leave(0, 2)];
    let (out, trace) = World::new(cfg, 11, plan).run();
    assert!(out.violation.is_none(), "{:?}", out.violation);
    assert!(out.converged_after.is_some());
    let restarted = |a: usize, b: usize| {
        trace.entries().iter().any(|e| {
            matches!(e.kind, TraceKind::Restart { node, remote, .. }
                if (node, remote) == (a, b) || (node, remote) == (b, a))
        })
    };
    assert!(
        !restarted(0, 1) && !restarted(1, 2),
        "other sessions untouched"
    );
    assert!(restarted(0, 2), "node 2 follows node 0's new session");
}

/// A trace written as JSON Lines reads back to the same entries (feature `serde` of the
/// simulator's trace types).
#[test]
fn traces_round_trip_through_json_lines() {
    let (_, trace) = World::new(traced(RestartPolicy::Epoch), 5, Plan::from_seed(5, 2)).run();
    let back: Vec<icepact_sim::TraceEntry> = trace
        .to_jsonl()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!back.is_empty());
    assert_eq!(back, trace.entries());
}

/// A sweep names the run with the most epoch catch-ups, and today that is seed 2840: node A
/// crashes twice below its old epochs, and after B removes and re-adds A, a replay of A's
/// second process makes its third process catch up a second time (docs/PROTOCOL.md, "Why a
/// replay can never trigger a catch-up"). A change to rule EPOCH_CATCH_UP shows here.
#[test]
fn the_sweep_names_the_run_with_the_most_catch_ups() {
    let s = sweep(&SimConfig::new(2, RestartPolicy::Epoch), 2830, 20, 2, false);
    assert_eq!(s.seeds, 20);
    assert_eq!(s.most_catch_ups, Some((3, 2840)));
}
