//! A read-only collection of objects the federation derives rather than stores (core `v1`
//! `events`, `fedjob.io/v1` `clusters`): the current objects and a bounded history of their
//! changes ([`ObjectLog`]), served with get, list (label and field selectors, `limit`/
//! `continue`) and watch (from a version, bookmarks, `timeoutSeconds`, `410 Expired` when too
//! old), as JSON or as a Table ([`Collection`]).
//!
//! The objects live in memory. Their resourceVersions count the collection's changes from a
//! base read from the clock when it starts, so every version handed out before a restart is
//! older than the history after it: a client watching from one gets `410 Expired` and lists
//! again, as after an etcd compaction, instead of a history that is not the one it saw.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::call::{Call, Representation, ServedResource, Verb};
use super::discovery::api_resource;
use super::openapi;
use super::pages::{self, Page, Snapshots};
use super::params::Params;
use super::resource::ResourceType;
use super::respond;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::table::{self, IncludeObject};
use super::watch::{
    self as framing, DEFAULT_TIMEOUT, EventType, bookmark_line, error_line, event_line, send,
};
use fedjob_proto::shutdown::Shutdown;

/// The verbs a collection serves.
const VERBS: &[Verb] = &[Verb::Get, Verb::List, Verb::Watch];

/// How the objects of one collection are named, selected and printed.
pub struct Kind {
    /// The resource's names.
    pub names: &'static ResourceType,
    /// Its short names in discovery (`ev`).
    pub short_names: &'static [&'static str],
    /// The fields a field selector may name.
    pub fields: &'static [&'static str],
    /// An object's value of one of those fields.
    pub field: fn(&Value, &str) -> String,
    /// The Table's column definitions.
    pub columns: fn() -> Vec<Value>,
    /// An object's cells under those columns.
    pub cells: fn(&Value) -> Vec<Value>,
}

/// One version of an object.
#[derive(Debug)]
pub struct Object {
    /// `metadata.namespace` ("" for a cluster-scoped object).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.resourceVersion`.
    pub rv: u64,
    /// The object, with `kind`, `apiVersion` and its version.
    pub value: Value,
    /// The same, serialized.
    pub json: Bytes,
}

impl Object {
    fn new(mut value: Value, rv: u64) -> Self {
        value["metadata"]["resourceVersion"] = json!(rv.to_string());
        let meta = |f: &str| table::str_at(&value, f).to_owned();
        Self {
            namespace: meta("/metadata/namespace"),
            name: meta("/metadata/name"),
            rv,
            json: Bytes::from(value.to_string()),
            value,
        }
    }
}

/// One change in the history.
#[derive(Debug, Clone)]
struct Change {
    seq: u64,
    ty: EventType,
    object: Arc<Object>,
    prev: Option<Arc<Object>>,
}

/// Changes read from the history, the cursor after them and the latest version.
struct Batch {
    changes: Vec<Change>,
    next: u64,
    rv: u64,
}

/// A version the history no longer holds: `(requested, oldest)`.
struct TooOld(u64, u64);

struct State {
    objects: BTreeMap<(String, String), Arc<Object>>,
    history: VecDeque<Change>,
    next_seq: u64,
    rv: u64,
    /// Versions at or below this one may have left the history.
    compacted: u64,
    capacity: usize,
}

impl State {
    fn push(&mut self, ty: EventType, object: Arc<Object>, prev: Option<Arc<Object>>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.history.push_back(Change {
            seq,
            ty,
            object,
            prev,
        });
        while self.history.len() > self.capacity {
            if let Some(old) = self.history.pop_front() {
                self.compacted = self.compacted.max(old.object.rv);
            }
        }
    }

    fn batch(&self, changes: Vec<Change>) -> Batch {
        Batch {
            changes,
            next: self.next_seq,
            rv: self.rv,
        }
    }
}

/// The objects of one collection and their recent changes; see the module documentation.
pub struct ObjectLog {
    kind: Kind,
    state: Mutex<State>,
    /// The cursor of the next change, for watchers to wait on.
    changed: watch::Sender<u64>,
}

impl ObjectLog {
    /// An empty collection of `kind` keeping `capacity` changes for watches.
    pub fn new(kind: Kind, capacity: usize) -> Arc<Self> {
        // Microseconds since the epoch: above every version an earlier run handed out unless
        // it made more than a million changes a second.
        let base = u64::try_from(jiff::Timestamp::now().as_microsecond()).unwrap_or(1);
        Arc::new(Self {
            kind,
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                next_seq: 0,
                rv: base,
                compacted: base,
                capacity: capacity.max(1),
            }),
            changed: watch::channel(0).0,
        })
    }

    /// How objects of this collection are read.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The object `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Object>> {
        let key = (namespace.to_owned(), name.to_owned());
        self.state.lock().objects.get(&key).cloned()
    }

    /// Every object, in key order.
    pub fn objects(&self) -> Vec<Arc<Object>> {
        self.state.lock().objects.values().cloned().collect()
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.state.lock().objects.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `value` (its `metadata.namespace` and `name` say which object) at a new version,
    /// unless it equals the object stored; returns the object stored when it changed.
    pub fn put(&self, value: Value) -> Option<Arc<Object>> {
        let mut state = self.state.lock();
        let namespace = table::str_at(&value, "/metadata/namespace").to_owned();
        let name = table::str_at(&value, "/metadata/name").to_owned();
        let key = (namespace, name);
        let prev = state.objects.get(&key).cloned();
        if let Some(p) = &prev {
            let mut same = value.clone();
            same["metadata"]["resourceVersion"] = json!(p.rv.to_string());
            if same == p.value {
                return None;
            }
        }
        state.rv += 1;
        let object = Arc::new(Object::new(value, state.rv));
        state.objects.insert(key, object.clone());
        let ty = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        state.push(ty, object.clone(), prev);
        let next = state.next_seq;
        drop(state);
        self.changed.send_replace(next);
        Some(object)
    }

    /// Removes every object `keep` refuses, each a deletion at a new version; how many went.
    pub fn retain(&self, keep: impl Fn(&Object) -> bool) -> usize {
        let mut state = self.state.lock();
        let gone: Vec<(String, String)> = state
            .objects
            .iter()
            .filter(|(_, o)| !keep(o))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            if let Some(prev) = state.objects.remove(key) {
                state.rv += 1;
                let last = Arc::new(Object::new(prev.value.clone(), state.rv));
                state.push(EventType::Deleted, last, Some(prev));
            }
        }
        let next = state.next_seq;
        drop(state);
        if !gone.is_empty() {
            self.changed.send_replace(next);
        }
        gone.len()
    }

    /// The objects of `namespace` (all when `None`) in key order, their version, and the
    /// cursor of the changes after them.
    fn snapshot(&self, namespace: Option<&str>) -> (Vec<Arc<Object>>, u64, u64) {
        let state = self.state.lock();
        let items = state
            .objects
            .values()
            .filter(|o| namespace.is_none_or(|ns| o.namespace == ns))
            .cloned()
            .collect();
        (items, state.rv, state.next_seq)
    }

    /// The changes after version `rv`.
    fn since(&self, rv: u64) -> Result<Batch, TooOld> {
        let state = self.state.lock();
        if rv < state.compacted || rv > state.rv {
            return Err(TooOld(rv, state.compacted));
        }
        let changes = state
            .history
            .iter()
            .filter(|c| c.object.rv > rv)
            .cloned()
            .collect();
        Ok(state.batch(changes))
    }

    /// The changes from cursor `seq` on.
    fn after(&self, seq: u64) -> Result<Batch, TooOld> {
        let state = self.state.lock();
        let first = state.history.front().map_or(state.next_seq, |c| c.seq);
        if seq < first {
            return Err(TooOld(seq, state.compacted));
        }
        let skip = usize::try_from(seq - first).unwrap_or(usize::MAX);
        let changes = state.history.iter().skip(skip).cloned().collect();
        Ok(state.batch(changes))
    }
}

/// Brings a collection up to date before it is read (clusters are read from the registry).
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// A collection served read-only: get, list and watch.
pub struct Collection {
    log: Arc<ObjectLog>,
    refresh: Option<Refresh>,
    pages: Snapshots<(Option<String>, u64), Arc<Object>>,
    shutdown: Shutdown,
    bookmark_interval: Duration,
}

impl Collection {
    /// Serves `log` (brought up to date by `refresh` before each read); watches end at
    /// `shutdown` and get a bookmark every `bookmark_interval` when they ask for them.
    pub fn new(
        log: Arc<ObjectLog>,
        refresh: Option<Refresh>,
        shutdown: Shutdown,
        bookmark_interval: Duration,
    ) -> Self {
        Self {
            log,
            refresh,
            pages: Snapshots::default(),
            shutdown,
            bookmark_interval,
        }
    }

    fn names(&self) -> &'static ResourceType {
        self.log.kind.names
    }

    fn refresh(&self) {
        if let Some(refresh) = &self.refresh {
            refresh();
        }
    }

    fn table(&self, objects: &[Arc<Object>], rv: Option<u64>, include: IncludeObject) -> Value {
        let kind = &self.log.kind;
        let rows = objects.iter().map(|o| ((kind.cells)(&o.value), &o.value));
        table::render((kind.columns)(), rows, rv, include)
    }

    fn get(&self, call: &Call, namespace: &str, name: &str) -> Result<Response, ApiError> {
        self.refresh();
        let object = self
            .log
            .get(namespace, name)
            .ok_or_else(|| ApiError::NotFound {
                resource: self.names(),
                name: name.to_owned(),
            })?;
        Ok(match call.representation {
            Representation::Json => respond::json(StatusCode::OK, object.json.clone()),
            Representation::Table(include) => {
                let table = self.table(std::slice::from_ref(&object), Some(object.rv), include);
                respond::json(StatusCode::OK, table.to_string())
            }
        })
    }

    fn list(&self, call: &Call) -> Result<Response, ApiError> {
        let selection = Selection::parse(&call.params, &self.log.kind)?;
        let params = &call.params;
        let namespace = call.namespace.as_deref();
        let limit = params.limit()?;
        params.resource_version()?;
        let (snapshot, rv, after) = match params.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let token = pages::Continue::decode(token)?;
                let snapshot = self
                    .pages
                    .get(&(namespace.map(str::to_owned), token.rv))
                    .ok_or_else(pages::expired)?;
                (snapshot, token.rv, Some(token.start))
            }
            None => {
                self.refresh();
                let (items, rv, _) = self.log.snapshot(namespace);
                (Arc::new(items), rv, None)
            }
        };
        let unfiltered = params.get("labelSelector").unwrap_or_default().is_empty()
            && params.get("fieldSelector").unwrap_or_default().is_empty();
        let page: Page<Arc<Object>> = pages::page(
            &snapshot,
            rv,
            |o| pages::relative_key(&o.namespace, &o.name, namespace),
            after.as_deref(),
            |o| selection.matches(&self.log.kind, o),
            limit,
            unfiltered,
        );
        if page.next.is_some() {
            self.pages
                .keep((namespace.map(str::to_owned), rv), snapshot.clone());
        }
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if let Some(token) = &page.next {
            meta["continue"] = json!(token);
        }
        let body = match call.representation {
            Representation::Json => {
                if let Some(n) = page.remaining {
                    meta["remainingItemCount"] = json!(n);
                }
                let names = self.names();
                let mut out = format!(
                    r#"{{"kind":"{}","apiVersion":"{}","metadata":{meta},"items":["#,
                    names.list_kind, names.api_version
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
            Representation::Table(include) => {
                let mut table = self.table(&page.items, Some(rv), include);
                table["metadata"] = meta;
                table.to_string().into_bytes()
            }
        };
        Ok(respond::json(StatusCode::OK, body))
    }

    fn watch(&self, call: &Call) -> Result<Response, ApiError> {
        let selection = Selection::parse(&call.params, &self.log.kind)?;
        let start = match call.params.resource_version()? {
            None | Some(0) => None,
            Some(rv) => Some(rv),
        };
        let spec = WatchSpec {
            log: self.log.clone(),
            namespace: call.namespace.clone(),
            name: call.name.clone(),
            selection,
            bookmarks: call.params.flag("allowWatchBookmarks"),
            bookmark_interval: self.bookmark_interval,
            timeout: call.params.timeout()?.unwrap_or(DEFAULT_TIMEOUT),
            table: match call.representation {
                Representation::Json => None,
                Representation::Table(include) => Some(include),
            },
        };
        let first = match start {
            None => {
                self.refresh();
                let (items, rv, cursor) = self.log.snapshot(spec.namespace.as_deref());
                let lines = items
                    .iter()
                    .filter(|o| spec.matches(o))
                    .map(|o| spec.line(EventType::Added, o))
                    .collect();
                Ok((lines, cursor, rv))
            }
            Some(rv) => match self.log.since(rv) {
                Ok(batch) => Ok((spec.lines(&batch.changes), batch.next, batch.rv)),
                Err(TooOld(requested, oldest)) => Err(framing::too_old(requested, oldest)),
            },
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run(spec, first, self.shutdown.clone(), tx));
        Ok(framing::stream_response(rx))
    }
}

#[async_trait]
impl ServedResource for Collection {
    fn names(&self) -> &'static ResourceType {
        self.log.kind.names
    }

    fn discovery(&self) -> Vec<Value> {
        let names = self.names();
        let verbs: Vec<&str> = VERBS.iter().map(|v| v.as_str()).collect();
        vec![api_resource(
            names.plural,
            names,
            &verbs,
            self.log.kind.short_names,
            &[],
        )]
    }

    fn openapi_paths(&self) -> Vec<(String, Value)> {
        openapi::resource_paths(self.names(), VERBS, &[])
    }

    async fn serve(&self, call: Call) -> Result<Response, ApiError> {
        let namespaced = self.names().namespaced;
        if call.subresource.is_some() || (!namespaced && call.namespace.is_some()) {
            return Err(ApiError::PathNotFound);
        }
        match (call.verb, call.name.as_deref(), call.namespace.as_deref()) {
            (Verb::List, _, _) => self.list(&call),
            (Verb::Watch, _, _) => self.watch(&call),
            (Verb::Get, Some(name), Some(ns)) if namespaced => self.get(&call, ns, name),
            (Verb::Get, Some(name), None) if !namespaced => self.get(&call, "", name),
            (Verb::Get, _, _) => Err(ApiError::PathNotFound),
            _ => Err(ApiError::MethodNotAllowed),
        }
    }
}

/// The label and field selectors of a list or watch.
struct Selection {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selection {
    fn parse(params: &Params, kind: &Kind) -> Result<Self, ApiError> {
        Ok(Self {
            labels: params.labels()?,
            fields: params.fields(kind.fields)?,
        })
    }

    fn matches(&self, kind: &Kind, object: &Object) -> bool {
        self.labels
            .matches(object.value.pointer("/metadata/labels"))
            && self.fields.matches(|f| (kind.field)(&object.value, f))
    }
}

/// What a watch selects and how it behaves.
struct WatchSpec {
    log: Arc<ObjectLog>,
    namespace: Option<String>,
    name: Option<String>,
    selection: Selection,
    bookmarks: bool,
    bookmark_interval: Duration,
    timeout: Duration,
    table: Option<IncludeObject>,
}

impl WatchSpec {
    fn matches(&self, object: &Object) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| object.namespace == *ns)
            && self.name.as_ref().is_none_or(|n| object.name == *n)
            && self.selection.matches(&self.log.kind, object)
    }

    /// The event this watcher sees for a change: one that makes an object start (stop)
    /// matching is `ADDED` (`DELETED`), as the API server's watch cache sends it.
    fn sees(&self, change: &Change) -> Option<EventType> {
        let now = self.matches(&change.object);
        let before = change.prev.as_ref().is_some_and(|p| self.matches(p));
        match (change.ty, before, now) {
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

    fn line(&self, ty: EventType, object: &Arc<Object>) -> Bytes {
        match self.table {
            None => event_line(ty, &object.json),
            Some(include) => {
                let kind = &self.log.kind;
                let table = table::render(
                    (kind.columns)(),
                    [((kind.cells)(&object.value), &object.value)],
                    Some(object.rv),
                    include,
                );
                event_line(ty, table.to_string().as_bytes())
            }
        }
    }

    fn lines(&self, changes: &[Change]) -> Vec<Bytes> {
        changes
            .iter()
            .filter_map(|c| self.sees(c).map(|ty| self.line(ty, &c.object)))
            .collect()
    }
}

async fn run(
    spec: WatchSpec,
    first: Result<(Vec<Bytes>, u64, u64), ApiError>,
    mut shutdown: Shutdown,
    tx: mpsc::Sender<Bytes>,
) {
    let deadline = Instant::now() + spec.timeout;
    let mut changed = spec.log.changed.subscribe();
    let (lines, mut cursor, mut seen) = match first {
        Ok(first) => first,
        Err(refusal) => {
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
        match spec.log.after(cursor) {
            Err(TooOld(_, oldest)) => {
                let error = framing::too_old(seen, oldest);
                let _ = send(&tx, error_line(&error), &mut shutdown, deadline).await;
                return;
            }
            Ok(batch) => {
                for line in spec.lines(&batch.changes) {
                    if !send(&tx, line, &mut shutdown, deadline).await {
                        return;
                    }
                }
                cursor = batch.next;
                seen = seen.max(batch.rv);
            }
        }
        tokio::select! {
            changed = changed.changed() => if changed.is_err() { return },
            _ = bookmarks.tick(), if spec.bookmarks => {
                let line = bookmark_line(spec.log.kind.names, seen);
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

#[cfg(test)]
mod tests;
