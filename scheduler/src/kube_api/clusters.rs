//! `fedjob.io/v1` `clusters`: the member clusters as cluster-scoped objects, so `kubectl get
//! clusters` works as it did in Federation v1 (SPEC §9), read-only (get, list, watch, Table).
//!
//! A Cluster's `status` is what `fedctl get clusters -o json` prints for it (state, connected,
//! cordoned, last heartbeat, shards, and the capacity its agent reports, when it does); its
//! labels are its agent's. The objects are read from the cluster registry before every read
//! and once a second for watchers ([`start`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use super::clock;
use super::objects::{Kind, ObjectLog, Refresh};
use super::resource::ResourceType;
use super::table::{self, column, str_at};
use crate::api::convert;
use crate::clusters::ClusterEntry;
use crate::control_plane::ControlPlane;
use fedjob_proto::shutdown::Shutdown;
use fedjob_proto::v1;

/// `fedjob.io/v1` Clusters.
pub const CLUSTERS: ResourceType = ResourceType {
    group: "fedjob.io",
    api_version: "fedjob.io/v1",
    kind: "Cluster",
    list_kind: "ClusterList",
    plural: "clusters",
    namespaced: false,
};

/// Fields a Cluster field selector may name.
const FIELDS: &[&str] = &["metadata.name", "status.state"];

/// Changes kept for watches (a heartbeat changes a Cluster: a few minutes of a large
/// federation).
const HISTORY: usize = 4096;

/// How often watchers' Clusters are read from the registry.
const INTERVAL: Duration = Duration::from_secs(1);

/// An empty log of Clusters.
pub fn log() -> Arc<ObjectLog> {
    ObjectLog::new(
        Kind {
            names: &CLUSTERS,
            short_names: &[],
            fields: FIELDS,
            field: |c, f| str_at(c, &format!("/{}", f.replace('.', "/"))).to_owned(),
            columns,
            cells,
        },
        HISTORY,
    )
}

/// What brings `log` up to `cp`'s clusters, for [`super::objects::Collection`].
pub fn refresher(cp: Arc<ControlPlane>, log: Arc<ObjectLog>) -> Refresh {
    Arc::new(move || refresh(&cp, &log))
}

/// Keeps `log` up to `cp`'s clusters for watchers until `shutdown`, as one of `tasks`.
pub fn start(cp: Arc<ControlPlane>, log: Arc<ObjectLog>, shutdown: Shutdown, tasks: &TaskTracker) {
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => refresh(&cp, &log),
                _ = shutdown.fired() => return,
            }
        }
    });
}

/// Brings `log` up to the registry: each cluster's object; those gone are deleted.
pub fn refresh(cp: &ControlPlane, log: &ObjectLog) {
    let counts = cp.shard_counts();
    let objects: Vec<Value> = cp.with_clusters(|table| {
        table
            .iter()
            .map(|entry| {
                let shards = counts.get(&entry.record.name).copied().unwrap_or(0);
                let mut summary = convert::cluster(entry, shards, connected(entry));
                summary.capacity = cp.capacity().summary(&entry.record.name);
                object(entry, &summary)
            })
            .collect()
    });
    let names: HashMap<String, ()> = objects
        .iter()
        .map(|o| (str_at(o, "/metadata/name").to_owned(), ()))
        .collect();
    for o in objects {
        log.put(o);
    }
    log.retain(|o| names.contains_key(&o.name));
}

fn connected(entry: &ClusterEntry) -> bool {
    entry.session.as_ref().is_some_and(|s| s.attached)
}

/// The Cluster object of `entry`, whose user-API summary is `summary`.
pub fn object(entry: &ClusterEntry, summary: &v1::Cluster) -> Value {
    let mut status = convert::cluster_json(summary);
    if let Some(s) = status.as_object_mut() {
        s.remove("name");
        s.remove("labels");
    }
    let mut metadata = json!({
        "name": entry.record.name,
        "uid": uid(&entry.record.name, entry.record.registered_at),
        "creationTimestamp": clock::format(entry.record.registered_at),
    });
    if !entry.record.labels.is_empty() {
        metadata["labels"] = json!(entry.record.labels);
    }
    json!({
        "kind": CLUSTERS.kind,
        "apiVersion": CLUSTERS.api_version,
        "metadata": metadata,
        "spec": {"unschedulable": entry.record.cordoned},
        "status": status,
    })
}

/// A uid that stays the same for a cluster's registration across restarts and replicas:
/// FNV-1a of the name, and the registration time.
fn uid(name: &str, registered_at: jiff::Timestamp) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let at = registered_at.as_nanosecond() as u64;
    uuid::Uuid::from_u64_pair(hash, at).to_string()
}

/// The Cluster Table's columns.
fn columns() -> Vec<Value> {
    vec![
        table::name_column(),
        column(
            "Status",
            "",
            "Ready or NotReady (heartbeats within the grace period), and SchedulingDisabled when cordoned.",
            0,
        ),
        json!({"name": "Shards", "type": "integer", "format": "", "description": "Shards of federated Jobs in the cluster.", "priority": 0}),
        table::age_column(),
        column("Labels", "", "The labels its agent registered.", 0),
        column("Connected", "", "Whether its agent's session is open.", 1),
        column(
            "Capacity",
            "",
            "Free capacity its agent last reported: nodes and free resources.",
            1,
        ),
    ]
}

/// A Cluster's cells.
fn cells(c: &Value) -> Vec<Value> {
    let mut state = str_at(c, "/status/state").to_owned();
    if c.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        state.push_str(",SchedulingDisabled");
    }
    let labels: Vec<String> = c
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let capacity = match c.pointer("/status/capacity") {
        Some(cap) => {
            let mut parts = vec![format!(
                "nodes={}",
                cap["nodes"].as_i64().unwrap_or_default()
            )];
            if let Some(free) = cap["free"].as_object() {
                parts.extend(
                    free.iter()
                        .map(|(r, q)| format!("{r}={}", q.as_str().unwrap_or_default())),
                );
            }
            parts.join(",")
        }
        None => "<unknown>".to_owned(),
    };
    let or_none = |s: String| if s.is_empty() { "<none>".to_owned() } else { s };
    vec![
        json!(str_at(c, "/metadata/name")),
        json!(state),
        json!(
            c.pointer("/status/shards")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        ),
        json!(table::age(c)),
        json!(or_none(labels.join(","))),
        json!(
            if c.pointer("/status/connected") == Some(&Value::Bool(true)) {
                "true"
            } else {
                "false"
            }
        ),
        json!(capacity),
    ]
}

#[cfg(test)]
mod tests;
