//! `fedjob-kubesim`: simulated Kubernetes member clusters for tests and demos.
//!
//! Starts the clusters, writes a kubeconfig with a context per cluster, prints one JSON line
//! `{"ready":true,"kubeconfig":PATH,"clusters":{NAME:URL,…}}` on stdout, logs to stderr, and
//! stops cleanly on SIGTERM or SIGINT.
//!
//! With `--nodes` (or `--cluster-nodes`) a cluster has Node objects and a scheduler that binds
//! pods where they fit; without, pods run as soon as they exist. With `--tls` every cluster
//! serves HTTPS with a CA of its own, which the kubeconfig carries. `--fault` makes clusters
//! fail as real API servers do (unreachable for a while, 429, 500, 503, 403, slow answers,
//! expired watches); see `fedjob_tests::kubesim::faults::spec` for the grammar.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::collections::BTreeMap;

use clap::Parser;
use fedjob_proto::duration;
use fedjob_tests::kubesim::faults::{FaultSpec, spec};
use fedjob_tests::kubesim::node::{self, DEFAULT_CAPACITY};
use fedjob_tests::kubesim::{Fleet, SimOptions};

/// Exit code for a bad command line (sysexits' EX_USAGE).
const EX_USAGE: u8 = 64;

/// Simulated Kubernetes (v1.24) member clusters serving batch/v1 Jobs on loopback.
#[derive(Debug, Parser)]
#[command(name = "fedjob-kubesim", version)]
struct Args {
    /// Names of the clusters to start (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "count")]
    clusters: Vec<String>,
    /// Start this many clusters named sim-1 … sim-N.
    #[arg(long)]
    count: Option<usize>,
    /// First port; cluster i listens on port-base + i. 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    port_base: u16,
    /// Where to write the kubeconfig (default: a file in the temp directory).
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// How long a simulated pod runs unless its template has fedjob.io/sim-duration.
    #[arg(long, default_value = "1s", value_parser = duration::parse)]
    pod_duration: Duration,
    /// Require this bearer token on every request.
    #[arg(long, env = "FEDJOB_KUBESIM_TOKEN")]
    token: Option<String>,
    /// Changes kept per cluster for watches from an old resourceVersion (older ones get 410).
    #[arg(long, default_value_t = 1024)]
    history: usize,
    /// How often watches that allow bookmarks get one.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    bookmark_interval: Duration,
    /// Nodes per cluster (named CLUSTER-node-1 …); 0: no nodes, pods run without a scheduler.
    #[arg(long, default_value_t = 0)]
    nodes: usize,
    /// Each node's capacity (= allocatable), e.g. cpu=8,memory=32Gi,nvidia.com/gpu=2; what it
    /// leaves out stays at the default.
    #[arg(long, default_value = DEFAULT_CAPACITY, value_parser = parse_capacity)]
    node_capacity: BTreeMap<String, String>,
    /// Labels of every node (k=v,…), besides kubernetes.io/hostname, os and arch.
    #[arg(long, default_value = "", value_parser = parse_labels)]
    node_labels: BTreeMap<String, String>,
    /// One cluster's nodes instead of --nodes/--node-capacity: CLUSTER=COUNT[:CAPACITY], e.g.
    /// c2=3:cpu=8,memory=32Gi (repeatable).
    #[arg(long, value_parser = node::parse_cluster_nodes)]
    cluster_nodes: Vec<(String, usize, BTreeMap<String, String>)>,
    /// Serve HTTPS: each cluster gets a certificate for localhost and 127.0.0.1 signed by a CA
    /// of its own, which the kubeconfig carries as certificate-authority-data. Requests need a
    /// bearer token, as on a real cluster (kubectl asks for a password otherwise): --token, or
    /// a generated one in the kubeconfig.
    #[arg(long)]
    tls: bool,
    /// Make [CLUSTER:] fail: KIND[,KEY=VALUE…], KIND one of unreachable, 429, 500, 503, 403,
    /// slow, expire; keys verb=V[+V…], resource=jobs[/status], namespace, path, count, after,
    /// for, retry-after, body=text|status, message, user, delay. E.g.
    /// c2:429,verb=create,resource=jobs,count=5,retry-after=2 or unreachable,after=30s,for=10s
    /// (repeatable).
    #[arg(long, value_parser = spec::parse)]
    fault: Vec<(Option<String>, FaultSpec)>,
}

fn parse_capacity(s: &str) -> Result<BTreeMap<String, String>, String> {
    node::parse_capacity(s)
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("{p:?}: expected KEY=VALUE"))
        })
        .collect()
}

impl Args {
    fn names(&self) -> Result<Vec<String>, String> {
        let names: Vec<String> = match self.count {
            Some(0) => return Err("--count must be at least 1".to_owned()),
            Some(n) => (1..=n).map(|i| format!("sim-{i}")).collect(),
            None if self.clusters.is_empty() => vec!["sim-1".to_owned()],
            None => self.clusters.iter().map(|c| c.trim().to_owned()).collect(),
        };
        let mut seen = std::collections::HashSet::new();
        for name in &names {
            if name.is_empty() || !seen.insert(name) {
                return Err(format!(
                    "cluster names must be non-empty and unique: {name:?}"
                ));
            }
        }
        if self.port_base != 0 && usize::from(self.port_base) + names.len() > usize::from(u16::MAX)
        {
            return Err("--port-base leaves no room for every cluster".to_owned());
        }
        if let Some((cluster, ..)) = self.cluster_nodes.iter().find(|(c, ..)| !names.contains(c)) {
            return Err(format!(
                "--cluster-nodes names {cluster:?}, which is not one of the clusters"
            ));
        }
        if let Some(cluster) = self
            .fault
            .iter()
            .filter_map(|(c, _)| c.as_ref())
            .find(|c| !names.contains(c))
        {
            return Err(format!(
                "--fault names {cluster:?}, which is not one of the clusters"
            ));
        }
        Ok(names)
    }

    /// The options of each cluster: the shared ones, with its own nodes.
    fn clusters(&self, names: &[String], shared: &SimOptions) -> Vec<SimOptions> {
        names
            .iter()
            .map(|name| {
                let (count, capacity) = match self.cluster_nodes.iter().rfind(|(c, ..)| c == name) {
                    Some((_, count, capacity)) => (*count, capacity),
                    None => (self.nodes, &self.node_capacity),
                };
                let faults = self
                    .fault
                    .iter()
                    .filter(|(c, _)| c.as_ref().is_none_or(|c| c == name))
                    .map(|(_, spec)| spec.clone())
                    .collect();
                SimOptions {
                    name: name.clone(),
                    nodes: node::pool(name, count, capacity, &self.node_labels),
                    faults,
                    ..shared.clone()
                }
            })
            .collect()
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let names = match args.names() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("fedjob-kubesim: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let options = SimOptions {
        name: String::new(),
        port: 0,
        // kubectl prompts for a user name when an HTTPS cluster's user has no credentials.
        token: args
            .token
            .clone()
            .or_else(|| args.tls.then(|| uuid::Uuid::new_v4().to_string())),
        pod_duration: args.pod_duration,
        history: args.history,
        bookmark_interval: args.bookmark_interval,
        tls: args.tls,
        ..SimOptions::default()
    };
    let clusters = args.clusters(&names, &options);
    match run(&args, clusters).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fedjob-kubesim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args, clusters: Vec<SimOptions>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let nodes: usize = clusters.iter().map(|c| c.nodes.len()).sum();
    let fleet = Fleet::start_each(clusters, args.port_base).await?;
    let path = args.kubeconfig_out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("fedjob-kubesim-{}.kubeconfig", std::process::id()))
    });
    tokio::fs::write(&path, fleet.kubeconfig())
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", fleet.ready_line(&path.display().to_string()))?;
        stdout.flush()?;
    }
    tracing::info!(clusters = fleet.clusters().len(), nodes, kubeconfig = %path.display(), "ready");

    wait_for_signal().await?;
    tracing::info!("stopping");
    fleet.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
