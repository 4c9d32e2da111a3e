//! The Kubernetes API's watch cache of federated Jobs, as the API server keeps one over etcd:
//! the current Jobs and a bounded history of their changes, fed from the control plane's
//! change stream. Lists and watches are served from it, so a watch from a list's
//! `resourceVersion` sees exactly the changes after that list.
//!
//! A watch from a version older than the history holds gets `410 Expired` (so does every watch
//! from before the scheduler started); a watcher whose cursor falls out of the history gets the
//! same, as from the real server after a compaction. When the control plane's stream lags, the
//! cache re-reads every Job and records what changed as events, as a reflector re-lists.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use super::view::JobView;
use crate::control_plane::{ControlPlane, JobChange};
use crate::kube_api::watch::EventType;
use fedjob_proto::shutdown::Shutdown;

/// Changes kept for watches that start from a version or fall behind (the API server's watch
/// cache keeps 100 per resource by default; Jobs change with every shard report, so more).
pub const HISTORY: usize = 4096;

/// One change in the history.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its place in the history (watch cursors count these).
    pub seq: u64,
    /// What happened.
    pub ty: EventType,
    /// The Job after the change (for a deletion, its last state at the deletion's version).
    pub view: Arc<JobView>,
    /// The Job before the change, for selectors that stop (or start) matching.
    pub prev: Option<Arc<JobView>>,
}

/// Changes read from the history: the events, the cursor after them, and the version every
/// change up to that cursor has reached.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The changes, in the order they happened.
    pub events: Vec<Event>,
    /// The cursor of the next change.
    pub next: u64,
    /// The latest version when they were read.
    pub rv: u64,
}

/// A version the history no longer reaches: `(requested, oldest)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld(pub u64, pub u64);

struct State {
    objects: BTreeMap<String, Arc<JobView>>,
    history: VecDeque<Event>,
    next_seq: u64,
    /// Changes at or below this version may have left the history.
    compacted: u64,
    /// The latest version seen.
    rv: u64,
    capacity: usize,
}

/// Current Jobs and their recent changes; see the module documentation.
pub struct JobCache {
    state: Mutex<State>,
    /// The sequence number the next event gets, for watchers to wait on.
    changed: watch::Sender<u64>,
}

impl JobCache {
    /// A cache of `cp`'s Jobs keeping `capacity` changes, fed until `shutdown` by one of
    /// `tasks`.
    pub fn start(
        cp: Arc<ControlPlane>,
        capacity: usize,
        shutdown: Shutdown,
        tasks: &TaskTracker,
    ) -> Arc<Self> {
        // Subscribed before the first read, so no change falls between the two.
        let changes = cp.subscribe();
        let views = cp.cluster_views();
        let mut objects = BTreeMap::new();
        let mut rv = cp.store().revision();
        for job in cp.jobs(None) {
            let view = JobView::of(&job, &views);
            rv = rv.max(view.rv);
            objects.insert(view.key(), Arc::new(view));
        }
        let cache = Arc::new(Self {
            state: Mutex::new(State {
                objects,
                history: VecDeque::new(),
                next_seq: 0,
                compacted: rv,
                rv,
                capacity: capacity.max(1),
            }),
            changed: watch::channel(0).0,
        });
        tasks.spawn(feed(cache.clone(), cp, changes, shutdown));
        cache
    }

    /// Receives the next event's sequence number whenever an event is added.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The latest version seen.
    pub fn rv(&self) -> u64 {
        self.state.lock().rv
    }

    /// The Jobs of `namespace` (all when `None`) in key order, the version they are at, and
    /// the cursor of the changes after them.
    pub fn snapshot(&self, namespace: Option<&str>) -> (Vec<Arc<JobView>>, u64, u64) {
        let state = self.state.lock();
        let items = state
            .objects
            .values()
            .filter(|v| namespace.is_none_or(|ns| v.namespace == ns))
            .cloned()
            .collect();
        (items, state.rv, state.next_seq)
    }

    /// The changes after version `rv`.
    pub fn since(&self, rv: u64) -> Result<Batch, TooOld> {
        let state = self.state.lock();
        if rv < state.compacted {
            return Err(TooOld(rv, state.compacted));
        }
        let events = state
            .history
            .iter()
            .filter(|e| e.view.rv > rv)
            .cloned()
            .collect();
        Ok(state.batch(events))
    }

    /// The changes from cursor `seq` on; `TooOld` when some of them left the history.
    pub fn after(&self, seq: u64) -> Result<Batch, TooOld> {
        let state = self.state.lock();
        let first = state.history.front().map_or(state.next_seq, |e| e.seq);
        if seq < first {
            return Err(TooOld(seq, state.compacted));
        }
        let skip = usize::try_from(seq - first).unwrap_or(usize::MAX);
        let events = state.history.iter().skip(skip).cloned().collect();
        Ok(state.batch(events))
    }

    /// Waits up to `timeout` for the cache to reach version `rv`; false if it did not.
    pub async fn wait_for(&self, rv: u64, timeout: Duration) -> bool {
        let mut changed = self.subscribe();
        let reached = async {
            loop {
                if self.rv() >= rv {
                    return;
                }
                if changed.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, reached).await.is_ok()
    }

    /// Records the control plane's change.
    fn apply(&self, change: &JobChange, cp: &ControlPlane) {
        let mut state = self.state.lock();
        let prev = state.objects.get(&change.key).cloned();
        match &change.job {
            Some(job) => {
                if prev.as_ref().is_some_and(|p| p.rv >= job.mod_revision) {
                    // Nothing stored changed (a cluster's state did), or already recorded.
                    return;
                }
                let view = Arc::new(JobView::of(job, &cp.cluster_views()));
                let ty = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                state.objects.insert(change.key.clone(), view.clone());
                state.push(ty, view, prev);
            }
            None => {
                let Some(prev) = prev else { return };
                state.objects.remove(&change.key);
                let rv = change.revision.max(prev.rv);
                state.push(
                    EventType::Deleted,
                    Arc::new(at_version(&prev, rv)),
                    Some(prev),
                );
            }
        }
        let next = state.next_seq;
        drop(state);
        self.changed.send_replace(next);
    }

    /// Brings the cache up to `cp`'s Jobs after the change stream lost some changes.
    fn resync(&self, cp: &ControlPlane) {
        let views = cp.cluster_views();
        let jobs = cp.jobs(None);
        let store_rv = cp.store().revision();
        let mut state = self.state.lock();
        let mut present = std::collections::HashSet::new();
        for job in jobs {
            let key = job.record.key();
            present.insert(key.clone());
            let prev = state.objects.get(&key).cloned();
            if prev.as_ref().is_some_and(|p| p.rv >= job.mod_revision) {
                continue;
            }
            let view = Arc::new(JobView::of(&job, &views));
            let ty = if prev.is_some() {
                EventType::Modified
            } else {
                EventType::Added
            };
            state.objects.insert(key, view.clone());
            state.push(ty, view, prev);
        }
        let gone: Vec<String> = state
            .objects
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(prev) = state.objects.remove(&key) {
                let rv = store_rv.max(state.rv);
                state.push(
                    EventType::Deleted,
                    Arc::new(at_version(&prev, rv)),
                    Some(prev),
                );
            }
        }
        let next = state.next_seq;
        drop(state);
        self.changed.send_replace(next);
    }
}

impl State {
    fn batch(&self, events: Vec<Event>) -> Batch {
        Batch {
            events,
            next: self.next_seq,
            rv: self.rv,
        }
    }

    fn push(&mut self, ty: EventType, view: Arc<JobView>, prev: Option<Arc<JobView>>) {
        self.rv = self.rv.max(view.rv);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.history.push_back(Event {
            seq,
            ty,
            view,
            prev,
        });
        while self.history.len() > self.capacity {
            if let Some(old) = self.history.pop_front() {
                self.compacted = self.compacted.max(old.view.rv);
            }
        }
    }
}

/// `view` as of version `rv` (a deleted Job's last state carries the deletion's version).
fn at_version(view: &JobView, rv: u64) -> JobView {
    let mut value: Value = view.value();
    value["metadata"]["resourceVersion"] = json!(rv.to_string());
    JobView {
        rv,
        json: bytes::Bytes::from(value.to_string()),
        ..view.clone()
    }
}

async fn feed(
    cache: Arc<JobCache>,
    cp: Arc<ControlPlane>,
    mut changes: tokio::sync::broadcast::Receiver<Arc<JobChange>>,
    shutdown: Shutdown,
) {
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = shutdown.fired() => return,
        };
        match change {
            Ok(change) => cache.apply(&change, &cp),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "kube api: job changes lagged; re-reading every Job");
                cache.resync(&cp);
            }
            Err(RecvError::Closed) => return,
        }
    }
}
