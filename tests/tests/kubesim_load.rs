//! `fedjob-kubesim` under load: thousands of Jobs in one cluster, a hundred clusters in one
//! process, and how quickly a watcher hears about a write. Each test prints what it measured
//! (run with `--nocapture`, in release mode for real figures); the bounds are generous so a
//! busy CI machine passes, while a simulator that slowed down with its size would not.
//!
//! `FEDJOB_KUBESIM_LOAD_JOBS` (default 2000) sets the number of Jobs.

mod kubesim_support;

use std::time::{Duration, Instant};

use fedjob_tests::kubesim::{Fleet, SimOptions};
use futures::StreamExt;
use kubesim_support::*;
use serde_json::{Value, json};

fn small_job(name: &str, duration: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"fedjob.io/job": name, "load": "yes"}},
        "spec": {"parallelism": 2, "completions": 2, "template": {
            "metadata": {"annotations": {"fedjob.io/sim-duration": duration}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}}}
    })
}

/// This process's resident memory in KiB (Linux; 0 elsewhere).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn complete_count(list: &Value) -> usize {
    list["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|j| has_condition(j, "Complete"))
            .count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_jobs_in_one_cluster() {
    let n: usize = std::env::var("FEDJOB_KUBESIM_LOAD_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let sim = cluster(SimOptions {
        pod_duration: Duration::from_millis(300),
        // Three events per Job; a watcher sharing two cores with 16 creates in flight may
        // lag by thousands, which this test is not about (kubesim_fidelity and kubesim_kube cover expiry).
        history: 4 * n,
        ..SimOptions::default()
    })
    .await;
    let http = Http::new(sim.url());
    let rv = http.get(JOBS).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut watch = http
        .watch(&format!(
            "{JOBS}?watch=1&resourceVersion={rv}&labelSelector=load%3Dyes"
        ))
        .await;

    // Read the watch while creating: a watcher that stops reading falls behind the server's
    // history and is (rightly) told 410 Expired.
    let watcher = tokio::spawn(async move {
        let mut completes = 0;
        while completes < n {
            let event = watch.next().await.expect("the watch stays open");
            assert_ne!(event["type"], "ERROR", "{event}");
            if event["type"] == "MODIFIED" && has_condition(&event["object"], "Complete") {
                completes += 1;
            }
        }
    });
    let rss_before = rss_kib();
    let started = Instant::now();
    let created: Vec<u16> = futures::stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            async move {
                http.post(JOBS, &small_job(&format!("load-{i}"), "300ms"))
                    .await
                    .status
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let create_time = started.elapsed();
    assert!(created.iter().all(|s| *s == 201), "every create succeeds");
    assert_eq!(sim.job_count(), n);

    // Every Job runs its two pods and completes; the watcher sees every Complete.
    watcher.await.expect("the watcher saw every Job complete");
    let all_done = started.elapsed();
    let rss_after = rss_kib();
    let list_started = Instant::now();
    let list = http.get(JOBS).await.json();
    let list_time = list_started.elapsed();
    assert_eq!(complete_count(&list), n);
    assert_eq!(sim.pod_count(), 2 * n);
    // A single create stays fast with thousands of Jobs stored.
    let single = Instant::now();
    assert_eq!(
        http.post(JOBS, &small_job("one-more", "300ms"))
            .await
            .status,
        201
    );
    let single_time = single.elapsed();
    eprintln!(
        "kubesim load: {n} Jobs created in {create_time:?} ({:.0}/s, 16 in flight); all Complete (seen by a watch) after \
         {all_done:?}; list of {n} in {list_time:?}; one more create in {single_time:?}; resident memory +{} MiB \
         (Jobs, pods, watch history and the test's own copies)",
        n as f64 / create_time.as_secs_f64(),
        rss_after.saturating_sub(rss_before) / 1024
    );
    assert!(
        create_time < Duration::from_secs(180),
        "creating {n} Jobs took {create_time:?}"
    );
    assert!(
        single_time < Duration::from_secs(2),
        "a create with {n} Jobs stored took {single_time:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clusters_in_one_process() {
    let names: Vec<String> = (1..=100).map(|i| format!("sim-{i}")).collect();
    let started = Instant::now();
    let options = SimOptions {
        pod_duration: Duration::from_millis(200),
        ..SimOptions::default()
    };
    let fleet = Fleet::start(&names, &options, 0).await.unwrap();
    let start_time = started.elapsed();
    let clients: Vec<Http> = fleet
        .clusters()
        .iter()
        .map(|c| Http::new(c.url()))
        .collect();
    for http in &clients {
        assert_eq!(
            http.post(JOBS, &small_job("everywhere", "200ms"))
                .await
                .status,
            201
        );
    }
    for http in &clients {
        wait_job(
            http,
            "everywhere",
            "the Job to complete in every cluster",
            |j| has_condition(j, "Complete"),
        )
        .await;
    }
    let done = started.elapsed();
    let stop = Instant::now();
    fleet.shutdown().await;
    eprintln!(
        "kubesim fleet: 100 clusters started in {start_time:?}; a Job completed in each after {done:?}; stopped in {:?}",
        stop.elapsed()
    );
    assert!(
        start_time < Duration::from_secs(30),
        "starting 100 clusters took {start_time:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_hear_of_writes_quickly() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let rv = http.get(JOBS).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut watch = http
        .watch(&format!(
            "{JOBS}?watch=1&resourceVersion={rv}&labelSelector=load%3Dyes"
        ))
        .await;
    let mut latencies = Vec::new();
    for i in 0..200 {
        let name = format!("lat-{i}");
        let sent = Instant::now();
        assert_eq!(http.post(JOBS, &small_job(&name, "600s")).await.status, 201);
        loop {
            let event = watch.next().await.expect("the watch stays open");
            if event["type"] == "ADDED" && event["object"]["metadata"]["name"] == name.as_str() {
                break;
            }
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "kubesim watch: create → ADDED seen by a watcher: p50 {p50:?}, p99 {p99:?} (200 creates)"
    );
    assert!(p99 < Duration::from_secs(2), "p99 {p99:?}");
    sim.shutdown().await;
}
