//! Keeps a replica's state in step with the store when other replicas write to it too.
//!
//! One watch over every key from the revision the state was loaded at: changes of Jobs written
//! elsewhere are re-read (this replica's own are published when written and skipped here),
//! cluster records and liveness records are applied as they come. If the watch history was
//! compacted away, everything is listed again and the watch restarts from there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::control_plane::{ControlPlane, ControlPlaneError};
use crate::records::{self, JOBS_PREFIX, KeyOf};
use crate::store::{Revision, StoreError, WatchEvent};
use fedjob_proto::shutdown::Shutdown;

/// Starts following the store as two of `tasks` (the watch, and the re-reading of Jobs changed
/// elsewhere); both stop at `shutdown` or when the store closes.
pub fn spawn(cp: Arc<ControlPlane>, shutdown: Shutdown, tasks: &TaskTracker) {
    let follower = Arc::new(Follower {
        cp,
        stale: Mutex::new(HashMap::new()),
        notify: Notify::new(),
    });
    let refresher = follower.clone();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        // Stopping between two Jobs is safe: a re-read only publishes what the store has.
        tokio::select! {
            _ = refresher.refresh_stale() => {}
            _ = stop.fired() => {}
        }
    });
    tasks.spawn(async move {
        let mut after = follower.cp.loaded_at();
        loop {
            let mut events = follower.cp.store().watch("", after);
            loop {
                let event = tokio::select! {
                    e = events.next() => e,
                    _ = shutdown.fired() => return,
                };
                match event {
                    Some(Ok(e)) => {
                        after = after.max(e.revision());
                        follower.apply(e).await;
                    }
                    Some(Err(StoreError::Compacted { .. })) => {
                        info!(after, "watch history compacted: listing everything again");
                        match follower.resync().await {
                            Ok(revision) => after = revision,
                            Err(e) => warn!(error = %e, "resync failed; retrying"),
                        }
                        break;
                    }
                    Some(Err(StoreError::Closed)) => return,
                    Some(Err(e)) => {
                        warn!(error = %e, after, "store watch failed; re-opening");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                    None => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                }
            }
        }
    });
}

/// A replica following the store: the Jobs other replicas changed, waiting to be re-read.
struct Follower {
    cp: Arc<ControlPlane>,
    /// Job key → the newest revision seen of it.
    stale: Mutex<HashMap<String, Revision>>,
    notify: Notify,
}

impl Follower {
    /// Applies one change seen in the store (written by this or another replica).
    async fn apply(&self, event: WatchEvent) {
        let revision = event.revision();
        match records::key_of(event.key()) {
            KeyOf::Job(job) => {
                // This replica's own writes are published already: only newer ones need a read.
                let known = self.cp.job(job).map_or(0, |j| j.mod_revision);
                if revision > known {
                    let mut stale = self.stale.lock();
                    let entry = stale.entry(job.to_owned()).or_insert(0);
                    *entry = (*entry).max(revision);
                    drop(stale);
                    self.notify.notify_one();
                }
            }
            KeyOf::Cluster(name) => {
                if let WatchEvent::Put(kv) = &event
                    && let Err(e) = self.cp.cluster_state().apply_record(kv)
                {
                    warn!(cluster = name, error = %e, "unreadable cluster record");
                }
            }
            KeyOf::Live(name) => {
                let writer = match &event {
                    WatchEvent::Put(kv) => Some(&kv.value[..]),
                    WatchEvent::Delete { .. } => None,
                };
                let transition = self.cp.cluster_state().apply_live(name, writer);
                if let Some(t) = transition {
                    self.cp.on_transitions(vec![t]).await;
                }
            }
            KeyOf::Other => {}
        }
    }

    /// Re-reads the Jobs other replicas changed; runs until the store closes.
    async fn refresh_stale(&self) {
        loop {
            self.notify.notified().await;
            let stale = std::mem::take(&mut *self.stale.lock());
            for (key, revision) in stale {
                if self
                    .cp
                    .job(&key)
                    .is_some_and(|j| j.mod_revision >= revision)
                {
                    continue;
                }
                match self.cp.job_state().refresh(&key).await {
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
    async fn resync(&self) -> Result<Revision, ControlPlaneError> {
        let jobs = self.cp.store().list(JOBS_PREFIX).await?;
        let listed: HashSet<String> = jobs
            .items
            .iter()
            .map(|kv| kv.key.trim_start_matches(JOBS_PREFIX).to_owned())
            .collect();
        let state = self.cp.job_state();
        let cached: Vec<String> = state.with_index(|i| i.keys().cloned().collect());
        for key in cached.iter().filter(|k| !listed.contains(*k)) {
            state.publish(key, None, jobs.revision);
        }
        for key in listed {
            state.refresh(&key).await?;
        }
        let (transitions, clusters_at) = self.cp.cluster_state().resync().await?;
        self.cp.on_transitions(transitions).await;
        Ok(jobs.revision.min(clusters_at))
    }
}
