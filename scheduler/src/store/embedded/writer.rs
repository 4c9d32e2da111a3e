//! The single writer thread: group-commits whatever txns are waiting, checking each txn's
//! preconditions inside the redb write transaction, then appends the changes to the watch ring.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::{mpsc, oneshot};

use super::{KV, META, META_REVISION, Request, Shared, Stored, fail};
use crate::store::{CommitObserver, KeyValue, Op, Precondition, Revision, StoreError, WatchEvent};

/// The single writer: takes waiting txns in batches and commits each batch with one fsync.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) requests: mpsc::Receiver<Request>,
    /// The revision of the latest durable commit.
    pub(super) revision: Revision,
    /// A txn taken from the queue that did not fit in the previous batch.
    pub(super) carry: Option<Request>,
    pub(super) max_batch_txns: usize,
    pub(super) max_batch_bytes: usize,
    pub(super) observer: Option<Arc<dyn CommitObserver>>,
    /// Signalled (by drop) once the file is closed.
    pub(super) done: Option<oneshot::Sender<()>>,
}

/// The outcome of applying a batch inside one write transaction, before the commit.
struct Applied {
    answers: Vec<Result<Revision, StoreError>>,
    events: Vec<WatchEvent>,
    revision: Revision,
    conflicts: u64,
}

impl Writer {
    pub(super) fn run(mut self) {
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
