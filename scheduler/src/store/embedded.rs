//! The embedded backend: one redb file in `--data-dir`, written by one writer thread that
//! group-commits whatever txns are waiting, plus an in-memory ring of recent changes for watches.
//!
//! Why this shape:
//! - redb allows one write transaction at a time and each durable commit costs an fsync, so
//!   a single writer that folds every waiting txn into one redb transaction turns N fsyncs into
//!   one while each txn still gets its own revision and its own precondition check.
//! - The writer is an OS thread, not a tokio task: commits block on fsync and must not stall
//!   the runtime's workers.
//! - Preconditions are checked inside the redb write transaction, so they see exactly the
//!   committed state plus the earlier txns of the same batch, and there is no second copy of
//!   the state to keep consistent with the file.
//! - Watches read from a bounded ring that the writer appends to after each commit. A watcher
//!   is only a cursor into the ring, so a slow watcher costs no memory; when the ring has moved
//!   past its cursor it gets [`StoreError::Compacted`] instead of missing events.

use std::collections::VecDeque;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use parking_lot::{Mutex, RwLock};
use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, StorageError,
    TableDefinition, TableError, TableHandle,
};
use tokio::sync::{mpsc, oneshot, watch};

mod ring;
mod writer;

use self::ring::{Ring, Watcher};
use self::writer::Writer;
use super::{
    CommitObserver, KeyValue, Listing, Op, Revision, Store, StoreError, WatchEvent, validate_txn,
};

/// The data file's name inside the data directory.
pub const DATA_FILE: &str = "fedjob.redb";

/// The layout of the tables below. Bump it on any incompatible change, and teach `open` to
/// migrate from the older one; a build refuses files whose version it does not know, so an
/// old binary never misreads a file a newer one wrote.
const FORMAT_VERSION: u64 = 1;

/// key → [create_revision: u64 LE][mod_revision: u64 LE][value].
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Store-wide facts: the format version and the revision of the latest commit.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_FORMAT_VERSION: &str = "format_version";
const META_REVISION: &str = "revision";

/// How many txns may wait for the writer before callers are slowed down.
const QUEUE_CAPACITY: usize = 4096;
/// How many ring entries a watcher copies per lock of the ring, so that a watcher catching up
/// on a long history does not hold the writer up.
const WATCH_CHUNK: usize = 1024;
/// Bytes counted per ring entry on top of its key and values.
const EVENT_OVERHEAD: usize = 64;

/// Limits of the embedded store; [`Default`] suits the scheduler.
#[derive(Clone)]
pub struct EmbeddedOptions {
    /// At most this many txns go into one commit.
    pub max_batch_txns: usize,
    /// A commit stops taking txns once their keys and values reach this many bytes (a single
    /// larger txn still goes, alone).
    pub max_batch_bytes: usize,
    /// The watch history keeps at most this many changes.
    pub watch_history_events: usize,
    /// The watch history keeps at most about this many bytes of keys and values.
    pub watch_history_bytes: usize,
    /// Told about every commit (latency and batch size), e.g. by the metrics module.
    pub observer: Option<Arc<dyn CommitObserver>>,
    /// Bytes of file pages redb keeps in its own cache. redb's default (1 GiB) made the
    /// scheduler's resident memory grow with the file; the scheduler keeps every Job in memory
    /// anyway and reads the store only at start, so the cache only has to hold the B-tree
    /// pages a commit touches. The kernel's page cache still holds the rest of the file.
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_batch_txns: 1000,
            max_batch_bytes: 4 << 20,
            watch_history_events: 100_000,
            watch_history_bytes: 64 << 20,
            observer: None,
            cache_bytes: 32 << 20,
        }
    }
}

impl fmt::Debug for EmbeddedOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedOptions")
            .field("max_batch_txns", &self.max_batch_txns)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("watch_history_events", &self.watch_history_events)
            .field("watch_history_bytes", &self.watch_history_bytes)
            .field("observer", &self.observer.as_ref().map(|_| "…"))
            .field("cache_bytes", &self.cache_bytes)
            .finish()
    }
}

/// Counters of the writer since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbeddedStats {
    /// Durable commits (fsyncs) done.
    pub commits: u64,
    /// Txns answered by the writer, whatever the answer.
    pub txns: u64,
    /// Txns answered with a conflict.
    pub conflicts: u64,
    /// Batches whose commit failed (every txn in them got an error).
    pub failed_batches: u64,
}

/// The embedded [`Store`]: a redb file in the data directory.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    /// `None` once closing started; txns then answer [`StoreError::Closed`].
    queue: Mutex<Option<mpsc::Sender<Request>>>,
    /// Resolves when the writer has finished and the file is closed; taken by `close`.
    writer_done: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

/// State shared by the handle, the writer thread, blocking readers and watch streams.
struct Shared {
    path: PathBuf,
    /// `None` once closed. Readers hold the read lock for the length of a read transaction, so
    /// taking the write lock to close waits for them and the file is really closed afterwards.
    db: RwLock<Option<Database>>,
    /// The revision of the latest durable commit.
    revision: AtomicU64,
    ring: Mutex<Ring>,
    /// Carries the latest revision pushed to the ring; watchers wait on it.
    ring_changed: watch::Sender<Revision>,
    stats: Mutex<EmbeddedStats>,
}

/// One txn waiting for the writer.
struct Request {
    ops: Vec<Op>,
    reply: oneshot::Sender<Result<Revision, StoreError>>,
}

impl Request {
    /// The bytes the txn adds to a batch, for the batch bound.
    fn size(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, .. } => key.len() + value.len(),
                Op::Delete { key, .. } => key.len(),
            })
            .sum()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`, in the file [`DATA_FILE`].
    ///
    /// Refuses a file that another process has open ([`StoreError::InUse`]), one that is not a
    /// fedjob store ([`StoreError::Corrupt`]) and one written in an unknown format
    /// ([`StoreError::UnsupportedFormat`]). After a crash redb repairs the file here.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::backend("creating the data directory", e))?;
        let path = dir.join(DATA_FILE);
        let db = guard_open(&path, || {
            redb::Builder::new()
                .set_cache_size(options.cache_bytes)
                .create(&path)
        })?;
        Self::start(path, db, options)
    }

    /// Checks or initialises the file's metadata and starts the writer.
    fn start(path: PathBuf, db: Database, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let (revision, fresh) = prepare(&path, &db)?;
        // A new store has no history before its first write, so a watch from any revision is
        // complete; a reopened one has lost the ring, so only watches from now on are.
        let compacted = if fresh { 0 } else { revision };
        let (ring_changed, _) = watch::channel(revision);
        let shared = Arc::new(Shared {
            path,
            db: RwLock::new(Some(db)),
            revision: AtomicU64::new(revision),
            ring: Mutex::new(Ring::new(
                compacted,
                options.watch_history_events.max(1),
                options.watch_history_bytes,
            )),
            ring_changed,
            stats: Mutex::new(EmbeddedStats::default()),
        });
        let (queue, requests) = mpsc::channel(QUEUE_CAPACITY);
        let (done_tx, done_rx) = oneshot::channel();
        let writer = Writer {
            shared: shared.clone(),
            requests,
            revision,
            carry: None,
            max_batch_txns: options.max_batch_txns.max(1),
            max_batch_bytes: options.max_batch_bytes,
            observer: options.observer,
            done: Some(done_tx),
        };
        std::thread::Builder::new()
            .name("fedjob-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::backend("starting the store writer thread", e))?;
        tracing::info!(path = %shared.path.display(), revision, "opened embedded store");
        Ok(EmbeddedStore {
            shared,
            queue: Mutex::new(Some(queue)),
            writer_done: tokio::sync::Mutex::new(Some(done_rx)),
        })
    }

    /// The data file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The writer's counters so far.
    pub fn stats(&self) -> EmbeddedStats {
        *self.shared.stats.lock()
    }

    /// Runs `read` on a read transaction of committed data, off the async workers.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Path, &ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let db = shared.db.read();
            let db = db.as_ref().ok_or(StoreError::Closed)?;
            let rtx = db
                .begin_read()
                .map_err(|e| StoreError::backend("starting a read", e))?;
            read(&shared.path, &rtx)
        })
        .await
        .map_err(|e| StoreError::backend("running a read", e))?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.read(move |path, rtx| {
            let kv = rtx
                .open_table(KV)
                .map_err(|e| StoreError::backend("opening the key table", e))?;
            let found = kv
                .get(key.as_str())
                .map_err(|e| StoreError::backend("reading a key", e))?;
            found
                .map(|v| {
                    Stored::decode(path, &key, v.value()).map(|s| s.into_key_value(key.clone()))
                })
                .transpose()
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |path, rtx| {
            let meta = rtx
                .open_table(META)
                .map_err(|e| StoreError::backend("opening the meta table", e))?;
            let revision = read_revision(path, &meta)?;
            let kv = rtx
                .open_table(KV)
                .map_err(|e| StoreError::backend("opening the key table", e))?;
            let range = kv
                .range(prefix.as_str()..)
                .map_err(|e| StoreError::backend("listing keys", e))?;
            let mut items = Vec::new();
            for entry in range {
                let (k, v) = entry.map_err(|e| StoreError::backend("listing keys", e))?;
                let key = k.value();
                // Keys are in byte order, so the prefix's keys are one contiguous run.
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                items.push(Stored::decode(path, key, v.value())?.into_key_value(key.to_owned()));
            }
            Ok(Listing { items, revision })
        })
        .await
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        validate_txn(&ops)?;
        let queue = self.queue.lock().clone().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        queue
            .send(Request { ops, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| {
            StoreError::backend(
                "waiting for the store writer",
                std::io::Error::other("the writer stopped before answering"),
            )
        })?
    }

    fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> BoxStream<'static, Result<WatchEvent, StoreError>> {
        let watcher = Watcher {
            ring_changed: self.shared.ring_changed.subscribe(),
            shared: self.shared.clone(),
            prefix: prefix.to_owned(),
            cursor: after,
            buffered: VecDeque::new(),
            done: false,
        };
        futures::stream::unfold(watcher, Watcher::next).boxed()
    }

    fn revision(&self) -> Revision {
        self.shared.revision.load(Ordering::Acquire)
    }

    async fn close(&self) -> Result<(), StoreError> {
        let mut done = self.writer_done.lock().await;
        // Dropping our sender lets the writer drain what is queued and stop; txns still holding
        // a clone of it finish their send first, and are answered.
        self.queue.lock().take();
        if let Some(done) = done.take() {
            // An error means the writer thread died; its drop guard has closed the file anyway.
            let _ = done.await;
            tracing::info!(path = %self.shared.path.display(), "closed embedded store");
        }
        Ok(())
    }
}

/// Opens a redb database, turning every way a foreign or damaged file can fail into a clear
/// error. redb asserts on some malformed headers, so a panic here is a corrupt file too.
fn guard_open(
    path: &Path,
    open: impl FnOnce() -> Result<Database, DatabaseError>,
) -> Result<Database, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    match std::panic::catch_unwind(AssertUnwindSafe(open)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => Err(StoreError::InUse {
            path: path.to_owned(),
        }),
        // redb reports a wrong magic number as InvalidData.
        Ok(Err(DatabaseError::Storage(StorageError::Io(e))))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            Err(corrupt("it is not a redb database".into()))
        }
        Ok(Err(DatabaseError::Storage(StorageError::Corrupted(detail)))) => Err(corrupt(detail)),
        Ok(Err(e)) => Err(StoreError::backend("opening the data file", e)),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unreadable header");
            Err(corrupt(format!(
                "the database engine cannot read it ({detail})"
            )))
        }
    }
}

/// Initialises a new file or checks an existing one; returns its revision and whether it is new.
fn prepare(path: &Path, db: &Database) -> Result<(Revision, bool), StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let table_error = |e: TableError| match e {
        TableError::TableTypeMismatch { .. } | TableError::TableIsMultimap(_) => {
            corrupt("its tables are not a fedjob store's")
        }
        e => StoreError::backend("opening the tables", e),
    };
    let wtx = db
        .begin_write()
        .map_err(|e| StoreError::backend("checking the data file", e))?;
    let tables: Vec<String> = wtx
        .list_tables()
        .map_err(|e| StoreError::backend("checking the data file", e))?
        .map(|t| t.name().to_owned())
        .collect();
    if tables.is_empty() {
        {
            let mut meta = wtx.open_table(META).map_err(table_error)?;
            let mut put = |name, value| {
                meta.insert(name, value)
                    .map(drop)
                    .map_err(|e| StoreError::backend("initialising the data file", e))
            };
            put(META_FORMAT_VERSION, FORMAT_VERSION)?;
            // As in etcd, a new store is at revision 1 and its first write is revision 2.
            put(META_REVISION, 1)?;
            wtx.open_table(KV).map_err(table_error)?;
        }
        wtx.commit()
            .map_err(|e| StoreError::backend("initialising the data file", e))?;
        return Ok((1, true));
    }
    if !tables.iter().any(|t| t == META.name()) {
        return Err(corrupt(
            "it is a redb database of something else (no fedjob meta table)",
        ));
    }
    let revision = {
        let meta = wtx.open_table(META).map_err(table_error)?;
        let found = meta
            .get(META_FORMAT_VERSION)
            .map_err(|e| StoreError::backend("reading the format version", e))?
            .map(|v| v.value())
            .ok_or_else(|| corrupt("it records no format version"))?;
        if found != FORMAT_VERSION {
            return Err(StoreError::UnsupportedFormat {
                path: path.to_owned(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        let revision = read_revision(path, &meta)?;
        wtx.open_table(KV).map_err(table_error)?;
        revision
    };
    wtx.abort()
        .map_err(|e| StoreError::backend("checking the data file", e))?;
    Ok((revision, false))
}

/// The revision recorded in the meta table.
fn read_revision(
    path: &Path,
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<Revision, StoreError> {
    meta.get(META_REVISION)
        .map_err(|e| StoreError::backend("reading the revision", e))?
        .map(|v| v.value())
        .ok_or_else(|| StoreError::Corrupt {
            path: path.to_owned(),
            detail: "it records no revision".into(),
        })
}

/// Maps a backend error to [`StoreError::Backend`] with what the store was doing.
fn fail<E>(context: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| StoreError::backend(context, e)
}

/// A key's record as stored in the `kv` table.
struct Stored {
    create_revision: Revision,
    mod_revision: Revision,
    value: Bytes,
}

impl Stored {
    /// Revisions take the first 16 bytes; the value the rest.
    const HEADER: usize = 16;

    fn encode(create_revision: Revision, mod_revision: Revision, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER + value.len());
        out.extend_from_slice(&create_revision.to_le_bytes());
        out.extend_from_slice(&mod_revision.to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    fn decode(path: &Path, key: &str, raw: &[u8]) -> Result<Self, StoreError> {
        if raw.len() < Self::HEADER {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                detail: format!("the record of key {key:?} is truncated"),
            });
        }
        let word = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&raw[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        Ok(Stored {
            create_revision: word(0),
            mod_revision: word(8),
            value: Bytes::copy_from_slice(&raw[Self::HEADER..]),
        })
    }

    fn into_key_value(self, key: String) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

#[cfg(test)]
mod tests;
