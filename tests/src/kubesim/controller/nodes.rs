//! The controller's part in a cluster with nodes: the node lifecycle controller (taints that
//! follow a node's readiness and cordon), the scheduler's node cache, the pods it binds, and
//! the pod garbage collector's failing of pods whose node is gone.

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Controller;
use crate::kubesim::node::lifecycle;
use crate::kubesim::pods::Phase;
use crate::kubesim::store::ObjectKey;
use crate::kubesim::writes::{self, Writer};
use fedjob_scheduler::kube_api::clock;

impl Controller {
    /// A node changed: fix its taints if the lifecycle controller would, and tell the
    /// scheduler what it now looks like (or that it is gone).
    pub(super) fn reconcile_node(&mut self, key: &ObjectKey) {
        let Some(object) = self.store.get(key) else {
            if let Some(scheduler) = &mut self.scheduler {
                scheduler.node_changed(&key.name, None);
            }
            self.lose_pods_on(&key.name);
            return;
        };
        let mut value = object.value();
        if let Some(taints) = lifecycle::reconcile_taints(&value, &clock::now()) {
            let spec = value
                .as_object_mut()
                .and_then(|v| v.get_mut("spec"))
                .and_then(Value::as_object_mut);
            if let Some(spec) = spec {
                if taints.is_empty() {
                    spec.remove("taints");
                } else {
                    spec.insert("taints".into(), json!(taints));
                }
            }
            let writer = Writer::new(&self.store, writes::CONTROLLER_MANAGER, false);
            match writer.update(key, value, "") {
                // The scheduler sees the node as written; its change event comes back here.
                Ok(written) => value = written.value(),
                Err(err) => {
                    tracing::debug!(node = %key.name, %err, "node taints not written; retrying");
                    self.dirty.insert(key.clone());
                    return;
                }
            }
        }
        if let Some(scheduler) = &mut self.scheduler {
            scheduler.node_changed(&key.name, Some(&value));
        }
    }

    /// The pod garbage collector: pods bound to a node that no longer exists fail, and their
    /// Jobs replace them.
    fn lose_pods_on(&mut self, node: &str) {
        let lost = self.pods.running_on(node);
        if lost.is_empty() {
            return;
        }
        tracing::info!(%node, pods = lost.len(), "node gone: its pods fail");
        for (namespace, name) in lost {
            let owned = self.jobs.iter_mut().find_map(|(key, job)| {
                if key.namespace != namespace {
                    return None;
                }
                let pod = job.active.iter_mut().find(|p| p.name == name)?;
                pod.lost = true;
                Some(key.clone())
            });
            match owned {
                Some(key) => {
                    self.dirty.insert(key);
                }
                None => {
                    self.pods.set_state(&namespace, &name, Phase::Failed, 0);
                }
            }
        }
    }

    /// A scheduling pass: binds what fits, starts what the node's kubelet runs, and marks the
    /// Jobs whose pods changed for another look.
    pub(super) fn schedule_pods(&mut self) {
        let Some(scheduler) = &mut self.scheduler else {
            return;
        };
        let bindings = scheduler.run(&self.pods, &self.store);
        let now = Instant::now();
        for binding in bindings {
            let pod = self
                .jobs
                .get_mut(&binding.job)
                .and_then(|job| job.active.iter_mut().find(|p| p.name == binding.pod));
            match pod {
                Some(pod) => {
                    if binding.started {
                        pod.ends = Some(now + pod.duration);
                        pod.ready = true;
                    }
                    self.dirty.insert(binding.job);
                }
                None if binding.started => {
                    self.orphans
                        .started(&binding.job.namespace, &binding.pod, now);
                }
                None => {}
            }
        }
    }
}
