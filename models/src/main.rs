//! `icepact-check`: model-check the icepact core, or explore its state space in a browser.

/// The checker allocates and frees millions of small states; the system allocator was half the
/// run time (docs/MODEL-CHECKING.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use icepact::reference_agent::AgentKind;
use icepact::AgentRestart;
use icepact_models::{check, format_table, Budgets, CheckOptions, Engine, Outcome, RestartPolicy};
use stateright::Model;

#[derive(Parser)]
#[command(
    name = "icepact-check",
    version,
    about = "Model-check the icepact session state machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every property and print the verdict table.
    ///
    /// Exit status: 0 when every configuration gives what it should (every invariant holds and
    /// every sanity example is found, or, for a configuration expected to break, some invariant
    /// is violated); 1 when one does not; 2 when a run was cut short by --timeout (not
    /// exhaustive) and --allow-partial is not given.
    Check {
        /// Breadth-first search (single-threaded, shortest paths).
        #[arg(long, conflicts_with = "dfs")]
        bfs: bool,
        /// Depth-first search (stateright, multi-threaded; the default).
        #[arg(long)]
        dfs: bool,
        /// Threads of the depth-first search.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Stop after this many seconds (the run is then reported as not exhaustive).
        #[arg(long)]
        timeout: Option<u64>,
        /// The configuration is expected to break: succeed only if some invariant is violated
        /// (seed 001's policy, a mutant).
        #[arg(long)]
        expect_violation: bool,
        /// A run cut short by --timeout is not a failure.
        #[arg(long)]
        allow_partial: bool,
        /// Run the standard suite (2 and 3 peers under epoch, 2 peers under seed, which is
        /// expected to break) and ignore --peers, --policy and the budgets.
        #[arg(long)]
        suite: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Check a mesh of real endpoints (rule ADMISSION, peers removed and added again) and print
    /// the verdict table. Exit status as for `check`.
    Endpoints {
        /// Nodes in the mesh.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
        nodes: u8,
        /// Sessions each endpoint lets establish at once (rule ADMISSION; 0: no limit).
        #[arg(long, default_value_t = 1)]
        slots: usize,
        /// Descriptions lost in flight.
        #[arg(long, default_value_t = 0)]
        drops: u8,
        /// Agents that give up.
        #[arg(long, default_value_t = 0)]
        failures: u8,
        /// Node crashes (any floor).
        #[arg(long, default_value_t = 0)]
        crashes: u8,
        /// Peers removed and added again.
        #[arg(long, default_value_t = 0)]
        removals: u8,
        /// Most due timer firings per path.
        #[arg(long, default_value_t = 2)]
        timer_cap: u8,
        /// Stop after this many seconds (the run is then reported as not exhaustive).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Serve stateright's Explorer on 127.0.0.1:PORT.
    Explore {
        /// Port.
        #[arg(long, default_value_t = 3000)]
        port: u16,
        /// Threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    /// The project's rule (EPOCH_ORDER + RESTART_ON_NEWER_CONFIRMED).
    Epoch,
    /// Seed 001's rule.
    Seed,
}

/// The reference agent's kinds (`icepact::reference_agent::AgentKind`).
#[derive(Clone, Copy, ValueEnum)]
enum Agent {
    /// pion/ice with its defaults.
    Pion,
    /// pion/ice with `DisconnectedTimeout = 0`.
    PionNoDisconnect,
    /// str0m's `is`.
    Str0m,
    /// libwebrtc.
    Libwebrtc,
}

#[derive(Args)]
struct ConfigArgs {
    /// Restart policy of every peer.
    #[arg(long, value_enum, default_value = "epoch")]
    policy: Policy,
    /// Nodes in the mesh.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    peers: u8,
    /// Message drops (default: per peer count).
    #[arg(long)]
    drops: Option<u8>,
    /// Replays of old descriptions.
    #[arg(long)]
    replays: Option<u8>,
    /// Node crashes.
    #[arg(long)]
    crashes: Option<u8>,
    /// Agent failures (Failed while checking; Disconnected or Failed while connected).
    #[arg(long)]
    failures: Option<u8>,
    /// Agent reports lost.
    #[arg(long)]
    lost_events: Option<u8>,
    /// Benign agent quirks (repeated reports, Completed → Connected).
    #[arg(long)]
    quirks: Option<u8>,
    /// Which real agent the reference agent behaves like.
    #[arg(long, value_enum, default_value = "libwebrtc")]
    agent: Agent,
    /// Explicit restart requests.
    #[arg(long)]
    restarts: Option<u8>,
    /// Early timer firings.
    #[arg(long)]
    early_timers: Option<u8>,
    /// Most due timer firings per path while faults may still happen.
    #[arg(long)]
    timer_cap: Option<u8>,
    /// Due timer firings after the cap is spent, with no more faults (0: none).
    #[arg(long)]
    recovery: Option<u8>,
    /// Most descriptions in flight per direction of a session.
    #[arg(long)]
    link_capacity: Option<u8>,
    /// Explore every interleaving of the sessions of a mesh (no partial-order reduction).
    #[arg(long)]
    no_reduction: bool,
    /// Restart agents in place (`AgentRestart::InPlace`) instead of closing and creating them.
    #[arg(long)]
    in_place: bool,
    /// Split a crash of a mesh node into one step per session of the node, so that the
    /// partial-order reduction applies before the crash too (`IceModel::split_crash`).
    #[arg(long)]
    split_crash: bool,
    /// With 3 peers, only the sessions of node A (A–B and A–C, no B–C): small enough to check
    /// without reduction with faults on (`IceModel::star`).
    #[arg(long)]
    star: bool,
}

impl ConfigArgs {
    fn options(&self) -> CheckOptions {
        let peers = usize::from(self.peers);
        let d = Budgets::for_peers(peers);
        CheckOptions {
            peers,
            policy: match self.policy {
                Policy::Epoch => RestartPolicy::Epoch,
                Policy::Seed => RestartPolicy::Seed,
            },
            budgets: Budgets {
                drops: self.drops.unwrap_or(d.drops),
                replays: self.replays.unwrap_or(d.replays),
                crashes: self.crashes.unwrap_or(d.crashes),
                failures: self.failures.unwrap_or(d.failures),
                lost_events: self.lost_events.unwrap_or(d.lost_events),
                quirks: self.quirks.unwrap_or(d.quirks),
                restarts: self.restarts.unwrap_or(d.restarts),
                early_timers: self.early_timers.unwrap_or(d.early_timers),
                timer_cap: self.timer_cap.unwrap_or(d.timer_cap),
                recovery: self.recovery.unwrap_or(d.recovery),
                link_capacity: self.link_capacity.unwrap_or(d.link_capacity),
            },
            agent: match self.agent {
                Agent::Pion => AgentKind::Pion,
                Agent::PionNoDisconnect => AgentKind::PionNoDisconnect,
                Agent::Str0m => AgentKind::Str0m,
                Agent::Libwebrtc => AgentKind::Libwebrtc,
            },
            reduction: !self.no_reduction,
            split_crash: self.split_crash,
            star: self.star,
            agent_restart: if self.in_place {
                AgentRestart::InPlace
            } else {
                AgentRestart::Recreate
            },
            ..CheckOptions::default()
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check {
            bfs,
            dfs: _,
            threads,
            timeout,
            expect_violation,
            allow_partial,
            suite,
            config,
        } => {
            let base = config.options();
            let runs = if suite {
                CheckOptions::suite()
            } else {
                vec![base]
            };
            let mut all = Vec::new();
            let (mut failed, mut partial) = (false, false);
            for mut opts in runs {
                opts.engine = if bfs { Engine::Bfs } else { Engine::Dfs };
                opts.threads = threads;
                opts.timeout = timeout.map(Duration::from_secs);
                eprintln!("checking {} ({:?})", opts.label(), opts.engine);
                let rows = check(&opts);
                let expected_break =
                    expect_violation || (suite && opts.policy == RestartPolicy::Seed);
                let violated = rows.iter().any(|r| r.outcome == Outcome::Violated);
                let as_expected = if expected_break {
                    violated
                } else {
                    !rows.iter().any(|r| r.outcome.is_failure())
                };
                let exhaustive = rows.iter().all(|r| r.exhaustive);
                if !as_expected {
                    // A time-boxed run may miss a sanity example it would have found.
                    if exhaustive || violated || expected_break {
                        failed = true;
                    }
                }
                partial |= !exhaustive;
                all.extend(rows);
            }
            print!("{}", format_table(&all));
            if failed {
                eprintln!("FAILED: a configuration did not give what it should");
                ExitCode::FAILURE
            } else if partial && !allow_partial {
                eprintln!(
                    "NOT EXHAUSTIVE: a run was cut short by --timeout (--allow-partial accepts it)"
                );
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Endpoints {
            nodes,
            slots,
            drops,
            failures,
            crashes,
            removals,
            timer_cap,
            timeout,
        } => {
            use icepact_models::endpoint_mesh::{check, EndpointMesh, MeshBudgets};
            let budgets = MeshBudgets {
                drops,
                failures,
                crashes,
                removals,
                timer_cap,
            };
            let model = EndpointMesh::new(usize::from(nodes), slots, budgets);
            let rows = check(&model, 2, timeout.map(Duration::from_secs));
            print!("{}", format_table(&rows));

            if rows.iter().any(|r| r.outcome.is_failure()) {
                eprintln!("FAILED: a property did not give what it should");
                ExitCode::FAILURE
            } else if !rows.iter().all(|r| r.exhaustive) {
                eprintln!("NOT EXHAUSTIVE: cut short by --timeout");
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Explore {
            port,
            threads,
            config,
        } => {
            let opts = config.options();
            let addr = format!("127.0.0.1:{port}");
            eprintln!("exploring {} on http://{addr}/", opts.label());
            opts.model().checker().threads(threads.max(1)).serve(addr);
            ExitCode::SUCCESS
        }
    }
}
