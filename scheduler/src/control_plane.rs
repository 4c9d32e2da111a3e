//! The federation's state and every change made to it.
//!
//! [`ControlPlane`] holds a decoded copy of the store (jobs and clusters) and is the only writer
//! of it. Every change to a federated Job goes through [`ControlPlane::mutate`]: compute the new
//! record from the current one (pure code from [`crate::model`]), write it with a
//! compare-and-swap on the record's revision, and only then publish it to readers, agent sessions
//! and watchers. Changes to one Job are serialised in this process by a per-Job lock, so the
//! compare-and-swap only fails when another replica wrote first; the change is then recomputed
//! from the fresh record.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::clusters::{ClusterRecord, ClusterTable, SessionSlot, Transition};
use crate::coordination::{Coordinator, LIVE_PREFIX};
use crate::metrics::Metrics;
use crate::model::clusters::Clusters;
use crate::model::edit::{self, Refused};
pub use crate::model::edit::{Next, ShardReport};
use crate::model::job::{ShardState, job_key};
use crate::model::manifest::Invalid;
pub use crate::records::StoredJob;
use crate::records::{self, JOBS_PREFIX, RecordError, SHARDS_PREFIX};
use crate::store::{Op, Precondition, Revision, Store, StoreError, WatchEvent};

/// Store key prefix of clusters: `clusters/NAME`.
pub const CLUSTERS_PREFIX: &str = "clusters/";

/// Errors of operations on the federation.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The request is not a valid Job (or change of one).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No Job or cluster of that name.
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        /// `jobs.batch` or `clusters`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The name is taken.
    #[error("jobs.batch \"{name}\" already exists")]
    AlreadyExists {
        /// The name asked for.
        name: String,
    },
    /// The caller's resourceVersion is stale.
    #[error(
        "Operation cannot be fulfilled on jobs.batch \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict {
        /// The Job's name.
        name: String,
    },
    /// The request cannot be carried out in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A stored record could not be decoded.
    #[error("stored record {key} is unreadable: {reason}")]
    Corrupt {
        /// Store key.
        key: String,
        /// What went wrong.
        reason: String,
    },
}

type Result<T, E = ControlPlaneError> = std::result::Result<T, E>;

impl From<Refused> for ControlPlaneError {
    fn from(e: Refused) -> Self {
        match e {
            Refused::Conflict { name } => Self::Conflict { name },
            e @ Refused::BeingDeleted { .. } => Self::FailedPrecondition(e.to_string()),
            Refused::Invalid(e) => Self::Invalid(e),
        }
    }
}

impl From<RecordError> for ControlPlaneError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Corrupt { key, reason } => Self::Corrupt { key, reason },
        }
    }
}

/// A change of one Job, as watchers see it.
#[derive(Debug, Clone)]
pub struct JobChange {
    /// `namespace/name`.
    pub key: String,
    /// The Job after the change; `None` when it was deleted.
    pub job: Option<Arc<StoredJob>>,
    /// The Job before the change.
    pub previous: Option<Arc<StoredJob>>,
}

/// Settings of the control plane.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a cluster may be silent before it is NotReady.
    pub cluster_grace: Duration,
    /// How long a NotReady cluster waits before its work moves (`rebalance: true`).
    pub failover_after: Duration,
    /// Interval agents are told to heartbeat at.
    pub heartbeat_interval: Duration,
}

/// An agent session's mailbox: which Jobs changed since the session last looked.
#[derive(Debug, Default)]
pub struct SessionInbox {
    /// Keys of changed Jobs.
    pub dirty: Mutex<HashSet<String>>,
    /// Wakes the session.
    pub notify: Notify,
}

#[derive(Default)]
struct JobIndex {
    by_key: HashMap<String, Arc<StoredJob>>,
    by_uid: HashMap<String, String>,
    by_cluster: HashMap<String, HashSet<String>>,
}

/// Changes buffered for watchers.
const CHANGE_BUFFER: usize = 256;

/// The clusters a Job has a share or a shard in; none for no Job.
fn clusters_of(job: &Option<Arc<StoredJob>>) -> BTreeSet<&str> {
    job.as_ref()
        .map(|j| j.record.clusters())
        .unwrap_or_default()
}

impl JobIndex {
    fn insert(&mut self, key: &str, job: Option<Arc<StoredJob>>) -> Option<Arc<StoredJob>> {
        let previous = match &job {
            Some(j) => self.by_key.insert(key.to_owned(), j.clone()),
            None => self.by_key.remove(key),
        };
        let uid = |j: &Option<Arc<StoredJob>>| j.as_ref().map(|j| j.record.uid().to_owned());
        let (old_uid, new_uid) = (uid(&previous), uid(&job));
        if old_uid != new_uid {
            if let Some(u) = old_uid {
                self.by_uid.remove(&u);
            }
            if let Some(u) = new_uid {
                self.by_uid.insert(u, key.to_owned());
            }
        }
        // Only the clusters that joined or left: an update touches every cluster of the Job
        // otherwise, and most updates (status reports) change none.
        let (before, after) = (clusters_of(&previous), clusters_of(&job));
        for c in before.difference(&after) {
            if let Some(set) = self.by_cluster.get_mut(*c) {
                set.remove(key);
            }
        }
        for c in after.difference(&before) {
            self.by_cluster
                .entry((*c).to_owned())
                .or_default()
                .insert(key.to_owned());
        }
        previous
    }
}

/// The federation's state; see the module documentation.
pub struct ControlPlane {
    store: Arc<dyn Store>,
    settings: Settings,
    metrics: Arc<Metrics>,
    jobs: RwLock<JobIndex>,
    clusters: Mutex<ClusterTable>,
    views: RwLock<Arc<Clusters>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    sessions: Mutex<HashMap<String, Arc<SessionInbox>>>,
    changes: broadcast::Sender<Arc<JobChange>>,
    /// Present when several replicas share the store (etcd): leadership and shared liveness.
    coordinator: Option<Arc<Coordinator>>,
    /// The store revision the loaded state is complete up to: replication watches from there.
    loaded_at: Revision,
    /// Jobs another replica changed, with the revision seen, waiting to be re-read.
    stale: Mutex<HashMap<String, Revision>>,
    stale_notify: Notify,
    /// Shard reports waiting for their Job's next write, by Job key.
    report_queue: Mutex<HashMap<String, Vec<QueuedReports>>>,
}

/// One agent's reports about one Job, waiting to be written with others.
struct QueuedReports {
    cluster: String,
    reports: Vec<ShardReport>,
    /// The reports about no known shard, or why none was recorded.
    done: tokio::sync::oneshot::Sender<std::result::Result<Vec<ShardReport>, String>>,
}

impl ControlPlane {
    /// Loads every Job and cluster from `store`.
    pub async fn open(
        store: Arc<dyn Store>,
        settings: Settings,
        metrics: Arc<Metrics>,
        coordinator: Option<Arc<Coordinator>>,
    ) -> Result<Arc<Self>> {
        let clusters = store.list(CLUSTERS_PREFIX).await?;
        let mut loaded_at = clusters.revision;
        let mut records = Vec::new();
        for kv in clusters.items {
            let record: ClusterRecord = decode(&kv.key, &kv.value)?;
            records.push((record, kv.mod_revision));
        }
        let mut table = ClusterTable::load(records, Instant::now(), coordinator.is_some());
        if coordinator.is_some() {
            let live = store.list(LIVE_PREFIX).await?;
            loaded_at = loaded_at.min(live.revision);
            for kv in live.items {
                table.set_live(kv.key.trim_start_matches(LIVE_PREFIX), true, Instant::now());
            }
        }
        let views = Arc::new(table.views());
        let mut index = JobIndex::default();
        let jobs = store.list(JOBS_PREFIX).await?;
        let shard_listing = store.list(SHARDS_PREFIX).await?;
        loaded_at = loaded_at.min(jobs.revision).min(shard_listing.revision);
        let mut shards = records::group_shards(shard_listing.items);
        for kv in jobs.items {
            let key = kv.key.trim_start_matches(JOBS_PREFIX).to_owned();
            let stored = records::assemble(&kv, &shards.remove(&key).unwrap_or_default())?;
            index.insert(&key, Some(Arc::new(stored)));
        }
        info!(
            jobs = index.by_key.len(),
            clusters = views.len(),
            "state loaded"
        );
        // Every slot holds a Job before and after a change until it is overwritten: with a
        // hundred clusters a Job is ~100 KiB, so 4,096 slots kept ~400 MB alive. A watcher that
        // falls further behind is sent the Job's current state instead (see `watch_job`).
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        Ok(Arc::new(Self {
            store,
            settings,
            metrics,
            jobs: RwLock::new(index),
            clusters: Mutex::new(table),
            views: RwLock::new(views),
            locks: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            changes,
            coordinator,
            loaded_at,
            stale: Mutex::new(HashMap::new()),
            stale_notify: Notify::new(),
            report_queue: Mutex::new(HashMap::new()),
        }))
    }

    /// Whether this replica does the work that must happen once (always, alone).
    pub fn is_leader(&self) -> bool {
        self.coordinator.as_ref().is_none_or(|c| c.is_leader())
    }

    /// The revision the loaded state is complete up to.
    pub fn loaded_at(&self) -> Revision {
        self.loaded_at
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The metrics registry's families.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    // ------------------------------------------------------------------ reading

    /// One Job.
    pub fn job(&self, key: &str) -> Option<Arc<StoredJob>> {
        self.jobs.read().by_key.get(key).cloned()
    }

    /// One Job as the store has it now. With replicas sharing the store, this replica's copy
    /// may lag another's write by a watch round trip, so the store is read first: a Job just
    /// created through another replica is found, and a user's read follows their write.
    pub async fn read_job(self: &Arc<Self>, key: &str) -> Result<Option<Arc<StoredJob>>> {
        if self.coordinator.is_some() {
            let record = self.store.get(&records::job_record_key(key)).await?;
            // Publishing the absence of a Job absent here too would announce a deletion.
            if record.is_some() || self.job(key).is_some() {
                self.refresh_job_from(key, record).await?;
            }
        }
        Ok(self.job(key))
    }

    /// The key of the Job with `uid`.
    pub fn job_key_by_uid(&self, uid: &str) -> Option<String> {
        self.jobs.read().by_uid.get(uid).cloned()
    }

    /// Jobs of `namespace` (every namespace when `None`), in key order.
    pub fn jobs(&self, namespace: Option<&str>) -> Vec<Arc<StoredJob>> {
        let index = self.jobs.read();
        let mut jobs: Vec<_> = index
            .by_key
            .values()
            .filter(|j| namespace.is_none_or(|ns| j.record.namespace() == ns))
            .cloned()
            .collect();
        drop(index);
        jobs.sort_by(|a, b| {
            (a.record.namespace(), a.record.name()).cmp(&(b.record.namespace(), b.record.name()))
        });
        jobs
    }

    /// Keys of the Jobs with a share or shard in `cluster`.
    pub fn jobs_in_cluster(&self, cluster: &str) -> Vec<String> {
        self.jobs
            .read()
            .by_cluster
            .get(cluster)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of Jobs.
    pub fn job_count(&self) -> usize {
        self.jobs.read().by_key.len()
    }

    /// What the planner sees of the clusters now.
    pub fn cluster_views(&self) -> Arc<Clusters> {
        self.views.read().clone()
    }

    /// Runs `f` over the cluster table.
    pub fn with_clusters<T>(&self, f: impl FnOnce(&ClusterTable) -> T) -> T {
        f(&self.clusters.lock())
    }

    /// Subscribes to every Job change.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JobChange>> {
        self.changes.subscribe()
    }

    // ------------------------------------------------------------------ writing jobs

    /// Creates a Job from a decoded, not yet validated manifest.
    pub async fn create_job(self: &Arc<Self>, job: Job, dry_run: bool) -> Result<Arc<StoredJob>> {
        let uid = uuid::Uuid::new_v4().to_string();
        let record = edit::create(job, uid, &self.cluster_views(), Timestamp::now())?;
        let key = record.key();
        let name = record.name().to_owned();
        if dry_run {
            return Ok(Arc::new(StoredJob {
                record,
                mod_revision: 0,
                shard_revisions: Default::default(),
            }));
        }
        let mut record = Some(record);
        let stored = self
            .mutate(&key, |current| match current {
                Some(_) => Err(ControlPlaneError::AlreadyExists { name: name.clone() }),
                None => Ok(Next::Put(Box::new(record.take().expect("written once")))),
            })
            .await?;
        info!(job = %key, "created");
        stored.ok_or_else(|| job_not_found(&name))
    }

    /// Replaces the user's part of a Job (labels, annotations, spec) with `job`'s.
    ///
    /// With `resource_version`, the change applies only to that revision. With `create`, a
    /// missing Job is created (apply); otherwise it is NOT_FOUND.
    pub async fn replace_job(
        self: &Arc<Self>,
        job: Job,
        resource_version: Option<u64>,
        create: bool,
        dry_run: bool,
    ) -> Result<Arc<StoredJob>> {
        let key = job_key(
            job.metadata.namespace.as_deref().unwrap_or("default"),
            job.metadata.name.as_deref().unwrap_or_default(),
        );
        if create && self.job(&key).is_none() {
            match self.create_job(job.clone(), dry_run).await {
                Err(ControlPlaneError::AlreadyExists { .. }) => {}
                other => return other,
            }
        }
        self.edit_job(&key, resource_version, dry_run, move |_| Ok(job.clone()))
            .await
    }

    /// Changes a Job through `edit`, which gets the user's current Job and returns the new one.
    pub async fn edit_job(
        self: &Arc<Self>,
        key: &str,
        resource_version: Option<u64>,
        dry_run: bool,
        mut edit: impl FnMut(&Job) -> Result<Job>,
    ) -> Result<Arc<StoredJob>> {
        let name = key.split_once('/').map_or(key, |(_, n)| n).to_owned();
        let clusters = self.cluster_views();
        let mut dry = None;
        let result = self
            .mutate(key, |current| {
                let Some(current) = current else {
                    return Err(job_not_found(&name));
                };
                let Some(record) = edit::update(
                    &current.record,
                    current.mod_revision,
                    resource_version,
                    &mut edit,
                    &clusters,
                    Timestamp::now(),
                )?
                else {
                    return Ok(Next::Unchanged);
                };
                if dry_run {
                    dry = Some(record);
                    return Ok(Next::Unchanged);
                }
                Ok(Next::Put(Box::new(record)))
            })
            .await?;
        if let Some(record) = dry {
            return Ok(Arc::new(StoredJob {
                record,
                mod_revision: 0,
                shard_revisions: Default::default(),
            }));
        }
        result.ok_or_else(|| job_not_found(&name))
    }

    /// Deletes a Job. With `cascade`, its shards are deleted first and the Job stays,
    /// terminating, until every cluster confirmed; otherwise it is gone at once and its shards
    /// stay in their clusters.
    pub async fn delete_job(
        self: &Arc<Self>,
        key: &str,
        cascade: bool,
    ) -> Result<Option<Arc<StoredJob>>> {
        let name = key.split_once('/').map_or(key, |(_, n)| n).to_owned();
        let clusters = self.cluster_views();
        let result = self
            .mutate(key, |current| {
                let Some(current) = current else {
                    return Err(job_not_found(&name));
                };
                Ok(edit::delete(
                    &current.record,
                    cascade,
                    &clusters,
                    Timestamp::now(),
                ))
            })
            .await?;
        info!(job = %key, cascade, "deleted");
        Ok(result)
    }

    /// Records shard status reported by `cluster`'s agent. Returns the reports that are about
    /// no known shard, for the agent to forget.
    pub async fn report(
        self: &Arc<Self>,
        cluster: &str,
        reports: Vec<ShardReport>,
    ) -> Result<Vec<ShardReport>> {
        let mut by_job: BTreeMap<String, Vec<ShardReport>> = BTreeMap::new();
        let mut unknown = Vec::new();
        for r in reports {
            match self.job_key_by_uid(&r.job_uid) {
                Some(key) => by_job.entry(key).or_default().push(r),
                None => unknown.push(r),
            }
        }
        self.metrics
            .shard_reports
            .inc_by(by_job.values().map(|v| v.len() as u64).sum());
        let updates = by_job
            .into_iter()
            .map(|(key, reports)| self.report_for_job(cluster, key, reports));
        for (key, outcome) in futures::future::join_all(updates).await {
            match outcome {
                Ok(rejected) => unknown.extend(rejected),
                Err(e) => warn!(job = %key, cluster, error = %e, "shard status not recorded"),
            }
        }
        Ok(unknown)
    }

    /// Records `reports` about the Job `key` from `cluster`, in one write with whatever other
    /// reports about the Job are waiting.
    ///
    /// Every agent reports its own shards, so a Job over N clusters gets N reports at about
    /// the same time; written one by one, each would copy, re-plan and store the whole Job
    /// (quadratic in N). Reports queue per Job instead, and whoever holds the Job's lock next
    /// takes every queued report and hands each caller its outcome.
    async fn report_for_job(
        self: &Arc<Self>,
        cluster: &str,
        key: String,
        reports: Vec<ShardReport>,
    ) -> (String, std::result::Result<Vec<ShardReport>, String>) {
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.report_queue
            .lock()
            .entry(key.clone())
            .or_default()
            .push(QueuedReports {
                cluster: cluster.to_owned(),
                reports,
                done,
            });
        let clusters = self.cluster_views();
        let mut taken: Vec<QueuedReports> = Vec::new();
        let mut rejected: Vec<Vec<ShardReport>> = Vec::new();
        let result = self
            .mutate(&key, |current| {
                if let Some(more) = self.report_queue.lock().remove(&key) {
                    taken.extend(more);
                }
                rejected = taken.iter().map(|_| Vec::new()).collect();
                let Some(current) = current else {
                    for (q, out) in taken.iter().zip(&mut rejected) {
                        out.extend(q.reports.iter().cloned());
                    }
                    return Ok(Next::Unchanged);
                };
                if taken.is_empty() {
                    return Ok(Next::Unchanged);
                }
                let batches: Vec<(&str, &[ShardReport])> = taken
                    .iter()
                    .map(|q| (q.cluster.as_str(), q.reports.as_slice()))
                    .collect();
                let (next, refused) =
                    edit::apply_reports(&current.record, &batches, &clusters, Timestamp::now());
                rejected = refused;
                Ok(next)
            })
            .await;
        let error = result.err().map(|e| e.to_string());
        for (q, out) in taken.into_iter().zip(rejected) {
            let _ = q.done.send(match &error {
                None => Ok(out),
                Some(e) => Err(e.clone()),
            });
        }
        let outcome = outcome
            .await
            .unwrap_or_else(|_| Err("the write carrying this report was abandoned".to_owned()));
        (key, outcome)
    }

    /// Reconciles the given Jobs again (after a cluster changed state).
    pub async fn reconcile_jobs(self: &Arc<Self>, keys: Vec<String>) {
        let clusters = self.cluster_views();
        for key in keys {
            let result = self
                .mutate(&key, |current| {
                    let Some(current) = current else {
                        return Ok(Next::Unchanged);
                    };
                    Ok(edit::reconcile(
                        &current.record,
                        &clusters,
                        Timestamp::now(),
                    ))
                })
                .await;
            if let Err(e) = result {
                warn!(job = %key, error = %e, "reconcile failed");
            }
        }
    }

    /// Deletes finished Jobs whose `ttlSecondsAfterFinished` ran out (their shards stay, under
    /// their own TTL in their clusters).
    pub async fn collect_finished(self: &Arc<Self>, now: Timestamp) {
        let expired: Vec<String> = self
            .jobs(None)
            .into_iter()
            .filter(|j| edit::ttl_expired(&j.record, now))
            .map(|j| j.record.key())
            .collect();
        for key in expired {
            let result = self
                .mutate(&key, |current| match current {
                    Some(c) if edit::ttl_expired(&c.record, now) => Ok(Next::Delete),
                    _ => Ok(Next::Unchanged),
                })
                .await;
            match result {
                Ok(_) => info!(job = %key, "deleted after ttlSecondsAfterFinished"),
                Err(e) => warn!(job = %key, error = %e, "TTL delete failed"),
            }
        }
    }

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
            let mut current = self.job(key);
            if current.is_none() && attempts == 0 {
                // Absent here may be not yet seen here (written through another replica).
                current = self.read_job(key).await?;
            }
            let (ops, record) = match change(current.as_deref())? {
                Next::Unchanged => break Ok(current),
                Next::Delete => match &current {
                    None => break Ok(None),
                    Some(c) => (records::delete_ops(key, c), None),
                },
                Next::Put(record) => (
                    records::write_ops(key, current.as_deref(), &record),
                    Some(*record),
                ),
            };
            // The write and its publication run as their own task: if the caller goes away
            // (a client hangs up), a write the store commits is still published.
            let this = self.clone();
            let owned_key = key.to_owned();
            let written = tokio::spawn(async move {
                let revision = this.store.txn(ops.clone()).await?;
                let stored = record.map(|record| {
                    let shard_revisions =
                        records::revisions_after(&ops, revision, current.as_deref());
                    Arc::new(StoredJob {
                        record,
                        mod_revision: revision,
                        shard_revisions,
                    })
                });
                this.publish(&owned_key, stored.clone(), revision);
                Ok::<_, StoreError>(stored)
            });
            match written.await.unwrap_or(Err(StoreError::Closed)) {
                Ok(stored) => break Ok(stored),
                Err(StoreError::Conflict { .. }) if attempts < 8 => {
                    // Another replica wrote first: read its version and compute the change again.
                    attempts += 1;
                    self.refresh_job(key).await?;
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
    pub async fn refresh_job(self: &Arc<Self>, key: &str) -> Result<()> {
        let record = self.store.get(&records::job_record_key(key)).await?;
        self.refresh_job_from(key, record).await
    }

    /// Publishes the Job whose record the store just returned (`None`: it is gone), with its
    /// shards.
    async fn refresh_job_from(
        self: &Arc<Self>,
        key: &str,
        record: Option<crate::store::KeyValue>,
    ) -> Result<()> {
        match record {
            Some(kv) => {
                let shards = self.store.list(&records::shards_prefix(key)).await?;
                let stored = records::assemble(&kv, &shards.items)?;
                let revision = stored.mod_revision;
                self.publish(key, Some(Arc::new(stored)), revision);
            }
            None => self.publish(key, None, self.store.revision()),
        }
        Ok(())
    }

    /// Makes a written change visible: cache, agent sessions, watchers.
    fn publish(&self, key: &str, job: Option<Arc<StoredJob>>, revision: u64) {
        let previous = {
            let mut index = self.jobs.write();
            if let Some(current) = index.by_key.get(key)
                && current.mod_revision > revision
            {
                // A newer version arrived first (from a watch); this one is history.
                return;
            }
            index.insert(key, job.clone())
        };
        let mut affected: HashSet<&str> = HashSet::new();
        for j in previous.iter().chain(job.iter()) {
            affected.extend(j.record.clusters());
        }
        {
            let sessions = self.sessions.lock();
            for cluster in affected {
                if let Some(inbox) = sessions.get(cluster) {
                    inbox.dirty.lock().insert(key.to_owned());
                    inbox.notify.notify_one();
                }
            }
        }
        debug!(job = %key, revision, "published");
        let _ = self.changes.send(Arc::new(JobChange {
            key: key.to_owned(),
            job,
            previous,
        }));
    }

    // ------------------------------------------------------------------ clusters

    /// Registers (or re-registers) a cluster and hands out a session token.
    pub async fn register_cluster(
        self: &Arc<Self>,
        name: &str,
        labels: BTreeMap<String, String>,
        agent_version: &str,
    ) -> Result<(String, u64)> {
        if let Some(c) = &self.coordinator
            && let Some(replica) = c.attached_elsewhere(name).await?
        {
            return Err(ControlPlaneError::FailedPrecondition(format!(
                "cluster \"{name}\" is connected from another agent (through replica {replica}); a cluster name is unique"
            )));
        }
        if let Some(e) = self.clusters.lock().get(name)
            && e.session.as_ref().is_some_and(|s| s.attached)
            && e.ready
            && e.last_heartbeat.elapsed() < self.settings.heartbeat_interval * 3
        {
            return Err(ControlPlaneError::FailedPrecondition(format!(
                "cluster \"{name}\" is connected from another agent; a cluster name is unique"
            )));
        }
        let current = self
            .clusters
            .lock()
            .get(name)
            .map(|e| (e.record.clone(), e.mod_revision));
        let record = ClusterRecord {
            name: name.to_owned(),
            labels,
            cordoned: current.as_ref().is_some_and(|(r, _)| r.cordoned),
            epoch: current.as_ref().map_or(0, |(r, _)| r.epoch),
            registered_at: current
                .as_ref()
                .map_or_else(Timestamp::now, |(r, _)| r.registered_at),
            agent_version: agent_version.to_owned(),
        };
        if current.as_ref().map(|(r, _)| r) != Some(&record) {
            let precondition = current.as_ref().map_or(Precondition::Absent, |(_, rev)| {
                Precondition::ModRevision(*rev)
            });
            self.write_cluster(record.clone(), precondition).await?;
        }
        let token = uuid::Uuid::new_v4().to_string();
        let epoch = record.epoch;
        {
            let mut table = self.clusters.lock();
            if let Some(e) = table.get_mut(name) {
                e.session = Some(SessionSlot {
                    token: token.clone(),
                    attached: false,
                });
            }
        }
        info!(cluster = name, "registered");
        Ok((token, epoch))
    }

    /// Cordons or uncordons a cluster.
    pub async fn set_cordoned(
        self: &Arc<Self>,
        name: &str,
        cordoned: bool,
    ) -> Result<ClusterRecord> {
        let current = self
            .clusters
            .lock()
            .get(name)
            .map(|e| (e.record.clone(), e.mod_revision));
        let Some((mut record, rev)) = current else {
            return Err(ControlPlaneError::NotFound {
                kind: "clusters",
                name: name.to_owned(),
            });
        };
        if record.cordoned != cordoned {
            record.cordoned = cordoned;
            self.write_cluster(record.clone(), Precondition::ModRevision(rev))
                .await?;
            info!(cluster = name, cordoned, "cordon changed");
            if !cordoned {
                self.reconcile_jobs(self.jobs_needing_room()).await;
            }
        }
        Ok(record)
    }

    async fn write_cluster(&self, record: ClusterRecord, precondition: Precondition) -> Result<()> {
        let value = serde_json::to_vec(&record).expect("records serialise");
        let key = format!("{CLUSTERS_PREFIX}{}", record.name);
        let revision = self
            .store
            .txn(vec![Op::Put {
                key,
                value: value.into(),
                precondition,
            }])
            .await?;
        self.clusters
            .lock()
            .upsert(record, revision, Instant::now());
        self.refresh_views();
        Ok(())
    }

    fn refresh_views(&self) {
        let views = Arc::new(self.clusters.lock().views());
        *self.views.write() = views;
    }

    /// Attaches an agent stream to `cluster` if `token` is its current session.
    pub async fn attach_session(&self, cluster: &str, token: &str) -> Result<Arc<SessionInbox>> {
        {
            let mut table = self.clusters.lock();
            let slot = table.get_mut(cluster).and_then(|e| e.session.as_mut());
            match slot {
                Some(s) if s.token == token => s.attached = true,
                _ => {
                    return Err(ControlPlaneError::FailedPrecondition(format!(
                        "session for cluster \"{cluster}\" is not current; register again"
                    )));
                }
            }
        }
        if let Some(c) = &self.coordinator {
            c.attach(cluster).await?;
        }
        let inbox = Arc::new(SessionInbox::default());
        self.sessions
            .lock()
            .insert(cluster.to_owned(), inbox.clone());
        self.metrics.agent_sessions.inc();
        Ok(inbox)
    }

    /// Detaches a stream; a newer session of the cluster is left alone.
    pub async fn detach_session(&self, cluster: &str, token: &str, inbox: &Arc<SessionInbox>) {
        let ours = {
            let mut sessions = self.sessions.lock();
            let ours = sessions.get(cluster).is_some_and(|i| Arc::ptr_eq(i, inbox));
            if ours {
                sessions.remove(cluster);
            }
            ours
        };
        if ours && let Some(c) = &self.coordinator {
            c.detach(cluster).await;
        }
        if let Some(s) = self
            .clusters
            .lock()
            .get_mut(cluster)
            .and_then(|e| e.session.as_mut())
            && s.token == token
        {
            s.attached = false;
        }
        self.metrics.agent_sessions.dec();
    }

    /// Whether `token` is still the cluster's session (a newer Register replaces it).
    pub fn session_current(&self, cluster: &str, token: &str) -> bool {
        self.clusters
            .lock()
            .get(cluster)
            .and_then(|e| e.session.as_ref())
            .is_some_and(|s| s.token == token)
    }

    /// Records a heartbeat (any message) from `cluster`'s agent.
    pub async fn heartbeat(self: &Arc<Self>, cluster: &str) {
        let transition = self.clusters.lock().heartbeat(cluster, Instant::now());
        if let Some(t) = transition {
            self.on_transitions(vec![t]).await;
        }
        if let Some(c) = &self.coordinator {
            c.heard(cluster).await;
        }
    }

    /// Checks every cluster's heartbeats; called periodically.
    pub async fn check_clusters(self: &Arc<Self>) {
        if let Some(c) = &self.coordinator {
            // Liveness this replica answers for: silent agents lose their record, and every
            // replica learns it from the store.
            let quiet = self
                .clusters
                .lock()
                .quiet(Instant::now(), self.settings.cluster_grace);
            for cluster in quiet.iter().filter(|q| c.owns(q)) {
                warn!(cluster = %cluster, "no heartbeat for the grace period");
                c.silent(cluster).await;
            }
            if !c.is_leader() {
                return;
            }
        }
        let transitions = self.clusters.lock().check(
            Instant::now(),
            self.settings.cluster_grace,
            self.settings.failover_after,
        );
        if !transitions.is_empty() {
            self.on_transitions(transitions).await;
        }
    }

    async fn on_transitions(self: &Arc<Self>, transitions: Vec<Transition>) {
        self.refresh_views();
        // With several replicas, the leader alone acts on a change, so a failover is planned once.
        let leader = self.is_leader();
        let mut keys = HashSet::new();
        for t in &transitions {
            match t {
                Transition::Ready(c) => {
                    info!(cluster = %c, "cluster Ready");
                    keys.extend(self.jobs_needing_room());
                    keys.extend(self.jobs_in_cluster(c));
                }
                Transition::NotReady(c) => {
                    warn!(cluster = %c, grace = ?self.settings.cluster_grace, "cluster NotReady: heartbeats stopped");
                    // Nothing is stored of it; watchers see the placement state change.
                    for key in self.jobs_in_cluster(c) {
                        if let Some(job) = self.job(&key) {
                            let _ = self.changes.send(Arc::new(JobChange {
                                key,
                                job: Some(job),
                                previous: None,
                            }));
                        }
                    }
                }
                Transition::Lost(_) if !leader => {}
                Transition::Lost(c) => {
                    warn!(cluster = %c, "cluster lost: work with rebalance: true moves elsewhere");
                    // A new epoch fences what the cluster ran before: shards planned there
                    // from now on carry it, and its agent learns on return that older ones moved.
                    let current = self
                        .clusters
                        .lock()
                        .get(c)
                        .map(|e| (e.record.clone(), e.mod_revision));
                    if let Some((mut record, rev)) = current {
                        record.epoch += 1;
                        if let Err(e) = self
                            .write_cluster(record, Precondition::ModRevision(rev))
                            .await
                        {
                            warn!(cluster = %c, error = %e, "epoch not raised");
                        }
                    }
                    keys.extend(self.jobs_in_cluster(c));
                }
            }
        }
        if !leader {
            return;
        }
        let mut keys: Vec<String> = keys.into_iter().collect();
        keys.sort();
        self.reconcile_jobs(keys).await;
    }

    // ------------------------------------------------------------------ replication

    /// Applies one change seen in the store (written by this or another replica).
    pub async fn apply_event(self: &Arc<Self>, event: WatchEvent) {
        let revision = event.revision();
        let key = event.key().to_owned();
        if let Some(job) = key
            .strip_prefix(JOBS_PREFIX)
            .map(str::to_owned)
            .or_else(|| {
                key.strip_prefix(SHARDS_PREFIX)
                    .and_then(|k| k.rsplit_once('/'))
                    .map(|(j, _)| j.to_owned())
            })
        {
            // This replica's own writes are published already: only newer ones need a read.
            let known = self.job(&job).map_or(0, |j| j.mod_revision);
            if revision > known {
                let mut stale = self.stale.lock();
                let entry = stale.entry(job).or_insert(0);
                *entry = (*entry).max(revision);
                drop(stale);
                self.stale_notify.notify_one();
            }
        } else if let Some(name) = key.strip_prefix(CLUSTERS_PREFIX) {
            if let WatchEvent::Put(kv) = &event {
                match decode::<ClusterRecord>(&kv.key, &kv.value) {
                    Ok(record) => {
                        self.clusters
                            .lock()
                            .upsert(record, kv.mod_revision, Instant::now());
                        self.refresh_views();
                    }
                    Err(e) => warn!(cluster = name, error = %e, "unreadable cluster record"),
                }
            }
        } else if let Some(name) = key.strip_prefix(LIVE_PREFIX) {
            let live = matches!(event, WatchEvent::Put(_));
            if let (WatchEvent::Put(kv), Some(c)) = (&event, &self.coordinator)
                && kv.value != c.replica().as_bytes()
            {
                c.disown(name);
            }
            let transition = self.clusters.lock().set_live(name, live, Instant::now());
            if let Some(t) = transition {
                self.on_transitions(vec![t]).await;
            }
        }
    }

    /// Re-reads the Jobs other replicas changed; runs until the store closes.
    pub async fn refresh_stale(self: &Arc<Self>) {
        loop {
            self.stale_notify.notified().await;
            let stale = std::mem::take(&mut *self.stale.lock());
            for (key, revision) in stale {
                if self.job(&key).is_some_and(|j| j.mod_revision >= revision) {
                    continue;
                }
                match self.refresh_job(&key).await {
                    Ok(()) => {}
                    Err(ControlPlaneError::Store(StoreError::Closed)) => return,
                    Err(e) => {
                        warn!(job = %key, error = %e, "cannot re-read a Job changed elsewhere")
                    }
                }
            }
        }
    }

    /// Re-reads everything after the watch history was compacted; returns the revision the
    /// state is complete up to.
    pub async fn resync(self: &Arc<Self>) -> Result<Revision> {
        let jobs = self.store.list(JOBS_PREFIX).await?;
        let mut revision = jobs.revision;
        let listed: HashSet<String> = jobs
            .items
            .iter()
            .map(|kv| kv.key.trim_start_matches(JOBS_PREFIX).to_owned())
            .collect();
        let cached: Vec<String> = self.jobs.read().by_key.keys().cloned().collect();
        for key in cached.iter().filter(|k| !listed.contains(*k)) {
            self.publish(key, None, revision);
        }
        for key in listed {
            self.refresh_job(&key).await?;
        }
        let clusters = self.store.list(CLUSTERS_PREFIX).await?;
        revision = revision.min(clusters.revision);
        for kv in clusters.items {
            let record: ClusterRecord = decode(&kv.key, &kv.value)?;
            self.clusters
                .lock()
                .upsert(record, kv.mod_revision, Instant::now());
        }
        if self.coordinator.is_some() {
            let live = self.store.list(LIVE_PREFIX).await?;
            revision = revision.min(live.revision);
            let live: HashSet<String> = live
                .items
                .iter()
                .map(|kv| kv.key.trim_start_matches(LIVE_PREFIX).to_owned())
                .collect();
            let names: Vec<String> = self
                .clusters
                .lock()
                .iter()
                .map(|e| e.record.name.clone())
                .collect();
            let mut transitions = Vec::new();
            for name in names {
                let t = self
                    .clusters
                    .lock()
                    .set_live(&name, live.contains(&name), Instant::now());
                transitions.extend(t);
            }
            self.on_transitions(transitions).await;
        }
        self.refresh_views();
        Ok(revision)
    }

    /// Jobs with work not placed anywhere yet.
    fn jobs_needing_room(&self) -> Vec<String> {
        self.jobs
            .read()
            .by_key
            .iter()
            .filter(|(_, j)| {
                let r = &j.record;
                (r.unplaced.parallelism > 0 || r.unplaced.completions > 0) && !r.is_finished()
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Number of live shards per cluster.
    pub fn shard_counts(&self) -> HashMap<String, i32> {
        let mut counts = HashMap::new();
        for j in self.jobs.read().by_key.values() {
            for s in &j.record.shards {
                if matches!(
                    s.state,
                    ShardState::Active | ShardState::Finished | ShardState::Stopping
                ) {
                    *counts.entry(s.cluster.clone()).or_insert(0) += 1;
                }
            }
        }
        counts
    }
}

fn job_not_found(name: &str) -> ControlPlaneError {
    ControlPlaneError::NotFound {
        kind: "jobs.batch",
        name: name.to_owned(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| ControlPlaneError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}
