//! Reading and validating a federated Job as the Kubernetes API server would (SPEC §2).
//!
//! Errors are collected, not stopped at the first, and printed the way the API server prints
//! them (`Job.batch "NAME" is invalid: FIELD: Invalid value: VALUE: DETAIL`), with the rule texts
//! of `k8s.io/apimachinery`'s validation, so a message a user knows from kubectl reads the same
//! here. Where fedjob is stricter than a plain Job (name length, Indexed mode, preferences) the
//! message says why.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Map, Value};

use super::preferences::{Preferences, PreferencesError};
use fedjob_proto::names::PREFERENCES_ANNOTATION;

mod decode;
mod invalid;

pub use decode::{FieldValidation, decode_job, parse_manifest, unknown_fields};
use invalid::{Errors, compact, go_quote, shorten};
pub use invalid::{FieldError, FieldErrorKind, Invalid};

/// Longest federated Job name: shards are named `NAME-N` with N up to 6 digits, and every shard's
/// name must fit the 63-character `job-name` label its pods get.
pub const MAX_NAME: usize = 56;
/// Most labels on a Job (and, separately, on its pod template): every shard carries them.
pub const MAX_LABELS: usize = 64;
/// Most annotations on a Job (and, separately, on its pod template).
pub const MAX_ANNOTATIONS: usize = 64;
/// Largest total size of the annotations of one object, as the API server enforces.
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;
/// Largest manifest accepted, the API server's request body limit.
pub const MAX_MANIFEST_BYTES: usize = 3 * 1024 * 1024;

// ------------------------------------------------------------------ validating

/// Create-time validation of a decoded Job, every error at once.
pub fn validate_new(job: &Job) -> Result<(), Invalid> {
    let mut errors = Errors::new(job);
    validate(job, &mut errors);
    errors.finish()
}

/// Update-time validation: everything of [`validate_new`], plus `spec.template`,
/// `spec.selector` and `spec.completionMode` immutable, and the same name, namespace and uid.
/// Unlike a plain Job, `completions` and `parallelism` may change: the federation keeps the
/// totals (SPEC §4). A work queue cannot become a Job with completions, nor the reverse.
pub fn validate_update(old: &Job, new: &Job) -> Result<(), Invalid> {
    let mut errors = Errors::new(new);
    validate(new, &mut errors);
    let (o, n) = (&old.metadata, &new.metadata);
    let identity = [
        ("metadata.name", &o.name, &n.name),
        ("metadata.namespace", &o.namespace, &n.namespace),
    ];
    for (field, before, after) in identity {
        if before != after {
            errors.invalid(field, after.as_deref().unwrap_or(""), "field is immutable");
        }
    }
    // A manifest usually carries no uid; one that does must be this Job's.
    if let Some(uid) = n.uid.as_deref().filter(|u| !u.is_empty())
        && o.uid.as_deref() != Some(uid)
    {
        errors.invalid("metadata.uid", uid, "field is immutable");
    }
    let empty = JobSpec::default();
    let os = old.spec.as_ref().unwrap_or(&empty);
    let ns = new.spec.as_ref().unwrap_or(&empty);
    if !same(&os.template, &ns.template) {
        let value = Some(shorten(&compact(&ns.template)));
        errors.add(
            "spec.template",
            FieldErrorKind::Invalid,
            value,
            "field is immutable",
        );
    }
    if !same(&os.selector, &ns.selector) {
        let value = Some(
            ns.selector
                .as_ref()
                .map_or("null".into(), |s| shorten(&compact(s))),
        );
        errors.add(
            "spec.selector",
            FieldErrorKind::Invalid,
            value,
            "field is immutable",
        );
    }
    let mode = |s: &JobSpec| {
        s.completion_mode
            .clone()
            .unwrap_or_else(|| "NonIndexed".into())
    };
    if mode(os) != mode(ns) {
        errors.invalid("spec.completionMode", &mode(ns), "field is immutable");
    }
    if os.completions.is_some() != ns.completions.is_some() {
        let value = Some(ns.completions.map_or("null".into(), |c| c.to_string()));
        let detail = "may be changed but not set or removed: a work queue (no completions) and a \
                      Job with completions run their shards differently";
        errors.add("spec.completions", FieldErrorKind::Invalid, value, detail);
    }
    errors.finish()
}

fn validate(job: &Job, errors: &mut Errors) {
    validate_meta(job, errors);
    match &job.spec {
        Some(spec) => validate_spec(spec, errors),
        None => errors.required("spec", ""),
    }
}

fn validate_meta(job: &Job, errors: &mut Errors) {
    let meta = &job.metadata;
    if meta.generate_name.as_deref().is_some_and(|g| !g.is_empty()) {
        let detail = "not supported: a federated Job needs a fixed name, which its shards share";
        errors.add(
            "metadata.generateName",
            FieldErrorKind::Forbidden,
            None,
            detail,
        );
    }
    match meta.name.as_deref() {
        None | Some("") => errors.required("metadata.name", "name is required"),
        Some(name) => {
            for rule in dns1123_subdomain(name) {
                errors.invalid("metadata.name", name, rule);
            }
            if name.len() > MAX_NAME && name.len() <= 253 {
                let detail = format!(
                    "must be no more than {MAX_NAME} characters: shards are named NAME-N, and \
                     every shard's name must fit the 63-character job-name label of its pods"
                );
                errors.invalid("metadata.name", name, detail);
            }
        }
    }
    match meta.namespace.as_deref() {
        None | Some("") => errors.required("metadata.namespace", ""),
        Some(ns) => {
            for rule in dns1123_label(ns) {
                errors.invalid("metadata.namespace", ns, rule);
            }
        }
    }
    validate_labels("metadata.labels", meta.labels.as_ref(), errors);
    validate_annotations("metadata.annotations", meta.annotations.as_ref(), errors);
    if let Some(value) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(PREFERENCES_ANNOTATION))
    {
        validate_preferences(value, errors);
    }
}

fn validate_preferences(value: &str, errors: &mut Errors) {
    let Err(e) = Preferences::parse(value) else {
        return;
    };
    let mut field = format!("metadata.annotations[{PREFERENCES_ANNOTATION}]");
    if !e.field().is_empty() {
        field.push('.');
        field.push_str(e.field());
    }
    errors.add(field, FieldErrorKind::Invalid, None, preferences_detail(&e));
}

/// The preferences error without its leading field path, which the field already names.
fn preferences_detail(e: &PreferencesError) -> String {
    let text = e.to_string();
    let prefix = format!("{}: ", e.field());
    match text.strip_prefix(&prefix) {
        Some(rest) if !e.field().is_empty() => rest.to_owned(),
        _ => text,
    }
}

fn validate_labels(field: &str, labels: Option<&BTreeMap<String, String>>, errors: &mut Errors) {
    let Some(labels) = labels else { return };
    if labels.len() > MAX_LABELS {
        let value = Some(labels.len().to_string());
        let detail = format!("must have at most {MAX_LABELS} items");
        errors.add(field, FieldErrorKind::TooMany, value, detail);
    }
    for (key, value) in labels {
        for rule in qualified_name(key) {
            errors.invalid(field, key, rule);
        }
        for rule in label_value(value) {
            errors.invalid(field, value, rule);
        }
    }
}

fn validate_annotations(
    field: &str,
    annotations: Option<&BTreeMap<String, String>>,
    errors: &mut Errors,
) {
    let Some(annotations) = annotations else {
        return;
    };
    if annotations.len() > MAX_ANNOTATIONS {
        let value = Some(annotations.len().to_string());
        let detail = format!("must have at most {MAX_ANNOTATIONS} items");
        errors.add(field, FieldErrorKind::TooMany, value, detail);
    }
    for key in annotations.keys() {
        // Case does not matter in annotation keys, as in the API server.
        for rule in qualified_name(&key.to_lowercase()) {
            errors.invalid(field, key, rule);
        }
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_ANNOTATION_BYTES {
        let detail = format!("must have at most {MAX_ANNOTATION_BYTES} bytes");
        errors.add(field, FieldErrorKind::TooLong, None, detail);
    }
}

fn validate_spec(spec: &JobSpec, errors: &mut Errors) {
    let counts = [
        ("spec.parallelism", spec.parallelism.map(i64::from)),
        ("spec.completions", spec.completions.map(i64::from)),
        ("spec.backoffLimit", spec.backoff_limit.map(i64::from)),
        ("spec.activeDeadlineSeconds", spec.active_deadline_seconds),
        (
            "spec.ttlSecondsAfterFinished",
            spec.ttl_seconds_after_finished.map(i64::from),
        ),
    ];
    for (field, value) in counts {
        if let Some(v) = value.filter(|v| *v < 0) {
            let detail = "must be greater than or equal to 0";
            errors.add(field, FieldErrorKind::Invalid, Some(v.to_string()), detail);
        }
    }
    match spec.completion_mode.as_deref() {
        None | Some("NonIndexed") => {}
        Some("Indexed") => errors.add(
            "spec.completionMode",
            FieldErrorKind::NotSupported,
            Some(go_quote("Indexed")),
            "not supported yet: split naively, every cluster would run the same completion \
             indexes 0…n-1; use NonIndexed",
        ),
        Some(other) => errors.add(
            "spec.completionMode",
            FieldErrorKind::NotSupported,
            Some(go_quote(other)),
            "supported values: \"NonIndexed\"",
        ),
    }
    let template_meta = spec.template.metadata.as_ref();
    let template_labels = template_meta.and_then(|m| m.labels.as_ref());
    validate_labels("spec.template.metadata.labels", template_labels, errors);
    let template_annotations = template_meta.and_then(|m| m.annotations.as_ref());
    validate_annotations(
        "spec.template.metadata.annotations",
        template_annotations,
        errors,
    );
    validate_selector(spec, errors);
    validate_pod(spec, errors);
}

/// As the API server: a selector of one's own needs `manualSelector: true` and must select the
/// template's labels; otherwise the selector is generated and may not be given.
fn validate_selector(spec: &JobSpec, errors: &mut Errors) {
    let manual = spec.manual_selector == Some(true);
    let Some(selector) = &spec.selector else {
        if manual {
            errors.required("spec.selector", "");
        }
        return;
    };
    if !manual {
        let detail = "`selector` not auto-generated (set spec.manualSelector: true to choose the \
                      selector yourself)";
        errors.add(
            "spec.selector",
            FieldErrorKind::Invalid,
            Some(compact(selector)),
            detail,
        );
        return;
    }
    let before = errors.len();
    validate_label_selector(selector, errors);
    if errors.len() > before {
        return;
    }
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if !selector_matches(selector, &labels) {
        let value = Some(compact(&labels));
        let detail = "`selector` does not match template `labels`";
        errors.add(
            "spec.template.metadata.labels",
            FieldErrorKind::Invalid,
            value,
            detail,
        );
    }
}

fn validate_label_selector(selector: &LabelSelector, errors: &mut Errors) {
    for (key, value) in selector.match_labels.iter().flatten() {
        for rule in qualified_name(key) {
            errors.invalid("spec.selector.matchLabels", key, rule);
        }
        for rule in label_value(value) {
            errors.invalid("spec.selector.matchLabels", value, rule);
        }
    }
    for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
        let field = format!("spec.selector.matchExpressions[{i}]");
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.required(
                format!("{field}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.add(
                format!("{field}.values"),
                FieldErrorKind::Forbidden,
                None,
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.add(
                format!("{field}.operator"),
                FieldErrorKind::NotSupported,
                Some(go_quote(other)),
                "supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
            ),
        }
        for rule in qualified_name(&e.key) {
            errors.invalid(format!("{field}.key"), &e.key, rule);
        }
        for (j, v) in values.iter().enumerate() {
            for rule in label_value(v) {
                errors.invalid(format!("{field}.values[{j}]"), v, rule);
            }
        }
    }
}

/// Whether a (valid) label selector selects `labels`; an empty selector selects everything.
fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        super::labels::holds(&e.operator, labels.get(&e.key), values)
    });
    by_label && by_expression
}

fn validate_pod(spec: &JobSpec, errors: &mut Errors) {
    let pod = spec.template.spec.as_ref();
    match pod.and_then(|p| p.restart_policy.as_deref()) {
        Some("Never" | "OnFailure") => {}
        // The API server's words: an unset policy defaults to Always, which a Job refuses.
        _ => errors.required(
            "spec.template.spec.restartPolicy",
            "valid values: \"OnFailure\", \"Never\"",
        ),
    }
    let containers = pod.map(|p| p.containers.as_slice()).unwrap_or_default();
    if containers.is_empty() {
        errors.required("spec.template.spec.containers", "");
    }
    let init = pod
        .and_then(|p| p.init_containers.as_deref())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    validate_containers("spec.template.spec.initContainers", init, &mut seen, errors);
    validate_containers(
        "spec.template.spec.containers",
        containers,
        &mut seen,
        errors,
    );
}

fn validate_containers<'a>(
    field: &str,
    containers: &'a [Container],
    seen: &mut BTreeSet<&'a str>,
    errors: &mut Errors,
) {
    for (i, c) in containers.iter().enumerate() {
        let name_field = format!("{field}[{i}].name");
        if c.name.is_empty() {
            errors.required(name_field, "");
        } else {
            let rules = dns1123_label(&c.name);
            let valid = rules.is_empty();
            for rule in rules {
                errors.invalid(name_field.clone(), &c.name, rule);
            }
            if valid && !seen.insert(&c.name) {
                let value = Some(go_quote(&c.name));
                errors.add(name_field, FieldErrorKind::Duplicate, value, "");
            }
        }
        match c.image.as_deref() {
            None | Some("") => errors.required(format!("{field}[{i}].image"), ""),
            Some(image) if image.trim() != image => errors.invalid(
                format!("{field}[{i}].image"),
                image,
                "must not have leading or trailing whitespace",
            ),
            Some(_) => {}
        }
    }
}

// ------------------------------------------------------------------ name rules

/// The rules a DNS-1123 label (namespace, container name) or subdomain (object name) breaks,
/// in the API server's words; empty when valid. One implementation, shared with every binary.
pub use fedjob_proto::names::{dns1123_label, dns1123_subdomain};

/// The rules a label key or value breaks (one implementation, in [`super::labels`]).
pub use super::labels::{label_value, qualified_name};

/// Whether two values are the same as the API server's semantic equality sees them: an absent
/// list or map equals an empty one.
fn same<T: serde::Serialize + PartialEq>(a: &T, b: &T) -> bool {
    if a == b {
        return true;
    }
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => normalized(a) == normalized(b),
        _ => false,
    }
}

/// Objects whose emptiness means nothing: maps (Go's nil and empty maps compare equal) and
/// `metadata`, which Go embeds by value, so absent and empty are the same there.
const MAP_FIELDS: [&str; 7] = [
    "labels",
    "annotations",
    "nodeSelector",
    "matchLabels",
    "limits",
    "requests",
    "metadata",
];

fn normalized(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let map: Map<String, Value> = map
                .into_iter()
                .map(|(k, v)| (k, normalized(v)))
                .filter(|(k, v)| match v {
                    Value::Null => false,
                    Value::Array(a) => !a.is_empty(),
                    Value::Object(o) => !(o.is_empty() && MAP_FIELDS.contains(&k.as_str())),
                    _ => true,
                })
                .collect();
            Value::Object(map)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests;
