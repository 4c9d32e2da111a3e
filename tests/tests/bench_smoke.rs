//! CI smoke runs of the built `fedjob-bench` binary at tiny sizes: it runs to the end and its
//! JSON carries every figure and the parameters. No timing is asserted: CI machines are shared.

use std::path::Path;
use std::time::Duration;

use fedjob_tests::harness::bin;
use serde_json::Value;

/// One bench at a time: each starts its own scheduler (and, in full mode, clusters and syncers).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `fedjob-bench ARGS…` (at most 5 minutes); returns its JSON.
async fn bench(args: &[&str]) -> Value {
    let run = tokio::process::Command::new(bin("fedjob-bench").unwrap())
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("fedjob-bench finishes within 5 minutes")
        .expect("fedjob-bench starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fedjob-bench {args:?} failed ({}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The value at `path` (`a.b.c`), failing with the whole report when it is missing.
fn at<'a>(report: &'a Value, path: &str) -> &'a Value {
    let value = path
        .split('.')
        .try_fold(report, |v, key| v.get(key))
        .unwrap_or_else(|| panic!("no {path} in {report:#}"));
    assert!(!value.is_null(), "{path} is null in {report:#}");
    value
}

/// A number at `path`.
fn num(report: &Value, path: &str) -> f64 {
    at(report, path)
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {report:#}"))
}

/// The value at `path`, which may be null.
fn at_or_null<'a>(report: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .try_fold(report, |v, key| v.get(key))
        .unwrap_or_else(|| panic!("no {path} in {report:#}"))
}

/// Every poll of the run found all `n` clusters Ready and connected, and no poll failed.
fn all_ready(r: &Value, n: f64) {
    assert!(num(r, "clusters.polls") >= 1.0);
    assert_eq!(num(r, "clusters.clusters"), n);
    assert_eq!(num(r, "clusters.poll_errors"), 0.0, "{r:#}");
    assert_eq!(
        (
            num(r, "clusters.min_ready"),
            num(r, "clusters.min_connected")
        ),
        (n, n),
        "every cluster Ready and connected throughout: {r:#}"
    );
    assert_eq!(at(r, "clusters.all_ready"), &Value::Bool(true));
    assert_eq!(at(r, "clusters.not_ready_seen"), &serde_json::json!([]));
}

/// The latency summary at `path` has every figure, in order.
fn summary(report: &Value, path: &str) -> f64 {
    let (p50, p99, max) = (
        num(report, &format!("{path}.p50_ms")),
        num(report, &format!("{path}.p99_ms")),
        num(report, &format!("{path}.max_ms")),
    );
    num(report, &format!("{path}.mean_ms"));
    assert!(
        0.0 <= p50 && p50 <= p99 && p99 <= max,
        "{path}: {p50} {p99} {max}"
    );
    num(report, &format!("{path}.count"))
}

fn machine(report: &Value) {
    assert!(num(report, "machine.cpus") >= 1.0);
    assert_eq!(
        at(report, "machine.loadavg_before")
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        at(report, "machine.loadavg_after")
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        at(report, "machine.release_build"),
        &Value::Bool(!cfg!(debug_assertions)),
        "the bench is built as this test is"
    );
}

fn scheduler_usage(r: &Value, path: &str) {
    assert!(num(r, &format!("{path}.peak_rss_mb")) > 0.0);
    for figure in [
        "cpu_s_total",
        "cpu_s_load",
        "cpu_s_per_1000_jobs",
        "rss_mb_per_1000_jobs",
        "before.rss_mb",
        "after.peak_rss_mb",
    ] {
        num(r, &format!("{path}.{figure}"));
    }
}

/// Agent-mode results for `clusters` × `jobs` with `sample` probed Jobs.
fn agent_results(r: &Value, clusters: usize, jobs: usize, sample: usize) {
    let (n, m) = (clusters as f64, jobs as f64);
    assert_eq!(num(r, "creates.sent"), m);
    assert_eq!(
        num(r, "creates.acknowledged"),
        m,
        "every create acknowledged"
    );
    assert_eq!(num(r, "creates.errors"), 0.0);
    assert!(num(r, "creates.per_second") > 0.0);
    num(r, "creates.elapsed_s");
    assert_eq!(summary(r, "creates.latency"), m);
    assert_eq!(
        summary(r, "propagation"),
        m,
        "every Job reached every cluster"
    );
    assert_eq!(num(r, "propagation.incomplete"), 0.0);
    assert_eq!(summary(r, "propagation.from_send"), m);
    assert!(num(r, "propagation.before_ack") <= m);
    assert_eq!(summary(r, "status"), sample as f64 * n, "every probe shown");
    assert_eq!(num(r, "status.missing"), 0.0);
    assert_eq!(num(r, "status.watches.opened"), sample as f64);
    assert_eq!(num(r, "status.watches.errors"), 0.0);
    scheduler_usage(r, "scheduler");
    assert!(num(r, "store_file_mb") > 0.0);
    assert!(num(r, "scheduler_metrics.store_commits") > 0.0);
    num(r, "scheduler_metrics.store_commit_mean_ms");
    num(r, "scheduler_metrics.store_batch_mean");
    assert_eq!(num(r, "scheduler_metrics.assignments_sent"), n * m);
    assert_eq!(
        at_or_null(r, "creates.first_error"),
        &Value::Null,
        "no create failed"
    );
    assert_eq!(at_or_null(r, "status.watches.first_error"), &Value::Null);
    all_ready(r, n);
    num(r, "clusters.max_heartbeat_age_ms");
    assert_eq!(num(r, "agents.runs"), n * m, "one RUN per Job and cluster");
    assert_eq!(num(r, "session_errors.count"), 0.0, "{r:#}");
    assert!(num(r, "agents.heartbeats") >= n, "every agent heartbeats");
    num(r, "agents.max_heartbeat_rtt_us");
    assert!(num(r, "bench_process.peak_rss_mb") > 0.0);
    for phase in ["setup_s", "load_s", "settle_s"] {
        num(r, &format!("phases.{phase}"));
    }
}

#[tokio::test]
async fn agent_mode_reports_every_figure_and_the_parameters() {
    let _one = SERIAL.lock().await;
    let report = bench(&[
        "--clusters",
        "3",
        "--jobs",
        "30",
        "--clients",
        "2",
        "--status-sample",
        "5",
        "--cluster-grace",
        "3s",
    ])
    .await;
    assert_eq!(at(&report, "mode"), "agent");
    for (param, value) in [
        ("clusters", 3.0),
        ("jobs", 30.0),
        ("clients", 2.0),
        ("status_sample", 5.0),
        ("parallelism", 3.0),
        ("cluster_grace_s", 3.0),
    ] {
        assert_eq!(num(&report, &format!("params.{param}")), value, "{param}");
    }
    machine(&report);
    agent_results(at(&report, "results"), 3, 30, 5);
    assert_eq!(
        at_or_null(&report, "results.capacity"),
        &Value::Null,
        "no capacity reports unless asked for"
    );
}

#[tokio::test]
async fn agent_mode_measures_what_capacity_reports_cost() {
    let _one = SERIAL.lock().await;
    let report = bench(&[
        "--clusters",
        "3",
        "--jobs",
        "10",
        "--clients",
        "2",
        "--status-sample",
        "2",
        "--nodes-per-cluster",
        "200",
        "--capacity-interval",
        "200ms",
        "--capacity-window",
        "3s",
    ])
    .await;
    for (param, value) in [
        ("nodes_per_cluster", 200.0),
        ("change_interval_s", 0.2),
        ("churn", 0.05),
        ("window_s", 3.0),
    ] {
        assert_eq!(num(&report, &format!("params.capacity.{param}")), value);
    }
    let r = at(&report, "results");
    agent_results(r, 3, 10, 2);
    let c = at(r, "capacity");
    assert_eq!(num(c, "nodes_per_cluster"), 200.0);
    assert_eq!(
        num(c, "heartbeat_interval_s"),
        1.0,
        "a third of the 3 s grace"
    );
    // Heartbeats alone first: no capacity report at all.
    assert!(num(c, "quiet.heartbeats") >= 3.0, "{c:#}");
    assert_eq!(num(c, "quiet.reports"), 0.0);
    assert_eq!(num(c, "quiet.bytes_per_report"), 0.0);
    // Then one full report per cluster, one group per distinct node, at most 200.
    assert_eq!(num(c, "full.reports"), 3.0);
    let groups = num(c, "full.groups_per_report");
    assert!(0.0 < groups && groups <= 200.0, "{groups}");
    assert!(num(c, "full.bytes_per_report") > 0.0);
    assert!(num(c, "full.max_bytes_per_report") >= num(c, "full.bytes_per_report"));
    num(c, "full.scheduler_cpu_s");
    num(c, "full.elapsed_s");
    // Then changes, each smaller than a full report.
    assert!(num(c, "reporting.heartbeats") >= 3.0, "{c:#}");
    assert!(num(c, "reporting.reports") >= 1.0, "{c:#}");
    let delta = num(c, "reporting.bytes_per_report");
    assert!(
        0.0 < delta && delta < num(c, "full.bytes_per_report"),
        "{c:#}"
    );
    assert!(num(c, "reporting.groups_per_report") >= 1.0);
    for window in ["quiet", "reporting"] {
        let w = at(c, window);
        all_ready(w, 3.0);
        assert!(num(w, "heartbeat_rtt.count") >= 3.0, "{window}: {w:#}");
        summary(w, "heartbeat_rtt");
        assert!(summary(w, "heartbeat_send_delay") >= 3.0, "{window}: {w:#}");
        let on_time = num(w, "on_time_share");
        assert!(0.0 < on_time && on_time <= 1.0, "{window}: {w:#}");
        for figure in [
            "window_s",
            "max_heartbeat_rtt_ms",
            "bytes_per_s",
            "scheduler_cpu_s",
            "scheduler_cpu_s_per_s",
            "list_clusters_cpu_ms",
            "scheduler_rss_mb",
            "bench_cpu_s_per_s",
        ] {
            assert!(num(w, figure) >= 0.0, "{window}.{figure}");
        }
    }
    for figure in [
        "extra_cpu_s_per_s",
        "cpu_s_per_1000_reports",
        "cpu_s_per_1000_heartbeats",
        "rss_mb_added",
    ] {
        num(c, figure);
    }
}

#[tokio::test]
async fn agent_mode_on_etcd_reports_the_etcd_member_too() {
    let _one = SERIAL.lock().await;
    let report = bench(&[
        "--store",
        "etcd",
        "--clusters",
        "3",
        "--jobs",
        "30",
        "--clients",
        "2",
        "--status-sample",
        "5",
    ])
    .await;
    assert_eq!(at(&report, "params.store"), "etcd");
    let r = at(&report, "results");
    assert_eq!(num(r, "creates.acknowledged"), 30.0);
    assert_eq!(
        summary(r, "propagation"),
        30.0,
        "every Job reached every cluster"
    );
    assert_eq!(num(r, "status.missing"), 0.0);
    scheduler_usage(r, "scheduler");
    scheduler_usage(r, "etcd");
    assert!(
        num(r, "store_file_mb") > 0.0,
        "etcd's data directory is measured"
    );
    assert_eq!(num(r, "scheduler_metrics.assignments_sent"), 90.0);
    all_ready(r, 3.0);
}

#[tokio::test]
async fn a_sweep_reports_each_size_and_the_growth_and_plots_it() {
    let _one = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("sweep.png");
    let report = bench(&[
        "--clusters",
        "2",
        "--jobs",
        "10",
        "--clients",
        "2",
        "--status-sample",
        "2",
        "--sweep-clusters",
        "1,2",
        "--sweep-jobs",
        "10,20",
        "--plot",
        png.to_str().unwrap(),
    ])
    .await;
    assert_eq!(at(&report, "mode"), "sweep");
    assert_eq!(num(&report, "params.base.jobs"), 10.0);
    machine(&report);
    let runs = at(&report, "results.runs").as_array().unwrap();
    let sizes: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| (num(r, "clusters"), num(r, "jobs")))
        .collect();
    assert_eq!(sizes, vec![(1.0, 10.0), (2.0, 10.0), (2.0, 20.0)]);
    for run in runs {
        let (n, m) = (num(run, "clusters") as usize, num(run, "jobs") as usize);
        agent_results(at(run, "results"), n, m, 2);
    }
    for (axis, xs) in [("by_clusters", vec![1, 2]), ("by_jobs", vec![10, 20])] {
        let growth = at(&report, &format!("results.{axis}"));
        assert_eq!(at(growth, "x"), &serde_json::json!(xs));
        for series in [
            "create_per_s",
            "propagation_p50_ms",
            "propagation_p99_ms",
            "propagation_from_send_p99_ms",
            "status_p99_ms",
            "peak_rss_mb",
            "cpu_s_per_1000_jobs",
            "rss_mb_per_1000_jobs",
            "min_ready",
        ] {
            let values = at(growth, series).as_array().unwrap();
            assert_eq!(values.len(), xs.len(), "{axis}.{series}");
            assert!(
                values.iter().all(Value::is_number),
                "{axis}.{series}: {values:?}"
            );
        }
    }
    fedjob_tests::bench::plot::check_png(Path::new(&png)).unwrap();
}

#[tokio::test]
async fn full_mode_follows_jobs_through_syncers_and_kubesim_clusters() {
    let _one = SERIAL.lock().await;
    let report = bench(&[
        "--mode",
        "full",
        "--clusters",
        "2",
        "--jobs",
        "10",
        "--clients",
        "2",
        "--status-sample",
        "3",
        "--pod-duration",
        "200ms",
    ])
    .await;
    assert_eq!(at(&report, "mode"), "full");
    assert_eq!(at(&report, "params.pod_duration"), "200ms");
    assert_eq!(num(&report, "params.clusters"), 2.0);
    machine(&report);
    let r = at(&report, "results");
    assert_eq!(num(r, "creates.acknowledged"), 10.0);
    assert_eq!(
        summary(r, "create_to_shard"),
        10.0,
        "every shard in its cluster"
    );
    assert_eq!(num(r, "create_to_shard.incomplete"), 0.0);
    assert_eq!(summary(r, "create_to_shard.from_send"), 10.0);
    assert_eq!(summary(r, "shard_complete_to_job_complete"), 3.0);
    assert_eq!(num(r, "shard_complete_to_job_complete.missing"), 0.0);
    scheduler_usage(r, "scheduler");
    assert_eq!(num(r, "syncers.count"), 2.0);
    assert!(num(r, "syncers.max_peak_rss_mb") > 0.0);
    assert!(num(r, "kubesim.peak_rss_mb") > 0.0);
    all_ready(r, 2.0);
}
