//! Full mode: the whole path with real processes — `fedjob-kubesim` member clusters, a
//! `fedjob-syncer` per cluster, the scheduler — measuring create acknowledged → shard exists in
//! every member cluster (watched with the kube client, as `kubectl get jobs -w` would), and
//! last shard Complete in its cluster → federated Job Complete (`WatchJob` on a sample).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use fedjob_proto::shutdown::{self, Shutdown};
use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::Serialize;
use tokio::sync::oneshot;

use super::agent_mode::{Propagation, Usage, dir_size_mb, round3};
use super::clusters::{ReadyReport, monitor, wait_ready};
use super::load::{CreateReport, JobShape, connect, create_jobs};
use super::metrics::{SchedulerMetrics, scrape};
use super::procstat::{self, ProcSample};
use super::stats::{Clock, Summary};
use super::tracker::{JobTracker, StatusProbes, cluster_name, job_index};
use super::watch::{Until, WatchReport, Watchers};
use crate::harness::{SchedulerProc, SimProc, SyncerProc, free_port, kube_client};

/// The parameters of one full-mode run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FullParams {
    /// Simulated member clusters, each with its own syncer.
    pub clusters: usize,
    /// Federated Jobs to create.
    pub jobs: usize,
    /// Concurrent clients creating them.
    pub clients: usize,
    /// Jobs followed to Complete through `WatchJob`.
    pub status_sample: usize,
    /// How long each simulated pod runs (`fedjob.io/sim-duration`).
    pub pod_duration: String,
    /// `parallelism` = `completions` of every Job (one shard per cluster by default).
    pub parallelism: i32,
    /// The scheduler's `--cluster-grace`, seconds; syncers heartbeat every third of it.
    pub cluster_grace_s: f64,
    /// How long to wait after the last create for shards and completions, seconds.
    pub settle_timeout_s: f64,
    /// How often `ListClusters` is polled, seconds.
    pub ready_poll_s: f64,
}

/// Last shard Complete in its cluster → the federated Job Complete.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Completion {
    /// Over the sampled Jobs that completed.
    #[serde(flatten)]
    pub latency: Summary,
    /// Sampled Jobs not seen Complete (in every cluster and in the federation) in time.
    pub missing: usize,
    /// The `WatchJob` streams.
    pub watches: WatchReport,
}

/// Resource use of the syncers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncerUsage {
    /// Syncer processes.
    pub count: usize,
    /// Shards each one manages at the end (Jobs × shards per cluster).
    pub shards_each: usize,
    /// The largest peak resident memory of one syncer, MiB.
    pub max_peak_rss_mb: f64,
    /// CPU seconds of all syncers together.
    pub cpu_s_total: f64,
}

/// Every figure of one full-mode run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FullResults {
    /// Acknowledged creates, their rate and latency.
    pub creates: CreateReport,
    /// Create acknowledged → the shard exists in every member cluster.
    pub create_to_shard: Propagation,
    /// Last shard Complete → federated Job Complete.
    pub shard_complete_to_job_complete: Completion,
    /// The scheduler process.
    pub scheduler: Usage,
    /// Size of the store file at the end, MiB.
    pub store_file_mb: f64,
    /// The scheduler's own counters.
    pub scheduler_metrics: SchedulerMetrics,
    /// The syncers.
    pub syncers: SyncerUsage,
    /// The `fedjob-kubesim` process serving every cluster.
    pub kubesim: ProcSample,
    /// Whether the clusters stayed Ready.
    pub clusters: ReadyReport,
    /// This bench process.
    pub bench_process: ProcSample,
}

/// Runs full mode once.
pub async fn run(params: &FullParams) -> anyhow::Result<FullResults> {
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let names: Vec<String> = (0..params.clusters).map(cluster_name).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let kubeconfig = dir.path().join("kubeconfig");
    eprintln!(
        "fedjob-bench: starting {} kubesim clusters, the scheduler and {} syncers",
        params.clusters, params.clusters
    );
    let mut sim = SimProc::start(&name_refs, &kubeconfig, &params.pod_duration).await?;
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let grace_ms = (params.cluster_grace_s * 1000.0).round() as u64;
    let mut scheduler = SchedulerProc::start(
        free_port(),
        &dir.path().join("data"),
        &[
            "--cluster-grace",
            &format!("{grace_ms}ms"),
            "--metrics-listen",
            &metrics_addr.to_string(),
        ],
    )
    .await?;
    let heartbeat = format!("{}ms", (grace_ms / 3).max(100));
    let mut syncers = names
        .iter()
        .map(|c| {
            SyncerProc::start(
                &scheduler.url,
                c,
                &kubeconfig,
                &["--heartbeat-interval", &heartbeat],
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let result = drive(
        params,
        &scheduler,
        &syncers,
        &sim,
        &kubeconfig,
        metrics_addr,
    )
    .await;
    let result = result.with_context(|| {
        format!(
            "scheduler:\n{}\nfirst syncer:\n{}",
            scheduler.proc.tail(20),
            syncers.first().map(|s| s.proc.tail(20)).unwrap_or_default()
        )
    });
    for s in &mut syncers {
        let _ = s.proc.terminate(Duration::from_secs(15)).await;
    }
    let _ = scheduler.proc.terminate(Duration::from_secs(30)).await;
    let _ = sim.proc.terminate(Duration::from_secs(15)).await;
    let mut results = result?;
    results.store_file_mb = dir_size_mb(&dir.path().join("data"));
    results.bench_process = procstat::sample(std::process::id())?;
    Ok(results)
}

async fn drive(
    params: &FullParams,
    scheduler: &SchedulerProc,
    syncers: &[SyncerProc],
    sim: &SimProc,
    kubeconfig: &Path,
    metrics_addr: SocketAddr,
) -> anyhow::Result<FullResults> {
    let clock = Clock::start();
    let url = &scheduler.url;
    let pid = |p: &crate::harness::Proc| p.pid().ok_or_else(|| anyhow!("{} exited", p.name));
    let (stop_tx, stop) = shutdown::channel();
    let shards = Arc::new(JobTracker::new(params.jobs));
    let completes = Arc::new(JobTracker::new(params.jobs));
    let probes = Arc::new(StatusProbes::new(
        params.jobs,
        params.status_sample,
        params.clusters,
    ));

    let observer = connect(url, 1).await?.remove(0);
    wait_ready(
        observer.clone(),
        params.clusters,
        Duration::from_secs(30 + params.clusters as u64),
    )
    .await?;
    let mut members = Vec::new();
    for (c, name) in sim.ready.clusters.keys().enumerate() {
        let (ready_tx, ready_rx) = oneshot::channel();
        members.push(tokio::spawn(watch_member(
            kubeconfig.to_owned(),
            name.clone(),
            clock,
            shards.clone(),
            completes.clone(),
            ready_tx,
            stop.clone(),
        )));
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .map_err(|_| anyhow!("the watch of cluster {c} ({name}) did not start"))?
            .map_err(|_| anyhow!("the watch of cluster {name} failed to start"))?;
    }
    let before = procstat::sample(pid(&scheduler.proc)?)?;
    let monitor = tokio::spawn(monitor(
        observer,
        params.clusters,
        Duration::from_secs_f64(params.ready_poll_s),
        stop.clone(),
    ));
    let watchers =
        Watchers::connect(url, clock, probes.clone(), Until::Complete, stop.clone()).await?;
    let shape = JobShape {
        parallelism: params.parallelism,
        sim_duration: Some(params.pod_duration.clone()),
    };
    eprintln!(
        "fedjob-bench: creating {} Jobs from {} clients over {} kubesim clusters",
        params.jobs, params.clients, params.clusters
    );
    let clients = connect(url, params.clients).await?;
    let creates = create_jobs(
        clients,
        params.jobs,
        &shape,
        clock,
        vec![shards.clone(), completes.clone()],
        watchers.clone(),
    )
    .await;
    let load_end = clock.now_us();
    eprintln!(
        "fedjob-bench: {} creates acknowledged ({} errors) at {}/s; waiting for shards and completions",
        creates.acknowledged, creates.errors, creates.per_second
    );
    let settle = Duration::from_secs_f64(params.settle_timeout_s);
    shards.wait_complete(creates.acknowledged, settle).await;
    let remaining = settle.saturating_sub(Duration::from_micros(clock.now_us() - load_end));
    watchers.wait_idle(remaining).await;
    let after = procstat::sample(pid(&scheduler.proc)?)?;
    let scheduler_metrics = scrape(metrics_addr).unwrap_or_else(|e| {
        eprintln!("fedjob-bench: metrics not read: {e:#}");
        SchedulerMetrics::default()
    });
    let mut syncer_usage = SyncerUsage {
        count: syncers.len(),
        shards_each: creates.acknowledged,
        ..Default::default()
    };
    for s in syncers {
        let sample = procstat::sample(pid(&s.proc)?)?;
        syncer_usage.max_peak_rss_mb = syncer_usage.max_peak_rss_mb.max(sample.peak_rss_mb);
        syncer_usage.cpu_s_total = round3(syncer_usage.cpu_s_total + sample.cpu_s);
    }
    let kubesim = procstat::sample(pid(&sim.proc)?)?;

    stop_tx.fire();
    let watches = watchers.finish().await;
    let clusters = monitor.await.unwrap_or_default();
    for m in members {
        match tokio::time::timeout(Duration::from_secs(10), m).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("fedjob-bench: member watch: {e:#}"),
            _ => eprintln!("fedjob-bench: a member watch did not stop"),
        }
    }

    let mut complete_latencies = Vec::new();
    let mut missing = 0;
    for k in 0..probes.len() {
        let idx = probes.job_of(k);
        match (completes.completed_at(idx), probes.complete_at(k)) {
            (Some(last_shard), Some(federated)) => {
                complete_latencies.push(federated.saturating_sub(last_shard));
            }
            _ => missing += 1,
        }
    }
    Ok(FullResults {
        create_to_shard: Propagation::of(&shards, creates.acknowledged),
        creates,
        shard_complete_to_job_complete: Completion {
            latency: Summary::of_micros(complete_latencies),
            missing,
            watches,
        },
        scheduler: Usage::between(before, after, params.jobs),
        store_file_mb: 0.0,
        scheduler_metrics,
        syncers: syncer_usage,
        kubesim,
        clusters,
        bench_process: ProcSample::default(),
    })
}

/// Watches the shards in one member cluster: the first sight of each Job's shard, and the
/// first sight of it Complete.
async fn watch_member(
    kubeconfig: PathBuf,
    context: String,
    clock: Clock,
    shards: Arc<JobTracker>,
    completes: Arc<JobTracker>,
    ready: oneshot::Sender<()>,
    stop: Shutdown,
) -> anyhow::Result<()> {
    let client = kube_client(&kubeconfig, &context).await?;
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let mut events = watcher(
        jobs,
        watcher::Config::default().labels("fedjob.io/managed-by=fedjob"),
    )
    .default_backoff()
    .boxed();
    let mut ready = Some(ready);
    let mut seen = Vec::<bool>::new();
    let mut done = Vec::<bool>::new();
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = stop.fired() => return Ok(()),
        };
        let now = clock.now_us();
        let job = match event {
            None => anyhow::bail!("{context}: the watch ended"),
            Some(Err(e)) => {
                eprintln!("fedjob-bench: {context}: watch error (retrying): {e}");
                continue;
            }
            Some(Ok(watcher::Event::InitDone)) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                continue;
            }
            Some(Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job))) => job,
            Some(Ok(_)) => continue,
        };
        let Some(idx) = job.metadata.name.as_deref().and_then(job_index) else {
            continue;
        };
        if first(&mut seen, idx) {
            shards.seen(idx, now);
        }
        if is_complete(&job) && first(&mut done, idx) {
            completes.seen(idx, now);
        }
    }
}

/// Marks `idx` in `flags`; returns whether it was not marked yet.
fn first(flags: &mut Vec<bool>, idx: usize) -> bool {
    if idx >= flags.len() {
        flags.resize(idx + 1, false);
    }
    !std::mem::replace(&mut flags[idx], true)
}

/// Whether a member cluster's Job has `Complete=True`.
fn is_complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_marks_once() {
        let mut flags = Vec::new();
        assert!(first(&mut flags, 5));
        assert!(!first(&mut flags, 5));
        assert!(first(&mut flags, 0));
    }

    #[test]
    fn complete_needs_the_true_condition() {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bench-000001"},
            "status": {"conditions": [{"type": "Complete", "status": "False"}]}
        }))
        .unwrap();
        assert!(!is_complete(&job));
        job.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        assert!(is_complete(&job));
    }
}
