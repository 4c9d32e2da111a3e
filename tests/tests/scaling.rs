//! Changing the counts of a running federated Job, end to end (issue 13 §1): a scheduler,
//! simulated member clusters and a syncer each, all real processes over loopback TCP, driven
//! with `fedctl` and observed in the member clusters with `kubectl`.
//!
//! - Lowering `completions` below what already ran: the federated Job completes with the
//!   honest total, the shards that ran stay in their clusters, suspended, with their counts and
//!   an annotation saying the federation stopped them; the shards that never ran are deleted.
//! - A cluster uncordoned after the Job was created, then the Job scaled: all of the new
//!   parallelism runs in the clusters that hold the work (SPEC §3, §6).

use std::process::Command;

use fedjob_tests::harness::federation::{Federation, Setup, WAIT, strings};
use fedjob_tests::harness::{FedctlOutput, eventually, wait_complete_args};
use serde_json::{Value, json};

/// One federation at a time: two at once would only measure a busy machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Clusters `clusters` with a grace far longer than any pause below: none is taken for
/// NotReady while its agent is frozen.
async fn start(clusters: &[&str]) -> Federation {
    let mut setup = Setup::new("30s");
    setup.clusters = strings(clusters);
    Federation::start(setup).await
}

/// `fedctl ARGS`, which must succeed.
async fn run(fed: &Federation, args: &[&str]) -> FedctlOutput {
    fed.fedctl(args).await.ok_or_show(|| fed.logs())
}

/// Waits until the federated Job's status satisfies `what`; the Job.
async fn wait_status(
    fed: &Federation,
    name: &str,
    why: &str,
    what: impl Fn(&Value) -> bool,
) -> Value {
    let job = eventually(why, WAIT, || async {
        let job = fed.job(name).await;
        what(&job["status"]).then_some(job)
    })
    .await;
    match job {
        Ok(job) => job,
        Err(e) => panic!("{e}\n{}\n{}", fed.job(name).await, fed.logs()),
    }
}

/// `kubectl --context=CLUSTER get job NAME -o json`: the Job, or `None` when NotFound.
fn kubectl_job(fed: &Federation, cluster: &str, name: &str) -> Option<Value> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(fed.kubeconfig())
        .args(["--context", cluster, "get", "job", name, "-o", "json"])
        .output()
        .expect("kubectl runs");
    if out.status.success() {
        return Some(serde_json::from_slice(&out.stdout).expect("kubectl prints JSON"));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NotFound"),
        "kubectl --context={cluster} get job {name}: {stderr}"
    );
    None
}

/// Sends `signal` (`STOP` or `CONT`) to every syncer process: the member clusters go on while
/// their agents are frozen.
fn signal_syncers(fed: &Federation, signal: &str) {
    for s in fed.syncers.values() {
        let pid = s.proc.pid().expect("the syncer runs").to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

fn count(status: &Value, field: &str) -> i64 {
    status[field].as_i64().unwrap_or(0)
}

fn local_count(job: &Value, field: &str) -> i64 {
    job["status"][field].as_i64().unwrap_or(0)
}

#[tokio::test]
async fn lowering_completions_keeps_the_shards_that_ran_suspended_with_their_counts() {
    let _serial = SERIAL.lock().await;
    let clusters = ["c1", "c2", "c3"];
    let fed = start(&clusters).await;
    // Every pod runs 5 s: the waves below are far apart compared with the steps between them.
    fed.create("myjob", 9, 18, "5s", None).await;
    wait_status(
        &fed,
        "myjob",
        "the first wave done, the second running",
        |s| count(s, "succeeded") == 9 && count(s, "active") == 9,
    )
    .await;
    // More completions: each cluster gets a shard `myjob-2` that waits behind `myjob` (no
    // parallelism is free for it), so it never runs a pod.
    run(&fed, &["scale", "job", "myjob", "--completions", "21"]).await;
    for c in clusters {
        eventually("the waiting shard exists", WAIT, || async {
            kubectl_job(&fed, c, "myjob-2").map(|_| ())
        })
        .await
        .unwrap();
    }
    // One pod per cluster runs on: 9 succeeded, 3 running.
    run(&fed, &["scale", "job", "myjob", "--parallelism", "3"]).await;
    wait_status(&fed, "myjob", "9 succeeded and 3 running", |s| {
        count(s, "succeeded") == 9 && count(s, "active") == 3
    })
    .await;

    run(
        &fed,
        &[
            "patch",
            "job",
            "myjob",
            "-p",
            r#"{"spec":{"completions":10}}"#,
        ],
    )
    .await;
    // The 3 running pods finish at about the same time; the agents are frozen meanwhile, so
    // all three have finished in their clusters before the federation hears of the first (and
    // stops the shards, which stops the pods each cluster starts next).
    signal_syncers(&fed, "STOP");
    for c in clusters {
        let done = eventually("the running pod finished in its cluster", WAIT, || async {
            kubectl_job(&fed, c, "myjob").filter(|j| local_count(j, "succeeded") == 4)
        })
        .await;
        if done.is_err() {
            signal_syncers(&fed, "CONT");
            panic!("{c}: {done:?}\n{}", fed.logs());
        }
    }
    signal_syncers(&fed, "CONT");

    let out = run(&fed, &wait_complete_args("myjob", "60s")).await;
    assert_eq!(out.stdout, "job.batch/myjob condition met\n");
    // The first report completes the Job; the other clusters' reports of their finished pod
    // still count (9 before the patch and the 3 that were running).
    wait_status(&fed, "myjob", "succeeded 12", |s| {
        count(s, "succeeded") == 12
    })
    .await;
    for c in clusters {
        // The shard that ran stays, suspended by the federation, with its counts.
        let shard = eventually("the shard suspended and kept", WAIT, || async {
            kubectl_job(&fed, c, "myjob").filter(|j| j["spec"]["suspend"] == true)
        })
        .await
        .unwrap_or_else(|e| panic!("{c}: {e}\n{}", fed.logs()));
        assert_eq!(
            shard["metadata"]["annotations"]["fedjob.io/stopped"],
            "the federated Job reached its completions",
            "{c}: {shard}"
        );
        assert_eq!(
            (
                local_count(&shard, "succeeded"),
                local_count(&shard, "failed")
            ),
            (4, 0),
            "{c}: kubectl --context={c} get job myjob"
        );
        assert_eq!(shard["spec"]["completions"], 6, "{c}");
        // The shard that never ran is deleted.
        eventually("the shard that never ran deleted", WAIT, || async {
            kubectl_job(&fed, c, "myjob-2").is_none().then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{c}: {e}\n{}", fed.logs()));
    }
    // With every shard settled, the federated Job is still Complete with the same total.
    let job = eventually("every shard settled", WAIT, || async {
        let job = fed.job("myjob").await;
        let settled = job["placements"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["state"] == "Stopped"));
        settled.then_some(job)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    assert_eq!(job["status"]["succeeded"], 12, "{job}");
    let conditions = job["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True"),
        "{job}"
    );
    for p in job["placements"].as_array().unwrap() {
        assert_eq!(
            (p["succeeded"].clone(), p["state"].clone()),
            (json!(4), json!("Stopped")),
            "{p}"
        );
    }
}

#[tokio::test]
async fn scaling_after_an_uncordon_runs_all_the_parallelism_where_the_work_is() {
    let _serial = SERIAL.lock().await;
    let clusters = ["c1", "c2", "c3", "c4"];
    let fed = start(&clusters).await;
    run(&fed, &["cordon", "c4"]).await;
    // Pods that outlive the test: the counts below are those of running pods.
    fed.create("myjob", 9, 18, "10m", None).await;
    wait_status(&fed, "myjob", "9 running", |s| count(s, "active") == 9).await;
    run(&fed, &["uncordon", "c4"]).await;
    run(&fed, &["scale", "job", "myjob", "--parallelism", "12"]).await;
    // c4 joined after the Job was created and no completions were added: it takes no part
    // (SPEC §6), so the clusters holding the work run 12 in all.
    let job = wait_status(&fed, "myjob", "12 running", |s| count(s, "active") == 12).await;
    for c in ["c1", "c2", "c3"] {
        let shard = kubectl_job(&fed, c, "myjob").expect("the shard");
        assert_eq!(
            (
                shard["spec"]["parallelism"].clone(),
                local_count(&shard, "active")
            ),
            (json!(4), 4),
            "{c}: kubectl --context={c} get job myjob"
        );
    }
    assert_eq!(kubectl_job(&fed, "c4", "myjob"), None, "c4 runs nothing");
    let placements: Vec<(Value, Value)> = job["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["cluster"].clone(), p["parallelism"].clone()))
        .filter(|(_, p)| p != 0)
        .collect();
    assert_eq!(
        placements,
        vec![
            (json!("c1"), json!(4)),
            (json!("c2"), json!(4)),
            (json!("c3"), json!(4))
        ]
    );
    let conditions = job["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        conditions.iter().all(|c| c["type"] != "Unschedulable"),
        "nothing is unplaced: {job}"
    );
}
