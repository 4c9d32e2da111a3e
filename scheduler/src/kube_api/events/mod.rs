//! Core `v1` `events` of the federated Jobs: what the federation did to each Job, so that
//! `kubectl describe job` tells the Job's story across the clusters and `kubectl get events -w`
//! follows it (SPEC §9).
//!
//! [`derive`] tells one change of a Job's record as occurrences (pure); [`record`] turns them
//! into `v1` Events as the API server keeps them (named, counted, kept an hour) in an
//! [`ObjectLog`] fed from the control plane's change stream; the log is served read-only
//! (get, list, watch, `involvedObject.*` field selectors, a Table).

pub mod derive;
pub mod record;

use serde_json::{Value, json};

use super::objects::{Kind, ObjectLog};
use super::params::EVENT_FIELDS;
use super::resource::ResourceType;
use super::table::{self, column, str_at};

/// Core `v1` Events.
pub const EVENTS: ResourceType = ResourceType {
    group: "",
    api_version: "v1",
    kind: "Event",
    list_kind: "EventList",
    plural: "events",
    namespaced: true,
};

/// Changes kept for watches that start from a version or fall behind.
pub const HISTORY: usize = 4096;

/// An empty log of events.
pub fn log() -> std::sync::Arc<ObjectLog> {
    ObjectLog::new(
        Kind {
            names: &EVENTS,
            short_names: &["ev"],
            fields: EVENT_FIELDS,
            field,
            columns,
            cells,
        },
        HISTORY,
    )
}

/// An event's value of a field a field selector names (`involvedObject.uid`, `reason`, …).
fn field(event: &Value, name: &str) -> String {
    let pointer = match name {
        "source" => "/source/component".to_owned(),
        other => format!("/{}", other.replace('.', "/")),
    };
    str_at(event, &pointer).to_owned()
}

/// The API server's columns for core `v1` Events.
fn columns() -> Vec<Value> {
    vec![
        column(
            "Last Seen",
            "",
            "The time at which the most recent occurrence of this event was recorded.",
            0,
        ),
        column(
            "Type",
            "",
            "Type of this event (Normal, Warning), new types could be added in the future",
            0,
        ),
        column(
            "Reason",
            "",
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            0,
        ),
        column("Object", "", "The object that this event is about.", 0),
        column(
            "Subobject",
            "",
            "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
            1,
        ),
        column(
            "Source",
            "",
            "The component reporting this event. Should be a short machine understandable string.",
            1,
        ),
        column(
            "Message",
            "",
            "A human-readable description of the status of this operation.",
            0,
        ),
        column(
            "First Seen",
            "",
            "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            1,
        ),
        column(
            "Count",
            "",
            "The number of times this event has occurred.",
            1,
        ),
        column("Name", "name", table::NAME_DESCRIPTION, 1),
    ]
}

/// The cells of an event, as the API server prints them (`printEvent`, wide).
fn cells(e: &Value) -> Vec<Value> {
    let age = |pointer: &str| match str_at(e, pointer) {
        "" => "<unknown>".to_owned(),
        t => super::clock::human(super::clock::since(t)),
    };
    let kind = str_at(e, "/involvedObject/kind").to_lowercase();
    let object = match str_at(e, "/involvedObject/name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let source = match (str_at(e, "/source/component"), str_at(e, "/source/host")) {
        (c, "") => c.to_owned(),
        (c, h) => format!("{c}, {h}"),
    };
    vec![
        json!(age("/lastTimestamp")),
        json!(str_at(e, "/type")),
        json!(str_at(e, "/reason")),
        json!(object),
        json!(str_at(e, "/involvedObject/fieldPath")),
        json!(source),
        json!(str_at(e, "/message").trim()),
        json!(age("/firstTimestamp")),
        json!(e.get("count").and_then(Value::as_i64).unwrap_or(1)),
        json!(str_at(e, "/metadata/name")),
    ]
}
