//! Reading a manifest (YAML or JSON) into a typed `batch/v1` Job, naming unknown and mistyped
//! fields.

use std::fmt;

use k8s_openapi::api::batch::v1::Job;
use serde::Deserialize;
use serde_json::Value;

use super::MAX_MANIFEST_BYTES;
use super::invalid::{FieldError, FieldErrorKind, Invalid, go_quote, json_type, render};

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
