//! The story of a Job, driven through the model's own edits (create, update, reports, cluster
//! changes, delete), as the control plane makes them; expected texts are written out here.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::model::clusters::ClusterView;
use crate::model::edit::{self, Next, Refused, ShardReport};
use crate::model::job::{Detail, Observed};

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

fn manifest(parallelism: i32, completions: Option<i32>, prefs: Option<&str>) -> Job {
    let mut value = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "myjob", "namespace": "default"},
        "spec": {"parallelism": parallelism,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "w", "image": "busybox"}]}}}
    });
    if let Some(c) = completions {
        value["spec"]["completions"] = json!(c);
    }
    if let Some(p) = prefs {
        value["metadata"]["annotations"] = json!({"federation.kubernetes.io/job-preferences": p});
    }
    serde_json::from_value(value).unwrap()
}

fn clusters(states: &[(&str, bool, bool)]) -> Clusters {
    states
        .iter()
        .map(|(name, ready, lost)| {
            let view = ClusterView {
                ready: *ready,
                lost: *lost,
                ..Default::default()
            };
            (name.to_string(), view)
        })
        .collect()
}

fn ready(names: &[&str]) -> Clusters {
    clusters(&names.iter().map(|n| (*n, true, false)).collect::<Vec<_>>())
}

/// A Job and the story told so far, changed only through the model's edits.
struct Story {
    job: Option<FederatedJob>,
    clusters: Clusters,
    told: Vec<Occurrence>,
}

impl Story {
    fn create(
        parallelism: i32,
        completions: Option<i32>,
        prefs: Option<&str>,
        clusters: Clusters,
    ) -> Self {
        let mut story = Story {
            job: None,
            clusters,
            told: Vec::new(),
        };
        let record = edit::create(
            manifest(parallelism, completions, prefs),
            "uid-1".into(),
            &story.clusters,
            now(),
        )
        .unwrap();
        story.write(Next::Put(Box::new(record)));
        story
    }

    fn job(&self) -> &FederatedJob {
        self.job.as_ref().expect("the Job exists")
    }

    /// Writes what an edit wants and returns what it told.
    fn write(&mut self, next: Next) -> Vec<Occurrence> {
        let after = match next {
            Next::Put(record) => Some(*record),
            Next::Delete => None,
            Next::Unchanged => self.job.clone(),
        };
        let told = derive(self.job.as_ref(), after.as_ref());
        self.job = after;
        self.told.extend(told.clone());
        told
    }

    fn report(&mut self, cluster: &str, shard: &str, observed: Observed) -> Vec<Occurrence> {
        let job = self.job();
        let epoch = job
            .shards
            .iter()
            .find(|s| s.cluster == cluster && s.name == shard)
            .map_or(0, |s| s.epoch);
        let report = ShardReport {
            job_uid: job.uid().to_owned(),
            namespace: "default".into(),
            shard: shard.into(),
            epoch,
            observed,
        };
        let (next, _) = edit::apply_reports(job, &[(cluster, &[report])], &self.clusters, now());
        self.write(next)
    }

    fn update(&mut self, change: impl FnOnce(&mut Job)) -> Vec<Occurrence> {
        let job = self.job();
        let next = edit::update::<Refused>(
            job,
            0,
            None,
            |old| {
                let mut new = old.clone();
                change(&mut new);
                Ok(new)
            },
            &self.clusters,
            now(),
        );
        match next {
            Ok(Some(record)) => self.write(Next::Put(Box::new(record))),
            // A refused update (a work queue given completions) writes nothing.
            Ok(None) | Err(_) => self.write(Next::Unchanged),
        }
    }

    fn set_clusters(&mut self, clusters: Clusters) -> Vec<Occurrence> {
        self.clusters = clusters;
        let next = edit::reconcile(self.job(), &self.clusters, now());
        self.write(next)
    }

    fn delete(&mut self, cascade: bool) -> Vec<Occurrence> {
        let next = edit::delete(self.job(), cascade, &self.clusters, now());
        self.write(next)
    }
}

fn observed(phase: ObservedPhase, active: i32, succeeded: i32, failed: i32) -> Observed {
    Observed {
        phase,
        active,
        succeeded,
        failed,
        start_time: Some(now()).into(),
        completion_time: (phase == ObservedPhase::Complete).then(now).into(),
        local_uid: "local".into(),
        ..Default::default()
    }
}

fn running(active: i32) -> Observed {
    observed(ObservedPhase::Running, active, 0, 0)
}

/// `(type, reason, message)` of each, as `kubectl describe` lists them.
fn lines(told: &[Occurrence]) -> Vec<(&'static str, &str, &str)> {
    told.iter()
        .map(|o| (o.severity.as_str(), o.reason.as_str(), o.message.as_str()))
        .collect()
}

#[test]
fn the_seed_example_tells_its_split_each_shard_and_the_end() {
    let mut story = Story::create(9, Some(18), None, ready(&["c1", "c2", "c3"]));
    assert_eq!(
        lines(&story.told),
        [(
            "Normal",
            "SplitPlanned",
            "Planned parallelism 9 and 18 completions over 3 clusters: c1 (parallelism 3, completions 6), c2 (parallelism 3, completions 6), c3 (parallelism 3, completions 6)"
        )]
    );
    for c in ["c1", "c2", "c3"] {
        assert_eq!(
            lines(&story.report(c, "myjob", running(3))),
            [(
                "Normal",
                "SuccessfulCreate",
                format!("Created shard myjob in cluster {c} (parallelism 3, completions 6)")
                    .as_str()
            )]
        );
    }
    // The same report again changes nothing, and tells nothing.
    assert!(story.report("c1", "myjob", running(3)).is_empty());
    assert_eq!(
        lines(&story.update(|j| j.spec.as_mut().unwrap().parallelism = Some(12))),
        [
            (
                "Normal",
                "SplitPlanned",
                "Planned parallelism 12 and 18 completions over 3 clusters: c1 (parallelism 4, completions 6), c2 (parallelism 4, completions 6), c3 (parallelism 4, completions 6)"
            ),
            (
                "Normal",
                "SuccessfulUpdate",
                "Updated shard myjob in cluster c1: parallelism from 3 to 4"
            ),
            (
                "Normal",
                "SuccessfulUpdate",
                "Updated shard myjob in cluster c2: parallelism from 3 to 4"
            ),
            (
                "Normal",
                "SuccessfulUpdate",
                "Updated shard myjob in cluster c3: parallelism from 3 to 4"
            ),
        ]
    );
    story.report("c1", "myjob", observed(ObservedPhase::Complete, 0, 6, 0));
    story.report("c2", "myjob", observed(ObservedPhase::Complete, 0, 6, 0));
    assert_eq!(
        lines(&story.report("c3", "myjob", observed(ObservedPhase::Complete, 0, 6, 0))),
        [
            (
                "Normal",
                "ShardCompleted",
                "Shard myjob in cluster c3 completed (6 succeeded)"
            ),
            (
                "Normal",
                "Completed",
                "Job completed: 18 succeeded (c1 6, c2 6, c3 6)"
            ),
        ]
    );
    // Terminal status is sticky: a late report about a finished Job tells nothing new.
    assert!(
        story
            .report("c3", "myjob", observed(ObservedPhase::Deleted, 0, 6, 0))
            .is_empty()
    );
}

#[test]
fn a_failed_shard_fails_the_job_and_stops_the_others() {
    let mut story = Story::create(2, Some(4), None, ready(&["c1", "c2"]));
    story.report("c1", "myjob", running(1));
    story.report("c2", "myjob", running(1));
    let mut failed = observed(ObservedPhase::Failed, 0, 0, 2);
    failed.detail = Detail::new(
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    );
    assert_eq!(
        lines(&story.report("c1", "myjob", failed)),
        [
            (
                "Warning",
                "ShardFailed",
                "Shard myjob in cluster c1 failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
            ),
            (
                "Normal",
                "ShardStopped",
                "Suspending shard myjob in cluster c2: the Job failed; it is kept there with its counts"
            ),
            (
                "Warning",
                "BackoffLimitExceeded",
                "Job failed in cluster(s) c1"
            ),
        ]
    );
    // c2 ran a pod, so it is suspended and kept (issue 13), not deleted: nothing more to tell.
    assert!(
        story
            .report("c2", "myjob", observed(ObservedPhase::Suspended, 0, 0, 0))
            .is_empty()
    );
}

#[test]
fn a_lost_cluster_moves_its_unfinished_work_and_says_where() {
    let prefs = r#"{"rebalance": true, "clusters": {"*": {"weight": 1}}}"#;
    let mut story = Story::create(6, Some(12), Some(prefs), ready(&["c1", "c2", "c3"]));
    for c in ["c1", "c2", "c3"] {
        story.report(c, "myjob", running(2));
    }
    story.report("c2", "myjob", observed(ObservedPhase::Running, 2, 2, 0));
    story.set_clusters(clusters(&[
        ("c1", true, false),
        ("c2", false, false),
        ("c3", true, false),
    ]));
    let told = story.set_clusters(clusters(&[
        ("c1", true, false),
        ("c2", false, true),
        ("c3", true, false),
    ]));
    assert_eq!(
        lines(&told),
        [
            (
                "Warning",
                "ClusterLost",
                "Cluster c2 was lost: its 2 unfinished completions move to c1 (1), c3 (1)"
            ),
            (
                "Normal",
                "SplitPlanned",
                "Planned parallelism 6 and 12 completions over 3 clusters: c1 (parallelism 3, completions 5), c2 (parallelism 0, completions 2), c3 (parallelism 3, completions 5)"
            ),
            // The healthy clusters' own shards keep running as they were: c2's parallelism
            // goes to the moved work (issue 13), so no shard there is updated.
            (
                "Normal",
                "Deleting",
                "Deleting shard myjob in cluster c2: its work was planned again elsewhere after cluster c2 was lost"
            ),
        ]
    );
    // The new shards are told as created when their clusters report them; the moved work
    // runs at once.
    assert_eq!(
        lines(&story.report("c1", "myjob-2", running(0))),
        [(
            "Normal",
            "SuccessfulCreate",
            "Created shard myjob-2 in cluster c1 (parallelism 1, completions 1)"
        )]
    );
}

#[test]
fn a_cascading_delete_tells_each_deletion_then_nothing_when_the_record_goes() {
    let mut story = Story::create(2, Some(2), None, ready(&["c1", "c2"]));
    story.report("c1", "myjob", running(1));
    story.report("c2", "myjob", running(1));
    assert_eq!(
        lines(&story.delete(true)),
        [
            (
                "Normal",
                "Deleting",
                "Deleting shard myjob in cluster c1: the Job is being deleted with propagationPolicy Background"
            ),
            (
                "Normal",
                "Deleting",
                "Deleting shard myjob in cluster c2: the Job is being deleted with propagationPolicy Background"
            ),
        ]
    );
    assert_eq!(
        lines(&story.report("c1", "myjob", observed(ObservedPhase::Deleted, 0, 0, 0))),
        [(
            "Normal",
            "SuccessfulDelete",
            "Deleted shard myjob in cluster c1"
        )]
    );
    // The last confirmation removes the record: its deletion is told by the change before it.
    let told = story.report("c2", "myjob", observed(ObservedPhase::Deleted, 0, 0, 0));
    assert!(story.job.is_none());
    assert!(told.is_empty(), "{told:?}");
}

#[test]
fn a_shard_deleted_in_its_cluster_is_told_lost_and_its_work_planned_again() {
    let mut story = Story::create(1, Some(4), None, ready(&["c1"]));
    story.report("c1", "myjob", running(1));
    story.report("c1", "myjob", observed(ObservedPhase::Running, 1, 1, 0));
    assert_eq!(
        lines(&story.report("c1", "myjob", observed(ObservedPhase::Deleted, 0, 1, 0))),
        [
            (
                "Normal",
                "SplitPlanned",
                "Planned parallelism 1 and 4 completions over 1 cluster: c1 (parallelism 1, completions 4)"
            ),
            (
                "Warning",
                "ShardLost",
                "Shard myjob was deleted in cluster c1 before it finished (1 of 4 completions succeeded); its remaining work is planned again"
            ),
        ]
    );
    assert_eq!(story.job().shards.len(), 2, "myjob-2 takes the 3 left");
}

#[test]
fn work_that_finds_no_cluster_is_unschedulable() {
    let story = Story::create(9, Some(18), None, Clusters::new());
    assert_eq!(
        lines(&story.told),
        [
            (
                "Normal",
                "SplitPlanned",
                "Planned parallelism 9 and 18 completions over 0 clusters; not placed: parallelism 9, completions 18"
            ),
            (
                "Warning",
                "Unschedulable",
                "parallelism 9 and completions 18 could not be placed: no cluster is registered"
            ),
        ]
    );
}

#[test]
fn suspension_conflicts_and_refusals_name_the_cluster() {
    let mut story = Story::create(2, None, None, ready(&["c1", "c2"]));
    assert_eq!(
        lines(&story.told),
        [(
            "Normal",
            "SplitPlanned",
            "Planned parallelism 2 over 2 clusters: c1 (parallelism 1), c2 (parallelism 1)"
        )]
    );
    story.report("c1", "myjob", running(1));
    assert_eq!(
        lines(&story.report("c1", "myjob", observed(ObservedPhase::Suspended, 0, 0, 0))),
        [("Normal", "Suspended", "Suspended shard myjob in cluster c1")]
    );
    assert_eq!(
        lines(&story.report("c1", "myjob", running(1))),
        [("Normal", "Resumed", "Resumed shard myjob in cluster c1")]
    );
    let mut conflict = observed(ObservedPhase::Conflict, 0, 0, 0);
    conflict.detail = Detail::new("", "default/myjob has no fedjob.io/job-uid label");
    assert_eq!(
        lines(&story.report("c2", "myjob", conflict.clone())),
        [(
            "Warning",
            "ShardConflict",
            "Shard myjob was not created in cluster c2: a Job of that name exists that fedjob did not create: default/myjob has no fedjob.io/job-uid label"
        )]
    );
    assert!(
        story.report("c2", "myjob", conflict).is_empty(),
        "told once"
    );
    let mut refused = observed(ObservedPhase::Error, 0, 0, 0);
    refused.detail = Detail::new("", "namespaces \"default\" not found");
    assert_eq!(
        lines(&story.report("c2", "myjob", refused)),
        [(
            "Warning",
            "ShardRefused",
            "Cluster c2 refused shard myjob: namespaces \"default\" not found"
        )]
    );
}

#[test]
fn a_job_created_again_under_its_name_starts_a_new_story() {
    let first = Story::create(1, Some(1), None, ready(&["c1"]));
    let mut second = first.job().clone();
    second.job.metadata.uid = Some("uid-2".into());
    second.planned.clear();
    let told = derive(first.job.as_ref(), Some(&second));
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].reason, "SplitPlanned");
}

#[test]
fn long_messages_are_cut_to_the_limit_on_a_character() {
    let cut = truncate("é".repeat(MAX_MESSAGE));
    assert!(
        cut.len() <= MAX_MESSAGE && cut.ends_with(" …"),
        "{}",
        cut.len()
    );
    let names: Vec<String> = (0..200).map(|i| format!("cluster-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let story = Story::create(400, Some(800), None, ready(&refs));
    assert!(story.told[0].message.len() <= MAX_MESSAGE);
}

/// One step of a Job's life, as the control plane can make it.
#[derive(Debug, Clone)]
enum Step {
    /// An agent reports a shard (by index among the planned ones).
    Report {
        shard: usize,
        phase: u8,
        active: i32,
        succeeded: i32,
        failed: i32,
    },
    /// The user changes parallelism.
    Scale(i32),
    /// The user changes completions.
    Complete(i32),
    /// A cluster goes NotReady, lost, or comes back.
    Cluster {
        index: usize,
        ready: bool,
        lost: bool,
    },
    /// Delete, with or without cascade.
    Delete(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..8usize, 0..7u8, 0..4i32, 0..8i32, 0..3i32).prop_map(|(shard, phase, active, succeeded, failed)| Step::Report { shard, phase, active, succeeded, failed }),
        1 => (0..10i32).prop_map(Step::Scale),
        1 => (0..16i32).prop_map(Step::Complete),
        2 => (0..3usize, any::<bool>(), any::<bool>()).prop_map(|(index, ready, lost)| Step::Cluster { index, ready, lost: lost && !ready }),
        1 => any::<bool>().prop_map(Step::Delete),
    ]
}

const PHASES: [ObservedPhase; 7] = [
    ObservedPhase::Running,
    ObservedPhase::Complete,
    ObservedPhase::Failed,
    ObservedPhase::Suspended,
    ObservedPhase::Deleted,
    ObservedPhase::Conflict,
    ObservedPhase::Error,
];

impl Story {
    /// Takes one step; false once the Job is gone.
    fn take(&mut self, step: &Step) -> bool {
        let Some(job) = &self.job else { return false };
        match step {
            Step::Report {
                shard,
                phase,
                active,
                succeeded,
                failed,
            } => {
                let Some(s) = job.shards.get(*shard % job.shards.len().max(1)) else {
                    return true;
                };
                let (cluster, name) = (s.cluster, s.name.clone());
                let succeeded = (*succeeded).max(s.succeeded());
                self.report(
                    &cluster,
                    &name,
                    observed(PHASES[*phase as usize], *active, succeeded, *failed),
                );
            }
            Step::Scale(p) => {
                let p = *p;
                if job.deletion.is_none() {
                    self.update(|j| j.spec.as_mut().unwrap().parallelism = Some(p));
                }
            }
            Step::Complete(c) => {
                let c = *c;
                if job.deletion.is_none() {
                    self.update(|j| j.spec.as_mut().unwrap().completions = Some(c));
                }
            }
            Step::Cluster { index, ready, lost } => {
                let mut clusters = self.clusters.clone();
                let name = ["c1", "c2", "c3"][*index];
                let view = clusters.get_mut(name).unwrap();
                view.ready = *ready;
                view.lost = *lost;
                self.set_clusters(clusters);
            }
            Step::Delete(cascade) => {
                self.delete(*cascade);
            }
        }
        self.job.is_some()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over any life of a Job: a change that changes nothing tells nothing; each shard's
    /// creation is told exactly once if its cluster ever reported it (never otherwise); its
    /// deletion at most once and only after it was asked for; the Job's end at most once;
    /// every shard event names its cluster.
    #[test]
    fn each_step_of_a_shard_is_told_once(
        parallelism in 0..10i32,
        completions in prop::option::of(0..16i32),
        rebalance in any::<bool>(),
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let prefs = rebalance.then_some(r#"{"rebalance": true, "clusters": {"*": {"weight": 1}}}"#);
        let mut story = Story::create(parallelism, completions, prefs, ready(&["c1", "c2", "c3"]));
        let mut last_seen: BTreeMap<(String, String), bool> = BTreeMap::new();
        for step in &steps {
            let job = story.job().clone();
            prop_assert!(derive(Some(&job), Some(&job)).is_empty(), "a no-op change told something");
            for s in &job.shards {
                last_seen.insert((s.cluster.to_string(), s.name.clone()), s.seen);
            }
            if !story.take(step) {
                break;
            }
        }
        if let Some(job) = &story.job {
            for s in &job.shards {
                last_seen.insert((s.cluster.to_string(), s.name.clone()), s.seen);
            }
        }
        let count = |reason: &str, message: &str| {
            story.told.iter().filter(|o| o.reason == reason && o.message.starts_with(message)).count()
        };
        for ((cluster, name), seen) in &last_seen {
            let created = count("SuccessfulCreate", &format!("Created shard {name} in cluster {cluster} "));
            prop_assert_eq!(created, usize::from(*seen), "creation of {}/{}", cluster, name);
            let deleted = count("SuccessfulDelete", &format!("Deleted shard {name} in cluster {cluster}"));
            prop_assert!(deleted <= 1);
            if deleted == 1 {
                let asked = count("Deleting", &format!("Deleting shard {name} in cluster {cluster}:"));
                prop_assert!(asked >= 1, "deleted without being asked: {}/{}", cluster, name);
            }
        }
        prop_assert!(count("Completed", "") <= 1);
        prop_assert!(story.told.iter().filter(|o| o.severity == Severity::Warning && o.message.starts_with("Job failed")).count() <= 1);
        for o in &story.told {
            prop_assert!(o.message.len() <= MAX_MESSAGE);
            // Only what happened nowhere names no cluster: nothing placed, nothing succeeded.
            let nowhere = o.reason == "Unschedulable"
                || o.message.contains(" over 0 clusters")
                || o.message == "Job completed: 0 succeeded";
            let names_one = ["c1", "c2", "c3"].iter().any(|c| o.message.contains(c));
            prop_assert!(nowhere || names_one, "{:?}", o);
        }
    }
}

#[test]
fn spilled_work_is_told_as_spilled_over_not_as_a_lost_cluster() {
    let prefs =
        r#"{"rebalance": true, "pendingTimeoutSeconds": 10, "clusters": {"*": {"weight": 1}}}"#;
    let mut story = Story::create(2, Some(4), Some(prefs), ready(&["c1", "c2"]));
    story.report("c1", "myjob", running(1));
    story.report("c2", "myjob", running(1));
    let stuck = crate::model::spill::Stuck {
        namespace: "default".into(),
        shard: "myjob".into(),
        local_uid: "local".into(),
        pods: 1,
        since: now() - jiff::SignedDuration::from_secs(60),
        message: "0/1 nodes are available: 1 Insufficient cpu.".into(),
    };
    let next = crate::model::spill::spill_over(
        story.job(),
        &[("c1".to_owned(), stuck)],
        &BTreeMap::new(),
        &story.clusters,
        now(),
    )
    .expect("c1's work moves");
    let told = story.write(edit::finish(next));
    assert_eq!(
        lines(&told),
        [
            (
                "Normal",
                "SplitPlanned",
                "Planned parallelism 2 and 4 completions over 1 cluster: c2 (parallelism 2, completions 4)"
            ),
            (
                "Normal",
                "Deleting",
                "Deleting shard myjob in cluster c1: its pods could not be scheduled there, so its unstarted work moved elsewhere"
            ),
            (
                "Warning",
                "SpilledOver",
                "moved 2 unstarted completions of c1: 1 pod of myjob unschedulable since \
                 2026-11-28T11:59:00Z (0/1 nodes are available: 1 Insufficient cpu) to c2 (2 completions)"
            ),
        ]
    );
}
