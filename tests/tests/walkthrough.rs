//! The seed walkthrough, end to end: a scheduler, three simulated member clusters and three
//! syncers, all real processes over loopback TCP, driven with `fedctl` and observed in the
//! member clusters through the kube client, as `kubectl --context=cN get jobs` would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use fedjob_tests::harness::{
    FedctlOutput, SchedulerProc, SimProc, SyncerProc, eventually, fedctl, free_port, kube_client,
    log_tails, wait_complete_args,
};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const CLUSTERS: [&str; 3] = ["c1", "c2", "c3"];
const WAIT: Duration = Duration::from_secs(60);

/// Runs one federation at a time: five of them at once would only measure a busy machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Federation {
    dir: tempfile::TempDir,
    sim: SimProc,
    scheduler: SchedulerProc,
    syncers: Vec<SyncerProc>,
}

impl Federation {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let sim = SimProc::start(&CLUSTERS, &kubeconfig, "300ms")
            .await
            .unwrap();
        let scheduler = SchedulerProc::start(
            free_port(),
            &dir.path().join("data"),
            &["--cluster-grace", "3s"],
        )
        .await
        .unwrap();
        let syncers = CLUSTERS
            .iter()
            .map(|c| SyncerProc::start(&scheduler.url, c, &kubeconfig, &[]).unwrap())
            .collect();
        let fed = Self {
            dir,
            sim,
            scheduler,
            syncers,
        };
        fed.wait_ready().await;
        fed
    }

    async fn wait_ready(&self) {
        eventually("three Ready clusters", WAIT, || async {
            let out = self.fedctl(&["get", "clusters", "-o", "json"]).await;
            let ready = out.code == Some(0)
                && out.json()["items"].as_array().is_some_and(|items| {
                    items.len() == 3
                        && items
                            .iter()
                            .all(|c| c["state"] == "Ready" && c["connected"] == true)
                });
            ready.then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    async fn fedctl(&self, args: &[&str]) -> FedctlOutput {
        fedctl(&self.scheduler.url, args).await.unwrap()
    }

    fn manifest(
        &self,
        name: &str,
        parallelism: i32,
        completions: i32,
        pod: &str,
        prefs: Option<&str>,
    ) -> String {
        let mut job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"parallelism": parallelism, "completions": completions,
                     "template": {"metadata": {"annotations": {"fedjob.io/sim-duration": pod}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "w", "image": "busybox"}]}}}
        });
        if let Some(p) = prefs {
            job["metadata"]["annotations"] = json!({"federation.kubernetes.io/job-preferences": p});
        }
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, serde_yaml::to_string(&job).unwrap()).unwrap();
        path.display().to_string()
    }

    async fn create(&self, file: &str) {
        let out = self.fedctl(&["create", "-f", file]).await;
        assert_eq!(
            out.code,
            Some(0),
            "create failed: {}\n{}",
            out.stderr,
            self.logs()
        );
    }

    async fn job(&self, name: &str) -> Value {
        self.fedctl(&["get", "job", name, "-o", "json"])
            .await
            .ok()
            .json()
    }

    async fn jobs_in(&self, cluster: &str) -> Api<Job> {
        let client = kube_client(&self.sim.ready.kubeconfig, cluster)
            .await
            .unwrap();
        Api::namespaced(client, "default")
    }

    /// The member cluster's Jobs of federated Job `name`, by local name.
    async fn shards(&self, cluster: &str, name: &str) -> BTreeMap<String, Job> {
        let params = ListParams::default().labels(&format!("fedjob.io/job={name}"));
        let list = self.jobs_in(cluster).await.list(&params).await.unwrap();
        list.items
            .into_iter()
            .map(|j| (j.metadata.name.clone().unwrap(), j))
            .collect()
    }

    async fn wait_complete(&self, name: &str) -> Value {
        let out = self
            .fedctl(&wait_complete_args(name, "60s"))
            .await
            .ok_or_show(|| self.logs());
        assert_eq!(out.stdout, format!("job.batch/{name} condition met\n"));
        self.job(name).await
    }

    fn logs(&self) -> String {
        log_tails(
            std::iter::once(("scheduler".to_owned(), &self.scheduler.proc, 30))
                .chain(
                    self.syncers
                        .iter()
                        .map(|s| (s.proc.name.clone(), &s.proc, 20)),
                )
                .chain([("kubesim".to_owned(), &self.sim.proc, 20)]),
        )
    }

    fn kubeconfig(&self) -> PathBuf {
        self.sim.ready.kubeconfig.clone()
    }
}

fn spec(job: &Job) -> (i32, Option<i32>) {
    let s = job.spec.as_ref().unwrap();
    (s.parallelism.unwrap(), s.completions)
}

fn succeeded(job: &Job) -> i32 {
    job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0)
}

#[tokio::test]
async fn the_seed_example_runs_three_by_six_and_completes() {
    let _serial = SERIAL.lock().await;
    let fed = Federation::start().await;
    let file = fed.manifest("myjob", 9, 18, "300ms", None);
    fed.create(&file).await;
    for c in CLUSTERS {
        let shards = eventually("the shard in the member cluster", WAIT, || async {
            let s = fed.shards(c, "myjob").await;
            (!s.is_empty()).then_some(s)
        })
        .await
        .unwrap();
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
    let fed = Federation::start().await;
    let prefs = r#"{"clusters": {"c1": {"weight": 2, "maxReplicas": 4}, "c2": {"weight": 1}, "*": {"weight": 1}}}"#;
    let file = fed.manifest("weighted", 10, 20, "300ms", Some(prefs));
    fed.create(&file).await;
    let plan = fed
        .fedctl(&[
            "plan",
            "--name",
            "weighted",
            "--parallelism",
            "10",
            "--completions",
            "20",
            "--clusters",
            "c1,c2,c3",
            "--preferences",
            prefs,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(
        plan["clusters"]["c1"]["parallelism"], 4,
        "c1 is capped at its maxReplicas"
    );
    for c in CLUSTERS {
        let expected = &plan["clusters"][c];
        let shards = eventually("the shard", WAIT, || async {
            let s = fed.shards(c, "weighted").await;
            (!s.is_empty()).then_some(s)
        })
        .await
        .unwrap();
        let (p, done) = spec(&shards["weighted"]);
        assert_eq!(
            (json!(p), json!(done)),
            (
                expected["parallelism"].clone(),
                expected["completions"].clone()
            ),
            "{c}"
        );
    }
    fed.wait_complete("weighted").await;
}

#[tokio::test]
async fn updates_change_parallelism_in_place_and_add_shards_for_more_completions() {
    let _serial = SERIAL.lock().await;
    let fed = Federation::start().await;
    let file = fed.manifest("myjob", 9, 18, "1500ms", None);
    fed.create(&file).await;
    let mut uids = BTreeMap::new();
    for c in CLUSTERS {
        let shards = eventually("running shards", WAIT, || async {
            let s = fed.shards(c, "myjob").await;
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
            let s = fed.shards(c, "myjob").await;
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
        let shards = fed.shards(c, "myjob").await;
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

#[tokio::test]
async fn orphan_delete_keeps_shards_and_cascading_delete_removes_them() {
    let _serial = SERIAL.lock().await;
    let fed = Federation::start().await;
    fed.create(&fed.manifest("kept", 3, 3, "60s", None)).await;
    fed.create(&fed.manifest("dropped", 3, 3, "60s", None))
        .await;
    for c in CLUSTERS {
        eventually("both shards", WAIT, || async {
            let (a, b) = (fed.shards(c, "kept").await, fed.shards(c, "dropped").await);
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
    let out = fed
        .fedctl(&["delete", "job", "dropped", "--cascade=background"])
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for c in CLUSTERS {
        eventually("the cascaded shard gone", WAIT, || async {
            fed.shards(c, "dropped").await.is_empty().then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    }
    eventually("the federated Job gone", WAIT, || async {
        (fed.fedctl(&["get", "job", "dropped"]).await.code == Some(1)).then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for c in CLUSTERS {
        assert_eq!(
            fed.shards(c, "kept").await.len(),
            1,
            "{c}: orphaned shards stay"
        );
    }
}

#[tokio::test]
async fn a_restarted_syncer_duplicates_nothing_and_status_catches_up() {
    let _serial = SERIAL.lock().await;
    let mut fed = Federation::start().await;
    fed.create(&fed.manifest("myjob", 3, 9, "1s", None)).await;
    let before = eventually("the shard in c2", WAIT, || async {
        let s = fed.shards("c2", "myjob").await;
        (!s.is_empty()).then_some(s)
    })
    .await
    .unwrap();
    fed.syncers[1].proc.kill9().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let kubeconfig = fed.kubeconfig();
    fed.syncers[1] = SyncerProc::start(&fed.scheduler.url, "c2", &kubeconfig, &[]).unwrap();
    let job = fed.wait_complete("myjob").await;
    assert_eq!(job["status"]["succeeded"], 9);
    let after = fed.shards("c2", "myjob").await;
    assert_eq!(
        after.len(),
        1,
        "no duplicate shard: {:?}",
        after.keys().collect::<Vec<_>>()
    );
    assert_eq!(after["myjob"].metadata.uid, before["myjob"].metadata.uid);
}
