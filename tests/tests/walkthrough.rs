//! The seed walkthrough, end to end: a scheduler, three simulated member clusters and three
//! syncers, all real processes over loopback TCP, driven with `fedctl` and observed in the
//! member clusters through the kube client, as `kubectl --context=cN get jobs` would.

use std::collections::BTreeMap;

use fedjob_tests::harness::eventually;
use fedjob_tests::harness::federation::{
    Federation, Setup, WAIT, placements, spec_completions, spec_parallelism, succeeded,
};
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

const CLUSTERS: [&str; 3] = ["c1", "c2", "c3"];

/// Runs one federation at a time: five of them at once would only measure a busy machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Three clusters, a 3 s grace, pods of 300 ms unless a Job says otherwise.
async fn federation() -> Federation {
    let mut setup = Setup::new("3s");
    setup.pod_duration = "300ms".to_owned();
    Federation::start(setup).await
}

fn spec(job: &Job) -> (i32, Option<i32>) {
    (spec_parallelism(job).unwrap(), spec_completions(job))
}

/// Waits until `cluster` holds a shard of the federated Job `name`; every shard by local name.
async fn first_shards(fed: &Federation, cluster: &str, name: &str) -> BTreeMap<String, Job> {
    eventually("the shard in the member cluster", WAIT, || async {
        let s = fed.shards_named(cluster, name).await;
        (!s.is_empty()).then_some(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{cluster}: {e}\n{}", fed.logs()))
}

/// Asserts that `fedctl get job NAME` answers NotFound (not merely that it failed).
async fn assert_not_found(fed: &Federation, name: &str) {
    let out = fed.fedctl(&["get", "job", name]).await;
    assert_eq!(
        (out.code, out.stderr.trim()),
        (
            Some(1),
            format!("Error from server (NotFound): jobs.batch \"{name}\" not found").as_str()
        ),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn the_seed_example_runs_three_by_six_and_completes() {
    let _serial = SERIAL.lock().await;
    let fed = federation().await;
    fed.create("myjob", 9, 18, "300ms", None).await;
    for c in CLUSTERS {
        let shards = first_shards(&fed, c, "myjob").await;
        let local = &shards["myjob"];
        assert_eq!(shards.len(), 1, "{c}: one shard");
        assert_eq!(
            spec(local),
            (3, Some(6)),
            "{c}: kubectl --context={c} get job myjob"
        );
        let labels = local.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["fedjob.io/job"], "myjob");
        assert_eq!(labels["fedjob.io/managed-by"], "fedjob");
        assert_eq!(labels["app"], "myjob");
    }
    let job = fed.wait_complete("myjob").await;
    assert_eq!(job["status"]["succeeded"], 18);
    let conditions = job["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True")
    );
    for p in job["placements"].as_array().unwrap() {
        assert_eq!(
            (p["completions"].clone(), p["succeeded"].clone()),
            (json!(6), json!(6)),
            "{p}"
        );
        assert_eq!(p["state"], "Complete");
    }
    let kubectl = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            &fed.kubeconfig().display().to_string(),
            "--context",
            "c2",
            "get",
            "job",
            "myjob",
        ])
        .output()
        .expect("kubectl is needed by this test (scripts/test installs it)");
    let text = String::from_utf8_lossy(&kubectl.stdout);
    assert!(
        kubectl.status.success() && text.contains("myjob") && text.contains("6/6"),
        "kubectl: {text}"
    );
}

#[tokio::test]
async fn preferences_reach_the_clusters_as_planned() {
    let _serial = SERIAL.lock().await;
    let fed = federation().await;
    let prefs = r#"{"clusters": {"c1": {"weight": 2, "maxReplicas": 4}, "c2": {"weight": 1}, "*": {"weight": 1}}}"#;
    fed.create("weighted", 10, 20, "300ms", Some(prefs)).await;
    // SPEC §3 by hand: weights c1 2, c2 1, c3 1 (through "*"); Webster over weight / (2·s + 1):
    // c1 2 · c2 1 · c3 1 · c1 ⅔ · c1 ⅖ · c2 ⅓ · c3 ⅓ · c1 2/7 (now at its max 4) · c2 ⅕ · c3 ⅕
    // (c2 and c3 tie throughout and end equal) → 4/3/3; completions 20 in proportion → 8/6/6.
    let expected = [("c1", (4, 8)), ("c2", (3, 6)), ("c3", (3, 6))];
    for (c, (p, done)) in expected {
        let shards = first_shards(&fed, c, "weighted").await;
        assert_eq!(shards.len(), 1, "{c}");
        assert_eq!(spec(&shards["weighted"]), (p, Some(done)), "{c}");
    }
    let job = fed.wait_complete("weighted").await;
    assert_eq!(job["status"]["succeeded"], 20);
    for (c, (p, done)) in expected {
        let placement = &placements(&job)[c];
        assert_eq!(
            (&placement["parallelism"], &placement["succeeded"]),
            (&json!(p), &json!(done)),
            "{placement}"
        );
    }
}

#[tokio::test]
async fn updates_change_parallelism_in_place_and_add_shards_for_more_completions() {
    let _serial = SERIAL.lock().await;
    let fed = federation().await;
    fed.create("myjob", 9, 18, "1500ms", None).await;
    let mut uids = BTreeMap::new();
    for c in CLUSTERS {
        let shards = eventually("running shards", WAIT, || async {
            let s = fed.shards_named(c, "myjob").await;
            let started = s
                .get("myjob")
                .is_some_and(|j| j.status.as_ref().is_some_and(|st| st.start_time.is_some()));
            started.then_some(s)
        })
        .await
        .unwrap();
        uids.insert(c, shards["myjob"].metadata.uid.clone().unwrap());
    }

    let out = fed
        .fedctl(&["scale", "job", "myjob", "--parallelism", "12"])
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for c in CLUSTERS {
        let local = eventually("parallelism 4 in place", WAIT, || async {
            let s = fed.shards_named(c, "myjob").await;
            s.get("myjob").filter(|j| spec(j).0 == 4).cloned()
        })
        .await
        .unwrap();
        assert_eq!(
            local.metadata.uid.as_ref(),
            Some(&uids[c]),
            "{c}: the shard was not re-created"
        );
        assert_eq!(spec(&local).1, Some(6));
    }

    let out = fed
        .fedctl(&[
            "patch",
            "job",
            "myjob",
            "-p",
            r#"{"spec":{"completions":24}}"#,
        ])
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let job = fed.wait_complete("myjob").await;
    assert_eq!(job["status"]["succeeded"], 24);
    let mut total = 0;
    let mut planned = 0;
    for c in CLUSTERS {
        let shards = fed.shards_named(c, "myjob").await;
        assert_eq!(shards["myjob"].metadata.uid.as_ref(), Some(&uids[c]));
        for local in shards.values() {
            total += succeeded(local);
            planned += spec(local).1.unwrap();
        }
    }
    assert_eq!(
        (planned, total),
        (24, 24),
        "exactly six more completions ran"
    );
}

/// SPEC §7: an orphaning delete leaves the shards; a cascading one deletes them, and the Job
/// stays visible as terminating, listing the clusters still to confirm, until all have.
#[tokio::test]
async fn orphan_delete_keeps_shards_and_cascading_delete_removes_them() {
    let _serial = SERIAL.lock().await;
    let mut fed = federation().await;
    let kept = fed.create("kept", 3, 3, "60s", None).await;
    fed.create("dropped", 3, 3, "60s", None).await;
    for c in CLUSTERS {
        eventually("both shards", WAIT, || async {
            let (a, b) = (
                fed.shards_named(c, "kept").await,
                fed.shards_named(c, "dropped").await,
            );
            (!a.is_empty() && !b.is_empty()).then_some(())
        })
        .await
        .unwrap();
    }
    let out = fed.fedctl(&["delete", "job", "kept"]).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "job.batch \"kept\" deleted\n")
    );
    assert_not_found(&fed, "kept").await;

    // c3 cannot confirm while its syncer is down.
    fed.kill_syncer("c3").await;
    let out = fed
        .fedctl(&["delete", "job", "dropped", "--cascade=background"])
        .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            Some(0),
            "job.batch \"dropped\" deleted (waiting for c1, c2, c3 to delete its shards)\n"
        ),
        "{}",
        out.stderr
    );
    for c in ["c1", "c2"] {
        eventually("the cascaded shard gone", WAIT, || async {
            fed.shards_named(c, "dropped")
                .await
                .is_empty()
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{c}: {e}\n{}", fed.logs()));
    }
    let describe = eventually("c1 and c2 confirmed", WAIT, || async {
        let out = fed.fedctl(&["describe", "job", "dropped"]).await.ok();
        out.stdout
            .lines()
            .any(|l| l.starts_with("Terminating:") && l.ends_with("; waiting for c3"))
            .then_some(out.stdout)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    let job = fed.job("dropped").await;
    assert!(
        job["metadata"]["deletionTimestamp"].is_string(),
        "{describe}\n{job}"
    );
    assert_eq!(
        fed.shards_named("c3", "dropped").await.len(),
        1,
        "c3's shard waits for its syncer"
    );
    fed.start_syncer("c3");
    eventually("c3's cascaded shard gone", WAIT, || async {
        fed.shards_named("c3", "dropped")
            .await
            .is_empty()
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    eventually("the federated Job gone", WAIT, || async {
        let out = fed.fedctl(&["get", "job", "dropped"]).await;
        (out.code == Some(1)).then_some(())
    })
    .await
    .unwrap();
    assert_not_found(&fed, "dropped").await;

    // The orphaned shards were forgotten, not taken over: a new Job of the same name finds
    // them in its way in every cluster (a conflict), which also shows that every syncer has
    // handled the orphaning delete before it.
    let again = fed.create("kept", 3, 3, "60s", None).await;
    let conflict = eventually("the new Job in conflict everywhere", WAIT, || async {
        let job = fed.job("kept").await;
        placements(&job)
            .values()
            .all(|p| p["state"] == "Conflict")
            .then_some(())
    })
    .await;
    if let Err(e) = conflict {
        panic!("{e}\n{}\n{}", fed.job("kept").await, fed.logs());
    }
    for c in CLUSTERS {
        let shards = fed.shards_named(c, "kept").await;
        assert_eq!(shards.len(), 1, "{c}: the orphaned shard stays");
        let labels = shards["kept"].metadata.labels.as_ref().unwrap();
        assert_eq!(labels["fedjob.io/job-uid"], kept, "{c}: untouched");
        assert_ne!(labels["fedjob.io/job-uid"], again);
    }
}

#[tokio::test]
async fn a_restarted_syncer_duplicates_nothing_and_status_catches_up() {
    let _serial = SERIAL.lock().await;
    let mut fed = federation().await;
    fed.create("myjob", 3, 9, "1s", None).await;
    let before = first_shards(&fed, "c2", "myjob").await;
    fed.kill_syncer("c2").await;
    eventually("c2's syncer seen gone", WAIT, || async {
        let clusters = fed.clusters().await;
        (clusters["c2"]["connected"] == false).then_some(())
    })
    .await
    .unwrap();
    fed.start_syncer("c2");
    let job = fed.wait_complete("myjob").await;
    assert_eq!(job["status"]["succeeded"], 9);
    let after = fed.shards_named("c2", "myjob").await;
    assert_eq!(
        after.len(),
        1,
        "no duplicate shard: {:?}",
        after.keys().collect::<Vec<_>>()
    );
    assert_eq!(after["myjob"].metadata.uid, before["myjob"].metadata.uid);
}
