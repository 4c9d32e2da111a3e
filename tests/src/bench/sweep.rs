//! A sweep: agent mode at several sizes, each on a fresh scheduler, varying the clusters N
//! with the Jobs M fixed, then M with N fixed, and how each figure grows along each axis.

use serde::Serialize;

use super::agent_mode::{self, AgentParams, AgentResults};
use super::procstat;

/// What to sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepParams {
    /// Every other parameter; its `clusters` is the N of the jobs axis, its `jobs` the M of
    /// the clusters axis.
    pub base: AgentParams,
    /// Whether `base.parallelism` was given (else each run uses its own N: one shard per
    /// cluster).
    pub fixed_parallelism: bool,
    /// N values, each run with M = `base.jobs`.
    pub clusters: Vec<usize>,
    /// M values, each run with N = `base.clusters`.
    pub jobs: Vec<usize>,
}

/// One size of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRun {
    /// Clusters.
    pub clusters: usize,
    /// Jobs.
    pub jobs: usize,
    /// Load averages when the run started.
    pub loadavg_before: [f64; 3],
    /// Every figure, when the run worked.
    pub results: Option<AgentResults>,
    /// Why it did not.
    pub error: Option<String>,
}

/// Figures along one axis; `null` where the run failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Growth {
    /// The other parameter, held fixed.
    pub fixed: usize,
    /// The values along the axis.
    pub x: Vec<usize>,
    /// Acknowledged creates per second.
    pub create_per_s: Vec<Option<f64>>,
    /// Propagation p50, ms.
    pub propagation_p50_ms: Vec<Option<f64>>,
    /// Propagation p99, ms.
    pub propagation_p99_ms: Vec<Option<f64>>,
    /// Propagation max, ms.
    pub propagation_max_ms: Vec<Option<f64>>,
    /// Create sent → every cluster has its assignment, p99, ms.
    pub propagation_from_send_p99_ms: Vec<Option<f64>>,
    /// Status p50, ms.
    pub status_p50_ms: Vec<Option<f64>>,
    /// Status p99, ms.
    pub status_p99_ms: Vec<Option<f64>>,
    /// Scheduler peak RSS, MiB.
    pub peak_rss_mb: Vec<Option<f64>>,
    /// Scheduler CPU seconds per 1,000 Jobs (CPU ms per Job).
    pub cpu_s_per_1000_jobs: Vec<Option<f64>>,
    /// Scheduler resident memory added by the load per 1,000 Jobs, MiB.
    pub rss_mb_per_1000_jobs: Vec<Option<f64>>,
    /// Fewest clusters Ready during the load.
    pub min_ready: Vec<Option<usize>>,
}

impl Growth {
    fn push(&mut self, x: usize, r: Option<&AgentResults>) {
        self.x.push(x);
        self.create_per_s.push(r.map(|r| r.creates.per_second));
        self.propagation_p50_ms
            .push(r.map(|r| r.propagation.latency.p50_ms));
        self.propagation_p99_ms
            .push(r.map(|r| r.propagation.latency.p99_ms));
        self.propagation_max_ms
            .push(r.map(|r| r.propagation.latency.max_ms));
        self.propagation_from_send_p99_ms
            .push(r.map(|r| r.propagation.from_send.p99_ms));
        self.status_p50_ms.push(r.map(|r| r.status.latency.p50_ms));
        self.status_p99_ms.push(r.map(|r| r.status.latency.p99_ms));
        self.peak_rss_mb.push(r.map(|r| r.scheduler.peak_rss_mb));
        self.cpu_s_per_1000_jobs
            .push(r.map(|r| r.scheduler.cpu_s_per_1000_jobs));
        self.rss_mb_per_1000_jobs
            .push(r.map(|r| r.scheduler.rss_mb_per_1000_jobs));
        self.min_ready.push(r.map(|r| r.clusters.min_ready));
    }
}

/// Every run and the growth along each axis.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SweepResults {
    /// Every size run, in order.
    pub runs: Vec<SweepRun>,
    /// Figures against N (M fixed).
    pub by_clusters: Growth,
    /// Figures against M (N fixed).
    pub by_jobs: Growth,
}

/// The sizes to run, in order, without repeating the one both axes share.
pub fn sizes(params: &SweepParams) -> Vec<(usize, usize)> {
    let mut sizes: Vec<(usize, usize)> = params
        .clusters
        .iter()
        .map(|&n| (n, params.base.jobs))
        .chain(params.jobs.iter().map(|&m| (params.base.clusters, m)))
        .collect();
    let mut seen = std::collections::HashSet::new();
    sizes.retain(|s| seen.insert(*s));
    sizes
}

/// Runs every size; a size that fails is recorded and the sweep goes on.
pub async fn run(params: &SweepParams) -> SweepResults {
    let mut runs = Vec::new();
    for (clusters, jobs) in sizes(params) {
        let mut p = params.base.clone();
        p.clusters = clusters;
        p.jobs = jobs;
        p.status_sample = p.status_sample.min(jobs);
        if !params.fixed_parallelism {
            p.parallelism = clusters as i32;
        }
        eprintln!("fedjob-bench: sweep: {clusters} clusters × {jobs} Jobs");
        let loadavg_before = procstat::loadavg();
        let (results, error) = match agent_mode::run(&p).await {
            Ok(r) => (Some(r), None),
            Err(e) => {
                eprintln!("fedjob-bench: sweep: {clusters} × {jobs} failed: {e:#}");
                (None, Some(format!("{e:#}")))
            }
        };
        runs.push(SweepRun {
            clusters,
            jobs,
            loadavg_before,
            results,
            error,
        });
    }
    let find = |n: usize, m: usize| {
        runs.iter()
            .find(|r| r.clusters == n && r.jobs == m)
            .and_then(|r| r.results.as_ref())
    };
    let mut by_clusters = Growth {
        fixed: params.base.jobs,
        ..Default::default()
    };
    for &n in &params.clusters {
        by_clusters.push(n, find(n, params.base.jobs));
    }
    let mut by_jobs = Growth {
        fixed: params.base.clusters,
        ..Default::default()
    };
    for &m in &params.jobs {
        by_jobs.push(m, find(params.base.clusters, m));
    }
    SweepResults {
        runs,
        by_clusters,
        by_jobs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::agent_mode::StoreKind;

    #[test]
    fn sizes_cross_at_the_base_once() {
        let base = AgentParams {
            clusters: 10,
            jobs: 1000,
            clients: 1,
            status_sample: 1,
            parallelism: 10,
            cluster_grace_s: 3.0,
            report_all: false,
            settle_timeout_s: 1.0,
            ready_poll_s: 1.0,
            scheduler_wrapper: vec![],
            store: StoreKind::Embedded,
            api: crate::bench::api::ApiKind::Grpc,
            capacity: None,
        };
        let params = SweepParams {
            base,
            fixed_parallelism: false,
            clusters: vec![1, 10, 100],
            jobs: vec![1000, 10000],
        };
        assert_eq!(
            sizes(&params),
            vec![(1, 1000), (10, 1000), (100, 1000), (10, 10000)]
        );
    }
}
