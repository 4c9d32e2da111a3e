use super::*;
use crate::model::fixtures::{job, now, ready, report};
use crate::model::job::{
    ClusterName, Detail, FederatedJob, ObservedPhase, PackedTime, ShardState, StopReason,
};
use crate::model::render;
use fedjob_proto::v1::AssignmentAction;
use proptest::prelude::*;
use serde_json::json;

/// Active shards as (cluster, name, parallelism, completions), in cluster order.
fn counts(fj: &FederatedJob) -> Vec<(&str, &str, i32, Option<i32>)> {
    let mut active: Vec<_> = fj
        .shards
        .iter()
        .filter(|s| s.state == ShardState::Active)
        .map(|s| {
            (
                s.cluster.as_str(),
                s.name.as_str(),
                s.parallelism,
                s.completions,
            )
        })
        .collect();
    active.sort();
    active
}

fn set_completions(fj: &mut FederatedJob, c: i32) {
    fj.job.spec.as_mut().unwrap().completions = Some(c);
    fj.grow_members = true;
}

fn set_parallelism(fj: &mut FederatedJob, p: i32) {
    fj.job.spec.as_mut().unwrap().parallelism = Some(p);
}

#[test]
fn seed_example_gives_three_of_six_everywhere() {
    let mut fj = job(9, Some(18), None);
    reconcile(&mut fj, &ready(&["c1", "c2", "c3"]), now());
    assert_eq!(
        counts(&fj),
        vec![
            ("c1", "myjob", 3, Some(6)),
            ("c2", "myjob", 3, Some(6)),
            ("c3", "myjob", 3, Some(6))
        ]
    );
    assert!(fj.shards.iter().all(|s| s.revision == 1));
    assert_eq!(fj.unplaced, Default::default());
}

#[test]
fn one_pod_takes_every_completion_in_one_cluster() {
    let mut fj = job(1, Some(3), None);
    reconcile(&mut fj, &ready(&["c1", "c2", "c3"]), now());
    let active = counts(&fj);
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!((active[0].2, active[0].3), (1, Some(3)));
}

#[test]
fn reconcile_is_idempotent() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let mut fj = job(9, Some(18), None);
    reconcile(&mut fj, &clusters, now());
    let once = fj.clone();
    reconcile(&mut fj, &clusters, now());
    assert_eq!(fj, once);
}

#[test]
fn parallelism_changes_in_place() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let mut fj = job(9, Some(18), None);
    reconcile(&mut fj, &clusters, now());
    set_parallelism(&mut fj, 12);
    reconcile(&mut fj, &clusters, now());
    assert_eq!(fj.shards.len(), 3, "no shard is added");
    assert!(
        fj.shards
            .iter()
            .all(|s| s.parallelism == 4 && s.revision == 2)
    );
}

#[test]
fn raising_completions_adds_shards_for_the_difference() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let mut fj = job(9, Some(18), None);
    reconcile(&mut fj, &clusters, now());
    for c in ["c1", "c2", "c3"] {
        observe(
            &mut fj,
            c,
            "myjob",
            0,
            report(ObservedPhase::Running, 3, 1, 0),
        );
    }
    set_completions(&mut fj, 24);
    reconcile(&mut fj, &clusters, now());
    let new: Vec<_> = fj.shards.iter().filter(|s| s.name == "myjob-2").collect();
    assert_eq!(new.len(), 3);
    assert!(new.iter().all(|s| s.completions == Some(2)));
    let first = fj.shards.iter().find(|s| s.name == "myjob").unwrap();
    assert_eq!(
        first.completions,
        Some(6),
        "completions of a shard never change"
    );
    // Each cluster's parallelism of 3 goes to the older shard first (5 still to do).
    assert_eq!((first.parallelism, new[0].parallelism), (3, 0));
    let planned: i32 = fj.shards.iter().map(|s| s.effective_completions()).sum();
    assert_eq!(planned, 24);
}

#[test]
fn lowering_completions_removes_unstarted_shards_and_replans() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let mut fj = job(9, Some(18), None);
    reconcile(&mut fj, &clusters, now());
    observe(
        &mut fj,
        "c1",
        "myjob",
        0,
        report(ObservedPhase::Running, 3, 2, 0),
    );
    set_completions(&mut fj, 9);
    reconcile(&mut fj, &clusters, now());
    let stopped: Vec<_> = fj
        .shards
        .iter()
        .filter(|s| s.stop_reason == Some(StopReason::Unstarted))
        .map(|s| s.cluster.as_str())
        .collect();
    assert_eq!(stopped, vec!["c2", "c3"]);
    let planned: i32 = fj.shards.iter().map(|s| s.effective_completions()).sum();
    assert_eq!(planned, 9, "the started shard keeps 6, new shards take 3");
    assert_eq!(
        fj.shards
            .iter()
            .find(|s| s.cluster == "c1")
            .unwrap()
            .completions,
        Some(6)
    );
}

#[test]
fn reaching_the_total_completes_and_stops_surplus_shards() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let mut fj = job(9, Some(18), None);
    reconcile(&mut fj, &clusters, now());
    for c in ["c1", "c2", "c3"] {
        observe(
            &mut fj,
            c,
            "myjob",
            0,
            report(ObservedPhase::Running, 3, 3, 0),
        );
    }
    set_completions(&mut fj, 9);
    reconcile(&mut fj, &clusters, now());
    assert!(fj.is_finished() && fj.condition("Complete"));
    // They did work: suspended and kept with their counts, not deleted.
    assert!(
        fj.shards
            .iter()
            .all(|s| s.state == ShardState::Retired && s.stop_reason == Some(StopReason::Surplus))
    );
    let status = fj.job.status.as_ref().unwrap();
    assert_eq!(status.succeeded, Some(9));
    assert!(status.completion_time.is_some());
}

#[test]
fn surplus_shards_that_did_work_are_suspended_and_kept_others_deleted() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let mut fj = job(9, Some(18), None);
    reconcile(&mut fj, &clusters, now());
    // More completions: each cluster gets a second shard that waits behind the first.
    set_completions(&mut fj, 21);
    reconcile(&mut fj, &clusters, now());
    for c in ["c1", "c2", "c3"] {
        observe(
            &mut fj,
            c,
            "myjob",
            0,
            report(ObservedPhase::Running, 1, 3, 0),
        );
        let mut idle = report(ObservedPhase::Running, 0, 0, 0);
        idle.start_time = PackedTime::NONE;
        observe(&mut fj, c, "myjob-2", 0, idle);
    }
    set_completions(&mut fj, 10);
    reconcile(&mut fj, &clusters, now());
    assert!(!fj.is_finished(), "9 of 10");
    observe(
        &mut fj,
        "c1",
        "myjob",
        0,
        report(ObservedPhase::Running, 0, 4, 0),
    );
    reconcile(&mut fj, &clusters, now());
    assert!(fj.condition("Complete"));
    let states: Vec<(&str, &str, ShardState)> = fj
        .shards
        .iter()
        .map(|s| (s.cluster.as_str(), s.name.as_str(), s.state))
        .collect();
    assert_eq!(
        states,
        vec![
            ("c1", "myjob", ShardState::Retired),
            ("c1", "myjob-2", ShardState::Stopping),
            ("c2", "myjob", ShardState::Retired),
            ("c2", "myjob-2", ShardState::Stopping),
            ("c3", "myjob", ShardState::Retired),
            ("c3", "myjob-2", ShardState::Stopping),
        ]
    );
    let retired = &fj.shards[0];
    assert_eq!(render::action(retired, false), AssignmentAction::Suspend);
    let manifest = render::manifest(&fj, retired);
    assert_eq!(manifest["spec"]["suspend"], json!(true));
    assert_eq!(
        manifest["metadata"]["annotations"]["fedjob.io/stopped"],
        json!("the federated Job reached its completions")
    );
    assert_eq!(
        render::action(&fj.shards[1], false),
        AssignmentAction::Delete
    );
    // Its agent reports it suspended, then a late pod: counted once, still Complete.
    observe(
        &mut fj,
        "c2",
        "myjob",
        0,
        report(ObservedPhase::Suspended, 0, 4, 0),
    );
    observe(
        &mut fj,
        "c3",
        "myjob",
        0,
        report(ObservedPhase::Suspended, 0, 4, 0),
    );
    reconcile(&mut fj, &clusters, now());
    let status = fj.job.status.as_ref().unwrap();
    assert_eq!((status.succeeded, status.active), (Some(12), None));
    assert!(fj.condition("Complete"));
    assert_eq!(fj.shards[2].state, ShardState::Retired);
    observe(
        &mut fj,
        "c1",
        "myjob-2",
        0,
        report(ObservedPhase::Deleted, 0, 0, 0),
    );
    let places = status::placements(&fj, &clusters);
    assert_eq!(
        places
            .iter()
            .map(|p| (p.succeeded, p.state))
            .collect::<Vec<_>>(),
        vec![(4, "Stopped"), (4, "Deleting"), (4, "Deleting")]
    );
}

#[test]
fn all_shards_complete_makes_the_job_complete() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let mut fj = job(9, Some(18), None);
    reconcile(&mut fj, &clusters, now());
    for c in ["c1", "c2"] {
        observe(
            &mut fj,
            c,
            "myjob",
            0,
            report(ObservedPhase::Complete, 0, 6, 0),
        );
    }
    reconcile(&mut fj, &clusters, now());
    assert!(!fj.is_finished(), "12 of 18 is not complete");
    observe(
        &mut fj,
        "c3",
        "myjob",
        0,
        report(ObservedPhase::Complete, 0, 6, 1),
    );
    reconcile(&mut fj, &clusters, now());
    assert!(fj.condition("Complete"));
    let status = fj.job.status.as_ref().unwrap();
    assert_eq!(
        (status.succeeded, status.failed, status.active),
        (Some(18), Some(1), None)
    );
    let places = status::placements(&fj, &clusters);
    assert!(
        places
            .iter()
            .all(|p| p.state == "Complete" && p.succeeded == 6)
    );
}

#[test]
fn a_failed_shard_fails_the_job_and_names_the_cluster() {
    let clusters = ready(&["c1", "c2"]);
    let mut fj = job(2, Some(4), None);
    reconcile(&mut fj, &clusters, now());
    let mut failed = report(ObservedPhase::Failed, 0, 0, 7);
    failed.detail = Detail::new("BackoffLimitExceeded", "");
    observe(&mut fj, "c2", "myjob", 0, failed);
    reconcile(&mut fj, &clusters, now());
    assert!(fj.condition("Failed"));
    let status = fj.job.status.as_ref().unwrap();
    let cond = status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(cond.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert!(cond.message.as_deref().unwrap().contains("c2"));
    // Terminal status is sticky: a later success does not turn it into Complete.
    observe(
        &mut fj,
        "c1",
        "myjob",
        0,
        report(ObservedPhase::Complete, 0, 2, 0),
    );
    reconcile(&mut fj, &clusters, now());
    assert!(!fj.condition("Complete"));
}

#[test]
fn a_shard_deleted_before_it_finished_is_replaced_for_what_it_lacked() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let mut fj = job(9, Some(18), None);
    reconcile(&mut fj, &clusters, now());
    observe(
        &mut fj,
        "c1",
        "myjob",
        0,
        report(ObservedPhase::Running, 2, 4, 0),
    );
    observe(
        &mut fj,
        "c1",
        "myjob",
        0,
        report(ObservedPhase::Deleted, 0, 0, 0),
    );
    reconcile(&mut fj, &clusters, now());
    let lost = fj
        .shards
        .iter()
        .find(|s| s.cluster == "c1" && s.name == "myjob")
        .unwrap();
    assert_eq!(lost.state, ShardState::Lost);
    assert_eq!(lost.succeeded(), 4, "what was done still counts");
    let new: i32 = fj
        .shards
        .iter()
        .filter(|s| s.name == "myjob-2")
        .map(|s| s.completions.unwrap())
        .sum();
    assert_eq!(new, 2);
    assert_eq!(render::action(lost, false), AssignmentAction::Retain);
}

#[test]
fn a_finished_shard_deleted_by_its_ttl_is_not_recreated() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let mut fj = job(9, Some(18), None);
    reconcile(&mut fj, &clusters, now());
    observe(
        &mut fj,
        "c1",
        "myjob",
        0,
        report(ObservedPhase::Complete, 0, 6, 0),
    );
    observe(
        &mut fj,
        "c1",
        "myjob",
        0,
        report(ObservedPhase::Deleted, 0, 0, 0),
    );
    reconcile(&mut fj, &clusters, now());
    assert_eq!(fj.shards.len(), 3);
    let s = fj.shards.iter().find(|s| s.cluster == "c1").unwrap();
    assert_eq!(
        (s.state, s.observed_phase()),
        (ShardState::Finished, Some(ObservedPhase::Complete))
    );
}

#[test]
fn without_rebalance_a_lost_cluster_keeps_its_work() {
    let mut clusters = ready(&["c1", "c2", "c3"]);
    let mut fj = job(9, Some(18), None);
    reconcile(&mut fj, &clusters, now());
    let c3 = clusters.get_mut("c3").unwrap();
    c3.ready = false;
    c3.lost = true;
    reconcile(&mut fj, &clusters, now());
    assert_eq!(counts(&fj).len(), 3);
    assert!(fj.shards.iter().all(|s| s.parallelism == 3));
    let places = status::placements(&fj, &clusters);
    assert_eq!(places[2].state, "Waiting");
}

#[test]
fn with_rebalance_a_lost_clusters_unfinished_work_moves() {
    let mut clusters = ready(&["c1", "c2", "c3"]);
    let mut fj = job(
        9,
        Some(18),
        Some(r#"{"rebalance": true, "clusters": {"*": {"weight": 1}}}"#),
    );
    reconcile(&mut fj, &clusters, now());
    observe(
        &mut fj,
        "c3",
        "myjob",
        0,
        report(ObservedPhase::Running, 3, 2, 0),
    );
    let c3 = clusters.get_mut("c3").unwrap();
    c3.ready = false;
    c3.lost = true;
    c3.epoch = 1;
    reconcile(&mut fj, &clusters, now());
    let old = fj.shards.iter().find(|s| s.cluster == "c3").unwrap();
    assert_eq!(
        (old.state, old.stop_reason),
        (ShardState::Stopping, Some(StopReason::Superseded))
    );
    let moved: i32 = fj
        .shards
        .iter()
        .filter(|s| s.cluster != "c3" && s.name == "myjob-2")
        .map(|s| s.completions.unwrap())
        .sum();
    assert_eq!(moved, 4, "6 planned − 2 done");
    // When c3 comes back, late status of the superseded shard does not count.
    observe(
        &mut fj,
        "c3",
        "myjob",
        0,
        report(ObservedPhase::Complete, 0, 6, 0),
    );
    reconcile(&mut fj, &clusters, now());
    assert_eq!(status::total_succeeded(&fj), 2);
    // Nor do the counts its agent reports as it deletes the shard.
    observe(
        &mut fj,
        "c3",
        "myjob",
        1,
        report(ObservedPhase::Deleted, 0, 5, 1),
    );
    let old = fj.shards.iter().find(|s| s.cluster == "c3").unwrap();
    assert_eq!(old.state, ShardState::Stopped);
    let counts = old.observed.as_ref().map(|o| (o.succeeded, o.failed));
    assert_eq!(counts, Some((2, 0)), "what it reported before it was lost");
    reconcile(&mut fj, &clusters, now());
    assert_eq!(status::total_succeeded(&fj), 2);
}

#[test]
fn a_cluster_joining_later_takes_no_running_work_but_new_jobs() {
    let mut clusters = ready(&["c1", "c2"]);
    let mut fj = job(4, Some(8), None);
    reconcile(&mut fj, &clusters, now());
    clusters.insert(
        "c3".into(),
        ClusterView {
            ready: true,
            ..Default::default()
        },
    );
    reconcile(&mut fj, &clusters, now());
    assert!(fj.shards.iter().all(|s| s.cluster != "c3"));
    let mut later = job(6, Some(6), None);
    reconcile(&mut later, &clusters, now());
    assert!(later.shards.iter().any(|s| s.cluster == "c3"));
}

#[test]
fn unplaceable_work_waits_for_a_cluster() {
    let mut fj = job(3, Some(6), None);
    reconcile(&mut fj, &Clusters::new(), now());
    assert_eq!((fj.unplaced.parallelism, fj.unplaced.completions), (3, 6));
    assert!(fj.condition("Unschedulable"));
    reconcile(&mut fj, &ready(&["c1"]), now());
    assert_eq!(counts(&fj), vec![("c1", "myjob", 3, Some(6))]);
    assert!(!fj.condition("Unschedulable"));
}

#[test]
fn cordoned_clusters_keep_running_shards_but_get_no_new_ones() {
    let mut clusters = ready(&["c1", "c2"]);
    let mut fj = job(2, Some(4), None);
    reconcile(&mut fj, &clusters, now());
    clusters.get_mut("c2").unwrap().cordoned = true;
    set_completions(&mut fj, 8);
    reconcile(&mut fj, &clusters, now());
    assert_eq!(fj.shards.iter().filter(|s| s.cluster == "c2").count(), 1);
    assert_eq!(fj.shards.iter().filter(|s| s.cluster == "c1").count(), 2);
}

#[test]
fn cascading_delete_stops_every_shard_and_waits_for_confirmation() {
    let clusters = ready(&["c1", "c2"]);
    let mut fj = job(2, Some(4), None);
    reconcile(&mut fj, &clusters, now());
    observe(
        &mut fj,
        "c1",
        "myjob",
        0,
        report(ObservedPhase::Complete, 0, 2, 0),
    );
    fj.deletion = Some(crate::model::job::Deletion {
        requested_at: now(),
    });
    reconcile(&mut fj, &clusters, now());
    assert!(fj.shards.iter().all(|s| s.state == ShardState::Stopping));
    assert!(
        fj.shards
            .iter()
            .all(|s| render::action(s, false) == AssignmentAction::Delete)
    );
    for c in ["c1", "c2"] {
        observe(
            &mut fj,
            c,
            "myjob",
            0,
            report(ObservedPhase::Deleted, 0, 0, 0),
        );
    }
    assert!(fj.shards.iter().all(|s| s.state == ShardState::Stopped));
}

#[test]
fn a_work_queue_splits_parallelism_and_completes_when_every_shard_does() {
    let clusters = ready(&["c1", "c2"]);
    let mut fj = job(4, None, None);
    reconcile(&mut fj, &clusters, now());
    assert_eq!(
        counts(&fj),
        vec![("c1", "myjob", 2, None), ("c2", "myjob", 2, None)]
    );
    observe(
        &mut fj,
        "c1",
        "myjob",
        0,
        report(ObservedPhase::Complete, 0, 1, 0),
    );
    reconcile(&mut fj, &clusters, now());
    assert!(!fj.is_finished());
    observe(
        &mut fj,
        "c2",
        "myjob",
        0,
        report(ObservedPhase::Complete, 0, 1, 0),
    );
    reconcile(&mut fj, &clusters, now());
    assert!(fj.condition("Complete"));
}

#[test]
fn suspending_changes_the_action_and_the_revision() {
    let clusters = ready(&["c1"]);
    let mut fj = job(1, Some(1), None);
    reconcile(&mut fj, &clusters, now());
    fj.job.spec.as_mut().unwrap().suspend = Some(true);
    reconcile(&mut fj, &clusters, now());
    let s = &fj.shards[0];
    assert_eq!(
        (render::action(s, true), s.revision),
        (AssignmentAction::Suspend, 2)
    );
    assert!(fj.condition("Suspended"));
    let manifest = render::manifest(&fj, s);
    assert_eq!(manifest["spec"]["suspend"], json!(true));
    assert_eq!(
        manifest["metadata"]["labels"]["fedjob.io/job-uid"],
        json!("uid-1")
    );
    assert_eq!(
        manifest["metadata"]["annotations"]["fedjob.io/assignment-revision"],
        json!("2")
    );
}

#[test]
fn reports_for_unknown_shards_are_refused() {
    let mut fj = job(1, Some(1), None);
    reconcile(&mut fj, &ready(&["c1"]), now());
    assert!(!observe(
        &mut fj,
        "c2",
        "myjob",
        0,
        report(ObservedPhase::Running, 1, 0, 0)
    ));
    assert!(!observe(
        &mut fj,
        "c1",
        "other",
        0,
        report(ObservedPhase::Running, 1, 0, 0)
    ));
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    Scale(i32, i32),
    Progress(usize, i32),
    Finish(usize),
    Delete(usize),
    Lose(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..20i32, 0..60i32).prop_map(|(p, c)| Step::Scale(p, c)),
        (0..8usize, 0..4i32).prop_map(|(i, n)| Step::Progress(i, n)),
        (0..8usize).prop_map(Step::Finish),
        (0..8usize).prop_map(Step::Delete),
        (0..3usize).prop_map(Step::Lose),
    ]
}

proptest! {
    /// Whatever happens, completions are never edited on a shard, shard names stay unique per
    /// cluster, revisions never go back, and until the Job is finished the planned completions
    /// plus the unplaced ones equal the total.
    #[test]
    fn histories_keep_the_invariants(steps in proptest::collection::vec(step(), 1..40), rebalance in any::<bool>()) {
        let prefs = format!(r#"{{"rebalance": {rebalance}, "clusters": {{"*": {{"weight": 1}}}}}}"#);
        let mut clusters = ready(&["c1", "c2", "c3"]);
        let mut fj = job(6, Some(12), Some(&prefs));
        reconcile(&mut fj, &clusters, now());
        for step in steps {
            let before = fj.clone();
            match step {
                Step::Scale(p, c) => {
                    set_parallelism(&mut fj, p);
                    set_completions(&mut fj, c);
                }
                Step::Progress(i, _) | Step::Finish(i) | Step::Delete(i) if !fj.shards.is_empty() => {
                    let s = &fj.shards[i % fj.shards.len()];
                    let (cluster, name, c, epoch) = (s.cluster, s.name.clone(), s.completions.unwrap_or(1), s.epoch);
                    let done = (s.succeeded() + if let Step::Progress(_, n) = step { n } else { 0 }).min(c);
                    let r = match step {
                        Step::Progress(..) => report(ObservedPhase::Running, 1, done, 0),
                        Step::Finish(_) => report(ObservedPhase::Complete, 0, c, 0),
                        _ => report(ObservedPhase::Deleted, 0, 0, 0),
                    };
                    observe(&mut fj, &cluster, &name, epoch, r);
                }
                Step::Lose(i) => {
                    let name = ["c1", "c2", "c3"][i];
                    let view = clusters.get_mut(name).unwrap();
                    view.ready = !view.ready;
                    view.lost = !view.ready;
                    view.epoch += 1;
                }
                _ => {}
            }
            reconcile(&mut fj, &clusters, now());
            for old in &before.shards {
                let new = fj.shards.iter().find(|s| s.cluster == old.cluster && s.name == old.name).unwrap();
                prop_assert_eq!(new.completions, old.completions);
                prop_assert!(new.revision >= old.revision);
            }
            let mut names: Vec<_> = fj.shards.iter().map(|s| (&s.cluster, &s.name)).collect();
            let all = names.len();
            names.sort();
            names.dedup();
            prop_assert_eq!(names.len(), all);
            if !fj.is_finished() {
                let planned: i64 = fj.shards.iter().map(|s| i64::from(s.effective_completions())).sum();
                let total = i64::from(fj.spec().completions.unwrap());
                prop_assert!(planned + i64::from(fj.unplaced.completions) >= total);
                if planned > total {
                    // More is planned than asked only where shards already run and cannot be cut.
                    prop_assert!(fj.shards.iter().all(|s| s.state != ShardState::Active || s.started()));
                }
            }
        }
    }
}

/// `ready(names)` with `labels` on each cluster, in the same order.
fn labelled(names: &[&str], labels: &[&[(&str, &str)]]) -> Clusters {
    let mut clusters = ready(names);
    for (name, labels) in names.iter().zip(labels) {
        clusters.get_mut(*name).unwrap().labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
    clusters
}

#[test]
fn only_clusters_the_selector_matches_get_work() {
    // SPEC §10: no clusters map with a selector means every cluster at weight 1.
    let prefs = r#"{"clusterSelector": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["eu", "us"]}]}}"#;
    let clusters = labelled(
        &["c1", "c2", "c3", "c4"],
        &[
            &[("zone", "eu")],
            &[("zone", "asia")],
            &[],
            &[("zone", "us")],
        ],
    );
    let mut fj = job(6, Some(12), Some(prefs));
    reconcile(&mut fj, &clusters, now());
    assert_eq!(
        counts(&fj),
        vec![("c1", "myjob", 3, Some(6)), ("c4", "myjob", 3, Some(6))]
    );
    assert_eq!(fj.members, ["c1", "c4"].map(ClusterName::new).into());
    // Nothing matches: all of it waits, shown as unplaced.
    let none = labelled(&["c2", "c3"], &[&[("zone", "asia")], &[]]);
    let mut fj = job(6, Some(12), Some(prefs));
    reconcile(&mut fj, &none, now());
    assert!(counts(&fj).is_empty());
    assert_eq!((fj.unplaced.parallelism, fj.unplaced.completions), (6, 12));
    assert!(fj.condition("Unschedulable"));
}

#[test]
fn dynamic_weight_splits_by_what_fits_and_never_reshuffles_what_runs() {
    let prefs = r#"{"dynamicWeight": "AvailableReplicas"}"#;
    let mut clusters = ready(&["c1", "c2", "c3"]);
    crate::model::fixtures::with_room(&mut clusters, "c1", 10);
    crate::model::fixtures::with_room(&mut clusters, "c2", 5);
    crate::model::fixtures::with_room(&mut clusters, "c3", 0);
    let mut fj = job(9, Some(18), Some(prefs));
    reconcile(&mut fj, &clusters, now());
    // Parallelism 6/3 (Webster over 10 and 5, see split::by_capacity); completions follow:
    // 18 over 6 and 3 is 12 and 6. c3 has no room: no shard.
    assert_eq!(
        counts(&fj),
        vec![("c1", "myjob", 6, Some(12)), ("c2", "myjob", 3, Some(6))]
    );
    assert!(!fj.condition("StaticWeights"));
    // Capacity moves; what runs stays where it is.
    crate::model::fixtures::with_room(&mut clusters, "c2", 50);
    fj.shards[0].observed = Some(report(ObservedPhase::Running, 6, 0, 0));
    fj.shards[1].observed = Some(report(ObservedPhase::Running, 3, 0, 0));
    reconcile(&mut fj, &clusters, now());
    assert_eq!(
        counts(&fj),
        vec![("c1", "myjob", 6, Some(12)), ("c2", "myjob", 3, Some(6))]
    );
    // More completions are planned by what fits now: parallelism 9 over fits 10 and 50 is
    // c1 1, c2 8 (Webster, ties to c2, which ranks first: 50, 50/3, 50/5 = 10 before c1's
    // 10, 50/7, 50/9, 50/11, 50/13, 50/15 = 10/3 before c1's 10/3), so the 9 more
    // completions go 1 and 8.
    set_completions(&mut fj, 27);
    reconcile(&mut fj, &clusters, now());
    let new: Vec<_> = counts(&fj)
        .into_iter()
        .filter(|s| s.1 == "myjob-2")
        .map(|s| (s.0, s.3))
        .collect();
    assert_eq!(new, vec![("c1", Some(1)), ("c2", Some(8))]);
}

#[test]
fn dynamic_weight_without_any_capacity_falls_back_to_the_static_weights_and_says_so() {
    let prefs = r#"{"dynamicWeight": "AvailableReplicas"}"#;
    let mut fj = job(9, Some(18), Some(prefs));
    reconcile(&mut fj, &ready(&["c1", "c2", "c3"]), now());
    assert_eq!(
        counts(&fj),
        vec![
            ("c1", "myjob", 3, Some(6)),
            ("c2", "myjob", 3, Some(6)),
            ("c3", "myjob", 3, Some(6))
        ]
    );
    let conditions = fj.job.status.as_ref().unwrap().conditions.clone().unwrap();
    let c = conditions
        .iter()
        .find(|c| c.type_ == "StaticWeights")
        .expect("a condition says so");
    assert_eq!(c.reason.as_deref(), Some("NoCapacityReported"));
    assert!(
        c.message
            .as_deref()
            .unwrap()
            .contains("no cluster reports its free capacity"),
        "{c:?}"
    );
    // Beyond what fits anywhere: the rest by the static weights, said so.
    let mut clusters = ready(&["c1", "c2"]);
    crate::model::fixtures::with_room(&mut clusters, "c1", 2);
    crate::model::fixtures::with_room(&mut clusters, "c2", 2);
    let mut fj = job(10, Some(10), Some(prefs));
    reconcile(&mut fj, &clusters, now());
    assert_eq!(
        counts(&fj),
        vec![("c1", "myjob", 5, Some(5)), ("c2", "myjob", 5, Some(5))]
    );
    let conditions = fj.job.status.as_ref().unwrap().conditions.clone().unwrap();
    let c = conditions
        .iter()
        .find(|c| c.type_ == "StaticWeights")
        .unwrap();
    assert_eq!(c.reason.as_deref(), Some("CapacityExceeded"));
    assert!(
        c.message
            .as_deref()
            .unwrap()
            .contains("6 of parallelism 10"),
        "{c:?}"
    );
}

#[test]
fn dynamic_weight_keeps_its_shares_and_note_while_capacity_moves_until_counts_change() {
    let prefs = r#"{"dynamicWeight": "AvailableReplicas"}"#;
    let mut clusters = ready(&["c1", "c2"]);
    crate::model::fixtures::with_room(&mut clusters, "c1", 10);
    crate::model::fixtures::with_room(&mut clusters, "c2", 5);
    let mut fj = job(9, Some(18), Some(prefs));
    reconcile(&mut fj, &clusters, now());
    let planned = |fj: &FederatedJob| fj.planned.clone().into_iter().collect::<Vec<_>>();
    assert_eq!(planned(&fj), [("c1".into(), 6), ("c2".into(), 3)]);
    // The Job's own pods fill both clusters; reports come and the Job is planned again: the
    // shares shown and the (absent) note are those of the plan made at create.
    crate::model::fixtures::with_room(&mut clusters, "c1", 0);
    crate::model::fixtures::with_room(&mut clusters, "c2", 0);
    fj.shards[0].observed = Some(report(ObservedPhase::Running, 6, 1, 0));
    fj.shards[1].observed = Some(report(ObservedPhase::Running, 3, 0, 0));
    reconcile(&mut fj, &clusters, now());
    assert_eq!(planned(&fj), [("c1".into(), 6), ("c2".into(), 3)]);
    assert!(!fj.condition("StaticWeights"), "{:?}", fj.job.status);
    assert_eq!(
        counts(&fj),
        vec![("c1", "myjob", 6, Some(12)), ("c2", "myjob", 3, Some(6))]
    );
    // Parallelism raised to 12: planned again by what fits now (nothing), so by the static
    // weights (12 over two equal weights: 6 and 6), and the note says so. What runs stays.
    set_parallelism(&mut fj, 12);
    reconcile(&mut fj, &clusters, now());
    assert_eq!(planned(&fj), [("c1".into(), 6), ("c2".into(), 6)]);
    let conditions = fj.job.status.as_ref().unwrap().conditions.clone().unwrap();
    let note = conditions.iter().find(|c| c.type_ == "StaticWeights");
    assert_eq!(
        note.and_then(|c| c.reason.as_deref()),
        Some("CapacityExceeded")
    );
}

/// A Job of parallelism 2 and completions 4 planned over `clusters`, which leave some of it
/// waiting for room.
fn waiting(prefs: Option<&str>, clusters: &Clusters) -> FederatedJob {
    let mut fj = job(2, Some(4), prefs);
    reconcile(&mut fj, clusters, now());
    assert!(fj.needs_room(), "{:?}", fj.unplaced);
    fj
}

#[test]
fn room_appears_when_a_cluster_the_job_allows_becomes_eligible() {
    let nothing = Clusters::new();
    let fj = waiting(None, &nothing);
    let c1 = ready(&["c1"]);
    assert!(room_appeared(&fj, &nothing, &c1), "registered");
    assert!(!room_appeared(&fj, &c1, &c1), "nothing changed");
    let mut cordoned = c1.clone();
    cordoned.get_mut("c1").unwrap().cordoned = true;
    assert!(!room_appeared(&fj, &nothing, &cordoned), "cordoned");
    assert!(room_appeared(&fj, &cordoned, &c1), "uncordoned");
    let mut not_ready = c1.clone();
    not_ready.get_mut("c1").unwrap().ready = false;
    assert!(room_appeared(&fj, &not_ready, &c1), "Ready again");
    assert!(!room_appeared(&fj, &c1, &not_ready), "NotReady");

    // Labels: only a cluster the selector now selects.
    let prefs = r#"{"clusterSelector": {"matchLabels": {"env": "prod"}}}"#;
    let dev = labelled(&["c1"], &[&[("env", "dev")]]);
    let prod = labelled(&["c1"], &[&[("env", "prod")]]);
    let fj = waiting(Some(prefs), &dev);
    assert!(room_appeared(&fj, &dev, &prod), "relabelled to match");
    assert!(
        !room_appeared(&fj, &nothing, &dev),
        "registered, not selected"
    );
    assert!(!room_appeared(&fj, &prod, &dev), "no longer selected");

    // A Job with nothing waiting, or finished, has nothing to place.
    let mut placed = job(2, Some(4), None);
    reconcile(&mut placed, &c1, now());
    assert!(!placed.needs_room());
    assert!(!room_appeared(&placed, &nothing, &ready(&["c1", "c2"])));
}

#[test]
fn room_appears_by_capacity_only_for_a_job_that_weighs_by_it() {
    // Parallelism 0: the completions go where pods fit; nowhere yet.
    let prefs = r#"{"dynamicWeight": "AvailableReplicas"}"#;
    let mut full = ready(&["c1"]);
    crate::model::fixtures::with_room(&mut full, "c1", 0);
    let mut fj = job(0, Some(4), Some(prefs));
    reconcile(&mut fj, &full, now());
    assert_eq!((fj.unplaced.parallelism, fj.unplaced.completions), (0, 4));
    let mut room = full.clone();
    crate::model::fixtures::with_room(&mut room, "c1", 3);
    assert!(room_appeared(&fj, &full, &room), "room for 3 pods");
    let mut still_full = full.clone();
    crate::model::fixtures::with_room(&mut still_full, "c1", 0);
    assert!(
        !room_appeared(&fj, &full, &still_full),
        "a new report, no room"
    );
    assert!(!room_appeared(&fj, &room, &full), "less room");
    let mut unreported = full.clone();
    unreported.get_mut("c1").unwrap().capacity = None;
    assert!(
        room_appeared(&fj, &full, &unreported),
        "no capacity known: the static weights"
    );
    // Placed where it fits once there is room.
    reconcile(&mut fj, &room, now());
    assert_eq!(fj.unplaced, Default::default());
    assert_eq!(counts(&fj), vec![("c1", "myjob", 0, Some(4))]);

    // The static rule does not look at capacity: at maxReplicas, more room changes nothing.
    let prefs = r#"{"clusters": {"*": {"weight": 1, "maxReplicas": 1}}}"#;
    let fj = waiting(Some(prefs), &full);
    assert!(!room_appeared(&fj, &full, &room));
}

/// A cluster of the property below, when registered: (ready, cordoned, labelled env=prod,
/// room for pods as its agent reports it).
type ClusterState = Option<(bool, bool, bool, Option<i64>)>;

fn cluster_state() -> impl Strategy<Value = ClusterState> {
    prop::option::of((
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0..4i64),
    ))
}

fn clusters_of(states: &[ClusterState]) -> Clusters {
    let mut clusters = Clusters::new();
    for (i, state) in states.iter().enumerate() {
        let Some((ready, cordoned, prod, room)) = state else {
            continue;
        };
        let name = format!("c{}", i + 1);
        let env = if *prod { "prod" } else { "dev" };
        let mut one = labelled(&[name.as_str()], &[&[("env", env)]]);
        let view = one.get_mut(&name).unwrap();
        view.ready = *ready;
        view.cordoned = *cordoned;
        if let Some(room) = room {
            crate::model::fixtures::with_room(&mut one, &name, *room);
        }
        clusters.extend(one);
    }
    clusters
}

proptest! {
    /// The control plane plans a waiting Job again only when `room_appeared` says so: it must
    /// never hide a change that would place more of it.
    #[test]
    fn no_room_appeared_means_planning_again_places_no_more(
        parallelism in 0..6i32,
        completions in 1..10i32,
        prefs in prop::sample::select(vec![
            None,
            Some(r#"{"clusterSelector": {"matchLabels": {"env": "prod"}}}"#),
            Some(r#"{"dynamicWeight": "AvailableReplicas"}"#),
            Some(r#"{"dynamicWeight": "AvailableReplicas", "clusterSelector": {"matchLabels": {"env": "prod"}}}"#),
            Some(r#"{"clusters": {"*": {"weight": 1, "maxReplicas": 1}}}"#),
        ]),
        before in prop::collection::vec(cluster_state(), 3),
        after in prop::collection::vec(cluster_state(), 3),
    ) {
        let (before, after) = (clusters_of(&before), clusters_of(&after));
        let mut fj = job(parallelism, Some(completions), prefs);
        reconcile(&mut fj, &before, now());
        prop_assume!(fj.needs_room());
        let mut again = fj.clone();
        reconcile(&mut again, &after, now());
        if !room_appeared(&fj, &before, &after) {
            prop_assert!(again.unplaced.parallelism >= fj.unplaced.parallelism, "{:?} -> {:?}", fj.unplaced, again.unplaced);
            prop_assert!(again.unplaced.completions >= fj.unplaced.completions, "{:?} -> {:?}", fj.unplaced, again.unplaced);
        }
    }
}
