//! The `kube` client against `fedjob-kubesim`: what the syncer does (typed `Api<Job>`, apply
//! with a field manager, watchers) works, and the simulated job controller drives Jobs to the
//! states a real cluster would.

mod kubesim_support;

use std::time::Duration;

use fedjob_tests::kubesim::{Fleet, SimCluster, SimOptions};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config};
use kubesim_support::*;
use serde_json::json;

async fn client_for(fleet: &Fleet, context: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&fleet.kubeconfig()).expect("the kubeconfig parses");
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("a kube config");
    Client::try_from(config).expect("a kube client")
}

async fn client(sim: &SimCluster) -> Client {
    let config = Config::new(sim.url().parse().expect("a URL"));
    Client::try_from(config).expect("a kube client")
}

fn job(name: &str, parallelism: i32, completions: Option<i32>, duration: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"fedjob.io/job": name}},
        "spec": {"parallelism": parallelism, "completions": completions, "template": {
            "metadata": {"annotations": {"fedjob.io/sim-duration": duration}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}}}
    }))
    .expect("a Job")
}

fn condition(job: &Job, kind: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn wait_for(api: &Api<Job>, name: &str, what: &str, check: impl Fn(&Job) -> bool) -> Job {
    eventually(what, || async {
        api.get_opt(name).await.expect("get").filter(|j| check(j))
    })
    .await
}

#[tokio::test]
async fn create_get_list_patch_apply_replace_delete() {
    let fleet = Fleet::start(&["c1".to_owned(), "c2".to_owned()], &slow_pods(), 0)
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(client_for(&fleet, "c2").await, "default");

    let created = jobs
        .create(&PostParams::default(), &job("a", 2, Some(4), "600s"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.spec.as_ref().unwrap().backoff_limit, Some(6));
    let uid = created.metadata.uid.clone().unwrap();
    let selector = created.spec.as_ref().unwrap().selector.clone().unwrap();
    assert_eq!(selector.match_labels.unwrap()["controller-uid"], uid);

    // The create landed in c2 only.
    let c1: Api<Job> = Api::namespaced(client_for(&fleet, "c1").await, "default");
    assert!(c1.get_opt("a").await.unwrap().is_none());

    let again = jobs
        .create(&PostParams::default(), &job("a", 2, Some(4), "600s"))
        .await
        .unwrap_err();
    assert!(
        matches!(&again, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{again:?}"
    );

    jobs.create(&PostParams::default(), &job("b", 1, Some(1), "600s"))
        .await
        .unwrap();
    let listed = jobs
        .list(&ListParams::default().labels("fedjob.io/job=a"))
        .await
        .unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(|j| j.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["a"]
    );
    assert!(listed.metadata.resource_version.is_some());
    let all = jobs
        .list(&ListParams::default().labels("fedjob.io/job in (a,b)"))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
    let by_field = jobs
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);

    // Server-side apply as the syncer does it.
    let mut desired = job("a", 3, Some(4), "600s");
    desired
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("fedjob.io/managed-by".into(), "fedjob".into());
    let applied = jobs
        .patch(
            "a",
            &PatchParams::apply("fedjob-syncer").force(),
            &Patch::Apply(&desired),
        )
        .await
        .unwrap();
    assert_eq!(applied.spec.as_ref().unwrap().parallelism, Some(3));
    assert_eq!(applied.metadata.generation, Some(2));
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"fedjob-syncer".to_owned()),
        "{managers:?}"
    );

    // Apply of an immutable change is refused like on a real server.
    let mut immutable = desired.clone();
    immutable.spec.as_mut().unwrap().completions = Some(5);
    let err = jobs
        .patch(
            "a",
            &PatchParams::apply("fedjob-syncer").force(),
            &Patch::Apply(&immutable),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("field is immutable")),
        "{err:?}"
    );

    // A merge patch and a replace with optimistic concurrency.
    let patched = jobs
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"parallelism": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.as_ref().unwrap().parallelism, Some(1));
    let mut stale = created.clone();
    stale
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("x".into(), "y".into());
    let err = jobs
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );
    let mut fresh = jobs.get("a").await.unwrap();
    fresh
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("x".into(), "y".into());
    let replaced = jobs
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.labels.unwrap()["x"], "y");

    // Background deletion answers a Status and the Job is gone; the default orphans.
    let deleted = jobs.delete("a", &DeleteParams::background()).await.unwrap();
    assert!(deleted.is_right(), "background delete answers a Status");
    assert!(jobs.get_opt("a").await.unwrap().is_none());
    let orphaning = jobs.delete("b", &DeleteParams::default()).await.unwrap();
    let terminating = orphaning
        .left()
        .expect("an orphaning delete answers the Job");
    assert_eq!(
        terminating.metadata.finalizers,
        Some(vec!["orphan".to_owned()])
    );
    eventually("b to be gone", || async {
        jobs.get_opt("b").await.unwrap().is_none().then_some(())
    })
    .await;
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_watcher_sees_a_job_go_active_then_complete() {
    let sim = SimCluster::start(SimOptions {
        pod_duration: Duration::from_millis(200),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(client(&sim).await, "default");
    let mut events = watcher(
        jobs.clone(),
        watcher::Config::default().labels("fedjob.io/job=run"),
    )
    .boxed();
    // The initial list is empty.
    assert!(matches!(
        events.try_next().await.unwrap(),
        Some(watcher::Event::Init)
    ));
    assert!(matches!(
        events.try_next().await.unwrap(),
        Some(watcher::Event::InitDone)
    ));

    jobs.create(&PostParams::default(), &job("run", 2, Some(4), "200ms"))
        .await
        .unwrap();
    let mut saw_active = false;
    let completed = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(watcher::Event::Apply(job)) = events.try_next().await.unwrap() {
                let status = job.status.clone().unwrap_or_default();
                if status.active.unwrap_or(0) > 0 {
                    saw_active = true;
                    assert!(
                        status.active.unwrap() <= 2,
                        "never more than parallelism pods"
                    );
                    assert!(status.start_time.is_some());
                }
                if condition(&job, "Complete").is_some() {
                    return job;
                }
            }
        }
    })
    .await
    .expect("the Job completes");
    assert!(
        saw_active,
        "the watcher saw the Job active before it completed"
    );
    let status = completed.status.unwrap();
    assert_eq!(status.succeeded, Some(4));
    assert_eq!(
        status.active, None,
        "active is absent, not 0, once nothing runs"
    );
    assert_eq!(status.ready, Some(0));
    assert!(status.completion_time.is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_failing_job_ends_failed_with_backoff_limit_exceeded() {
    let sim = SimCluster::start(fast_pods()).await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client(&sim).await, "default");
    let mut failing = job("fails", 2, Some(3), "100ms");
    let spec = failing.spec.as_mut().unwrap();
    spec.backoff_limit = Some(2);
    spec.template.metadata.as_mut().unwrap().labels =
        Some([("fedjob-test/fail".to_owned(), "true".to_owned())].into());
    jobs.create(&PostParams::default(), &failing).await.unwrap();
    let failed = wait_for(&jobs, "fails", "Failed", |j| {
        condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(
        condition(&failed, "Failed"),
        Some((
            "BackoffLimitExceeded".to_owned(),
            "Job has reached the specified backoff limit".to_owned()
        ))
    );
    let status = failed.status.unwrap();
    assert!(
        status.failed.unwrap() > 2,
        "failed goes past the backoff limit: {:?}",
        status.failed
    );
    assert_eq!(status.active, None);
    assert_eq!(status.completion_time, None);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_watcher_recovers_from_410_by_listing_again() {
    // A short history and a watch that the server ends every second: when the watcher comes
    // back with the version of the one object it follows, that version has been compacted.
    let sim = SimCluster::start(SimOptions {
        history: 8,
        ..slow_pods()
    })
    .await
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(client(&sim).await, "default");
    jobs.create(&PostParams::default(), &job("followed", 1, Some(1), "600s"))
        .await
        .unwrap();
    let config = watcher::Config::default()
        .labels("fedjob.io/job=followed")
        .timeout(1)
        .disable_bookmarks();
    let mut events = watcher(jobs.clone(), config).boxed();
    let mut inits = 0;
    while inits == 0 {
        if let Some(watcher::Event::InitDone) = events.try_next().await.unwrap() {
            inits += 1;
        }
    }
    // Let the watcher settle on the Job's current version, then churn other objects.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20 {
        jobs.create(
            &PostParams::default(),
            &job(&format!("noise-{i}"), 1, Some(1), "600s"),
        )
        .await
        .unwrap();
    }
    let mut saw_expired = false;
    tokio::time::timeout(PATIENCE, async {
        while inits < 2 {
            match events.next().await.expect("the watcher keeps going") {
                Err(watcher::Error::WatchError(status)) if status.code == 410 => saw_expired = true,
                Ok(watcher::Event::InitDone) => inits += 1,
                _ => {}
            }
        }
    })
    .await
    .expect("the watcher lists again after 410");
    assert!(
        saw_expired,
        "the watch from a compacted version got 410 Expired"
    );
    // And it follows changes again.
    jobs.patch(
        "followed",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"n": "1"}}})),
    )
    .await
    .unwrap();
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(watcher::Event::Apply(j)) = events.next().await.unwrap()
                && j.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.get("n").is_some())
            {
                return;
            }
        }
    })
    .await
    .expect("the watcher sees changes after re-listing");
    sim.shutdown().await;
}

#[tokio::test]
async fn raw_watch_sees_added_modified_deleted_and_bookmarks() {
    let sim = SimCluster::start(SimOptions {
        bookmark_interval: Duration::from_millis(200),
        ..fast_pods()
    })
    .await
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(client(&sim).await, "default");
    let list = jobs.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = jobs
        .watch(
            &WatchParams::default().fields("metadata.name=w").timeout(30),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    jobs.create(&PostParams::default(), &job("w", 1, Some(1), "100ms"))
        .await
        .unwrap();
    wait_for(&jobs, "w", "w complete", |j| {
        condition(j, "Complete").is_some()
    })
    .await;
    jobs.delete("w", &DeleteParams::background()).await.unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(event) = stream.try_next().await.unwrap() {
            let kind = match event {
                WatchEvent::Added(_) => "ADDED",
                WatchEvent::Modified(_) => "MODIFIED",
                WatchEvent::Deleted(_) => "DELETED",
                WatchEvent::Bookmark(_) => "BOOKMARK",
                WatchEvent::Error(e) => panic!("watch error {e:?}"),
            };
            if seen.last() != Some(&kind) || kind != "BOOKMARK" {
                seen.push(kind);
            }
            if seen.ends_with(&["DELETED", "BOOKMARK"]) {
                return;
            }
        }
    })
    .await
    .expect("the watch delivers the whole life of the Job");
    let changes: Vec<&str> = seen.iter().copied().filter(|k| *k != "BOOKMARK").collect();
    assert_eq!(changes.first(), Some(&"ADDED"));
    assert_eq!(changes.last(), Some(&"DELETED"));
    assert!(changes.contains(&"MODIFIED"));
    sim.shutdown().await;
}

#[tokio::test]
async fn suspend_resume_work_queue_deadline_and_ttl() {
    let sim = SimCluster::start(SimOptions {
        pod_duration: Duration::from_millis(150),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(client(&sim).await, "default");

    // Suspend removes the running pods; resuming starts them again.
    jobs.create(&PostParams::default(), &job("sus", 2, Some(4), "60s"))
        .await
        .unwrap();
    wait_for(&jobs, "sus", "sus active", |j| {
        j.status.as_ref().and_then(|s| s.active) == Some(2)
    })
    .await;
    jobs.patch(
        "sus",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    let suspended = wait_for(&jobs, "sus", "Suspended", |j| {
        condition(j, "Suspended").is_some()
    })
    .await;
    assert_eq!(
        condition(&suspended, "Suspended"),
        Some(("JobSuspended".into(), "Job suspended".into()))
    );
    assert_eq!(suspended.status.as_ref().unwrap().active, None);
    let pods = Http::new(sim.url())
        .get("/api/v1/namespaces/default/pods?labelSelector=job-name%3Dsus")
        .await
        .json();
    assert!(
        pods["items"].as_array().unwrap().is_empty(),
        "suspending deletes the running pods"
    );
    jobs.patch(
        "sus",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let resumed = wait_for(&jobs, "sus", "resumed and running", |j| {
        j.status.as_ref().and_then(|s| s.active) == Some(2)
    })
    .await;
    let status = resumed.status.unwrap();
    let suspended_condition = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Suspended")
        .unwrap();
    assert_eq!(suspended_condition.status, "False");
    assert_eq!(suspended_condition.reason.as_deref(), Some("JobResumed"));
    assert_eq!(suspended_condition.message.as_deref(), Some("Job resumed"));

    // A work queue (no completions): done once one pod succeeded and the others ended.
    jobs.create(&PostParams::default(), &job("queue", 3, None, "150ms"))
        .await
        .unwrap();
    let queue = wait_for(&jobs, "queue", "queue Complete", |j| {
        condition(j, "Complete").is_some()
    })
    .await;
    assert_eq!(queue.status.unwrap().succeeded, Some(3));

    // activeDeadlineSeconds fails a Job that runs too long.
    let mut slow = job("deadline", 1, Some(1), "60s");
    slow.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
    jobs.create(&PostParams::default(), &slow).await.unwrap();
    let failed = wait_for(&jobs, "deadline", "DeadlineExceeded", |j| {
        condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(condition(&failed, "Failed").unwrap().0, "DeadlineExceeded");
    assert_eq!(
        failed.status.unwrap().failed,
        Some(1),
        "the running pod counts as failed"
    );

    // ttlSecondsAfterFinished deletes the finished Job.
    let mut ttl = job("ttl", 1, Some(1), "100ms");
    ttl.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(0);
    jobs.create(&PostParams::default(), &ttl).await.unwrap();
    eventually("the TTL controller to delete ttl", || async {
        jobs.get_opt("ttl").await.unwrap().is_none().then_some(())
    })
    .await;

    // restartPolicy OnFailure: failures restart the container until the backoff limit.
    let mut restarts = job("restarts", 1, Some(1), "100ms");
    let spec = restarts.spec.as_mut().unwrap();
    spec.backoff_limit = Some(2);
    spec.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    spec.template.metadata.as_mut().unwrap().labels =
        Some([("fedjob-test/fail".to_owned(), "true".to_owned())].into());
    jobs.create(&PostParams::default(), &restarts)
        .await
        .unwrap();
    let failed = wait_for(&jobs, "restarts", "restarts Failed", |j| {
        condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(
        condition(&failed, "Failed").unwrap().0,
        "BackoffLimitExceeded"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let sim = SimCluster::start(SimOptions {
        token: Some("s3cret".into()),
        ..slow_pods()
    })
    .await
    .unwrap();
    let anonymous: Api<Job> = Api::namespaced(client(&sim).await, "default");
    let err = anonymous.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 401 && s.reason == "Unauthorized"),
        "{err:?}"
    );
    let reply = Http::new(sim.url())
        .with_token("wrong")
        .get("/apis/batch/v1/jobs")
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
    let fleet_options = SimOptions {
        token: Some("s3cret".into()),
        ..slow_pods()
    };
    let fleet = Fleet::start(&["secure".to_owned()], &fleet_options, 0)
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(client_for(&fleet, "secure").await, "default");
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    fleet.shutdown().await;
    sim.shutdown().await;
}
