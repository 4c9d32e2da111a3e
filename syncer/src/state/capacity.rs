//! The member cluster's free capacity as the syncer sees it (`--report-capacity`): its
//! schedulable Ready nodes and the requests of the pods bound to them and not finished, kept up
//! to date from two watches and turned into the compact reports of [`fedjob_proto::capacity`]
//! (full on each new stream, then only what changed) when the connection asks, once per
//! heartbeat: that is the debounce.

use std::collections::HashMap;

use fedjob_proto::capacity::{
    Amounts, Groups, NodeCapacity, Pacing, ReportForm, Reporter, free, pod_requests,
};
use fedjob_proto::v1;
use parking_lot::Mutex;
use prost::Message as _;
use serde_json::Value;

/// A pod that takes room on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    node: String,
    requests: Amounts,
}

/// One kind of object (nodes or pods) from a watch: the live set, and the set a re-list is
/// building (kube-runtime's `Init` … `InitDone`).
#[derive(Debug)]
pub(crate) struct Listed<T> {
    pub(crate) live: HashMap<String, T>,
    relisting: Option<HashMap<String, T>>,
    /// A first list has completed.
    pub(crate) ready: bool,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Self {
            live: HashMap::new(),
            relisting: None,
            ready: false,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    nodes: Listed<NodeCapacity>,
    pods: Listed<Bound>,
    reporter: Reporter,
    /// When the next report may go (`--capacity-bytes-per-heartbeat`).
    pacing: Pacing,
    /// Something changed since the last report (or a new stream needs a full one).
    changed: bool,
}

/// The cluster's capacity.
#[derive(Debug, Default)]
pub struct Capacity {
    inner: Mutex<Inner>,
}

/// What the pod watch says of one pod: where it runs and what it requests, or `None` when it
/// takes no room (not bound, or finished).
pub fn bound_pod(pod: &Value) -> Option<(String, Amounts)> {
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str)?;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if node.is_empty() || matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    Some((node.to_owned(), pod_requests(&pod["spec"])))
}

/// A watch event, as far as the capacity goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    /// The object is now this (`None`: it takes no room any more).
    Set(String, Option<T>),
    /// It was deleted.
    Deleted(String),
    /// A (re-)list starts.
    ListStart,
    /// One object of the list.
    Listed(String, Option<T>),
    /// The list is complete: it replaces what was known.
    ListDone,
}

impl<T: PartialEq> Listed<T> {
    /// Applies a change; returns whether the live set changed.
    pub(crate) fn apply(&mut self, change: Change<T>) -> bool {
        match change {
            Change::Set(key, Some(value)) => {
                let same = self.live.get(&key) == Some(&value);
                self.live.insert(key, value);
                !same
            }
            Change::Set(key, None) | Change::Deleted(key) => self.live.remove(&key).is_some(),
            Change::ListStart => {
                self.relisting = Some(HashMap::new());
                false
            }
            Change::Listed(key, value) => {
                if let (Some(set), Some(v)) = (&mut self.relisting, value) {
                    set.insert(key, v);
                }
                false
            }
            Change::ListDone => {
                if let Some(set) = self.relisting.take() {
                    self.live = set;
                }
                self.ready = true;
                true
            }
        }
    }
}

impl Capacity {
    /// A cluster's capacity whose reports average at most `bytes_per_heartbeat` per heartbeat
    /// (0: a report at every heartbeat after a change).
    pub fn new(bytes_per_heartbeat: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                pacing: Pacing::new(bytes_per_heartbeat),
                ..Inner::default()
            }),
        }
    }

    /// A change from the node watch (`None`: the node takes no new pods: cordoned, NotReady).
    pub fn nodes(&self, change: Change<NodeCapacity>) {
        let mut inner = self.inner.lock();
        if inner.nodes.apply(change) {
            inner.changed = true;
        }
    }

    /// A change from the pod watch (`None`: the pod takes no room).
    pub fn pods(&self, change: Change<(String, Amounts)>) {
        let change = match change {
            Change::Set(k, v) => Change::Set(k, v.map(bound)),
            Change::Listed(k, v) => Change::Listed(k, v.map(bound)),
            Change::Deleted(k) => Change::Deleted(k),
            Change::ListStart => Change::ListStart,
            Change::ListDone => Change::ListDone,
        };
        let mut inner = self.inner.lock();
        if inner.pods.apply(change) {
            inner.changed = true;
        }
    }

    /// A new stream to a scheduler that takes reports in `form`: the next report is full.
    pub fn begin_stream(&self, form: ReportForm) {
        let mut inner = self.inner.lock();
        inner.reporter.begin_stream(form);
        inner.pacing.restart();
        inner.changed = true;
    }

    /// The nodes grouped by shape and free resources, once both watches have listed.
    pub fn groups(&self) -> Option<Groups> {
        let inner = self.inner.lock();
        Self::groups_of(&inner)
    }

    fn groups_of(inner: &Inner) -> Option<Groups> {
        if !(inner.nodes.ready && inner.pods.ready) {
            return None;
        }
        let mut used: HashMap<&str, (Amounts, i64)> = HashMap::new();
        for pod in inner.pods.live.values() {
            let entry = used.entry(pod.node.as_str()).or_default();
            entry.1 += 1;
            for (name, amount) in pod.requests.iter() {
                *entry.0.entry(name.clone()).or_default() += amount;
            }
        }
        let none = (Amounts::new(), 0);
        let mut groups = Groups::new();
        for (name, node) in &inner.nodes.live {
            let (requested, pods) = used.get(name.as_str()).unwrap_or(&none);
            let left = free(&node.allocatable, requested, *pods);
            *groups.entry((node.shape.clone(), left)).or_default() += 1;
        }
        Some(groups)
    }

    /// Called at each heartbeat: the report to send with it, if anything changed since the
    /// last one (on this stream) and the last one's wait is over.
    pub fn report(&self) -> Option<v1::CapacityReport> {
        let mut inner = self.inner.lock();
        if !inner.pacing.heartbeat() || !inner.changed {
            return None;
        }
        let groups = Self::groups_of(&inner)?;
        inner.changed = false;
        let report = inner.reporter.report(&groups)?;
        inner.pacing.sent(report.encoded_len() as u64);
        Some(report)
    }
}

/// A pod's place and requests, as kept.
fn bound((node, requests): (String, Amounts)) -> Bound {
    Bound { node, requests }
}

#[cfg(test)]
mod tests;
