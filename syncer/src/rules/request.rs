//! A request to the member cluster's API server, named as RBAC and the API server's logs
//! name it (`create jobs`, `watch jobs`), and how long it may take before it counts as slow.

use std::fmt;
use std::time::Duration;

/// What a request asks of the API server: a verb on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Operation {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// The resource's plural name (`jobs`), with its subresource (`jobs/status`); the path
    /// when it is not a resource.
    pub resource: String,
}

/// The API server's latency objective for calls on one object (Kubernetes' SLO: 1 s at the
/// 99th percentile): a syncer's get, apply or delete that takes longer is slow.
pub const OBJECT_SLO: Duration = Duration::from_secs(1);

/// The objective for listing across namespaces (30 s), the syncer's only kind of list.
pub const LIST_SLO: Duration = Duration::from_secs(30);

impl Operation {
    /// Names a request from its method, path and query. `tag` is the name the `kube` client
    /// gives its call (`get`, `list`, `watch`, `replace`, …), when it gave one.
    pub fn of(method: &str, path: &str, query: Option<&str>, tag: Option<&str>) -> Operation {
        let watch_param = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .any(|pair| matches!(pair, "watch=true" | "watch=1"));
        let Some((resource, named, watch_path)) = resource_of(path) else {
            return Operation {
                verb: method.to_ascii_lowercase(),
                resource: path.to_owned(),
            };
        };
        let verb = match tag {
            Some("replace") => "update",
            Some("delete_collection") => "deletecollection",
            Some(tag) if !tag.contains('_') => tag,
            _ => match method {
                "GET" if watch_param || watch_path => "watch",
                "GET" if named => "get",
                "GET" => "list",
                "POST" => "create",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" if named => "delete",
                "DELETE" => "deletecollection",
                other => {
                    return Operation {
                        verb: other.to_ascii_lowercase(),
                        resource,
                    };
                }
            },
        };
        Operation {
            verb: verb.to_owned(),
            resource,
        }
    }

    /// Whether the request streams for as long as it lasts (a watch).
    pub fn is_watch(&self) -> bool {
        self.verb == "watch"
    }

    /// How long it may take before it is slow; `None` for a watch, which lasts by design.
    pub fn objective(&self) -> Option<Duration> {
        match self.verb.as_str() {
            "watch" => None,
            "list" | "deletecollection" => Some(LIST_SLO),
            _ => Some(OBJECT_SLO),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)
    }
}

/// The resource a path addresses (`jobs`, `jobs/status`), whether it names one object, and
/// whether it is under the legacy `/watch/` prefix; `None` when it is not a resource path.
fn resource_of(path: &str) -> Option<(String, bool, bool)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    let (watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let rest = match rest {
        // `/namespaces/NS/RESOURCE…`, but not `/namespaces` or `/namespaces/NAME[/status]`.
        ["namespaces", _ns, resource, rest @ ..]
            if *resource != "status" && *resource != "finalize" =>
        {
            let mut all = vec![*resource];
            all.extend(rest);
            all
        }
        rest => rest.to_vec(),
    };
    Some(match rest.as_slice() {
        [] => return None,
        [resource] => ((*resource).to_owned(), false, watch),
        [resource, _name] => ((*resource).to_owned(), true, watch),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true, watch),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, uri: &str, tag: Option<&str>) -> String {
        let (path, query) = uri
            .split_once('?')
            .map_or((uri, None), |(p, q)| (p, Some(q)));
        Operation::of(method, path, query, tag).to_string()
    }

    #[test]
    fn the_syncers_requests_by_name() {
        let one = "/apis/batch/v1/namespaces/default/jobs/myjob";
        assert_eq!(op("GET", one, Some("get")), "get jobs");
        assert_eq!(
            op(
                "PATCH",
                &format!("{one}?fieldManager=fedjob-syncer&force=true"),
                Some("patch")
            ),
            "patch jobs"
        );
        assert_eq!(op("DELETE", one, Some("delete")), "delete jobs");
        assert_eq!(
            op(
                "POST",
                "/apis/batch/v1/namespaces/default/jobs",
                Some("create")
            ),
            "create jobs"
        );
        assert_eq!(
            op(
                "GET",
                "/apis/batch/v1/jobs?labelSelector=x&limit=500",
                Some("list")
            ),
            "list jobs"
        );
        assert_eq!(
            op(
                "GET",
                "/apis/batch/v1/jobs?watch=true&resourceVersion=5",
                Some("watch")
            ),
            "watch jobs"
        );
        assert_eq!(
            op("POST", "/api/v1/namespaces", Some("create")),
            "create namespaces"
        );
        assert_eq!(
            op("PUT", &format!("{one}/status"), Some("replace")),
            "update jobs/status"
        );
    }

    #[test]
    fn without_the_clients_tag_the_method_decides() {
        assert_eq!(
            op("GET", "/apis/batch/v1/namespaces/d/jobs", None),
            "list jobs"
        );
        assert_eq!(
            op("GET", "/apis/batch/v1/namespaces/d/jobs?watch=1", None),
            "watch jobs"
        );
        assert_eq!(
            op("GET", "/api/v1/watch/namespaces", None),
            "watch namespaces"
        );
        assert_eq!(op("GET", "/api/v1/namespaces/d", None), "get namespaces");
        assert_eq!(
            op("DELETE", "/apis/batch/v1/namespaces/d/jobs", None),
            "deletecollection jobs"
        );
        assert_eq!(op("GET", "/version", None), "get /version");
    }

    #[test]
    fn objectives_as_the_api_server_promises_them() {
        let of = |verb: &str| Operation {
            verb: verb.into(),
            resource: "jobs".into(),
        };
        assert_eq!(of("patch").objective(), Some(OBJECT_SLO));
        assert_eq!(of("list").objective(), Some(LIST_SLO));
        assert_eq!(of("watch").objective(), None);
        assert!(of("watch").is_watch());
    }
}
