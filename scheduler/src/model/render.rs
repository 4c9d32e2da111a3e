//! What an agent must do with a shard: the action and the complete local Job to apply.
//!
//! The manifest is rendered whole every time (never as a partial patch) because the syncer
//! applies it with server-side apply: fields it stops sending would be removed, and a removed
//! template field is a change the API server refuses.

use std::collections::BTreeMap;

use fedjob_proto::names;
use fedjob_proto::v1::AssignmentAction;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use serde::Serialize;
use serde_json::Value;

use super::job::{FederatedJob, Shard, ShardState};

/// What the agent must do with `shard` of a Job whose `spec.suspend` is `suspended`.
pub fn action(shard: &Shard, suspended: bool) -> AssignmentAction {
    match shard.state {
        ShardState::Active if suspended => AssignmentAction::Suspend,
        ShardState::Active => AssignmentAction::Run,
        // Kept with its counts: the manifest says suspended, and `create` is false as it was
        // seen, so the agent suspends it and never makes it again.
        ShardState::Retired => AssignmentAction::Suspend,
        ShardState::Finished | ShardState::Lost => AssignmentAction::Retain,
        ShardState::Stopping | ShardState::Stopped => AssignmentAction::Delete,
    }
}

/// The local `batch/v1` Job for `shard`: the federated Job's spec with the shard's own counts,
/// its labels and annotations plus fedjob's, and no selector (each cluster generates its own).
pub fn manifest(fj: &FederatedJob, shard: &Shard) -> Value {
    serde_json::from_str(&manifest_text(fj, shard)).unwrap_or(Value::Null)
}

/// [`manifest`] as compact JSON text, what an assignment carries.
///
/// Serialized straight from borrowed parts: every agent stream renders each of its shards, so
/// going through a `serde_json::Value` tree (an allocation per field of the pod template, then
/// a second pass to print it) was a measurable part of the scheduler's CPU per Job.
pub fn manifest_text(fj: &FederatedJob, shard: &Shard) -> String {
    let meta = &fj.job.metadata;
    let mut labels: BTreeMap<&str, &str> = meta
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    labels.insert(names::JOB_LABEL, fj.name());
    labels.insert(names::JOB_UID_LABEL, fj.uid());
    labels.insert(names::MANAGED_BY_LABEL, names::MANAGED_BY_VALUE);
    let revision = shard.revision.to_string();
    let epoch = shard.epoch.to_string();
    let mut annotations: BTreeMap<&str, &str> = meta
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    annotations.insert(names::ASSIGNMENT_REVISION_ANNOTATION, &revision);
    annotations.insert(names::EPOCH_ANNOTATION, &epoch);
    let retired = shard.state == ShardState::Retired;
    if retired {
        annotations.insert(names::STOPPED_ANNOTATION, stopped_because(fj));
    }

    let mut spec = fj.spec().clone();
    if spec.manual_selector != Some(true) {
        spec.selector = None;
        spec.manual_selector = None;
    }
    spec.parallelism = Some(shard.parallelism);
    spec.completions = shard.completions;
    spec.suspend = Some(retired || spec.suspend.unwrap_or(false));

    let local = LocalJob {
        api_version: "batch/v1",
        kind: "Job",
        metadata: LocalMeta {
            name: &shard.name,
            namespace: fj.namespace(),
            labels,
            annotations,
        },
        spec: &spec,
    };
    // Plain structs, string-keyed maps and k8s-openapi types: serializing cannot fail.
    serde_json::to_string(&local).unwrap_or_default()
}

/// The value of [`names::STOPPED_ANNOTATION`]: how the federated Job ended.
fn stopped_because(fj: &FederatedJob) -> &'static str {
    if fj.condition("Failed") {
        "the federated Job failed"
    } else {
        "the federated Job reached its completions"
    }
}

/// The shape of a local Job's manifest.
#[derive(Serialize)]
struct LocalJob<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    metadata: LocalMeta<'a>,
    spec: &'a JobSpec,
}

/// The metadata fedjob sets on a local Job.
#[derive(Serialize)]
struct LocalMeta<'a> {
    name: &'a str,
    namespace: &'a str,
    labels: BTreeMap<&'a str, &'a str>,
    annotations: BTreeMap<&'a str, &'a str>,
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
    let h = fields.iter().fold(FNV_OFFSET, |h, bytes| fnv1a(bytes, h));
    // Only a retired shard mixes in more, so every other shard's fingerprint (and revision)
    // stays what it was before retiring existed.
    if shard.state == ShardState::Retired {
        fnv1a(b"retired", h)
    } else {
        h
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a: a fixed hash, so fingerprints agree across builds and replicas.
fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes
        .iter()
        .fold(seed, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}
