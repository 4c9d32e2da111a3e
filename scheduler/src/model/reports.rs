//! Shard reports applied to a federated Job: to its counters alone when they cannot change the
//! plan, by planning the Job again when they can.
//!
//! Most reports only move a running shard's counters (pods active or failed, its start time, a
//! message): the planner reads none of that, so the aggregated status is adjusted by the
//! difference and the plan is left as it is. Planning again (what [`planner::reconcile`] does
//! after any other change) copies and walks every shard of the Job, splits its parallelism and
//! hashes its template: with a shard per cluster and a report per shard, that made the cost of
//! a Job's reports grow with the square of its clusters.
//!
//! A report can change the plan when a shard changed state (finished, lost, confirmed gone),
//! when its `succeeded` count moved (a shard's completions left bound its parallelism, and a
//! shard that ends counts what it reached), when it is about a shard that no longer runs (its
//! phase decides what it counts for), or when a shard looks as if it never ran after it had
//! (a shard that never started may be stopped when completions are lowered). Those plan the Job
//! again from scratch. Everything else is applied incrementally, and gives exactly the record
//! planning again would (a property test checks this for any sequence of reports).
//!
//! Like the rest of the model this assumes the record was planned over the same clusters; a
//! cluster changing state plans its Jobs again where it happens (see the control plane).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::clusters::Clusters;
use super::job::{FederatedJob, Observed, Shard, ShardState};
use super::planner;
use super::status;

/// One shard status from an agent, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardReport {
    /// `fedjob.io/job-uid`.
    pub job_uid: String,
    /// Namespace of the shard.
    pub namespace: String,
    /// Local Job name.
    pub shard: String,
    /// Epoch of the assignment it was applied from.
    pub epoch: u64,
    /// What was observed.
    pub observed: Observed,
}

/// What a batch of reports does to a Job.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The Job after the reports; `None` when they changed nothing.
    pub record: Option<FederatedJob>,
    /// Per batch, the reports about no shard of the Job (another Job's uid, a shard never
    /// planned in that cluster), for the agent to forget.
    pub rejected: Vec<Vec<ShardReport>>,
    /// Whether the Job was planned again (some report could change the plan).
    pub replanned: bool,
}

/// Applies `batches` of `(cluster, reports)` to `current`, each report observed in order; plans
/// the Job again over `clusters` only when one of them can change the plan (see the module
/// documentation).
pub fn apply(
    current: &FederatedJob,
    batches: &[(&str, &[ShardReport])],
    clusters: &Clusters,
    now: Timestamp,
) -> Applied {
    let mut record = current.clone();
    let mut rejected = Vec::with_capacity(batches.len());
    let mut touched = Vec::new();
    for (cluster, reports) in batches {
        let mut out = Vec::new();
        for r in *reports {
            let found = (r.job_uid == record.uid())
                .then(|| shard_index(&record, cluster, &r.shard))
                .flatten();
            match found {
                Some(i)
                    if planner::observe(
                        &mut record,
                        cluster,
                        &r.shard,
                        r.epoch,
                        r.observed.clone(),
                    ) =>
                {
                    touched.push(i);
                }
                _ => out.push(r.clone()),
            }
        }
        rejected.push(out);
    }
    touched.sort_unstable();
    touched.dedup();
    let replanned = touched
        .iter()
        .any(|&i| may_change_plan(&current.shards[i], &record.shards[i]));
    if replanned {
        planner::reconcile(&mut record, clusters, now);
    } else if touched
        .iter()
        .all(|&i| current.shards[i] == record.shards[i])
    {
        return Applied {
            record: None,
            rejected,
            replanned,
        };
    } else {
        adjust_counts(&mut record, current, &touched, now);
    }
    Applied {
        record: (record != *current).then_some(record),
        rejected,
        replanned,
    }
}

/// Where shard `name` of `cluster` is in `fj.shards`, found by binary search over the clusters
/// (shards are kept in cluster order outside the planner).
fn shard_index(fj: &FederatedJob, cluster: &str, name: &str) -> Option<usize> {
    let start = fj.shards.partition_point(|s| s.cluster.as_str() < cluster);
    fj.shards[start..]
        .iter()
        .take_while(|s| s.cluster == cluster)
        .position(|s| s.name == name)
        .map(|i| start + i)
}

/// Whether a shard that went from `before` to `after` may plan differently (see the module
/// documentation).
fn may_change_plan(before: &Shard, after: &Shard) -> bool {
    if before == after {
        return false;
    }
    before.state != ShardState::Active
        || after.state != before.state
        || after.succeeded() != before.succeeded()
        || after.seen != before.seen && after.state != ShardState::Active
        || (before.started() && !after.started())
        || (ran(before) && !ran(after))
}

/// Whether pods of the shard ran (any active, succeeded or failed).
fn ran(s: &Shard) -> bool {
    s.observed
        .as_ref()
        .is_some_and(|o| o.active > 0 || o.succeeded > 0 || o.failed > 0)
}

/// What one shard adds to the aggregated `active` and `failed` counts.
fn counts(s: &Shard) -> (i64, i64) {
    let o = s.observed.as_ref();
    let active = if s.state == ShardState::Active {
        o.map_or(0, |o| o.active)
    } else {
        0
    };
    (i64::from(active), i64::from(o.map_or(0, |o| o.failed)))
}

/// Moves the aggregated status of `record` by what changed in its shards at `touched` since
/// `before`, as [`status::refresh`] would compute it from every shard. Reports carry no
/// negative counts, so an absent count is 0; a total at the edge of `i32` (clamped) is
/// recomputed from scratch.
fn adjust_counts(
    record: &mut FederatedJob,
    before: &FederatedJob,
    touched: &[usize],
    now: Timestamp,
) {
    let (mut active, mut failed) = (0i64, 0i64);
    let mut started = false;
    for &i in touched {
        let after = &record.shards[i];
        let (a0, f0) = counts(&before.shards[i]);
        let (a1, f1) = counts(after);
        active += a1 - a0;
        failed += f1 - f0;
        started |= after
            .observed
            .as_ref()
            .is_some_and(|o| o.start_time.is_some());
    }
    // Set once, from the earliest start of any shard (as `status::refresh` does).
    let first_start = if started
        && record
            .job
            .status
            .as_ref()
            .is_none_or(|s| s.start_time.is_none())
    {
        record
            .shards
            .iter()
            .filter_map(|s| s.observed.as_ref()?.start_time.get())
            .min()
    } else {
        None
    };
    let status = record.job.status.get_or_insert_with(Default::default);
    let total = |v: Option<i32>, delta: i64| i64::from(v.unwrap_or(0)) + delta;
    let (active, failed) = (total(status.active, active), total(status.failed, failed));
    let exact = |v: i64| (0..i64::from(i32::MAX)).contains(&v);
    let unclamped = |v: Option<i32>| v != Some(i32::MAX);
    if !(exact(active) && exact(failed) && unclamped(status.active) && unclamped(status.failed)) {
        status::refresh(record, now);
        return;
    }
    status.active = (active > 0).then_some(active as i32);
    status.failed = (failed > 0).then_some(failed as i32);
    if let Some(t) = first_start {
        status.start_time = Some(Time(t));
    }
}

#[cfg(test)]
mod tests;
