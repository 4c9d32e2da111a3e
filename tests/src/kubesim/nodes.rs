//! Changing a running simulated cluster's nodes from a test: [`NodeHandle`] registers,
//! resizes, cordons, fails and removes nodes through the API server's write path, as the
//! kubelet, `kubectl cordon` and `kubectl delete node` would, so watchers and the scheduler
//! see the same changes a real cluster would show them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::node::{Kubelets, Registration, lifecycle, ready_condition};
use super::pods::PodTable;
use super::resource::Resource;
use super::sched::fit::Usage;
use super::store::{ObjectKey, Store};
use super::writes::Writer;
use fedjob_scheduler::kube_api::clock;
use fedjob_scheduler::kube_api::params::DeleteOptions;
use fedjob_scheduler::kube_api::patch::PatchType;
use fedjob_scheduler::kube_api::status::ApiError;

/// How long [`NodeHandle`] waits for the node lifecycle controller to catch up before it
/// gives up waiting (the change itself is made either way).
const SETTLE: Duration = Duration::from_secs(10);

/// The nodes of one running cluster.
#[derive(Clone)]
pub struct NodeHandle {
    store: Arc<Store>,
    kubelets: Arc<Kubelets>,
    pods: Arc<PodTable>,
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(Resource::Node, "", name)
}

impl NodeHandle {
    /// A handle on the nodes in `store`.
    pub fn new(store: Arc<Store>, kubelets: Arc<Kubelets>, pods: Arc<PodTable>) -> Self {
        Self {
            store,
            kubelets,
            pods,
        }
    }

    /// Registers a node as its kubelet would (without waiting for the lifecycle controller).
    pub fn register(&self, node: &Registration) -> Result<(), ApiError> {
        self.kubelets.set(&node.name, node.kubelet);
        Writer::new(&self.store, "kubelet", false).create(Resource::Node, "", node.body())?;
        Ok(())
    }

    /// Registers a node and waits until the node lifecycle controller has untainted it.
    pub async fn add(&self, node: Registration) -> Result<(), ApiError> {
        self.register(&node)?;
        self.settled(&node.name).await;
        Ok(())
    }

    /// Changes a node's capacity and allocatable (the kubelet reporting new hardware);
    /// `(resource, quantity)` pairs, a `None` quantity removes the resource.
    pub async fn resize(
        &self,
        name: &str,
        resources: &[(&str, Option<&str>)],
    ) -> Result<(), ApiError> {
        let list: serde_json::Map<String, Value> = resources
            .iter()
            .map(|(r, q)| ((*r).to_owned(), q.map_or(Value::Null, |q| json!(q))))
            .collect();
        let patch = json!({"status": {"capacity": list, "allocatable": list}});
        Writer::new(&self.store, "kubelet", false).patch(
            &key(name),
            PatchType::Merge,
            &patch,
            "status",
        )?;
        self.settled(name).await;
        Ok(())
    }

    /// Cordons (`true`) or uncordons a node, as `kubectl cordon` does (`spec.unschedulable`).
    pub async fn cordon(&self, name: &str, cordoned: bool) -> Result<(), ApiError> {
        let patch =
            json!({"spec": {"unschedulable": if cordoned { json!(true) } else { Value::Null }}});
        Writer::new(&self.store, "kubectl-cordon", false).patch(
            &key(name),
            PatchType::Strategic,
            &patch,
            "",
        )?;
        self.settled(name).await;
        Ok(())
    }

    /// Makes a node's kubelet report it Ready or not (`KubeletNotReady`); the lifecycle
    /// controller then taints or untaints it.
    pub async fn set_ready(&self, name: &str, ready: bool) -> Result<(), ApiError> {
        let patch = json!({"status": {"conditions": [ready_condition(ready, &clock::now())]}});
        Writer::new(&self.store, "kubelet", false).patch(
            &key(name),
            PatchType::Strategic,
            &patch,
            "status",
        )?;
        self.settled(name).await;
        Ok(())
    }

    /// Deletes a node (`kubectl delete node`); pods bound to it fail, as the pod garbage
    /// collector has them.
    pub fn remove(&self, name: &str) -> Result<(), ApiError> {
        Writer::new(&self.store, "kubectl", false).delete(&key(name), &DeleteOptions::default())?;
        Ok(())
    }

    /// The node as the API serves it.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.store.get(&key(name)).map(|o| o.value())
    }

    /// What the unfinished pods bound to `name` request of it.
    pub fn usage(&self, name: &str) -> Usage {
        self.pods.usage().0.remove(name).unwrap_or_default()
    }

    /// Waits (up to ten seconds) until the node lifecycle controller has nothing left to do on
    /// `name`: its taints follow its readiness and cordon.
    pub async fn settled(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + SETTLE;
        let mut versions = self.store.subscribe();
        loop {
            let pending = self
                .get(name)
                .is_some_and(|n| lifecycle::reconcile_taints(&n, "").is_some());
            if !pending {
                return;
            }
            match tokio::time::timeout_at(deadline, versions.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::warn!(node = %name, "the node lifecycle controller did not settle the node");
                    return;
                }
            }
        }
    }
}
