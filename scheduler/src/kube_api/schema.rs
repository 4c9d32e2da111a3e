//! The little of the OpenAPI schema that patches and managed fields need: how each list
//! merges, and what a zero-valued object looks like.
//!
//! Server-side apply, managed fields and strategic merge patch all treat a list of containers
//! as a map keyed by `name`, while `command` is replaced whole. The real server reads that from
//! `x-kubernetes-list-type` / `patchMergeKey`; the lists a Job can contain are few enough to
//! name here.

use serde_json::{Value, json};

/// How a list merges and how its items are addressed in managed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole (`command`, `args`, `tolerations`, `conditions`).
    Atomic,
    /// Items keyed by these fields (`containers` by `name`).
    Map(&'static [&'static str]),
    /// A set of scalars (`metadata.finalizers`).
    Set,
}

/// The list type at a path of field names (list positions left out), e.g.
/// `["spec", "template", "spec", "containers"]`.
pub fn list_type(names: &[String]) -> ListType {
    let last = names.last().map(String::as_str).unwrap_or_default();
    let parent = names
        .len()
        .checked_sub(2)
        .map(|i| names[i].as_str())
        .unwrap_or_default();
    match last {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => ListType::Map(&["name"]),
        "ports" => ListType::Map(&["containerPort", "protocol"]),
        "volumeMounts" => ListType::Map(&["mountPath"]),
        "volumeDevices" => ListType::Map(&["devicePath"]),
        "hostAliases" => ListType::Map(&["ip"]),
        "topologySpreadConstraints" => ListType::Map(&["topologyKey", "whenUnsatisfiable"]),
        "ownerReferences" => ListType::Map(&["uid"]),
        "finalizers" if parent == "metadata" => ListType::Set,
        _ => ListType::Atomic,
    }
}

/// How a strategic merge patch merges the list at `names`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    /// The patch's list replaces the object's.
    Replace,
    /// Items are merged by this key (`patchMergeKey`).
    MergeByKey(&'static str),
    /// Scalars are unioned (`patchStrategy: merge` on a list of strings).
    MergeScalars,
}

/// The `patchStrategy`/`patchMergeKey` of the list at `names`.
pub fn patch_strategy(names: &[String]) -> PatchStrategy {
    let last = names.last().map(String::as_str).unwrap_or_default();
    let parent = names
        .len()
        .checked_sub(2)
        .map(|i| names[i].as_str())
        .unwrap_or_default();
    match last {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => PatchStrategy::MergeByKey("name"),
        "ports" => PatchStrategy::MergeByKey("containerPort"),
        "volumeMounts" => PatchStrategy::MergeByKey("mountPath"),
        "volumeDevices" => PatchStrategy::MergeByKey("devicePath"),
        "hostAliases" => PatchStrategy::MergeByKey("ip"),
        "topologySpreadConstraints" => PatchStrategy::MergeByKey("topologyKey"),
        "ownerReferences" => PatchStrategy::MergeByKey("uid"),
        "conditions" if parent == "status" => PatchStrategy::MergeByKey("type"),
        "finalizers" if parent == "metadata" => PatchStrategy::MergeScalars,
        _ => PatchStrategy::Replace,
    }
}

/// A Go zero-valued object as JSON: what the field manager compares a create against, so the
/// fields every object has (`spec.template.spec.containers: null`) are not counted as added.
/// It is also the body of a `BOOKMARK` event (`20-watch-events.jsonl`). `kind` is the object's
/// kind (`Job`, `Namespace`); other kinds get zero metadata only.
pub fn zero_object(kind: &str) -> Value {
    match kind {
        "Job" => json!({
            "metadata": {"creationTimestamp": null},
            "spec": {"template": {"metadata": {"creationTimestamp": null}, "spec": {"containers": null}}},
            "status": {}
        }),
        "Namespace" => {
            json!({"metadata": {"creationTimestamp": null}, "spec": {}, "status": {}})
        }
        "Node" => json!({
            "metadata": {"creationTimestamp": null},
            "spec": {},
            "status": {
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                             "osImage": "", "containerRuntimeVersion": "", "kubeletVersion": "",
                             "kubeProxyVersion": "", "operatingSystem": "", "architecture": ""}
            }
        }),
        _ => json!({"metadata": {"creationTimestamp": null}}),
    }
}

/// The top-level paths the field manager never tracks.
pub const UNTRACKED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn job_lists() {
        assert_eq!(
            list_type(&names(&["spec", "template", "spec", "containers"])),
            ListType::Map(&["name"])
        );
        assert_eq!(
            list_type(&names(&[
                "spec",
                "template",
                "spec",
                "containers",
                "command"
            ])),
            ListType::Atomic
        );
        assert_eq!(
            list_type(&names(&["metadata", "finalizers"])),
            ListType::Set
        );
        assert_eq!(list_type(&names(&["spec", "finalizers"])), ListType::Atomic);
        assert_eq!(
            patch_strategy(&names(&["status", "conditions"])),
            PatchStrategy::MergeByKey("type")
        );
    }
}
