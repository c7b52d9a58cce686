//! A fast model-check suite for mutation testing (`cargo mutants -f src/rules.rs … --
//! --test model_mutants`, see docs/MODEL-CHECKING.md; it lives in the core package because
//! cargo-mutants runs the tests of the mutated package): small exhaustive configurations, one fault class
//! each plus glare (two failures) and replay-after-crash. Every invariant must hold in each, and
//! every sanity example must be found in at least one, so a mutant that breaks a rule or makes a
//! behaviour unreachable fails here.

use std::collections::BTreeSet;

use icepact_models::{check, Budgets, CheckOptions, Engine, Outcome, RestartPolicy};

fn budgets(drops: u8, replays: u8, crashes: u8, failures: u8, restarts: u8) -> Budgets {
    Budgets {
        drops,
        replays,
        crashes,
        failures,
        restarts,
        ..Budgets::NONE
    }
}

#[test]
fn small_configurations_hold_and_reach_every_example() {
    let configs = [
        budgets(1, 0, 0, 0, 0),
        budgets(0, 1, 0, 0, 0),
        budgets(0, 0, 1, 0, 0),
        budgets(0, 0, 0, 1, 0),
        budgets(0, 0, 0, 0, 1),
        budgets(0, 0, 0, 2, 0),
        budgets(0, 1, 1, 0, 0),
        Budgets {
            lost_events: 1,
            ..Budgets::NONE
        },
        Budgets {
            quirks: 1,
            failures: 1,
            ..Budgets::NONE
        },
    ];
    let mut found = BTreeSet::new();
    let mut sometimes = BTreeSet::new();
    for b in configs {
        let opts = CheckOptions {
            peers: 2,
            policy: RestartPolicy::Epoch,
            budgets: b,
            engine: Engine::Dfs,
            threads: 1,
            timeout: None,
            ..CheckOptions::default()
        };
        for r in check(&opts) {
            assert!(r.exhaustive, "{}: not exhaustive", r.config);
            assert_ne!(
                r.outcome,
                Outcome::Violated,
                "{} violated in {}:\n{}",
                r.property,
                r.config,
                r.trace.as_deref().unwrap_or("")
            );
            if !r.always {
                sometimes.insert(r.property);
                if r.outcome == Outcome::Found {
                    found.insert(r.property);
                }
            }
        }
    }
    let missing: Vec<_> = sometimes.difference(&found).collect();
    assert!(missing.is_empty(), "never reached: {missing:?}");
}

/// Seed 001's policy is kept as a reference that must stay broken in exactly the known way: in a
/// small configuration the shortest counterexample is the pinned crash-and-replay path.
#[test]
fn the_seed_policy_still_breaks_the_known_way() {
    use icepact_models::model::Action;
    use icepact_models::{shortest_counterexample, IceModel};
    let model = IceModel::new(2, RestartPolicy::Seed, budgets(0, 1, 1, 0, 0));
    let path = shortest_counterexample(&model, "monotonic versions", None)
        .expect("the seed policy violates monotonic versions");
    assert_eq!(
        path,
        vec![
            Action::Deliver(0),
            Action::Deliver(0),
            Action::Crash(0, icepact_models::model::Floor::Above),
            Action::Deliver(1),
            Action::Replay(2),
            Action::Deliver(1),
        ]
    );
}
