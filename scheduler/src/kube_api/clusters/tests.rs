//! A Cluster's object and Table row.

use serde_json::json;

use super::*;

#[test]
fn a_cordoned_cluster_with_capacity_prints_as_kubectl_shows_nodes() {
    let c = json!({
        "kind": "Cluster", "apiVersion": "fedjob.io/v1",
        "metadata": {"name": "c1", "creationTimestamp": "2020-01-01T00:00:00Z",
                     "labels": {"region": "eu", "tier": "gpu"}},
        "spec": {"unschedulable": true},
        "status": {"state": "Ready", "connected": true, "shards": 4,
                   "capacity": {"free": {"cpu": "3500m", "memory": "8Gi"}, "nodes": 2}}
    });
    let cells = cells(&c);
    assert_eq!(
        [
            &cells[0], &cells[1], &cells[2], &cells[4], &cells[5], &cells[6]
        ],
        [
            &json!("c1"),
            &json!("Ready,SchedulingDisabled"),
            &json!(4),
            &json!("region=eu,tier=gpu"),
            &json!("true"),
            &json!("nodes=2,cpu=3500m,memory=8Gi")
        ]
    );
    let columns = columns();
    let names: Vec<&str> = columns
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Status",
            "Shards",
            "Age",
            "Labels",
            "Connected",
            "Capacity"
        ]
    );
    assert_eq!(columns.len(), cells.len());
}

#[test]
fn a_cluster_without_labels_or_a_report() {
    let c = json!({"metadata": {"name": "c2"}, "spec": {"unschedulable": false},
                   "status": {"state": "NotReady", "connected": false, "shards": 0}});
    let cells = cells(&c);
    assert_eq!(
        [&cells[1], &cells[4], &cells[5], &cells[6]],
        [
            &json!("NotReady"),
            &json!("<none>"),
            &json!("false"),
            &json!("<unknown>")
        ]
    );
}

#[test]
fn uids_are_stable_per_registration() {
    let t: jiff::Timestamp = "2026-12-06T10:00:00Z".parse().unwrap();
    assert_eq!(uid("c1", t), uid("c1", t));
    assert_ne!(uid("c1", t), uid("c2", t));
    assert_ne!(
        uid("c1", t),
        uid("c1", t + jiff::SignedDuration::from_secs(1))
    );
    assert!(uuid::Uuid::parse_str(&uid("c1", t)).is_ok());
}
