//! URL paths of the Kubernetes API (parsed by [`fedjob_scheduler::kube_api::path`]), mapped to
//! what the simulator serves.

use fedjob_scheduler::kube_api::path::{self, ApiPath, ResourcePath};

use crate::kubesim::resource::Resource;

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: the API groups.
    Groups,
    /// `/apis/batch`: one group.
    BatchGroup,
    /// `/api/v1`: the core resources.
    CoreResources,
    /// `/apis/batch/v1`: the batch resources.
    BatchResources,
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3` and below.
    OpenApiV3,
    /// A collection: all objects of a resource (in one namespace, or in all when `None`).
    Collection {
        /// The resource.
        resource: Resource,
        /// The namespace; `None` for all namespaces or a cluster-scoped resource.
        namespace: Option<String>,
        /// Reached through the legacy `/watch/` prefix.
        watch: bool,
    },
    /// One object, or its `status` subresource.
    Object {
        /// The resource.
        resource: Resource,
        /// The namespace ("" for cluster-scoped resources).
        namespace: String,
        /// The name.
        name: String,
        /// `Some("status")` for the status subresource.
        subresource: Option<String>,
        /// Reached through the legacy `/watch/` prefix.
        watch: bool,
    },
    /// Simulated pods: a namespace's, everyone's, or one.
    Pods {
        /// The namespace; `None` for all.
        namespace: Option<String>,
        /// One pod's name.
        name: Option<String>,
        /// Reached through the legacy `/watch/` prefix.
        watch: bool,
    },
    /// Events (the scheduler's).
    Events {
        /// The namespace; `None` for all.
        namespace: Option<String>,
    },
    /// A node's `coordination.k8s.io` Lease (`kubectl describe node` asks): the simulated
    /// kubelets hold none.
    NodeLease {
        /// The node's name.
        name: String,
    },
}

/// Parses a request path; `None` for paths the simulator does not serve.
pub fn parse(path: &str) -> Option<Route> {
    let route = match path::parse(path)? {
        ApiPath::Version => Route::Version,
        ApiPath::Health => Route::Health,
        ApiPath::CoreVersions => Route::CoreVersions,
        ApiPath::Groups => Route::Groups,
        ApiPath::Group("batch") => Route::BatchGroup,
        ApiPath::GroupVersion {
            group: "",
            version: "v1",
        } => Route::CoreResources,
        ApiPath::GroupVersion {
            group: "batch",
            version: "v1",
        } => Route::BatchResources,
        ApiPath::OpenApiV2 => Route::OpenApiV2,
        ApiPath::OpenApiV3(_) => Route::OpenApiV3,
        ApiPath::Resource(r) => resource(r)?,
        ApiPath::Group(_) | ApiPath::GroupVersion { .. } => return None,
    };
    Some(route)
}

fn resource(r: ResourcePath<'_>) -> Option<Route> {
    let ns = r.namespace.map(str::to_owned);
    let owned = |s: Option<&str>| s.map(str::to_owned);
    let object = |resource: Resource| match r.name {
        None if r.subresource.is_none() => Some(Route::Collection {
            resource,
            namespace: ns.clone(),
            watch: r.watch,
        }),
        Some(name) => match r.subresource {
            None => Some(Route::Object {
                resource,
                namespace: ns.clone().unwrap_or_default(),
                name: name.to_owned(),
                subresource: None,
                watch: r.watch,
            }),
            Some("status") if !r.watch => Some(Route::Object {
                resource,
                namespace: ns.clone().unwrap_or_default(),
                name: name.to_owned(),
                subresource: Some("status".to_owned()),
                watch: false,
            }),
            Some(_) => None,
        },
        None => None,
    };
    match (r.group, r.version, r.resource) {
        ("batch", "v1", "jobs") if r.name.is_none() || r.namespace.is_some() => {
            object(Resource::Job)
        }
        ("", "v1", "namespaces") if r.namespace.is_none() => object(Resource::Namespace),
        ("", "v1", "nodes") if r.namespace.is_none() => object(Resource::Node),
        ("coordination.k8s.io", "v1", "leases")
            if r.namespace == Some("kube-node-lease") && r.subresource.is_none() && !r.watch =>
        {
            r.name.map(|name| Route::NodeLease {
                name: name.to_owned(),
            })
        }
        ("", "v1", "pods") if r.subresource.is_none() => {
            if r.name.is_some() && (r.namespace.is_none() || r.watch) {
                return None;
            }
            Some(Route::Pods {
                namespace: ns,
                name: owned(r.name),
                watch: r.watch,
            })
        }
        ("", "v1", "events") if !r.watch && r.name.is_none() => {
            Some(Route::Events { namespace: ns })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_api_paths() {
        assert_eq!(parse("/apis/batch/v1"), Some(Route::BatchResources));
        assert_eq!(
            parse("/apis/batch/v1/namespaces/default/jobs"),
            Some(Route::Collection {
                resource: Resource::Job,
                namespace: Some("default".into()),
                watch: false
            })
        );
        assert_eq!(
            parse("/apis/batch/v1/namespaces/default/jobs/a/status"),
            Some(Route::Object {
                resource: Resource::Job,
                namespace: "default".into(),
                name: "a".into(),
                subresource: Some("status".into()),
                watch: false
            })
        );
        assert_eq!(
            parse("/api/v1/watch/namespaces"),
            Some(Route::Collection {
                resource: Resource::Namespace,
                namespace: None,
                watch: true
            })
        );
        assert_eq!(
            parse("/api/v1/namespaces/x/pods"),
            Some(Route::Pods {
                namespace: Some("x".into()),
                name: None,
                watch: false
            })
        );
        assert_eq!(
            parse("/api/v1/watch/nodes"),
            Some(Route::Collection {
                resource: Resource::Node,
                namespace: None,
                watch: true
            })
        );
        assert_eq!(
            parse("/api/v1/nodes/n1/status"),
            Some(Route::Object {
                resource: Resource::Node,
                namespace: String::new(),
                name: "n1".into(),
                subresource: Some("status".into()),
                watch: false
            })
        );
        assert_eq!(
            parse("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1"),
            Some(Route::NodeLease { name: "n1".into() })
        );
        assert_eq!(
            parse("/api/v1/watch/namespaces/x/pods"),
            Some(Route::Pods {
                namespace: Some("x".into()),
                name: None,
                watch: true
            })
        );
        assert_eq!(parse("/apis/apps/v1/deployments"), None);
        assert_eq!(
            parse("/apis/batch/v1/namespaces/default/jobs/a/scale"),
            None
        );
    }
}
