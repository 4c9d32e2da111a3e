//! Test fixtures shared by the unit tests: manifests as the scheduler renders them, and Jobs
//! as a real API server returns them (copies of `k8s-facts/` in `testdata/`).

use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};

/// A shard manifest for `default/myjob` of federated Job `uid-1`, as the scheduler renders it.
pub fn manifest_text(parallelism: i32, suspend: bool, revision: u64) -> String {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "myjob",
            "namespace": "default",
            "labels": {
                "app": "demo",
                "fedjob.io/job": "myjob",
                "fedjob.io/job-uid": "uid-1",
                "fedjob.io/managed-by": "fedjob",
            },
            "annotations": {
                "fedjob.io/assignment-revision": revision.to_string(),
                "fedjob.io/epoch": "2",
            },
        },
        "spec": {
            "parallelism": parallelism,
            "completions": 6,
            "suspend": suspend,
            "backoffLimit": 6,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}},
        },
    })
    .to_string()
}

/// A fact file as JSON.
pub fn fact(name: &str) -> Value {
    let text = match name {
        "01" => include_str!("../testdata/k8s-facts/01-create-201.json"),
        "09" => include_str!("../testdata/k8s-facts/09-ssa-create-201.json"),
        "15" => include_str!("../testdata/k8s-facts/15-completed-job.json"),
        "16" => include_str!("../testdata/k8s-facts/16-failed-job.json"),
        "24" => include_str!("../testdata/k8s-facts/24-suspended-job.json"),
        other => panic!("no fact {other}"),
    };
    serde_json::from_str(text).expect("fact files are JSON")
}

/// The watch events of `20-watch-events.jsonl` as `(type, object)`.
pub fn watch_events() -> Vec<(String, Value)> {
    include_str!("../testdata/k8s-facts/20-watch-events.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).expect("one JSON object a line");
            let kind = v["type"].as_str().unwrap_or_default().to_owned();
            (kind, v["object"].take())
        })
        .collect()
}

/// `job` made a shard of federated Job `uid-1` (fedjob's labels and annotations added).
pub fn as_shard(mut job: Value, revision: u64) -> Job {
    let meta = &mut job["metadata"];
    for (k, v) in [
        ("fedjob.io/job", "myjob"),
        ("fedjob.io/job-uid", "uid-1"),
        ("fedjob.io/managed-by", "fedjob"),
    ] {
        meta["labels"][k] = json!(v);
    }
    meta["annotations"]["fedjob.io/assignment-revision"] = json!(revision.to_string());
    meta["annotations"]["fedjob.io/epoch"] = json!("2");
    serde_json::from_value(job).expect("a Job")
}
