//! Labels: the rules a label key or value must follow (in the API server's words), and label
//! selectors (`matchLabels`, `matchExpressions`) as Kubernetes evaluates them. The bottom layer:
//! the preferences' `clusterSelector`, the Job manifest's `spec.selector` and the node affinity
//! of a capacity fit all use it.

use std::collections::BTreeMap;

use serde::Serialize;

/// A label selector over a set of labels: every `matchLabels` entry and every expression must
/// hold. The empty selector selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Labels that must be present with exactly these values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements that must all hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// How the label's value is compared with `values`.
    pub operator: Operator,
    /// Values for `In` and `NotIn`; empty for `Exists` and `DoesNotExist`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A label selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Operator {
    /// The label is present with one of the values.
    In,
    /// The label is absent or has none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl Operator {
    /// The operators as an error message lists them.
    pub const SUPPORTED: &'static str = "\"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"";

    /// The operator spelled `s` (case-sensitive, as the API server reads it).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "In" => Some(Self::In),
            "NotIn" => Some(Self::NotIn),
            "Exists" => Some(Self::Exists),
            "DoesNotExist" => Some(Self::DoesNotExist),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
        }
    }

    /// Whether it takes values (`In`, `NotIn`) rather than forbidding them.
    pub fn takes_values(self) -> bool {
        matches!(self, Self::In | Self::NotIn)
    }
}

impl Selector {
    /// Whether `labels` satisfy the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self
                .match_expressions
                .iter()
                .all(|r| holds(r.operator.as_str(), labels.get(&r.key), &r.values))
    }
}

/// Whether a label whose value is `value` (`None` when absent) satisfies `operator` over
/// `values`: the label selector operators, and the node selector's `Gt` and `Lt` (integers).
/// An unknown operator never holds.
pub fn holds(operator: &str, value: Option<&String>, values: &[String]) -> bool {
    let int = |s: &str| s.parse::<i64>().ok();
    match operator {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => match (
            value.and_then(|v| int(v)),
            values.first().and_then(|b| int(b)),
        ) {
            (Some(v), Some(bound)) if operator == "Gt" => v > bound,
            (Some(v), Some(bound)) => v < bound,
            _ => false,
        },
        _ => false,
    }
}

const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and \
     must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

/// apimachinery's `RegexError`: the rule, examples, and the regular expression.
pub(super) fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{fmt}')",
        examples.join(" or ")
    )
}

pub(super) fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn is_qualified_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// The rules a DNS-1123 label (namespace, container name) or subdomain (object name) breaks,
/// in the API server's words; empty when valid. One implementation, shared with every binary.
pub use fedjob_proto::names::{dns1123_label, dns1123_subdomain};

/// The rules a qualified name (label or annotation key) breaks: an optional DNS subdomain
/// prefix and `/`, then a name of at most 63 characters. Empty when valid.
pub fn qualified_name(s: &str) -> Vec<String> {
    let examples = ["MyName", "my.name", "123-abc"];
    let parts: Vec<&str> = s.split('/').collect();
    let mut rules = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                rules.push("prefix part must be non-empty".to_owned());
            } else {
                rules.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|r| format!("prefix part {r}")),
                );
            }
            *name
        }
        _ => {
            let rule = regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &examples);
            return vec![format!(
                "a qualified name {rule} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        rules.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        rules.push(format!("name part {}", max_len_error(63)));
    }
    if !is_qualified_shaped(name) {
        let rule = regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &examples);
        rules.push(format!("name part {rule}"));
    }
    rules
}

/// The rules a label value breaks: empty, or at most 63 of `[A-Za-z0-9._-]` starting and ending
/// alphanumeric. Empty when valid.
pub fn label_value(s: &str) -> Vec<String> {
    let mut rules = Vec::new();
    if s.len() > 63 {
        rules.push(max_len_error(63));
    }
    if !s.is_empty() && !is_qualified_shaped(s) {
        rules.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    rules
}
