//! Shrinking a failing fault plan to a minimal one with proptest's shrinking machinery.
//!
//! The plan's episodes (and its lossy window, and its late agent reports) become a mask of booleans that starts all `true`;
//! proptest's value tree then switches elements off (`simplify`) and back on (`complicate`)
//! while the run still fails, which converges to a locally minimal failing plan.

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use crate::profile::Plan;
use crate::world::{SimConfig, World};

/// Shrinks `plan` (failing for `seed`) to a smaller plan that still fails. Returns the smallest
/// failing plan found and how many runs it took.
pub fn shrink(cfg: &SimConfig, seed: u64, plan: &Plan) -> (Plan, u32) {
    let fails = |p: &Plan| {
        World::new(cfg.clone(), seed, p.clone())
            .run()
            .0
            .violation
            .is_some()
    };
    let apply = |mask: &[bool]| {
        let mut p = plan.clone();
        p.episodes = plan
            .episodes
            .iter()
            .zip(mask)
            .filter(|(_, keep)| **keep)
            .map(|(e, _)| e.clone())
            .collect();
        if !mask[plan.episodes.len()] {
            p.lossy_until_ms = 0;
        }
        if !mask[plan.episodes.len() + 1] {
            p.profile.late_ms = 0;
        }
        p
    };
    let n = plan.episodes.len() + 2;
    let strategy = proptest::collection::vec(proptest::bool::weighted(1.0), n..=n);
    let mut runner = TestRunner::deterministic();
    // `weighted(1.0)` always generates `true`: the tree starts at the full plan.
    let mut tree = strategy
        .new_tree(&mut runner)
        .expect("a fixed-size vector strategy always generates");
    let mut best = plan.clone();
    let mut runs = 0;
    loop {
        let candidate = apply(&tree.current());
        runs += 1;
        let step = if fails(&candidate) {
            if candidate.episodes.len() < best.episodes.len()
                || candidate.lossy_until_ms < best.lossy_until_ms
                || candidate.profile.late_ms < best.profile.late_ms
            {
                best = candidate;
            }
            tree.simplify()
        } else {
            tree.complicate()
        };
        if !step || runs > 500 {
            break;
        }
    }
    (best, runs)
}
