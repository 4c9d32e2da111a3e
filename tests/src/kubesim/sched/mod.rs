//! The simulated kube-scheduler of a cluster with nodes: binds each new pod to a node where it
//! fits, or leaves it `Pending` with `PodScheduled=False, reason=Unschedulable`, the message
//! kube-scheduler v1.24 writes, and a `FailedScheduling` event; pending pods are tried again
//! whenever a node changes or a bound pod finishes or goes.
//!
//! It is written apart from the federation's own fit computation on purpose: a simulator that
//! shared the code under test would hide its bugs. The decisions are pure ([`fit`], from what
//! a pod asks, [`demand`]); this module keeps the node cache and the queue, and writes the
//! outcome into the [`PodTable`].

pub mod demand;
pub mod fit;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use self::demand::{Amounts, Taint};
use self::fit::{NodeInfo, Rejection, Usage};
use super::events::{EventLog, NewEvent, Regarding};
use super::node::Kubelets;
use super::pods::PodTable;
use super::store::{ObjectKey, Store};
use fedjob_proto::quantity::{Quantity, scheduling_amount};

/// A pod waiting in the scheduling queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The Job that owns it.
    pub job: ObjectKey,
    /// Its name (in the Job's namespace).
    pub pod: String,
}

/// A pod the scheduler bound in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Job that owns it.
    pub job: ObjectKey,
    /// The pod.
    pub pod: String,
    /// Whether the node's kubelet started it.
    pub started: bool,
}

/// The scheduler of one cluster.
pub struct Scheduler {
    nodes: BTreeMap<String, NodeInfo>,
    queue: VecDeque<Queued>,
    events: Arc<EventLog>,
    kubelets: Arc<Kubelets>,
    /// `reportingInstance` of its events: `default-scheduler-HOST`.
    instance: String,
    /// Something changed that a pass should look at (a new pod, a node).
    changed: bool,
    /// The pod table's `freed` count at the last pass.
    freed_seen: u64,
}

fn amounts(list: Option<&Value>) -> Amounts {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, q)| {
            let q = Quantity::parse(q.as_str()?).ok()?;
            Some((name.clone(), scheduling_amount(name, &q)))
        })
        .collect()
}

/// What the scheduler reads of a Node object.
pub fn node_info(node: &Value) -> NodeInfo {
    NodeInfo {
        name: node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        labels: node
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        taints: Taint::of_node(node),
        unschedulable: node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true),
        allocatable: amounts(node.pointer("/status/allocatable")),
    }
}

impl Scheduler {
    /// A scheduler recording events in `events`, running pods only on nodes whose kubelet
    /// `kubelets` says runs; `host` names it in its events.
    pub fn new(events: Arc<EventLog>, kubelets: Arc<Kubelets>, host: &str) -> Self {
        Self {
            nodes: BTreeMap::new(),
            queue: VecDeque::new(),
            events,
            kubelets,
            instance: format!("default-scheduler-{host}"),
            changed: false,
            freed_seen: 0,
        }
    }

    /// A node was created or changed (`Some`) or deleted (`None`).
    pub fn node_changed(&mut self, name: &str, node: Option<&Value>) {
        match node {
            Some(n) => {
                self.nodes.insert(name.to_owned(), node_info(n));
            }
            None => {
                self.nodes.remove(name);
            }
        }
        self.changed = true;
    }

    /// Queues a new pod.
    pub fn enqueue(&mut self, pod: Queued) {
        self.queue.push_back(pod);
        self.changed = true;
    }

    /// How many pods wait in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Tries every queued pod, oldest first, if anything changed since the last pass; returns
    /// the pods it bound.
    pub fn run(&mut self, pods: &PodTable, store: &Store) -> Vec<Binding> {
        let (mut usage, freed) = pods.usage();
        if !self.changed && freed == self.freed_seen {
            return Vec::new();
        }
        self.changed = false;
        self.freed_seen = freed;
        // Pods of one template fail alike on the same nodes: once one has failed, the others
        // of its kind get the same verdict without another look at every node (the state
        // cannot have changed in between, as nothing got bound).
        let mut verdicts: HashMap<*const demand::Demand, Arc<str>> = HashMap::new();
        let mut bound = Vec::new();
        let mut keep = VecDeque::with_capacity(self.queue.len());
        let mut seen = HashSet::new();
        while let Some(queued) = self.queue.pop_front() {
            let ns = &queued.job.namespace;
            let Some(pending) = pods.pending(ns, &queued.pod) else {
                continue;
            };
            if !seen.insert((ns.clone(), queued.pod.clone())) {
                continue;
            }
            let key = Arc::as_ptr(&pending.demand);
            let message = match verdicts.get(&key) {
                Some(m) => m.clone(),
                None => match self.place(&pending.demand, &usage) {
                    Ok(node) => {
                        let node: Arc<str> = Arc::from(node.as_str());
                        let started = self.kubelets.runs(&node);
                        if pods.bind(ns, &queued.pod, &node, started) {
                            usage
                                .entry(node)
                                .or_default()
                                .add(&pending.demand.requests, 1);
                            // Less room now: verdicts from before may word it differently.
                            verdicts.clear();
                            bound.push(Binding {
                                job: queued.job.clone(),
                                pod: queued.pod.clone(),
                                started,
                            });
                        }
                        continue;
                    }
                    Err(message) => {
                        let message: Arc<str> = Arc::from(message);
                        verdicts.insert(key, message.clone());
                        message
                    }
                },
            };
            pods.set_unschedulable(ns, &queued.pod, &message);
            self.events.record(
                NewEvent {
                    regarding: Regarding {
                        kind: "Pod",
                        namespace: ns.clone(),
                        name: queued.pod.clone(),
                        uid: pending.uid.clone(),
                        resource_version: pending.rv,
                    },
                    kind: "Warning",
                    reason: "FailedScheduling",
                    action: "Scheduling",
                    message: message.to_string(),
                    component: "default-scheduler",
                    instance: self.instance.clone(),
                },
                || store.next_rv(),
            );
            keep.push_back(queued);
        }
        self.queue = keep;
        if !bound.is_empty() {
            tracing::debug!(bound = bound.len(), pending = self.queue.len(), "scheduled");
        }
        bound
    }

    /// The node a pod goes to (the highest-scoring of those that pass every filter), or the
    /// message of why none takes it. The real scheduler draws among nodes that tie; this one
    /// takes the last by name, so tests are repeatable.
    fn place(
        &self,
        demand: &demand::Demand,
        usage: &HashMap<Arc<str>, Usage>,
    ) -> Result<String, String> {
        if self.nodes.is_empty() {
            return Err(fit::NO_NODES_MESSAGE.to_owned());
        }
        let none = Usage::default();
        let mut rejections: Vec<Rejection> = Vec::new();
        let mut best: Option<(i64, &str)> = None;
        for (name, node) in &self.nodes {
            let used = usage.get(name.as_str()).unwrap_or(&none);
            match fit::filter(demand, node, used) {
                Ok(()) => {
                    let score = fit::score(demand, node, used);
                    if best.is_none_or(|(s, _)| score >= s) {
                        best = Some((score, name));
                    }
                }
                Err(r) => rejections.push(r),
            }
        }
        match best {
            Some((_, name)) => Ok(name.to_owned()),
            None => Err(fit::unschedulable_message(demand, &rejections)),
        }
    }
}
