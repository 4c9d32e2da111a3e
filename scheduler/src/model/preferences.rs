//! The `federation.kubernetes.io/job-preferences` annotation (SPEC §3).
//!
//! Its value is the JSON of the original federation's `ReplicaAllocationPreferences`. Struct
//! field names match case-insensitively and unknown fields are ignored, because that is what Go's
//! `encoding/json` did and existing annotations rely on it; cluster names (map keys) are exact.
//! Unlike the original, a value that cannot be used is refused rather than silently replaced by
//! the default: a typo in a weight should not quietly spread a Job evenly.
//!
//! SPEC §10 adds `clusterSelector` (a label selector over the labels each syncer registers
//! with), `dynamicWeight` (`"AvailableReplicas"`: weigh clusters by how many of the Job's pods
//! fit there) and `pendingTimeoutSeconds` (how long a shard's pods may stay unschedulable before
//! a rebalancing Job moves their work). Preferences with a selector or a dynamic weight but no
//! `clusters` map mean `"clusters": {"*": {"weight": 1}}`.

use std::collections::BTreeMap;
use std::fmt;

use jiff::SignedDuration;
use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::labels::{self, Operator, Requirement, Selector};
use fedjob_proto::names::PREFERENCES_ANNOTATION;

/// Largest annotation value accepted (the API server's limit for all annotations together).
pub const MAX_BYTES: usize = 256 * 1024;
/// Most cluster entries accepted.
pub const MAX_CLUSTERS: usize = 1000;
/// Largest weight accepted: with at most [`MAX_CLUSTERS`] entries and counts below 2³¹, every
/// product the split forms stays far inside 128 bits.
pub const MAX_WEIGHT: i64 = 1_000_000_000;
/// The key of `"*"`, the entry for every cluster without one of its own.
pub const WILDCARD: &str = "*";
/// How long a shard's pods may stay unschedulable before a rebalancing Job moves their work,
/// when `pendingTimeoutSeconds` is not given.
pub const DEFAULT_PENDING_TIMEOUT_SECONDS: i64 = 300;
/// Largest `pendingTimeoutSeconds` accepted (a year).
pub const MAX_PENDING_TIMEOUT_SECONDS: i64 = 366 * 24 * 3600;

/// The preferences of one cluster. "Replicas" means parallelism: pods running at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPreference {
    /// Pods this cluster gets before any are divided by weight.
    pub min_replicas: i32,
    /// Most pods this cluster may run at once; unbounded when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// Share of what is left after the minimums, relative to the other clusters' weights.
    pub weight: i64,
}

/// A Job's placement preferences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preferences {
    /// Move the unfinished work of a lost cluster elsewhere (SPEC §6), and the unstarted work
    /// of a shard whose pods stay unschedulable (SPEC §10).
    pub rebalance: bool,
    /// Per cluster name; [`WILDCARD`] applies to every cluster without an entry of its own.
    pub clusters: BTreeMap<String, ClusterPreference>,
    /// Only clusters whose labels match are eligible; every cluster when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<Selector>,
    /// Where the weights come from instead of `clusters[…].weight`; static when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_weight: Option<DynamicWeight>,
    /// `pendingTimeoutSeconds` as given; see [`Preferences::pending_timeout`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_timeout_seconds: Option<i64>,
}

/// A source of weights computed at planning time (Karmada's `dynamicWeight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DynamicWeight {
    /// How many pods of the Job's template fit in each cluster, node by node, by the capacity
    /// its agent reports.
    AvailableReplicas,
}

/// Why a preferences value was refused. [`PreferencesError::field`] is the path inside the value;
/// the Display starts with it, so it reads well after `metadata.annotations[…]: `.
#[derive(Debug, thiserror::Error)]
pub enum PreferencesError {
    /// The value is longer than [`MAX_BYTES`].
    #[error("must be no more than {MAX_BYTES} bytes, got {0}")]
    TooLong(usize),
    /// The value is not JSON.
    #[error("not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    /// A value of the wrong JSON type.
    #[error("{field}: must be {expected}, got {found}")]
    WrongType {
        /// Path inside the value.
        field: String,
        /// What is accepted there.
        expected: &'static str,
        /// What was found, e.g. `string "3"`.
        found: String,
    },
    /// A number with a fraction or an exponent where an integer is needed.
    #[error("{field}: must be an integer, got {value}")]
    NotInteger {
        /// Path inside the value.
        field: String,
        /// The number as written.
        value: String,
    },
    /// A negative count or weight.
    #[error("{field}: must be greater than or equal to 0, got {value}")]
    Negative {
        /// Path inside the value.
        field: String,
        /// The number as written.
        value: String,
    },
    /// A number above what the field holds.
    #[error("{field}: must be less than or equal to {max}, got {value}")]
    TooLarge {
        /// Path inside the value.
        field: String,
        /// The number as written.
        value: String,
        /// The largest accepted.
        max: i64,
    },
    /// `minReplicas` above `maxReplicas`.
    #[error("{field}: must be less than or equal to maxReplicas ({max}), got {min}")]
    MinAboveMax {
        /// Path of the `minReplicas` field.
        field: String,
        /// The minimum given.
        min: i32,
        /// The maximum given.
        max: i32,
    },
    /// More cluster entries than [`MAX_CLUSTERS`].
    #[error("clusters: must have at most {MAX_CLUSTERS} entries, got {0}")]
    TooManyClusters(usize),
    /// A value outside the set accepted there.
    #[error("{field}: must be one of {supported}, got {found}")]
    Unsupported {
        /// Path inside the value.
        field: String,
        /// The accepted values, quoted.
        supported: &'static str,
        /// What was found, quoted.
        found: String,
    },
    /// A rule of the field broken (a label key or value, a selector requirement).
    #[error("{field}: {rule}")]
    Rule {
        /// Path inside the value.
        field: String,
        /// The rule, in the API server's words.
        rule: String,
    },
}

impl PreferencesError {
    /// Path of the offending field inside the value, e.g. `clusters["a"].minReplicas`; empty when
    /// the value as a whole is refused.
    pub fn field(&self) -> &str {
        match self {
            Self::TooLong(_) | Self::Syntax(_) => "",
            Self::TooManyClusters(_) => "clusters",
            Self::WrongType { field, .. }
            | Self::NotInteger { field, .. }
            | Self::Negative { field, .. }
            | Self::TooLarge { field, .. }
            | Self::MinAboveMax { field, .. }
            | Self::Unsupported { field, .. }
            | Self::Rule { field, .. } => field,
        }
    }
}

impl Default for Preferences {
    /// `{"clusters": {"*": {"weight": 1}}}`: every cluster, evenly.
    fn default() -> Self {
        let even = ClusterPreference {
            min_replicas: 0,
            max_replicas: None,
            weight: 1,
        };
        Self {
            rebalance: false,
            clusters: [(WILDCARD.to_owned(), even)].into(),
            cluster_selector: None,
            dynamic_weight: None,
            pending_timeout_seconds: None,
        }
    }
}

impl Preferences {
    /// Parses an annotation value.
    pub fn parse(json: &str) -> Result<Self, PreferencesError> {
        if json.len() > MAX_BYTES {
            return Err(PreferencesError::TooLong(json.len()));
        }
        let node: Node = serde_json::from_str(json).map_err(PreferencesError::Syntax)?;
        let Node::Object(top) = node else {
            return Err(wrong_type(String::new(), "a JSON object", &node));
        };
        let mut prefs = Self {
            clusters: BTreeMap::new(),
            ..Self::default()
        };
        let mut has_clusters = false;
        // Entries in document order, so a later spelling of a field wins as it did in Go.
        for (key, value) in &top {
            if field_is(key, "rebalance") {
                match value {
                    Node::Bool(b) => prefs.rebalance = *b,
                    Node::Null => {}
                    other => return Err(wrong_type("rebalance".into(), "true or false", other)),
                }
            } else if field_is(key, "clusters") {
                match value {
                    Node::Object(entries) => {
                        prefs.clusters = clusters(entries)?;
                        has_clusters = true;
                    }
                    // Go leaves a nil map alone: no cluster has an entry.
                    Node::Null => {
                        prefs.clusters.clear();
                        has_clusters = false;
                    }
                    other => {
                        let expected = "an object of cluster name to preferences";
                        return Err(wrong_type("clusters".into(), expected, other));
                    }
                }
            } else if field_is(key, "clusterselector") {
                prefs.cluster_selector = selector("clusterSelector", value)?;
            } else if field_is(key, "dynamicweight") {
                prefs.dynamic_weight = dynamic_weight("dynamicWeight", value)?;
            } else if field_is(key, "pendingtimeoutseconds") {
                let field = "pendingTimeoutSeconds";
                prefs.pending_timeout_seconds = integer(field, value, MAX_PENDING_TIMEOUT_SECONDS)?;
            }
        }
        if !has_clusters && (prefs.cluster_selector.is_some() || prefs.dynamic_weight.is_some()) {
            // The selector chooses, capacity weighs (SPEC §10).
            prefs.clusters = Self::default().clusters;
        }
        Ok(prefs)
    }

    /// From a Job's annotations; no annotation means `{"clusters": {"*": {"weight": 1}}}`.
    pub fn from_annotations(
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Result<Self, PreferencesError> {
        match annotations.and_then(|a| a.get(PREFERENCES_ANNOTATION)) {
            Some(value) => Self::parse(value),
            None => Ok(Self::default()),
        }
    }

    /// A cluster's own entry, else `"*"`, else `None` (the cluster gets nothing).
    pub fn for_cluster(&self, cluster: &str) -> Option<&ClusterPreference> {
        self.clusters
            .get(cluster)
            .or_else(|| self.clusters.get(WILDCARD))
    }

    /// Whether a cluster named `cluster` with `labels` may run the Job: it has an entry (its
    /// own or `"*"`) and its labels match the `clusterSelector`.
    pub fn allows(&self, cluster: &str, labels: &BTreeMap<String, String>) -> bool {
        self.for_cluster(cluster).is_some() && self.selects(labels)
    }

    /// Whether `labels` match the `clusterSelector` (always true without one).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.cluster_selector
            .as_ref()
            .is_none_or(|s| s.matches(labels))
    }

    /// How long a shard's pods may stay unschedulable before a rebalancing Job moves their
    /// unstarted work: `pendingTimeoutSeconds`, by default
    /// [`DEFAULT_PENDING_TIMEOUT_SECONDS`].
    pub fn pending_timeout(&self) -> SignedDuration {
        SignedDuration::from_secs(
            self.pending_timeout_seconds
                .unwrap_or(DEFAULT_PENDING_TIMEOUT_SECONDS),
        )
    }

    /// The annotation value for these preferences; [`Preferences::parse`] reads it back.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).expect("preferences always serialize")
    }
}

fn clusters(
    entries: &[(String, Node)],
) -> Result<BTreeMap<String, ClusterPreference>, PreferencesError> {
    if entries.len() > MAX_CLUSTERS {
        return Err(PreferencesError::TooManyClusters(entries.len()));
    }
    let mut clusters = BTreeMap::new();
    for (name, value) in entries {
        let path = format!("clusters[{}]", quote(name));
        clusters.insert(name.clone(), cluster(&path, value)?);
    }
    Ok(clusters)
}

fn cluster(path: &str, value: &Node) -> Result<ClusterPreference, PreferencesError> {
    // A null entry was a nil pointer in Go, which the original dereferenced; refuse it.
    let Node::Object(fields) = value else {
        return Err(wrong_type(path.to_owned(), "an object", value));
    };
    let int32 = i64::from(i32::MAX);
    let mut pref = ClusterPreference::default();
    for (key, value) in fields {
        if field_is(key, "minreplicas") {
            let field = format!("{path}.minReplicas");
            if let Some(v) = integer(&field, value, int32)? {
                pref.min_replicas = v as i32;
            }
        } else if field_is(key, "maxreplicas") {
            let field = format!("{path}.maxReplicas");
            if let Some(v) = integer(&field, value, int32)? {
                pref.max_replicas = Some(v as i32);
            }
        } else if field_is(key, "weight") {
            let field = format!("{path}.weight");
            if let Some(v) = integer(&field, value, MAX_WEIGHT)? {
                pref.weight = v;
            }
        }
    }
    if let Some(max) = pref.max_replicas
        && pref.min_replicas > max
    {
        let field = format!("{path}.minReplicas");
        return Err(PreferencesError::MinAboveMax {
            field,
            min: pref.min_replicas,
            max,
        });
    }
    Ok(pref)
}

/// A label selector (`metav1.LabelSelector`: field names case-insensitive as Go read them,
/// operators exact), validated as the API server validates one; `None` for JSON null.
fn selector(path: &str, value: &Node) -> Result<Option<Selector>, PreferencesError> {
    let fields = match value {
        Node::Object(fields) => fields,
        Node::Null => return Ok(None),
        other => {
            return Err(wrong_type(
                path.to_owned(),
                "a label selector object",
                other,
            ));
        }
    };
    let mut selector = Selector::default();
    for (key, value) in fields {
        if field_is(key, "matchlabels") {
            let field = format!("{path}.matchLabels");
            selector.match_labels.clear();
            match value {
                Node::Object(entries) => {
                    for (k, v) in entries {
                        let at = format!("{field}[{}]", quote(k));
                        let v = label(&at, k, v)?;
                        selector.match_labels.insert(k.clone(), v);
                    }
                }
                Node::Null => {}
                other => return Err(wrong_type(field, "an object of label to value", other)),
            }
        } else if field_is(key, "matchexpressions") {
            let field = format!("{path}.matchExpressions");
            selector.match_expressions = match value {
                Node::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| requirement(&format!("{field}[{i}]"), item))
                    .collect::<Result<_, _>>()?,
                Node::Null => Vec::new(),
                other => return Err(wrong_type(field, "a list of requirements", other)),
            };
        }
    }
    Ok(Some(selector))
}

/// The value of label `key` at `field`, both checked by the label rules.
fn label(field: &str, key: &str, value: &Node) -> Result<String, PreferencesError> {
    if let Some(rule) = labels::qualified_name(key).into_iter().next() {
        let rule = format!("invalid label key {}: {rule}", quote(key));
        return Err(PreferencesError::Rule {
            field: field.to_owned(),
            rule,
        });
    }
    let Node::String(v) = value else {
        return Err(wrong_type(field.to_owned(), "a string", value));
    };
    label_value(field, v)?;
    Ok(v.clone())
}

fn label_value(field: &str, v: &str) -> Result<(), PreferencesError> {
    match labels::label_value(v).into_iter().next() {
        Some(rule) => Err(PreferencesError::Rule {
            field: field.to_owned(),
            rule: format!("invalid label value {}: {rule}", quote(v)),
        }),
        None => Ok(()),
    }
}

/// One `matchExpressions` entry: `In` and `NotIn` need values, `Exists` and `DoesNotExist`
/// take none (the API server's rules and words).
fn requirement(path: &str, value: &Node) -> Result<Requirement, PreferencesError> {
    let Node::Object(fields) = value else {
        return Err(wrong_type(path.to_owned(), "an object", value));
    };
    let (mut key, mut operator, mut values) = (None, None, None);
    for (k, v) in fields {
        if field_is(k, "key") {
            key = Some(v);
        } else if field_is(k, "operator") {
            operator = Some(v);
        } else if field_is(k, "values") {
            values = Some(v);
        }
    }
    let rule = |field: String, rule: &str| PreferencesError::Rule {
        field,
        rule: rule.to_owned(),
    };
    let key = match key {
        Some(Node::String(k)) => k.clone(),
        None | Some(Node::Null) => return Err(rule(format!("{path}.key"), "must be specified")),
        Some(other) => return Err(wrong_type(format!("{path}.key"), "a string", other)),
    };
    if let Some(broken) = labels::qualified_name(&key).into_iter().next() {
        let rule = format!("invalid label key {}: {broken}", quote(&key));
        let field = format!("{path}.key");
        return Err(PreferencesError::Rule { field, rule });
    }
    let operator = match operator {
        Some(Node::String(o)) => {
            Operator::parse(o).ok_or_else(|| PreferencesError::Unsupported {
                field: format!("{path}.operator"),
                supported: Operator::SUPPORTED,
                found: quote(o),
            })?
        }
        None | Some(Node::Null) => {
            return Err(rule(format!("{path}.operator"), "must be specified"));
        }
        Some(other) => return Err(wrong_type(format!("{path}.operator"), "a string", other)),
    };
    let field = format!("{path}.values");
    let values: Vec<String> = match values {
        None | Some(Node::Null) => Vec::new(),
        Some(Node::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let at = format!("{field}[{j}]");
                match v {
                    Node::String(s) => label_value(&at, s).map(|()| s.clone()),
                    other => Err(wrong_type(at, "a string", other)),
                }
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(wrong_type(field, "a list of strings", other)),
    };
    match (operator.takes_values(), values.is_empty()) {
        (true, true) => Err(rule(
            field,
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        (false, false) => Err(rule(
            field,
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        _ => Ok(Requirement {
            key,
            operator,
            values,
        }),
    }
}

/// `dynamicWeight`: `"AvailableReplicas"`, or nothing (null or `""`, static weights).
fn dynamic_weight(field: &str, value: &Node) -> Result<Option<DynamicWeight>, PreferencesError> {
    match value {
        Node::Null => Ok(None),
        Node::String(s) if s.is_empty() => Ok(None),
        Node::String(s) if s == "AvailableReplicas" => Ok(Some(DynamicWeight::AvailableReplicas)),
        Node::String(s) => Err(PreferencesError::Unsupported {
            field: field.to_owned(),
            supported: "\"AvailableReplicas\"",
            found: quote(s),
        }),
        other => Err(wrong_type(field.to_owned(), "a string", other)),
    }
}

/// A non-negative integer no larger than `max`; `None` for JSON null, which Go left unset.
fn integer(field: &str, value: &Node, max: i64) -> Result<Option<i64>, PreferencesError> {
    let Node::Number(n) = value else {
        return match value {
            Node::Null => Ok(None),
            other => Err(wrong_type(field.to_owned(), "an integer", other)),
        };
    };
    let field = field.to_owned();
    let value = n.to_string();
    if let Some(v) = n.as_i64() {
        return if v < 0 {
            Err(PreferencesError::Negative { field, value })
        } else if v > max {
            Err(PreferencesError::TooLarge { field, value, max })
        } else {
            Ok(Some(v))
        };
    }
    if n.is_u64() {
        return Err(PreferencesError::TooLarge { field, value, max });
    }
    // A float: Go refuses `1.0` and `1e3` for an integer field, and so do we.
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f < 0.0 => Err(PreferencesError::Negative { field, value }),
        Some(f) if f.fract() == 0.0 && f > max as f64 => {
            Err(PreferencesError::TooLarge { field, value, max })
        }
        _ => Err(PreferencesError::NotInteger { field, value }),
    }
}

fn wrong_type(field: String, expected: &'static str, found: &Node) -> PreferencesError {
    PreferencesError::WrongType {
        field,
        expected,
        found: found.describe(),
    }
}

/// Whether JSON key `key` names the field `name` (ASCII lower case) the way Go's
/// `encoding/json` matched: ASCII case folded, plus the two non-ASCII letters that fold to ASCII
/// (`ſ` to `s`, the Kelvin sign to `k`).
fn field_is(key: &str, name: &str) -> bool {
    let fold = |c: char| match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    };
    let mut key = key.chars();
    name.chars().all(|n| key.next().map(fold) == Some(n)) && key.next().is_none()
}

/// `s` as a JSON string literal, shortened when long so a message stays readable.
fn quote(s: &str) -> String {
    const LONG: usize = 64;
    if s.chars().count() <= LONG {
        serde_json::to_string(s).expect("strings always serialize")
    } else {
        let head: String = s.chars().take(LONG).collect();
        format!(
            "{}…",
            serde_json::to_string(&head).expect("strings always serialize")
        )
    }
}

/// A parsed JSON value that keeps object entries in document order (with duplicates), which
/// `serde_json::Value` does not.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    fn describe(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(b) => b.to_string(),
            Node::Number(n) => format!("number {n}"),
            Node::String(s) => format!("string {}", quote(s)),
            Node::Array(_) => "an array".into(),
            Node::Object(_) => "an object".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        serde_json::Number::from_f64(v)
            .map(Node::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Node>()? {
            entries.push((key, value));
        }
        Ok(Node::Object(entries))
    }
}

#[cfg(test)]
mod tests;
