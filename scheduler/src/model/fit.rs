//! How many pods of a Job's template fit in a member cluster, node by node, from the
//! capacity its agent reports (`dynamicWeight: AvailableReplicas`, SPEC §10). Pure: no I/O.
//!
//! A pod fits on a node when the node's labels satisfy the pod's `nodeSelector` and required
//! node affinity, the pod tolerates the node's `NoSchedule`/`NoExecute` taints, and every
//! resource the pod requests ([`pod_requests`]: init containers as the kube-scheduler counts
//! them, limits standing in for missing requests, extended resources such as
//! `nvidia.com/gpu`) is free there, as is one of the node's `pods`. Cordoned and NotReady nodes
//! offer nothing: agents leave them out of their reports ([`NodeCapacity::of`]).
//!
//! The reports carry no host names, so a pod that selects nodes by `kubernetes.io/hostname`
//! or `matchFields` fits nowhere by this count (the planner then splits by the static rule).
//!
//! [`NodeCapacity::of`]: fedjob_proto::capacity::NodeCapacity::of

use std::collections::BTreeMap;

use fedjob_proto::capacity::{Amounts, ClusterCapacity, FreeAmounts, Shape, Taint, pod_requests};
use serde_json::Value;

use super::labels;

/// One requirement of a node selector term.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: String,
    values: Vec<String>,
}

impl Requirement {
    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        labels::holds(&self.operator, labels.get(&self.key), &self.values)
    }
}

/// A toleration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Toleration {
    key: String,
    exists: bool,
    value: String,
    effect: String,
}

impl Toleration {
    fn tolerates(&self, taint: &Taint) -> bool {
        (self.effect.is_empty() || self.effect == taint.effect)
            && (self.key.is_empty() || self.key == taint.key)
            && (self.exists || self.value == taint.value)
    }
}

/// What one pod of a template asks of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDemand {
    /// The pod's requests (without `pods`).
    pub requests: Amounts,
    node_selector: BTreeMap<String, String>,
    /// Terms of required node affinity (any one must hold); `None` without.
    terms: Option<Vec<Vec<Requirement>>>,
    tolerations: Vec<Toleration>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl PodDemand {
    /// The demand of a pod made from `template` (a Job's `spec.template`).
    pub fn of_template(template: &Value) -> Self {
        let spec = template.get("spec").unwrap_or(&Value::Null);
        let node_selector = spec
            .get("nodeSelector")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let terms = spec
            .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
            .and_then(Value::as_array)
            .map(|terms| {
                terms
                    .iter()
                    .map(|term| {
                        let mut reqs: Vec<Requirement> = term
                            .get("matchExpressions")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .map(|r| Requirement {
                                key: text(r, "key"),
                                operator: text(r, "operator"),
                                values: r
                                    .get("values")
                                    .and_then(Value::as_array)
                                    .into_iter()
                                    .flatten()
                                    .filter_map(Value::as_str)
                                    .map(str::to_owned)
                                    .collect(),
                            })
                            .collect();
                        // Host names are not reported: a term on fields cannot be shown to hold.
                        if term.get("matchFields").and_then(Value::as_array).is_some_and(|f| !f.is_empty()) {
                            reqs.push(Requirement {
                                key: String::new(),
                                operator: "matchFields".to_owned(),
                                values: Vec::new(),
                            });
                        }
                        reqs
                    })
                    .collect()
            });
        let mut tolerations: Vec<Toleration> = spec
            .get("tolerations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| Toleration {
                key: text(t, "key"),
                exists: text(t, "operator") == "Exists",
                value: text(t, "value"),
                effect: text(t, "effect"),
            })
            .collect();
        // The API server's DefaultTolerationSeconds adds these to every pod.
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            tolerations.push(Toleration {
                key: key.to_owned(),
                exists: true,
                value: String::new(),
                effect: "NoExecute".to_owned(),
            });
        }
        Self {
            requests: pod_requests(spec),
            node_selector,
            terms,
            tolerations,
        }
    }

    /// Whether the pod may go on nodes of this shape at all (selector, affinity, taints).
    pub fn admits(&self, shape: &Shape) -> bool {
        let labels = &shape.labels;
        let selected = self
            .node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        let affine = self.terms.as_ref().is_none_or(|terms| {
            terms
                .iter()
                .any(|term| !term.is_empty() && term.iter().all(|r| r.holds(labels)))
        });
        let tolerated = shape
            .taints
            .iter()
            .all(|t| self.tolerations.iter().any(|tol| tol.tolerates(t)));
        selected && affine && tolerated
    }

    /// How many of these pods fit on one node of `shape` with `free` resources.
    pub fn per_node(&self, shape: &Shape, free: &impl FreeAmounts) -> u64 {
        if !self.admits(shape) {
            return 0;
        }
        let mut fit = free.free("pods").unwrap_or(0).max(0) as u64;
        for (name, amount) in &self.requests {
            if *amount > 0 && name != "pods" {
                let available = free.free(name).unwrap_or(0).max(0);
                fit = fit.min((available / amount) as u64);
            }
        }
        fit
    }
}

/// How many pods of `demand` fit in the cluster, adding up node by node.
pub fn pods_that_fit(demand: &PodDemand, capacity: &ClusterCapacity) -> u64 {
    capacity
        .groups()
        .map(|(shape, free, nodes)| demand.per_node(shape, &free) * u64::from(nodes))
        .sum()
}

#[cfg(test)]
mod tests;
