//! The scheduler's durable state: a small etcd-like key-value interface and its backends.
//!
//! Everything the scheduler must not forget (federated Jobs, clusters, shard plans) goes through
//! [`Store`]. The model is deliberately etcd's — string keys, opaque values, one store-wide
//! revision, compare-and-swap on a key's `mod_revision`, and watches that resume from a
//! revision — so that the etcd backend of a later issue is a second implementation of this trait
//! and no caller changes. [`EmbeddedStore`] keeps the state in one redb file in `--data-dir`.
//!
//! Rules every backend follows (and [`conformance`] checks, where it is compiled):
//! - a txn either applies all its ops at one new revision or none of them;
//! - a txn is acknowledged only once it is durable;
//! - revisions only grow, also across restarts;
//! - a watch delivers every change after its start revision, in revision order, or says
//!   [`StoreError::Compacted`] and ends — it never skips silently.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod embedded;
pub mod etcd;

pub use embedded::{EmbeddedOptions, EmbeddedStats, EmbeddedStore};
pub use etcd::{EtcdOptions, EtcdStore};

/// A point in the store's history. Store-wide, strictly increasing, persisted; a new store is at
/// revision 1 and its first write gets revision 2 (as in etcd).
pub type Revision = u64;

/// One key with its value and the revisions that created and last modified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value, opaque to the store.
    pub value: Bytes,
    /// Revision of the txn that created the key (a delete and re-create starts anew).
    pub create_revision: Revision,
    /// Revision of the txn that last wrote the key; what [`Precondition::ModRevision`] compares.
    pub mod_revision: Revision,
}

/// The condition a key must meet for a txn to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No condition.
    Any,
    /// The key does not exist.
    Absent,
    /// The key exists and was last written at exactly this revision.
    ModRevision(Revision),
}

/// One write of a txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or replace `key`.
    Put {
        /// The key to write.
        key: String,
        /// The new value.
        value: Bytes,
        /// What must hold for the txn to apply.
        precondition: Precondition,
    },
    /// Remove `key`; removing a key that does not exist is not an error (unless the precondition
    /// says it must exist), and changes nothing.
    Delete {
        /// The key to remove.
        key: String,
        /// What must hold for the txn to apply.
        precondition: Precondition,
    },
}

impl Op {
    /// A put of `value` at `key` under `precondition`.
    pub fn put(
        key: impl Into<String>,
        value: impl Into<Bytes>,
        precondition: Precondition,
    ) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            precondition,
        }
    }

    /// A delete of `key` under `precondition`.
    pub fn delete(key: impl Into<String>, precondition: Precondition) -> Self {
        Op::Delete {
            key: key.into(),
            precondition,
        }
    }

    /// The key this op writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }

    /// The condition this op's key must meet.
    pub fn precondition(&self) -> Precondition {
        match self {
            Op::Put { precondition, .. } | Op::Delete { precondition, .. } => *precondition,
        }
    }
}

/// The keys under a prefix, read from one consistent snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The keys in byte order of the key.
    pub items: Vec<KeyValue>,
    /// The store revision the snapshot is at: `watch(prefix, revision)` continues exactly after it.
    pub revision: Revision,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or replaced; its `mod_revision` is the revision of the change.
    Put(KeyValue),
    /// A key was deleted.
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the delete.
        mod_revision: Revision,
        /// The key as it was just before the delete, where the backend knows it.
        prev: Option<KeyValue>,
    },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// Why a store operation failed.
///
/// `Clone` because one failed group commit answers many callers with the same cause.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A precondition did not hold; nothing of the txn was written. Callers map this to `ABORTED`
    /// (or re-read and retry while their intent still holds).
    #[error("conflict on key {key:?}: its precondition does not hold")]
    Conflict {
        /// The first key (in op order) whose precondition failed.
        key: String,
    },
    /// The txn itself is malformed (empty key, a key named twice); etcd refuses the same txns.
    #[error("invalid txn: {reason} (key {key:?})")]
    InvalidTxn {
        /// The offending key.
        key: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A watch needs history older than the store keeps; the consumer must list again and
    /// watch from the listing's revision.
    #[error(
        "watch history after revision {requested} is no longer retained (oldest resumable revision is {oldest}); list again"
    )]
    Compacted {
        /// The revision the watch needed to continue after.
        requested: Revision,
        /// The oldest revision a watch can still continue after.
        oldest: Revision,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// The data file is locked by another process (or another open store in this one).
    #[error("data file {} is in use by another process", path.display())]
    InUse {
        /// The data file.
        path: PathBuf,
    },
    /// The data file is not a fedjob store or is damaged.
    #[error("data file {} is not a usable fedjob store: {detail}", path.display())]
    Corrupt {
        /// The data file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The data file was written in a format this build does not know, e.g. by a newer release.
    #[error(
        "data file {} has store format version {found}, but this build supports only version {supported}; run a fedjob-scheduler release that supports it",
        path.display()
    )]
    UnsupportedFormat {
        /// The data file.
        path: PathBuf,
        /// The format version recorded in the file.
        found: u64,
        /// The format version this build reads and writes.
        supported: u64,
    },
    /// The backend failed (I/O, fsync, the database engine, the network for etcd). For a txn
    /// this means it was not applied.
    #[error("store backend failed while {context}")]
    Backend {
        /// What the store was doing.
        context: &'static str,
        /// The backend's error; shared so one failure can answer a whole batch.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
}

impl StoreError {
    /// A [`StoreError::Backend`] for `source` while doing `context`.
    pub fn backend(context: &'static str, source: impl StdError + Send + Sync + 'static) -> Self {
        StoreError::Backend {
            context,
            source: Arc::new(source),
        }
    }
}

/// A durable, revisioned key-value store with compare-and-swap txns and resumable watches.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`, from committed data only.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix` (all keys for `""`), in key order, from one snapshot.
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError>;

    /// Applies every op atomically at one new revision, or none: if any precondition fails the
    /// answer is [`StoreError::Conflict`] and nothing is written. Preconditions are all checked
    /// against the state before the txn. Returns the txn's revision, which every written key gets
    /// as `mod_revision`, and only once the write is durable. A txn that changes nothing (only
    /// deletes of absent keys, or no ops) takes no new revision and returns the current one.
    /// A caller that stops waiting does not cancel the txn: it may still be applied.
    async fn txn(&self, ops: Vec<Op>) -> Result<Revision, StoreError>;

    /// Every change under `prefix` with a revision greater than `after`, in revision order,
    /// without gaps. If that history is gone, the first and only item is
    /// [`StoreError::Compacted`]; a watcher that falls behind the retained history gets the same
    /// and the stream ends. When the store closes the stream yields [`StoreError::Closed`] and ends.
    fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> BoxStream<'static, Result<WatchEvent, StoreError>>;

    /// The revision of the latest acknowledged write.
    fn revision(&self) -> Revision;

    /// Finishes queued writes, flushes and closes; later calls fail with [`StoreError::Closed`].
    /// Closing twice is harmless.
    async fn close(&self) -> Result<(), StoreError>;
}

/// Receives a measurement after every commit, for the metrics module to plug in.
pub trait CommitObserver: Send + Sync + 'static {
    /// One durable commit took `latency` (write, fsync) and carried `txns` txns.
    fn commit(&self, latency: Duration, txns: usize);
}

/// Writes `value` at `key` if `precondition` holds; returns the write's revision.
pub async fn put<S: Store + ?Sized>(
    store: &S,
    key: impl Into<String>,
    value: impl Into<Bytes>,
    precondition: Precondition,
) -> Result<Revision, StoreError> {
    store.txn(vec![Op::put(key, value, precondition)]).await
}

/// Deletes `key` if `precondition` holds; returns the delete's revision.
pub async fn delete<S: Store + ?Sized>(
    store: &S,
    key: impl Into<String>,
    precondition: Precondition,
) -> Result<Revision, StoreError> {
    store.txn(vec![Op::delete(key, precondition)]).await
}

/// Refuses txns that no backend may apply: an empty key, or one key named twice (which etcd
/// refuses too, and which would make a txn's watch events ambiguous).
pub(crate) fn validate_txn(ops: &[Op]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    for op in ops {
        let key = op.key();
        if key.is_empty() {
            return Err(StoreError::InvalidTxn {
                key: String::new(),
                reason: "keys must not be empty",
            });
        }
        if !seen.insert(key) {
            return Err(StoreError::InvalidTxn {
                key: key.to_owned(),
                reason: "a txn may name each key only once",
            });
        }
    }
    Ok(())
}
