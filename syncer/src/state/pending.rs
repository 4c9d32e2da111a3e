//! The shards whose pods the member cluster cannot place (`--report-capacity`): pods Pending,
//! bound to no node, with `PodScheduled=False, reason Unschedulable` (what the kube-scheduler
//! writes when no node has room, k8s-facts), gathered per owning Job from a watch of the
//! unbound pods and reported whole, once per heartbeat when the set changed. The scheduler
//! moves such a shard's unstarted work elsewhere after `pendingTimeoutSeconds` (SPEC §10).

use std::collections::BTreeMap;

use fedjob_proto::v1;
use jiff::Timestamp;
use parking_lot::Mutex;
use serde_json::Value;

use super::capacity::{Change, Listed};

/// What an unschedulable pod says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    /// Namespace of the pod and its Job.
    pub namespace: String,
    /// Name of the owning Job.
    pub job: String,
    /// Uid of the owning Job.
    pub job_uid: String,
    /// When it became unschedulable.
    pub since: Timestamp,
    /// The scheduler's message.
    pub message: String,
}

/// The unschedulable state of a pod from its JSON, or `None` when it is not an unschedulable
/// pod of a Job (bound, running, finished, not yet tried, or owned by something else).
pub fn unschedulable_pod(pod: &Value) -> Option<Unschedulable> {
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if bound || phase != Some("Pending") {
        return None;
    }
    let condition = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == "PodScheduled")?;
    if condition["status"] != "False" || condition["reason"] != "Unschedulable" {
        return None;
    }
    let owner = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| o["kind"] == "Job" && o["controller"] == true)?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Some(Unschedulable {
        namespace: text(&pod["metadata"]["namespace"]),
        job: text(&owner["name"]),
        job_uid: text(&owner["uid"]),
        since: condition["lastTransitionTime"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(Timestamp::UNIX_EPOCH),
        message: text(&condition["message"]),
    })
}

#[derive(Debug, Default)]
struct Inner {
    pods: Listed<Unschedulable>,
    /// The set changed since the last report (or a new stream needs one).
    changed: bool,
}

/// Every unschedulable pod of the cluster.
#[derive(Debug, Default)]
pub struct Pending {
    inner: Mutex<Inner>,
}

impl Pending {
    /// A change from the watch of unbound pods (`None`: the pod is not unschedulable).
    pub fn pods(&self, change: Change<Unschedulable>) {
        let mut inner = self.inner.lock();
        if inner.pods.apply(change) {
            inner.changed = true;
        }
    }

    /// A new stream to the scheduler: the next report goes even if nothing changed.
    pub fn begin_stream(&self) {
        self.inner.lock().changed = true;
    }

    /// The report to send now: every shard with unschedulable pods, if the set changed since
    /// the last report and the watch has listed.
    pub fn report(&self) -> Option<v1::PendingReport> {
        let mut inner = self.inner.lock();
        if !inner.changed || !inner.pods.ready {
            return None;
        }
        inner.changed = false;
        Some(report(inner.pods.live.values()))
    }
}

/// The pods grouped by their Job: how many, and the longest-waiting one's time and message.
fn report<'a>(pods: impl Iterator<Item = &'a Unschedulable>) -> v1::PendingReport {
    let mut shards: BTreeMap<(&str, &str, &str), (i32, &Unschedulable)> = BTreeMap::new();
    for pod in pods {
        let key = (
            pod.namespace.as_str(),
            pod.job.as_str(),
            pod.job_uid.as_str(),
        );
        let (count, first) = shards.entry(key).or_insert((0, pod));
        *count += 1;
        if (pod.since, &pod.message) < (first.since, &first.message) {
            *first = pod;
        }
    }
    let shards = shards
        .into_values()
        .map(|(pods, first)| v1::PendingShard {
            namespace: first.namespace.clone(),
            shard: first.job.clone(),
            local_uid: first.job_uid.clone(),
            pods,
            since: Some(prost_types::Timestamp {
                seconds: first.since.as_second(),
                nanos: first.since.subsec_nanosecond(),
            }),
            message: first.message.clone(),
        })
        .collect();
    v1::PendingReport { shards }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(
        node: &str,
        phase: &str,
        scheduled: Option<(&str, &str)>,
        job: &str,
        since: &str,
    ) -> Value {
        let mut conditions = vec![];
        if let Some((status, reason)) = scheduled {
            conditions.push(
                json!({"type": "PodScheduled", "status": status, "reason": reason,
                "lastTransitionTime": since, "message": format!("{job}: 0/1 nodes are available")}),
            );
        }
        json!({
            "metadata": {"namespace": "ns", "name": format!("{job}-x"),
                "ownerReferences": [{"kind": "Job", "name": job, "uid": format!("uid-{job}"), "controller": true}]},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": conditions}
        })
    }

    const UNSCHEDULABLE: Option<(&str, &str)> = Some(("False", "Unschedulable"));

    #[test]
    fn only_pending_unbound_pods_the_scheduler_refused_count() {
        let t = "2026-12-06T10:00:00Z";
        let p = unschedulable_pod(&pod("", "Pending", UNSCHEDULABLE, "a", t)).unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.job.as_str(), p.job_uid.as_str()),
            ("ns", "a", "uid-a")
        );
        assert_eq!(p.since, t.parse::<Timestamp>().unwrap());
        assert_eq!(p.message, "a: 0/1 nodes are available");
        assert_eq!(
            unschedulable_pod(&pod("n1", "Pending", UNSCHEDULABLE, "a", t)),
            None,
            "bound"
        );
        assert_eq!(
            unschedulable_pod(&pod("", "Running", UNSCHEDULABLE, "a", t)),
            None
        );
        assert_eq!(
            unschedulable_pod(&pod("", "Pending", None, "a", t)),
            None,
            "not tried yet"
        );
        assert_eq!(
            unschedulable_pod(&pod(
                "",
                "Pending",
                Some(("False", "SchedulingGated")),
                "a",
                t
            )),
            None
        );
        assert_eq!(
            unschedulable_pod(&pod("", "Pending", Some(("True", "")), "a", t)),
            None
        );
        let mut orphan = pod("", "Pending", UNSCHEDULABLE, "a", t);
        orphan["metadata"]["ownerReferences"] = json!([]);
        assert_eq!(unschedulable_pod(&orphan), None, "not a Job's pod");
    }

    #[test]
    fn reports_group_by_job_and_go_when_the_set_changes() {
        let pending = Pending::default();
        assert!(pending.report().is_none(), "nothing before the list");
        let listed = |name: &str, job: &str, since: &str| {
            Change::Listed(
                name.to_owned(),
                unschedulable_pod(&pod("", "Pending", UNSCHEDULABLE, job, since)),
            )
        };
        pending.pods(Change::ListStart);
        pending.pods(listed("ns/a-1", "a", "2026-12-06T10:00:05Z"));
        pending.pods(listed("ns/a-2", "a", "2026-12-06T10:00:01Z"));
        pending.pods(listed("ns/b-1", "b", "2026-12-06T10:00:09Z"));
        pending.pods(Change::ListDone);
        let report = pending.report().unwrap();
        let seen: Vec<(&str, i32, i64)> = report
            .shards
            .iter()
            .map(|s| (s.shard.as_str(), s.pods, s.since.unwrap().seconds))
            .collect();
        let at = |t: &str| t.parse::<Timestamp>().unwrap().as_second();
        assert_eq!(
            seen,
            vec![
                ("a", 2, at("2026-12-06T10:00:01Z")),
                ("b", 1, at("2026-12-06T10:00:09Z"))
            ]
        );
        assert!(pending.report().is_none(), "unchanged: nothing to send");
        pending.pods(Change::Set("ns/b-1".into(), None));
        assert_eq!(pending.report().unwrap().shards.len(), 1);
        pending.begin_stream();
        assert_eq!(
            pending.report().unwrap().shards.len(),
            1,
            "a new stream hears it all"
        );
        pending.pods(Change::Deleted("ns/a-1".into()));
        pending.pods(Change::Deleted("ns/a-2".into()));
        assert!(
            pending.report().unwrap().shards.is_empty(),
            "the last one gone is news too"
        );
    }
}
