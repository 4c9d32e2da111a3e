//! Watch streams of a simulated cluster, framed by [`fedjob_scheduler::kube_api::watch`].
//!
//! Each watch is a task that reads the store's history from its own cursor whenever the
//! store's version moves, filters by namespace, name, labels and fields, and writes the lines
//! into the response body. A watcher whose cursor fell out of the history gets one `ERROR`
//! event with a 410 `Expired` Status and the stream ends, which is what makes clients re-list.
//! A watch a fault expires ([`Expiry`]) gets the same `ERROR` event, and the history is
//! compacted, so resuming from the version it reached is refused too and the client must
//! list afresh, as after a real compaction.
//! A label selector turns a change that makes an object stop (start) matching into `DELETED`
//! (`ADDED`), as the real watch cache does.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fedjob_proto::shutdown::Shutdown;
use fedjob_scheduler::kube_api::selector::{FieldSelector, LabelSelector};
use fedjob_scheduler::kube_api::status::ApiError;
use fedjob_scheduler::kube_api::watch::{bookmark_line, error_line, event_line, too_old};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use super::faults::{Faults, RequestInfo};
use super::resource::Resource;
use super::store::{Event, EventType, Object, Store, StoreError};
use super::table::{self, IncludeObject, Printer};

/// What a watch selects and how it behaves.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// The resource watched.
    pub resource: Resource,
    /// Only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Only this name (from the path or `fieldSelector=metadata.name=`).
    pub name: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `resourceVersion` to start after; `None` starts with the current objects as `ADDED`.
    pub start: Option<u64>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// How often to send a bookmark.
    pub bookmark_interval: Duration,
    /// When the server ends the watch (`timeoutSeconds`).
    pub timeout: Duration,
    /// Send Table rows instead of objects (`kubectl get -w`).
    pub table: Option<(Printer, IncludeObject)>,
    /// When faults end it with `410`.
    pub expiry: Option<Expiry>,
}

/// A watch that faults may expire.
#[derive(Debug, Clone)]
pub struct Expiry {
    /// The cluster's faults.
    pub faults: Arc<Faults>,
    /// The watch request, as faults select it.
    pub request: RequestInfo,
    /// Expired from the start (the fault hit the request itself).
    pub at_once: bool,
}

/// What etcd answers a watch whose version was compacted under it (`interpretWatchError`).
const WATCH_COMPACTED: &str = "The resourceVersion for the provided watch is too old.";

impl WatchSpec {
    fn matches(&self, object: &Object) -> bool {
        let key = &object.key;
        key.resource == self.resource
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| key.namespace == *ns)
            && self.name.as_ref().is_none_or(|n| key.name == *n)
            && self.labels.matches(object.labels())
            && self.fields.matches(|f| object.field(f))
    }

    /// The event a watcher with these selectors sees for a change, if any.
    fn view(&self, event: &Event) -> Option<EventType> {
        if event.object.key.resource != self.resource {
            return None;
        }
        let now = self.matches(&event.object);
        let before = event.prev.as_ref().is_some_and(|p| self.matches(p));
        match (event.ty, before, now) {
            (EventType::Added, _, true) => Some(EventType::Added),
            (EventType::Deleted, _, true) => Some(EventType::Deleted),
            (EventType::Modified, true, true) => Some(EventType::Modified),
            (EventType::Modified, false, true) => Some(EventType::Added),
            (EventType::Modified, true, false) => Some(EventType::Deleted),
            _ => None,
        }
    }

    fn line(&self, ty: EventType, object: &Object) -> Bytes {
        match self.table {
            None => event_line(ty, &object.full_json()),
            Some((printer, include)) => {
                let full: Value =
                    serde_json::from_slice(&object.full_json()).unwrap_or(Value::Null);
                let table = table::render(printer, &[full], None, include);
                event_line(ty, &serde_json::to_vec(&table).expect("tables serialize"))
            }
        }
    }

    fn bookmark(&self, rv: u64) -> Bytes {
        bookmark_line(self.resource.names(), rv)
    }
}

/// Starts a watch; the returned stream is the response body.
pub fn start(
    store: Arc<Store>,
    spec: WatchSpec,
    shutdown: Shutdown,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(run(store, spec, shutdown, tx));
    ReceiverStream::new(rx).map(Ok)
}

/// Sends one line unless the watch must end first; false when it must end.
async fn send(
    tx: &mpsc::Sender<Bytes>,
    line: Bytes,
    shutdown: &mut Shutdown,
    deadline: Instant,
) -> bool {
    tokio::select! {
        sent = tx.send(line) => sent.is_ok(),
        _ = shutdown.fired() => false,
        _ = tokio::time::sleep_until(deadline) => false,
    }
}

/// Resolves when the faults change (never without an expiry).
async fn faults_changed(
    expiry: Option<&Expiry>,
    changes: &mut Option<tokio::sync::watch::Receiver<u64>>,
) {
    match (expiry, changes.as_mut()) {
        (Some(e), Some(changes)) => e.faults.changed(changes).await,
        _ => std::future::pending().await,
    }
}

/// Ends a watch with `error` after compacting the history.
async fn expire(
    store: &Store,
    tx: &mpsc::Sender<Bytes>,
    error: ApiError,
    shutdown: &mut Shutdown,
    deadline: Instant,
) {
    store.compact();
    tracing::debug!(%error, "watch expired by a fault");
    let _ = send(tx, error_line(&error), shutdown, deadline).await;
}

async fn run(store: Arc<Store>, spec: WatchSpec, mut shutdown: Shutdown, tx: mpsc::Sender<Bytes>) {
    let deadline = Instant::now() + spec.timeout;
    let mut fault_changes = spec.expiry.as_ref().map(|e| e.faults.changes());
    if spec.expiry.as_ref().is_some_and(|e| e.at_once) {
        let error = match spec.start {
            Some(rv) => too_old(rv, store.current_rv()),
            None => ApiError::Expired(WATCH_COMPACTED.to_owned()),
        };
        expire(&store, &tx, error, &mut shutdown, deadline).await;
        return;
    }
    let mut latest = store.subscribe();
    latest.borrow_and_update();
    let mut cursor = match spec.start {
        Some(rv) => rv,
        None => {
            let (objects, rv) = store.list(spec.resource, spec.namespace.as_deref());
            for object in objects.iter().filter(|o| spec.matches(o)) {
                if !send(
                    &tx,
                    spec.line(EventType::Added, object),
                    &mut shutdown,
                    deadline,
                )
                .await
                {
                    return;
                }
            }
            rv
        }
    };
    let mut bookmarks = tokio::time::interval_at(
        Instant::now() + spec.bookmark_interval,
        spec.bookmark_interval,
    );
    loop {
        latest.borrow_and_update();
        match store.events_after(cursor) {
            Err(StoreError::Expired { requested, oldest }) => {
                let error = too_old(requested, oldest);
                let _ = send(&tx, error_line(&error), &mut shutdown, deadline).await;
                return;
            }
            Err(_) => return,
            Ok((events, latest_rv)) => {
                for event in &events {
                    if let Some(ty) = spec.view(event)
                        && !send(&tx, spec.line(ty, &event.object), &mut shutdown, deadline).await
                    {
                        return;
                    }
                }
                cursor = cursor.max(latest_rv);
            }
        }
        tokio::select! {
            changed = latest.changed() => if changed.is_err() { return },
            _ = bookmarks.tick(), if spec.bookmarks => {
                if !send(&tx, spec.bookmark(cursor), &mut shutdown, deadline).await {
                    return;
                }
            }
            _ = faults_changed(spec.expiry.as_ref(), &mut fault_changes) => {
                if let Some(e) = &spec.expiry && e.faults.expire_open(&e.request) {
                    let error = ApiError::Expired(WATCH_COMPACTED.to_owned());
                    expire(&store, &tx, error, &mut shutdown, deadline).await;
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = shutdown.fired() => return,
            _ = tx.closed() => return,
        }
    }
}
