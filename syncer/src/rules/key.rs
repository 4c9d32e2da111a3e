//! Where a shard lives: the namespace and name of its local Job.

use k8s_openapi::api::batch::v1::Job;

/// The namespace and name of a shard's local Job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey {
    /// Namespace.
    pub namespace: String,
    /// Name of the local Job.
    pub name: String,
}

impl ShardKey {
    /// The key of `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a Job (empty parts when it has no namespace or name).
    pub fn of(job: &Job) -> Self {
        Self::new(
            job.metadata.namespace.clone().unwrap_or_default(),
            job.metadata.name.clone().unwrap_or_default(),
        )
    }
}

impl std::fmt::Display for ShardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
