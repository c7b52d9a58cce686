//! The simulator's own guarantees: exact reproducibility, that it catches a broken policy,
//! that it shrinks, and that the default policy survives a swarm sweep.

use icepact::RestartPolicy;
use icepact_sim::{run_seed, shrink, sweep, Plan, SimConfig, TraceKind, World};

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
    // The sweep did inject every fault class.
    let st = &s.stats;
    for (name, n) in [
        ("drops", st.dropped),
        ("duplicates", st.duplicated),
        ("partitioned", st.partitioned),
        ("replays", st.replayed),
        ("crashes", st.crashes),
        ("agent faults", st.agent_faults),
        ("restart requests", st.restart_requests),
    ] {
        assert!(n > 0, "no {name} injected");
    }
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
