//! Conversions between the control plane's types and the wire types of `fedjob.v1`, and the
//! JSON shape of a federated Job that `fedctl get job -o json` prints (SPEC §5).

use std::sync::OnceLock;

use fedjob_proto::json::{from_struct, to_struct};
use fedjob_proto::quantity::format_amount;
use fedjob_proto::v1;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::clusters::ClusterEntry;
use crate::control_plane::{ShardReport, StoredJob};
use crate::model::clusters::Clusters;
use crate::model::job::{Detail, FederatedJob, Observed, ObservedPhase, Shard, Uid};
use crate::model::render::{self, ManifestTemplate};
use crate::model::status::{PlacementView, placements};

/// The user's `batch/v1` Job with its aggregated status and `resourceVersion`.
pub fn job_json(stored: &StoredJob) -> Value {
    let mut value = serde_json::to_value(&stored.record.job).unwrap_or_else(|_| json!({}));
    value["apiVersion"] = json!("batch/v1");
    value["kind"] = json!("Job");
    if stored.mod_revision > 0 {
        value["metadata"]["resourceVersion"] = json!(stored.mod_revision.to_string());
    }
    if value.get("status").is_none_or(Value::is_null) {
        value["status"] = json!({});
    }
    value
}

/// A stored Job as the API returns it.
pub fn federated_job(stored: &StoredJob, clusters: &Clusters) -> v1::FederatedJob {
    v1::FederatedJob {
        job: to_struct(&job_json(stored)),
        placements: placements(&stored.record, clusters)
            .into_iter()
            .map(placement)
            .collect(),
        unplaced: Some(v1::Share {
            parallelism: stored.record.unplaced.parallelism,
            completions: stored.record.unplaced.completions,
        }),
        left_out: Vec::new(),
    }
}

/// [`federated_job`] with every registered cluster that has no shard and why
/// ([`left_out`](crate::model::left_out::left_out)), for one Job read on its own (`fedctl
/// describe`); `clusters` carry their capacity, which `dynamicWeight` weighs by.
pub fn described_job(stored: &StoredJob, clusters: &Clusters) -> v1::FederatedJob {
    let mut job = federated_job(stored, clusters);
    job.left_out = crate::model::left_out::left_out(&stored.record, clusters)
        .into_iter()
        .map(|(cluster, reason)| v1::LeftOut {
            cluster,
            reason: reason.code().to_owned(),
            message: reason.to_string(),
        })
        .collect();
    job
}

fn placement(p: PlacementView) -> v1::Placement {
    v1::Placement {
        cluster: p.cluster,
        parallelism: p.parallelism,
        completions: p.completions,
        active: p.active,
        succeeded: p.succeeded,
        failed: p.failed,
        state: p.state.to_owned(),
        message: p.message,
        shards: p
            .shards
            .into_iter()
            .map(|s| v1::Shard {
                name: s.name,
                parallelism: s.parallelism,
                completions: s.completions,
                active: s.active,
                succeeded: s.succeeded,
                failed: s.failed,
                state: s.state.to_owned(),
                epoch: s.epoch,
                message: s.message,
            })
            .collect(),
    }
}

/// The JSON object `fedctl get job NAME -o json` prints: the Job plus `placements` (SPEC §5).
pub fn federated_job_json(job: &v1::FederatedJob) -> Value {
    let mut value = job
        .job
        .as_ref()
        .map(from_struct)
        .unwrap_or_else(|| json!({}));
    let placements: Vec<Value> = job
        .placements
        .iter()
        .map(|p| {
            let mut entry = json!({
                "cluster": p.cluster,
                "parallelism": p.parallelism,
                "active": p.active,
                "succeeded": p.succeeded,
                "failed": p.failed,
                "state": p.state,
                "shards": p.shards.iter().map(|s| {
                    let mut shard = json!({
                        "name": s.name, "parallelism": s.parallelism, "active": s.active,
                        "succeeded": s.succeeded, "failed": s.failed, "state": s.state,
                        "epoch": s.epoch,
                    });
                    if let Some(c) = s.completions {
                        shard["completions"] = json!(c);
                    }
                    if !s.message.is_empty() {
                        shard["message"] = json!(s.message);
                    }
                    shard
                }).collect::<Vec<_>>(),
            });
            if let Some(c) = p.completions {
                entry["completions"] = json!(c);
            }
            if !p.message.is_empty() {
                entry["message"] = json!(p.message);
            }
            entry
        })
        .collect();
    value["placements"] = Value::Array(placements);
    if let Some(u) = &job.unplaced
        && (u.parallelism > 0 || u.completions > 0)
    {
        value["unplaced"] = json!({"parallelism": u.parallelism, "completions": u.completions});
    }
    value
}

/// A cluster as the API returns it.
pub fn cluster(entry: &ClusterEntry, shards: i32, connected: bool) -> v1::Cluster {
    v1::Cluster {
        name: entry.record.name.clone(),
        state: entry.state().to_owned(),
        cordoned: entry.record.cordoned,
        labels: entry.record.labels.clone().into_iter().collect(),
        last_heartbeat: entry.last_heartbeat_wall.map(timestamp),
        shards,
        connected,
        epoch: entry.record.epoch,
        capacity: None,
    }
}

/// The JSON object of one cluster in `fedctl get clusters -o json` (SPEC §8).
pub fn cluster_json(c: &v1::Cluster) -> Value {
    let mut value = json!({
        "name": c.name,
        "state": c.state,
        "cordoned": c.cordoned,
        "labels": c.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "lastHeartbeat": c.last_heartbeat.as_ref().and_then(from_timestamp).map(|t| t.to_string()),
        "shards": c.shards,
        "connected": c.connected,
        "epoch": c.epoch,
    });
    if let Some(capacity) = &c.capacity {
        let free: std::collections::BTreeMap<&String, String> = capacity
            .free
            .iter()
            .map(|(resource, amount)| (resource, format_amount(resource, *amount)))
            .collect();
        value["capacity"] = json!({
            "free": free,
            "nodes": capacity.nodes,
            "reported": capacity.reported.as_ref().and_then(from_timestamp).map(|t| t.to_string()),
        });
    }
    value
}

/// What the agent must do with `shard` of `fj`, whose manifests share `template` (made here
/// when it is first needed).
pub fn assignment(
    fj: &FederatedJob,
    template: &OnceLock<ManifestTemplate>,
    shard: &Shard,
) -> v1::Assignment {
    let suspended = fj.spec().suspend.unwrap_or(false);
    let action = render::action(shard, suspended);
    let manifest = match action {
        v1::AssignmentAction::Run | v1::AssignmentAction::Suspend => template
            .get_or_init(|| ManifestTemplate::of(fj))
            .render(shard),
        _ => String::new(),
    };
    v1::Assignment {
        job_uid: fj.uid().to_owned(),
        namespace: fj.namespace().to_owned(),
        shard: shard.name.clone(),
        epoch: shard.epoch,
        generation: fj.job.metadata.generation.unwrap_or(1),
        revision: shard.revision,
        action: action as i32,
        manifest,
        create: !shard.seen,
    }
}

/// An assignment telling the agent to stop managing a shard the federation does not know.
pub fn forget(job_uid: &str, namespace: &str, shard: &str) -> v1::Assignment {
    v1::Assignment {
        job_uid: job_uid.to_owned(),
        namespace: namespace.to_owned(),
        shard: shard.to_owned(),
        action: v1::AssignmentAction::Forget as i32,
        ..Default::default()
    }
}

/// Decodes a shard status from an agent.
pub fn shard_report(s: &v1::ShardStatus) -> ShardReport {
    let phase = match v1::ShardPhase::try_from(s.phase).unwrap_or_default() {
        v1::ShardPhase::Complete => ObservedPhase::Complete,
        v1::ShardPhase::Failed => ObservedPhase::Failed,
        v1::ShardPhase::Suspended => ObservedPhase::Suspended,
        v1::ShardPhase::Deleted => ObservedPhase::Deleted,
        v1::ShardPhase::Missing => ObservedPhase::Missing,
        v1::ShardPhase::Conflict => ObservedPhase::Conflict,
        v1::ShardPhase::Error => ObservedPhase::Error,
        v1::ShardPhase::Running | v1::ShardPhase::Unspecified => ObservedPhase::Running,
    };
    ShardReport {
        job_uid: s.job_uid.clone(),
        namespace: s.namespace.clone(),
        shard: s.shard.clone(),
        epoch: s.epoch,
        observed: Observed {
            phase,
            active: s.active.max(0),
            succeeded: s.succeeded.max(0),
            failed: s.failed.max(0),
            start_time: s.start_time.as_ref().and_then(from_timestamp).into(),
            completion_time: s.completion_time.as_ref().and_then(from_timestamp).into(),
            local_uid: Uid::new(&s.local_uid),
            detail: Detail::new(&s.reason, &s.message),
            revision: s.revision,
        },
    }
}

/// A jiff timestamp as protobuf's.
pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

/// A protobuf timestamp as jiff's; `None` when out of range.
pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<Timestamp> {
    Timestamp::new(t.seconds, t.nanos).ok()
}
