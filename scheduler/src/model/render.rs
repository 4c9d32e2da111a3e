//! What an agent must do with a shard: the action and the complete local Job to apply.
//!
//! The manifest is rendered whole every time (never as a partial patch) because the syncer
//! applies it with server-side apply: fields it stops sending would be removed, and a removed
//! template field is a change the API server refuses.

use std::collections::BTreeMap;

use fedjob_proto::names;
use fedjob_proto::v1::AssignmentAction;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Map, Value, json};

use super::job::{FederatedJob, Shard, ShardState};

/// What the agent must do with `shard` of a Job whose `spec.suspend` is `suspended`.
pub fn action(shard: &Shard, suspended: bool) -> AssignmentAction {
    match shard.state {
        ShardState::Active if suspended => AssignmentAction::Suspend,
        ShardState::Active => AssignmentAction::Run,
        ShardState::Finished | ShardState::Lost => AssignmentAction::Retain,
        ShardState::Stopping | ShardState::Stopped => AssignmentAction::Delete,
    }
}

/// The local `batch/v1` Job for `shard`: the federated Job's spec with the shard's own counts,
/// its labels and annotations plus fedjob's, and no selector (each cluster generates its own).
pub fn manifest(fj: &FederatedJob, shard: &Shard) -> Value {
    let meta = &fj.job.metadata;
    let mut labels: BTreeMap<String, String> = meta.labels.clone().unwrap_or_default();
    labels.insert(names::JOB_LABEL.into(), fj.name().into());
    labels.insert(names::JOB_UID_LABEL.into(), fj.uid().into());
    labels.insert(
        names::MANAGED_BY_LABEL.into(),
        names::MANAGED_BY_VALUE.into(),
    );
    let mut annotations: BTreeMap<String, String> = meta.annotations.clone().unwrap_or_default();
    annotations.insert(
        names::ASSIGNMENT_REVISION_ANNOTATION.into(),
        shard.revision.to_string(),
    );
    annotations.insert(names::EPOCH_ANNOTATION.into(), shard.epoch.to_string());

    let mut spec = match serde_json::to_value(fj.spec()) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    if fj.spec().manual_selector != Some(true) {
        spec.remove("selector");
        spec.remove("manualSelector");
    }
    spec.insert("parallelism".into(), json!(shard.parallelism));
    match shard.completions {
        Some(c) => spec.insert("completions".into(), json!(c)),
        None => spec.remove("completions"),
    };
    let suspended = fj.spec().suspend.unwrap_or(false);
    spec.insert("suspend".into(), json!(suspended));

    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": shard.name,
            "namespace": fj.namespace(),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    })
}

/// Hash of everything of the federated Job that every shard's manifest carries.
pub fn job_fingerprint(job: &Job) -> u64 {
    let mut spec = job.spec.clone().unwrap_or_default();
    // Counts are per shard; they enter the shard's own fingerprint.
    spec.parallelism = None;
    spec.completions = None;
    let bytes = serde_json::to_vec(&(&job.metadata.labels, &job.metadata.annotations, &spec))
        .unwrap_or_default();
    fnv1a(&bytes, FNV_OFFSET)
}

/// Hash of the desired state of one shard given its Job's fingerprint.
pub fn shard_fingerprint(job_fingerprint: u64, shard: &Shard, suspended: bool) -> u64 {
    let action = action(shard, suspended) as i32;
    let fields = [
        job_fingerprint.to_le_bytes(),
        i64::from(action).to_le_bytes(),
        i64::from(shard.parallelism).to_le_bytes(),
        shard.epoch.to_le_bytes(),
    ];
    fields.iter().fold(FNV_OFFSET, |h, bytes| fnv1a(bytes, h))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a: a fixed hash, so fingerprints agree across builds and replicas.
fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes
        .iter()
        .fold(seed, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}
