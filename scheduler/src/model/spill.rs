//! Spill-over (SPEC §10): what becomes of a shard whose pods its cluster cannot place.
//!
//! An agent with `--report-capacity` reports the shards with pods Pending because no node has
//! room ([`Stuck`]). With `"rebalance": true`, a shard stuck for longer than
//! `pendingTimeoutSeconds` has its unstarted completions moved by the failover rules (§6): the
//! shard is stopped as superseded (the counts it reached stay in the federated total, and
//! nothing that ran runs again), its cluster leaves the Job's members, and the planner places
//! the completions it lacks on the other members, or on the eligible clusters when it was the
//! only one. A shard with pods running is left to finish what it runs: stopping it would kill
//! work that ran. Without `rebalance`, the work waits. Either way a condition says why, and
//! `SpilledOver` says what moved where.
//!
//! A pure function of the record, the stuck shards, the clusters, what has room and the time.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::clusters::Clusters;
use super::job::{FederatedJob, Shard, ShardState, StopReason};
use super::planner;
use super::preferences::Preferences;

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
    let uid = shard.observed.as_ref().map_or("", |o| o.local_uid.as_str());
    shard.cluster == cluster
        && shard.name == stuck.shard
        && (uid.is_empty() || uid == stuck.local_uid)
}

/// Why a stuck shard's work stays where it is.
fn waits_because(
    prefs: &Preferences,
    due: Timestamp,
    running: i32,
    now: Timestamp,
) -> Option<String> {
    if !prefs.rebalance {
        return Some("rebalance is false, so the work waits for room there".into());
    }
    if now < due {
        return Some(format!(
            "its unstarted work moves at {due} (pendingTimeoutSeconds {}) if no pod is placed by then",
            prefs.pending_timeout().as_secs()
        ));
    }
    if running > 0 {
        return Some(format!(
            "{running} of its pods run, so it keeps its work (stopping it would run them again)"
        ));
    }
    None
}

/// The record after spill-over for `fj`, given the shards its clusters report stuck
/// (`stuck`: cluster and report, about any Job) and `room` (pods of this Job's template that fit
/// per cluster, where capacity is reported; a cluster without an entry may have room). `None`
/// when nothing changes.
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
    let stuck_clusters: BTreeSet<&str> = stuck.iter().map(|(c, _)| c.as_str()).collect();
    let has_room = |c: &str| {
        !stuck_clusters.contains(c)
            && clusters
                .get(c)
                .is_some_and(|v| v.schedulable() && prefs.allows(c, &v.labels))
            && room.get(c).is_none_or(|fit| *fit > 0)
    };
    let elsewhere: Vec<String> = clusters.keys().filter(|c| has_room(c)).cloned().collect();
    let mut waiting = Vec::new();
    let mut moving: Vec<(usize, String)> = Vec::new();
    for (i, shard) in fj.shards.iter().enumerate() {
        if shard.state != ShardState::Active {
            continue;
        }
        let Some((cluster, report)) = stuck.iter().find(|(c, s)| is_about(shard, c, s)) else {
            continue;
        };
        let active = shard.observed.as_ref().map_or(0, |o| o.active);
        let running = (active - report.pods).max(0);
        let due = report.since + prefs.pending_timeout();
        let why = waits_because(&prefs, due, running, now).or_else(|| {
            elsewhere
                .is_empty()
                .then(|| "no other eligible cluster has room".to_owned())
        });
        let stuck_for = format!(
            "{cluster}: {} pods of {} unschedulable since {} ({})",
            report.pods,
            shard.name,
            report.since,
            report.message.trim_end_matches('.')
        );
        match why {
            Some(why) => waiting.push(format!("{stuck_for}; {why}")),
            None => moving.push((i, stuck_for)),
        }
    }
    set_condition(
        &mut next,
        WAITING_CONDITION,
        (!waiting.is_empty()).then(|| ("WaitingForRoom", waiting.join("; "))),
        now,
    );
    if !moving.is_empty() {
        let before: BTreeSet<(String, String)> = fj
            .shards
            .iter()
            .map(|s| (s.cluster.clone(), s.name.clone()))
            .collect();
        let mut moved = Vec::new();
        for (i, why) in &moving {
            let s = &mut next.shards[*i];
            moved.push(format!("{} completions of {why}", s.remaining()));
            s.state = ShardState::Stopping;
            s.stop_reason = Some(StopReason::Superseded);
            let cluster = s.cluster.clone();
            next.members.remove(&cluster);
        }
        if next.members.is_empty() {
            next.members.extend(elsewhere.iter().cloned());
        }
        planner::reconcile(&mut next, clusters, now);
        let to: Vec<String> = next
            .shards
            .iter()
            .filter(|s| !before.contains(&(s.cluster.clone(), s.name.clone())))
            .map(|s| format!("{} ({} completions)", s.cluster, s.completions.unwrap_or(0)))
            .collect();
        let to = if to.is_empty() {
            "nowhere yet: no eligible cluster took them".to_owned()
        } else {
            to.join(", ")
        };
        let message = format!("moved {} to {to}", moved.join("; "));
        set_condition(
            &mut next,
            MOVED_CONDITION,
            Some(("PodsUnschedulable", message)),
            now,
        );
    }
    (next != *fj).then_some(next)
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
