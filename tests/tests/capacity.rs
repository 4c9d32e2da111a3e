//! Capacity reports end to end (SPEC §10): `fedjob-kubesim` clusters with nodes, syncers with
//! and without `--report-capacity`, the real scheduler, and `fedctl get clusters`. The free
//! amounts expected are worked out by hand from the node sizes and pod requests written here.

use std::collections::BTreeMap;
use std::time::Duration;

use fedjob_tests::harness::{
    Proc, SchedulerProc, SimReady, SyncerProc, bin, eventually, fedctl, free_port, kube_client,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(60);

/// `fedctl get clusters -o json`, by name.
async fn clusters(server: &str) -> BTreeMap<String, Value> {
    let out = fedctl(server, &["get", "clusters", "-o", "json"])
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c.clone()))
        .collect()
}

/// Waits until cluster `name` reports `nodes` nodes with `free` (as fedctl prints it).
async fn wait_capacity(server: &str, name: &str, nodes: u64, free: Value) -> Value {
    let what = format!("{name}: {nodes} node(s) with {free}");
    eventually(&what, PATIENCE, || async {
        let c = clusters(server).await.remove(name)?;
        let capacity = c.get("capacity")?;
        (capacity["nodes"] == nodes && capacity["free"] == free).then(|| capacity.clone())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn syncers_report_free_capacity_and_fedctl_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let args: Vec<String> = [
        "--clusters",
        "c1,c2",
        "--pod-duration",
        "1h",
        // c1: two nodes of 2 cpu, 4Gi, 10 pods and a GPU each; c2: one big node.
        "--cluster-nodes",
        "c1=2:cpu=2,memory=4Gi,pods=10,nvidia.com/gpu=1",
        "--cluster-nodes",
        "c2=1:cpu=16,memory=64Gi,pods=110",
        "--kubeconfig-out",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([kubeconfig.display().to_string()])
    .collect();
    let mut sim = Proc::spawn("fedjob-kubesim", &bin("fedjob-kubesim").unwrap(), &args).unwrap();
    let line = sim.wait_for_line("\"ready\":true", PATIENCE).await.unwrap();
    let ready: SimReady = serde_json::from_str(&line).unwrap();
    let port = free_port();
    let scheduler =
        SchedulerProc::start(port, &dir.path().join("data"), &["--cluster-grace", "10s"])
            .await
            .unwrap();
    let server = scheduler.url.clone();
    let _c1 = SyncerProc::start(
        &server,
        "c1",
        &ready.kubeconfig,
        &["--report-capacity", "--heartbeat-interval", "200ms"],
    )
    .unwrap();
    let _c2 = SyncerProc::start(
        &server,
        "c2",
        &ready.kubeconfig,
        &["--heartbeat-interval", "200ms"],
    )
    .unwrap();

    // Two empty nodes: twice each one's allocatable.
    wait_capacity(
        &server,
        "c1",
        2,
        json!({"cpu": "4", "memory": "8Gi", "pods": "20", "nvidia.com/gpu": "2"}),
    )
    .await;
    eventually("c2 Ready", PATIENCE, || async {
        (clusters(&server).await.get("c2")?["state"] == "Ready").then_some(())
    })
    .await
    .unwrap();
    assert!(
        clusters(&server).await["c2"].get("capacity").is_none(),
        "c2 reports no capacity"
    );

    // Three pods of 500m and 1Gi (one with a GPU from its limit) bound in c1: 1500m, 3Gi,
    // 3 pods and 1 GPU fewer.
    let client = kube_client(&ready.kubeconfig, "c1").await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job = |name: &str, pods: i32, limits: Value| -> Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"parallelism": pods, "completions": pods, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "w", "image": "busybox", "resources": {
                    "requests": {"cpu": "500m", "memory": "1Gi"}, "limits": limits}}]}}}
        }))
        .unwrap()
    };
    jobs.create(&PostParams::default(), &job("plain", 2, json!({})))
        .await
        .unwrap();
    jobs.create(
        &PostParams::default(),
        &job("gpu", 1, json!({"nvidia.com/gpu": "1"})),
    )
    .await
    .unwrap();
    wait_capacity(
        &server,
        "c1",
        2,
        json!({"cpu": "2500m", "memory": "5Gi", "pods": "17", "nvidia.com/gpu": "1"}),
    )
    .await;

    // The wide table shows it; a cluster without reports shows <unknown>.
    let wide = fedctl(&server, &["get", "clusters", "-o", "wide"])
        .await
        .unwrap();
    assert_eq!(wide.code, Some(0), "{}", wide.stderr);
    let rows: Vec<Vec<&str>> = wide
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let header: Vec<&str> = wide
        .stdout
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header[header.len() - 4..],
        ["NODES", "FREE CPU", "FREE MEMORY", "FREE PODS"]
    );
    let c1 = rows.iter().find(|r| r[0] == "c1").unwrap();
    assert_eq!(&c1[c1.len() - 4..], ["2", "2500m", "5Gi", "17"]);
    let c2 = rows.iter().find(|r| r[0] == "c2").unwrap();
    assert_eq!(&c2[c2.len() - 4..], ["<unknown>"; 4]);

    // Cordon the node with two of the pods: only the other one counts.
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut busiest = None;
    for n in ["c1-node-1", "c1-node-2"] {
        let on = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={n}")))
            .await
            .unwrap();
        if on.items.len() == 2 {
            busiest = Some(n);
        }
    }
    let busiest = busiest.expect("least-allocated puts two pods on one node and one on the other");
    nodes
        .patch(
            busiest,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    // The other node has one pod: 1500m, 3Gi and 9 pods left (and its GPU, unless that pod
    // is the one with the GPU).
    let capacity = wait_capacity_nodes(&server, "c1", 1).await;
    let free = &capacity["free"];
    assert_eq!(
        (
            free["cpu"].as_str(),
            free["memory"].as_str(),
            free["pods"].as_str()
        ),
        (Some("1500m"), Some("3Gi"), Some("9"))
    );
    drop(sim);
}

/// Waits until cluster `name` reports `nodes` nodes; returns its capacity.
async fn wait_capacity_nodes(server: &str, name: &str, nodes: u64) -> Value {
    eventually(&format!("{name}: {nodes} node(s)"), PATIENCE, || async {
        let c = clusters(server).await.remove(name)?;
        let capacity = c.get("capacity")?;
        (capacity["nodes"] == nodes).then(|| capacity.clone())
    })
    .await
    .unwrap()
}
