//! The federated Job as the federation stores it: the user's Job, the clusters taking part,
//! every shard ever planned, and what the agents last reported of each.
//!
//! Shards are kept after they end (finished, lost, stopped) because their counts still add to
//! the federated totals: the `succeeded` of a shard deleted half-way is work that was done.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use serde::{Deserialize, Serialize};

pub use super::cluster_name::ClusterName;
pub use super::packed::{Detail, PackedTime, Uid};
use super::sorted_set::SortedSet;

/// Version of the stored encoding; bumped on incompatible changes so old files are refused clearly.
pub const RECORD_FORMAT: u32 = 1;

/// A federated Job and its shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FederatedJob {
    /// Encoding version, see [`RECORD_FORMAT`].
    pub format: u32,
    /// The user's Job; `status` is the aggregated status. `metadata.resourceVersion` is not
    /// stored: it is the store revision of the record, filled in when read.
    pub job: Job,
    /// Clusters taking part. Fixed when the Job is created so that a cluster joining later does
    /// not take running work; it grows only when work is added or could not be placed.
    pub members: SortedSet<ClusterName>,
    /// Parallelism planned per member cluster by the last reconcile.
    pub planned: BTreeMap<ClusterName, i32>,
    /// Work that could not be placed by the last reconcile.
    pub unplaced: Unplaced,
    /// Every shard ever planned, grouped by cluster, in creation order within a cluster.
    /// Stored apart from the rest, one record per cluster (see `records`).
    #[serde(skip)]
    pub shards: Vec<Shard>,
    /// Set when the next reconcile may add clusters to `members` (the Job was created, its
    /// counts or preferences changed, or work is unplaced).
    pub grow_members: bool,
    /// Set while a cascading delete waits for clusters to confirm.
    pub deletion: Option<Deletion>,
}

/// Parallelism and completions that found no cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplaced {
    /// Parallelism not placed.
    pub parallelism: i32,
    /// Completions not placed.
    pub completions: i32,
}

/// A cascading delete in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deletion {
    /// When the delete was asked for.
    pub requested_at: Timestamp,
}

/// One local `batch/v1` Job in one member cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    /// Member cluster.
    pub cluster: ClusterName,
    /// Name of the local Job (`NAME`, `NAME-2`, …).
    pub name: String,
    /// Completions, fixed when the shard is created (the API server refuses to change them).
    pub completions: Option<i32>,
    /// Parallelism the local Job should have now.
    pub parallelism: i32,
    /// Fencing epoch of the cluster when the shard was planned.
    pub epoch: u64,
    /// Where the shard is in its life.
    pub state: ShardState,
    /// Why a stopping or stopped shard is stopped.
    pub stop_reason: Option<StopReason>,
    /// Revision of the desired state; increases whenever what the agent must do changes.
    pub revision: u64,
    /// Hash of the desired state at `revision`, to tell whether a reconcile changed it.
    pub fingerprint: u64,
    /// The agent has reported the local Job as existing at least once. From then on a
    /// missing local Job is never created again by the agent: it was deleted in the cluster.
    pub seen: bool,
    /// The last status reported by the agent.
    pub observed: Option<Observed>,
    /// Completions moved off this shard to other clusters because its pods could not be
    /// scheduled while some of them ran (SPEC §10 spill-over): it runs only
    /// `completions − moved` of them, and is stopped once the federated Job needs no more.
    #[serde(default)]
    pub moved: i32,
    /// When completions last moved off it: a report of pods unschedulable since before
    /// `spilled_at − pendingTimeoutSeconds` was acted on then, and is not acted on again.
    #[serde(default)]
    pub spilled_at: PackedTime,
}

/// Where a shard is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardState {
    /// Should exist and run (or stay suspended while the federated Job is).
    Active,
    /// Reached Complete or Failed in its cluster; left there, never re-created.
    Finished,
    /// Deleted in its cluster before it finished; its remaining work was planned again.
    Lost,
    /// The agent must delete it; waiting for the confirmation.
    Stopping,
    /// Stopped by suspending it, once the federated Job finished while it still ran: it did
    /// work, so it stays in its cluster with its counts (and an annotation saying why).
    Retired,
    /// Deleted on the federation's request and confirmed gone.
    Stopped,
}

/// Why the federation stopped a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// The federated Job reached its total (or failed) and this shard was still running:
    /// suspended when it did work ([`ShardState::Retired`]), deleted when it never did.
    Surplus,
    /// Completions were lowered before the shard had started.
    Unstarted,
    /// Its cluster was lost and the work was planned elsewhere (`rebalance: true`).
    Superseded,
    /// The preferences no longer allow its cluster.
    Excluded,
    /// The federated Job is being deleted with `propagationPolicy: Background`.
    Cascade,
}

/// What an agent reported of a shard.
///
/// Every shard holds one once its agent has reported, a million of them at 100 clusters ×
/// 10,000 Jobs, so it is packed: the local uid in 16 bytes and the rarely set reason and
/// message out of line. Its JSON form (the format 1 store) is the plain one of
/// [`ObservedFields`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "ObservedFields", into = "ObservedFields")]
pub struct Observed {
    /// What the agent sees.
    pub phase: ObservedPhase,
    /// Pods running.
    pub active: i32,
    /// Pods succeeded.
    pub succeeded: i32,
    /// Pods failed.
    pub failed: i32,
    /// `status.startTime` of the local Job.
    pub start_time: PackedTime,
    /// `status.completionTime` of the local Job.
    pub completion_time: PackedTime,
    /// uid of the local Job.
    pub local_uid: Uid,
    /// Reason and message behind the phase.
    pub detail: Detail,
    /// Assignment revision the local Job was last applied from.
    pub revision: u64,
}

/// [`Observed`] with every field as its own value, as JSON carries it.
#[derive(Clone, Serialize, Deserialize)]
struct ObservedFields {
    phase: ObservedPhase,
    active: i32,
    succeeded: i32,
    failed: i32,
    start_time: Option<Timestamp>,
    completion_time: Option<Timestamp>,
    local_uid: String,
    reason: String,
    message: String,
    revision: u64,
}

impl From<ObservedFields> for Observed {
    fn from(o: ObservedFields) -> Self {
        Self {
            phase: o.phase,
            active: o.active,
            succeeded: o.succeeded,
            failed: o.failed,
            start_time: o.start_time.into(),
            completion_time: o.completion_time.into(),
            local_uid: Uid::new(&o.local_uid),
            detail: Detail::new(&o.reason, &o.message),
            revision: o.revision,
        }
    }
}

impl From<Observed> for ObservedFields {
    fn from(o: Observed) -> Self {
        Self {
            phase: o.phase,
            active: o.active,
            succeeded: o.succeeded,
            failed: o.failed,
            start_time: o.start_time.get(),
            completion_time: o.completion_time.get(),
            local_uid: o.local_uid.to_string(),
            reason: o.detail.reason().to_owned(),
            message: o.detail.message().to_owned(),
            revision: o.revision,
        }
    }
}

/// Phases of a shard as its agent observes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ObservedPhase {
    /// Exists and is not finished.
    #[default]
    Running,
    /// Has the Complete condition.
    Complete,
    /// Has the Failed condition.
    Failed,
    /// Is suspended.
    Suspended,
    /// Is gone.
    Deleted,
    /// Does not exist and must not be created again.
    Missing,
    /// A Job of that name exists that fedjob did not create.
    Conflict,
    /// The cluster refused it.
    Error,
}

impl ObservedPhase {
    /// Whether a local Job exists in this phase.
    pub fn exists(self) -> bool {
        matches!(
            self,
            Self::Running | Self::Complete | Self::Failed | Self::Suspended
        )
    }
}

impl FederatedJob {
    /// A new record for a validated, defaulted Job.
    pub fn new(job: Job) -> Self {
        Self {
            format: RECORD_FORMAT,
            job,
            members: SortedSet::new(),
            planned: BTreeMap::new(),
            unplaced: Unplaced::default(),
            shards: Vec::new(),
            grow_members: true,
            deletion: None,
        }
    }

    /// `namespace/name`, the key of the Job in the federation.
    pub fn key(&self) -> String {
        job_key(self.namespace(), self.name())
    }

    /// The Job's name.
    pub fn name(&self) -> &str {
        self.job.metadata.name.as_deref().unwrap_or_default()
    }

    /// The Job's namespace.
    pub fn namespace(&self) -> &str {
        self.job.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// The Job's uid.
    pub fn uid(&self) -> &str {
        self.job.metadata.uid.as_deref().unwrap_or_default()
    }

    /// The Job's spec (always present on a stored record).
    pub fn spec(&self) -> &JobSpec {
        static EMPTY: std::sync::OnceLock<JobSpec> = std::sync::OnceLock::new();
        self.job
            .spec
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(JobSpec::default))
    }

    /// Whether the aggregated status carries a true `Complete` or `Failed` condition.
    pub fn is_finished(&self) -> bool {
        self.condition("Complete") || self.condition("Failed")
    }

    /// Whether the aggregated status carries condition `type_` with status `True`.
    pub fn condition(&self, type_: &str) -> bool {
        self.job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
    }

    /// Whether some of the Job's work found no room at the last reconcile, so that a cluster
    /// becoming available must plan it again.
    pub fn needs_room(&self) -> bool {
        self.unplaced.parallelism > 0 || self.unplaced.completions > 0
    }

    /// Shards in `cluster`, in creation order.
    pub fn shards_in<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = &'a Shard> + 'a {
        self.shards.iter().filter(move |s| s.cluster == cluster)
    }

    /// Shards in `cluster`, in creation order, found by binary search.
    ///
    /// Outside the planner the shards are kept in cluster order (it sorts them last, and
    /// records load that way); every agent session and every status rendering looks its
    /// clusters up on each change, and a scan per cluster made that quadratic in clusters.
    pub fn shards_of(&self, cluster: &str) -> &[Shard] {
        &self.shards[self.shard_range(cluster)]
    }

    /// The positions of the shards in `cluster` ([`FederatedJob::shards_of`]) among all shards.
    pub fn shard_range(&self, cluster: &str) -> Range<usize> {
        debug_assert!(
            self.shards.is_sorted_by(|a, b| a.cluster <= b.cluster),
            "shards out of cluster order"
        );
        let start = self
            .shards
            .partition_point(|s| s.cluster.as_str() < cluster);
        // A cluster nearly always holds one shard of a Job: a scan finds the end in one or
        // two comparisons where a second binary search took seven at 100 clusters.
        let len = self.shards[start..]
            .iter()
            .take_while(|s| s.cluster == cluster)
            .count();
        start..start + len
    }

    /// Every cluster that has a share or a shard of this Job.
    pub fn clusters(&self) -> BTreeSet<&str> {
        self.cluster_names().map(|c| c.as_str()).collect()
    }

    /// Every cluster that has a share or a shard of this Job, in name order, each once, while
    /// the shards are in cluster order (as they are outside the planner): members and shards
    /// are walked together, comparing names by pointer where they are the same.
    pub fn cluster_names(&self) -> impl Iterator<Item = ClusterName> + '_ {
        let mut members = self.members.iter().copied().peekable();
        let mut shards = self.shards.iter().map(|s| s.cluster).peekable();
        std::iter::from_fn(move || {
            let next = match (members.peek(), shards.peek()) {
                (Some(m), Some(s)) => *m.min(s),
                (Some(m), None) => *m,
                (None, Some(s)) => *s,
                (None, None) => return None,
            };
            members.next_if_eq(&next);
            while shards.next_if_eq(&next).is_some() {}
            Some(next)
        })
    }

    /// Finds a shard by cluster and name.
    pub fn shard_mut(&mut self, cluster: &str, name: &str) -> Option<&mut Shard> {
        self.shards
            .iter_mut()
            .find(|s| s.cluster == cluster && s.name == name)
    }
}

impl Shard {
    /// Pods this shard has made succeed, as last reported.
    pub fn succeeded(&self) -> i32 {
        self.observed.as_ref().map_or(0, |o| o.succeeded)
    }

    /// Completions this shard stands for in the federated total: all it was planned for while
    /// it may still run, what it reached once it can no longer run.
    pub fn effective_completions(&self) -> i32 {
        match self.state {
            ShardState::Active => self.counted(),
            ShardState::Finished if self.observed_phase() == Some(ObservedPhase::Complete) => {
                self.counted().max(self.succeeded())
            }
            _ => self.succeeded(),
        }
    }

    /// Completions this shard still lacks; `i32::MAX` for a work queue's, which has no count.
    pub fn remaining(&self) -> i32 {
        self.completions
            .map_or(i32::MAX, |_| (self.counted() - self.succeeded()).max(0))
    }

    /// The completions the federation counts on this shard: its own, less those moved off it.
    pub fn counted(&self) -> i32 {
        self.completions.map_or(0, |c| (c - self.moved).max(0))
    }

    /// Whether the shard has visibly started running in its cluster.
    pub fn started(&self) -> bool {
        self.observed.as_ref().is_some_and(|o| {
            o.start_time.is_some() || o.active > 0 || o.succeeded > 0 || o.failed > 0
        })
    }

    /// Whether pods of this shard ran in its cluster (any active, succeeded or failed): a
    /// shard that did work keeps its record there when the federation stops it.
    pub fn did_work(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|o| o.active > 0 || o.succeeded > 0 || o.failed > 0)
    }

    /// The phase last reported, if any.
    pub fn observed_phase(&self) -> Option<ObservedPhase> {
        self.observed.as_ref().map(|o| o.phase)
    }
}

/// `namespace/name`.
pub fn job_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The namespace and name in Job key `namespace/name` ([`job_key`]).
pub fn split_job_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const API_SERVER_UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

    /// The scheduler holds one `Shard` per cluster per Job (a million at 100 clusters ×
    /// 10,000 Jobs): a field added inline costs a megabyte per byte there, so it should be a
    /// choice, not an accident.
    #[test]
    fn a_shard_stays_small() {
        assert!(
            size_of::<Observed>() <= 72,
            "Observed: {} bytes",
            size_of::<Observed>()
        );
        assert!(
            size_of::<Shard>() <= 160,
            "Shard: {} bytes",
            size_of::<Shard>()
        );
    }

    #[test]
    fn observed_reads_and_writes_the_plain_json_of_the_format_1_store() {
        let json = serde_json::json!({
            "phase": "Failed", "active": 0, "succeeded": 1, "failed": 2,
            "start_time": null, "completion_time": null,
            "local_uid": API_SERVER_UID, "reason": "BackoffLimitExceeded", "message": "m",
            "revision": 7
        });
        let o: Observed = serde_json::from_value(json.clone()).unwrap();
        assert!(o.local_uid.is(API_SERVER_UID));
        assert_eq!(
            (o.detail.reason(), o.detail.message()),
            ("BackoffLimitExceeded", "m")
        );
        assert_eq!((o.failed, o.revision), (2, 7));
        assert_eq!(serde_json::to_value(&o).unwrap(), json);
    }
}
