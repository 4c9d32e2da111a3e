//! Discovery documents, `/version` and the OpenAPI endpoints: what kubectl and kube-rs read
//! before their first real request.
//!
//! They list only what the simulator serves. `/apis/batch/v1` lists `jobs` and `jobs/status`
//! exactly as `13-discovery-batch-v1.json`; the real document's `cronjobs` entries are left out
//! because the simulator has no CronJobs.

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

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

fn batch_group_body() -> Value {
    json!({
        "name": "batch",
        "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}
    })
}

/// `/apis`.
pub fn groups() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [batch_group_body()]})
}

/// `/apis/batch`.
pub fn batch_group() -> Value {
    let mut group = batch_group_body();
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    group
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
                "verbs": ["get", "list"],
                "shortNames": ["po"],
                "categories": ["all"]
            }
        ]
    })
}

fn proto_field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let mut len = bytes.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
}

/// `/openapi/v2` as the protobuf kubectl asks for: a valid document with no definitions.
///
/// kubectl validates manifests against this schema before sending them and refuses to run when
/// it cannot download one; with no definitions, it skips the client-side checks and the
/// server's validation decides, as with `--validate=false` but without the flag.
pub fn openapi_v2_protobuf() -> Vec<u8> {
    // openapi_v2.Document { swagger = 1; info = 2 { title = 1; version = 2 } }
    let mut info = Vec::new();
    proto_field(0x0a, b"fedjob-kubesim", &mut info);
    proto_field(0x12, b"v1.24.17", &mut info);
    let mut doc = Vec::new();
    proto_field(0x0a, b"2.0", &mut doc);
    proto_field(0x12, &info, &mut doc);
    doc
}

/// `/openapi/v2` as JSON, for clients that ask for JSON.
pub fn openapi_v2_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": "fedjob-kubesim", "version": "v1.24.17"}, "paths": {}, "definitions": {}})
}
