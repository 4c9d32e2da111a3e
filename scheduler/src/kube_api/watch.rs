//! Watch framing: one JSON object per line, `{"type": …, "object": …}`, as kube-apiserver
//! writes them (`11-…`, `20-watch-events.jsonl`).
//!
//! A watch whose start is older than the server's history gets one `ERROR` event with a 410
//! `Expired` Status and the stream ends, which is what makes clients list afresh; with
//! `allowWatchBookmarks`, `BOOKMARK` events carrying only `metadata.resourceVersion` tell the
//! client how far it has seen.

use std::time::Duration;

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use fedjob_proto::shutdown::Shutdown;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::resource::ResourceType;
use super::schema;
use super::status::ApiError;

/// How long a watch without `timeoutSeconds` stays open (the API server's
/// `--min-request-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created (or started matching the watch's selectors).
    Added,
    /// Changed.
    Modified,
    /// Removed (or stopped matching); the event carries its last state.
    Deleted,
}

impl EventType {
    /// The watch event `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// Sends one line of a watch unless the watch must end first (the scheduler shuts down or the
/// watch's `timeoutSeconds` passes); false when it must end.
pub async fn send(
    tx: &mpsc::Sender<Bytes>,
    line: Bytes,
    shutdown: &mut Shutdown,
    deadline: Instant,
) -> bool {
    tokio::select! {
        sent = tx.send(line) => sent.is_ok(),
        _ = shutdown.fired() => false,
        _ = tokio::time::sleep_until(deadline) => false,
    }
}

/// The `200` answer of a watch, whose body is the lines a task sends on `rx`.
pub fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(
            ReceiverStream::new(rx).map(Ok::<_, Infallible>),
        ))
        .expect("a valid response")
}

/// One event line carrying `object` (serialized JSON).
pub fn event_line(ty: EventType, object: &[u8]) -> Bytes {
    let ty = ty.as_str();
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(br#"","object":"#);
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// A `BOOKMARK` line at version `rv`: a zero object of `resource` with only its version set.
pub fn bookmark_line(resource: &ResourceType, rv: u64) -> Bytes {
    let mut object = schema::zero_object(resource.kind);
    object["metadata"]["resourceVersion"] = Value::String(rv.to_string());
    let json = serde_json::to_string(&object).expect("JSON values serialize");
    Bytes::from(format!(
        "{{\"type\":\"BOOKMARK\",\"object\":{}{}}}\n",
        resource.type_meta_json(),
        &json[1..]
    ))
}

/// An `ERROR` event line carrying `error` as a Status.
pub fn error_line(error: &ApiError) -> Bytes {
    Bytes::from(format!(
        "{{\"type\":\"ERROR\",\"object\":{}}}\n",
        error.to_status_json()
    ))
}

/// The 410 of a watch from a version older than the history holds.
pub fn too_old(requested: u64, oldest: u64) -> ApiError {
    ApiError::Expired(format!("too old resource version: {requested} ({oldest})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_api::resource::JOBS;

    #[test]
    fn lines_as_the_api_server_writes_them() {
        assert_eq!(
            event_line(EventType::Added, br#"{"a":1}"#),
            &br#"{"type":"ADDED","object":{"a":1}}
"#[..]
        );
        let bookmark: Value = serde_json::from_slice(&bookmark_line(&JOBS, 9)).unwrap();
        assert_eq!(bookmark["type"], "BOOKMARK");
        assert_eq!(bookmark["object"]["kind"], "Job");
        assert_eq!(bookmark["object"]["metadata"]["resourceVersion"], "9");
        let error: Value = serde_json::from_slice(&error_line(&too_old(1, 5))).unwrap();
        assert_eq!(error["object"]["code"], 410);
        assert_eq!(error["object"]["reason"], "Expired");
    }
}
