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

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;

use bytes::Bytes;
use fedjob_scheduler::kube_api::selector::LabelSelector;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::sched::demand::Demand;
use super::sched::fit::Usage;

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

#[derive(Default)]
struct Pods {
    by_key: BTreeMap<(String, String), PodRecord>,
    by_owner: HashMap<String, Vec<(String, String)>>,
    /// Per node, what its bound and unfinished pods take.
    usage: HashMap<Arc<str>, Usage>,
    /// Counts every time a node's load went down (a pod finished or went away).
    freed: u64,
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

    fn remove_key(&mut self, key: &(String, String)) -> Option<PodRecord> {
        let pod = self.by_key.remove(key)?;
        self.count(&pod, -1);
        Some(pod)
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
#[derive(Default)]
pub struct PodTable {
    inner: Mutex<Pods>,
}

impl PodTable {
    /// Adds a pod; `false` (and nothing changes) when its name is taken, as a create of a
    /// generated name that collided is refused with `AlreadyExists`.
    pub fn insert(&self, pod: PodRecord) -> bool {
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
        pods.by_key.insert(key, pod);
        true
    }

    /// Changes a pod's phase and restart count; a finished pod stays as it finished.
    pub fn set_state(&self, namespace: &str, name: &str, phase: Phase, restarts: u32, rv: u64) {
        let mut pods = self.inner.lock();
        let key = (namespace.to_owned(), name.to_owned());
        if pods.by_key.get(&key).is_none_or(|p| p.phase.finished()) {
            return;
        }
        let Some(mut pod) = pods.by_key.remove(&key) else {
            return;
        };
        pods.count(&pod, -1);
        pod.phase = phase;
        pod.restarts = restarts;
        pod.rv = rv;
        pods.count(&pod, 1);
        pods.by_key.insert(key, pod);
    }

    /// Deletes one pod.
    pub fn remove(&self, namespace: &str, name: &str) {
        let mut pods = self.inner.lock();
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(pod) = pods.remove_key(&key)
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
            pods.remove_key(&key);
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
    pub fn bind(&self, namespace: &str, name: &str, node: &Arc<str>, start: bool, rv: u64) -> bool {
        let mut pods = self.inner.lock();
        let key = (namespace.to_owned(), name.to_owned());
        let Some(pod) = pods.by_key.get_mut(&key) else {
            return false;
        };
        if !matches!(pod.placement, Placement::Pending(_)) {
            return false;
        }
        pod.placement = Placement::Bound {
            node: node.clone(),
            since: fedjob_scheduler::kube_api::clock::now(),
        };
        if start {
            pod.phase = Phase::Running;
        }
        pod.rv = rv;
        let pod = pod.clone();
        pods.count(&pod, 1);
        true
    }

    /// Records a failed scheduling attempt (`PodScheduled` False, `Unschedulable`); the pod
    /// changes (and takes `next_rv()`) only when the message does.
    pub fn set_unschedulable(
        &self,
        namespace: &str,
        name: &str,
        message: &Arc<str>,
        next_rv: impl FnOnce() -> u64,
    ) {
        let mut pods = self.inner.lock();
        let Some(pod) = pods
            .by_key
            .get_mut(&(namespace.to_owned(), name.to_owned()))
        else {
            return;
        };
        let Placement::Pending(last) = &mut pod.placement else {
            return;
        };
        if last.as_ref().is_some_and(|u| u.message == *message) {
            return;
        }
        // The condition's transition time moves only when its status does.
        let since = match last.take() {
            Some(previous) => previous.since,
            None => fedjob_scheduler::kube_api::clock::now(),
        };
        *last = Some(Unschedulable {
            message: message.clone(),
            since,
        });
        pod.rv = next_rv();
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

    /// Releases every pod a Job controls (the garbage collector after an orphaning delete).
    pub fn orphan_owned(&self, owner_uid: &str, rv: u64) {
        let mut pods = self.inner.lock();
        for key in pods.by_owner.remove(owner_uid).unwrap_or_default() {
            if let Some(pod) = pods.by_key.get_mut(&key) {
                pod.owner = None;
                pod.rv = rv;
            }
        }
    }

    /// Number of pods.
    pub fn len(&self) -> usize {
        self.inner.lock().by_key.len()
    }

    /// Whether there are no pods.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pods in `namespace` (all when `None`) matching `selector`, rendered; `name` limits
    /// to one pod.
    pub fn list(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
        selector: &LabelSelector,
    ) -> Vec<Value> {
        let pods = self.inner.lock();
        pods.by_key
            .values()
            .filter(|p| namespace.is_none_or(|ns| p.namespace == ns))
            .filter(|p| name.is_none_or(|n| p.name == n))
            .filter(|p| selector.matches(Some(&p.labels)))
            .map(render)
            .collect()
    }
}

fn qos_class(containers: &[Value]) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        any |= requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty());
        let full = |r: &str| limits.and_then(|l| l.get(r)).is_some();
        let equal = |r: &str| {
            requests
                .and_then(|q| q.get(r))
                .is_none_or(|q| limits.and_then(|l| l.get(r)) == Some(q))
        };
        guaranteed &= full("cpu") && full("memory") && equal("cpu") && equal("memory");
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// `SetDefaults_Pod`: a container with a limit and no request for a resource requests the
/// limit (done on pods, not on the Job's template).
fn default_requests(container: &mut Value) {
    let Some(limits) = container.pointer("/resources/limits").cloned() else {
        return;
    };
    let Some(limits) = limits.as_object().filter(|l| !l.is_empty()) else {
        return;
    };
    let resources = &mut container["resources"];
    if !resources.get("requests").is_some_and(Value::is_object) {
        resources["requests"] = json!({});
    }
    let requests = resources["requests"]
        .as_object_mut()
        .expect("made an object above");
    for (name, limit) in limits {
        requests
            .entry(name.clone())
            .or_insert_with(|| limit.clone());
    }
}

fn condition(kind: &str, status: bool, reason: Option<&str>, since: &str) -> Value {
    let mut c = json!({"type": kind, "status": if status { "True" } else { "False" },
                       "lastProbeTime": null, "lastTransitionTime": since});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// The status of a pod: as a cluster without nodes shows it (no conditions), or as a
/// scheduler and kubelet leave it (`32-pod-bound.json`, `33-pod-unschedulable.json`).
fn render_status(pod: &PodRecord, containers: &[Value]) -> Value {
    let qos = qos_class(containers);
    let container_statuses = |started_at: &str| -> Vec<Value> {
        let running = pod.phase == Phase::Running;
        containers
            .iter()
            .map(|c| {
                let state = match pod.phase {
                    Phase::Pending | Phase::Running => {
                        json!({"running": {"startedAt": started_at}})
                    }
                    // No kubelet ran it, so there are no container timestamps (as in
                    // `17-pods.json`).
                    Phase::Succeeded => {
                        json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": null, "finishedAt": null}})
                    }
                    Phase::Failed => {
                        json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": null, "finishedAt": null}})
                    }
                };
                let mut status = json!({
                    "name": c.get("name").cloned().unwrap_or(Value::Null),
                    "image": c.get("image").cloned().unwrap_or(Value::Null),
                    "imageID": "",
                    "lastState": {},
                    "ready": false,
                    "restartCount": pod.restarts,
                    "state": state,
                });
                if !matches!(pod.placement, Placement::Unscheduled) {
                    status["ready"] = json!(running);
                    status["started"] = json!(running);
                }
                status
            })
            .collect()
    };
    match &pod.placement {
        Placement::Unscheduled => json!({
            "phase": pod.phase.as_str(),
            "qosClass": qos,
            "containerStatuses": container_statuses(&pod.created),
        }),
        Placement::Pending(last) => {
            let mut status = json!({"phase": "Pending", "qosClass": qos});
            if let Some(u) = last {
                let mut c = condition("PodScheduled", false, Some("Unschedulable"), &u.since);
                c["message"] = json!(*u.message);
                status["conditions"] = json!([c]);
            }
            status
        }
        Placement::Bound { since, .. } if pod.phase == Phase::Pending => json!({
            "phase": "Pending",
            "qosClass": qos,
            "conditions": [condition("PodScheduled", true, None, since)],
        }),
        Placement::Bound { since, .. } => {
            let done = pod.phase.finished().then_some("PodCompleted");
            let running = pod.phase == Phase::Running;
            json!({
                "phase": pod.phase.as_str(),
                "qosClass": qos,
                "startTime": since,
                "conditions": [
                    condition("Initialized", true, done, since),
                    condition("Ready", running, done, since),
                    condition("ContainersReady", running, done, since),
                    condition("PodScheduled", true, None, since),
                ],
                "containerStatuses": container_statuses(since),
            })
        }
    }
}

/// A pod as the API returns it: the template's spec with the defaults admission adds, the
/// owner reference, the node it is bound to, and a status for its phase.
pub fn render(pod: &PodRecord) -> Value {
    let template: Value = serde_json::from_slice(&pod.template).unwrap_or(Value::Null);
    let template = &template;
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    // The service-account volume's random suffix, derived from the uid so it is stable.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = pod
        .uid
        .bytes()
        .take(5)
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect();
    let token_volume = format!("kube-api-access-{suffix}");
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            cs.iter_mut().for_each(default_requests);
        }
    }
    if let Some(Value::Array(cs)) = spec.get_mut("containers") {
        for c in cs {
            let mount = json!({"name": token_volume, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true});
            match c.get_mut("volumeMounts") {
                Some(Value::Array(mounts)) => mounts.push(mount),
                _ => c["volumeMounts"] = json!([mount]),
            }
        }
    }
    let token = json!({"name": token_volume, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
    ]}});
    if let Some(map) = spec.as_object_mut() {
        match map.get_mut("volumes") {
            Some(Value::Array(v)) => v.push(token),
            _ => {
                map.insert("volumes".into(), json!([token]));
            }
        }
        map.entry("serviceAccountName").or_insert(json!("default"));
        map.insert("serviceAccount".into(), map["serviceAccountName"].clone());
        map.entry("enableServiceLinks").or_insert(json!(true));
        map.entry("preemptionPolicy")
            .or_insert(json!("PreemptLowerPriority"));
        map.entry("priority").or_insert(json!(0));
        let defaults = json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]);
        match map.get_mut("tolerations") {
            Some(Value::Array(t)) => t.extend(defaults.as_array().cloned().unwrap_or_default()),
            _ => {
                map.insert("tolerations".into(), defaults);
            }
        }
        if let Placement::Bound { node, .. } = &pod.placement {
            map.insert("nodeName".into(), json!(**node));
        }
    }
    let mut metadata = json!({
        "name": pod.name,
        "generateName": format!("{}-", pod.job_name),
        "namespace": pod.namespace,
        "uid": pod.uid,
        "resourceVersion": pod.rv.to_string(),
        "creationTimestamp": pod.created,
        "labels": *pod.labels,
    });
    if let Some(annotations) = template.pointer("/metadata/annotations") {
        metadata["annotations"] = annotations.clone();
    }
    if let Some(owner) = &pod.owner {
        metadata["ownerReferences"] = json!([{
            "apiVersion": "batch/v1", "kind": "Job", "name": owner.name, "uid": owner.uid,
            "controller": true, "blockOwnerDeletion": true
        }]);
    }
    json!({
        "metadata": metadata,
        "spec": spec,
        "status": render_status(pod, &containers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let table = PodTable::default();
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
        let table = PodTable::default();
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
        let table = PodTable::default();
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
        assert!(table.bind("default", "a", &n1, true, 2));
        assert!(table.bind("default", "b", &n1, false, 3));
        assert!(!table.bind("default", "b", &n1, true, 4), "bound once");
        let (usage, freed) = table.usage();
        assert_eq!((usage["n1"].pods, usage["n1"].requested["cpu"]), (2, 1000));
        assert_eq!(usage["n1"].requested["memory"], 2 << 30);
        assert_eq!(table.running_on("n1").len(), 2);

        table.set_state("default", "a", Phase::Succeeded, 0, 5);
        table.set_state("default", "a", Phase::Running, 0, 6);
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
        table.set_unschedulable("default", "d", &message, || 10);
        table.set_unschedulable("default", "d", &message, || 11);
        let pending = table.pending("default", "d").unwrap();
        assert_eq!((pending.rv, pending.last_message), (10, Some(message)));
    }

    #[test]
    fn garbage_collection() {
        let table = PodTable::default();
        table.insert(pod("a", "u1"));
        table.insert(pod("b", "u1"));
        table.insert(pod("c", "u2"));
        table.orphan_owned("u2", 5);
        table.remove_owned("u1");
        let left = table.list(None, None, &LabelSelector::default());
        assert_eq!(left.len(), 1);
        assert!(left[0]["metadata"].get("ownerReferences").is_none());
    }
}
