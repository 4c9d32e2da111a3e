//! Discovery documents, `/version` and the OpenAPI endpoints: what kubectl and kube-rs read
//! before their first real request.
//!
//! They list only what the simulator serves. `/apis/batch/v1` lists `jobs` and `jobs/status`
//! exactly as `13-discovery-batch-v1.json`; the real document's `cronjobs` entries are left out
//! because the simulator has no CronJobs.

use fedjob_scheduler::kube_api::discovery;
use serde_json::{Value, json};

/// The version the simulator answers like.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "24",
        "gitVersion": "v1.24.17+fedjob-kubesim",
        "gitCommit": "22a9682c8fe855c321be75c5faacde343f909b04",
        "gitTreeState": "clean",
        "buildDate": "2023-08-23T23:37:25Z",
        "goVersion": "go1.20.7",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/apis`.
pub fn groups() -> Value {
    discovery::group_list(vec![discovery::group("batch", "v1")])
}

/// `/apis/batch`.
pub fn batch_group() -> Value {
    discovery::group_document("batch", "v1")
}

/// `/apis/batch/v1`.
pub fn batch_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "batch/v1",
        "resources": [
            {
                "name": "jobs",
                "singularName": "",
                "namespaced": true,
                "kind": "Job",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "categories": ["all"],
                "storageVersionHash": "mudhfqk/qZY="
            },
            {
                "name": "jobs/status",
                "singularName": "",
                "namespaced": true,
                "kind": "Job",
                "verbs": ["get", "patch", "update"]
            }
        ]
    })
}

/// `/api/v1`.
pub fn core_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "events",
                "singularName": "",
                "namespaced": true,
                "kind": "Event",
                "verbs": ["list"],
                "shortNames": ["ev"]
            },
            {
                "name": "namespaces",
                "singularName": "",
                "namespaced": false,
                "kind": "Namespace",
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": ["ns"],
                "storageVersionHash": "Q3oi5N2YM8M="
            },
            {
                "name": "nodes",
                "singularName": "",
                "namespaced": false,
                "kind": "Node",
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": ["no"],
                "storageVersionHash": "XwShjMxG9Fs="
            },
            {
                "name": "nodes/status",
                "singularName": "",
                "namespaced": false,
                "kind": "Node",
                "verbs": ["get", "patch", "update"]
            },
            {
                "name": "namespaces/status",
                "singularName": "",
                "namespaced": false,
                "kind": "Namespace",
                "verbs": ["get", "patch", "update"]
            },
            {
                "name": "pods",
                "singularName": "",
                "namespaced": true,
                "kind": "Pod",
                "verbs": ["get", "list", "watch"],
                "shortNames": ["po"],
                "categories": ["all"]
            }
        ]
    })
}

/// `/openapi/v2` as the protobuf kubectl asks for (see [`discovery::openapi_v2_protobuf`]).
pub fn openapi_v2_protobuf() -> Vec<u8> {
    discovery::openapi_v2_protobuf("fedjob-kubesim", "v1.24.17")
}

/// `/openapi/v2` as JSON.
pub fn openapi_v2_json() -> Value {
    discovery::openapi_v2_json("fedjob-kubesim", "v1.24.17")
}
