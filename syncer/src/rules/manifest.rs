//! The local Job an assignment asks for: checked when it arrives, and compared with the live
//! Job to find drift.
//!
//! The scheduler renders the whole Job every time, so the syncer applies it as it is, never a
//! piece of it: completions and the template are fixed per shard and never change for an
//! existing one, so applying the full manifest never asks the API server for a change it
//! refuses (k8s-facts/03, 04, 10).

use std::collections::BTreeMap;

use fedjob_proto::names;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};

/// A checked manifest of one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The JSON object to server-side apply, as compact text: a parsed tree costs several
    /// times the memory, for every shard, and is needed only for the moment of an apply.
    pub text: String,
    /// The fields the syncer owns, to compare with the live Job (a typed Job would cost
    /// 2.6 KB of mostly empty structure per shard).
    pub owned: Owned,
}

/// The fields of a shard's Job that the syncer sets and may change after creation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    /// `spec.parallelism` (1 when unset, as the API server defaults it).
    pub parallelism: i32,
    /// `spec.suspend`.
    pub suspend: bool,
    /// `spec.activeDeadlineSeconds`, when set.
    pub active_deadline_seconds: Option<i64>,
    /// `spec.backoffLimit`, when set.
    pub backoff_limit: Option<i64>,
    /// `spec.ttlSecondsAfterFinished`, when set.
    pub ttl_seconds_after_finished: Option<i64>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

impl Owned {
    /// The owned fields of `job`.
    pub fn of(job: Job) -> Self {
        let spec = job.spec.unwrap_or_default();
        Self {
            parallelism: spec.parallelism.unwrap_or(1),
            suspend: spec.suspend.unwrap_or(false),
            active_deadline_seconds: spec.active_deadline_seconds,
            backoff_limit: spec.backoff_limit.map(i64::from),
            ttl_seconds_after_finished: spec.ttl_seconds_after_finished.map(i64::from),
            labels: job.metadata.labels.unwrap_or_default(),
            annotations: job.metadata.annotations.unwrap_or_default(),
        }
    }
}

/// Why a manifest cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The assignment carries no manifest.
    #[error("the assignment carries no manifest")]
    Empty,
    /// The text is not JSON.
    #[error("the manifest is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The JSON is not a `batch/v1` Job.
    #[error("the manifest is not a batch/v1 Job: {0}")]
    NotAJob(String),
    /// A field of the manifest contradicts the assignment.
    #[error("the manifest's {field} is {found:?} but the assignment is for {expected:?}")]
    Mismatch {
        /// The field.
        field: &'static str,
        /// What the assignment says.
        expected: String,
        /// What the manifest says.
        found: String,
    },
}

impl Manifest {
    /// Parses the manifest of an assignment for shard `namespace/name` of federated Job `job_uid`.
    ///
    /// A manifest naming another Job, namespace or federated Job is refused: applying it could
    /// overwrite something that is not this shard. fedjob's identity labels are added when the
    /// manifest lacks them, so the shard is always recognised again after a restart.
    pub fn parse(
        text: &str,
        namespace: &str,
        name: &str,
        job_uid: &str,
    ) -> Result<Self, ManifestError> {
        if text.trim().is_empty() {
            return Err(ManifestError::Empty);
        }
        let mut raw: Value = serde_json::from_str(text).map_err(ManifestError::NotJson)?;
        let Some(object) = raw.as_object_mut() else {
            return Err(ManifestError::NotAJob("not a JSON object".into()));
        };
        for (field, want) in [("apiVersion", "batch/v1"), ("kind", "Job")] {
            match object.get(field) {
                None => {
                    object.insert(field.into(), json!(want));
                }
                Some(Value::String(s)) if s == want => {}
                Some(other) => {
                    return Err(ManifestError::NotAJob(format!("{field} is {other}")));
                }
            }
        }
        let metadata = object
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| ManifestError::NotAJob("metadata is not an object".into()))?;
        for (field, expected) in [("name", name), ("namespace", namespace)] {
            match metadata.get(field).and_then(Value::as_str) {
                None | Some("") => {
                    metadata.insert(field.into(), json!(expected));
                }
                Some(found) if found == expected => {}
                Some(found) => {
                    return Err(ManifestError::Mismatch {
                        field: if field == "name" {
                            "metadata.name"
                        } else {
                            "metadata.namespace"
                        },
                        expected: expected.into(),
                        found: found.into(),
                    });
                }
            }
        }
        let labels = metadata
            .entry("labels")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| ManifestError::NotAJob("metadata.labels is not an object".into()))?;
        match labels.get(names::JOB_UID_LABEL).and_then(Value::as_str) {
            None => {
                labels.insert(names::JOB_UID_LABEL.into(), json!(job_uid));
            }
            Some(found) if found == job_uid => {}
            Some(found) => {
                return Err(ManifestError::Mismatch {
                    field: "fedjob.io/job-uid label",
                    expected: job_uid.into(),
                    found: found.into(),
                });
            }
        }
        labels.insert(
            names::MANAGED_BY_LABEL.into(),
            json!(names::MANAGED_BY_VALUE),
        );
        let job = <Job as serde::Deserialize>::deserialize(&raw)
            .map_err(|e| ManifestError::NotAJob(e.to_string()))?;
        Ok(Manifest {
            text: raw.to_string(),
            owned: Owned::of(job),
        })
    }

    /// The JSON object to apply.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.text).expect("the text was serialised from a Value")
    }

    /// The assignment revision recorded in the manifest's annotation.
    pub fn revision(&self) -> Option<u64> {
        self.owned
            .annotations
            .get(names::ASSIGNMENT_REVISION_ANNOTATION)?
            .trim()
            .parse()
            .ok()
    }
}

/// What of `live` differs from `manifest`, in the fields the syncer owns and may change, or
/// `None` when the live Job is as the manifest asks.
///
/// Only fields the API server lets change on a Job are compared (parallelism, suspend, the
/// deadlines and limits, labels and annotations); completions and the template are fixed at
/// creation and the server fills in the template, so comparing them would find drift that no
/// apply can correct. Labels and annotations others added are not drift.
pub fn drift(manifest: &Owned, live: &Job) -> Option<String> {
    let have = live.spec.as_ref();
    let have_parallelism = have.and_then(|s| s.parallelism).unwrap_or(1);
    if manifest.parallelism != have_parallelism {
        return Some(format!(
            "spec.parallelism is {have_parallelism}, the assignment says {}",
            manifest.parallelism
        ));
    }
    let have_suspend = have.and_then(|s| s.suspend).unwrap_or(false);
    if manifest.suspend != have_suspend {
        return Some(format!(
            "spec.suspend is {have_suspend}, the assignment says {}",
            manifest.suspend
        ));
    }
    let optional = [
        (
            "spec.activeDeadlineSeconds",
            manifest.active_deadline_seconds,
            have.and_then(|s| s.active_deadline_seconds),
        ),
        (
            "spec.backoffLimit",
            manifest.backoff_limit,
            have.and_then(|s| s.backoff_limit).map(i64::from),
        ),
        (
            "spec.ttlSecondsAfterFinished",
            manifest.ttl_seconds_after_finished,
            have.and_then(|s| s.ttl_seconds_after_finished)
                .map(i64::from),
        ),
    ];
    for (field, want, have) in optional {
        if want.is_some() && want != have {
            return Some(format!("{field} is {have:?}, the assignment says {want:?}"));
        }
    }
    missing_entries("label", &manifest.labels, live.metadata.labels.as_ref()).or_else(|| {
        missing_entries(
            "annotation",
            &manifest.annotations,
            live.metadata.annotations.as_ref(),
        )
    })
}

fn missing_entries(
    what: &str,
    want: &BTreeMap<String, String>,
    have: Option<&BTreeMap<String, String>>,
) -> Option<String> {
    for (key, value) in want {
        match have.and_then(|h| h.get(key)) {
            Some(v) if v == value => {}
            Some(v) => {
                return Some(format!(
                    "{what} {key} is {v:?}, the assignment says {value:?}"
                ));
            }
            None => return Some(format!("{what} {key} is missing")),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::manifest_text;

    /// The Job an API server would return for `manifest` (defaulted, with a uid and selector).
    fn live_from(manifest: &Manifest) -> Job {
        let mut raw = manifest.value();
        raw["metadata"]["uid"] = json!("local-1");
        raw["metadata"]["resourceVersion"] = json!("201");
        raw["metadata"]["labels"]["added-by-someone"] = json!("x");
        raw["spec"]["completionMode"] = json!("NonIndexed");
        raw["spec"]["selector"] = json!({"matchLabels": {"controller-uid": "local-1"}});
        raw["spec"]["template"]["metadata"] =
            json!({"labels": {"controller-uid": "local-1", "job-name": "myjob"}});
        serde_json::from_value(raw).unwrap()
    }

    #[test]
    fn parses_and_checks_identity() {
        let m = Manifest::parse(&manifest_text(3, false, 4), "default", "myjob", "uid-1").unwrap();
        assert_eq!(m.revision(), Some(4));
        assert_eq!(m.owned.parallelism, 3);

        let wrong_name = Manifest::parse(&manifest_text(3, false, 4), "default", "other", "uid-1");
        assert!(matches!(
            wrong_name,
            Err(ManifestError::Mismatch {
                field: "metadata.name",
                ..
            })
        ));
        let wrong_ns = Manifest::parse(&manifest_text(3, false, 4), "prod", "myjob", "uid-1");
        assert!(matches!(wrong_ns, Err(ManifestError::Mismatch { .. })));
        let wrong_uid = Manifest::parse(&manifest_text(3, false, 4), "default", "myjob", "uid-2");
        assert!(matches!(wrong_uid, Err(ManifestError::Mismatch { .. })));
        assert!(matches!(
            Manifest::parse("", "default", "myjob", "uid-1"),
            Err(ManifestError::Empty)
        ));
        assert!(matches!(
            Manifest::parse("{", "default", "myjob", "uid-1"),
            Err(ManifestError::NotJson(_))
        ));
        assert!(matches!(
            Manifest::parse(r#"{"kind": "Pod"}"#, "default", "myjob", "uid-1"),
            Err(ManifestError::NotAJob(_))
        ));
    }

    #[test]
    fn fills_in_missing_identity() {
        let m = Manifest::parse(r#"{"spec": {"parallelism": 1}}"#, "ns", "j", "u").unwrap();
        let raw = m.value();
        assert_eq!(raw["apiVersion"], "batch/v1");
        assert_eq!(raw["kind"], "Job");
        assert_eq!(raw["metadata"]["name"], "j");
        assert_eq!(raw["metadata"]["namespace"], "ns");
        assert_eq!(raw["metadata"]["labels"]["fedjob.io/job-uid"], "u");
        assert_eq!(raw["metadata"]["labels"]["fedjob.io/managed-by"], "fedjob");
    }

    #[test]
    fn a_freshly_applied_job_has_no_drift() {
        let m = Manifest::parse(&manifest_text(3, false, 4), "default", "myjob", "uid-1").unwrap();
        assert_eq!(drift(&m.owned, &live_from(&m)), None);
    }

    #[test]
    fn drift_in_each_owned_field() {
        let m = Manifest::parse(&manifest_text(3, false, 4), "default", "myjob", "uid-1").unwrap();
        type Edit = Box<dyn Fn(&mut Job)>;
        let edits: Vec<(&str, Edit)> = vec![
            (
                "spec.parallelism",
                Box::new(|j: &mut Job| j.spec.as_mut().unwrap().parallelism = Some(5)),
            ),
            (
                "spec.suspend",
                Box::new(|j: &mut Job| j.spec.as_mut().unwrap().suspend = Some(true)),
            ),
            (
                "spec.backoffLimit",
                Box::new(|j: &mut Job| j.spec.as_mut().unwrap().backoff_limit = Some(1)),
            ),
            (
                "label app",
                Box::new(|j: &mut Job| {
                    j.metadata.labels.as_mut().unwrap().remove("app");
                }),
            ),
            (
                "label fedjob.io/job",
                Box::new(|j: &mut Job| {
                    j.metadata
                        .labels
                        .as_mut()
                        .unwrap()
                        .insert("fedjob.io/job".into(), "other".into());
                }),
            ),
            (
                "annotation fedjob.io/assignment-revision",
                Box::new(|j: &mut Job| {
                    j.metadata
                        .annotations
                        .as_mut()
                        .unwrap()
                        .insert("fedjob.io/assignment-revision".into(), "3".into());
                }),
            ),
        ];
        for (what, edit) in edits {
            let mut live = live_from(&m);
            edit(&mut live);
            let found = drift(&m.owned, &live).unwrap_or_else(|| panic!("no drift for {what}"));
            assert!(found.contains(what), "{what}: {found}");
        }
    }

    #[test]
    fn immutable_and_server_filled_fields_are_not_drift() {
        let m = Manifest::parse(&manifest_text(3, false, 4), "default", "myjob", "uid-1").unwrap();
        let mut live = live_from(&m);
        let spec = live.spec.as_mut().unwrap();
        spec.completions = Some(9);
        spec.template.spec.as_mut().unwrap().containers[0].image = Some("other".into());
        spec.ttl_seconds_after_finished = Some(100);
        assert_eq!(drift(&m.owned, &live), None);
    }

    #[test]
    fn a_new_revision_is_drift() {
        let old =
            Manifest::parse(&manifest_text(3, false, 4), "default", "myjob", "uid-1").unwrap();
        let new = Manifest::parse(&manifest_text(3, true, 5), "default", "myjob", "uid-1").unwrap();
        assert!(drift(&new.owned, &live_from(&old)).is_some());
    }
}
