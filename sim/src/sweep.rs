//! Sweeping many seeds on all cores.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use icepact::invariants::Violation;
use indicatif::{ProgressBar, ProgressStyle};

use crate::run_seed;
use crate::world::{SimConfig, Stats};

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
    /// Summed counters.
    pub stats: Stats,
    /// Wall-clock time.
    pub wall: Duration,
    /// Threads used.
    pub threads: usize,
}

impl Summary {
    /// The `q`-quantile (0..=1) of the convergence times.
    pub fn convergence_quantile(&self, q: f64) -> Option<Duration> {
        if self.convergence.is_empty() {
            return None;
        }
        let i = ((self.convergence.len() - 1) as f64 * q).round() as usize;
        Some(self.convergence[i])
    }

    /// Simulated events per wall-clock second, per thread.
    pub fn events_per_sec_per_core(&self) -> f64 {
        self.stats.events as f64 / self.wall.as_secs_f64() / self.threads.max(1) as f64
    }

    /// Signaling messages delivered per wall-clock second, per thread.
    pub fn messages_per_sec_per_core(&self) -> f64 {
        self.stats.delivered as f64 / self.wall.as_secs_f64() / self.threads.max(1) as f64
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
    into.agent_faults += s.agent_faults;
    into.partitions += s.partitions;
    into.restart_requests += s.restart_requests;
    into.restarts += s.restarts;
    into.ignored += s.ignored;
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
            ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {per_sec}, eta {eta}")
                .expect("the template is valid"),
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
                    let (outcome, _) = run_seed(cfg, seed);
                    local.seeds += 1;
                    add(&mut local.stats, &outcome.stats);
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
                add(&mut total.stats, &local.stats);
            });
        }
    });
    bar.finish_and_clear();
    let mut total = total.into_inner().expect("no thread panicked");
    total.wall = start.elapsed();
    total.violations.sort_by_key(|(seed, _)| *seed);
    total.convergence.sort();
    total
}
