//! Placement that follows the clusters, end to end (SPEC §10): `fedjob-kubesim` clusters with
//! nodes of given sizes, syncers with `--report-capacity`, the real scheduler, driven with
//! `fedctl` and observed in the member clusters through the kube client.
//!
//! c1 has one node of 2 cpu and c2 one of 4; a local Job outside the federation takes all of
//! c1's cpu for an hour before the federated Jobs come, so their pods requesting 1 cpu each
//! can never be placed in c1. Every expected number follows from those sizes and the even
//! split of SPEC §3 (2 pods over 2 clusters: 1 each; 6 completions: 3 each).

use std::time::Duration;

use fedjob_tests::harness::federation::{PREFERENCES, placements};
use fedjob_tests::harness::{
    Proc, SchedulerProc, SimReady, SyncerProc, bin, eventually, fedctl, free_port, kube_client,
    log_tails,
};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(60);
/// `pendingTimeoutSeconds` of the rebalancing Job.
const PENDING_TIMEOUT: i64 = 3;
/// How late after `PENDING_TIMEOUT` the move may come (the scheduler's tick, a heartbeat).
const MOVE_SLACK: i64 = 5;
/// How long each pod of the federated Jobs runs: c2's three completions of a Job take longer
/// than the move may wait, so c1's shard still has parallelism 1 when its work moves (once
/// c2's shard finished, parallelism would go where the work is, SPEC §4, and c1 would hold 2
/// pending pods).
const POD_SECONDS: i64 = (PENDING_TIMEOUT + MOVE_SLACK) / 3 + 1;

struct Placement {
    dir: tempfile::TempDir,
    sim: Proc,
    ready: SimReady,
    scheduler: SchedulerProc,
    syncers: Vec<SyncerProc>,
}

impl Placement {
    /// c1 (one node of 2 cpu) and c2 (one node of 4 cpu), a scheduler, and a syncer each with
    /// `syncer_flags`; c1's cpu taken by a local Job `hog`.
    async fn start(syncer_flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let args: Vec<String> = [
            "--clusters",
            "c1,c2",
            "--pod-duration",
            "1h",
            "--cluster-nodes",
            "c1=1:cpu=2,memory=8Gi,pods=20",
            "--cluster-nodes",
            "c2=1:cpu=4,memory=8Gi,pods=20",
            "--kubeconfig-out",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([kubeconfig.display().to_string()])
        .collect();
        let mut sim =
            Proc::spawn("fedjob-kubesim", &bin("fedjob-kubesim").unwrap(), &args).unwrap();
        let line = sim.wait_for_line("\"ready\":true", PATIENCE).await.unwrap();
        let ready: SimReady = serde_json::from_str(&line).unwrap();
        let scheduler = SchedulerProc::start(
            free_port(),
            &dir.path().join("data"),
            &["--cluster-grace", "30s"],
        )
        .await
        .unwrap();
        let mut flags = vec!["--heartbeat-interval", "200ms"];
        flags.extend_from_slice(syncer_flags);
        let syncers = ["c1", "c2"]
            .iter()
            .map(|c| SyncerProc::start(&scheduler.url, c, &ready.kubeconfig, &flags).unwrap())
            .collect();
        let placement = Self {
            dir,
            sim,
            ready,
            scheduler,
            syncers,
        };
        let hog = json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "hog"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "w", "image": "busybox",
                                "resources": {"requests": {"cpu": "2"}}}]}}}
        });
        placement
            .local_jobs("c1")
            .await
            .create(
                &PostParams::default(),
                &serde_json::from_value(hog).unwrap(),
            )
            .await
            .unwrap();
        eventually("the hog running on c1's node", PATIENCE, || async {
            let job = placement.local_jobs("c1").await.get("hog").await.ok()?;
            (job.status?.active? == 1).then_some(())
        })
        .await
        .unwrap();
        // Jobs are created only once both clusters are Ready, connected and their capacity known:
        // this test is about full clusters, not about work waiting for its clusters to join
        // (placement_clusters.rs).
        eventually("c1 and c2 Ready with capacity", PATIENCE, || async {
            let out = fedctl(&placement.scheduler.url, &["get", "clusters", "-o", "json"])
                .await
                .ok()?;
            let clusters: Value = serde_json::from_str(&out.stdout).ok()?;
            let ready = |name: &str| {
                clusters["items"].as_array().into_iter().flatten().any(|c| {
                    c["name"] == name
                        && c["state"] == "Ready"
                        && c["connected"] == true
                        && c["capacity"].is_object()
                })
            };
            (ready("c1") && ready("c2")).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", placement.logs()));
        placement
    }

    async fn local_jobs(&self, cluster: &str) -> Api<Job> {
        let client = kube_client(&self.ready.kubeconfig, cluster).await.unwrap();
        Api::namespaced(client, "default")
    }

    fn logs(&self) -> String {
        let mut procs = vec![
            ("scheduler".to_owned(), &self.scheduler.proc, 40),
            ("kubesim".to_owned(), &self.sim, 10),
        ];
        for s in &self.syncers {
            procs.push((format!("syncer {}", s.cluster), &s.proc, 20));
        }
        log_tails(procs)
    }

    /// `fedctl create -f` of a Job of 2 pods and 6 completions, each pod requesting 1 cpu and
    /// running `POD_SECONDS`, with the preferences `prefs`.
    async fn create(&self, name: &str, prefs: &str) {
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "annotations": {PREFERENCES: prefs}},
            "spec": {"parallelism": 2, "completions": 6, "template": {
                "metadata": {"annotations": {"fedjob.io/sim-duration": format!("{POD_SECONDS}s")}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox",
                    "resources": {"requests": {"cpu": "1"}}}]}}}
        });
        let path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, job.to_string()).unwrap();
        let out = fedctl(
            &self.scheduler.url,
            &["create", "-f", &path.display().to_string()],
        )
        .await
        .unwrap();
        assert_eq!(out.code, Some(0), "{}\n{}", out.stderr, self.logs());
    }

    /// `fedctl get job NAME -o json`.
    async fn job(&self, name: &str) -> Value {
        let out = fedctl(&self.scheduler.url, &["get", "job", name, "-o", "json"])
            .await
            .unwrap();
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    }

    /// Waits until the Job satisfies `what`; the Job.
    async fn wait_job(&self, name: &str, why: &str, what: impl Fn(&Value) -> bool) -> Value {
        let found = eventually(why, PATIENCE, || async {
            let job = self.job(name).await;
            what(&job).then_some(job)
        })
        .await;
        found.unwrap_or_else(|e| panic!("{e}\n{:#}\n{}", last_seen(self, name), self.logs()))
    }
}

/// The Job as last seen, for a failure message (blocking is fine: the test is failing).
fn last_seen(p: &Placement, name: &str) -> Value {
    let out = std::process::Command::new(bin("fedctl").unwrap())
        .args([
            "--server",
            &p.scheduler.url,
            "get",
            "job",
            name,
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn condition<'a>(job: &'a Value, type_: &str) -> Option<&'a Value> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn count(value: &Value, field: &str) -> i64 {
    value[field].as_i64().unwrap_or(0)
}

fn time(value: &Value) -> Timestamp {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn pending_work_moves_out_of_a_full_cluster_or_waits_saying_why() {
    let p = Placement::start(&["--report-capacity"]).await;

    // Without rebalance: c1's share waits, and the Job says why.
    p.create(
        "waits",
        r#"{"clusters": {"*": {"weight": 1}}, "pendingTimeoutSeconds": 1}"#,
    )
    .await;
    let waiting = p
        .wait_job("waits", "the PodsUnschedulable condition", |j| {
            condition(j, "PodsUnschedulable").is_some()
        })
        .await;
    let message = condition(&waiting, "PodsUnschedulable").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.starts_with("c1: 1 pod of waits unschedulable since "),
        "{message}"
    );
    // The kube-scheduler's message, as kubesim writes it, then why the work stays.
    assert!(
        message.contains(" (0/1 nodes are available: 1 Insufficient cpu. preemption: "),
        "{message}"
    );
    assert!(
        message.ends_with("); rebalance is false, so the work waits for room there"),
        "{message}"
    );

    // With rebalance: c1's 3 completions move to c2 once its pods have been unschedulable for
    // pendingTimeoutSeconds, and the Job completes with exactly 6.
    p.create(
        "moves",
        &format!(
            r#"{{"rebalance": true, "pendingTimeoutSeconds": {PENDING_TIMEOUT}, "clusters": {{"*": {{"weight": 1}}}}}}"#
        ),
    )
    .await;
    let done = p
        .wait_job("moves", "moves Complete", |j| {
            condition(j, "Complete").is_some()
        })
        .await;
    assert_eq!(count(&done["status"], "succeeded"), 6, "{done:#}");
    let by_cluster = placements(&done);
    assert_eq!(count(&by_cluster["c2"], "succeeded"), 6, "{done:#}");
    assert_eq!(by_cluster.get("c1").map_or(0, |c| count(c, "succeeded")), 0);
    let moved = condition(&done, "SpilledOver").expect("a condition says what moved");
    let message = moved["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "moved 3 unstarted completions of c1: 1 pod of moves unschedulable since "
        ),
        "{message}"
    );
    assert!(message.ends_with(" to c2 (3 completions)"), "{message}");
    // Moved within pendingTimeoutSeconds of the pods becoming unschedulable (plus the
    // scheduler's tick and a report's heartbeat).
    let since = message
        .split(" unschedulable since ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let waited = time(&moved["lastTransitionTime"]).duration_since(since.parse().unwrap());
    assert!(
        waited.as_secs() >= PENDING_TIMEOUT && waited.as_secs() <= PENDING_TIMEOUT + MOVE_SLACK,
        "moved after {waited:?}"
    );
    // The stuck shard is gone from c1; c2 ran the original 3 and the moved 3.
    let c1 = p.local_jobs("c1").await;
    eventually("moves gone from c1", PATIENCE, || async {
        c1.get_opt("moves").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
    let c2 = p.local_jobs("c2").await;
    let shards = c2
        .list(&ListParams::default().labels("fedjob.io/job=moves"))
        .await
        .unwrap();
    let mut completions: Vec<(String, i32)> = shards
        .items
        .iter()
        .map(|j| {
            let name = j.metadata.name.clone().unwrap();
            (name, j.spec.as_ref().unwrap().completions.unwrap())
        })
        .collect();
    completions.sort();
    assert_eq!(
        completions,
        vec![("moves".to_owned(), 3), ("moves-2".to_owned(), 3)]
    );

    // The waiting Job still waits: c2 did its 3, c1's 3 are where they were.
    let waiting = p.job("waits").await;
    assert!(condition(&waiting, "SpilledOver").is_none(), "{waiting:#}");
    assert_eq!(count(&waiting["status"], "succeeded"), 3, "{waiting:#}");
    // Room at last: it runs there, completes with 6, and no longer says it waits.
    c1.delete("hog", &DeleteParams::background()).await.unwrap();
    let done = p
        .wait_job("waits", "waits Complete", |j| {
            condition(j, "Complete").is_some()
        })
        .await;
    assert_eq!(count(&done["status"], "succeeded"), 6, "{done:#}");
    assert_eq!(count(&placements(&done)["c1"], "succeeded"), 3);
    p.wait_job("waits", "the PodsUnschedulable condition gone", |j| {
        condition(j, "PodsUnschedulable").is_none()
    })
    .await;
}
