//! Nodes: what the API server's node strategy and admission do to a `v1` Node (decoding, the
//! Go shape of its status, the `not-ready` taint added on create, validation), what a kubelet
//! registers ([`Registration`]), and the node lifecycle controller's taints ([`lifecycle`]).
//!
//! Recorded in `k8s-facts/30-node-created.json` and `31-node-untainted.json`.

pub mod lifecycle;
mod registration;

use std::collections::HashSet;

use parking_lot::Mutex;
use serde_json::{Map, Value, json};

pub use registration::{
    DEFAULT_CAPACITY, Registration, parse_capacity, parse_cluster_nodes, pool, ready_condition,
};

use super::job::check_type_meta;
use super::validation::{self, FieldError, GoValue};
use fedjob_scheduler::kube_api::status::ApiError;

/// The taint the `TaintNodesByCondition` admission plugin puts on every new node, and the
/// node lifecycle controller keeps while the node is not Ready.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// The nodes whose simulated kubelet does not run the pods bound to them (registered
/// [`Registration::without_kubelet`]); every other node's does.
#[derive(Debug, Default)]
pub struct Kubelets {
    stopped: Mutex<HashSet<String>>,
}

impl Kubelets {
    /// Whether `node`'s kubelet runs its pods.
    pub fn runs(&self, node: &str) -> bool {
        !self.stopped.lock().contains(node)
    }

    /// Says whether `node`'s kubelet runs its pods.
    pub fn set(&self, node: &str, runs: bool) {
        let mut stopped = self.stopped.lock();
        if runs {
            stopped.remove(node);
        } else {
            stopped.insert(node.to_owned());
        }
    }
}

/// Status fields newer than Kubernetes 1.24, which a 1.24 server drops.
const NEWER_STATUS_FIELDS: &[&str] = &["features", "runtimeHandlers"];

/// Decodes a request body as a `v1` Node (unknown fields dropped).
pub fn decode(mut body: Value) -> Result<Value, ApiError> {
    check_type_meta(&body, "v1", "Node")?;
    if let Value::Object(map) = &mut body {
        map.insert("apiVersion".into(), json!("v1"));
        map.insert("kind".into(), json!("Node"));
    }
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "Node in version \"v1\" cannot be handled as a Node: {e}"
        ))
    })?;
    let mut value = serde_json::to_value(&node).map_err(|e| ApiError::Internal(e.to_string()))?;
    let lists = ["/status/capacity", "/status/allocatable"]
        .into_iter()
        .filter_map(|p| value.pointer(p));
    validation::resource_list_quantities(lists).map_err(|e| {
        ApiError::BadRequest(format!(
            "Node in version \"v1\" cannot be handled as a Node: {e}"
        ))
    })?;
    if let Some(status) = value.get_mut("status").and_then(Value::as_object_mut) {
        for field in NEWER_STATUS_FIELDS {
            status.remove(*field);
        }
        if let Some(info) = status.get_mut("nodeInfo").and_then(Value::as_object_mut) {
            info.remove("swap");
        }
    }
    Ok(value)
}

fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = map.entry(key).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("made an object above")
}

/// `SetDefaults_NodeStatus` (allocatable defaults to capacity) and the Go shape of a Node:
/// `spec` and `status` always present, `daemonEndpoints` and `nodeInfo` with their zero
/// values, as `30-node-created.json` shows them.
pub fn default(node: &mut Value) {
    let map = node.as_object_mut().expect("decoded nodes are objects");
    object(map, "spec");
    let status = object(map, "status");
    if !status.contains_key("allocatable")
        && let Some(capacity) = status.get("capacity").cloned()
    {
        status.insert("allocatable".into(), capacity);
    }
    let endpoints = object(status, "daemonEndpoints");
    object(endpoints, "kubeletEndpoint")
        .entry("Port")
        .or_insert(json!(0));
    let info = object(status, "nodeInfo");
    for field in [
        "architecture",
        "bootID",
        "containerRuntimeVersion",
        "kernelVersion",
        "kubeProxyVersion",
        "kubeletVersion",
        "machineID",
        "operatingSystem",
        "osImage",
        "systemUUID",
    ] {
        info.entry(field).or_insert(json!(""));
    }
    if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut)
        && spec
            .get("taints")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
    {
        spec.remove("taints");
    }
}

/// The `TaintNodesByCondition` admission plugin: a new node is `not-ready:NoSchedule` until
/// the node lifecycle controller sees it Ready.
pub fn prepare_create(node: &mut Value) {
    let spec = object(node.as_object_mut().expect("an object"), "spec");
    let taints = spec.entry("taints").or_insert_with(|| json!([]));
    if !taints.is_array() {
        *taints = json!([]);
    }
    let taints = taints.as_array_mut().expect("made an array above");
    let present = taints
        .iter()
        .any(|t| t["key"] == NOT_READY_TAINT && t["effect"] == "NoSchedule");
    if !present {
        taints.push(json!({"key": NOT_READY_TAINT, "effect": "NoSchedule"}));
    }
}

/// `nodeStrategy.PrepareForUpdate`: the status changes only through `nodes/NAME/status`.
pub fn prepare_update(new: &mut Value, old: &Value) {
    new["status"] = old.get("status").cloned().unwrap_or_else(|| json!({}));
    super::job::keep_system_metadata(new, old);
}

/// `nodeStatusStrategy.PrepareForUpdate`: the spec changes only through the node itself.
pub fn prepare_status_update(new: &mut Value, old: &Value) {
    new["spec"] = old.get("spec").cloned().unwrap_or_else(|| json!({}));
    super::job::keep_system_metadata(new, old);
}

/// `ValidateNode` for the parts a simulated node has: the name, labels, and taints.
pub fn validate(node: &Value) -> Vec<FieldError> {
    let mut errs = validation::object_meta(
        node.get("metadata").unwrap_or(&Value::Null),
        validation::dns1123_subdomain,
    );
    let taints = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, taint) in taints.iter().enumerate() {
        let field = format!("spec.taints[{i}]");
        let key = taint["key"].as_str().unwrap_or_default();
        for msg in validation::qualified_name(key) {
            errs.push(FieldError::invalid(
                format!("{field}.key"),
                GoValue::Str(key.to_owned()),
                msg,
            ));
        }
        let effect = taint["effect"].as_str().unwrap_or_default();
        const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
        if effect.is_empty() {
            errs.push(FieldError::required(format!("{field}.effect"), ""));
        } else if !EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                format!("{field}.effect"),
                GoValue::Str(effect.to_owned()),
                EFFECTS,
            ));
        }
        let pair = (key.to_owned(), effect.to_owned());
        if seen.contains(&pair) {
            errs.push(FieldError::duplicate(
                field,
                GoValue::Str(format!("{key}:{effect}")),
            ));
        } else {
            seen.push(pair);
        }
    }
    errs
}

/// `ValidateNodeUpdate`.
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
            GoValue::Str(uid(new)),
        ));
    }
    errs
}

/// The status of a node's `Ready` condition: `Some("True")`, `Some("False")`,
/// `Some("Unknown")`, or `None` when it has none.
pub fn ready_status(node: &Value) -> Option<&str> {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_node_has_the_go_shape_and_the_not_ready_taint() {
        let mut node = decode(json!({"metadata": {"name": "n1"},
            "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "10"}}}))
        .unwrap();
        default(&mut node);
        prepare_create(&mut node);
        assert_eq!(node["status"]["allocatable"], node["status"]["capacity"]);
        assert_eq!(
            node["status"]["daemonEndpoints"],
            json!({"kubeletEndpoint": {"Port": 0}})
        );
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "");
        assert_eq!(
            node["spec"]["taints"],
            json!([{"key": NOT_READY_TAINT, "effect": "NoSchedule"}])
        );
        assert!(validate(&node).is_empty());
    }

    #[test]
    fn bad_taints_are_refused_by_field() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [
            {"key": "a", "effect": "Sometimes"},
            {"key": "b", "effect": "NoSchedule"},
            {"key": "b", "effect": "NoSchedule"},
            {"key": "c"}
        ]}});
        let errs: Vec<String> = validate(&node).iter().map(ToString::to_string).collect();
        assert_eq!(
            errs,
            [
                "spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                "spec.taints[2]: Duplicate value: \"b:NoSchedule\"",
                "spec.taints[3].effect: Required value",
            ]
        );
    }
}
