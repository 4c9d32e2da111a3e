//! API failures and the `Status` bodies a real kube-apiserver answers them with.
//!
//! Clients branch on `code` and `reason` (kube-rs maps 409 + `AlreadyExists` differently from
//! 409 + `Conflict`), and people read `message`, so the wording follows the apiserver's
//! `k8s.io/apimachinery/pkg/api/errors` constructors; `tests/fixtures/k8s-facts/` has the
//! originals.

use serde::Serialize;
use serde_json::Value;

use super::resource::ResourceType;

/// One failed rule of an `Invalid` error: a `details.causes[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, … (`field.ErrorType`'s reason).
    pub reason: String,
    /// The message without the field: `Invalid value: 9: field is immutable`.
    pub message: String,
    /// The field path: `spec.completions`.
    pub field: String,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A failed API call; [`ApiError::to_status`] gives the body, [`ApiError::code`] the HTTP code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The named object does not exist (404).
    #[error("{} \"{name}\" not found", resource.qualified_resource())]
    NotFound {
        /// What was looked up.
        resource: &'static ResourceType,
        /// Its name.
        name: String,
    },
    /// A path the server does not serve (404 with an empty `details`).
    #[error("the server could not find the requested resource")]
    PathNotFound,
    /// Create of a name that is taken (409).
    #[error("{} \"{name}\" already exists", resource.qualified_resource())]
    AlreadyExists {
        /// The resource.
        resource: &'static ResourceType,
        /// The taken name.
        name: String,
    },
    /// Optimistic-concurrency or precondition failure (409).
    #[error("Operation cannot be fulfilled on {} \"{name}\": {detail}", resource.qualified_resource())]
    Conflict {
        /// The resource.
        resource: &'static ResourceType,
        /// The object.
        name: String,
        /// Why (the stale-version sentence, or a failed precondition).
        detail: String,
    },
    /// The request is refused for this object, or for the collection when `name` is empty (403).
    #[error("{}", forbidden(resource, name, detail))]
    Forbidden {
        /// The resource.
        resource: &'static ResourceType,
        /// The object.
        name: String,
        /// Why.
        detail: String,
    },
    /// The object failed validation (422).
    #[error("{} \"{name}\" is invalid: {}", resource.qualified_kind(), aggregate(causes))]
    Invalid {
        /// The resource.
        resource: &'static ResourceType,
        /// The object.
        name: String,
        /// One entry per failed rule.
        causes: Vec<Cause>,
    },
    /// Server-side apply would take fields another manager owns (409).
    #[error("{message}")]
    ApplyConflict {
        /// The summary sentence.
        message: String,
        /// `(field path, "conflict with …")` per conflicting field.
        causes: Vec<(String, String)>,
    },
    /// A resourceVersion older than the server still has (410).
    #[error("{0}")]
    Expired(String),
    /// A malformed request (400).
    #[error("{0}")]
    BadRequest(String),
    /// A request body larger than the server reads (413).
    #[error("Request entity too large: limit is {0}")]
    RequestEntityTooLarge(usize),
    /// A request body in a format the endpoint does not take (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No representation the client accepts can be served (406).
    #[error("only the following media types are accepted: {0}")]
    NotAcceptable(String),
    /// The server cannot do it now (503): it is shutting down, or its store is unreachable.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// A verb the path does not support (405).
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// Missing or wrong bearer token (401).
    #[error("Unauthorized")]
    Unauthorized,
    /// A list at a resourceVersion the server has not reached (504, as the real server after
    /// waiting for it).
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        /// What the client asked for.
        requested: u64,
        /// What the server has.
        current: u64,
    },
    /// A JSON patch that does not apply (422 without field causes).
    #[error("{0}")]
    PatchFailed(String),
    /// A failure of the server itself (500).
    #[error("{0}")]
    Internal(String),
}

/// `jobs.batch "NAME" is forbidden: DETAIL`, or `jobs.batch is forbidden: DETAIL` for a
/// collection.
fn forbidden(resource: &ResourceType, name: &str, detail: &str) -> String {
    if name.is_empty() {
        format!("{} is forbidden: {detail}", resource.qualified_resource())
    } else {
        format!(
            "{} \"{name}\" is forbidden: {detail}",
            resource.qualified_resource()
        )
    }
}

/// Go's `utilerrors.NewAggregate(...).Error()`: one message alone, several in brackets, without
/// duplicates.
fn aggregate(causes: &[Cause]) -> String {
    let mut seen = std::collections::HashSet::new();
    let messages: Vec<String> = causes
        .iter()
        .map(Cause::to_string)
        .filter(|m| seen.insert(m.clone()))
        .collect();
    match messages.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize, Default)]
struct Details<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<CauseBody<'a>>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u32>,
}

#[derive(Serialize)]
struct CauseBody<'a> {
    reason: &'a str,
    message: &'a str,
    field: &'a str,
}

impl<'a> From<&'a Cause> for CauseBody<'a> {
    fn from(c: &'a Cause) -> Self {
        Self {
            reason: &c.reason,
            message: &c.message,
            field: &c.field,
        }
    }
}

impl ApiError {
    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::PathNotFound => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid { .. } | ApiError::PatchFailed(_) => 422,
            ApiError::Expired(_) => 410,
            ApiError::BadRequest(_) => 400,
            ApiError::RequestEntityTooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::MethodNotAllowed => 405,
            ApiError::NotAcceptable(_) => 406,
            ApiError::ServiceUnavailable(_) => 503,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::TooLargeResourceVersion { .. } => 504,
            ApiError::Internal(_) => 500,
        }
    }

    /// The `reason` field.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::PathNotFound => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::PatchFailed(_) => "Invalid",
            ApiError::Expired(_) => "Expired",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object as the real server serializes it (field order included).
    pub fn to_status_json(&self) -> String {
        let message = self.to_string();
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. }
            | ApiError::Forbidden { resource, name, .. } => Some(Details {
                name,
                group: resource.group,
                kind: resource.plural,
                ..Details::default()
            }),
            ApiError::Invalid {
                resource,
                name,
                causes,
            } => Some(Details {
                name,
                group: resource.group,
                kind: resource.kind,
                causes: causes.iter().map(CauseBody::from).collect(),
                ..Details::default()
            }),
            ApiError::ApplyConflict { causes, .. } => Some(Details {
                causes: causes
                    .iter()
                    .map(|(field, message)| CauseBody {
                        reason: "FieldManagerConflict",
                        message,
                        field,
                    })
                    .collect(),
                ..Details::default()
            }),
            ApiError::PathNotFound | ApiError::MethodNotAllowed => Some(Details::default()),
            ApiError::TooLargeResourceVersion { .. } => Some(Details {
                causes: vec![CauseBody {
                    reason: "ResourceVersionTooLarge",
                    message: "Too large resource version",
                    field: "",
                }],
                retry_after_seconds: Some(1),
                ..Details::default()
            }),
            _ => None,
        };
        let body = StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: Empty {},
            status: "Failure",
            message: Some(message),
            reason: Some(self.reason()),
            details,
            code: Some(self.code()),
        };
        serde_json::to_string(&body).expect("a Status serializes")
    }

    /// The `Status` object as a JSON value (for watch `ERROR` events).
    pub fn to_status(&self) -> Value {
        serde_json::from_str(&self.to_status_json()).expect("a Status parses")
    }
}

/// The `Status` a delete answers with when the object is gone at once (`22-delete-background`).
pub fn deleted_status(resource: &'static ResourceType, name: &str, uid: &str) -> String {
    let body = StatusBody {
        kind: "Status",
        api_version: "v1",
        metadata: Empty {},
        status: "Success",
        message: None,
        reason: None,
        details: Some(Details {
            name,
            group: resource.group,
            kind: resource.plural,
            uid,
            ..Details::default()
        }),
        code: None,
    };
    serde_json::to_string(&body).expect("a Status serializes")
}

/// The 409 an update with a stale `metadata.resourceVersion` gets (`08-put-stale-rv-409`).
pub fn stale_conflict(resource: &'static ResourceType, name: &str) -> ApiError {
    ApiError::Conflict {
        resource,
        name: name.to_owned(),
        detail: "the object has been modified; please apply your changes to the latest version and try again"
            .to_owned(),
    }
}
