//! Server-side apply and the managed fields of other writes, as structured-merge-diff does them,
//! on JSON objects: what a server runs between reading the live object and validating the new
//! one. The object's own defaulting is passed in, so fields a configuration omits but the
//! server defaults are not counted as changed.

use serde_json::Value;

use super::fieldset;
use super::managed::{Author, Conflict, ManagedFields};
use super::patch;
use super::status::ApiError;

/// The manager's entry of an `Update` that changes `old` into `new`, written into `new`'s
/// `metadata.managedFields` (create: `old` is [`schema::zero_object`]).
pub fn record_update(old: &Value, new: &mut Value, author: Author<'_>) {
    let mut managed = ManagedFields::of(old);
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    managed.update(author, old, new);
    managed.write_to(new);
}

/// The object a first apply of `config` creates: `config` defaulted, owned by the applier.
pub fn apply_new(config: &Value, author: Author<'_>, default: impl FnOnce(&mut Value)) -> Value {
    let mut object = config.clone();
    default(&mut object);
    let mut managed = ManagedFields::default();
    managed.apply(
        author,
        fieldset::applied(config),
        &serde_json::json!({}),
        &object,
        false,
    );
    managed.write_to(&mut object);
    object
}

/// Applies `config` onto `live` (which carries its `managedFields`): maps and keyed lists
/// merge, fields the manager applied before and omits now go unless another manager owns
/// them, and a changed field another manager owns is a 409 conflict unless `force`, which takes
/// it over. Returns the new object with its managed fields, not yet validated.
pub fn apply(
    live: &Value,
    config: &Value,
    author: Author<'_>,
    force: bool,
    default: impl FnOnce(&mut Value),
) -> Result<Value, ApiError> {
    let manager = author.manager;
    let applied = fieldset::applied(config);
    let managed = ManagedFields::of(live);
    let mut merged = live.clone();
    if let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    patch::apply_merge(&mut merged, config);
    let previous = managed.applied_by(manager);
    for path in previous.difference(&applied).paths() {
        if !managed.owned_by_others(manager, &path) {
            fieldset::remove(&mut merged, &path);
        }
    }
    default(&mut merged);
    let conflicts = managed.conflicts(manager, live, &merged);
    if !force && !conflicts.is_empty() {
        return Err(conflict(conflicts));
    }
    let mut managed = managed;
    managed.apply(author, applied, live, &merged, force);
    managed.write_to(&mut merged);
    Ok(merged)
}

/// The 409 of an apply that would take fields from other managers, worded as the API server
/// words it (`27-apply-conflict-409.json`).
pub fn conflict(conflicts: Vec<Conflict>) -> ApiError {
    let message = if let [one] = conflicts.as_slice() {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager, one.path
        )
    } else {
        let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(
                conflicts
                    .iter()
                    .filter(|c| c.manager == m)
                    .map(|c| format!("- {}", c.path)),
            );
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes = conflicts
        .into_iter()
        .map(|c| (c.path, format!("conflict with {}", c.manager)))
        .collect();
    ApiError::ApplyConflict { message, causes }
}

/// `fieldManager` is required for an apply: the API server's 400 without it.
pub fn require_manager(field_manager: Option<&str>) -> Result<&str, ApiError> {
    field_manager.filter(|m| !m.is_empty()).ok_or_else(|| {
        ApiError::BadRequest(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
                .to_owned(),
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kube_api::schema;

    fn author<'a>(manager: &'a str, now: &'a str) -> Author<'a> {
        Author {
            api_version: "batch/v1",
            manager,
            subresource: "",
            now,
        }
    }

    #[test]
    fn an_apply_conflicts_with_an_update_then_forces() {
        let mut live = json!({"metadata": {"name": "a"}, "spec": {"parallelism": 1}});
        record_update(
            &schema::zero_object("Job"),
            &mut live,
            author("kubectl-create", "t1"),
        );
        let config = json!({"metadata": {"name": "a"}, "spec": {"parallelism": 3}});
        let err = apply(&live, &config, author("ci", "t2"), false, |_| {}).unwrap_err();
        assert_eq!(err.code(), 409);
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-create\" using batch/v1: .spec.parallelism"
        );
        let forced = apply(&live, &config, author("ci", "t2"), true, |_| {}).unwrap();
        assert_eq!(forced["spec"]["parallelism"], 3);
        let owners: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(owners, ["ci"]);
    }

    #[test]
    fn fields_an_applier_stops_sending_go() {
        let config = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}});
        let created = apply_new(&config, author("ci", "t1"), |_| {});
        let config = json!({"metadata": {"name": "a", "labels": {"x": "1"}}});
        let next = apply(&created, &config, author("ci", "t2"), false, |_| {}).unwrap();
        assert_eq!(next["metadata"]["labels"], json!({"x": "1"}));
        assert!(require_manager(None).is_err());
        assert_eq!(require_manager(Some("ci")).unwrap(), "ci");
    }
}
