//! Self-fencing (`--self-fence-after`, SPEC §6): a syncer that has heard from no scheduler for
//! longer than its lease suspends the unfinished shards it manages, so that a scheduler which
//! declared the cluster lost can run their work elsewhere without it running twice. Once a
//! session is in sync again the scheduler's assignments say what runs, and the shards the
//! fence suspended are resumed (or left suspended, or deleted) as they say.
//!
//! The syncer's [`Standing`] decides what the fence does:
//! - `Unknown`, from the start until a first session is in sync: nothing is fenced or resumed;
//! - `InSync`, once a session delivered its `synced` batch: shards suspended by the fence (this
//!   process or an earlier one) are resumed to what their assignment asks;
//! - `Fenced`, once the lease ran out: unfinished shards that their assignment runs (or for which
//!   no assignment is held yet) are suspended, and no shard is started or resumed until a session
//!   is in sync again.
//!
//! The fence is written by a field manager of its own, [`FENCE_MANAGER`], that sets only
//! `spec.suspend` and the annotation [`FENCED_ANNOTATION`]: a server-side apply removes the fields
//! its manager applied before and omits now, so a partial apply by the syncer's main manager
//! would strip the shard of everything else. The annotation marks the Job in the cluster itself,
//! so a syncer restarted while fenced still knows to resume it, and `kubectl describe` says why
//! it is suspended.
//!
//! This module holds the rules, pure; the lease is [`crate::state::lease`], the task that
//! watches it [`crate::workers::fence`].

use std::time::Duration;

use fedjob_proto::v1::AssignmentAction;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};

use super::job;
use super::key::ShardKey;

/// Field manager of the fence's server-side applies.
pub const FENCE_MANAGER: &str = "fedjob-syncer-fence";
/// Annotation set on a shard the fence suspended: when it did, in RFC 3339.
pub const FENCED_ANNOTATION: &str = "fedjob.io/self-fenced";
/// `reason` reported for a shard suspended by the fence.
pub const FENCED_REASON: &str = "SelfFenced";

/// Where the syncer stands with the schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Standing {
    /// No session has been in sync since the start.
    #[default]
    Unknown,
    /// A session is (or was last) in sync, within the lease.
    InSync,
    /// The lease ran out: unfinished shards are suspended until a session is in sync again.
    Fenced,
}

/// What the fence does to one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceStep {
    /// Suspend it and mark it fenced.
    Suspend,
    /// Remove the mark and set `spec.suspend` to what the assignment asks.
    Resume {
        /// The `spec.suspend` to leave it with.
        suspend: bool,
    },
}

/// What the fence needs to know of one shard.
#[derive(Debug, Clone, Copy)]
pub struct FenceView<'a> {
    /// Where the syncer stands.
    pub standing: Standing,
    /// The action and federated Job uid of the assignment held, if any.
    pub held: Option<(AssignmentAction, &'a str)>,
    /// The scheduler said to stop managing it.
    pub forgotten: bool,
    /// The labelled Job in the cluster, if any.
    pub live: Option<&'a Job>,
}

/// Whether the lease ran out: nothing heard for longer than `lease`, and not fenced already.
pub fn due(lease: Duration, silent: Duration, standing: Standing) -> bool {
    standing != Standing::Fenced && silent > lease
}

/// Whether `job` carries the fence's mark.
pub fn is_marked(job: &Job) -> bool {
    marked_at(job).is_some()
}

/// When the fence suspended `job`, if it did.
pub fn marked_at(job: &Job) -> Option<&str> {
    job.metadata
        .annotations
        .as_ref()?
        .get(FENCED_ANNOTATION)
        .map(String::as_str)
}

/// Decides what the fence does to a shard. Pure.
///
/// Only a live, unfinished Job that fedjob manages is touched, and only one of the held
/// assignment's own federated Job (a Job of another one under the same name is a conflict,
/// never written). While fenced, a shard is suspended when its assignment runs it, or when no
/// assignment is held for it yet (after a restart, before any scheduler answered); SUSPEND,
/// DELETE and RETAIN shards are left to their assignment. In sync, a marked shard is resumed
/// to what its assignment asks: suspended for SUSPEND, running otherwise (RUN, RETAIN, or
/// nothing held any more: the scheduler forgot it, and the fence undoes what it did); DELETE
/// deletes it anyway.
pub fn decide(view: &FenceView<'_>) -> Option<FenceStep> {
    let live = view.live?;
    if !job::is_managed(live) || job::is_terminating(live) || job::is_finished(live) {
        return None;
    }
    let held = match view.held {
        Some((action, uid)) if job::job_uid(live) == Some(uid) => Some(action),
        Some(_) => return None,
        None => None,
    };
    match view.standing {
        Standing::Unknown => None,
        Standing::Fenced => {
            let runs = match held {
                Some(action) => action == AssignmentAction::Run,
                None => !view.forgotten,
            };
            (runs && !job::is_suspended(live)).then_some(FenceStep::Suspend)
        }
        Standing::InSync if !is_marked(live) => None,
        Standing::InSync => match held {
            Some(AssignmentAction::Delete) => None,
            Some(AssignmentAction::Suspend) => Some(FenceStep::Resume { suspend: true }),
            _ => Some(FenceStep::Resume { suspend: false }),
        },
    }
}

/// The configuration the fence applies to `key` for `step`, marked with the time `now`.
///
/// It names only what the fence owns: applying it again without the annotation (to resume)
/// removes the mark, and nothing else of the Job is touched.
pub fn manifest(key: &ShardKey, step: FenceStep, now: &str) -> Value {
    let mut metadata = json!({"name": key.name, "namespace": key.namespace});
    let suspend = match step {
        FenceStep::Suspend => {
            metadata["annotations"] = json!({ FENCED_ANNOTATION: now });
            true
        }
        FenceStep::Resume { suspend } => suspend,
    };
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {"suspend": suspend},
    })
}

/// The message reported with a shard the fence suspended at `at`.
pub fn message(at: &str) -> String {
    format!(
        "suspended by the syncer at {at}: no scheduler was heard from for longer than --self-fence-after; it resumes as the scheduler's assignment says once a session is in sync again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(uid: &str, suspended: bool, marked: bool, condition: Option<&str>) -> Job {
        let mut v = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "myjob", "namespace": "default", "uid": "local-1",
                "labels": {"fedjob.io/job-uid": uid, "fedjob.io/managed-by": "fedjob"},
                "annotations": {}},
            "spec": {"parallelism": 2, "completions": 4, "suspend": suspended,
                "template": {"spec": {"containers": []}}},
            "status": {},
        });
        if marked {
            v["metadata"]["annotations"][FENCED_ANNOTATION] = json!("2026-11-28T13:46:54Z");
        }
        if let Some(c) = condition {
            v["status"]["conditions"] = json!([{"type": c, "status": "True"}]);
        }
        serde_json::from_value(v).unwrap()
    }

    fn view<'a>(
        standing: Standing,
        held: Option<AssignmentAction>,
        forgotten: bool,
        live: &'a Job,
    ) -> FenceView<'a> {
        FenceView {
            standing,
            held: held.map(|a| (a, "uid-1")),
            forgotten,
            live: Some(live),
        }
    }

    #[test]
    fn the_lease_runs_out_once() {
        let lease = Duration::from_secs(2);
        assert!(!due(lease, Duration::from_millis(1999), Standing::InSync));
        assert!(due(lease, Duration::from_millis(2001), Standing::InSync));
        assert!(
            due(lease, Duration::from_millis(2001), Standing::Unknown),
            "a syncer that never reached a scheduler fences too"
        );
        assert!(!due(lease, Duration::from_secs(60), Standing::Fenced));
    }

    #[test]
    fn fenced_suspends_running_shards_only() {
        use AssignmentAction::*;
        let running = job("uid-1", false, false, None);
        let fenced = Standing::Fenced;
        assert_eq!(
            decide(&view(fenced, Some(Run), false, &running)),
            Some(FenceStep::Suspend)
        );
        assert_eq!(
            decide(&view(fenced, None, false, &running)),
            Some(FenceStep::Suspend),
            "nothing held yet (after a restart): still ours to fence"
        );
        assert_eq!(
            decide(&view(fenced, None, true, &running)),
            None,
            "forgotten"
        );
        for action in [Suspend, Delete, Retain] {
            assert_eq!(decide(&view(fenced, Some(action), false, &running)), None);
        }
        let suspended = job("uid-1", true, false, None);
        assert_eq!(decide(&view(fenced, Some(Run), false, &suspended)), None);
        for done in ["Complete", "Failed"] {
            let finished = job("uid-1", false, false, Some(done));
            assert_eq!(decide(&view(fenced, Some(Run), false, &finished)), None);
        }
        let theirs = job("uid-0", false, false, None);
        assert_eq!(
            decide(&view(fenced, Some(Run), false, &theirs)),
            None,
            "another federated Job's Job is never written"
        );
        let mut foreign = job("uid-1", false, false, None);
        foreign.metadata.labels = None;
        assert_eq!(decide(&view(fenced, None, false, &foreign)), None);
        let mut terminating = running.clone();
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        assert_eq!(decide(&view(fenced, Some(Run), false, &terminating)), None);
    }

    #[test]
    fn in_sync_resumes_marked_shards_as_the_assignment_says() {
        use AssignmentAction::*;
        let marked = job("uid-1", true, true, None);
        let in_sync = Standing::InSync;
        assert_eq!(
            decide(&view(in_sync, Some(Run), false, &marked)),
            Some(FenceStep::Resume { suspend: false })
        );
        assert_eq!(
            decide(&view(in_sync, Some(Suspend), false, &marked)),
            Some(FenceStep::Resume { suspend: true })
        );
        assert_eq!(decide(&view(in_sync, Some(Delete), false, &marked)), None);
        assert_eq!(
            decide(&view(in_sync, None, true, &marked)),
            Some(FenceStep::Resume { suspend: false }),
            "forgotten: the fence undoes what it did"
        );
        let unmarked = job("uid-1", true, false, None);
        assert_eq!(
            decide(&view(in_sync, Some(Run), false, &unmarked)),
            None,
            "a shard the fence did not suspend is the assignment's business"
        );
    }

    #[test]
    fn unknown_standing_neither_fences_nor_resumes() {
        let marked = job("uid-1", true, true, None);
        let running = job("uid-1", false, false, None);
        for live in [&marked, &running] {
            assert_eq!(
                decide(&view(
                    Standing::Unknown,
                    Some(AssignmentAction::Run),
                    false,
                    live
                )),
                None
            );
        }
    }

    #[test]
    fn the_fence_applies_only_its_own_fields() {
        let key = ShardKey::new("default", "myjob");
        let suspend = manifest(&key, FenceStep::Suspend, "2026-11-28T13:46:54Z");
        assert_eq!(
            suspend,
            json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "myjob", "namespace": "default",
                    "annotations": {FENCED_ANNOTATION: "2026-11-28T13:46:54Z"}},
                "spec": {"suspend": true}})
        );
        let resume = manifest(&key, FenceStep::Resume { suspend: false }, "ignored");
        assert_eq!(
            resume,
            json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "myjob", "namespace": "default"},
                "spec": {"suspend": false}})
        );
    }
}
