//! OpenAPI v3 path items for a served resource: its operations, each with the
//! `x-kubernetes-action` and `x-kubernetes-group-version-kind` extensions and the query
//! parameters it takes.
//!
//! kubectl reads them to decide how to talk to the server: a `PATCH` operation of the resource's
//! group-version-kind that lists `fieldValidation` tells it the server validates fields itself,
//! so it sends `fieldValidation=Strict` and skips its own schema checks. The object schemas are
//! left out: without one, kubectl computes strategic merge patches from the types compiled into
//! it, which are exactly the API server's for built-in kinds.

use serde_json::{Value, json};

use super::call::Verb;
use super::resource::ResourceType;

fn param(name: &str, location: &str, description: &str) -> Value {
    let mut p = json!({"name": name, "in": location, "description": description,
                       "schema": {"type": "string", "uniqueItems": true}});
    if location == "path" {
        p["required"] = json!(true);
    }
    p
}

fn query_bool(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
           "schema": {"type": "boolean", "uniqueItems": true}})
}

fn query_int(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
           "schema": {"type": "integer", "uniqueItems": true}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut params = vec![
        param(
            "dryRun",
            "query",
            "When present, indicates that modifications should not be persisted. Valid values: All",
        ),
        param(
            "fieldManager",
            "query",
            "a name associated with the actor or entity that is making these changes",
        ),
        param(
            "fieldValidation",
            "query",
            "how the server handles fields the object does not have: Ignore, Warn (the default) or Strict",
        ),
    ];
    if patch {
        params.push(query_bool(
            "force",
            "Force is going to \"force\" Apply requests: re-acquire conflicting fields owned by other people",
        ));
    }
    params
}

fn read_params(list: bool) -> Vec<Value> {
    let mut params = vec![param(
        "resourceVersion",
        "query",
        "resourceVersion sets a constraint on what resource versions a request may be served from",
    )];
    if list {
        params.extend([
            query_bool(
                "allowWatchBookmarks",
                "requests watch events with type \"BOOKMARK\"",
            ),
            param(
                "continue",
                "query",
                "the continue token of the previous page",
            ),
            param(
                "fieldSelector",
                "query",
                "restricts the returned objects by their fields",
            ),
            param(
                "labelSelector",
                "query",
                "restricts the returned objects by their labels",
            ),
            query_int("limit", "the most objects one page returns"),
            param(
                "resourceVersionMatch",
                "query",
                "how resourceVersion applies: Exact or NotOlderThan",
            ),
            query_int("timeoutSeconds", "how long a watch stays open"),
            query_bool(
                "watch",
                "watch for changes to the described resources and return them as a stream",
            ),
        ]);
    }
    params
}

fn delete_params() -> Vec<Value> {
    vec![
        param(
            "dryRun",
            "query",
            "When present, indicates that modifications should not be persisted. Valid values: All",
        ),
        param(
            "propagationPolicy",
            "query",
            "Orphan (the Job's shards stay in the member clusters), Background or Foreground (they are deleted too)",
        ),
    ]
}

fn operation(action: &str, id: String, names: &ResourceType, params: Vec<Value>) -> Value {
    let mut op = json!({
        "operationId": id,
        "parameters": params,
        "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": names.group, "version": names.version(), "kind": names.kind},
    });
    if action == "patch" {
        op["requestBody"] = json!({"content": {
            "application/apply-patch+yaml": {}, "application/json-patch+json": {},
            "application/merge-patch+json": {}, "application/strategic-merge-patch+json": {}
        }, "required": true});
    }
    if matches!(action, "post" | "put") {
        op["requestBody"] =
            json!({"content": {"application/json": {}, "application/yaml": {}}, "required": true});
    }
    op
}

/// The path items of `names` serving `verbs` on the resource, and `status_verbs` on its
/// `status` subresource.
pub fn resource_paths(
    names: &ResourceType,
    verbs: &[Verb],
    status_verbs: &[Verb],
) -> Vec<(String, Value)> {
    let prefix = if names.group.is_empty() {
        format!("/api/{}", names.version())
    } else {
        format!("/apis/{}", names.api_version)
    };
    let scope = if names.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", names.plural)
    } else {
        format!("{prefix}/{}", names.plural)
    };
    let id = |verb: &str, what: &str| format!("{verb}{}{}", names.kind, what);
    let path_params = |named: bool| {
        let mut p = Vec::new();
        if named {
            p.push(param("name", "path", "name of the object"));
        }
        if names.namespaced {
            p.push(param(
                "namespace",
                "path",
                "object name and auth scope, such as for teams and projects",
            ));
        }
        p
    };
    let has = |v: Verb| verbs.contains(&v);
    let mut paths = Vec::new();

    let mut collection = json!({"parameters": path_params(false)});
    if has(Verb::List) || has(Verb::Watch) {
        collection["get"] = operation("list", id("list", ""), names, read_params(true));
    }
    if has(Verb::Create) {
        collection["post"] = operation("post", id("create", ""), names, write_params(false));
    }
    paths.push((scope.clone(), collection));

    let mut object = json!({"parameters": path_params(true)});
    if has(Verb::Get) {
        object["get"] = operation("get", id("read", ""), names, read_params(false));
    }
    if has(Verb::Update) {
        object["put"] = operation("put", id("replace", ""), names, write_params(false));
    }
    if has(Verb::Patch) {
        object["patch"] = operation("patch", id("patch", ""), names, write_params(true));
    }
    if has(Verb::Delete) {
        object["delete"] = operation("delete", id("delete", ""), names, delete_params());
    }
    paths.push((format!("{scope}/{{name}}"), object));

    if !status_verbs.is_empty() {
        let mut status = json!({"parameters": path_params(true)});
        if status_verbs.contains(&Verb::Get) {
            status["get"] = operation("get", id("read", "Status"), names, read_params(false));
        }
        paths.push((format!("{scope}/{{name}}/status"), status));
    }
    if names.namespaced && (has(Verb::List) || has(Verb::Watch)) {
        let all = json!({"get": operation("list", id("list", "ForAllNamespaces"), names, read_params(true))});
        paths.push((format!("{prefix}/{}", names.plural), all));
    }
    paths
}

/// The OpenAPI v3 document of one group version: `paths` and nothing more.
pub fn document(paths: &[(String, Value)], version: &str) -> Value {
    let paths: serde_json::Map<String, Value> = paths.iter().cloned().collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "fedjob", "version": version},
        "paths": paths,
        "components": {}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_api::resource::JOBS;

    #[test]
    fn patch_operations_declare_field_validation_for_their_kind() {
        let paths = resource_paths(
            &JOBS,
            &[Verb::Get, Verb::List, Verb::Create, Verb::Patch],
            &[Verb::Get],
        );
        let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "/apis/batch/v1/namespaces/{namespace}/jobs",
                "/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                "/apis/batch/v1/namespaces/{namespace}/jobs/{name}/status",
                "/apis/batch/v1/jobs"
            ]
        );
        let patch = &paths[1].1["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "batch", "version": "v1", "kind": "Job"})
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        assert!(paths[1].1.get("put").is_none(), "update is not served here");
        let doc = document(&paths, "1");
        assert_eq!(doc["openapi"], "3.0.0");
        assert!(doc["paths"]["/apis/batch/v1/jobs"]["get"].is_object());
    }
}
