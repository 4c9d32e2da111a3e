//! The write path of the simulated apiserver: create, update, patch, apply, delete and status
//! writes, each as the real server orders them — decode, default, prepare, validate, record
//! managed fields, then a compare-and-swap on the store.
//!
//! The HTTP handlers and the simulated controllers both write through here, so a status change
//! made by the job controller is versioned, field-managed and watched exactly like a client's.
//! Updates that did not name a `resourceVersion` retry on a lost compare-and-swap, as the
//! apiserver's `GuaranteedUpdate` does; those that did answer 409.

use std::sync::Arc;

use fedjob_scheduler::kube_api::fieldset::{self, FieldSet};
use fedjob_scheduler::kube_api::managed::{Author, ManagedFields};
use fedjob_scheduler::kube_api::params::{DeleteOptions, Propagation, parse_rv};
use fedjob_scheduler::kube_api::patch::{self, PatchError, PatchType};
use fedjob_scheduler::kube_api::schema;
use fedjob_scheduler::kube_api::status::{ApiError, stale_conflict};
use fedjob_scheduler::kube_api::{apply, clock};
use serde_json::{Value, json};

use super::resource::Resource;
use super::store::{Object, ObjectKey, Store, StoreError};
use super::validation::FieldError;
use super::{job, namespace, node};

/// The manager name the simulated controllers write status with.
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// The outcome of a delete.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// The object is gone; its last state.
    Now(Arc<Object>),
    /// The object is terminating, waiting for finalizers; its current state.
    Pending(Arc<Object>),
}

/// One client's writes: who manages the fields, and whether to persist.
pub struct Writer<'a> {
    store: &'a Store,
    manager: String,
    dry_run: bool,
}

/// How a create records its manager: as an update, or as an apply of these fields.
enum Tracking {
    Update,
    Apply(FieldSet),
}

/// The version a write starts from, parsed once.
struct Current {
    object: Arc<Object>,
    rv: u64,
    value: Value,
}

impl Current {
    fn of(object: Arc<Object>) -> Self {
        Self {
            rv: object.rv,
            value: object.value(),
            object,
        }
    }

    fn uid(&self) -> &str {
        self.object.uid()
    }
}

fn decode(resource: Resource, body: Value) -> Result<Value, ApiError> {
    let mut value = match resource {
        Resource::Job => job::decode(body)?,
        Resource::Namespace => namespace::decode(body)?,
        Resource::Node => node::decode(body)?,
    };
    if let Some(map) = value.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        if !map.get("metadata").is_some_and(Value::is_object) {
            map.insert("metadata".into(), json!({}));
        }
    }
    Ok(value)
}

fn default(resource: Resource, value: &mut Value) {
    match resource {
        Resource::Job => job::default(value),
        Resource::Namespace => namespace::default(value),
        Resource::Node => node::default(value),
    }
}

fn invalid(resource: Resource, value: &Value, causes: Vec<FieldError>) -> Result<(), ApiError> {
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid {
        resource: resource.into(),
        name: name_of(value).to_owned(),
        causes: causes.into_iter().map(Into::into).collect(),
    })
}

fn name_of(value: &Value) -> &str {
    value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn meta_mut(value: &mut Value) -> &mut serde_json::Map<String, Value> {
    value
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("decoded objects have metadata")
}

/// An object that was not stored (dry run), shaped like a stored one.
fn detached(key: ObjectKey, value: Value) -> Arc<Object> {
    let rv = value
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Arc::new(Object::new(key, rv, &value))
}

fn body_rv(value: &Value) -> Result<Option<u64>, ApiError> {
    match value
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        None | Some("") => Ok(None),
        Some(s) => parse_rv(s).map(Some),
    }
}

/// A random suffix as `generateName` and pod names use (no vowels, no look-alikes).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl<'a> Writer<'a> {
    /// Writes to `store` as `manager`; with `dry_run`, validates without persisting.
    pub fn new(store: &'a Store, manager: impl Into<String>, dry_run: bool) -> Self {
        Self {
            store,
            manager: manager.into(),
            dry_run,
        }
    }

    fn store_err(&self, key: &ObjectKey, err: StoreError) -> ApiError {
        match err {
            StoreError::NotFound => ApiError::NotFound {
                resource: key.resource.into(),
                name: key.name.clone(),
            },
            StoreError::AlreadyExists => ApiError::AlreadyExists {
                resource: key.resource.into(),
                name: key.name.clone(),
            },
            StoreError::Conflict { .. } => stale_conflict(key.resource.into(), &key.name),
            StoreError::Expired { .. } => ApiError::Internal(err.to_string()),
        }
    }

    fn get(&self, key: &ObjectKey) -> Result<Current, ApiError> {
        self.store
            .get(key)
            .map(Current::of)
            .ok_or_else(|| ApiError::NotFound {
                resource: key.resource.into(),
                name: key.name.clone(),
            })
    }

    /// Creates an object from a request body (POST).
    pub fn create(
        &self,
        resource: Resource,
        namespace: &str,
        body: Value,
    ) -> Result<Arc<Object>, ApiError> {
        let value = decode(resource, body)?;
        self.create_decoded(resource, namespace, value, Tracking::Update)
    }

    fn create_decoded(
        &self,
        resource: Resource,
        namespace: &str,
        mut value: Value,
        tracking: Tracking,
    ) -> Result<Arc<Object>, ApiError> {
        let meta = meta_mut(&mut value);
        if resource.namespaced() {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != namespace => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request"
                            .to_owned(),
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(namespace));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let generate = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() && !generate.is_empty() {
            let base: String = generate.chars().take(58).collect();
            meta.insert("name".into(), json!(format!("{base}{}", random_suffix())));
        }
        for field in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            meta.remove(field);
        }
        let name = name_of(&value).to_owned();
        if resource.namespaced() {
            let ns = self
                .store
                .get(&ObjectKey::new(Resource::Namespace, "", namespace))
                .ok_or_else(|| ApiError::NotFound {
                    resource: Resource::Namespace.into(),
                    name: namespace.to_owned(),
                })?;
            if namespace::terminating(&ns.value()) {
                return Err(ApiError::Forbidden {
                    resource: resource.into(),
                    name,
                    detail: format!(
                        "unable to create new content in namespace {namespace} because it is being terminated"
                    ),
                });
            }
        }
        let had_labels = value
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .is_some_and(|l| !l.is_empty());
        default(resource, &mut value);
        let now = clock::now();
        let mut managed = ManagedFields::default();
        let author = Author {
            api_version: resource.api_version(),
            manager: &self.manager,
            subresource: "",
            now: &now,
        };
        match tracking {
            Tracking::Update => {
                managed.update(author, &schema::zero_object(resource.kind()), &value)
            }
            Tracking::Apply(applied) => managed.apply(author, applied, &json!({}), &value, false),
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let meta = meta_mut(&mut value);
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now));
        match resource {
            Resource::Job => job::prepare_create(&mut value, &uid, !had_labels),
            Resource::Namespace => namespace::prepare_create(&mut value),
            Resource::Node => node::prepare_create(&mut value),
        }
        let errs = match resource {
            Resource::Job => job::validate(&value),
            Resource::Namespace => namespace::validate(&value),
            Resource::Node => node::validate(&value),
        };
        invalid(resource, &value, errs)?;
        managed.write_to(&mut value);
        let key = ObjectKey::new(
            resource,
            if resource.namespaced() { namespace } else { "" },
            &name,
        );
        if self.dry_run {
            if self.store.get(&key).is_some() {
                return Err(ApiError::AlreadyExists {
                    resource: resource.into(),
                    name,
                });
            }
            return Ok(detached(key, value));
        }
        self.store
            .create(key.clone(), value)
            .map_err(|e| self.store_err(&key, e))
    }

    /// Checks that a body names the object of the URL.
    fn check_identity(key: &ObjectKey, value: &Value) -> Result<(), ApiError> {
        let name = name_of(value);
        if !name.is_empty() && name != key.name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                key.name
            )));
        }
        if key.resource.namespaced() {
            let ns = value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !ns.is_empty() && ns != key.namespace {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// Defaults, prepares and validates `new` as the next version of `old`, and records the
    /// write in the managed fields (as an update by this writer's manager).
    fn next_version(
        &self,
        key: &ObjectKey,
        old: &Current,
        mut new: Value,
        subresource: &str,
    ) -> Result<Value, ApiError> {
        let meta = meta_mut(&mut new);
        meta.insert("name".into(), json!(key.name));
        if key.resource.namespaced() {
            meta.insert("namespace".into(), json!(key.namespace));
        }
        meta.remove("managedFields");
        default(key.resource, &mut new);
        self.prepare(key, old, &mut new, subresource)?;
        let mut managed = ManagedFields::of(&old.value);
        let now = clock::now();
        let author = Author {
            api_version: key.resource.api_version(),
            manager: &self.manager,
            subresource,
            now: &now,
        };
        managed.update(author, &old.value, &new);
        managed.write_to(&mut new);
        Ok(new)
    }

    fn prepare(
        &self,
        key: &ObjectKey,
        old: &Current,
        new: &mut Value,
        subresource: &str,
    ) -> Result<(), ApiError> {
        match (key.resource, subresource) {
            (Resource::Job, "status") => job::prepare_status_update(new, &old.value),
            (Resource::Job, _) => job::prepare_update(new, &old.value),
            (Resource::Namespace, "status") => {
                new["spec"] = old.value.get("spec").cloned().unwrap_or_else(|| json!({}));
                job::keep_system_metadata(new, &old.value);
            }
            (Resource::Namespace, _) => namespace::prepare_update(new, &old.value),
            (Resource::Node, "status") => node::prepare_status_update(new, &old.value),
            (Resource::Node, _) => node::prepare_update(new, &old.value),
        }
        let errs = match key.resource {
            Resource::Job => job::validate_update(new, &old.value),
            Resource::Namespace => namespace::validate_update(new, &old.value),
            Resource::Node => node::validate_update(new, &old.value),
        };
        invalid(key.resource, new, errs)
    }

    /// Stores `new` in place of `old` unless nothing changed; a terminating object whose last
    /// finalizer went is deleted.
    fn commit(
        &self,
        key: &ObjectKey,
        old: &Current,
        mut new: Value,
    ) -> Result<Arc<Object>, StoreError> {
        meta_mut(&mut new).insert("resourceVersion".into(), json!(old.rv.to_string()));
        if new == old.value {
            return Ok(old.object.clone());
        }
        let finalized = new
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null())
            && new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if self.dry_run {
            return Ok(detached(key.clone(), new));
        }
        if finalized {
            return self.store.delete(key, Some(old.rv));
        }
        self.store.update(key, Some(old.rv), new)
    }

    /// Replaces an object (PUT), optionally through the `status` subresource.
    pub fn update(
        &self,
        key: &ObjectKey,
        body: Value,
        subresource: &str,
    ) -> Result<Arc<Object>, ApiError> {
        let body = decode(key.resource, body)?;
        Self::check_identity(key, &body)?;
        let precondition = body_rv(&body)?;
        loop {
            let old = self.get(key)?;
            if precondition.is_some_and(|rv| rv != old.rv) {
                return Err(stale_conflict(key.resource.into(), &key.name));
            }
            let new = self.next_version(key, &old, body.clone(), subresource)?;
            match self.commit(key, &old, new) {
                Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
                other => return other.map_err(|e| self.store_err(key, e)),
            }
        }
    }

    /// Patches an object with a merge, JSON or strategic merge patch.
    pub fn patch(
        &self,
        key: &ObjectKey,
        patch_type: PatchType,
        patch: &Value,
        subresource: &str,
    ) -> Result<Arc<Object>, ApiError> {
        loop {
            let old = self.get(key)?;
            let mut target = old.value.clone();
            if let Some(map) = target.as_object_mut() {
                map.insert("apiVersion".into(), json!(key.resource.api_version()));
                map.insert("kind".into(), json!(key.resource.kind()));
            }
            let applied = match patch_type {
                PatchType::Merge => patch::merge(&mut target, patch),
                PatchType::Json => patch::json(&mut target, patch),
                PatchType::Strategic => patch::strategic(&mut target, patch),
                PatchType::Apply => {
                    return Err(ApiError::Internal("apply is not a patch".to_owned()));
                }
            };
            applied.map_err(|e| match e {
                PatchError::Malformed(m) => ApiError::BadRequest(m),
                PatchError::Failed(m) => ApiError::PatchFailed(m),
            })?;
            let precondition = body_rv(&target)?;
            if precondition.is_some_and(|rv| rv != old.rv) {
                return Err(stale_conflict(key.resource.into(), &key.name));
            }
            let new = decode(key.resource, target)?;
            Self::check_identity(key, &new)?;
            let new = self.next_version(key, &old, new, subresource)?;
            match self.commit(key, &old, new) {
                Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
                other => return other.map_err(|e| self.store_err(key, e)),
            }
        }
    }

    /// Server-side apply of a configuration; creates the object when missing. Returns the
    /// object and whether it was created.
    pub fn apply(
        &self,
        key: &ObjectKey,
        config: Value,
        force: bool,
    ) -> Result<(Arc<Object>, bool), ApiError> {
        let config = decode(key.resource, config)?;
        Self::check_identity(key, &config)?;
        let applied = fieldset::applied(&config);
        loop {
            let Some(live) = self.store.get(key).map(Current::of) else {
                let mut value = config.clone();
                meta_mut(&mut value).insert("name".into(), json!(key.name));
                let created = self.create_decoded(
                    key.resource,
                    &key.namespace,
                    value,
                    Tracking::Apply(applied.clone()),
                );
                match created {
                    // Someone created it meanwhile: apply to theirs.
                    Err(ApiError::AlreadyExists { .. }) => continue,
                    other => return other.map(|o| (o, true)),
                };
            };
            let now = clock::now();
            let author = Author {
                api_version: key.resource.api_version(),
                manager: &self.manager,
                subresource: "",
                now: &now,
            };
            let mut merged = apply::apply(&live.value, &config, author, force, |v| {
                default(key.resource, v)
            })?;
            self.prepare(key, &live, &mut merged, "")?;
            match self.commit(key, &live, merged) {
                Err(StoreError::Conflict { .. }) => continue,
                other => {
                    return other
                        .map(|o| (o, false))
                        .map_err(|e| self.store_err(key, e));
                }
            }
        }
    }

    /// Deletes an object: at once, or by marking it terminating when finalizers must run first.
    pub fn delete(&self, key: &ObjectKey, options: &DeleteOptions) -> Result<Deleted, ApiError> {
        loop {
            let old = self.get(key)?;
            if let Some(uid) = options.uid.as_deref().filter(|u| *u != old.uid()) {
                return Err(ApiError::Conflict {
                    resource: key.resource.into(),
                    name: key.name.clone(),
                    detail: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        old.uid()
                    ),
                });
            }
            if let Some(rv) = options.resource_version.filter(|rv| *rv != old.rv) {
                return Err(ApiError::Conflict {
                    resource: key.resource.into(),
                    name: key.name.clone(),
                    detail: format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        old.rv
                    ),
                });
            }
            if key.resource == Resource::Namespace
                && namespace::IMMORTAL.contains(&key.name.as_str())
            {
                return Err(ApiError::Forbidden {
                    resource: key.resource.into(),
                    name: key.name.clone(),
                    detail: "this namespace may not be deleted".to_owned(),
                });
            }
            if old
                .value
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null())
            {
                return Ok(Deleted::Pending(old.object));
            }
            let mut new = old.value.clone();
            let now = clock::now();
            let meta = meta_mut(&mut new);
            let mut finalizers: Vec<Value> = meta
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match key.resource {
                Resource::Namespace => {
                    new["status"] = json!({"phase": "Terminating"});
                }
                Resource::Job | Resource::Node => {
                    let propagation = options.propagation.unwrap_or(Propagation::Orphan);
                    let gc = match (key.resource, propagation) {
                        // Nodes have no dependents the simulator tracks: they go at once.
                        (Resource::Node, _) | (_, Propagation::Background) => None,
                        (_, Propagation::Orphan) => Some("orphan"),
                        (_, Propagation::Foreground) => Some("foregroundDeletion"),
                    };
                    if let Some(f) = gc.filter(|f| !finalizers.contains(&json!(f))) {
                        finalizers.push(json!(f));
                    }
                    if finalizers.is_empty() {
                        if self.dry_run {
                            return Ok(Deleted::Now(old.object));
                        }
                        match self.store.delete(key, Some(old.rv)) {
                            Err(StoreError::Conflict { .. }) => continue,
                            other => {
                                return other.map(Deleted::Now).map_err(|e| self.store_err(key, e));
                            }
                        }
                    }
                    let meta = meta_mut(&mut new);
                    meta.insert("finalizers".into(), Value::Array(finalizers));
                    let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
                    meta.insert("generation".into(), json!(generation + 1));
                }
            }
            let meta = meta_mut(&mut new);
            meta.insert("deletionTimestamp".into(), json!(now));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            if self.dry_run {
                return Ok(Deleted::Pending(detached(key.clone(), new)));
            }
            match self.store.update(key, Some(old.rv), new) {
                Err(StoreError::Conflict { .. }) => continue,
                other => {
                    return other
                        .map(Deleted::Pending)
                        .map_err(|e| self.store_err(key, e));
                }
            }
        }
    }

    /// Replaces the status of the object at `expected_rv` (a controller's status write).
    pub fn write_status(
        &self,
        key: &ObjectKey,
        expected_rv: u64,
        status: Value,
    ) -> Result<Arc<Object>, ApiError> {
        let old = self.get(key)?;
        if old.rv != expected_rv {
            return Err(stale_conflict(key.resource.into(), &key.name));
        }
        let mut new = old.value.clone();
        new["status"] = status;
        let mut managed = ManagedFields::of(&old.value);
        let now = clock::now();
        let author = Author {
            api_version: key.resource.api_version(),
            manager: &self.manager,
            subresource: "status",
            now: &now,
        };
        managed.update(author, &old.value, &new);
        managed.write_to(&mut new);
        self.store
            .update(key, Some(expected_rv), new)
            .map_err(|e| self.store_err(key, e))
    }

    /// Removes `finalizer` (the garbage collector's part of a deletion); the object goes once
    /// none is left. Returns the object's new state (`None` if it is gone).
    pub fn remove_finalizer(
        &self,
        key: &ObjectKey,
        finalizer: &str,
    ) -> Result<Option<Arc<Object>>, ApiError> {
        loop {
            let Some(old) = self.store.get(key).map(Current::of) else {
                return Ok(None);
            };
            let mut new = old.value.clone();
            let meta = meta_mut(&mut new);
            let mut finalizers: Vec<Value> = meta
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            finalizers.retain(|f| f.as_str() != Some(finalizer));
            let terminating = meta.get("deletionTimestamp").is_some_and(|t| !t.is_null());
            let result = if finalizers.is_empty() && terminating {
                self.store.delete(key, Some(old.rv)).map(|_| None)
            } else {
                if finalizers.is_empty() {
                    meta.remove("finalizers");
                } else {
                    meta.insert("finalizers".into(), Value::Array(finalizers));
                }
                self.store.update(key, Some(old.rv), new).map(Some)
            };
            match result {
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound) => return Ok(None),
                other => return other.map_err(|e| self.store_err(key, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let store = Store::new(100);
        Writer::new(&store, "test", false)
            .create(
                Resource::Namespace,
                "",
                json!({"metadata": {"name": "default"}}),
            )
            .unwrap();
        store
    }

    fn job_body(name: &str) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
               "spec": {"parallelism": 2, "completions": 4, "template": {"spec": {"restartPolicy": "Never",
                 "containers": [{"name": "w", "image": "busybox"}]}}}})
    }

    #[test]
    fn create_then_immutable_completions() {
        let store = store();
        let w = Writer::new(&store, "curl", false);
        let created = w.create(Resource::Job, "default", job_body("a")).unwrap();
        assert_eq!(created.value()["metadata"]["generation"], 1);
        let key = ObjectKey::new(Resource::Job, "default", "a");
        let err = w
            .patch(
                &key,
                PatchType::Merge,
                &json!({"spec": {"completions": 9}}),
                "",
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Job.batch \"a\" is invalid: spec.completions: Invalid value: 9: field is immutable"
        );
        let ok = w
            .patch(
                &key,
                PatchType::Merge,
                &json!({"spec": {"parallelism": 5}}),
                "",
            )
            .unwrap();
        assert_eq!(ok.value()["metadata"]["generation"], 2);
        // A no-op patch writes nothing.
        let same = w
            .patch(
                &key,
                PatchType::Merge,
                &json!({"spec": {"parallelism": 5}}),
                "",
            )
            .unwrap();
        assert_eq!(same.rv, ok.rv);
    }

    #[test]
    fn apply_conflicts_then_force() {
        let store = store();
        let key = ObjectKey::new(Resource::Job, "default", "a");
        Writer::new(&store, "curl", false)
            .create(Resource::Job, "default", job_body("a"))
            .unwrap();
        let syncer = Writer::new(&store, "fedjob-syncer", false);
        let mut config = job_body("a");
        config["spec"]["parallelism"] = json!(3);
        let err = syncer.apply(&key, config.clone(), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"curl\" using batch/v1: .spec.parallelism"
        );
        let (applied, created) = syncer.apply(&key, config, true).unwrap();
        assert!(!created);
        assert_eq!(applied.value()["spec"]["parallelism"], 3);
        let managers: Vec<_> = ManagedFields::of(&applied.value())
            .entries()
            .iter()
            .map(|e| e.manager.clone())
            .collect();
        assert_eq!(managers, vec!["fedjob-syncer", "curl"]);
    }

    #[test]
    fn apply_removes_fields_it_no_longer_sets() {
        let store = store();
        let key = ObjectKey::new(Resource::Job, "default", "a");
        let w = Writer::new(&store, "fedjob-syncer", false);
        let mut config = job_body("a");
        config["metadata"]["labels"] = json!({"x": "1", "y": "2"});
        let (_, created) = w.apply(&key, config.clone(), true).unwrap();
        assert!(created);
        config["metadata"]["labels"] = json!({"x": "1"});
        let (obj, _) = w.apply(&key, config, true).unwrap();
        assert_eq!(obj.value()["metadata"]["labels"], json!({"x": "1"}));
    }

    #[test]
    fn delete_defaults_to_orphan_and_background_removes() {
        let store = store();
        let w = Writer::new(&store, "curl", false);
        w.create(Resource::Job, "default", job_body("a")).unwrap();
        w.create(Resource::Job, "default", job_body("b")).unwrap();
        let key = ObjectKey::new(Resource::Job, "default", "a");
        let Deleted::Pending(obj) = w.delete(&key, &DeleteOptions::default()).unwrap() else {
            panic!("orphan waits")
        };
        assert_eq!(obj.value()["metadata"]["finalizers"], json!(["orphan"]));
        assert_eq!(obj.value()["metadata"]["generation"], 2);
        assert!(w.remove_finalizer(&key, "orphan").unwrap().is_none());
        let key = ObjectKey::new(Resource::Job, "default", "b");
        let options = DeleteOptions {
            propagation: Some(Propagation::Background),
            ..Default::default()
        };
        assert!(matches!(w.delete(&key, &options).unwrap(), Deleted::Now(_)));
        assert!(store.get(&key).is_none());
    }
}
