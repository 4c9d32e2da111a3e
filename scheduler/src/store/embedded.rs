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
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use parking_lot::{Mutex, RwLock};
use redb::{
    Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase, ReadableTable,
    StorageError, Table, TableDefinition, TableError, TableHandle,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    CommitObserver, KeyValue, Listing, Op, Precondition, Revision, Store, StoreError, WatchEvent,
    validate_txn,
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

/// The single writer: takes waiting txns in batches and commits each batch with one fsync.
struct Writer {
    shared: Arc<Shared>,
    requests: mpsc::Receiver<Request>,
    /// The revision of the latest durable commit.
    revision: Revision,
    /// A txn taken from the queue that did not fit in the previous batch.
    carry: Option<Request>,
    max_batch_txns: usize,
    max_batch_bytes: usize,
    observer: Option<Arc<dyn CommitObserver>>,
    /// Signalled (by drop) once the file is closed.
    done: Option<oneshot::Sender<()>>,
}

/// The outcome of applying a batch inside one write transaction, before the commit.
struct Applied {
    answers: Vec<Result<Revision, StoreError>>,
    events: Vec<WatchEvent>,
    revision: Revision,
    conflicts: u64,
}

impl Writer {
    fn run(mut self) {
        let shared = self.shared.clone();
        loop {
            let first = match self.carry.take() {
                Some(request) => request,
                // All senders gone: the store is closing and the queue is drained.
                None => match self.requests.blocking_recv() {
                    Some(request) => request,
                    None => break,
                },
            };
            // Take the database before draining the queue, so txns that arrive while a reader
            // or the previous commit holds it up still join this batch.
            let db = shared.db.read();
            let Some(db) = db.as_ref() else { break };
            let mut batch = vec![first];
            let mut bytes = batch[0].size();
            while batch.len() < self.max_batch_txns {
                let Ok(next) = self.requests.try_recv() else {
                    break;
                };
                let size = next.size();
                if bytes + size > self.max_batch_bytes {
                    self.carry = Some(next);
                    break;
                }
                bytes += size;
                batch.push(next);
            }
            self.commit(db, batch);
        }
    }

    /// Applies and commits one batch, then publishes its events and answers its callers.
    fn commit(&mut self, db: &Database, batch: Vec<Request>) {
        let started = Instant::now();
        let result = self.apply(db, &batch);
        let latency = started.elapsed();
        let mut stats = self.shared.stats.lock();
        stats.txns += batch.len() as u64;
        match result {
            Ok(applied) => {
                stats.conflicts += applied.conflicts;
                let committed = applied.revision != self.revision;
                if committed {
                    stats.commits += 1;
                }
                drop(stats);
                if committed {
                    self.revision = applied.revision;
                    // Ring first, then the revision, then the answers: a caller that has its
                    // answer can watch from it, and `revision()` never runs ahead of the ring.
                    self.shared.ring.lock().push(applied.events);
                    self.shared
                        .revision
                        .store(applied.revision, Ordering::Release);
                    self.shared.ring_changed.send_replace(applied.revision);
                    if let Some(observer) = &self.observer {
                        observer.commit(latency, batch.len());
                    }
                }
                for (request, answer) in batch.into_iter().zip(applied.answers) {
                    // The caller may have given up waiting; its write stands regardless.
                    let _ = request.reply.send(answer);
                }
            }
            Err(error) => {
                stats.failed_batches += 1;
                drop(stats);
                tracing::error!(%error, txns = batch.len(), "store commit failed; no txn of the batch was applied");
                for request in batch {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Applies a batch in one redb write transaction and commits it durably, unless no txn
    /// changed anything. Each txn is checked against the state left by the ones before it.
    fn apply(&self, db: &Database, batch: &[Request]) -> Result<Applied, StoreError> {
        let path = &self.shared.path;
        let mut wtx = db.begin_write().map_err(fail("starting a commit"))?;
        wtx.set_durability(Durability::Immediate)
            .map_err(fail("starting a commit"))?;
        let mut applied = Applied {
            answers: Vec::with_capacity(batch.len()),
            events: Vec::new(),
            revision: self.revision,
            conflicts: 0,
        };
        {
            let mut kv = wtx.open_table(KV).map_err(fail("opening the key table"))?;
            for request in batch {
                let next = applied.revision + 1;
                match apply_txn(path, &mut kv, &request.ops, next, &mut applied.events)? {
                    TxnOutcome::Changed => {
                        applied.revision = next;
                        applied.answers.push(Ok(next));
                    }
                    TxnOutcome::Unchanged => applied.answers.push(Ok(applied.revision)),
                    TxnOutcome::Conflict(key) => {
                        applied.conflicts += 1;
                        applied.answers.push(Err(StoreError::Conflict { key }));
                    }
                }
            }
        }
        if applied.revision == self.revision {
            // Nothing to make durable: conflicts and no-ops only.
            wtx.abort().map_err(fail("discarding an empty commit"))?;
            return Ok(applied);
        }
        {
            let mut meta = wtx
                .open_table(META)
                .map_err(fail("opening the meta table"))?;
            meta.insert(META_REVISION, applied.revision)
                .map_err(fail("recording the revision"))?;
        }
        wtx.commit().map_err(fail("committing"))?;
        Ok(applied)
    }
}

impl Drop for Writer {
    /// Closes the file and ends the watches, also when the writer panicked, so that nothing
    /// waits forever on a store that can no longer write.
    fn drop(&mut self) {
        *self.shared.db.write() = None;
        self.shared.ring.lock().closed = true;
        self.shared.ring_changed.send_modify(|_| {});
        drop(self.done.take());
    }
}

/// What one txn of a batch came to.
enum TxnOutcome {
    /// Written at the revision it was offered.
    Changed,
    /// Applied, but it changed nothing (deletes of absent keys), so it takes no revision.
    Unchanged,
    /// This key's precondition failed; nothing of the txn was written.
    Conflict(String),
}

/// Checks every precondition of `ops` against the current state (all before any op applies,
/// as etcd compares before it writes), then applies them at `revision`.
fn apply_txn(
    path: &Path,
    kv: &mut Table<&str, &[u8]>,
    ops: &[Op],
    revision: Revision,
    events: &mut Vec<WatchEvent>,
) -> Result<TxnOutcome, StoreError> {
    let mut current = Vec::with_capacity(ops.len());
    for op in ops {
        let key = op.key();
        let existing = kv
            .get(key)
            .map_err(|e| StoreError::backend("reading a key", e))?
            .map(|raw| Stored::decode(path, key, raw.value()))
            .transpose()?;
        let holds = match op.precondition() {
            Precondition::Any => true,
            Precondition::Absent => existing.is_none(),
            Precondition::ModRevision(expected) => existing
                .as_ref()
                .is_some_and(|stored| stored.mod_revision == expected),
        };
        if !holds {
            return Ok(TxnOutcome::Conflict(key.to_owned()));
        }
        current.push(existing);
    }
    let mut changed = false;
    for (op, existing) in ops.iter().zip(current) {
        match op {
            Op::Put { key, value, .. } => {
                let create_revision = existing.map_or(revision, |stored| stored.create_revision);
                kv.insert(
                    key.as_str(),
                    Stored::encode(create_revision, revision, value).as_slice(),
                )
                .map_err(|e| StoreError::backend("writing a key", e))?;
                events.push(WatchEvent::Put(KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision,
                    mod_revision: revision,
                }));
                changed = true;
            }
            Op::Delete { key, .. } => {
                let Some(prev) = existing else { continue };
                kv.remove(key.as_str())
                    .map_err(|e| StoreError::backend("deleting a key", e))?;
                events.push(WatchEvent::Delete {
                    key: key.clone(),
                    mod_revision: revision,
                    prev: Some(prev.into_key_value(key.clone())),
                });
                changed = true;
            }
        }
    }
    Ok(if changed {
        TxnOutcome::Changed
    } else {
        TxnOutcome::Unchanged
    })
}

/// The recent changes, oldest first, for watches to read from.
struct Ring {
    events: VecDeque<WatchEvent>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
    /// Every change after this revision is still in the ring.
    compacted: Revision,
    /// Set when the store closed: no change will follow the ones in the ring.
    closed: bool,
}

/// What a watcher found in the ring.
enum Collected {
    /// Changes up to this revision have been looked at (matching ones copied out).
    Upto(Revision),
    /// Nothing after the cursor, and nothing will come.
    Closed,
}

impl Ring {
    fn new(compacted: Revision, max_events: usize, max_bytes: usize) -> Self {
        Ring {
            events: VecDeque::new(),
            bytes: 0,
            max_events,
            max_bytes,
            compacted,
            closed: false,
        }
    }

    fn size(event: &WatchEvent) -> usize {
        EVENT_OVERHEAD
            + match event {
                WatchEvent::Put(kv) => kv.key.len() + kv.value.len(),
                WatchEvent::Delete { key, prev, .. } => {
                    key.len() + prev.as_ref().map_or(0, |p| p.value.len())
                }
            }
    }

    /// Appends one commit's changes, dropping the oldest beyond the bounds.
    fn push(&mut self, events: Vec<WatchEvent>) {
        for event in events {
            self.bytes += Self::size(&event);
            self.events.push_back(event);
        }
        while self.events.len() > self.max_events || self.bytes > self.max_bytes {
            let Some(oldest) = self.events.pop_front() else {
                break;
            };
            self.bytes -= Self::size(&oldest);
            self.compacted = oldest.revision();
        }
    }

    /// Copies the changes under `prefix` after `cursor` into `out`, a bounded chunk at a time
    /// and never stopping inside one revision (the cursor could not express that).
    fn collect(
        &self,
        prefix: &str,
        cursor: Revision,
        out: &mut VecDeque<WatchEvent>,
    ) -> Result<Collected, StoreError> {
        if cursor < self.compacted {
            return Err(StoreError::Compacted {
                requested: cursor,
                oldest: self.compacted,
            });
        }
        let start = self.events.partition_point(|e| e.revision() <= cursor);
        if start == self.events.len() && self.closed {
            return Ok(Collected::Closed);
        }
        let mut upto = cursor;
        for (scanned, event) in self.events.range(start..).enumerate() {
            if scanned >= WATCH_CHUNK && event.revision() != upto {
                break;
            }
            upto = event.revision();
            if event.key().starts_with(prefix) {
                out.push_back(event.clone());
            }
        }
        Ok(Collected::Upto(upto))
    }
}

/// The state of one watch stream: a cursor into the ring.
struct Watcher {
    shared: Arc<Shared>,
    ring_changed: watch::Receiver<Revision>,
    prefix: String,
    /// Every change up to this revision has been delivered or filtered out.
    cursor: Revision,
    buffered: VecDeque<WatchEvent>,
    /// An error ended the stream.
    done: bool,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<WatchEvent, StoreError>, Self)> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            let collected =
                self.shared
                    .ring
                    .lock()
                    .collect(&self.prefix, self.cursor, &mut self.buffered);
            match collected {
                Ok(Collected::Upto(upto)) if upto > self.cursor => {
                    self.cursor = upto;
                    continue;
                }
                Ok(Collected::Upto(_)) => {}
                Ok(Collected::Closed) => {
                    self.done = true;
                    return Some((Err(StoreError::Closed), self));
                }
                Err(error) => {
                    self.done = true;
                    return Some((Err(error), self));
                }
            }
            // The sender lives in `shared`, which we hold, so this cannot fail; every push and
            // the close notify it after changing the ring.
            let _ = self.ring_changed.changed().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use futures::poll;
    use redb::StorageBackend;
    use redb::backends::FileBackend;

    use super::*;
    use crate::store::{conformance, delete, put};

    fn open(dir: &Path) -> EmbeddedStore {
        EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open the store")
    }

    /// A store whose watch history holds only a few events, so tests can outrun it.
    fn open_small_ring(dir: &Path) -> EmbeddedStore {
        let options = EmbeddedOptions {
            watch_history_events: 16,
            ..EmbeddedOptions::default()
        };
        EmbeddedStore::open(dir, options).expect("open the store")
    }

    /// Pushes at least the ring's capacity of changes in one txn, so that everything before
    /// it is gone from the watch history.
    async fn overrun_ring(store: &EmbeddedStore, capacity: usize) {
        let ops = (0..capacity + 4)
            .map(|i| Op::put(format!("~filler/{i}"), Bytes::new(), Precondition::Any))
            .collect();
        store.txn(ops).await.unwrap();
    }

    macro_rules! conformance_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let store = open(dir.path());
                conformance::$name(&store, "suite/").await;
                store.close().await.unwrap();
            }
        )*};
    }

    conformance_tests!(
        get_put_roundtrip,
        list_by_prefix_in_key_order,
        preconditions_are_enforced,
        multi_op_txn_is_atomic,
        delete_semantics,
        invalid_txns_are_refused,
        concurrent_txns_get_distinct_revisions,
        concurrent_cas_has_one_winner,
        watch_delivers_changes_in_order,
        watch_replays_from_past_revision,
        list_then_watch_under_concurrent_writes,
        closed_store_refuses_calls,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_after_compaction_says_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_small_ring(dir.path());
        conformance::watch_after_compaction_says_compacted(&store, "suite/", |_| {
            overrun_ring(&store, 16)
        })
        .await;
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whole_suite_runs_on_one_store() {
        // The way the etcd backend will run it: everything on one store, prefixes apart.
        let dir = tempfile::tempdir().unwrap();
        // A ring big enough for the other functions, small enough for `compact` to outrun.
        let options = EmbeddedOptions {
            watch_history_events: 4096,
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open(dir.path(), options).unwrap();
        conformance::run_all(&store, "all/", |_| overrun_ring(&store, 4096)).await;
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn new_store_starts_at_revision_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        assert_eq!(store.revision(), 1);
        assert_eq!(store.list("").await.unwrap().revision, 1);
        assert_eq!(put(&store, "k", "v", Precondition::Any).await.unwrap(), 2);
        // Nothing happened before revision 1, so a watch from 0 on a new store is complete.
        let mut events = store.watch("", 0);
        assert_eq!(conformance::next_event(&mut events).await.revision(), 2);
        store.close().await.unwrap();
        assert_eq!(dir.path().join(DATA_FILE), store.path());
    }

    #[tokio::test]
    async fn reopen_keeps_data_and_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        put(&store, "jobs/a", "A", Precondition::Absent)
            .await
            .unwrap();
        let rb = put(&store, "jobs/b", "B", Precondition::Absent)
            .await
            .unwrap();
        store
            .txn(vec![
                Op::put("jobs/b", "B2", Precondition::ModRevision(rb)),
                Op::put("clusters/c1", "C1", Precondition::Absent),
            ])
            .await
            .unwrap();
        delete(&store, "jobs/a", Precondition::Any).await.unwrap();
        let revision = store.revision();
        let listing = store.list("").await.unwrap();
        store.close().await.unwrap();

        let store = open(dir.path());
        assert_eq!(
            store.revision(),
            revision,
            "the revision survives a restart"
        );
        assert_eq!(
            store.list("").await.unwrap(),
            listing,
            "the data survives a restart"
        );
        // History before the restart is gone: a watch from it must say so, not skip.
        let mut old = store.watch("", revision - 1);
        assert!(matches!(
            conformance::next_item(&mut old).await,
            Some(Err(StoreError::Compacted { requested, oldest })) if requested == revision - 1 && oldest == revision
        ));
        let mut events = store.watch("", revision);
        let next = put(&store, "jobs/d", "D", Precondition::Any).await.unwrap();
        assert_eq!(next, revision + 1, "revisions continue after a restart");
        assert_eq!(conformance::next_event(&mut events).await.revision(), next);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn newer_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        put(&store, "k", "v", Precondition::Any).await.unwrap();
        store.close().await.unwrap();
        // What a future release would leave behind.
        let path = dir.path().join(DATA_FILE);
        {
            let db = Database::create(&path).unwrap();
            let wtx = db.begin_write().unwrap();
            wtx.open_table(META)
                .unwrap()
                .insert(META_FORMAT_VERSION, FORMAT_VERSION + 1)
                .unwrap();
            wtx.commit().unwrap();
        }
        let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
            .err()
            .expect("a newer format must be refused");
        match &error {
            StoreError::UnsupportedFormat {
                path: p,
                found,
                supported,
            } => {
                assert_eq!(
                    (p, *found, *supported),
                    (&path, FORMAT_VERSION + 1, FORMAT_VERSION)
                );
            }
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains("format version 2") && message.contains("only version 1"),
            "{message}"
        );
        // The refusal wrote nothing: the file still has the newer version.
        let db = Database::create(&path).unwrap();
        let rtx = db.begin_read().unwrap();
        let meta = rtx.open_table(META).unwrap();
        assert_eq!(
            meta.get(META_FORMAT_VERSION).unwrap().unwrap().value(),
            FORMAT_VERSION + 1
        );
    }

    #[test]
    fn file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATA_FILE);
        std::fs::write(&path, "apiVersion: batch/v1\nkind: Job\n".repeat(200)).unwrap();
        let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).err();
        assert!(
            matches!(&error, Some(StoreError::Corrupt { detail, .. }) if detail.contains("not a redb database")),
            "{error:?}"
        );
        // A few bytes are not a database either (and not an empty file to initialise).
        std::fs::write(&path, "red").unwrap();
        let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).err();
        assert!(
            matches!(error, Some(StoreError::Corrupt { .. })),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn truncated_data_file_is_refused_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for i in 0..50 {
            put(&store, format!("k{i}"), vec![7u8; 4096], Precondition::Any)
                .await
                .unwrap();
        }
        store.close().await.unwrap();
        let path = dir.path().join(DATA_FILE);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(4096).unwrap();
        drop(file);
        let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).err();
        assert!(
            matches!(error, Some(StoreError::Corrupt { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn redb_database_of_something_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATA_FILE);
        {
            let db = Database::create(&path).unwrap();
            let wtx = db.begin_write().unwrap();
            let other: TableDefinition<u64, u64> = TableDefinition::new("other");
            wtx.open_table(other).unwrap().insert(1, 2).unwrap();
            wtx.commit().unwrap();
        }
        let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).err();
        assert!(
            matches!(error, Some(StoreError::Corrupt { .. })),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn second_open_is_refused_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).err();
        assert!(matches!(error, Some(StoreError::InUse { .. })), "{error:?}");
        store.close().await.unwrap();
        // Closing really released the file.
        open(dir.path()).close().await.unwrap();
    }

    /// Records what the writer reports, as the metrics module would.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Duration, usize)>>);

    impl CommitObserver for Recorder {
        fn commit(&self, latency: Duration, txns: usize) {
            self.0.lock().push((latency, txns));
        }
    }

    #[tokio::test]
    #[expect(
        clippy::await_holding_lock,
        reason = "holding the writer back while txns queue is the point; the awaits under the lock are single polls"
    )]
    async fn batch_checks_each_txn_against_the_ones_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Arc::new(Recorder::default());
        let options = EmbeddedOptions {
            observer: Some(recorder.clone()),
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open(dir.path(), options).unwrap();
        let base = store.revision();
        let before = store.stats();

        // Hold the writer (it takes the database before draining the queue), queue four txns
        // in a known order, then let it go: they form one batch.
        let hold = store.shared.db.write();
        let mut t1 = store.txn(vec![Op::put("a", "1", Precondition::Absent)]);
        assert!(poll!(&mut t1).is_pending());
        let mut t2 = store.txn(vec![Op::put("a", "2", Precondition::Absent)]);
        assert!(poll!(&mut t2).is_pending());
        let mut t3 = store.txn(vec![
            Op::put("b", "3", Precondition::Absent),
            Op::delete("never", Precondition::Any),
        ]);
        assert!(poll!(&mut t3).is_pending());
        let mut t4 = store.txn(vec![Op::put("a", "4", Precondition::ModRevision(base + 1))]);
        assert!(poll!(&mut t4).is_pending());
        let mut t5 = store.txn(vec![Op::delete("never", Precondition::Any)]);
        assert!(poll!(&mut t5).is_pending());
        drop(hold);
        let (r1, r2, r3, r4, r5) = tokio::join!(t1, t2, t3, t4, t5);

        assert_eq!(r1.unwrap(), base + 1);
        assert!(
            matches!(&r2, Err(StoreError::Conflict { key }) if key == "a"),
            "t2 must see t1's write: {r2:?}"
        );
        assert_eq!(r3.unwrap(), base + 2, "a conflict does not take a revision");
        assert_eq!(r4.unwrap(), base + 3, "t4 must see t1's revision");
        assert_eq!(
            r5.unwrap(),
            base + 3,
            "a no-op answers the current revision"
        );
        let stats = store.stats();
        assert_eq!(
            stats.commits - before.commits,
            1,
            "one fsync for the whole batch"
        );
        assert_eq!(stats.txns - before.txns, 5);
        assert_eq!(stats.conflicts - before.conflicts, 1);
        let observed = recorder.0.lock().clone();
        assert_eq!(observed.last().map(|(_, txns)| *txns), Some(5));
        let a = store.get("a").await.unwrap().unwrap();
        assert_eq!(
            (a.value, a.create_revision, a.mod_revision),
            (Bytes::from("4"), base + 1, base + 3)
        );
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_txns_are_group_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let writes = (0..200).map(|i| put(&store, format!("k{i}"), "v", Precondition::Any));
        for result in futures::future::join_all(writes).await {
            result.unwrap();
        }
        let stats = store.stats();
        assert_eq!(stats.txns, 200);
        assert!(
            stats.commits < 200,
            "concurrent txns must share commits: {stats:?}"
        );
        store.close().await.unwrap();
    }

    #[tokio::test]
    #[expect(
        clippy::await_holding_lock,
        reason = "holding the writer back while txns queue is the point; the awaits under the lock are single polls"
    )]
    async fn batch_is_bounded_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            max_batch_bytes: 10_000,
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open(dir.path(), options).unwrap();
        let hold = store.shared.db.write();
        let mut pending = Vec::new();
        for i in 0..6 {
            let mut txn = Box::pin(put(
                &store,
                format!("k{i}"),
                vec![0u8; 4000],
                Precondition::Any,
            ));
            assert!(poll!(&mut txn).is_pending());
            pending.push(txn);
        }
        drop(hold);
        for result in futures::future::join_all(pending).await {
            result.unwrap();
        }
        // 4000-byte txns, 10,000 bytes per batch: two per commit.
        assert_eq!(store.stats().commits, 3);
        store.close().await.unwrap();
    }

    /// A file backend whose fsync can be made to fail.
    #[derive(Debug)]
    struct FlakySync {
        file: FileBackend,
        fail: Arc<AtomicBool>,
    }

    impl StorageBackend for FlakySync {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.file.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("injected fsync failure"));
            }
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.file.write(offset, data)
        }
        fn close(&self) -> Result<(), std::io::Error> {
            self.file.close()
        }
    }

    #[tokio::test]
    #[expect(
        clippy::await_holding_lock,
        reason = "holding the writer back while txns queue is the point; the awaits under the lock are single polls"
    )]
    async fn failed_commit_fails_the_whole_batch_and_shows_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATA_FILE);
        let fail = Arc::new(AtomicBool::new(false));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        let backend = FlakySync {
            file: FileBackend::new(file).unwrap(),
            fail: fail.clone(),
        };
        let db = guard_open(&path, || redb::Builder::new().create_with_backend(backend)).unwrap();
        let store = EmbeddedStore::start(path, db, EmbeddedOptions::default()).unwrap();
        let r1 = put(&store, "a", "1", Precondition::Any).await.unwrap();
        let mut events = store.watch("", r1);

        let hold = store.shared.db.write();
        let mut t1 = Box::pin(put(&store, "b", "2", Precondition::Absent));
        assert!(poll!(&mut t1).is_pending());
        let mut t2 = Box::pin(put(&store, "a", "3", Precondition::ModRevision(r1)));
        assert!(poll!(&mut t2).is_pending());
        fail.store(true, Ordering::SeqCst);
        drop(hold);
        let (r2, r3) = tokio::join!(t1, t2);
        assert!(matches!(r2, Err(StoreError::Backend { .. })), "{r2:?}");
        assert!(matches!(r3, Err(StoreError::Backend { .. })), "{r3:?}");

        assert_eq!(store.revision(), r1, "a failed commit takes no revision");
        assert_eq!(
            store.get("b").await.unwrap(),
            None,
            "a failed commit shows nothing"
        );
        assert_eq!(store.get("a").await.unwrap().unwrap().mod_revision, r1);
        assert_eq!(store.stats().failed_batches, 1);
        assert!(
            futures::FutureExt::now_or_never(events.next()).is_none(),
            "a failed commit must not reach watchers"
        );
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn watcher_that_falls_behind_gets_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_small_ring(dir.path());
        let mut events = store.watch("", store.revision());
        let r1 = put(&store, "k", "0", Precondition::Any).await.unwrap();
        assert_eq!(conformance::next_event(&mut events).await.revision(), r1);
        // Twenty single-key commits outrun a ring of sixteen while this watcher sleeps.
        for i in 1..=20 {
            put(&store, "k", format!("{i}"), Precondition::Any)
                .await
                .unwrap();
        }
        match conformance::next_item(&mut events).await {
            Some(Err(StoreError::Compacted { requested, oldest })) => {
                assert_eq!(requested, r1);
                assert_eq!(oldest, r1 + 4, "sixteen of twenty changes remain");
            }
            other => panic!("expected Compacted, got {other:?}"),
        }
        assert!(conformance::next_item(&mut events).await.is_none());
        // The ring's bound is what is kept.
        assert_eq!(store.shared.ring.lock().events.len(), 16);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn watch_history_is_bounded_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            watch_history_bytes: 100_000,
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open(dir.path(), options).unwrap();
        for i in 0..40 {
            put(
                &store,
                format!("k{i}"),
                vec![1u8; 10_000],
                Precondition::Any,
            )
            .await
            .unwrap();
        }
        let (bytes, events) = {
            let ring = store.shared.ring.lock();
            (ring.bytes, ring.events.len())
        };
        assert!(
            bytes <= 100_000 && events < 10,
            "{events} events, {bytes} bytes"
        );
        store.close().await.unwrap();
    }

    /// How a generated op's precondition relates to the model's state when it is generated.
    #[derive(Debug, Clone, Copy)]
    enum Pre {
        Any,
        Absent,
        Current,
        Stale,
    }

    fn op_spec() -> impl proptest::strategy::Strategy<Value = (u8, bool, Pre)> {
        use proptest::prelude::*;
        let pre = prop_oneof![
            Just(Pre::Any),
            Just(Pre::Absent),
            Just(Pre::Current),
            Just(Pre::Stale)
        ];
        (0u8..4, proptest::bool::weighted(0.3), pre)
    }

    /// The reference the store is checked against: a map, a revision, and the event log,
    /// applying txns one at a time exactly as the interface describes.
    #[derive(Default)]
    struct Model {
        keys: BTreeMap<String, KeyValue>,
        revision: Revision,
        events: Vec<WatchEvent>,
    }

    impl Model {
        fn precondition(&self, key: &str, pre: Pre) -> Precondition {
            let current = self.keys.get(key).map(|kv| kv.mod_revision);
            match pre {
                Pre::Any => Precondition::Any,
                Pre::Absent => Precondition::Absent,
                Pre::Current => Precondition::ModRevision(current.unwrap_or(self.revision)),
                Pre::Stale => Precondition::ModRevision(current.map_or(0, |r| r - 1)),
            }
        }

        fn apply(&mut self, ops: &[Op]) -> Result<Revision, StoreError> {
            validate_txn(ops)?;
            for op in ops {
                let existing = self.keys.get(op.key());
                let holds = match op.precondition() {
                    Precondition::Any => true,
                    Precondition::Absent => existing.is_none(),
                    Precondition::ModRevision(r) => existing.is_some_and(|kv| kv.mod_revision == r),
                };
                if !holds {
                    return Err(StoreError::Conflict {
                        key: op.key().to_owned(),
                    });
                }
            }
            let next = self.revision + 1;
            let before = self.events.len();
            for op in ops {
                match op {
                    Op::Put { key, value, .. } => {
                        let create_revision =
                            self.keys.get(key).map_or(next, |kv| kv.create_revision);
                        let kv = KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision,
                            mod_revision: next,
                        };
                        self.keys.insert(key.clone(), kv.clone());
                        self.events.push(WatchEvent::Put(kv));
                    }
                    Op::Delete { key, .. } => {
                        if let Some(prev) = self.keys.remove(key) {
                            self.events.push(WatchEvent::Delete {
                                key: key.clone(),
                                mod_revision: next,
                                prev: Some(prev),
                            });
                        }
                    }
                }
            }
            if self.events.len() > before {
                self.revision = next;
            }
            Ok(self.revision)
        }
    }

    /// A comparable form of an answer (errors are not `PartialEq`).
    fn outcome(answer: &Result<Revision, StoreError>) -> String {
        match answer {
            Ok(revision) => format!("ok {revision}"),
            Err(StoreError::Conflict { key }) => format!("conflict {key}"),
            Err(StoreError::InvalidTxn { key, .. }) => format!("invalid {key}"),
            Err(other) => format!("unexpected {other}"),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Random txns, queued all at once so that they group-commit, answer exactly as the
        /// model answers them one by one; the final state and the watch log match too.
        #[test]
        fn queued_txns_behave_like_the_sequential_model(
            txns in proptest::collection::vec(proptest::collection::vec(op_spec(), 1..4), 1..30)
        ) {
            let mut model = Model { revision: 1, ..Model::default() };
            let mut planned = Vec::new();
            let mut expected = Vec::new();
            for (n, specs) in txns.iter().enumerate() {
                let ops: Vec<Op> = specs
                    .iter()
                    .map(|&(key, delete, pre)| {
                        let key = format!("k{key}");
                        let precondition = model.precondition(&key, pre);
                        if delete {
                            Op::delete(key, precondition)
                        } else {
                            Op::put(key, format!("v{n}"), precondition)
                        }
                    })
                    .collect();
                expected.push(outcome(&model.apply(&ops)));
                planned.push(ops);
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = open(dir.path());
                let mut events = store.watch("", store.revision());
                // Queue every txn in order before awaiting any answer.
                let mut pending = Vec::new();
                for ops in planned {
                    let mut txn = store.txn(ops);
                    // Invalid txns are answered at once; the rest wait in the queue.
                    match poll!(&mut txn) {
                        std::task::Poll::Ready(answer) => {
                            pending.push(futures::FutureExt::boxed(futures::future::ready(answer)));
                        }
                        std::task::Poll::Pending => pending.push(txn),
                    }
                }
                let answers: Vec<String> =
                    futures::future::join_all(pending).await.iter().map(outcome).collect();
                assert_eq!(answers, expected);
                assert_eq!(store.revision(), model.revision);
                let listing = store.list("").await.unwrap();
                let keys: Vec<KeyValue> = model.keys.values().cloned().collect();
                assert_eq!(listing.items, keys);
                for want in &model.events {
                    assert_eq!(&conformance::next_event(&mut events).await, want);
                }
                store.close().await.unwrap();
            });
        }
    }

    /// Where the crash test's child process keeps its store.
    const CRASH_CHILD_DIR: &str = "FEDJOB_STORE_CRASH_CHILD_DIR";

    /// Not a test of its own: the child process of `kill_9_loses_nothing_acknowledged`, which
    /// runs this test binary again with only this function selected and the variable set.
    #[test]
    #[ignore = "child process of kill_9_loses_nothing_acknowledged"]
    fn crash_child() {
        let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) else {
            return;
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let store = Arc::new(open(Path::new(&dir)));
            let writers = (0..8).map(|writer| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("crash/{writer}/{i}");
                        let revision = put(&*store, &key, key.clone(), Precondition::Absent)
                            .await
                            .unwrap();
                        // Printed only once acknowledged; the parent checks exactly these.
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {key} {revision}").unwrap();
                        out.flush().unwrap();
                    }
                })
            });
            futures::future::join_all(writers).await;
        });
    }

    #[test]
    fn kill_9_loses_nothing_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "store::embedded::tests::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            // The child's panics, if any, show in this test's output.
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Read on a thread so that a child that hangs fails the test instead of hanging it.
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut acknowledged = Vec::new();
        let mut killed = false;
        loop {
            let line = match lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => line,
                // The child's stdout closed: it is gone.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    child.kill().unwrap();
                    panic!("the child acknowledged nothing for 60 s");
                }
            };
            let Some(ack) = line.strip_prefix("ACK ") else {
                continue;
            };
            let (key, revision) = ack.split_once(' ').unwrap();
            acknowledged.push((key.to_owned(), revision.parse::<Revision>().unwrap()));
            if acknowledged.len() == 400 && !killed {
                // SIGKILL, in the middle of the writers' stream of commits.
                child.kill().unwrap();
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(killed, "the child stopped by itself: {status:?}");
        assert!(acknowledged.len() >= 400);

        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = open(dir.path());
            for (key, revision) in &acknowledged {
                let kv = store.get(key).await.unwrap();
                let kv = kv.unwrap_or_else(|| panic!("acknowledged {key} is lost"));
                assert_eq!(
                    (kv.value.as_ref(), kv.mod_revision),
                    (key.as_bytes(), *revision)
                );
            }
            let newest = acknowledged.iter().map(|(_, r)| *r).max().unwrap();
            assert!(store.revision() >= newest);
            // The repaired file takes new writes after the last revision.
            let next = put(&store, "after-crash", "v", Precondition::Absent)
                .await
                .unwrap();
            assert!(next > newest);
            store.close().await.unwrap();
        });
    }
}
