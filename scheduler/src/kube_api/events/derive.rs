//! What the federation did to a Job, told as Kubernetes events: a pure function of one change
//! of the Job's record (before → after, as the control plane publishes it), so that `kubectl
//! describe job` reads as the Job's story across the clusters.
//!
//! Every event is a difference between the two records, so a change that changes nothing tells
//! nothing, and a step that happens once in a shard's life (created in its cluster, finished,
//! deleted) is told once. What each says:
//!
//! | reason | type | when |
//! |---|---|---|
//! | `ClusterLost` | Warning | a lost cluster's unfinished work was planned again elsewhere (`rebalance: true`) |
//! | `SplitPlanned` | Normal | the split changed: per-cluster parallelism and completions, and what could not be placed |
//! | `SuccessfulCreate` | Normal | a shard exists in its cluster (its agent reported it for the first time) |
//! | `SuccessfulUpdate` | Normal | a running shard's parallelism changed |
//! | `Suspended`, `Resumed` | Normal | a shard was suspended or resumed in its cluster |
//! | `ShardCompleted` | Normal | a shard reached Complete in its cluster |
//! | `ShardFailed` | Warning | a shard reached Failed in its cluster |
//! | `ShardLost` | Warning | a shard was deleted in its cluster before it finished |
//! | `ShardConflict`, `ShardRefused` | Warning | the cluster holds a Job fedjob did not create, or refused the shard |
//! | `Deleting` | Normal | the federation asked a cluster to delete a shard, and why |
//! | `SuccessfulDelete` | Normal | the cluster confirmed the deletion |
//! | `Completed` | Normal | the federated Job is Complete, with the clusters' counts |
//! | the condition's reason | Warning | the federated Job Failed |
//! | `Unschedulable` | Warning | work could not be placed (the condition's message) |
//! | `PodsUnschedulable` | Warning | a cluster cannot schedule a shard's pods and its work waits (the condition's message) |
//! | `SpilledOver` | Warning | unstarted work moved off a shard whose pods could not be scheduled (the condition's message) |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::model::clusters::Clusters;
use crate::model::job::{FederatedJob, ObservedPhase, Shard, ShardState, StopReason};
use crate::model::spill;
use crate::model::status::{self, PlacementView};

/// The type of an event, as `kubectl describe` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Something went as planned.
    Normal,
    /// Something a person may have to look at.
    Warning,
}

impl Severity {
    /// `Normal` or `Warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Normal => "Normal",
            Severity::Warning => "Warning",
        }
    }
}

/// One thing that happened to a federated Job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Occurrence {
    /// Normal or Warning.
    pub severity: Severity,
    /// A short CamelCase reason (`SuccessfulCreate`).
    pub reason: String,
    /// What happened, naming the cluster.
    pub message: String,
}

/// The longest message kept: the API server's limit on an event's `note` (1 kB).
pub const MAX_MESSAGE: usize = 1024;

impl Occurrence {
    fn new(severity: Severity, reason: &str, message: String) -> Self {
        Self {
            severity,
            reason: reason.to_owned(),
            message: truncate(message),
        }
    }

    fn normal(reason: &str, message: String) -> Self {
        Self::new(Severity::Normal, reason, message)
    }

    fn warning(reason: &str, message: String) -> Self {
        Self::new(Severity::Warning, reason, message)
    }
}

/// What happened to a Job between `before` and `after` (`None`: it did not exist), in the
/// order it is told: clusters lost, the split, each shard in cluster order, the Job's end.
///
/// A Job deleted and created again under the same name (another uid) is told as the end of
/// the one and the start of the other.
pub fn derive(before: Option<&FederatedJob>, after: Option<&FederatedJob>) -> Vec<Occurrence> {
    if let (Some(b), Some(a)) = (before, after)
        && b.uid() != a.uid()
    {
        let mut told = derive(Some(b), None);
        told.extend(derive(None, Some(a)));
        return told;
    }
    let Some(after) = after else {
        // A deleted Job's record is gone with nothing more to tell: its shards' deletions were
        // told as they were confirmed, and an orphaning delete leaves them running.
        return Vec::new();
    };
    let shards_before: BTreeMap<(&str, &str), &Shard> = before
        .map(|b| {
            b.shards
                .iter()
                .map(|s| ((s.cluster.as_str(), s.name.as_str()), s))
                .collect()
        })
        .unwrap_or_default();
    let mut told = Vec::new();
    told.extend(clusters_lost(&shards_before, after));
    told.extend(split_planned(before, after, &shards_before));
    for shard in &after.shards {
        let key = (shard.cluster.as_str(), shard.name.as_str());
        shard_changes(shards_before.get(&key).copied(), shard, after, &mut told);
    }
    told.extend(ending(before, after));
    told
}

/// `ClusterLost`: active shards of a lost cluster were superseded in this change, and the new
/// shards planned in the same change took their work.
fn clusters_lost(
    before: &BTreeMap<(&str, &str), &Shard>,
    after: &FederatedJob,
) -> Option<Occurrence> {
    let superseded: Vec<&Shard> = after
        .shards
        .iter()
        .filter(|s| s.stop_reason == Some(StopReason::Superseded))
        .filter(|s| {
            // A shard whose work spilled over in this change was not lost: `SpilledOver` tells it.
            before
                .get(&(s.cluster.as_str(), s.name.as_str()))
                .is_some_and(|b| b.state == ShardState::Active && b.spilled_at == s.spilled_at)
        })
        .collect();
    if superseded.is_empty() {
        return None;
    }
    let lost: BTreeSet<&str> = superseded.iter().map(|s| s.cluster.as_str()).collect();
    let mut added: BTreeMap<&str, i32> = BTreeMap::new();
    for s in after
        .shards
        .iter()
        .filter(|s| !before.contains_key(&(s.cluster.as_str(), s.name.as_str())))
    {
        *added.entry(s.cluster.as_str()).or_default() += s.completions.unwrap_or(0);
    }
    let names = lost.iter().copied().collect::<Vec<_>>().join(", ");
    let subject = if lost.len() == 1 {
        format!("Cluster {names} was lost")
    } else {
        format!("Clusters {names} were lost")
    };
    let message = if after.spec().completions.is_some() {
        let unfinished: i32 = superseded
            .iter()
            .map(|s| (s.completions.unwrap_or(0) - s.succeeded()).max(0))
            .sum();
        let destinations = added
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| format!("{c} ({n})"))
            .collect::<Vec<_>>();
        if destinations.is_empty() {
            format!(
                "{subject}: its {unfinished} unfinished completions could not be placed elsewhere"
            )
        } else {
            format!(
                "{subject}: its {unfinished} unfinished completions move to {}",
                destinations.join(", ")
            )
        }
    } else {
        let to: Vec<&str> = after
            .planned
            .iter()
            .filter(|(c, p)| **p > 0 && !lost.contains(c.as_str()))
            .map(|(c, _)| c.as_str())
            .collect();
        if to.is_empty() {
            format!("{subject}: its work could not be placed elsewhere")
        } else {
            format!("{subject}: its work goes on in {}", to.join(", "))
        }
    };
    Some(Occurrence::warning("ClusterLost", message))
}

/// `SplitPlanned`: the planned parallelism, what could not be placed, or the shards changed.
fn split_planned(
    before: Option<&FederatedJob>,
    after: &FederatedJob,
    shards_before: &BTreeMap<(&str, &str), &Shard>,
) -> Option<Occurrence> {
    let planned_before = before.map(|b| (&b.planned, b.unplaced));
    let shards_added = after
        .shards
        .iter()
        .any(|s| !shards_before.contains_key(&(s.cluster.as_str(), s.name.as_str())));
    let planned_now = (&after.planned, after.unplaced);
    let unchanged = match planned_before {
        Some(b) => b == planned_now,
        // A new record: its first plan is told even when nothing could be planned yet.
        None => after.planned.is_empty() && after.unplaced == Default::default(),
    };
    if unchanged && !shards_added {
        return None;
    }
    let spec = after.spec();
    let work_queue = spec.completions.is_none();
    let shares: Vec<PlacementView> = status::placements(after, &Clusters::new())
        .into_iter()
        .filter(|p| p.parallelism > 0 || p.completions.unwrap_or(0) > 0)
        .collect();
    let mut message = format!("Planned parallelism {}", spec.parallelism.unwrap_or(1));
    if let Some(c) = spec.completions {
        let _ = write!(message, " and {c} completions");
    }
    let plural = if shares.len() == 1 { "" } else { "s" };
    let _ = write!(message, " over {} cluster{plural}", shares.len());
    let per_cluster: Vec<String> = shares
        .iter()
        .map(|p| match p.completions {
            Some(c) if !work_queue => {
                format!(
                    "{} (parallelism {}, completions {c})",
                    p.cluster, p.parallelism
                )
            }
            _ => format!("{} (parallelism {})", p.cluster, p.parallelism),
        })
        .collect();
    if !per_cluster.is_empty() {
        let _ = write!(message, ": {}", per_cluster.join(", "));
    }
    let u = after.unplaced;
    if u != Default::default() {
        let _ = write!(message, "; not placed: parallelism {}", u.parallelism);
        if !work_queue {
            let _ = write!(message, ", completions {}", u.completions);
        }
    }
    Some(Occurrence::normal("SplitPlanned", message))
}

/// What happened to one shard between its two states.
fn shard_changes(
    before: Option<&Shard>,
    s: &Shard,
    job: &FederatedJob,
    told: &mut Vec<Occurrence>,
) {
    let (name, cluster) = (&s.name, &s.cluster);
    let was_seen = before.is_some_and(|b| b.seen);
    let state_before = before.map(|b| b.state);
    let phase_before = before.and_then(Shard::observed_phase);
    let phase = s.observed_phase();
    let o = s.observed.clone().unwrap_or_default();
    if s.seen && !was_seen {
        let mut m = format!(
            "Created shard {name} in cluster {cluster} (parallelism {}",
            s.parallelism
        );
        if let Some(c) = s.completions {
            let _ = write!(m, ", completions {c}");
        }
        m.push(')');
        told.push(Occurrence::normal("SuccessfulCreate", m));
    }
    if let Some(b) = before
        && was_seen
        && b.state == ShardState::Active
        && s.state == ShardState::Active
        && b.parallelism != s.parallelism
    {
        told.push(Occurrence::normal(
            "SuccessfulUpdate",
            format!(
                "Updated shard {name} in cluster {cluster}: parallelism from {} to {}",
                b.parallelism, s.parallelism
            ),
        ));
    }
    if s.state == ShardState::Active && phase != phase_before {
        match (phase_before, phase) {
            (_, Some(ObservedPhase::Suspended)) => told.push(Occurrence::normal(
                "Suspended",
                format!("Suspended shard {name} in cluster {cluster}"),
            )),
            (Some(ObservedPhase::Suspended), Some(ObservedPhase::Running)) => {
                told.push(Occurrence::normal(
                    "Resumed",
                    format!("Resumed shard {name} in cluster {cluster}"),
                ))
            }
            _ => {}
        }
    }
    let refused = |p: Option<ObservedPhase>| {
        matches!(p, Some(ObservedPhase::Conflict | ObservedPhase::Error))
    };
    let message_before = before
        .and_then(|b| b.observed.as_ref())
        .map(|o| o.detail.message());
    if refused(phase) && (phase != phase_before || message_before != Some(o.detail.message())) {
        let detail = if o.detail.message().is_empty() {
            String::new()
        } else {
            format!(": {}", o.detail.message())
        };
        told.push(match phase {
            Some(ObservedPhase::Conflict) => Occurrence::warning(
                "ShardConflict",
                format!(
                    "Shard {name} was not created in cluster {cluster}: a Job of that name exists that fedjob did not create{detail}"
                ),
            ),
            _ => Occurrence::warning("ShardRefused", format!("Cluster {cluster} refused shard {name}{detail}")),
        });
    }
    if state_before == Some(s.state) {
        return;
    }
    match s.state {
        ShardState::Finished if phase == Some(ObservedPhase::Failed) => {
            let mut m = format!("Shard {name} in cluster {cluster} failed");
            for part in [o.detail.reason(), o.detail.message()] {
                if !part.is_empty() {
                    let _ = write!(m, ": {part}");
                }
            }
            told.push(Occurrence::warning("ShardFailed", m));
        }
        ShardState::Finished => told.push(Occurrence::normal(
            "ShardCompleted",
            format!(
                "Shard {name} in cluster {cluster} completed ({} succeeded)",
                o.succeeded
            ),
        )),
        ShardState::Lost => {
            let reached = match s.completions {
                Some(c) => format!(" ({} of {c} completions succeeded)", o.succeeded),
                None => String::new(),
            };
            told.push(Occurrence::warning(
                "ShardLost",
                format!(
                    "Shard {name} was deleted in cluster {cluster} before it finished{reached}; its remaining work is planned again"
                ),
            ));
        }
        ShardState::Stopping => {
            let why = match s.stop_reason {
                Some(StopReason::Surplus) if job.condition("Failed") => "the Job failed".to_owned(),
                Some(StopReason::Surplus) => "the Job has completed".to_owned(),
                Some(StopReason::Unstarted) => {
                    "completions were lowered before it started".to_owned()
                }
                Some(StopReason::Superseded) if s.spilled_at.is_some() => {
                    "its pods could not be scheduled there, so its unstarted work moved elsewhere"
                        .to_owned()
                }
                Some(StopReason::Superseded) => {
                    format!("its work was planned again elsewhere after cluster {cluster} was lost")
                }
                Some(StopReason::Excluded) => {
                    format!("the preferences no longer allow cluster {cluster}")
                }
                Some(StopReason::Cascade) => {
                    "the Job is being deleted with propagationPolicy Background".to_owned()
                }
                None => "the federation stopped it".to_owned(),
            };
            told.push(Occurrence::normal(
                "Deleting",
                format!("Deleting shard {name} in cluster {cluster}: {why}"),
            ));
        }
        ShardState::Retired => {
            let why = if job.condition("Failed") {
                "the Job failed"
            } else {
                "the Job has completed"
            };
            told.push(Occurrence::normal(
                "ShardStopped",
                format!(
                    "Suspending shard {name} in cluster {cluster}: {why}; it is kept there with its counts"
                ),
            ));
        }
        // Only a shard the cluster was asked to delete is told as deleted; one stopped before
        // it was ever created has nothing to delete.
        ShardState::Stopped if state_before == Some(ShardState::Stopping) => {
            told.push(Occurrence::normal(
                "SuccessfulDelete",
                format!("Deleted shard {name} in cluster {cluster}"),
            ))
        }
        ShardState::Stopped | ShardState::Active => {}
    }
}

/// The Job's own conditions: Complete, Failed, Unschedulable, PodsUnschedulable, SpilledOver.
fn ending(before: Option<&FederatedJob>, after: &FederatedJob) -> Vec<Occurrence> {
    let condition = |fj: Option<&FederatedJob>, type_: &str| {
        fj.and_then(|j| j.job.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == "True"))
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            })
    };
    let mut told = Vec::new();
    // Work that could not be placed, pods a cluster cannot schedule, and work spilled over
    // (SPEC §10): each told when its condition's message changes.
    for (type_, reason) in [
        ("Unschedulable", "Unschedulable"),
        (spill::WAITING_CONDITION, spill::WAITING_CONDITION),
        (spill::MOVED_CONDITION, spill::MOVED_CONDITION),
    ] {
        if let Some((_, message)) = condition(Some(after), type_)
            && condition(before, type_).map(|(_, m)| m) != Some(message.clone())
        {
            told.push(Occurrence::warning(reason, message));
        }
    }
    if condition(Some(after), "Complete").is_some() && condition(before, "Complete").is_none() {
        let per_cluster: Vec<String> = status::placements(after, &Clusters::new())
            .iter()
            .filter(|p| p.succeeded > 0)
            .map(|p| format!("{} {}", p.cluster, p.succeeded))
            .collect();
        let succeeded = status::total_succeeded(after);
        let mut message = format!("Job completed: {succeeded} succeeded");
        if !per_cluster.is_empty() {
            let _ = write!(message, " ({})", per_cluster.join(", "));
        }
        told.push(Occurrence::normal("Completed", message));
    }
    if let Some((reason, message)) = condition(Some(after), "Failed")
        && condition(before, "Failed").is_none()
    {
        let reason = if reason.is_empty() {
            "Failed".to_owned()
        } else {
            reason
        };
        told.push(Occurrence::warning(&reason, message));
    }
    told
}

/// `message` cut to [`MAX_MESSAGE`] bytes on a character boundary, marked when cut.
fn truncate(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    const MARK: &str = " …";
    let mut end = MAX_MESSAGE - MARK.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(MARK);
    message
}

#[cfg(test)]
mod tests;
