//! Placement that follows the clusters, end to end (SPEC §10): the real scheduler, syncers
//! (with `--report-capacity` where capacity matters) and `fedjob-kubesim` clusters with nodes
//! of different sizes, driven with `fedctl` and kubectl and observed in the member clusters.
//!
//! Every expected number is worked out by hand in the comments from the node sizes and the pod
//! requests written here, and SPEC §3's division, never asked of the planner.

use std::collections::BTreeMap;

use fedjob_tests::harness::eventually;
use fedjob_tests::harness::federation::{
    Federation, PREFERENCES, Setup, WAIT, active, condition, job_manifest, placements,
    spec_completions, spec_parallelism, strings,
};
use fedjob_tests::harness::free_port;
use fedjob_tests::harness::kubectl::Kubectl;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

/// The Job's shards in each cluster: local name → (parallelism, completions), the
/// parallelism only `with_parallelism` (the planner lowers a shard's parallelism to the
/// completions it still lacks as it nears the end, so it is compared before that).
type Shards = BTreeMap<String, BTreeMap<String, (Option<i32>, Option<i32>)>>;

async fn shards_of(fed: &Federation, name: &str, with_parallelism: bool) -> Shards {
    let mut all = Shards::new();
    for c in fed.cluster_names() {
        let shards = fed.shards_named(c, name).await;
        if !shards.is_empty() {
            let shown = |j| {
                (
                    with_parallelism.then(|| spec_parallelism(j)).flatten(),
                    spec_completions(j),
                )
            };
            all.insert(
                c.to_owned(),
                shards.iter().map(|(n, j)| (n.clone(), shown(j))).collect(),
            );
        }
    }
    all
}

/// `(cluster, shard, parallelism, completions)` as [`shards_of`] gives them; parallelism
/// `None` to leave it out.
fn expected(shards: &[(&str, &str, Option<i32>, i32)]) -> Shards {
    let mut all = Shards::new();
    for (cluster, name, p, c) in shards {
        all.entry((*cluster).to_owned())
            .or_default()
            .insert((*name).to_owned(), (*p, Some(*c)));
    }
    all
}

/// Waits until the shards of `name` (with their parallelism) are `want`.
async fn wait_shards(fed: &Federation, name: &str, want: &Shards) {
    let why = format!("{name}'s shards {want:?}");
    let found = eventually(&why, WAIT, || async {
        (shards_of(fed, name, true).await == *want).then_some(())
    })
    .await;
    if let Err(e) = found {
        let seen = shards_of(fed, name, true).await;
        panic!(
            "{e}\nshards: {seen:?}\n{:#}\n{}",
            fed.job(name).await,
            fed.logs()
        );
    }
}

/// Waits until the federated Job `name` satisfies `what`; the Job.
async fn wait_job(fed: &Federation, name: &str, why: &str, what: impl Fn(&Value) -> bool) -> Value {
    let found = eventually(why, WAIT, || async {
        let job = fed.job(name).await;
        what(&job).then_some(job)
    })
    .await;
    match found {
        Ok(job) => job,
        Err(e) => panic!("{e}\n{:#}\n{}", fed.job(name).await, fed.logs()),
    }
}

/// Work that found no eligible cluster is placed as soon as one becomes eligible: a cluster
/// that registers for the first time, and a registered cluster whose labels now match.
#[tokio::test]
async fn waiting_work_is_placed_when_a_cluster_becomes_eligible() {
    let mut setup = Setup::new("30s");
    setup.clusters = strings(&["c1"]);
    let mut fed = Federation::start_without_syncers(setup).await;

    // No cluster has registered: nothing can take the Job, and it says so.
    fed.create("early", 2, 4, "1s", None).await;
    wait_job(&fed, "early", "early Unschedulable", |j| {
        condition(j, "Unschedulable")
    })
    .await;

    // c1 registers: all of it goes there (the only cluster), and it completes with 4.
    fed.start_syncer("c1");
    fed.wait_ready(&["c1"]).await;
    let done = fed.wait_complete("early").await;
    assert_eq!(done["status"]["succeeded"], 4, "{done:#}");
    assert!(!condition(&done, "Unschedulable"), "{done:#}");
    assert_eq!(
        shards_of(&fed, "early", false).await,
        expected(&[("c1", "early", None, 4)])
    );

    // A Job for clusters labelled env=prod: c1 has no such label, so it waits.
    let prefs = r#"{"clusterSelector": {"matchLabels": {"env": "prod"}}}"#;
    fed.create("prod", 2, 4, "1s", Some(prefs)).await;
    wait_job(&fed, "prod", "prod Unschedulable", |j| {
        condition(j, "Unschedulable")
    })
    .await;
    // c1's agent comes back with env=prod: the Job goes there.
    fed.kill_syncer("c1").await;
    fed.start_syncer_with("c1", &["--labels", "env=prod"]);
    let done = fed.wait_complete("prod").await;
    assert_eq!(done["status"]["succeeded"], 4, "{done:#}");
    assert_eq!(
        shards_of(&fed, "prod", false).await,
        expected(&[("c1", "prod", None, 4)])
    );
}

/// A pod of the Jobs below: containers of 1 cpu + 500m and 512Mi + 512Mi, and an init
/// container of 1 cpu and 1536Mi. As Kubernetes counts it (the larger of the containers' sum
/// and the largest init container, per resource) it asks for 1500m cpu and 1536Mi memory.
fn sized_job(name: &str, prefs: &str) -> Value {
    let resources = |cpu: &str, memory: &str| json!({"requests": {"cpu": cpu, "memory": memory}});
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "annotations": {PREFERENCES: prefs}},
        "spec": {"parallelism": 7, "completions": 14, "template": {
            "metadata": {"annotations": {"fedjob.io/sim-duration": "3s"}},
            "spec": {"restartPolicy": "Never",
                "initContainers": [{"name": "init", "image": "busybox",
                                    "resources": resources("1", "1536Mi")}],
                "containers": [
                    {"name": "w", "image": "busybox", "resources": resources("1", "512Mi")},
                    {"name": "side", "image": "busybox", "resources": resources("500m", "512Mi")}]}}}
    })
}

/// Nodes per cluster, and how many pods of [`sized_job`] fit (1500m cpu, 1536Mi each):
/// - c1: 2 nodes of 4 cpu, 8Gi: 2 per node by cpu (5 by memory), 4 in all (the cluster's
///   total of 8 cpu would say 5: the fit is node by node);
/// - c2: 1 node of 2 cpu, 8Gi: 1;
/// - c3: 1 node of 8 cpu, 3Gi: 2 by memory (3 if the init container were not counted).
const NODES: [&str; 6] = [
    "--cluster-nodes",
    "c1=2:cpu=4,memory=8Gi,pods=20",
    "--cluster-nodes",
    "c2=1:cpu=2,memory=8Gi,pods=20",
    "--cluster-nodes",
    "c3=1:cpu=8,memory=3Gi,pods=20",
];

/// Free capacity of the empty clusters, as `fedctl get clusters -o json` prints it.
fn empty(cluster: &str) -> Value {
    match cluster {
        "c1" => json!({"cpu": "8", "memory": "16Gi", "pods": "40"}),
        "c2" => json!({"cpu": "2", "memory": "8Gi", "pods": "20"}),
        _ => json!({"cpu": "8", "memory": "3Gi", "pods": "20"}),
    }
}

/// `dynamicWeight: AvailableReplicas` splits by what fits, through both APIs.
///
/// Fits are 4, 1 and 2 (see [`NODES`]), 7 in all, and the Job asks for parallelism 7: the
/// Webster division by what fits, none beyond it, gives exactly 4 / 1 / 2 (the static rule
/// would give 3 / 2 / 2). Completions 14 follow the parallelism shares: 8 / 2 / 4. A Job
/// created with parallelism 0 and patched to 7 through kubectl ends the same.
#[tokio::test]
async fn dynamic_weight_splits_by_what_fits_through_both_apis() {
    let kube_port = free_port();
    let mut setup = Setup::new("30s");
    setup.sim = strings(&NODES);
    setup.syncer = strings(&["--report-capacity", "--heartbeat-interval", "200ms"]);
    setup.scheduler.extend(strings(&[
        "--kube-api-listen",
        &format!("127.0.0.1:{kube_port}"),
    ]));
    let fed = Federation::start(setup).await;
    let clusters = fed.cluster_names();
    let wait_empty = || async {
        for c in &clusters {
            eventually(&format!("{c} empty"), WAIT, || async {
                let all = fed.clusters().await;
                (all.get(*c)?["capacity"]["free"] == empty(c)).then_some(())
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
        }
    };
    fed.wait_capacity(&clusters).await;
    wait_empty().await;

    let prefs = r#"{"dynamicWeight": "AvailableReplicas"}"#;
    // gRPC: fedctl create -f.
    fed.create_job(&sized_job("fits", prefs)).await;
    // Completions 8 / 2 / 4, with the parallelism of each shard when given.
    let shards = |name: &str, p: Option<[i32; 3]>| {
        let p = |i: usize| p.map(|p| p[i]);
        expected(&[
            ("c1", name, p(0), 8),
            ("c2", name, p(1), 2),
            ("c3", name, p(2), 4),
        ])
    };
    let want = |name: &str, p: bool| shards(name, p.then_some([4, 1, 2]));
    // Pods run 3 s, so the shares stand for a few seconds before the last round lowers them.
    wait_shards(&fed, "fits", &want("fits", true)).await;
    let done = fed.wait_complete("fits").await;
    assert_eq!(done["status"]["succeeded"], 14, "{done:#}");
    // Planned by capacity at create: the Job's own pods filling the clusters meanwhile changed
    // neither the shares shown nor the weights (no fallback to the static ones).
    let shown: BTreeMap<String, (Value, Value)> = placements(&done)
        .into_iter()
        .map(|(c, p)| (c, (p["parallelism"].clone(), p["completions"].clone())))
        .collect();
    let want_shown: BTreeMap<String, (Value, Value)> = [("c1", 4, 8), ("c2", 1, 2), ("c3", 2, 4)]
        .into_iter()
        .map(|(c, p, n)| (c.to_owned(), (json!(p), json!(n))))
        .collect();
    assert_eq!(shown, want_shown, "{done:#}");
    assert!(!condition(&done, "StaticWeights"), "{done:#}");

    // The Kubernetes API: kubectl create -f, once the clusters are empty again.
    wait_empty().await;
    let kubectl = Kubectl::from_fedctl(
        &format!("http://127.0.0.1:{kube_port}"),
        None,
        &fed.dir.path().join("kubeconfig-federation"),
        &fed.dir.path().join("home"),
    )
    .await
    .unwrap();
    let manifest = fed.write_manifest(&sized_job("fits-kubectl", prefs));
    let out = kubectl.run(&["create", "-f", &manifest]).await.ok();
    assert_eq!(out.stdout, "job.batch/fits-kubectl created\n");
    wait_shards(&fed, "fits-kubectl", &want("fits-kubectl", true)).await;
    let done = fed.wait_complete("fits-kubectl").await;
    assert_eq!(done["status"]["succeeded"], 14, "{done:#}");
    assert_eq!(
        shards_of(&fed, "fits-kubectl", false).await,
        want("fits-kubectl", false)
    );

    // A change of parallelism through the Kubernetes API is planned by what fits then. At
    // parallelism 0 nothing runs, and the 14 completions go where pods fit: 8 / 2 / 4 (Webster
    // over 4, 1 and 2), each shard at parallelism 0. kubectl patch to 7 divides it by what
    // fits in the clusters, empty again: 4 / 1 / 2.
    wait_empty().await;
    let mut idle = sized_job("grows", prefs);
    idle["spec"]["parallelism"] = json!(0);
    let manifest = fed.write_manifest(&idle);
    kubectl.run(&["create", "-f", &manifest]).await.ok();
    wait_shards(&fed, "grows", &shards("grows", Some([0, 0, 0]))).await;
    let patch = r#"{"spec": {"parallelism": 7}}"#;
    let out = kubectl
        .run(&["patch", "job", "grows", "--type=merge", "-p", patch])
        .await
        .ok();
    assert_eq!(out.stdout, "job.batch/grows patched\n");
    wait_shards(&fed, "grows", &want("grows", true)).await;
    let done = fed.wait_complete("grows").await;
    assert_eq!(done["status"]["succeeded"], 14, "{done:#}");
    assert!(!condition(&done, "StaticWeights"), "{done:#}");
}

/// A Job with a `clusterSelector` (static weights) lands only on the clusters it selects;
/// the others get no shard.
///
/// c1 and c3 are in region eu, c2 in us. `eu` (parallelism 4, completions 8) selects
/// region=eu: 2 and 4 each in c1 and c3 (equal weights). `not-eu` selects region NotIn (eu):
/// all of it, 4 and 8, in c2.
#[tokio::test]
async fn a_selector_job_lands_only_on_matching_clusters() {
    let mut fed = Federation::start_without_syncers(Setup::new("30s")).await;
    for (c, region) in [("c1", "eu"), ("c2", "us"), ("c3", "eu")] {
        fed.start_syncer_with(c, &["--labels", &format!("region={region}")]);
    }
    fed.wait_ready(&["c1", "c2", "c3"]).await;

    fed.create(
        "eu",
        4,
        8,
        "1s",
        Some(r#"{"clusterSelector": {"matchLabels": {"region": "eu"}}}"#),
    )
    .await;
    fed.create(
        "not-eu",
        4,
        8,
        "1s",
        Some(
            r#"{"clusterSelector": {"matchExpressions": [{"key": "region", "operator": "NotIn", "values": ["eu"]}]}}"#,
        ),
    )
    .await;
    for name in ["eu", "not-eu"] {
        let done = fed.wait_complete(name).await;
        assert_eq!(done["status"]["succeeded"], 8, "{done:#}");
    }
    // Both are complete: every shard either was ever created by now.
    assert_eq!(
        shards_of(&fed, "eu", false).await,
        expected(&[("c1", "eu", None, 4), ("c3", "eu", None, 4)])
    );
    assert_eq!(
        shards_of(&fed, "not-eu", false).await,
        expected(&[("c2", "not-eu", None, 8)])
    );
    let eu = fed.job("eu").await;
    let shown: Vec<String> = placements(&eu).into_keys().collect();
    assert_eq!(shown, ["c1", "c3"], "{eu:#}");
}

/// Creates `hog` in a member cluster, outside the federation: one pod asking for 2 cpu.
async fn create_hog(jobs: &Api<Job>) {
    let hog = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "hog"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "w", "image": "busybox",
                            "resources": {"requests": {"cpu": "2"}}}]}}}
    });
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(hog).unwrap(),
    )
    .await
    .unwrap();
}

/// `pendingTimeoutSeconds` of the Job that spills over.
const PENDING_TIMEOUT: u64 = 3;

/// A cluster that fills up after the Job was planned has its pending work moved within
/// `pendingTimeoutSeconds` (`rebalance: true`), and the Job completes with exactly
/// `completions`.
///
/// c1 has one node of 2 cpu, c2 one of 4. The Job (pods of 1 cpu running 3 s, parallelism 2,
/// completions 6, equal weights) is planned as 1 and 3 in each. While c1's first pod runs, a
/// local Job outside the federation asks for 2 cpu there: it waits, then takes the node when
/// that pod ends (the kube-scheduler tries the oldest pending pod first), and c1's next pod
/// of the Job cannot be placed. After pendingTimeoutSeconds c1's 2 unstarted completions go to
/// c2: c1 did 1, c2 does 3 + 2.
#[tokio::test]
async fn a_cluster_that_fills_up_after_planning_has_its_pending_work_moved() {
    let mut setup = Setup::new("30s");
    setup.clusters = strings(&["c1", "c2"]);
    setup.pod_duration = "1h".to_owned();
    setup.sim = strings(&[
        "--cluster-nodes",
        "c1=1:cpu=2,memory=8Gi,pods=20",
        "--cluster-nodes",
        "c2=1:cpu=4,memory=8Gi,pods=20",
    ]);
    setup.syncer = strings(&["--report-capacity", "--heartbeat-interval", "200ms"]);
    let fed = Federation::start(setup).await;
    fed.wait_capacity(&["c1", "c2"]).await;

    let prefs = format!(
        r#"{{"rebalance": true, "pendingTimeoutSeconds": {PENDING_TIMEOUT}, "clusters": {{"*": {{"weight": 1}}}}}}"#
    );
    let pod = json!({"requests": {"cpu": "1"}});
    let mut job = job_manifest("fills", 2, Some(6), "3s", Some(&prefs));
    job["spec"]["template"]["spec"]["containers"][0]["resources"] = pod;
    fed.create_job(&job).await;
    let c1_jobs: Api<Job> = Api::namespaced(fed.client("c1"), "default");
    eventually("c1's first pod of fills running", WAIT, || async {
        let shard = c1_jobs.get_opt("fills").await.ok()??;
        (active(&shard) == 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    create_hog(&c1_jobs).await;

    let done = fed.wait_complete("fills").await;
    assert_eq!(done["status"]["succeeded"], 6, "{done:#}");
    let by_cluster = placements(&done);
    assert_eq!(by_cluster["c1"]["succeeded"], 1, "{done:#}");
    assert_eq!(by_cluster["c2"]["succeeded"], 5, "{done:#}");
    let moved = done["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "SpilledOver")
        .unwrap_or_else(|| panic!("a condition says what moved: {done:#}"));
    let message = moved["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "moved 2 unstarted completions of c1: 1 pod of fills unschedulable since "
        ),
        "{message}"
    );
    assert!(message.ends_with(" to c2 (2 completions)"), "{message}");
    // Moved within pendingTimeoutSeconds of the pod becoming unschedulable (plus the
    // scheduler's tick and a report's heartbeat).
    let since: jiff::Timestamp = message
        .split(" unschedulable since ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    let at: jiff::Timestamp = moved["lastTransitionTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let waited = at.duration_since(since).as_secs();
    assert!(
        (PENDING_TIMEOUT as i64..=PENDING_TIMEOUT as i64 + 5).contains(&waited),
        "moved after {waited} s"
    );
    // In c2: its own 3 and the moved 2; c1's shard is gone once stopped.
    assert_eq!(
        shards_of(&fed, "fills", false).await.get("c2"),
        Some(
            &[
                ("fills".to_owned(), (None, Some(3))),
                ("fills-2".to_owned(), (None, Some(2)))
            ]
            .into()
        )
    );
    eventually("fills gone from c1", WAIT, || async {
        c1_jobs.get_opt("fills").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
}

/// Work of a Job that weighs by capacity, waiting because nothing of it fits anywhere, is
/// placed when its cluster reports room, with no other change of the cluster (for those:
/// `waiting_work_is_placed_when_a_cluster_becomes_eligible`).
///
/// c1 has one node of 2 cpu, taken by a local Job outside the federation (a pod of 2 cpu).
/// The federated Job (pods of 1 cpu, parallelism 0, completions 3, `dynamicWeight`) runs
/// nothing and its completions go where its pods fit: nowhere, so all 3 wait. Once the local
/// Job is deleted, 2 fit in c1 and the 3 completions go there, at parallelism 0.
#[tokio::test]
async fn waiting_work_that_weighs_by_capacity_is_placed_when_room_is_reported() {
    let mut setup = Setup::new("30s");
    setup.clusters = strings(&["c1"]);
    setup.pod_duration = "1h".to_owned();
    setup.sim = strings(&["--cluster-nodes", "c1=1:cpu=2,memory=8Gi,pods=20"]);
    setup.syncer = strings(&["--report-capacity", "--heartbeat-interval", "200ms"]);
    let fed = Federation::start(setup).await;
    fed.wait_capacity(&["c1"]).await;
    let c1_jobs: Api<Job> = Api::namespaced(fed.client("c1"), "default");
    create_hog(&c1_jobs).await;
    let free_cpu = |want: &'static str| {
        let fed = &fed;
        async move {
            eventually(&format!("c1 reports {want} cpu free"), WAIT, || async {
                let all = fed.clusters().await;
                (all.get("c1")?["capacity"]["free"]["cpu"] == want).then_some(())
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
        }
    };
    free_cpu("0").await;

    let prefs = r#"{"dynamicWeight": "AvailableReplicas"}"#;
    let mut job = job_manifest("waits", 0, Some(3), "3s", Some(prefs));
    job["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "1"}});
    fed.create_job(&job).await;
    let waiting = wait_job(&fed, "waits", "waits is unschedulable", |j| {
        condition(j, "Unschedulable")
    })
    .await;
    let message = waiting["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Unschedulable")
        .and_then(|c| c["message"].as_str())
        .unwrap()
        .to_owned();
    assert_eq!(
        message,
        "parallelism 0 and completions 3 could not be placed: no eligible cluster has room"
    );
    assert_eq!(shards_of(&fed, "waits", true).await, expected(&[]));

    c1_jobs
        .delete("hog", &kube::api::DeleteParams::background())
        .await
        .unwrap();
    free_cpu("2").await;
    wait_shards(&fed, "waits", &expected(&[("c1", "waits", Some(0), 3)])).await;
    wait_job(&fed, "waits", "waits is no longer unschedulable", |j| {
        !condition(j, "Unschedulable")
    })
    .await;
}

/// `dynamicWeight` with no capacity reported anywhere (syncers without `--report-capacity`):
/// the static rule (parallelism 3 over three equal weights: 1 each; completions 6: 2 each),
/// and the condition `StaticWeights` says why.
#[tokio::test]
async fn without_capacity_reports_dynamic_weight_falls_back_and_says_so() {
    let fed = Federation::start(Setup::new("30s")).await;
    let prefs = r#"{"dynamicWeight": "AvailableReplicas"}"#;
    fed.create("guess", 3, 6, "1s", Some(prefs)).await;
    let done = fed.wait_complete("guess").await;
    assert_eq!(done["status"]["succeeded"], 6, "{done:#}");
    assert_eq!(
        shards_of(&fed, "guess", false).await,
        expected(&[
            ("c1", "guess", None, 2),
            ("c2", "guess", None, 2),
            ("c3", "guess", None, 2)
        ])
    );
    let note = done["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "StaticWeights")
        .unwrap_or_else(|| panic!("a condition says so: {done:#}"));
    assert_eq!(note["reason"], "NoCapacityReported", "{note:#}");
    assert_eq!(
        note["message"],
        "dynamicWeight AvailableReplicas: no cluster reports its free capacity \
         (fedjob-syncer --report-capacity), so the split follows the static weights"
    );
}
