//! The assignment the syncer holds for a shard ([`Held`]): what the scheduler asked, its
//! manifest checked on arrival, or why the syncer will not carry it out; and what can be wrong
//! with a shard ([`Problem`]), as reported to the scheduler.

use std::sync::Arc;

use fedjob_proto::v1::{Assignment, AssignmentAction};

use super::key::ShardKey;
use super::manifest::Manifest;

/// The assignment the syncer holds for a shard.
#[derive(Debug, Clone)]
pub struct Held {
    /// `fedjob.io/job-uid` of the federated Job.
    pub job_uid: String,
    /// Fencing epoch.
    pub epoch: u64,
    /// Generation of the federated Job it was computed from.
    pub generation: i64,
    /// Revision of the shard's desired state.
    pub revision: u64,
    /// What to do.
    pub action: AssignmentAction,
    /// Whether the shard may be created when missing.
    pub create: bool,
    /// For RUN and SUSPEND: the Job to apply.
    pub manifest: Option<Arc<Manifest>>,
    /// Why the syncer will not carry this assignment out (bad manifest, namespace not managed).
    pub refused: Option<Problem>,
}

impl Held {
    /// Assignment `a` (whose action is `action`) as held: for RUN and SUSPEND its manifest is
    /// parsed and checked against the assignment; a manifest that fails, or a namespace outside
    /// `only_namespace` (the syncer's `--namespace`), makes it refused.
    pub fn from_assignment(
        a: &Assignment,
        action: AssignmentAction,
        only_namespace: Option<&str>,
    ) -> Held {
        let mut refused = None;
        if let Some(ns) = only_namespace
            && ns != a.namespace
        {
            let key = ShardKey::new(a.namespace.clone(), a.shard.clone());
            refused = Some(Problem::Error {
                reason: "NamespaceNotManaged".into(),
                message: format!(
                    "this syncer manages namespace {ns:?} only (--namespace); shard {key} is outside it"
                ),
            });
        }
        let manifest = match action {
            AssignmentAction::Run | AssignmentAction::Suspend => {
                match Manifest::parse(&a.manifest, &a.namespace, &a.shard, &a.job_uid) {
                    Ok(m) => Some(Arc::new(m)),
                    Err(e) => {
                        refused.get_or_insert(Problem::Error {
                            reason: "InvalidManifest".into(),
                            message: e.to_string(),
                        });
                        None
                    }
                }
            }
            _ => None,
        };
        Held {
            job_uid: a.job_uid.clone(),
            epoch: a.epoch,
            generation: a.generation,
            revision: a.revision,
            action,
            create: a.create,
            manifest,
            refused,
        }
    }
}

/// Why a shard is not what its assignment asks, reported instead of (or with) its Job's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A Job of the shard's name exists that this federated Job did not create.
    Conflict(String),
    /// The cluster (or the syncer) refused the shard.
    Error {
        /// Short machine-readable reason (`NamespaceNotFound`, `Invalid`, …).
        reason: String,
        /// The server's message.
        message: String,
    },
}

impl Problem {
    /// The `reason` and `message` reported with it.
    pub fn text(&self) -> (String, String) {
        match self {
            Problem::Conflict(message) => ("AlreadyExists".into(), message.clone()),
            Problem::Error { reason, message } => (reason.clone(), message.clone()),
        }
    }
}

/// The message of a CONFLICT: whose Job holds the shard's name.
pub fn conflict_message(key: &ShardKey, owner: Option<&str>) -> String {
    match owner {
        Some(uid) => format!(
            "a Job named {key} exists that belongs to another federated Job (fedjob.io/job-uid {uid}); it is left untouched"
        ),
        None => format!(
            "a Job named {key} exists that fedjob did not create (no fedjob.io/job-uid label); it is left untouched"
        ),
    }
}
