//! The verification run: the model checker's suite and simulator sweeps, one verdict table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use icepact::invariants::Invariant;
use icepact::RestartPolicy;
use icepact_models::{AgentKind, AgentRestart, Budgets, CheckOptions, Engine, Outcome, VerdictRow};

use crate::load::{large_cold_start_cpu, load_run, sessions, LARGE_COLD_START_NODES};
use crate::sweep::{sweep, Summary};
use crate::world::{Cpu, SimConfig};

/// Sizes of the verification run.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Seeds of the 2-peer sweep with the default policy.
    pub seeds_two: u64,
    /// Seeds of the 3-peer sweep with the default policy.
    pub seeds_three: u64,
    /// Seeds of the 2-peer sweep with seed 001's policy.
    pub seeds_seed_policy: u64,
    /// Threads.
    pub threads: usize,
    /// Time box of the non-default model-checking configurations.
    pub model_seconds: u64,
    /// Add the long runs: 3 peers with a crash and an agent failure
    /// ([`Budgets::THREE_PEERS_FAILURE`]), [`Budgets::TWO_PEERS_RESTART`] and
    /// [`Budgets::TWO_PEERS_ALL`] model-checked exhaustively, and the 256-node cold start under
    /// load.
    pub deep: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            seeds_two: 10_000,
            seeds_three: 1_000,
            seeds_seed_policy: 2_000,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            model_seconds: 20,
            deep: false,
        }
    }
}

/// The result: the printed report and whether the run passed.
pub struct Verdict {
    /// Report text (tables, counterexamples, figures).
    pub report: String,
    /// The default policy holds everywhere, and every check that found seed 001's policy
    /// broken in the model also found it broken in the simulator.
    pub pass: bool,
}

/// The model-checking part of the verification run: the default 2-peer configuration (a crash
/// with any floor, an agent failure of either kind, a lost report), the same with agents
/// restarted in place (str0m's agent), and replays after a crash exhaustively (DFS, 2
/// threads), 3 peers with a crash exhaustively (partial-order reduction, the crash split per
/// session), and seed 001's policy under the replay budgets breadth-first with a time box (it finishes
/// exhaustively in seconds; BFS counterexamples are shortest).
pub fn model_suite(seconds: u64, deep: bool) -> Vec<CheckOptions> {
    let box_ = Some(std::time::Duration::from_secs(seconds));
    let two = CheckOptions::default();
    let mut suite = vec![
        two.clone(),
        CheckOptions {
            agent: AgentKind::Str0m,
            agent_restart: AgentRestart::InPlace,
            ..two.clone()
        },
        CheckOptions {
            budgets: Budgets::TWO_PEERS_REPLAY,
            ..two.clone()
        },
        CheckOptions {
            peers: 3,
            budgets: Budgets::THREE_PEERS,
            split_crash: true,
            ..two.clone()
        },
        CheckOptions {
            policy: RestartPolicy::Seed,
            budgets: Budgets::TWO_PEERS_REPLAY,
            engine: Engine::Bfs,
            timeout: box_,
            ..two.clone()
        },
    ];
    if deep {
        suite.push(CheckOptions {
            peers: 3,
            budgets: Budgets::THREE_PEERS_FAILURE,
            split_crash: true,
            ..two.clone()
        });
        suite.push(CheckOptions {
            budgets: Budgets::TWO_PEERS_RESTART,
            ..two.clone()
        });
        suite.push(CheckOptions {
            budgets: Budgets::TWO_PEERS_ALL,
            ..two
        });
    }
    suite
}

/// The simulator's invariants, as rows of the verdict table.
const SIM_INVARIANTS: [Invariant; 8] = [
    Invariant::TableEdgesOnly,
    Invariant::OppositeRoles,
    Invariant::CandidateBinding,
    Invariant::MonotonicVersions,
    Invariant::ConnectedWithCurrentCredentials,
    Invariant::OneAgent,
    Invariant::NoRestartStorm,
    Invariant::Converges,
];

/// Runs the model checker's suite and the simulator sweeps.
pub fn verify(opts: &VerifyOptions, progress: bool) -> Verdict {
    let start = Instant::now();
    let mut cells: BTreeMap<&'static str, BTreeMap<usize, String>> = BTreeMap::new();
    let mut order: Vec<&'static str> = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    let mut pass = true;
    let mut details = String::new();
    let mut figures = String::new();
    let mut model_seed_broken = false;

    let put = |cells: &mut BTreeMap<&'static str, BTreeMap<usize, String>>,
               order: &mut Vec<&'static str>,
               prop: &'static str,
               col: usize,
               text: String| {
        if !order.contains(&prop) {
            order.push(prop);
        }
        cells.entry(prop).or_default().insert(col, text);
    };

    for (i, opts) in model_suite(opts.model_seconds, opts.deep)
        .into_iter()
        .enumerate()
    {
        let col = columns.len();
        let seed_policy = opts.policy == RestartPolicy::Seed;
        let default_config = i == 0;
        // Replays after a crash: exhaustive too, but without failures and lost reports some
        // sanity examples cannot happen there.
        let replay_config = !seed_policy && opts.budgets == Budgets::TWO_PEERS_REPLAY;
        columns.push(format!(
            "model {}p {}{}",
            opts.peers,
            if seed_policy { "seed" } else { "epoch" },
            if replay_config {
                " replay"
            } else if opts.agent_restart == AgentRestart::InPlace {
                " in-place"
            } else if opts.budgets == Budgets::TWO_PEERS_RESTART {
                " restart request"
            } else if opts.budgets == Budgets::TWO_PEERS_ALL {
                " all faults"
            } else if opts.budgets == Budgets::THREE_PEERS_FAILURE {
                " crash + failure"
            } else {
                ""
            }
        ));
        if progress {
            eprintln!("model checking {} ...", opts.label());
        }
        let rows: Vec<VerdictRow> = icepact_models::check(&opts);
        if let Some(r) = rows.first() {
            figure_line(&mut figures, &columns[col], r, &opts.label());
        }
        for r in &rows {
            put(&mut cells, &mut order, r.property, col, cell(r));
            if seed_policy {
                model_seed_broken |= r.outcome == Outcome::Violated;
            } else if default_config {
                // The default configuration must be checked exhaustively and pass everything.
                pass &= !r.outcome.is_failure() && r.exhaustive;
            } else if replay_config {
                pass &= r.outcome != Outcome::Violated && r.exhaustive;
            } else {
                // The 3-peer mesh (partial-order reduction) and every fault at once: exhaustive,
                // no violation.
                pass &= r.outcome != Outcome::Violated && r.exhaustive;
            }
        }
        if seed_policy {
            if let Some(r) = rows
                .iter()
                .filter(|r| r.outcome == Outcome::Violated && r.trace.is_some())
                .min_by_key(|r| r.path_len)
            {
                counterexample(&mut details, "Seed 001 policy, model checker", r);
            }
        }
    }

    // The signaling service's seats (icepact-signal's real seat functions over an atomic
    // store) and the room client (icepact::room's real client and negotiation against them):
    // each protocol holds exhaustively; each deliberately broken variant (a renewal that does
    // not check the lease; a service that draws a token per join) must be found broken.
    type Checker = fn(bool) -> Vec<icepact_models::VerdictRow>;
    let small: [(&str, &str, &str, Checker); 2] = [
        (
            "seats",
            "an unchecked renewal",
            "at most N holders",
            |broken| {
                icepact_models::seats::check(&icepact_models::seats::SeatModel {
                    broken,
                    ..Default::default()
                })
            },
        ),
        (
            "room client",
            "a token per join",
            "one seat per member",
            |broken| {
                icepact_models::room_client::check(&icepact_models::room_client::RoomClientModel {
                    service_tokens: broken,
                    ..Default::default()
                })
            },
        ),
    ];
    for (name, broken_as, headline, checker) in small {
        for broken in [false, true] {
            let col = columns.len();
            columns.push(format!(
                "model {name}{}",
                if broken { " broken" } else { "" }
            ));
            if progress {
                eprintln!(
                    "model checking the {name}{} ...",
                    if broken {
                        format!(" ({broken_as})")
                    } else {
                        String::new()
                    }
                );
            }
            let rows = checker(broken);
            if let Some(r) = rows.first() {
                figure_line(&mut figures, &columns[col], r, &r.config);
            }
            let mut violated = false;
            for r in &rows {
                put(&mut cells, &mut order, r.property, col, cell(r));
                violated |= r.outcome == Outcome::Violated;
                if !broken {
                    pass &= !r.outcome.is_failure() && r.exhaustive;
                }
            }
            if broken {
                pass &= violated;
                // The headline failure is the one that matters to users; any other if not.
                if let Some(r) = rows
                    .iter()
                    .filter(|r| r.outcome == Outcome::Violated)
                    .min_by_key(|r| (r.property != headline, r.path_len))
                {
                    counterexample(&mut details, &format!("The {name} with {broken_as}"), r);
                }
            }
        }
    }

    // Real endpoints: three nodes with one admission slot each start cold without a cycle of
    // waits; two nodes with one slot each survive a crash with any floor and a peer removed
    // and added again. Exhaustive, every property as it should be.
    {
        use icepact_models::endpoint_mesh::{self, EndpointMesh, MeshBudgets};
        for (name, nodes, budgets) in [
            ("model endpoints 3p", 3, MeshBudgets::NONE),
            ("model endpoints 2p faults", 2, MeshBudgets::VERIFY),
        ] {
            let col = columns.len();
            columns.push(name.to_string());
            let model = EndpointMesh::new(nodes, 1, budgets);
            if progress {
                eprintln!("model checking real endpoints ({nodes} nodes, 1 slot each) ...");
            }
            let rows = endpoint_mesh::check(&model, opts.threads.clamp(1, 2), None);
            if let Some(r) = rows.first() {
                figure_line(&mut figures, &columns[col], r, &r.config);
            }
            for r in &rows {
                put(&mut cells, &mut order, r.property, col, cell(r));
                pass &= !r.outcome.is_failure() && r.exhaustive;
                if r.outcome == Outcome::Violated {
                    counterexample(&mut details, "Real endpoints, model checker", r);
                }
            }
        }
    }

    let sims = [
        (2, RestartPolicy::Epoch, opts.seeds_two),
        (3, RestartPolicy::Epoch, opts.seeds_three),
        (2, RestartPolicy::Seed, opts.seeds_seed_policy),
    ];
    let mut sim_seed_broken = false;
    for (peers, policy, seeds) in sims {
        let col = columns.len();
        let seed_policy = policy == RestartPolicy::Seed;
        columns.push(format!(
            "sim {peers}p {} ({seeds} seeds)",
            if seed_policy { "seed" } else { "epoch" }
        ));
        if progress {
            eprintln!("simulating {seeds} seeds, {peers} peers, {policy:?} ...");
        }
        let cfg = SimConfig::new(peers, policy);
        let s = sweep(&cfg, 0, seeds, opts.threads, progress);
        for inv in SIM_INVARIANTS {
            let bad: Vec<u64> = s
                .violations
                .iter()
                .filter(|(_, v)| v.invariant == inv)
                .map(|(seed, _)| *seed)
                .collect();
            let text = if bad.is_empty() {
                "holds".to_string()
            } else {
                format!("VIOLATED ({} seeds, first {})", bad.len(), bad[0])
            };
            put(&mut cells, &mut order, inv.name(), col, text);
        }
        if seed_policy {
            sim_seed_broken = !s.violations.is_empty();
        } else {
            pass &= s.violations.is_empty() && s.converged == s.seeds;
        }
        let _ = writeln!(figures, "- {}: {}", columns[col], sim_figures(&cfg, &s));
        if !seed_policy {
            // Convergence after heal per fault kind: the new faults (regressed epoch floors,
            // agents failing from any phase, lost reports) must converge like the old ones.
            let _ = writeln!(
                figures,
                "\n  convergence after heal by fault kind, {}:\n",
                columns[col]
            );
            for line in s.fault_table().lines() {
                let _ = writeln!(figures, "  {line}");
            }
            figures.push('\n');
        }
    }
    // Load (CPU as a resource, cold start, no fault): meshes of 64 and 128 nodes (and 256
    // with `--deep`; CI runs it on its own, sim/tests/load.rs), each node on a CPU of its own,
    // must come all up with no restart; 48 nodes on one shared CPU (the runtime's mesh
    // benchmark: one process) must too with rule ADMISSION, and must fall into the restart
    // cascade without it (today's behaviour before the rule, pinned in sim/tests/load.rs).
    let own = |us| Cpu::own(std::time::Duration::from_micros(us));
    let shared = Cpu::one_for_all(std::time::Duration::from_micros(1500));
    let default_admission = icepact::DEFAULT_MAX_ESTABLISHING;
    // (label, nodes, cpu, admission, must converge)
    let mut loads: Vec<(&str, usize, Cpu, usize, bool)> = vec![
        ("load 64", 64, own(1000), default_admission, true),
        ("load 128", 128, own(1000), default_admission, true),
        ("load 48 one CPU", 48, shared, default_admission, true),
        ("load 48 one CPU no admission", 48, shared, 0, false),
    ];
    if opts.deep {
        loads.insert(
            2,
            (
                "load 256",
                LARGE_COLD_START_NODES,
                large_cold_start_cpu(),
                default_admission,
                true,
            ),
        );
    }
    if progress {
        eprintln!(
            "simulating cold starts under load ({} meshes) ...",
            loads.len()
        );
    }
    // The largest on one thread, the others on a second.
    let run = |i: usize| {
        let (_, n, cpu, admission, _) = loads[i];
        let t = Instant::now();
        (load_run(n, Some(cpu), true, admission, 1), t.elapsed())
    };
    let largest = (0..loads.len()).max_by_key(|&i| loads[i].1).unwrap_or(0);
    let (big, rest) = std::thread::scope(|scope| {
        let big = scope.spawn(|| run(largest));
        let rest: Vec<_> = (0..loads.len())
            .filter(|&i| i != largest)
            .map(|i| (i, run(i)))
            .collect();
        (big.join(), rest)
    });
    let mut results: Vec<_> = rest;
    match big {
        Ok(r) => results.push((largest, r)),
        Err(_) => pass = false,
    }
    results.sort_by_key(|(i, _)| *i);
    for (i, (o, wall)) in results {
        let (label, n, cpu, admission, must) = loads[i];
        let col = columns.len();
        columns.push(label.to_string());
        for inv in SIM_INVARIANTS {
            let text = match &o.violation {
                Some(v) if v.invariant == inv => "VIOLATED".to_string(),
                _ => "holds".to_string(),
            };
            put(&mut cells, &mut order, inv.name(), col, text);
        }
        let up = o.converged_after.is_some() && o.violation.is_none();
        put(
            &mut cells,
            &mut order,
            "all up, no restart (load)",
            col,
            if up && o.stats.restarts == 0 {
                "holds".to_string()
            } else {
                format!("no ({} restarts)", o.stats.restarts)
            },
        );
        pass &= if must {
            up && o.stats.restarts == 0
        } else {
            o.violation.is_some()
        };
        let _ = writeln!(
            figures,
            "- {label}: {n} nodes ({} sessions), {} per envelope, {} per other event, {}, admission {}: all up after {}, {} restarts, {:.1} envelopes/session, longest CPU wait {:.2} s, {} events, {:.1} s",
            sessions(n),
            humantime(cpu.envelope),
            humantime(cpu.event),
            if cpu.shared { "one CPU for all" } else { "a CPU each" },
            if admission == 0 { "off".to_string() } else { admission.to_string() },
            o.converged_after
                .map_or("never".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
            o.stats.restarts,
            o.stats.sent as f64 / sessions(n).max(1) as f64,
            o.stats.cpu_max_wait.as_secs_f64(),
            o.stats.events,
            wall.as_secs_f64()
        );
    }

    // The simulator must be able to see what the model checker found.
    if model_seed_broken && !sim_seed_broken {
        pass = false;
        let _ = writeln!(
            details,
            "\nThe model checker found seed 001's policy broken but the simulator did not."
        );
    }

    let mut report = String::new();
    let _ = write!(report, "| property |");
    for c in &columns {
        let _ = write!(report, " {c} |");
    }
    let _ = write!(report, "\n|---|");
    for _ in &columns {
        let _ = write!(report, "---|");
    }
    report.push('\n');
    for prop in &order {
        let _ = write!(report, "| {prop} |");
        for col in 0..columns.len() {
            let cell = cells[prop].get(&col).map_or("-", String::as_str);
            let _ = write!(report, " {cell} |");
        }
        report.push('\n');
    }
    report.push_str("\nFigures:\n");
    report.push_str(&figures);
    report.push_str(&details);
    let _ = writeln!(
        report,
        "\nVERDICT: {} — default policy {}; seed 001 policy {} by the model checker, {} by the simulator ({:.1}s)",
        if pass { "PASS" } else { "FAIL" },
        if pass { "holds in every check" } else { "FAILED a check" },
        if model_seed_broken { "broken" } else { "not broken" },
        if sim_seed_broken { "broken" } else { "not broken" },
        start.elapsed().as_secs_f64()
    );
    Verdict { report, pass }
}

/// A violated property's shortest counterexample, for the report's details.
fn counterexample(details: &mut String, label: &str, r: &VerdictRow) {
    let _ = writeln!(
        details,
        "\n{label}: \"{}\" violated; shortest counterexample ({} steps):\n{}",
        r.property,
        r.path_len.unwrap_or(0),
        r.trace.as_deref().unwrap_or("")
    );
}

fn humantime(d: std::time::Duration) -> String {
    if d >= std::time::Duration::from_millis(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{} µs", d.as_micros())
    }
}

/// A model check's verdict for one property, as a table cell.
fn cell(r: &VerdictRow) -> String {
    match (r.outcome, r.exhaustive) {
        (Outcome::Holds, _) => "holds".to_string(),
        (Outcome::Violated, _) => format!(
            "VIOLATED ({} steps)",
            r.path_len.map_or("?".into(), |n| n.to_string())
        ),
        (Outcome::Found, _) => "found".to_string(),
        (Outcome::NotFound, true) => "NOT FOUND".to_string(),
        (Outcome::NotFound, false) => "not reached".to_string(),
    }
}

/// One line of figures for a model check.
fn figure_line(figures: &mut String, column: &str, r: &VerdictRow, config: &str) {
    let _ = writeln!(
        figures,
        "- {column}: {} unique states, depth {}, {:.1}s, {} ({config})",
        r.unique_states,
        r.max_depth,
        r.seconds,
        if r.exhaustive {
            "exhaustive"
        } else {
            "time-boxed, not exhaustive"
        },
    );
}

/// One line of figures for a sweep.
pub fn sim_figures(cfg: &SimConfig, s: &Summary) -> String {
    let q = |x: f64| {
        s.convergence_quantile(x)
            .map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
    };
    format!(
        "{} seeds, {} violations, {}/{} converged after heal (p50 {}, p99 {}, max {}; bound {:.0}s), {} restarts ({} epoch catch-ups, {} checking timeouts), {} messages, {:.0} seeds/s, {:.0} events/s/core, {:.1}s",
        s.seeds,
        s.violations.len(),
        s.converged,
        s.seeds,
        q(0.5),
        q(0.99),
        q(1.0),
        cfg.liveness_bound().as_secs_f64(),
        s.stats.restarts,
        s.stats.catch_ups,
        s.stats.checking_timeouts,
        s.stats.delivered,
        s.seeds_per_sec(),
        s.events_per_sec_per_core(),
        s.wall.as_secs_f64()
    )
}
