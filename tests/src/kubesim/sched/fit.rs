//! The kube-scheduler's decision for one pod, without I/O: the default profile's filters in
//! their order (NodeUnschedulable, TaintToleration, NodeAffinity, NodeResourcesFit), the
//! choice among the nodes that pass (least allocated), and the message of a pod that fits
//! nowhere, spelled as kube-scheduler v1.24 spells it (`FitError` plus the preemption
//! plugin's verdict).

use std::collections::BTreeMap;

use super::demand::{Amounts, Demand, Taint};

/// What the scheduler knows of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its taints.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `status.allocatable`, in scheduling units (`pods` included).
    pub allocatable: Amounts,
}

/// What the pods bound to a node and not yet finished take of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// The sum of their requests.
    pub requested: Amounts,
    /// How many there are.
    pub pods: i64,
}

impl Usage {
    /// Counts a pod with `requests` in (`sign` 1) or out (`sign` -1).
    pub fn add(&mut self, requests: &Amounts, sign: i64) {
        self.pods += sign;
        for (name, amount) in requests {
            let entry = self.requested.entry(name.clone()).or_default();
            *entry += sign * amount;
            if *entry == 0 {
                self.requested.remove(name);
            }
        }
    }
}

/// Why a node does not take a pod: the failing filter's reasons, and whether removing other
/// pods could change that (`Unschedulable`) or not (`UnschedulableAndUnresolvable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reasons, as the scheduler words them ("Insufficient cpu").
    pub reasons: Vec<String>,
    /// Whether preemption could help on this node.
    pub resolvable: bool,
}

impl Rejection {
    fn unresolvable(reason: impl Into<String>) -> Self {
        Self {
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }
}

/// The taint the API server puts on cordoned nodes' pods' way (tolerated, a cordon is not).
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Runs the filters on one node; the first that fails decides, as in the default profile.
pub fn filter(demand: &Demand, node: &NodeInfo, usage: &Usage) -> Result<(), Rejection> {
    // NodeUnschedulable: a cordoned node, unless the pod tolerates the cordon's taint.
    if node.unschedulable {
        let cordon = Taint {
            key: UNSCHEDULABLE_TAINT.to_owned(),
            value: String::new(),
            effect: "NoSchedule".to_owned(),
        };
        if demand.untolerated(std::slice::from_ref(&cordon)).is_some() {
            return Err(Rejection::unresolvable("node(s) were unschedulable"));
        }
    }
    // TaintToleration.
    if let Some(taint) = demand.untolerated(&node.taints) {
        return Err(Rejection::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key, taint.value
        )));
    }
    // NodeAffinity (nodeSelector and required node affinity).
    if !demand.selects(&node.name, &node.labels) {
        return Err(Rejection::unresolvable(
            "node(s) didn't match Pod's node affinity/selector",
        ));
    }
    // NodeResourcesFit.
    let reasons = insufficient(demand, node, usage);
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection {
            reasons,
            resolvable: true,
        })
    }
}

/// `fitsRequest`: every resource the pod needs more of than the node has left.
fn insufficient(demand: &Demand, node: &NodeInfo, usage: &Usage) -> Vec<String> {
    let free = |name: &str| {
        node.allocatable.get(name).copied().unwrap_or(0)
            - usage.requested.get(name).copied().unwrap_or(0)
    };
    let mut reasons = Vec::new();
    if usage.pods + 1 > node.allocatable.get("pods").copied().unwrap_or(0) {
        reasons.push("Too many pods".to_owned());
    }
    for (name, amount) in &demand.requests {
        if name != "pods" && *amount > free(name) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

/// `NodeResourcesFit`'s default score (least allocated over cpu and memory, with the
/// scheduler's stand-in requests of 100m and 200Mi for a pod that requests nothing), in
/// millionths: the node with the most room left after the pod scores highest.
pub fn score(demand: &Demand, node: &NodeInfo, usage: &Usage) -> i64 {
    const DEFAULT_MILLI_CPU: i64 = 100;
    const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;
    let mut total = 0;
    for (name, default) in [("cpu", DEFAULT_MILLI_CPU), ("memory", DEFAULT_MEMORY)] {
        let allocatable = node.allocatable.get(name).copied().unwrap_or(0);
        if allocatable <= 0 {
            continue;
        }
        let requested = usage.requested.get(name).copied().unwrap_or(0)
            + demand.requests.get(name).copied().unwrap_or(default);
        let free = (allocatable - requested).max(0);
        total += (i128::from(free) * 1_000_000 / i128::from(allocatable)) as i64;
    }
    total / 2
}

/// The message of a pod no node takes: `FitError.Error()` followed by the preemption plugin's
/// own `FitError` (`preemption: …`), each a count of nodes per reason, sorted as strings.
pub fn unschedulable_message(demand: &Demand, rejections: &[Rejection]) -> String {
    let nodes = rejections.len();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rejections {
        for reason in &r.reasons {
            *reasons.entry(reason).or_default() += 1;
        }
    }
    let mut message = format!("0/{nodes} nodes are available: {}.", histogram(&reasons));
    if demand.never_preempts {
        message.push_str(" preemption: not eligible due to preemptionPolicy=Never.");
        return message;
    }
    // Every simulated pod has priority 0, so no node has a pod the incoming one could evict.
    let mut verdicts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rejections {
        let verdict = if r.resolvable {
            "No preemption victims found for incoming pod"
        } else {
            "Preemption is not helpful for scheduling"
        };
        *verdicts.entry(verdict).or_default() += 1;
    }
    message.push_str(&format!(
        " preemption: 0/{nodes} nodes are available: {}.",
        histogram(&verdicts)
    ));
    message
}

/// `"<count> <reason>"` entries sorted as strings (so "10 …" comes before "2 …", as in Go).
fn histogram(counts: &BTreeMap<&str, usize>) -> String {
    let mut entries: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    entries.sort();
    entries.join(", ")
}

/// The message when the cluster has no nodes at all (`ErrNoNodesAvailable`).
pub const NO_NODES_MESSAGE: &str = "no nodes available to schedule pods";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: i64, memory: i64, pods: i64) -> NodeInfo {
        NodeInfo {
            name: name.to_owned(),
            allocatable: [("cpu", cpu), ("memory", memory), ("pods", pods)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            ..NodeInfo::default()
        }
    }

    fn demand(template_spec: serde_json::Value) -> Demand {
        Demand::of_template(&json!({ "spec": template_spec }))
    }

    fn cpu_pod(cpu: &str) -> Demand {
        demand(
            json!({"containers": [{"name": "w", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}),
        )
    }

    const GI: i64 = 1 << 30;

    #[test]
    fn the_recorded_message_for_a_pod_too_big_for_both_nodes() {
        // 33-pod-unschedulable.json: two nodes of 2 cpu, a pod of 3.
        let d = cpu_pod("3");
        let usage = Usage::default();
        let rejections: Vec<Rejection> =
            [node("n1", 2000, 4 * GI, 10), node("n2", 2000, 4 * GI, 10)]
                .iter()
                .map(|n| filter(&d, n, &usage).unwrap_err())
                .collect();
        assert_eq!(
            unschedulable_message(&d, &rejections),
            "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn mixed_reasons_are_counted_per_node_and_sorted_as_strings() {
        let d = cpu_pod("1");
        let mut usage = Usage::default();
        usage.add(
            &[("cpu".to_owned(), 1500), ("memory".to_owned(), 3 * GI + 1)].into(),
            1,
        );
        let mut tainted = node("t", 4000, 4 * GI, 10);
        tainted.taints.push(Taint {
            key: "dedicated".into(),
            value: "gpu".into(),
            effect: "NoSchedule".into(),
        });
        let mut cordoned = node("c", 4000, 4 * GI, 10);
        cordoned.unschedulable = true;
        let mut labelled = node("l", 4000, 4 * GI, 10);
        labelled.labels.insert("zone".into(), "b".into());
        let d_zone = demand(
            json!({"nodeSelector": {"zone": "a"}, "containers": [{"name": "w", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        let mut rejections = Vec::new();
        for _ in 0..10 {
            // Full on cpu and memory: both reasons, one node.
            rejections.push(filter(&d, &node("f", 2000, 4 * GI, 10), &usage).unwrap_err());
        }
        rejections.push(filter(&d, &tainted, &Usage::default()).unwrap_err());
        rejections.push(filter(&d, &cordoned, &Usage::default()).unwrap_err());
        rejections.push(filter(&d_zone, &labelled, &Usage::default()).unwrap_err());
        let full_pods = Usage {
            pods: 10,
            ..Usage::default()
        };
        rejections.push(filter(&d, &node("p", 4000, 4 * GI, 10), &full_pods).unwrap_err());
        assert_eq!(
            unschedulable_message(&d, &rejections),
            "0/14 nodes are available: 1 Too many pods, 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable, \
             10 Insufficient cpu, 10 Insufficient memory. \
             preemption: 0/14 nodes are available: 11 No preemption victims found for incoming pod, \
             3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn filters_run_in_the_profile_order() {
        // Cordoned, tainted, mismatched and full at once: the cordon is what is reported.
        let d = demand(
            json!({"nodeSelector": {"zone": "a"}, "containers": [{"name": "w", "resources": {"requests": {"cpu": "8"}}}]}),
        );
        let mut n = node("n", 1000, GI, 10);
        n.unschedulable = true;
        n.taints.push(Taint {
            key: "k".into(),
            value: String::new(),
            effect: "NoExecute".into(),
        });
        let r = filter(&d, &n, &Usage::default()).unwrap_err();
        assert_eq!(r.reasons, ["node(s) were unschedulable"]);
        n.unschedulable = false;
        let r = filter(&d, &n, &Usage::default()).unwrap_err();
        assert_eq!(r.reasons, ["node(s) had untolerated taint {k: }"]);
        n.taints.clear();
        let r = filter(&d, &n, &Usage::default()).unwrap_err();
        assert_eq!(
            r.reasons,
            ["node(s) didn't match Pod's node affinity/selector"]
        );
        n.labels.insert("zone".into(), "a".into());
        let r = filter(&d, &n, &Usage::default()).unwrap_err();
        assert_eq!(r.reasons, ["Insufficient cpu"]);
        assert!(r.resolvable);
    }

    #[test]
    fn extended_resources_and_exact_fits() {
        let d = demand(
            json!({"containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}),
        );
        let mut n = node("g", 4000, GI, 10);
        assert_eq!(
            filter(&d, &n, &Usage::default()).unwrap_err().reasons,
            ["Insufficient nvidia.com/gpu"]
        );
        n.allocatable.insert("nvidia.com/gpu".into(), 2);
        assert_eq!(
            filter(&d, &n, &Usage::default()),
            Ok(()),
            "an exact fit fits"
        );
        let mut usage = Usage::default();
        usage.add(&d.requests, 1);
        assert!(filter(&d, &n, &usage).is_err());
        usage.add(&d.requests, -1);
        assert_eq!(
            usage,
            Usage::default(),
            "a pod counted out leaves nothing behind"
        );
    }

    #[test]
    fn a_pod_that_never_preempts_says_so() {
        let d = demand(
            json!({"preemptionPolicy": "Never", "containers": [{"name": "w", "resources": {"requests": {"cpu": "3"}}}]}),
        );
        let r = filter(&d, &node("n", 2000, GI, 10), &Usage::default()).unwrap_err();
        assert_eq!(
            unschedulable_message(&d, &[r]),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
        );
    }

    #[test]
    fn the_emptier_node_scores_higher() {
        let d = cpu_pod("500m");
        let n = node("n", 2000, 4 * GI, 10);
        let mut busy = Usage::default();
        busy.add(&d.requests, 1);
        assert!(score(&d, &n, &Usage::default()) > score(&d, &n, &busy));
    }
}
