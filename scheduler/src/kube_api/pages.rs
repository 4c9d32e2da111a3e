//! Paginated lists (`limit` and `continue`), as the API server serves them from etcd: items in
//! key order, a `continue` token naming the snapshot's resourceVersion and the next key, and
//! every page of one list read from that same snapshot.
//!
//! etcd keeps old revisions until its compaction (every five minutes by default), so a token
//! stays good for about that long; a server keeps each paginated list's snapshot (a vector of
//! shared objects) for the same time in [`Snapshots`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::status::ApiError;

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

/// The key of an object (`namespace`, `name`) as etcd orders it within a list of
/// `listed_namespace` (all namespaces when `None`): the name alone inside one namespace.
pub fn relative_key(namespace: &str, name: &str, listed_namespace: Option<&str>) -> String {
    if listed_namespace.is_some() || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}/{name}")
    }
}

/// One page of a list: its items, the token for the next page and how many items remain.
#[derive(Debug)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// The `continue` token of the next page; `None` on the last page.
    pub next: Option<String>,
    /// `remainingItemCount`, when the server counts it.
    pub remaining: Option<usize>,
}

impl<T> Page<T> {
    /// A list served whole.
    pub fn whole(items: Vec<T>) -> Self {
        Self {
            items,
            next: None,
            remaining: None,
        }
    }
}

/// The page of `snapshot` (items in key order, at version `rv`) that starts after key `after`
/// and holds at most `limit` items that `selected` keeps. The API server counts the items left
/// only when nothing is filtered (`unfiltered`).
pub fn page<T: Clone>(
    snapshot: &[T],
    rv: u64,
    key: impl Fn(&T) -> String,
    after: Option<&str>,
    selected: impl Fn(&T) -> bool,
    limit: Option<usize>,
    unfiltered: bool,
) -> Page<T> {
    let mut rest = snapshot
        .iter()
        .filter(|o| after.is_none_or(|start| key(o).as_str() > start))
        .filter(|o| selected(o));
    let items: Vec<T> = rest
        .by_ref()
        .take(limit.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    let remaining = rest.count();
    let mut page = Page::whole(items);
    if remaining > 0
        && let Some(last) = page.items.last()
    {
        let start = key(last);
        page.next = Some(Continue { rv, start }.encode());
        page.remaining = unfiltered.then_some(remaining);
    }
    page
}

/// A list's items in key order, shared by its pages.
pub type Snapshot<T> = Arc<Vec<T>>;

/// The snapshots of paginated lists still being read, by what was listed (`K`: the resource,
/// the scope and the version).
pub struct Snapshots<K, T> {
    snapshots: Mutex<HashMap<K, (Instant, Snapshot<T>)>>,
}

impl<K, T> Default for Snapshots<K, T> {
    fn default() -> Self {
        Self {
            snapshots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, T> Snapshots<K, T> {
    /// Keeps `items` (in key order) as the snapshot of the list `key`.
    pub fn keep(&self, key: K, items: Snapshot<T>) {
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
        snapshots.entry(key).or_insert((now, items));
    }

    /// The snapshot a token points into, while it is kept.
    pub fn get(&self, key: &K) -> Option<Snapshot<T>> {
        let snapshots = self.snapshots.lock();
        let (at, items) = snapshots.get(key)?;
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
    fn pages_follow_the_key_order_and_count_what_is_left() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let key = |s: &String| s.clone();
        let first = page(&items, 9, key, None, |_| true, Some(2), true);
        assert_eq!(first.items, ["a", "b"]);
        assert_eq!(first.remaining, Some(3));
        let token = Continue::decode(first.next.as_deref().unwrap()).unwrap();
        assert_eq!(
            token,
            Continue {
                rv: 9,
                start: "b".into()
            }
        );
        let odd = |s: &String| s != "d";
        let second = page(&items, 9, key, Some("b"), odd, Some(2), false);
        assert_eq!(second.items, ["c", "e"]);
        assert_eq!((second.next, second.remaining), (None, None));
        let filtered = page(&items, 9, key, None, odd, Some(1), false);
        assert!(filtered.next.is_some());
        assert_eq!(filtered.remaining, None);
        assert_eq!(relative_key("ns", "a", None), "ns/a");
        assert_eq!(relative_key("ns", "a", Some("ns")), "a");
    }

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
