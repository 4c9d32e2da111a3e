//! URL paths of the Kubernetes API, parsed into what they address.

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
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let route = match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", "batch"] => Route::BatchGroup,
        ["api", "v1"] => Route::CoreResources,
        ["apis", "batch", "v1"] => Route::BatchResources,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3", ..] => Route::OpenApiV3,
        ["api", "v1", rest @ ..] => core(rest)?,
        [
            "apis",
            "coordination.k8s.io",
            "v1",
            "namespaces",
            "kube-node-lease",
            "leases",
            name,
        ] => Route::NodeLease {
            name: (*name).to_owned(),
        },
        ["apis", "batch", "v1", rest @ ..] => batch(rest)?,
        _ => return None,
    };
    Some(route)
}

fn core(rest: &[&str]) -> Option<Route> {
    let (watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let ns = |s: &str| Some(s.to_owned());
    Some(match rest {
        ["namespaces"] => Route::Collection {
            resource: Resource::Namespace,
            namespace: None,
            watch,
        },
        ["namespaces", name] => Route::Object {
            resource: Resource::Namespace,
            namespace: String::new(),
            name: (*name).to_owned(),
            subresource: None,
            watch,
        },
        ["namespaces", name, "status"] if !watch => Route::Object {
            resource: Resource::Namespace,
            namespace: String::new(),
            name: (*name).to_owned(),
            subresource: Some("status".to_owned()),
            watch,
        },
        ["nodes"] => Route::Collection {
            resource: Resource::Node,
            namespace: None,
            watch,
        },
        ["nodes", name] => Route::Object {
            resource: Resource::Node,
            namespace: String::new(),
            name: (*name).to_owned(),
            subresource: None,
            watch,
        },
        ["nodes", name, "status"] if !watch => Route::Object {
            resource: Resource::Node,
            namespace: String::new(),
            name: (*name).to_owned(),
            subresource: Some("status".to_owned()),
            watch,
        },
        ["pods"] if !watch => Route::Pods {
            namespace: None,
            name: None,
        },
        ["namespaces", n, "pods"] if !watch => Route::Pods {
            namespace: ns(n),
            name: None,
        },
        ["namespaces", n, "pods", name] if !watch => Route::Pods {
            namespace: ns(n),
            name: ns(name),
        },
        ["events"] if !watch => Route::Events { namespace: None },
        ["namespaces", n, "events"] if !watch => Route::Events { namespace: ns(n) },
        _ => return None,
    })
}

fn batch(rest: &[&str]) -> Option<Route> {
    let (watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    Some(match rest {
        ["jobs"] => Route::Collection {
            resource: Resource::Job,
            namespace: None,
            watch,
        },
        ["namespaces", n, "jobs"] => Route::Collection {
            resource: Resource::Job,
            namespace: Some((*n).to_owned()),
            watch,
        },
        ["namespaces", n, "jobs", name] => Route::Object {
            resource: Resource::Job,
            namespace: (*n).to_owned(),
            name: (*name).to_owned(),
            subresource: None,
            watch,
        },
        ["namespaces", n, "jobs", name, "status"] if !watch => Route::Object {
            resource: Resource::Job,
            namespace: (*n).to_owned(),
            name: (*name).to_owned(),
            subresource: Some("status".to_owned()),
            watch,
        },
        _ => return None,
    })
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
                name: None
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
        assert_eq!(parse("/apis/apps/v1/deployments"), None);
        assert_eq!(
            parse("/apis/batch/v1/namespaces/default/jobs/a/scale"),
            None
        );
    }
}
