//! Core `v1` Events the simulated control plane records (the scheduler's `FailedScheduling`),
//! kept an hour as the API server keeps them (`--event-ttl`), served by
//! `/api/v1/namespaces/NS/events` with field selectors on `involvedObject.*`.
//!
//! The scheduler records through the `events.k8s.io` API, so its events read as
//! `35-events-failed-scheduling.json` shows: `eventTime` to the microsecond, `action`,
//! `reportingComponent` and `reportingInstance`, an empty `source`, and null first/last
//! timestamps.

use std::collections::VecDeque;
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::time::Instant;

use fedjob_scheduler::kube_api::clock;
use fedjob_scheduler::kube_api::selector::FieldSelector;

/// How long an event is kept (the API server's default `--event-ttl`).
const TTL: Duration = Duration::from_secs(3600);
/// The most events kept at once, however young (a bound on a simulator's memory).
const MAX_EVENTS: usize = 50_000;

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regarding {
    /// `kind` (`Pod`).
    pub kind: &'static str,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its resourceVersion when the event happened.
    pub resource_version: u64,
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// What it is about.
    pub regarding: Regarding,
    /// `Normal` or `Warning`.
    pub kind: &'static str,
    /// The reason (`FailedScheduling`).
    pub reason: &'static str,
    /// The action (`Scheduling`).
    pub action: &'static str,
    /// The message.
    pub message: String,
    /// The component that reports it (`default-scheduler`).
    pub component: &'static str,
    /// Which instance of it (`default-scheduler-HOST`).
    pub instance: String,
}

struct Recorded {
    at: Instant,
    namespace: String,
    /// `(uid, reason, message)` of what it says about whom, to leave out repeats.
    about: (String, &'static str, String),
    value: Value,
}

/// The events of one cluster.
#[derive(Default)]
pub struct EventLog {
    events: Mutex<VecDeque<Recorded>>,
}

/// `2026-12-06T05:42:28.362247Z`: a `metav1.MicroTime`.
fn micro_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

impl EventLog {
    /// Records `event` at resourceVersion `next_rv()`, unless the latest event about the same
    /// object already says the same (the event recorder folds repeats into one); returns
    /// whether it was recorded.
    pub fn record(&self, event: NewEvent, next_rv: impl FnOnce() -> u64) -> bool {
        let now = Timestamp::now();
        let about = (
            event.regarding.uid.clone(),
            event.reason,
            event.message.clone(),
        );
        let mut events = self.events.lock();
        let latest = events
            .iter()
            .rev()
            .find(|e| e.about.0 == about.0 && e.about.1 == about.1);
        if latest.is_some_and(|e| e.about == about) {
            return false;
        }
        let r = &event.regarding;
        let rv = next_rv();
        let value = json!({
            "metadata": {
                "name": format!("{}.{:x}", r.name, now.as_nanosecond()),
                "namespace": r.namespace,
                "uid": uuid::Uuid::new_v4().to_string(),
                "resourceVersion": rv.to_string(),
                "creationTimestamp": clock::format(now),
            },
            "involvedObject": {
                "kind": r.kind,
                "namespace": r.namespace,
                "name": r.name,
                "uid": r.uid,
                "apiVersion": "v1",
                "resourceVersion": r.resource_version.to_string(),
            },
            "reason": event.reason,
            "message": event.message,
            "source": {},
            "firstTimestamp": null,
            "lastTimestamp": null,
            "type": event.kind,
            "eventTime": micro_time(now),
            "action": event.action,
            "reportingComponent": event.component,
            "reportingInstance": event.instance,
        });
        events.push_back(Recorded {
            at: Instant::now(),
            namespace: r.namespace.clone(),
            about,
            value,
        });
        Self::expire(&mut events);
        true
    }

    fn expire(events: &mut VecDeque<Recorded>) {
        while events
            .front()
            .is_some_and(|e| e.at.elapsed() > TTL || events.len() > MAX_EVENTS)
        {
            events.pop_front();
        }
    }

    /// The events in `namespace` (all when `None`) that `fields` selects, oldest first.
    pub fn list(&self, namespace: Option<&str>, fields: &FieldSelector) -> Vec<Value> {
        let mut events = self.events.lock();
        Self::expire(&mut events);
        events
            .iter()
            .filter(|e| namespace.is_none_or(|ns| e.namespace == ns))
            .filter(|e| fields.matches(|f| field(&e.value, f)))
            .map(|e| e.value.clone())
            .collect()
    }

    /// How many events are kept.
    pub fn len(&self) -> usize {
        self.events.lock().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of a selectable event field (`involvedObject.name`, `reason`, `source`, …).
fn field(event: &Value, name: &str) -> String {
    let pointer = match name {
        // `source` selects on the component, which the events API leaves in
        // `reportingComponent` when `source` is empty.
        "source" => {
            return event["source"]["component"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
        other => format!("/{}", other.replace('.', "/")),
    };
    event
        .pointer(&pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedjob_scheduler::kube_api::params::EVENT_FIELDS;

    fn failed(pod: &str, uid: &str, message: &str) -> NewEvent {
        NewEvent {
            regarding: Regarding {
                kind: "Pod",
                namespace: "default".into(),
                name: pod.into(),
                uid: uid.into(),
                resource_version: 7,
            },
            kind: "Warning",
            reason: "FailedScheduling",
            action: "Scheduling",
            message: message.into(),
            component: "default-scheduler",
            instance: "default-scheduler-sim-1".into(),
        }
    }

    #[test]
    fn events_read_like_the_recorded_ones_and_repeats_are_folded() {
        let log = EventLog::default();
        assert!(log.record(
            failed("p-1", "u1", "0/2 nodes are available: 2 Insufficient cpu."),
            || 10
        ));
        assert!(!log.record(
            failed("p-1", "u1", "0/2 nodes are available: 2 Insufficient cpu."),
            || 11
        ));
        assert!(log.record(
            failed("p-1", "u1", "0/3 nodes are available: 3 Insufficient cpu."),
            || 12
        ));
        assert!(log.record(
            failed("p-2", "u2", "0/2 nodes are available: 2 Insufficient cpu."),
            || 13
        ));
        let all = log.list(None, &FieldSelector::default());
        assert_eq!(all.len(), 3);
        let e = &all[0];
        assert_eq!(e["involvedObject"]["resourceVersion"], "7");
        assert_eq!(e["metadata"]["resourceVersion"], "10");
        assert_eq!(e["source"], json!({}));
        assert!(e["firstTimestamp"].is_null());
        let name = e["metadata"]["name"].as_str().unwrap();
        assert!(
            name.starts_with("p-1.") && name.len() > "p-1.".len() + 10,
            "{name}"
        );
        assert_eq!(
            e["eventTime"].as_str().unwrap().len(),
            "2026-12-06T05:42:28.362247Z".len()
        );

        let selector = FieldSelector::parse(
            "involvedObject.name=p-2,involvedObject.namespace=default,involvedObject.kind=Pod,involvedObject.uid=u2",
            EVENT_FIELDS,
        )
        .unwrap();
        assert_eq!(log.list(Some("default"), &selector).len(), 1);
        assert!(
            log.list(Some("other"), &FieldSelector::default())
                .is_empty()
        );
    }
}
