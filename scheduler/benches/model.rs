//! Micro-benchmarks of the scheduler's pure model: the split of a Job over clusters
//! (`model::split::plan`) and the status aggregation of a Job with 1,000 shards
//! (`model::status::refresh`, `model::status::placements`, and the whole
//! `model::planner::reconcile` a status report triggers).
//!
//! Also the decoding of a submitted Job, with and without the strict check for unknown fields.
//!
//! Run: `cargo bench -p fedjob-scheduler --bench model`. Targets (issue 6): split for 1,000
//! clusters < 50 µs; aggregation of 1,000 shards < 50 µs.

use std::hint::black_box;

use divan::Bencher;
use fedjob_scheduler::model::clusters::{ClusterView, Clusters};
use fedjob_scheduler::model::job::{FederatedJob, Observed, ObservedPhase};
use fedjob_scheduler::model::manifest::{self, FieldValidation};
use fedjob_scheduler::model::planner;
use fedjob_scheduler::model::preferences::Preferences;
use fedjob_scheduler::model::split::plan;
use fedjob_scheduler::model::status;
use jiff::Timestamp;
use serde_json::json;

fn main() {
    divan::main();
}

const SIZES: [usize; 3] = [10, 100, 1000];

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c-{i:04}")).collect()
}

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().expect("a timestamp")
}

/// The split the load harness asks for: parallelism = completions = N, one unit per cluster,
/// no preferences.
#[divan::bench(args = SIZES)]
fn split_one_per_cluster(bencher: Bencher, clusters: usize) {
    let names = names(clusters);
    let prefs = Preferences::default();
    let n = clusters as i32;
    bencher.bench(|| {
        plan(
            black_box("default/bench-000001"),
            n,
            Some(n),
            &names,
            &prefs,
        )
    });
}

/// A larger split with preferences: parallelism 10,000 and completions 20,000; every tenth
/// cluster has its own weight, minimum and maximum, the rest share the wildcard.
#[divan::bench(args = SIZES)]
fn split_weighted(bencher: Bencher, clusters: usize) {
    let names = names(clusters);
    let mut entries = serde_json::Map::new();
    entries.insert("*".into(), json!({"weight": 1}));
    for name in names.iter().step_by(10) {
        entries.insert(
            name.clone(),
            json!({"weight": 3, "minReplicas": 2, "maxReplicas": 400}),
        );
    }
    let prefs =
        Preferences::parse(&json!({ "clusters": entries }).to_string()).expect("valid preferences");
    bencher.bench(|| {
        plan(
            black_box("default/bench-000001"),
            10_000,
            Some(20_000),
            &names,
            &prefs,
        )
    });
}

/// A Job with one shard in each of `n` Ready clusters, every shard reported Running with one
/// pod active (what the load harness's agents report).
fn running_job(n: usize) -> (FederatedJob, Clusters) {
    let clusters: Clusters = names(n)
        .into_iter()
        .map(|name| {
            let view = ClusterView {
                ready: true,
                ..Default::default()
            };
            (name, view)
        })
        .collect();
    let job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "bench-000001", "namespace": "default", "uid": "uid-1"},
        "spec": {"parallelism": n, "completions": n,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "w", "image": "busybox"}]}}}
    }))
    .expect("a Job");
    let mut fj = FederatedJob::new(job);
    planner::reconcile(&mut fj, &clusters, now());
    let shards: Vec<(String, String, u64, u64)> = fj
        .shards
        .iter()
        .map(|s| (s.cluster.to_string(), s.name.clone(), s.epoch, s.revision))
        .collect();
    assert_eq!(shards.len(), n, "one shard per cluster");
    for (cluster, name, epoch, revision) in shards {
        let report = Observed {
            phase: ObservedPhase::Running,
            active: 1,
            start_time: now().into(),
            local_uid: format!("local-{cluster}").as_str().into(),
            revision,
            ..Default::default()
        };
        assert!(planner::observe(&mut fj, &cluster, &name, epoch, report));
    }
    planner::reconcile(&mut fj, &clusters, now());
    (fj, clusters)
}

/// Aggregation of a Job with 1,000 shards.
mod aggregate_1000_shards {
    use super::*;

    /// The aggregated `JobStatus`: sums, start time, conditions.
    #[divan::bench]
    fn refresh(bencher: Bencher) {
        let (fj, _) = running_job(1000);
        bencher
            .with_inputs(|| fj.clone())
            .bench_local_refs(|fj| status::refresh(fj, now()));
    }

    /// The per-cluster breakdown the API returns with every Job.
    #[divan::bench]
    fn placements(bencher: Bencher) {
        let (fj, clusters) = running_job(1000);
        bencher.bench(|| status::placements(black_box(&fj), &clusters));
    }

    /// Both: what one read of a Job's status costs.
    #[divan::bench]
    fn refresh_and_placements(bencher: Bencher) {
        let (fj, clusters) = running_job(1000);
        bencher.with_inputs(|| fj.clone()).bench_local_refs(|fj| {
            status::refresh(fj, now());
            status::placements(fj, &clusters)
        });
    }

    /// What one status report costs the scheduler besides the store: record the report, then
    /// the whole planner pass (terminal conditions, shard plan, revisions, status).
    #[divan::bench]
    fn observe_and_reconcile(bencher: Bencher) {
        let (fj, clusters) = running_job(1000);
        let (cluster, name, epoch, revision) = {
            let s = &fj.shards[500];
            (s.cluster, s.name.clone(), s.epoch, s.revision)
        };
        bencher.with_inputs(|| fj.clone()).bench_local_refs(|fj| {
            let report = Observed {
                phase: ObservedPhase::Running,
                active: 1,
                succeeded: 0,
                start_time: now().into(),
                local_uid: "local-x".into(),
                revision,
                ..Default::default()
            };
            planner::observe(fj, &cluster, &name, epoch, report);
            planner::reconcile(fj, &clusters, now());
        });
    }

    /// Cloning the record, which the control plane does before every change: for scale.
    #[divan::bench]
    fn clone_record(bencher: Bencher) {
        let (fj, _) = running_job(1000);
        bencher.bench(|| black_box(&fj).clone());
    }
}

/// A submitted Job as `fedctl create` sends it (the seed example's size), decoded into the typed
/// Job: `Strict` adds writing it back as JSON and comparing the two trees.
#[divan::bench(args = [FieldValidation::Ignore, FieldValidation::Strict])]
fn decode_submitted_job(bencher: Bencher, fields: FieldValidation) {
    let submitted = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "myjob", "labels": {"app": "demo", "team": "batch"},
            "annotations": {"federation.kubernetes.io/job-preferences": "{\"rebalance\": true}"}},
        "spec": {"parallelism": 9, "completions": 18, "backoffLimit": 4,
            "template": {"metadata": {"labels": {"app": "demo"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "worker",
                    "image": "busybox:1.36", "command": ["sh", "-c", "echo working; sleep 5"],
                    "env": [{"name": "MODE", "value": "batch"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}
    });
    bencher.bench(|| manifest::decode_job(black_box(submitted.clone()), "default", fields));
}
