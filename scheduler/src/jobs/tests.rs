use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;

use super::*;
use crate::model::clusters::{ClusterView, Clusters};
use crate::model::edit::{self, ShardReport};
use std::collections::{BTreeMap, BTreeSet};

use crate::model::job::{FederatedJob, Observed, ObservedPhase, Shard, ShardState};

fn clusters(names: &[&str]) -> Clusters {
    names
        .iter()
        .map(|n| {
            let view = ClusterView {
                ready: true,
                ..Default::default()
            };
            (n.to_string(), view)
        })
        .collect()
}

fn now() -> Timestamp {
    "2026-12-06T10:00:00Z".parse().unwrap()
}

/// `default/myjob` over `clusters`, one shard per cluster: parallelism 1 and completions 2 each.
fn created(clusters: &Clusters, uid: &str) -> FederatedJob {
    let n = clusters.len() as i32;
    let job: Job = serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "myjob", "namespace": "default"},
        "spec": {"parallelism": n, "completions": 2 * n,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "w", "image": "busybox"}]}}}
    }))
    .unwrap();
    edit::create(job, uid.into(), clusters, now()).unwrap()
}

fn reported(
    fj: &FederatedJob,
    cluster: &str,
    clusters: &Clusters,
    active: i32,
    succeeded: i32,
) -> FederatedJob {
    let report = ShardReport {
        job_uid: fj.uid().into(),
        namespace: "default".into(),
        shard: "myjob".into(),
        epoch: 0,
        observed: Observed {
            phase: ObservedPhase::Running,
            active,
            succeeded,
            start_time: Some(now()).into(),
            ..Default::default()
        },
    };
    match edit::apply_reports(fj, &[(cluster, &[report])], clusters, now()).0 {
        edit::Next::Put(r) => *r,
        other => panic!("the report changed nothing: {other:?}"),
    }
}

fn stored(record: &FederatedJob) -> StoredJob {
    StoredJob::unwritten(record.clone())
}

#[test]
fn a_change_of_status_alone_tells_no_agent_anything() {
    let all = clusters(&["c1", "c2"]);
    let before = created(&all, "uid-1");
    let after = reported(&before, "c1", &all, 1, 0);
    assert_ne!(before.job.status, after.job.status);
    let (before, after) = (stored(&before), stored(&after));
    let told = changed_assignments(Some(&before), Some(&after));
    assert!(told.is_empty(), "{told:?}");
}

#[test]
fn a_plan_that_changes_no_assignment_tells_no_agent_anything() {
    let all = clusters(&["c1", "c2"]);
    let before = created(&all, "uid-1");
    // A succeeded count plans the Job again; each shard keeps its parallelism of 1.
    let after = reported(&before, "c1", &all, 1, 1);
    let (before, after) = (stored(&before), stored(&after));
    assert!(changed_assignments(Some(&before), Some(&after)).is_empty());
}

#[test]
fn new_revisions_tell_the_clusters_of_those_shards_alone() {
    let all = clusters(&["c1", "c2", "c3", "c4"]);
    let before = created(&all, "uid-1");
    // c4 is gone from the clusters: planning again stops its shard, and may give its
    // parallelism to another cluster.
    let after = reported(&before, "c1", &clusters(&["c1", "c2", "c3"]), 0, 1);
    let revisions = |fj: &FederatedJob, c: &str| -> Vec<u64> {
        fj.shards_of(c).iter().map(|s| s.revision).collect()
    };
    let (b, a) = (stored(&before), stored(&after));
    let told = changed_assignments(Some(&b), Some(&a));
    assert!(told.contains_key("c4"), "{told:?}");
    for c in ["c1", "c2", "c3"] {
        let changed = revisions(&before, c) != revisions(&after, c);
        assert_eq!(told.contains_key(c), changed, "{c}: {told:?}");
    }
}

#[test]
fn a_new_job_a_deleted_one_and_a_replaced_one_tell_every_cluster() {
    let all = clusters(&["c1", "c2"]);
    let job = stored(&created(&all, "uid-1"));
    let other = stored(&created(&all, "uid-2"));
    let every = vec!["c1", "c2"];
    fn list(told: BTreeMap<&str, inbox::ShardRanges>) -> Vec<&str> {
        told.into_keys().collect()
    }
    assert_eq!(list(changed_assignments(None, Some(&job))), every);
    assert_eq!(list(changed_assignments(Some(&job), None)), every);
    assert_eq!(list(changed_assignments(Some(&job), Some(&other))), every);
    // Each cluster with where its shards are in the new version; none once deleted.
    // Each cluster with where its shards are in both versions; none in a deleted one.
    for (cluster, ranges) in changed_assignments(Some(&job), Some(&other)) {
        assert_eq!(
            &other.record.shards[ranges.after],
            other.record.shards_of(cluster)
        );
        assert_eq!(
            &job.record.shards[ranges.before],
            job.record.shards_of(cluster)
        );
    }
    for (cluster, ranges) in changed_assignments(Some(&job), None) {
        assert!(ranges.after.is_empty());
        assert_eq!(
            &job.record.shards[ranges.before],
            job.record.shards_of(cluster)
        );
    }
}

#[test]
fn an_inbox_keeps_the_newest_change_of_each_job_and_the_version_before_the_first() {
    let record = created(&clusters(&["c1", "c2"]), "uid-1");
    let version = |revision| Some(Arc::new(StoredJob::new(record.clone(), revision)));
    let inbox = SessionInbox::default();
    // Version `revision`, posted after the one at `revision - 1`.
    let change = |revision| Changed {
        revision,
        job: version(revision),
        shards: 0..1,
        before: version(revision - 1),
        before_shards: 0..1,
        manifest: Arc::default(),
    };
    inbox.post(&"default/a".into(), change(5));
    // Published out of order: the older one is history.
    inbox.post(&"default/a".into(), change(4));
    inbox.post(&"default/b".into(), change(3));
    inbox.post(&"default/b".into(), change(6));
    inbox.post(&"default/b".into(), change(8));
    let taken: BTreeMap<String, (u64, u64, u64)> = inbox
        .take()
        .into_iter()
        .map(|(k, c)| {
            let revision_of = |j: &Option<Arc<StoredJob>>| j.as_ref().unwrap().mod_revision;
            (
                k.to_string(),
                (c.revision, revision_of(&c.job), revision_of(&c.before)),
            )
        })
        .collect();
    assert_eq!(
        taken,
        BTreeMap::from([
            ("default/a".into(), (5, 5, 4)),
            ("default/b".into(), (8, 8, 2))
        ])
    );
    assert!(inbox.take().is_empty());
}

/// Live shards per cluster counted from scratch, as `shard_counts` did before the index kept
/// the counts: the oracle for the incremental counts.
fn live_from_scratch(index: &JobIndex) -> HashMap<String, i32> {
    let mut counts = HashMap::new();
    for j in index.values() {
        for s in &j.record.shards {
            if matches!(
                s.state,
                ShardState::Active
                    | ShardState::Finished
                    | ShardState::Stopping
                    | ShardState::Retired
            ) {
                *counts.entry(s.cluster.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

const STATES: [ShardState; 6] = [
    ShardState::Active,
    ShardState::Finished,
    ShardState::Lost,
    ShardState::Stopping,
    ShardState::Retired,
    ShardState::Stopped,
];

/// `base` with one shard per `(cluster, state)` of `shards`, in cluster order.
fn with_shards(base: &FederatedJob, shards: &[(usize, usize)]) -> FederatedJob {
    let mut job = base.clone();
    let template = base.shards[0].clone();
    job.shards = shards
        .iter()
        .enumerate()
        .map(|(i, &(cluster, state))| Shard {
            cluster: format!("c{cluster}").into(),
            name: format!("myjob-{i}"),
            state: STATES[state],
            ..template.clone()
        })
        .collect();
    job.shards.sort_by_key(|s| s.cluster);
    job
}

#[test]
fn shard_counts_follow_creates_state_changes_and_deletes() {
    let all = clusters(&["c1", "c2"]);
    let base = created(&all, "uid-1");
    let mut index = JobIndex::default();
    let job = |shards: &[(usize, usize)]| Some(Arc::new(stored(&with_shards(&base, shards))));
    index.insert("default/a", job(&[(1, 0), (2, 0)]));
    index.insert("default/b", job(&[(1, 0)]));
    let expected = |pairs: &[(&str, i32)]| -> HashMap<String, i32> {
        pairs.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    };
    assert_eq!(index.shard_counts(), expected(&[("c1", 2), ("c2", 1)]));
    // c2's shard of `a` is stopped (no longer held), `b`'s finished (still held).
    index.insert("default/a", job(&[(1, 0), (2, 5)]));
    index.insert("default/b", job(&[(1, 1)]));
    assert_eq!(index.shard_counts(), expected(&[("c1", 2)]));
    index.insert("default/a", None);
    index.insert("default/b", None);
    assert_eq!(index.shard_counts(), HashMap::new());
}

proptest::proptest! {
    /// For any sequence of creates, changes and deletes of a few Jobs, the counts and the
    /// Jobs per cluster the index keeps are those found from scratch over the Jobs it holds.
    #[test]
    fn shard_counts_and_jobs_per_cluster_kept_equal_those_from_scratch(
        steps in proptest::collection::vec(
            (0..3usize, proptest::option::of(proptest::collection::vec((0..4usize, 0..6usize), 0..6))),
            1..40,
        )
    ) {
        let all = clusters(&["c1", "c2"]);
        let base = created(&all, "uid-1");
        let mut index = JobIndex::default();
        for (key, shards) in &steps {
            let job = shards.as_ref().map(|s| Arc::new(stored(&with_shards(&base, s))));
            index.insert(&format!("default/j{key}"), job);
            proptest::prop_assert_eq!(index.shard_counts(), live_from_scratch(&index));
            for cluster in ["c0", "c1", "c2", "c3", "c4"] {
                let mut kept = index.in_cluster(cluster);
                kept.sort();
                let mut scratch: Vec<String> = index
                    .keys()
                    .filter(|k| index.get(k).unwrap().record.clusters().contains(cluster))
                    .cloned()
                    .collect();
                scratch.sort();
                proptest::prop_assert_eq!(kept, scratch, "{}", cluster);
            }
        }
    }
}

/// `base` with one shard per `(cluster, name, revision, state)` of `shards`, in cluster order.
fn with_revisions(base: &FederatedJob, shards: &[(usize, usize, u64, usize)]) -> FederatedJob {
    let mut job = base.clone();
    let template = base.shards[0].clone();
    job.shards = shards
        .iter()
        .map(|&(cluster, name, revision, state)| Shard {
            cluster: format!("c{cluster}").into(),
            name: format!("myjob-{name}"),
            revision,
            state: STATES[state],
            ..template.clone()
        })
        .collect();
    job.shards.sort_by_key(|s| s.cluster);
    job
}

proptest::proptest! {
    /// For any two versions of a Job, the clusters told are exactly those where the shards an
    /// agent session compares (name, revision, stopped) differ, cluster by cluster.
    #[test]
    fn tells_the_clusters_whose_shards_differ(
        before in proptest::collection::vec((0..4usize, 0..2usize, 1..3u64, 0..6usize), 0..8),
        after in proptest::collection::vec((0..4usize, 0..2usize, 1..3u64, 0..6usize), 0..8),
    ) {
        let base = created(&clusters(&["c0", "c1"]), "uid-1");
        let (b, a) = (with_revisions(&base, &before), with_revisions(&base, &after));
        let expected: BTreeSet<String> = (0..4)
            .map(|c| format!("c{c}"))
            .filter(|c| {
                let told_in = |fj: &FederatedJob| -> Vec<(String, u64, bool)> {
                    fj.shards_of(c)
                        .iter()
                        .map(|s| (s.name.clone(), s.revision, s.state == ShardState::Stopped))
                        .collect()
                };
                told_in(&b) != told_in(&a)
            })
            .collect();
        let (b, a) = (stored(&b), stored(&a));
        let told = changed_assignments(Some(&b), Some(&a));
        let clusters: BTreeSet<String> = told.keys().map(|c| c.to_string()).collect();
        proptest::prop_assert_eq!(clusters, expected);
        // Each with where its shards are in the new version.
        for (cluster, ranges) in told {
            proptest::prop_assert_eq!(&a.record.shards[ranges.after], a.record.shards_of(cluster));
            proptest::prop_assert_eq!(&b.record.shards[ranges.before], b.record.shards_of(cluster));
        }
    }
}
