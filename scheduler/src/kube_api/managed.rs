//! `metadata.managedFields`: which manager owns which fields, and server-side apply on top.
//!
//! The rules are structured-merge-diff's, at the granularity [`super::fieldset`] gives:
//! - an `Update` (create, PUT, PATCH) makes its manager own what it added or changed, and takes
//!   those fields away from every other manager;
//! - an `Apply` makes its manager own exactly what it sent; a field another manager owns whose
//!   value the apply would change is a conflict (409) unless `force`, which takes it over;
//!   fields the manager applied before and now omits are removed from the object unless
//!   someone else owns them;
//! - fields that leave the object leave every set.

use serde_json::{Map, Value, json};

use super::fieldset::{self, FieldSet};
use super::schema;

/// `Apply` or `Update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The field manager's name.
    pub manager: String,
    /// How it wrote.
    pub operation: Operation,
    /// The API version it wrote with.
    pub api_version: String,
    /// When its set last changed (RFC 3339).
    pub time: String,
    /// `status` for writes through the status subresource, else empty.
    pub subresource: String,
    /// What it owns.
    pub fields: FieldSet,
}

impl Entry {
    /// How a conflict message names this manager (`"curl" using batch/v1`).
    fn describe(&self) -> String {
        let mut s = format!("\"{}\"", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource \"{}\"", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// A field that an apply would take from another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// How the other manager is named in messages.
    pub manager: String,
    /// The field path, `.spec.parallelism`.
    pub path: String,
}

/// Who writes and when: the identity a managed-fields entry is recorded under.
#[derive(Debug, Clone, Copy)]
pub struct Author<'a> {
    /// The API version written with (`batch/v1`).
    pub api_version: &'a str,
    /// The field manager.
    pub manager: &'a str,
    /// `status` for the status subresource, else empty.
    pub subresource: &'a str,
    /// The time of the write (RFC 3339).
    pub now: &'a str,
}

/// The managed fields of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagedFields {
    entries: Vec<Entry>,
}

impl ManagedFields {
    /// Reads `metadata.managedFields` of an object.
    pub fn of(object: &Value) -> Self {
        let entries = object
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|e| Entry {
                        manager: str_of(e, "manager"),
                        operation: if str_of(e, "operation") == "Apply" {
                            Operation::Apply
                        } else {
                            Operation::Update
                        },
                        api_version: str_of(e, "apiVersion"),
                        time: str_of(e, "time"),
                        subresource: str_of(e, "subresource"),
                        fields: e
                            .get("fieldsV1")
                            .map(FieldSet::from_fields_v1)
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { entries }
    }

    /// The entries, in the order they are written.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Writes the entries into `object`'s metadata, sorted as the apiserver sorts them
    /// (applies first, then by time and name); an object nobody manages gets no field.
    pub fn write_to(mut self, object: &mut Value) {
        self.entries.retain(|e| !e.fields.is_empty());
        self.entries.sort_by(|a, b| {
            (
                a.operation,
                &a.time,
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    b.operation,
                    &b.time,
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        if self.entries.is_empty() {
            meta.remove("managedFields");
            return;
        }
        let list = self
            .entries
            .iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert("operation".into(), json!(e.operation.as_str()));
                m.insert("apiVersion".into(), json!(e.api_version));
                m.insert("time".into(), json!(e.time));
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), e.fields.to_fields_v1());
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), json!(e.subresource));
                }
                Value::Object(m)
            })
            .collect();
        meta.insert("managedFields".into(), Value::Array(list));
    }

    /// Records an `Update` by `manager` that took the object from `old` to `new`.
    pub fn update(&mut self, author: Author<'_>, old: &Value, new: &Value) {
        let Author {
            api_version,
            manager,
            subresource,
            now,
        } = author;
        let changed = tracked(fieldset::changed(old, new), subresource);
        if !changed.is_empty() {
            for entry in &mut self.entries {
                entry.fields = entry.fields.difference(&changed);
            }
            let entry = self.entry(api_version, manager, Operation::Update, subresource);
            entry.fields.union(&changed);
            entry.time = now.to_owned();
        }
        self.prune(new);
    }

    /// The fields `manager` applied last time (empty if it never applied).
    pub fn applied_by(&self, manager: &str) -> FieldSet {
        self.entries
            .iter()
            .find(|e| e.manager == manager && e.operation == Operation::Apply)
            .map(|e| e.fields.clone())
            .unwrap_or_default()
    }

    /// Whether a manager other than `manager`'s apply entry owns `path` or anything under it.
    pub fn owned_by_others(&self, manager: &str, path: &[String]) -> bool {
        self.entries
            .iter()
            .filter(|e| !(e.manager == manager && e.operation == Operation::Apply))
            .any(|e| e.fields.contains_prefix(path))
    }

    /// The conflicts of an apply by `manager` that changes `live` into `merged`.
    pub fn conflicts(&self, manager: &str, live: &Value, merged: &Value) -> Vec<Conflict> {
        let changed = tracked(fieldset::changed(live, merged), "");
        let mut out = Vec::new();
        for entry in self
            .entries
            .iter()
            .filter(|e| !(e.manager == manager && e.operation == Operation::Apply))
        {
            for path in entry.fields.intersection(&changed).paths() {
                out.push(Conflict {
                    manager: entry.describe(),
                    path: fieldset::path_string(&path),
                });
            }
        }
        out
    }

    /// Records an `Apply` by `manager` of a configuration setting `applied`; with `force`,
    /// the fields it changed are taken from their other owners.
    pub fn apply(
        &mut self,
        author: Author<'_>,
        applied: FieldSet,
        live: &Value,
        result: &Value,
        force: bool,
    ) {
        let Author {
            api_version,
            manager,
            now,
            ..
        } = author;
        let applied = tracked(applied, "");
        if force {
            let changed = tracked(fieldset::changed(live, result), "");
            for entry in self
                .entries
                .iter_mut()
                .filter(|e| !(e.manager == manager && e.operation == Operation::Apply))
            {
                entry.fields = entry.fields.difference(&changed);
            }
        }
        let entry = self.entry(api_version, manager, Operation::Apply, "");
        if entry.fields != applied || entry.time.is_empty() {
            entry.fields = applied;
            entry.time = now.to_owned();
        }
        self.prune(result);
    }

    /// Drops owned paths that the object no longer has.
    fn prune(&mut self, object: &Value) {
        let present = fieldset::nodes(object);
        for entry in &mut self.entries {
            entry.fields = entry.fields.intersection(&present);
        }
    }

    fn entry(
        &mut self,
        api_version: &str,
        manager: &str,
        operation: Operation,
        subresource: &str,
    ) -> &mut Entry {
        let index = match self.entries.iter().position(|e| {
            e.manager == manager
                && e.operation == operation
                && e.subresource == subresource
                && e.api_version == api_version
        }) {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    manager: manager.to_owned(),
                    operation,
                    api_version: api_version.to_owned(),
                    time: String::new(),
                    subresource: subresource.to_owned(),
                    fields: FieldSet::default(),
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[index]
    }
}

/// Removes the paths the field manager does not track: `apiVersion`, `kind`, system metadata,
/// and the half of the object the endpoint resets (`status` for the main resource, `spec` for
/// the status subresource).
fn tracked(mut set: FieldSet, subresource: &str) -> FieldSet {
    let path =
        |elements: &[&str]| -> Vec<String> { elements.iter().map(|e| format!("f:{e}")).collect() };
    set.remove_subtree(&path(&["apiVersion"]));
    set.remove_subtree(&path(&["kind"]));
    for field in schema::UNTRACKED_METADATA {
        set.remove_subtree(&path(&["metadata", field]));
    }
    // Deletion is not a field-managed write.
    set.remove_subtree(&path(&["metadata", "deletionTimestamp"]));
    set.remove_subtree(&path(&["metadata", "deletionGracePeriodSeconds"]));
    if subresource == "status" {
        set.remove_subtree(&path(&["spec"]));
    } else {
        set.remove_subtree(&path(&["status"]));
    }
    set
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The manager name of a request: `fieldManager`, else the User-Agent up to its first `/`
/// (so `curl/8.5.0` manages as `curl`, as in `01-create-201.json`).
pub fn manager_name(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_owned();
    }
    let ua = user_agent.unwrap_or_default();
    ua.split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author<'a>(manager: &'a str, now: &'a str) -> Author<'a> {
        Author {
            api_version: "batch/v1",
            manager,
            subresource: "",
            now,
        }
    }

    #[test]
    fn update_takes_fields_from_other_managers() {
        let zero = schema::zero_object("Job");
        let created = json!({"metadata": {"name": "a"}, "spec": {"parallelism": 1, "template": {"metadata": {"creationTimestamp": null}, "spec": {"containers": [{"name": "w"}]}}}, "status": {}});
        let mut m = ManagedFields::default();
        m.update(author("curl", "t1"), &zero, &created);
        let mut patched = created.clone();
        patched["spec"]["parallelism"] = json!(2);
        m.update(author("kubectl", "t2"), &created, &patched);
        let curl = &m.entries()[0];
        assert_eq!(curl.manager, "curl");
        assert!(
            !curl
                .fields
                .contains(&["f:spec".into(), "f:parallelism".into()])
        );
        assert!(
            m.entries()[1]
                .fields
                .contains(&["f:spec".into(), "f:parallelism".into()])
        );
    }

    #[test]
    fn apply_conflicts_name_the_owner() {
        let zero = schema::zero_object("Job");
        let live = json!({"metadata": {"name": "a"}, "spec": {"parallelism": 1}});
        let mut m = ManagedFields::default();
        m.update(author("curl", "t1"), &zero, &live);
        let merged = json!({"metadata": {"name": "a"}, "spec": {"parallelism": 4}});
        let conflicts = m.conflicts("fedjob-syncer", &live, &merged);
        assert_eq!(
            conflicts,
            vec![Conflict {
                manager: "\"curl\" using batch/v1".into(),
                path: ".spec.parallelism".into()
            }]
        );
        // Same value: shared ownership, no conflict.
        assert!(m.conflicts("fedjob-syncer", &live, &live).is_empty());
    }

    #[test]
    fn manager_from_user_agent() {
        assert_eq!(manager_name(None, Some("curl/8.5.0")), "curl");
        assert_eq!(
            manager_name(Some("fedjob-syncer"), Some("curl/8.5.0")),
            "fedjob-syncer"
        );
        assert_eq!(manager_name(Some(""), None), "");
    }
}
