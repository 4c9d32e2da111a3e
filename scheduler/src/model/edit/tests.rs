use std::collections::BTreeMap;

use jiff::SignedDuration;
use k8s_openapi::api::batch::v1::Job;
use proptest::prelude::*;

use super::*;
use crate::model::fixtures::{manifest, now, ready, report};
use crate::model::job::{Observed, ObservedPhase, ShardState, StopReason};

const UID: &str = "uid-1";

/// A Job created over `clusters` through [`create`].
fn created(parallelism: i32, completions: Option<i32>, clusters: &Clusters) -> FederatedJob {
    create(
        manifest(parallelism, completions, None),
        UID.into(),
        clusters,
        now(),
    )
    .unwrap()
}

/// `update` with a change that returns `job` whatever the current Job is.
fn update_to(
    current: &FederatedJob,
    job: Job,
    clusters: &Clusters,
) -> Result<Option<FederatedJob>, Refused> {
    update(current, 7, None, |_| Ok(job), clusters, now())
}

fn with_spec(
    current: &FederatedJob,
    f: impl FnOnce(&mut k8s_openapi::api::batch::v1::JobSpec),
) -> Job {
    let mut job = current.job.clone();
    f(job.spec.as_mut().unwrap());
    job
}

fn shard_report(cluster_uid: &str, shard: &str, observed: Observed) -> ShardReport {
    ShardReport {
        job_uid: cluster_uid.into(),
        namespace: "default".into(),
        shard: shard.into(),
        epoch: 0,
        observed,
    }
}

// ------------------------------------------------------------------ defaults

#[test]
fn default_new_fills_what_the_api_server_would() {
    let mut job = manifest(1, None, None);
    job.metadata.namespace = None;
    job.metadata.resource_version = Some("12".into());
    job.metadata.generation = Some(9);
    job.spec.as_mut().unwrap().parallelism = None;
    default_new(&mut job, "u-9".into(), now());
    let meta = &job.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert_eq!(meta.uid.as_deref(), Some("u-9"));
    assert_eq!(meta.generation, Some(1));
    assert_eq!(meta.creation_timestamp.as_ref().map(|t| t.0), Some(now()));
    assert_eq!(meta.resource_version, None);
    let spec = job.spec.as_ref().unwrap();
    assert_eq!((spec.parallelism, spec.completions), (Some(1), Some(1)));
    assert_eq!(spec.backoff_limit, Some(6));
    assert_eq!(spec.completion_mode.as_deref(), Some("NonIndexed"));
    assert_eq!(spec.suspend, Some(false));
    assert_eq!(job.status, Some(Default::default()));
}

#[test]
fn default_new_leaves_a_work_queue_without_completions() {
    let mut job = manifest(4, None, None);
    default_new(&mut job, "u".into(), now());
    let spec = job.spec.as_ref().unwrap();
    assert_eq!((spec.parallelism, spec.completions), (Some(4), None));
}

#[test]
fn carry_over_keeps_identity_status_and_omitted_counts() {
    let current = created(9, Some(18), &ready(&["c1"]));
    let mut new = manifest(9, None, None);
    new.metadata.uid = None;
    new.metadata.generation = Some(40);
    new.metadata.resource_version = Some("3".into());
    new.spec.as_mut().unwrap().parallelism = None;
    new.status = None;
    carry_over(&current.job, &mut new);
    assert_eq!(new.metadata.uid.as_deref(), Some(UID));
    assert_eq!(new.metadata.generation, Some(1));
    assert_eq!(new.metadata.resource_version, None);
    assert_eq!(
        new.metadata.creation_timestamp,
        current.job.metadata.creation_timestamp
    );
    assert_eq!(new.status, current.job.status);
    let spec = new.spec.as_ref().unwrap();
    assert_eq!((spec.parallelism, spec.completions), (Some(9), Some(18)));
    assert_eq!(spec.backoff_limit, Some(6));
    assert_eq!(
        new.spec, current.job.spec,
        "an apply of the same manifest is no change"
    );
}

#[test]
fn annotation_reads_one_key() {
    let job = manifest(1, Some(1), Some("{}"));
    assert_eq!(annotation(&job, PREFERENCES_ANNOTATION), Some("{}"));
    assert_eq!(annotation(&job, "other"), None);
    assert_eq!(annotation(&manifest(1, Some(1), None), "other"), None);
}

// ------------------------------------------------------------------ create

#[test]
fn create_validates_defaults_and_plans() {
    let record = created(9, Some(18), &ready(&["c1", "c2", "c3"]));
    assert_eq!(record.uid(), UID);
    assert_eq!(record.job.metadata.generation, Some(1));
    let counts: Vec<_> = record
        .shards
        .iter()
        .map(|s| (s.cluster.as_str(), s.parallelism, s.completions))
        .collect();
    assert_eq!(
        counts,
        vec![("c1", 3, Some(6)), ("c2", 3, Some(6)), ("c3", 3, Some(6))]
    );
}

#[test]
fn create_refuses_an_invalid_job() {
    let mut job = manifest(1, Some(1), None);
    job.spec.as_mut().unwrap().parallelism = Some(-1);
    let err = create(job, UID.into(), &ready(&["c1"]), now()).unwrap_err();
    assert_eq!(err.field(), "spec.parallelism");
}

// ------------------------------------------------------------------ update

#[test]
fn a_stale_resource_version_is_a_conflict_before_the_change_runs() {
    let current = created(1, Some(1), &ready(&["c1"]));
    let err = update::<Refused>(
        &current,
        7,
        Some(6),
        |_| panic!("a refused update does not look at the request"),
        &ready(&["c1"]),
        now(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Operation cannot be fulfilled on jobs.batch \"myjob\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let ok = update(
        &current,
        7,
        Some(7),
        |j| Ok::<_, Refused>(j.clone()),
        &ready(&["c1"]),
        now(),
    );
    assert_eq!(ok, Ok(None), "the right revision and no change");
}

#[test]
fn a_job_being_deleted_refuses_updates() {
    let clusters = ready(&["c1"]);
    let current = created(1, Some(1), &clusters);
    let Next::Put(deleting) = delete(&current, true, &clusters, now()) else {
        panic!("a cascading delete waits for the cluster");
    };
    let err = update_to(&deleting, deleting.job.clone(), &clusters).unwrap_err();
    assert_eq!(
        err,
        Refused::BeingDeleted {
            name: "myjob".into()
        }
    );
    assert_eq!(err.to_string(), "jobs.batch \"myjob\" is being deleted");
}

#[test]
fn an_invalid_change_is_refused_naming_the_field() {
    let current = created(1, Some(1), &ready(&["c1"]));
    let new = with_spec(&current, |s| {
        s.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into())
    });
    let Err(Refused::Invalid(e)) = update_to(&current, new, &ready(&["c1"])) else {
        panic!("the template is immutable");
    };
    assert_eq!(e.field(), "spec.template");
}

#[test]
fn a_label_change_keeps_the_generation_and_the_plan() {
    let clusters = ready(&["c1", "c2"]);
    let current = created(4, Some(8), &clusters);
    let mut new = current.job.clone();
    new.metadata.labels = Some(BTreeMap::from([("team".into(), "a".into())]));
    let record = update_to(&current, new, &clusters).unwrap().unwrap();
    assert_eq!(record.job.metadata.generation, Some(1));
    assert!(!record.grow_members);
    assert_eq!(record.planned, current.planned);
    // Every shard carries the labels: each gets a new revision for its agent.
    assert!(record.shards.iter().all(|s| s.revision == 2));
}

#[test]
fn a_spec_change_bumps_the_generation_and_replans() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let current = created(9, Some(18), &clusters);
    let new = with_spec(&current, |s| s.parallelism = Some(12));
    let record = update_to(&current, new, &clusters).unwrap().unwrap();
    assert_eq!(record.job.metadata.generation, Some(2));
    assert!(record.shards.iter().all(|s| s.parallelism == 4));
}

#[test]
fn a_preferences_change_replans_over_the_clusters_now_eligible() {
    let mut clusters = ready(&["c1", "c2"]);
    let current = created(2, Some(4), &clusters);
    clusters.extend(ready(&["c3"]));
    let mut new = current.job.clone();
    new.metadata.annotations = Some(BTreeMap::from([(
        PREFERENCES_ANNOTATION.to_owned(),
        r#"{"clusters": {"c3": {"weight": 1}}}"#.to_owned(),
    )]));
    let record = update_to(&current, new, &clusters).unwrap().unwrap();
    assert_eq!(record.job.metadata.generation, Some(1), "no spec change");
    assert_eq!(record.planned, BTreeMap::from([("c3".into(), 2)]));
}

#[test]
fn new_preferences_divide_the_running_parallelism_afresh() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let current = created(6, Some(12), &clusters);
    let mut new = current.job.clone();
    new.metadata.annotations = Some(BTreeMap::from([(
        PREFERENCES_ANNOTATION.to_owned(),
        r#"{"clusters": {"c1": {"weight": 4}, "*": {"weight": 1}}}"#.to_owned(),
    )]));
    let record = update_to(&current, new, &clusters).unwrap().unwrap();
    // Webster over weight / (2·s + 1): c1 4, c1 4/3, c2 1, c3 1, c1 4/5, c1 4/7.
    let running: Vec<(&str, i32, Option<i32>)> = record
        .shards
        .iter()
        .map(|s| (s.cluster.as_str(), s.parallelism, s.completions))
        .collect();
    assert_eq!(
        running,
        vec![("c1", 4, Some(4)), ("c2", 1, Some(4)), ("c3", 1, Some(4))],
        "in place, on the same shards"
    );
}

#[test]
fn the_same_job_again_is_no_change() {
    let clusters = ready(&["c1", "c2"]);
    let current = created(2, Some(4), &clusters);
    assert_eq!(
        update_to(&current, current.job.clone(), &clusters),
        Ok(None)
    );
}

// ------------------------------------------------------------------ delete

#[test]
fn an_orphaning_delete_removes_the_record_at_once() {
    let clusters = ready(&["c1"]);
    assert_eq!(
        delete(&created(1, Some(1), &clusters), false, &clusters, now()),
        Next::Delete
    );
}

#[test]
fn a_cascading_delete_stops_every_shard_then_goes() {
    let clusters = ready(&["c1", "c2"]);
    let current = created(2, Some(4), &clusters);
    let Next::Put(deleting) = delete(&current, true, &clusters, now()) else {
        panic!("shards must be confirmed gone first");
    };
    assert_eq!(
        deleting
            .job
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0),
        Some(now())
    );
    assert!(deleting.shards.iter().all(|s| {
        s.state == ShardState::Stopping && s.stop_reason == Some(StopReason::Cascade)
    }));
    assert_eq!(delete(&deleting, true, &clusters, now()), Next::Unchanged);
    let gone = report(ObservedPhase::Deleted, 0, 0, 0);
    let c1 = [shard_report(UID, "myjob", gone.clone())];
    let (next, _) = apply_reports(&deleting, &[("c1", &c1)], &clusters, now());
    let Next::Put(half) = next else {
        panic!("c2 has not confirmed");
    };
    let (next, _) = apply_reports(&half, &[("c2", &c1)], &clusters, now());
    assert_eq!(next, Next::Delete);
}

#[test]
fn a_cascading_delete_of_a_job_without_shards_goes_at_once() {
    let current = created(2, Some(4), &Clusters::new());
    assert_eq!(
        delete(&current, true, &Clusters::new(), now()),
        Next::Delete
    );
}

// ------------------------------------------------------------------ reports

#[test]
fn reports_about_no_shard_of_the_job_come_back_per_batch() {
    let clusters = ready(&["c1", "c2"]);
    let current = created(2, Some(4), &clusters);
    let running = report(ObservedPhase::Running, 1, 1, 0);
    let c1 = [
        shard_report(UID, "myjob", running.clone()),
        shard_report("other-uid", "myjob", running.clone()),
    ];
    let c2 = [shard_report(UID, "myjob-7", running.clone())];
    let (next, rejected) = apply_reports(&current, &[("c1", &c1), ("c2", &c2)], &clusters, now());
    assert_eq!(rejected, vec![vec![c1[1].clone()], vec![c2[0].clone()]]);
    let Next::Put(record) = next else {
        panic!("c1's report is news");
    };
    assert_eq!(record.job.status.as_ref().unwrap().succeeded, Some(1));
    let (again, _) = apply_reports(&record, &[("c1", &c1)], &clusters, now());
    assert_eq!(again, Next::Unchanged, "the same report twice is no change");
}

#[test]
fn reports_reaching_the_total_complete_the_job() {
    let clusters = ready(&["c1", "c2"]);
    let current = created(2, Some(4), &clusters);
    let done = [shard_report(
        UID,
        "myjob",
        report(ObservedPhase::Complete, 0, 2, 0),
    )];
    let (next, _) = apply_reports(&current, &[("c1", &done), ("c2", &done)], &clusters, now());
    let Next::Put(record) = next else {
        panic!("news");
    };
    assert!(record.condition("Complete"));
    assert_eq!(record.job.status.as_ref().unwrap().succeeded, Some(4));
}

// ------------------------------------------------------------------ reconcile, ttl

#[test]
fn reconcile_writes_only_when_the_clusters_changed_something() {
    let current = created(2, Some(4), &Clusters::new());
    assert_eq!(
        reconcile(&current, &Clusters::new(), now()),
        Next::Unchanged
    );
    let Next::Put(placed) = reconcile(&current, &ready(&["c1"]), now()) else {
        panic!("room appeared");
    };
    assert_eq!(placed.unplaced, Default::default());
}

#[test]
fn ttl_counts_from_the_completion_time() {
    let clusters = ready(&["c1"]);
    let mut job = manifest(1, Some(1), None);
    job.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(10);
    let current = create(job, UID.into(), &clusters, now()).unwrap();
    assert!(
        !ttl_expired(&current, now() + SignedDuration::from_secs(3600)),
        "not finished"
    );
    let done = [shard_report(
        UID,
        "myjob",
        report(ObservedPhase::Complete, 0, 1, 0),
    )];
    let Next::Put(finished) = apply_reports(&current, &[("c1", &done)], &clusters, now()).0 else {
        panic!("news");
    };
    assert!(!ttl_expired(
        &finished,
        now() + SignedDuration::from_secs(9)
    ));
    assert!(ttl_expired(
        &finished,
        now() + SignedDuration::from_secs(10)
    ));
    let no_ttl = apply_reports(
        &created(1, Some(1), &clusters),
        &[("c1", &done)],
        &clusters,
        now(),
    )
    .0;
    let Next::Put(no_ttl) = no_ttl else {
        panic!("news")
    };
    assert!(no_ttl.is_finished());
    assert!(!ttl_expired(
        &no_ttl,
        now() + SignedDuration::from_secs(1 << 30)
    ));
}

#[test]
fn ttl_of_a_failed_job_counts_from_the_failed_condition() {
    let clusters = ready(&["c1"]);
    let mut job = manifest(1, Some(1), None);
    job.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(0);
    let current = create(job, UID.into(), &clusters, now()).unwrap();
    let failed = [shard_report(
        UID,
        "myjob",
        report(ObservedPhase::Failed, 0, 0, 7),
    )];
    let Next::Put(record) = apply_reports(&current, &[("c1", &failed)], &clusters, now()).0 else {
        panic!("news");
    };
    assert!(record.condition("Failed"));
    assert!(!ttl_expired(&record, now() - SignedDuration::from_secs(1)));
    assert!(ttl_expired(&record, now()));
}

#[test]
fn finish_deletes_only_a_terminating_job_with_every_shard_stopped() {
    let clusters = ready(&["c1"]);
    let current = created(1, Some(1), &clusters);
    assert_eq!(
        finish(current.clone()),
        Next::Put(Box::new(current.clone()))
    );
    let mut terminating = current.clone();
    terminating.deletion = Some(Deletion {
        requested_at: now(),
    });
    assert!(matches!(finish(terminating.clone()), Next::Put(_)));
    terminating
        .shards
        .iter_mut()
        .for_each(|s| s.state = ShardState::Stopped);
    assert_eq!(finish(terminating), Next::Delete);
}

// ------------------------------------------------------------------ properties

/// A change a user may make: new counts, labels, suspend, preferences.
#[derive(Debug, Clone)]
struct Change {
    parallelism: Option<i32>,
    completions: Option<i32>,
    label: Option<u8>,
    suspend: bool,
    prefers_c3: bool,
}

fn change() -> impl Strategy<Value = Change> {
    (
        proptest::option::of(0..20i32),
        proptest::option::of(0..40i32),
        proptest::option::of(0..3u8),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(parallelism, completions, label, suspend, prefers_c3)| Change {
                parallelism,
                completions,
                label,
                suspend,
                prefers_c3,
            },
        )
}

/// The Job a user would send for `change` of `current` (omitted counts are left out).
fn apply(current: &Job, change: &Change) -> Job {
    let mut job = current.clone();
    job.metadata.uid = None;
    job.metadata.labels = change
        .label
        .map(|l| BTreeMap::from([("l".to_owned(), l.to_string())]));
    job.metadata.annotations = change.prefers_c3.then(|| {
        BTreeMap::from([(
            PREFERENCES_ANNOTATION.to_owned(),
            r#"{"clusters": {"*": {"weight": 1}, "c3": {"weight": 2}}}"#.to_owned(),
        )])
    });
    let spec = job.spec.as_mut().unwrap();
    spec.parallelism = change.parallelism;
    spec.completions = change.completions;
    spec.suspend = Some(change.suspend);
    job
}

proptest! {
    /// An accepted update keeps the identity and status it may not change, bumps the
    /// generation by exactly one when (and only when) the spec changed, and sending the result
    /// again is no change.
    #[test]
    fn updates_keep_identity_and_count_generations(changes in proptest::collection::vec(change(), 1..8)) {
        let clusters = ready(&["c1", "c2", "c3"]);
        let mut current = created(6, Some(12), &clusters);
        for c in &changes {
            let new = apply(&current.job, c);
            let Some(next) = update_to(&current, new, &clusters).unwrap() else {
                continue;
            };
            prop_assert_eq!(next.uid(), UID);
            prop_assert_eq!(&next.job.metadata.creation_timestamp, &current.job.metadata.creation_timestamp);
            let bump = i64::from(next.job.spec != current.job.spec);
            prop_assert_eq!(next.job.metadata.generation, current.job.metadata.generation.map(|g| g + bump));
            let sp = next.spec();
            prop_assert_eq!(sp.parallelism, c.parallelism.or(current.spec().parallelism));
            prop_assert_eq!(sp.completions, c.completions.or(current.spec().completions));
            prop_assert_eq!(update_to(&next, next.job.clone(), &clusters), Ok(None));
            current = next;
        }
    }

    /// A stale resourceVersion is refused whatever the change; the right one is not.
    #[test]
    fn only_the_current_revision_may_be_updated(revision in 1..100u64, expected in 1..100u64, c in change()) {
        let clusters = ready(&["c1"]);
        let current = created(1, Some(1), &clusters);
        let result = update(&current, revision, Some(expected), |j| Ok::<_, Refused>(apply(j, &c)), &clusters, now());
        if revision == expected {
            let conflict = matches!(result, Err(Refused::Conflict { .. }));
            prop_assert!(!conflict);
        } else {
            prop_assert_eq!(result, Err(Refused::Conflict { name: "myjob".into() }));
        }
    }

    /// Creating plans at once: planning again changes nothing, and the planned completions plus
    /// the unplaced ones are the total.
    #[test]
    fn a_created_job_is_fully_planned(parallelism in 0..30i32, completions in 1..60i32, n in 0..5usize) {
        let names = ["c1", "c2", "c3", "c4", "c5"];
        let clusters = ready(&names[..n]);
        let record = created(parallelism, Some(completions), &clusters);
        prop_assert_eq!(reconcile(&record, &clusters, now()), Next::Unchanged);
        let planned: i32 = record.shards.iter().map(|s| s.completions.unwrap()).sum();
        prop_assert_eq!(planned + record.unplaced.completions, completions);
    }

    /// A cascading delete ends with the record deleted once every cluster confirmed, in any
    /// order and whatever the shards did before; deleting again meanwhile changes nothing.
    #[test]
    fn a_cascading_delete_ends_when_every_cluster_confirmed(
        progress in proptest::collection::vec(0..4i32, 3),
        order in Just(vec!["c1", "c2", "c3"]).prop_shuffle(),
    ) {
        let clusters = ready(&["c1", "c2", "c3"]);
        let mut record = created(9, Some(18), &clusters);
        for (cluster, done) in ["c1", "c2", "c3"].iter().zip(&progress) {
            let r = [shard_report(UID, "myjob", report(ObservedPhase::Running, 1, *done, 0))];
            if let (Next::Put(next), _) = apply_reports(&record, &[(cluster, &r)], &clusters, now()) {
                record = *next;
            }
        }
        let Next::Put(mut deleting) = delete(&record, true, &clusters, now()) else {
            return Err(TestCaseError::fail("three shards must confirm"));
        };
        prop_assert_eq!(delete(&deleting, true, &clusters, now()), Next::Unchanged);
        let gone = [shard_report(UID, "myjob", report(ObservedPhase::Deleted, 0, 0, 0))];
        for (i, cluster) in order.iter().enumerate() {
            match apply_reports(&deleting, &[(cluster, &gone)], &clusters, now()).0 {
                Next::Put(next) if i < 2 => deleting = next,
                Next::Delete if i == 2 => {}
                other => return Err(TestCaseError::fail(format!("confirmation {i}: {other:?}"))),
            }
        }
    }

    /// The reports sent back are exactly those about another Job or a shard not planned in
    /// the reporting cluster.
    #[test]
    fn rejected_reports_are_those_about_no_planned_shard(
        reports in proptest::collection::vec((0..3usize, any::<bool>(), 0..3usize), 0..12),
    ) {
        let clusters = ready(&["c1", "c2"]);
        let current = created(2, Some(4), &clusters);
        let names = ["c1", "c2", "c9"];
        let batches: Vec<(&str, Vec<ShardReport>)> = names.iter().map(|c| {
            let rs = reports.iter().filter(|(i, _, _)| names[*i] == *c).map(|(_, ours, shard)| {
                let uid = if *ours { UID } else { "other" };
                shard_report(uid, ["myjob", "myjob-2", "x"][*shard], report(ObservedPhase::Running, 1, 0, 0))
            }).collect();
            (*c, rs)
        }).collect();
        let borrowed: Vec<(&str, &[ShardReport])> = batches.iter().map(|(c, r)| (*c, r.as_slice())).collect();
        let (_, rejected) = apply_reports(&current, &borrowed, &clusters, now());
        for ((cluster, sent), back) in batches.iter().zip(&rejected) {
            let expected: Vec<ShardReport> = sent.iter()
                .filter(|r| r.job_uid != UID || current.shards_of(cluster).iter().all(|s| s.name != r.shard))
                .cloned()
                .collect();
            prop_assert_eq!(back, &expected);
        }
    }

    /// Once expired, a TTL stays expired.
    #[test]
    fn ttl_expiry_is_monotonic_in_time(ttl in 0..100i32, at in -200..200i64, later in 0..200i64) {
        let clusters = ready(&["c1"]);
        let mut job = manifest(1, Some(1), None);
        job.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(ttl);
        let current = create(job, UID.into(), &clusters, now()).unwrap();
        let done = [shard_report(UID, "myjob", report(ObservedPhase::Complete, 0, 1, 0))];
        let Next::Put(finished) = apply_reports(&current, &[("c1", &done)], &clusters, now()).0 else {
            return Err(TestCaseError::fail("news"));
        };
        let t = now() + SignedDuration::from_secs(at);
        prop_assert_eq!(ttl_expired(&finished, t), at >= i64::from(ttl));
        if ttl_expired(&finished, t) {
            prop_assert!(ttl_expired(&finished, t + SignedDuration::from_secs(later)));
        }
    }
}
