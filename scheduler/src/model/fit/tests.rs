use fedjob_proto::capacity::{Groups, NodeCapacity, Reporter, free};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const GI: i64 = 1 << 30;

/// A Node object with `allocatable`, Ready unless `ready` says otherwise.
fn node(allocatable: Value, labels: Value, taints: Value, ready: bool, cordoned: bool) -> Value {
    json!({
        "metadata": {"name": "n", "labels": labels},
        "spec": {"taints": taints, "unschedulable": cordoned},
        "status": {"allocatable": allocatable,
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

fn plain(cpu: &str, memory: &str, pods: &str) -> Value {
    node(
        json!({"cpu": cpu, "memory": memory, "pods": pods}),
        json!({}),
        json!([]),
        true,
        false,
    )
}

/// The capacity the scheduler holds after the agent reported these nodes, each with the pods
/// already bound there (their specs).
fn capacity(nodes: &[(Value, Vec<Value>)]) -> ClusterCapacity {
    let mut groups = Groups::new();
    for (n, pods) in nodes {
        let Some(node) = NodeCapacity::of(n) else {
            continue;
        };
        let mut used = Amounts::new();
        for spec in pods {
            for (name, amount) in pod_requests(spec) {
                *used.entry(name).or_default() += amount;
            }
        }
        let left = free(&node.allocatable, &used, pods.len() as i64);
        *groups.entry((node.shape, left)).or_default() += 1;
    }
    let mut cluster = ClusterCapacity::default();
    if let Some(report) = Reporter::default().report(&groups) {
        cluster.apply(&report).unwrap();
    }
    cluster
}

fn template(spec: Value) -> Value {
    json!({"metadata": {}, "spec": spec})
}

fn requesting(cpu: &str, memory: &str) -> Value {
    json!({"containers": [{"name": "w", "image": "busybox", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]})
}

fn fit(spec: Value, cluster: &ClusterCapacity) -> u64 {
    pods_that_fit(&PodDemand::of_template(&template(spec)), cluster)
}

#[test]
fn the_recorded_cluster_node_by_node() {
    // k8s-facts 30–36: two nodes of 2 cpu, 4Gi, 10 pods.
    let empty = capacity(&[
        (plain("2", "4Gi", "10"), vec![]),
        (plain("2", "4Gi", "10"), vec![]),
    ]);
    assert_eq!(
        fit(requesting("500m", "1Gi"), &empty),
        8,
        "4 a node, by cpu and by memory"
    );
    assert_eq!(
        fit(requesting("900m", "1Gi"), &empty),
        4,
        "2 a node: 1800m of 2000m"
    );
    assert_eq!(
        fit(requesting("3", "1Gi"), &empty),
        0,
        "larger than any node"
    );
    // With `fits`' three pods bound (two on one node, one on the other), two of `partial`'s
    // fit, as the real scheduler bound two (34-job-partly-unschedulable.json).
    let fits = requesting("500m", "1Gi");
    let busy = capacity(&[
        (plain("2", "4Gi", "10"), vec![fits.clone(), fits.clone()]),
        (plain("2", "4Gi", "10"), vec![fits]),
    ]);
    assert_eq!(fit(requesting("900m", "1Gi"), &busy), 2);
}

#[test]
fn init_containers_count_as_the_largest_of_them_or_the_sum_of_the_rest() {
    let cluster = capacity(&[(plain("4", "16Gi", "110"), vec![])]);
    let spec = json!({
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
        "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}},
                       {"name": "b", "resources": {"requests": {"cpu": "500m"}}}]
    });
    // max(2, 0.5 + 0.5) = 2 cpu a pod: 2 fit (summing all would fit 1, ignoring init 4).
    assert_eq!(fit(spec, &cluster), 2);
}

#[test]
fn sidecars_run_beside_the_containers_and_under_later_init_containers() {
    let cluster = capacity(&[(plain("4", "16Gi", "110"), vec![])]);
    // Kubernetes 1.29+ PodRequests: the sidecar (an init container with restartPolicy Always)
    // keeps running, so it adds to the containers: 1 + 1 = 2 cpu, and the init container
    // after it needs 1.5 + 1 = 2.5 cpu while it runs. max(2, 2.5) = 2.5 cpu a pod: 1 fits
    // (2 if the sidecar were counted as a plain init container: max(1, 1, 1.5) = 1.5).
    let spec = json!({
        "initContainers": [
            {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
            {"name": "setup", "resources": {"requests": {"cpu": "1500m"}}}],
        "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]
    });
    assert_eq!(fit(spec, &cluster), 1);
    // An init container before the sidecar runs without it: max(1 + 1, 3) = 3 cpu: 1 fits;
    // with a small one, the running phase decides: max(1 + 1, 500m) = 2 cpu: 2 fit.
    let before = |cpu: &str| {
        json!({
            "initContainers": [
                {"name": "setup", "resources": {"requests": {"cpu": cpu}}},
                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]
        })
    };
    assert_eq!(fit(before("3"), &cluster), 1);
    assert_eq!(fit(before("500m"), &cluster), 2);
    // Memory of a sidecar counts in every phase after it starts: 1Gi + 2Gi running, 1Gi +
    // 6Gi for the init container after it: 7Gi a pod, 2 fit in 16Gi (5 by running alone).
    let spec = json!({
        "initContainers": [
            {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"memory": "1Gi"}}},
            {"name": "load", "resources": {"requests": {"memory": "6Gi"}}}],
        "containers": [{"name": "a", "resources": {"requests": {"memory": "2Gi"}}}]
    });
    assert_eq!(fit(spec, &cluster), 2);
}

#[test]
fn extended_resources_from_limits() {
    let gpu_node = node(
        json!({"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "2"}),
        json!({}),
        json!([]),
        true,
        false,
    );
    let cluster = capacity(&[(gpu_node, vec![]), (plain("8", "32Gi", "110"), vec![])]);
    let spec = json!({"containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "1"}}}]});
    assert_eq!(fit(spec, &cluster), 2, "only the GPU node, one pod per GPU");
}

#[test]
fn full_cordoned_and_not_ready_nodes_take_nothing() {
    let big = requesting("1", "1Gi");
    let full_cpu = (plain("2", "8Gi", "110"), vec![big.clone(), big.clone()]);
    let full_pods = (plain("8", "8Gi", "2"), vec![json!({}), json!({})]);
    let cordoned = (
        node(
            json!({"cpu": "8", "memory": "8Gi", "pods": "110"}),
            json!({}),
            json!([]),
            true,
            true,
        ),
        vec![],
    );
    let not_ready = (
        node(
            json!({"cpu": "8", "memory": "8Gi", "pods": "110"}),
            json!({}),
            json!([]),
            false,
            false,
        ),
        vec![],
    );
    let cluster = capacity(&[full_cpu, full_pods, cordoned, not_ready]);
    assert_eq!(fit(requesting("100m", "1Mi"), &cluster), 0);
    assert_eq!(cluster.totals().1, 2, "only the full nodes are reported");
    // A pod that requests nothing still needs a pod slot.
    let roomy = capacity(&[(plain("1", "1Gi", "3"), vec![])]);
    assert_eq!(fit(json!({"containers": [{"name": "w"}]}), &roomy), 3);
}

#[test]
fn selectors_affinity_and_taints() {
    let zone = |z: &str| json!({"topology.kubernetes.io/zone": z, "kubernetes.io/hostname": "h"});
    let alloc = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    let cluster = capacity(&[
        (
            node(alloc.clone(), zone("a"), json!([]), true, false),
            vec![],
        ),
        (
            node(alloc.clone(), zone("b"), json!([]), true, false),
            vec![],
        ),
        (
            node(
                alloc,
                zone("b"),
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                                          {"key": "soft", "effect": "PreferNoSchedule"}]),
                true,
                false,
            ),
            vec![],
        ),
    ]);
    let mut spec = requesting("1", "1Gi");
    assert_eq!(
        fit(spec.clone(), &cluster),
        8,
        "the tainted node takes none"
    );
    spec["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    assert_eq!(fit(spec.clone(), &cluster), 12);
    spec["nodeSelector"] = json!({"topology.kubernetes.io/zone": "b"});
    assert_eq!(fit(spec.clone(), &cluster), 8);
    spec.as_object_mut().unwrap().remove("nodeSelector");
    spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["b"]}]}
    ]}}});
    assert_eq!(fit(spec.clone(), &cluster), 4);
    // Host names are not reported: selecting one fits nowhere.
    spec.as_object_mut().unwrap().remove("affinity");
    spec["nodeSelector"] = json!({"kubernetes.io/hostname": "h"});
    assert_eq!(fit(spec, &cluster), 0);
}

fn arb_shape() -> impl Strategy<Value = Shape> {
    (0u8..2, prop::bool::ANY).prop_map(|(zone, tainted)| Shape {
        labels: [("zone".to_owned(), zone.to_string())].into(),
        taints: if tainted {
            vec![Taint {
                key: "t".into(),
                value: String::new(),
                effect: "NoSchedule".into(),
            }]
        } else {
            vec![]
        },
    })
}

fn arb_free() -> impl Strategy<Value = Amounts> {
    (0i64..16_000, 0i64..64, 0i64..120, 0i64..4).prop_map(|(cpu, gi, pods, gpus)| {
        let mut f: Amounts = [("cpu", cpu), ("memory", gi * GI), ("pods", pods)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        if gpus > 0 {
            f.insert("nvidia.com/gpu".into(), gpus);
        }
        f
    })
}

fn arb_spec() -> impl Strategy<Value = Value> {
    (1i64..4000, 0i64..8, 0i64..2, 0i64..3000, prop::option::of(0u8..2), prop::bool::ANY).prop_map(
        |(cpu, gi, gpus, init_cpu, zone, tolerates)| {
            let mut spec = json!({
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": format!("{init_cpu}m")}}}],
                "containers": [{"name": "w", "resources": {
                    "requests": {"cpu": format!("{cpu}m"), "memory": format!("{gi}Gi")},
                    "limits": {"nvidia.com/gpu": gpus.to_string()}}}]
            });
            if let Some(z) = zone {
                spec["nodeSelector"] = json!({"zone": z.to_string()});
            }
            if tolerates {
                spec["tolerations"] = json!([{"key": "t", "operator": "Exists"}]);
            }
            spec
        },
    )
}

proptest! {
    /// What fits on a node is exactly as many pods as its free resources hold: that many fit,
    /// one more does not.
    #[test]
    fn per_node_is_the_most_that_fits(spec in arb_spec(), shape in arb_shape(), left in arb_free()) {
        let demand = PodDemand::of_template(&template(spec));
        let k = demand.per_node(&shape, &left) as i64;
        if !demand.admits(&shape) {
            prop_assert_eq!(k, 0);
            return Ok(());
        }
        let have = |r: &str| left.get(r).copied().unwrap_or(0);
        prop_assert!(k <= have("pods"));
        for (r, amount) in &demand.requests {
            prop_assert!(k * amount <= have(r), "{} pods of {} {} exceed {}", k, amount, r, have(r));
        }
        let one_more_fits = k < have("pods")
            && demand.requests.iter().all(|(r, amount)| (k + 1) * amount <= have(r));
        prop_assert!(!one_more_fits);
    }

    /// More free resources never fit fewer pods; larger requests never fit more.
    #[test]
    fn monotone(spec in arb_spec(), shape in arb_shape(), left in arb_free(), extra in 0i64..4000) {
        let demand = PodDemand::of_template(&template(spec.clone()));
        let before = demand.per_node(&shape, &left);
        let mut more = left.clone();
        *more.entry("cpu".into()).or_default() += extra;
        *more.entry("memory".into()).or_default() += extra * 1024 * 1024;
        prop_assert!(demand.per_node(&shape, &more) >= before);
        let mut bigger = spec;
        bigger["containers"][0]["resources"]["requests"]["cpu"] =
            json!(format!("{}m", demand.requests["cpu"] + extra));
        let bigger = PodDemand::of_template(&template(bigger));
        prop_assert!(bigger.per_node(&shape, &left) <= before);
    }

    /// A cluster's count is the sum of its nodes' counts.
    #[test]
    fn counts_add_up_over_nodes(spec in arb_spec(), nodes in prop::collection::vec((arb_shape(), arb_free(), 1u32..20), 0..6)) {
        let demand = PodDemand::of_template(&template(spec));
        let mut groups = Groups::new();
        for (shape, left, n) in &nodes {
            *groups.entry((shape.clone(), left.clone())).or_default() += n;
        }
        let mut cluster = ClusterCapacity::default();
        if let Some(report) = Reporter::default().report(&groups) {
            cluster.apply(&report).unwrap();
        }
        let by_node: u64 = groups.iter().map(|((s, f), n)| demand.per_node(s, f) * u64::from(*n)).sum();
        prop_assert_eq!(pods_that_fit(&demand, &cluster), by_node);
    }
}
