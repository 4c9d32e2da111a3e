//! The simulated pods of a cluster: compact records kept by the job controller and rendered as
//! `v1` Pods (shaped like `17-pods.json`) only when someone lists them.
//!
//! A pod is a name, a phase and a reference to its Job's pod template, so a cluster can run
//! hundreds of thousands of them in a few tens of megabytes; nothing is serialized until
//! `kubectl get pods` asks.
//!
//! In a cluster with nodes, the table also knows where each pod is bound and keeps, per node,
//! what the pods bound there and not yet finished request ([`Usage`]): the scheduler's view of
//! the node's load, and what `kubectl describe node` adds up.

mod render;
pub mod watch;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use fedjob_scheduler::kube_api::clock;
use fedjob_scheduler::kube_api::selector::LabelSelector;
use fedjob_scheduler::kube_api::watch::EventType;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::watch as versions;

pub use render::render;

use super::sched::demand::Demand;
use super::sched::fit::Usage;
use super::store::Store;

/// Where a simulated pod is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a node, or bound to one whose kubelet does not run it.
    Pending,
    /// Running (in a cluster without nodes, the simulated kubelet never reports it ready).
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero.
    Failed,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    /// Whether the pod has finished (and no longer counts against its node).
    pub fn finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// The outcome of a scheduling attempt that found no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    /// The scheduler's message (`0/2 nodes are available: …`).
    pub message: Arc<str>,
    /// When the `PodScheduled` condition last changed.
    pub since: String,
}

/// Where a pod stands with the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The cluster has no nodes: the pod runs without being scheduled, and shows no
    /// `nodeName` or conditions (as `17-pods.json`, recorded without nodes).
    Unscheduled,
    /// Waiting for a node; the last attempt's outcome once there was one.
    Pending(Option<Unschedulable>),
    /// Bound to a node.
    Bound {
        /// The node's name.
        node: Arc<str>,
        /// When it was bound (and, on a node with a kubelet, started).
        since: String,
    },
}

/// The Job that controls a pod.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The Job's name.
    pub name: String,
    /// The Job's uid.
    pub uid: String,
}

/// One simulated pod.
#[derive(Debug, Clone)]
pub struct PodRecord {
    /// Namespace.
    pub namespace: String,
    /// Name (`JOB-xxxxx`).
    pub name: String,
    /// uid.
    pub uid: String,
    /// Its resourceVersion (taken from the cluster's counter).
    pub rv: u64,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Its phase.
    pub phase: Phase,
    /// How many times its container restarted (`restartPolicy: OnFailure`).
    pub restarts: u32,
    /// The controlling Job; `None` once orphaned.
    pub owner: Option<Owner>,
    /// The Job name it was generated from (kept after orphaning for `generateName`).
    pub job_name: String,
    /// The Job's pod template as JSON, shared with every pod of the Job (parsed only when the
    /// pod is listed: a parsed template is ten times larger).
    pub template: Bytes,
    /// The template's labels (the pod's), parsed once per Job for label selectors.
    pub labels: Arc<Value>,
    /// Where it stands with the scheduler.
    pub placement: Placement,
    /// What it asks of a node (shared by the pods of one template); `None` without nodes.
    pub demand: Option<Arc<Demand>>,
}

impl PodRecord {
    /// The node it counts against and what it takes there: bound and not finished.
    fn load(&self) -> Option<(&Arc<str>, &Demand)> {
        match (&self.placement, &self.demand) {
            (Placement::Bound { node, .. }, Some(demand)) if !self.phase.finished() => {
                Some((node, demand))
            }
            _ => None,
        }
    }
}

/// One change of a pod, kept for watches: the pod after it (for a delete, its last state) and
/// before it.
#[derive(Debug, Clone)]
pub struct PodChange {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// What happened.
    pub ty: EventType,
    /// The pod after the change.
    pub pod: Arc<PodRecord>,
    /// The pod before it (`None` for a create).
    pub prev: Option<Arc<PodRecord>>,
}

#[derive(Default)]
struct Pods {
    by_key: BTreeMap<(String, String), PodRecord>,
    by_owner: HashMap<String, Vec<(String, String)>>,
    /// Per node, what its bound and unfinished pods take.
    usage: HashMap<Arc<str>, Usage>,
    /// Counts every time a node's load went down (a pod finished or went away).
    freed: u64,
    /// The latest changes, oldest first, for watches.
    history: VecDeque<PodChange>,
    /// Every change up to this version has left the history.
    compacted: u64,
}

impl Pods {
    /// Counts `pod`'s load in (`1`) or out (`-1`) of its node.
    fn count(&mut self, pod: &PodRecord, sign: i64) {
        let Some((node, demand)) = pod.load() else {
            return;
        };
        let usage = self.usage.entry(node.clone()).or_default();
        usage.add(&demand.requests, sign);
        if usage.pods == 0 {
            self.usage.remove(node);
        }
        if sign < 0 {
            self.freed += 1;
        }
    }
}

/// A pod waiting for a node, as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct PendingPod {
    /// Its uid.
    pub uid: String,
    /// Its resourceVersion.
    pub rv: u64,
    /// What it asks of a node.
    pub demand: Arc<Demand>,
    /// The last attempt's message, if there was one.
    pub last_message: Option<Arc<str>>,
}

/// Every simulated pod of one cluster.
///
/// Every change takes the cluster's next resourceVersion (so pods and stored objects share
/// one order), updates the nodes' usage, and is kept in a bounded history that pod watches
/// read, as the store's history serves the other resources.
pub struct PodTable {
    inner: Mutex<Pods>,
    versions: Arc<Store>,
    capacity: usize,
    latest: versions::Sender<u64>,
}

impl PodTable {
    /// An empty table taking versions from `versions` and keeping the last `history` changes.
    pub fn new(versions: Arc<Store>, history: usize) -> Self {
        Self {
            inner: Mutex::new(Pods::default()),
            versions,
            capacity: history.max(1),
            latest: versions::channel(0).0,
        }
    }

    /// Applies `change` to the pod at `key` (under the lock): takes a version, recounts the
    /// node's usage, and records the change. `change` returns false to leave the pod as it is.
    fn modify(
        &self,
        pods: &mut Pods,
        key: &(String, String),
        change: impl FnOnce(&mut PodRecord) -> bool,
    ) {
        let Some(pod) = pods.by_key.get(key) else {
            return;
        };
        let prev = pod.clone();
        let mut next = prev.clone();
        if !change(&mut next) {
            return;
        }
        next.rv = self.versions.next_rv();
        pods.count(&prev, -1);
        pods.count(&next, 1);
        pods.by_key.insert(key.clone(), next.clone());
        self.record(pods, EventType::Modified, next, Some(prev));
    }

    fn record(&self, pods: &mut Pods, ty: EventType, pod: PodRecord, prev: Option<PodRecord>) {
        let rv = pod.rv;
        pods.history.push_back(PodChange {
            rv,
            ty,
            pod: Arc::new(pod),
            prev: prev.map(Arc::new),
        });
        while pods.history.len() > self.capacity {
            if let Some(old) = pods.history.pop_front() {
                pods.compacted = old.rv;
            }
        }
        self.latest.send_replace(rv);
    }

    fn remove_key(&self, pods: &mut Pods, key: &(String, String)) -> Option<PodRecord> {
        let mut pod = pods.by_key.remove(key)?;
        pods.count(&pod, -1);
        let prev = pod.clone();
        pod.rv = self.versions.next_rv();
        self.record(pods, EventType::Deleted, pod.clone(), Some(prev));
        Some(pod)
    }

    /// Adds a pod (its `rv` is set here); `false` (and nothing changes) when its name is taken,
    /// as a create of a generated name that collided is refused with `AlreadyExists`.
    pub fn insert(&self, mut pod: PodRecord) -> bool {
        let mut pods = self.inner.lock();
        let key = (pod.namespace.clone(), pod.name.clone());
        if pods.by_key.contains_key(&key) {
            return false;
        }
        if let Some(owner) = &pod.owner {
            pods.by_owner
                .entry(owner.uid.clone())
                .or_default()
                .push(key.clone());
        }
        pod.rv = self.versions.next_rv();
        pods.count(&pod, 1);
        pods.by_key.insert(key, pod.clone());
        self.record(&mut pods, EventType::Added, pod, None);
        true
    }

    /// Changes a pod's phase and restart count; a finished pod stays as it finished.
    pub fn set_state(&self, namespace: &str, name: &str, phase: Phase, restarts: u32) {
        let mut pods = self.inner.lock();
        let key = (namespace.to_owned(), name.to_owned());
        self.modify(&mut pods, &key, |pod| {
            if pod.phase.finished() {
                return false;
            }
            pod.phase = phase;
            pod.restarts = restarts;
            true
        });
    }

    /// Deletes one pod.
    pub fn remove(&self, namespace: &str, name: &str) {
        let mut pods = self.inner.lock();
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(pod) = self.remove_key(&mut pods, &key)
            && let Some(owner) = pod.owner
            && let Some(keys) = pods.by_owner.get_mut(&owner.uid)
        {
            keys.retain(|k| *k != key);
        }
    }

    /// Deletes every pod a Job controls (the garbage collector after a cascading delete).
    pub fn remove_owned(&self, owner_uid: &str) {
        let mut pods = self.inner.lock();
        for key in pods.by_owner.remove(owner_uid).unwrap_or_default() {
            self.remove_key(&mut pods, &key);
        }
    }

    /// Releases every pod a Job controls (the garbage collector after an orphaning delete).
    pub fn orphan_owned(&self, owner_uid: &str) {
        let mut pods = self.inner.lock();
        for key in pods.by_owner.remove(owner_uid).unwrap_or_default() {
            self.modify(&mut pods, &key, |pod| pod.owner.take().is_some());
        }
    }

    /// A pod still waiting for a node; `None` once it is bound or gone.
    pub fn pending(&self, namespace: &str, name: &str) -> Option<PendingPod> {
        let pods = self.inner.lock();
        let pod = pods.by_key.get(&(namespace.to_owned(), name.to_owned()))?;
        let Placement::Pending(last) = &pod.placement else {
            return None;
        };
        Some(PendingPod {
            uid: pod.uid.clone(),
            rv: pod.rv,
            demand: pod.demand.clone()?,
            last_message: last.as_ref().map(|u| u.message.clone()),
        })
    }

    /// Binds a pending pod to `node` (`spec.nodeName`, `PodScheduled` True) and, when the node
    /// has a kubelet, starts it; returns whether the pod was still there to bind.
    pub fn bind(&self, namespace: &str, name: &str, node: &Arc<str>, start: bool) -> bool {
        let mut pods = self.inner.lock();
        let key = (namespace.to_owned(), name.to_owned());
        let mut bound = false;
        self.modify(&mut pods, &key, |pod| {
            if !matches!(pod.placement, Placement::Pending(_)) {
                return false;
            }
            pod.placement = Placement::Bound {
                node: node.clone(),
                since: clock::now(),
            };
            if start {
                pod.phase = Phase::Running;
            }
            bound = true;
            true
        });
        bound
    }

    /// Records a failed scheduling attempt (`PodScheduled` False, `Unschedulable`); the pod
    /// changes only when the message does.
    pub fn set_unschedulable(&self, namespace: &str, name: &str, message: &Arc<str>) {
        let mut pods = self.inner.lock();
        let key = (namespace.to_owned(), name.to_owned());
        self.modify(&mut pods, &key, |pod| {
            let Placement::Pending(last) = &mut pod.placement else {
                return false;
            };
            if last.as_ref().is_some_and(|u| u.message == *message) {
                return false;
            }
            // The condition's transition time moves only when its status does.
            let since = match last.take() {
                Some(previous) => previous.since,
                None => clock::now(),
            };
            *last = Some(Unschedulable {
                message: message.clone(),
                since,
            });
            true
        });
    }

    /// The pods bound to `node` that have not finished: `(namespace, name)`.
    pub fn running_on(&self, node: &str) -> Vec<(String, String)> {
        let pods = self.inner.lock();
        pods.by_key
            .iter()
            .filter(|(_, p)| p.load().is_some_and(|(n, _)| &**n == node))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// What the unfinished pods bound to each node take of it, and how many times any node's
    /// load has gone down so far.
    pub fn usage(&self) -> (HashMap<Arc<str>, Usage>, u64) {
        let pods = self.inner.lock();
        (pods.usage.clone(), pods.freed)
    }

    /// Number of pods.
    pub fn len(&self) -> usize {
        self.inner.lock().by_key.len()
    }

    /// Whether there are no pods.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pods in `namespace` (all when `None`) that `select` keeps, and the version the list
    /// is consistent at.
    pub fn snapshot(
        &self,
        namespace: Option<&str>,
        select: impl Fn(&PodRecord) -> bool,
    ) -> (Vec<PodRecord>, u64) {
        let pods = self.inner.lock();
        let items = pods
            .by_key
            .values()
            .filter(|p| namespace.is_none_or(|ns| p.namespace == ns))
            .filter(|p| select(p))
            .cloned()
            .collect();
        // Pods take their versions under this lock, so none is newer than this.
        (items, self.versions.current_rv())
    }

    /// The pods in `namespace` (all when `None`) matching `selector`, rendered; `name` limits
    /// to one pod.
    pub fn list(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
        selector: &LabelSelector,
    ) -> Vec<Value> {
        let (items, _) = self.snapshot(namespace, |p| {
            name.is_none_or(|n| p.name == n) && selector.matches(Some(&p.labels))
        });
        items.iter().map(render).collect()
    }

    /// The changes after version `cursor`, and the latest version; `Err(oldest)` when some of
    /// them have left the history.
    pub fn changes_after(&self, cursor: u64) -> Result<(Vec<PodChange>, u64), u64> {
        let pods = self.inner.lock();
        if cursor < pods.compacted {
            return Err(pods.compacted);
        }
        let start = pods.history.partition_point(|c| c.rv <= cursor);
        let changes = pods.history.range(start..).cloned().collect();
        Ok((changes, self.versions.current_rv()))
    }

    /// A receiver of the version of the latest pod change.
    pub fn subscribe(&self) -> versions::Receiver<u64> {
        self.latest.subscribe()
    }
}

impl PodRecord {
    /// The value of a field a pod field selector may name.
    pub fn field(&self, field: &str) -> String {
        match field {
            "metadata.name" => self.name.clone(),
            "metadata.namespace" => self.namespace.clone(),
            "status.phase" => self.phase.as_str().to_owned(),
            "spec.nodeName" => match &self.placement {
                Placement::Bound { node, .. } => node.to_string(),
                _ => String::new(),
            },
            "status.podIP" | "status.nominatedNodeName" => String::new(),
            other => {
                let pointer = format!("/{}", other.replace('.', "/"));
                render(self)
                    .pointer(&pointer)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn table() -> PodTable {
        PodTable::new(Arc::new(Store::new(16)), 16)
    }

    fn pod(name: &str, owner: &str) -> PodRecord {
        PodRecord {
            namespace: "default".into(),
            name: name.into(),
            uid: "0123456789".into(),
            rv: 1,
            created: "2026-01-01T00:00:00Z".into(),
            phase: Phase::Running,
            restarts: 0,
            owner: Some(Owner {
                name: "j".into(),
                uid: owner.into(),
            }),
            job_name: "j".into(),
            labels: Arc::new(json!({"job-name": "j"})),
            template: Bytes::from(
                json!({"metadata": {"labels": {"job-name": "j"}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}})
                .to_string(),
            ),
            placement: Placement::Unscheduled,
            demand: None,
        }
    }

    #[test]
    fn renders_like_a_real_pod() {
        let table = table();
        table.insert(pod("j-abcde", "u1"));
        let pods = table.list(
            Some("default"),
            None,
            &LabelSelector::parse("job-name=j").unwrap(),
        );
        assert_eq!(pods.len(), 1);
        let p = &pods[0];
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(p["status"]["qosClass"], "BestEffort");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        let mount = p["spec"]["containers"][0]["volumeMounts"][0]["name"]
            .as_str()
            .unwrap();
        assert!(
            mount.starts_with("kube-api-access-") && mount.len() == "kube-api-access-".len() + 5
        );
        assert_eq!(p["spec"]["volumes"][0]["name"], mount);
    }

    #[test]
    fn a_taken_name_is_refused_and_changes_nothing() {
        let table = table();
        assert!(table.insert(pod("j-abcde", "u1")));
        assert!(!table.insert(pod("j-abcde", "u2")));
        assert_eq!(table.len(), 1);
        table.remove_owned("u2");
        assert_eq!(
            table.len(),
            1,
            "the refused pod was not recorded under its owner"
        );
    }

    #[test]
    fn a_bound_pod_counts_against_its_node_until_it_finishes_or_goes() {
        let table = table();
        let demand = Arc::new(Demand::of_template(&json!({"spec": {"containers": [
            {"name": "w", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]}})));
        for name in ["a", "b", "c"] {
            let mut p = pod(name, "u1");
            p.placement = Placement::Pending(None);
            p.phase = Phase::Pending;
            p.demand = Some(demand.clone());
            table.insert(p);
        }
        let n1: Arc<str> = Arc::from("n1");
        assert!(table.bind("default", "a", &n1, true));
        assert!(table.bind("default", "b", &n1, false));
        assert!(!table.bind("default", "b", &n1, true), "bound once");
        let (usage, freed) = table.usage();
        assert_eq!((usage["n1"].pods, usage["n1"].requested["cpu"]), (2, 1000));
        assert_eq!(usage["n1"].requested["memory"], 2 << 30);
        assert_eq!(table.running_on("n1").len(), 2);

        table.set_state("default", "a", Phase::Succeeded, 0);
        table.set_state("default", "a", Phase::Running, 0);
        assert_eq!(
            table.usage().0["n1"].pods,
            1,
            "a finished pod stays finished"
        );
        table.remove_owned("u1");
        let (usage, now_freed) = table.usage();
        assert!(usage.is_empty());
        assert_eq!(now_freed, freed + 2);

        // The pending pod's condition changes only when the message does.
        let mut p = pod("d", "u2");
        p.placement = Placement::Pending(None);
        p.demand = Some(demand);
        table.insert(p);
        let message: Arc<str> = Arc::from("0/1 nodes are available: 1 Insufficient cpu.");
        table.set_unschedulable("default", "d", &message);
        let first = table.pending("default", "d").unwrap();
        table.set_unschedulable("default", "d", &message);
        let again = table.pending("default", "d").unwrap();
        assert_eq!(first.last_message, Some(message));
        assert_eq!(again.rv, first.rv, "the same message changes nothing");
    }

    #[test]
    fn garbage_collection() {
        let table = table();
        table.insert(pod("a", "u1"));
        table.insert(pod("b", "u1"));
        table.insert(pod("c", "u2"));
        table.orphan_owned("u2");
        table.remove_owned("u1");
        let left = table.list(None, None, &LabelSelector::default());
        assert_eq!(left.len(), 1);
        assert!(left[0]["metadata"].get("ownerReferences").is_none());
    }
}
