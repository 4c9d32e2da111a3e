//! The kinds of object the simulated API server stores, and the names the API uses for each.
//!
//! A real server derives these strings from its scheme; error messages and discovery documents
//! must spell them exactly ("jobs.batch" in a NotFound, "Job.batch" in an Invalid), so they live
//! in one place.

use std::fmt;

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
    /// The API group ("" for the core group).
    pub fn group(self) -> &'static str {
        match self {
            Resource::Namespace | Resource::Node => "",
            Resource::Job => "batch",
        }
    }

    /// The `apiVersion` of objects of this resource.
    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Namespace | Resource::Node => "v1",
            Resource::Job => "batch/v1",
        }
    }

    /// The kind of one object.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Namespace => "Namespace",
            Resource::Job => "Job",
            Resource::Node => "Node",
        }
    }

    /// The kind of a list of objects.
    pub fn list_kind(self) -> &'static str {
        match self {
            Resource::Namespace => "NamespaceList",
            Resource::Job => "JobList",
            Resource::Node => "NodeList",
        }
    }

    /// The plural resource name used in URLs.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Namespace => "namespaces",
            Resource::Job => "jobs",
            Resource::Node => "nodes",
        }
    }

    /// Whether objects live inside a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, Resource::Job)
    }

    /// `resource.group` as NotFound/AlreadyExists/Conflict messages print it (`jobs.batch`).
    pub fn qualified_resource(self) -> String {
        qualify(self.plural(), self.group())
    }

    /// `Kind.group` as Invalid messages print it (`Job.batch`).
    pub fn qualified_kind(self) -> String {
        qualify(self.kind(), self.group())
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
        format!(
            r#"{{"kind":"{}","apiVersion":"{}","#,
            self.kind(),
            self.api_version()
        )
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_owned()
    } else {
        format!("{name}.{group}")
    }
}
