//! Reading and validating a federated Job as the Kubernetes API server would (SPEC §2).
//!
//! Errors are collected, not stopped at the first, and printed the way the API server prints
//! them (`Job.batch "NAME" is invalid: FIELD: Invalid value: VALUE: DETAIL`), so a message a user
//! knows from kubectl reads the same here.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::batch::v1::Job;
use serde_json::Value;

use super::preferences::Preferences;
use fedjob_proto::names::PREFERENCES_ANNOTATION;

/// Longest federated Job name: shards are named `NAME-N`, and a Job's name must fit the
/// 63-character `job-name` label of its pods.
pub const MAX_NAME: usize = 56;
/// Most labels (and, separately, annotations) on a Job.
pub const MAX_LABELS: usize = 64;
/// Largest total size of a Job's annotations, as the API server enforces.
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// The kind of a field error, as the API server names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is missing.
    Required,
    /// A value breaks a rule.
    Invalid,
    /// A value is not one of those supported.
    NotSupported,
    /// A field may not be set.
    Forbidden,
    /// A value is too long.
    TooLong,
    /// A value repeats one that must be unique.
    Duplicate,
}

/// One offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.template.spec.restartPolicy`.
    pub field: String,
    /// What kind of error.
    pub kind: FieldErrorKind,
    /// The offending value as the API server prints it, if any.
    pub value: Option<String>,
    /// The rule.
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value.as_deref().unwrap_or("null");
        write!(f, "{}: ", self.field)?;
        match self.kind {
            FieldErrorKind::Required => write!(f, "Required value")?,
            FieldErrorKind::Invalid => write!(f, "Invalid value: {value}")?,
            FieldErrorKind::NotSupported => write!(f, "Unsupported value: {value}")?,
            FieldErrorKind::Forbidden => write!(f, "Forbidden")?,
            FieldErrorKind::TooLong => write!(f, "Too long: {value}")?,
            FieldErrorKind::Duplicate => write!(f, "Duplicate value: {value}")?,
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// A refused Job, with every offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    name: String,
    causes: Vec<FieldError>,
}

impl Invalid {
    /// A refusal of Job `name` for one field.
    pub fn one(
        name: &str,
        field: impl Into<String>,
        kind: FieldErrorKind,
        value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        let cause = FieldError {
            field: field.into(),
            kind,
            value,
            detail: detail.into(),
        };
        Self {
            name: name.to_owned(),
            causes: vec![cause],
        }
    }

    /// Every offending field.
    pub fn causes(&self) -> &[FieldError] {
        &self.causes
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Job.batch \"{}\" is invalid: ", self.name)?;
        match self.causes.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                let all: Vec<String> = many.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", all.join(", "))
            }
        }
    }
}

/// Collects field errors of one Job.
struct Errors {
    name: String,
    causes: Vec<FieldError>,
}

impl Errors {
    fn new(job: &Job) -> Self {
        Self {
            name: job.metadata.name.clone().unwrap_or_default(),
            causes: Vec::new(),
        }
    }

    fn add(
        &mut self,
        field: impl Into<String>,
        kind: FieldErrorKind,
        value: Option<String>,
        detail: impl Into<String>,
    ) {
        self.causes.push(FieldError {
            field: field.into(),
            kind,
            value,
            detail: detail.into(),
        });
    }

    fn finish(self) -> Result<(), Invalid> {
        if self.causes.is_empty() {
            Ok(())
        } else {
            Err(Invalid {
                name: self.name,
                causes: self.causes,
            })
        }
    }
}

/// YAML or JSON text → exactly one JSON object.
pub fn parse_manifest(text: &str) -> Result<Value, Invalid> {
    let refuse =
        |detail: String| Invalid::one("", "manifest", FieldErrorKind::Invalid, None, detail);
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document)
            .map_err(|e| refuse(format!("not valid YAML or JSON: {e}")))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    match documents.len() {
        0 => Err(refuse("the manifest is empty".into())),
        1 => {
            let value: Value = serde_json::to_value(documents.remove(0))
                .map_err(|e| refuse(format!("cannot be read as JSON: {e}")))?;
            if value.is_object() {
                Ok(value)
            } else {
                Err(refuse("must be a Job object".into()))
            }
        }
        n => Err(refuse(format!(
            "holds {n} documents; give one Job per request"
        ))),
    }
}

/// A JSON object → a typed Job in `request_namespace` (or the manifest's own namespace).
pub fn decode_job(mut value: Value, request_namespace: &str) -> Result<Job, Invalid> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if api_version != "batch/v1" {
        return Err(Invalid::one(
            &name,
            "apiVersion",
            FieldErrorKind::NotSupported,
            Some(format!("{api_version:?}")),
            "supported values: \"batch/v1\"",
        ));
    }
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "Job" {
        return Err(Invalid::one(
            &name,
            "kind",
            FieldErrorKind::NotSupported,
            Some(format!("{kind:?}")),
            "supported values: \"Job\"",
        ));
    }
    if let Some(obj) = value.as_object_mut() {
        // Status is the federation's to write; a manifest's status is ignored, as on create.
        obj.remove("status");
    }
    let mut job: Job = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        Invalid::one(
            &name,
            path,
            FieldErrorKind::Invalid,
            None,
            e.inner().to_string(),
        )
    })?;
    let requested = if request_namespace.is_empty() {
        None
    } else {
        Some(request_namespace)
    };
    match (
        job.metadata
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty()),
        requested,
    ) {
        (Some(own), Some(req)) if own != req => {
            return Err(Invalid::one(
                &name,
                "metadata.namespace",
                FieldErrorKind::Invalid,
                Some(format!("{own:?}")),
                format!(
                    "the namespace from the provided object \"{own}\" does not match the namespace \"{req}\". You must pass '--namespace={own}' to perform this operation."
                ),
            ));
        }
        (Some(_), _) => {}
        (None, req) => job.metadata.namespace = Some(req.unwrap_or("default").to_owned()),
    }
    Ok(job)
}

/// Everything a new Job must satisfy.
pub fn validate_new(job: &Job) -> Result<(), Invalid> {
    let mut errors = Errors::new(job);
    validate_meta(job, &mut errors);
    validate_spec(job, &mut errors);
    errors.finish()
}

/// Everything an updated Job must satisfy, including the fields that may not change.
/// Unlike a plain Job, `completions` and `parallelism` may change: the federation keeps the totals.
pub fn validate_update(old: &Job, new: &Job) -> Result<(), Invalid> {
    let mut errors = Errors::new(new);
    validate_meta(new, &mut errors);
    validate_spec(new, &mut errors);
    let (o, n) = (
        old.spec.clone().unwrap_or_default(),
        new.spec.clone().unwrap_or_default(),
    );
    if o.template != n.template {
        let value = serde_json::to_string(&n.template).unwrap_or_default();
        errors.add(
            "spec.template",
            FieldErrorKind::Invalid,
            Some(shorten(&value)),
            "field is immutable",
        );
    }
    if o.selector != n.selector {
        let value = serde_json::to_string(&n.selector).unwrap_or_default();
        errors.add(
            "spec.selector",
            FieldErrorKind::Invalid,
            Some(shorten(&value)),
            "field is immutable",
        );
    }
    if o.completion_mode != n.completion_mode {
        let value = format!("{:?}", n.completion_mode.unwrap_or_default());
        errors.add(
            "spec.completionMode",
            FieldErrorKind::Invalid,
            Some(value),
            "field is immutable",
        );
    }
    if o.completions.is_some() != n.completions.is_some() {
        errors.add(
            "spec.completions",
            FieldErrorKind::Invalid,
            Some(n.completions.map_or("null".into(), |c| c.to_string())),
            "cannot be set or removed after creation (a Job with completions cannot become a work queue, nor the reverse)",
        );
    }
    errors.finish()
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 200 {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(200).collect::<String>())
    }
}

fn validate_meta(job: &Job, errors: &mut Errors) {
    let meta = &job.metadata;
    match meta.name.as_deref() {
        None | Some("") => errors.add(
            "metadata.name",
            FieldErrorKind::Required,
            None,
            "name is required (generateName is not supported)",
        ),
        Some(name) => {
            if let Err(rule) = dns1123_subdomain(name) {
                errors.add(
                    "metadata.name",
                    FieldErrorKind::Invalid,
                    Some(format!("{name:?}")),
                    rule,
                );
            } else if name.len() > MAX_NAME {
                errors.add(
                    "metadata.name",
                    FieldErrorKind::Invalid,
                    Some(format!("{name:?}")),
                    format!("must be no more than {MAX_NAME} characters: shards are named NAME-N and a Job's name must fit the 63-character job-name label"),
                );
            }
        }
    }
    if let Some(ns) = meta.namespace.as_deref()
        && let Err(rule) = dns1123_label(ns)
    {
        errors.add(
            "metadata.namespace",
            FieldErrorKind::Invalid,
            Some(format!("{ns:?}")),
            rule,
        );
    }
    if let Some(labels) = &meta.labels {
        if labels.len() > MAX_LABELS {
            errors.add(
                "metadata.labels",
                FieldErrorKind::TooLong,
                Some(labels.len().to_string()),
                format!("must have at most {MAX_LABELS} labels"),
            );
        }
        for (k, v) in labels {
            if let Err(rule) = qualified_name(k) {
                errors.add(
                    "metadata.labels",
                    FieldErrorKind::Invalid,
                    Some(format!("{k:?}")),
                    rule,
                );
            }
            if let Err(rule) = label_value(v) {
                errors.add(
                    format!("metadata.labels[{k}]"),
                    FieldErrorKind::Invalid,
                    Some(format!("{v:?}")),
                    rule,
                );
            }
        }
    }
    if let Some(annotations) = &meta.annotations {
        validate_annotations(annotations, errors);
    }
}

fn validate_annotations(annotations: &BTreeMap<String, String>, errors: &mut Errors) {
    if annotations.len() > MAX_LABELS {
        errors.add(
            "metadata.annotations",
            FieldErrorKind::TooLong,
            Some(annotations.len().to_string()),
            format!("must have at most {MAX_LABELS} annotations"),
        );
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_ANNOTATION_BYTES {
        errors.add(
            "metadata.annotations",
            FieldErrorKind::TooLong,
            None,
            format!("must have at most {MAX_ANNOTATION_BYTES} bytes"),
        );
    }
    for k in annotations.keys() {
        if let Err(rule) = qualified_name(&k.to_ascii_lowercase()) {
            errors.add(
                "metadata.annotations",
                FieldErrorKind::Invalid,
                Some(format!("{k:?}")),
                rule,
            );
        }
    }
    if let Some(value) = annotations.get(PREFERENCES_ANNOTATION)
        && let Err(e) = Preferences::parse(value)
    {
        errors.add(
            format!("metadata.annotations[{PREFERENCES_ANNOTATION}]"),
            FieldErrorKind::Invalid,
            None,
            e.to_string(),
        );
    }
}

fn validate_spec(job: &Job, errors: &mut Errors) {
    let Some(spec) = &job.spec else {
        errors.add("spec", FieldErrorKind::Required, None, "");
        return;
    };
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
        if let Some(v) = value
            && v < 0
        {
            errors.add(
                field,
                FieldErrorKind::Invalid,
                Some(v.to_string()),
                "must be greater than or equal to 0",
            );
        }
    }
    match spec.completion_mode.as_deref() {
        None | Some("NonIndexed") => {}
        Some("Indexed") => errors.add(
            "spec.completionMode",
            FieldErrorKind::NotSupported,
            Some("\"Indexed\"".into()),
            "not supported yet: splitting an Indexed Job would give every cluster the same indexes 0…n-1",
        ),
        Some(other) => errors.add("spec.completionMode", FieldErrorKind::NotSupported, Some(format!("{other:?}")), "supported values: \"NonIndexed\", \"Indexed\""),
    }
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    match (&spec.selector, spec.manual_selector) {
        (Some(selector), Some(true)) => {
            let matches = selector
                .match_labels
                .as_ref()
                .is_none_or(|want| want.iter().all(|(k, v)| template_labels.get(k) == Some(v)));
            if !matches || selector.match_expressions.is_some() {
                errors.add(
                    "spec.template.metadata.labels",
                    FieldErrorKind::Invalid,
                    Some(format!("{template_labels:?}")),
                    "`selector` does not match template `labels`",
                );
            }
        }
        (Some(selector), _) => {
            let value = serde_json::to_string(selector).unwrap_or_default();
            errors.add(
                "spec.selector",
                FieldErrorKind::Invalid,
                Some(value),
                "`selector` not auto-generated",
            );
        }
        (None, _) => {}
    }
    let pod = spec.template.spec.as_ref();
    match pod.and_then(|p| p.restart_policy.as_deref()) {
        Some("Never" | "OnFailure") => {}
        _ => errors.add(
            "spec.template.spec.restartPolicy",
            FieldErrorKind::Required,
            None,
            "valid values: \"OnFailure\", \"Never\"",
        ),
    }
    let containers = pod.map(|p| p.containers.as_slice()).unwrap_or_default();
    if containers.is_empty() {
        errors.add(
            "spec.template.spec.containers",
            FieldErrorKind::Required,
            None,
            "",
        );
    }
    let mut seen = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let field = format!("spec.template.spec.containers[{i}]");
        if c.name.is_empty() {
            errors.add(format!("{field}.name"), FieldErrorKind::Required, None, "");
        } else if let Err(rule) = dns1123_label(&c.name) {
            errors.add(
                format!("{field}.name"),
                FieldErrorKind::Invalid,
                Some(format!("{:?}", c.name)),
                rule,
            );
        } else if seen.contains(&c.name.as_str()) {
            errors.add(
                format!("{field}.name"),
                FieldErrorKind::Duplicate,
                Some(format!("{:?}", c.name)),
                "",
            );
        }
        seen.push(&c.name);
        if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            errors.add(format!("{field}.image"), FieldErrorKind::Required, None, "");
        }
    }
}

const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A DNS-1123 label (namespaces, container names, cluster names).
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if is_label(s) {
        Ok(())
    } else {
        Err(LABEL_RULE.into())
    }
}

/// A DNS-1123 subdomain (object names).
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    if !s.is_empty() && s.split('.').all(is_label) {
        Ok(())
    } else {
        Err(SUBDOMAIN_RULE.into())
    }
}

/// A qualified name: an optional DNS subdomain prefix and `/`, then a name of at most 63 of
/// `[A-Za-z0-9._-]` starting and ending alphanumeric.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && dns1123_subdomain(p).is_err()
    {
        return Err("prefix part must be a lowercase RFC 1123 subdomain".into());
    }
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters".into())
    }
}

/// A label value: empty, or at most 63 of `[A-Za-z0-9._-]` starting and ending alphanumeric.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    qualified_name(s).map_err(|_| "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters".into())
        .and_then(|()| if s.contains('/') { Err("a label value may not contain '/'".into()) } else { Ok(()) })
}

#[cfg(test)]
mod tests;
