//! Pinned results: a change of the state space or of the seed policy's counterexample shows up
//! here in review.

use icepact_models::model::{Action, Floor};

/// The checks clone and drop millions of states (see the checker binary).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use icepact_models::{check, shortest_counterexample, trace, Budgets, CheckOptions, Engine};
use icepact_models::{IceModel, Outcome, RestartPolicy};

/// Checks `opts` exhaustively: every invariant holds and every sanity example but those named
/// `unreachable` is found. Returns the state count.
fn assert_all_hold(opts: &CheckOptions, unreachable: &[&str]) -> usize {
    assert_rows_hold(&check(opts), unreachable)
}

/// [`assert_all_hold`] for rows already checked.
fn assert_rows_hold(rows: &[icepact_models::VerdictRow], unreachable: &[&str]) -> usize {
    for r in rows {
        assert!(r.exhaustive, "{} not exhaustive", r.property);
        assert!(
            matches!(r.outcome, Outcome::Holds | Outcome::Found)
                || (r.outcome == Outcome::NotFound && unreachable.contains(&r.property)),
            "{}: {:?}\n{}",
            r.property,
            r.outcome,
            r.trace.as_deref().unwrap_or("")
        );
    }
    rows[0].unique_states
}

/// The default 2-peer configuration (a crash with any floor, an agent failure of any kind
/// including a gathering that finds nothing, a lost report), exhaustively: every invariant holds, every sanity example exists, and the state
/// count is exactly this.
#[test]
fn default_two_peers_is_exhaustive_and_pinned() {
    assert_eq!(assert_all_hold(&CheckOptions::default(), &[]), 6_314_002);
}

/// The default budgets with agents restarted in place (rule AGENT_RESTART, str0m's
/// `ice_restart`): every invariant holds, a restart in place reconnects, and the count is
/// exactly this. No agent is ever closed in this mode, so the count is the same for every
/// agent kind.
#[test]
fn in_place_restarts_are_exhaustive_and_pinned() {
    let opts = CheckOptions {
        agent: icepact_models::AgentKind::Str0m,
        agent_restart: icepact_models::AgentRestart::InPlace,
        ..CheckOptions::default()
    };
    assert_eq!(assert_all_hold(&opts, &[]), 5_897_001);
}

/// Replays after a crash with any floor: no replayed hint ever starts a catch-up
/// (`catch-up only after regression`), and everything else holds.
#[test]
fn replays_after_a_crash_are_exhaustive_and_pinned() {
    let opts = CheckOptions {
        budgets: Budgets::TWO_PEERS_REPLAY,
        ..CheckOptions::default()
    };
    // Without agent failures and lost reports these examples cannot happen.
    let unreachable = [
        "reconnected after failed from connected",
        "reconnected after lost report",
        "reconnected after empty gathering",
        "reconnected after deferred restart",
        "glare",
    ];
    assert_eq!(assert_all_hold(&opts, &unreachable), 948_534);
}

/// The 3-peer mesh with one crash (any node, any floor), exhaustively with partial-order
/// reduction, once with the crash as one step and once split into a step per session of the
/// node (`IceModel::split_crash`): every invariant holds, both runs give the same verdict for
/// every property, and the counts are exactly these.
#[test]
fn three_peers_with_a_crash_are_exhaustive_and_pinned() {
    let opts = |split_crash| CheckOptions {
        peers: 3,
        budgets: Budgets::THREE_PEERS,
        split_crash,
        ..CheckOptions::default()
    };
    // One crash and timers only: no failure, lost report, glare or stale description.
    let unreachable = [
        "reconnected after failed from connected",
        "reconnected after lost report",
        "reconnected after empty gathering",
        "reconnected after deferred restart",
        "glare",
        "stale ignored",
    ];
    let (split, whole) = (check(&opts(true)), check(&opts(false)));
    assert_eq!(assert_rows_hold(&split, &unreachable), 772_252);
    assert_eq!(assert_rows_hold(&whole, &unreachable), 4_146_904);
    for (a, b) in split.iter().zip(&whole) {
        assert_eq!((a.property, a.outcome), (b.property, b.outcome));
    }
}

/// The 3-peer mesh with one crash (any node, any floor) *and* one agent failure (any kind,
/// any session), exhaustively with the split crash: every invariant holds. About three
/// minutes in release on two cores, so `.ci/run` runs it with `--ignored`.
#[test]
#[ignore = "about three minutes in release; run by .ci/run"]
fn three_peers_with_a_crash_and_a_failure_are_exhaustive_and_pinned() {
    let opts = CheckOptions {
        peers: 3,
        budgets: Budgets::THREE_PEERS_FAILURE,
        split_crash: true,
        ..CheckOptions::default()
    };
    // One crash, one failure and timers: no lost report or deferred restart (a second failure
    // in a row).
    let unreachable = [
        "reconnected after lost report",
        "reconnected after deferred restart",
    ];
    assert_eq!(assert_all_hold(&opts, &unreachable), 53_280_262);
}

/// Partial-order reduction changes nothing but the count: on the 3-node star (sessions A–B and
/// A–C, [`IceModel::star`]), reduced and unreduced runs agree on every verdict, with a drop, a
/// lost agent report or an agent failure in either session (the first step of the reduced run
/// assigns the fault to one session; the unreduced run lets it strike either at any moment).
/// Every run is exhaustive and the counts are exactly these. About 30 s in release on two
/// cores, so `.ci/run` runs it with `--ignored`.
#[test]
#[ignore = "about 30 s in release; run by .ci/run"]
fn reduced_and_unreduced_meshes_agree_on_every_verdict() {
    let fault_free = Budgets {
        crashes: 0,
        ..Budgets::THREE_PEERS
    };
    let cases = [
        (
            Budgets {
                drops: 1,
                ..fault_free
            },
            12_705,
            567_763,
        ),
        (
            Budgets {
                lost_events: 1,
                ..fault_free
            },
            5_459,
            508_317,
        ),
        (
            Budgets {
                failures: 1,
                ..fault_free
            },
            18_018,
            3_694_021,
        ),
    ];
    for (budgets, reduced_count, full_count) in cases {
        let opts = |reduction| CheckOptions {
            peers: 3,
            star: true,
            budgets,
            reduction,
            ..CheckOptions::default()
        };
        let (reduced, full) = (check(&opts(true)), check(&opts(false)));
        let label = opts(true).label();
        assert_eq!(
            (reduced[0].unique_states, full[0].unique_states),
            (reduced_count, full_count),
            "{label}"
        );
        for (r, f) in reduced.iter().zip(&full) {
            assert!(r.exhaustive && f.exhaustive, "{label}");
            assert_eq!((r.property, r.outcome), (f.property, f.outcome), "{label}");
        }
    }
}

/// The seed policy's shortest counterexample: a crash; the other side restarts on the new
/// process's initial offer (as seed 001 says) and then binds a replayed initial offer of the
/// crashed process, moving its versions back to credentials that died with it.
#[test]
fn seed_policy_shortest_counterexample_is_pinned() {
    let model = IceModel::new(2, RestartPolicy::Seed, Budgets::TWO_PEERS_REPLAY);
    let path = shortest_counterexample(&model, "monotonic versions", None)
        .expect("the seed policy violates monotonic versions");
    assert_eq!(
        path,
        vec![
            Action::Deliver(0),
            Action::Deliver(0),
            Action::Crash(0, Floor::Above),
            Action::Deliver(1),
            Action::Replay(2),
            Action::Deliver(1),
        ]
    );
    let text = trace::text(&model, &path);
    assert!(text.contains("FAULT replay A→B e100v0"), "{text}");
    assert!(text.contains("B restarts (RemoteRestart"), "{text}");
    // The diagram: a legend, the replay drawn as a message, notes in words, and the violation
    // highlighted on B, where it happened.
    let diagram = trace::mermaid(&model, &path);
    assert!(
        diagram.contains("Note over A,B: e100v2 = session epoch 100"),
        "{diagram}"
    );
    assert!(diagram.contains("A--)B: replayed e100v0"), "{diagram}");
    assert!(
        diagram.contains("restart: RemoteRestart from e100v1 to e1100v0"),
        "{diagram}"
    );
    assert!(
        diagram.contains("rect rgb(255, 200, 200)\n    Note over B: VIOLATION monotonic versions"),
        "{diagram}"
    );
    assert!(!diagram.contains("SessionRef"), "{diagram}");
}

/// Our BFS and stateright's DFS agree on a small configuration, and BFS paths are shortest.
#[test]
fn bfs_and_dfs_agree_on_a_small_configuration() {
    let small = Budgets {
        drops: 1,
        ..Budgets::NONE
    };
    let opts = |engine| CheckOptions {
        budgets: small,
        engine,
        ..CheckOptions::default()
    };
    let bfs = check(&opts(Engine::Bfs));
    let dfs = check(&opts(Engine::Dfs));
    assert_eq!(bfs[0].unique_states, dfs[0].unique_states);
    // The DFS count does not depend on how many threads share the work.
    for threads in [1, 4] {
        let rows = check(&CheckOptions {
            threads,
            ..opts(Engine::Dfs)
        });
        assert_eq!(
            rows[0].unique_states, dfs[0].unique_states,
            "{threads} threads"
        );
        assert!(rows[0].exhaustive);
    }
    assert_eq!(bfs[0].unique_states, 1_304);
    // Without crashes and failures the restart examples are unreachable; invariants hold.
    assert!(bfs
        .iter()
        .all(|r| r.exhaustive && r.outcome != Outcome::Violated));
}

/// The recovery budget turns the timer cap's false alarm into a check: a lost description needs
/// a re-send timer, so with no due firing allowed (cap 0) the path ends unconverged; with 8
/// recovery firings after the cap, the sessions converge on every path.
#[test]
fn recovery_firings_remove_the_timer_caps_false_alarm() {
    let opts = |recovery| CheckOptions {
        budgets: Budgets {
            drops: 1,
            timer_cap: 0,
            recovery,
            ..Budgets::NONE
        },
        ..CheckOptions::default()
    };
    let liveness = |rows: &[icepact_models::VerdictRow]| {
        rows.iter()
            .find(|r| r.property == icepact_models::properties::LIVENESS)
            .map(|r| (r.outcome, r.unique_states, r.exhaustive))
    };
    let capped = check(&opts(0));
    assert_eq!(liveness(&capped), Some((Outcome::Violated, 1_161, true)));
    let recovering = check(&opts(8));
    assert_eq!(liveness(&recovering), Some((Outcome::Holds, 1_304, true)));
    assert!(recovering
        .iter()
        .all(|r| r.exhaustive && r.outcome != Outcome::Violated));
}

/// Every row of an endpoint-mesh check exhaustive and as it should be (no violation, every
/// sanity example found).
fn assert_mesh_holds(rows: &[icepact_models::VerdictRow]) {
    for r in rows {
        assert!(r.exhaustive, "{} not exhaustive", r.property);
        assert!(
            !r.outcome.is_failure(),
            "{}: {:?}\n{}",
            r.property,
            r.outcome,
            r.trace.as_deref().unwrap_or("")
        );
    }
}

/// Real endpoints (the model checker's [`EndpointMesh`]): two nodes with one admission slot
/// each, a crash with any floor and a peer removed and added again, exhaustively.
#[test]
fn real_endpoints_with_a_crash_and_a_removal_are_exhaustive_and_pinned() {
    use icepact_models::endpoint_mesh::{check, EndpointMesh, MeshBudgets};
    let rows = check(&EndpointMesh::new(2, 1, MeshBudgets::VERIFY), 2, None);
    assert_mesh_holds(&rows);
    assert_eq!(rows[0].unique_states, 870_132);
}

/// Rule ADMISSION with one slot per node: three nodes start cold and come up, exhaustively.
/// The first version of the rule let a session its remote controls take the last slot on the
/// remote's first description, and this model found three nodes holding the sessions A–C, B–A
/// and C–B, each waiting for the next until `ADMISSION_TIMEOUT` (60 s): *quiescent ⇒
/// converged* violated in 15 steps (docs/MODEL-CHECKING.md, "Real endpoints").
#[test]
fn one_slot_per_node_brings_three_nodes_up_without_a_cycle() {
    use icepact_models::endpoint_mesh::{check, EndpointMesh, MeshBudgets};
    let rows = check(&EndpointMesh::new(3, 1, MeshBudgets::NONE), 2, None);
    assert_mesh_holds(&rows);
    assert_eq!(rows[0].unique_states, 404_148);
}

/// The same cold start of three nodes with one slot each, with one description lost on the
/// way: exhaustive, every property as it should be (about 27 s in release on two cores;
/// ignored in the default test run, CI runs it with `--release -- --ignored`).
#[test]
#[ignore = "27 s in release; CI runs it"]
fn one_slot_per_node_brings_three_nodes_up_after_a_lost_description() {
    use icepact_models::endpoint_mesh::{check, EndpointMesh, MeshBudgets};
    let budgets = MeshBudgets {
        drops: 1,
        timer_cap: 8,
        ..MeshBudgets::NONE
    };
    let rows = check(&EndpointMesh::new(3, 1, budgets), 2, None);
    assert_mesh_holds(&rows);
    assert_eq!(rows[0].unique_states, 2_180_191);
}
