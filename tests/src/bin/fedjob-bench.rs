//! `fedjob-bench`: the load harness. Starts a real `fedjob-scheduler` and simulated agents (or,
//! with `--mode full`, `fedjob-kubesim` clusters and real syncers), creates Jobs from
//! concurrent clients, and prints one JSON object with every figure and the parameters.
//!
//! Progress goes to stderr. Exit codes: 0 done, 1 a run failed, 64 a bad command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use fedjob_proto::capacity::DEFAULT_BYTES_PER_HEARTBEAT;
use fedjob_proto::duration;
use fedjob_tests::bench::agent_mode::{self, AgentParams, StoreKind};
use fedjob_tests::bench::api::ApiKind;
use fedjob_tests::bench::capacity::CapacitySettings;
use fedjob_tests::bench::full_mode::{self, FullParams};
use fedjob_tests::bench::sweep::{self, SweepParams};
use fedjob_tests::bench::{Machine, Report, plot};

/// Exit code for a bad command line (sysexits' EX_USAGE).
const EX_USAGE: u8 = 64;

/// Load harness for fedjob: throughput, latencies, memory and CPU of a real scheduler.
#[derive(Debug, Parser)]
#[command(name = "fedjob-bench", version)]
struct Args {
    /// `agent`: simulated agents over real gRPC; `full`: kubesim clusters and real syncers.
    #[arg(long, value_enum, default_value_t = Mode::Agent)]
    mode: Mode,
    /// Member clusters (N).
    #[arg(long, default_value_t = 10)]
    clusters: usize,
    /// Federated Jobs to create (M).
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Concurrent clients, each on its own connection (K).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Jobs whose status path is followed with WatchJob (S).
    #[arg(long, default_value_t = 100)]
    status_sample: usize,
    /// parallelism = completions of every Job [default: the number of clusters, one shard each].
    #[arg(long)]
    parallelism: Option<i32>,
    /// The scheduler's --cluster-grace; agents heartbeat every third of it.
    #[arg(long, default_value = "3s", value_parser = duration::parse)]
    cluster_grace: std::time::Duration,
    /// Agent mode: every agent reports every shard Running, not only the sampled ones.
    #[arg(long)]
    report_all: bool,
    /// How long to wait after the last create for assignments, status and completions.
    #[arg(long, default_value = "120s", value_parser = duration::parse)]
    settle_timeout: std::time::Duration,
    /// How often ListClusters is polled to see whether every cluster stays Ready.
    #[arg(long, default_value = "1s", value_parser = duration::parse)]
    ready_poll: std::time::Duration,
    /// Full mode: how long each simulated pod runs.
    #[arg(long, default_value = "1s")]
    pod_duration: String,
    /// Sweep the number of clusters (Jobs fixed at --jobs), e.g. 1,10,100,1000.
    #[arg(long, value_delimiter = ',')]
    sweep_clusters: Vec<usize>,
    /// Sweep the number of Jobs (clusters fixed at --clusters), e.g. 1000,10000,100000.
    #[arg(long, value_delimiter = ',')]
    sweep_jobs: Vec<usize>,
    /// With a sweep: write a PNG of throughput and latency against N and M here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The TrueType font for the plot's text [default: DejaVu Sans or another found].
    #[arg(long)]
    font: Option<PathBuf>,
    /// Agent mode: run the scheduler under this command, e.g. "valgrind --tool=massif
    /// --massif-out-file=/tmp/massif.out" (its RSS and CPU figures are then the wrapper's).
    #[arg(long, value_name = "COMMAND")]
    scheduler_wrapper: Option<String>,
    /// Agent mode: the scheduler's store. `etcd` starts one local etcd member (the `etcd`
    /// binary, Debian's etcd-server) with its data on the same disk as the embedded store's.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
    /// Agent mode: `kube` also creates as many Jobs through the scheduler's Kubernetes API
    /// (`--kube-api-listen`) as through gRPC, in turns, and reports both side by side.
    #[arg(long, value_enum, default_value_t = ApiKind::Grpc)]
    api: ApiKind,
    /// Agent mode: every agent also reports the free capacity of a simulated cluster of this
    /// many nodes, as `fedjob-syncer --report-capacity` does (at most once per heartbeat, only
    /// what changed, paced by --capacity-bytes-per-heartbeat); before the load, a window of
    /// heartbeats alone and one with capacity reports measure what reporting costs the
    /// scheduler.
    #[arg(long)]
    nodes_per_cluster: Option<usize>,
    /// With --nodes-per-cluster: how often pods finish or start in each simulated cluster.
    #[arg(long, default_value = "1s", value_parser = duration::parse)]
    capacity_interval: std::time::Duration,
    /// With --nodes-per-cluster: share of the nodes whose pods change each interval.
    #[arg(long, default_value_t = 0.05)]
    capacity_churn: f64,
    /// With --nodes-per-cluster: the agents' pacing, as `fedjob-syncer`'s flag of that name
    /// (0: a report at every heartbeat after a change).
    #[arg(long, default_value_t = DEFAULT_BYTES_PER_HEARTBEAT)]
    capacity_bytes_per_heartbeat: u64,
    /// With --nodes-per-cluster: length of each measuring window.
    #[arg(long, default_value = "20s", value_parser = duration::parse)]
    capacity_window: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Simulated agents speaking the agent protocol.
    Agent,
    /// fedjob-kubesim clusters and real fedjob-syncer processes.
    Full,
}

impl Args {
    fn check(&self) -> Result<(), String> {
        let sizes = self.sweep_clusters.iter().chain(&self.sweep_jobs).chain([
            &self.clusters,
            &self.jobs,
            &self.clients,
        ]);
        if sizes.into_iter().any(|&n| n == 0) {
            return Err("clusters, jobs, clients and swept sizes must be at least 1".into());
        }
        if self.clusters > 9999 || self.sweep_clusters.iter().any(|&n| n > 9999) {
            return Err("at most 9999 clusters".into());
        }
        if self.parallelism.is_some_and(|p| p < 1) {
            return Err("--parallelism must be at least 1".into());
        }
        let sweeping = !self.sweep_clusters.is_empty() || !self.sweep_jobs.is_empty();
        if sweeping && self.mode == Mode::Full {
            return Err("a sweep runs agent mode only".into());
        }
        if self.plot.is_some() && !sweeping {
            return Err("--plot needs --sweep-clusters and/or --sweep-jobs".into());
        }
        if self.cluster_grace.as_millis() < 300 {
            return Err("--cluster-grace must be at least 300ms".into());
        }
        if self.scheduler_wrapper.is_some() && self.mode == Mode::Full {
            return Err("--scheduler-wrapper is for agent mode".into());
        }
        if self.api == ApiKind::Kube && (self.mode == Mode::Full || sweeping) {
            return Err("--api kube is for one agent-mode run".into());
        }
        if self.store == StoreKind::Etcd && self.mode == Mode::Full {
            return Err("--store etcd is for agent mode".into());
        }
        if let Some(nodes) = self.nodes_per_cluster {
            if self.mode == Mode::Full {
                return Err("--nodes-per-cluster is for agent mode".into());
            }
            if !(1..=100_000).contains(&nodes) {
                return Err("--nodes-per-cluster must be between 1 and 100000".into());
            }
            if !(self.capacity_churn > 0.0 && self.capacity_churn <= 1.0) {
                return Err("--capacity-churn must be more than 0 and at most 1".into());
            }
            if self.capacity_interval.as_millis() < 10 {
                return Err("--capacity-interval must be at least 10ms".into());
            }
            if self.capacity_window.as_millis() < 100 {
                return Err("--capacity-window must be at least 100ms".into());
            }
        }
        if let Err(e) = duration::parse(&self.pod_duration) {
            return Err(format!("--pod-duration: {e}"));
        }
        Ok(())
    }

    fn agent_params(&self) -> AgentParams {
        AgentParams {
            clusters: self.clusters,
            jobs: self.jobs,
            clients: self.clients,
            status_sample: self.status_sample.min(self.jobs),
            parallelism: self.parallelism.unwrap_or(self.clusters as i32),
            cluster_grace_s: self.cluster_grace.as_secs_f64(),
            report_all: self.report_all,
            settle_timeout_s: self.settle_timeout.as_secs_f64(),
            ready_poll_s: self.ready_poll.as_secs_f64(),
            scheduler_wrapper: self
                .scheduler_wrapper
                .iter()
                .flat_map(|w| w.split_whitespace().map(str::to_owned))
                .collect(),
            store: self.store,
            api: self.api,
            capacity: self.nodes_per_cluster.map(|nodes| CapacitySettings {
                nodes_per_cluster: nodes,
                change_interval_s: self.capacity_interval.as_secs_f64(),
                churn: self.capacity_churn,
                bytes_per_heartbeat: self.capacity_bytes_per_heartbeat,
                window_s: self.capacity_window.as_secs_f64(),
            }),
        }
    }

    fn full_params(&self) -> FullParams {
        FullParams {
            clusters: self.clusters,
            jobs: self.jobs,
            clients: self.clients,
            status_sample: self.status_sample.min(self.jobs),
            pod_duration: self.pod_duration.clone(),
            parallelism: self.parallelism.unwrap_or(self.clusters as i32),
            cluster_grace_s: self.cluster_grace.as_secs_f64(),
            settle_timeout_s: self.settle_timeout.as_secs_f64(),
            ready_poll_s: self.ready_poll.as_secs_f64(),
        }
    }
}

fn print<P: serde::Serialize, R: serde::Serialize>(report: &Report<P, R>) {
    match serde_json::to_string_pretty(report) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("fedjob-bench: the report does not serialize: {e}"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Err(message) = args.check() {
        eprintln!("fedjob-bench: {message}");
        return ExitCode::from(EX_USAGE);
    }
    let machine = Machine::start();
    let sweeping = !args.sweep_clusters.is_empty() || !args.sweep_jobs.is_empty();
    if sweeping {
        let params = SweepParams {
            base: args.agent_params(),
            fixed_parallelism: args.parallelism.is_some(),
            clusters: args.sweep_clusters.clone(),
            jobs: args.sweep_jobs.clone(),
        };
        let results = sweep::run(&params).await;
        let failed = results.runs.iter().any(|r| r.error.is_some());
        let mut code = if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
        if let Some(path) = &args.plot {
            match plot::draw(&results, path, args.font.as_deref()) {
                Ok(font) => eprintln!(
                    "fedjob-bench: plot written to {} (font {})",
                    path.display(),
                    font.display()
                ),
                Err(e) => {
                    eprintln!("fedjob-bench: no plot: {e:#}");
                    code = ExitCode::FAILURE;
                }
            }
        }
        print(&Report {
            mode: "sweep",
            params,
            machine: machine.finish(),
            results,
        });
        return code;
    }
    let outcome = match args.mode {
        Mode::Agent => {
            let params = args.agent_params();
            agent_mode::run(&params).await.map(|results| {
                print(&Report {
                    mode: "agent",
                    params,
                    machine: machine.finish(),
                    results,
                })
            })
        }
        Mode::Full => {
            let params = args.full_params();
            full_mode::run(&params).await.map(|results| {
                print(&Report {
                    mode: "full",
                    params,
                    machine: machine.finish(),
                    results,
                })
            })
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fedjob-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
