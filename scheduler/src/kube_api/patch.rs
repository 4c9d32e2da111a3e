//! The four ways to change an object in place: JSON merge patch, JSON patch, strategic merge
//! patch and the merge step of server-side apply.
//!
//! Merge patch and JSON patch are the RFCs (`json-patch` crate). Strategic merge patch and apply
//! differ from merge patch in one thing that matters for Jobs: a list of containers is merged
//! item by item on `name` instead of being replaced; [`super::schema`] says which lists.

use serde_json::{Map, Value};

use super::schema::{self, ListType, PatchStrategy};

/// A patch that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed (400).
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch operation failed on this object (422).
    #[error("{0}")]
    Failed(String),
}

/// The patch types the API takes, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Applies an RFC 7386 merge patch.
pub fn merge(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "merge patch must be a JSON object".to_owned(),
        ));
    }
    json_patch::merge(target, patch);
    Ok(())
}

/// Applies an RFC 6902 JSON patch.
pub fn json(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Malformed(e.to_string()))?;
    json_patch::patch(target, &ops).map_err(|e| PatchError::Failed(e.to_string()))
}

/// Applies a strategic merge patch.
pub fn strategic(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "strategic merge patch must be a JSON object".to_owned(),
        ));
    }
    strategic_value(target, patch, &mut Vec::new());
    Ok(())
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn strategic_value(target: &mut Value, patch: &Value, names: &mut Vec<String>) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target_map = target.as_object_mut().expect("made an object above");
    if let Some(Value::Array(keep)) = patch_map.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        target_map.retain(|k, _| keep.contains(&k.as_str()) || patch_map.contains_key(k));
    }
    for (key, value) in patch_map {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(remove)) =
                (target_map.get_mut(field), value)
            {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if key.starts_with('$') {
            // `$setElementOrder/…` and other directives only order or guard the merge.
            continue;
        }
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        names.push(key.clone());
        match value {
            Value::Object(_) => {
                let slot = target_map.entry(key.clone()).or_insert(Value::Null);
                strategic_value(slot, value, names);
            }
            Value::Array(items) => {
                let slot = target_map.entry(key.clone()).or_insert(Value::Null);
                strategic_list(slot, items, names);
            }
            scalar => {
                target_map.insert(key.clone(), scalar.clone());
            }
        }
        names.pop();
    }
}

fn strategic_list(target: &mut Value, items: &[Value], names: &mut Vec<String>) {
    let replace_marker = items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let strategy = if replace_marker {
        PatchStrategy::Replace
    } else {
        schema::patch_strategy(names)
    };
    match strategy {
        PatchStrategy::Replace => {
            *target = Value::Array(
                items
                    .iter()
                    .filter(|i| i.get("$patch").is_none())
                    .map(strip_directives)
                    .collect(),
            );
        }
        PatchStrategy::MergeScalars => {
            let mut list = target.as_array().cloned().unwrap_or_default();
            for item in items {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
            *target = Value::Array(list);
        }
        PatchStrategy::MergeByKey(key) => {
            let mut list = target.as_array().cloned().unwrap_or_default();
            for item in items {
                let id = item.get(key);
                let position = id.and_then(|id| list.iter().position(|t| t.get(key) == Some(id)));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(i), true) => {
                        list.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => strategic_value(&mut list[i], item, names),
                    (None, false) => list.push(strip_directives(item)),
                }
            }
            *target = Value::Array(list);
        }
    }
}

/// Merges an applied configuration into the live object (server-side apply): maps and structs
/// merge, keyed lists merge by key, sets union, everything else is replaced.
pub fn apply_merge(live: &mut Value, applied: &Value) {
    apply_value(live, applied, &mut Vec::new());
}

fn apply_value(live: &mut Value, applied: &Value, names: &mut Vec<String>) {
    match applied {
        Value::Object(applied_map) => {
            if !live.is_object() {
                *live = Value::Object(Map::new());
            }
            let live_map = live.as_object_mut().expect("made an object above");
            for (key, value) in applied_map {
                if value.is_null() {
                    live_map.remove(key);
                    continue;
                }
                names.push(key.clone());
                let slot = live_map.entry(key.clone()).or_insert(Value::Null);
                apply_value(slot, value, names);
                names.pop();
            }
        }
        Value::Array(items) => match schema::list_type(names) {
            ListType::Atomic => *live = applied.clone(),
            ListType::Set => {
                let mut list = live.as_array().cloned().unwrap_or_default();
                for item in items {
                    if !list.contains(item) {
                        list.push(item.clone());
                    }
                }
                *live = Value::Array(list);
            }
            ListType::Map(keys) => {
                let mut list = live.as_array().cloned().unwrap_or_default();
                for item in items {
                    let same = |t: &Value| keys.iter().all(|k| t.get(*k) == item.get(*k));
                    match list.iter().position(same) {
                        Some(i) => apply_value(&mut list[i], item, names),
                        None => list.push(item.clone()),
                    }
                }
                *live = Value::Array(list);
            }
        },
        scalar => *live = scalar.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut job = json!({"spec": {"parallelism": 1, "template": {"spec": {"containers": [
            {"name": "a", "image": "x", "command": ["sh"]}, {"name": "b", "image": "y"}]}}}});
        let patch = json!({"spec": {"parallelism": 3, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "z"}, {"name": "b", "$patch": "delete"}]}}}});
        strategic(&mut job, &patch).unwrap();
        assert_eq!(
            job,
            json!({"spec": {"parallelism": 3, "template": {"spec": {"containers": [{"name": "a", "image": "z", "command": ["sh"]}]}}}})
        );
    }

    #[test]
    fn merge_patch_replaces_lists() {
        let mut job =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        merge(
            &mut job,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}),
        )
        .unwrap();
        assert_eq!(
            job,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}})
        );
    }

    #[test]
    fn json_patch_ops() {
        let mut job = json!({"spec": {"parallelism": 3}});
        json(
            &mut job,
            &json!([{"op": "replace", "path": "/spec/parallelism", "value": 1}]),
        )
        .unwrap();
        assert_eq!(job["spec"]["parallelism"], 1);
        let failed = json(
            &mut job,
            &json!([{"op": "test", "path": "/spec/parallelism", "value": 2}]),
        );
        assert!(matches!(failed, Err(PatchError::Failed(_))));
        assert!(matches!(
            json(&mut job, &json!({"op": "x"})),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn apply_merges_keyed_lists() {
        let mut live = json!({"metadata": {"finalizers": ["a"]}, "spec": {"template": {"spec": {"containers": [
            {"name": "w", "image": "x", "imagePullPolicy": "Always"}]}}}});
        apply_merge(
            &mut live,
            &json!({"metadata": {"finalizers": ["b"]}, "spec": {"template": {"spec": {"containers": [
            {"name": "w", "image": "y"}, {"name": "v", "image": "z"}]}}}}),
        );
        assert_eq!(
            live,
            json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"template": {"spec": {"containers": [
                {"name": "w", "image": "y", "imagePullPolicy": "Always"}, {"name": "v", "image": "z"}]}}}})
        );
    }
}
