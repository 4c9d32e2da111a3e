//! Status aggregation (SPEC §5): one `batch/v1` JobStatus over all shards, and a per-cluster
//! breakdown.
//!
//! Terminal conditions are sticky: once `Complete` or `Failed` is set, later reports (a shard
//! deleted by its TTL, a late failure of a surplus shard) do not change them.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::clusters::Clusters;
use super::job::{FederatedJob, ObservedPhase, Shard, ShardState, StopReason};
use super::left_out;

/// Sets `Complete` or `Failed` when the shards' reports reach either.
pub fn refresh_terminal(fj: &mut FederatedJob, now: Timestamp) {
    if fj.is_finished() || fj.deletion.is_some() {
        return;
    }
    let failed: Vec<&Shard> = fj
        .shards
        .iter()
        .filter(|s| {
            s.state == ShardState::Finished && s.observed_phase() == Some(ObservedPhase::Failed)
        })
        .collect();
    if !failed.is_empty() {
        let mut clusters: Vec<&str> = failed.iter().map(|s| s.cluster.as_str()).collect();
        clusters.dedup();
        let reason = failed
            .iter()
            .find_map(|s| s.observed.as_ref().map(|o| o.detail.reason().to_owned()))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "ShardFailed".into());
        let message = format!("Job failed in cluster(s) {}", clusters.join(", "));
        set_condition(fj, condition("Failed", &reason, &message, now));
        return;
    }
    let complete = match fj.spec().completions {
        Some(total) => total_succeeded(fj) >= i64::from(total),
        None => {
            let mut running = fj
                .shards
                .iter()
                .filter(|s| matches!(s.state, ShardState::Active | ShardState::Finished))
                .peekable();
            running.peek().is_some()
                && running.all(|s| {
                    s.state == ShardState::Finished
                        && s.observed_phase() == Some(ObservedPhase::Complete)
                })
        }
    };
    if complete {
        // The latest of the shards' (SPEC §5), not when the federation noticed: reports may
        // arrive late, after a restart or a partition.
        let completed_at = fj
            .shards
            .iter()
            .filter_map(|s| s.observed.as_ref()?.completion_time.get())
            .max()
            .unwrap_or(now);
        let status = fj.job.status.get_or_insert_with(Default::default);
        status.completion_time = Some(Time(completed_at));
        set_condition(
            fj,
            condition(
                "Complete",
                "CompletionsReached",
                "Job completed in every cluster",
                now,
            ),
        );
    }
}

/// Recomputes the aggregated counts, `startTime` and the `Unschedulable`/`Suspended` conditions.
/// An `Unschedulable` condition about the same unplaced counts keeps the reason the planner
/// gave it ([`refresh_planned`]): only planning changes what is unplaced.
pub fn refresh(fj: &mut FederatedJob, now: Timestamp) {
    refresh_with(fj, None, now);
}

/// [`refresh`] after planning over `clusters`: the `Unschedulable` message says why no cluster
/// took the work ([`left_out::unplaced_because`]), in SPEC §10's words when the preferences
/// give no cluster a weight.
pub fn refresh_planned(fj: &mut FederatedJob, clusters: &Clusters, now: Timestamp) {
    let unplaced = fj.unplaced.parallelism > 0 || fj.unplaced.completions > 0;
    let why = unplaced.then(|| left_out::unplaced_because(fj, clusters));
    refresh_with(fj, why, now);
}

fn refresh_with(fj: &mut FederatedJob, why: Option<String>, now: Timestamp) {
    let active: i32 = fj
        .shards
        .iter()
        .filter(|s| s.state == ShardState::Active)
        .filter_map(|s| s.observed.as_ref())
        .map(|o| o.active)
        .sum();
    let succeeded = total_succeeded(fj).min(i64::from(i32::MAX)) as i32;
    let failed: i32 = fj
        .shards
        .iter()
        .filter_map(|s| s.observed.as_ref())
        .map(|o| o.failed)
        .fold(0i32, i32::saturating_add);
    let first_start = fj
        .shards
        .iter()
        .filter_map(|s| s.observed.as_ref()?.start_time.get())
        .min();
    let unschedulable = (fj.unplaced.parallelism > 0 || fj.unplaced.completions > 0).then(|| {
        let counts = format!(
            "parallelism {} and completions {} could not be placed: ",
            fj.unplaced.parallelism, fj.unplaced.completions
        );
        let kept = fj
            .job
            .status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "Unschedulable")
            })
            .and_then(|c| c.message.as_deref()?.strip_prefix(counts.as_str()))
            .map(str::to_owned);
        let why = why
            .or(kept)
            .unwrap_or_else(|| "no eligible cluster has room".to_owned());
        condition(
            "Unschedulable",
            "NoEligibleCluster",
            &format!("{counts}{why}"),
            now,
        )
    });
    let suspended = (fj.spec().suspend == Some(true) && !fj.is_finished())
        .then(|| condition("Suspended", "JobSuspended", "Job suspended", now));

    let status = fj.job.status.get_or_insert_with(JobStatus::default);
    status.active = (active > 0).then_some(active);
    status.succeeded = (succeeded > 0).then_some(succeeded);
    status.failed = (failed > 0).then_some(failed);
    if status.start_time.is_none() {
        status.start_time = first_start.map(Time);
    }
    replace_condition(fj, "Unschedulable", unschedulable);
    replace_condition(fj, "Suspended", suspended);
}

/// Sets or clears the `StaticWeights` condition: a Job that weighs clusters by capacity
/// (`dynamicWeight`) was split, wholly or in part, by the static weights; `note` is the
/// reason and message.
pub fn note_static_weights(fj: &mut FederatedJob, note: Option<(&str, String)>, now: Timestamp) {
    let c = note.map(|(reason, message)| condition("StaticWeights", reason, &message, now));
    replace_condition(fj, "StaticWeights", c);
}

/// Sum of `succeeded` over every shard, ended ones included.
pub fn total_succeeded(fj: &FederatedJob) -> i64 {
    fj.shards.iter().map(|s| i64::from(s.succeeded())).sum()
}

fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn set_condition(fj: &mut FederatedJob, c: JobCondition) {
    let type_ = c.type_.clone();
    replace_condition(fj, &type_, Some(c));
}

/// Puts `c` in place of the condition of type `type_` (or removes it), keeping the transition
/// time when nothing but the probe changed.
fn replace_condition(fj: &mut FederatedJob, type_: &str, c: Option<JobCondition>) {
    let status = fj.job.status.get_or_insert_with(JobStatus::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let existing = conditions.iter().position(|x| x.type_ == type_);
    match (existing, c) {
        (Some(i), Some(c)) => {
            let old = &conditions[i];
            if old.status != c.status || old.reason != c.reason || old.message != c.message {
                conditions[i] = c;
            }
        }
        (None, Some(c)) => conditions.push(c),
        (Some(i), None) => {
            conditions.remove(i);
        }
        (None, None) => {}
    }
    if conditions.is_empty() {
        status.conditions = None;
    }
}

/// A Job's share in one cluster, for the API and `fedctl describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementView {
    /// Cluster name.
    pub cluster: String,
    /// Planned parallelism.
    pub parallelism: i32,
    /// Completions planned in this cluster (None for a work queue).
    pub completions: Option<i32>,
    /// Pods running.
    pub active: i32,
    /// Pods succeeded.
    pub succeeded: i32,
    /// Pods failed.
    pub failed: i32,
    /// Summary state, see [`placements`].
    pub state: &'static str,
    /// Why, when it needs saying.
    pub message: String,
    /// The cluster's shards.
    pub shards: Vec<ShardView>,
}

/// One shard, for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    /// Local Job name.
    pub name: String,
    /// Parallelism set on it.
    pub parallelism: i32,
    /// Completions fixed on it.
    pub completions: Option<i32>,
    /// Pods running.
    pub active: i32,
    /// Pods succeeded.
    pub succeeded: i32,
    /// Pods failed.
    pub failed: i32,
    /// State, see [`shard_state`].
    pub state: &'static str,
    /// Fencing epoch.
    pub epoch: u64,
    /// Why, when it needs saying.
    pub message: String,
}

/// The state of one shard as a person reads it.
pub fn shard_state(s: &Shard, cluster_ready: bool) -> &'static str {
    let phase = s.observed_phase();
    match s.state {
        ShardState::Active => match phase {
            Some(ObservedPhase::Conflict) => "Conflict",
            Some(ObservedPhase::Error) => "Error",
            _ if !cluster_ready => "Waiting",
            Some(ObservedPhase::Suspended) => "Suspended",
            Some(ObservedPhase::Running) if s.started() => "Running",
            _ => "Pending",
        },
        ShardState::Finished if phase == Some(ObservedPhase::Failed) => "Failed",
        ShardState::Finished => "Complete",
        ShardState::Lost => "Lost",
        ShardState::Retired => "Stopped",
        ShardState::Stopping => "Deleting",
        ShardState::Stopped => "Stopped",
    }
}

/// The per-cluster breakdown of a Job, in cluster name order.
///
/// The Job's members, its shards, its planned shares and the clusters are all kept in cluster
/// name order, so one walk over them ([`FederatedJob::cluster_names`]) finds each cluster's
/// part: looking each cluster up in them (a set of names built, a binary search and two map
/// lookups per cluster, comparing names as text) was most of the cost of answering a create
/// over 100 clusters.
pub fn placements(fj: &FederatedJob, clusters: &Clusters) -> Vec<PlacementView> {
    let work_queue = fj.spec().completions.is_none();
    let mut shards = fj.shards.as_slice();
    debug_assert!(
        shards.is_sorted_by(|a, b| a.cluster <= b.cluster),
        "shards out of cluster order"
    );
    let mut planned = fj.planned.iter().peekable();
    let mut known = clusters.iter().peekable();
    let mut out = Vec::with_capacity(fj.members.len());
    for cluster in fj.cluster_names() {
        let here = shards.iter().take_while(|s| s.cluster == cluster).count();
        let (in_cluster, rest) = shards.split_at(here);
        shards = rest;
        let share = advance_to(&mut planned, cluster.as_str(), |(c, _)| c.as_str());
        let view = advance_to(&mut known, cluster.as_str(), |(c, _)| c.as_str());
        let ready = view.is_some_and(|(_, v)| v.ready);
        let parallelism = share.map_or(0, |(_, p)| *p);
        out.push(placement(
            cluster.as_str(),
            in_cluster,
            parallelism,
            ready,
            work_queue,
        ));
    }
    out
}

/// Moves `items` (in ascending order of `name`) past every item before `cluster`; returns the
/// item named `cluster`, if any.
fn advance_to<'a, T>(
    items: &mut std::iter::Peekable<impl Iterator<Item = T>>,
    cluster: &str,
    name: impl Fn(&T) -> &'a str,
) -> Option<T> {
    while items.peek().is_some_and(|i| name(i) < cluster) {
        items.next();
    }
    items.next_if(|i| name(i) == cluster)
}

/// One cluster's part of a Job: its shards `in_cluster` and its planned `parallelism`.
fn placement(
    cluster: &str,
    in_cluster: &[Shard],
    parallelism: i32,
    ready: bool,
    work_queue: bool,
) -> PlacementView {
    let shards: Vec<ShardView> = in_cluster.iter().map(|s| shard_view(s, ready)).collect();
    let completions = (!work_queue).then(|| {
        in_cluster
            .iter()
            .filter(|s| s.stop_reason != Some(StopReason::Unstarted))
            .map(Shard::effective_completions)
            .sum::<i32>()
    });
    let state = placement_state(&shards, ready);
    let message = match state {
        "Waiting" => format!("cluster {cluster} is NotReady; its shards wait for it to come back"),
        _ => shards
            .iter()
            .find(|s| !s.message.is_empty())
            .map(|s| s.message.clone())
            .unwrap_or_default(),
    };
    PlacementView {
        cluster: cluster.to_owned(),
        parallelism,
        completions,
        active: shards.iter().map(|s| s.active).sum(),
        succeeded: shards.iter().map(|s| s.succeeded).sum(),
        failed: shards.iter().map(|s| s.failed).sum(),
        state,
        message,
        shards,
    }
}

fn shard_view(s: &Shard, cluster_ready: bool) -> ShardView {
    let o = s.observed.clone().unwrap_or_default();
    let message = if s.state == ShardState::Retired {
        "suspended by the federation, which no longer needs it; kept with its counts".to_owned()
    } else {
        o.detail.message().to_owned()
    };
    ShardView {
        name: s.name.clone(),
        parallelism: s.parallelism,
        completions: s.completions,
        active: if s.state == ShardState::Active {
            o.active
        } else {
            0
        },
        succeeded: o.succeeded,
        failed: o.failed,
        state: shard_state(s, cluster_ready),
        epoch: s.epoch,
        message,
    }
}

/// One word for a cluster's share: the most pressing state among its shards.
fn placement_state(shards: &[ShardView], ready: bool) -> &'static str {
    let any = |st: &str| shards.iter().any(|s| s.state == st);
    const LIVE: [&str; 4] = ["Running", "Pending", "Suspended", "Waiting"];
    if any("Conflict") {
        "Conflict"
    } else if any("Error") {
        "Error"
    } else if any("Failed") {
        "Failed"
    } else if !ready && shards.iter().any(|s| LIVE.contains(&s.state)) {
        "Waiting"
    } else if let Some(live) = LIVE.iter().find(|st| any(st)) {
        live
    } else if any("Deleting") {
        "Deleting"
    } else if any("Complete") {
        "Complete"
    } else if shards.is_empty() {
        "Idle"
    } else {
        "Stopped"
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::clusters::ClusterView;
    use crate::model::fixtures;
    use crate::model::job::ClusterName;

    /// The clusters of a Job found from scratch: its members and its shards' clusters.
    fn union(fj: &FederatedJob) -> Vec<&str> {
        let names = fj
            .members
            .iter()
            .chain(fj.shards.iter().map(|s| &s.cluster));
        let set: std::collections::BTreeSet<&str> = names.map(ClusterName::as_str).collect();
        set.into_iter().collect()
    }

    /// The breakdown found by looking each cluster up, as it was before the walk: the oracle.
    fn looked_up(fj: &FederatedJob, clusters: &Clusters) -> Vec<PlacementView> {
        let work_queue = fj.spec().completions.is_none();
        union(fj)
            .into_iter()
            .map(|cluster| {
                let ready = clusters.get(cluster).is_some_and(|c| c.ready);
                let parallelism = fj.planned.get(cluster).copied().unwrap_or(0);
                placement(
                    cluster,
                    fj.shards_of(cluster),
                    parallelism,
                    ready,
                    work_queue,
                )
            })
            .collect()
    }

    proptest! {
        /// For any members, shards, planned shares and known clusters, walking them together
        /// finds the clusters and the parts that looking each cluster up finds.
        #[test]
        fn the_walk_finds_what_lookups_find(
            members in proptest::collection::btree_set(0..6usize, 0..6),
            shards in proptest::collection::vec((0..6usize, 1..4i32, any::<bool>()), 0..10),
            planned in proptest::collection::btree_map(0..6usize, 0..5i32, 0..6),
            known in proptest::collection::btree_map(0..6usize, any::<bool>(), 0..6),
            work_queue in any::<bool>(),
        ) {
            let name = |i: usize| format!("cluster-{i}");
            let completions = (!work_queue).then_some(6);
            let mut fj = fixtures::job(3, completions, None);
            crate::model::planner::reconcile(&mut fj, &fixtures::ready(&["cluster-0"]), fixtures::now());
            let template = fj.shards[0].clone();
            fj.members = members.iter().map(|&i| ClusterName::new(&name(i))).collect();
            fj.shards = shards
                .iter()
                .enumerate()
                .map(|(n, &(c, completions, stopped))| Shard {
                    cluster: ClusterName::new(&name(c)),
                    name: format!("myjob-{n}"),
                    completions: Some(completions),
                    state: if stopped { ShardState::Stopped } else { ShardState::Active },
                    ..template.clone()
                })
                .collect();
            fj.shards.sort_by_key(|s| s.cluster);
            fj.planned = planned.iter().map(|(&i, &p)| (ClusterName::new(&name(i)), p)).collect();
            let clusters: Clusters = known
                .iter()
                .map(|(&i, &ready)| (name(i), ClusterView { ready, ..Default::default() }))
                .collect();
            let walked: Vec<&str> = fj.cluster_names().map(|c| c.as_str()).collect();
            prop_assert_eq!(walked, union(&fj));
            prop_assert_eq!(placements(&fj, &clusters), looked_up(&fj, &clusters));
        }
    }
}
