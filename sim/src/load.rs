//! Load: full meshes starting cold, with CPU as a resource ([`Cpu`]), no fault at all.
//!
//! Each node handles one event at a time, each event costing CPU time, so a node with many
//! peers falls behind: its envelopes, timers, agent reports and connectivity checks wait in its
//! queue. What the run shows is whether that lateness alone makes sessions restart (a restart
//! without a fault), and how long the mesh takes to be all up.

use std::time::Duration;

use icepact::RestartPolicy;

use crate::profile::Plan;
use crate::world::{Cpu, Outcome, SimConfig, World};

/// One cold start of a full mesh of `peers` nodes with `cpu` (none: infinitely fast nodes),
/// with rule STAMP_ARRIVAL on or off and each endpoint's ADMISSION bound (0: none).
pub fn load_run(
    peers: usize,
    cpu: Option<Cpu>,
    stamp_arrival: bool,
    max_establishing: usize,
    seed: u64,
) -> Outcome {
    let mut cfg = SimConfig::new(peers, RestartPolicy::Epoch);
    cfg.max_establishing = max_establishing;
    cfg.cpu = cpu;
    cfg.stamp_arrival = stamp_arrival;
    cfg.settle = Duration::from_secs(10);
    cfg.stop_when_settled = true;
    World::new(cfg, seed, Plan::calm()).run().0
}

/// The largest cold start the project checks: nodes in the mesh (32,640 sessions), each on a
/// CPU of its own ([`Cpu::own`] at 1 ms per envelope), with rule ADMISSION at its default. A
/// column of `icepact-sim verify --deep` and an ignored test that CI runs
/// (`sim/tests/load.rs`); about 45 s in release.
pub const LARGE_COLD_START_NODES: usize = 256;

/// The CPU of each node of the large cold start ([`LARGE_COLD_START_NODES`]).
pub fn large_cold_start_cpu() -> Cpu {
    Cpu::own(Duration::from_millis(1))
}

/// The sessions of a full mesh of `peers` nodes.
pub fn sessions(peers: usize) -> u64 {
    let n = peers as u64;
    n * n.saturating_sub(1) / 2
}
