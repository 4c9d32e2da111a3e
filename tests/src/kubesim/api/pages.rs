//! Paginated lists (`limit` and `continue`), as the API server serves them from etcd: items in
//! key order, a `continue` token naming the snapshot's resourceVersion and the next key, and
//! every page of one list read from that same snapshot.
//!
//! etcd keeps old revisions until its compaction (every five minutes by default), so a token
//! stays good for about that long; kubesim keeps each paginated list's snapshot (a vector of
//! shared objects) for the same time instead of relying on its short watch history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::kubesim::resource::Resource;
use crate::kubesim::status::ApiError;
use crate::kubesim::store::Object;

/// How long a continue token stays good (etcd's default compaction interval).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Most snapshots kept at once; the oldest go first.
const MAX_SNAPSHOTS: usize = 64;

/// One page's place in a list, as the token carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continue {
    /// The resourceVersion of the list's snapshot.
    pub rv: u64,
    /// The key (relative to the listed scope) the next page starts after.
    pub start: String,
}

impl Continue {
    /// The opaque token: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"KEY\u0000"}`, as
    /// the API server writes it.
    pub fn encode(&self) -> String {
        let body =
            json!({"v": "meta.k8s.io/v1", "rv": self.rv, "start": format!("{}\u{0}", self.start)});
        STANDARD.encode(body.to_string())
    }

    /// Reads a token back; a token that is not one gives the API server's 400.
    pub fn decode(token: &str) -> Result<Self, ApiError> {
        let invalid = |why: &str| ApiError::BadRequest(format!("continue key is not valid: {why}"));
        let bytes = STANDARD.decode(token).map_err(|_| {
            invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        })?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|_| {
            invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        })?;
        if body["v"] != "meta.k8s.io/v1" {
            return Err(invalid("server does not recognize this encoded key"));
        }
        let rv = body["rv"].as_u64().filter(|rv| *rv > 0);
        let start = body["start"].as_str().and_then(|s| s.strip_suffix('\u{0}'));
        match (rv, start) {
            (Some(rv), Some(start)) if !start.is_empty() => Ok(Self {
                rv,
                start: start.to_owned(),
            }),
            _ => Err(invalid(
                "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
            )),
        }
    }
}

/// The key of `object` as etcd orders it within a list of `namespace` (all when `None`).
pub fn relative_key(object: &Object, namespace: Option<&str>) -> String {
    if namespace.is_some() || object.key.namespace.is_empty() {
        object.key.name.clone()
    } else {
        format!("{}/{}", object.key.namespace, object.key.name)
    }
}

/// Which snapshot: the resource, the scope and the version.
type SnapshotKey = (Resource, Option<String>, u64);
/// A list's items in key order, shared by its pages.
type Snapshot = Arc<Vec<Arc<Object>>>;

/// The snapshots of paginated lists still being read.
#[derive(Default)]
pub struct Pages {
    snapshots: Mutex<HashMap<SnapshotKey, (Instant, Snapshot)>>,
}

impl Pages {
    /// Keeps `items` (in key order) as the snapshot of `resource` in `namespace` at `rv`.
    pub fn keep(&self, resource: Resource, namespace: Option<&str>, rv: u64, items: Snapshot) {
        let mut snapshots = self.snapshots.lock();
        let now = Instant::now();
        snapshots.retain(|_, (at, _)| now.duration_since(*at) < TOKEN_LIFETIME);
        if snapshots.len() >= MAX_SNAPSHOTS
            && let Some(oldest) = snapshots
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            snapshots.remove(&oldest);
        }
        snapshots
            .entry((resource, namespace.map(str::to_owned), rv))
            .or_insert((now, items));
    }

    /// The snapshot a token points into, while it is kept.
    pub fn snapshot(
        &self,
        resource: Resource,
        namespace: Option<&str>,
        rv: u64,
    ) -> Option<Snapshot> {
        let snapshots = self.snapshots.lock();
        let (at, items) = snapshots.get(&(resource, namespace.map(str::to_owned), rv))?;
        (at.elapsed() < TOKEN_LIFETIME).then(|| items.clone())
    }
}

/// The 410 for a token whose snapshot is gone.
pub fn expired() -> ApiError {
    ApiError::Expired(
        "The provided continue parameter is too old to display a consistent list result. You can \
         start a new list without the continue parameter."
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_read_back_and_bad_ones_are_refused() {
        let c = Continue {
            rv: 42,
            start: "default/job-7".into(),
        };
        assert_eq!(Continue::decode(&c.encode()).unwrap(), c);
        let decoded = String::from_utf8(STANDARD.decode(c.encode()).unwrap()).unwrap();
        assert_eq!(
            decoded,
            r#"{"rv":42,"start":"default/job-7\u0000","v":"meta.k8s.io/v1"}"#
        );
        for bad in [
            "",
            "!!",
            "e30=",
            &STANDARD.encode(r#"{"v":"x","rv":1,"start":"a\u0000"}"#),
        ] {
            let err = Continue::decode(bad).unwrap_err();
            assert!(
                err.to_string().contains("continue key is not valid"),
                "{bad}: {err}"
            );
        }
    }
}
