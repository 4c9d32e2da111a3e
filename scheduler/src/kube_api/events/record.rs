//! Occurrences become core `v1` Events as client-go's recorder writes a controller's (the
//! job-controller's in `04-describe.txt`): named `JOB.<hex nanoseconds>`, about the Job
//! (`involvedObject` with its uid and resourceVersion), from `source.component`
//! `fedjob-scheduler`; an occurrence that repeats one still kept (same Job, reason and
//! message) counts up the existing event, as the recorder's correlator does.
//!
//! Events are kept an hour after they last happened (the API server's `--event-ttl`), and at
//! most [`MAX_EVENTS`] at once whatever their age; the feed ([`start`]) tells every change of
//! every Job, from the control plane's change stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::task::TaskTracker;

use super::derive::{Occurrence, derive};
use crate::control_plane::{ControlPlane, JobChange};
use crate::kube_api::clock;
use crate::kube_api::objects::{Object, ObjectLog};
use crate::kube_api::table::str_at;
use crate::model::job::FederatedJob;
use crate::records::StoredJob;
use fedjob_proto::shutdown::Shutdown;

/// How long an event is kept after it last happened (`--event-ttl`).
pub const TTL: Duration = Duration::from_secs(3600);
/// The most events kept at once, however young: a bound on memory when Jobs churn.
pub const MAX_EVENTS: usize = 100_000;
/// The component events come from (`source.component`, the `From` of `kubectl describe`).
pub const COMPONENT: &str = "fedjob-scheduler";
/// How often old events are forgotten.
const SWEEP: Duration = Duration::from_secs(60);

/// Writes occurrences into a log of events; see the module documentation.
pub struct Recorder {
    log: Arc<ObjectLog>,
    /// `(Job uid, reason, message)` → the event that told it, to count repeats.
    told: HashMap<(String, String, String), (String, String)>,
    /// The last name suffix given, so two events in one nanosecond get different names.
    last_nanos: i128,
}

impl Recorder {
    /// A recorder writing into `log`.
    pub fn new(log: Arc<ObjectLog>) -> Self {
        Self {
            log,
            told: HashMap::new(),
            last_nanos: 0,
        }
    }

    /// Records `occurrences` of `job` (at version `rv`) as happening at `now`.
    pub fn record(
        &mut self,
        job: &FederatedJob,
        rv: u64,
        occurrences: Vec<Occurrence>,
        now: Timestamp,
    ) {
        for o in occurrences {
            let similar = (job.uid().to_owned(), o.reason.clone(), o.message.clone());
            let repeated = self
                .told
                .get(&similar)
                .and_then(|(ns, name)| self.log.get(ns, name));
            let value = match repeated {
                Some(event) => again(&event, now),
                None => {
                    let nanos = now.as_nanosecond().max(self.last_nanos + 1);
                    self.last_nanos = nanos;
                    let name = format!("{}.{nanos:x}", job.name());
                    self.told
                        .insert(similar, (job.namespace().to_owned(), name.clone()));
                    event(job, rv, &o, name, now)
                }
            };
            self.log.put(value);
        }
        if self.log.len() > MAX_EVENTS + MAX_EVENTS / 10 {
            self.expire(now);
        }
    }

    /// Forgets the events last seen more than [`TTL`] before `now`, then the oldest beyond
    /// [`MAX_EVENTS`].
    pub fn expire(&mut self, now: Timestamp) {
        let cutoff = now - TTL;
        let young = |o: &Object| last_seen(o).is_some_and(|t| t >= cutoff);
        self.log.retain(young);
        let kept = self.log.objects();
        if kept.len() > MAX_EVENTS {
            let mut seen: Vec<(Timestamp, &str, &str)> = kept
                .iter()
                .map(|o| {
                    let t = last_seen(o).unwrap_or(Timestamp::UNIX_EPOCH);
                    (t, o.namespace.as_str(), o.name.as_str())
                })
                .collect();
            seen.sort_unstable();
            let drop: std::collections::HashSet<(&str, &str)> = seen[..kept.len() - MAX_EVENTS]
                .iter()
                .map(|(_, ns, name)| (*ns, *name))
                .collect();
            self.log
                .retain(|o| !drop.contains(&(o.namespace.as_str(), o.name.as_str())));
        }
        let log = &self.log;
        self.told
            .retain(|_, (ns, name)| log.get(ns, name).is_some());
    }
}

/// When an event last happened.
fn last_seen(event: &Object) -> Option<Timestamp> {
    clock::parse(str_at(&event.value, "/lastTimestamp"))
}

/// A new event `name` telling `o` about `job` at version `rv`.
fn event(job: &FederatedJob, rv: u64, o: &Occurrence, name: String, now: Timestamp) -> Value {
    let at = clock::format(now);
    json!({
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": job.namespace(),
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": at,
        },
        "involvedObject": {
            "kind": "Job",
            "namespace": job.namespace(),
            "name": job.name(),
            "uid": job.uid(),
            "apiVersion": "batch/v1",
            "resourceVersion": rv.to_string(),
        },
        "reason": o.reason,
        "message": o.message,
        "source": {"component": COMPONENT},
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
        "type": o.severity.as_str(),
        "eventTime": null,
        "reportingComponent": "",
        "reportingInstance": "",
    })
}

/// `event` happening once more at `now`.
fn again(event: &Object, now: Timestamp) -> Value {
    let mut value = event.value.clone();
    let count = value["count"].as_i64().unwrap_or(1);
    value["count"] = json!(count + 1);
    value["lastTimestamp"] = json!(clock::format(now));
    value
}

/// Tells every change of `cp`'s Jobs as events into `log`, until `shutdown`, as one of
/// `tasks`. What happened before it starts is not told.
pub fn start(cp: Arc<ControlPlane>, log: Arc<ObjectLog>, shutdown: Shutdown, tasks: &TaskTracker) {
    // Subscribed before the Jobs are read, so no change falls between the two.
    let changes = cp.subscribe();
    let known: HashMap<String, Arc<StoredJob>> = cp
        .jobs(None)
        .into_iter()
        .map(|j| (j.record.key(), j))
        .collect();
    tasks.spawn(feed(cp, Recorder::new(log), known, changes, shutdown));
}

async fn feed(
    cp: Arc<ControlPlane>,
    mut recorder: Recorder,
    mut known: HashMap<String, Arc<StoredJob>>,
    mut changes: tokio::sync::broadcast::Receiver<Arc<JobChange>>,
    shutdown: Shutdown,
) {
    let mut sweep = tokio::time::interval(SWEEP);
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = sweep.tick() => {
                recorder.expire(Timestamp::now());
                continue;
            }
            _ = shutdown.fired() => return,
        };
        match change {
            Ok(change) => tell(&mut recorder, &mut known, &change.key, change.job.clone()),
            Err(RecvError::Lagged(missed)) => {
                // The changes missed are told at once, as one step from what was last seen.
                tracing::debug!(
                    missed,
                    "kube api events: job changes lagged; re-reading every Job"
                );
                let now: HashMap<String, Arc<StoredJob>> = cp
                    .jobs(None)
                    .into_iter()
                    .map(|j| (j.record.key(), j))
                    .collect();
                let gone: Vec<String> = known
                    .keys()
                    .filter(|k| !now.contains_key(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    tell(&mut recorder, &mut known, &key, None);
                }
                for (key, job) in now {
                    tell(&mut recorder, &mut known, &key, Some(job));
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Tells the step of Job `key` from what was last seen of it to `after`.
fn tell(
    recorder: &mut Recorder,
    known: &mut HashMap<String, Arc<StoredJob>>,
    key: &str,
    after: Option<Arc<StoredJob>>,
) {
    let before = known.get(key).cloned();
    if let (Some(b), Some(a)) = (&before, &after)
        && a.mod_revision < b.mod_revision
    {
        // Published late: a newer version was told already.
        return;
    }
    let told = derive(
        before.as_ref().map(|b| &b.record),
        after.as_ref().map(|a| &a.record),
    );
    match after {
        Some(a) => {
            if !told.is_empty() {
                recorder.record(&a.record, a.mod_revision, told, Timestamp::now());
            }
            known.insert(key.to_owned(), a);
        }
        None => {
            known.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
