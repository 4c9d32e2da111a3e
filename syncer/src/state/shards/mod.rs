//! The shards this syncer knows, in memory only: what the scheduler assigned (the *held*
//! assignment), what the cluster has (the *live* Job, from the watch), and what the scheduler
//! was last told. Nothing here is persisted: after a restart the table is rebuilt from the
//! labelled Jobs in the cluster, and the scheduler sends every assignment again.
//!
//! A Job is seen through the watch and through the answers to the workers' own requests; the
//! two are put in one order, the watch's (`order.rs`), never by comparing `resourceVersion`s,
//! which Kubernetes defines as opaque strings.
//!
//! All methods are synchronous and short; the lock is never held across an `await`.

mod entry;
mod order;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use fedjob_proto::v1::{Assignment, AssignmentAction, ShardStatus};
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::watcher;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use self::entry::Entry;
use crate::rules::assignment::{Held, Problem};
use crate::rules::decide::Plan;
use crate::rules::fence::{FenceStep, Standing};
use crate::rules::job;
use crate::rules::key::ShardKey;
use crate::rules::status;

/// A watch event on the shards of the cluster.
pub type WatchEvent = watcher::Event<Job>;

/// Most statuses in one report message.
pub const REPORT_CHUNK: usize = 500;

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<ShardKey, Entry>,
    dirty: Vec<ShardKey>,
    dirty_set: HashSet<ShardKey>,
    /// Keys listed since the watcher restarted, while it lists.
    relist: Option<HashSet<ShardKey>>,
    /// Where the syncer stands with the schedulers (self-fencing).
    standing: Standing,
}

impl Table {
    fn touch(&mut self, key: &ShardKey) {
        if self.dirty_set.insert(key.clone()) {
            self.dirty.push(key.clone());
        }
    }

    /// A labelled Job delivered by the watch. Returns whether the shard needs a reconcile.
    fn watched(&mut self, job: Job) -> bool {
        let entry = self.entries.entry(ShardKey::of(&job)).or_default();
        if !entry
            .order
            .delivered(job.metadata.resource_version.as_deref())
        {
            // From before a write whose answer the table holds already.
            return false;
        }
        self.live(job)
    }

    /// A labelled Job a worker read or wrote. Returns whether it was taken (newer than what
    /// the watch delivered).
    fn answered(&mut self, job: Job) -> bool {
        let Some(entry) = self.entries.get_mut(&ShardKey::of(&job)) else {
            // Forgotten meanwhile: the watch will tell if it matters.
            return false;
        };
        if !entry
            .order
            .answered(job.metadata.resource_version.as_deref())
        {
            // The watch delivered this version already, or newer ones.
            return false;
        }
        self.live(job);
        true
    }

    /// A labelled Job observed, current. Returns whether the shard needs a reconcile.
    fn live(&mut self, mut job: Job) -> bool {
        let standing = self.standing;
        // Nothing here reads who manages which field, nor the pod template (fixed at creation,
        // never compared): together they are most of a Job, times every shard.
        job.metadata.managed_fields = None;
        if let Some(spec) = job.spec.as_mut() {
            spec.template = Default::default();
        }
        let key = ShardKey::of(&job);
        let entry = self.entries.entry(key.clone()).or_default();
        entry.mark_seen(&job);
        entry.live = Some(Arc::new(job));
        if entry.live_is_ours().is_some() && matches!(entry.problem, Some(Problem::Conflict(_))) {
            entry.problem = None;
        }
        let needs = entry.needs_work(standing);
        self.touch(&key);
        needs
    }

    /// A labelled Job went away; `last` is its last state.
    fn gone(&mut self, key: &ShardKey, last: Option<Job>) -> bool {
        let standing = self.standing;
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let last = last.map(Arc::new).or_else(|| entry.live.clone());
        if let (Some(last), Some(live)) = (&last, &entry.live)
            && last.metadata.uid != live.metadata.uid
        {
            // The deletion of an incarnation already replaced by another one.
            return false;
        }
        entry.live = None;
        if let Some(last) = &last {
            entry.mark_seen(last);
        }
        entry.last = last;
        let needs = entry.needs_work(standing);
        self.touch(key);
        needs
    }
}

/// The shard table, shared by the watch, the workers and the connection.
#[derive(Debug)]
pub struct Shards {
    table: Mutex<Table>,
    changed: Notify,
    listed: watch::Sender<bool>,
}

impl Default for Shards {
    fn default() -> Self {
        Self::new()
    }
}

impl Shards {
    /// An empty table, not yet listed.
    pub fn new() -> Self {
        Self {
            table: Mutex::new(Table::default()),
            changed: Notify::new(),
            listed: watch::channel(false).0,
        }
    }

    /// Wakes whoever reports statuses.
    fn notify(&self) {
        self.changed.notify_one();
    }

    /// Resolves when some shard's status may have changed.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Whether the watch has finished its first list.
    pub fn is_listed(&self) -> bool {
        *self.listed.borrow()
    }

    /// Resolves once the watch has finished its first list: until then the inventory is not
    /// complete and must not be sent.
    pub async fn listed(&self) {
        let mut rx = self.listed.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Applies a watch event; returns the shards that need a reconcile (drift, or a Job of
    /// another federated Job gone from a shard's name).
    pub fn observe(&self, event: WatchEvent) -> Vec<ShardKey> {
        let mut out = Vec::new();
        let mut t = self.table.lock();
        match event {
            WatchEvent::Init => {
                t.relist = Some(HashSet::new());
                for entry in t.entries.values_mut() {
                    entry.order.relisted();
                }
            }
            WatchEvent::InitApply(job) => {
                let key = ShardKey::of(&job);
                if let Some(r) = t.relist.as_mut() {
                    r.insert(key.clone());
                }
                if t.watched(job) {
                    out.push(key);
                }
            }
            WatchEvent::InitDone => {
                let listed = t.relist.take().unwrap_or_default();
                let vanished: Vec<ShardKey> = t
                    .entries
                    .iter()
                    .filter(|(k, e)| e.live.is_some() && !listed.contains(*k))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in vanished {
                    if t.gone(&key, None) {
                        out.push(key);
                    }
                }
                drop(t);
                if !self.is_listed() {
                    info!(shards = listed.len(), "initial list of local shards done");
                }
                self.listed.send_replace(true);
                self.notify();
                return out;
            }
            WatchEvent::Apply(job) => {
                let key = ShardKey::of(&job);
                if t.watched(job) {
                    out.push(key);
                }
            }
            WatchEvent::Delete(job) => {
                let key = ShardKey::of(&job);
                debug!(shard = %key, "local Job deleted");
                if let Some(entry) = t.entries.get_mut(&key) {
                    // A deletion is final for its incarnation; its version still counts.
                    entry
                        .order
                        .delivered(job.metadata.resource_version.as_deref());
                }
                if t.gone(&key, Some(job)) {
                    out.push(key);
                }
            }
        }
        drop(t);
        self.notify();
        out
    }

    /// Takes an assignment from the scheduler; returns whether the shard needs a reconcile.
    /// `only_namespace` is the namespace this syncer is restricted to, if any.
    pub fn assign(&self, a: &Assignment, only_namespace: Option<&str>) -> bool {
        let key = ShardKey::new(a.namespace.clone(), a.shard.clone());
        let Ok(action) = AssignmentAction::try_from(a.action) else {
            warn!(shard = %key, action = a.action, "assignment with an unknown action ignored");
            return false;
        };
        let mut t = self.table.lock();
        if action == AssignmentAction::Forget || action == AssignmentAction::Unspecified {
            if let Some(entry) = t.entries.get_mut(&key) {
                info!(shard = %key, job_uid = %a.job_uid, action = "FORGET", "no longer managing the shard");
                entry.held = None;
                entry.problem = None;
                entry.forgotten = true;
                if entry.removable() {
                    t.entries.remove(&key);
                }
            }
            return false;
        }
        let entry = t.entries.entry(key.clone()).or_default();
        if let Some(h) = &entry.held
            && h.job_uid == a.job_uid
            && h.revision > a.revision
        {
            debug!(shard = %key, held = h.revision, got = a.revision, "stale assignment ignored");
            return false;
        }
        let held = Held::from_assignment(a, action, only_namespace);
        if let Some(Problem::Error { reason, message }) = &held.refused {
            warn!(shard = %key, job_uid = %a.job_uid, revision = a.revision, reason, error = %message, "assignment refused");
        }
        debug!(shard = %key, job_uid = %a.job_uid, revision = a.revision, action = action.as_str_name(), create = a.create, "assignment");
        entry.forgotten = false;
        if entry
            .held
            .as_ref()
            .is_some_and(|h| h.job_uid != a.job_uid || h.revision != a.revision)
        {
            entry.failures = 0;
        }
        entry.held = Some(held);
        t.touch(&key);
        drop(t);
        self.notify();
        true
    }

    /// What a worker needs to reconcile `key`; `None` when nothing is held for it.
    pub fn plan(&self, key: &ShardKey) -> Option<Plan> {
        let t = self.table.lock();
        t.entries.get(key).and_then(|e| e.plan(t.standing))
    }

    /// What the self-fence asks of `key` now.
    pub fn fence_step(&self, key: &ShardKey) -> Option<FenceStep> {
        let t = self.table.lock();
        t.entries.get(key).and_then(|e| e.fence_step(t.standing))
    }

    /// Where the syncer stands with the schedulers.
    pub fn standing(&self) -> Standing {
        self.table.lock().standing
    }

    /// Raises the fence (the lease ran out); returns the shards to suspend.
    pub fn fence(&self) -> Vec<ShardKey> {
        let mut t = self.table.lock();
        t.standing = Standing::Fenced;
        t.entries
            .iter()
            .filter(|(_, e)| e.fence_step(Standing::Fenced).is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// A session is in sync: lifts the fence, if it was up. Returns the standing before and
    /// the shards that need a worker now (to resume, or held back while fenced).
    pub fn in_sync(&self) -> (Standing, Vec<ShardKey>) {
        let mut t = self.table.lock();
        let before = std::mem::replace(&mut t.standing, Standing::InSync);
        if before == Standing::InSync {
            return (before, Vec::new());
        }
        let keys = t
            .entries
            .iter()
            .filter(|(_, e)| e.needs_work(Standing::InSync))
            .map(|(k, _)| k.clone())
            .collect();
        (before, keys)
    }

    /// A worker begins on `key`: until [`end`](Self::end), the versions the watch delivers for
    /// it are kept, so that the answers to the worker's requests are placed in the watch's order.
    pub fn begin(&self, key: &ShardKey) {
        if let Some(entry) = self.table.lock().entries.get_mut(key) {
            entry.order.begin();
        }
    }

    /// The worker is done with `key`.
    pub fn end(&self, key: &ShardKey) {
        if let Some(entry) = self.table.lock().entries.get_mut(key) {
            entry.order.end();
        }
    }

    /// Records a Job read or written by a worker (dropped when the watch delivered it already,
    /// or newer versions).
    pub fn record_live(&self, job: Job) {
        let taken = self.table.lock().answered(job);
        if taken {
            self.notify();
        }
    }

    /// Records that a worker deleted the shard (or found it gone).
    pub fn record_deleted(&self, key: &ShardKey) {
        let mut t = self.table.lock();
        t.gone(key, None);
        drop(t);
        self.notify();
    }

    /// Records a successful reconcile: no problem, no failures.
    pub fn succeed(&self, key: &ShardKey) {
        self.set_outcome(key, None, false);
    }

    /// Records a failed reconcile and, when given, the problem to report (`None` keeps what
    /// is reported now). Returns the number of consecutive failures.
    pub fn fail(&self, key: &ShardKey, problem: Option<Problem>) -> u32 {
        self.set_outcome(key, problem, true)
    }

    fn set_outcome(&self, key: &ShardKey, problem: Option<Problem>, failed: bool) -> u32 {
        let mut t = self.table.lock();
        let Some(entry) = t.entries.get_mut(key) else {
            return 0;
        };
        entry.failures = if failed {
            entry.failures.saturating_add(1)
        } else {
            0
        };
        let failures = entry.failures;
        let problem = if failed && problem.is_none() {
            entry.problem.clone()
        } else {
            problem
        };
        if entry.problem != problem {
            entry.problem = problem;
            t.touch(key);
            drop(t);
            self.notify();
        }
        failures
    }

    /// The status the scheduler should have of `key` now.
    pub fn status(&self, key: &ShardKey) -> Option<ShardStatus> {
        let t = self.table.lock();
        t.entries.get(key).and_then(|e| e.status(key))
    }

    /// Starts reporting to a new session: returns the inventory for its `Hello` (every
    /// labelled Job in the cluster, with the revision of the assignment held for it, 0 when
    /// none) and arranges for everything else the scheduler should know (shards in conflict,
    /// in error, gone) to follow in the first report.
    pub fn begin_session(&self) -> Vec<ShardStatus> {
        let mut t = self.table.lock();
        let mut held = Vec::new();
        let keys: Vec<ShardKey> = t.entries.keys().cloned().collect();
        for key in &keys {
            let entry = t.entries.get_mut(key).expect("key just listed");
            entry.reported = None;
            let Some(job) = entry.live.as_deref() else {
                continue;
            };
            let mut s = status::from_job(job);
            s.revision = match &entry.held {
                Some(h) if job::job_uid(job) == Some(h.job_uid.as_str()) => h.revision,
                _ => 0,
            };
            if entry.status(key).as_ref() == Some(&s) {
                entry.reported = Some(s.clone());
            }
            held.push(s);
        }
        t.dirty.clear();
        t.dirty_set.clear();
        for key in &keys {
            t.touch(key);
        }
        drop(t);
        self.notify();
        held.sort_by(|a, b| (&a.namespace, &a.shard).cmp(&(&b.namespace, &b.shard)));
        held
    }

    /// The statuses that changed since they were last reported, in the order they changed;
    /// marks them reported.
    pub fn take_reports(&self) -> Vec<ShardStatus> {
        let mut t = self.table.lock();
        let dirty = std::mem::take(&mut t.dirty);
        t.dirty_set.clear();
        let mut out = Vec::new();
        for key in dirty {
            let Some(entry) = t.entries.get_mut(&key) else {
                continue;
            };
            if let Some(s) = entry.status(&key)
                && entry.reported.as_ref() != Some(&s)
            {
                entry.reported = Some(s.clone());
                out.push(s);
            }
            if entry.removable() {
                t.entries.remove(&key);
            }
        }
        out
    }

    /// How many assignments are held, by action (for metrics).
    pub fn held_by_action(&self) -> Vec<(AssignmentAction, usize)> {
        let t = self.table.lock();
        let mut counts: Vec<(AssignmentAction, usize)> = Vec::new();
        for held in t.entries.values().filter_map(|e| e.held.as_ref()) {
            match counts.iter_mut().find(|(a, _)| *a == held.action) {
                Some((_, n)) => *n += 1,
                None => counts.push((held.action, 1)),
            }
        }
        counts
    }

    /// Number of shards known.
    pub fn len(&self) -> usize {
        self.table.lock().entries.len()
    }

    /// Whether no shard is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
