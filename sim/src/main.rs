//! `icepact-sim`: sweep seeds, replay one, shrink a failure, or run the whole verification.

/// The verification run model-checks millions of states in this process; the system allocator
/// was half the checker's time (docs/MODEL-CHECKING.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use icepact::reference_agent::AgentKind;
use icepact::RestartPolicy;
use icepact_sim::{
    ping_pong, run_seed, shrink, sweep, verify, Plan, SimConfig, Summary, VerifyOptions,
};

#[derive(Parser)]
#[command(version, about = "Deterministic simulator of icepact peers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    /// The project's epoch rule.
    Epoch,
    /// Seed 001's restart rule.
    Seed,
}

impl From<Policy> for RestartPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Epoch => RestartPolicy::Epoch,
            Policy::Seed => RestartPolicy::Seed,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// The verification run: the model checker's suite plus simulator sweeps, one verdict
    /// table. Exits non-zero unless the default policy holds everywhere.
    Verify {
        /// Seeds of the 2-peer sweep.
        #[arg(long, default_value_t = 10_000)]
        seeds: u64,
        /// Seeds of the 3-peer sweep.
        #[arg(long, default_value_t = 1_000)]
        seeds_three: u64,
        /// Seeds of the seed-001-policy sweep.
        #[arg(long, default_value_t = 2_000)]
        seeds_seed_policy: u64,
        /// Add the long runs: 3 peers with a crash and an agent failure (about 3 minutes), a
        /// drop, a replay, a crash and a restart request on 2 peers (about 10 minutes) and
        /// every fault class at once on 2 peers (not exhaustive yet), model-checked
        /// exhaustively, and the 256-node cold start under load.
        #[arg(long)]
        deep: bool,
    },
    /// Run many seeds (swarm: each seed draws its own fault profile) and print a summary.
    Sweep {
        /// Number of seeds.
        #[arg(long, default_value_t = 2_000)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Nodes in the mesh.
        #[arg(long, default_value_t = 2)]
        peers: usize,
        /// Restart policy under test.
        #[arg(long, value_enum, default_value_t = Policy::Epoch)]
        policy: Policy,
        /// Exit non-zero unless at least one violation is found (to prove the simulator can
        /// catch a known-broken policy).
        #[arg(long)]
        expect_violation: bool,
        /// Rule ADMISSION: sessions each node establishes at once (0: no limit).
        #[arg(long, default_value_t = icepact::DEFAULT_MAX_ESTABLISHING)]
        admission: usize,
    },
    /// Re-run one seed exactly and print its plan, outcome and trace.
    Replay {
        /// The seed.
        seed: u64,
        /// Nodes in the mesh.
        #[arg(long, default_value_t = 2)]
        peers: usize,
        /// Restart policy under test.
        #[arg(long, value_enum, default_value_t = Policy::Epoch)]
        policy: Policy,
        /// Write the trace as JSON Lines here.
        #[arg(long)]
        jsonl: Option<PathBuf>,
        /// Write the trace as a Mermaid sequenceDiagram here.
        #[arg(long)]
        mermaid: Option<PathBuf>,
        /// Rule ADMISSION: sessions each node establishes at once (0: no limit).
        #[arg(long, default_value_t = icepact::DEFAULT_MAX_ESTABLISHING)]
        admission: usize,
    },
    /// Cold-start full meshes with CPU as a resource (each handled event costs CPU time on its
    /// node): time to all up, restarts (none is caused by a fault: there is none), envelopes
    /// per session, the longest wait in a node's queue.
    Load {
        /// Mesh sizes.
        #[arg(long, value_delimiter = ',', default_value = "24,48,96,128")]
        peers: Vec<usize>,
        /// CPU cost of handling an envelope, in µs (0: no CPU model).
        #[arg(long, default_value_t = 100)]
        envelope_us: u64,
        /// CPU cost of any other event (timer, agent report, tick, connectivity check), in µs.
        #[arg(long, default_value_t = 50)]
        event_us: u64,
        /// The seed (delays, key order).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One CPU for the whole mesh (one process, like the runtime's mesh benchmark) instead
        /// of one per node.
        #[arg(long)]
        shared: bool,
        /// Hand the core the instant a busy CPU got to an input, not the instant it arrived
        /// (rule STAMP_ARRIVAL off).
        #[arg(long)]
        stamp_handling: bool,
        /// Rule ADMISSION: sessions each node establishes at once (0: no limit).
        #[arg(long, default_value_t = icepact::DEFAULT_MAX_ESTABLISHING)]
        admission: usize,
    },
    /// Measure simulated signaling messages per second (ping-pong through two real cores).
    Throughput {
        /// Request/reply rounds.
        #[arg(long, default_value_t = 1_000_000)]
        rounds: u64,
    },
    /// Shrink the fault plan of a failing seed to a minimal one.
    Shrink {
        /// The seed.
        seed: u64,
        /// Nodes in the mesh.
        #[arg(long, default_value_t = 2)]
        peers: usize,
        /// Restart policy under test.
        #[arg(long, value_enum, default_value_t = Policy::Epoch)]
        policy: Policy,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Verify {
            seeds,
            seeds_three,
            seeds_seed_policy,
            deep,
        } => {
            let opts = VerifyOptions {
                seeds_two: seeds,
                seeds_three,
                seeds_seed_policy,
                deep,
                ..VerifyOptions::default()
            };
            let verdict = verify(&opts, true);
            println!("{}", verdict.report);
            if verdict.pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Sweep {
            seeds,
            first,
            threads,
            peers,
            policy,
            expect_violation,
            admission,
        } => {
            let Some(mut cfg) = config(peers, policy) else {
                return ExitCode::FAILURE;
            };
            cfg.max_establishing = admission;
            let threads = threads.unwrap_or_else(cores);
            let summary = sweep(&cfg, first, seeds, threads, true);
            print_summary(&cfg, &summary);
            let ok = if expect_violation {
                !summary.violations.is_empty()
            } else {
                summary.violations.is_empty()
            };
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Replay {
            seed,
            peers,
            policy,
            jsonl,
            mermaid,
            admission,
        } => {
            let Some(mut cfg) = config(peers, policy) else {
                return ExitCode::FAILURE;
            };
            cfg.max_establishing = admission;
            cfg.trace = true;
            let plan = Plan::from_seed(seed, peers);
            println!("seed {seed}\n{plan}");
            let (outcome, trace) = run_seed(&cfg, seed);
            for e in trace.entries() {
                println!("{:>12.6}s {:?}", e.at_us as f64 / 1e6, e.kind);
            }
            println!("{:?}", outcome.stats);
            println!("trace hash {:016x}", outcome.trace_hash);
            if let Some(p) = jsonl {
                if let Err(e) = std::fs::write(&p, trace.to_jsonl()) {
                    eprintln!("cannot write {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            }
            if let Some(p) = mermaid {
                if let Err(e) = std::fs::write(&p, trace.to_mermaid(peers, 400)) {
                    eprintln!("cannot write {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            }
            match outcome.violation {
                Some(v) => {
                    println!("VIOLATION: {v}");
                    ExitCode::FAILURE
                }
                None => {
                    println!(
                        "ok: converged {:?} after heal at {:?}",
                        outcome.converged_after, outcome.heal
                    );
                    ExitCode::SUCCESS
                }
            }
        }
        Cmd::Load {
            peers,
            envelope_us,
            event_us,
            seed,
            shared,
            stamp_handling,
            admission,
        } => {
            let cpu = (envelope_us > 0 || event_us > 0).then_some(icepact_sim::Cpu {
                envelope: Duration::from_micros(envelope_us),
                event: Duration::from_micros(event_us),
                shared,
            });
            println!("| N | sessions | all up after | restarts | envelopes/session | longest CPU wait | events | violation | wall |");
            println!("|---|---|---|---|---|---|---|---|---|");
            let mut ok = true;
            for n in peers {
                let started = std::time::Instant::now();
                let o = icepact_sim::load_run(n, cpu, !stamp_handling, admission, seed);
                let sessions = icepact_sim::sessions(n);
                ok &= o.violation.is_none();
                println!(
                    "| {n} | {sessions} | {} | {} | {:.1} | {:.2} s | {} | {} | {:.1} s |",
                    o.converged_after
                        .map_or("never".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
                    o.stats.restarts,
                    o.stats.sent as f64 / sessions.max(1) as f64,
                    o.stats.cpu_max_wait.as_secs_f64(),
                    o.stats.events,
                    o.violation.map_or("-".to_string(), |v| v.to_string()),
                    started.elapsed().as_secs_f64()
                );
                if o.stats.restarts > 0 {
                    println!(
                        "  first restart at {:?}; by cause {:?}",
                        o.stats.first_restart, o.stats.causes
                    );
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Throughput { rounds } => {
            let off = ping_pong(rounds, None);
            let mut seal = icepact_sim::WireSeal::new();
            let on = ping_pong(rounds / 10, Some(&mut seal));
            for (name, r) in [("off", off), ("on (crypto_box + protobuf)", on)] {
                println!(
                    "ping-pong, crypto {name}: {} messages in {:.3}s = {:.0} messages/s (1 thread)",
                    r.messages,
                    r.elapsed.as_secs_f64(),
                    r.per_sec()
                );
            }
            ExitCode::SUCCESS
        }
        Cmd::Shrink {
            seed,
            peers,
            policy,
        } => {
            let Some(cfg) = config(peers, policy) else {
                return ExitCode::FAILURE;
            };
            let plan = Plan::from_seed(seed, peers);
            let (first, _) = run_seed(&cfg, seed);
            let Some(v) = first.violation else {
                println!("seed {seed} does not fail; nothing to shrink");
                return ExitCode::SUCCESS;
            };
            println!("seed {seed} fails: {v}\n{plan}");
            let (min, runs) = shrink(&cfg, seed, &plan);
            println!("\nshrunk in {runs} runs to:\n{min}");
            ExitCode::SUCCESS
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn config(peers: usize, policy: Policy) -> Option<SimConfig> {
    if !(2..=256).contains(&peers) {
        eprintln!("--peers must be between 2 and 256");
        return None;
    }
    Some(SimConfig::new(peers, policy.into()))
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
}

fn print_summary(cfg: &SimConfig, s: &Summary) {
    let st = &s.stats;
    println!(
        "policy {:?}, {} peers: {} seeds in {:.1}s on {} threads",
        cfg.core.policy,
        cfg.peers,
        s.seeds,
        s.wall.as_secs_f64(),
        s.threads
    );
    println!(
        "faults injected: {} drops, {} duplicates, {} partitioned messages ({} partitions), {} replays, {} crashes ({} with a floor not above the old epochs), {} agent faults, {} lost agent reports, {} quirks, {} reports stamped early, {} restart requests, {} peers removed and added again",
        st.dropped,
        st.duplicated,
        st.partitioned,
        st.partitions,
        st.replayed,
        st.crashes,
        st.regressed_floors,
        st.agent_faults,
        st.lost_events,
        st.quirks,
        st.late_reports,
        st.restart_requests,
        st.leaves
    );
    let kinds: Vec<String> = AgentKind::ALL
        .iter()
        .zip(st.agents)
        .map(|(k, n)| format!("{n} {k:?}"))
        .collect();
    println!(
        "agents created: {}; {} restarted in place",
        kinds.join(", "),
        st.in_place_restarts
    );
    println!(
        "messages: {} sent, {} delivered, {} refused by the endpoint (replayed, duplicated, unknown sender, rate limited), {} ignored as stale/duplicate; {} session restarts ({} epoch catch-ups, {} checking timeouts)",
        st.sent,
        st.delivered,
        st.refused,
        st.ignored,
        st.restarts,
        st.catch_ups,
        st.checking_timeouts
    );
    if let Some((n, seed)) = s.most_catch_ups {
        println!("most epoch catch-ups in one run: {n} (seed {seed})");
    }
    println!(
        "violations: {}; converged after heal: {}/{} ({:.2} %)",
        s.violations.len(),
        s.converged,
        s.seeds,
        100.0 * s.converged as f64 / s.seeds.max(1) as f64
    );
    if !s.violations.is_empty() {
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, v) in &s.violations {
            *by.entry(v.invariant.name()).or_default() += 1;
        }
        let by: Vec<String> = by.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("violations by invariant: {}", by.join(", "));
    }
    println!(
        "convergence after heal: p50 {} p99 {} max {} (bound {:.0}s)",
        secs(s.convergence_quantile(0.5)),
        secs(s.convergence_quantile(0.99)),
        secs(s.convergence.last().copied()),
        cfg.liveness_bound().as_secs_f64()
    );
    println!(
        "throughput: {:.0} seeds/s, {:.0} simulated events/s per core, {:.0} signaling messages/s per core",
        s.seeds_per_sec(),
        s.events_per_sec_per_core(),
        s.messages_per_sec_per_core()
    );
    println!("\nconvergence after heal by fault kind (runs whose plan contains it; then the runs it struck in):\n{}", s.fault_table());
    for (seed, v) in s.violations.iter().take(5) {
        println!("\nseed {seed}: {v}\n{}", Plan::from_seed(*seed, cfg.peers));
        println!(
            "reproduce: cargo run --release -p icepact-sim -- replay {seed} --peers {} --policy {}",
            cfg.peers,
            match cfg.core.policy {
                RestartPolicy::Seed => "seed",
                _ => "epoch",
            }
        );
    }
}
