use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;
use crate::model::clusters::ClusterView;
use crate::model::edit::{self, Next};
use crate::model::fixtures::{manifest, now, ready, report};
use crate::model::job::{Detail, ObservedPhase, StopReason};

const UID: &str = "uid-1";

fn created(parallelism: i32, completions: Option<i32>, clusters: &Clusters) -> FederatedJob {
    edit::create(
        manifest(parallelism, completions, None),
        UID.into(),
        clusters,
        now(),
    )
    .unwrap()
}

fn shard_report(shard: &str, observed: Observed) -> ShardReport {
    ShardReport {
        job_uid: UID.into(),
        namespace: "default".into(),
        shard: shard.into(),
        epoch: 0,
        observed,
    }
}

/// What applying the reports and planning the Job again from scratch writes: every report
/// observed in order, then the whole plan and status computed again (what every report did
/// before reports were applied incrementally).
fn from_scratch(
    current: &FederatedJob,
    batches: &[(&str, &[ShardReport])],
    clusters: &Clusters,
    now: Timestamp,
) -> (Option<FederatedJob>, Vec<Vec<ShardReport>>) {
    let mut record = current.clone();
    let mut rejected = Vec::new();
    for (cluster, reports) in batches {
        let mut out = Vec::new();
        for r in *reports {
            if r.job_uid != record.uid()
                || !planner::observe(&mut record, cluster, &r.shard, r.epoch, r.observed.clone())
            {
                out.push(r.clone());
            }
        }
        rejected.push(out);
    }
    planner::reconcile(&mut record, clusters, now);
    ((record != *current).then_some(record), rejected)
}

// ------------------------------------------------------------------ examples

/// Clusters where `gone` is no longer registered: planning any Job with a shard there again
/// stops that shard (Excluded), so whether a report planned the Job again shows.
fn without(clusters: &Clusters, gone: &str) -> Clusters {
    let mut c = clusters.clone();
    c.remove(gone);
    c
}

#[test]
fn a_report_of_counters_alone_adjusts_the_status_without_planning_again() {
    let clusters = ready(&["c1", "c2"]);
    let current = created(2, Some(4), &clusters);
    let running = [shard_report(
        "myjob",
        report(ObservedPhase::Running, 1, 0, 2),
    )];
    let applied = apply(
        &current,
        &[("c1", &running)],
        &without(&clusters, "c2"),
        now(),
    );

    assert!(!applied.replanned);
    let record = applied.record.expect("the counts changed");
    let status = record.job.status.as_ref().unwrap();
    assert_eq!(
        (status.active, status.succeeded, status.failed),
        (Some(1), None, Some(2))
    );
    assert_eq!(status.start_time.as_ref().map(|t| t.0), Some(now()));
    // Not planned again: c2's shard would be stopped as its cluster is gone.
    let c2 = &record.shards_of("c2")[0];
    assert_eq!((c2.state, c2.revision), (ShardState::Active, 1));
    assert_eq!(record.shards_of("c1")[0].revision, 1);
}

#[test]
fn a_report_that_moves_succeeded_plans_the_job_again() {
    let clusters = ready(&["c1", "c2"]);
    let current = created(2, Some(4), &clusters);
    let progress = [shard_report(
        "myjob",
        report(ObservedPhase::Running, 1, 1, 0),
    )];
    let applied = apply(
        &current,
        &[("c1", &progress)],
        &without(&clusters, "c2"),
        now(),
    );

    assert!(applied.replanned);
    let record = applied.record.unwrap();
    let c2 = &record.shards_of("c2")[0];
    assert_eq!(
        (c2.state, c2.stop_reason),
        (ShardState::Stopping, Some(StopReason::Excluded))
    );
    assert_eq!(record.job.status.as_ref().unwrap().succeeded, Some(1));
}

#[test]
fn a_shard_that_finishes_plans_the_job_again() {
    let clusters = ready(&["c1", "c2"]);
    let current = created(2, Some(2), &clusters);
    let done = [shard_report(
        "myjob",
        report(ObservedPhase::Complete, 0, 1, 0),
    )];
    let applied = apply(&current, &[("c1", &done), ("c2", &done)], &clusters, now());

    assert!(applied.replanned);
    assert!(applied.record.unwrap().condition("Complete"));
}

#[test]
fn the_same_report_again_changes_nothing() {
    let clusters = ready(&["c1", "c2"]);
    let current = created(2, Some(4), &clusters);
    let running = [shard_report(
        "myjob",
        report(ObservedPhase::Running, 1, 0, 0),
    )];
    let first = apply(&current, &[("c1", &running)], &clusters, now())
        .record
        .unwrap();
    let again = apply(&first, &[("c1", &running)], &clusters, now());
    assert_eq!((again.record, again.replanned), (None, false));
}

#[test]
fn reports_about_no_shard_come_back_and_change_nothing() {
    let clusters = ready(&["c1", "c2"]);
    let current = created(2, Some(4), &clusters);
    let mut other = shard_report("myjob", report(ObservedPhase::Running, 1, 0, 0));
    other.job_uid = "another".into();
    let unknown = shard_report("myjob-7", report(ObservedPhase::Running, 1, 0, 0));
    let batch = [other.clone(), unknown.clone()];
    let applied = apply(&current, &[("c1", &batch)], &clusters, now());
    assert_eq!(applied.rejected, vec![vec![other, unknown]]);
    assert_eq!((applied.record, applied.replanned), (None, false));
}

#[test]
fn a_total_at_the_edge_of_i32_is_counted_again_from_scratch() {
    let clusters = ready(&["c1", "c2"]);
    let current = created(2, Some(4), &clusters);
    let huge = [shard_report(
        "myjob",
        report(ObservedPhase::Running, 1, 0, i32::MAX),
    )];
    let both = apply(&current, &[("c1", &huge), ("c2", &huge)], &clusters, now())
        .record
        .unwrap();
    assert_eq!(both.job.status.as_ref().unwrap().failed, Some(i32::MAX));
    let fewer = [shard_report(
        "myjob",
        report(ObservedPhase::Running, 1, 0, 5),
    )];
    let record = apply(&both, &[("c2", &fewer)], &clusters, now())
        .record
        .unwrap();
    assert_eq!(record.job.status.as_ref().unwrap().failed, Some(i32::MAX));
    let record = apply(&record, &[("c1", &fewer)], &clusters, now())
        .record
        .unwrap();
    assert_eq!(record.job.status.as_ref().unwrap().failed, Some(10));
}

// ------------------------------------------------------------------ properties

/// One report as the property draws it: which shard (an index into the Job's shards when it
/// is applied), whether it names the shard's own cluster, and what it says.
#[derive(Debug, Clone)]
struct Drawn {
    shard: usize,
    own_cluster: bool,
    stale_epoch: bool,
    phase: ObservedPhase,
    active: i32,
    succeeded: i32,
    failed: i32,
    start: Option<i64>,
    message: bool,
}

fn phase() -> impl Strategy<Value = ObservedPhase> {
    prop_oneof![
        6 => Just(ObservedPhase::Running),
        2 => Just(ObservedPhase::Complete),
        1 => Just(ObservedPhase::Failed),
        1 => Just(ObservedPhase::Suspended),
        1 => Just(ObservedPhase::Deleted),
        1 => Just(ObservedPhase::Missing),
        1 => Just(ObservedPhase::Conflict),
        1 => Just(ObservedPhase::Error),
    ]
}

fn drawn() -> impl Strategy<Value = Drawn> {
    (
        (
            0..16usize,
            prop::bool::weighted(0.9),
            prop::bool::weighted(0.1),
        ),
        phase(),
        (0..4i32, 0..7i32, 0..3i32),
        proptest::option::of(0..100i64),
        any::<bool>(),
    )
        .prop_map(
            |(
                (shard, own_cluster, stale_epoch),
                phase,
                (active, succeeded, failed),
                start,
                message,
            )| {
                Drawn {
                    shard,
                    own_cluster,
                    stale_epoch,
                    phase,
                    active,
                    succeeded,
                    failed,
                    start,
                    message,
                }
            },
        )
}

/// The report `d` makes about `fj`'s shards, with the cluster it comes from.
fn materialize(fj: &FederatedJob, d: &Drawn) -> (String, ShardReport) {
    let s = &fj.shards[d.shard % fj.shards.len()];
    let cluster = if d.own_cluster {
        s.cluster.to_string()
    } else {
        "elsewhere".to_owned()
    };
    let observed = Observed {
        phase: d.phase,
        active: d.active,
        succeeded: d.succeeded,
        failed: d.failed,
        start_time: d.start.map(|m| now() + SignedDuration::from_mins(m)).into(),
        completion_time: (d.phase == ObservedPhase::Complete).then(now).into(),
        local_uid: "local".into(),
        detail: if d.message {
            Detail::new("Why", "because")
        } else {
            Detail::default()
        },
        revision: s.revision,
    };
    let report = ShardReport {
        job_uid: UID.into(),
        namespace: "default".into(),
        shard: s.name.clone(),
        epoch: if d.stale_epoch {
            s.epoch.saturating_sub(1)
        } else {
            s.epoch
        },
        observed,
    };
    (cluster, report)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Applying reports incrementally writes exactly what observing them and planning the Job
    /// again from scratch writes, step after step, for any sequence of reports (a cascading
    /// delete part-way included); and the aggregated status is the one recomputed from every
    /// shard.
    #[test]
    fn applying_reports_incrementally_is_the_same_as_recomputing_from_scratch(
        n in 1..4usize,
        cluster_epoch in 0..3u64,
        parallelism in 0..6i32,
        completions in proptest::option::of(1..12i32),
        steps in proptest::collection::vec(proptest::collection::vec(drawn(), 1..5), 1..30),
        delete_at in proptest::option::of(0..30usize),
    ) {
        let names: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
        let clusters: Clusters = names
            .iter()
            .map(|c| (c.clone(), ClusterView { ready: true, epoch: cluster_epoch, ..Default::default() }))
            .collect();
        let mut record = created(parallelism, completions, &clusters);
        for (step, drawn) in steps.iter().enumerate() {
            let at = now() + SignedDuration::from_secs(step as i64);
            if delete_at == Some(step) {
                match edit::delete(&record, true, &clusters, at) {
                    Next::Put(r) => record = *r,
                    _ => return Ok(()),
                }
            }
            if record.shards.is_empty() {
                return Ok(());
            }
            let made: Vec<(String, ShardReport)> = drawn.iter().map(|d| materialize(&record, d)).collect();
            let batches: Vec<(&str, &[ShardReport])> = made
                .iter()
                .map(|(c, r)| (c.as_str(), std::slice::from_ref(r)))
                .collect();
            let applied = apply(&record, &batches, &clusters, at);
            let (expected, rejected) = from_scratch(&record, &batches, &clusters, at);
            prop_assert_eq!(&applied.rejected, &rejected);
            prop_assert_eq!(&applied.record, &expected, "step {}", step);
            let Some(next) = applied.record else { continue };
            let mut recomputed = next.clone();
            status::refresh(&mut recomputed, at);
            prop_assert_eq!(&recomputed.job.status, &next.job.status);
            if let Next::Delete = edit::finish(next.clone()) {
                return Ok(());
            }
            record = next;
        }
    }
}
