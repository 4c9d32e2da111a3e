//! Reading federated Jobs: get (also of `status`), list (selectors, `limit`/`continue`,
//! `resourceVersion` and `resourceVersionMatch`) and watch (from a version, with bookmarks and
//! `timeoutSeconds`), as JSON or as a Table.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cache::{Event, JobCache, TooOld};
use super::view::{self, JobView};
use super::{Jobs, api_error};
use crate::kube_api::call::{Call, Representation};
use crate::kube_api::pages::{self, Page};
use crate::kube_api::params::{JOB_FIELDS, Params};
use crate::kube_api::resource::JOBS;
use crate::kube_api::respond;
use crate::kube_api::selector::{FieldSelector, LabelSelector};
use crate::kube_api::status::ApiError;
use crate::kube_api::table::{self, IncludeObject};
use crate::kube_api::watch::{
    self as framing, DEFAULT_TIMEOUT, EventType, bookmark_line, error_line, event_line, send,
};
use crate::model::job::job_key;
use fedjob_proto::shutdown::Shutdown;

/// How long a request for a version the cache has not reached waits for it (the API server
/// waits 3 s, then answers 504).
const WAIT_FOR_VERSION: Duration = Duration::from_secs(3);

/// The selectors of a list or watch.
struct Selection {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selection {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            labels: params.labels()?,
            fields: params.fields(JOB_FIELDS)?,
        })
    }

    fn matches(&self, view: &JobView) -> bool {
        self.labels.matches(view.labels.as_ref()) && self.fields.matches(|f| view.field(f))
    }
}

/// One Job as the response body: itself, or a one-row Table.
pub fn object_response(
    code: StatusCode,
    view: &JobView,
    representation: Representation,
) -> Response {
    match representation {
        Representation::Json => respond::json(code, view.json.clone()),
        Representation::Table(include) => {
            let value = view.value();
            let table = table::render(
                view::columns(),
                [(view.cells(&value), &value)],
                Some(view.rv),
                include,
            );
            respond::json(code, table.to_string())
        }
    }
}

impl Jobs {
    /// GET one Job (or its `status`), read from the store so a read follows a write.
    pub(super) async fn get(
        &self,
        call: &Call,
        namespace: &str,
        name: &str,
    ) -> Result<Response, ApiError> {
        let key = job_key(namespace, name);
        let stored = self
            .cp
            .read_job(&key)
            .await
            .map_err(|e| api_error(e, name))?
            .ok_or_else(|| ApiError::NotFound {
                resource: &JOBS,
                name: name.to_owned(),
            })?;
        let view = JobView::of(&stored, &self.cp.cluster_views());
        Ok(object_response(StatusCode::OK, &view, call.representation))
    }

    /// Waits for the cache to reach `rv`; 504 as the API server when it does not.
    async fn reach(&self, rv: u64) -> Result<(), ApiError> {
        if self.cache.wait_for(rv, WAIT_FOR_VERSION).await {
            return Ok(());
        }
        Err(ApiError::TooLargeResourceVersion {
            requested: rv,
            current: self.cache.rv(),
        })
    }

    /// The Jobs of `namespace` as the control plane has them now, and a version at least as
    /// new as any of them (cached views are used where they are current).
    fn latest(&self, namespace: Option<&str>) -> (Vec<Arc<JobView>>, u64) {
        let (cached, mut rv, _) = self.cache.snapshot(namespace);
        let cached: std::collections::HashMap<String, Arc<JobView>> =
            cached.into_iter().map(|v| (v.key(), v)).collect();
        let clusters = self.cp.cluster_views();
        let items = self
            .cp
            .jobs(namespace)
            .into_iter()
            .map(|job| {
                rv = rv.max(job.mod_revision);
                match cached.get(&job.record.key()) {
                    Some(view) if view.rv >= job.mod_revision => view.clone(),
                    _ => Arc::new(JobView::of(&job, &clusters)),
                }
            })
            .collect();
        (items, rv)
    }

    /// A list (one page of it), as a `JobList` or a Table.
    pub(super) async fn list(&self, call: &Call) -> Result<Response, ApiError> {
        let selection = Selection::parse(&call.params)?;
        let params = &call.params;
        let namespace = call.namespace.as_deref();
        let limit = params.limit()?;
        let rv = params.resource_version()?;
        let version_match = params.get("resourceVersionMatch").filter(|m| !m.is_empty());
        let (snapshot, list_rv, after) = match params.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                if rv.is_some() {
                    return Err(ApiError::BadRequest(
                        "specifying resource version is not allowed when using continue".to_owned(),
                    ));
                }
                let token = pages::Continue::decode(token)?;
                let snapshot = self
                    .pages
                    .get(&(namespace.map(str::to_owned), token.rv))
                    .ok_or_else(pages::expired)?;
                (snapshot, token.rv, Some(token.start))
            }
            None => {
                match (rv, version_match) {
                    (None, Some(_)) => {
                        return Err(ApiError::BadRequest(
                            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".to_owned(),
                        ));
                    }
                    (Some(0), Some("Exact")) => {
                        return Err(ApiError::BadRequest(
                            "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".to_owned(),
                        ));
                    }
                    (_, Some(m)) if m != "Exact" && m != "NotOlderThan" => {
                        return Err(ApiError::BadRequest(format!(
                            "resourceVersionMatch: Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\""
                        )));
                    }
                    (Some(rv), _) if rv > 0 => self.reach(rv).await?,
                    _ => {}
                }
                let (items, list_rv) = match rv {
                    // No version: the most recent, as the API server reads etcd for it (the
                    // cache may not have a write acknowledged a moment ago yet).
                    None => self.latest(namespace),
                    Some(_) => {
                        let (items, list_rv, _) = self.cache.snapshot(namespace);
                        (items, list_rv)
                    }
                };
                if let (Some(rv), Some("Exact")) = (rv, version_match)
                    && rv != list_rv
                {
                    // Only the latest version is kept, as etcd after a compaction.
                    return Err(ApiError::Expired(
                        "The resourceVersion for the provided list is too old.".to_owned(),
                    ));
                }
                (Arc::new(items), list_rv, None)
            }
        };
        let key = |v: &Arc<JobView>| pages::relative_key(&v.namespace, &v.name, namespace);
        let unfiltered = params.get("labelSelector").unwrap_or_default().is_empty()
            && params.get("fieldSelector").unwrap_or_default().is_empty();
        // `resourceVersion=0` is served whole from the cache, as the API server does.
        let limit = limit.filter(|_| rv != Some(0));
        let page: Page<Arc<JobView>> = pages::page(
            &snapshot,
            list_rv,
            key,
            after.as_deref(),
            |v| selection.matches(v),
            limit,
            unfiltered,
        );
        if page.next.is_some() {
            self.pages
                .keep((namespace.map(str::to_owned), list_rv), snapshot.clone());
        }
        let body = match call.representation {
            Representation::Json => list_body(list_rv, &page),
            Representation::Table(include) => {
                let values: Vec<Value> = page.items.iter().map(|v| v.value()).collect();
                let rows = page
                    .items
                    .iter()
                    .zip(&values)
                    .map(|(v, value)| (v.cells(value), value));
                let mut table = table::render(view::columns(), rows, Some(list_rv), include);
                if let Some(token) = &page.next {
                    table["metadata"]["continue"] = json!(token);
                }
                table.to_string().into_bytes()
            }
        };
        Ok(respond::json(StatusCode::OK, body))
    }

    /// A watch: a stream of events from the requested version (or of the current Jobs, then
    /// their changes), until `timeoutSeconds`, the client leaving, or shutdown.
    pub(super) async fn watch(&self, call: &Call) -> Result<Response, ApiError> {
        let selection = Selection::parse(&call.params)?;
        let name = call.name.clone().or_else(|| {
            selection
                .fields
                .required("metadata.name")
                .map(str::to_owned)
        });
        let start = match call.params.resource_version()? {
            None | Some(0) => None,
            Some(rv) => {
                self.reach(rv).await?;
                Some(rv)
            }
        };
        let spec = WatchSpec {
            start,
            namespace: call.namespace.clone(),
            name,
            selection,
            bookmarks: call.params.flag("allowWatchBookmarks"),
            bookmark_interval: self.bookmark_interval,
            timeout: call.params.timeout()?.unwrap_or(DEFAULT_TIMEOUT),
            table: match call.representation {
                Representation::Json => None,
                Representation::Table(include) => Some(include),
            },
        };
        // The first events are decided now: a watch from a version too old is refused with
        // its first (and only) event, as the API server does.
        let first = match start {
            None => {
                let (items, rv, cursor) = self.cache.snapshot(spec.namespace.as_deref());
                let lines = items
                    .iter()
                    .filter(|v| spec.matches(v))
                    .map(|v| spec.line(EventType::Added, v))
                    .collect();
                Ok((lines, cursor, rv))
            }
            Some(rv) => match self.cache.since(rv) {
                Ok(batch) => Ok((spec.lines(&batch.events), batch.next, batch.rv)),
                Err(TooOld(requested, oldest)) => Err(framing::too_old(requested, oldest)),
            },
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run(
            self.cache.clone(),
            spec,
            first,
            self.shutdown.clone(),
            tx,
        ));
        Ok(framing::stream_response(rx))
    }
}

/// A `JobList` built from the stored serializations.
fn list_body(rv: u64, page: &Page<Arc<JobView>>) -> Vec<u8> {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(token) = &page.next {
        meta["continue"] = json!(token);
    }
    if let Some(n) = page.remaining {
        meta["remainingItemCount"] = json!(n);
    }
    let mut out = format!(
        r#"{{"kind":"{}","apiVersion":"{}","metadata":{meta},"items":["#,
        JOBS.list_kind, JOBS.api_version
    )
    .into_bytes();
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&item.json);
    }
    out.extend_from_slice(b"]}");
    out
}

/// What a watch selects and how it behaves.
struct WatchSpec {
    /// The version the watch started from, if the client gave one.
    start: Option<u64>,
    namespace: Option<String>,
    name: Option<String>,
    selection: Selection,
    bookmarks: bool,
    bookmark_interval: Duration,
    timeout: Duration,
    table: Option<IncludeObject>,
}

impl WatchSpec {
    fn matches(&self, view: &JobView) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| view.namespace == *ns)
            && self.name.as_ref().is_none_or(|n| view.name == *n)
            && self.selection.matches(view)
    }

    /// The event this watcher sees for a change, if any: a change that makes a Job start
    /// (stop) matching is `ADDED` (`DELETED`), as the API server's watch cache sends it.
    fn sees(&self, event: &Event) -> Option<EventType> {
        let now = self.matches(&event.view);
        let before = event.prev.as_ref().is_some_and(|p| self.matches(p));
        match (event.ty, before, now) {
            (EventType::Added, _, true) | (EventType::Modified, false, true) => {
                Some(EventType::Added)
            }
            (EventType::Deleted, _, true) | (EventType::Modified, true, false) => {
                Some(EventType::Deleted)
            }
            (EventType::Modified, true, true) => Some(EventType::Modified),
            _ => None,
        }
    }

    fn line(&self, ty: EventType, view: &JobView) -> Bytes {
        match self.table {
            None => event_line(ty, &view.json),
            Some(include) => {
                let value = view.value();
                let table = table::render(
                    view::columns(),
                    [(view.cells(&value), &value)],
                    Some(view.rv),
                    include,
                );
                event_line(ty, table.to_string().as_bytes())
            }
        }
    }

    fn lines(&self, events: &[Event]) -> Vec<Bytes> {
        events
            .iter()
            .filter_map(|e| self.sees(e).map(|ty| self.line(ty, &e.view)))
            .collect()
    }
}

async fn run(
    cache: Arc<JobCache>,
    spec: WatchSpec,
    first: Result<(Vec<Bytes>, u64, u64), ApiError>,
    mut shutdown: Shutdown,
    tx: mpsc::Sender<Bytes>,
) {
    let deadline = Instant::now() + spec.timeout;
    let mut changed = cache.subscribe();
    let start = spec.start;
    let (lines, mut cursor, mut seen) = match first {
        Ok(first) => first,
        Err(refusal) => {
            // A watch from too old a version: its first and only event says so.
            let _ = send(&tx, error_line(&refusal), &mut shutdown, deadline).await;
            return;
        }
    };
    for line in lines {
        if !send(&tx, line, &mut shutdown, deadline).await {
            return;
        }
    }
    let mut bookmarks = tokio::time::interval_at(
        Instant::now() + spec.bookmark_interval,
        spec.bookmark_interval,
    );
    loop {
        changed.borrow_and_update();
        match cache.after(cursor) {
            Err(TooOld(_, oldest)) => {
                let error = framing::too_old(seen, oldest);
                let _ = send(&tx, error_line(&error), &mut shutdown, deadline).await;
                return;
            }
            Ok(batch) => {
                for event in &batch.events {
                    // A change the cache learnt of late, older than where the watch started,
                    // is already in what the client listed.
                    if start.is_some_and(|rv| event.view.rv <= rv) {
                        continue;
                    }
                    if let Some(ty) = spec.sees(event)
                        && !send(&tx, spec.line(ty, &event.view), &mut shutdown, deadline).await
                    {
                        return;
                    }
                }
                cursor = batch.next;
                // Every change up to the cursor has been seen: a bookmark may say so.
                seen = seen.max(batch.rv);
            }
        }
        tokio::select! {
            changed = changed.changed() => if changed.is_err() { return },
            _ = bookmarks.tick(), if spec.bookmarks => {
                let line = bookmark_line(&JOBS, seen);
                if !send(&tx, line, &mut shutdown, deadline).await {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = shutdown.fired() => return,
            _ = tx.closed() => return,
        }
    }
}
