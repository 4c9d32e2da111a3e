//! Occurrences recorded as the API server keeps events: their shape, names, repeats counted,
//! and the hour they are kept.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Event;
use serde_json::json;

use super::*;
use crate::kube_api::events::derive::Severity;
use crate::kube_api::events::log;
use crate::model::clusters::{ClusterView, Clusters};
use crate::model::edit;

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn job(name: &str, uid: &str) -> FederatedJob {
    let manifest = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"parallelism": 2, "completions": 4,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "w", "image": "busybox"}]}}}
    }))
    .unwrap();
    let clusters: Clusters = [(
        "c1".to_owned(),
        ClusterView {
            ready: true,
            ..Default::default()
        },
    )]
    .into_iter()
    .collect();
    edit::create(
        manifest,
        uid.to_owned(),
        &clusters,
        at("2026-12-06T10:00:00Z"),
    )
    .unwrap()
}

fn occurrence(severity: Severity, reason: &str, message: &str) -> Occurrence {
    Occurrence {
        severity,
        reason: reason.to_owned(),
        message: message.to_owned(),
    }
}

#[test]
fn an_event_reads_as_a_controllers_event_about_the_job() {
    let log = log();
    let mut recorder = Recorder::new(log.clone());
    let now = at("2026-12-06T10:00:01.5Z");
    let told = occurrence(
        Severity::Warning,
        "ShardFailed",
        "Shard j in cluster c1 failed",
    );
    recorder.record(&job("j", "uid-1"), 7, vec![told], now);
    let events = log.objects();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    // It decodes strictly as a core v1 Event.
    let event: Event = serde_json::from_value(e.value.clone()).unwrap();
    assert_eq!(
        event.metadata.name.as_deref(),
        Some(format!("j.{:x}", now.as_nanosecond()).as_str())
    );
    assert_eq!(event.metadata.namespace.as_deref(), Some("team"));
    assert_eq!(event.metadata.resource_version, Some(e.rv.to_string()));
    let o = &event.involved_object;
    assert_eq!(
        (
            o.kind.as_deref(),
            o.namespace.as_deref(),
            o.name.as_deref(),
            o.uid.as_deref(),
            o.api_version.as_deref(),
            o.resource_version.as_deref()
        ),
        (
            Some("Job"),
            Some("team"),
            Some("j"),
            Some("uid-1"),
            Some("batch/v1"),
            Some("7")
        )
    );
    assert_eq!(
        (
            event.type_.as_deref(),
            event.reason.as_deref(),
            event.message.as_deref(),
            event.count
        ),
        (
            Some("Warning"),
            Some("ShardFailed"),
            Some("Shard j in cluster c1 failed"),
            Some(1)
        )
    );
    assert_eq!(event.source.unwrap().component.as_deref(), Some(COMPONENT));
    assert_eq!(e.value["firstTimestamp"], "2026-12-06T10:00:01Z");
    assert_eq!(e.value["lastTimestamp"], "2026-12-06T10:00:01Z");
}

#[test]
fn a_repeat_counts_up_and_names_never_collide() {
    let log = log();
    let mut recorder = Recorder::new(log.clone());
    let now = at("2026-12-06T10:00:00Z");
    let a = occurrence(Severity::Normal, "SplitPlanned", "Planned parallelism 2");
    let b = occurrence(Severity::Normal, "SplitPlanned", "Planned parallelism 3");
    let j = job("j", "uid-1");
    recorder.record(&j, 1, vec![a.clone(), b.clone()], now);
    recorder.record(&j, 2, vec![a.clone()], now + SignedDuration::from_secs(30));
    // The same words about another Job (another uid) are another event.
    recorder.record(&job("j", "uid-2"), 3, vec![a], now);
    let events = log.objects();
    assert_eq!(events.len(), 3);
    let names: std::collections::BTreeSet<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.len(), 3, "one nanosecond, three names: {names:?}");
    let repeated: Vec<_> = events.iter().filter(|e| e.value["count"] == 2).collect();
    assert_eq!(repeated.len(), 1);
    assert_eq!(repeated[0].value["message"], "Planned parallelism 2");
    assert_eq!(repeated[0].value["involvedObject"]["uid"], "uid-1");
    assert_eq!(repeated[0].value["firstTimestamp"], "2026-12-06T10:00:00Z");
    assert_eq!(repeated[0].value["lastTimestamp"], "2026-12-06T10:00:30Z");
}

#[test]
fn events_are_kept_an_hour_after_they_last_happened() {
    let log = log();
    let mut recorder = Recorder::new(log.clone());
    let t0 = at("2026-12-06T10:00:00Z");
    let j = job("j", "uid-1");
    let old = occurrence(Severity::Normal, "SplitPlanned", "old");
    let renewed = occurrence(Severity::Normal, "SplitPlanned", "renewed");
    recorder.record(&j, 1, vec![old, renewed.clone()], t0);
    recorder.record(
        &j,
        2,
        vec![renewed.clone()],
        t0 + SignedDuration::from_mins(30),
    );
    recorder.expire(t0 + SignedDuration::from_mins(60));
    assert_eq!(log.len(), 2, "an hour to the second is still kept");
    recorder.expire(t0 + SignedDuration::from_mins(61));
    let kept: Vec<_> = log
        .objects()
        .iter()
        .map(|e| e.value["message"].clone())
        .collect();
    assert_eq!(kept, [json!("renewed")]);
    // Once forgotten, a repeat starts a new event.
    recorder.expire(t0 + SignedDuration::from_mins(91));
    assert!(log.is_empty());
    recorder.record(&j, 3, vec![renewed], t0 + SignedDuration::from_mins(92));
    assert_eq!(log.objects()[0].value["count"], 1);
}
