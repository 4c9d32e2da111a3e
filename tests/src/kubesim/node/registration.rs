//! What a kubelet sends when it registers its node: name, labels, capacity, a Ready
//! condition, and the node info it reports. `fedjob-kubesim --nodes` and the test handle
//! register nodes this way.

use std::collections::BTreeMap;

use fedjob_proto::quantity::Quantity;
use serde_json::{Value, json};

use fedjob_scheduler::kube_api::clock;

/// The kubelet version simulated nodes report (the API server's own minor version).
const KUBELET_VERSION: &str = "v1.24.17";

/// A node as a kubelet registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The node's name (and its `kubernetes.io/hostname` label).
    pub name: String,
    /// `status.capacity` (and `allocatable`): quantities by resource name.
    pub capacity: BTreeMap<String, String>,
    /// Labels besides the ones every kubelet sets.
    pub labels: BTreeMap<String, String>,
    /// Taints it registers with (`--register-with-taints`): key, value, effect.
    pub taints: Vec<(String, String, String)>,
    /// Whether a simulated kubelet runs the pods bound to it. Without one they stay `Pending`,
    /// as in `k8s-facts/` (recorded with no kubelet).
    pub kubelet: bool,
}

/// The capacity of a node when nothing says otherwise: 4 cpu, 16Gi, and the kubelet's default
/// of 110 pods.
pub const DEFAULT_CAPACITY: &str = "cpu=4,memory=16Gi,pods=110";

/// Parses `cpu=4,memory=16Gi,pods=110,nvidia.com/gpu=2`: every value must be a quantity.
pub fn parse_capacity(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, quantity) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected RESOURCE=QUANTITY"))?;
        let (name, quantity) = (name.trim(), quantity.trim());
        let parsed = Quantity::parse(quantity).map_err(|e| format!("{name}={quantity}: {e}"))?;
        if name.is_empty() || parsed.is_negative() {
            return Err(format!(
                "{item:?}: expected a resource name and a quantity of at least 0"
            ));
        }
        out.insert(name.to_owned(), quantity.to_owned());
    }
    Ok(out)
}

impl Registration {
    /// A node named `name` with [`DEFAULT_CAPACITY`], a kubelet, and no extra labels.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            capacity: parse_capacity(DEFAULT_CAPACITY).expect("the default capacity parses"),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            kubelet: true,
        }
    }

    /// The same node with `resource` set to `quantity` (`"8"`, `"32Gi"`, `"2"`).
    pub fn with(mut self, resource: &str, quantity: &str) -> Self {
        self.capacity
            .insert(resource.to_owned(), quantity.to_owned());
        self
    }

    /// The same node with the label `key=value`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The same node registered with a taint.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints
            .push((key.to_owned(), value.to_owned(), effect.to_owned()));
        self
    }

    /// The same node with no kubelet running its pods (bound pods stay `Pending`).
    pub fn without_kubelet(mut self) -> Self {
        self.kubelet = false;
        self
    }

    /// The labels the node carries: the kubelet's own, then the extra ones.
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = [
            ("kubernetes.io/hostname", self.name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        labels.extend(self.labels.clone());
        labels
    }

    /// The body the kubelet POSTs to `/api/v1/nodes`.
    pub fn body(&self) -> Value {
        let now = clock::now();
        let mut node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self.all_labels()},
            "spec": {},
            "status": {
                "capacity": self.capacity,
                "allocatable": self.capacity,
                "conditions": [ready_condition(true, &now)],
                "nodeInfo": {
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": KUBELET_VERSION,
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "fedjob-kubesim://1",
                    "osImage": "fedjob-kubesim",
                },
            }
        });
        if !self.taints.is_empty() {
            node["spec"]["taints"] = self
                .taints
                .iter()
                .map(|(key, value, effect)| {
                    let mut t = json!({"key": key, "effect": effect});
                    if !value.is_empty() {
                        t["value"] = json!(value);
                    }
                    t
                })
                .collect();
        }
        node
    }
}

/// `count` identical nodes of a cluster, named `CLUSTER-node-1` …, with `capacity` and
/// `labels` (`fedjob-kubesim --nodes`).
pub fn pool(
    cluster: &str,
    count: usize,
    capacity: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Vec<Registration> {
    (1..=count)
        .map(|i| {
            let mut node = Registration::new(format!("{cluster}-node-{i}"));
            node.capacity.extend(capacity.clone());
            node.labels.extend(labels.clone());
            node
        })
        .collect()
}

/// Parses `--cluster-nodes NAME=COUNT[:CAPACITY]` (`c2=3:cpu=8,memory=32Gi`): the cluster,
/// its node count, and the capacity entries that differ from the default.
pub fn parse_cluster_nodes(s: &str) -> Result<(String, usize, BTreeMap<String, String>), String> {
    let (cluster, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected CLUSTER=COUNT[:CAPACITY]"))?;
    let (count, capacity) = rest.split_once(':').unwrap_or((rest, ""));
    let count = count
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {count:?} is not a node count"))?;
    Ok((cluster.trim().to_owned(), count, parse_capacity(capacity)?))
}

/// The `Ready` condition a kubelet posts (`KubeletReady`) or a failing one
/// (`KubeletNotReady`).
pub fn ready_condition(ready: bool, now: &str) -> Value {
    if ready {
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
               "message": "kubelet is posting ready status",
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    } else {
        json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady",
               "message": "container runtime status check may not have completed yet",
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_lists_parse_and_bad_quantities_are_named() {
        let c = parse_capacity("cpu=8, memory=32Gi,pods=110,nvidia.com/gpu=2").unwrap();
        assert_eq!(c["cpu"], "8");
        assert_eq!(c["nvidia.com/gpu"], "2");
        let err = parse_capacity("cpu=8,memory=lots").unwrap_err();
        assert!(
            err.starts_with("memory=lots: quantities must match"),
            "{err}"
        );
        assert!(parse_capacity("cpu").is_err());
        assert!(parse_capacity("cpu=-1").is_err());
    }

    #[test]
    fn pools_and_per_cluster_plans() {
        let (cluster, count, capacity) =
            parse_cluster_nodes("c2=3:cpu=8,nvidia.com/gpu=2").unwrap();
        assert_eq!((cluster.as_str(), count), ("c2", 3));
        let nodes = pool(
            &cluster,
            count,
            &capacity,
            &[("zone".to_owned(), "a".to_owned())].into(),
        );
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[2].name, "c2-node-3");
        assert_eq!(nodes[0].capacity["cpu"], "8");
        assert_eq!(
            nodes[0].capacity["memory"], "16Gi",
            "the rest stays the default"
        );
        assert_eq!(nodes[0].capacity["nvidia.com/gpu"], "2");
        assert_eq!(nodes[0].labels["zone"], "a");
        assert_eq!(parse_cluster_nodes("c1=0").unwrap().1, 0);
        assert!(parse_cluster_nodes("c1").is_err());
        assert!(parse_cluster_nodes("c1=x").is_err());
        assert!(parse_cluster_nodes("c1=2:cpu=lots").is_err());
    }

    #[test]
    fn the_body_is_what_a_kubelet_registers() {
        let body = Registration::new("n1")
            .with("nvidia.com/gpu", "2")
            .label("zone", "a")
            .taint("dedicated", "gpu", "NoSchedule")
            .body();
        assert_eq!(body["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
        assert_eq!(body["metadata"]["labels"]["zone"], "a");
        assert_eq!(body["status"]["allocatable"]["nvidia.com/gpu"], "2");
        assert_eq!(body["status"]["conditions"][0]["reason"], "KubeletReady");
        assert_eq!(
            body["spec"]["taints"],
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
        );
    }
}
