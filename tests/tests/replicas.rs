//! Three scheduler replicas on a three-member etcd cluster, three simulated member clusters and
//! three syncers that know every replica: the seed walkthrough with creates and updates through
//! different replicas, then kill -9 of the leading replica while Jobs run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fedjob_tests::harness::{
    EtcdProcs, FedctlOutput, SchedulerProc, SimProc, SyncerProc, eventually, fedctl, free_port,
    http_get, kube_client, log_tails, wait_complete_args,
};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const CLUSTERS: [&str; 3] = ["c1", "c2", "c3"];
const WAIT: Duration = Duration::from_secs(90);

/// One federation at a time: two etcd clusters, six schedulers' worth of processes and their
/// elections at once on two cores would only measure a busy machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Replica {
    proc: SchedulerProc,
    metrics: u16,
}

struct Federation {
    dir: tempfile::TempDir,
    _etcd: EtcdProcs,
    sim: SimProc,
    replicas: Vec<Replica>,
    syncers: Vec<SyncerProc>,
}

impl Federation {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let etcd = EtcdProcs::start(3).await.unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let sim = SimProc::start(&CLUSTERS, &kubeconfig, "300ms")
            .await
            .unwrap();
        let mut replicas = Vec::new();
        for i in 0..3 {
            let metrics = free_port();
            let metrics_flag = format!("127.0.0.1:{metrics}");
            let data = dir.path().join(format!("r{i}"));
            let proc = SchedulerProc::start(
                free_port(),
                &data,
                &[
                    "--store",
                    "etcd",
                    "--etcd-endpoints",
                    &etcd.endpoints(),
                    "--etcd-prefix",
                    "/walk/",
                    "--cluster-grace",
                    "3s",
                    "--lease-ttl",
                    "2s",
                    "--metrics-listen",
                    &metrics_flag,
                ],
            )
            .await
            .unwrap();
            replicas.push(Replica { proc, metrics });
        }
        let urls: Vec<String> = replicas.iter().map(|r| r.proc.url.clone()).collect();
        let syncers = CLUSTERS
            .iter()
            .map(|c| SyncerProc::start(&urls.join(","), c, &kubeconfig, &[]).unwrap())
            .collect();
        let fed = Self {
            dir,
            _etcd: etcd,
            sim,
            replicas,
            syncers,
        };
        for r in 0..3 {
            fed.wait_ready(r).await;
        }
        fed
    }

    fn url(&self, replica: usize) -> &str {
        &self.replicas[replica].proc.url
    }

    async fn fedctl(&self, replica: usize, args: &[&str]) -> FedctlOutput {
        fedctl(self.url(replica), args).await.unwrap()
    }

    async fn wait_ready(&self, replica: usize) {
        eventually("three Ready clusters", WAIT, || async {
            let out = self
                .fedctl(replica, &["get", "clusters", "-o", "json"])
                .await;
            let ready = out.code == Some(0)
                && out.json()["items"].as_array().is_some_and(|items| {
                    items.len() == 3 && items.iter().all(|c| c["state"] == "Ready")
                });
            ready.then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    async fn leader(&self) -> Option<usize> {
        for (i, r) in self.replicas.iter().enumerate() {
            let body = http_get(&format!("127.0.0.1:{}", r.metrics), "/metrics").await;
            if body.is_some_and(|b| b.lines().any(|l| l == "fedjob_leader 1")) {
                return Some(i);
            }
        }
        None
    }

    fn manifest(&self, name: &str, parallelism: i32, completions: i32, pod: &str) -> String {
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name},
            "spec": {"parallelism": parallelism, "completions": completions,
                     "template": {"metadata": {"annotations": {"fedjob.io/sim-duration": pod}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "w", "image": "busybox"}]}}}
        });
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, serde_yaml::to_string(&job).unwrap()).unwrap();
        path.display().to_string()
    }

    async fn shards(&self, cluster: &str, name: &str) -> BTreeMap<String, Job> {
        let client = kube_client(&self.sim.ready.kubeconfig, cluster)
            .await
            .unwrap();
        let jobs: Api<Job> = Api::namespaced(client, "default");
        let params = ListParams::default().labels(&format!("fedjob.io/job={name}"));
        let list = jobs.list(&params).await.unwrap();
        list.items
            .into_iter()
            .map(|j| (j.metadata.name.clone().unwrap(), j))
            .collect()
    }

    async fn wait_complete(&self, replica: usize, name: &str) -> Value {
        self.fedctl(replica, &wait_complete_args(name, "90s"))
            .await
            .ok_or_show(|| self.logs());
        self.fedctl(replica, &["get", "job", name, "-o", "json"])
            .await
            .ok()
            .json()
    }

    fn logs(&self) -> String {
        log_tails(
            self.replicas
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("replica {i}"), &r.proc.proc, 25))
                .chain(
                    self.syncers
                        .iter()
                        .map(|s| (s.proc.name.clone(), &s.proc, 15)),
                ),
        )
    }
}

fn spec(job: &Job) -> (i32, Option<i32>) {
    let s = job.spec.as_ref().unwrap();
    (s.parallelism.unwrap(), s.completions)
}

#[tokio::test]
async fn the_walkthrough_through_different_replicas_survives_the_leader_s_death() {
    let _serial = SERIAL.lock().await;
    let mut fed = Federation::start().await;

    // The syncers try the replicas in the order given: they are on replica 0, and only there.
    for r in 0..3 {
        let clusters = fed.fedctl(r, &["get", "clusters", "-o", "json"]).await.ok();
        let connected: Vec<(String, bool)> = clusters.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["connected"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            connected,
            CLUSTERS.map(|c| (c.to_owned(), r == 0)).to_vec(),
            "as replica {r} sees them"
        );
    }

    // Created through replica 1; the syncers are connected to replica 0.
    let out = fed
        .fedctl(1, &["create", "-f", &fed.manifest("myjob", 9, 18, "300ms")])
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for c in CLUSTERS {
        let shards = eventually("the shard", WAIT, || async {
            let s = fed.shards(c, "myjob").await;
            (!s.is_empty()).then_some(s)
        })
        .await
        .unwrap();
        assert_eq!(spec(&shards["myjob"]), (3, Some(6)), "{c}");
    }
    let job = fed.wait_complete(2, "myjob").await;
    assert_eq!(job["status"]["succeeded"], 18);
    for p in job["placements"].as_array().unwrap() {
        assert_eq!(p["succeeded"], 6, "{p}");
    }

    // Updates through another replica reach the clusters in place.
    // 4 completions of 5 s pods per cluster, 3 at a time once scaled: about 10 s of work.
    let out = fed
        .fedctl(2, &["create", "-f", &fed.manifest("long", 6, 12, "5s")])
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = fed
        .fedctl(1, &["scale", "job", "long", "--parallelism", "9"])
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for c in CLUSTERS {
        eventually("parallelism 3 in place", WAIT, || async {
            fed.shards(c, "long")
                .await
                .get("long")
                .filter(|j| spec(j).0 == 3)
                .map(|_| ())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    }

    // kill -9 of the leading replica while `long` runs.
    let leader = eventually("a leader", WAIT, || fed.leader()).await.unwrap();
    // What the member clusters say, just before: pods still running, completions to go.
    let (mut done, mut running) = (0, 0);
    for c in CLUSTERS {
        for shard in fed.shards(c, "long").await.values() {
            let status = shard.status.clone().unwrap_or_default();
            done += status.succeeded.unwrap_or(0);
            running += status.active.unwrap_or(0);
        }
    }
    fed.replicas[leader].proc.proc.kill9().await;
    assert!(
        done < 12 && running > 0,
        "long must still run when the leader dies: {done} succeeded, {running} active"
    );
    let killed = Instant::now();
    let survivor = (leader + 1) % 3;
    let new_leader = eventually("another replica leads", WAIT, || async {
        fed.leader().await.filter(|l| *l != leader)
    })
    .await
    .unwrap();
    println!(
        "replica {leader} killed; replica {new_leader} leads after {:?} (lease TTL 2s)",
        killed.elapsed()
    );
    fed.wait_ready(survivor).await;
    let job = fed.wait_complete(survivor, "long").await;
    assert_eq!(
        job["status"]["succeeded"], 12,
        "the right total after the leader died"
    );
    let mut local = 0;
    for c in CLUSTERS {
        let shards = fed.shards(c, "long").await;
        assert_eq!(shards.len(), 1, "{c}: no duplicate shard");
        local += shards["long"]
            .status
            .as_ref()
            .and_then(|s| s.succeeded)
            .unwrap_or(0);
    }
    assert_eq!(local, 12);
    // Nothing acknowledged was lost: both Jobs are there through the survivor.
    let out = fed
        .fedctl(survivor, &["get", "jobs", "-o", "json"])
        .await
        .ok();
    let names: Vec<String> = out.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["long", "myjob"]);
}

/// A write through one replica is seen at once by a request naming the Job through another:
/// get, scale, patch and watch read the store before answering, instead of answering NotFound
/// (or acting on an old copy) until their own copy catches up. gRPC clients on open channels
/// send the next request within a millisecond of the answer, well inside the watch's lag.
#[tokio::test]
async fn a_job_written_through_one_replica_is_read_through_the_others_at_once() {
    use fedjob_proto::v1::{self, federation_client::FederationClient};
    let _serial = SERIAL.lock().await;
    let fed = Federation::start().await;
    let mut clients = Vec::new();
    for r in 0..3 {
        let channel = tonic::transport::Endpoint::from_shared(fed.url(r).to_owned())
            .unwrap()
            .connect()
            .await
            .unwrap();
        clients.push(FederationClient::new(channel));
    }
    let manifest = |name: &str| std::fs::read_to_string(fed.manifest(name, 3, 3, "300ms")).unwrap();
    let get = |name: &str| v1::GetJobRequest {
        namespace: String::new(),
        name: name.to_owned(),
    };
    for i in 0..30usize {
        let name = format!("ryw-{i}");
        let (a, b, c) = (i % 3, (i + 1) % 3, (i + 2) % 3);
        let create = v1::CreateJobRequest {
            manifest: manifest(&name),
            ..Default::default()
        };
        clients[a].create_job(create).await.unwrap();
        let got = clients[b].get_job(get(&name)).await;
        assert!(
            got.is_ok(),
            "{name} created through {a}, read through {b}: {got:?}"
        );
        let scale = v1::ScaleJobRequest {
            name: name.clone(),
            parallelism: Some(6),
            ..Default::default()
        };
        clients[c]
            .scale_job(scale)
            .await
            .unwrap_or_else(|e| panic!("{name} scaled through {c}: {e}"));
        let got = clients[a].get_job(get(&name)).await.unwrap().into_inner();
        let spec = &fedjob_proto::json::from_struct(got.job.as_ref().unwrap())["spec"];
        assert_eq!(
            spec["parallelism"], 6,
            "{name}: scaled through {c}, read through {a}"
        );
        let watch = v1::WatchJobRequest {
            name: name.clone(),
            ..Default::default()
        };
        let watched = clients[b].watch_job(watch).await;
        assert!(
            watched.is_ok(),
            "{name} watched through {b}: {:?}",
            watched.err()
        );
    }
    fed.wait_complete(1, "ryw-29").await;
}
