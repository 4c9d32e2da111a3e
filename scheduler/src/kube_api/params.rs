//! Query parameters and request bodies, parsed once per request.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Query;
use axum::http::Uri;
use serde_json::Value;

use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;

/// The largest request body the API server reads (3 MiB); a larger one is refused with 413.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Fields a Job field selector may name.
pub const JOB_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];

/// Fields an event field selector may name.
pub const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.name",
    "metadata.namespace",
];

/// The query string of a request.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses the query of `uri`.
    pub fn parse(uri: &Uri) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?;
        Ok(Self(pairs.into_iter().collect()))
    }

    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }

    /// `dryRun=All`.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
            ))),
        }
    }

    /// The label selector.
    pub fn labels(&self) -> Result<LabelSelector, ApiError> {
        LabelSelector::parse(self.get("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    /// The field selector, restricted to `supported` fields.
    pub fn fields(&self, supported: &[&str]) -> Result<FieldSelector, ApiError> {
        FieldSelector::parse(self.get("fieldSelector").unwrap_or_default(), supported)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    /// `resourceVersion`, parsed (`None` when absent or empty).
    pub fn resource_version(&self) -> Result<Option<u64>, ApiError> {
        match self.get("resourceVersion") {
            None | Some("") => Ok(None),
            Some(s) => parse_rv(s).map(Some),
        }
    }

    /// `limit`: the most items one page of a list holds (`None` when absent or 0).
    pub fn limit(&self) -> Result<Option<usize>, ApiError> {
        match self.get("limit") {
            None | Some("") => Ok(None),
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n > 0 => Ok(Some(n as usize)),
                Ok(_) => Ok(None),
                Err(_) => Err(ApiError::BadRequest(format!("invalid limit: {s:?}"))),
            },
        }
    }

    /// `timeoutSeconds`.
    pub fn timeout(&self) -> Result<Option<Duration>, ApiError> {
        self.get("timeoutSeconds")
            .map(|s| {
                s.parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds: {s:?}")))
            })
            .transpose()
    }
}

/// What a delete removes along with the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Leave dependents (the Job API's default): finalizer `orphan`.
    Orphan,
    /// Delete the object now, dependents after.
    Background,
    /// Delete dependents first: finalizer `foregroundDeletion`.
    Foreground,
}

/// The parts of `DeleteOptions` a delete honours.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `propagationPolicy` (or the legacy `orphanDependents`).
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<u64>,
}

/// A `resourceVersion` a client sent, parsed.
pub fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {s:?}")))
}

fn propagation(s: &str) -> Result<Propagation, ApiError> {
    match s {
        "Orphan" => Ok(Propagation::Orphan),
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
        other => Err(ApiError::BadRequest(format!(
            "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

/// `DeleteOptions` from the body (when there is one) and the query; also whether it is a dry run.
pub fn delete_options(
    params: &Params,
    body: Option<&Value>,
) -> Result<(DeleteOptions, bool), ApiError> {
    let mut options = DeleteOptions::default();
    let mut dry_run = params.dry_run()?;
    if let Some(p) = params.get("propagationPolicy") {
        options.propagation = Some(propagation(p)?);
    }
    if let Some(o) = params.get("orphanDependents") {
        options.propagation = Some(if o == "true" {
            Propagation::Orphan
        } else {
            Propagation::Background
        });
    }
    if let Some(body) = body {
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            options.propagation = Some(propagation(p)?);
        } else if let Some(o) = body.get("orphanDependents").and_then(Value::as_bool) {
            options.propagation = Some(if o {
                Propagation::Orphan
            } else {
                Propagation::Background
            });
        }
        options.uid = body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(rv) = body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            options.resource_version = Some(parse_rv(rv)?);
        }
        if let Some(Value::Array(modes)) = body.get("dryRun") {
            dry_run |= modes.iter().any(|m| m == "All");
        }
    }
    Ok((options, dry_run))
}

/// Decodes a request body by its `Content-Type`: JSON, or YAML (kubectl and apply send it).
pub fn decode_body(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the body of the request was empty".to_owned(),
        ));
    }
    match media {
        "application/yaml" | "application/apply-patch+yaml" => match serde_json::from_slice(bytes) {
            Ok(v) => Ok(v),
            Err(_) => serde_yaml::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}"))),
        },
        "" | "application/json" | "application/merge-patch+json" | "application/json-patch+json"
        | "application/strategic-merge-patch+json" | "application/apply-patch+json" | "*/*" => {
            serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("error decoding JSON: {e}")))
        }
        _ => Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
                .to_owned(),
        )),
    }
}
