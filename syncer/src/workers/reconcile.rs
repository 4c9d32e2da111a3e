//! The reconcile workers: each takes a shard off the queue, asks [`decide`] what the cluster
//! needs, does it (read, apply, delete; the self-fence's step first) and records the outcome in
//! the shard table, until the step is `Nothing` or a failure says when to try again.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::cluster::ClusterError;
use crate::context::Context;
use crate::rules::assignment::{Held, Problem, conflict_message};
use crate::rules::decide::{Step, decide};
use crate::rules::fence::{self, FenceStep};
use crate::rules::job;
use crate::rules::key::ShardKey;

/// Attempts at one step that meets optimistic-concurrency conflicts before giving up for now.
const CONFLICT_RETRIES: u32 = 5;
/// Transient failures tolerated before they are reported as an ERROR.
const QUIET_FAILURES: u32 = 3;

/// What a worker does after a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next change.
    Done,
    /// Try again after a while.
    RetryAfter(Duration),
}

/// A write's outcome for metrics: `Ok`, or the reason it failed.
fn outcome<T>(result: &Result<T, ClusterError>) -> Result<(), String> {
    result.as_ref().map(|_| ()).map_err(ClusterError::reason)
}

/// The delay before retry number `failures` (1 s doubling, at most a minute).
fn retry_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    Duration::from_secs(1 << exp)
}

/// Carries out what the self-fence asks of one shard, if anything; `Err` says when to try
/// again after a failure.
async fn fence_shard(ctx: &Context, key: &ShardKey) -> Result<(), Next> {
    let Some(step) = ctx.shards.fence_step(key) else {
        return Ok(());
    };
    let now = jiff::Timestamp::now().to_string();
    let body = fence::manifest(key, step, &now);
    let applied = ctx.cluster.apply_as(key, &body, fence::FENCE_MANAGER).await;
    ctx.metrics.write("fence", outcome(&applied));
    match applied {
        Ok(job) => {
            let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
            match step {
                FenceStep::Suspend => {
                    warn!(cluster = %ctx.cluster_name, shard = %key, "shard suspended (self-fenced)")
                }
                FenceStep::Resume { .. } => {
                    info!(cluster = %ctx.cluster_name, shard = %key, suspended, "self-fence of the shard lifted")
                }
            }
            ctx.shards.record_live(job);
            Ok(())
        }
        Err(e) => {
            let failures = ctx.shards.fail(key, None);
            warn!(cluster = %ctx.cluster_name, shard = %key, step = ?step, failures, error = %e, "self-fence step failed");
            Err(Next::RetryAfter(retry_delay(failures)))
        }
    }
}

/// Brings one shard to what its assignment asks (and the self-fence, first).
pub async fn reconcile(ctx: &Context, key: &ShardKey) -> Next {
    if let Err(next) = fence_shard(ctx, key).await {
        return next;
    }
    let Some(mut plan) = ctx.shards.plan(key) else {
        return Next::Done;
    };
    let started = Instant::now();
    let mut conflicts = 0;
    let mut namespace_created = false;
    loop {
        let step = decide(&plan);
        let held = &plan.held;
        let outcome: Result<(), ClusterError> = match &step {
            Step::Nothing => return done(ctx, key, started),
            Step::Lookup => match ctx.cluster.get(key).await {
                Ok(found) => {
                    plan.looked_up = true;
                    if let Some(live) = &found
                        && job::is_managed(live)
                    {
                        ctx.shards.record_live(live.clone());
                        plan.seen |= job::job_uid(live) == Some(held.job_uid.as_str());
                    }
                    plan.live = found.map(Arc::new);
                    continue;
                }
                Err(e) => Err(e),
            },
            Step::Conflict { owner } => {
                let message = conflict_message(key, owner.as_deref());
                warn!(cluster = %ctx.cluster_name, shard = %key, job_uid = %held.job_uid, revision = held.revision, "{message}");
                let failures = ctx.shards.fail(key, Some(Problem::Conflict(message)));
                return Next::RetryAfter(retry_delay(failures).max(Duration::from_secs(5)));
            }
            Step::Create | Step::Apply { .. } => {
                let manifest = held.manifest.clone().expect("decide checked the manifest");
                let (verb, written) = match &step {
                    Step::Create => ("create", ctx.cluster.create(key, &manifest.text).await),
                    _ => ("apply", ctx.cluster.apply(key, &manifest.value()).await),
                };
                ctx.metrics.write(verb, outcome(&written));
                match written {
                    Ok(job) => {
                        let verb = if step == Step::Create {
                            "created"
                        } else {
                            "applied"
                        };
                        let why = match &step {
                            Step::Apply { reason } => reason.as_str(),
                            _ => "",
                        };
                        info!(
                            cluster = %ctx.cluster_name, shard = %key, job_uid = %held.job_uid,
                            revision = held.revision, action = held.action.as_str_name(),
                            local_uid = job.metadata.uid.as_deref().unwrap_or(""), drift = why,
                            "shard {verb}"
                        );
                        ctx.shards.record_live(job);
                        return done(ctx, key, started);
                    }
                    Err(ClusterError::AlreadyExists(message))
                        if step == Step::Create && conflicts < CONFLICT_RETRIES =>
                    {
                        // Made meanwhile, by someone else or by an earlier attempt of ours:
                        // read it and decide on it; someone else's is never written.
                        conflicts += 1;
                        debug!(shard = %key, "{message}; reading the Job that holds the name");
                        plan.name_taken = true;
                        continue;
                    }
                    Err(ClusterError::NamespaceNotFound(message))
                        if ctx.create_namespaces && !namespace_created =>
                    {
                        info!(cluster = %ctx.cluster_name, namespace = %key.namespace, "creating the missing namespace");
                        match ctx.cluster.create_namespace(&key.namespace).await {
                            Ok(()) => {
                                namespace_created = true;
                                continue;
                            }
                            Err(e) => {
                                warn!(cluster = %ctx.cluster_name, namespace = %key.namespace, error = %e, "cannot create the namespace ({message})");
                                Err(e)
                            }
                        }
                    }
                    Err(e @ ClusterError::Conflict(_)) if conflicts < CONFLICT_RETRIES => {
                        conflicts += 1;
                        debug!(shard = %key, error = %e, "conflict on apply; reading again");
                        plan.live = None;
                        plan.looked_up = false;
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            Step::Delete { uid } => {
                let deleted = ctx.cluster.delete(key, uid.as_deref()).await;
                ctx.metrics.write("delete", outcome(&deleted));
                match deleted {
                    Ok(()) => {
                        info!(
                            cluster = %ctx.cluster_name, shard = %key, job_uid = %held.job_uid,
                            revision = held.revision, action = "DELETE", "shard deleted (propagationPolicy Background)"
                        );
                        ctx.shards.record_deleted(key);
                        return done(ctx, key, started);
                    }
                    Err(e @ ClusterError::Conflict(_)) if conflicts < CONFLICT_RETRIES => {
                        // The uid precondition failed: another incarnation holds the name now.
                        conflicts += 1;
                        debug!(shard = %key, error = %e, "delete precondition failed; reading again");
                        plan.live = None;
                        plan.looked_up = false;
                        plan.seen = false;
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let Err(e) = outcome else {
            unreachable!("every successful step returns or continues")
        };
        return failed(ctx, key, held, &step, e);
    }
}

/// Records a shard brought to what its assignment asks by a reconcile begun at `started`: the
/// API server's struggles seen before then no longer stand in the syncer's way.
fn done(ctx: &Context, key: &ShardKey, started: Instant) -> Next {
    ctx.shards.succeed(key);
    ctx.cluster.health().settled(started);
    Next::Done
}

/// Records a failed step and says when to try again.
fn failed(ctx: &Context, key: &ShardKey, held: &Held, step: &Step, e: ClusterError) -> Next {
    let problem = Problem::Error {
        reason: e.reason(),
        message: e.report_message(),
    };
    let transient = e.is_transient();
    let current = ctx.shards.plan(key).map(|p| p.held.revision);
    if current != Some(held.revision) {
        // A newer assignment arrived meanwhile; its own reconcile is queued.
        return Next::Done;
    }
    let failures = if transient {
        // Say nothing about a blip; report it once it lasts.
        let failures = ctx.shards.fail(key, None);
        if failures >= QUIET_FAILURES {
            ctx.shards.fail(key, Some(problem))
        } else {
            failures
        }
    } else {
        ctx.shards.fail(key, Some(problem))
    };
    warn!(
        cluster = %ctx.cluster_name, shard = %key, job_uid = %held.job_uid, revision = held.revision,
        action = held.action.as_str_name(), step = ?step, failures, error = %e, "shard not reconciled"
    );
    match e {
        // The same manifest would be refused again: wait for a new assignment.
        ClusterError::Invalid { .. } => Next::Done,
        _ => Next::RetryAfter(retry_delay(failures)),
    }
}

/// A worker: takes shards off the queue until it is closed.
pub async fn worker(ctx: Arc<Context>) {
    while let Some(key) = ctx.queue.next().await {
        ctx.shards.begin(&key);
        let next = reconcile(&ctx, &key).await;
        ctx.shards.end(&key);
        ctx.queue.done(&key);
        if let Next::RetryAfter(delay) = next {
            ctx.queue.push_after(key, delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_to_a_minute() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(7), Duration::from_secs(64));
        assert_eq!(retry_delay(70), Duration::from_secs(64));
    }
}
