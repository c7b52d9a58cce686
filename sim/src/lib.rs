//! # icepact-sim
//!
//! A deterministic discrete-event simulator that drives real [`icepact::Peer`]s through a
//! seeded network that drops, duplicates, delays, reorders, partitions, replays and crashes,
//! with the reference ICE agent (`icepact::reference_agent`) of a kind drawn per node, whose
//! reports may be late, stamped early or lost, and that may fail in any phase.
//!
//! One `u64` seed decides everything (ChaCha8, pinned): the swarm fault profile, the fault plan
//! and every delay. [`run_seed`] reproduces a run exactly; [`sweep`] runs many seeds on all cores.
//!
//! ```
//! use icepact::RestartPolicy;
//! use icepact_sim::{run_seed, SimConfig};
//!
//! let (outcome, _trace) = run_seed(&SimConfig::new(2, RestartPolicy::Epoch), 7);
//! assert!(outcome.violation.is_none());
//! assert!(outcome.converged_after.is_some());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod load;
mod profile;
mod shrink;
mod sweep;
mod throughput;
mod trace;
mod verify;
mod world;

pub use load::{large_cold_start_cpu, load_run, sessions, LARGE_COLD_START_NODES};
pub use profile::{AgentFaultKind, CrashFloor, Episode, FaultKind, Plan, Profile};
pub use shrink::shrink;
pub use sweep::{quantile, sweep, FaultFigures, Summary};
pub use throughput::{ping_pong, PingPong, Seal, WireSeal};
pub use trace::{Trace, TraceEntry, TraceKind};
pub use verify::{model_suite, sim_figures, verify, Verdict, VerifyOptions};
pub use world::{Cpu, Outcome, SimConfig, Stats, World, WALL_CLOCK_START_US};

/// Runs one seed with its swarm plan.
pub fn run_seed(cfg: &SimConfig, seed: u64) -> (Outcome, Trace) {
    let plan = Plan::from_seed(seed, cfg.peers);
    World::new(cfg.clone(), seed, plan).run()
}
