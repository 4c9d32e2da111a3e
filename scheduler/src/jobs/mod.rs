//! The federated Jobs this replica holds, and the one way they change.
//!
//! [`Jobs`] owns a decoded copy of every Job in the store and is the only writer of them. Every
//! change goes through [`Jobs::mutate`]: compute the new record from the current one (pure code
//! from [`crate::model::edit`]), write it with a compare-and-swap on the record's revision, and
//! only then publish it to readers, agent sessions and watchers. Changes to one Job are
//! serialised in this process by a per-Job lock, so the compare-and-swap only fails when another
//! replica wrote first; the change is then recomputed from the fresh record.

mod inbox;
mod index;
mod reports;
mod turns;

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;
use tracing::debug;

use self::inbox::changed_assignments;
pub use self::inbox::{Changed, SessionInbox};
pub use self::index::JobIndex;
use self::reports::ReportQueue;
pub use self::turns::{Turn, WriteTurns};
use crate::error::Result;
use crate::fast_hash::FastMap;
use crate::metrics::Metrics;
use crate::model::edit::Next;
use crate::records::{self, JOBS_PREFIX, StoredJob};
use crate::store::{KeyValue, Revision, Store, StoreError};

/// A change of one Job, as watchers see it.
#[derive(Debug, Clone)]
pub struct JobChange {
    /// `namespace/name`.
    pub key: String,
    /// The Job after the change; `None` when it was deleted.
    pub job: Option<Arc<StoredJob>>,
    /// The Job before the change.
    pub previous: Option<Arc<StoredJob>>,
    /// The store revision of the change (of a deletion too, which leaves no record to carry
    /// it); a change that wrote nothing has the Job's current revision.
    pub revision: u64,
}

/// Changes buffered for watchers.
///
/// Every slot holds a Job before and after a change until it is overwritten: with a hundred
/// clusters a Job is ~100 KiB, so 4,096 slots kept ~400 MB alive. A watcher that falls further
/// behind is sent the Job's current state instead (see `watch_job`).
const CHANGE_BUFFER: usize = 256;

/// Changes buffered per watched Job; a watcher further behind is sent the Job's current state.
const WATCH_BUFFER: usize = 32;

/// A subscription to the changes of one Job ([`Jobs::watch`]).
pub struct JobWatch {
    jobs: Arc<Jobs>,
    key: String,
    /// The Job's changes.
    pub receiver: broadcast::Receiver<Arc<JobChange>>,
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        let mut watchers = self.jobs.watchers.lock();
        // This receiver still counts: it is the last one when the count is 1.
        if watchers
            .get(&self.key)
            .is_some_and(|w| w.receiver_count() <= 1)
        {
            watchers.remove(&self.key);
        }
    }
}

/// Every federated Job, their locks, their watchers and the reports waiting to be written.
pub struct Jobs {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Several replicas share the store: this replica's copy may lag another's write.
    shared: bool,
    index: RwLock<JobIndex>,
    locks: Mutex<FastMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Agent sessions by cluster: told which of their Jobs changed.
    inboxes: Mutex<FastMap<String, Arc<SessionInbox>>>,
    changes: broadcast::Sender<Arc<JobChange>>,
    /// Watchers of one Job, by key.
    watchers: Mutex<FastMap<String, broadcast::Sender<Arc<JobChange>>>>,
    reports: ReportQueue,
}

impl Jobs {
    /// Loads every Job from `store`; returns them with the revision the listing is complete up to.
    pub async fn load(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        shared: bool,
    ) -> Result<(Arc<Self>, Revision)> {
        let mut index = JobIndex::default();
        let jobs = store.list(JOBS_PREFIX).await?;
        let loaded_at = jobs.revision;
        for kv in jobs.items {
            let stored = records::decode_job(&kv)?;
            index.insert(
                kv.key.trim_start_matches(JOBS_PREFIX),
                Some(Arc::new(stored)),
            );
        }
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        let jobs = Arc::new(Self {
            store,
            metrics,
            shared,
            index: RwLock::new(index),
            locks: Mutex::default(),
            inboxes: Mutex::default(),
            changes,
            watchers: Mutex::default(),
            reports: ReportQueue::default(),
        });
        Ok((jobs, loaded_at))
    }

    // ------------------------------------------------------------------ reading

    /// One Job.
    pub fn get(&self, key: &str) -> Option<Arc<StoredJob>> {
        self.index.read().get(key).cloned()
    }

    /// One Job as the store has it now. With replicas sharing the store, this replica's copy
    /// may lag another's write by a watch round trip, so the store is read first: a Job just
    /// created through another replica is found, and a user's read follows their write.
    pub async fn read(self: &Arc<Self>, key: &str) -> Result<Option<Arc<StoredJob>>> {
        if self.shared {
            let record = self.store.get(&records::job_record_key(key)).await?;
            // Publishing the absence of a Job absent here too would announce a deletion.
            if record.is_some() || self.get(key).is_some() {
                self.refresh_from(key, record).await?;
            }
        }
        Ok(self.get(key))
    }

    /// The key of the Job with `uid`.
    pub fn key_by_uid(&self, uid: &str) -> Option<String> {
        self.index.read().key_by_uid(uid).cloned()
    }

    /// Jobs of `namespace` (every namespace when `None`), in key order.
    pub fn list(&self, namespace: Option<&str>) -> Vec<Arc<StoredJob>> {
        let mut jobs: Vec<_> = self
            .index
            .read()
            .values()
            .filter(|j| namespace.is_none_or(|ns| j.record.namespace() == ns))
            .cloned()
            .collect();
        jobs.sort_by(|a, b| {
            (a.record.namespace(), a.record.name()).cmp(&(b.record.namespace(), b.record.name()))
        });
        jobs
    }

    /// Runs `f` over the index.
    pub fn with_index<T>(&self, f: impl FnOnce(&JobIndex) -> T) -> T {
        f(&self.index.read())
    }

    /// Subscribes to every Job change.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JobChange>> {
        self.changes.subscribe()
    }

    /// Subscribes to the changes of the Job `key` alone: a watcher of one Job is not woken by
    /// every change of every other. The channel goes when its last receiver does.
    pub fn watch(self: &Arc<Self>, key: &str) -> JobWatch {
        let receiver = self
            .watchers
            .lock()
            .entry(key.to_owned())
            .or_insert_with(|| broadcast::channel(WATCH_BUFFER).0)
            .subscribe();
        JobWatch {
            jobs: self.clone(),
            key: key.to_owned(),
            receiver,
        }
    }

    /// Subscribes `cluster`'s agent session to changes of the Jobs in that cluster, replacing
    /// an older session's subscription.
    pub fn subscribe_cluster(&self, cluster: &str) -> Arc<SessionInbox> {
        let inbox = Arc::new(SessionInbox::default());
        self.inboxes
            .lock()
            .insert(cluster.to_owned(), inbox.clone());
        inbox
    }

    /// Ends `inbox`'s subscription; false when a newer session of the cluster replaced it.
    pub fn unsubscribe_cluster(&self, cluster: &str, inbox: &Arc<SessionInbox>) -> bool {
        let mut inboxes = self.inboxes.lock();
        let ours = inboxes.get(cluster).is_some_and(|i| Arc::ptr_eq(i, inbox));
        if ours {
            inboxes.remove(cluster);
        }
        ours
    }

    /// Tells watchers about a Job whose stored record did not change but whose view did (its
    /// cluster went NotReady, which is not stored).
    pub fn announce(&self, key: &str) {
        if let Some(job) = self.get(key) {
            let revision = job.mod_revision;
            self.notify_watchers(JobChange {
                key: key.to_owned(),
                job: Some(job),
                previous: None,
                revision,
            });
        }
    }

    // ------------------------------------------------------------------ writing

    /// The one way a Job changes; see the module documentation.
    pub async fn mutate(
        self: &Arc<Self>,
        key: &str,
        mut change: impl FnMut(Option<&StoredJob>) -> Result<Next>,
    ) -> Result<Option<Arc<StoredJob>>> {
        let lock = self.lock_for(key);
        let _guard = lock.lock().await;
        let mut attempts = 0;
        let result = loop {
            let mut current = self.get(key);
            if current.is_none() && attempts == 0 {
                // Absent here may be not yet seen here (written through another replica).
                current = self.read(key).await?;
            }
            let (op, record) = match change(current.as_deref())? {
                Next::Unchanged => break Ok(current),
                Next::Delete => match &current {
                    None => break Ok(None),
                    Some(c) => (records::delete_op(key, c), None),
                },
                Next::Put(record) => {
                    let mut record = *record;
                    // The planner grows the shards as it adds them: up to twice the room
                    // they need (≈ 60 bytes per shard held at 100 clusters) for as long as
                    // this version is the current one.
                    record.shards.shrink_to_fit();
                    (
                        records::write_op(key, current.as_deref(), &record),
                        Some(record),
                    )
                }
            };
            // The write and its publication run as their own task: if the caller goes away
            // (a client hangs up), a write the store commits is still published.
            let this = self.clone();
            let owned_key = key.to_owned();
            let written = tokio::spawn(async move {
                let revision = this.store.txn(vec![op]).await?;
                let stored = record.map(|record| Arc::new(StoredJob::new(record, revision)));
                this.publish(&owned_key, stored.clone(), revision);
                Ok::<_, StoreError>(stored)
            });
            match written.await.unwrap_or(Err(StoreError::Closed)) {
                Ok(stored) => break Ok(stored),
                Err(StoreError::Conflict { .. }) if attempts < 8 => {
                    // Another replica wrote first: read its version and compute the change again.
                    attempts += 1;
                    self.refresh(key).await?;
                }
                Err(e) => break Err(e.into()),
            }
        };
        drop(_guard);
        self.release_lock(key, lock);
        result
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(key.to_owned()).or_default().clone()
    }

    fn release_lock(&self, key: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self.locks.lock();
        drop(lock);
        // Only the map holds it: nobody waits, so the entry can go.
        if locks.get(key).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(key);
        }
    }

    /// Re-reads one Job from the store into the cache.
    pub async fn refresh(&self, key: &str) -> Result<()> {
        let record = self.store.get(&records::job_record_key(key)).await?;
        self.refresh_from(key, record).await
    }

    /// Publishes the Job whose record the store just returned (`None`: it is gone).
    async fn refresh_from(&self, key: &str, record: Option<KeyValue>) -> Result<()> {
        match record {
            Some(kv) => {
                let stored = records::decode_job(&kv)?;
                let revision = stored.mod_revision;
                self.publish(key, Some(Arc::new(stored)), revision);
            }
            None => self.publish(key, None, self.store.revision()),
        }
        Ok(())
    }

    /// Makes a written change visible: cache, agent sessions, watchers.
    pub fn publish(&self, key: &str, job: Option<Arc<StoredJob>>, revision: u64) {
        // Taken before the index so that sessions are posted changes in the order the index
        // took them: a session compares each change with the one posted before it.
        let inboxes = self.inboxes.lock();
        let previous = {
            let mut index = self.index.write();
            if let Some(current) = index.get(key)
                && current.mod_revision > revision
            {
                // A newer version arrived first (from a watch); this one is history.
                return;
            }
            index.insert(key, job.clone())
        };
        if !inboxes.is_empty() {
            let manifest = Arc::default();
            let mut shared_key: Option<Arc<str>> = None;
            for (cluster, ranges) in changed_assignments(previous.as_deref(), job.as_deref()) {
                if let Some(inbox) = inboxes.get(cluster) {
                    let change = Changed {
                        revision,
                        job: job.clone(),
                        shards: ranges.after,
                        before: previous.clone(),
                        before_shards: ranges.before,
                        manifest: Arc::clone(&manifest),
                    };
                    inbox.post(shared_key.get_or_insert_with(|| key.into()), change);
                }
            }
        }
        drop(inboxes);
        debug!(job = %key, revision, "published");
        self.notify_watchers(JobChange {
            key: key.to_owned(),
            job,
            previous,
            revision,
        });
    }

    /// Sends `change` to the watchers of every Job and to those of its own.
    fn notify_watchers(&self, change: JobChange) {
        let change = Arc::new(change);
        if let Some(watchers) = self.watchers.lock().get(&change.key) {
            let _ = watchers.send(change.clone());
        }
        let _ = self.changes.send(change);
    }
}

#[cfg(test)]
mod tests;
