//! The shards this syncer knows, in memory only: what the scheduler assigned (the *held*
//! assignment), what the cluster has (the *live* Job, from the watch), and what the scheduler
//! was last told. Nothing here is persisted: after a restart the table is rebuilt from the
//! labelled Jobs in the cluster, and the scheduler sends every assignment again.
//!
//! All methods are synchronous and short; the lock is never held across an `await`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use fedjob_proto::v1::{Assignment, AssignmentAction, ShardPhase, ShardStatus};
use k8s_openapi::api::batch::v1::Job;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::cluster::{ShardKey, WatchEvent};
use crate::fence::{self, FenceStep, FenceView, Standing};
use crate::manifest::Manifest;
use crate::reconcile::{Plan, decide};
use crate::status::{self, Ids};

/// Most statuses in one report message.
pub const REPORT_CHUNK: usize = 500;

/// The assignment the syncer holds for a shard.
#[derive(Debug, Clone)]
pub struct Held {
    /// `fedjob.io/job-uid` of the federated Job.
    pub job_uid: String,
    /// Fencing epoch.
    pub epoch: u64,
    /// Generation of the federated Job it was computed from.
    pub generation: i64,
    /// Revision of the shard's desired state.
    pub revision: u64,
    /// What to do.
    pub action: AssignmentAction,
    /// Whether the shard may be created when missing.
    pub create: bool,
    /// For RUN and SUSPEND: the Job to apply.
    pub manifest: Option<Arc<Manifest>>,
    /// Why the syncer will not carry this assignment out (bad manifest, namespace not managed).
    pub refused: Option<Problem>,
}

/// Why a shard is not what its assignment asks, reported instead of (or with) its Job's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A Job of the shard's name exists that this federated Job did not create.
    Conflict(String),
    /// The cluster (or the syncer) refused the shard.
    Error {
        /// Short machine-readable reason (`NamespaceNotFound`, `Invalid`, …).
        reason: String,
        /// The server's message.
        message: String,
    },
}

#[derive(Debug, Default)]
struct Entry {
    held: Option<Held>,
    /// The labelled Job in the cluster, as last observed.
    live: Option<Arc<Job>>,
    /// The last state of a Job that went away (for the counts of a DELETED report).
    last: Option<Arc<Job>>,
    /// Federated Job uids whose Job this process has seen exist here: such a shard, once gone,
    /// is never created again.
    seen: Vec<String>,
    /// What the last reconcile ran into.
    problem: Option<Problem>,
    /// Consecutive failed reconciles (for retry backoff).
    failures: u32,
    /// Told to stop managing and reporting it.
    forgotten: bool,
    /// What the current session was last told.
    reported: Option<ShardStatus>,
}

impl Entry {
    fn seen(&self, job_uid: &str) -> bool {
        self.seen.iter().any(|u| u == job_uid)
    }

    fn mark_seen(&mut self, job: &Job) {
        if let Some(uid) = status::job_uid(job)
            && !self.seen(uid)
        {
            self.seen.push(uid.to_owned());
        }
    }

    /// Whether the live Job belongs to the held assignment (or nothing is held).
    fn live_is_ours(&self) -> Option<&Arc<Job>> {
        let live = self.live.as_ref()?;
        match &self.held {
            Some(h) if status::job_uid(live) != Some(h.job_uid.as_str()) => None,
            _ => Some(live),
        }
    }

    fn plan(&self, standing: Standing) -> Option<Plan> {
        let held = self.held.clone()?;
        let seen = self.seen(&held.job_uid);
        Some(Plan {
            held,
            live: self.live.clone(),
            seen,
            looked_up: false,
            standing,
        })
    }

    /// What the self-fence asks of this shard now.
    fn fence_step(&self, standing: Standing) -> Option<FenceStep> {
        fence::decide(&FenceView {
            standing,
            held: self.held.as_ref().map(|h| (h.action, h.job_uid.as_str())),
            forgotten: self.forgotten,
            live: self.live.as_deref(),
        })
    }

    /// Whether a worker has something to do for this shard.
    fn needs_work(&self, standing: Standing) -> bool {
        self.fence_step(standing).is_some()
            || self.plan(standing).is_some_and(|p| decide(&p).acts())
    }

    /// Nothing left to manage or report.
    fn removable(&self) -> bool {
        if self.live.is_some() {
            return false;
        }
        match &self.held {
            None => true,
            Some(h) => {
                h.action == AssignmentAction::Delete
                    && self
                        .reported
                        .as_ref()
                        .is_some_and(|r| r.phase == ShardPhase::Deleted as i32)
            }
        }
    }

    /// The status the scheduler should have of this shard now; `None` when there is nothing to
    /// say yet (a shard about to be created) or it must not be reported (forgotten).
    fn status(&self, key: &ShardKey) -> Option<ShardStatus> {
        if self.forgotten {
            return None;
        }
        let Some(held) = &self.held else {
            return self.live.as_deref().map(|job| {
                let mut s = status::from_job(job);
                s.revision = 0;
                s
            });
        };
        let ids = Ids {
            job_uid: &held.job_uid,
            namespace: &key.namespace,
            shard: &key.name,
            epoch: held.epoch,
            revision: held.revision,
        };
        let problem = held.refused.as_ref().or(self.problem.as_ref());
        let last_ours = self
            .last
            .as_deref()
            .filter(|j| status::job_uid(j) == Some(held.job_uid.as_str()));
        if let Some(job) = self.live_is_ours() {
            if held.action == AssignmentAction::Delete && status::is_terminating(job) {
                return Some(status::deleted(ids, Some(job), "deleted by the syncer"));
            }
            let mut s = status::from_job(job);
            s.revision = held.revision;
            if s.epoch == 0 {
                s.epoch = held.epoch;
            }
            if let Some(p) = problem {
                let (reason, message) = problem_text(p);
                s.reason = reason;
                s.message = message;
            }
            return Some(s);
        }
        if held.action == AssignmentAction::Delete {
            return Some(status::deleted(ids, last_ours, "deleted by the syncer"));
        }
        if let Some(p) = problem {
            let phase = match p {
                Problem::Conflict(_) => ShardPhase::Conflict,
                Problem::Error { .. } => ShardPhase::Error,
            };
            let (reason, message) = problem_text(p);
            return Some(status::absent(ids, phase, &reason, &message));
        }
        if let Some(other) = self.live.as_deref() {
            return Some(status::absent(
                ids,
                ShardPhase::Conflict,
                "AlreadyExists",
                &conflict_message(key, status::job_uid(other)),
            ));
        }
        if self.seen(&held.job_uid) {
            return Some(status::deleted(
                ids,
                last_ours,
                "the local Job was deleted in the cluster",
            ));
        }
        let creatable = matches!(
            held.action,
            AssignmentAction::Run | AssignmentAction::Suspend
        ) && held.create;
        if creatable {
            // Being created: its status comes from the Job once it exists.
            return None;
        }
        Some(status::absent(
            ids,
            ShardPhase::Missing,
            "NotFound",
            "the local Job does not exist and the assignment does not allow creating it",
        ))
    }
}

fn problem_text(p: &Problem) -> (String, String) {
    match p {
        Problem::Conflict(message) => ("AlreadyExists".into(), message.clone()),
        Problem::Error { reason, message } => (reason.clone(), message.clone()),
    }
}

/// The message of a CONFLICT: whose Job holds the shard's name.
pub fn conflict_message(key: &ShardKey, owner: Option<&str>) -> String {
    match owner {
        Some(uid) => format!(
            "a Job named {key} exists that belongs to another federated Job (fedjob.io/job-uid {uid}); it is left untouched"
        ),
        None => format!(
            "a Job named {key} exists that fedjob did not create (no fedjob.io/job-uid label); it is left untouched"
        ),
    }
}

/// The resourceVersion of a Job as a number, when it is one (real servers and the simulator
/// use etcd revisions), to drop observations older than what is already known.
fn resource_version(job: &Job) -> Option<u64> {
    job.metadata.resource_version.as_deref()?.parse().ok()
}

/// Whether `new` is not older than `old` (same incarnation, lower resourceVersion).
fn not_older(new: &Job, old: &Job) -> bool {
    if new.metadata.uid != old.metadata.uid {
        return true;
    }
    match (resource_version(new), resource_version(old)) {
        (Some(n), Some(o)) => n >= o,
        _ => true,
    }
}

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

    /// A labelled Job observed (watch, read or write answer). Returns whether the shard needs
    /// a reconcile.
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
        if let Some(current) = &entry.live
            && !not_older(&job, current)
        {
            return false;
        }
        if let Some(gone) = &entry.last
            && gone.metadata.uid == job.metadata.uid
            && !not_older(&job, gone)
        {
            // An answer from before the watch saw this incarnation deleted.
            return false;
        }
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
            }
            WatchEvent::InitApply(job) => {
                let key = ShardKey::of(&job);
                if let Some(r) = t.relist.as_mut() {
                    r.insert(key.clone());
                }
                if t.live(job) {
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
                if t.live(job) {
                    out.push(key);
                }
            }
            WatchEvent::Delete(job) => {
                let key = ShardKey::of(&job);
                debug!(shard = %key, "local Job deleted");
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
        let mut refused = None;
        if let Some(ns) = only_namespace
            && ns != a.namespace
        {
            refused = Some(Problem::Error {
                reason: "NamespaceNotManaged".into(),
                message: format!(
                    "this syncer manages namespace {ns:?} only (--namespace); shard {key} is outside it"
                ),
            });
        }
        let manifest = match action {
            AssignmentAction::Run | AssignmentAction::Suspend => {
                match Manifest::parse(&a.manifest, &a.namespace, &a.shard, &a.job_uid) {
                    Ok(m) => Some(Arc::new(m)),
                    Err(e) => {
                        warn!(shard = %key, job_uid = %a.job_uid, revision = a.revision, error = %e, "assignment refused");
                        refused.get_or_insert(Problem::Error {
                            reason: "InvalidManifest".into(),
                            message: e.to_string(),
                        });
                        None
                    }
                }
            }
            _ => None,
        };
        debug!(shard = %key, job_uid = %a.job_uid, revision = a.revision, action = action.as_str_name(), create = a.create, "assignment");
        entry.forgotten = false;
        if entry
            .held
            .as_ref()
            .is_some_and(|h| h.job_uid != a.job_uid || h.revision != a.revision)
        {
            entry.failures = 0;
        }
        entry.held = Some(Held {
            job_uid: a.job_uid.clone(),
            epoch: a.epoch,
            generation: a.generation,
            revision: a.revision,
            action,
            create: a.create,
            manifest,
            refused,
        });
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

    /// Records a Job read or written by a worker.
    pub fn record_live(&self, job: Job) {
        let mut t = self.table.lock();
        let key = ShardKey::of(&job);
        if !t.entries.contains_key(&key) {
            // Forgotten meanwhile: the watch will tell if it matters.
            return;
        }
        t.live(job);
        drop(t);
        self.notify();
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
                Some(h) if status::job_uid(job) == Some(h.job_uid.as_str()) => h.revision,
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
mod tests {
    use super::*;
    use crate::fixtures::{as_shard, fact, manifest_text};
    use crate::reconcile::Step;
    use serde_json::json;

    fn assignment(action: AssignmentAction, revision: u64, create: bool) -> Assignment {
        let manifest = match action {
            AssignmentAction::Run => manifest_text(3, false, revision),
            AssignmentAction::Suspend => manifest_text(3, true, revision),
            _ => String::new(),
        };
        Assignment {
            job_uid: "uid-1".into(),
            namespace: "default".into(),
            shard: "myjob".into(),
            epoch: 2,
            generation: 1,
            revision,
            action: action as i32,
            manifest,
            create,
        }
    }

    fn key() -> ShardKey {
        ShardKey::new("default", "myjob")
    }

    /// The live Job for the manifest of revision `revision`, at resourceVersion `rv`.
    fn live(revision: u64, rv: u64, uid: &str) -> Job {
        let m = Manifest::parse(
            &manifest_text(3, false, revision),
            "default",
            "myjob",
            "uid-1",
        )
        .unwrap();
        let mut v = m.value();
        v["metadata"]["uid"] = json!(uid);
        v["metadata"]["resourceVersion"] = json!(rv.to_string());
        v["status"] = json!({"active": 3, "startTime": "2026-11-28T13:46:54Z"});
        serde_json::from_value(v).unwrap()
    }

    fn phase(s: &ShardStatus) -> ShardPhase {
        ShardPhase::try_from(s.phase).unwrap()
    }

    fn listed(shards: &Shards, jobs: Vec<Job>) {
        shards.observe(WatchEvent::Init);
        for j in jobs {
            shards.observe(WatchEvent::InitApply(j));
        }
        shards.observe(WatchEvent::InitDone);
    }

    #[test]
    fn a_new_shard_is_pending_until_created_then_running() {
        let shards = Shards::new();
        listed(&shards, vec![]);
        assert!(shards.is_listed());
        assert!(shards.assign(&assignment(AssignmentAction::Run, 1, true), None));
        assert_eq!(
            shards.status(&key()),
            None,
            "nothing to say before the create"
        );
        shards.record_live(live(1, 10, "local-1"));
        let s = shards.status(&key()).unwrap();
        assert_eq!(phase(&s), ShardPhase::Running);
        assert_eq!((s.active, s.revision, s.epoch), (3, 1, 2));
        assert_eq!(shards.take_reports(), vec![s.clone()]);
        assert!(shards.take_reports().is_empty(), "reported once");
    }

    #[test]
    fn deleted_in_the_cluster_is_reported_with_last_counts_and_not_recreated() {
        let shards = Shards::new();
        listed(&shards, vec![live(1, 10, "local-1")]);
        shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
        let mut last = live(1, 12, "local-1");
        last.status.as_mut().unwrap().succeeded = Some(2);
        let needs = shards.observe(WatchEvent::Delete(last));
        assert!(needs.is_empty(), "a deleted shard is not re-created");
        let plan = shards.plan(&key()).unwrap();
        assert!(plan.seen);
        assert_eq!(decide(&plan), Step::Nothing);
        let s = shards.status(&key()).unwrap();
        assert_eq!(phase(&s), ShardPhase::Deleted);
        assert_eq!((s.active, s.succeeded), (0, 2));
        assert_eq!(s.local_uid, "local-1");
    }

    #[test]
    fn missing_without_create_is_missing() {
        let shards = Shards::new();
        listed(&shards, vec![]);
        shards.assign(&assignment(AssignmentAction::Run, 4, false), None);
        let s = shards.status(&key()).unwrap();
        assert_eq!(phase(&s), ShardPhase::Missing);
        shards.assign(&assignment(AssignmentAction::Retain, 5, false), None);
        assert_eq!(phase(&shards.status(&key()).unwrap()), ShardPhase::Missing);
    }

    #[test]
    fn relist_treats_vanished_jobs_as_deleted() {
        let shards = Shards::new();
        listed(&shards, vec![live(1, 10, "local-1")]);
        shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
        listed(&shards, vec![]);
        assert_eq!(phase(&shards.status(&key()).unwrap()), ShardPhase::Deleted);
    }

    #[test]
    fn drift_from_the_watch_asks_for_a_reconcile() {
        let shards = Shards::new();
        listed(&shards, vec![live(1, 10, "local-1")]);
        shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
        let mut edited = live(1, 11, "local-1");
        edited.spec.as_mut().unwrap().parallelism = Some(7);
        assert_eq!(shards.observe(WatchEvent::Apply(edited)), vec![key()]);
        let same = live(1, 12, "local-1");
        assert!(shards.observe(WatchEvent::Apply(same)).is_empty());
    }

    #[test]
    fn older_observations_are_dropped() {
        let shards = Shards::new();
        listed(&shards, vec![]);
        shards.assign(&assignment(AssignmentAction::Run, 2, true), None);
        shards.record_live(live(2, 20, "local-1"));
        // A watch event from before the write must not look like drift.
        let mut older = live(1, 15, "local-1");
        older.spec.as_mut().unwrap().parallelism = Some(1);
        assert!(shards.observe(WatchEvent::Apply(older)).is_empty());
        assert_eq!(shards.status(&key()).unwrap().parallelism, 3);
    }

    #[test]
    fn a_labelled_job_of_another_federated_job_is_a_conflict() {
        let shards = Shards::new();
        let other = |rv| {
            let mut j = live(1, rv, "local-9");
            j.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("fedjob.io/job-uid".into(), "uid-old".into());
            j
        };
        listed(&shards, vec![other(10)]);
        shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
        let plan = shards.plan(&key()).unwrap();
        assert!(matches!(decide(&plan), Step::Conflict { owner: Some(o) } if o == "uid-old"));
        let s = shards.status(&key()).unwrap();
        assert_eq!(phase(&s), ShardPhase::Conflict);
        assert_eq!(s.job_uid, "uid-1");
        // Once that Job is gone, ours may be created.
        let gone = shards.observe(WatchEvent::Delete(other(11)));
        assert_eq!(gone, vec![key()], "a reconcile follows");
        let plan = shards.plan(&key()).unwrap();
        assert!(!plan.seen);
        assert_eq!(decide(&plan), Step::Lookup);
    }

    #[test]
    fn forget_stops_reporting_but_hello_still_lists_it() {
        let shards = Shards::new();
        listed(&shards, vec![live(1, 10, "local-1")]);
        shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
        shards.take_reports();
        let forget = Assignment {
            action: AssignmentAction::Forget as i32,
            manifest: String::new(),
            revision: 0,
            ..assignment(AssignmentAction::Run, 1, true)
        };
        assert!(!shards.assign(&forget, None));
        assert!(shards.plan(&key()).is_none(), "nothing held");
        let mut progressed = live(1, 11, "local-1");
        progressed.status.as_mut().unwrap().succeeded = Some(1);
        shards.observe(WatchEvent::Apply(progressed));
        assert!(shards.take_reports().is_empty(), "forgotten: not reported");
        let hello = shards.begin_session();
        assert_eq!(hello.len(), 1);
        assert_eq!(hello[0].revision, 0);
    }

    #[test]
    fn hello_lists_live_jobs_with_held_revisions_and_the_rest_follows() {
        let shards = Shards::new();
        let mut foreign_ns = live(1, 5, "local-2");
        foreign_ns.metadata.name = Some("other".into());
        listed(&shards, vec![live(3, 10, "local-1"), foreign_ns]);
        let hello = shards.begin_session();
        assert_eq!(hello.len(), 2);
        assert!(
            hello.iter().all(|s| s.revision == 0),
            "nothing held after a restart"
        );
        assert!(shards.take_reports().is_empty(), "hello said it all");

        shards.assign(&assignment(AssignmentAction::Run, 3, true), None);
        let mut gone = assignment(AssignmentAction::Run, 1, false);
        gone.shard = "gone".into();
        gone.manifest = gone.manifest.replace("\"myjob\"", "\"gone\"");
        shards.assign(&gone, None);
        let reports = shards.take_reports();
        let names: Vec<(&str, ShardPhase)> = reports
            .iter()
            .map(|s| (s.shard.as_str(), phase(s)))
            .collect();
        assert_eq!(
            names,
            vec![
                ("myjob", ShardPhase::Running),
                ("gone", ShardPhase::Missing)
            ],
            "revision 3 held now; the missing shard is reported"
        );
        let hello = shards.begin_session();
        let mine = hello.iter().find(|s| s.shard == "myjob").unwrap();
        assert_eq!(mine.revision, 3);
        let follow: Vec<String> = shards.take_reports().into_iter().map(|s| s.shard).collect();
        assert_eq!(
            follow,
            vec!["gone".to_string()],
            "only what hello could not say"
        );
    }

    #[test]
    fn delete_reports_deleted_and_is_then_dropped() {
        let shards = Shards::new();
        listed(&shards, vec![live(1, 10, "local-1")]);
        shards.assign(&assignment(AssignmentAction::Delete, 2, false), None);
        let plan = shards.plan(&key()).unwrap();
        assert_eq!(
            decide(&plan),
            Step::Delete {
                uid: Some("local-1".into())
            }
        );
        shards.record_deleted(&key());
        let reports = shards.take_reports();
        assert_eq!(reports.len(), 1);
        assert_eq!(phase(&reports[0]), ShardPhase::Deleted);
        assert_eq!(reports[0].active, 0);
        assert!(shards.is_empty(), "nothing left to manage");
    }

    #[test]
    fn problems_are_reported_and_cleared() {
        let shards = Shards::new();
        listed(&shards, vec![]);
        shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
        let failures = shards.fail(
            &key(),
            Some(Problem::Error {
                reason: "NamespaceNotFound".into(),
                message: "namespaces \"default\" not found".into(),
            }),
        );
        assert_eq!(failures, 1);
        let s = shards.status(&key()).unwrap();
        assert_eq!(
            (phase(&s), s.reason.as_str()),
            (ShardPhase::Error, "NamespaceNotFound")
        );
        assert_eq!(
            shards.fail(&key(), None),
            2,
            "a quiet failure keeps the problem"
        );
        assert_eq!(shards.status(&key()).unwrap().reason, "NamespaceNotFound");
        shards.succeed(&key());
        assert_eq!(shards.status(&key()), None);
    }

    #[test]
    fn refused_assignments() {
        let shards = Shards::new();
        listed(&shards, vec![]);
        assert!(shards.assign(&assignment(AssignmentAction::Run, 1, true), Some("team-a")));
        let s = shards.status(&key()).unwrap();
        assert_eq!(
            (phase(&s), s.reason.as_str()),
            (ShardPhase::Error, "NamespaceNotManaged")
        );
        assert_eq!(decide(&shards.plan(&key()).unwrap()), Step::Nothing);

        let mut bad = assignment(AssignmentAction::Run, 2, true);
        bad.manifest = "{not json".into();
        shards.assign(&bad, None);
        let s = shards.status(&key()).unwrap();
        assert_eq!(
            (phase(&s), s.reason.as_str()),
            (ShardPhase::Error, "InvalidManifest")
        );
    }

    #[test]
    fn stale_revisions_are_ignored() {
        let shards = Shards::new();
        listed(&shards, vec![]);
        shards.assign(&assignment(AssignmentAction::Run, 5, true), None);
        assert!(!shards.assign(&assignment(AssignmentAction::Suspend, 4, true), None));
        assert_eq!(shards.plan(&key()).unwrap().held.revision, 5);
        assert!(
            shards.assign(&assignment(AssignmentAction::Run, 5, true), None),
            "same revision is re-checked"
        );
    }

    fn fenced_mark(mut job: Job) -> Job {
        job.spec.as_mut().unwrap().suspend = Some(true);
        job.metadata.annotations.get_or_insert_default().insert(
            fence::FENCED_ANNOTATION.into(),
            "2026-11-28T13:46:54Z".into(),
        );
        job
    }

    #[test]
    fn the_fence_suspends_running_shards_and_lifting_it_resumes_them() {
        let shards = Shards::new();
        let mut other = live(1, 11, "local-2");
        other.metadata.name = Some("other".into());
        listed(&shards, vec![live(1, 10, "local-1"), other]);
        shards.assign(&assignment(AssignmentAction::Run, 1, true), None);
        assert_eq!(shards.standing(), Standing::Unknown);
        assert_eq!(
            shards.fence_step(&key()),
            None,
            "nothing before the lease runs out"
        );

        let mut fenced = shards.fence();
        fenced.sort();
        assert_eq!(
            fenced,
            vec![
                ShardKey::new("default", "myjob"),
                ShardKey::new("default", "other")
            ],
            "held for RUN, and not held at all (no scheduler answered yet)"
        );
        assert_eq!(shards.fence_step(&key()), Some(FenceStep::Suspend));
        shards.record_live(fenced_mark(live(1, 12, "local-1")));
        assert_eq!(shards.fence_step(&key()), None);
        let plan = shards.plan(&key()).unwrap();
        assert_eq!(decide(&plan), Step::Nothing, "not resumed while fenced");
        let s = shards.status(&key()).unwrap();
        assert_eq!(
            (phase(&s), s.reason.as_str()),
            (ShardPhase::Suspended, "SelfFenced")
        );
        let hello = shards.begin_session();
        let mine = hello.iter().find(|s| s.shard == "myjob").unwrap();
        assert!(mine.suspended && mine.reason == "SelfFenced", "{mine:?}");

        // Someone resumes it by hand while fenced: suspended again.
        assert_eq!(
            shards.observe(WatchEvent::Apply(live(1, 13, "local-1"))),
            vec![key()]
        );
        shards.record_live(fenced_mark(live(1, 14, "local-1")));

        let (before, keys) = shards.in_sync();
        assert_eq!(before, Standing::Fenced);
        assert!(keys.contains(&key()), "{keys:?}");
        assert_eq!(
            shards.fence_step(&key()),
            Some(FenceStep::Resume { suspend: false })
        );
        assert_eq!(shards.in_sync(), (Standing::InSync, Vec::new()), "once");
    }

    #[test]
    fn finished_shards_from_the_facts() {
        let shards = Shards::new();
        let mut done = as_shard(fact("15"), 1);
        done.metadata.name = Some("myjob".into());
        listed(&shards, vec![done.clone()]);
        shards.assign(&assignment(AssignmentAction::Retain, 2, false), None);
        assert_eq!(decide(&shards.plan(&key()).unwrap()), Step::Nothing);
        assert_eq!(phase(&shards.status(&key()).unwrap()), ShardPhase::Complete);
        shards.observe(WatchEvent::Delete(done));
        let s = shards.status(&key()).unwrap();
        assert_eq!((phase(&s), s.succeeded), (ShardPhase::Deleted, 2));
    }
}
