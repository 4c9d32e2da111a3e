//! Reading a live `batch/v1` Job as the API server returns it: whose it is, whether it is going
//! away, suspended or finished, and fedjob's numeric annotations. The bottom of the syncer:
//! everything else that looks at a Job asks these.

use fedjob_proto::names;
use k8s_openapi::api::batch::v1::{Job, JobCondition};

/// The `fedjob.io/job-uid` label of a Job, if it has one.
pub fn job_uid(job: &Job) -> Option<&str> {
    job.metadata
        .labels
        .as_ref()?
        .get(names::JOB_UID_LABEL)
        .map(String::as_str)
}

/// Whether the Job carries `fedjob.io/managed-by=fedjob`.
pub fn is_managed(job: &Job) -> bool {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::MANAGED_BY_LABEL))
        .is_some_and(|v| v == names::MANAGED_BY_VALUE)
}

/// Whether the Job is being deleted (`metadata.deletionTimestamp` set).
pub fn is_terminating(job: &Job) -> bool {
    job.metadata.deletion_timestamp.is_some()
}

/// Whether the Job's `spec.suspend` is true.
pub fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
}

/// The condition `kind` (`Complete`, `Failed`, `Suspended`) when it holds (`status: "True"`).
pub fn condition<'a>(job: &'a Job, kind: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
}

/// Whether the Job has finished: its `Complete` or `Failed` condition holds.
pub fn is_finished(job: &Job) -> bool {
    condition(job, "Complete").is_some() || condition(job, "Failed").is_some()
}

/// An annotation of `job` read as a number.
pub fn annotation(job: &Job, key: &str) -> Option<u64> {
    job.metadata
        .annotations
        .as_ref()?
        .get(key)?
        .trim()
        .parse()
        .ok()
}
