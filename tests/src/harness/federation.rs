//! A whole federation of real processes for end-to-end tests: one `fedjob-kubesim` hosting the
//! member clusters, a scheduler, and a syncer per cluster, driven with `fedctl` and observed in
//! the member clusters through the kube client (as `kubectl --context=CLUSTER` would).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use super::{
    FedctlOutput, SchedulerProc, SimProc, SyncerProc, eventually, fedctl, free_port, kube_client,
    log_tails, wait_complete_args,
};

/// How long any condition of a federation may take on a busy CI machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// The preferences annotation.
pub const PREFERENCES: &str = "federation.kubernetes.io/job-preferences";

/// How a federation is started.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The member clusters, also the syncers' cluster names and the kubeconfig's contexts.
    pub clusters: Vec<String>,
    /// Extra flags of the scheduler.
    pub scheduler: Vec<String>,
    /// Extra flags of every syncer.
    pub syncer: Vec<String>,
    /// How long a simulated pod runs when its template does not say.
    pub pod_duration: String,
    /// Extra flags of `fedjob-kubesim` (nodes of each cluster: `--cluster-nodes`).
    pub sim: Vec<String>,
}

impl Setup {
    /// Clusters c1, c2 and c3, a scheduler whose clusters are NotReady after `grace`, and
    /// syncers that heartbeat as the scheduler asks.
    pub fn new(grace: &str) -> Self {
        Self {
            clusters: ["c1", "c2", "c3"].map(str::to_owned).to_vec(),
            scheduler: strings(&["--cluster-grace", grace]),
            syncer: Vec::new(),
            pod_duration: "1s".to_owned(),
            sim: Vec::new(),
        }
    }
}

/// Owned copies of `args`.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// A `batch/v1` Job of `parallelism` and `completions` (none: a work queue) whose simulated pods
/// run for `pod`, labelled `app: NAME`, with the preferences annotation `prefs` when given.
pub fn job_manifest(
    name: &str,
    parallelism: i32,
    completions: Option<i32>,
    pod: &str,
    prefs: Option<&str>,
) -> Value {
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"parallelism": parallelism,
                 "template": {"metadata": {"annotations": {"fedjob.io/sim-duration": pod}},
                              "spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "w", "image": "busybox"}]}}}
    });
    if let Some(c) = completions {
        job["spec"]["completions"] = json!(c);
    }
    if let Some(prefs) = prefs {
        job["metadata"]["annotations"] = json!({ PREFERENCES: prefs });
    }
    job
}

/// A running federation; every process is killed when it drops.
pub struct Federation {
    /// Scratch directory: kubeconfig, the scheduler's data, manifests.
    pub dir: tempfile::TempDir,
    /// How it was started.
    pub setup: Setup,
    /// The scheduler's port, kept across restarts.
    pub port: u16,
    /// The simulated member clusters.
    pub sim: SimProc,
    /// The scheduler.
    pub scheduler: SchedulerProc,
    /// The syncers by cluster.
    pub syncers: BTreeMap<String, SyncerProc>,
    clients: BTreeMap<String, kube::Client>,
}

impl Federation {
    /// Starts everything and waits until every cluster is Ready and connected.
    pub async fn start(setup: Setup) -> Self {
        let mut fed = Self::start_without_syncers(setup).await;
        for c in fed.setup.clusters.clone() {
            fed.start_syncer(&c);
        }
        fed.wait_ready(&fed.cluster_names()).await;
        fed
    }

    /// Starts the clusters and the scheduler only; [`Federation::start_syncer`] adds syncers.
    pub async fn start_without_syncers(setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let clusters: Vec<&str> = setup.clusters.iter().map(String::as_str).collect();
        let sim = SimProc::start_with(&clusters, &kubeconfig, &setup.pod_duration, &setup.sim)
            .await
            .unwrap();
        let port = free_port();
        let scheduler = start_scheduler(port, &dir.path().join("data"), &setup.scheduler).await;
        let mut clients = BTreeMap::new();
        for c in &setup.clusters {
            clients.insert(
                c.clone(),
                kube_client(&sim.ready.kubeconfig, c).await.unwrap(),
            );
        }
        Self {
            dir,
            setup,
            port,
            sim,
            scheduler,
            syncers: BTreeMap::new(),
            clients,
        }
    }

    /// The member clusters' names.
    pub fn cluster_names(&self) -> Vec<&str> {
        self.setup.clusters.iter().map(String::as_str).collect()
    }

    /// The kubeconfig with a context per member cluster.
    pub fn kubeconfig(&self) -> &Path {
        &self.sim.ready.kubeconfig
    }

    /// Starts (or starts again) the syncer of `cluster` with the setup's flags.
    pub fn start_syncer(&mut self, cluster: &str) {
        self.start_syncer_with(cluster, &[]);
    }

    /// Starts (or starts again) the syncer of `cluster` with the setup's flags and `more`
    /// (its `--labels`, say).
    pub fn start_syncer_with(&mut self, cluster: &str, more: &[&str]) {
        let extra: Vec<&str> = self
            .setup
            .syncer
            .iter()
            .map(String::as_str)
            .chain(more.iter().copied())
            .collect();
        let syncer = SyncerProc::start(
            &self.scheduler.url,
            cluster,
            &self.sim.ready.kubeconfig,
            &extra,
        )
        .unwrap();
        self.syncers.insert(cluster.to_owned(), syncer);
    }

    /// Kills the syncer of `cluster` with SIGKILL.
    pub async fn kill_syncer(&mut self, cluster: &str) {
        self.syncers.get_mut(cluster).unwrap().proc.kill9().await;
    }

    /// Kills the scheduler with SIGKILL.
    pub async fn kill_scheduler(&mut self) {
        self.scheduler.proc.kill9().await;
    }

    /// Starts the scheduler again on the same port with the same data directory.
    pub async fn restart_scheduler(&mut self) {
        self.scheduler = start_scheduler(
            self.port,
            &self.dir.path().join("data"),
            &self.setup.scheduler,
        )
        .await;
    }

    /// `fedctl --server SCHEDULER ARGS…`.
    pub async fn fedctl(&self, args: &[&str]) -> FedctlOutput {
        fedctl(&self.scheduler.url, args).await.unwrap()
    }

    /// `fedctl get clusters -o json`, by name (empty when fedctl fails).
    pub async fn clusters(&self) -> BTreeMap<String, Value> {
        let out = self.fedctl(&["get", "clusters", "-o", "json"]).await;
        if out.code != Some(0) {
            return BTreeMap::new();
        }
        out.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_owned(), c.clone()))
            .collect()
    }

    /// Waits until each of `clusters` is Ready with its syncer connected.
    pub async fn wait_ready(&self, clusters: &[&str]) {
        self.wait_clusters(clusters, "Ready, connected clusters", |_| true)
            .await;
    }

    /// Waits until each of `clusters` is Ready, connected and has reported its capacity
    /// (syncers with `--report-capacity`).
    pub async fn wait_capacity(&self, clusters: &[&str]) {
        let what = "Ready, connected clusters with capacity";
        self.wait_clusters(clusters, what, |c| c["capacity"].is_object())
            .await;
    }

    /// Waits until each of `clusters` is Ready, connected and `also` holds of it (as
    /// `fedctl get clusters -o json` shows it).
    async fn wait_clusters(&self, clusters: &[&str], what: &str, also: impl Fn(&Value) -> bool) {
        eventually(what, WAIT, || async {
            let all = self.clusters().await;
            clusters
                .iter()
                .all(|c| {
                    all.get(*c)
                        .is_some_and(|c| c["state"] == "Ready" && c["connected"] == true && also(c))
                })
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    /// Writes `job` as YAML into the scratch directory; its path.
    pub fn write_manifest(&self, job: &Value) -> String {
        let name = job["metadata"]["name"].as_str().unwrap();
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, serde_yaml::to_string(job).unwrap()).unwrap();
        path.display().to_string()
    }

    /// `fedctl create -f` of `job`, which must succeed; the federated Job's uid.
    pub async fn create_job(&self, job: &Value) -> String {
        let file = self.write_manifest(job);
        self.fedctl(&["create", "-f", &file])
            .await
            .ok_or_show(|| self.logs());
        let name = job["metadata"]["name"].as_str().unwrap();
        self.job(name).await["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates the Job of [`job_manifest`]; its uid.
    pub async fn create(
        &self,
        name: &str,
        p: i32,
        c: i32,
        pod: &str,
        prefs: Option<&str>,
    ) -> String {
        self.create_job(&job_manifest(name, p, Some(c), pod, prefs))
            .await
    }

    /// `fedctl get job NAME -o json`, which must succeed.
    pub async fn job(&self, name: &str) -> Value {
        self.fedctl(&["get", "job", name, "-o", "json"])
            .await
            .ok_or_show(|| self.logs())
            .json()
    }

    /// The Jobs in `cluster` labelled as shards of the federated Job `uid`, by local name.
    pub async fn shards(&self, cluster: &str, uid: &str) -> BTreeMap<String, Job> {
        by_name(
            self.list(cluster, &format!("fedjob.io/job-uid={uid}"))
                .await,
        )
    }

    /// The Jobs in `cluster` labelled as shards of a federated Job named `name`, by local name.
    pub async fn shards_named(&self, cluster: &str, name: &str) -> BTreeMap<String, Job> {
        by_name(self.list(cluster, &format!("fedjob.io/job={name}")).await)
    }

    /// Every Job in `cluster` that fedjob manages.
    pub async fn managed(&self, cluster: &str) -> Vec<Job> {
        self.list(cluster, "fedjob.io/managed-by=fedjob").await
    }

    /// The Jobs of every namespace of `cluster` matching the label `selector`.
    pub async fn list(&self, cluster: &str, selector: &str) -> Vec<Job> {
        let jobs: Api<Job> = Api::all(self.clients[cluster].clone());
        jobs.list(&ListParams::default().labels(selector))
            .await
            .unwrap()
            .items
    }

    /// A kube client of `cluster`.
    pub fn client(&self, cluster: &str) -> kube::Client {
        self.clients[cluster].clone()
    }

    /// Waits until every cluster holds a started shard of `uid` with pods running.
    pub async fn wait_running(&self, uid: &str) {
        self.wait_running_in(&self.cluster_names(), uid).await;
    }

    /// [`Federation::wait_running`] for `clusters` only.
    pub async fn wait_running_in(&self, clusters: &[&str], uid: &str) {
        for c in clusters {
            eventually("a started shard", WAIT, || async {
                let shards = self.shards(c, uid).await;
                shards
                    .values()
                    .any(|j| started(j) && active(j) > 0)
                    .then_some(())
            })
            .await
            .unwrap_or_else(|e| panic!("{c}: {e}\n{}", self.logs()));
        }
    }

    /// `fedctl wait job NAME --for=condition=Complete`, which must succeed; then the Job.
    pub async fn wait_complete(&self, name: &str) -> Value {
        let out = self
            .fedctl(&wait_complete_args(name, "60s"))
            .await
            .ok_or_show(|| self.logs());
        assert_eq!(out.stdout, format!("job.batch/{name} condition met\n"));
        self.job(name).await
    }

    /// Per cluster: the local name, uid and completions of every shard of `uid`.
    pub async fn snapshot(
        &self,
        uid: &str,
    ) -> BTreeMap<String, Vec<(String, String, Option<i32>)>> {
        let mut all = BTreeMap::new();
        for c in &self.setup.clusters {
            let shards = self.shards(c, uid).await;
            all.insert(
                c.clone(),
                shards
                    .values()
                    .map(|j| {
                        (
                            j.metadata.name.clone().unwrap(),
                            j.metadata.uid.clone().unwrap(),
                            spec_completions(j),
                        )
                    })
                    .collect(),
            );
        }
        all
    }

    /// The last lines of every process's output, for a failure message.
    pub fn logs(&self) -> String {
        log_tails(
            std::iter::once(("scheduler".to_owned(), &self.scheduler.proc, 40))
                .chain(
                    self.syncers
                        .values()
                        .map(|s| (s.proc.name.clone(), &s.proc, 25)),
                )
                .chain([("kubesim".to_owned(), &self.sim.proc, 20)]),
        )
    }
}

async fn start_scheduler(port: u16, data: &Path, extra: &[String]) -> SchedulerProc {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    SchedulerProc::start(port, data, &extra).await.unwrap()
}

fn by_name(jobs: Vec<Job>) -> BTreeMap<String, Job> {
    jobs.into_iter()
        .map(|j| (j.metadata.name.clone().unwrap(), j))
        .collect()
}

/// A local Job's `spec.completions`.
pub fn spec_completions(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.completions)
}

/// A local Job's `spec.parallelism`.
pub fn spec_parallelism(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.parallelism)
}

/// A local Job's `status.succeeded` (0 when absent).
pub fn succeeded(job: &Job) -> i32 {
    job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0)
}

/// A local Job's `status.active` (0 when absent).
pub fn active(job: &Job) -> i32 {
    job.status.as_ref().and_then(|s| s.active).unwrap_or(0)
}

/// A local Job's `status.failed` (0 when absent).
pub fn failed(job: &Job) -> i32 {
    job.status.as_ref().and_then(|s| s.failed).unwrap_or(0)
}

/// Whether a local Job has `status.startTime`.
pub fn started(job: &Job) -> bool {
    job.status.as_ref().is_some_and(|s| s.start_time.is_some())
}

/// Whether a local Job has `spec.suspend: true`.
pub fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
}

/// The condition of `kind` with status True on a local Job, if any.
pub fn local_condition<'a>(
    job: &'a Job,
    kind: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
}

/// Whether a local Job is Complete or Failed.
pub fn finished(job: &Job) -> bool {
    local_condition(job, "Complete").is_some() || local_condition(job, "Failed").is_some()
}

/// Whether the federated Job (as `fedctl get job -o json` prints it) has condition `kind` True.
pub fn condition(job: &Value, kind: &str) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}

/// The federated Job's placements by cluster.
pub fn placements(job: &Value) -> BTreeMap<String, Value> {
    job["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["cluster"].as_str().unwrap().to_owned(), p.clone()))
        .collect()
}

/// The path of the repository (for `scripts/`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
