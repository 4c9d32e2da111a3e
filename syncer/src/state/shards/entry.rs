//! One shard as the table knows it, and the status the scheduler should have of it.

use std::sync::Arc;

use fedjob_proto::v1::{AssignmentAction, ShardPhase, ShardStatus};
use k8s_openapi::api::batch::v1::Job;

use crate::rules::assignment::{Held, Problem, conflict_message};
use crate::rules::decide::{Plan, decide};
use crate::rules::fence::{self, FenceStep, FenceView, Standing};
use crate::rules::job;
use crate::rules::key::ShardKey;
use crate::rules::status::{self, Ids};

use super::order::Order;

/// What the table knows of one shard.
#[derive(Debug, Default)]
pub(super) struct Entry {
    pub(super) held: Option<Held>,
    /// The labelled Job in the cluster, as last observed.
    pub(super) live: Option<Arc<Job>>,
    /// The last state of a Job that went away (for the counts of a DELETED report).
    pub(super) last: Option<Arc<Job>>,
    /// Federated Job uids whose Job this process has seen exist here: such a shard, once gone,
    /// is never created again.
    pub(super) seen: Vec<String>,
    /// What the last reconcile ran into.
    pub(super) problem: Option<Problem>,
    /// Consecutive failed reconciles (for retry backoff).
    pub(super) failures: u32,
    /// Told to stop managing and reporting it.
    pub(super) forgotten: bool,
    /// What the current session was last told.
    pub(super) reported: Option<ShardStatus>,
    /// Where the watch stands on this name, to order a worker's answers with its events.
    pub(super) order: Order,
}

impl Entry {
    pub(super) fn seen(&self, job_uid: &str) -> bool {
        self.seen.iter().any(|u| u == job_uid)
    }

    pub(super) fn mark_seen(&mut self, job: &Job) {
        if let Some(uid) = job::job_uid(job)
            && !self.seen(uid)
        {
            self.seen.push(uid.to_owned());
        }
    }

    /// Whether the live Job belongs to the held assignment (or nothing is held).
    pub(super) fn live_is_ours(&self) -> Option<&Arc<Job>> {
        let live = self.live.as_ref()?;
        match &self.held {
            Some(h) if job::job_uid(live) != Some(h.job_uid.as_str()) => None,
            _ => Some(live),
        }
    }

    pub(super) fn plan(&self, standing: Standing) -> Option<Plan> {
        let held = self.held.clone()?;
        let seen = self.seen(&held.job_uid);
        Some(Plan {
            held,
            live: self.live.clone(),
            seen,
            looked_up: false,
            name_taken: matches!(self.problem, Some(Problem::Conflict(_))),
            standing,
        })
    }

    /// What the self-fence asks of this shard now.
    pub(super) fn fence_step(&self, standing: Standing) -> Option<FenceStep> {
        fence::decide(&FenceView {
            standing,
            held: self.held.as_ref().map(|h| (h.action, h.job_uid.as_str())),
            forgotten: self.forgotten,
            live: self.live.as_deref(),
        })
    }

    /// Whether a worker has something to do for this shard.
    pub(super) fn needs_work(&self, standing: Standing) -> bool {
        self.fence_step(standing).is_some()
            || self.plan(standing).is_some_and(|p| decide(&p).acts())
    }

    /// Nothing left to manage or report.
    pub(super) fn removable(&self) -> bool {
        if self.live.is_some() {
            return false;
        }
        match &self.held {
            None => true,
            Some(h) => {
                h.action == AssignmentAction::Delete
                    && self
                        .reported
                        .as_ref()
                        .is_some_and(|r| r.phase == ShardPhase::Deleted as i32)
            }
        }
    }

    /// The status the scheduler should have of this shard now; `None` when there is nothing to
    /// say yet (a shard about to be created) or it must not be reported (forgotten).
    pub(super) fn status(&self, key: &ShardKey) -> Option<ShardStatus> {
        if self.forgotten {
            return None;
        }
        let Some(held) = &self.held else {
            return self.live.as_deref().map(|job| {
                let mut s = status::from_job(job);
                s.revision = 0;
                s
            });
        };
        let ids = Ids {
            job_uid: &held.job_uid,
            namespace: &key.namespace,
            shard: &key.name,
            epoch: held.epoch,
            revision: held.revision,
        };
        let problem = held.refused.as_ref().or(self.problem.as_ref());
        let last_ours = self
            .last
            .as_deref()
            .filter(|j| job::job_uid(j) == Some(held.job_uid.as_str()));
        if let Some(job) = self.live_is_ours() {
            if held.action == AssignmentAction::Delete && job::is_terminating(job) {
                return Some(status::deleted(ids, Some(job), "deleted by the syncer"));
            }
            let mut s = status::from_job(job);
            s.revision = held.revision;
            if s.epoch == 0 {
                s.epoch = held.epoch;
            }
            if let Some(p) = problem {
                let (reason, message) = p.text();
                s.reason = reason;
                s.message = message;
            }
            return Some(s);
        }
        if held.action == AssignmentAction::Delete {
            return Some(status::deleted(ids, last_ours, "deleted by the syncer"));
        }
        if let Some(p) = problem {
            let phase = match p {
                Problem::Conflict(_) => ShardPhase::Conflict,
                Problem::Error { .. } => ShardPhase::Error,
            };
            let (reason, message) = p.text();
            return Some(status::absent(ids, phase, &reason, &message));
        }
        if let Some(other) = self.live.as_deref() {
            return Some(status::absent(
                ids,
                ShardPhase::Conflict,
                "AlreadyExists",
                &conflict_message(key, job::job_uid(other)),
            ));
        }
        if self.seen(&held.job_uid) {
            return Some(status::deleted(
                ids,
                last_ours,
                "the local Job was deleted in the cluster",
            ));
        }
        let creatable = matches!(
            held.action,
            AssignmentAction::Run | AssignmentAction::Suspend
        ) && held.create;
        if creatable {
            // Being created: its status comes from the Job once it exists.
            return None;
        }
        Some(status::absent(
            ids,
            ShardPhase::Missing,
            "NotFound",
            "the local Job does not exist and the assignment does not allow creating it",
        ))
    }
}
