//! The shapes of discovery documents (`/version`, `/api`, `/apis`, `/apis/GROUP`,
//! `/apis/GROUP/VERSION`) and of a minimal `/openapi/v2`: what kubectl and kube-rs read before
//! their first real request. Each server lists in them exactly what it serves.

use serde_json::{Value, json};

use super::resource::ResourceType;

/// `/version` of a server answering as Kubernetes `major.minor`, built as `git_version`.
pub fn version(major: &str, minor: &str, git_version: &str) -> Value {
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        })
    })
}

/// `/api`: the core group's version `v1`.
pub fn core_versions(server_address: &str) -> Value {
    api_versions(&["v1"], server_address)
}

/// `/api` listing `versions` of the core group (none when no core resource is served: kubectl
/// takes an empty `/api/v1` for a failed discovery).
pub fn api_versions(versions: &[&str], server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": versions,
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

/// One group's entry in `/apis` (a single served version, the preferred one).
pub fn group(name: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/{version}"), "version": version});
    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `/apis`: every group served.
pub fn group_list(groups: Vec<Value>) -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/GROUP`: one group.
pub fn group_document(name: &str, version: &str) -> Value {
    let mut group = group(name, version);
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    group
}

/// One entry of an `APIResourceList`: a resource (or `resource/subresource`) and its verbs.
pub fn api_resource(
    name: &str,
    resource: &ResourceType,
    verbs: &[&str],
    short_names: &[&str],
    categories: &[&str],
) -> Value {
    let mut entry = json!({
        "name": name,
        "singularName": "",
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": verbs,
    });
    if !short_names.is_empty() {
        entry["shortNames"] = json!(short_names);
    }
    if !categories.is_empty() {
        entry["categories"] = json!(categories);
    }
    entry
}

/// `/api/v1` or `/apis/GROUP/VERSION`: the resources of one group version.
pub fn resource_list(group_version: &str, resources: Vec<Value>) -> Value {
    let mut list = json!({
        "kind": "APIResourceList",
        "groupVersion": group_version,
        "resources": resources,
    });
    // The core group's list has no `apiVersion` (`/api/v1` in `01-create.txt`).
    if group_version.contains('/') {
        list["apiVersion"] = json!("v1");
    }
    list
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
pub fn openapi_v2_protobuf(title: &str, version: &str) -> Vec<u8> {
    // openapi_v2.Document { swagger = 1; info = 2 { title = 1; version = 2 } }
    let mut info = Vec::new();
    proto_field(0x0a, title.as_bytes(), &mut info);
    proto_field(0x12, version.as_bytes(), &mut info);
    let mut doc = Vec::new();
    proto_field(0x0a, b"2.0", &mut doc);
    proto_field(0x12, &info, &mut doc);
    doc
}

/// `/openapi/v2` as JSON, for clients that ask for JSON.
pub fn openapi_v2_json(title: &str, version: &str) -> Value {
    json!({"swagger": "2.0", "info": {"title": title, "version": version}, "paths": {}, "definitions": {}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_api::resource::JOBS;

    #[test]
    fn documents_have_the_api_server_shapes() {
        assert_eq!(
            group_document("batch", "v1"),
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": "batch",
                   "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
                   "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}})
        );
        let list = resource_list(
            "batch/v1",
            vec![api_resource("jobs", &JOBS, &["get"], &[], &["all"])],
        );
        assert_eq!(list["apiVersion"], "v1");
        assert_eq!(list["resources"][0]["categories"], json!(["all"]));
        assert!(resource_list("v1", vec![]).get("apiVersion").is_none());
        assert_eq!(
            openapi_v2_protobuf("t", "v"),
            b"\x0a\x032.0\x12\x06\x0a\x01t\x12\x01v".to_vec()
        );
    }
}
