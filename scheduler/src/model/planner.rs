//! Shard planning (SPEC §4): which local Jobs each cluster must run for a federated Job.
//!
//! A member cluster refuses changes to a Job's `completions` and `template`, so a shard's
//! completions are fixed when it is created. [`reconcile`] therefore never edits completions:
//! parallelism is changed in place, more completions become new shards, fewer completions
//! remove shards that have not started, and surplus shards are stopped once the federated total
//! is reached: suspended and kept where they did work, deleted where they never did. It is a
//! pure function of the record, the clusters and the time, called after every change (spec
//! update, agent report, cluster state), and it is idempotent.
//!
//! Parallelism goes where the work is: the clusters holding unfinished shards divide
//! `spec.parallelism` among them, each taking no more than the completions its shards still
//! lack and keeping what it runs already, so that running + unplaced parallelism is always
//! `spec.parallelism`, bounded by the completions still to run. A cluster with no work of the
//! Job (one that joined after it was created, or whose shards finished) takes none.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;

use super::clusters::{ClusterView, Clusters};
use super::fit::{PodDemand, pods_that_fit};
use super::job::{
    ClusterName, FederatedJob, Observed, ObservedPhase, PackedTime, Shard, ShardState, StopReason,
};
use super::preferences::Preferences;
use super::split::{
    Fits, Holding, split_in_proportion, split_parallelism, split_parallelism_fitting, split_running,
};
use super::status;
use fedjob_proto::names::shard_name;

/// Brings `fj`'s shards in line with its spec, preferences and the clusters, and refreshes
/// its aggregated status.
pub fn reconcile(fj: &mut FederatedJob, clusters: &Clusters, now: Timestamp) {
    plan(fj, clusters, now, Running::Kept);
}

/// Like [`reconcile`], but divides the parallelism afresh, as a change of the preferences asks:
/// a cluster the new preferences favour gets its share even where that stops pods running
/// elsewhere.
pub fn replan(fj: &mut FederatedJob, clusters: &Clusters, now: Timestamp) {
    plan(fj, clusters, now, Running::Replanned);
}

/// What happens to the parallelism that runs when it is divided again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    /// Each cluster keeps what it runs (within the work it holds) before the rest is divided:
    /// work added elsewhere stops no running pod.
    Kept,
    /// Divided afresh.
    Replanned,
}

fn plan(fj: &mut FederatedJob, clusters: &Clusters, now: Timestamp, running: Running) {
    let prefs =
        Preferences::from_annotations(fj.job.metadata.annotations.as_ref()).unwrap_or_default();
    status::refresh_terminal(fj, now);
    if fj.deletion.is_some() {
        stop_shards(fj, StopReason::Cascade, |s| s.state != ShardState::Stopped);
        fj.unplaced = Default::default();
    } else if fj.is_finished() {
        retire_surplus(fj);
        fj.unplaced = Default::default();
    } else {
        let divide_afresh = running == Running::Replanned
            || fj.grow_members
            || fj.needs_room()
            || fj.members.is_empty();
        update_members(fj, clusters, &prefs);
        let afresh = divide_afresh || !follows_plan(fj);
        let fits = if afresh {
            fits(fj, clusters, &prefs)
        } else {
            planned_fits(fj, &prefs)
        };
        // Copied once: the split borrows the names while the shards change.
        let members: Vec<String> = fj.members.iter().map(String::from).collect();
        let (shares, beyond_fit) = split_members(fj, &members, &prefs, fits.as_ref());
        if afresh {
            let note = static_weights_note(fj, &prefs, &fits, beyond_fit);
            status::note_static_weights(fj, note, now);
        }
        if fj.spec().completions.is_some() {
            plan_completions(fj, clusters, &prefs, &shares, fits.as_ref());
        } else {
            plan_work_queue(fj, clusters, &shares);
        }
        plan_running(fj, &members, &prefs, running, fits.as_ref());
        fj.planned = planned_shares(fj, &prefs, &shares, fits.as_ref());
    }
    bump_revisions(fj);
    // One canonical order (by cluster, creation order within), the order records load in.
    // Usually already so (new shards come in cluster order): the stable sort would still
    // allocate a scratch copy of every shard.
    if !fj.shards.is_sorted_by(|a, b| a.cluster <= b.cluster) {
        fj.shards.sort_by_key(|s| s.cluster);
    }
    status::refresh_planned(fj, clusters, now);
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

/// Stops the shards still running once the federated Job has finished: a shard that did work
/// is suspended and stays in its cluster with its counts (the record of that work); one that
/// never did is deleted.
fn retire_surplus(fj: &mut FederatedJob) {
    for s in fj
        .shards
        .iter_mut()
        .filter(|s| s.state == ShardState::Active && s.did_work())
    {
        s.state = ShardState::Retired;
        s.stop_reason = Some(StopReason::Surplus);
    }
    stop_shards(fj, StopReason::Surplus, |s| s.state == ShardState::Active);
}

/// Drops clusters that can no longer run the Job and, when allowed, takes in new ones.
fn update_members(fj: &mut FederatedJob, clusters: &Clusters, prefs: &Preferences) {
    let excluded = |c: &str| !clusters.get(c).is_some_and(|v| prefs.allows(c, &v.labels));
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
                .filter(|(name, view)| view.schedulable() && prefs.allows(name, &view.labels))
                .map(|(name, _)| ClusterName::new(name)),
        );
        fj.grow_members = false;
    }
}

/// Whether the shares planned last still divide the Job's parallelism over its members: true
/// unless the parallelism changed or a member left since.
fn follows_plan(fj: &FederatedJob) -> bool {
    let planned: i64 = fj
        .members
        .iter()
        .map(|c| i64::from(fj.planned.get(c).copied().unwrap_or(0)))
        .sum();
    planned == i64::from(parallelism(fj))
}

/// For a Job that weighs by capacity, between the moments it is planned (SPEC §10: at create,
/// when its counts or preferences change, while work waits for room): the shares planned last
/// stand for what fits, so capacity that its own pods (or anything else) took meanwhile moves
/// no share and no note. Dividing the parallelism by these weights, each capped at itself,
/// gives back exactly those shares.
fn planned_fits(fj: &FederatedJob, prefs: &Preferences) -> Option<Fits> {
    prefs.dynamic_weight?;
    Some(
        fj.planned
            .iter()
            .map(|(c, p)| (String::from(c), u64::try_from(*p).unwrap_or(0)))
            .collect(),
    )
}

/// Whether `after` may place work of `fj` that `before` could not (pure; the control plane
/// asks it of the Jobs with work waiting for room whenever the clusters change): a cluster the
/// preferences allow became eligible (registered, Ready again, uncordoned, labels that now
/// match) or, for a Job that weighs by capacity, reports room for more of its pods than before.
pub fn room_appeared(fj: &FederatedJob, before: &Clusters, after: &Clusters) -> bool {
    if !fj.needs_room() || fj.is_finished() || fj.deletion.is_some() {
        return false;
    }
    let Ok(prefs) = Preferences::from_annotations(fj.job.metadata.annotations.as_ref()) else {
        return false;
    };
    let eligible = |view: Option<&ClusterView>, name: &str| {
        view.is_some_and(|v| v.schedulable() && prefs.allows(name, &v.labels))
    };
    let demand = prefs
        .dynamic_weight
        .and_then(|_| serde_json::to_value(&fj.spec().template).ok())
        .map(|t| PodDemand::of_template(&t));
    // The last report gone (its cluster left): the static weights apply again, to every
    // eligible cluster, as `fits` decides.
    let reports = |clusters: &Clusters| clusters.values().any(|v| v.capacity.is_some());
    if demand.is_some() && reports(before) && !reports(after) {
        return true;
    }
    let fit = |view: &ClusterView| -> u64 {
        match (&demand, view.capacity.as_deref()) {
            (Some(demand), Some(capacity)) => pods_that_fit(demand, capacity),
            _ => 0,
        }
    };
    after.iter().any(|(name, now)| {
        let then = before.get(name);
        if !eligible(Some(now), name) {
            return false;
        }
        match then.filter(|then| eligible(Some(then), name)) {
            None => true,
            // Capacity that is no longer reported brings the static weights back.
            Some(then) => {
                demand.is_some()
                    && !same_capacity(then, now)
                    && (fit(now) > fit(then) || now.capacity.is_none())
            }
        }
    })
}

fn same_capacity(a: &ClusterView, b: &ClusterView) -> bool {
    match (&a.capacity, &b.capacity) {
        (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// How many pods of `fj`'s template fit in each cluster that reports its capacity, when the
/// preferences weigh by it (`dynamicWeight: AvailableReplicas`); `None` when they do not, or
/// when no cluster reports any (the static weights of SPEC §3 then apply).
fn fits(fj: &FederatedJob, clusters: &Clusters, prefs: &Preferences) -> Option<Fits> {
    prefs.dynamic_weight?;
    let template = serde_json::to_value(&fj.spec().template).ok()?;
    let demand = PodDemand::of_template(&template);
    let fits: Fits = clusters
        .iter()
        .filter_map(|(name, view)| {
            let capacity = view.capacity.as_deref()?;
            Some((name.clone(), pods_that_fit(&demand, capacity)))
        })
        .collect();
    (!fits.is_empty()).then_some(fits)
}

/// What the status says when a Job that weighs by capacity was split by the static weights,
/// wholly (no capacity known) or in part (more parallelism than fits anywhere).
fn static_weights_note(
    fj: &FederatedJob,
    prefs: &Preferences,
    fits: &Option<Fits>,
    beyond_fit: i32,
) -> Option<(&'static str, String)> {
    prefs.dynamic_weight?;
    match fits {
        None => Some((
            "NoCapacityReported",
            "dynamicWeight AvailableReplicas: no cluster reports its free capacity \
             (fedjob-syncer --report-capacity), so the split follows the static weights"
                .to_owned(),
        )),
        Some(_) if beyond_fit > 0 => Some((
            "CapacityExceeded",
            format!(
                "dynamicWeight AvailableReplicas: {beyond_fit} of parallelism {} fit nowhere by \
                 the reported capacity and were split by the static weights",
                parallelism(fj)
            ),
        )),
        Some(_) => None,
    }
}

/// The parallelism share of every member as SPEC §3 divides it (by what fits, with `fits`),
/// in rank order: where new work goes, in proportion. Also how much of it was placed beyond
/// what fits.
fn split_members<'a>(
    fj: &FederatedJob,
    members: &'a [String],
    prefs: &Preferences,
    fits: Option<&Fits>,
) -> (Vec<(&'a str, i32)>, i32) {
    split(fj, parallelism(fj), members, prefs, fits)
}

/// [`split_parallelism`], or [`split_parallelism_fitting`] with `fits`; with what was placed
/// beyond what fits.
fn split<'a>(
    fj: &FederatedJob,
    parallelism: i32,
    clusters: &'a [String],
    prefs: &Preferences,
    fits: Option<&Fits>,
) -> (Vec<(&'a str, i32)>, i32) {
    let key = fj.key();
    match fits {
        Some(fits) => {
            let (shares, _, beyond) =
                split_parallelism_fitting(&key, parallelism, clusters, prefs, fits);
            (shares, beyond)
        }
        None => (split_parallelism(&key, parallelism, clusters, prefs).0, 0),
    }
}

fn parallelism(fj: &FederatedJob) -> i32 {
    fj.spec().parallelism.unwrap_or(1).max(0)
}

/// Keeps the completions planned over all shards equal to `spec.completions`.
fn plan_completions(
    fj: &mut FederatedJob,
    clusters: &Clusters,
    prefs: &Preferences,
    shares: &[(&str, i32)],
    fits: Option<&Fits>,
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
    let targets: Vec<&(&str, i32)> = shares
        .iter()
        .filter(|(c, _)| clusters.get(*c).is_some_and(ClusterView::schedulable))
        .collect();
    let mut weights: Vec<i64> = targets.iter().map(|(_, p)| i64::from(*p)).collect();
    if weights.iter().all(|w| *w == 0) {
        // Nothing runs anywhere (parallelism 0): keep the work where the preferences point
        // (where it fits, when they weigh by capacity).
        weights = targets
            .iter()
            .map(|(c, _)| match fits {
                Some(fits) => fits
                    .get(*c)
                    .map_or(0, |f| i64::try_from(*f).unwrap_or(i64::MAX)),
                None => prefs.for_cluster(c).map_or(0, |p| p.weight),
            })
            .collect();
    }
    if weights.iter().all(|w| *w == 0) {
        fj.unplaced.completions = deficit;
        return;
    }
    let counts = split_in_proportion(deficit, &weights);
    // Shards each target holds, counted in one pass: counting per added shard was quadratic
    // in clusters (a Job created over 100 clusters compared 5,000 cluster names).
    let mut held: HashMap<&str, u32> = targets.iter().map(|(c, _)| (*c, 0)).collect();
    for s in &fj.shards {
        if let Some(n) = held.get_mut(s.cluster.as_str()) {
            *n += 1;
        }
    }
    let mut placed: Vec<(&str, i32)> = targets
        .into_iter()
        .zip(counts)
        .filter(|(_, count)| *count > 0)
        .map(|((cluster, _), count)| (*cluster, count))
        .collect();
    // Added in cluster order, the order shards are kept in: a Job's first shards then need no
    // sort (moving every shard of a Job created over 100 clusters was 3 % of the scheduler).
    placed.sort_unstable_by_key(|(cluster, _)| *cluster);
    fj.shards.reserve(placed.len());
    for (cluster, count) in placed {
        let index = held.get(cluster).copied().unwrap_or(0) + 1;
        push_shard(fj, cluster, index, Some(count), clusters);
    }
}

/// A work queue has no completions to divide: one shard per cluster with parallelism.
fn plan_work_queue(fj: &mut FederatedJob, clusters: &Clusters, shares: &[(&str, i32)]) {
    for (cluster, parallelism) in shares {
        let has_shard = fj
            .shards_in(cluster)
            .any(|s| matches!(s.state, ShardState::Active | ShardState::Finished));
        let schedulable = clusters.get(*cluster).is_some_and(ClusterView::schedulable);
        if *parallelism > 0 && !has_shard && schedulable {
            add_shard(fj, cluster, None, clusters);
        }
    }
}

/// Adds a new shard of `completions` in `cluster` (spill-over adds those it moves).
pub(super) fn add_shard(
    fj: &mut FederatedJob,
    cluster: &str,
    completions: Option<i32>,
    clusters: &Clusters,
) {
    let index = fj.shards_in(cluster).count() as u32 + 1;
    push_shard(fj, cluster, index, completions, clusters);
}

/// Adds shard number `index` (1 for the first) of `completions` in `cluster`.
fn push_shard(
    fj: &mut FederatedJob,
    cluster: &str,
    index: u32,
    completions: Option<i32>,
    clusters: &Clusters,
) {
    fj.shards.push(Shard {
        cluster: ClusterName::new(cluster),
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
        moved: 0,
        spilled_at: PackedTime::NONE,
    });
}

/// Divides `spec.parallelism` over the clusters holding the Job's unfinished shards and, in
/// each, over those shards; records the shares shown per cluster and what found no room.
///
/// A cluster takes no more than the completions its shards still lack (a shard never runs
/// more pods than it has completions left) and keeps first what it runs already, so the
/// parallelism a cluster cannot use (its work is nearly done, it joined after the Job was
/// created) goes to the others instead of being lost, and adding work elsewhere stops no
/// running pod. What is left over is unplaced: work that found no cluster, or clusters at
/// their `maxReplicas`.
fn plan_running(
    fj: &mut FederatedJob,
    members: &[String],
    prefs: &Preferences,
    running: Running,
    fits: Option<&Fits>,
) {
    let mut holdings: BTreeMap<&str, Holding> = BTreeMap::new();
    let mut to_run: i64 = 0;
    for s in fj.shards.iter().filter(|s| s.state == ShardState::Active) {
        let room = s.remaining();
        to_run += i64::from(room);
        let h = holdings.entry(s.cluster.as_str()).or_default();
        h.running = h.running.saturating_add(s.parallelism.clamp(0, room));
        h.room = h.room.saturating_add(room);
    }
    let needed = match fj.spec().completions {
        Some(_) => {
            let waiting = to_run + i64::from(fj.unplaced.completions);
            i64::from(parallelism(fj)).min(waiting) as i32
        }
        None => parallelism(fj),
    };
    let kept: i64 = holdings.values().map(|h| i64::from(h.running)).sum();
    if running == Running::Replanned || kept > i64::from(needed) {
        // Asked for, or parallelism was lowered so that what runs cannot all stay.
        holdings.values_mut().for_each(|h| h.running = 0);
    }
    let holding = |c: &str| holdings.get(c).copied().unwrap_or_default();
    let (shares, unplaced) = split_running(&fj.key(), needed, members, prefs, holding, fits);
    let shares: BTreeMap<&str, i32> = shares.into_iter().collect();
    fj.unplaced.parallelism = unplaced;
    distribute_parallelism(fj, &shares);
}

/// The share of `spec.parallelism` shown for each member: SPEC §3's division over the members
/// that have work of the Job (an unfinished or finished shard), which stays put while the
/// last completions run out. `members_split` is that division over every member, the same
/// when every member has work (the usual case).
fn planned_shares(
    fj: &FederatedJob,
    prefs: &Preferences,
    members_split: &[(&str, i32)],
    fits: Option<&Fits>,
) -> BTreeMap<ClusterName, i32> {
    let with_work: BTreeSet<&str> = fj
        .shards
        .iter()
        .filter(|s| matches!(s.state, ShardState::Active | ShardState::Finished))
        .map(|s| s.cluster.as_str())
        .collect();
    let mut planned: BTreeMap<ClusterName, i32> = fj.members.iter().map(|c| (*c, 0)).collect();
    if fj.members.iter().all(|c| with_work.contains(c.as_str())) {
        planned.extend(members_split.iter().map(|(c, p)| (ClusterName::new(c), *p)));
        return planned;
    }
    let working: Vec<String> = fj
        .members
        .iter()
        .filter(|c| with_work.contains(c.as_str()))
        .map(String::from)
        .collect();
    let (shares, _) = split(fj, parallelism(fj), &working, prefs, fits);
    planned.extend(shares.into_iter().map(|(c, p)| (ClusterName::new(c), p)));
    planned
}

/// Divides each cluster's share over its active shards: what each runs now stays, oldest
/// first, within the completions it still lacks; the rest of the share goes to the newest
/// first, as they hold the work that waited (moved from a lost cluster, or added).
fn distribute_parallelism(fj: &mut FederatedJob, shares: &BTreeMap<&str, i32>) {
    // The active shards' indexes by cluster, creation order within (a stable sort).
    let mut active: Vec<usize> = (0..fj.shards.len())
        .filter(|&i| fj.shards[i].state == ShardState::Active)
        .collect();
    active.sort_by(|&a, &b| fj.shards[a].cluster.cmp(&fj.shards[b].cluster));
    let mut given = vec![0; active.len()];
    let mut start = 0;
    while start < active.len() {
        let cluster = fj.shards[active[start]].cluster.as_str();
        let len = active[start..]
            .iter()
            .take_while(|&&i| fj.shards[i].cluster == cluster)
            .count();
        let (indexes, given) = (&active[start..start + len], &mut given[start..start + len]);
        let mut left = shares.get(cluster).copied().unwrap_or(0);
        for (g, &i) in given.iter_mut().zip(indexes) {
            let s = &fj.shards[i];
            *g = s.parallelism.clamp(0, s.remaining()).min(left);
            left -= *g;
        }
        for (g, &i) in given.iter_mut().zip(indexes).rev() {
            let more = (fj.shards[i].remaining() - *g).min(left);
            *g += more;
            left -= more;
        }
        start += len;
    }
    for (i, g) in active.into_iter().zip(given) {
        fj.shards[i].parallelism = g;
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
