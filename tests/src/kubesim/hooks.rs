//! Test hooks on requests: a test sees every request a client makes as it arrives, and can
//! make it wait while the test changes the cluster. That makes a race deterministic (a Job of
//! the same name appears between a client's decision and its write) and lets a test count the
//! requests a client needed (one create per new shard).
//!
//! With no hook added (the default, and always in `fedjob-kubesim`), a request costs one
//! uncontended lock.

use std::sync::Arc;

use axum::http::{Method, Uri};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::Value;

/// A request as a hook sees it, before it is served.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The HTTP method.
    pub method: Method,
    /// The path (`/apis/batch/v1/namespaces/default/jobs`).
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The object the request names: the path's last segment for a single object, or the
    /// body's `metadata.name` for a create.
    pub name: Option<String>,
}

impl Arrival {
    /// The request for `uri` with `body` (a create's object, JSON).
    pub fn new(method: &Method, uri: &Uri, body: &[u8]) -> Self {
        let path = uri.path().to_owned();
        let name = if *method == Method::POST {
            serde_json::from_slice::<Value>(body).ok().and_then(|v| {
                v.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        } else {
            Self::object_name(&path)
        };
        Self {
            method: method.clone(),
            path,
            query: uri.query().map(str::to_owned),
            name,
        }
    }

    /// The object named in `…/namespaces/NS/RESOURCE/NAME[/SUBRESOURCE]`, if any.
    fn object_name(path: &str) -> Option<String> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let at = parts.iter().position(|p| *p == "namespaces")?;
        parts.get(at + 3).map(|s| (*s).to_owned())
    }

    /// Whether the request writes (anything but GET).
    pub fn writes(&self) -> bool {
        self.method != Method::GET
    }
}

/// What a hook does with a request: `Some(future)` makes the request wait for it.
pub type Hook = Arc<dyn Fn(&Arrival) -> Option<BoxFuture<'static, ()>> + Send + Sync>;

/// The hooks of one cluster.
#[derive(Default)]
pub struct RequestHooks {
    hooks: Mutex<Vec<Hook>>,
}

impl RequestHooks {
    /// Adds `hook`, run for every request from now on as it arrives, before it is served.
    pub fn add(
        &self,
        hook: impl Fn(&Arrival) -> Option<BoxFuture<'static, ()>> + Send + Sync + 'static,
    ) {
        self.hooks.lock().push(Arc::new(hook));
    }

    /// Removes every hook.
    pub fn clear(&self) {
        self.hooks.lock().clear();
    }

    /// Whether any hook is set (so a request need not be described).
    pub fn is_empty(&self) -> bool {
        self.hooks.lock().is_empty()
    }

    /// Runs every hook for `arrival`, waiting for what they return.
    pub async fn run(&self, arrival: &Arrival) {
        let hooks = self.hooks.lock().clone();
        for hook in hooks {
            if let Some(wait) = hook(arrival) {
                wait.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_object() {
        let uri: Uri = "/apis/batch/v1/namespaces/default/jobs/myjob?fieldManager=x"
            .parse()
            .unwrap();
        let get = Arrival::new(&Method::GET, &uri, b"");
        assert_eq!(get.name.as_deref(), Some("myjob"));
        assert_eq!(get.query.as_deref(), Some("fieldManager=x"));
        assert!(!get.writes());
        let status: Uri = "/apis/batch/v1/namespaces/default/jobs/myjob/status"
            .parse()
            .unwrap();
        assert_eq!(
            Arrival::new(&Method::GET, &status, b"").name.as_deref(),
            Some("myjob")
        );
        let collection: Uri = "/apis/batch/v1/namespaces/default/jobs".parse().unwrap();
        let create = Arrival::new(
            &Method::POST,
            &collection,
            br#"{"metadata":{"name":"made"}}"#,
        );
        assert_eq!(create.name.as_deref(), Some("made"));
        assert!(create.writes());
        assert_eq!(Arrival::new(&Method::GET, &collection, b"").name, None);
        let all: Uri = "/apis/batch/v1/jobs?watch=1".parse().unwrap();
        assert_eq!(Arrival::new(&Method::GET, &all, b"").name, None);
    }
}
