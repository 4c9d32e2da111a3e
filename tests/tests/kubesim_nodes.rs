//! A simulated cluster with nodes: pods bound where they fit, pending ones tried again as room
//! appears, and nodes cordoned, made NotReady, resized and removed while Jobs run. Expected
//! messages and counts are worked out by hand from kube-scheduler v1.24's rules (see
//! `k8s-facts/33-…` and `35-…` for the recorded wording), not taken from the simulator.

mod kubesim_support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use fedjob_tests::kubesim::node::Registration;
use fedjob_tests::kubesim::{SimCluster, SimOptions};
use kubesim_support::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// A node with `cpu` cores, 8Gi and 20 pods.
fn node(name: &str, cpu: &str) -> Registration {
    Registration::new(name)
        .with("cpu", cpu)
        .with("memory", "8Gi")
        .with("pods", "20")
}

async fn with_nodes(nodes: Vec<Registration>, pod_duration: Duration) -> SimCluster {
    cluster(SimOptions {
        nodes,
        pod_duration,
        ..SimOptions::default()
    })
    .await
}

/// A Job of `parallelism` pods at a time, `completions` in all, each running `duration` with
/// the pod spec `spec` (containers and the rest).
fn job(name: &str, parallelism: i64, completions: i64, duration: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["restartPolicy"] = json!("Never");
    json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"parallelism": parallelism, "completions": completions, "template": {
            "metadata": {"annotations": {"fedjob.io/sim-duration": duration}},
            "spec": spec}}
    })
}

/// One container requesting `cpu`.
fn cpu(cpu: &str) -> Value {
    json!({"containers": [{"name": "w", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]})
}

async fn pods_of(http: &Http, job: &str) -> Vec<Value> {
    let reply = http
        .get(&format!(
            "/api/v1/namespaces/default/pods?labelSelector=job-name%3D{job}"
        ))
        .await;
    assert_eq!(reply.status, 200);
    reply.json()["items"].as_array().unwrap().clone()
}

fn condition<'a>(pod: &'a Value, kind: &str) -> Option<&'a Value> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == kind)
}

fn is_bound(pod: &Value) -> bool {
    condition(pod, "PodScheduled").is_some_and(|c| c["status"] == "True")
}

/// The messages of the pods of `job` that are unschedulable.
fn unschedulable(pods: &[Value]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| condition(p, "PodScheduled"))
        .filter(|c| c["status"] == "False")
        .map(|c| {
            assert_eq!(c["reason"], "Unschedulable");
            c["message"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Waits until `job` has `bound` pods bound and `pending` ones found unschedulable, all
/// pending ones with `message`; returns its pods.
async fn placed(http: &Http, job: &str, bound: usize, pending: usize, message: &str) -> Vec<Value> {
    eventually(
        &format!("{job}: {bound} bound, {pending} unschedulable ({message})"),
        || async {
            let pods = pods_of(http, job).await;
            let waiting = unschedulable(&pods);
            let ok = pods.iter().filter(|p| is_bound(p)).count() == bound
                && waiting.len() == pending
                && waiting.iter().all(|m| m == message);
            ok.then_some(pods)
        },
    )
    .await
}

fn status_field(job: &Value, field: &str) -> i64 {
    job["status"][field].as_i64().unwrap_or(0)
}

const TOO_LITTLE_CPU_ON_ONE: &str = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";

/// Pods that do not fit wait, count as active but not ready, and run as others finish; the
/// Job completes with exactly its completions.
#[tokio::test]
async fn pending_pods_run_as_room_frees_and_the_job_completes_exactly() {
    let sim = with_nodes(vec![node("n1", "1")], Duration::from_secs(600)).await;
    let http = Http::new(sim.url());

    // One core: two of four 500m pods run, the other two wait.
    assert_eq!(
        http.post(JOBS, &job("long", 4, 4, "3600s", cpu("500m")))
            .await
            .status,
        201
    );
    placed(&http, "long", 2, 2, TOO_LITTLE_CPU_ON_ONE).await;
    let long = wait_job(&http, "long", "long: 4 active, 2 ready", |j| {
        status_field(j, "active") == 4 && status_field(j, "ready") == 2
    })
    .await;
    assert_eq!(long["status"]["ready"], 2);
    let usage = sim.nodes().usage("n1");
    assert_eq!((usage.pods, usage.requested["cpu"]), (2, 1000));

    // Removing that Job frees the core; short pods of another Job take turns on it.
    let gone = http
        .delete(
            &job_path("long"),
            Some(&json!({"propagationPolicy": "Background"})),
        )
        .await;
    assert_eq!(gone.status, 200);
    assert_eq!(
        http.post(JOBS, &job("short", 3, 6, "300ms", cpu("400m")))
            .await
            .status,
        201
    );
    let done = wait_job(&http, "short", "short Complete", |j| {
        has_condition(j, "Complete")
    })
    .await;
    assert_eq!(status_field(&done, "succeeded"), 6);
    assert_eq!(status_field(&done, "failed"), 0);
    let pods = pods_of(&http, "short").await;
    assert_eq!(pods.len(), 6, "exactly one pod per completion");
    assert!(
        pods.iter()
            .all(|p| p["status"]["phase"] == "Succeeded" && p["spec"]["nodeName"] == "n1")
    );
    assert_eq!(
        sim.nodes().usage("n1").pods,
        0,
        "finished pods no longer count"
    );
    sim.shutdown().await;
}

/// A cordoned node and a NotReady one take no pods, with the scheduler's reasons; pods bind
/// once the node is back.
#[tokio::test]
async fn cordoned_and_not_ready_nodes_take_no_pods_until_they_are_back() {
    let sim = with_nodes(vec![node("n1", "4")], Duration::from_secs(600)).await;
    let http = Http::new(sim.url());
    let table = Http::new(sim.url()).with_accept("application/json;as=Table;v=v1;g=meta.k8s.io");
    let node_status = || async {
        let t = table.get("/api/v1/nodes/n1").await.json();
        t["rows"][0]["cells"][1].as_str().unwrap().to_owned()
    };
    assert_eq!(node_status().await, "Ready");

    sim.nodes().cordon("n1", true).await.unwrap();
    assert_eq!(node_status().await, "Ready,SchedulingDisabled");
    let n1 = sim.nodes().get("n1").unwrap();
    assert_eq!(
        n1["spec"]["taints"],
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}])
    );
    assert_eq!(
        http.post(JOBS, &job("a", 1, 1, "3600s", cpu("1")))
            .await
            .status,
        201
    );
    placed(&http, "a", 0, 1,
        "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
    )
    .await;
    sim.nodes().cordon("n1", false).await.unwrap();
    let pods = placed(&http, "a", 1, 0, "").await;
    assert_eq!(pods[0]["status"]["phase"], "Running");
    assert!(
        sim.nodes().get("n1").unwrap()["spec"]
            .get("taints")
            .is_none()
    );

    sim.nodes().set_ready("n1", false).await.unwrap();
    assert_eq!(node_status().await, "NotReady");
    assert_eq!(
        http.post(JOBS, &job("b", 1, 1, "3600s", cpu("1")))
            .await
            .status,
        201
    );
    placed(&http, "b", 0, 1,
        "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
    )
    .await;
    sim.nodes().set_ready("n1", true).await.unwrap();
    placed(&http, "b", 1, 0, "").await;

    // Each pending pod got one FailedScheduling event with its message.
    let events = http.get("/api/v1/namespaces/default/events").await.json();
    let reasons: Vec<(&str, &str)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["involvedObject"]["name"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{events}");
    assert!(reasons.iter().all(|(_, r)| *r == "FailedScheduling"));
    sim.shutdown().await;
}

/// nodeSelector, required node affinity, taints and tolerations, extended resources from
/// limits, and init containers counted as max(largest init, sum of app containers).
#[tokio::test]
async fn selectors_tolerations_extended_resources_and_init_containers() {
    let sim = with_nodes(
        vec![
            node("cpu-a", "4").label("zone", "a"),
            node("gpu-b", "4")
                .label("zone", "b")
                .with("nvidia.com/gpu", "2")
                .taint("dedicated", "gpu", "NoSchedule"),
        ],
        Duration::from_secs(600),
    )
    .await;
    let http = Http::new(sim.url());
    let gpu = json!({
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
        "containers": [{"name": "w", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]
    });
    // Two GPUs: two pods run there; the third fits nowhere (cpu-a has no GPU at all).
    assert_eq!(
        http.post(JOBS, &job("gpu", 3, 3, "3600s", gpu))
            .await
            .status,
        201
    );
    let pods = placed(&http, "gpu", 2, 1,
        "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.",
    )
    .await;
    assert!(
        pods.iter()
            .filter(|p| is_bound(p))
            .all(|p| p["spec"]["nodeName"] == "gpu-b")
    );
    // The pod shows the request the API server defaults from the limit.
    assert_eq!(
        pods[0]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"],
        "1"
    );

    // Zone b without the toleration: one node mismatches, the other is tainted.
    let mut zone_b = cpu("1");
    zone_b["nodeSelector"] = json!({"zone": "b"});
    assert_eq!(
        http.post(JOBS, &job("zone-b", 1, 1, "3600s", zone_b))
            .await
            .status,
        201
    );
    placed(&http, "zone-b", 0, 1,
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
    )
    .await;

    // Required affinity away from zone b lands on cpu-a.
    let mut not_b = cpu("500m");
    not_b["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}]}}});
    assert_eq!(
        http.post(JOBS, &job("not-b", 1, 1, "3600s", not_b))
            .await
            .status,
        201
    );
    let pods = placed(&http, "not-b", 1, 0, "").await;
    assert_eq!(pods[0]["spec"]["nodeName"], "cpu-a");

    // Init 1500m then app 1500m: each pod needs 1500m (not 3000m), so two fit in the 3500m
    // cpu-a has left (summing would fit one); gpu-b's taint keeps them off it.
    let init = json!({
        "initContainers": [{"name": "i", "image": "busybox", "resources": {"requests": {"cpu": "1500m"}}}],
        "containers": [{"name": "w", "image": "busybox", "resources": {"requests": {"cpu": "1500m"}}}]
    });
    assert_eq!(
        http.post(JOBS, &job("init", 3, 3, "3600s", init))
            .await
            .status,
        201
    );
    placed(&http, "init", 2, 1,
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.",
    )
    .await;
    assert_eq!(sim.nodes().usage("cpu-a").requested["cpu"], 3500);
    sim.shutdown().await;
}

/// A node that goes away fails its pods (the Job replaces them); a node that grows takes the
/// replacement.
#[tokio::test]
async fn a_removed_node_fails_its_pods_and_a_grown_node_takes_the_replacement() {
    let sim = with_nodes(
        vec![node("n1", "1"), node("n2", "1")],
        Duration::from_secs(600),
    )
    .await;
    let http = Http::new(sim.url());
    assert_eq!(
        http.post(JOBS, &job("j", 2, 2, "3600s", cpu("1")))
            .await
            .status,
        201
    );
    let pods = placed(&http, "j", 2, 0, "").await;
    let on_n1 = pods
        .iter()
        .find(|p| p["spec"]["nodeName"] == "n1")
        .expect("one pod per node")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    sim.nodes().remove("n1").unwrap();
    let failed = wait_job(&http, "j", "j: one failure", |j| {
        status_field(j, "failed") == 1
    })
    .await;
    assert_eq!(status_field(&failed, "active"), 2);
    let pods = eventually("the lost pod failed and a replacement waits", || async {
        let pods = pods_of(&http, "j").await;
        let lost = pods
            .iter()
            .find(|p| p["metadata"]["name"] == on_n1.as_str())?;
        (lost["status"]["phase"] == "Failed" && pods.len() == 3 && unschedulable(&pods).len() == 1)
            .then_some(pods)
    })
    .await;
    assert_eq!(unschedulable(&pods), [TOO_LITTLE_CPU_ON_ONE]);

    sim.nodes()
        .resize("n2", &[("cpu", Some("2"))])
        .await
        .unwrap();
    eventually("the replacement runs on n2", || async {
        let pods = pods_of(&http, "j").await;
        let running: Vec<&Value> = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .collect();
        (running.len() == 2 && running.iter().all(|p| p["spec"]["nodeName"] == "n2")).then_some(())
    })
    .await;
    let job = wait_job(&http, "j", "j: 2 ready", |j| status_field(j, "ready") == 2).await;
    assert_eq!(
        (status_field(&job, "active"), status_field(&job, "failed")),
        (2, 1)
    );
    sim.shutdown().await;
}

/// Pods orphaned by a Job's deletion run to their end and then free their node.
#[tokio::test]
async fn orphaned_pods_finish_and_free_their_node() {
    let sim = with_nodes(vec![node("n1", "1")], Duration::from_secs(600)).await;
    let http = Http::new(sim.url());
    assert_eq!(
        http.post(JOBS, &job("first", 1, 1, "1s", cpu("1")))
            .await
            .status,
        201
    );
    placed(&http, "first", 1, 0, "").await;
    // The Job API's default deletion orphans the pod.
    assert_eq!(http.delete(&job_path("first"), None).await.status, 200);
    assert_eq!(
        http.post(JOBS, &job("second", 1, 1, "3600s", cpu("1")))
            .await
            .status,
        201
    );
    placed(&http, "second", 0, 1, TOO_LITTLE_CPU_ON_ONE).await;
    eventually(
        "the orphan finished and the second Job's pod runs",
        || async {
            let orphan = pods_of(&http, "first").await;
            let second = pods_of(&http, "second").await;
            (orphan.len() == 1
                && orphan[0]["status"]["phase"] == "Succeeded"
                && orphan[0]["metadata"].get("ownerReferences").is_none()
                && second.len() == 1
                && second[0]["status"]["phase"] == "Running")
                .then_some(())
        },
    )
    .await;
    sim.shutdown().await;
}

/// A watch of the pods bound to a node and not finished (the selector the kube-scheduler's and
/// a capacity reporter's informers use) sees a pod once it is bound and loses it once it ends.
#[tokio::test]
async fn pods_can_be_watched_by_node_and_phase() {
    let sim = with_nodes(vec![node("n1", "1")], Duration::from_secs(600)).await;
    let http = Http::new(sim.url());
    let selector = "fieldSelector=spec.nodeName%21%3D%2Cstatus.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed";
    let list = http.get(&format!("/api/v1/pods?{selector}")).await.json();
    assert_eq!(list["kind"], "PodList");
    assert!(list["items"].as_array().unwrap().is_empty());
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut watch = http
        .watch(&format!(
            "/api/v1/pods?watch=1&{selector}&resourceVersion={rv}&allowWatchBookmarks=true"
        ))
        .await;
    // Two 1-cpu pods on one core: the first runs 300 ms, then the second.
    assert_eq!(
        http.post(JOBS, &job("seq", 2, 2, "300ms", cpu("1")))
            .await
            .status,
        201
    );
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = watch.next_change().await.expect("the watch stays open");
        let pod = &event["object"];
        assert_eq!(pod["kind"], "Pod");
        seen.push((
            event["type"].as_str().unwrap().to_owned(),
            pod["metadata"]["name"].as_str().unwrap().to_owned(),
            pod["status"]["phase"].as_str().unwrap().to_owned(),
        ));
    }
    // Bound and running (ADDED: it starts matching), then finished (DELETED: it stops), for
    // each pod in turn: never two on the node at once.
    assert_eq!(
        seen.iter()
            .map(|(t, _, p)| (t.as_str(), p.as_str()))
            .collect::<Vec<_>>(),
        [
            ("ADDED", "Running"),
            ("DELETED", "Succeeded"),
            ("ADDED", "Running"),
            ("DELETED", "Succeeded")
        ]
    );
    assert_eq!(seen[0].1, seen[1].1);
    assert_eq!(seen[2].1, seen[3].1);
    assert_ne!(seen[0].1, seen[2].1);

    // A watch from a version the history no longer holds is told so.
    let compact = cluster(SimOptions {
        nodes: vec![node("n1", "4")],
        history: 4,
        ..fast_pods()
    })
    .await;
    let http = Http::new(compact.url());
    assert_eq!(
        http.post(JOBS, &job("many", 4, 8, "50ms", cpu("100m")))
            .await
            .status,
        201
    );
    wait_job(&http, "many", "many Complete", |j| {
        has_condition(j, "Complete")
    })
    .await;
    let events = http
        .watch("/api/v1/pods?watch=1&resourceVersion=1")
        .await
        .collect()
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
    compact.shutdown().await;
    sim.shutdown().await;
}

async fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await
        .expect("kubectl runs (it must be installed: scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const KUBECTL_JOB: &str = "\
apiVersion: batch/v1
kind: Job
metadata:
  name: fits
spec:
  parallelism: 3
  completions: 3
  template:
    metadata:
      annotations:
        fedjob.io/sim-duration: 3600s
    spec:
      restartPolicy: Never
      containers:
        - name: w
          image: busybox
          resources:
            requests:
              cpu: 700m
              memory: 1Gi
";

/// `fedjob-kubesim --nodes` and kubectl: `get nodes`, `describe node` (as in
/// `36-describe-node.txt`: the pods bound there and what they request, with percentages of
/// allocatable), and `describe pod` of a pod that fits nowhere.
#[tokio::test]
async fn kubectl_gets_and_describes_nodes_of_fedjob_kubesim() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let kubeconfig = home.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedjob-kubesim"))
        .args([
            "--clusters",
            "c1",
            "--nodes",
            "2",
            "--node-capacity",
            "cpu=2,memory=4Gi,pods=10",
        ])
        .args([
            "--node-labels",
            "topology.kubernetes.io/zone=zone-a",
            "--kubeconfig-out",
        ])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("fedjob-kubesim starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("fedjob-kubesim is ready in time")
        .unwrap()
        .expect("a ready line");

    let nodes = kubectl(home, &kubeconfig, &["get", "nodes"]).await;
    let rows: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    assert_eq!(rows.len(), 3, "{nodes}");
    assert_eq!(
        (rows[1][0], rows[1][1], rows[1][2], rows[1][4]),
        ("c1-node-1", "Ready", "<none>", "v1.24.17")
    );
    assert_eq!(rows[2][0], "c1-node-2");

    let job = home.join("job.yaml");
    std::fs::write(&job, KUBECTL_JOB).unwrap();
    kubectl(home, &kubeconfig, &["create", "-f", job.to_str().unwrap()]).await;
    // 3 × 700m on two nodes of 2 cpu: two on one node (1400m, 70 %), one on the other.
    let busy = eventually("two pods on one node", || async {
        for n in ["c1-node-1", "c1-node-2"] {
            let pods = kubectl(
                home,
                &kubeconfig,
                &[
                    "get",
                    "pods",
                    "-A",
                    "-o",
                    "name",
                    "--field-selector",
                    &format!("spec.nodeName={n}"),
                ],
            )
            .await;
            if pods.lines().count() == 2 {
                return Some(n);
            }
        }
        None
    })
    .await;
    let described = kubectl(home, &kubeconfig, &["describe", "node", busy]).await;
    for expected in [
        format!("Name:               {busy}"),
        "Labels:             kubernetes.io/arch=amd64".to_owned(),
        "topology.kubernetes.io/zone=zone-a".to_owned(),
        "Taints:             <none>".to_owned(),
        "Unschedulable:      false".to_owned(),
        format!(
            "Lease:              Failed to get lease: leases.coordination.k8s.io \"{busy}\" not found"
        ),
        "KubeletReady   kubelet is posting ready status".to_owned(),
        "Non-terminated Pods:          (2 in total)".to_owned(),
        "700m (35%)".to_owned(),
    ] {
        assert!(
            described.contains(&expected),
            "describe node lacks {expected:?}:\n{described}"
        );
    }
    let allocated: Vec<Vec<&str>> = described
        .lines()
        .skip_while(|l| !l.starts_with("Allocated resources:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        allocated.contains(&vec!["cpu", "1400m", "(70%)", "0", "(0%)"]),
        "{described}"
    );
    assert!(
        allocated.contains(&vec!["memory", "2Gi", "(50%)", "0", "(0%)"]),
        "{described}"
    );

    // 600m are left on one node and 1300m on the other: a 1500m pod fits on neither.
    let big = KUBECTL_JOB
        .replace("name: fits", "name: big")
        .replace("parallelism: 3", "parallelism: 1")
        .replace("completions: 3", "completions: 1")
        .replace("cpu: 700m", "cpu: 1500m");
    std::fs::write(&job, big).unwrap();
    kubectl(home, &kubeconfig, &["create", "-f", job.to_str().unwrap()]).await;
    let described = eventually("the big pod's FailedScheduling event", || async {
        let d = kubectl(
            home,
            &kubeconfig,
            &["describe", "pod", "-l", "job-name=big"],
        )
        .await;
        d.contains("FailedScheduling").then_some(d)
    })
    .await;
    assert!(
        described.contains("0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."),
        "{described}"
    );
    assert!(described.contains("default-scheduler"), "{described}");
    child.kill().await.unwrap();
}
