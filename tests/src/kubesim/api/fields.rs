//! The fields a field selector may name, per collection the simulator serves.

use fedjob_scheduler::kube_api::params::JOB_FIELDS;

use crate::kubesim::resource::Resource;

/// Fields a field selector may name, per collection.
pub fn selectable_fields(resource: Resource) -> &'static [&'static str] {
    match resource {
        Resource::Job => JOB_FIELDS,
        Resource::Namespace => &["metadata.name", "status.phase"],
        Resource::Node => &["metadata.name", "spec.unschedulable"],
    }
}

/// Fields a pod field selector may name.
pub const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
