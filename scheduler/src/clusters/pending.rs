//! The shards each member cluster cannot place, as its agent last reported them
//! (`fedjob-syncer --report-capacity`): pods Pending with `PodScheduled=False, reason
//! Unschedulable`. What spill-over ([`crate::model::spill`]) acts on after
//! `pendingTimeoutSeconds`.
//!
//! Like the capacity it lives in memory on the replica the agent streams to, and each report
//! replaces the cluster's whole set: a new stream starts with one.

use std::collections::HashMap;

use fedjob_proto::v1;
use jiff::Timestamp;
use parking_lot::Mutex;

use crate::model::spill::Stuck;

#[derive(Debug, Clone)]
struct Reported {
    shards: Vec<Stuck>,
    session: String,
}

/// Every cluster's shards with unschedulable pods.
#[derive(Debug, Default)]
pub struct PendingBook {
    clusters: Mutex<HashMap<String, Reported>>,
}

impl PendingBook {
    /// Replaces what `cluster` reported with `report`, from its agent speaking in `session`.
    pub fn apply(&self, cluster: &str, session: &str, report: &v1::PendingReport) {
        let shards = report
            .shards
            .iter()
            .map(|s| Stuck {
                namespace: s.namespace.clone(),
                shard: s.shard.clone(),
                local_uid: s.local_uid.clone(),
                pods: s.pods,
                since: s
                    .since
                    .as_ref()
                    .and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
                    .unwrap_or(Timestamp::UNIX_EPOCH),
                message: s.message.clone(),
            })
            .collect();
        self.clusters.lock().insert(
            cluster.to_owned(),
            Reported {
                shards,
                session: session.to_owned(),
            },
        );
    }

    /// Forgets what `cluster` reported in `session`, which ended.
    pub fn forget(&self, cluster: &str, session: &str) {
        let mut clusters = self.clusters.lock();
        if clusters.get(cluster).is_some_and(|r| r.session == session) {
            clusters.remove(cluster);
        }
    }

    /// Every cluster's stuck shards, by cluster.
    pub fn all(&self) -> Vec<(String, Vec<Stuck>)> {
        let mut all: Vec<(String, Vec<Stuck>)> = self
            .clusters
            .lock()
            .iter()
            .filter(|(_, r)| !r.shards.is_empty())
            .map(|(c, r)| (c.clone(), r.shards.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
