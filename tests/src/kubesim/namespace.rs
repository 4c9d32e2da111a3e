//! What the apiserver's namespace strategy does to a Namespace: the name label, the
//! `kubernetes` finalizer, `phase: Active`, and validation of the name as a DNS label.

use serde_json::{Map, Value, json};

use super::job::check_type_meta;
use super::validation::{self, FieldError};
use fedjob_scheduler::kube_api::status::ApiError;

/// The label every namespace carries with its own name (Kubernetes ≥ 1.21).
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Namespaces that can never be deleted.
pub const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

/// Decodes a request body as a `v1` Namespace (unknown fields dropped).
pub fn decode(mut body: Value) -> Result<Value, ApiError> {
    check_type_meta(&body, "v1", "Namespace")?;
    if let Value::Object(map) = &mut body {
        map.insert("apiVersion".into(), json!("v1"));
        map.insert("kind".into(), json!("Namespace"));
    }
    let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "Namespace in version \"v1\" cannot be handled as a Namespace: {e}"
        ))
    })?;
    serde_json::to_value(&ns).map_err(|e| ApiError::Internal(e.to_string()))
}

/// `SetDefaults_Namespace` and the Go shape (`spec: {}`, `status: {}`).
pub fn default(ns: &mut Value) {
    let name = ns
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let map = ns.as_object_mut().expect("decoded namespaces are objects");
    for key in ["metadata", "spec", "status"] {
        if !map.get(key).is_some_and(Value::is_object) {
            map.insert(key.to_owned(), Value::Object(Map::new()));
        }
    }
    if !name.is_empty() {
        let meta = map
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("made above");
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels[NAME_LABEL] = json!(name);
    }
}

/// `PrepareForCreate`: the `kubernetes` finalizer and `phase: Active`.
pub fn prepare_create(ns: &mut Value) {
    ns["spec"] = json!({"finalizers": ["kubernetes"]});
    ns["status"] = json!({"phase": "Active"});
}

/// `PrepareForUpdate`: finalizers and status change only through their own endpoints.
pub fn prepare_update(new: &mut Value, old: &Value) {
    new["spec"] = old.get("spec").cloned().unwrap_or_else(|| json!({}));
    new["status"] = old.get("status").cloned().unwrap_or_else(|| json!({}));
    super::job::keep_system_metadata(new, old);
}

/// `ValidateNamespace`: the name is a DNS-1123 label.
pub fn validate(ns: &Value) -> Vec<FieldError> {
    validation::object_meta(
        ns.get("metadata").unwrap_or(&Value::Null),
        validation::dns1123_label,
    )
}

/// `ValidateNamespaceUpdate`.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate(new);
    let uid = |v: &Value| {
        v.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if uid(new) != uid(old) {
        errs.push(FieldError::immutable(
            "metadata.uid",
            validation::GoValue::Str(uid(new)),
        ));
    }
    errs
}

/// Whether the namespace is being deleted.
pub fn terminating(ns: &Value) -> bool {
    ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
}
