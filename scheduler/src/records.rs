//! How the federation is laid out in the store: every key and prefix, and the encoding of the
//! records under them.
//!
//! - `jobs/NAMESPACE/NAME`: a federated Job (the user's Job with its aggregated status, the
//!   members and the plan), plus `shards/NAMESPACE/NAME/CLUSTER`, one record per cluster with
//!   its shards. A status report from one cluster thus rewrites the Job record and that
//!   cluster's shards, not the shards of every cluster. Every change writes the Job record, with
//!   a compare-and-swap on its revision, so the Job record orders all changes of a Job, also
//!   across replicas.
//! - `clusters/NAME`: a member cluster's record (labels, cordon, epoch).
//! - With several replicas on one etcd (see `coordination`): `leader`, `live/CLUSTER` and
//!   `sessions/CLUSTER`, written on the replica's lease.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::model::job::{FederatedJob, RECORD_FORMAT, Shard};
use crate::store::{KeyValue, Op, Precondition};

/// Key prefix of Job records.
pub const JOBS_PREFIX: &str = "jobs/";
/// Key prefix of per-cluster shard records.
pub const SHARDS_PREFIX: &str = "shards/";
/// Key prefix of cluster records.
pub const CLUSTERS_PREFIX: &str = "clusters/";
/// Key of the leader record.
pub const LEADER_KEY: &str = "leader";
/// Key prefix of liveness records.
pub const LIVE_PREFIX: &str = "live/";
/// Key prefix of agent session records.
pub const SESSIONS_PREFIX: &str = "sessions/";

/// What a store key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOf<'a> {
    /// A record of the Job with this key (`NAMESPACE/NAME`): the Job's or one of its shards'.
    Job(&'a str),
    /// The record of the cluster of this name.
    Cluster(&'a str),
    /// The liveness record of the cluster of this name.
    Live(&'a str),
    /// Something else (leadership, sessions).
    Other,
}

/// What `key` holds.
pub fn key_of(key: &str) -> KeyOf<'_> {
    if let Some(job) = key.strip_prefix(JOBS_PREFIX) {
        KeyOf::Job(job)
    } else if let Some((job, _cluster)) = key
        .strip_prefix(SHARDS_PREFIX)
        .and_then(|k| k.rsplit_once('/'))
    {
        KeyOf::Job(job)
    } else if let Some(name) = key.strip_prefix(CLUSTERS_PREFIX) {
        KeyOf::Cluster(name)
    } else if let Some(name) = key.strip_prefix(LIVE_PREFIX) {
        KeyOf::Live(name)
    } else {
        KeyOf::Other
    }
}

/// `clusters/NAME`.
pub fn cluster_key(name: &str) -> String {
    format!("{CLUSTERS_PREFIX}{name}")
}

/// How a liveness record's value ends when its agent fell silent for the grace on the replica
/// that wrote it (`Coordinator::silent`). A record that disappears instead went with its
/// replica's lease: the replica died, and the agent may be on its way to another one.
pub const SILENT: &[u8] = b" silent";

/// What a cluster's liveness record says, as every replica reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveRecord {
    /// A replica hears the cluster's agent.
    Live,
    /// The replica that heard it last found it silent for the grace.
    Silent,
    /// The record went with its replica's lease: nobody answers for the cluster.
    Expired,
}

impl LiveRecord {
    /// The state of a record with `value`, or of none.
    pub fn of(value: Option<&[u8]>) -> Self {
        match value {
            Some(v) if v.ends_with(SILENT) => Self::Silent,
            Some(_) => Self::Live,
            None => Self::Expired,
        }
    }
}

/// `live/CLUSTER`.
pub fn live_key(cluster: &str) -> String {
    format!("{LIVE_PREFIX}{cluster}")
}

/// `sessions/CLUSTER`.
pub fn session_key(cluster: &str) -> String {
    format!("{SESSIONS_PREFIX}{cluster}")
}

/// A federated Job as read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    /// The record, shards included.
    pub record: FederatedJob,
    /// Revision of the Job record: the Job's `resourceVersion` (every change writes it).
    pub mod_revision: u64,
    /// Revision of each cluster's shard record.
    pub shard_revisions: BTreeMap<String, u64>,
}

impl StoredJob {
    /// A record not written to the store (a dry run's answer): no revisions.
    pub fn unwritten(record: FederatedJob) -> Self {
        Self {
            record,
            mod_revision: 0,
            shard_revisions: BTreeMap::new(),
        }
    }
}

/// The shards of one Job in one cluster, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ClusterShards {
    format: u32,
    /// uid of the Job they belong to (a later Job of the same name has another).
    uid: String,
    shards: Vec<Shard>,
}

/// Errors reading records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A record does not decode.
    #[error("stored record {key} is unreadable: {reason}")]
    Corrupt {
        /// Store key.
        key: String,
        /// What went wrong.
        reason: String,
    },
}

/// `jobs/NAMESPACE/NAME` for Job key `NAMESPACE/NAME`.
pub fn job_record_key(job: &str) -> String {
    format!("{JOBS_PREFIX}{job}")
}

/// `shards/NAMESPACE/NAME/` : the prefix of a Job's shard records.
pub fn shards_prefix(job: &str) -> String {
    format!("{SHARDS_PREFIX}{job}/")
}

/// The ops that turn `current` (if any) into `next`: the Job record always, a cluster's shard
/// record only when its shards changed, each guarded by the revision it was read at.
pub fn write_ops(job: &str, current: Option<&StoredJob>, next: &FederatedJob) -> Vec<Op> {
    let precondition = current.map_or(Precondition::Absent, |c| {
        Precondition::ModRevision(c.mod_revision)
    });
    let mut ops = vec![Op::put(job_record_key(job), encode(next), precondition)];
    let old = current
        .map(|c| by_cluster(&c.record.shards))
        .unwrap_or_default();
    let new = by_cluster(&next.shards);
    let clusters: std::collections::BTreeSet<&str> =
        old.keys().chain(new.keys()).copied().collect();
    for cluster in clusters {
        let (before, after) = (old.get(cluster), new.get(cluster));
        if before == after {
            continue;
        }
        let key = format!("{}{cluster}", shards_prefix(job));
        let revision = current.and_then(|c| c.shard_revisions.get(cluster).copied());
        let precondition = revision.map_or(Precondition::Absent, Precondition::ModRevision);
        ops.push(match after {
            Some(shards) => Op::put(key, encode_shards(next.uid(), shards), precondition),
            None => Op::delete(key, precondition),
        });
    }
    ops
}

/// The ops that delete a Job and all its shard records.
pub fn delete_ops(job: &str, current: &StoredJob) -> Vec<Op> {
    let mut ops = vec![Op::delete(
        job_record_key(job),
        Precondition::ModRevision(current.mod_revision),
    )];
    for (cluster, revision) in &current.shard_revisions {
        ops.push(Op::delete(
            format!("{}{cluster}", shards_prefix(job)),
            Precondition::ModRevision(*revision),
        ));
    }
    ops
}

/// The revisions of a Job's records after `ops` were applied at `revision`.
pub fn revisions_after(
    ops: &[Op],
    revision: u64,
    current: Option<&StoredJob>,
) -> BTreeMap<String, u64> {
    let mut revisions = current
        .map(|c| c.shard_revisions.clone())
        .unwrap_or_default();
    for op in ops {
        let Some((_, cluster)) = op
            .key()
            .strip_prefix(SHARDS_PREFIX)
            .and_then(|k| k.rsplit_once('/'))
        else {
            continue;
        };
        match op {
            Op::Put { .. } => revisions.insert(cluster.to_owned(), revision),
            Op::Delete { .. } => revisions.remove(cluster),
        };
    }
    revisions
}

/// Builds a Job from its record and its shard records.
pub fn assemble(job: &KeyValue, shards: &[KeyValue]) -> Result<StoredJob, RecordError> {
    let mut record: FederatedJob = decode(&job.key, &job.value)?;
    if record.format > RECORD_FORMAT {
        return Err(RecordError::Corrupt {
            key: job.key.clone(),
            reason: format!(
                "written by a newer fedjob (record format {}, this build reads up to {RECORD_FORMAT})",
                record.format
            ),
        });
    }
    let mut shard_revisions = BTreeMap::new();
    for kv in shards {
        let stored: ClusterShards = decode(&kv.key, &kv.value)?;
        if stored.uid != record.uid() {
            // Left by an earlier Job of the same name; never part of this one.
            continue;
        }
        let cluster = kv.key.rsplit_once('/').map_or("", |(_, c)| c);
        shard_revisions.insert(cluster.to_owned(), kv.mod_revision);
        record.shards.extend(stored.shards);
    }
    record.shards.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    Ok(StoredJob {
        record,
        mod_revision: job.mod_revision,
        shard_revisions,
    })
}

/// Groups listed shard records by the Job key they belong to.
pub fn group_shards(items: Vec<KeyValue>) -> BTreeMap<String, Vec<KeyValue>> {
    let mut groups: BTreeMap<String, Vec<KeyValue>> = BTreeMap::new();
    for kv in items {
        if let Some((job, _cluster)) = kv
            .key
            .strip_prefix(SHARDS_PREFIX)
            .and_then(|k| k.rsplit_once('/'))
        {
            groups.entry(job.to_owned()).or_default().push(kv);
        }
    }
    groups
}

fn by_cluster(shards: &[Shard]) -> BTreeMap<&str, Vec<&Shard>> {
    let mut map: BTreeMap<&str, Vec<&Shard>> = BTreeMap::new();
    for s in shards {
        map.entry(s.cluster.as_str()).or_default().push(s);
    }
    map
}

fn encode(record: &FederatedJob) -> Bytes {
    serde_json::to_vec(record)
        .expect("records serialise")
        .into()
}

fn encode_shards(uid: &str, shards: &[&Shard]) -> Bytes {
    let stored = ClusterShards {
        format: RECORD_FORMAT,
        uid: uid.to_owned(),
        shards: shards.iter().map(|s| (*s).clone()).collect(),
    };
    serde_json::to_vec(&stored)
        .expect("records serialise")
        .into()
}

/// Encodes one value to store (JSON).
pub fn encode_value<T: Serialize>(value: &T) -> Bytes {
    serde_json::to_vec(value).expect("records serialise").into()
}

/// Decodes one stored value.
pub fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, RecordError> {
    serde_json::from_slice(value).map_err(|e| RecordError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::clusters::{ClusterView, Clusters};
    use crate::model::job::{Observed, ObservedPhase};
    use crate::model::planner::{observe, reconcile};
    use crate::store::{EmbeddedOptions, EmbeddedStore, Store};

    fn job() -> FederatedJob {
        let job = serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "myjob", "namespace": "default", "uid": "u1"},
            "spec": {"parallelism": 9, "completions": 18, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "w", "image": "busybox"}]}}}
        });
        let mut fj = FederatedJob::new(serde_json::from_value(job).unwrap());
        let clusters: Clusters = ["c1", "c2", "c3"]
            .into_iter()
            .map(|c| {
                (
                    c.to_owned(),
                    ClusterView {
                        ready: true,
                        ..Default::default()
                    },
                )
            })
            .collect();
        reconcile(&mut fj, &clusters, jiff::Timestamp::UNIX_EPOCH);
        fj
    }

    async fn load(store: &EmbeddedStore) -> StoredJob {
        let jobs = store.list(JOBS_PREFIX).await.unwrap();
        let shards = store.list(&shards_prefix("default/myjob")).await.unwrap();
        assemble(&jobs.items[0], &shards.items).unwrap()
    }

    #[tokio::test]
    async fn a_job_round_trips_and_a_report_rewrites_one_cluster_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let fj = job();
        let ops = write_ops("default/myjob", None, &fj);
        assert_eq!(ops.len(), 4, "the Job record and one record per cluster");
        store.txn(ops).await.unwrap();
        let stored = load(&store).await;
        assert_eq!(stored.record, fj);
        assert_eq!(stored.shard_revisions.len(), 3);

        let mut next = stored.record.clone();
        let report = Observed {
            phase: ObservedPhase::Running,
            active: 3,
            ..Default::default()
        };
        assert!(observe(&mut next, "c2", "myjob", 0, report));
        let ops = write_ops("default/myjob", Some(&stored), &next);
        let keys: Vec<&str> = ops.iter().map(Op::key).collect();
        assert_eq!(keys, vec!["jobs/default/myjob", "shards/default/myjob/c2"]);
        let revision = store.txn(ops.clone()).await.unwrap();
        let revisions = revisions_after(&ops, revision, Some(&stored));
        let reloaded = load(&store).await;
        assert_eq!(reloaded.record, next);
        assert_eq!(reloaded.shard_revisions, revisions);

        // A stale writer (revisions read before) loses the compare-and-swap.
        let stale = store
            .txn(write_ops("default/myjob", Some(&stored), &next))
            .await;
        assert!(matches!(
            stale,
            Err(crate::store::StoreError::Conflict { .. })
        ));

        store
            .txn(delete_ops("default/myjob", &reloaded))
            .await
            .unwrap();
        assert!(
            store.list("").await.unwrap().items.is_empty(),
            "nothing of the Job is left"
        );
    }
}
