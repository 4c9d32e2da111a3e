//! Shard status from agents, written per Job in batches.
//!
//! Every agent reports its own shards, so a Job over N clusters gets N reports at about the same
//! time; written one by one, each would copy, re-plan and store the whole Job (quadratic in N).
//! Reports queue per Job instead, and whoever holds the Job's lock next takes every queued
//! report and hands each caller its outcome. Reports that only move counters are applied to
//! them without planning the Job again ([`crate::model::reports`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::warn;

use super::Jobs;
use crate::fast_hash::FastMap;
use crate::model::clusters::Clusters;
use crate::model::edit::{self, Next, ShardReport};
use crate::model::reports;

/// What became of one agent's reports: those about no known shard, or why none was recorded.
type Outcome = Result<Vec<ShardReport>, String>;

/// Shard reports waiting for their Job's next write, by Job key.
#[derive(Default)]
pub(super) struct ReportQueue(Mutex<FastMap<String, Vec<QueuedReports>>>);

/// One agent's reports about one Job, waiting to be written with others.
struct QueuedReports {
    cluster: String,
    reports: Vec<ShardReport>,
    done: oneshot::Sender<Outcome>,
}

impl Jobs {
    /// Records shard status reported by `cluster`'s agent, planning each Job again over
    /// `clusters`. Returns the reports that are about no known shard, for the agent to forget.
    pub async fn report(
        self: &Arc<Self>,
        cluster: &str,
        reports: Vec<ShardReport>,
        clusters: &Clusters,
    ) -> Vec<ShardReport> {
        let mut by_job: BTreeMap<String, Vec<ShardReport>> = BTreeMap::new();
        let mut unknown = Vec::new();
        for r in reports {
            match self.key_by_uid(&r.job_uid) {
                Some(key) => by_job.entry(key).or_default().push(r),
                None => unknown.push(r),
            }
        }
        self.metrics
            .shard_reports
            .inc_by(by_job.values().map(|v| v.len() as u64).sum());
        let updates = by_job
            .into_iter()
            .map(|(key, reports)| self.report_for_job(cluster, key, reports, clusters));
        for (key, outcome) in futures::future::join_all(updates).await {
            match outcome {
                Ok(rejected) => unknown.extend(rejected),
                Err(e) => warn!(job = %key, cluster, error = %e, "shard status not recorded"),
            }
        }
        unknown
    }

    /// Records `reports` about the Job `key` from `cluster`, in one write with whatever other
    /// reports about the Job are waiting.
    async fn report_for_job(
        self: &Arc<Self>,
        cluster: &str,
        key: String,
        reports: Vec<ShardReport>,
        clusters: &Clusters,
    ) -> (String, Outcome) {
        let (done, outcome) = oneshot::channel();
        self.reports
            .0
            .lock()
            .entry(key.clone())
            .or_default()
            .push(QueuedReports {
                cluster: cluster.to_owned(),
                reports,
                done,
            });
        let mut taken: Vec<QueuedReports> = Vec::new();
        let mut rejected: Vec<Vec<ShardReport>> = Vec::new();
        let result = self
            .mutate(&key, |current| {
                if let Some(more) = self.reports.0.lock().remove(&key) {
                    taken.extend(more);
                }
                rejected = taken.iter().map(|_| Vec::new()).collect();
                let Some(current) = current else {
                    for (q, out) in taken.iter().zip(&mut rejected) {
                        out.extend(q.reports.iter().cloned());
                    }
                    return Ok(Next::Unchanged);
                };
                if taken.is_empty() {
                    return Ok(Next::Unchanged);
                }
                let batches: Vec<(&str, &[ShardReport])> = taken
                    .iter()
                    .map(|q| (q.cluster.as_str(), q.reports.as_slice()))
                    .collect();
                let applied = reports::apply(&current.record, &batches, clusters, Timestamp::now());
                rejected = applied.rejected;
                let Some(record) = applied.record else {
                    return Ok(Next::Unchanged);
                };
                if applied.replanned {
                    self.metrics.reports_replanned.inc();
                } else {
                    self.metrics.reports_counted.inc();
                }
                Ok(edit::finish(record))
            })
            .await;
        let error = result.err().map(|e| e.to_string());
        for (q, out) in taken.into_iter().zip(rejected) {
            let _ = q.done.send(match &error {
                None => Ok(out),
                Some(e) => Err(e.clone()),
            });
        }
        let outcome = outcome
            .await
            .unwrap_or_else(|_| Err("the write carrying this report was abandoned".to_owned()));
        (key, outcome)
    }
}
