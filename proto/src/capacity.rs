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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use crate::quantity::{Quantity, scheduling_amount};
use crate::v1;

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

/// The agent's end: remembers what it sent on the current stream, and turns its view into
/// the next report.
#[derive(Debug, Default)]
pub struct Reporter {
    shapes: HashMap<Shape, u32>,
    sent: Option<BTreeMap<(u32, Amounts), u32>>,
}

impl Reporter {
    /// Forgets what was sent (a new stream): the next report is full.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The report that brings the receiver from what was sent to `groups`; `None` when
    /// nothing changed.
    pub fn report(&mut self, groups: &Groups) -> Option<v1::CapacityReport> {
        let mut new_shapes = Vec::new();
        let mut current: BTreeMap<(u32, Amounts), u32> = BTreeMap::new();
        for ((shape, free), nodes) in groups {
            let next_id = self.shapes.len() as u32 + 1;
            let id = *self.shapes.entry(shape.clone()).or_insert_with(|| {
                new_shapes.push(shape_message(next_id, shape));
                next_id
            });
            *current.entry((id, free.clone())).or_default() += nodes;
        }
        let group = |(shape, free): &(u32, Amounts), nodes: u32| v1::NodeGroup {
            shape: *shape,
            free: free.clone().into_iter().collect(),
            nodes,
        };
        let report = match &self.sent {
            None => v1::CapacityReport {
                full: true,
                shapes: new_shapes,
                groups: current.iter().map(|(k, n)| group(k, *n)).collect(),
            },
            Some(sent) => {
                let mut groups: Vec<v1::NodeGroup> = current
                    .iter()
                    .filter(|(k, n)| sent.get(*k) != Some(*n))
                    .map(|(k, n)| group(k, *n))
                    .collect();
                groups.extend(
                    sent.keys()
                        .filter(|k| !current.contains_key(*k))
                        .map(|k| group(k, 0)),
                );
                if groups.is_empty() {
                    return None;
                }
                v1::CapacityReport {
                    full: false,
                    shapes: new_shapes,
                    groups,
                }
            }
        };
        self.sent = Some(current);
        Some(report)
    }
}

fn shape_message(id: u32, shape: &Shape) -> v1::NodeShape {
    v1::NodeShape {
        id,
        labels: shape.labels.clone().into_iter().collect(),
        taints: shape
            .taints
            .iter()
            .map(|t| v1::NodeTaint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
            })
            .collect(),
    }
}

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
    /// A delta arrived before any full report.
    #[error("capacity report: a change arrived before the full report")]
    NoBase,
}

/// The scheduler's end: a cluster's capacity as its reports built it.
///
/// The scheduler copies a cluster's capacity on every change (the planner's views hold the
/// previous one), so the free amounts of each group are shared (`Arc`): a copy of ≈ 1,000
/// groups copies pointers, not a map per group, and a report costs what it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterCapacity {
    shapes: HashMap<u32, Shape>,
    groups: BTreeMap<(u32, Arc<Amounts>), u32>,
    based: bool,
    /// Per resource: the free amount summed over every node, and how many groups name it.
    /// Kept as reports change the groups: `fedctl get clusters` asks for every cluster's sums,
    /// and summing ≈ 1,000 groups per cluster per call was a fifth of the scheduler's CPU
    /// with clusters reporting every second.
    sums: BTreeMap<String, (i128, u32)>,
    /// Nodes in every group.
    nodes: u32,
}

impl ClusterCapacity {
    /// Applies a report: a full one replaces everything, a delta sets the counts it lists.
    /// Nothing changes when it is refused.
    pub fn apply(&mut self, report: &v1::CapacityReport) -> Result<(), CapacityError> {
        if !report.full && !self.based {
            return Err(CapacityError::NoBase);
        }
        // Refused before anything changes: every group names a shape sent before on this
        // stream (a delta) or in this report.
        let sent_now: HashSet<u32> = report.shapes.iter().map(|s| s.id).collect();
        let unknown = |shape: &u32| {
            !sent_now.contains(shape) && (report.full || !self.shapes.contains_key(shape))
        };
        if let Some(g) = report.groups.iter().find(|g| unknown(&g.shape)) {
            return Err(CapacityError::UnknownShape {
                shape: g.shape,
                nodes: g.nodes,
            });
        }
        if report.full {
            *self = Self::default();
        }
        self.based = true;
        for s in &report.shapes {
            let mut taints: Vec<Taint> = s
                .taints
                .iter()
                .map(|t| Taint {
                    key: t.key.clone(),
                    value: t.value.clone(),
                    effect: t.effect.clone(),
                })
                .collect();
            taints.sort();
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            self.shapes.insert(s.id, Shape { labels, taints });
        }
        for g in &report.groups {
            let free: Amounts = g.free.iter().map(|(k, v)| (k.clone(), *v)).collect();
            let key = (g.shape, Arc::new(free));
            let before = if g.nodes == 0 {
                self.groups.remove(&key)
            } else {
                self.groups.insert(key.clone(), g.nodes)
            };
            if let Some(nodes) = before {
                self.count(&key.1, nodes, -1);
            }
            if g.nodes > 0 {
                self.count(&key.1, g.nodes, 1);
            }
        }
        Ok(())
    }

    /// Adds (`sign` 1) or takes away (-1) a group of `nodes` nodes with `free` each to the sums.
    fn count(&mut self, free: &Amounts, nodes: u32, sign: i8) {
        let delta = i128::from(sign) * i128::from(nodes);
        self.nodes = u32::try_from(i128::from(self.nodes) + delta).unwrap_or(0);
        for (name, amount) in free {
            let amount = delta * i128::from(*amount);
            match self.sums.get_mut(name) {
                Some((sum, groups)) => {
                    *sum += amount;
                    if sign > 0 {
                        *groups += 1;
                    } else {
                        *groups -= 1;
                    }
                    if *groups == 0 {
                        self.sums.remove(name);
                    }
                }
                // Only a group being added can name a resource no group names yet.
                None => {
                    self.sums.insert(name.clone(), (amount, 1));
                }
            }
        }
    }

    /// Every group: its shape, free resources per node, and node count.
    pub fn groups(&self) -> impl Iterator<Item = (&Shape, &Amounts, u32)> {
        self.groups
            .iter()
            .filter_map(|((shape, free), nodes)| Some((self.shapes.get(shape)?, &**free, *nodes)))
    }

    /// The groups keyed as the reporter's view was.
    pub fn to_groups(&self) -> Groups {
        self.groups()
            .map(|(shape, free, nodes)| ((shape.clone(), free.clone()), nodes))
            .collect()
    }

    /// Free resources summed over every node, and the number of nodes.
    pub fn totals(&self) -> (Amounts, u32) {
        let totals = self
            .sums
            .iter()
            .map(|(name, (sum, _))| {
                let sum = i64::try_from(*sum).unwrap_or(if *sum < 0 { i64::MIN } else { i64::MAX });
                (name.clone(), sum)
            })
            .collect();
        (totals, self.nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn amounts(pairs: &[(&str, i64)]) -> Amounts {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn pod_requests_count_init_containers_limits_and_overhead() {
        let spec = json!({
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": "1"}}}
            ],
            "overhead": {"cpu": "100m"}
        });
        assert_eq!(
            pod_requests(&spec),
            amounts(&[("cpu", 2100), ("memory", 1 << 30), ("nvidia.com/gpu", 1)])
        );
        assert!(pod_requests(&json!({"containers": [{"name": "a"}]})).is_empty());
    }

    fn node(ready: &str, cordoned: bool) -> Value {
        json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1", "zone": "a"}},
            "spec": {"unschedulable": cordoned, "taints": [
                {"key": "gpu", "value": "yes", "effect": "NoSchedule"},
                {"key": "soft", "effect": "PreferNoSchedule"}]},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "nvidia.com/gpu": "2"},
                       "conditions": [{"type": "Ready", "status": ready}]}
        })
    }

    #[test]
    fn a_node_offers_capacity_only_when_ready_and_not_cordoned() {
        let n = NodeCapacity::of(&node("True", false)).unwrap();
        assert_eq!(n.shape.labels, [("zone".to_owned(), "a".to_owned())].into());
        assert_eq!(
            n.shape.taints,
            [Taint {
                key: "gpu".into(),
                value: "yes".into(),
                effect: "NoSchedule".into()
            }]
        );
        assert_eq!(n.allocatable["cpu"], 4000);
        assert_eq!(n.allocatable["pods"], 110);
        assert_eq!(NodeCapacity::of(&node("True", true)), None, "cordoned");
        assert_eq!(NodeCapacity::of(&node("False", false)), None, "NotReady");
        assert_eq!(
            NodeCapacity::of(&node("Unknown", false)),
            None,
            "unreachable"
        );
        let mut no_status = node("True", false);
        no_status["status"]["conditions"] = json!([]);
        assert_eq!(NodeCapacity::of(&no_status), None, "never reported Ready");
    }

    #[test]
    fn free_is_allocatable_minus_requests_and_pods() {
        let alloc = amounts(&[("cpu", 4000), ("memory", 8 << 30), ("pods", 110)]);
        let used = amounts(&[("cpu", 1400), ("memory", 2 << 30), ("nvidia.com/gpu", 1)]);
        assert_eq!(
            free(&alloc, &used, 2),
            amounts(&[("cpu", 2600), ("memory", 6 << 30), ("pods", 108)])
        );
        assert_eq!(
            free(&alloc, &amounts(&[("cpu", 5000)]), 0)["cpu"],
            0,
            "never negative"
        );
    }

    #[test]
    fn a_quiet_cluster_sends_nothing_and_identical_nodes_travel_once() {
        let shape = Shape::default();
        let free = amounts(&[("cpu", 4000), ("pods", 110)]);
        let mut groups = Groups::new();
        groups.insert((shape.clone(), free.clone()), 5000);
        let mut reporter = Reporter::default();
        let first = reporter.report(&groups).unwrap();
        assert!(first.full);
        assert_eq!((first.shapes.len(), first.groups.len()), (1, 1));
        assert_eq!(first.groups[0].nodes, 5000);
        assert_eq!(reporter.report(&groups), None, "nothing changed");
        // One node gets busier: two counts change, and the shape is not sent again.
        groups.insert((shape.clone(), free.clone()), 4999);
        groups.insert((shape, amounts(&[("cpu", 3000), ("pods", 109)])), 1);
        let delta = reporter.report(&groups).unwrap();
        assert!(!delta.full && delta.shapes.is_empty());
        assert_eq!(delta.groups.len(), 2);
        reporter.reset();
        assert!(
            reporter.report(&groups).unwrap().full,
            "a new stream starts in full"
        );
    }

    #[test]
    fn bad_reports_change_nothing() {
        let mut cluster = ClusterCapacity::default();
        let delta = v1::CapacityReport::default();
        assert_eq!(cluster.apply(&delta), Err(CapacityError::NoBase));
        let unknown = v1::CapacityReport {
            full: true,
            shapes: vec![],
            groups: vec![v1::NodeGroup {
                shape: 7,
                free: Default::default(),
                nodes: 3,
            }],
        };
        assert_eq!(
            cluster.apply(&unknown).unwrap_err().to_string(),
            "capacity report: group of 3 node(s) names shape 7, which was never sent"
        );
        assert_eq!(cluster, ClusterCapacity::default());

        // On a cluster already built up: a report refused by its last group, after a new shape
        // and a good group, leaves it as it was (delta and full alike).
        let shape = v1::NodeShape {
            id: 1,
            ..Default::default()
        };
        let group = |shape: u32, cpu: i64, nodes: u32| v1::NodeGroup {
            shape,
            free: [("cpu".to_owned(), cpu)].into(),
            nodes,
        };
        cluster
            .apply(&v1::CapacityReport {
                full: true,
                shapes: vec![shape.clone()],
                groups: vec![group(1, 1000, 2)],
            })
            .unwrap();
        let before = cluster.clone();
        // A full report knows only its own shapes: there, the group of shape 1 is refused.
        for (full, shape, nodes) in [(false, 3, 1), (true, 1, 0)] {
            let refused = v1::CapacityReport {
                full,
                shapes: vec![v1::NodeShape {
                    id: 2,
                    ..Default::default()
                }],
                groups: vec![group(1, 1000, 0), group(2, 500, 1), group(3, 500, 1)],
            };
            assert_eq!(
                cluster.apply(&refused),
                Err(CapacityError::UnknownShape { shape, nodes })
            );
            assert_eq!(cluster, before, "full: {full}");
        }
    }

    fn arb_groups() -> impl Strategy<Value = Groups> {
        let shape = (0u8..3, prop::bool::ANY).prop_map(|(zone, tainted)| Shape {
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
        });
        let free = (0i64..4, 0i64..3).prop_map(|(cpu, gpu)| {
            let mut f = amounts(&[("cpu", cpu * 500), ("pods", 10)]);
            if gpu > 0 {
                f.insert("nvidia.com/gpu".into(), gpu);
            }
            f
        });
        prop::collection::btree_map((shape, free), 1u32..50, 0..8)
    }

    proptest! {
        /// Whatever the views, the scheduler ends up with exactly the agent's view, and its
        /// totals are the sums over nodes.
        #[test]
        fn applying_every_report_gives_back_the_view(views in prop::collection::vec(arb_groups(), 1..8)) {
            let mut reporter = Reporter::default();
            let mut cluster = ClusterCapacity::default();
            for view in &views {
                if let Some(report) = reporter.report(view) {
                    cluster.apply(&report).unwrap();
                }
                prop_assert_eq!(&cluster.to_groups(), view);
                // Kept up to date report by report, they are the sums over the view.
                let mut sums = Amounts::new();
                for ((_, free), n) in view {
                    for (name, amount) in free {
                        *sums.entry(name.clone()).or_default() += amount * i64::from(*n);
                    }
                }
                prop_assert_eq!(cluster.totals(), (sums, view.values().sum::<u32>()));
            }
        }

        /// A delta lists only what changed, never more groups than the two views hold.
        #[test]
        fn deltas_are_no_larger_than_the_change(a in arb_groups(), b in arb_groups()) {
            let mut reporter = Reporter::default();
            reporter.report(&a);
            if let Some(delta) = reporter.report(&b) {
                prop_assert!(!delta.full);
                let changed = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).count();
                prop_assert!(delta.groups.len() <= changed);
            } else {
                prop_assert_eq!(a, b);
            }
        }
    }
}
