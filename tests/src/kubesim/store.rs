//! The versioned object store of one simulated cluster: etcd plus the apiserver's watch cache.
//!
//! Every write takes the next cluster-wide `resourceVersion`, replaces the object wholesale and
//! appends an event to a bounded history. Watchers read the history from their own cursor, so
//! a slow watcher costs nothing until it reads, and one whose cursor fell out of the history
//! gets `410 Expired`, as from a real server after etcd compaction. Lists at an exact old
//! version are rebuilt by undoing the history, which is what etcd's MVCC gives the real server.
//!
//! One `parking_lot::Mutex` guards the state: every critical section is a map operation plus
//! one serialization, far shorter than the HTTP work around it, and each simulated cluster has
//! its own store, so clusters never contend.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

pub use fedjob_scheduler::kube_api::watch::EventType;

use super::resource::Resource;

/// Where an object lives: its resource, namespace ("" when cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The resource.
    pub resource: Resource,
    /// The namespace, empty for cluster-scoped resources.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key for `resource` named `name` in `namespace`.
    pub fn new(resource: Resource, namespace: &str, name: &str) -> Self {
        Self {
            resource,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// One stored version of an object: immutable, shared by the live map, the history and the
/// responses being written.
///
/// It is kept serialized: a parsed `serde_json::Value` of a Job takes ten times the memory of
/// its JSON (every small map is a B-tree node), and lists and watches send the bytes as they
/// are. Writers and the controller parse the one version they work on.
#[derive(Debug)]
pub struct Object {
    /// Where it lives.
    pub key: ObjectKey,
    /// Its `metadata.resourceVersion`.
    pub rv: u64,
    /// The object without `kind`/`apiVersion` (constant per resource and left out of list
    /// items, as the real server does), serialized once for every list, get and watch event.
    pub json: Bytes,
    /// `metadata.labels`, parsed, for selectors.
    labels: Option<Value>,
    /// `metadata.uid`.
    uid: String,
}

impl Object {
    /// Builds a version from its value (without `kind`/`apiVersion`).
    pub fn new(key: ObjectKey, rv: u64, value: &Value) -> Self {
        let json = Bytes::from(serde_json::to_vec(value).expect("JSON values serialize"));
        let labels = value.pointer("/metadata/labels").cloned();
        let uid = value
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Self {
            key,
            rv,
            json,
            labels,
            uid,
        }
    }

    /// The object, parsed.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).expect("stored objects are valid JSON")
    }

    /// `metadata.labels`.
    pub fn labels(&self) -> Option<&Value> {
        self.labels.as_ref()
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The value of a field a field selector can name.
    pub fn field(&self, field: &str) -> String {
        match field {
            "metadata.name" => self.key.name.clone(),
            "metadata.namespace" => self.key.namespace.clone(),
            _ => self.key.resource.field_value(&self.value(), field),
        }
    }

    /// The object serialized with `kind` and `apiVersion` first, as a GET answers it.
    pub fn full_json(&self) -> Vec<u8> {
        let prefix = self.key.resource.type_meta_json();
        let mut out = Vec::with_capacity(prefix.len() + self.json.len());
        out.extend_from_slice(prefix.as_bytes());
        // `json` is an object with at least `metadata`, so it is `{"…` and never `{}`.
        out.extend_from_slice(&self.json[1..]);
        out
    }
}

/// One entry of the history.
#[derive(Debug, Clone)]
pub struct Event {
    /// The resourceVersion this change created.
    pub rv: u64,
    /// What happened.
    pub ty: EventType,
    /// The object after the change (for a delete: its last state, at the delete's version).
    pub object: Arc<Object>,
    /// The object before the change (`None` for a create).
    pub prev: Option<Arc<Object>>,
}

/// A store operation that could not be done.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No object at that key.
    #[error("not found")]
    NotFound,
    /// An object already exists at that key.
    #[error("already exists")]
    AlreadyExists,
    /// The object changed since the version the caller read.
    #[error("conflict: the object is at resourceVersion {}", current.rv)]
    Conflict {
        /// The current version.
        current: Arc<Object>,
    },
    /// The requested version is older than the history reaches.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// What was asked for.
        requested: u64,
        /// The oldest version the history can still serve from.
        oldest: u64,
    },
}

struct State {
    rv: u64,
    objects: BTreeMap<ObjectKey, Arc<Object>>,
    history: VecDeque<Event>,
    capacity: usize,
    /// Every change up to and including this version has left the history.
    compacted: u64,
}

/// The store of one simulated cluster.
pub struct Store {
    state: Mutex<State>,
    /// The latest resourceVersion, for watchers to wait on.
    latest: watch::Sender<u64>,
    /// Told the key of every change (the simulated controllers' informer).
    listener: OnceLock<mpsc::UnboundedSender<ObjectKey>>,
}

impl Store {
    /// An empty store keeping the last `history` changes for watches and exact lists.
    pub fn new(history: usize) -> Self {
        Self {
            state: Mutex::new(State {
                rv: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                capacity: history.max(1),
                compacted: 0,
            }),
            latest: watch::channel(0).0,
            listener: OnceLock::new(),
        }
    }

    /// Registers the one listener told about every changed key; later calls are ignored.
    pub fn set_listener(&self, tx: mpsc::UnboundedSender<ObjectKey>) {
        let _ = self.listener.set(tx);
    }

    /// A receiver of the latest resourceVersion, which changes after every write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.state.lock().rv
    }

    /// Takes the next resourceVersion for something kept outside the store (simulated pods),
    /// so their versions are ordered with everything else's.
    pub fn next_rv(&self) -> u64 {
        let mut state = self.state.lock();
        state.rv += 1;
        state.rv
    }

    /// The current version at `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Object>> {
        self.state.lock().objects.get(key).cloned()
    }

    /// Every object of `resource` (in `namespace` when given), in key order, and the version
    /// the list is consistent at.
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> (Vec<Arc<Object>>, u64) {
        let state = self.state.lock();
        let items = range(&state.objects, resource, namespace)
            .map(|(_, o)| o.clone())
            .collect();
        (items, state.rv)
    }

    /// The objects as they were at version `rv`, rebuilt by undoing later history.
    pub fn list_at(
        &self,
        resource: Resource,
        namespace: Option<&str>,
        rv: u64,
    ) -> Result<Vec<Arc<Object>>, StoreError> {
        let state = self.state.lock();
        if rv < state.compacted {
            return Err(StoreError::Expired {
                requested: rv,
                oldest: state.compacted,
            });
        }
        let mut items: BTreeMap<ObjectKey, Arc<Object>> =
            range(&state.objects, resource, namespace)
                .map(|(k, o)| (k.clone(), o.clone()))
                .collect();
        let in_scope =
            |k: &ObjectKey| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns);
        for event in state.history.iter().rev().take_while(|e| e.rv > rv) {
            let key = &event.object.key;
            if !in_scope(key) {
                continue;
            }
            match (&event.ty, &event.prev) {
                (EventType::Added, _) => {
                    items.remove(key);
                }
                (_, Some(prev)) => {
                    items.insert(key.clone(), prev.clone());
                }
                (_, None) => {}
            }
        }
        Ok(items.into_values().collect())
    }

    /// The changes after version `cursor` and the latest version, or `Expired` when some of
    /// them have left the history.
    pub fn events_after(&self, cursor: u64) -> Result<(Vec<Event>, u64), StoreError> {
        let state = self.state.lock();
        if cursor < state.compacted {
            return Err(StoreError::Expired {
                requested: cursor,
                oldest: state.compacted,
            });
        }
        let start = state.history.partition_point(|e| e.rv <= cursor);
        let events = state.history.range(start..).cloned().collect();
        Ok((events, state.rv))
    }

    /// Compacts the history up to the current version, as etcd compaction does: a watch from
    /// an older version, or a list at one exactly, gets `410 Expired` from now on.
    pub fn compact(&self) {
        let mut state = self.state.lock();
        state.history.clear();
        state.compacted = state.rv;
    }

    /// Stores a new object at `key`; `value.metadata.resourceVersion` is set here.
    pub fn create(&self, key: ObjectKey, value: Value) -> Result<Arc<Object>, StoreError> {
        let mut state = self.state.lock();
        if state.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        let object = state.commit(key, value, EventType::Added, None);
        self.announce(&mut state, &object);
        Ok(object)
    }

    /// Replaces the object at `key`, if it is still at `expected_rv` when that is given.
    pub fn update(
        &self,
        key: &ObjectKey,
        expected_rv: Option<u64>,
        value: Value,
    ) -> Result<Arc<Object>, StoreError> {
        let mut state = self.state.lock();
        let current = state
            .objects
            .get(key)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        if expected_rv.is_some_and(|rv| rv != current.rv) {
            return Err(StoreError::Conflict { current });
        }
        let object = state.commit(key.clone(), value, EventType::Modified, Some(current));
        self.announce(&mut state, &object);
        Ok(object)
    }

    /// Removes the object at `key`, if it is still at `expected_rv` when that is given; returns
    /// its last state, stamped with the version of the delete.
    pub fn delete(
        &self,
        key: &ObjectKey,
        expected_rv: Option<u64>,
    ) -> Result<Arc<Object>, StoreError> {
        let mut state = self.state.lock();
        let current = state
            .objects
            .get(key)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        if expected_rv.is_some_and(|rv| rv != current.rv) {
            return Err(StoreError::Conflict { current });
        }
        let object = state.commit(
            key.clone(),
            current.value(),
            EventType::Deleted,
            Some(current),
        );
        self.announce(&mut state, &object);
        Ok(object)
    }

    /// Number of objects of `resource` in `namespace`.
    pub fn count_in(&self, resource: Resource, namespace: &str) -> usize {
        range(&self.state.lock().objects, resource, Some(namespace)).count()
    }

    /// Number of objects of `resource`.
    pub fn count(&self, resource: Resource) -> usize {
        range(&self.state.lock().objects, resource, None).count()
    }

    fn announce(&self, state: &mut State, object: &Arc<Object>) {
        self.latest.send_replace(state.rv);
        if let Some(tx) = self.listener.get() {
            let _ = tx.send(object.key.clone());
        }
    }
}

impl State {
    fn commit(
        &mut self,
        key: ObjectKey,
        mut value: Value,
        ty: EventType,
        prev: Option<Arc<Object>>,
    ) -> Arc<Object> {
        self.rv += 1;
        let rv = self.rv;
        if let Value::Object(map) = &mut value {
            map.remove("kind");
            map.remove("apiVersion");
            if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                meta.insert("resourceVersion".to_owned(), Value::String(rv.to_string()));
            }
        }
        let object = Arc::new(Object::new(key.clone(), rv, &value));
        match ty {
            EventType::Deleted => {
                self.objects.remove(&key);
            }
            _ => {
                self.objects.insert(key, object.clone());
            }
        }
        self.history.push_back(Event {
            rv,
            ty,
            object: object.clone(),
            prev,
        });
        while self.history.len() > self.capacity {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        object
    }
}

fn range<'a>(
    objects: &'a BTreeMap<ObjectKey, Arc<Object>>,
    resource: Resource,
    namespace: Option<&'a str>,
) -> impl Iterator<Item = (&'a ObjectKey, &'a Arc<Object>)> + 'a {
    let start = ObjectKey::new(resource, namespace.unwrap_or(""), "");
    objects.range(start..).take_while(move |(k, _)| {
        k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(name: &str, n: i64) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"parallelism": n}})
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Resource::Job, "default", name)
    }

    #[test]
    fn versions_increase_and_conflicts_are_detected() {
        let store = Store::new(100);
        let a = store.create(key("a"), job("a", 1)).unwrap();
        assert_eq!(a.rv, 1);
        assert_eq!(a.value()["metadata"]["resourceVersion"], "1");
        assert!(matches!(
            store.create(key("a"), job("a", 1)),
            Err(StoreError::AlreadyExists)
        ));
        let a2 = store.update(&key("a"), Some(1), job("a", 2)).unwrap();
        assert_eq!(a2.rv, 2);
        assert!(matches!(
            store.update(&key("a"), Some(1), job("a", 3)),
            Err(StoreError::Conflict { .. })
        ));
        let gone = store.delete(&key("a"), None).unwrap();
        assert_eq!(gone.rv, 3);
        assert_eq!(gone.value()["spec"]["parallelism"], 2);
        assert!(store.get(&key("a")).is_none());
    }

    #[test]
    fn history_is_bounded_and_lists_rebuild_old_versions() {
        let store = Store::new(3);
        store.create(key("a"), job("a", 1)).unwrap(); // 1
        store.create(key("b"), job("b", 1)).unwrap(); // 2
        store.update(&key("a"), None, job("a", 2)).unwrap(); // 3
        store.delete(&key("b"), None).unwrap(); // 4
        store.create(key("c"), job("c", 1)).unwrap(); // 5
        // History holds 3..=5, so versions from 2 on can be served.
        assert!(matches!(
            store.events_after(1),
            Err(StoreError::Expired { oldest: 2, .. })
        ));
        let (events, latest) = store.events_after(2).unwrap();
        assert_eq!(latest, 5);
        assert_eq!(
            events.iter().map(|e| e.rv).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let at2 = store.list_at(Resource::Job, Some("default"), 2).unwrap();
        let names: Vec<_> = at2.iter().map(|o| (o.key.name.clone(), o.rv)).collect();
        assert_eq!(names, vec![("a".to_owned(), 1), ("b".to_owned(), 2)]);
        assert!(store.list_at(Resource::Job, None, 1).is_err());
    }

    #[test]
    fn compaction_expires_every_older_version() {
        let store = Store::new(100);
        store.create(key("a"), job("a", 1)).unwrap(); // 1
        store.update(&key("a"), None, job("a", 2)).unwrap(); // 2
        store.compact();
        assert!(matches!(
            store.events_after(1),
            Err(StoreError::Expired {
                requested: 1,
                oldest: 2
            })
        ));
        assert!(store.list_at(Resource::Job, None, 1).is_err());
        let (events, latest) = store.events_after(2).unwrap();
        assert!(
            events.is_empty() && latest == 2,
            "the current version is fine"
        );
        store.create(key("b"), job("b", 1)).unwrap(); // 3
        assert_eq!(store.events_after(2).unwrap().0.len(), 1);
        assert_eq!(store.get(&key("a")).unwrap().rv, 2, "objects are kept");
    }
}
