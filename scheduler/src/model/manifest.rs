//! Reading and validating a federated Job as the Kubernetes API server would (SPEC §2).
//!
//! Errors are collected, not stopped at the first, and printed the way the API server prints
//! them (`Job.batch "NAME" is invalid: FIELD: Invalid value: VALUE: DETAIL`), with the rule texts
//! of `k8s.io/apimachinery`'s validation, so a message a user knows from kubectl reads the same
//! here. Where fedjob is stricter than a plain Job (name length, Indexed mode, preferences) the
//! message says why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::preferences::{Preferences, PreferencesError};
use fedjob_proto::names::PREFERENCES_ANNOTATION;

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

/// What a request does with fields that `batch/v1` Job does not have, as the API server's
/// `fieldValidation` parameter (without its `Warn`, which needs a channel for warnings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the Job, naming every unknown field: a typo such as `spec.paralelism` would
    /// otherwise run the Job with the default silently.
    #[default]
    Strict,
    /// Drop unknown fields, as `kubectl --validate=false` does.
    Ignore,
}

impl FieldValidation {
    /// A request's `field_validation`: `Strict` (or empty) or `Ignore`, in any case.
    pub fn from_request(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "" | "strict" => Some(Self::Strict),
            "ignore" => Some(Self::Ignore),
            _ => None,
        }
    }
}

impl fmt::Display for FieldValidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Strict => "Strict",
            Self::Ignore => "Ignore",
        })
    }
}

/// The kind of a field error, as the API server names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is missing or empty.
    Required,
    /// A value breaks a rule.
    Invalid,
    /// A value is not one of those supported.
    NotSupported,
    /// A field may not be set, or not to this.
    Forbidden,
    /// A value is too long.
    TooLong,
    /// A list or map has too many entries.
    TooMany,
    /// A value repeats one that must be unique.
    Duplicate,
    /// A field that `batch/v1` Job does not have (the API server's strict decoding refuses it
    /// as a BadRequest without causes; here it is a cause like the others).
    Unknown,
}

impl FieldErrorKind {
    /// The `reason` of a cause in a Kubernetes `Status`, e.g. `FieldValueInvalid`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Unknown => "FieldValueUnknown",
        }
    }

    /// How the API server starts the message, e.g. `Invalid value`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Duplicate => "Duplicate value",
            Self::Unknown => "Unknown field",
        }
    }
}

/// One offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.template.spec.restartPolicy`; empty for the document as a
    /// whole (it is not YAML, not one object).
    pub field: String,
    /// What kind of error.
    pub kind: FieldErrorKind,
    /// The offending value as the API server prints it (strings quoted), if it is shown.
    pub value: Option<String>,
    /// The rule that was broken.
    pub detail: String,
}

impl FieldError {
    /// The message without the field, as in a `Status` cause: `Invalid value: 9: field is
    /// immutable`.
    pub fn message(&self) -> String {
        if self.field.is_empty() {
            return self.detail.clone();
        }
        let mut out = self.kind.label().to_owned();
        // The API server does not print the value of these kinds.
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required
                | FieldErrorKind::Forbidden
                | FieldErrorKind::TooLong
                | FieldErrorKind::Unknown
        );
        if let Some(value) = self.value.as_deref().filter(|_| shows_value) {
            out.push_str(": ");
            out.push_str(value);
        }
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.detail)
        } else {
            write!(f, "{}: {}", self.field, self.message())
        }
    }
}

/// A refused Job, with every offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// Name of the Job, when the manifest got far enough to have one.
    name: Option<String>,
    /// Every offending field, in the order found; never empty.
    causes: Vec<FieldError>,
}

impl Invalid {
    fn new(name: Option<String>, causes: Vec<FieldError>) -> Self {
        debug_assert!(!causes.is_empty());
        Self { name, causes }
    }

    /// A refusal of the whole document, before there is a Job.
    fn document(detail: impl Into<String>) -> Self {
        let cause = FieldError {
            field: String::new(),
            kind: FieldErrorKind::Invalid,
            value: None,
            detail: detail.into(),
        };
        Self::new(None, vec![cause])
    }

    /// The Job's name, if known.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Every offending field, in the order found.
    pub fn causes(&self) -> &[FieldError] {
        &self.causes
    }

    /// The first offending field's path (empty for the document as a whole).
    pub fn field(&self) -> &str {
        self.causes.first().map_or("", |c| c.field.as_str())
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "Job.batch {} is invalid: ", go_quote(name))?,
            None => f.write_str("invalid manifest: ")?,
        }
        match self.causes.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                let all: Vec<String> = many.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", all.join(", "))
            }
        }
    }
}

/// Collects the field errors of one Job.
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
        let cause = FieldError {
            field: field.into(),
            kind,
            value,
            detail: detail.into(),
        };
        self.causes.push(cause);
    }

    fn invalid(&mut self, field: impl Into<String>, value: &str, detail: impl Into<String>) {
        self.add(
            field,
            FieldErrorKind::Invalid,
            Some(go_quote(value)),
            detail,
        );
    }

    fn required(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        self.add(field, FieldErrorKind::Required, None, detail);
    }

    fn finish(self) -> Result<(), Invalid> {
        if self.causes.is_empty() {
            Ok(())
        } else {
            Err(Invalid::new(Some(self.name), self.causes))
        }
    }
}

// ------------------------------------------------------------------ reading

/// YAML or JSON text → exactly one JSON object (a multi-document file or non-object is an
/// error). Empty YAML documents (a leading or trailing `---`) are skipped, as kubectl does.
pub fn parse_manifest(text: &str) -> Result<Value, Invalid> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(Invalid::document(format!(
            "must be no more than {MAX_MANIFEST_BYTES} bytes, got {}",
            text.len()
        )));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value = if text.trim_start().starts_with('{') {
        // JSON is also YAML, but JSON's own parser gives the better message for a JSON typo.
        match serde_json::from_str::<Value>(text) {
            Ok(v) => v,
            Err(json_error) => parse_yaml(text)
                .map_err(|_| Invalid::document(format!("not valid JSON: {json_error}")))?,
        }
    } else {
        parse_yaml(text).map_err(Invalid::document)?
    };
    match value {
        Value::Object(_) => Ok(value),
        other => Err(Invalid::document(format!(
            "must be one Job object, got {}",
            json_type(&other)
        ))),
    }
}

/// The one non-empty YAML document of `text`, as JSON.
fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut found = None;
    for document in serde_yaml::Deserializer::from_str(text) {
        let mut yaml = serde_yaml::Value::deserialize(document)
            .map_err(|e| format!("not valid YAML or JSON: {e}"))?;
        if yaml.is_null() {
            continue;
        }
        if found.is_some() {
            return Err("holds more than one document; give one Job per request".into());
        }
        // `<<: *anchor` merge keys, which kubectl's YAML reader applies too.
        yaml.apply_merge()
            .map_err(|e| format!("not valid YAML: {e}"))?;
        let json = serde_json::to_value(&yaml)
            .map_err(|e| format!("cannot be read as JSON: {e} (keys must be strings)"))?;
        found = Some(json);
    }
    found.ok_or_else(|| "the manifest is empty".to_owned())
}

/// JSON object → typed Job. `apiVersion` must be `batch/v1` and `kind` `Job`; a value of the
/// wrong type names its path (`spec.parallelism: Invalid value: "three": expected i32`).
/// `metadata.namespace` defaults to `request_namespace`, or `default` when that is empty too; a
/// manifest naming another namespace than a non-empty `request_namespace` is refused, as kubectl
/// refuses it.
pub fn decode_job(
    mut value: Value,
    request_namespace: &str,
    fields: FieldValidation,
) -> Result<Job, Invalid> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(object) = value.as_object_mut() else {
        return Err(Invalid::document(format!(
            "must be one Job object, got {}",
            json_type(&value)
        )));
    };
    let mut causes = Vec::new();
    for (field, expected) in [("apiVersion", "batch/v1"), ("kind", "Job")] {
        match object.get(field) {
            None | Some(Value::Null) => causes.push(FieldError {
                field: field.into(),
                kind: FieldErrorKind::Required,
                value: None,
                detail: format!("must be {}", go_quote(expected)),
            }),
            Some(Value::String(s)) if s == expected => {}
            Some(other) => causes.push(FieldError {
                field: field.into(),
                kind: FieldErrorKind::NotSupported,
                value: Some(render(other)),
                detail: format!("supported values: {}", go_quote(expected)),
            }),
        }
    }
    if !causes.is_empty() {
        return Err(Invalid::new(name, causes));
    }
    // Status is the federation's to write: the API server ignores it on create and update, and
    // so a `kubectl get -o yaml` output can be submitted again; `placements` and `unplaced`
    // are the status breakdown `fedctl get -o yaml` prints beside it.
    for field in ["status", "placements", "unplaced"] {
        object.remove(field);
    }
    let mut job: Job = serde_path_to_error::deserialize(&value).map_err(|e| {
        let field = field_path(e.path());
        let shown = lookup(&value, e.path()).map(render);
        let message = e.inner().to_string();
        // serde says `invalid type: string "three", expected i32`; the value is shown already.
        let detail = match message.find(", expected ") {
            Some(at) => message[at + 2..].to_owned(),
            None => message,
        };
        let kind = FieldErrorKind::Invalid;
        Invalid::new(
            name.clone(),
            vec![FieldError {
                field,
                kind,
                value: shown,
                detail,
            }],
        )
    })?;
    if fields == FieldValidation::Strict {
        let decoded = serde_json::to_value(&job).unwrap_or_default();
        let causes: Vec<FieldError> = unknown_fields(&value, &decoded)
            .into_iter()
            .map(|field| FieldError {
                field,
                kind: FieldErrorKind::Unknown,
                value: None,
                detail: "batch/v1 Job has no such field (field_validation \"Ignore\", \
                         fedctl --validate=false, drops unknown fields)"
                    .into(),
            })
            .collect();
        if !causes.is_empty() {
            return Err(Invalid::new(name, causes));
        }
    }
    let own = job
        .metadata
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty());
    match own {
        Some(own) if !request_namespace.is_empty() && own != request_namespace => {
            let detail = format!(
                "the namespace from the provided object {} does not match the namespace {}. \
                 You must pass '--namespace={own}' to perform this operation.",
                go_quote(own),
                go_quote(request_namespace)
            );
            let kind = FieldErrorKind::Invalid;
            let value = Some(go_quote(own));
            let field = "metadata.namespace".into();
            return Err(Invalid::new(
                name,
                vec![FieldError {
                    field,
                    kind,
                    value,
                    detail,
                }],
            ));
        }
        Some(_) => {}
        None => {
            let ns = if request_namespace.is_empty() {
                "default"
            } else {
                request_namespace
            };
            job.metadata.namespace = Some(ns.to_owned());
        }
    }
    Ok(job)
}

/// The paths of `input`'s fields that decoding dropped: those missing from `decoded`, the
/// typed Job written back as JSON. A field set to `null` is not reported, as it could be a known
/// optional field that decodes to nothing (`creationTimestamp: null` in kubectl's output).
pub fn unknown_fields(input: &Value, decoded: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_unknown(input, decoded, &mut String::new(), &mut found);
    found
}

fn collect_unknown(input: &Value, decoded: &Value, path: &mut String, found: &mut Vec<String>) {
    let len = path.len();
    match (input, decoded) {
        (Value::Object(fields), Value::Object(known)) => {
            for (key, value) in fields.iter().filter(|(_, v)| !v.is_null()) {
                push_key(path, key);
                match known.get(key) {
                    Some(decoded) => collect_unknown(value, decoded, path, found),
                    None => found.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(items), Value::Array(known)) => {
            for (i, (item, decoded)) in items.iter().zip(known).enumerate() {
                path.push_str(&format!("[{i}]"));
                collect_unknown(item, decoded, path, found);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Appends a map key to a field path: `.name`, or `[app.kubernetes.io/name]` for a key that is
/// not a plain identifier.
fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push_str(&format!("[{key}]"));
    }
}

/// A serde path as Kubernetes writes field paths: `spec.template.spec.containers[0].name`,
/// `metadata.labels[app.kubernetes.io/name]`.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => push_key(&mut out, key),
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// The JSON value at a serde path, to show it in the message.
fn lookup<'a>(value: &'a Value, path: &serde_path_to_error::Path) -> Option<&'a Value> {
    use serde_path_to_error::Segment;
    path.iter().try_fold(value, |v, segment| match segment {
        Segment::Seq { index } => v.get(*index),
        Segment::Map { key } => v.get(key.as_str()),
        Segment::Enum { .. } | Segment::Unknown => None,
    })
}

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
    let before = errors.causes.len();
    validate_label_selector(selector, errors);
    if errors.causes.len() > before {
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

// ------------------------------------------------------------------ printing values

/// A string as Go's `%q` prints it, near enough: JSON string syntax, shortened when long.
fn go_quote(s: &str) -> String {
    serde_json::to_string(&shorten(s)).unwrap_or_default()
}

/// A JSON value as the API server shows a bad value: strings quoted, numbers bare, anything
/// else as compact JSON, shortened.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        other => shorten(&other.to_string()),
    }
}

fn compact<T: serde::Serialize>(value: &T) -> String {
    shorten(&serde_json::to_string(value).unwrap_or_default())
}

fn shorten(text: &str) -> String {
    const LONG: usize = 200;
    match text.char_indices().nth(LONG) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

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
