//! Label and field selectors (`labelSelector=`, `fieldSelector=` query parameters).
//!
//! The syncer lists and watches its shards by label (`fedjob.io/job=NAME`), kubectl deletes and
//! waits by `metadata.name`, so both grammars are parsed as the apiserver does, set-based
//! requirements included.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::manifest::{label_value, qualified_name};

/// A selector that does not parse or names an unsupported field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The label selector is malformed.
    #[error("unable to parse requirement: {0}")]
    Label(String),
    /// The field selector is malformed.
    #[error("invalid selector: '{0}'; can't understand '{1}'")]
    Field(String, String),
    /// A field this resource cannot be selected by.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Exists,
    DoesNotExist,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    GreaterThan(i64),
    LessThan(i64),
}

/// One `key op values` term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<&str, &str>) -> bool {
        let value = labels.get(self.key.as_str());
        match &self.op {
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::Equals(v) => value == Some(&v.as_str()),
            Op::NotEquals(v) => value != Some(&v.as_str()),
            Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => value.is_none_or(|x| vs.iter().all(|v| v != x)),
            Op::GreaterThan(n) => value
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            Op::LessThan(n) => value
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        }
    }
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

fn check_key(key: &str) -> Result<(), SelectorError> {
    match qualified_name(key).into_iter().next() {
        None => Ok(()),
        Some(msg) => Err(SelectorError::Label(format!(
            "key: Invalid value: \"{key}\": {msg}"
        ))),
    }
}

fn check_value(value: &str) -> Result<(), SelectorError> {
    match label_value(value).into_iter().next() {
        None => Ok(()),
        Some(msg) => Err(SelectorError::Label(format!(
            "values[0][{value}]: Invalid value: \"{value}\": {msg}"
        ))),
    }
}

fn parse_set(rest: &str) -> Result<Vec<String>, SelectorError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError::Label(format!("found '{rest}', expected: '('")))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    for v in &values {
        check_value(v)?;
    }
    Ok(values)
}

fn parse_requirement(term: &str) -> Result<Requirement, SelectorError> {
    let term = term.trim();
    if term.is_empty() {
        return Err(SelectorError::Label(
            "found '', expected: identifier".to_owned(),
        ));
    }
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(Requirement {
            key: key.to_owned(),
            op: Op::DoesNotExist,
        });
    }
    let key_end = term
        .find(|c: char| c.is_whitespace() || "=!<>(".contains(c))
        .unwrap_or(term.len());
    let key = &term[..key_end];
    check_key(key)?;
    let rest = term[key_end..].trim_start();
    let single = |v: &str| -> Result<String, SelectorError> {
        let v = v.trim();
        if v.contains(char::is_whitespace) {
            return Err(SelectorError::Label(format!(
                "found '{v}', expected: ',' or 'end of string'"
            )));
        }
        check_value(v)?;
        Ok(v.to_owned())
    };
    let number = |v: &str| -> Result<i64, SelectorError> {
        v.trim().parse().map_err(|_| {
            SelectorError::Label(format!(
                "for 'Gt', 'Lt' operators, the value must be an integer: {v}"
            ))
        })
    };
    let op = if rest.is_empty() {
        Op::Exists
    } else if let Some(v) = rest.strip_prefix("==") {
        Op::Equals(single(v)?)
    } else if let Some(v) = rest.strip_prefix("!=") {
        Op::NotEquals(single(v)?)
    } else if let Some(v) = rest.strip_prefix('=') {
        Op::Equals(single(v)?)
    } else if let Some(v) = rest.strip_prefix('>') {
        Op::GreaterThan(number(v)?)
    } else if let Some(v) = rest.strip_prefix('<') {
        Op::LessThan(number(v)?)
    } else if let Some(v) = rest.strip_prefix("notin") {
        Op::NotIn(parse_set(v)?)
    } else if let Some(v) = rest.strip_prefix("in") {
        Op::In(parse_set(v)?)
    } else {
        return Err(SelectorError::Label(format!(
            "found '{rest}', expected: in, notin, =, ==, !=, gt, lt"
        )));
    };
    Ok(Requirement {
        key: key.to_owned(),
        op,
    })
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        let requirements = split_terms(s)
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    /// A selector from a `LabelSelector` object's `matchLabels` (as a Job's `spec.selector`).
    pub fn from_match_labels(match_labels: Option<&Value>) -> Self {
        let requirements = match_labels
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| Requirement {
                        key: k.clone(),
                        op: Op::Equals(v.as_str().unwrap_or_default().to_owned()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { requirements }
    }

    /// Whether the selector is empty (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let map: BTreeMap<&str, &str> = labels
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        self.requirements.iter().all(|r| r.matches(&map))
    }
}

/// A parsed field selector: `field=value` / `field!=value` terms, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter, allowing only the fields in `supported`.
    pub fn parse(s: &str, supported: &[&str]) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { terms });
        }
        for term in s.split(',') {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(SelectorError::Field(s.to_owned(), term.to_owned()));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(SelectorError::UnsupportedField(field.to_owned()));
            }
            terms.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self { terms })
    }

    /// Whether every term holds; `get` gives an object's value for a field name.
    pub fn matches(&self, get: impl Fn(&str) -> String) -> bool {
        self.terms
            .iter()
            .all(|(field, equal, value)| (get(field) == *value) == *equal)
    }

    /// The value an equality term requires of `field`, if there is one (lets a lookup by
    /// `metadata.name` skip a scan).
    pub fn required(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|(f, eq, _)| f == field && *eq)
            .map(|(_, _, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn label_selector_grammar() {
        let labels = json!({"app": "x", "tier": "web", "n": "5"});
        let yes = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&labels));
        assert!(yes(""));
        assert!(yes("app=x"));
        assert!(yes("app==x,tier"));
        assert!(yes("app!=y"));
        assert!(yes("missing!=y"));
        assert!(yes("tier in (web, db)"));
        assert!(yes("tier notin (db)"));
        assert!(yes("missing notin (db)"));
        assert!(yes("!missing"));
        assert!(yes("n>4,n<6"));
        assert!(!yes("app=y"));
        assert!(!yes("missing"));
        assert!(!yes("tier in (db)"));
        assert!(!yes("!app"));
        assert!(!yes("missing in (x)"));
    }

    #[test]
    fn label_selector_errors() {
        assert!(LabelSelector::parse("a b").is_err());
        assert!(LabelSelector::parse("a in x").is_err());
        assert!(LabelSelector::parse("bad key!=1,").is_err());
    }

    #[test]
    fn field_selector() {
        let fs = FieldSelector::parse(
            "metadata.name=a,metadata.namespace!=b",
            &["metadata.name", "metadata.namespace"],
        )
        .unwrap();
        assert_eq!(fs.required("metadata.name"), Some("a"));
        assert!(fs.matches(|f| if f == "metadata.name" {
            "a".into()
        } else {
            "c".into()
        }));
        assert!(!fs.matches(|_| "b".into()));
        assert_eq!(
            FieldSelector::parse("spec.x=1", &["metadata.name"]),
            Err(SelectorError::UnsupportedField("spec.x".into()))
        );
    }
}
