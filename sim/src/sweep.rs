//! Sweeping many seeds on all cores, with figures per fault kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use icepact::invariants::Violation;
use indicatif::{ProgressBar, ProgressStyle};

use crate::profile::{FaultKind, Plan};
use crate::world::{SimConfig, Stats, World};

/// Aggregate results of a sweep.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds with a violation (seed, violation), in seed order.
    pub violations: Vec<(u64, Violation)>,
    /// Seeds that converged after heal.
    pub converged: u64,
    /// Convergence times after heal, sorted.
    pub convergence: Vec<Duration>,
    /// Figures per fault kind.
    pub by_fault: BTreeMap<FaultKind, FaultFigures>,
    /// Summed counters.
    pub stats: Stats,
    /// The run with the most epoch catch-ups: (catch-ups, seed), the lowest seed among equals;
    /// `None` if no run had one. With 2 peers a run is one session.
    pub most_catch_ups: Option<(u64, u64)>,
    /// Wall-clock time.
    pub wall: Duration,
    /// Threads used.
    pub threads: usize,
}

/// The figures of the runs whose plan contains one fault kind.
#[derive(Clone, Debug, Default)]
pub struct FaultFigures {
    /// Runs whose plan contains it.
    pub runs: u64,
    /// Of those, runs with a violation.
    pub violations: u64,
    /// Of those, runs that converged after heal.
    pub converged: u64,
    /// Their convergence times after heal, sorted.
    pub convergence: Vec<Duration>,
    /// Runs in which it actually struck (a crash of a node already down, an agent fault whose
    /// phase never came, a loss whose report never came do not).
    pub struck: u64,
    /// Convergence times after heal of the runs in which it struck, sorted.
    pub struck_convergence: Vec<Duration>,
}

impl FaultFigures {
    fn merge(&mut self, o: FaultFigures) {
        self.runs += o.runs;
        self.violations += o.violations;
        self.converged += o.converged;
        self.convergence.extend(o.convergence);
        self.struck += o.struck;
        self.struck_convergence.extend(o.struck_convergence);
    }
}

/// The `q`-quantile (0..=1) of sorted durations.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i])
}

impl Summary {
    /// Keeps `(n, seed)` if it has more catch-ups than the run kept, or as many and a lower seed.
    fn note_catch_ups(&mut self, n: u64, seed: u64) {
        if n == 0 {
            return;
        }
        if self
            .most_catch_ups
            .is_none_or(|(m, s)| n > m || (n == m && seed < s))
        {
            self.most_catch_ups = Some((n, seed));
        }
    }

    /// The `q`-quantile (0..=1) of the convergence times.
    pub fn convergence_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.convergence, q)
    }

    /// Simulated events per wall-clock second, per thread.
    pub fn events_per_sec_per_core(&self) -> f64 {
        self.stats.events as f64 / self.wall.as_secs_f64() / self.threads.max(1) as f64
    }

    /// Signaling messages delivered per wall-clock second, per thread.
    pub fn messages_per_sec_per_core(&self) -> f64 {
        self.stats.delivered as f64 / self.wall.as_secs_f64() / self.threads.max(1) as f64
    }

    /// Seeds run per wall-clock second (all threads).
    pub fn seeds_per_sec(&self) -> f64 {
        self.seeds as f64 / self.wall.as_secs_f64()
    }

    /// The per-fault figures as a Markdown table: for every fault kind, the runs whose plan
    /// contains it with their convergence time after heal (p50/p99/max), then the runs in
    /// which it actually struck.
    pub fn fault_table(&self) -> String {
        let q = |v: &[Duration], x: f64| {
            quantile(v, x).map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
        };
        let mut out = String::from(
            "| fault | runs | violations | converged | p50 | p99 | max | struck in | p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for kind in FaultKind::ALL {
            let Some(f) = self.by_fault.get(&kind) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {kind} | {} | {} | {:.2} % | {} | {} | {} | {} | {} | {} | {} |",
                f.runs,
                f.violations,
                100.0 * f.converged as f64 / f.runs.max(1) as f64,
                q(&f.convergence, 0.5),
                q(&f.convergence, 0.99),
                q(&f.convergence, 1.0),
                f.struck,
                q(&f.struck_convergence, 0.5),
                q(&f.struck_convergence, 0.99),
                q(&f.struck_convergence, 1.0),
            );
        }
        out
    }
}

fn add(into: &mut Stats, s: &Stats) {
    into.events += s.events;
    into.sent += s.sent;
    into.delivered += s.delivered;
    into.dropped += s.dropped;
    into.duplicated += s.duplicated;
    into.partitioned += s.partitioned;
    into.undeliverable += s.undeliverable;
    into.replayed += s.replayed;
    into.crashes += s.crashes;
    into.regressed_floors += s.regressed_floors;
    into.agent_faults += s.agent_faults;
    into.lost_events += s.lost_events;
    into.quirks += s.quirks;
    into.late_reports += s.late_reports;
    into.partitions += s.partitions;
    into.restart_requests += s.restart_requests;
    into.restarts += s.restarts;
    into.catch_ups += s.catch_ups;
    into.checking_timeouts += s.checking_timeouts;
    into.ignored += s.ignored;
    into.refused += s.refused;
    into.leaves += s.leaves;
    into.in_place_restarts += s.in_place_restarts;
    for (a, b) in into.agents.iter_mut().zip(s.agents) {
        *a += b;
    }
}

/// Runs seeds `first..first + count` on `threads` threads (a progress bar on stderr when it is
/// a terminal).
pub fn sweep(cfg: &SimConfig, first: u64, count: u64, threads: usize, progress: bool) -> Summary {
    let threads = threads.max(1);
    let next = AtomicU64::new(first);
    let total = Mutex::new(Summary {
        threads,
        ..Summary::default()
    });
    let bar = if progress {
        let bar = ProgressBar::new(count);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {rate}, eta {eta}")
                .expect("the template is valid")
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} seeds/s", state.per_sec());
                    },
                ),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut local = Summary::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + count {
                        break;
                    }
                    let plan = Plan::from_seed(seed, cfg.peers);
                    let kinds = plan.fault_kinds();
                    let (outcome, _) = World::new(cfg.clone(), seed, plan).run();
                    local.seeds += 1;
                    add(&mut local.stats, &outcome.stats);
                    local.note_catch_ups(outcome.stats.catch_ups, seed);
                    let converged = outcome
                        .converged_after
                        .filter(|_| outcome.violation.is_none());
                    for kind in kinds {
                        let f = local.by_fault.entry(kind).or_default();
                        f.runs += 1;
                        f.violations += u64::from(outcome.violation.is_some());
                        if let Some(t) = converged {
                            f.converged += 1;
                            f.convergence.push(t);
                        }
                        if outcome.struck.contains(&kind) {
                            f.struck += 1;
                            if let Some(t) = converged {
                                f.struck_convergence.push(t);
                            }
                        }
                    }
                    if let Some(v) = outcome.violation {
                        local.violations.push((seed, v));
                    } else if let Some(t) = outcome.converged_after {
                        local.converged += 1;
                        local.convergence.push(t);
                    }
                    bar.inc(1);
                }
                let mut total = total.lock().expect("no thread panics while holding it");
                total.seeds += local.seeds;
                total.converged += local.converged;
                total.violations.extend(local.violations);
                total.convergence.extend(local.convergence);
                for (kind, f) in local.by_fault {
                    total.by_fault.entry(kind).or_default().merge(f);
                }
                add(&mut total.stats, &local.stats);
                if let Some((n, seed)) = local.most_catch_ups {
                    total.note_catch_ups(n, seed);
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut total = total.into_inner().expect("no thread panicked");
    total.wall = start.elapsed();
    total.violations.sort_by_key(|(seed, _)| *seed);
    total.convergence.sort();
    for f in total.by_fault.values_mut() {
        f.convergence.sort();
        f.struck_convergence.sort();
    }
    total
}
