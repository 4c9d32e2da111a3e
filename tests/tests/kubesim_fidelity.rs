//! Replays the request behind every recorded kube-apiserver v1.24 answer in
//! `tests/fixtures/k8s-facts/` against `fedjob-kubesim` and compares what comes back: status code,
//! `reason`, `message`, `details` and causes exactly, and objects in full once uids,
//! timestamps, resourceVersions and generated name suffixes are normalized.

mod kubesim_support;

use std::collections::BTreeSet;
use std::time::Duration;

use fedjob_tests::kubesim::SimOptions;
use fedjob_tests::kubesim::node::Registration;
use kubesim_support::*;
use serde_json::{Value, json};

const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";

fn myjob() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "myjob", "labels": {"app": "x"},
                     "annotations": {"federation.kubernetes.io/job-preferences": "{\"clusters\":{\"*\":{\"weight\":1}}}"}},
        "spec": {"parallelism": 3, "completions": 6, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "w", "image": "busybox", "command": ["sh", "-c", "echo hi"]}]}}}
    })
}

fn ssa(completions: i64) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "ssa", "labels": {"fedjob.io/managed": "true"}},
        "spec": {"parallelism": 2, "completions": completions, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "w", "image": "busybox"}]}}}
    })
}

fn apply_path(name: &str) -> String {
    format!("{}?fieldManager=fedjob-syncer&force=true", job_path(name))
}

/// The fact files this suite replays; a new file fails `every_fact_is_replayed` until a test
/// replays it.
const REPLAYED: &[&str] = &[
    "01-create-201.json",
    "02-create-again-409.json",
    "03-patch-completions-422.json",
    "04-patch-template-422.json",
    "05-patch-parallelism-200.json",
    "06-create-restartAlways-422.json",
    "07-get-missing-404.json",
    "08-put-stale-rv-409.json",
    "09-ssa-create-201.json",
    "10-ssa-change-completions-422.json",
    "11-watch-from-old-resourceversion.json",
    "12-delete-default.json",
    "13-discovery-batch-v1.json",
    "14-get-status.json",
    "15-completed-job.json",
    "16-failed-job.json",
    "17-pods.json",
    "18-create-in-missing-namespace-404.json",
    "19-list-empty.json",
    "20-watch-events.jsonl",
    "21-list-one.json",
    "22-delete-background.json",
    "23-delete-foreground.json",
    "23-after-foreground-delete-404.json",
    "24-suspended-job.json",
    "25-strategic-merge-patch-200.json",
    "26-json-patch-200.json",
    "27-apply-conflict-409.json",
    "28-list-expired-410.json",
    "30-node-created.json",
    "31-node-untainted.json",
    "32-pod-bound.json",
    "33-pod-unschedulable.json",
    "34-job-partly-unschedulable.json",
    "35-events-failed-scheduling.json",
];

#[test]
fn every_fact_is_replayed() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(facts_dir())
        .expect("the facts directory lists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") || n.ends_with(".jsonl"))
        .collect();
    let replayed: BTreeSet<String> = REPLAYED.iter().map(|s| (*s).to_owned()).collect();
    let missing: Vec<_> = on_disk.difference(&replayed).collect();
    assert!(
        missing.is_empty(),
        "fact files no test replays: {missing:?}"
    );
}

/// 01–10, 12–14: the life of `myjob` and `ssa` on a cluster whose pods run long.
#[tokio::test]
async fn create_patch_update_apply_and_delete_answer_like_the_apiserver() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());

    // 01: defaulting on create, managed fields of the creating manager.
    let created = http.post(JOBS, &myjob()).await;
    assert_eq!(created.status, 201);
    assert_json_eq(
        &normalize(&created.json()),
        &normalize(&fact("01-create-201.json")),
        "01",
    );
    let created_rv = created.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    // 02: the same name again.
    assert_status_like(&http.post(JOBS, &myjob()).await, "02-create-again-409.json");

    // 03: completions are immutable.
    let reply = http
        .patch(
            &job_path("myjob"),
            MERGE,
            &json!({"spec": {"completions": 9}}),
        )
        .await;
    assert_status_like(&reply, "03-patch-completions-422.json");

    // 04: so is the template; the value part of the message is a (shortened) Go dump.
    let reply = http
        .patch(&job_path("myjob"), MERGE, &json!({"spec": {"template": {"spec": {"containers": [{"name": "w", "image": "alpine"}]}}}}))
        .await;
    let expected = fact("04-patch-template-422.json");
    let actual = reply.json();
    assert_eq!(reply.status, 422);
    assert_eq!(actual["reason"], expected["reason"]);
    assert_eq!(actual["details"]["kind"], expected["details"]["kind"]);
    assert_eq!(actual["details"]["group"], expected["details"]["group"]);
    assert_eq!(actual["details"]["name"], expected["details"]["name"]);
    let message = actual["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "Job.batch \"myjob\" is invalid: spec.template: Invalid value: core.PodTemplateSpec{"
        ),
        "{message}"
    );
    assert!(message.ends_with("}: field is immutable"), "{message}");
    assert!(message.contains("Image:\"alpine\""), "{message}");
    let causes = actual["details"]["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0]["field"], "spec.template");
    assert_eq!(causes[0]["reason"], "FieldValueInvalid");
    assert!(
        causes[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid value: core.PodTemplateSpec{")
    );
    assert!(
        causes[0]["message"]
            .as_str()
            .unwrap()
            .ends_with("}: field is immutable")
    );

    // 05: parallelism may change; generation counts spec changes. The recorded answer came
    // before the job controller's first sync, so compare without the status half.
    let reply = http
        .patch(
            &job_path("myjob"),
            MERGE,
            &json!({"spec": {"parallelism": 5}}),
        )
        .await;
    assert_eq!(reply.status, 200);
    let strip_status = |v: &Value| {
        let mut v = v.clone();
        v["status"] = json!({});
        if let Some(fields) = v["metadata"]["managedFields"].as_array_mut() {
            fields.retain(|f| f["subresource"] != "status");
        }
        normalize(&v)
    };
    assert_json_eq(
        &strip_status(&reply.json()),
        &strip_status(&fact("05-patch-parallelism-200.json")),
        "05",
    );

    // 06: restartPolicy Always is refused for Jobs.
    let mut bad = myjob();
    bad["metadata"] = json!({"name": "bad"});
    bad["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    assert_status_like(
        &http.post(JOBS, &bad).await,
        "06-create-restartAlways-422.json",
    );

    // 07: a missing Job.
    assert_status_like(
        &http.get(&job_path("nope")).await,
        "07-get-missing-404.json",
    );

    // 08: optimistic concurrency.
    let mut stale = http.get(&job_path("myjob")).await.json();
    stale["metadata"]["resourceVersion"] = json!(created_rv);
    stale["metadata"]["labels"]["extra"] = json!("1");
    assert_status_like(
        &http.put(&job_path("myjob"), &stale).await,
        "08-put-stale-rv-409.json",
    );

    // 09: server-side apply creates.
    let reply = http.patch(&apply_path("ssa"), APPLY, &ssa(2)).await;
    assert_eq!(reply.status, 201);
    assert_json_eq(
        &normalize(&reply.json()),
        &normalize(&fact("09-ssa-create-201.json")),
        "09",
    );

    // 10: apply does not get around immutability.
    assert_status_like(
        &http.patch(&apply_path("ssa"), APPLY, &ssa(3)).await,
        "10-ssa-change-completions-422.json",
    );

    // 14: the status subresource, once the job controller started both pods.
    let status = eventually("ssa to have 2 active pods", || async {
        let reply = http.get(&format!("{}/status", job_path("ssa"))).await;
        (reply.json()["status"]["active"] == 2).then(|| reply.json())
    })
    .await;
    assert_json_eq(
        &normalize(&status),
        &normalize(&fact("14-get-status.json")),
        "14",
    );

    // 12: a delete without options orphans: finalizer `orphan`, then the Job goes.
    wait_job(&http, "myjob", "myjob to run 5 pods", |j| {
        j["status"]["active"] == 5
    })
    .await;
    let reply = http.delete(&job_path("myjob"), None).await;
    assert_eq!(reply.status, 200);
    assert_json_eq(
        &normalize(&reply.json()),
        &normalize(&fact("12-delete-default.json")),
        "12",
    );
    eventually("myjob to be gone", || async {
        (http.get(&job_path("myjob")).await.status == 404).then_some(())
    })
    .await;
    // Its pods stay, without an owner (as myjob's in 17-pods.json).
    let pods = http
        .get("/api/v1/namespaces/default/pods?labelSelector=job-name%3Dmyjob")
        .await
        .json();
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 5);
    assert!(
        pods.iter()
            .all(|p| p["metadata"].get("ownerReferences").is_none())
    );

    // 13: discovery of batch/v1 (the simulator serves no CronJobs, so lists only Jobs).
    let discovery = http.get("/apis/batch/v1").await.json();
    let recorded = fact("13-discovery-batch-v1.json");
    let recorded_jobs: Vec<&Value> = recorded["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"].as_str().unwrap().starts_with("jobs"))
        .collect();
    let served: Vec<&Value> = discovery["resources"].as_array().unwrap().iter().collect();
    assert_eq!(
        served, recorded_jobs,
        "13: jobs and jobs/status as recorded"
    );
    for key in ["kind", "apiVersion", "groupVersion"] {
        assert_eq!(discovery[key], recorded[key], "13: {key}");
    }

    sim.shutdown().await;
}

/// 11: a watch from an old resourceVersion replays the history.
#[tokio::test]
async fn watch_from_an_old_version_replays() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let created = http.post(JOBS, &myjob()).await.json();
    http.patch(
        &job_path("myjob"),
        MERGE,
        &json!({"spec": {"parallelism": 5}}),
    )
    .await;
    wait_job(&http, "myjob", "5 active", |j| j["status"]["active"] == 5).await;
    http.patch(&apply_path("ssa"), APPLY, &ssa(2)).await;
    wait_job(&http, "ssa", "2 active", |j| j["status"]["active"] == 2).await;

    let events = http
        .watch(&format!(
            "{JOBS}?watch=1&resourceVersion=1&timeoutSeconds=1"
        ))
        .await
        .collect()
        .await;
    let recorded = fact_lines("11-watch-from-old-resourceversion.json");
    // Versions only grow, one JSON object a line.
    let rvs: Vec<u64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
    // The first is the create, exactly as the POST answered it.
    assert_eq!(events[0]["type"], "ADDED");
    assert_json_eq(
        &events[0]["object"],
        &created,
        "11: ADDED is the created object",
    );
    // Every recorded (type, name, generation) appears, in the recorded order; our controller
    // syncs faster than the recorded one, so there are more status updates in between.
    let key = |e: &Value| {
        (
            e["type"].clone(),
            e["object"]["metadata"]["name"].clone(),
            e["object"]["metadata"]["generation"].clone(),
        )
    };
    let mut ours = events.iter().map(key);
    for want in recorded.iter().map(key) {
        assert!(
            ours.any(|k| k == want),
            "11: {want:?} missing or out of order"
        );
    }
    // The last state of each Job is as recorded (active pods, ready 0, startTime).
    for name in ["myjob", "ssa"] {
        let last = |list: &[Value]| -> Value {
            normalize(
                &list
                    .iter()
                    .rev()
                    .find(|e| e["object"]["metadata"]["name"] == name)
                    .unwrap()["object"],
            )
        };
        assert_json_eq(
            &last(&events),
            &last(&recorded),
            &format!("11: last event of {name}"),
        );
    }
    sim.shutdown().await;
}

/// 15: a Job whose pods all succeed.
#[tokio::test]
async fn a_completed_job_looks_like_the_apiserver_one() {
    let sim = cluster(fast_pods()).await;
    let http = Http::new(sim.url());
    assert_eq!(
        http.patch(&apply_path("ssa"), APPLY, &ssa(2)).await.status,
        201
    );
    let job = wait_job(&http, "ssa", "ssa Complete", |j| {
        has_condition(j, "Complete")
    })
    .await;
    assert_json_eq(
        &normalize(&without_managed_fields(&job)),
        &normalize(&fact("15-completed-job.json")),
        "15",
    );
    sim.shutdown().await;
}

/// 16 and 17: a Job whose pods fail past its backoff limit, and its pods.
#[tokio::test]
async fn a_failed_job_and_its_pods_look_like_the_apiserver_ones() {
    let sim = cluster(fast_pods()).await;
    let http = Http::new(sim.url());
    let failing = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "failing"},
        "spec": {"parallelism": 1, "completions": 2, "backoffLimit": 1, "template": {
            "metadata": {"labels": {"fedjob-test/fail": "true"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox", "command": ["false"]}]}}}
    });
    assert_eq!(http.post(JOBS, &failing).await.status, 201);
    let job = wait_job(&http, "failing", "failing Failed", |j| {
        has_condition(j, "Failed")
    })
    .await;
    assert_json_eq(
        &normalize(&without_managed_fields(&job)),
        &normalize(&fact("16-failed-job.json")),
        "16",
    );

    let pods = http
        .get("/api/v1/namespaces/default/pods?labelSelector=job-name%3Dfailing")
        .await;
    assert_eq!(pods.status, 200);
    let pods = pods.json();
    assert_eq!(pods["kind"], "PodList");
    let mut ours: Vec<Value> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p["kind"] = json!("Pod");
            p["apiVersion"] = json!("v1");
            normalize(&p)
        })
        .collect();
    let mut recorded: Vec<Value> = fact("17-pods.json")["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["labels"]["job-name"] == "failing")
        .map(normalize)
        .collect();
    ours.sort_by_key(Value::to_string);
    recorded.sort_by_key(Value::to_string);
    assert_json_eq(&json!(ours), &json!(recorded), "17: the failed Job's pods");
    sim.shutdown().await;
}

/// 18: a create in a namespace that does not exist.
#[tokio::test]
async fn create_in_a_missing_namespace() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let reply = http
        .post("/apis/batch/v1/namespaces/nosuchns/jobs", &myjob())
        .await;
    assert_status_like(&reply, "18-create-in-missing-namespace-404.json");
    sim.shutdown().await;
}

/// 19–22: list by label, watch with bookmarks, a run, and a background delete.
#[tokio::test]
async fn list_watch_and_background_delete() {
    let sim = cluster(SimOptions {
        bookmark_interval: Duration::from_millis(300),
        ..slow_pods()
    })
    .await;
    let http = Http::new(sim.url());
    let selector = format!("{JOBS}?labelSelector=fedjob.io%2Fjob%3Dw1");

    // 19: nothing matches yet.
    let empty = http.get(&selector).await;
    assert_eq!(empty.status, 200);
    assert_json_eq(
        &normalize(&empty.json()),
        &normalize(&fact("19-list-empty.json")),
        "19",
    );
    let rv = empty.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    // 20: watch from that version; a Job of two 3 s pods (as recorded), one at a time. The
    // Job is deleted while its second pod runs, which leaves the test 3 s for that.
    let mut watch = http
        .watch(&format!(
            "{selector}&watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
        ))
        .await;
    let duration = "3s";
    let w1 = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "w1", "labels": {"fedjob.io/job": "w1"}},
        "spec": {"parallelism": 1, "completions": 2, "template": {
            "metadata": {"annotations": {"fedjob.io/sim-duration": duration}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}}}
    });
    assert_eq!(http.post(JOBS, &w1).await.status, 201);
    let mut recorded = fact_lines("20-watch-events.jsonl");
    for event in &mut recorded {
        if let Some(a) =
            event.pointer_mut("/object/spec/template/metadata/annotations/fedjob.io~1sim-duration")
        {
            *a = json!(duration);
        }
    }
    for (i, expected) in recorded.iter().take(3).enumerate() {
        let event = watch.next_change().await.expect("the watch stays open");
        assert_json_eq(
            &normalize(&event),
            &normalize(expected),
            &format!("20: event {i}"),
        );
    }

    // 21: the same list with the Job present (one pod done, one running).
    let one = http.get(&selector).await;
    let mut expected = fact("21-list-one.json");
    expected["items"][0]["spec"]["template"]["metadata"]["annotations"]["fedjob.io/sim-duration"] =
        json!(duration);
    assert_json_eq(&normalize(&one.json()), &normalize(&expected), "21");

    // 22: a background delete answers a Success Status and the Job is gone at once.
    let reply = http
        .delete(
            &job_path("w1"),
            Some(&json!({"propagationPolicy": "Background"})),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_json_eq(
        &normalize(&reply.json()),
        &normalize(&fact("22-delete-background.json")),
        "22",
    );
    assert_eq!(http.get(&job_path("w1")).await.status, 404);

    // 20, continued: DELETED with the last state, then bookmarks.
    let deleted = watch.next_change().await.expect("a DELETED event");
    assert_json_eq(
        &normalize(&deleted),
        &normalize(&recorded[3]),
        "20: DELETED",
    );
    let bookmark = watch.next().await.expect("a BOOKMARK");
    assert_json_eq(
        &normalize(&bookmark),
        &normalize(&recorded[4]),
        "20: BOOKMARK",
    );
    assert_eq!(
        bookmark["object"]["metadata"]["resourceVersion"],
        deleted["object"]["metadata"]["resourceVersion"]
    );
    eventually("w1's pods to be collected", || async {
        let pods = http
            .get("/api/v1/namespaces/default/pods?labelSelector=job-name%3Dw1")
            .await
            .json();
        pods["items"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
    sim.shutdown().await;
}

/// 23: a foreground delete keeps the Job until its pods are gone.
#[tokio::test]
async fn foreground_delete() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let fg = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fg"},
        "spec": {"parallelism": 1, "completions": 1, "template": {
            "metadata": {"annotations": {"fedjob.io/sim-duration": "60s"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}}}
    });
    assert_eq!(http.post(JOBS, &fg).await.status, 201);
    wait_job(&http, "fg", "fg running", |j| j["status"]["active"] == 1).await;
    let reply = http
        .delete(
            &job_path("fg"),
            Some(&json!({"propagationPolicy": "Foreground"})),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_json_eq(
        &normalize(&reply.json()),
        &normalize(&fact("23-delete-foreground.json")),
        "23",
    );
    let gone = eventually("fg to be gone", || async {
        let reply = http.get(&job_path("fg")).await;
        (reply.status == 404).then_some(reply)
    })
    .await;
    assert_status_like(&gone, "23-after-foreground-delete-404.json");
    let pods = http
        .get("/api/v1/namespaces/default/pods?labelSelector=job-name%3Dfg")
        .await
        .json();
    assert!(
        pods["items"].as_array().unwrap().is_empty(),
        "foreground deletion removes the pods"
    );
    sim.shutdown().await;
}

/// 24–27: suspend, strategic merge and JSON patches, and an apply conflict.
#[tokio::test]
async fn suspend_patches_and_apply_conflicts() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let sus = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "sus"},
        "spec": {"parallelism": 2, "completions": 4, "template": {
            "metadata": {"annotations": {"fedjob.io/sim-duration": "60s"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}}}
    });
    assert_eq!(http.post(JOBS, &sus).await.status, 201);
    wait_job(&http, "sus", "sus running", |j| j["status"]["active"] == 2).await;

    // 24: suspending removes the active pods and says so in a condition.
    assert_eq!(
        http.patch(&job_path("sus"), MERGE, &json!({"spec": {"suspend": true}}))
            .await
            .status,
        200
    );
    let job = wait_job(&http, "sus", "sus Suspended", |j| {
        has_condition(j, "Suspended")
    })
    .await;
    assert_json_eq(
        &normalize(&job),
        &normalize(&fact("24-suspended-job.json")),
        "24",
    );
    let pods = http
        .get("/api/v1/namespaces/default/pods?labelSelector=job-name%3Dsus")
        .await
        .json();
    assert!(
        pods["items"].as_array().unwrap().is_empty(),
        "suspending deletes the active pods"
    );

    // 25: a strategic merge patch of parallelism.
    let reply = http
        .patch(
            &job_path("sus"),
            "application/strategic-merge-patch+json",
            &json!({"spec": {"parallelism": 3}}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_json_eq(
        &normalize(&reply.json()),
        &normalize(&fact("25-strategic-merge-patch-200.json")),
        "25",
    );

    // 26: a JSON patch.
    let reply = http
        .patch(
            &job_path("sus"),
            "application/json-patch+json",
            &json!([{"op": "replace", "path": "/spec/parallelism", "value": 1}]),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_json_eq(
        &normalize(&reply.json()),
        &normalize(&fact("26-json-patch-200.json")),
        "26",
    );

    // 27: an apply without force of a field "curl" set.
    let config = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "sus"}, "spec": {"parallelism": 2}});
    let reply = http
        .patch(
            &format!("{}?fieldManager=fedjob-syncer", job_path("sus")),
            APPLY,
            &config,
        )
        .await;
    assert_status_like(&reply, "27-apply-conflict-409.json");
    // With force the applier takes the field over.
    let reply = http.patch(&apply_path("sus"), APPLY, &config).await;
    assert_eq!(reply.status, 200);
    let taken = reply.json();
    assert_eq!(taken["spec"]["parallelism"], 2);
    let owners: Vec<&str> = taken["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m.pointer("/fieldsV1/f:spec/f:parallelism").is_some())
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owners, vec!["fedjob-syncer"]);
    sim.shutdown().await;
}

/// 28: a list at an exact version the history no longer has.
#[tokio::test]
async fn list_at_a_compacted_version_is_expired() {
    let sim = cluster(SimOptions {
        history: 4,
        ..slow_pods()
    })
    .await;
    let http = Http::new(sim.url());
    assert_eq!(http.post(JOBS, &myjob()).await.status, 201);
    for n in 1..=8 {
        let reply = http
            .patch(
                &job_path("myjob"),
                MERGE,
                &json!({"metadata": {"labels": {"n": n.to_string()}}}),
            )
            .await;
        assert_eq!(reply.status, 200);
    }
    let reply = http
        .get(&format!(
            "{JOBS}?resourceVersion=5&resourceVersionMatch=Exact"
        ))
        .await;
    assert_status_like(&reply, "28-list-expired-410.json");
    // A watch from there gets the same news as an ERROR event, and the stream ends.
    let events = http
        .watch(&format!("{JOBS}?watch=1&resourceVersion=5"))
        .await
        .collect()
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
    assert!(
        events[0]["object"]["message"]
            .as_str()
            .unwrap()
            .starts_with("too old resource version: 5 (")
    );
    // A version still in the history is served exactly.
    let current: u64 = http.get(JOBS).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let at = http
        .get(&format!(
            "{JOBS}?resourceVersion={current}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(at.status, 200);
    sim.shutdown().await;
}

/// 30 and 31: a node registered as a kubelet registers it gets the `not-ready` taint from
/// admission, which the node lifecycle controller removes once it sees the node Ready.
#[tokio::test]
async fn a_registered_node_is_tainted_until_seen_ready() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let recorded = fact("30-node-created.json");
    // What the recording POSTed: the node without what the server adds.
    let mut body = recorded.clone();
    for field in ["uid", "resourceVersion", "creationTimestamp"] {
        body["metadata"].as_object_mut().unwrap().remove(field);
    }
    body["spec"] = json!({});
    let created = http.post("/api/v1/nodes", &body).await;
    assert_eq!(created.status, 201, "{}", created.json());
    assert_json_eq(
        &normalize(&without_managed_fields(&created.json())),
        &normalize(&recorded),
        "30",
    );
    let created_rv: u64 = created.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let untainted = eventually("n1 untainted", || async {
        let node = http.get("/api/v1/nodes/n1").await.json();
        node["spec"].get("taints").is_none().then_some(node)
    })
    .await;
    assert_json_eq(
        &normalize(&without_managed_fields(&untainted)),
        &normalize(&fact("31-node-untainted.json")),
        "31",
    );
    let untainted_rv: u64 = untainted["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(untainted_rv > created_rv);
    sim.shutdown().await;
}

/// A Job whose pods each request `cpu` and 1Gi and run an hour, as recorded in 32–35.
fn requesting(name: &str, pods: i64, cpu: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"parallelism": pods, "completions": pods, "template": {
            "metadata": {"annotations": {"fedjob.io/sim-duration": "3600s"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox",
                "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}}}
    })
}

/// The pods of Job `job`.
async fn pods_of(http: &Http, job: &str) -> Vec<Value> {
    let reply = http
        .get(&format!(
            "/api/v1/namespaces/default/pods?labelSelector=job-name%3D{job}"
        ))
        .await;
    assert_eq!(reply.status, 200);
    reply.json()["items"].as_array().unwrap().clone()
}

/// The `PodScheduled` condition's status of a pod ("" before any attempt).
fn scheduled(pod: &Value) -> String {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Waits until Job `job` has `bound` pods bound and `unschedulable` found unschedulable.
async fn wait_placed(http: &Http, job: &str, bound: usize, unschedulable: usize) -> Vec<Value> {
    eventually(
        &format!("{job}: {bound} bound, {unschedulable} unschedulable"),
        || async {
            let pods = pods_of(http, job).await;
            let count = |s: &str| pods.iter().filter(|p| scheduled(p) == s).count();
            (pods.len() == bound + unschedulable
                && count("True") == bound
                && count("False") == unschedulable)
                .then_some(pods)
        },
    )
    .await
}

/// What is left of an event once what differs between runs is set aside: its name (the pod's
/// name and a hex clock), `eventTime` to the microsecond, and the scheduler's host name.
fn normalize_event(event: &Value) -> Value {
    let mut e = event.clone();
    let pod = e["involvedObject"]["name"].as_str().unwrap().to_owned();
    let name = e["metadata"]["name"].as_str().unwrap();
    let hex = name
        .strip_prefix(&format!("{pod}."))
        .unwrap_or_else(|| panic!("event name {name}"));
    assert!(
        !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "event name {name}"
    );
    let pod = normalize(&json!(pod));
    e["metadata"]["name"] = json!(format!("{}.<hex>", pod.as_str().unwrap()));
    let time = e["eventTime"].as_str().unwrap();
    assert!(
        time.len() == 27 && time.parse::<jiff::Timestamp>().is_ok(),
        "eventTime {time}"
    );
    e["eventTime"] = json!("<microtime>");
    let instance = e["reportingInstance"].as_str().unwrap();
    assert!(
        instance.starts_with("default-scheduler-"),
        "reportingInstance {instance}"
    );
    e["reportingInstance"] = json!("default-scheduler-<host>");
    e["kind"] = json!("Event");
    e["apiVersion"] = json!("v1");
    normalize(&e)
}

/// 32–35: two nodes of 2 cpu, 4Gi and 10 pods with no kubelet (so bound pods stay Pending,
/// as recorded), and three Jobs: `fits` (3 × 500m), `toobig` (2 × 3 cpu), `partial` (6 × 900m).
#[tokio::test]
async fn pods_are_bound_where_they_fit_or_stay_pending_with_the_schedulers_message() {
    let node = |name: &str, zone: &str| {
        Registration::new(name)
            .with("cpu", "2")
            .with("memory", "4Gi")
            .with("pods", "10")
            .label("topology.kubernetes.io/zone", zone)
            .without_kubelet()
    };
    let sim = cluster(SimOptions {
        nodes: vec![node("n1", "zone-a"), node("n2", "zone-b")],
        ..slow_pods()
    })
    .await;
    let http = Http::new(sim.url());

    // 32: a bound pod: nodeName, PodScheduled True, still Pending without a kubelet.
    assert_eq!(
        http.post(JOBS, &requesting("fits", 3, "500m")).await.status,
        201
    );
    let fits = wait_placed(&http, "fits", 3, 0).await;
    let recorded = fact("32-pod-bound.json");
    let on_n2 = fits
        .iter()
        .find(|p| p["spec"]["nodeName"] == "n2")
        .expect("a fits pod on n2");
    let mut pod = on_n2.clone();
    pod["kind"] = json!("Pod");
    pod["apiVersion"] = json!("v1");
    assert_json_eq(&normalize(&pod), &normalize(&recorded), "32");

    // 33: a pod that fits nowhere.
    assert_eq!(
        http.post(JOBS, &requesting("toobig", 2, "3")).await.status,
        201
    );
    let toobig = wait_placed(&http, "toobig", 0, 2).await;
    let mut pod = toobig[0].clone();
    pod["kind"] = json!("Pod");
    pod["apiVersion"] = json!("v1");
    assert_json_eq(
        &normalize(&pod),
        &normalize(&fact("33-pod-unschedulable.json")),
        "33",
    );

    // 34: two of `partial`'s six pods fit; the Job counts all six active, none ready.
    assert_eq!(
        http.post(JOBS, &requesting("partial", 6, "900m"))
            .await
            .status,
        201
    );
    wait_placed(&http, "partial", 2, 4).await;
    let job = http.get(&job_path("partial")).await.json();
    assert_json_eq(
        &normalize(&without_managed_fields(&job)),
        &normalize(&fact("34-job-partly-unschedulable.json")),
        "34",
    );

    // 35: one FailedScheduling event per pod that fits nowhere.
    let events = http.get("/api/v1/namespaces/default/events").await;
    assert_eq!(events.status, 200);
    assert_eq!(events.json()["kind"], "EventList");
    let mut ours: Vec<Value> = events.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(normalize_event)
        .collect();
    let mut recorded: Vec<Value> = fact("35-events-failed-scheduling.json")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(normalize_event)
        .collect();
    ours.sort_by_key(Value::to_string);
    recorded.sort_by_key(Value::to_string);
    assert_json_eq(&json!(ours), &json!(recorded), "35");

    // `kubectl describe pod` reads them by the pod's identity.
    let pending = &toobig[0]["metadata"];
    let selector = format!(
        "involvedObject.name={},involvedObject.namespace=default,involvedObject.kind=Pod,involvedObject.uid={}",
        pending["name"].as_str().unwrap(),
        pending["uid"].as_str().unwrap()
    );
    let one = http
        .get(&format!(
            "/api/v1/namespaces/default/events?fieldSelector={}",
            selector.replace('=', "%3D").replace(',', "%2C")
        ))
        .await
        .json();
    assert_eq!(one["items"].as_array().unwrap().len(), 1, "{one}");
    sim.shutdown().await;
}
