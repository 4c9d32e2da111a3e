//! The one decision of a reconcile: given what the syncer holds for a shard and what the
//! cluster has, the next thing to do ([`decide`], pure). The worker that carries it out is
//! [`crate::workers::reconcile`].
//!
//! The rules, in the order they apply:
//! - a Job of the shard's name that this federated Job did not create is a CONFLICT and is
//!   never touched (no `fedjob.io/job-uid` label of this Job);
//! - RUN and SUSPEND apply the manifest when the live Job drifted from it (or is of an older
//!   revision); a missing shard is created only when the assignment allows it **and** this
//!   process never saw it exist: a shard that disappears is reported, not re-created;
//! - a new shard is created in one request, a plain create: a Job of the same name that exists
//!   by then makes it fail (`AlreadyExists`), and that Job is read and decided on like any live
//!   Job (someone else's: CONFLICT; this federated Job's own: applied). A shard whose name was
//!   last found taken is read first instead;
//! - DELETE deletes with `propagationPolicy: Background`, guarded by the Job's uid;
//! - RETAIN never writes; FORGET was handled on arrival;
//! - while the syncer is self-fenced ([`fence`]), no shard that its assignment runs is created
//!   or re-applied (the fence suspended it); the fence's own step comes before all of these.

use std::sync::Arc;

use fedjob_proto::v1::AssignmentAction;
use k8s_openapi::api::batch::v1::Job;

use super::assignment::Held;
use super::fence::{self, Standing};
use super::job;
use super::manifest::drift;

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
    /// The shard's name was found taken by a Job that the watch cache does not show as this
    /// shard (a create refused with `AlreadyExists`, or a CONFLICT last time): read it before
    /// any create.
    pub name_taken: bool,
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
    /// Create the shard (a plain create of the manifest, which fails if the name is taken).
    Create,
    /// Re-apply the manifest to the existing shard (server-side apply).
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
    let ours = live.filter(|j| job::job_uid(j) == Some(held.job_uid.as_str()));
    match held.action {
        AssignmentAction::Unspecified | AssignmentAction::Forget | AssignmentAction::Retain => {
            Step::Nothing
        }
        AssignmentAction::Delete => match (live, ours) {
            (_, Some(job)) if !job::is_terminating(job) => Step::Delete {
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
                    owner: job::job_uid(other).map(str::to_owned),
                },
                (_, Some(job)) if job::is_terminating(job) => Step::Nothing,
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
                (None, _) => {
                    // While fenced, no work starts: a RUN shard is not created.
                    let creatable = held.create
                        && !(held.action == AssignmentAction::Run
                            && plan.standing == Standing::Fenced);
                    if !plan.looked_up && (plan.name_taken || !creatable) {
                        Step::Lookup
                    } else if creatable {
                        Step::Create
                    } else {
                        Step::Nothing
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::manifest_text;
    use crate::rules::assignment::Problem;
    use crate::rules::manifest::Manifest;
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
            name_taken: false,
            standing: Standing::InSync,
        }
    }

    #[test]
    fn run_creates_only_when_missing_allowed_and_never_seen() {
        let run = held(AssignmentAction::Run, true);
        assert_eq!(
            decide(&plan(run.clone(), None, false, false)),
            Step::Create,
            "one request: a plain create, no read first"
        );
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
    fn a_name_last_found_taken_is_read_before_creating() {
        let mut taken = plan(held(AssignmentAction::Run, true), None, false, false);
        taken.name_taken = true;
        assert_eq!(
            decide(&taken),
            Step::Lookup,
            "no create against a taken name"
        );
        taken.looked_up = true;
        assert_eq!(
            decide(&taken),
            Step::Create,
            "read just now and gone: created"
        );
        let not_creatable = plan(held(AssignmentAction::Run, false), None, false, false);
        assert_eq!(
            decide(&not_creatable),
            Step::Lookup,
            "a shard that may not be created is read, to report it as missing or in conflict"
        );
    }
}
