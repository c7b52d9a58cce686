//! proptest: random interleavings of two real peers with drops, duplicates, reordering, timer
//! firings and agent failures never break the invariants, and once the faults stop and the
//! latest descriptions are delivered, both connect.

mod harness;

use harness::Pair;
use icepact::reference_agent::Phase;
use icepact::{Config, RestartCause, RestartPolicy};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Deliver { to_a: bool, idx: usize },
    Drop { to_a: bool, idx: usize },
    Duplicate { to_a: bool, idx: usize },
    Agent { a: bool },
    Meet,
    Timer,
    Fail { a: bool },
    GiveUp { a: bool },
    LoseReport { a: bool },
    Quirk { a: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), any::<usize>()).prop_map(|(to_a, idx)| Op::Deliver { to_a, idx }),
        2 => (any::<bool>(), any::<usize>()).prop_map(|(to_a, idx)| Op::Drop { to_a, idx }),
        2 => (any::<bool>(), any::<usize>()).prop_map(|(to_a, idx)| Op::Duplicate { to_a, idx }),
        5 => any::<bool>().prop_map(|a| Op::Agent { a }),
        1 => Just(Op::Meet),
        2 => Just(Op::Timer),
        1 => any::<bool>().prop_map(|a| Op::Fail { a }),
        1 => any::<bool>().prop_map(|a| Op::GiveUp { a }),
        1 => any::<bool>().prop_map(|a| Op::LoseReport { a }),
        1 => any::<bool>().prop_map(|a| Op::Quirk { a }),
    ]
}

fn apply(p: &mut Pair, op: &Op) {
    match *op {
        Op::Deliver { to_a, idx } => {
            p.deliver(to_a, idx);
        }
        Op::Drop { to_a, idx } => {
            let inbox = &mut p.node(to_a).inbox;
            if !inbox.is_empty() {
                let i = idx % inbox.len();
                inbox.remove(i);
            }
        }
        Op::Duplicate { to_a, idx } => {
            let inbox = &mut p.node(to_a).inbox;
            if !inbox.is_empty() {
                let d = inbox[idx % inbox.len()].clone();
                inbox.push_back(d);
            }
        }
        Op::Agent { a } => {
            p.agent_step(a);
        }
        Op::Meet => {
            p.agents_meet();
        }
        Op::Timer => {
            p.fire_next_timer();
        }
        // The reference agent reports as a real one would in its phase; the reports are
        // queued and reach the peer with a later `Agent` op (late, interleaved).
        Op::Fail { a } => {
            let agent = &mut p.node(a).agent;
            match agent.live().map(|l| l.phase) {
                Some(Phase::Connected | Phase::Completed) => agent.pair_lost(),
                Some(Phase::Checking | Phase::Disconnected) => agent.give_up(),
                _ => {}
            }
        }
        Op::GiveUp { a } => p.node(a).agent.give_up(),
        Op::LoseReport { a } => {
            let _ = p.node(a).agent.lose_event();
        }
        Op::Quirk { a } => {
            let _ = p.node(a).agent.quirk();
        }
    }
}

/// Runs `ops`; returns the pair and the checking and gathering timeouts the ops caused. A
/// `Timer` op jumps the clock to the next deadline whatever else could happen, so it may hold
/// two agents that could meet apart for `Config::checking_timeout` (an ICE connection that took
/// 30 s), or local candidates away from their peer for `Config::gathering_timeout` (a gathering
/// that took 10 s): faults of the environment, after which CHECKING_TIMEOUT or
/// GATHERING_TIMEOUT restarts, as it must. During the heal agents report and meet before
/// timers fire, so no timeout is excused there.
fn run(policy: RestartPolicy, ops: &[Op]) -> (Pair, u32) {
    let mut config = Config::default();
    config.policy = policy;
    let mut p = Pair::new(config);
    let timeouts = |p: &Pair| {
        p.a.restarts
            .iter()
            .chain(&p.b.restarts)
            .filter(|c| {
                matches!(
                    c,
                    RestartCause::CheckingTimeout | RestartCause::GatheringTimeout
                )
            })
            .count() as u32
    };
    let mut held_apart = 0;
    for op in ops {
        let before = timeouts(&p);
        apply(&mut p, op);
        if matches!(op, Op::Timer) {
            held_apart += timeouts(&p) - before;
        }
    }
    (p, held_apart)
}

/// Runs `ops`, heals, and checks convergence and the restart bound. The harness itself checks
/// the per-step invariants (table edges, roles, candidate binding, monotonic versions, one agent
/// at a time) and panics on a violation.
fn check(policy: RestartPolicy, ops: &[Op]) -> Result<(), TestCaseError> {
    let (mut p, held_apart) = run(policy, ops);
    // Heal: no more faults; deliver everything in order, fire timers as they come due.
    prop_assert!(
        p.run_until_connected(20_000),
        "did not converge: A {:?} B {:?}",
        p.a.peer.state(),
        p.b.peer.state()
    );
    prop_assert_eq!(p.a.peer.remote_credentials(), p.b.peer.local_credentials());
    prop_assert_eq!(p.b.peer.remote_credentials(), p.a.peer.local_credentials());
    prop_assert_ne!(p.a.peer.role(), p.b.peer.role());
    // No storms: each injected agent fault restarts its side once and the other side at most
    // once; stale, duplicated and reordered descriptions restart nothing.
    // A lost report is a fault too (the checking timeout restarts its side); a quirk is not.
    let faults = ops
        .iter()
        .filter(|o| {
            matches!(
                o,
                Op::Fail { .. } | Op::GiveUp { .. } | Op::LoseReport { .. }
            )
        })
        .count() as u32
        + held_apart;
    let restarts = p.a.peer.restarts() + p.b.peer.restarts();
    prop_assert!(
        restarts <= 2 * faults,
        "{} restarts for {} faults",
        restarts,
        faults
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn interleavings_keep_invariants_and_converge(ops in proptest::collection::vec(op(), 0..120)) {
        check(RestartPolicy::Epoch, &ops)?;
    }
}

/// The same checks are not vacuous: with seed 001's restart rule they find a violation.
#[test]
fn the_same_checks_catch_the_seed_policy() {
    use proptest::test_runner::{Config as RunnerConfig, TestRunner};
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 2048,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 0..120), |ops| {
        check(RestartPolicy::Seed, &ops)
    });
    assert!(result.is_err(), "seed policy passed every check");
}
