//! Watches of pods (`/api/v1/pods?watch=1`, `/api/v1/namespaces/NS/pods?watch=1`), read from
//! the pod table's history as store watches read the store's: from a version (410 `Expired`
//! when it is older than the history) or from the current pods as `ADDED`, with label and
//! field selectors (`spec.nodeName!=,status.phase!=Succeeded` as the kube-scheduler and a
//! capacity reporter use them; a pod that stops matching is `DELETED`), bookmarks and
//! `timeoutSeconds`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fedjob_proto::shutdown::Shutdown;
use fedjob_scheduler::kube_api::resource::ResourceType;
use fedjob_scheduler::kube_api::selector::{FieldSelector, LabelSelector};
use fedjob_scheduler::kube_api::watch::{
    EventType, bookmark_line, error_line, event_line, too_old,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use super::{PodChange, PodRecord, PodTable, render};

/// Core `v1` Pods.
pub const PODS: ResourceType = ResourceType {
    group: "",
    api_version: "v1",
    kind: "Pod",
    list_kind: "PodList",
    plural: "pods",
    namespaced: true,
};

/// What a pod watch selects and how it behaves.
#[derive(Debug, Clone)]
pub struct PodWatch {
    /// Only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `resourceVersion` to start after; `None` starts with the current pods as `ADDED`.
    pub start: Option<u64>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// How often to send a bookmark.
    pub bookmark_interval: Duration,
    /// When the server ends the watch (`timeoutSeconds`).
    pub timeout: Duration,
}

impl PodWatch {
    fn matches(&self, pod: &PodRecord) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| pod.namespace == *ns)
            && self.labels.matches(Some(&pod.labels))
            && self.fields.matches(|f| pod.field(f))
    }

    /// The event a watcher with these selectors sees for a change, if any.
    fn view(&self, change: &PodChange) -> Option<EventType> {
        let now = self.matches(&change.pod);
        let before = change.prev.as_ref().is_some_and(|p| self.matches(p));
        match (change.ty, before, now) {
            (EventType::Added, _, true) => Some(EventType::Added),
            (EventType::Deleted, true, _) => Some(EventType::Deleted),
            (EventType::Modified, true, true) => Some(EventType::Modified),
            (EventType::Modified, false, true) => Some(EventType::Added),
            (EventType::Modified, true, false) => Some(EventType::Deleted),
            _ => None,
        }
    }
}

fn line(ty: EventType, pod: &PodRecord) -> Bytes {
    let mut value = render(pod);
    value["kind"] = serde_json::json!("Pod");
    value["apiVersion"] = serde_json::json!("v1");
    event_line(
        ty,
        &serde_json::to_vec(&value).expect("JSON values serialize"),
    )
}

/// Starts a pod watch; the returned stream is the response body.
pub fn start(
    pods: Arc<PodTable>,
    spec: PodWatch,
    shutdown: Shutdown,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(run(pods, spec, shutdown, tx));
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

async fn run(pods: Arc<PodTable>, spec: PodWatch, mut shutdown: Shutdown, tx: mpsc::Sender<Bytes>) {
    let deadline = Instant::now() + spec.timeout;
    let mut latest = pods.subscribe();
    latest.borrow_and_update();
    let mut cursor = match spec.start {
        Some(rv) => rv,
        None => {
            let (current, rv) = pods.snapshot(spec.namespace.as_deref(), |p| spec.matches(p));
            for pod in &current {
                if !send(&tx, line(EventType::Added, pod), &mut shutdown, deadline).await {
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
        match pods.changes_after(cursor) {
            Err(oldest) => {
                let error = too_old(cursor, oldest);
                let _ = send(&tx, error_line(&error), &mut shutdown, deadline).await;
                return;
            }
            Ok((changes, latest_rv)) => {
                for change in &changes {
                    if let Some(ty) = spec.view(change)
                        && !send(&tx, line(ty, &change.pod), &mut shutdown, deadline).await
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
                if !send(&tx, bookmark_line(&PODS, cursor), &mut shutdown, deadline).await {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = shutdown.fired() => return,
            _ = tx.closed() => return,
        }
    }
}
