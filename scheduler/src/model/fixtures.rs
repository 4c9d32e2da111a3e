//! Builders shared by the model's tests: a Job, Ready clusters, an agent's report.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use super::clusters::{ClusterView, Clusters};
use super::job::{FederatedJob, Observed, ObservedPhase};

/// The fixed "now" of the tests.
pub fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

/// A valid, defaulted-enough Job `default/myjob` with uid `uid-1`; `prefs` is the preferences
/// annotation's value.
pub fn manifest(parallelism: i32, completions: Option<i32>, prefs: Option<&str>) -> Job {
    let mut value = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "myjob", "namespace": "default", "uid": "uid-1"},
        "spec": {"parallelism": parallelism,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "w", "image": "busybox"}]}}}
    });
    if let Some(c) = completions {
        value["spec"]["completions"] = json!(c);
    }
    if let Some(p) = prefs {
        value["metadata"]["annotations"] = json!({"federation.kubernetes.io/job-preferences": p});
    }
    serde_json::from_value(value).unwrap()
}

/// A new, not yet planned record of [`manifest`].
pub fn job(parallelism: i32, completions: Option<i32>, prefs: Option<&str>) -> FederatedJob {
    FederatedJob::new(manifest(parallelism, completions, prefs))
}

/// Ready, uncordoned clusters of these names.
pub fn ready(names: &[&str]) -> Clusters {
    names
        .iter()
        .map(|n| {
            let view = ClusterView {
                ready: true,
                ..Default::default()
            };
            (n.to_string(), view)
        })
        .collect()
}

/// Gives `cluster` the capacity of one node with room for `pods` pods (and plenty of cpu and
/// memory), as its agent would report it.
pub fn with_room(clusters: &mut Clusters, cluster: &str, pods: i64) {
    use fedjob_proto::capacity::ClusterCapacity;
    use fedjob_proto::v1;
    let free = [
        ("cpu".to_owned(), 1_000_000),
        ("memory".to_owned(), 1 << 40),
        ("pods".to_owned(), pods),
    ];
    let report = v1::CapacityReport {
        full: true,
        shapes: vec![v1::NodeShape {
            id: 1,
            ..Default::default()
        }],
        groups: vec![v1::NodeGroup {
            shape: 1,
            free: free.into(),
            nodes: 1,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut capacity = ClusterCapacity::default();
    capacity.apply(&report).unwrap();
    clusters.get_mut(cluster).unwrap().capacity = Some(std::sync::Arc::new(capacity));
}

/// What an agent reports of a shard that started at [`now`].
pub fn report(phase: ObservedPhase, active: i32, succeeded: i32, failed: i32) -> Observed {
    Observed {
        phase,
        active,
        succeeded,
        failed,
        start_time: Some(now()).into(),
        completion_time: (phase == ObservedPhase::Complete).then(now).into(),
        local_uid: "local".into(),
        ..Default::default()
    }
}
