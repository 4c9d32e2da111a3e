//! Why a registered cluster has no shard of a Job (`fedctl describe job`, `fedctl plan -o wide`,
//! and the `Unschedulable` message when no cluster could take anything; SPEC §3, §6, §10).
//!
//! One reason per cluster, the first that holds in this order: the cluster cannot take new
//! work (NotReady, cordoned), the preferences leave it out (no entry and no `"*"`, the
//! `clusterSelector`), its preference gives it nothing (`maxReplicas: 0`, weight 0 without
//! `minReplicas`), not one pod of the Job fits on any of its nodes (`dynamicWeight`), it was
//! not eligible when the Job was planned (it joined later), or the work all went to clusters
//! that rank higher. Pure: the record, the cluster views and nothing else.

use std::collections::BTreeMap;
use std::fmt;

use fedjob_proto::quantity::format_amount;

use super::clusters::{ClusterView, Clusters};
use super::fit::{PodDemand, pods_that_fit};
use super::job::FederatedJob;
use super::labels::Selector;
use super::preferences::Preferences;

/// The text SPEC §10 gives for a Job whose preferences give no cluster a weight.
pub const NO_WEIGHT: &str =
    "the preferences give no cluster a weight: add \"*\" or an entry per cluster";

/// Why one cluster got nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No heartbeat within the grace period (or its agent never connected).
    NotReady,
    /// Cordoned: no new work goes there.
    Cordoned,
    /// The preferences have no entry for it and no `"*"`.
    NoPreference,
    /// It does not match the `clusterSelector`: the first requirement it fails, and what it
    /// has of that label.
    NotSelected {
        /// The requirement as written (`region=eu`, `tier In (a, b)`).
        requirement: String,
        /// The cluster's value of the label; `None` when it has no such label.
        value: Option<String>,
        /// The label's key.
        key: String,
    },
    /// Its preference has `maxReplicas: 0`.
    MaxReplicasZero,
    /// Its preference has weight 0 and no `minReplicas`.
    WeightZero,
    /// `dynamicWeight: AvailableReplicas`: not one pod of the Job fits on any of its nodes.
    NoNodeFits {
        /// What one pod requests, as `cpu 500m, memory 1Gi`.
        requests: String,
    },
    /// `dynamicWeight: AvailableReplicas`: it reports no capacity while others do, and what
    /// fits there took the work.
    NoCapacityReported,
    /// It was not eligible when the Job was planned: it takes part in work added later.
    JoinedLater,
    /// Everything went to clusters that rank higher.
    NothingLeft,
}

impl Reason {
    /// One CamelCase word, as a Kubernetes condition reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotReady => "NotReady",
            Self::Cordoned => "Cordoned",
            Self::NoPreference => "NoPreference",
            Self::NotSelected { .. } => "ClusterSelector",
            Self::MaxReplicasZero => "MaxReplicasZero",
            Self::WeightZero => "WeightZero",
            Self::NoNodeFits { .. } => "NoNodeFits",
            Self::NoCapacityReported => "NoCapacityReported",
            Self::JoinedLater => "JoinedLater",
            Self::NothingLeft => "NothingLeftToPlace",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReady => write!(
                f,
                "NotReady: its agent is not connected or missed its heartbeats"
            ),
            Self::Cordoned => write!(f, "cordoned: no new work goes there"),
            Self::NoPreference => write!(f, "the preferences have no entry for it and no \"*\""),
            Self::NotSelected {
                requirement,
                value,
                key,
            } => match value {
                Some(v) => write!(
                    f,
                    "does not match clusterSelector {requirement}: it has {key}={v}"
                ),
                None => write!(
                    f,
                    "does not match clusterSelector {requirement}: it has no label {key}"
                ),
            },
            Self::MaxReplicasZero => write!(f, "its preference has maxReplicas 0"),
            Self::WeightZero => write!(f, "its preference has weight 0 and no minReplicas"),
            Self::NoNodeFits { requests } => write!(
                f,
                "dynamicWeight AvailableReplicas: no node where one pod ({requests}) fits"
            ),
            Self::NoCapacityReported => write!(
                f,
                "dynamicWeight AvailableReplicas: it reports no free capacity \
                 (fedjob-syncer --report-capacity) and the clusters that do had room"
            ),
            Self::JoinedLater => write!(
                f,
                "it was not eligible when the Job was planned: it takes part in work added later"
            ),
            Self::NothingLeft => write!(
                f,
                "nothing left to place: clusters that rank higher took it all"
            ),
        }
    }
}

/// Every cluster of `clusters` that has no shard of `fj`, in name order, with why.
pub fn left_out(fj: &FederatedJob, clusters: &Clusters) -> Vec<(String, Reason)> {
    let prefs =
        Preferences::from_annotations(fj.job.metadata.annotations.as_ref()).unwrap_or_default();
    // Capacity weighs only when some cluster reports it; else the static weights apply.
    let by_capacity = clusters.values().any(|v| v.capacity.is_some());
    let demand = prefs.dynamic_weight.filter(|_| by_capacity).and_then(|_| {
        let template = serde_json::to_value(&fj.spec().template).ok()?;
        Some(PodDemand::of_template(&template))
    });
    clusters
        .iter()
        .filter(|(name, _)| fj.shards_of(name).is_empty())
        .map(|(name, view)| {
            let reason = reason(fj, &prefs, demand.as_ref(), name, view);
            (name.clone(), reason)
        })
        .collect()
}

fn reason(
    fj: &FederatedJob,
    prefs: &Preferences,
    demand: Option<&PodDemand>,
    name: &str,
    view: &ClusterView,
) -> Reason {
    if !view.ready {
        return Reason::NotReady;
    }
    if view.cordoned {
        return Reason::Cordoned;
    }
    let Some(own) = prefs.for_cluster(name) else {
        return Reason::NoPreference;
    };
    if !prefs.selects(&view.labels)
        && let Some(selector) = &prefs.cluster_selector
        && let Some(unmet) = first_unmet(selector, &view.labels)
    {
        return unmet;
    }
    if own.max_replicas == Some(0) {
        return Reason::MaxReplicasZero;
    }
    // What fits there, when the split weighs by capacity (`Some(0)` without a report).
    let fit = demand.map(|d| view.capacity.as_deref().map_or(0, |c| pods_that_fit(d, c)));
    if own.min_replicas == 0 && fit.is_none_or(|f| f == 0) {
        if let (Some(demand), Some(_)) = (demand, &view.capacity) {
            return Reason::NoNodeFits {
                requests: requests_text(demand),
            };
        }
        if own.weight == 0 {
            return Reason::WeightZero;
        }
        if demand.is_some() {
            return Reason::NoCapacityReported;
        }
    }
    if !fj.members.contains(name) {
        return Reason::JoinedLater;
    }
    Reason::NothingLeft
}

/// The first requirement of `selector` that `labels` fail, as a [`Reason::NotSelected`].
fn first_unmet(selector: &Selector, labels: &BTreeMap<String, String>) -> Option<Reason> {
    let unmet = |key: &str, requirement: String| Reason::NotSelected {
        requirement,
        value: labels.get(key).cloned(),
        key: key.to_owned(),
    };
    for (key, value) in &selector.match_labels {
        if labels.get(key) != Some(value) {
            return Some(unmet(key, format!("{key}={value}")));
        }
    }
    for r in &selector.match_expressions {
        let one = Selector {
            match_expressions: vec![r.clone()],
            ..Default::default()
        };
        if !one.matches(labels) {
            let text = if r.operator.takes_values() {
                format!(
                    "{} {} ({})",
                    r.key,
                    r.operator.as_str(),
                    r.values.join(", ")
                )
            } else {
                format!("{} {}", r.key, r.operator.as_str())
            };
            return Some(unmet(&r.key, text));
        }
    }
    None
}

/// What one pod requests, as `cpu 500m, memory 1Gi` (`nothing` when it requests nothing).
fn requests_text(demand: &PodDemand) -> String {
    let parts: Vec<String> = demand
        .requests
        .iter()
        .map(|(name, amount)| format!("{name} {}", format_amount(name, *amount)))
        .collect();
    if parts.is_empty() {
        "it requests nothing but a place among the node's pods".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Why work of `fj` found no cluster, for its `Unschedulable` message: SPEC §10's words when
/// the preferences give no registered cluster a weight (whatever their state), the
/// clusterSelector's when it selects none, that none takes new work, otherwise that no eligible
/// cluster has room.
pub fn unplaced_because(fj: &FederatedJob, clusters: &Clusters) -> String {
    let prefs =
        Preferences::from_annotations(fj.job.metadata.annotations.as_ref()).unwrap_or_default();
    // By capacity, a weight of 0 still takes what fits.
    let weighs = |name: &str| {
        prefs
            .for_cluster(name)
            .is_some_and(|p| p.weight > 0 || p.min_replicas > 0 || prefs.dynamic_weight.is_some())
    };
    if clusters.is_empty() {
        "no cluster is registered".to_owned()
    } else if !clusters.keys().any(|name| weighs(name)) {
        NO_WEIGHT.to_owned()
    } else if !clusters.values().any(|v| prefs.selects(&v.labels)) {
        "the clusterSelector selects no registered cluster".to_owned()
    } else if !clusters.values().any(ClusterView::schedulable) {
        "no registered cluster is Ready and uncordoned".to_owned()
    } else {
        "no eligible cluster has room".to_owned()
    }
}

#[cfg(test)]
mod tests;
