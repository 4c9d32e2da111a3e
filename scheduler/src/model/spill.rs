//! Spill-over (SPEC §10): what becomes of a shard whose pods its cluster cannot place.
//!
//! An agent with `--report-capacity` reports the shards with pods Pending because no node has
//! room ([`Stuck`]). With `"rebalance": true`, a shard stuck for longer than
//! `pendingTimeoutSeconds` has its unstarted completions moved by the failover rules (§6):
//! nothing that ran or succeeded runs again, and the totals stay exact.
//!
//! - Its unstarted completions are those it still lacks beyond what its running pods work on.
//!   They become new shards in the eligible clusters with room (not cordoned, NotReady, lost
//!   or stuck themselves), in proportion to how many of the Job's pods fit there where agents
//!   report capacity (a cluster where none fits, or that reports none, is then left out), else
//!   to the preferences' weights; where no cluster has room, the work waits.
//! - A shard with running pods keeps them: the completions moved are counted off it
//!   ([`Shard::moved`]), so its parallelism falls to what runs (the Job controller removes its
//!   pending pods first) and it is suspended once the federated Job is complete. A shard with
//!   none running is stopped as superseded (its succeeded pods stay counted) and its cluster
//!   leaves the Job's members.
//! - A report is acted on once: a shard remembers when its work moved ([`Shard::spilled_at`]),
//!   and a report of pods unschedulable since before then, less the timeout, is the one acted
//!   on (or an older one). Pending reports live in the memory of the replica each agent streams
//!   to, so after a leader change another replica may hold the same report, or the agent may
//!   report the same pods again before their deletion reaches it; the record, written by
//!   compare-and-swap, is what every replica decides from, so none moves the same work twice.
//!
//! Conditions say what happens: `PodsUnschedulable` why stuck work waits, `SpilledOver` what
//! moved where. A pure function of the record, the stuck shards, the clusters, what has room
//! and the time.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::clusters::Clusters;
use super::job::{ClusterName, FederatedJob, Shard, ShardState, StopReason};
use super::planner;
use super::preferences::Preferences;
use super::split::{split_in_proportion, tie_break};

/// Condition of a Job whose pods some cluster cannot place and that waits for room.
pub const WAITING_CONDITION: &str = "PodsUnschedulable";
/// Condition of a Job whose work moved because its pods could not be placed.
pub const MOVED_CONDITION: &str = "SpilledOver";

/// A shard with pods its cluster reports unschedulable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// Namespace of the shard.
    pub namespace: String,
    /// Name of the local Job.
    pub shard: String,
    /// The local Job's uid.
    pub local_uid: String,
    /// Pods unschedulable.
    pub pods: i32,
    /// Since when the longest-waiting of them is.
    pub since: Timestamp,
    /// What the cluster's scheduler said of it.
    pub message: String,
}

/// Whether `stuck`, reported by `cluster`, is about `shard` (same cluster, name, and local Job
/// when the federation knows its uid).
pub fn is_about(shard: &Shard, cluster: &str, stuck: &Stuck) -> bool {
    let uid = shard.observed.as_ref().map(|o| &o.local_uid);
    shard.cluster == cluster
        && shard.name == stuck.shard
        && uid.is_none_or(|u| u.is_empty() || u.is(&stuck.local_uid))
}

/// `n` and the noun, singular or plural: `1 pod`, `3 pods`.
pub fn count(n: i32, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Why a stuck shard's work stays where it is; `None` when it moves now.
fn waits_because(prefs: &Preferences, due: Timestamp, now: Timestamp) -> Option<String> {
    if !prefs.rebalance {
        return Some("rebalance is false, so the work waits for room there".into());
    }
    if now < due {
        return Some(format!(
            "its unstarted work moves at {due} (pendingTimeoutSeconds {}) if no pod is placed by then",
            prefs.pending_timeout().as_secs()
        ));
    }
    None
}

/// The record after spill-over for `fj`, given the shards its clusters report stuck
/// (`stuck`: cluster and report, about any Job) and `room` (pods of this Job's template that fit
/// per cluster, where capacity is reported). `None` when nothing changes.
pub fn spill_over(
    fj: &FederatedJob,
    stuck: &[(String, Stuck)],
    room: &BTreeMap<String, u64>,
    clusters: &Clusters,
    now: Timestamp,
) -> Option<FederatedJob> {
    let mut next = fj.clone();
    if fj.deletion.is_some() || fj.is_finished() {
        set_condition(&mut next, WAITING_CONDITION, None, now);
        return (next != *fj).then_some(next);
    }
    let prefs =
        Preferences::from_annotations(fj.job.metadata.annotations.as_ref()).unwrap_or_default();
    let timeout = prefs.pending_timeout();
    let stuck_in: BTreeSet<&str> = stuck.iter().map(|(c, _)| c.as_str()).collect();
    let targets = targets(fj, &prefs, clusters, room, &stuck_in);
    let mut waiting = Vec::new();
    let mut moved = Vec::new();
    for i in 0..fj.shards.len() {
        let shard = &next.shards[i];
        if shard.state != ShardState::Active {
            continue;
        }
        let Some((cluster, report)) = stuck.iter().find(|(c, s)| is_about(shard, c, s)) else {
            continue;
        };
        let due = report.since + timeout;
        if shard.spilled_at.get().is_some_and(|at| due <= at) {
            // Acted on when the work moved: these pods are going, or gone.
            continue;
        }
        let active = shard.observed.as_ref().map_or(0, |o| o.active);
        let running = (active - report.pods).max(0);
        let unstarted = match shard.completions {
            Some(_) => (shard.remaining() - running).max(0),
            // A work queue's shard has no count: it moves whole, and only with nothing running.
            None => i32::from(running == 0),
        };
        let stuck_for = format!(
            "{} of {} unschedulable since {} ({})",
            count(report.pods, "pod"),
            shard.name,
            report.since,
            report.message.trim_end_matches('.')
        );
        let why = waits_because(&prefs, due, now).or_else(|| {
            if unstarted == 0 {
                Some(format!(
                    "it runs {} for what it lacks, so nothing moves",
                    count(running, "pod")
                ))
            } else if targets.is_empty() {
                Some("no other eligible cluster has room".to_owned())
            } else {
                None
            }
        });
        match why {
            Some(why) => waiting.push(format!("{cluster}: {stuck_for}; {why}")),
            None => {
                let (name, work_queue) = (shard.name.clone(), shard.completions.is_none());
                let to = move_work(&mut next, i, unstarted, running, &targets, clusters, now);
                let mut what = if work_queue {
                    let to: Vec<&str> = to.iter().map(|(c, _)| c.as_str()).collect();
                    format!(
                        "moved work queue shard {name} of {cluster}: {stuck_for} to {}",
                        to.join(", ")
                    )
                } else {
                    let to: Vec<String> = to
                        .iter()
                        .map(|(c, n)| format!("{c} ({})", count(*n, "completion")))
                        .collect();
                    format!(
                        "moved {} of {cluster}: {stuck_for} to {}",
                        count(unstarted, "unstarted completion"),
                        to.join(", ")
                    )
                };
                if running > 0 {
                    what.push_str(&format!(
                        "; {name} keeps its {} in {cluster}",
                        count(running, "running pod")
                    ));
                }
                moved.push(what);
            }
        }
    }
    set_condition(
        &mut next,
        WAITING_CONDITION,
        (!waiting.is_empty()).then(|| ("WaitingForRoom", waiting.join("; "))),
        now,
    );
    if !moved.is_empty() {
        planner::reconcile(&mut next, clusters, now);
        set_condition(
            &mut next,
            MOVED_CONDITION,
            Some(("PodsUnschedulable", moved.join("; "))),
            now,
        );
    }
    (next != *fj).then_some(next)
}

/// Moves `unstarted` completions of shard `i` of `fj` to `targets`, in proportion to their
/// weights, as new shards: the shard keeps its `running` pods, or is stopped when none run.
/// Returns the clusters the work went to, with the completions each took (a work queue's
/// shard, which has no count, goes to every target: the planner gives them its parallelism).
fn move_work(
    fj: &mut FederatedJob,
    i: usize,
    unstarted: i32,
    running: i32,
    targets: &[(String, i64)],
    clusters: &Clusters,
    now: Timestamp,
) -> Vec<(String, i32)> {
    let shard = &mut fj.shards[i];
    let cluster = shard.cluster;
    let work_queue = shard.completions.is_none();
    shard.spilled_at = now.into();
    if running == 0 {
        // Nothing runs there: the shard goes (its succeeded pods stay counted) and its cluster
        // takes no more of the Job.
        shard.state = ShardState::Stopping;
        shard.stop_reason = Some(StopReason::Superseded);
        fj.members.remove(&cluster);
    } else {
        shard.moved += unstarted;
    }
    let counts = if work_queue {
        vec![0; targets.len()]
    } else {
        let weights: Vec<i64> = targets.iter().map(|(_, w)| *w).collect();
        split_in_proportion(unstarted, &weights)
    };
    let mut to = Vec::new();
    for ((target, _), n) in targets.iter().zip(counts) {
        if work_queue || n > 0 {
            if !work_queue {
                planner::add_shard(fj, target, Some(n), clusters);
            }
            fj.members.insert(ClusterName::new(target));
            to.push((target.clone(), n));
        }
    }
    to
}

/// The clusters with room for `fj`'s moved work, with their weights, in rank order (weight
/// descending, then SPEC §3's tie-break): eligible, schedulable, not lost, holding no stuck
/// shard; weighed by how many of its pods fit where any of them reports capacity (those where
/// none fits, or that report none, left out), else by the preferences' weights.
fn targets(
    fj: &FederatedJob,
    prefs: &Preferences,
    clusters: &Clusters,
    room: &BTreeMap<String, u64>,
    stuck_in: &BTreeSet<&str>,
) -> Vec<(String, i64)> {
    let eligible: Vec<&String> = clusters
        .iter()
        .filter(|(name, view)| {
            view.schedulable()
                && !view.lost
                && prefs.allows(name, &view.labels)
                && !stuck_in.contains(name.as_str())
        })
        .map(|(name, _)| name)
        .collect();
    let by_capacity = eligible.iter().any(|name| room.contains_key(*name));
    let mut targets: Vec<(String, i64)> = eligible
        .into_iter()
        .map(|name| {
            let weight = if by_capacity {
                room.get(name)
                    .map_or(0, |fit| i64::try_from(*fit).unwrap_or(i64::MAX))
            } else {
                prefs.for_cluster(name).map_or(0, |p| p.weight)
            };
            (name.clone(), weight)
        })
        .filter(|(_, w)| *w > 0)
        .collect();
    let key = fj.key();
    targets.sort_by_key(|(name, w)| (std::cmp::Reverse(*w), tie_break(&key, name), name.clone()));
    targets
}

/// Sets (or with `None` removes) the condition `type_`, keeping it as it is when its reason
/// and message did not change.
fn set_condition(
    fj: &mut FederatedJob,
    type_: &str,
    value: Option<(&str, String)>,
    now: Timestamp,
) {
    let status = fj.job.status.get_or_insert_with(JobStatus::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let existing = conditions.iter().position(|c| c.type_ == type_);
    match (existing, value) {
        (Some(i), Some((reason, message)))
            if conditions[i].reason.as_deref() == Some(reason)
                && conditions[i].message.as_deref() == Some(message.as_str()) => {}
        (existing, Some((reason, message))) => {
            let condition = JobCondition {
                type_: type_.to_owned(),
                status: "True".into(),
                reason: Some(reason.to_owned()),
                message: Some(message),
                last_probe_time: None,
                last_transition_time: Some(Time(now)),
            };
            match existing {
                Some(i) => conditions[i] = condition,
                None => conditions.push(condition),
            }
        }
        (Some(i), None) => {
            conditions.remove(i);
        }
        (None, None) => {}
    }
    if conditions.is_empty() {
        status.conditions = None;
    }
}

#[cfg(test)]
mod tests;
