//! The windows of the capacity measurement: heartbeats alone, every agent's full report, then
//! heartbeats and capacity changes; what the scheduler spent in each, what the agents sent,
//! and whether every cluster stayed Ready.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use fedjob_proto::v1::{self, federation_client::FederationClient};
use serde::Serialize;
use tonic::transport::Channel;

use super::{CapacitySettings, Tally};
use crate::bench::agent_mode::round3;
use crate::bench::clusters::{ReadyReport, monitor};
use crate::bench::procstat;
use crate::bench::stats::Summary;

/// ListClusters calls made back to back to price one (with and without capacity held).
const LIST_PROBES: u32 = 5;

/// A window of the capacity measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    /// Its length, seconds.
    pub window_s: f64,
    /// Heartbeats sent by every agent in it.
    pub heartbeats: u64,
    /// Slowest heartbeat → acknowledgement in it, ms.
    pub max_heartbeat_rtt_ms: f64,
    /// Heartbeat → acknowledgement round trips of the acknowledgements received in it.
    pub heartbeat_rtt: Summary,
    /// How long after it was due each heartbeat in it went out: the bench's own delay (its
    /// agents share the cores with the scheduler), part of the round trips too; round trips
    /// well above it are the scheduler's.
    pub heartbeat_send_delay: Summary,
    /// Heartbeats acknowledged within one heartbeat interval of being sent, as a share of the
    /// heartbeats due in the window (clusters × window ÷ interval; at most 1): below 1 when
    /// heartbeats went out late (a busy bench or a stream the scheduler reads too slowly) or
    /// their acknowledgements came back late.
    pub on_time_share: f64,
    /// Capacity reports (changes) sent in it.
    pub reports: u64,
    /// Of those, the ones sent in full (the changes since the last outnumbered the groups).
    pub reports_in_full: u64,
    /// Their encoded size (the `AgentMessage` protobuf as sent on the stream, without gRPC's
    /// 5-byte frame prefix), mean bytes per report.
    pub bytes_per_report: f64,
    /// The largest, bytes.
    pub max_bytes_per_report: u64,
    /// Node groups per report, mean.
    pub groups_per_report: f64,
    /// Every report's bytes per second, summed over clusters.
    pub bytes_per_s: f64,
    /// Scheduler CPU seconds over the window.
    pub scheduler_cpu_s: f64,
    /// Scheduler CPU seconds per second.
    pub scheduler_cpu_s_per_s: f64,
    /// Scheduler CPU over [`LIST_PROBES`] `ListClusters` calls made back to back after the
    /// window, per call, ms: what one readiness poll costs, at most (whatever else the
    /// scheduler did meanwhile is counted in).
    pub list_clusters_cpu_ms: f64,
    /// Scheduler resident memory at the end, MiB.
    pub scheduler_rss_mb: f64,
    /// This bench process's CPU seconds per second (the agents' models and reporters).
    pub bench_cpu_s_per_s: f64,
    /// Whether every cluster stayed Ready (`ListClusters` every `--ready-poll`).
    pub clusters: ReadyReport,
}

/// Every agent's first, full report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FullReports {
    /// Full reports received in time.
    pub reports: u64,
    /// Mean encoded size, bytes.
    pub bytes_per_report: f64,
    /// The largest, bytes.
    pub max_bytes_per_report: u64,
    /// Node groups per full report, mean.
    pub groups_per_report: f64,
    /// Reporting switched on → every full report sent, seconds.
    pub elapsed_s: f64,
    /// Scheduler CPU seconds over that time.
    pub scheduler_cpu_s: f64,
}

/// What capacity reports cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CapacityResults {
    /// Nodes per cluster.
    pub nodes_per_cluster: usize,
    /// The agents' heartbeat interval (the report debounce), seconds.
    pub heartbeat_interval_s: f64,
    /// Heartbeats only.
    pub quiet: Window,
    /// Every agent's full report.
    pub full: FullReports,
    /// Heartbeats and capacity changes.
    pub reporting: Window,
    /// Scheduler CPU seconds per second that reporting adds (both windows poll
    /// `ListClusters` alike, but a poll costs more once capacity is known).
    pub extra_cpu_s_per_s: f64,
    /// The same as a multiple of the quiet window's CPU per second (heartbeats and readiness
    /// polls): at most 1 when capacity costs the scheduler no more than heartbeats do.
    pub extra_cpu_vs_heartbeats: f64,
    /// The same per 1,000 reports, seconds.
    pub cpu_s_per_1000_reports: f64,
    /// Scheduler CPU per 1,000 heartbeats in the quiet window (its polls included), seconds.
    pub cpu_s_per_1000_heartbeats: f64,
    /// Scheduler resident memory the reported capacity added, MiB.
    pub rss_mb_added: f64,
}

/// Runs the windows; agents must be connected and Ready, with reporting off.
pub async fn measure(
    tally: &Tally,
    settings: CapacitySettings,
    heartbeat_interval: Duration,
    scheduler: u32,
    observer: Channel,
    clusters: usize,
    poll: Duration,
) -> anyhow::Result<CapacityResults> {
    let window = Duration::from_secs_f64(settings.window_s);
    eprintln!("fedjob-bench: capacity: {window:?} of heartbeats alone");
    let quiet = measure_window(
        tally,
        window,
        heartbeat_interval,
        scheduler,
        &observer,
        clusters,
        poll,
    )
    .await?;

    eprintln!(
        "fedjob-bench: capacity: {clusters} clusters of {} nodes start reporting",
        settings.nodes_per_cluster
    );
    let before = procstat::sample(scheduler)?;
    let start = Instant::now();
    tally.on.store(true, Ordering::Release);
    let deadline = heartbeat_interval * 3 + Duration::from_secs(30 + clusters as u64 / 10);
    while tally.counts().full_reports < clusters as u64 {
        if start.elapsed() > deadline {
            bail!(
                "{} of {clusters} full capacity reports after {deadline:?}",
                tally.counts().full_reports
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    let counts = tally.counts();
    let full = FullReports {
        reports: counts.full_reports,
        bytes_per_report: ratio(counts.full_bytes, counts.full_reports),
        max_bytes_per_report: tally.full_max_bytes.load(Ordering::Relaxed),
        groups_per_report: ratio(counts.full_groups, counts.full_reports),
        elapsed_s: round3(elapsed.as_secs_f64()),
        scheduler_cpu_s: round3(procstat::sample(scheduler)?.cpu_s - before.cpu_s),
    };
    // The reports in flight are applied before the window opens.
    tokio::time::sleep(heartbeat_interval).await;
    eprintln!("fedjob-bench: capacity: {window:?} of heartbeats and capacity reports");
    let reporting = measure_window(
        tally,
        window,
        heartbeat_interval,
        scheduler,
        &observer,
        clusters,
        poll,
    )
    .await?;
    // From the CPU seconds, which keep more digits than the rounded rates at small sizes.
    let rate = |w: &Window| w.scheduler_cpu_s / w.window_s.max(f64::EPSILON);
    let extra = rate(&reporting) - rate(&quiet);
    let per_1000 = |cpu_s_per_s: f64, count: u64, window_s: f64| {
        if count == 0 {
            0.0
        } else {
            round3(cpu_s_per_s * window_s / count as f64 * 1000.0)
        }
    };
    Ok(CapacityResults {
        nodes_per_cluster: settings.nodes_per_cluster,
        heartbeat_interval_s: round3(heartbeat_interval.as_secs_f64()),
        extra_cpu_s_per_s: round3(extra),
        extra_cpu_vs_heartbeats: if rate(&quiet) > 0.0 {
            round3(extra / rate(&quiet))
        } else {
            0.0
        },
        cpu_s_per_1000_reports: per_1000(extra, reporting.reports, reporting.window_s),
        cpu_s_per_1000_heartbeats: per_1000(
            quiet.scheduler_cpu_s_per_s,
            quiet.heartbeats,
            quiet.window_s,
        ),
        rss_mb_added: round3(reporting.scheduler_rss_mb - quiet.scheduler_rss_mb),
        quiet,
        full,
        reporting,
    })
}

/// One window: what the agents sent, what the scheduler spent, and the readiness polls.
async fn measure_window(
    tally: &Tally,
    window: Duration,
    heartbeat_interval: Duration,
    scheduler: u32,
    observer: &Channel,
    clusters: usize,
    poll: Duration,
) -> anyhow::Result<Window> {
    let (stop_tx, stop) = fedjob_proto::shutdown::channel();
    let ready = tokio::spawn(monitor(observer.clone(), clusters, poll, stop));
    let bench = std::process::id();
    tally.max_rtt_us.store(0, Ordering::Relaxed);
    tally.collect_timings();
    let (c0, s0, b0, t0) = (
        tally.counts(),
        procstat::sample(scheduler)?,
        procstat::sample(bench)?,
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let (c1, s1, b1, elapsed) = (
        tally.counts(),
        procstat::sample(scheduler)?,
        procstat::sample(bench)?,
        t0.elapsed().as_secs_f64(),
    );
    let max_rtt_us = tally.max_rtt_us.load(Ordering::Relaxed);
    let timings = tally.take_timings();
    let interval_us = heartbeat_interval.as_micros() as u64;
    let on_time = timings
        .rtts
        .iter()
        .filter(|&&rtt| rtt <= interval_us)
        .count();
    let due = clusters as f64 * elapsed / heartbeat_interval.as_secs_f64();
    stop_tx.fire();
    let clusters = ready.await.unwrap_or_default();
    let list_clusters_cpu_ms = list_cost(observer, scheduler).await?;
    let reports = c1.deltas - c0.deltas;
    let bytes = c1.delta_bytes - c0.delta_bytes;
    let cpu = s1.cpu_s - s0.cpu_s;
    Ok(Window {
        window_s: round3(elapsed),
        heartbeats: c1.heartbeats - c0.heartbeats,
        max_heartbeat_rtt_ms: round3(max_rtt_us as f64 / 1000.0),
        heartbeat_rtt: Summary::of_micros(timings.rtts),
        heartbeat_send_delay: Summary::of_micros(timings.late),
        on_time_share: round3((on_time as f64 / due).min(1.0)),
        reports,
        reports_in_full: c1.deltas_in_full - c0.deltas_in_full,
        bytes_per_report: ratio(bytes, reports),
        max_bytes_per_report: tally.delta_max_bytes.load(Ordering::Relaxed),
        groups_per_report: ratio(c1.delta_groups - c0.delta_groups, reports),
        bytes_per_s: round3(bytes as f64 / elapsed),
        scheduler_cpu_s: round3(cpu),
        scheduler_cpu_s_per_s: round3(cpu / elapsed),
        list_clusters_cpu_ms,
        scheduler_rss_mb: round3(s1.rss_mb),
        bench_cpu_s_per_s: round3((b1.cpu_s - b0.cpu_s) / elapsed),
        clusters,
    })
}

/// Scheduler CPU of one `ListClusters` answer, ms: [`LIST_PROBES`] calls back to back.
async fn list_cost(observer: &Channel, scheduler: u32) -> anyhow::Result<f64> {
    let mut client = FederationClient::new(observer.clone());
    let before = procstat::sample(scheduler)?;
    for _ in 0..LIST_PROBES {
        client.list_clusters(v1::ListClustersRequest {}).await?;
    }
    let after = procstat::sample(scheduler)?;
    Ok(round3(
        (after.cpu_s - before.cpu_s) * 1000.0 / f64::from(LIST_PROBES),
    ))
}

fn ratio(total: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        round3(total as f64 / count as f64)
    }
}
