//! What an agent must do with a shard: the action and the complete local Job to apply.
//!
//! The manifest is rendered whole every time (never as a partial patch) because the syncer
//! applies it with server-side apply: fields it stops sending would be removed, and a removed
//! template field is a change the API server refuses.

use std::collections::BTreeMap;

use fedjob_proto::names;
use fedjob_proto::v1::AssignmentAction;
use k8s_openapi::api::batch::v1::Job;
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
pub fn manifest_text(fj: &FederatedJob, shard: &Shard) -> String {
    ManifestTemplate::of(fj).render(shard)
}

/// What the manifests of every shard of one version of a federated Job share, serialized once.
///
/// Every agent session renders each shard of its cluster, so at 100 clusters a Job's pod
/// template was serialized 100 times per change (15 % of the scheduler's CPU under load);
/// rendering a shard now writes only its name, counts, revision and epoch around this text.
/// The syncer reads manifests as JSON objects, so where fedjob's fields go among the user's
/// makes no difference.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestTemplate {
    /// `"namespace":…,"labels":{…},"annotations":{` and the Job's own annotations, each
    /// followed by a comma, except the ones fedjob sets on every shard.
    metadata: String,
    /// The Job's own `fedjob.io/stopped` annotation as a JSON member, which a retired shard's
    /// replaces.
    stopped: Option<String>,
    /// The spec's members but the counts and `suspend`, without braces; may be empty.
    spec: String,
    /// The Job's `spec.suspend`.
    suspended: bool,
    /// Why a retired shard was stopped.
    stopped_because: &'static str,
}

impl ManifestTemplate {
    /// The template of `fj` as it is now.
    pub fn of(fj: &FederatedJob) -> Self {
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
        let mut metadata = String::from("\"namespace\":");
        push_json(&mut metadata, fj.namespace());
        metadata.push_str(",\"labels\":");
        push_json(&mut metadata, &labels);
        metadata.push_str(",\"annotations\":{");
        let mut stopped = None;
        for (k, v) in meta.annotations.iter().flatten() {
            let mut member = String::new();
            push_json(&mut member, k);
            member.push(':');
            push_json(&mut member, v);
            match k.as_str() {
                names::ASSIGNMENT_REVISION_ANNOTATION | names::EPOCH_ANNOTATION => {}
                names::STOPPED_ANNOTATION => stopped = Some(member),
                _ => {
                    metadata.push_str(&member);
                    metadata.push(',');
                }
            }
        }

        let mut spec = fj.spec().clone();
        if spec.manual_selector != Some(true) {
            spec.selector = None;
            spec.manual_selector = None;
        }
        let suspended = spec.suspend.unwrap_or(false);
        spec.parallelism = None;
        spec.completions = None;
        spec.suspend = None;
        let mut spec_text = String::new();
        push_json(&mut spec_text, &spec);
        let spec_members = spec_text
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or_default()
            .to_owned();
        Self {
            metadata,
            stopped,
            spec: spec_members,
            suspended,
            stopped_because: stopped_because(fj),
        }
    }

    /// The manifest of `shard`, as [`manifest_text`] renders it.
    pub fn render(&self, shard: &Shard) -> String {
        use std::fmt::Write as _;
        let retired = shard.state == ShardState::Retired;
        let mut out =
            String::with_capacity(self.metadata.len() + self.spec.len() + shard.name.len() + 200);
        out.push_str("{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"metadata\":{\"name\":");
        push_json(&mut out, &shard.name);
        out.push(',');
        out.push_str(&self.metadata);
        let _ = write!(
            out,
            "\"{}\":\"{}\",\"{}\":\"{}\"",
            names::ASSIGNMENT_REVISION_ANNOTATION,
            shard.revision,
            names::EPOCH_ANNOTATION,
            shard.epoch
        );
        if retired {
            let _ = write!(
                out,
                ",\"{}\":\"{}\"",
                names::STOPPED_ANNOTATION,
                self.stopped_because
            );
        } else if let Some(member) = &self.stopped {
            out.push(',');
            out.push_str(member);
        }
        let _ = write!(out, "}}}},\"spec\":{{\"parallelism\":{}", shard.parallelism);
        if let Some(completions) = shard.completions {
            let _ = write!(out, ",\"completions\":{completions}");
        }
        let _ = write!(out, ",\"suspend\":{}", retired || self.suspended);
        if !self.spec.is_empty() {
            out.push(',');
            out.push_str(&self.spec);
        }
        out.push_str("}}");
        out
    }
}

/// Appends `value` as compact JSON.
fn push_json<T: Serialize + ?Sized>(out: &mut String, value: &T) {
    // Strings, string-keyed maps and k8s-openapi types: serializing cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
}

/// The value of [`names::STOPPED_ANNOTATION`]: how the federated Job ended.
fn stopped_because(fj: &FederatedJob) -> &'static str {
    if fj.condition("Failed") {
        "the federated Job failed"
    } else {
        "the federated Job reached its completions"
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::model::fixtures;
    use crate::model::job::PackedTime;

    fn shard(name: &str, parallelism: i32, completions: Option<i32>, state: ShardState) -> Shard {
        Shard {
            cluster: "c1".into(),
            name: name.into(),
            completions,
            parallelism,
            epoch: 7,
            state,
            stop_reason: None,
            revision: 3,
            fingerprint: 0,
            seen: false,
            observed: None,
            moved: 0,
            spilled_at: PackedTime::NONE,
        }
    }

    #[test]
    fn a_shard_gets_the_jobs_spec_with_its_own_counts_and_fedjobs_labels() {
        let mut fj = fixtures::job(6, Some(12), None);
        fj.job.metadata.labels = Some([("team".to_owned(), "ml".to_owned())].into());
        fj.job.spec.as_mut().unwrap().backoff_limit = Some(4);
        let manifest = manifest(&fj, &shard("myjob-2", 2, Some(5), ShardState::Active));
        assert_eq!(
            manifest,
            json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {
                    "name": "myjob-2", "namespace": "default",
                    "labels": {
                        "team": "ml",
                        "fedjob.io/job": "myjob",
                        "fedjob.io/job-uid": "uid-1",
                        "fedjob.io/managed-by": "fedjob",
                    },
                    "annotations": {"fedjob.io/assignment-revision": "3", "fedjob.io/epoch": "7"},
                },
                "spec": {
                    "parallelism": 2, "completions": 5, "suspend": false, "backoffLimit": 4,
                    "template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "w", "image": "busybox"}]}},
                },
            })
        );
    }

    /// A label or annotation key among the user's or fedjob's.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(names::JOB_LABEL.to_owned()),
            Just(names::MANAGED_BY_LABEL.to_owned()),
            Just(names::ASSIGNMENT_REVISION_ANNOTATION.to_owned()),
            Just(names::EPOCH_ANNOTATION.to_owned()),
            Just(names::STOPPED_ANNOTATION.to_owned()),
            "[a-z]{1,3}(/[a-z\"\\\\]{1,3})?",
        ]
    }

    proptest! {
        /// For any Job and shard, the manifest is the Job as SPEC §3 renders a shard: the
        /// Job's metadata reduced to name, namespace, labels and annotations with fedjob's
        /// over the user's, its spec with the shard's counts, suspended when the Job or the
        /// shard is, and without the generated selector.
        #[test]
        fn renders_the_job_with_the_shards_counts(
            labels in proptest::collection::btree_map(key(), "[a-z]{0,3}", 0..4),
            annotations in proptest::collection::btree_map(key(), "[a-z\"]{0,3}", 0..4),
            parallelism in 0..50i32,
            completions in proptest::option::of(0..50i32),
            suspend in proptest::option::of(any::<bool>()),
            manual_selector in proptest::option::of(any::<bool>()),
            retired in any::<bool>(),
            failed in any::<bool>(),
        ) {
            let mut fj = fixtures::job(9, Some(30), None);
            fj.job.metadata.labels = Some(labels.clone());
            fj.job.metadata.annotations = Some(annotations.clone());
            let spec = fj.job.spec.as_mut().unwrap();
            spec.suspend = suspend;
            spec.manual_selector = manual_selector;
            spec.selector = Some(serde_json::from_value(json!({"matchLabels": {"a": "b"}})).unwrap());
            if failed {
                let status = json!({"conditions": [{"type": "Failed", "status": "True"}]});
                fj.job.status = Some(serde_json::from_value(status).unwrap());
            }
            let state = if retired { ShardState::Retired } else { ShardState::Active };
            let s = shard("myjob-4", parallelism, completions, state);

            let mut expected = fj.job.clone();
            expected.metadata = Default::default();
            expected.metadata.name = Some("myjob-4".into());
            expected.metadata.namespace = Some("default".into());
            let mut labels = labels;
            labels.insert(names::JOB_LABEL.into(), "myjob".into());
            labels.insert(names::JOB_UID_LABEL.into(), "uid-1".into());
            labels.insert(names::MANAGED_BY_LABEL.into(), names::MANAGED_BY_VALUE.into());
            expected.metadata.labels = Some(labels);
            let mut annotations = annotations;
            annotations.insert(names::ASSIGNMENT_REVISION_ANNOTATION.into(), "3".into());
            annotations.insert(names::EPOCH_ANNOTATION.into(), "7".into());
            if retired {
                let why = if failed {
                    "the federated Job failed"
                } else {
                    "the federated Job reached its completions"
                };
                annotations.insert(names::STOPPED_ANNOTATION.into(), why.into());
            }
            expected.metadata.annotations = Some(annotations);
            expected.status = None;
            let spec = expected.spec.as_mut().unwrap();
            spec.parallelism = Some(parallelism);
            spec.completions = completions;
            spec.suspend = Some(retired || suspend == Some(true));
            if manual_selector != Some(true) {
                spec.selector = None;
                spec.manual_selector = None;
            }
            let mut expected = serde_json::to_value(&expected).unwrap();
            expected["apiVersion"] = json!("batch/v1");
            expected["kind"] = json!("Job");

            let text = ManifestTemplate::of(&fj).render(&s);
            let rendered: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(rendered, expected);
        }
    }
}
