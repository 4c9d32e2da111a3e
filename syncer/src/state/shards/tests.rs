//! The shard table against the recorded answers of a real API server (`k8s-facts/`).

use super::*;
use crate::fixtures::{as_shard, fact, manifest_text};
use crate::rules::decide::{Step, decide};
use crate::rules::fence::{self, FenceStep, Standing};
use crate::rules::manifest::Manifest;
use fedjob_proto::v1::ShardPhase;
use serde_json::json;

fn assignment(action: AssignmentAction, revision: u64, create: bool) -> Assignment {
    let manifest = match action {
        AssignmentAction::Run => manifest_text(3, false, revision),
        AssignmentAction::Suspend => manifest_text(3, true, revision),
        _ => String::new(),
    };
    Assignment {
        job_uid: "uid-1".into(),
        namespace: "default".into(),
        shard: "myjob".into(),
        epoch: 2,
        generation: 1,
        revision,
        action: action as i32,
        manifest,
        create,
    }
}

fn key() -> ShardKey {
    ShardKey::new("default", "myjob")
}

/// The live Job for the manifest of revision `revision`, at resourceVersion `rv`.
fn live(revision: u64, rv: u64, uid: &str) -> Job {
    let m = Manifest::parse(
        &manifest_text(3, false, revision),
        "default",
        "myjob",
        "uid-1",
    )
    .unwrap();
    let mut v = m.value();
    v["metadata"]["uid"] = json!(uid);
    v["metadata"]["resourceVersion"] = json!(rv.to_string());
    v["status"] = json!({"active": 3, "startTime": "2026-11-28T13:46:54Z"});
    serde_json::from_value(v).unwrap()
}

fn phase(s: &ShardStatus) -> ShardPhase {
    ShardPhase::try_from(s.phase).unwrap()
}

fn listed(shards: &Shards, jobs: Vec<Job>) {
    shards.observe(WatchEvent::Init);
    for j in jobs {
        shards.observe(WatchEvent::InitApply(j));
    }
    shards.observe(WatchEvent::InitDone);
}

#[test]
fn a_new_shard_is_pending_until_created_then_running() {
    let shards = Shards::new();
    listed(&shards, vec![]);
    assert!(shards.is_listed());
    assert!(shards.assign(&assignment(AssignmentAction::Run, 1, true), None));
    assert_eq!(
        shards.status(&key()),
        None,
        "nothing to say before the create"
    );
    shards.record_live(live(1, 10, "local-1"));
    let s = shards.status(&key()).unwrap();
    assert_eq!(phase(&s), ShardPhase::Running);
    assert_eq!((s.active, s.revision, s.epoch), (3, 1, 2));
    assert_eq!(shards.take_reports(), vec![s.clone()]);
    assert!(shards.take_reports().is_empty(), "reported once");
}

#[test]
fn deleted_in_the_cluster_is_reported_with_last_counts_and_not_recreated() {
    let shards = Shards::new();
    listed(&shards, vec![live(1, 10, "local-1")]);
    shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
    let mut last = live(1, 12, "local-1");
    last.status.as_mut().unwrap().succeeded = Some(2);
    let needs = shards.observe(WatchEvent::Delete(last));
    assert!(needs.is_empty(), "a deleted shard is not re-created");
    let plan = shards.plan(&key()).unwrap();
    assert!(plan.seen);
    assert_eq!(decide(&plan), Step::Nothing);
    let s = shards.status(&key()).unwrap();
    assert_eq!(phase(&s), ShardPhase::Deleted);
    assert_eq!((s.active, s.succeeded), (0, 2));
    assert_eq!(s.local_uid, "local-1");
}

#[test]
fn missing_without_create_is_missing() {
    let shards = Shards::new();
    listed(&shards, vec![]);
    shards.assign(&assignment(AssignmentAction::Run, 4, false), None);
    let s = shards.status(&key()).unwrap();
    assert_eq!(phase(&s), ShardPhase::Missing);
    shards.assign(&assignment(AssignmentAction::Retain, 5, false), None);
    assert_eq!(phase(&shards.status(&key()).unwrap()), ShardPhase::Missing);
}

#[test]
fn relist_treats_vanished_jobs_as_deleted() {
    let shards = Shards::new();
    listed(&shards, vec![live(1, 10, "local-1")]);
    shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
    listed(&shards, vec![]);
    assert_eq!(phase(&shards.status(&key()).unwrap()), ShardPhase::Deleted);
}

#[test]
fn drift_from_the_watch_asks_for_a_reconcile() {
    let shards = Shards::new();
    listed(&shards, vec![live(1, 10, "local-1")]);
    shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
    let mut edited = live(1, 11, "local-1");
    edited.spec.as_mut().unwrap().parallelism = Some(7);
    assert_eq!(shards.observe(WatchEvent::Apply(edited)), vec![key()]);
    let same = live(1, 12, "local-1");
    assert!(shards.observe(WatchEvent::Apply(same)).is_empty());
}

#[test]
fn older_observations_are_dropped() {
    let shards = Shards::new();
    listed(&shards, vec![]);
    shards.assign(&assignment(AssignmentAction::Run, 2, true), None);
    shards.record_live(live(2, 20, "local-1"));
    // A watch event from before the write must not look like drift.
    let mut older = live(1, 15, "local-1");
    older.spec.as_mut().unwrap().parallelism = Some(1);
    assert!(shards.observe(WatchEvent::Apply(older)).is_empty());
    assert_eq!(shards.status(&key()).unwrap().parallelism, 3);
}

/// `live` at an opaque resourceVersion `rv`, with `parallelism`.
fn at_version(rv: &str, parallelism: i32) -> Job {
    let mut job = live(1, 0, "local-1");
    job.metadata.resource_version = Some(rv.to_owned());
    job.spec.as_mut().unwrap().parallelism = Some(parallelism);
    job
}

#[test]
fn resource_versions_are_ordered_by_the_watch_not_as_numbers() {
    // Kubernetes defines resourceVersions as opaque strings: "9" delivered after "20" is newer.
    let shards = Shards::new();
    listed(&shards, vec![at_version("20", 3)]);
    shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
    assert_eq!(
        shards.observe(WatchEvent::Apply(at_version("9", 7))),
        vec![key()],
        "a later event is drift to correct, whatever its version looks like"
    );
    assert_eq!(shards.status(&key()).unwrap().parallelism, 7);
}

#[test]
fn a_write_answer_is_newer_than_the_watch_until_the_watch_delivers_it() {
    let shards = Shards::new();
    listed(&shards, vec![at_version("b4", 1)]);
    shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
    // The worker scaled it to 3; the answer came back before the watch caught up.
    shards.record_live(at_version("c1", 3));
    assert!(
        shards
            .observe(WatchEvent::Apply(at_version("b9", 1)))
            .is_empty(),
        "an event from before the write is not drift"
    );
    assert_eq!(shards.status(&key()).unwrap().parallelism, 3);
    assert!(
        shards
            .observe(WatchEvent::Apply(at_version("c1", 3)))
            .is_empty()
    );
    assert_eq!(
        shards.observe(WatchEvent::Apply(at_version("a2", 5))),
        vec![key()],
        "after the write's own event, the watch is current again"
    );
    assert_eq!(shards.status(&key()).unwrap().parallelism, 5);
}

#[test]
fn a_labelled_job_of_another_federated_job_is_a_conflict() {
    let shards = Shards::new();
    let other = |rv| {
        let mut j = live(1, rv, "local-9");
        j.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("fedjob.io/job-uid".into(), "uid-old".into());
        j
    };
    listed(&shards, vec![other(10)]);
    shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
    let plan = shards.plan(&key()).unwrap();
    assert!(matches!(decide(&plan), Step::Conflict { owner: Some(o) } if o == "uid-old"));
    let s = shards.status(&key()).unwrap();
    assert_eq!(phase(&s), ShardPhase::Conflict);
    assert_eq!(s.job_uid, "uid-1");
    // Once that Job is gone, ours may be created.
    let gone = shards.observe(WatchEvent::Delete(other(11)));
    assert_eq!(gone, vec![key()], "a reconcile follows");
    let plan = shards.plan(&key()).unwrap();
    assert!(!plan.seen);
    assert_eq!(
        decide(&plan),
        Step::Create,
        "one plain create, no read first"
    );
}

#[test]
fn forget_stops_reporting_but_hello_still_lists_it() {
    let shards = Shards::new();
    listed(&shards, vec![live(1, 10, "local-1")]);
    shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
    shards.take_reports();
    let forget = Assignment {
        action: AssignmentAction::Forget as i32,
        manifest: String::new(),
        revision: 0,
        ..assignment(AssignmentAction::Run, 1, true)
    };
    assert!(!shards.assign(&forget, None));
    assert!(shards.plan(&key()).is_none(), "nothing held");
    let mut progressed = live(1, 11, "local-1");
    progressed.status.as_mut().unwrap().succeeded = Some(1);
    shards.observe(WatchEvent::Apply(progressed));
    assert!(shards.take_reports().is_empty(), "forgotten: not reported");
    let hello = shards.begin_session();
    assert_eq!(hello.len(), 1);
    assert_eq!(hello[0].revision, 0);
}

#[test]
fn hello_lists_live_jobs_with_held_revisions_and_the_rest_follows() {
    let shards = Shards::new();
    let mut foreign_ns = live(1, 5, "local-2");
    foreign_ns.metadata.name = Some("other".into());
    listed(&shards, vec![live(3, 10, "local-1"), foreign_ns]);
    let hello = shards.begin_session();
    assert_eq!(hello.len(), 2);
    assert!(
        hello.iter().all(|s| s.revision == 0),
        "nothing held after a restart"
    );
    assert!(shards.take_reports().is_empty(), "hello said it all");

    shards.assign(&assignment(AssignmentAction::Run, 3, true), None);
    let mut gone = assignment(AssignmentAction::Run, 1, false);
    gone.shard = "gone".into();
    gone.manifest = gone.manifest.replace("\"myjob\"", "\"gone\"");
    shards.assign(&gone, None);
    let reports = shards.take_reports();
    let names: Vec<(&str, ShardPhase)> = reports
        .iter()
        .map(|s| (s.shard.as_str(), phase(s)))
        .collect();
    assert_eq!(
        names,
        vec![
            ("myjob", ShardPhase::Running),
            ("gone", ShardPhase::Missing)
        ],
        "revision 3 held now; the missing shard is reported"
    );
    let hello = shards.begin_session();
    let mine = hello.iter().find(|s| s.shard == "myjob").unwrap();
    assert_eq!(mine.revision, 3);
    let follow: Vec<String> = shards.take_reports().into_iter().map(|s| s.shard).collect();
    assert_eq!(
        follow,
        vec!["gone".to_string()],
        "only what hello could not say"
    );
}

#[test]
fn delete_reports_deleted_and_is_then_dropped() {
    let shards = Shards::new();
    listed(&shards, vec![live(1, 10, "local-1")]);
    shards.assign(&assignment(AssignmentAction::Delete, 2, false), None);
    let plan = shards.plan(&key()).unwrap();
    assert_eq!(
        decide(&plan),
        Step::Delete {
            uid: Some("local-1".into())
        }
    );
    shards.record_deleted(&key());
    let reports = shards.take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(phase(&reports[0]), ShardPhase::Deleted);
    assert_eq!(reports[0].active, 0);
    assert!(shards.is_empty(), "nothing left to manage");
}

#[test]
fn problems_are_reported_and_cleared() {
    let shards = Shards::new();
    listed(&shards, vec![]);
    shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
    let failures = shards.fail(
        &key(),
        Some(Problem::Error {
            reason: "NamespaceNotFound".into(),
            message: "namespaces \"default\" not found".into(),
        }),
    );
    assert_eq!(failures, 1);
    let s = shards.status(&key()).unwrap();
    assert_eq!(
        (phase(&s), s.reason.as_str()),
        (ShardPhase::Error, "NamespaceNotFound")
    );
    assert_eq!(
        shards.fail(&key(), None),
        2,
        "a quiet failure keeps the problem"
    );
    assert_eq!(shards.status(&key()).unwrap().reason, "NamespaceNotFound");
    shards.succeed(&key());
    assert_eq!(shards.status(&key()), None);
}

#[test]
fn refused_assignments() {
    let shards = Shards::new();
    listed(&shards, vec![]);
    assert!(shards.assign(&assignment(AssignmentAction::Run, 1, true), Some("team-a")));
    let s = shards.status(&key()).unwrap();
    assert_eq!(
        (phase(&s), s.reason.as_str()),
        (ShardPhase::Error, "NamespaceNotManaged")
    );
    assert_eq!(decide(&shards.plan(&key()).unwrap()), Step::Nothing);

    let mut bad = assignment(AssignmentAction::Run, 2, true);
    bad.manifest = "{not json".into();
    shards.assign(&bad, None);
    let s = shards.status(&key()).unwrap();
    assert_eq!(
        (phase(&s), s.reason.as_str()),
        (ShardPhase::Error, "InvalidManifest")
    );
}

#[test]
fn stale_revisions_are_ignored() {
    let shards = Shards::new();
    listed(&shards, vec![]);
    shards.assign(&assignment(AssignmentAction::Run, 5, true), None);
    assert!(!shards.assign(&assignment(AssignmentAction::Suspend, 4, true), None));
    assert_eq!(shards.plan(&key()).unwrap().held.revision, 5);
    assert!(
        shards.assign(&assignment(AssignmentAction::Run, 5, true), None),
        "same revision is re-checked"
    );
}

fn fenced_mark(mut job: Job) -> Job {
    job.spec.as_mut().unwrap().suspend = Some(true);
    job.metadata.annotations.get_or_insert_default().insert(
        fence::FENCED_ANNOTATION.into(),
        "2026-11-28T13:46:54Z".into(),
    );
    job
}

#[test]
fn the_fence_suspends_running_shards_and_lifting_it_resumes_them() {
    let shards = Shards::new();
    let mut other = live(1, 11, "local-2");
    other.metadata.name = Some("other".into());
    listed(&shards, vec![live(1, 10, "local-1"), other]);
    shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
    assert_eq!(shards.standing(), Standing::Unknown);
    assert_eq!(
        shards.fence_step(&key()),
        None,
        "nothing before the lease runs out"
    );

    let mut fenced = shards.fence();
    fenced.sort();
    assert_eq!(
        fenced,
        vec![
            ShardKey::new("default", "myjob"),
            ShardKey::new("default", "other")
        ],
        "held for RUN, and not held at all (no scheduler answered yet)"
    );
    assert_eq!(shards.fence_step(&key()), Some(FenceStep::Suspend));
    shards.record_live(fenced_mark(live(1, 12, "local-1")));
    assert_eq!(shards.fence_step(&key()), None);
    let plan = shards.plan(&key()).unwrap();
    assert_eq!(decide(&plan), Step::Nothing, "not resumed while fenced");
    let s = shards.status(&key()).unwrap();
    assert_eq!(
        (phase(&s), s.reason.as_str()),
        (ShardPhase::Suspended, "SelfFenced")
    );
    let hello = shards.begin_session();
    let mine = hello.iter().find(|s| s.shard == "myjob").unwrap();
    assert!(mine.suspended && mine.reason == "SelfFenced", "{mine:?}");

    // The watch delivers the fence's write (its answer was taken above), then someone resumes
    // it by hand while fenced: suspended again.
    assert!(
        shards
            .observe(WatchEvent::Apply(fenced_mark(live(1, 12, "local-1"))))
            .is_empty()
    );
    assert_eq!(
        shards.observe(WatchEvent::Apply(live(1, 13, "local-1"))),
        vec![key()]
    );
    shards.record_live(fenced_mark(live(1, 14, "local-1")));

    let (before, keys) = shards.in_sync();
    assert_eq!(before, Standing::Fenced);
    assert!(keys.contains(&key()), "{keys:?}");
    assert_eq!(
        shards.fence_step(&key()),
        Some(FenceStep::Resume { suspend: false })
    );
    assert_eq!(shards.in_sync(), (Standing::InSync, Vec::new()), "once");
}

#[test]
fn finished_shards_from_the_facts() {
    let shards = Shards::new();
    let mut done = as_shard(fact("15"), 1);
    done.metadata.name = Some("myjob".into());
    listed(&shards, vec![done.clone()]);
    shards.assign(&assignment(AssignmentAction::Retain, 2, false), None);
    assert_eq!(decide(&shards.plan(&key()).unwrap()), Step::Nothing);
    assert_eq!(phase(&shards.status(&key()).unwrap()), ShardPhase::Complete);
    shards.observe(WatchEvent::Delete(done));
    let s = shards.status(&key()).unwrap();
    assert_eq!((phase(&s), s.succeeded), (ShardPhase::Deleted, 2));
}
