//! Several scheduler replicas on one etcd: who leads, and which clusters are alive.
//!
//! Every replica holds one etcd lease, kept alive while the process runs. On it hang:
//! - `leader`: the replica that does the work that must happen once (NotReady→lost detection,
//!   failover, TTL clean-up). Whoever creates the key leads; the others try again every quarter
//!   of the lease TTL, so a dead leader is replaced within the TTL and a little more;
//! - `live/CLUSTER`: the cluster is Ready. Written by the replica its agent heartbeats to,
//!   deleted by it when the heartbeats stop for the grace period, and gone with the lease if that
//!   replica dies — so every replica can tell whether a cluster is Ready;
//! - `sessions/CLUSTER`: the replica an agent stream of the cluster is attached to, so a second
//!   agent claiming the name on another replica is refused.
//!
//! If the lease is lost (etcd unreachable for a TTL), the replica stops leading, takes a new
//! lease and writes its keys again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::records::{LEADER_KEY, SILENT, live_key, session_key};
use crate::store::etcd::{Creation, EtcdStore, LeaseId, LeaseState};
use crate::store::{Precondition, Store, StoreError};
use fedjob_proto::shutdown::Shutdown;

/// This replica's part in the coordination of several.
pub struct Coordinator {
    store: Arc<EtcdStore>,
    /// Identifies this replica in `leader`, `live/` and `sessions/` values.
    replica: String,
    lease: Mutex<LeaseId>,
    leader: watch::Sender<bool>,
    /// Clusters whose `live/` key this replica wrote and must delete when they fall silent.
    owned: Mutex<HashSet<String>>,
    /// Clusters whose agent stream is attached here.
    attached: Mutex<HashSet<String>>,
    ttl: Duration,
}

impl Coordinator {
    /// Takes a lease of `ttl` and starts the election as one of `tasks`; runs until
    /// `shutdown`, then gives the lease back (so the store must stay open until it ended).
    pub async fn start(
        store: Arc<EtcdStore>,
        ttl: Duration,
        shutdown: Shutdown,
        tasks: &TaskTracker,
    ) -> Result<Arc<Self>, StoreError> {
        let replica = uuid::Uuid::new_v4().to_string();
        let granted_at = tokio::time::Instant::now();
        let lease = store.grant_lease(ttl).await?;
        let keeper = store.keep_alive(lease, granted_at);
        let (leader, _) = watch::channel(false);
        let this = Arc::new(Self {
            store,
            replica,
            lease: Mutex::new(lease.id),
            leader,
            owned: Mutex::new(HashSet::new()),
            attached: Mutex::new(HashSet::new()),
            ttl: lease.ttl.max(ttl),
        });
        info!(replica = %this.replica, ttl = ?this.ttl, "coordinating with other replicas through etcd");
        tasks.spawn(this.clone().run(keeper, shutdown));
        Ok(this)
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Notified when leadership changes.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    async fn run(self: Arc<Self>, mut keeper: crate::store::etcd::LeaseKeeper, shutdown: Shutdown) {
        let poll = self.ttl / 4;
        loop {
            let mut state = keeper.subscribe();
            loop {
                if matches!(*state.borrow(), LeaseState::Expired) {
                    break;
                }
                self.try_lead().await;
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = state.changed() => {}
                    _ = shutdown.fired() => {
                        self.leader.send_replace(false);
                        let _ = keeper.revoke().await;
                        return;
                    }
                }
            }
            warn!(replica = %self.replica, "etcd lease lost: no longer leading; taking a new lease");
            self.leader.send_replace(false);
            keeper = loop {
                let granted_at = tokio::time::Instant::now();
                match self.store.grant_lease(self.ttl).await {
                    Ok(lease) => {
                        *self.lease.lock() = lease.id;
                        break self.store.keep_alive(lease, granted_at);
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot take an etcd lease; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(poll) => {}
                            _ = shutdown.fired() => return,
                        }
                    }
                }
            };
            // The old lease took our keys with it: write them again.
            let owned: Vec<String> = self.owned.lock().iter().cloned().collect();
            for cluster in owned {
                self.write_live(&cluster).await;
            }
            let attached: Vec<String> = self.attached.lock().iter().cloned().collect();
            for cluster in attached {
                let _ = self.put_leased(&session_key(&cluster)).await;
            }
        }
    }

    async fn try_lead(&self) {
        let lease = *self.lease.lock();
        let leading = match self
            .store
            .create_if_absent(LEADER_KEY, self.replica.clone(), lease)
            .await
        {
            Ok(Creation::Created(_)) => true,
            Ok(Creation::Exists(kv)) => kv.value == self.replica.as_bytes(),
            Err(e) => {
                warn!(error = %e, "leader election: etcd did not answer");
                false
            }
        };
        let was = self.leader.send_replace(leading);
        if was != leading {
            info!(replica = %self.replica, leading, "leadership changed");
        }
    }

    async fn put_leased(&self, key: &str) -> Result<(), StoreError> {
        let lease = *self.lease.lock();
        self.store
            .put_with_lease(key, self.replica.clone(), Precondition::Any, lease)
            .await
            .map(|_| ())
    }

    /// Marks `cluster` live (its agent heartbeats to this replica); a no-op while it already
    /// is, as far as this replica wrote it.
    pub async fn heard(&self, cluster: &str) {
        if self.owned.lock().insert(cluster.to_owned()) {
            self.write_live(cluster).await;
        }
    }

    async fn write_live(&self, cluster: &str) {
        if let Err(e) = self.put_leased(&live_key(cluster)).await {
            warn!(cluster, error = %e, "cannot record the cluster as live");
            self.owned.lock().remove(cluster);
        }
    }

    /// Whether this replica answers for `cluster`'s liveness.
    pub fn owns(&self, cluster: &str) -> bool {
        self.owned.lock().contains(cluster)
    }

    /// Another replica wrote `cluster`'s liveness: it answers for it now.
    pub fn disown(&self, cluster: &str) {
        self.owned.lock().remove(cluster);
    }

    /// How long this replica's lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `cluster`'s agent fell silent here: marks its liveness record silent (removing it
    /// would read, elsewhere, as this replica's death; see [`LiveRecord`]).
    pub async fn silent(&self, cluster: &str) {
        if !self.owned.lock().remove(cluster) {
            return;
        }
        let key = live_key(cluster);
        // Delete only our own record: another replica may have taken the cluster over.
        match self.store.get(&key).await {
            Ok(Some(kv)) if kv.value == self.replica.as_bytes() => {
                let lease = *self.lease.lock();
                let value = [self.replica.as_bytes(), SILENT].concat();
                let precondition = Precondition::ModRevision(kv.mod_revision);
                let _ = self
                    .store
                    .put_with_lease(key, value, precondition, lease)
                    .await;
            }
            Ok(_) => {}
            Err(e) => warn!(cluster, error = %e, "cannot remove the liveness record"),
        }
    }

    /// Which replica, if another one, has an agent stream of `cluster` attached.
    pub async fn attached_elsewhere(&self, cluster: &str) -> Result<Option<String>, StoreError> {
        let kv = self.store.get(&session_key(cluster)).await?;
        Ok(kv
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .filter(|replica| replica != &self.replica))
    }

    /// Records that an agent stream of `cluster` is attached here.
    pub async fn attach(&self, cluster: &str) -> Result<(), StoreError> {
        self.attached.lock().insert(cluster.to_owned());
        self.put_leased(&session_key(cluster)).await
    }

    /// Records that the stream of `cluster` left this replica.
    pub async fn detach(&self, cluster: &str) {
        self.attached.lock().remove(cluster);
        let key = session_key(cluster);
        if let Ok(Some(kv)) = self.store.get(&key).await
            && kv.value == self.replica.as_bytes()
        {
            let _ = crate::store::delete(
                self.store.as_ref(),
                key,
                Precondition::ModRevision(kv.mod_revision),
            )
            .await;
        }
    }
}
