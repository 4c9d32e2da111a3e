//! The names the Kubernetes API uses for a resource type.
//!
//! A real server derives these strings from its scheme; error messages and discovery documents
//! must spell them exactly ("jobs.batch" in a NotFound, "Job.batch" in an Invalid), so each
//! resource type is described once, as a constant.

use std::fmt;

/// The names of one resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceType {
    /// The API group ("" for the core group).
    pub group: &'static str,
    /// The `apiVersion` of its objects (`batch/v1`, `v1`).
    pub api_version: &'static str,
    /// The kind of one object.
    pub kind: &'static str,
    /// The kind of a list of objects.
    pub list_kind: &'static str,
    /// The plural name used in URLs.
    pub plural: &'static str,
    /// Whether objects live inside a namespace.
    pub namespaced: bool,
}

/// `batch/v1` Jobs.
pub const JOBS: ResourceType = ResourceType {
    group: "batch",
    api_version: "batch/v1",
    kind: "Job",
    list_kind: "JobList",
    plural: "jobs",
    namespaced: true,
};

/// Core `v1` Namespaces.
pub const NAMESPACES: ResourceType = ResourceType {
    group: "",
    api_version: "v1",
    kind: "Namespace",
    list_kind: "NamespaceList",
    plural: "namespaces",
    namespaced: false,
};

/// Core `v1` Nodes.
pub const NODES: ResourceType = ResourceType {
    group: "",
    api_version: "v1",
    kind: "Node",
    list_kind: "NodeList",
    plural: "nodes",
    namespaced: false,
};

impl ResourceType {
    /// The version part of `apiVersion` (`v1`).
    pub fn version(&self) -> &'static str {
        self.api_version
            .rsplit_once('/')
            .map_or(self.api_version, |(_, v)| v)
    }

    /// `resource.group` as NotFound/AlreadyExists/Conflict messages print it (`jobs.batch`).
    pub fn qualified_resource(&self) -> String {
        qualify(self.plural, self.group)
    }

    /// `Kind.group` as Invalid messages print it (`Job.batch`).
    pub fn qualified_kind(&self) -> String {
        qualify(self.kind, self.group)
    }

    /// The JSON prefix every serialized object of this type starts with, in the order the real
    /// server writes it (`kind` first): `{"kind":"Job","apiVersion":"batch/v1",`.
    pub fn type_meta_json(&self) -> String {
        format!(
            r#"{{"kind":"{}","apiVersion":"{}","#,
            self.kind, self.api_version
        )
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural)
    }
}

fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_owned()
    } else {
        format!("{name}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_the_api_server_prints_them() {
        assert_eq!(JOBS.qualified_resource(), "jobs.batch");
        assert_eq!(JOBS.qualified_kind(), "Job.batch");
        assert_eq!(JOBS.version(), "v1");
        assert_eq!(NAMESPACES.qualified_resource(), "namespaces");
        assert_eq!(NAMESPACES.version(), "v1");
        assert_eq!(
            JOBS.type_meta_json(),
            r#"{"kind":"Job","apiVersion":"batch/v1","#
        );
    }
}
