//! Carrying out assignments: for one shard, decide what the cluster needs ([`decide`], pure)
//! and do it ([`reconcile`]), with the [`Context`] every worker shares.
//!
//! The rules, in the order they apply:
//! - a Job of the shard's name that this federated Job did not create is a CONFLICT and is
//!   never touched (no `fedjob.io/job-uid` label of this Job);
//! - RUN and SUSPEND apply the manifest when the live Job drifted from it (or is of an older
//!   revision); a missing shard is created only when the assignment allows it **and** this
//!   process never saw it exist: a shard that disappears is reported, not re-created;
//! - DELETE deletes with `propagationPolicy: Background`, guarded by the Job's uid;
//! - RETAIN never writes; FORGET was handled on arrival;
//! - while the syncer is self-fenced ([`fence`]), no shard that its assignment runs is created
//!   or re-applied (the fence suspended it); the fence's own step comes before all of these.

use std::sync::Arc;
use std::time::Duration;

use fedjob_proto::v1::{AssignmentAction, AssignmentBatch};
use k8s_openapi::api::batch::v1::Job;
use tracing::{debug, info, warn};

use crate::cluster::{Cluster, ClusterError, ShardKey};
use crate::fence::{self, FenceStep, Lease, Standing};
use crate::manifest::drift;
use crate::metrics::Metrics;
use crate::queue::WorkQueue;
use crate::shards::{Held, Problem, Shards, conflict_message};
use crate::status;

/// Attempts at one step that meets optimistic-concurrency conflicts before giving up for now.
const CONFLICT_RETRIES: u32 = 5;
/// Transient failures tolerated before they are reported as an ERROR.
const QUIET_FAILURES: u32 = 3;

/// What every worker shares.
pub struct Context {
    /// The member cluster.
    pub cluster: Cluster,
    /// The shard table.
    pub shards: Arc<Shards>,
    /// Shards waiting for a worker.
    pub queue: Arc<WorkQueue<ShardKey>>,
    /// This member cluster's name (for logs).
    pub cluster_name: String,
    /// Create a missing namespace instead of reporting it.
    pub create_namespaces: bool,
    /// The only namespace managed, when restricted.
    pub namespace: Option<String>,
    /// When a scheduler was last heard from (self-fencing).
    pub lease: Lease,
    /// Counters and the state `/readyz` reads.
    pub metrics: Metrics,
}

impl Context {
    /// Takes a batch of assignments from the scheduler and queues the shards that need work.
    pub fn assign(&self, batch: &AssignmentBatch) {
        for a in &batch.assignments {
            if self.shards.assign(a, self.namespace.as_deref()) {
                self.queue
                    .push(ShardKey::new(a.namespace.clone(), a.shard.clone()));
            }
        }
        if batch.synced {
            info!(cluster = %self.cluster_name, shards = self.shards.len(), "in sync with the scheduler");
            fence::lift(self);
        }
    }
}

/// A snapshot of one shard for deciding what to do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The assignment held.
    pub held: Held,
    /// The labelled Job observed in the cluster, if any.
    pub live: Option<Arc<Job>>,
    /// This process has seen this federated Job's shard exist here.
    pub seen: bool,
    /// The Job was read by name just now (not only looked for in the watch cache).
    pub looked_up: bool,
    /// Where the syncer stands with the schedulers.
    pub standing: Standing,
}

/// The one thing to do next for a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the cluster is as asked, or must be left as it is.
    Nothing,
    /// No Job of the shard is in the watch cache: read it by name before deciding (it may be
    /// a Job fedjob did not create, invisible to the labelled watch).
    Lookup,
    /// Create the shard (server-side apply of the manifest).
    Create,
    /// Re-apply the manifest to the existing shard.
    Apply {
        /// What drifted.
        reason: String,
    },
    /// Delete the shard, if it still is incarnation `uid`.
    Delete {
        /// The local uid to delete.
        uid: Option<String>,
    },
    /// The name is taken by a Job of someone else.
    Conflict {
        /// The `fedjob.io/job-uid` of that Job, if it has one.
        owner: Option<String>,
    },
}

impl Step {
    /// Whether the step needs a worker.
    pub fn acts(&self) -> bool {
        !matches!(self, Step::Nothing)
    }
}

/// Decides the next step for a shard. Pure.
pub fn decide(plan: &Plan) -> Step {
    let held = &plan.held;
    if held.refused.is_some() {
        return Step::Nothing;
    }
    let live = plan.live.as_deref();
    let ours = live.filter(|j| status::job_uid(j) == Some(held.job_uid.as_str()));
    match held.action {
        AssignmentAction::Unspecified | AssignmentAction::Forget | AssignmentAction::Retain => {
            Step::Nothing
        }
        AssignmentAction::Delete => match (live, ours) {
            (_, Some(job)) if !status::is_terminating(job) => Step::Delete {
                uid: job.metadata.uid.clone(),
            },
            (Some(_), _) => Step::Nothing,
            (None, _) if !plan.looked_up && !plan.seen => Step::Lookup,
            (None, _) => Step::Nothing,
        },
        AssignmentAction::Run | AssignmentAction::Suspend => {
            let Some(manifest) = &held.manifest else {
                return Step::Nothing;
            };
            match (live, ours) {
                (Some(other), None) => Step::Conflict {
                    owner: status::job_uid(other).map(str::to_owned),
                },
                (_, Some(job)) if status::is_terminating(job) => Step::Nothing,
                // Fenced, or marked by a fence and not yet in sync: the fence decides.
                (_, Some(job))
                    if held.action == AssignmentAction::Run
                        && (plan.standing == Standing::Fenced
                            || (fence::is_marked(job) && plan.standing != Standing::InSync)) =>
                {
                    Step::Nothing
                }
                (_, Some(job)) => match drift(&manifest.owned, job) {
                    Some(reason) => Step::Apply { reason },
                    None => Step::Nothing,
                },
                (None, _) if plan.seen => Step::Nothing,
                (None, _) if !plan.looked_up => Step::Lookup,
                (None, _)
                    if held.action == AssignmentAction::Run
                        && plan.standing == Standing::Fenced =>
                {
                    Step::Nothing
                }
                (None, _) if held.create => Step::Create,
                (None, _) => Step::Nothing,
            }
        }
    }
}

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
    let mut conflicts = 0;
    let mut namespace_created = false;
    loop {
        let step = decide(&plan);
        let held = &plan.held;
        let outcome: Result<(), ClusterError> = match &step {
            Step::Nothing => {
                ctx.shards.succeed(key);
                return Next::Done;
            }
            Step::Lookup => match ctx.cluster.get(key).await {
                Ok(found) => {
                    plan.looked_up = true;
                    if let Some(job) = &found
                        && status::is_managed(job)
                    {
                        ctx.shards.record_live(job.clone());
                        plan.seen |= status::job_uid(job) == Some(held.job_uid.as_str());
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
                let applied = ctx.cluster.apply(key, &manifest.value()).await;
                ctx.metrics.write("apply", outcome(&applied));
                match applied {
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
                        ctx.shards.succeed(key);
                        return Next::Done;
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
                        ctx.shards.succeed(key);
                        return Next::Done;
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
        let next = reconcile(&ctx, &key).await;
        ctx.queue.done(&key);
        if let Next::RetryAfter(delay) = next {
            ctx.queue.push_after(key, delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::manifest_text;
    use crate::manifest::Manifest;
    use serde_json::json;

    fn held(action: AssignmentAction, create: bool) -> Held {
        let manifest =
            matches!(action, AssignmentAction::Run | AssignmentAction::Suspend).then(|| {
                Arc::new(
                    Manifest::parse(&manifest_text(3, false, 2), "default", "myjob", "uid-1")
                        .unwrap(),
                )
            });
        Held {
            job_uid: "uid-1".into(),
            epoch: 2,
            generation: 1,
            revision: 2,
            action,
            create,
            manifest,
            refused: None,
        }
    }

    fn job(job_uid: Option<&str>, parallelism: i32, revision: u64) -> Arc<Job> {
        let mut v: serde_json::Value =
            serde_json::from_str(&manifest_text(parallelism, false, revision)).unwrap();
        match job_uid {
            Some(u) => v["metadata"]["labels"]["fedjob.io/job-uid"] = json!(u),
            None => v["metadata"]["labels"] = json!({"app": "theirs"}),
        }
        v["metadata"]["uid"] = json!("local-1");
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn plan(held: Held, live: Option<Arc<Job>>, seen: bool, looked_up: bool) -> Plan {
        Plan {
            held,
            live,
            seen,
            looked_up,
            standing: Standing::InSync,
        }
    }

    #[test]
    fn run_creates_only_when_missing_allowed_and_never_seen() {
        let run = held(AssignmentAction::Run, true);
        assert_eq!(decide(&plan(run.clone(), None, false, false)), Step::Lookup);
        assert_eq!(decide(&plan(run.clone(), None, false, true)), Step::Create);
        assert_eq!(decide(&plan(run.clone(), None, true, true)), Step::Nothing);
        assert_eq!(decide(&plan(run, None, true, false)), Step::Nothing);
        let no_create = held(AssignmentAction::Run, false);
        assert_eq!(decide(&plan(no_create, None, false, true)), Step::Nothing);
        let suspend = held(AssignmentAction::Suspend, true);
        assert_eq!(decide(&plan(suspend, None, false, true)), Step::Create);
    }

    #[test]
    fn run_applies_on_drift_only() {
        let run = held(AssignmentAction::Run, true);
        let same = job(Some("uid-1"), 3, 2);
        assert_eq!(
            decide(&plan(run.clone(), Some(same), true, false)),
            Step::Nothing
        );
        let scaled = job(Some("uid-1"), 5, 2);
        assert!(matches!(
            decide(&plan(run.clone(), Some(scaled), true, false)),
            Step::Apply { reason } if reason.contains("parallelism")
        ));
        let older = job(Some("uid-1"), 3, 1);
        assert!(matches!(
            decide(&plan(run, Some(older), true, false)),
            Step::Apply { .. }
        ));
    }

    #[test]
    fn foreign_jobs_are_conflicts_whatever_the_action_asks() {
        let run = held(AssignmentAction::Run, true);
        assert_eq!(
            decide(&plan(run.clone(), Some(job(None, 3, 2)), false, true)),
            Step::Conflict { owner: None }
        );
        assert_eq!(
            decide(&plan(run, Some(job(Some("uid-0"), 3, 2)), false, false)),
            Step::Conflict {
                owner: Some("uid-0".into())
            }
        );
        let delete = held(AssignmentAction::Delete, false);
        assert_eq!(
            decide(&plan(delete, Some(job(None, 3, 2)), false, true)),
            Step::Nothing,
            "a foreign Job is never deleted"
        );
    }

    #[test]
    fn delete_only_our_live_job() {
        let delete = held(AssignmentAction::Delete, false);
        assert_eq!(
            decide(&plan(
                delete.clone(),
                Some(job(Some("uid-1"), 3, 2)),
                true,
                false
            )),
            Step::Delete {
                uid: Some("local-1".into())
            }
        );
        assert_eq!(
            decide(&plan(delete.clone(), None, false, false)),
            Step::Lookup
        );
        assert_eq!(
            decide(&plan(delete.clone(), None, false, true)),
            Step::Nothing
        );
        let mut terminating = (*job(Some("uid-1"), 3, 2)).clone();
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        assert_eq!(
            decide(&plan(delete, Some(Arc::new(terminating)), true, false)),
            Step::Nothing
        );
    }

    #[test]
    fn retain_and_refused_never_write() {
        let retain = held(AssignmentAction::Retain, false);
        assert_eq!(
            decide(&plan(retain.clone(), None, false, true)),
            Step::Nothing
        );
        assert_eq!(
            decide(&plan(retain, Some(job(Some("uid-1"), 9, 1)), true, false)),
            Step::Nothing
        );
        let mut refused = held(AssignmentAction::Run, true);
        refused.refused = Some(Problem::Error {
            reason: "InvalidManifest".into(),
            message: "x".into(),
        });
        assert_eq!(decide(&plan(refused, None, false, true)), Step::Nothing);
    }

    #[test]
    fn fenced_runs_are_neither_created_nor_resumed() {
        let fenced = |mut p: Plan| {
            p.standing = Standing::Fenced;
            p
        };
        let run = held(AssignmentAction::Run, true);
        assert_eq!(
            decide(&fenced(plan(run.clone(), None, false, false))),
            Step::Lookup,
            "reading is fine"
        );
        assert_eq!(
            decide(&fenced(plan(run.clone(), None, false, true))),
            Step::Nothing,
            "no new work starts while fenced"
        );
        let mut suspended = (*job(Some("uid-1"), 3, 2)).clone();
        suspended.spec.as_mut().unwrap().suspend = Some(true);
        let suspended = Arc::new(suspended);
        assert_eq!(
            decide(&fenced(plan(
                run.clone(),
                Some(suspended.clone()),
                true,
                false
            ))),
            Step::Nothing,
            "the fence's suspension is not drift while fenced"
        );
        assert!(
            matches!(
                decide(&plan(run.clone(), Some(suspended.clone()), true, false)),
                Step::Apply { reason } if reason.contains("spec.suspend")
            ),
            "in sync, the assignment is applied again even at the same revision"
        );
        let mut marked = (*suspended).clone();
        marked.metadata.annotations.get_or_insert_default().insert(
            fence::FENCED_ANNOTATION.into(),
            "2026-11-28T13:46:54Z".into(),
        );
        let mut unknown = plan(run, Some(Arc::new(marked)), true, false);
        unknown.standing = Standing::Unknown;
        assert_eq!(
            decide(&unknown),
            Step::Nothing,
            "fenced by an earlier process: not resumed before a session is in sync"
        );
        let suspend = held(AssignmentAction::Suspend, true);
        assert_eq!(
            decide(&fenced(plan(suspend, None, false, true))),
            Step::Create,
            "a suspended shard may be created while fenced"
        );
    }

    #[test]
    fn retry_delays_grow_to_a_minute() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(7), Duration::from_secs(64));
        assert_eq!(retry_delay(70), Duration::from_secs(64));
    }
}
