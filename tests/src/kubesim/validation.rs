//! Field errors and the generic validation rules (names, labels, counts) of the apiserver.
//!
//! Messages are the apiserver's own (`k8s.io/apimachinery/pkg/util/validation`): clients and
//! people read them, and the fidelity suite compares them with `k8s-facts/`.

use std::fmt;

use fedjob_scheduler::kube_api::status::Cause;
use serde_json::Value;

/// The kind of a field error; decides its `reason` and the first words of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A value that must be set is missing.
    Required,
    /// A value that is not acceptable.
    Invalid,
    /// A value outside an enumeration.
    NotSupported,
    /// A change or value the API forbids.
    Forbidden,
    /// A value that is too long.
    TooLong,
    /// A value that repeats another one.
    Duplicate,
    /// A reference to something that does not exist.
    NotFound,
}

impl FieldErrorKind {
    /// The `details.causes[].reason` of this kind.
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }

    fn text(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::NotFound => "Not found",
        }
    }
}

/// A value as Go's `%v`/`%q` prints it inside a field error.
#[derive(Debug, Clone, PartialEq)]
pub enum GoValue {
    /// A nil pointer: `null`.
    Null,
    /// A number.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A string, printed quoted.
    Str(String),
    /// Anything already rendered (struct and map dumps).
    Raw(String),
}

impl GoValue {
    /// The Go rendering of a JSON value: numbers and booleans plain, strings quoted, maps of
    /// strings as `map[string]string{…}`, anything else as JSON.
    pub fn from_json(value: &Value) -> GoValue {
        match value {
            Value::Null => GoValue::Null,
            Value::Bool(b) => GoValue::Bool(*b),
            Value::Number(n) => n
                .as_i64()
                .map_or_else(|| GoValue::Raw(n.to_string()), GoValue::Int),
            Value::String(s) => GoValue::Str(s.clone()),
            Value::Object(map) if map.values().all(Value::is_string) => {
                let entries: Vec<String> = map
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}:{}",
                            go_quote(k),
                            go_quote(v.as_str().unwrap_or_default())
                        )
                    })
                    .collect();
                GoValue::Raw(format!("map[string]string{{{}}}", entries.join(", ")))
            }
            other => GoValue::Raw(other.to_string()),
        }
    }
}

impl fmt::Display for GoValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoValue::Null => f.write_str("null"),
            GoValue::Int(i) => write!(f, "{i}"),
            GoValue::Bool(b) => write!(f, "{b}"),
            GoValue::Str(s) => f.write_str(&go_quote(s)),
            GoValue::Raw(s) => f.write_str(s),
        }
    }
}

/// Go's `strconv.Quote` for the characters that occur in Kubernetes names and values.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One failed validation rule, as `field.Error` in the apiserver.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What kind of failure.
    pub kind: FieldErrorKind,
    /// The JSON path of the field, `spec.template.spec.restartPolicy`.
    pub field: String,
    /// The offending value, for the kinds that print one.
    pub value: GoValue,
    /// The explanation after the value.
    pub detail: String,
}

impl FieldError {
    /// `Required value[: detail]`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Required,
            field: field.into(),
            value: GoValue::Null,
            detail: detail.into(),
        }
    }

    /// `Invalid value: VALUE: detail`.
    pub fn invalid(field: impl Into<String>, value: GoValue, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    /// `Unsupported value: VALUE: supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, value: GoValue, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        Self {
            kind: FieldErrorKind::NotSupported,
            field: field.into(),
            value,
            detail: format!("supported values: {}", list.join(", ")),
        }
    }

    /// `Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Forbidden,
            field: field.into(),
            value: GoValue::Null,
            detail: detail.into(),
        }
    }

    /// `Duplicate value: VALUE`.
    pub fn duplicate(field: impl Into<String>, value: GoValue) -> Self {
        Self {
            kind: FieldErrorKind::Duplicate,
            field: field.into(),
            value,
            detail: String::new(),
        }
    }

    /// `Invalid value: VALUE: field is immutable`.
    pub fn immutable(field: impl Into<String>, value: GoValue) -> Self {
        Self::invalid(field, value, "field is immutable")
    }

    /// The message without the field path (`details.causes[].message`).
    pub fn body(&self) -> String {
        let mut s = match self.kind {
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong => {
                self.kind.text().to_owned()
            }
            _ => format!("{}: {}", self.kind.text(), self.value),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl From<FieldError> for Cause {
    fn from(e: FieldError) -> Self {
        Cause {
            reason: e.kind.reason().to_owned(),
            message: e.body(),
            field: e.field,
        }
    }
}

const QUALIFIED_NAME_ERR: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn regex_hint(examples: &str, regex: &str) -> String {
    format!(" (e.g. {examples}, regex used for validation is '{regex}')")
}

/// `validation.IsDNS1123Subdomain` and `IsDNS1123Label`: the messages for a name that is not
/// one (empty when fine), from the one implementation every fedjob binary shares.
pub use fedjob_proto::names::{dns1123_label, dns1123_subdomain};

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `validation.IsQualifiedName` (label and annotation keys): messages when invalid.
pub fn qualified_name(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = Vec::new();
    if key.matches('/').count() > 1 {
        errs.push(format!(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character{} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
            regex_hint("'MyName',  or 'my.name',  or '123-abc'", "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
        ));
        return errs;
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errs.push("prefix part must be non-empty".to_owned());
        } else {
            errs.extend(
                dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_owned());
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        errs.push(format!(
            "{QUALIFIED_NAME_ERR}{}",
            regex_hint(
                "'MyName',  or 'my.name',  or '123-abc'",
                "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
            )
        ));
    }
    errs
}

/// `validation.IsValidLabelValue`: messages when invalid.
pub fn label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(format!(
            "{LABEL_VALUE_ERR}{}",
            regex_hint(
                "'MyValue',  or 'my_value',  or '12345'",
                "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
            )
        ));
    }
    errs
}

/// `ValidateLabels`: every key a qualified name, every value a label value.
pub fn labels(labels: Option<&Value>, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(Value::Object(map)) = labels else {
        return errs;
    };
    for (key, value) in map {
        for msg in qualified_name(key) {
            errs.push(FieldError::invalid(field, GoValue::Str(key.clone()), msg));
        }
        let value = value.as_str().unwrap_or_default();
        for msg in label_value(value) {
            errs.push(FieldError::invalid(
                field,
                GoValue::Str(value.to_owned()),
                msg,
            ));
        }
    }
    errs
}

/// `ValidateAnnotations`: keys are qualified names and the total size is bounded.
pub fn annotations(annotations: Option<&Value>, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(Value::Object(map)) = annotations else {
        return errs;
    };
    let mut total = 0usize;
    for (key, value) in map {
        for msg in qualified_name(&key.to_lowercase()) {
            errs.push(FieldError::invalid(field, GoValue::Str(key.clone()), msg));
        }
        total += key.len() + value.as_str().map_or(0, str::len);
    }
    const LIMIT: usize = 256 * 1024;
    if total > LIMIT {
        errs.push(FieldError {
            kind: FieldErrorKind::TooLong,
            field: field.to_owned(),
            value: GoValue::Null,
            detail: format!("must have at most {LIMIT} bytes"),
        });
    }
    errs
}

/// `ValidateNonnegativeField` on an optional integer at `field`.
pub fn non_negative(value: Option<&Value>, field: &str) -> Vec<FieldError> {
    match value.and_then(Value::as_i64) {
        Some(v) if v < 0 => {
            vec![FieldError::invalid(
                field,
                GoValue::Int(v),
                "must be greater than or equal to 0",
            )]
        }
        _ => Vec::new(),
    }
}

/// Every quantity in the resource lists of a pod spec (`resources.requests`/`limits` of its
/// containers and init containers, `overhead`) parses, or the codec's message for the first
/// that does not: the API server refuses such a body when it decodes it (400).
pub fn pod_spec_quantities(spec: &Value) -> Result<(), String> {
    let containers = ["initContainers", "containers"]
        .into_iter()
        .filter_map(|k| spec.get(k).and_then(Value::as_array))
        .flatten();
    let lists = containers
        .flat_map(|c| {
            [
                c.pointer("/resources/requests"),
                c.pointer("/resources/limits"),
            ]
        })
        .chain([spec.get("overhead")])
        .flatten();
    resource_list_quantities(lists)
}

/// Every value of these resource lists (`{"cpu": "500m", …}`) is a quantity.
pub fn resource_list_quantities<'a>(
    lists: impl IntoIterator<Item = &'a Value>,
) -> Result<(), String> {
    for list in lists {
        for q in list.as_object().into_iter().flat_map(|m| m.values()) {
            let parsed = q.as_str().map(fedjob_proto::quantity::Quantity::parse);
            if let Some(Err(e)) = parsed {
                return Err(e.to_string());
            }
        }
    }
    Ok(())
}

/// The common `metadata` rules: a name (or generateName) that `name_rule` accepts, valid labels
/// and annotations.
pub fn object_meta(meta: &Value, name_rule: fn(&str) -> Vec<String>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for msg in name_rule(name) {
            errs.push(FieldError::invalid(
                "metadata.name",
                GoValue::Str(name.to_owned()),
                msg,
            ));
        }
    }
    errs.extend(labels(meta.get("labels"), "metadata.labels"));
    errs.extend(annotations(meta.get("annotations"), "metadata.annotations"));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_messages_match_the_apiserver() {
        assert!(dns1123_subdomain("my-job.v2").is_empty());
        let errs = dns1123_subdomain("My_Job");
        assert_eq!(
            errs,
            vec![
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(
            dns1123_subdomain(&"a".repeat(254))[0],
            "must be no more than 253 characters"
        );
    }

    #[test]
    fn field_error_bodies_follow_go() {
        let e = FieldError::immutable("spec.completions", GoValue::Int(9));
        assert_eq!(e.body(), "Invalid value: 9: field is immutable");
        let e = FieldError::required(
            "spec.template.spec.restartPolicy",
            "valid values: \"OnFailure\", \"Never\"",
        );
        assert_eq!(
            e.body(),
            "Required value: valid values: \"OnFailure\", \"Never\""
        );
        let e = FieldError::not_supported("x", GoValue::Str("B".into()), &["A", "C"]);
        assert_eq!(
            e.to_string(),
            "x: Unsupported value: \"B\": supported values: \"A\", \"C\""
        );
    }

    #[test]
    fn label_rules() {
        assert!(label_value("").is_empty());
        assert!(label_value("a.b_c-1").is_empty());
        assert_eq!(
            label_value(&"x".repeat(64))[0],
            "must be no more than 63 characters"
        );
        assert!(qualified_name("fedjob.io/job").is_empty());
        assert!(!qualified_name("bad key").is_empty());
    }
}
