//! What a fault is, which requests it hits, and for how long: pure values and decisions, with
//! the time passed in.
//!
//! A request is described as the API server's `RequestInfo` describes it (verb, resource,
//! namespace, name), so a test says "fail `create jobs` three times" in the words an RBAC rule
//! or an audit log would use.

use std::time::Duration;

use axum::http::{Method, Uri};
use fedjob_scheduler::kube_api::path::{self, ApiPath};
use tokio::time::Instant;

/// The service account `deploy/` runs the syncer as: whom a `403` names by default.
pub const DEFAULT_USER: &str = "system:serviceaccount:fedjob-system:fedjob-syncer";

/// How the API server fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Connections are refused and open ones dropped; the cluster comes back on the same port
    /// with the same objects and resourceVersions (a restarted API server).
    Unreachable,
    /// `429 Too Many Requests` with `Retry-After`.
    TooManyRequests {
        /// Seconds the client is asked to wait.
        retry_after: u32,
        /// Which of the API server's two 429s.
        body: ThrottleBody,
    },
    /// `500 InternalError`, as when etcd does not answer.
    InternalError {
        /// The underlying error (`etcdserver: request timed out`).
        message: String,
    },
    /// `503 ServiceUnavailable`.
    ServiceUnavailable {
        /// The Status message.
        message: String,
    },
    /// `403 Forbidden` as RBAC denies a request.
    Forbidden {
        /// The user the message names.
        user: String,
    },
    /// The answer comes only after this long; the request itself is served at once (a write
    /// is committed even if the client gives up waiting), as by an API server whose answers
    /// are slow to leave.
    Slow {
        /// The added latency.
        delay: Duration,
    },
    /// A watch ends with an `ERROR` event carrying `410 Expired` (its resourceVersion was
    /// compacted, and the history with it); a list continued with a `continue` token gets `410`.
    Expire,
}

/// The two bodies a kube-apiserver answers `429` with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleBody {
    /// Priority and fairness (and max-in-flight) reject a request before it is decoded:
    /// plain text `Too many requests, please try again later.` (`filters/maxinflight.go`).
    PriorityAndFairness,
    /// A handler's `errors.NewTooManyRequests`, e.g. while the watch cache initializes: a
    /// `Status` with reason `TooManyRequests` and `details.retryAfterSeconds`.
    Status,
}

impl Fault {
    /// A short name for logs (`429`, `slow`, …), as the `--fault` grammar spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Unreachable => "unreachable",
            Fault::TooManyRequests { .. } => "429",
            Fault::InternalError { .. } => "500",
            Fault::ServiceUnavailable { .. } => "503",
            Fault::Forbidden { .. } => "403",
            Fault::Slow { .. } => "slow",
            Fault::Expire => "expire",
        }
    }

    /// `429` the way priority and fairness answers it: `Retry-After: 1`.
    pub fn throttle() -> Fault {
        Fault::TooManyRequests {
            retry_after: 1,
            body: ThrottleBody::PriorityAndFairness,
        }
    }

    /// `500` with etcd's timeout.
    pub fn internal_error() -> Fault {
        Fault::InternalError {
            message: "etcdserver: request timed out".to_owned(),
        }
    }

    /// `503` with the API server's generic sentence.
    pub fn service_unavailable() -> Fault {
        Fault::ServiceUnavailable {
            message: "the server is currently unable to handle the request".to_owned(),
        }
    }

    /// `403` for the syncer's service account.
    pub fn forbidden() -> Fault {
        Fault::Forbidden {
            user: DEFAULT_USER.to_owned(),
        }
    }
}

/// A request, as the API server's `RequestInfo` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`;
    /// the lower-case method for a path that is not a resource (`/version`).
    pub verb: String,
    /// The URL path.
    pub path: String,
    /// The API group ("" for core).
    pub group: String,
    /// The resource's plural name; `None` for a path that is not a resource.
    pub resource: Option<String>,
    /// The subresource (`status`).
    pub subresource: Option<String>,
    /// The namespace of the path.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: Option<String>,
    /// A list that carries a `continue` token.
    pub continued: bool,
}

impl RequestInfo {
    /// Reads a request line.
    pub fn of(method: &Method, uri: &Uri) -> RequestInfo {
        let query = |key: &str| {
            uri.query()
                .into_iter()
                .flat_map(|q| q.split('&'))
                .find_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (k == key).then_some(v)
                })
        };
        let watch_param = query("watch").is_some_and(|v| matches!(v, "1" | "true" | "True"));
        let mut info = RequestInfo {
            verb: method.as_str().to_ascii_lowercase(),
            path: uri.path().to_owned(),
            group: String::new(),
            resource: None,
            subresource: None,
            namespace: None,
            name: None,
            continued: query("continue").is_some_and(|v| !v.is_empty()),
        };
        let Some(ApiPath::Resource(r)) = path::parse(uri.path()) else {
            return info;
        };
        let named = r.name.is_some();
        let verb = match *method {
            Method::GET if r.watch || (watch_param && r.subresource.is_none()) => "watch",
            Method::GET if named => "get",
            Method::GET => "list",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if named => "delete",
            Method::DELETE => "deletecollection",
            _ => return info,
        };
        info.verb = verb.to_owned();
        info.group = r.group.to_owned();
        info.resource = Some(r.resource.to_owned());
        info.subresource = r.subresource.map(str::to_owned);
        info.namespace = r.namespace.map(str::to_owned);
        info.name = r.name.map(str::to_owned);
        info
    }

    /// `jobs`, or `jobs/status` for a subresource, as RBAC rules name it.
    pub fn resource_path(&self) -> Option<String> {
        let resource = self.resource.as_ref()?;
        Some(match &self.subresource {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.clone(),
        })
    }

    /// `create jobs`, `get /version`: what a person reads in a log.
    pub fn describe(&self) -> String {
        match self.resource_path() {
            Some(resource) => format!("{} {resource}", self.verb),
            None => format!("{} {}", self.verb, self.path),
        }
    }
}

/// Which requests a fault hits; an empty field matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Any of these verbs.
    pub verbs: Vec<String>,
    /// This resource (`jobs`) or subresource (`jobs/status`), exactly as RBAC names it.
    pub resource: Option<String>,
    /// This namespace.
    pub namespace: Option<String>,
    /// Paths starting with this.
    pub path: Option<String>,
}

impl Selector {
    /// Whether `request` is selected.
    pub fn matches(&self, request: &RequestInfo) -> bool {
        (self.verbs.is_empty() || self.verbs.contains(&request.verb))
            && self
                .resource
                .as_ref()
                .is_none_or(|r| request.resource_path().as_ref() == Some(r))
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| request.namespace.as_ref() == Some(ns))
            && self
                .path
                .as_ref()
                .is_none_or(|p| request.path.starts_with(p.as_str()))
    }
}

/// A fault, what it hits and when it is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// How the server fails.
    pub fault: Fault,
    /// Which requests.
    pub select: Selector,
    /// It starts this long after it is injected.
    pub after: Duration,
    /// It ends this long after it started; `None`: until removed (or its count is spent).
    pub lasts: Option<Duration>,
    /// It hits this many requests, then ends; `None`: every request while it lasts.
    pub count: Option<u64>,
}

impl FaultSpec {
    /// `fault` on every request, from now until removed.
    pub fn new(fault: Fault) -> FaultSpec {
        FaultSpec {
            fault,
            select: Selector::default(),
            after: Duration::ZERO,
            lasts: None,
            count: None,
        }
    }

    /// Only for these verbs.
    pub fn verbs(mut self, verbs: &[&str]) -> FaultSpec {
        self.select.verbs = verbs.iter().map(|v| (*v).to_owned()).collect();
        self
    }

    /// Only for this resource (`jobs`, `jobs/status`).
    pub fn resource(mut self, resource: &str) -> FaultSpec {
        self.select.resource = Some(resource.to_owned());
        self
    }

    /// Only in this namespace.
    pub fn namespace(mut self, namespace: &str) -> FaultSpec {
        self.select.namespace = Some(namespace.to_owned());
        self
    }

    /// Only for paths starting with `prefix`.
    pub fn path(mut self, prefix: &str) -> FaultSpec {
        self.select.path = Some(prefix.to_owned());
        self
    }

    /// For the next `n` requests it selects.
    pub fn count(mut self, n: u64) -> FaultSpec {
        self.count = Some(n);
        self
    }

    /// For this long once started.
    pub fn lasting(mut self, d: Duration) -> FaultSpec {
        self.lasts = Some(d);
        self
    }

    /// Starting this long after it is injected.
    pub fn after(mut self, d: Duration) -> FaultSpec {
        self.after = d;
        self
    }
}

/// A fault in force: its spec and what is left of it.
#[derive(Debug, Clone)]
pub struct Active {
    /// What was asked.
    pub spec: FaultSpec,
    /// When it starts hitting.
    pub starts: Instant,
    /// When it stops, if it has an end in time.
    pub ends: Option<Instant>,
    /// Requests it may still hit, if counted.
    pub remaining: Option<u64>,
}

impl Active {
    /// `spec` injected at `now`.
    pub fn new(spec: FaultSpec, now: Instant) -> Active {
        let starts = now + spec.after;
        Active {
            ends: spec.lasts.map(|d| starts + d),
            remaining: spec.count,
            starts,
            spec,
        }
    }

    /// Whether it is in force at `now`.
    pub fn in_force(&self, now: Instant) -> bool {
        now >= self.starts
            && self.ends.is_none_or(|end| now < end)
            && self.remaining.is_none_or(|n| n > 0)
    }

    /// Whether it can never hit again after `now`.
    pub fn spent(&self, now: Instant) -> bool {
        self.ends.is_some_and(|end| now >= end) || self.remaining == Some(0)
    }

    /// The next moment after `now` at which it starts or ends.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        [Some(self.starts), self.ends]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min()
    }

    /// Whether it hits `request` at `now`: in force, selecting it, and of a kind that applies
    /// to it (a watch expires; a list expires only with a `continue` token; the outage is not
    /// decided per request).
    pub fn hits(&self, request: &RequestInfo, now: Instant) -> bool {
        let applies = match self.spec.fault {
            Fault::Unreachable => false,
            Fault::Expire => {
                request.verb == "watch" || (request.verb == "list" && request.continued)
            }
            _ => true,
        };
        applies && self.in_force(now) && self.spec.select.matches(request)
    }

    /// Counts one hit.
    pub fn take(&mut self) {
        if let Some(n) = self.remaining.as_mut() {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, uri: &str) -> RequestInfo {
        RequestInfo::of(&method, &uri.parse().unwrap())
    }

    #[test]
    fn requests_are_named_as_the_api_server_names_them() {
        let create = info(Method::POST, "/apis/batch/v1/namespaces/default/jobs");
        assert_eq!(create.verb, "create");
        assert_eq!(create.resource.as_deref(), Some("jobs"));
        assert_eq!(create.namespace.as_deref(), Some("default"));
        assert_eq!(create.describe(), "create jobs");
        let apply = info(
            Method::PATCH,
            "/apis/batch/v1/namespaces/default/jobs/a?fieldManager=x&force=true",
        );
        assert_eq!(
            (apply.verb.as_str(), apply.name.as_deref()),
            ("patch", Some("a"))
        );
        let watch = info(
            Method::GET,
            "/apis/batch/v1/jobs?labelSelector=x&watch=true&resourceVersion=5",
        );
        assert_eq!(
            (watch.verb.as_str(), watch.namespace.as_deref()),
            ("watch", None)
        );
        assert_eq!(info(Method::GET, "/api/v1/watch/namespaces").verb, "watch");
        let page = info(Method::GET, "/apis/batch/v1/jobs?limit=500&continue=abc");
        assert_eq!((page.verb.as_str(), page.continued), ("list", true));
        let status = info(Method::PUT, "/apis/batch/v1/namespaces/d/jobs/a/status");
        assert_eq!(status.resource_path().as_deref(), Some("jobs/status"));
        assert_eq!(
            info(Method::DELETE, "/apis/batch/v1/namespaces/d/jobs").verb,
            "deletecollection"
        );
        let version = info(Method::GET, "/version");
        assert_eq!(
            (version.verb.as_str(), version.resource.as_deref()),
            ("get", None)
        );
        assert_eq!(version.describe(), "get /version");
    }

    #[test]
    fn selectors_match_every_field_given() {
        let create = info(Method::POST, "/apis/batch/v1/namespaces/default/jobs");
        assert!(Selector::default().matches(&create));
        let spec = FaultSpec::new(Fault::forbidden())
            .verbs(&["create", "patch"])
            .resource("jobs")
            .namespace("default");
        assert!(spec.select.matches(&create));
        assert!(!spec.select.matches(&info(
            Method::GET,
            "/apis/batch/v1/namespaces/default/jobs/a"
        )));
        assert!(
            !spec
                .select
                .matches(&info(Method::POST, "/apis/batch/v1/namespaces/other/jobs"))
        );
        assert!(!spec.select.matches(&info(
            Method::PATCH,
            "/apis/batch/v1/namespaces/default/jobs/a/status"
        )));
        assert!(
            !spec
                .select
                .matches(&info(Method::POST, "/api/v1/namespaces"))
        );
        let by_path = FaultSpec::new(Fault::throttle()).path("/apis/batch");
        assert!(by_path.select.matches(&create));
        assert!(
            !by_path
                .select
                .matches(&info(Method::POST, "/api/v1/namespaces"))
        );
    }

    #[test]
    fn counts_and_durations_end_a_fault() {
        let t0 = Instant::now();
        let create = info(Method::POST, "/apis/batch/v1/namespaces/default/jobs");
        let mut counted = Active::new(FaultSpec::new(Fault::internal_error()).count(2), t0);
        assert!(counted.hits(&create, t0));
        counted.take();
        counted.take();
        assert!(!counted.hits(&create, t0), "two hits, then spent");
        assert!(counted.spent(t0));

        let s = Duration::from_secs(1);
        let timed = Active::new(
            FaultSpec::new(Fault::Unreachable).after(s).lasting(2 * s),
            t0,
        );
        assert!(!timed.in_force(t0));
        assert_eq!(timed.next_change(t0), Some(t0 + s));
        assert!(timed.in_force(t0 + s));
        assert_eq!(timed.next_change(t0 + s), Some(t0 + 3 * s));
        assert!(!timed.in_force(t0 + 3 * s));
        assert!(timed.spent(t0 + 3 * s));
        assert!(
            !timed.hits(&create, t0 + s),
            "an outage is not decided per request"
        );
    }

    #[test]
    fn expiry_hits_watches_and_continued_lists_only() {
        let t0 = Instant::now();
        let expire = Active::new(FaultSpec::new(Fault::Expire), t0);
        assert!(expire.hits(&info(Method::GET, "/apis/batch/v1/jobs?watch=1"), t0));
        assert!(expire.hits(
            &info(Method::GET, "/apis/batch/v1/jobs?limit=1&continue=x"),
            t0
        ));
        assert!(!expire.hits(&info(Method::GET, "/apis/batch/v1/jobs?limit=1"), t0));
        assert!(!expire.hits(&info(Method::POST, "/apis/batch/v1/namespaces/d/jobs"), t0));
    }
}
