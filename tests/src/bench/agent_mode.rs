//! Agent mode: a real `fedjob-scheduler` process (embedded store on disk, or a local etcd
//! member this run starts) and N simulated agents in this process, each on its own gRPC
//! connection; K clients create M Jobs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use fedjob_proto::shutdown;
use futures::StreamExt as _;
use serde::Serialize;

use super::agent::{AgentContext, AgentCounters, SimAgent};
use super::api::{self, ApiComparison, ApiKind};
use super::capacity::{self, CapacityFeed, CapacityResults, CapacitySettings, Tally};
use super::clusters::{ReadyReport, monitor, wait_ready};
use super::load::{CreateReport, JobShape, connect, create_jobs};
use super::metrics::{SchedulerMetrics, scrape};
use super::procstat::{self, ProcSample};
use super::stats::{Clock, Summary};
use super::tracker::{JobTracker, StatusProbes};
use super::watch::{Until, WatchReport, Watchers};
use crate::harness::{EtcdProcs, SchedulerProc, free_port};

/// Agents connecting at once.
const CONNECT_CONCURRENCY: usize = 32;

/// Which store the scheduler keeps its state in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded store in the scheduler's data directory (group commit, fsync per commit).
    #[default]
    Embedded,
    /// One etcd member on loopback ports with its data on the same disk, started by the run.
    Etcd,
}

/// The parameters of one agent-mode run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentParams {
    /// Simulated member clusters (agents).
    pub clusters: usize,
    /// Federated Jobs to create.
    pub jobs: usize,
    /// Concurrent clients creating them.
    pub clients: usize,
    /// Jobs whose status path is probed through `WatchJob`.
    pub status_sample: usize,
    /// `parallelism` = `completions` of every Job; the number of clusters (one shard each)
    /// unless set.
    pub parallelism: i32,
    /// The scheduler's `--cluster-grace`, seconds (agents heartbeat every third of it).
    pub cluster_grace_s: f64,
    /// Whether every agent reports every shard Running, as a syncer would, rather than only
    /// the sampled ones.
    pub report_all: bool,
    /// How long to wait after the last create for assignments and status, seconds.
    pub settle_timeout_s: f64,
    /// How often `ListClusters` is polled, seconds.
    pub ready_poll_s: f64,
    /// A command the scheduler runs under (a profiler), empty for none.
    pub scheduler_wrapper: Vec<String>,
    /// The scheduler's store.
    pub store: StoreKind,
    /// `kube`: after the run, as many creates through the Kubernetes API as through gRPC,
    /// in turns, to compare their cost.
    pub api: ApiKind,
    /// With `--nodes-per-cluster`: every agent reports a simulated cluster's capacity, and
    /// what that costs is measured before the load.
    pub capacity: Option<CapacitySettings>,
}

/// The scheduler's resource use over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Before the first create (agents connected).
    pub before: ProcSample,
    /// After the last figure was taken.
    pub after: ProcSample,
    /// Peak resident memory over the whole run, MiB.
    pub peak_rss_mb: f64,
    /// CPU seconds from start to the end of the run.
    pub cpu_s_total: f64,
    /// CPU seconds spent from the first create to the end.
    pub cpu_s_load: f64,
    /// `cpu_s_load` per 1,000 Jobs.
    pub cpu_s_per_1000_jobs: f64,
    /// Resident memory added by the load per 1,000 Jobs, MiB.
    pub rss_mb_per_1000_jobs: f64,
}

impl Usage {
    /// Usage between two samples for `jobs` Jobs.
    pub fn between(before: ProcSample, after: ProcSample, jobs: usize) -> Self {
        let per_1000 = |v: f64| {
            if jobs == 0 {
                0.0
            } else {
                (v / jobs as f64 * 1000.0 * 1000.0).round() / 1000.0
            }
        };
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        Self {
            before,
            after,
            peak_rss_mb: round(after.peak_rss_mb),
            cpu_s_total: round(after.cpu_s),
            cpu_s_load: round(after.cpu_s - before.cpu_s),
            cpu_s_per_1000_jobs: per_1000(after.cpu_s - before.cpu_s),
            rss_mb_per_1000_jobs: per_1000(after.rss_mb - before.rss_mb),
        }
    }
}

/// Propagation: create acknowledged → every cluster's agent has its RUN assignment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Propagation {
    /// Over every acknowledged Job that reached every cluster (0 when the last cluster had it
    /// before the acknowledgement reached the client).
    #[serde(flatten)]
    pub latency: Summary,
    /// Acknowledged Jobs that did not reach every cluster within the settle timeout.
    pub incomplete: usize,
    /// Jobs that reached every cluster before their acknowledgement reached the client.
    pub before_ack: usize,
    /// The same, measured from the moment the create was sent.
    pub from_send: Summary,
}

impl Propagation {
    /// The figures of `tracker` for `acknowledged` Jobs.
    pub fn of(tracker: &JobTracker, acknowledged: usize) -> Self {
        let latency = Summary::of_micros(tracker.latencies_us());
        Self {
            incomplete: acknowledged.saturating_sub(latency.count),
            latency,
            before_ack: tracker.before_ack(),
            from_send: Summary::of_micros(tracker.latencies_from_send_us()),
        }
    }
}

/// Status: an agent reports a shard Running → the federated Job's view shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusLatency {
    /// Over every report that was shown.
    #[serde(flatten)]
    pub latency: Summary,
    /// Reports never shown within the settle timeout.
    pub missing: usize,
    /// The `WatchJob` streams.
    pub watches: WatchReport,
}

/// Agent sessions that broke during the run: a figure of the run, not a reason to lose it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SessionErrors {
    /// How many.
    pub count: usize,
    /// Why the first one ended.
    pub first: Option<String>,
}

impl SessionErrors {
    fn add(&mut self, error: String) {
        self.count += 1;
        self.first.get_or_insert(error);
    }
}

/// Wall-clock phases of a run, seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Phases {
    /// Scheduler start and every agent connected and Ready.
    pub setup_s: f64,
    /// First create sent → last acknowledged.
    pub load_s: f64,
    /// Last acknowledgement → every assignment and probe in.
    pub settle_s: f64,
}

/// Every figure of one agent-mode run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgentResults {
    /// Acknowledged creates, their rate and latency.
    pub creates: CreateReport,
    /// Create acknowledged → every cluster's agent received its RUN assignment.
    pub propagation: Propagation,
    /// Shard reported Running → the aggregated status shows it.
    pub status: StatusLatency,
    /// The scheduler process.
    pub scheduler: Usage,
    /// Size of the store's files at the end (the embedded store's file, or the etcd member's
    /// data directory: WAL, snapshots and bbolt database), MiB.
    pub store_file_mb: f64,
    /// The etcd member, with `--store etcd`: its memory and CPU over the run.
    pub etcd: Option<Usage>,
    /// The scheduler's own counters.
    pub scheduler_metrics: SchedulerMetrics,
    /// Whether the clusters stayed Ready.
    pub clusters: ReadyReport,
    /// What the agents counted, summed (over the sessions that lasted the run).
    pub agents: AgentCounters,
    /// Agent sessions that ended before the run did (their counts are not in `agents`).
    pub session_errors: SessionErrors,
    /// This bench process (agents, clients and watches share the machine with the scheduler).
    pub bench_process: ProcSample,
    /// Wall-clock phases.
    pub phases: Phases,
    /// With `--api kube`: creates through gRPC next to the Kubernetes API.
    pub api_comparison: Option<ApiComparison>,
    /// With `--nodes-per-cluster`: what capacity reports cost, before the load.
    pub capacity: Option<CapacityResults>,
}

/// Runs agent mode once, on a fresh scheduler.
pub async fn run(params: &AgentParams) -> anyhow::Result<AgentResults> {
    let dir = tempfile::tempdir().context("a temporary data directory")?;
    let clock = Clock::start();
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let grace = format!("{}ms", (params.cluster_grace_s * 1000.0).round() as u64);
    let etcd = match params.store {
        StoreKind::Embedded => None,
        StoreKind::Etcd => {
            eprintln!("fedjob-bench: starting one etcd member");
            Some(EtcdProcs::start(1).await.context("starting etcd")?)
        }
    };
    let mut extra = vec![
        "--cluster-grace".to_owned(),
        grace,
        "--metrics-listen".to_owned(),
        metrics_addr.to_string(),
    ];
    if let Some(etcd) = &etcd {
        extra.extend(["--store".to_owned(), "etcd".to_owned()]);
        extra.extend(["--etcd-endpoints".to_owned(), etcd.endpoints()]);
    }
    let kube_api = (params.api == ApiKind::Kube).then(|| format!("127.0.0.1:{}", free_port()));
    if let Some(addr) = &kube_api {
        extra.extend(["--kube-api-listen".to_owned(), addr.clone()]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut scheduler = SchedulerProc::start_wrapped(
        free_port(),
        &dir.path().join("data"),
        &extra,
        &params.scheduler_wrapper,
    )
    .await?;
    let pid = scheduler.pid;
    let url = scheduler.url.clone();
    let store = match &etcd {
        None => StoreFiles::Embedded(dir.path().join("data")),
        Some(etcd) => StoreFiles::Etcd {
            pid: etcd.members[0]
                .pid()
                .ok_or_else(|| anyhow!("etcd exited"))?,
            dir: etcd.data_dir().to_owned(),
        },
    };
    let kube_url = kube_api.map(|addr| format!("http://{addr}"));
    let result = drive(
        params,
        &url,
        kube_url.as_deref(),
        pid,
        metrics_addr,
        clock,
        &store,
    )
    .await;
    // A profiler wrapping the scheduler writes its output on the way out.
    let patience = if params.scheduler_wrapper.is_empty() {
        30
    } else {
        600
    };
    let stopped = scheduler.terminate(Duration::from_secs(patience)).await;
    let mut results = result.with_context(|| scheduler.proc.tail(20))?;
    if !matches!(stopped, Ok(true)) {
        eprintln!("fedjob-bench: the scheduler did not stop cleanly: {stopped:?}");
    }
    results.bench_process = procstat::sample(std::process::id())?;
    Ok(results)
}

/// Where the store keeps its data, to measure it.
enum StoreFiles {
    /// The embedded store's directory.
    Embedded(PathBuf),
    /// The etcd member's process and data directory.
    Etcd { pid: u32, dir: PathBuf },
}

impl StoreFiles {
    /// The etcd member's process, if any.
    fn etcd_pid(&self) -> Option<u32> {
        match self {
            Self::Embedded(_) => None,
            Self::Etcd { pid, .. } => Some(*pid),
        }
    }

    /// Size of the store's files, MiB.
    fn size_mb(&self) -> f64 {
        match self {
            Self::Embedded(dir) => dir_size_mb(dir),
            Self::Etcd { dir, .. } => round3(tree_size(dir) as f64 / (1024.0 * 1024.0)),
        }
    }
}

async fn drive(
    params: &AgentParams,
    url: &str,
    kube_url: Option<&str>,
    pid: u32,
    metrics_addr: SocketAddr,
    clock: Clock,
    store: &StoreFiles,
) -> anyhow::Result<AgentResults> {
    let (stop_tx, stop) = shutdown::channel();
    let tracker = Arc::new(JobTracker::new(params.jobs));
    let probes = Arc::new(StatusProbes::new(
        params.jobs,
        params.status_sample,
        params.clusters,
    ));
    let tally = Arc::new(Tally::default());
    let ctx = AgentContext {
        clock,
        tracker: tracker.clone(),
        probes: probes.clone(),
        report_all: params.report_all,
        capacity: params.capacity.map(|settings| CapacityFeed {
            settings,
            tally: tally.clone(),
        }),
        stop: stop.clone(),
    };
    eprintln!(
        "fedjob-bench: connecting {} agents to {url}",
        params.clusters
    );
    let agents: Vec<anyhow::Result<SimAgent>> = futures::stream::iter(0..params.clusters)
        .map(|i| SimAgent::connect(url, i, ctx.clone()))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let agents = agents.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let observer = connect(url, 1).await?.remove(0);
    let ready_after = params.cluster_grace_s.max(10.0) + params.clusters as f64 / 20.0;
    wait_ready(
        observer.clone(),
        params.clusters,
        Duration::from_secs_f64(ready_after),
    )
    .await?;
    let setup_s = clock.now_us() as f64 / 1e6;
    let capacity = match (params.capacity, agents.first()) {
        (Some(settings), Some(agent)) => Some(
            capacity::measure(
                &tally,
                settings,
                agent.heartbeat_interval,
                pid,
                observer.clone(),
                params.clusters,
                Duration::from_secs_f64(params.ready_poll_s),
            )
            .await?,
        ),
        _ => None,
    };
    if let Some(figures) = &capacity {
        // Printed at once too: the load that follows may still fail the run.
        eprintln!(
            "fedjob-bench: capacity: {}",
            serde_json::to_string(figures).unwrap_or_default()
        );
    }
    let before = procstat::sample(pid)?;
    let etcd_before = store.etcd_pid().map(procstat::sample).transpose()?;

    let monitor = tokio::spawn(monitor(
        observer,
        params.clusters,
        Duration::from_secs_f64(params.ready_poll_s),
        stop.clone(),
    ));
    let watchers =
        Watchers::connect(url, clock, probes.clone(), Until::Running, stop.clone()).await?;
    let clients = connect(url, params.clients).await?;
    let shape = JobShape {
        parallelism: params.parallelism,
        sim_duration: None,
    };
    eprintln!(
        "fedjob-bench: creating {} Jobs from {} clients over {} clusters",
        params.jobs, params.clients, params.clusters
    );
    let load_start = clock.now_us();
    let creates = create_jobs(
        clients,
        params.jobs,
        &shape,
        clock,
        vec![tracker.clone()],
        watchers.clone(),
    )
    .await;
    let load_end = clock.now_us();
    eprintln!(
        "fedjob-bench: {} creates acknowledged ({} errors) at {}/s; waiting for assignments",
        creates.acknowledged, creates.errors, creates.per_second
    );
    let settle = Duration::from_secs_f64(params.settle_timeout_s);
    let propagated = tracker.wait_complete(creates.acknowledged, settle).await;
    let remaining = settle.saturating_sub(Duration::from_micros(clock.now_us() - load_end));
    watchers.wait_idle(remaining).await;
    let settle_end = clock.now_us();
    let after = procstat::sample(pid)?;
    let etcd_after = store.etcd_pid().map(procstat::sample).transpose()?;
    let scheduler_metrics = scrape(metrics_addr).unwrap_or_else(|e| {
        eprintln!("fedjob-bench: metrics not read: {e:#}");
        SchedulerMetrics::default()
    });
    let api_comparison = match kube_url {
        Some(kube_url) => {
            eprintln!(
                "fedjob-bench: {} more Jobs through gRPC and {} through the Kubernetes API, in turns",
                params.jobs, params.jobs
            );
            let rounds = 4;
            let comparison = api::compare(
                url,
                kube_url,
                pid,
                &shape,
                params.jobs,
                params.clients,
                rounds,
            );
            Some(comparison.await?)
        }
        None => None,
    };

    stop_tx.fire();
    let watches = watchers.finish().await;
    let clusters = monitor.await.unwrap_or_default();
    let mut agent_counters = AgentCounters::default();
    let mut session_errors = SessionErrors::default();
    for agent in agents {
        match agent.finish().await {
            Ok(counters) => agent_counters.add(&counters),
            Err(e) => session_errors.add(format!("{e:#}")),
        }
    }
    if session_errors.count > 0 {
        eprintln!(
            "fedjob-bench: {} agent sessions ended early; the first: {}",
            session_errors.count,
            session_errors.first.as_deref().unwrap_or_default()
        );
    }
    let (status_latencies, missing) = probes.status_latencies_us();
    if propagated < creates.acknowledged {
        eprintln!(
            "fedjob-bench: {} of {} Jobs did not reach every cluster within {settle:?}",
            creates.acknowledged - propagated,
            creates.acknowledged
        );
    }
    Ok(AgentResults {
        propagation: Propagation::of(&tracker, creates.acknowledged),
        creates,
        status: StatusLatency {
            latency: Summary::of_micros(status_latencies),
            missing,
            watches,
        },
        scheduler: Usage::between(before, after, params.jobs),
        store_file_mb: store.size_mb(),
        etcd: etcd_before
            .zip(etcd_after)
            .map(|(before, after)| Usage::between(before, after, params.jobs)),
        scheduler_metrics,
        clusters,
        agents: agent_counters,
        session_errors,
        bench_process: ProcSample::default(),
        phases: Phases {
            setup_s: round3(setup_s),
            load_s: round3(load_end.saturating_sub(load_start) as f64 / 1e6),
            settle_s: round3(settle_end.saturating_sub(load_end) as f64 / 1e6),
        },
        api_comparison,
        capacity,
    })
}

/// Rounds to three decimals.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Bytes of the files under `dir`, recursively.
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => tree_size(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

/// Size of the files in `dir` (not recursive), MiB.
pub fn dir_size_mb(dir: &Path) -> f64 {
    let bytes: u64 = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    round3(bytes as f64 / (1024.0 * 1024.0))
}
