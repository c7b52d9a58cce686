//! Pinned results: a change of the state space or of the seed policy's counterexample shows up
//! here in review.

use icepact_models::model::Action;
use icepact_models::{check, shortest_counterexample, trace, Budgets, CheckOptions, Engine};
use icepact_models::{IceModel, Outcome, RestartPolicy};

/// The default 2-peer configuration, exhaustively: every invariant holds, every sanity example
/// exists, and the state count is exactly this.
#[test]
fn default_two_peers_is_exhaustive_and_pinned() {
    let rows = check(&CheckOptions::default());
    for r in &rows {
        assert!(r.exhaustive, "{} not exhaustive", r.property);
        assert!(
            matches!(r.outcome, Outcome::Holds | Outcome::Found),
            "{}: {:?}\n{}",
            r.property,
            r.outcome,
            r.trace.as_deref().unwrap_or("")
        );
    }
    assert_eq!(rows[0].unique_states, 1_669_804);
}

/// The seed policy's shortest counterexample: a crash, then a replayed initial description of
/// the crashed node's old session restarts the other side and moves its versions back.
#[test]
fn seed_policy_shortest_counterexample_is_pinned() {
    let model = IceModel::new(2, RestartPolicy::Seed, Budgets::TWO_PEERS);
    let path = shortest_counterexample(&model, "monotonic versions", None)
        .expect("the seed policy violates monotonic versions");
    assert_eq!(
        path,
        vec![
            Action::Crash(0),
            Action::Deliver(1),
            Action::Replay(1),
            Action::Deliver(1),
        ]
    );
    let text = trace::text(&model, &path);
    assert!(text.contains("FAULT replay A→B e100v0"), "{text}");
    assert!(text.contains("B restarts (RemoteRestart"), "{text}");
}

/// Our BFS and stateright's DFS agree on a small configuration, and BFS paths are shortest.
#[test]
fn bfs_and_dfs_agree_on_a_small_configuration() {
    let small = Budgets {
        drops: 1,
        replays: 0,
        crashes: 0,
        failures: 0,
        restarts: 0,
        early_timers: 0,
        timer_cap: 3,
        link_capacity: 1,
    };
    let opts = |engine| CheckOptions {
        budgets: small,
        engine,
        ..CheckOptions::default()
    };
    let bfs = check(&opts(Engine::Bfs));
    let dfs = check(&opts(Engine::Dfs));
    assert_eq!(bfs[0].unique_states, dfs[0].unique_states);
    assert_eq!(bfs[0].unique_states, 1_319);
    // Without crashes and failures the restart examples are unreachable; invariants hold.
    assert!(bfs
        .iter()
        .all(|r| r.exhaustive && r.outcome != Outcome::Violated));
}
