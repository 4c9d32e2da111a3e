//! Bringing a store to the format this build writes, when it is opened.
//!
//! - An empty store is marked format 2.
//! - A format 1 store (a Job record `jobs/NAMESPACE/NAME` in JSON without its shards, and one
//!   JSON record of shards per cluster under `shards/NAMESPACE/NAME/CLUSTER`; no `format` key)
//!   is rewritten Job by Job: each Job becomes one format 2 record in the same txn that deletes
//!   its shard records, guarded by the revisions read, so a crash half-way leaves every Job
//!   either in the old layout or the new, and the next open carries on. The `format` key is
//!   written last.
//! - A store of a newer format is refused, naming both versions.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use tracing::info;

use super::{
    FORMAT_KEY, JOBS_PREFIX, RecordError, SHARDS_PREFIX, STORE_FORMAT, codec, job_record_key,
};
use crate::model::job::{FederatedJob, RECORD_FORMAT, Shard};
use crate::store::{KeyValue, Op, Precondition, Store, StoreError};

/// Most ops in one migration txn (etcd allows 128 by default).
const OPS_PER_TXN: usize = 100;

/// What opening the store found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// An empty store, now marked with this build's format.
    New,
    /// A store already in this build's format.
    Current,
    /// A format 1 store, rewritten: this many Jobs were converted.
    Migrated {
        /// Jobs rewritten as one record each.
        jobs: usize,
    },
}

/// Errors of opening the store.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A record is unreadable, or the store is newer than this build.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Brings `store` to [`STORE_FORMAT`]; see the module documentation.
pub async fn open(store: &dyn Store) -> Result<Opened, MigrateError> {
    if let Some(kv) = store.get(FORMAT_KEY).await? {
        let found = std::str::from_utf8(&kv.value)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .ok_or_else(|| RecordError::Corrupt {
                key: FORMAT_KEY.to_owned(),
                reason: format!(
                    "not a format version: {:?}",
                    String::from_utf8_lossy(&kv.value)
                ),
            })?;
        if found > STORE_FORMAT {
            return Err(RecordError::NewerFormat {
                found,
                supported: STORE_FORMAT,
            }
            .into());
        }
        if found == STORE_FORMAT {
            return Ok(Opened::Current);
        }
    }
    let jobs = store.list(JOBS_PREFIX).await?;
    let shards = store.list(SHARDS_PREFIX).await?;
    if jobs.items.is_empty() && shards.items.is_empty() {
        mark(store).await?;
        return Ok(Opened::New);
    }
    info!(
        jobs = jobs.items.len(),
        shard_records = shards.items.len(),
        "store format 1: rewriting every Job as one record (format {STORE_FORMAT})"
    );
    let mut by_job = group_shards(shards.items);
    let mut converted = 0;
    for kv in &jobs.items {
        let key = kv.key.trim_start_matches(JOBS_PREFIX);
        let shards = by_job.remove(key).unwrap_or_default();
        let mut ops = Vec::new();
        if kv.value.first() != Some(&codec::MAGIC) {
            let record = assemble_v1(kv, &shards)?;
            ops.push(Op::put(
                job_record_key(key),
                Bytes::from(codec::encode(&record)),
                Precondition::ModRevision(kv.mod_revision),
            ));
            converted += 1;
        }
        ops.extend(shards.iter().map(delete_exact));
        apply_in_chunks(store, ops).await?;
    }
    // Shard records of Jobs that are gone.
    let leftovers: Vec<Op> = by_job.values().flatten().map(delete_exact).collect();
    apply_in_chunks(store, leftovers).await?;
    mark(store).await?;
    info!(jobs = converted, "store migrated to format {STORE_FORMAT}");
    Ok(Opened::Migrated { jobs: converted })
}

async fn mark(store: &dyn Store) -> Result<(), StoreError> {
    store
        .txn(vec![Op::put(
            FORMAT_KEY,
            STORE_FORMAT.to_string(),
            Precondition::Any,
        )])
        .await
        .map(|_| ())
}

fn delete_exact(kv: &KeyValue) -> Op {
    Op::delete(kv.key.clone(), Precondition::ModRevision(kv.mod_revision))
}

/// Applies `ops` in txns of at most [`OPS_PER_TXN`], the first one (a Job's new record with the
/// first of its old shard records) all at once.
async fn apply_in_chunks(store: &dyn Store, ops: Vec<Op>) -> Result<(), StoreError> {
    for chunk in ops.chunks(OPS_PER_TXN) {
        store.txn(chunk.to_vec()).await?;
    }
    Ok(())
}

/// The shards of one Job in one cluster, as format 1 stored them.
#[derive(Deserialize)]
struct ClusterShards {
    /// uid of the Job they belong to (a later Job of the same name has another).
    uid: String,
    shards: Vec<Shard>,
}

/// Builds a Job from its format 1 record and shard records.
fn assemble_v1(job: &KeyValue, shards: &[KeyValue]) -> Result<FederatedJob, RecordError> {
    let mut record: FederatedJob = super::decode(&job.key, &job.value)?;
    if record.format > RECORD_FORMAT {
        return Err(RecordError::Corrupt {
            key: job.key.clone(),
            reason: format!(
                "written by a newer fedjob (record format {}, this build reads up to {RECORD_FORMAT})",
                record.format
            ),
        });
    }
    for kv in shards {
        let stored: ClusterShards = super::decode(&kv.key, &kv.value)?;
        if stored.uid != record.uid() {
            // Left by an earlier Job of the same name; never part of this one.
            continue;
        }
        record.shards.extend(stored.shards);
    }
    record.shards.sort_by_key(|s| s.cluster);
    Ok(record)
}

/// Groups format 1 shard records by the Job key they belong to.
fn group_shards(items: Vec<KeyValue>) -> BTreeMap<String, Vec<KeyValue>> {
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
