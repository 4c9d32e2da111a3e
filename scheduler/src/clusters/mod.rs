//! Member clusters: what is stored of them ([`ClusterRecord`]), their liveness
//! ([`ClusterTable`]), and the one owner of both, [`ClusterRegistry`]: registration, cordon,
//! agent sessions and heartbeats.
//!
//! The planner reads the clusters as one shared snapshot ([`ClusterRegistry::views`], the
//! price of an `Arc` clone) that carries each cluster's latest reported capacity by reference.
//! A change of the table rebuilds it at once; capacity reports only signal
//! ([`ClusterRegistry::changed`]), and whoever follows the clusters folds the reports that
//! arrived meanwhile into one rebuild ([`ClusterRegistry::take_in_capacity`]).

pub mod capacity;
pub mod pending;
mod table;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

pub use self::table::{
    ClusterEntry, ClusterRecord, ClusterTable, SessionSlot, ShardCounts, Transition,
};
use crate::coordination::Coordinator;
use crate::error::{ControlPlaneError, Result};
use crate::model::clusters::Clusters;
use crate::records::{self, CLUSTERS_PREFIX, LIVE_PREFIX, LiveRecord};
use crate::store::{KeyValue, Op, Precondition, Revision, Store};

/// How long clusters may be silent.
#[derive(Debug, Clone)]
pub struct Liveness {
    /// How long a cluster may be silent before it is NotReady.
    pub grace: Duration,
    /// How long a NotReady cluster waits before its work moves (`rebalance: true`).
    pub failover_after: Duration,
    /// Interval agents are told to heartbeat at.
    pub heartbeat_interval: Duration,
}

/// Every member cluster: the stored records, liveness, sessions, and what the planner sees.
pub struct ClusterRegistry {
    store: Arc<dyn Store>,
    liveness: Liveness,
    /// Present when several replicas share the store (etcd): shared liveness and sessions.
    coordinator: Option<Arc<Coordinator>>,
    table: Mutex<ClusterTable>,
    /// What the planner sees, rebuilt on every change of the table and when capacity reports
    /// are taken in.
    views: RwLock<Arc<Clusters>>,
    /// Told of every change of the table; a change made while nobody waits is kept.
    changed: Notify,
    /// The free capacity agents report.
    capacity: capacity::CapacityBook,
    /// The shards agents report unschedulable.
    pending: pending::PendingBook,
}

impl ClusterRegistry {
    /// Loads every cluster (and, with replicas, every liveness record) from `store`; returns
    /// the registry and the revision the listings are complete up to.
    pub async fn load(
        store: Arc<dyn Store>,
        liveness: Liveness,
        coordinator: Option<Arc<Coordinator>>,
    ) -> Result<(Self, Revision)> {
        let clusters = store.list(CLUSTERS_PREFIX).await?;
        let mut loaded_at = clusters.revision;
        let mut loaded = Vec::new();
        for kv in clusters.items {
            let record: ClusterRecord = records::decode(&kv.key, &kv.value)?;
            loaded.push((record, kv.mod_revision));
        }
        let mut table = ClusterTable::load(loaded, Instant::now(), coordinator.is_some());
        if let Some(c) = &coordinator {
            table = table.unanswered_for(liveness.grace.saturating_sub(c.ttl()));
        }
        if coordinator.is_some() {
            let live = store.list(LIVE_PREFIX).await?;
            loaded_at = loaded_at.min(live.revision);
            for kv in live.items {
                let name = kv.key.trim_start_matches(LIVE_PREFIX);
                table.set_live(name, LiveRecord::of(Some(&kv.value)), Instant::now());
            }
        }
        let views = RwLock::new(Arc::new(table.views()));
        let registry = Self {
            store,
            liveness,
            coordinator,
            table: Mutex::new(table),
            views,
            changed: Notify::new(),
            capacity: capacity::CapacityBook::default(),
            pending: pending::PendingBook::default(),
        };
        Ok((registry, loaded_at))
    }

    /// How long clusters may be silent.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// The free capacity agents report.
    pub fn capacity(&self) -> &capacity::CapacityBook {
        &self.capacity
    }

    /// The shards agents report unschedulable.
    pub fn pending(&self) -> &pending::PendingBook {
        &self.pending
    }

    /// What the planner sees of the clusters now, with the capacity each agent reported
    /// (what `dynamicWeight` and spill-over weigh by) as of the last rebuild.
    pub fn views(&self) -> Arc<Clusters> {
        self.views.read().clone()
    }

    /// Runs `f` over the cluster table.
    pub fn with_table<T>(&self, f: impl FnOnce(&ClusterTable) -> T) -> T {
        f(&self.table.lock())
    }

    /// Returns when the table changed or a capacity report arrived since the last call
    /// returned (at once if one did meanwhile). One waiter.
    pub async fn changed(&self) {
        tokio::select! {
            _ = self.changed.notified() => {}
            _ = self.capacity.changed() => {}
        }
    }

    /// Rebuilds the views with the capacity reported up to now.
    pub fn take_in_capacity(&self) {
        self.rebuild_views();
    }

    /// Rebuilds the views after a change of the table, and says so.
    fn refresh_views(&self) {
        self.rebuild_views();
        self.changed.notify_one();
    }

    fn rebuild_views(&self) {
        // Built under the write lock, so that a slower rebuild never replaces a newer one.
        let mut views = self.views.write();
        let mut next = self.table.lock().views();
        self.capacity.fill(&mut next);
        *views = Arc::new(next);
    }

    /// The stored record of `name` and its revision.
    fn record(&self, name: &str) -> Option<(ClusterRecord, u64)> {
        self.table
            .lock()
            .get(name)
            .map(|e| (e.record.clone(), e.mod_revision))
    }

    async fn write(&self, record: ClusterRecord, precondition: Precondition) -> Result<()> {
        let revision = self
            .store
            .txn(vec![Op::put(
                records::cluster_key(&record.name),
                records::encode_value(&record),
                precondition,
            )])
            .await?;
        self.table.lock().upsert(record, revision, Instant::now());
        self.refresh_views();
        Ok(())
    }

    // ------------------------------------------------------------------ registration

    /// Registers (or re-registers) a cluster and hands out a session token; returns it with
    /// the cluster's epoch.
    pub async fn register(
        &self,
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
        if let Some(e) = self.table.lock().get(name)
            && e.session.as_ref().is_some_and(|s| s.attached)
            && e.ready
            && e.last_heartbeat.elapsed() < self.liveness.heartbeat_interval * 3
        {
            return Err(ControlPlaneError::FailedPrecondition(format!(
                "cluster \"{name}\" is connected from another agent; a cluster name is unique"
            )));
        }
        let current = self.record(name);
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
            self.write(record.clone(), precondition).await?;
        }
        let token = uuid::Uuid::new_v4().to_string();
        if let Some(e) = self.table.lock().get_mut(name) {
            e.session = Some(SessionSlot {
                token: token.clone(),
                attached: false,
            });
        }
        info!(cluster = name, "registered");
        Ok((token, record.epoch))
    }

    /// Cordons or uncordons a cluster; returns its record and whether it changed.
    pub async fn set_cordoned(&self, name: &str, cordoned: bool) -> Result<(ClusterRecord, bool)> {
        let Some((mut record, rev)) = self.record(name) else {
            return Err(ControlPlaneError::NotFound {
                kind: "clusters",
                name: name.to_owned(),
            });
        };
        if record.cordoned == cordoned {
            return Ok((record, false));
        }
        record.cordoned = cordoned;
        self.write(record.clone(), Precondition::ModRevision(rev))
            .await?;
        info!(cluster = name, cordoned, "cordon changed");
        Ok((record, true))
    }

    /// Raises a lost cluster's epoch, fencing what it ran before: shards planned there from
    /// now on carry the new one, and its agent learns on return that older ones moved.
    pub async fn raise_epoch(&self, name: &str) {
        if let Some((mut record, rev)) = self.record(name) {
            record.epoch += 1;
            if let Err(e) = self.write(record, Precondition::ModRevision(rev)).await {
                warn!(cluster = %name, error = %e, "epoch not raised");
            }
        }
    }

    // ------------------------------------------------------------------ sessions

    /// Marks `cluster`'s session attached if `token` is its current one.
    pub async fn attach(&self, cluster: &str, token: &str) -> Result<()> {
        {
            let mut table = self.table.lock();
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
        Ok(())
    }

    /// Marks `cluster`'s session `token` detached; with `last`, no newer session of the
    /// cluster has a stream here, and other replicas learn that none is attached.
    pub async fn detach(&self, cluster: &str, token: &str, last: bool) {
        if last && let Some(c) = &self.coordinator {
            c.detach(cluster).await;
        }
        if let Some(s) = self
            .table
            .lock()
            .get_mut(cluster)
            .and_then(|e| e.session.as_mut())
            && s.token == token
        {
            s.attached = false;
        }
    }

    /// Whether `token` is still the cluster's session (a newer Register replaces it).
    pub fn session_current(&self, cluster: &str, token: &str) -> bool {
        self.table
            .lock()
            .get(cluster)
            .and_then(|e| e.session.as_ref())
            .is_some_and(|s| s.token == token)
    }

    // ------------------------------------------------------------------ liveness

    /// Records a heartbeat (any message) from `cluster`'s agent.
    pub async fn heartbeat(&self, cluster: &str) -> Option<Transition> {
        let transition = self.table.lock().heartbeat(cluster, Instant::now());
        if transition.is_some() {
            self.refresh_views();
        }
        if let Some(c) = &self.coordinator {
            c.heard(cluster).await;
        }
        transition
    }

    /// Checks every cluster's heartbeats; returns the clusters whose state changed. With
    /// replicas, only the leader finds transitions (from the shared records), besides the
    /// clusters no replica answered for during the grace; every replica marks silent the
    /// liveness records of the agents that fell silent on it.
    pub async fn check(&self) -> Vec<Transition> {
        if let Some(c) = &self.coordinator {
            // Liveness this replica answers for: silent agents' records say so, and every
            // replica learns it from the store.
            let quiet = self.table.lock().quiet(Instant::now(), self.liveness.grace);
            for cluster in quiet.iter().filter(|q| c.owns(q)) {
                warn!(cluster = %cluster, "no heartbeat for the grace period");
                c.silent(cluster).await;
            }
            if !c.is_leader() {
                let orphaned = self.table.lock().expire_unanswered(Instant::now());
                if !orphaned.is_empty() {
                    self.refresh_views();
                }
                return orphaned;
            }
        }
        let transitions = self.table.lock().check(
            Instant::now(),
            self.liveness.grace,
            self.liveness.failover_after,
        );
        if !transitions.is_empty() {
            self.refresh_views();
        }
        transitions
    }

    // ------------------------------------------------------------------ replication

    /// Takes in a cluster record written to the store (by this or another replica).
    pub fn apply_record(&self, kv: &KeyValue) -> Result<()> {
        let record: ClusterRecord = records::decode(&kv.key, &kv.value)?;
        self.table
            .lock()
            .upsert(record, kv.mod_revision, Instant::now());
        self.refresh_views();
        Ok(())
    }

    /// Takes in a liveness record written (`value`: the replica that wrote it, see
    /// [`LiveRecord`]) or removed (`None`) in the store.
    pub fn apply_live(&self, name: &str, value: Option<&[u8]>) -> Option<Transition> {
        if let (Some(writer), Some(c)) = (value, &self.coordinator)
            && writer != c.replica().as_bytes()
        {
            c.disown(name);
        }
        let transition = self
            .table
            .lock()
            .set_live(name, LiveRecord::of(value), Instant::now());
        if transition.is_some() {
            self.refresh_views();
        }
        transition
    }

    /// Reads every cluster record, and every liveness record with replicas, again; returns the
    /// liveness transitions and the revision the listings are complete up to.
    pub async fn resync(&self) -> Result<(Vec<Transition>, Revision)> {
        let clusters = self.store.list(CLUSTERS_PREFIX).await?;
        let mut revision = clusters.revision;
        for kv in &clusters.items {
            self.apply_record(kv)?;
        }
        let mut transitions = Vec::new();
        if self.coordinator.is_some() {
            let live = self.store.list(LIVE_PREFIX).await?;
            revision = revision.min(live.revision);
            let live: HashMap<&str, &[u8]> = live
                .items
                .iter()
                .map(|kv| (kv.key.trim_start_matches(LIVE_PREFIX), &kv.value[..]))
                .collect();
            let mut table = self.table.lock();
            let names: Vec<String> = table.iter().map(|e| e.record.name.clone()).collect();
            for name in names {
                let record = LiveRecord::of(live.get(name.as_str()).copied());
                transitions.extend(table.set_live(&name, record, Instant::now()));
            }
        }
        self.refresh_views();
        Ok((transitions, revision))
    }
}
