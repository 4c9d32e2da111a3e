//! How a local Job looks to the federation: the `ShardStatus` the syncer reports for it.
//!
//! Pure functions over `batch/v1` Jobs as the API server returns them (k8s-facts/15, 16, 20,
//! 24): absent counts are 0 (the server omits `active` once nothing runs), a finished Job is
//! known by its `Complete` or `Failed` condition, a suspended one by `spec.suspend`.

use fedjob_proto::names;
use fedjob_proto::v1::{ShardPhase, ShardStatus};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::fence;
use super::job::{annotation, condition, is_suspended, job_uid};

/// Who a status is about when no live Job says it.
#[derive(Debug, Clone, Copy)]
pub struct Ids<'a> {
    /// `fedjob.io/job-uid` of the federated Job.
    pub job_uid: &'a str,
    /// Namespace of the shard.
    pub namespace: &'a str,
    /// Name of the shard.
    pub shard: &'a str,
    /// Epoch of the assignment.
    pub epoch: u64,
    /// Revision of the assignment.
    pub revision: u64,
}

/// The phase of a live Job, with the reason and message of the condition behind it.
pub fn phase(job: &Job) -> (ShardPhase, String, String) {
    let text = |c: &k8s_openapi::api::batch::v1::JobCondition| {
        (
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    };
    if let Some(c) = condition(job, "Failed") {
        let (reason, message) = text(c);
        return (ShardPhase::Failed, reason, message);
    }
    if let Some(c) = condition(job, "Complete") {
        let (reason, message) = text(c);
        return (ShardPhase::Complete, reason, message);
    }
    if is_suspended(job) {
        if let Some(at) = fence::marked_at(job) {
            return (
                ShardPhase::Suspended,
                fence::FENCED_REASON.to_owned(),
                fence::message(at),
            );
        }
        let (reason, message) = condition(job, "Suspended").map(text).unwrap_or_default();
        return (ShardPhase::Suspended, reason, message);
    }
    (ShardPhase::Running, String::new(), String::new())
}

/// A protobuf timestamp of a Kubernetes time.
pub fn timestamp(t: &Time) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.0.as_second(),
        nanos: t.0.subsec_nanosecond(),
    }
}

/// The status of a live shard, as its Job says. The revision is the one the Job was last
/// applied from (its `fedjob.io/assignment-revision` annotation).
pub fn from_job(job: &Job) -> ShardStatus {
    let (phase, reason, message) = phase(job);
    let status = job.status.as_ref();
    let spec = job.spec.as_ref();
    ShardStatus {
        job_uid: job_uid(job).unwrap_or_default().to_owned(),
        namespace: job.metadata.namespace.clone().unwrap_or_default(),
        shard: job.metadata.name.clone().unwrap_or_default(),
        epoch: annotation(job, names::EPOCH_ANNOTATION).unwrap_or(0),
        revision: annotation(job, names::ASSIGNMENT_REVISION_ANNOTATION).unwrap_or(0),
        phase: phase as i32,
        active: status.and_then(|s| s.active).unwrap_or(0),
        succeeded: status.and_then(|s| s.succeeded).unwrap_or(0),
        failed: status.and_then(|s| s.failed).unwrap_or(0),
        start_time: status.and_then(|s| s.start_time.as_ref()).map(timestamp),
        completion_time: status
            .and_then(|s| s.completion_time.as_ref())
            .map(timestamp),
        local_uid: job.metadata.uid.clone().unwrap_or_default(),
        reason,
        message,
        parallelism: spec.and_then(|s| s.parallelism).unwrap_or(1),
        suspended: spec.and_then(|s| s.suspend).unwrap_or(false),
    }
}

/// A shard that is gone, with the last counts known of it (a watch `DELETED` event carries
/// the Job's last state, k8s-facts/20). Nothing runs any more, so `active` is 0.
pub fn deleted(ids: Ids<'_>, last: Option<&Job>, message: &str) -> ShardStatus {
    let mut status = match last {
        Some(job) => from_job(job),
        None => ShardStatus::default(),
    };
    status.job_uid = ids.job_uid.to_owned();
    status.namespace = ids.namespace.to_owned();
    status.shard = ids.shard.to_owned();
    status.epoch = ids.epoch;
    status.revision = ids.revision;
    status.phase = ShardPhase::Deleted as i32;
    status.active = 0;
    status.reason = "Deleted".into();
    status.message = message.to_owned();
    status
}

/// A shard without a Job of its own: `MISSING`, `CONFLICT` or `ERROR`, with why.
pub fn absent(ids: Ids<'_>, phase: ShardPhase, reason: &str, message: &str) -> ShardStatus {
    ShardStatus {
        job_uid: ids.job_uid.to_owned(),
        namespace: ids.namespace.to_owned(),
        shard: ids.shard.to_owned(),
        epoch: ids.epoch,
        revision: ids.revision,
        phase: phase as i32,
        reason: reason.to_owned(),
        message: message.to_owned(),
        ..ShardStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{as_shard, fact, watch_events};
    use crate::rules::job::{is_managed, is_terminating};

    fn phase_of(s: &ShardStatus) -> ShardPhase {
        ShardPhase::try_from(s.phase).unwrap()
    }

    #[test]
    fn completed_job_15() {
        let s = from_job(&as_shard(fact("15"), 3));
        assert_eq!(phase_of(&s), ShardPhase::Complete);
        assert_eq!((s.active, s.succeeded, s.failed), (0, 2, 0));
        assert_eq!(s.job_uid, "uid-1");
        assert_eq!(s.namespace, "default");
        assert_eq!(s.shard, "ssa");
        assert_eq!(s.local_uid, "0c187ddc-f58b-49ce-94ea-5fa38b5f3a4c");
        assert_eq!(s.revision, 3);
        assert_eq!(s.epoch, 2);
        assert_eq!(s.parallelism, 2);
        assert!(!s.suspended);
        let start = "2026-11-28T13:46:54Z".parse::<jiff::Timestamp>().unwrap();
        let done = "2026-11-28T13:46:56Z".parse::<jiff::Timestamp>().unwrap();
        assert_eq!(s.start_time.unwrap().seconds, start.as_second());
        assert_eq!(s.completion_time.unwrap().seconds, done.as_second());
    }

    #[test]
    fn failed_job_16() {
        let s = from_job(&as_shard(fact("16"), 1));
        assert_eq!(phase_of(&s), ShardPhase::Failed);
        assert_eq!((s.active, s.succeeded, s.failed), (0, 0, 2));
        assert_eq!(s.reason, "BackoffLimitExceeded");
        assert_eq!(s.message, "Job has reached the specified backoff limit");
        assert!(s.completion_time.is_none());
        assert!(s.start_time.is_some());
    }

    #[test]
    fn suspended_job_24() {
        let s = from_job(&as_shard(fact("24"), 1));
        assert_eq!(phase_of(&s), ShardPhase::Suspended);
        assert!(s.suspended);
        assert_eq!(s.active, 0);
        assert_eq!(s.reason, "JobSuspended");
        assert_eq!(s.message, "Job suspended");
    }

    #[test]
    fn a_job_the_fence_suspended_says_so() {
        let mut job = fact("24");
        job["metadata"]["annotations"] =
            serde_json::json!({fence::FENCED_ANNOTATION: "2026-11-28T13:46:54Z"});
        let s = from_job(&as_shard(job, 1));
        assert_eq!(phase_of(&s), ShardPhase::Suspended);
        assert_eq!(s.reason, "SelfFenced");
        assert!(s.message.contains("2026-11-28T13:46:54Z"), "{}", s.message);
        assert!(s.message.contains("--self-fence-after"), "{}", s.message);
    }

    #[test]
    fn fresh_job_01_is_running_with_zero_counts() {
        let s = from_job(&as_shard(fact("01"), 1));
        assert_eq!(phase_of(&s), ShardPhase::Running);
        assert_eq!((s.active, s.succeeded, s.failed), (0, 0, 0));
        assert_eq!(s.parallelism, 3);
        assert!(s.start_time.is_none());
    }

    #[test]
    fn a_job_without_fedjob_annotations_reports_zero_revision_and_epoch() {
        let job: Job = serde_json::from_value(fact("09")).unwrap();
        let s = from_job(&job);
        assert_eq!((s.revision, s.epoch), (0, 0));
        assert_eq!(s.job_uid, "");
        assert!(!is_managed(&job));
    }

    #[test]
    fn watch_events_20_running_then_deleted_with_last_counts() {
        let events = watch_events();
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "ADDED", "MODIFIED", "MODIFIED", "DELETED", "BOOKMARK", "BOOKMARK"
            ]
        );
        let jobs: Vec<Job> = events[..4]
            .iter()
            .map(|(_, o)| as_shard(o.clone(), 1))
            .collect();
        let running = from_job(&jobs[1]);
        assert_eq!(phase_of(&running), ShardPhase::Running);
        assert_eq!((running.active, running.succeeded), (1, 0));
        assert_eq!(from_job(&jobs[2]).succeeded, 1);

        let ids = Ids {
            job_uid: "uid-1",
            namespace: "default",
            shard: "w1",
            epoch: 2,
            revision: 1,
        };
        let gone = deleted(ids, Some(&jobs[3]), "deleted in the cluster");
        assert_eq!(phase_of(&gone), ShardPhase::Deleted);
        assert_eq!((gone.active, gone.succeeded, gone.failed), (0, 1, 0));
        assert!(gone.start_time.is_some());
        assert_eq!(gone.local_uid, jobs[3].metadata.uid.clone().unwrap());
        assert_eq!(gone.message, "deleted in the cluster");

        let never_seen = deleted(ids, None, "deleted by the syncer");
        assert_eq!(
            (never_seen.succeeded, never_seen.local_uid.as_str()),
            (0, "")
        );
    }

    #[test]
    fn absent_statuses_carry_the_assignment_identity() {
        let ids = Ids {
            job_uid: "uid-1",
            namespace: "nosuchns",
            shard: "myjob",
            epoch: 4,
            revision: 7,
        };
        let s = absent(
            ids,
            ShardPhase::Error,
            "NamespaceNotFound",
            "namespaces \"nosuchns\" not found",
        );
        assert_eq!(phase_of(&s), ShardPhase::Error);
        assert_eq!((s.epoch, s.revision), (4, 7));
        assert_eq!(s.reason, "NamespaceNotFound");
        assert_eq!(s.message, "namespaces \"nosuchns\" not found");
    }

    #[test]
    fn terminating_and_failed_over_complete() {
        let mut v = fact("15");
        v["metadata"]["deletionTimestamp"] = serde_json::json!("2026-11-28T13:47:00Z");
        v["status"]["conditions"].as_array_mut().unwrap().push(
            serde_json::json!({"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}),
        );
        let job = as_shard(v, 1);
        assert!(is_terminating(&job));
        assert_eq!(phase(&job).0, ShardPhase::Failed);
    }
}
