//! Free capacity of a member cluster, as its agent reports it and the scheduler reads it
//! ([`v1::CapacityReport`]): the Kubernetes resource arithmetic both sides must agree on, and
//! both ends of the compact encoding.
//!
//! - [`pod_requests`]: what a pod requests, as the kube-scheduler adds it up (per resource the
//!   larger of the sum over its containers and its largest init container; a limit without a
//!   request requests the limit; plus the pod's overhead).
//! - [`NodeCapacity::of`]: what a node offers new pods (nothing when cordoned or not Ready), and
//!   [`free`]: its allocatable minus what its pods request.
//! - [`Reporter`] turns the agent's current view (nodes grouped by [`Shape`] and free
//!   resources) into full and delta reports; [`ClusterCapacity`] applies them on the
//!   scheduler's side. Applying every report a reporter produced gives back its view exactly.
//! - [`Pacing`] spaces a large cluster's reports so that they cost the scheduler no more, on
//!   average, than a byte budget per heartbeat.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::quantity::{Quantity, scheduling_amount};

/// Amounts per resource name, in the units the kube-scheduler compares (millicores of `cpu`,
/// bytes of `memory`, counts of `pods` and extended resources).
pub type Amounts = BTreeMap<String, i64>;

/// The label every node has with its own name; not part of a [`Shape`].
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

fn list_amounts(list: Option<&Value>) -> impl Iterator<Item = (String, i64)> + '_ {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, q)| {
            let q = Quantity::parse(q.as_str()?).ok()?;
            Some((name.clone(), scheduling_amount(name, &q)))
        })
}

/// A container's requests, with the API server's defaulting: a limit without a request.
fn container_requests(container: &Value) -> Amounts {
    let mut out: Amounts = list_amounts(container.pointer("/resources/requests")).collect();
    for (name, limit) in list_amounts(container.pointer("/resources/limits")) {
        out.entry(name).or_insert(limit);
    }
    out
}

/// What a pod with this `spec` requests (`pods` not included: every pod takes one), as the
/// kube-scheduler adds it up (Kubernetes 1.29+, `PodRequests`): the containers' sum plus every
/// sidecar (an init container with `restartPolicy: Always`, which keeps running), or, when
/// larger, what the init phase needs at its peak: each init container with the sidecars
/// started before it, each sidecar with those before it and itself.
pub fn pod_requests(spec: &Value) -> Amounts {
    fn add(to: &mut Amounts, amounts: &Amounts) {
        for (name, amount) in amounts {
            *to.entry(name.clone()).or_default() += amount;
        }
    }
    fn raise(to: &mut Amounts, amounts: &Amounts) {
        for (name, amount) in amounts {
            let entry = to.entry(name.clone()).or_default();
            *entry = (*entry).max(*amount);
        }
    }
    let containers = |key: &str| {
        spec.get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let mut total = Amounts::new();
    for c in containers("containers") {
        add(&mut total, &container_requests(c));
    }
    let mut sidecars = Amounts::new();
    let mut init_peak = Amounts::new();
    for c in containers("initContainers") {
        let requests = container_requests(c);
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            add(&mut total, &requests);
            add(&mut sidecars, &requests);
            raise(&mut init_peak, &sidecars);
        } else {
            let mut with_sidecars = requests;
            add(&mut with_sidecars, &sidecars);
            raise(&mut init_peak, &with_sidecars);
        }
    }
    raise(&mut total, &init_peak);
    for (name, amount) in list_amounts(spec.get("overhead")) {
        *total.entry(name).or_default() += amount;
    }
    total.retain(|_, amount| *amount != 0);
    total
}

/// A node taint that keeps pods off (`NoSchedule` or `NoExecute`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// Effect.
    pub effect: String,
}

/// What nodes look like to a pod's placement rules: labels (but the host name) and the taints
/// that keep pods off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Filtering taints, sorted.
    pub taints: Vec<Taint>,
}

/// What a node offers new pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCapacity {
    /// Its shape.
    pub shape: Shape,
    /// `status.allocatable`, `pods` included.
    pub allocatable: Amounts,
}

impl NodeCapacity {
    /// A Node object's capacity for new pods; `None` when it takes none: cordoned
    /// (`spec.unschedulable`) or not Ready.
    pub fn of(node: &Value) -> Option<Self> {
        if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        let ready = node
            .pointer("/status/conditions")
            .and_then(Value::as_array)?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if !ready {
            return None;
        }
        let labels = node
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != HOSTNAME_LABEL)
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let text = |t: &Value, k: &str| t[k].as_str().unwrap_or_default().to_owned();
        let mut taints: Vec<Taint> = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|t| t["effect"] == "NoSchedule" || t["effect"] == "NoExecute")
            .map(|t| Taint {
                key: text(t, "key"),
                value: text(t, "value"),
                effect: text(t, "effect"),
            })
            .collect();
        taints.sort();
        taints.dedup();
        Some(Self {
            shape: Shape { labels, taints },
            allocatable: list_amounts(node.pointer("/status/allocatable")).collect(),
        })
    }
}

impl crate::v1::CapacityReport {
    /// How many groups the report lists, in either form (`groups` and the columns).
    pub fn group_count(&self) -> usize {
        self.groups.len() + self.group_shapes.len()
    }
}

/// What is left of `allocatable` once `pods` pods requesting `requested` in all run there
/// (never below zero: a node resized below its load has nothing left).
pub fn free(allocatable: &Amounts, requested: &Amounts, pods: i64) -> Amounts {
    allocatable
        .iter()
        .map(|(name, amount)| {
            let used = if name == "pods" {
                pods
            } else {
                requested.get(name).copied().unwrap_or(0)
            };
            (name.clone(), (amount - used).max(0))
        })
        .collect()
}

/// Nodes counted by shape and free resources.
pub type Groups = BTreeMap<(Shape, Amounts), u32>;

mod pacing;
mod received;
mod reporter;

pub use pacing::{DEFAULT_BYTES_PER_HEARTBEAT, Pacing};
pub use received::{ClusterCapacity, Free, FreeAmounts};
pub use reporter::{ReportForm, Reporter};

/// A report that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// A group names a shape the stream never sent.
    #[error("capacity report: group of {nodes} node(s) names shape {shape}, which was never sent")]
    UnknownShape {
        /// The shape id.
        shape: u32,
        /// The group's node count.
        nodes: u32,
    },
    /// A group names a resource the stream never sent.
    #[error(
        "capacity report: group of {nodes} node(s) names resource {resource}, which was never sent"
    )]
    UnknownResource {
        /// The resource id.
        resource: u32,
        /// The group's node count.
        nodes: u32,
    },
    /// A group's `free_ids` and `free_amounts` do not pair up.
    #[error(
        "capacity report: group of {nodes} node(s) has {ids} free_ids but {amounts} free_amounts"
    )]
    Unpaired {
        /// How many ids.
        ids: usize,
        /// How many amounts.
        amounts: usize,
        /// The group's node count.
        nodes: u32,
    },
    /// A group gives a resource's amount twice.
    #[error("capacity report: group of {nodes} node(s) gives the free amount of {resource} twice")]
    Repeated {
        /// The resource's name.
        resource: String,
        /// The group's node count.
        nodes: u32,
    },
    /// The group columns are not all as long.
    #[error(
        "capacity report: group_shapes has {shapes} entries, group_nodes {nodes} and group_sizes {sizes}; they must be as many"
    )]
    Columns {
        /// Entries of `group_shapes`.
        shapes: usize,
        /// Entries of `group_nodes`.
        nodes: usize,
        /// Entries of `group_sizes`.
        sizes: usize,
    },
    /// The group sizes do not add up to the free amounts given.
    #[error(
        "capacity report: group_sizes add up to {sized}, but there are {ids} free_ids and {amounts} free_amounts"
    )]
    Sizes {
        /// The sum of `group_sizes`.
        sized: u64,
        /// Entries of `free_ids`.
        ids: usize,
        /// Entries of `free_amounts`.
        amounts: usize,
    },
    /// A delta arrived before any full report.
    #[error("capacity report: a change arrived before the full report")]
    NoBase,
}

#[cfg(test)]
mod tests;
