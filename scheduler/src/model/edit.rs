//! The decisions behind every change of a federated Job: create, update, delete, shard reports,
//! a cluster changing state, and the TTL after it finished.
//!
//! Each is a pure function from the current record (and the request) to what must be written.
//! The control plane runs them inside its compare-and-swap loop, which may call one again on a
//! fresher record when another replica wrote first; so they read no clock and draw no random
//! numbers (`now` and a new Job's uid are passed in).

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::clusters::Clusters;
use super::job::{Deletion, FederatedJob, ShardState};
use super::manifest::{self, Invalid};
use super::planner;
use super::reports;
pub use super::reports::ShardReport;
use fedjob_proto::names::PREFERENCES_ANNOTATION;

/// What a change wants written.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Write this record.
    Put(Box<FederatedJob>),
    /// Delete the record.
    Delete,
    /// Leave it as it is.
    Unchanged,
}

/// Why an update is refused before anything is computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    /// The caller's resourceVersion is stale.
    #[error(
        "Operation cannot be fulfilled on jobs.batch \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict {
        /// The Job's name.
        name: String,
    },
    /// A cascading delete is in progress; the Job only waits to be gone.
    #[error("jobs.batch \"{name}\" is being deleted")]
    BeingDeleted {
        /// The Job's name.
        name: String,
    },
    /// The new Job is not a valid Job, or not a valid change of the current one.
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// The record of a new Job from a decoded, not yet validated manifest: validated, defaulted
/// with `uid` and `now`, and planned over `clusters`.
pub fn create(
    mut job: Job,
    uid: String,
    clusters: &Clusters,
    now: Timestamp,
) -> Result<FederatedJob, Invalid> {
    manifest::validate_new(&job)?;
    default_new(&mut job, uid, now);
    let mut record = FederatedJob::new(job);
    planner::reconcile(&mut record, clusters, now);
    Ok(record)
}

/// The record after the user's part of `current` (labels, annotations, spec) is replaced by
/// what `change` makes of the current Job; `None` when nothing changes.
///
/// `revision` is the current record's store revision; with `expected`, the update applies only
/// to that revision. A change of the spec bumps the generation. A change that adds work (more
/// completions, or more parallelism for a work queue) or of the preferences annotation lets
/// the planner take in clusters again (see [`FederatedJob::grow_members`]): a cluster that
/// joined after the Job was created takes part only in work added later (SPEC §6); new
/// preferences also divide the running parallelism afresh ([`planner::replan`]). `change`
/// runs after the refusals, so a stale or terminating Job is refused before the request is
/// looked at.
pub fn update<E: From<Refused>>(
    current: &FederatedJob,
    revision: u64,
    expected: Option<u64>,
    change: impl FnOnce(&Job) -> Result<Job, E>,
    clusters: &Clusters,
    now: Timestamp,
) -> Result<Option<FederatedJob>, E> {
    let name = current.name();
    if expected.is_some_and(|rv| rv != revision) {
        return Err(Refused::Conflict { name: name.into() }.into());
    }
    if current.deletion.is_some() {
        return Err(Refused::BeingDeleted { name: name.into() }.into());
    }
    let old = &current.job;
    let mut new = change(old)?;
    carry_over(old, &mut new);
    manifest::validate_update(old, &new).map_err(Refused::from)?;
    let mut record = current.clone();
    let spec_changed = new.spec != old.spec;
    let new_preferences =
        annotation(&new, PREFERENCES_ANNOTATION) != annotation(old, PREFERENCES_ANNOTATION);
    if spec_changed {
        new.metadata.generation = Some(old.metadata.generation.unwrap_or(1) + 1);
    }
    record.grow_members |= adds_work(old, &new) || new_preferences;
    record.job = new;
    if new_preferences {
        planner::replan(&mut record, clusters, now);
    } else {
        planner::reconcile(&mut record, clusters, now);
    }
    Ok((record != *current).then_some(record))
}

/// Whether `new` asks for more work than `old`: more completions, or more parallelism of a
/// work queue (whose parallelism is its work).
fn adds_work(old: &Job, new: &Job) -> bool {
    let counts = |job: &Job| {
        let spec = job.spec.as_ref();
        (
            spec.and_then(|s| s.completions),
            spec.and_then(|s| s.parallelism).unwrap_or(1),
        )
    };
    match (counts(old), counts(new)) {
        ((Some(before), _), (Some(after), _)) => after > before,
        ((None, before), (None, after)) => after > before,
        _ => false,
    }
}

/// What deleting `current` writes. Without `cascade` the record goes at once (its shards stay
/// in their clusters); with it, the Job is marked terminating and every shard is stopped, and
/// the record goes once every cluster confirmed.
pub fn delete(current: &FederatedJob, cascade: bool, clusters: &Clusters, now: Timestamp) -> Next {
    if !cascade {
        return Next::Delete;
    }
    if current.deletion.is_some() {
        return Next::Unchanged;
    }
    let mut record = current.clone();
    record.deletion = Some(Deletion { requested_at: now });
    record.job.metadata.deletion_timestamp = Some(Time(now));
    planner::reconcile(&mut record, clusters, now);
    finish(record)
}

/// What a batch of agents' reports writes: each batch is `(cluster, reports)`, observed in
/// order; the Job is planned again only when they can change the plan ([`reports::apply`]).
/// Also returns, per batch, the reports about no shard of `current` (another Job's uid, a
/// shard never planned there), for the agent to forget.
pub fn apply_reports(
    current: &FederatedJob,
    batches: &[(&str, &[ShardReport])],
    clusters: &Clusters,
    now: Timestamp,
) -> (Next, Vec<Vec<ShardReport>>) {
    let applied = reports::apply(current, batches, clusters, now);
    (
        applied.record.map_or(Next::Unchanged, finish),
        applied.rejected,
    )
}

/// What planning `current` again writes (a cluster changed state, room appeared).
pub fn reconcile(current: &FederatedJob, clusters: &Clusters, now: Timestamp) -> Next {
    let mut record = current.clone();
    planner::reconcile(&mut record, clusters, now);
    if record == *current {
        return Next::Unchanged;
    }
    finish(record)
}

/// Writes `record`, or deletes it when a cascading delete has every shard confirmed gone.
pub fn finish(record: FederatedJob) -> Next {
    let all_stopped = record.shards.iter().all(|s| s.state == ShardState::Stopped);
    if record.deletion.is_some() && all_stopped {
        Next::Delete
    } else {
        Next::Put(Box::new(record))
    }
}

/// Whether `record` finished at least `ttlSecondsAfterFinished` before `now`, so the federated
/// Job goes (its shards stay, under their own TTL).
pub fn ttl_expired(record: &FederatedJob, now: Timestamp) -> bool {
    let Some(ttl) = record.spec().ttl_seconds_after_finished else {
        return false;
    };
    if !record.is_finished() {
        return false;
    }
    let status = record.job.status.as_ref();
    let finished_at = status
        .and_then(|s| s.completion_time.as_ref().map(|t| t.0))
        .or_else(|| {
            status?
                .conditions
                .as_ref()?
                .iter()
                .filter(|c| c.type_ == "Failed" || c.type_ == "Complete")
                .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
                .max()
        });
    finished_at.is_some_and(|t| t + jiff::SignedDuration::from_secs(i64::from(ttl)) <= now)
}

/// The value of annotation `key` of `job`.
pub fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Fills what the federation sets on a new Job, as the API server would.
pub fn default_new(job: &mut Job, uid: String, now: Timestamp) {
    let meta = &mut job.metadata;
    meta.namespace.get_or_insert_with(|| "default".into());
    meta.uid = Some(uid);
    meta.generation = Some(1);
    meta.creation_timestamp = Some(Time(now));
    meta.resource_version = None;
    // `managedFields` stay as the caller set them: the Kubernetes API edge records there who
    // owns which field (server-side apply), as the API server does.
    meta.deletion_timestamp = None;
    let spec = job.spec.get_or_insert_with(Default::default);
    if spec.parallelism.is_none() && spec.completions.is_none() {
        spec.completions = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    spec.backoff_limit.get_or_insert(6);
    spec.completion_mode
        .get_or_insert_with(|| "NonIndexed".into());
    spec.suspend.get_or_insert(false);
    job.status = Some(Default::default());
}

/// Keeps what the user may not set on an update: identity, creation, status; and fills the
/// same defaults a new Job gets, so an apply that omits a defaulted field is not a change.
pub fn carry_over(old: &Job, new: &mut Job) {
    let o = &old.metadata;
    let n = &mut new.metadata;
    n.namespace.clone_from(&o.namespace);
    n.uid.clone_from(&o.uid);
    n.generation = o.generation;
    n.creation_timestamp.clone_from(&o.creation_timestamp);
    n.deletion_timestamp.clone_from(&o.deletion_timestamp);
    n.resource_version = None;
    // The Kubernetes API edge sets them on every write it makes; a write that does not
    // (gRPC, fedctl) keeps the current owners.
    if n.managed_fields.is_none() {
        n.managed_fields.clone_from(&o.managed_fields);
    }
    if let (Some(spec), Some(old_spec)) = (new.spec.as_mut(), old.spec.as_ref()) {
        // An omitted count keeps its current value: a Job with completions does not silently
        // turn into a work queue because a manifest left the field out.
        if spec.parallelism.is_none() {
            spec.parallelism = old_spec.parallelism;
        }
        if spec.completions.is_none() {
            spec.completions = old_spec.completions;
        }
        spec.backoff_limit.get_or_insert(6);
        spec.completion_mode
            .get_or_insert_with(|| "NonIndexed".into());
        spec.suspend.get_or_insert(false);
    }
    new.status.clone_from(&old.status);
}

#[cfg(test)]
mod histories;
#[cfg(test)]
mod tests;
