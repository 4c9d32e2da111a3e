//! What every worker shares (as kube-rs controllers hand a `Context` to their reconcile
//! function): the member cluster's client, the shard table and work queue, the self-fence's
//! lease, the metrics, and the few settings the workers read.

use std::sync::Arc;

use fedjob_proto::v1::AssignmentBatch;
use tracing::info;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::rules::fence::Standing;
use crate::rules::key::ShardKey;
use crate::state::capacity::Capacity;
use crate::state::lease::Lease;
use crate::state::metrics::{Gauges, Metrics};
use crate::state::pending::Pending;
use crate::state::queue::WorkQueue;
use crate::state::shards::Shards;

/// What every worker shares.
pub struct Context {
    /// The member cluster.
    pub cluster: Cluster,
    /// The shard table.
    pub shards: Shards,
    /// Shards waiting for a worker.
    pub queue: Arc<WorkQueue<ShardKey>>,
    /// This member cluster's name (for logs).
    pub cluster_name: String,
    /// Create a missing namespace instead of reporting it.
    pub create_namespaces: bool,
    /// The only namespace managed, when restricted.
    pub namespace: Option<String>,
    /// When a scheduler was last heard from (self-fencing).
    pub lease: Lease,
    /// Counters and the state `/readyz` reads.
    pub metrics: Metrics,
    /// The cluster's free capacity, with `--report-capacity`.
    pub capacity: Option<Arc<Capacity>>,
    /// The shards with unschedulable pods, with `--report-capacity`.
    pub pending: Option<Arc<Pending>>,
}

impl Context {
    /// A context for `config`, reaching the member cluster through `cluster`; nothing known yet.
    pub fn new(config: &Config, cluster: Cluster) -> Self {
        Context {
            cluster,
            shards: Shards::new(),
            queue: Arc::new(WorkQueue::new()),
            cluster_name: config.cluster_name.clone(),
            create_namespaces: config.create_namespaces,
            namespace: config.namespace.clone(),
            lease: Lease::new(config.self_fence_after),
            metrics: Metrics::new(),
            capacity: config
                .report_capacity
                .then(|| Arc::new(Capacity::new(config.capacity_bytes_per_heartbeat))),
            pending: config.report_capacity.then(Default::default),
        }
    }

    /// Takes a batch of assignments from the scheduler and queues the shards that need work.
    pub fn assign(&self, batch: &AssignmentBatch) {
        for a in &batch.assignments {
            if self.shards.assign(a, self.namespace.as_deref()) {
                self.queue
                    .push(ShardKey::new(a.namespace.clone(), a.shard.clone()));
            }
        }
        if batch.synced {
            info!(cluster = %self.cluster_name, shards = self.shards.len(), "in sync with the scheduler");
            self.lift_fence();
        }
    }

    /// Lifts the self-fence once a session is in sync: queues the shards to resume or to bring
    /// back to their assignments.
    pub fn lift_fence(&self) {
        let (before, keys) = self.shards.in_sync();
        if before == Standing::Fenced {
            info!(
                cluster = %self.cluster_name, shards = keys.len(),
                "self-fence lifted: in sync with a scheduler again; shards return to what their assignments ask"
            );
        }
        for key in keys {
            self.queue.push(key);
        }
    }

    /// Every metric in the Prometheus text format, the gauges read from the state now.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode(&Gauges {
            silent: self.lease.silent_for(),
            held_by_action: self.shards.held_by_action(),
            queue_depth: self.queue.len(),
            fenced: self.shards.standing() == Standing::Fenced,
        })
    }
}
