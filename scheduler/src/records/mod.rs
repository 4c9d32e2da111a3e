//! How the federation is laid out in the store: every key and prefix, and the encoding of the
//! records under them.
//!
//! Store format 2 (this build; [`STORE_FORMAT`] under [`FORMAT_KEY`]):
//! - `jobs/NAMESPACE/NAME`: one record per federated Job, its shards inside it in a compact
//!   encoding ([`codec`]). Every change of a Job is one write of this one key, with a
//!   compare-and-swap on its revision, which orders all changes of a Job, also across replicas.
//! - `clusters/NAME`: a member cluster's record (labels, cordon, epoch), JSON.
//! - With several replicas on one etcd (see `coordination`): `leader`, `live/CLUSTER` and
//!   `sessions/CLUSTER`, written on the replica's lease.
//!
//! Store format 1 (no `format` key) kept a Job's shards apart, one JSON record per cluster under
//! `shards/NAMESPACE/NAME/CLUSTER`: 101 keys for a Job over 100 clusters. [`migrate`] turns such
//! a store into format 2 when it is opened; a store of a newer format is refused.

mod codec;
pub mod migrate;

use bytes::Bytes;
use serde::Serialize;

use crate::model::job::{FederatedJob, RECORD_FORMAT};
use crate::store::{KeyValue, Op, Precondition};

/// Key prefix of Job records.
pub const JOBS_PREFIX: &str = "jobs/";
/// Key prefix of per-cluster shard records (store format 1 only; migrated away).
pub const SHARDS_PREFIX: &str = "shards/";
/// Key prefix of cluster records.
pub const CLUSTERS_PREFIX: &str = "clusters/";
/// Key of the leader record.
pub const LEADER_KEY: &str = "leader";
/// Key prefix of liveness records.
pub const LIVE_PREFIX: &str = "live/";
/// Key prefix of agent session records.
pub const SESSIONS_PREFIX: &str = "sessions/";
/// Key of the store's format version (decimal text); absent in format 1.
pub const FORMAT_KEY: &str = "format";
/// The store format this build writes.
pub const STORE_FORMAT: u32 = 2;

/// What a store key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOf<'a> {
    /// The record of the Job with this key (`NAMESPACE/NAME`).
    Job(&'a str),
    /// The record of the cluster of this name.
    Cluster(&'a str),
    /// The liveness record of the cluster of this name.
    Live(&'a str),
    /// Something else (leadership, sessions, the format).
    Other,
}

/// What `key` holds.
pub fn key_of(key: &str) -> KeyOf<'_> {
    if let Some(job) = key.strip_prefix(JOBS_PREFIX) {
        KeyOf::Job(job)
    } else if let Some(name) = key.strip_prefix(CLUSTERS_PREFIX) {
        KeyOf::Cluster(name)
    } else if let Some(name) = key.strip_prefix(LIVE_PREFIX) {
        KeyOf::Live(name)
    } else {
        KeyOf::Other
    }
}

/// `jobs/NAMESPACE/NAME` for Job key `NAMESPACE/NAME`.
pub fn job_record_key(job: &str) -> String {
    format!("{JOBS_PREFIX}{job}")
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
    /// Revision of the record: the Job's `resourceVersion` (every change writes it).
    pub mod_revision: u64,
}

impl StoredJob {
    /// `record` as written at `mod_revision`.
    pub fn new(record: FederatedJob, mod_revision: u64) -> Self {
        Self {
            record,
            mod_revision,
        }
    }

    /// A record not written to the store (a dry run's answer): no revision.
    pub fn unwritten(record: FederatedJob) -> Self {
        Self::new(record, 0)
    }
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
    /// The store was written by a newer fedjob.
    #[error(
        "the store was written by a newer fedjob (store format {found}); this fedjob-scheduler reads store formats 1 to {supported}: run a newer fedjob-scheduler on it, or start on an empty store"
    )]
    NewerFormat {
        /// The store's format.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
}

/// The op that turns `current` (if any) into `next`: one put of the Job's record, guarded by
/// the revision it was read at.
pub fn write_op(job: &str, current: Option<&StoredJob>, next: &FederatedJob) -> Op {
    let precondition = current.map_or(Precondition::Absent, |c| {
        Precondition::ModRevision(c.mod_revision)
    });
    Op::put(
        job_record_key(job),
        Bytes::from(codec::encode(next)),
        precondition,
    )
}

/// The op that deletes a Job.
pub fn delete_op(job: &str, current: &StoredJob) -> Op {
    Op::delete(
        job_record_key(job),
        Precondition::ModRevision(current.mod_revision),
    )
}

/// Reads a Job from its record.
pub fn decode_job(kv: &KeyValue) -> Result<StoredJob, RecordError> {
    let corrupt = |reason: String| RecordError::Corrupt {
        key: kv.key.clone(),
        reason,
    };
    let record = codec::decode(&kv.value).map_err(corrupt)?;
    if record.format > RECORD_FORMAT {
        return Err(corrupt(format!(
            "written by a newer fedjob (record format {}, this build reads up to {RECORD_FORMAT})",
            record.format
        )));
    }
    Ok(StoredJob::new(record, kv.mod_revision))
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
mod tests;
