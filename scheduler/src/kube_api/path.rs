//! URL paths of the Kubernetes API, parsed into what they address, as the API server's
//! `RequestInfoFactory` parses them: `/apis/GROUP/VERSION/[watch/]namespaces/NS/RESOURCE/NAME/SUB`,
//! `/api/v1/…` for the core group, and the discovery and OpenAPI paths.

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath<'a> {
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz` (and their sub-checks).
    Health,
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: the API groups.
    Groups,
    /// `/apis/GROUP`: one group.
    Group(&'a str),
    /// `/api/v1` (group "") or `/apis/GROUP/VERSION`: the resources of a group version.
    GroupVersion {
        /// The group ("" for core).
        group: &'a str,
        /// The version.
        version: &'a str,
    },
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3` (empty) or `/openapi/v3/REST`: the path after `/openapi/v3/`.
    OpenApiV3(String),
    /// A resource: a collection, an object, or an object's subresource.
    Resource(ResourcePath<'a>),
}

/// A path into a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath<'a> {
    /// The group ("" for core).
    pub group: &'a str,
    /// The version.
    pub version: &'a str,
    /// The namespace; `None` for all namespaces, or a cluster-scoped resource.
    pub namespace: Option<&'a str>,
    /// The resource's plural name (`jobs`).
    pub resource: &'a str,
    /// The object's name, when the path names one.
    pub name: Option<&'a str>,
    /// The subresource (`status`), when the path names one.
    pub subresource: Option<&'a str>,
    /// Reached through the legacy `/watch/` prefix.
    pub watch: bool,
}

/// Subresources of a namespace, which are not resources inside it
/// (`/api/v1/namespaces/NAME/status` is the namespace's status).
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parses a request path; `None` for a path that is not an API path at all.
pub fn parse(path: &str) -> Option<ApiPath<'_>> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    Some(match segments.as_slice() {
        ["version"] => ApiPath::Version,
        ["healthz" | "livez" | "readyz", ..] => ApiPath::Health,
        ["api"] => ApiPath::CoreVersions,
        ["apis"] => ApiPath::Groups,
        ["apis", group] => ApiPath::Group(group),
        ["api", version] => ApiPath::GroupVersion { group: "", version },
        ["apis", group, version] => ApiPath::GroupVersion { group, version },
        ["openapi", "v2"] => ApiPath::OpenApiV2,
        ["openapi", "v3", rest @ ..] => ApiPath::OpenApiV3(rest.join("/")),
        ["api", version, rest @ ..] => ApiPath::Resource(resource("", version, rest)?),
        ["apis", group, version, rest @ ..] => ApiPath::Resource(resource(group, version, rest)?),
        _ => return None,
    })
}

fn resource<'a>(group: &'a str, version: &'a str, rest: &[&'a str]) -> Option<ResourcePath<'a>> {
    let (watch, mut rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    if rest.iter().any(|s| s.is_empty()) {
        // `namespaces//jobs`: no namespace is named, as the API server reads it.
        return None;
    }
    let mut namespace = None;
    if let ["namespaces", ns, more @ ..] = rest
        && let [next, ..] = more
        && !NAMESPACE_SUBRESOURCES.contains(next)
    {
        namespace = Some(*ns);
        rest = more;
    }
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    if resource.is_empty() || name.is_some_and(str::is_empty) {
        return None;
    }
    Some(ResourcePath {
        group,
        version,
        namespace,
        resource,
        name,
        subresource,
        watch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res<'a>(
        group: &'a str,
        namespace: Option<&'a str>,
        resource: &'a str,
        name: Option<&'a str>,
        subresource: Option<&'a str>,
        watch: bool,
    ) -> Option<ApiPath<'a>> {
        Some(ApiPath::Resource(ResourcePath {
            group,
            version: "v1",
            namespace,
            resource,
            name,
            subresource,
            watch,
        }))
    }

    #[test]
    fn parses_api_paths() {
        assert_eq!(
            parse("/apis/batch/v1"),
            Some(ApiPath::GroupVersion {
                group: "batch",
                version: "v1"
            })
        );
        assert_eq!(
            parse("/api/v1/"),
            Some(ApiPath::GroupVersion {
                group: "",
                version: "v1"
            })
        );
        assert_eq!(
            parse("/apis/batch/v1/namespaces/default/jobs"),
            res("batch", Some("default"), "jobs", None, None, false)
        );
        assert_eq!(
            parse("/apis/batch/v1/namespaces/default/jobs/a/status"),
            res(
                "batch",
                Some("default"),
                "jobs",
                Some("a"),
                Some("status"),
                false
            )
        );
        assert_eq!(
            parse("/apis/batch/v1/watch/namespaces/default/jobs/a"),
            res("batch", Some("default"), "jobs", Some("a"), None, true)
        );
        assert_eq!(
            parse("/apis/batch/v1/jobs"),
            res("batch", None, "jobs", None, None, false)
        );
        assert_eq!(
            parse("/api/v1/namespaces"),
            res("", None, "namespaces", None, None, false)
        );
        assert_eq!(
            parse("/api/v1/namespaces/x"),
            res("", None, "namespaces", Some("x"), None, false)
        );
        assert_eq!(
            parse("/api/v1/namespaces/x/status"),
            res("", None, "namespaces", Some("x"), Some("status"), false)
        );
        assert_eq!(
            parse("/api/v1/namespaces/x/pods"),
            res("", Some("x"), "pods", None, None, false)
        );
        assert_eq!(
            parse("/openapi/v3/apis/batch/v1"),
            Some(ApiPath::OpenApiV3("apis/batch/v1".into()))
        );
        assert_eq!(
            parse("/openapi/v3"),
            Some(ApiPath::OpenApiV3(String::new()))
        );
        assert_eq!(parse("/apis/batch/v1/namespaces/d/jobs/a/b/c"), None);
        assert_eq!(parse("/metrics"), None);
        assert_eq!(parse("/apis/batch/v1/namespaces//jobs"), None);
    }
}
