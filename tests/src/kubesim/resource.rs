//! The kinds of object the simulated API server stores, and the names the API uses for each.
//!
//! The names themselves are the scheduler's [`ResourceType`] constants, shared with the
//! federation's own Kubernetes API, so error messages and discovery documents spell them the
//! same way ("jobs.batch" in a NotFound, "Job.batch" in an Invalid).

use std::fmt;

use fedjob_scheduler::kube_api::resource::{JOBS, NAMESPACES, NODES, ResourceType};

/// A stored resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// Core `v1` namespaces (cluster-scoped).
    Namespace,
    /// `batch/v1` jobs (namespaced).
    Job,
    /// Core `v1` nodes (cluster-scoped).
    Node,
}

impl Resource {
    /// The API's names of this resource.
    pub fn names(self) -> &'static ResourceType {
        match self {
            Resource::Namespace => &NAMESPACES,
            Resource::Job => &JOBS,
            Resource::Node => &NODES,
        }
    }

    /// The API group ("" for the core group).
    pub fn group(self) -> &'static str {
        self.names().group
    }

    /// The `apiVersion` of objects of this resource.
    pub fn api_version(self) -> &'static str {
        self.names().api_version
    }

    /// The kind of one object.
    pub fn kind(self) -> &'static str {
        self.names().kind
    }

    /// The kind of a list of objects.
    pub fn list_kind(self) -> &'static str {
        self.names().list_kind
    }

    /// The plural resource name used in URLs.
    pub fn plural(self) -> &'static str {
        self.names().plural
    }

    /// Whether objects live inside a namespace.
    pub fn namespaced(self) -> bool {
        self.names().namespaced
    }

    /// The value of a field that a field selector may name (`status.successful` of a Job,
    /// `status.phase` of a Namespace, `spec.unschedulable` of a Node); empty for other fields.
    pub fn field_value(self, value: &serde_json::Value, field: &str) -> String {
        let s = |p: &str| {
            value
                .pointer(p)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match (self, field) {
            (_, "metadata.name") => s("/metadata/name"),
            (_, "metadata.namespace") => s("/metadata/namespace"),
            (Resource::Job, "status.successful") => value
                .pointer("/status/succeeded")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0)
                .to_string(),
            (Resource::Namespace, "status.phase") => s("/status/phase"),
            (Resource::Node, "spec.unschedulable") => value
                .pointer("/spec/unschedulable")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
                .to_string(),
            _ => String::new(),
        }
    }

    /// The JSON prefix every serialized object of this resource starts with, in the order the
    /// real server writes it (`kind` first).
    pub fn type_meta_json(self) -> String {
        self.names().type_meta_json()
    }
}

impl From<Resource> for &'static ResourceType {
    fn from(r: Resource) -> Self {
        r.names()
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}
