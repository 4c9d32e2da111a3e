//! A collection served through the API's request layer, as clients reach it: get, list with
//! selectors and pages, Tables, watches from a version and from too old a one, and the verbs
//! and paths it does not serve.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;

use super::*;
use crate::auth::Guard;
use crate::kube_api::edge::{Edge, Peer};
use crate::metrics::Metrics;

const THINGS: ResourceType = ResourceType {
    group: "example.io",
    api_version: "example.io/v1",
    kind: "Thing",
    list_kind: "ThingList",
    plural: "things",
    namespaced: true,
};

fn log() -> Arc<ObjectLog> {
    ObjectLog::new(
        Kind {
            names: &THINGS,
            short_names: &["th"],
            fields: &["metadata.name", "color"],
            field: |v, f| match f {
                "color" => table::str_at(v, "/color").to_owned(),
                _ => table::str_at(v, "/metadata/name").to_owned(),
            },
            columns: || {
                vec![
                    table::name_column(),
                    table::column("Color", "", "its color", 0),
                ]
            },
            cells: |v| {
                vec![
                    json!(table::str_at(v, "/metadata/name")),
                    json!(table::str_at(v, "/color")),
                ]
            },
        },
        8,
    )
}

fn thing(ns: &str, name: &str, color: &str) -> Value {
    json!({"kind": "Thing", "apiVersion": "example.io/v1",
           "metadata": {"name": name, "namespace": ns, "labels": {"color": color}}, "color": color})
}

fn edge(log: &Arc<ObjectLog>) -> (Edge, fedjob_proto::shutdown::Trigger) {
    let (trigger, shutdown) = fedjob_proto::shutdown::channel();
    let metrics = Arc::new(Metrics::new());
    let collection = Collection::new(log.clone(), None, shutdown, Duration::from_secs(3600));
    let resources: Vec<Arc<dyn ServedResource>> = vec![Arc::new(collection)];
    (
        Edge::new(
            Guard::new(None, false, metrics.clone()),
            metrics,
            resources,
            "127.0.0.1:1",
        ),
        trigger,
    )
}

async fn call(edge: &Edge, method: &str, uri: &str, accept: &str) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("accept", accept)
        .body(Body::empty())
        .unwrap();
    let response = edge.handle(&Peer::default(), request).await;
    let code = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The first `n` lines of a watch.
async fn watch_lines(edge: &Edge, uri: &str, n: usize) -> Vec<Value> {
    let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let response = edge.handle(&Peer::default(), request).await;
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    while text.lines().count() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("a watch event within 10 s")
            .expect("the watch goes on")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The next event of a watch (one event a chunk, as the watch writes them).
async fn next_event(body: &mut axum::body::BodyDataStream) -> Value {
    let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("a watch event within 10 s")
        .expect("the watch goes on")
        .unwrap();
    serde_json::from_slice(&chunk).unwrap()
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect()
}

#[test]
fn a_put_that_changes_nothing_makes_no_version() {
    let log = log();
    let a = log.put(thing("ns", "a", "red")).unwrap();
    assert_eq!(a.value["metadata"]["resourceVersion"], a.rv.to_string());
    assert!(log.put(thing("ns", "a", "red")).is_none());
    let b = log.put(thing("ns", "a", "blue")).unwrap();
    assert_eq!(b.rv, a.rv + 1);
    assert_eq!(log.retain(|o| o.name != "a"), 1);
    assert!(log.is_empty());
}

#[tokio::test]
async fn get_list_selectors_pages_and_tables() {
    let log = log();
    for (ns, name, color) in [
        ("ns", "b", "red"),
        ("ns", "a", "blue"),
        ("other", "c", "red"),
    ] {
        log.put(thing(ns, name, color));
    }
    let (edge, _trigger) = edge(&log);
    let json = "application/json";

    let (code, one) = call(
        &edge,
        "GET",
        "/apis/example.io/v1/namespaces/ns/things/a",
        json,
    )
    .await;
    assert_eq!((code, one["color"].as_str()), (200, Some("blue")));
    let (code, missing) = call(
        &edge,
        "GET",
        "/apis/example.io/v1/namespaces/ns/things/z",
        json,
    )
    .await;
    assert_eq!((code, missing["reason"].as_str()), (404, Some("NotFound")));
    assert_eq!(missing["message"], "things.example.io \"z\" not found");

    let (code, list) = call(
        &edge,
        "GET",
        "/apis/example.io/v1/namespaces/ns/things",
        json,
    )
    .await;
    assert_eq!((code, names(&list)), (200, vec!["a", "b"]));
    assert_eq!(list["kind"], "ThingList");
    let (_, all) = call(&edge, "GET", "/apis/example.io/v1/things", json).await;
    assert_eq!(names(&all), ["a", "b", "c"]);
    let (_, red) = call(
        &edge,
        "GET",
        "/apis/example.io/v1/things?fieldSelector=color%3Dred",
        json,
    )
    .await;
    assert_eq!(names(&red), ["b", "c"]);
    let (_, blue) = call(
        &edge,
        "GET",
        "/apis/example.io/v1/things?labelSelector=color%3Dblue",
        json,
    )
    .await;
    assert_eq!(names(&blue), ["a"]);
    let (code, refused) = call(
        &edge,
        "GET",
        "/apis/example.io/v1/things?fieldSelector=spec.x%3D1",
        json,
    )
    .await;
    assert_eq!(
        (code, refused["reason"].as_str()),
        (400, Some("BadRequest"))
    );

    let (_, page) = call(&edge, "GET", "/apis/example.io/v1/things?limit=2", json).await;
    assert_eq!(names(&page), ["a", "b"]);
    assert_eq!(page["metadata"]["remainingItemCount"], 1);
    let token = page["metadata"]["continue"].as_str().unwrap();
    // A change between pages is not seen by the rest of the list.
    log.put(thing("other", "d", "red"));
    let (_, rest) = call(
        &edge,
        "GET",
        &format!("/apis/example.io/v1/things?limit=2&continue={token}"),
        json,
    )
    .await;
    assert_eq!(names(&rest), ["c"]);
    assert!(rest["metadata"].get("continue").is_none());

    let table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let (_, table) = call(
        &edge,
        "GET",
        "/apis/example.io/v1/namespaces/ns/things",
        table_accept,
    )
    .await;
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"][0]["cells"], json!(["a", "blue"]));
    assert_eq!(table["rows"][1]["object"]["kind"], "PartialObjectMetadata");
}

#[tokio::test]
async fn only_reads_are_served_and_discovery_says_so() {
    let log = log();
    let (edge, _trigger) = edge(&log);
    let (code, status) = call(
        &edge,
        "POST",
        "/apis/example.io/v1/namespaces/ns/things",
        "",
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    let (code, _) = call(
        &edge,
        "DELETE",
        "/apis/example.io/v1/namespaces/ns/things/a",
        "",
    )
    .await;
    assert_eq!(code, 405);
    let (code, _) = call(
        &edge,
        "GET",
        "/apis/example.io/v1/namespaces/ns/things/a/status",
        "",
    )
    .await;
    assert_eq!(code, 404);
    let (code, discovery) = call(&edge, "GET", "/apis/example.io/v1", "").await;
    assert_eq!(code, 200);
    assert_eq!(
        discovery["resources"],
        json!([{"name": "things", "singularName": "", "namespaced": true, "kind": "Thing",
                "verbs": ["get", "list", "watch"], "shortNames": ["th"]}])
    );
}

#[tokio::test]
async fn a_watch_from_a_list_sees_exactly_the_changes_after_it() {
    let log = log();
    log.put(thing("ns", "a", "red"));
    let (edge, _trigger) = edge(&log);
    let (_, list) = call(&edge, "GET", "/apis/example.io/v1/namespaces/ns/things", "").await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    log.put(thing("ns", "a", "blue"));
    log.put(thing("other", "x", "red"));
    log.put(thing("ns", "b", "red"));
    log.retain(|o| o.name != "a");
    let uri = format!("/apis/example.io/v1/namespaces/ns/things?watch=true&resourceVersion={rv}");
    let events = watch_lines(&edge, &uri, 3).await;
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["object"]["metadata"]["name"].as_str().unwrap(),
                e["object"]["color"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("MODIFIED", "a", "blue"),
            ("ADDED", "b", "red"),
            ("DELETED", "a", "blue")
        ]
    );

    // From no version: the objects as ADDED, then what changes.
    let uri = "/apis/example.io/v1/namespaces/ns/things?watch=true&fieldSelector=color%3Dred";
    let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let response = edge.handle(&Peer::default(), request).await;
    let mut body = response.into_body().into_data_stream();
    let first = next_event(&mut body).await;
    assert_eq!(
        (
            first["type"].as_str(),
            first["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("b"))
    );
    // Turning blue leaves the selection: DELETED, as the API server's watch cache says it.
    log.put(thing("ns", "b", "blue"));
    let left = next_event(&mut body).await;
    assert_eq!(
        (left["type"].as_str(), left["object"]["color"].as_str()),
        (Some("DELETED"), Some("blue"))
    );
}

#[tokio::test]
async fn a_watch_from_a_version_the_history_lost_is_told_410() {
    let log = log();
    let first = log.put(thing("ns", "a", "0")).unwrap();
    for i in 1..20 {
        log.put(thing("ns", "a", &i.to_string()));
    }
    let (edge, _trigger) = edge(&log);
    for rv in [first.rv, 1, first.rv + 1000] {
        let uri = format!("/apis/example.io/v1/things?watch=true&resourceVersion={rv}");
        let events = watch_lines(&edge, &uri, 1).await;
        assert_eq!(events[0]["type"], "ERROR", "{rv}");
        assert_eq!(events[0]["object"]["code"], 410, "{rv}");
        assert_eq!(events[0]["object"]["reason"], "Expired", "{rv}");
    }
}
