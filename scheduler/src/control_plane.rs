//! The federation's verbs: what the API edges (gRPC, the Kubernetes REST API) and the
//! background tasks call.
//!
//! [`ControlPlane`] owns nothing itself but ties the state owners together: [`Jobs`] (every
//! federated Job and the one way it changes), [`ClusterRegistry`] (member clusters, their
//! liveness and agent sessions) and, with several replicas, the [`Coordinator`]. Each verb reads
//! what it needs from them, runs the pure decision from [`crate::model::edit`] inside
//! [`Jobs::mutate`], and turns a cluster's change of state into the Jobs it affects.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fedjob_proto::shutdown::Shutdown;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::clusters::{ClusterRecord, ClusterRegistry, ClusterTable, Liveness, Transition};
use crate::coordination::Coordinator;
pub use crate::error::ControlPlaneError;
use crate::error::Result;
use crate::jobs::WriteTurns;
pub use crate::jobs::{Changed, JobChange, Jobs, SessionInbox};
use crate::metrics::Metrics;
use crate::model::clusters::Clusters;
use crate::model::edit;
pub use crate::model::edit::{Next, ShardReport};
use crate::model::fit::{PodDemand, pods_that_fit};
use crate::model::job::FederatedJob;
use crate::model::job::{job_key, split_job_key};
use crate::model::planner;
use crate::model::spill::{self, Stuck};
pub use crate::records::StoredJob;
use crate::store::{Revision, Store};

/// How often at most capacity reports are taken into the planner's views.
pub const CLUSTER_CHANGES_EVERY: Duration = Duration::from_millis(100);

/// Settings of the control plane.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a cluster may be silent before it is NotReady.
    pub cluster_grace: Duration,
    /// How long a NotReady cluster waits before its work moves (`rebalance: true`).
    pub failover_after: Duration,
    /// Interval agents are told to heartbeat at.
    pub heartbeat_interval: Duration,
    /// Users' writes of Jobs worked on at once ([`WriteTurns`]); `None` for no limit.
    pub concurrent_job_writes: Option<usize>,
}

/// The federation; see the module documentation.
pub struct ControlPlane {
    store: Arc<dyn Store>,
    settings: Settings,
    metrics: Arc<Metrics>,
    jobs: Arc<Jobs>,
    clusters: ClusterRegistry,
    /// Present when several replicas share the store (etcd): leadership and shared liveness.
    coordinator: Option<Arc<Coordinator>>,
    /// The store revision the loaded state is complete up to: replication watches from there.
    loaded_at: Revision,
    /// Turns of users' writes of Jobs.
    writes: WriteTurns,
}

impl ControlPlane {
    /// Loads every Job and cluster from `store`.
    pub async fn open(
        store: Arc<dyn Store>,
        settings: Settings,
        metrics: Arc<Metrics>,
        coordinator: Option<Arc<Coordinator>>,
    ) -> Result<Arc<Self>> {
        let opened = crate::records::migrate::open(store.as_ref()).await?;
        info!(?opened, "store format");
        let liveness = Liveness {
            grace: settings.cluster_grace,
            failover_after: settings.failover_after,
            heartbeat_interval: settings.heartbeat_interval,
        };
        let (clusters, clusters_at) =
            ClusterRegistry::load(store.clone(), liveness, coordinator.clone()).await?;
        let (jobs, jobs_at) =
            Jobs::load(store.clone(), metrics.clone(), coordinator.is_some()).await?;
        info!(
            jobs = jobs.with_index(|i| i.len()),
            clusters = clusters.views().len(),
            "state loaded"
        );
        let writes = WriteTurns::new(
            settings.concurrent_job_writes,
            metrics.job_writes_waiting.clone(),
        );
        Ok(Arc::new(Self {
            store,
            settings,
            metrics,
            jobs,
            clusters,
            coordinator,
            loaded_at: clusters_at.min(jobs_at),
            writes,
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

    /// The owner of the Jobs.
    pub fn job_state(&self) -> &Arc<Jobs> {
        &self.jobs
    }

    /// The owner of the clusters.
    pub fn cluster_state(&self) -> &ClusterRegistry {
        &self.clusters
    }

    // ------------------------------------------------------------------ reading

    /// One Job.
    pub fn job(&self, key: &str) -> Option<Arc<StoredJob>> {
        self.jobs.get(key)
    }

    /// One Job as the store has it now (see [`Jobs::read`]).
    pub async fn read_job(&self, key: &str) -> Result<Option<Arc<StoredJob>>> {
        self.jobs.read(key).await
    }

    /// The key of the Job with `uid`.
    pub fn job_key_by_uid(&self, uid: &str) -> Option<String> {
        self.jobs.key_by_uid(uid)
    }

    /// Jobs of `namespace` (every namespace when `None`), in key order.
    pub fn jobs(&self, namespace: Option<&str>) -> Vec<Arc<StoredJob>> {
        self.jobs.list(namespace)
    }

    /// Keys of the Jobs with a share or shard in `cluster`.
    pub fn jobs_in_cluster(&self, cluster: &str) -> Vec<String> {
        self.jobs.with_index(|i| i.in_cluster(cluster))
    }

    /// Number of Jobs.
    pub fn job_count(&self) -> usize {
        self.jobs.with_index(|i| i.len())
    }

    /// Number of live shards per cluster.
    pub fn shard_counts(&self) -> HashMap<String, i32> {
        self.jobs.with_index(|i| i.shard_counts())
    }

    /// What the planner sees of the clusters now.
    pub fn cluster_views(&self) -> Arc<Clusters> {
        self.clusters.views()
    }

    /// The free capacity agents report.
    pub fn capacity(&self) -> &crate::clusters::capacity::CapacityBook {
        self.clusters.capacity()
    }

    /// The shards agents report unschedulable.
    pub fn pending(&self) -> &crate::clusters::pending::PendingBook {
        self.clusters.pending()
    }

    /// Runs `f` over the cluster table.
    pub fn with_clusters<T>(&self, f: impl FnOnce(&ClusterTable) -> T) -> T {
        self.clusters.with_table(f)
    }

    /// Subscribes to every Job change.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JobChange>> {
        self.jobs.subscribe()
    }

    // ------------------------------------------------------------------ writing jobs

    /// Creates a Job from a decoded, not yet validated manifest.
    pub async fn create_job(&self, job: Job, dry_run: bool) -> Result<Arc<StoredJob>> {
        let _turn = self.writes.take().await;
        self.create_in_turn(job, dry_run).await
    }

    /// [`ControlPlane::create_job`] once the write has its turn.
    async fn create_in_turn(&self, job: Job, dry_run: bool) -> Result<Arc<StoredJob>> {
        let uid = uuid::Uuid::new_v4().to_string();
        let planned_with = self.cluster_views();
        let record = edit::create(job, uid, &planned_with, Timestamp::now())?;
        let key = record.key();
        let name = record.name().to_owned();
        if dry_run {
            return Ok(Arc::new(StoredJob::unwritten(record)));
        }
        let mut record = Some(record);
        let stored = self
            .jobs
            .mutate(&key, |current| match current {
                Some(_) => Err(ControlPlaneError::AlreadyExists { name: name.clone() }),
                None => Ok(Next::Put(Box::new(record.take().expect("written once")))),
            })
            .await?;
        info!(job = %key, "created");
        let stored = stored.ok_or_else(|| ControlPlaneError::job_not_found(&name))?;
        // A cluster that became eligible while the Job was planned and written was not seen
        // by it, nor the Job by whoever follows the clusters.
        if planner::room_appeared(&stored.record, &planned_with, &self.cluster_views()) {
            self.reconcile_jobs(vec![key]).await;
            return self
                .job(&stored.record.key())
                .ok_or_else(|| ControlPlaneError::job_not_found(&name));
        }
        Ok(stored)
    }

    /// Replaces the user's part of a Job (labels, annotations, spec) with `job`'s.
    ///
    /// With `resource_version`, the change applies only to that revision. With `create`, a
    /// missing Job is created (apply); otherwise it is NOT_FOUND.
    pub async fn replace_job(
        &self,
        job: Job,
        resource_version: Option<u64>,
        create: bool,
        dry_run: bool,
    ) -> Result<Arc<StoredJob>> {
        let key = job_key(
            job.metadata.namespace.as_deref().unwrap_or("default"),
            job.metadata.name.as_deref().unwrap_or_default(),
        );
        let _turn = self.writes.take().await;
        if create && self.job(&key).is_none() {
            match self.create_in_turn(job.clone(), dry_run).await {
                Err(ControlPlaneError::AlreadyExists { .. }) => {}
                other => return other,
            }
        }
        self.edit_in_turn(&key, resource_version, dry_run, move |_| Ok(job.clone()))
            .await
    }

    /// Changes a Job through `edit`, which gets the user's current Job and returns the new one.
    pub async fn edit_job(
        &self,
        key: &str,
        resource_version: Option<u64>,
        dry_run: bool,
        edit: impl FnMut(&Job) -> Result<Job>,
    ) -> Result<Arc<StoredJob>> {
        let _turn = self.writes.take().await;
        self.edit_in_turn(key, resource_version, dry_run, edit)
            .await
    }

    /// [`ControlPlane::edit_job`] once the write has its turn.
    async fn edit_in_turn(
        &self,
        key: &str,
        resource_version: Option<u64>,
        dry_run: bool,
        mut edit: impl FnMut(&Job) -> Result<Job>,
    ) -> Result<Arc<StoredJob>> {
        let name = split_job_key(key).1.to_owned();
        let clusters = self.cluster_views();
        let mut dry = None;
        let result = self
            .jobs
            .mutate(key, |current| {
                let Some(current) = current else {
                    return Err(ControlPlaneError::job_not_found(&name));
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
            return Ok(Arc::new(StoredJob::unwritten(record)));
        }
        result.ok_or_else(|| ControlPlaneError::job_not_found(&name))
    }

    /// Deletes a Job. With `cascade`, its shards are deleted first and the Job stays,
    /// terminating, until every cluster confirmed; otherwise it is gone at once and its shards
    /// stay in their clusters.
    pub async fn delete_job(&self, key: &str, cascade: bool) -> Result<Option<Arc<StoredJob>>> {
        let _turn = self.writes.take().await;
        let name = split_job_key(key).1.to_owned();
        let clusters = self.cluster_views();
        let result = self
            .jobs
            .mutate(key, |current| {
                let Some(current) = current else {
                    return Err(ControlPlaneError::job_not_found(&name));
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
        &self,
        cluster: &str,
        reports: Vec<ShardReport>,
    ) -> Result<Vec<ShardReport>> {
        Ok(self
            .jobs
            .report(cluster, reports, &self.cluster_views())
            .await)
    }

    /// Reconciles the given Jobs again (after a cluster changed state).
    pub async fn reconcile_jobs(&self, keys: Vec<String>) {
        let clusters = self.cluster_views();
        for key in keys {
            let result = self
                .jobs
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

    /// Spill-over (SPEC §10): acts on the shards agents report unschedulable, moving the work
    /// of those stuck past their Job's `pendingTimeoutSeconds` (`rebalance: true`) and saying
    /// in a condition why the others wait. `previous` holds the Jobs that had stuck shards at
    /// the last call, so that a Job whose pods were placed meanwhile loses its condition; it is
    /// updated.
    pub async fn spill_over(&self, previous: &mut HashSet<String>, now: Timestamp) {
        let mut stuck: BTreeMap<String, Vec<(String, Stuck)>> = BTreeMap::new();
        for (cluster, shards) in self.pending().all() {
            for key in self.jobs_in_cluster(&cluster) {
                let Some(job) = self.job(&key) else { continue };
                let about_job = shards.iter().filter(|st| {
                    st.namespace == job.record.namespace()
                        && job
                            .record
                            .shards_in(&cluster)
                            .any(|s| spill::is_about(s, &cluster, st))
                });
                let found: Vec<(String, Stuck)> =
                    about_job.map(|st| (cluster.clone(), st.clone())).collect();
                if !found.is_empty() {
                    stuck.entry(key).or_default().extend(found);
                }
            }
        }
        let keys: BTreeSet<String> = stuck.keys().chain(previous.iter()).cloned().collect();
        let clusters = self.cluster_views();
        for key in keys {
            let none = Vec::new();
            let stuck = stuck.get(&key).unwrap_or(&none);
            let result = self
                .jobs
                .mutate(&key, |current| {
                    let Some(current) = current else {
                        return Ok(Next::Unchanged);
                    };
                    let room = Self::room_for(&current.record, &clusters);
                    Ok(
                        match spill::spill_over(&current.record, stuck, &room, &clusters, now) {
                            Some(next) => edit::finish(next),
                            None => Next::Unchanged,
                        },
                    )
                })
                .await;
            if let Err(e) = result {
                warn!(job = %key, error = %e, "spill-over failed");
            }
        }
        *previous = stuck.into_keys().collect();
    }

    /// How many pods of `fj`'s template fit in each cluster whose agent reports capacity.
    fn room_for(fj: &FederatedJob, clusters: &Clusters) -> BTreeMap<String, u64> {
        let template = fj.spec().template.clone();
        let demand = PodDemand::of_template(&serde_json::to_value(template).unwrap_or_default());
        clusters
            .iter()
            .filter_map(|(name, view)| {
                let capacity = view.capacity.as_ref()?;
                Some((name.clone(), pods_that_fit(&demand, capacity)))
            })
            .collect()
    }

    /// Deletes finished Jobs whose `ttlSecondsAfterFinished` ran out (their shards stay, under
    /// their own TTL in their clusters).
    pub async fn collect_finished(&self, now: Timestamp) {
        let expired: Vec<String> = self
            .jobs(None)
            .into_iter()
            .filter(|j| edit::ttl_expired(&j.record, now))
            .map(|j| j.record.key())
            .collect();
        for key in expired {
            let result = self
                .jobs
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

    // ------------------------------------------------------------------ clusters

    /// Registers (or re-registers) a cluster and hands out a session token.
    pub async fn register_cluster(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        agent_version: &str,
    ) -> Result<(String, u64)> {
        self.clusters.register(name, labels, agent_version).await
    }

    /// Cordons or uncordons a cluster.
    pub async fn set_cordoned(&self, name: &str, cordoned: bool) -> Result<ClusterRecord> {
        // Uncordoned, it takes the work waiting for room (see `follow_clusters`).
        let (record, _) = self.clusters.set_cordoned(name, cordoned).await?;
        Ok(record)
    }

    /// Attaches an agent stream to `cluster` if `token` is its current session.
    pub async fn attach_session(&self, cluster: &str, token: &str) -> Result<Arc<SessionInbox>> {
        self.clusters.attach(cluster, token).await?;
        let inbox = self.jobs.subscribe_cluster(cluster);
        self.metrics.agent_sessions.inc();
        Ok(inbox)
    }

    /// Detaches a stream; a newer session of the cluster is left alone.
    pub async fn detach_session(&self, cluster: &str, token: &str, inbox: &Arc<SessionInbox>) {
        let last = self.jobs.unsubscribe_cluster(cluster, inbox);
        self.clusters.detach(cluster, token, last).await;
        self.metrics.agent_sessions.dec();
    }

    /// Whether `token` is still the cluster's session (a newer Register replaces it).
    pub fn session_current(&self, cluster: &str, token: &str) -> bool {
        self.clusters.session_current(cluster, token)
    }

    /// Records a heartbeat (any message) from `cluster`'s agent.
    pub async fn heartbeat(&self, cluster: &str) {
        if let Some(t) = self.clusters.heartbeat(cluster).await {
            self.on_transitions(vec![t]).await;
        }
    }

    /// Checks every cluster's heartbeats; called periodically.
    pub async fn check_clusters(&self) {
        let transitions = self.clusters.check().await;
        if !transitions.is_empty() {
            self.on_transitions(transitions).await;
        }
    }

    /// Follows the clusters until `shutdown`: each change of the cluster table, and the
    /// capacity reports that arrived meanwhile (taken into the planner's views here, at most
    /// once per [`CLUSTER_CHANGES_EVERY`], so that a thousand clusters reporting cost one
    /// rebuild), lets the leader place the work that waited for a cluster to become eligible.
    pub async fn follow_clusters(self: Arc<Self>, shutdown: Shutdown) {
        let mut before = self.cluster_views();
        loop {
            tokio::select! {
                _ = self.clusters.changed() => {}
                _ = shutdown.fired() => return,
            }
            self.clusters.take_in_capacity();
            let after = self.cluster_views();
            if self.is_leader() {
                self.place_waiting(&before, &after).await;
            }
            before = after;
            tokio::select! {
                _ = tokio::time::sleep(CLUSTER_CHANGES_EVERY) => {}
                _ = shutdown.fired() => return,
            }
        }
    }

    /// Plans again the Jobs with work waiting for room that the change from `before` to
    /// `after` may place ([`planner::room_appeared`]).
    async fn place_waiting(&self, before: &Clusters, after: &Clusters) {
        let keys: Vec<String> = self
            .jobs
            .with_index(|i| i.needing_room())
            .into_iter()
            .filter(|key| {
                self.job(key)
                    .is_some_and(|j| planner::room_appeared(&j.record, before, after))
            })
            .collect();
        if !keys.is_empty() {
            info!(
                jobs = keys.len(),
                "clusters became eligible: placing waiting work"
            );
            self.reconcile_jobs(keys).await;
        }
    }

    /// Acts on clusters that changed state: watchers see it, and the Jobs it affects are
    /// planned again (by the leader alone, so a failover is planned once).
    pub async fn on_transitions(&self, transitions: Vec<Transition>) {
        let leader = self.is_leader();
        let mut keys = HashSet::new();
        for t in &transitions {
            match t {
                Transition::Ready(c) => {
                    // Work waiting for room follows in `follow_clusters`.
                    info!(cluster = %c, "cluster Ready");
                    keys.extend(self.jobs_in_cluster(c));
                }
                Transition::NotReady(c) => {
                    warn!(cluster = %c, grace = ?self.settings.cluster_grace, "cluster NotReady: heartbeats stopped");
                    // Nothing is stored of it; watchers see the placement state change.
                    for key in self.jobs_in_cluster(c) {
                        self.jobs.announce(&key);
                    }
                }
                Transition::Lost(_) if !leader => {}
                Transition::Lost(c) => {
                    warn!(cluster = %c, "cluster lost: work with rebalance: true moves elsewhere");
                    self.clusters.raise_epoch(c).await;
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
}
