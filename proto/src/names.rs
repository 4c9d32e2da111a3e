//! Labels, annotations and names shared by the scheduler and the syncer.
//!
//! A shard is an ordinary `batch/v1` Job in a member cluster; these keys are how the
//! syncer recognises it again after a restart, and how a user finds it with kubectl.

/// Label holding the federated Job's name.
pub const JOB_LABEL: &str = "fedjob.io/job";
/// Label holding the federated Job's uid: the proof that fedjob created a local Job.
pub const JOB_UID_LABEL: &str = "fedjob.io/job-uid";
/// Label marking every Job that fedjob manages.
pub const MANAGED_BY_LABEL: &str = "fedjob.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "fedjob";
/// Label selector that finds every shard in a cluster.
pub const MANAGED_SELECTOR: &str = "fedjob.io/managed-by=fedjob";
/// Annotation recording the revision of the assignment a shard was last applied from.
pub const ASSIGNMENT_REVISION_ANNOTATION: &str = "fedjob.io/assignment-revision";
/// Annotation recording the fencing epoch a shard was planned in.
pub const EPOCH_ANNOTATION: &str = "fedjob.io/epoch";
/// Annotation holding a federated Job's placement preferences (SPEC §3).
pub const PREFERENCES_ANNOTATION: &str = "federation.kubernetes.io/job-preferences";
/// Field manager of the syncer's server-side applies.
pub const FIELD_MANAGER: &str = "fedjob-syncer";

/// Name of the `index`-th shard (1-based) of Job `job` in one cluster: `job`, `job-2`, `job-3`, ….
pub fn shard_name(job: &str, index: u32) -> String {
    if index <= 1 {
        job.to_owned()
    } else {
        format!("{job}-{index}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_shard_keeps_the_job_name() {
        assert_eq!(shard_name("myjob", 1), "myjob");
        assert_eq!(shard_name("myjob", 2), "myjob-2");
        assert_eq!(shard_name("myjob", 13), "myjob-13");
    }
}
