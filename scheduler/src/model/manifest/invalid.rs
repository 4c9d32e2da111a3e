//! Field errors collected while reading and validating a Job, printed as the API server prints
//! them; and how bad values are shown in them.

use std::fmt;

use k8s_openapi::api::batch::v1::Job;
use serde_json::Value;

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
    pub(super) fn new(name: Option<String>, causes: Vec<FieldError>) -> Self {
        debug_assert!(!causes.is_empty());
        Self { name, causes }
    }

    /// A refusal of the whole document, before there is a Job.
    pub(super) fn document(detail: impl Into<String>) -> Self {
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
pub(super) struct Errors {
    name: String,
    causes: Vec<FieldError>,
}

impl Errors {
    pub(super) fn new(job: &Job) -> Self {
        Self {
            name: job.metadata.name.clone().unwrap_or_default(),
            causes: Vec::new(),
        }
    }

    pub(super) fn add(
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

    pub(super) fn invalid(
        &mut self,
        field: impl Into<String>,
        value: &str,
        detail: impl Into<String>,
    ) {
        self.add(
            field,
            FieldErrorKind::Invalid,
            Some(go_quote(value)),
            detail,
        );
    }

    pub(super) fn required(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        self.add(field, FieldErrorKind::Required, None, detail);
    }

    /// How many errors have been found so far.
    pub(super) fn len(&self) -> usize {
        self.causes.len()
    }

    pub(super) fn finish(self) -> Result<(), Invalid> {
        if self.causes.is_empty() {
            Ok(())
        } else {
            Err(Invalid::new(Some(self.name), self.causes))
        }
    }
}

// ------------------------------------------------------------------ printing values

/// A string as Go's `%q` prints it, near enough: JSON string syntax, shortened when long.
pub(super) fn go_quote(s: &str) -> String {
    serde_json::to_string(&shorten(s)).unwrap_or_default()
}

/// A JSON value as the API server shows a bad value: strings quoted, numbers bare, anything
/// else as compact JSON, shortened.
pub(super) fn render(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        other => shorten(&other.to_string()),
    }
}

pub(super) fn compact<T: serde::Serialize>(value: &T) -> String {
    shorten(&serde_json::to_string(value).unwrap_or_default())
}

pub(super) fn shorten(text: &str) -> String {
    const LONG: usize = 200;
    match text.char_indices().nth(LONG) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

pub(super) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
