//! Shard planning (SPEC §4): which local Jobs each cluster must run for a federated Job.
//!
//! A member cluster refuses changes to a Job's `completions` and `template`, so a shard's
//! completions are fixed when it is created. [`reconcile`] therefore never edits completions:
//! parallelism is changed in place, more completions become new shards, fewer completions
//! remove shards that have not started, and surplus shards are stopped once the federated total
//! is reached. It is a pure function of the record, the clusters and the time, called after every
//! change (spec update, agent report, cluster state), and it is idempotent.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::clusters::{ClusterView, Clusters};
use super::job::{FederatedJob, Observed, ObservedPhase, Shard, ShardState, StopReason};
use super::preferences::Preferences;
use super::split::{split_in_proportion, split_parallelism};
use super::status;
use fedjob_proto::names::shard_name;

/// Brings `fj`'s shards in line with its spec, preferences and the clusters, and refreshes
/// its aggregated status.
pub fn reconcile(fj: &mut FederatedJob, clusters: &Clusters, now: Timestamp) {
    let prefs =
        Preferences::from_annotations(fj.job.metadata.annotations.as_ref()).unwrap_or_default();
    status::refresh_terminal(fj, now);
    if fj.deletion.is_some() {
        stop_shards(fj, StopReason::Cascade, |s| s.state != ShardState::Stopped);
    } else if fj.is_finished() {
        stop_shards(fj, StopReason::Surplus, |s| s.state == ShardState::Active);
    } else {
        update_members(fj, clusters, &prefs);
        let shares = plan_parallelism(fj, &prefs);
        if fj.spec().completions.is_some() {
            plan_completions(fj, clusters, &prefs, &shares);
        } else {
            plan_work_queue(fj, clusters, &shares);
        }
        distribute_parallelism(fj, &shares);
    }
    bump_revisions(fj);
    // One canonical order (by cluster, creation order within), the order records load in.
    fj.shards.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    status::refresh(fj, now);
}

/// Records what an agent reported of one of `fj`'s shards in `cluster`. Returns false when the
/// report is not about a shard the federation planned there (the agent then forgets it).
pub fn observe(
    fj: &mut FederatedJob,
    cluster: &str,
    shard: &str,
    epoch: u64,
    report: Observed,
) -> bool {
    let Some(s) = fj.shard_mut(cluster, shard) else {
        return false;
    };
    if epoch < s.epoch {
        // Status from before the shard's epoch is about an incarnation the federation fenced off.
        return true;
    }
    let gone = matches!(
        report.phase,
        ObservedPhase::Deleted | ObservedPhase::Missing
    );
    if s.stop_reason == Some(StopReason::Superseded) && !gone {
        // Work of a superseded shard was planned again elsewhere; counting it would overshoot.
        return true;
    }
    let previous = s.observed.take().unwrap_or_default();
    let mut merged = report;
    if s.stop_reason == Some(StopReason::Superseded) {
        // Its removal is taken in, not the counts it reached after it was superseded: the
        // agent reports them as it deletes the shard, and they would overshoot too.
        merged.succeeded = previous.succeeded;
        merged.failed = previous.failed;
    }
    if gone {
        // A deletion may come without counts (the agent found nothing): keep what was known.
        merged.active = 0;
        merged.succeeded = merged.succeeded.max(previous.succeeded);
        merged.failed = merged.failed.max(previous.failed);
        merged.start_time = merged.start_time.or(previous.start_time);
        merged.completion_time = merged.completion_time.or(previous.completion_time);
        if merged.local_uid.is_empty() {
            merged.local_uid = previous.local_uid.clone();
        }
    }
    if merged.phase.exists() {
        s.seen = true;
    }
    s.state = match (s.state, merged.phase) {
        (ShardState::Active, ObservedPhase::Complete | ObservedPhase::Failed) => {
            ShardState::Finished
        }
        (ShardState::Active, _) if gone => {
            if previous.phase == ObservedPhase::Complete {
                merged.phase = ObservedPhase::Complete;
                ShardState::Finished
            } else {
                ShardState::Lost
            }
        }
        (ShardState::Stopping, _) if gone => ShardState::Stopped,
        (state, _) => state,
    };
    if gone
        && matches!(
            previous.phase,
            ObservedPhase::Complete | ObservedPhase::Failed
        )
    {
        // A finished shard removed by its TTL keeps its final phase.
        merged.phase = previous.phase;
    }
    s.observed = Some(merged);
    true
}

fn stop_shards(fj: &mut FederatedJob, reason: StopReason, which: impl Fn(&Shard) -> bool) {
    for s in fj.shards.iter_mut().filter(|s| which(s)) {
        if s.state == ShardState::Stopping {
            continue;
        }
        // A finished or lost shard that was never seen has nothing left to delete.
        s.state = if !s.seen && s.state != ShardState::Active {
            ShardState::Stopped
        } else {
            ShardState::Stopping
        };
        s.stop_reason = Some(reason);
    }
}

/// Drops clusters that can no longer run the Job and, when allowed, takes in new ones.
fn update_members(fj: &mut FederatedJob, clusters: &Clusters, prefs: &Preferences) {
    let excluded = |c: &str| prefs.for_cluster(c).is_none() || !clusters.contains_key(c);
    let lost = |c: &str| prefs.rebalance && clusters.get(c).is_some_and(|v| v.lost);
    for s in fj
        .shards
        .iter_mut()
        .filter(|s| s.state == ShardState::Active)
    {
        let reason = if excluded(&s.cluster) {
            StopReason::Excluded
        } else if lost(&s.cluster) {
            StopReason::Superseded
        } else {
            continue;
        };
        s.state = ShardState::Stopping;
        s.stop_reason = Some(reason);
    }
    fj.members.retain(|c| !excluded(c) && !lost(c));
    if fj.grow_members || fj.unplaced != Default::default() || fj.members.is_empty() {
        fj.members.extend(
            clusters
                .iter()
                .filter(|(name, view)| view.schedulable() && prefs.for_cluster(name).is_some())
                .map(|(name, _)| name.clone()),
        );
        fj.grow_members = false;
    }
}

/// The parallelism share of every member, in rank order.
fn plan_parallelism(fj: &mut FederatedJob, prefs: &Preferences) -> Vec<(String, i32)> {
    let members: Vec<String> = fj.members.iter().cloned().collect();
    let parallelism = fj.spec().parallelism.unwrap_or(1);
    let (shares, unplaced) = split_parallelism(&fj.key(), parallelism, &members, prefs);
    let shares: Vec<(String, i32)> = shares.into_iter().map(|(c, s)| (c.to_owned(), s)).collect();
    fj.unplaced.parallelism = unplaced;
    fj.planned = shares.iter().cloned().collect();
    shares
}

/// Keeps the completions planned over all shards equal to `spec.completions`.
fn plan_completions(
    fj: &mut FederatedJob,
    clusters: &Clusters,
    prefs: &Preferences,
    shares: &[(String, i32)],
) {
    let total = fj.spec().completions.unwrap_or(0);
    let planned = |fj: &FederatedJob| -> i64 {
        fj.shards
            .iter()
            .map(|s| i64::from(s.effective_completions()))
            .sum()
    };
    if planned(fj) > i64::from(total) {
        stop_shards(fj, StopReason::Unstarted, |s| {
            s.state == ShardState::Active && !s.started()
        });
    }
    let deficit = (i64::from(total) - planned(fj)).max(0) as i32;
    fj.unplaced.completions = 0;
    if deficit == 0 {
        return;
    }
    let targets: Vec<&(String, i32)> = shares
        .iter()
        .filter(|(c, _)| clusters.get(c).is_some_and(ClusterView::schedulable))
        .collect();
    let mut weights: Vec<i64> = targets.iter().map(|(_, p)| i64::from(*p)).collect();
    if weights.iter().all(|w| *w == 0) {
        // Nothing runs anywhere (parallelism 0): keep the work where the preferences point.
        weights = targets
            .iter()
            .map(|(c, _)| prefs.for_cluster(c).map_or(0, |p| p.weight))
            .collect();
    }
    if weights.iter().all(|w| *w == 0) {
        fj.unplaced.completions = deficit;
        return;
    }
    let counts = split_in_proportion(deficit, &weights);
    for ((cluster, _), count) in targets.into_iter().zip(counts) {
        if count > 0 {
            add_shard(fj, cluster, Some(count), clusters);
        }
    }
}

/// A work queue has no completions to divide: one shard per cluster with parallelism.
fn plan_work_queue(fj: &mut FederatedJob, clusters: &Clusters, shares: &[(String, i32)]) {
    for (cluster, parallelism) in shares {
        let has_shard = fj
            .shards_in(cluster)
            .any(|s| matches!(s.state, ShardState::Active | ShardState::Finished));
        let schedulable = clusters.get(cluster).is_some_and(ClusterView::schedulable);
        if *parallelism > 0 && !has_shard && schedulable {
            add_shard(fj, cluster, None, clusters);
        }
    }
}

fn add_shard(fj: &mut FederatedJob, cluster: &str, completions: Option<i32>, clusters: &Clusters) {
    let index = fj.shards_in(cluster).count() as u32 + 1;
    fj.shards.push(Shard {
        cluster: cluster.to_owned(),
        name: shard_name(fj.name(), index),
        completions,
        parallelism: 0,
        epoch: clusters.get(cluster).map_or(0, |c| c.epoch),
        state: ShardState::Active,
        stop_reason: None,
        revision: 0,
        fingerprint: 0,
        seen: false,
        observed: None,
    });
}

/// Divides each cluster's parallelism over its active shards, oldest first, each taking no
/// more than the completions it still lacks; a single shard takes the whole share so that a
/// running shard is not patched at every completion.
fn distribute_parallelism(fj: &mut FederatedJob, shares: &[(String, i32)]) {
    let shares: BTreeMap<&str, i32> = shares.iter().map(|(c, p)| (c.as_str(), *p)).collect();
    let mut active: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in fj.shards.iter().enumerate() {
        if s.state == ShardState::Active {
            active.entry(s.cluster.clone()).or_default().push(i);
        }
    }
    for (cluster, indexes) in active {
        let mut left = shares.get(cluster.as_str()).copied().unwrap_or(0);
        if let [only] = indexes[..] {
            fj.shards[only].parallelism = left;
            continue;
        }
        for i in indexes {
            let s = &mut fj.shards[i];
            let wanted = s.completions.map_or(left, |c| (c - s.succeeded()).max(0));
            s.parallelism = wanted.min(left);
            left -= s.parallelism;
        }
    }
}

/// Gives every shard whose desired state changed a new revision, so agents apply it.
fn bump_revisions(fj: &mut FederatedJob) {
    let job_fingerprint = super::render::job_fingerprint(&fj.job);
    let suspended = fj.spec().suspend.unwrap_or(false);
    for s in &mut fj.shards {
        let fp = super::render::shard_fingerprint(job_fingerprint, s, suspended);
        if fp != s.fingerprint || s.revision == 0 {
            s.fingerprint = fp;
            s.revision += 1;
        }
    }
}

#[cfg(test)]
mod tests;
