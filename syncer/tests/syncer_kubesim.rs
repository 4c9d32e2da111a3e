//! The syncer library, end to end against a simulated member cluster (`fedjob-kubesim`, real
//! HTTP through the `kube` client) and an in-process mock of the scheduler's Agent service
//! (real gRPC on loopback). Every wait is a poll with a deadline; no test sleeps for a fixed time.

mod support;

use std::time::Duration;

use fedjob_proto::v1::ShardPhase;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;
use support::{
    MockScheduler, Pki, Shard, Sim, WAIT, eventually, http_get, init_logging, phase, sample,
};

fn parallelism(job: &Job) -> i32 {
    job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1)
}

fn label<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

async fn start(name: &str, extra: &[&str]) -> (Sim, MockScheduler, fedjob_syncer::Syncer) {
    init_logging();
    let sim = Sim::start(name, Duration::from_secs(3600)).await;
    let mock = MockScheduler::start().await;
    let syncer = sim.syncer(&mock.url, extra).await;
    mock.wait_session().await;
    (sim, mock, syncer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_creates_the_shard_as_the_manifest_says() {
    let (sim, mock, syncer) = start("c1", &["--labels", "region=eu"]).await;
    let record = mock.record();
    assert_eq!(record.registers[0].cluster, "c1");
    assert_eq!(
        record.registers[0].labels.get("region").map(String::as_str),
        Some("eu")
    );
    assert!(
        record.hellos[0].1.held.is_empty(),
        "an empty cluster holds nothing"
    );

    let shard = Shard::new("myjob").counts(3, Some(6));
    mock.assign(shard.run(1)).await;
    let status = mock
        .wait_report("default", "myjob", "RUNNING with pods", |s| {
            phase(s) == ShardPhase::Running && s.active == 3
        })
        .await;

    let job = sim.job("default", "myjob").await.expect("the shard exists");
    assert_eq!(parallelism(&job), 3);
    assert_eq!(job.spec.as_ref().unwrap().completions, Some(6));
    assert_eq!(label(&job, "fedjob.io/job"), Some("myjob"));
    assert_eq!(label(&job, "fedjob.io/job-uid"), Some("uid-myjob"));
    assert_eq!(label(&job, "fedjob.io/managed-by"), Some("fedjob"));
    assert_eq!(label(&job, "team"), Some("demo"));
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("fedjob.io/assignment-revision")
            .map(String::as_str),
        Some("1")
    );
    let managers: Vec<(String, String)> = job
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.operation.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("fedjob-syncer".to_owned(), "Update".to_owned())),
        "created by fedjob-syncer (a plain create; updates are server-side applies): {managers:?}"
    );

    assert_eq!(status.job_uid, "uid-myjob");
    assert_eq!(status.local_uid, job.metadata.uid.clone().unwrap());
    assert_eq!(
        (status.parallelism, status.revision, status.epoch),
        (3, 1, 1)
    );
    assert!(status.start_time.is_some());
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelism_changes_in_place_then_suspend_and_resume() {
    let (sim, mock, syncer) = start("c1", &[]).await;
    let mut shard = Shard::new("scale").counts(2, Some(8));
    mock.assign(shard.run(1)).await;
    mock.wait_report("default", "scale", "running", |s| s.active == 2)
        .await;
    let uid = sim.job("default", "scale").await.unwrap().metadata.uid;

    shard.parallelism = 5;
    mock.assign(shard.run(2)).await;
    mock.wait_report("default", "scale", "5 active", |s| {
        s.active == 5 && s.revision == 2
    })
    .await;
    let job = sim.job("default", "scale").await.unwrap();
    assert_eq!(job.metadata.uid, uid, "changed in place, not re-created");
    assert_eq!(parallelism(&job), 5);
    assert_eq!(
        job.spec.as_ref().unwrap().completions,
        Some(8),
        "completions untouched"
    );

    mock.assign(shard.suspend(3)).await;
    // The Job reads Suspended as soon as its spec says so, its pods go a moment later (the
    // report in between says Suspended with them still active): wait for both.
    let s = mock
        .wait_report("default", "scale", "SUSPENDED, no pod left", |s| {
            phase(s) == ShardPhase::Suspended && s.active == 0
        })
        .await;
    assert!(s.suspended);
    assert_eq!(
        sim.job("default", "scale")
            .await
            .unwrap()
            .spec
            .unwrap()
            .suspend,
        Some(true)
    );

    mock.assign(shard.run(4)).await;
    mock.wait_report("default", "scale", "running again", |s| {
        phase(s) == ShardPhase::Running && s.active == 5 && !s.suspended
    })
    .await;
    assert_eq!(sim.job("default", "scale").await.unwrap().metadata.uid, uid);
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_shard_and_its_pods() {
    let (sim, mock, syncer) = start("c1", &[]).await;
    let shard = Shard::new("doomed").counts(2, Some(2));
    mock.assign(shard.run(1)).await;
    mock.wait_report("default", "doomed", "running", |s| s.active == 2)
        .await;
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let by_job = ListParams::default().labels("job-name=doomed");
    assert_eq!(pods.list(&by_job).await.unwrap().items.len(), 2);

    mock.assign(shard.delete(2)).await;
    let s = mock
        .wait_report("default", "doomed", "DELETED", |s| {
            phase(s) == ShardPhase::Deleted
        })
        .await;
    assert_eq!(s.active, 0);
    assert_eq!(s.revision, 2);
    assert!(
        sim.job("default", "doomed").await.is_none(),
        "the Job is gone"
    );
    eventually(
        "its pods gone too (propagationPolicy Background)",
        WAIT,
        || async {
            pods.list(&by_job)
                .await
                .unwrap()
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_leaves_the_job_and_stops_reporting_it() {
    let (sim, mock, syncer) = start("c1", &[]).await;
    let shard = Shard::new("orphan");
    mock.assign(shard.run(1)).await;
    mock.wait_report("default", "orphan", "running", |s| s.active == 2)
        .await;
    mock.assign(shard.forget()).await;
    // Assignments are taken in order: once a later one is carried out, FORGET was too.
    mock.assign(Shard::new("after-forget").run(1)).await;
    mock.wait_report("default", "after-forget", "running", |s| s.active == 2)
        .await;

    // Edit it: a managed shard would be corrected and reported; a forgotten one is left be.
    let edit = json!({"spec": {"parallelism": 1}});
    sim.jobs("default")
        .patch("orphan", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    eventually("the pods of the edited Job to follow", WAIT, || async {
        let job = sim.job("default", "orphan").await?;
        (job.status?.active == Some(1)).then_some(())
    })
    .await;
    // A later shard is a sync point: the watch is ordered, so once its Job is reported the
    // syncer has seen the edit too.
    let marker = Shard::new("marker");
    mock.assign(marker.run(1)).await;
    mock.wait_report("default", "marker", "marker running", |s| s.active == 2)
        .await;
    let job = sim.job("default", "orphan").await.expect("still there");
    assert_eq!(parallelism(&job), 1, "not re-applied");
    let reports = mock.record().of("default", "orphan");
    assert!(
        reports.iter().all(|s| s.active != 1),
        "a forgotten shard is not reported: {reports:#?}"
    );
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_job_of_the_same_name_is_a_conflict_and_untouched() {
    let (sim, mock, syncer) = start("c1", &[]).await;
    let theirs: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "taken", "labels": {"owner": "someone"}},
        "spec": {"parallelism": 1, "completions": 1, "template": {
            "metadata": {"annotations": {"fedjob.io/sim-duration": "1h"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    let created = sim
        .jobs("default")
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();

    mock.assign(Shard::new("taken").run(1)).await;
    let s = mock
        .wait_report("default", "taken", "CONFLICT", |s| {
            phase(s) == ShardPhase::Conflict
        })
        .await;
    assert_eq!(s.job_uid, "uid-taken");
    assert!(s.message.contains("did not create"), "{}", s.message);
    let now = sim.job("default", "taken").await.unwrap();
    assert_eq!(now.metadata.uid, created.metadata.uid);
    assert_eq!(
        now.metadata.labels, created.metadata.labels,
        "labels untouched"
    );
    assert_eq!(parallelism(&now), 1, "spec untouched");
    assert!(
        now.metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .all(|m| m.manager.as_deref() != Some("fedjob-syncer")),
        "the syncer never wrote to it"
    );
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_namespace_is_reported() {
    let (sim, mock, syncer) = start("c1", &[]).await;
    mock.assign(Shard::new("lost").namespace("nosuchns").run(1))
        .await;
    let s = mock
        .wait_report("nosuchns", "lost", "ERROR NamespaceNotFound", |s| {
            phase(s) == ShardPhase::Error
        })
        .await;
    assert_eq!(s.reason, "NamespaceNotFound");
    assert!(
        s.message.contains("namespaces \"nosuchns\" not found"),
        "{}",
        s.message
    );
    let namespaces: Api<Namespace> = Api::all(sim.client.clone());
    assert!(
        namespaces.get_opt("nosuchns").await.unwrap().is_none(),
        "not created without the flag"
    );
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_namespaces_creates_the_missing_namespace() {
    let (sim, mock, syncer) = start("c1", &["--create-namespaces"]).await;
    mock.assign(Shard::new("fresh").namespace("team-b").run(1))
        .await;
    mock.wait_report("team-b", "fresh", "running in the new namespace", |s| {
        phase(s) == ShardPhase::Running && s.active == 2
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(sim.client.clone());
    assert!(namespaces.get_opt("team-b").await.unwrap().is_some());
    assert!(sim.job("team-b", "fresh").await.is_some());
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_manifest_is_reported_with_the_causes() {
    let (sim, mock, syncer) = start("c1", &[]).await;
    let mut shard = Shard::new("bad");
    shard.extra_spec = json!({"template": {"spec": {"restartPolicy": "Always",
        "containers": [{"name": "c", "image": "busybox"}]}}});
    mock.assign(shard.run(1)).await;
    let s = mock
        .wait_report("default", "bad", "ERROR Invalid", |s| {
            phase(s) == ShardPhase::Error
        })
        .await;
    assert_eq!(s.reason, "Invalid");
    assert!(
        s.message.contains("spec.template.spec.restartPolicy"),
        "{}",
        s.message
    );
    assert!(sim.job("default", "bad").await.is_none());

    // A change the API server refuses on an existing shard (completions) is reported, and the
    // shard keeps running as it was.
    let mut good = Shard::new("fixed").counts(2, Some(4));
    mock.assign(good.run(1)).await;
    mock.wait_report("default", "fixed", "running", |s| s.active == 2)
        .await;
    good.completions = Some(9);
    mock.assign(good.run(2)).await;
    let s = mock
        .wait_report("default", "fixed", "refused update", |s| {
            s.reason == "Invalid"
        })
        .await;
    assert_eq!(phase(&s), ShardPhase::Running, "the Job still runs");
    assert!(s.message.contains("spec.completions"), "{}", s.message);
    assert_eq!(
        sim.job("default", "fixed")
            .await
            .unwrap()
            .spec
            .unwrap()
            .completions,
        Some(4)
    );
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_reports_running_then_complete() {
    let (_sim, mock, syncer) = start("c1", &[]).await;
    mock.assign(
        Shard::new("quick")
            .counts(2, Some(4))
            .pods_run("300ms")
            .run(1),
    )
    .await;
    let done = mock
        .wait_report("default", "quick", "COMPLETE", |s| {
            phase(s) == ShardPhase::Complete
        })
        .await;
    assert_eq!((done.succeeded, done.active, done.failed), (4, 0, 0));
    assert!(done.completion_time.is_some());
    let seen: Vec<ShardPhase> = mock
        .record()
        .of("default", "quick")
        .iter()
        .map(phase)
        .collect();
    assert!(
        seen.contains(&ShardPhase::Running),
        "running was reported first: {seen:?}"
    );
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_deleted_in_the_cluster_is_reported_and_not_recreated() {
    let (sim, mock, syncer) = start("c1", &[]).await;
    let shard = Shard::new("gone");
    mock.assign(shard.run(1)).await;
    mock.wait_report("default", "gone", "running", |s| s.active == 2)
        .await;
    let uid = sim
        .job("default", "gone")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();

    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    sim.jobs("default")
        .delete("gone", &background)
        .await
        .unwrap();
    let s = mock
        .wait_report("default", "gone", "DELETED", |s| {
            phase(s) == ShardPhase::Deleted
        })
        .await;
    assert_eq!(s.local_uid, uid, "the last state of the deleted Job");
    assert!(s.start_time.is_some(), "last known times kept");

    // Even an assignment that (wrongly) allows creating it does not bring it back: this
    // process saw it exist. Its report is the sync point.
    mock.assign(shard.run_create(2, true)).await;
    let s = mock
        .wait_report("default", "gone", "DELETED at revision 2", |s| {
            s.revision == 2
        })
        .await;
    assert_eq!(phase(&s), ShardPhase::Deleted);
    assert!(sim.job("default", "gone").await.is_none(), "not re-created");
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_and_no_create_never_create() {
    let (sim, mock, syncer) = start("c1", &[]).await;
    mock.assign(Shard::new("finished").retain(3)).await;
    mock.assign(Shard::new("seen-before").run_create(2, false))
        .await;
    for name in ["finished", "seen-before"] {
        let s = mock
            .wait_report("default", name, "MISSING", |s| {
                phase(s) == ShardPhase::Missing
            })
            .await;
        assert!(s.revision > 0);
        assert!(sim.job("default", name).await.is_none());
    }
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_corrected() {
    let (sim, mock, syncer) = start("c1", &[]).await;
    mock.assign(Shard::new("drifty").counts(3, Some(6)).run(1))
        .await;
    mock.wait_report("default", "drifty", "running", |s| s.active == 3)
        .await;
    let uid = sim.job("default", "drifty").await.unwrap().metadata.uid;

    let edit = json!({"metadata": {"labels": {"team": null}}, "spec": {"parallelism": 1}});
    sim.jobs("default")
        .patch("drifty", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    let job = eventually("the manifest re-applied", WAIT, || async {
        let job = sim.job("default", "drifty").await?;
        (parallelism(&job) == 3 && label(&job, "team") == Some("demo")).then_some(job)
    })
    .await;
    assert_eq!(job.metadata.uid, uid);
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_syncer_lists_its_shards_and_creates_no_duplicate() {
    let (sim, mock, syncer) = start("c1", &[]).await;
    let shard = Shard::new("survivor").counts(2, Some(4));
    mock.assign(shard.run(1)).await;
    mock.wait_report("default", "survivor", "running", |s| s.active == 2)
        .await;
    let before = sim.job("default", "survivor").await.unwrap();
    drop(syncer); // a crash: every task aborted, nothing said

    let syncer = sim.syncer(&mock.url, &[]).await;
    let hellos = eventually("a second hello", WAIT, || async {
        let r = mock.record();
        (r.hellos.len() >= 2).then_some(r.hellos)
    })
    .await;
    let held = &hellos.last().unwrap().1.held;
    assert_eq!(held.len(), 1, "{held:#?}");
    let h = &held[0];
    assert_eq!(
        (h.shard.as_str(), h.job_uid.as_str()),
        ("survivor", "uid-survivor")
    );
    assert_eq!(h.revision, 0, "nothing held in memory after a restart");
    assert_eq!(h.local_uid, before.metadata.uid.clone().unwrap());
    assert_eq!(
        (phase(h), h.active, h.parallelism),
        (ShardPhase::Running, 2, 2)
    );

    // The scheduler resends the assignment (revision 0 held); the shard is recognised.
    mock.wait_report("default", "survivor", "revision 1 held again", |s| {
        s.revision == 1
    })
    .await;
    let jobs = sim
        .jobs("default")
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<String> = jobs
        .items
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["survivor".to_owned()], "no duplicate");
    let after = sim.job("default", "survivor").await.unwrap();
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "not even rewritten"
    );
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_is_reopened_with_a_new_hello() {
    let (sim, mock, syncer) = start("c1", &[]).await;
    let shard = Shard::new("steady");
    mock.assign(shard.run(1)).await;
    mock.wait_report("default", "steady", "running", |s| s.active == 2)
        .await;

    mock.drop_session().await;
    let hellos = eventually("hello on a new session", WAIT, || async {
        let r = mock.record();
        (r.hellos.len() >= 2).then_some(r.hellos)
    })
    .await;
    let record = mock.record();
    assert_eq!(record.registers.len(), 2, "registered again");
    assert!(
        !record.ends.is_empty(),
        "the agent closed the broken session"
    );
    let (t1, h1) = &hellos[1];
    let gap = *t1 - hellos[0].0;
    assert!(
        gap < Duration::from_secs(6),
        "reconnected within the backoff cap: {gap:?}"
    );
    assert_eq!(h1.held.len(), 1);
    assert_eq!(h1.held[0].revision, 1, "the revision held in memory");
    assert_eq!(h1.held[0].active, 2);

    // And the new session works: a change arrives and is applied.
    let mut more = shard.clone();
    more.parallelism = 3;
    mock.assign(more.run(2)).await;
    mock.wait_report("default", "steady", "scaled", |s| s.active == 3)
        .await;
    assert_eq!(parallelism(&sim.job("default", "steady").await.unwrap()), 3);
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refused_is_retried_and_urls_are_tried_in_turn() {
    init_logging();
    let sim = Sim::start("c1", Duration::from_secs(3600)).await;
    let mock = MockScheduler::start().await;
    mock.refuse_registers(2);
    // The first URL has nobody listening.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let urls = format!("{dead},{}", mock.url);
    let syncer = sim.syncer(&urls, &[]).await;
    mock.wait_session().await;
    assert_eq!(
        mock.record().registers.len(),
        3,
        "two refusals, then accepted"
    );
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_flow_and_a_graceful_stop_closes_the_stream() {
    let (_sim, mock, syncer) = start("c1", &[]).await;
    let beats = eventually("five heartbeats", WAIT, || async {
        let r = mock.record();
        (r.heartbeats.len() >= 5).then_some(r.heartbeats)
    })
    .await;
    let seqs: Vec<u64> = beats.iter().map(|(_, s)| *s).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "increasing: {seqs:?}"
    );
    syncer.stop().await;
    let ends = eventually("the session to end", WAIT, || async {
        let r = mock.record();
        (!r.ends.is_empty()).then_some(r.ends)
    })
    .await;
    assert_eq!(ends[0], Ok(()), "closed cleanly, not broken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_syncer_refuses_other_namespaces() {
    let (sim, mock, syncer) = start("c1", &["--namespace", "default"]).await;
    mock.assign(Shard::new("inside").run(1)).await;
    mock.assign(Shard::new("outside").namespace("kube-public").run(1))
        .await;
    mock.wait_report("default", "inside", "running", |s| s.active == 2)
        .await;
    let s = mock
        .wait_report("kube-public", "outside", "refused", |s| {
            phase(s) == ShardPhase::Error
        })
        .await;
    assert_eq!(s.reason, "NamespaceNotManaged");
    assert!(sim.job("kube-public", "outside").await.is_none());
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() {
    init_logging();
    let pki = Pki::new("c1");
    let sim = Sim::start("c1", Duration::from_secs(3600)).await;
    let mock = MockScheduler::start_tls(&pki.server.0, &pki.server.1, &pki.ca).await;
    let dir = tempfile::tempdir().unwrap();
    let flags = pki.syncer_flags(dir.path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let syncer = sim.syncer(&mock.url, &flags).await;
    mock.wait_session().await;
    assert_eq!(
        mock.record().client_certs,
        vec![1],
        "the client certificate was presented"
    );
    mock.assign(Shard::new("secure").run(1)).await;
    mock.wait_report("default", "secure", "running over TLS", |s| s.active == 2)
        .await;
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_probes_follow_the_session_and_the_writes() {
    let (sim, mut mock, mut syncer) = start("c1", &[]).await;
    let addr = syncer
        .serve_probes("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(http_get(addr, "/healthz").await, (200, "ok".to_owned()));
    eventually("ready", WAIT, || async {
        (http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;

    let shard = Shard::new("metered").counts(2, Some(2));
    mock.assign(shard.run(1)).await;
    mock.wait_report("default", "metered", "RUNNING", |s| {
        phase(s) == ShardPhase::Running
    })
    .await;
    // The watch can deliver the created Job (and so the RUNNING report) before the create's own
    // answer is counted: wait for the count, then check every series exactly.
    let create_ok = r#"fedjob_syncer_cluster_writes_total{verb="create",outcome="ok"}"#;
    let page = eventually("the create counted", WAIT, || async {
        let (code, page) = http_get(addr, "/metrics").await;
        assert_eq!(code, 200);
        sample(&page, create_ok).is_some().then_some(page)
    })
    .await;
    for (series, want) in [
        (create_ok, 1.0),
        (r#"fedjob_syncer_shards{action="RUN"}"#, 1.0),
        ("fedjob_syncer_scheduler_in_sync", 1.0),
        ("fedjob_syncer_scheduler_sessions_total", 1.0),
        ("fedjob_syncer_self_fenced", 0.0),
    ] {
        assert_eq!(sample(&page, series), Some(want), "{series} in\n{page}");
    }
    assert!(sample(&page, "fedjob_syncer_status_reports_total").unwrap() >= 1.0);
    assert!(sample(&page, "fedjob_syncer_scheduler_silent_seconds").unwrap() < 5.0);

    // The scheduler goes away: not ready, and says why; alive all the same.
    mock.halt().await;
    let (code, why) = eventually("not ready", WAIT, || async {
        let (code, body) = http_get(addr, "/readyz").await;
        (code != 200).then_some((code, body))
    })
    .await;
    assert_eq!(code, 503);
    assert!(
        why.contains("no session with a scheduler is in sync (last: http://"),
        "{why}"
    );
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    let (_, page) = http_get(addr, "/metrics").await;
    assert_eq!(sample(&page, "fedjob_syncer_scheduler_in_sync"), Some(0.0));

    mock.restart().await;
    eventually("ready again", WAIT, || async {
        (http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    let (_, page) = http_get(addr, "/metrics").await;
    assert_eq!(
        sample(&page, "fedjob_syncer_scheduler_sessions_total"),
        Some(2.0)
    );
    assert!(sim.job("default", "metered").await.is_some());
    syncer.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the endpoint closes with the syncer"
    );
}
