//! `fedjob-bench`, the load harness: measures a real `fedjob-scheduler` under load.
//!
//! - [`agent_mode`]: N simulated agents speaking the real agent protocol over real gRPC, K
//!   clients creating M Jobs; create throughput, propagation and status latency, scheduler
//!   memory and CPU, cluster readiness.
//! - [`full_mode`]: real `fedjob-syncer`s against `fedjob-kubesim` clusters; create → shard in
//!   the member cluster, shard complete → federated Job Complete.
//! - [`capacity`]: with `--nodes-per-cluster`, agents also report a simulated cluster's free
//!   capacity as the syncer does; what it costs the scheduler, measured before the load.
//! - [`api`]: with `--api kube`, the same creates through the Kubernetes API next to gRPC.
//! - [`sweep`]: agent mode at several sizes, each on a fresh scheduler, and how the figures
//!   grow; [`plot`] draws them.
//!
//! Every run prints one JSON object ([`Report`]); progress goes to stderr.

pub mod agent;
pub mod agent_mode;
pub mod api;
pub mod capacity;
pub mod clusters;
pub mod full_mode;
pub mod load;
pub mod metrics;
pub mod plot;
pub mod procstat;
pub mod stats;
pub mod sweep;
pub mod tracker;
pub mod watch;

use serde::Serialize;

/// The machine a run measured on, and how busy it was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    /// CPUs available to this process.
    pub cpus: usize,
    /// Load averages (1, 5, 15 min) when the bench started.
    pub loadavg_before: [f64; 3],
    /// Load averages when it ended.
    pub loadavg_after: [f64; 3],
    /// Whether the bench (and so the scheduler beside it) is an optimized build.
    pub release_build: bool,
}

impl Machine {
    /// The machine now; call [`Machine::finish`] at the end of the run.
    pub fn start() -> Self {
        let load = procstat::loadavg();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            loadavg_before: load,
            loadavg_after: load,
            release_build: !cfg!(debug_assertions),
        }
    }

    /// Takes the load averages at the end.
    pub fn finish(mut self) -> Self {
        self.loadavg_after = procstat::loadavg();
        self
    }
}

/// The one JSON object a run prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report<P: Serialize, R: Serialize> {
    /// `agent`, `full` or `sweep`.
    pub mode: &'static str,
    /// The parameters of the run.
    pub params: P,
    /// The machine.
    pub machine: Machine,
    /// Every figure.
    pub results: R,
}
