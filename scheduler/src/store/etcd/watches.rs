//! Watches: one etcd Watch stream per store watch, re-opened (on the next member when the
//! current one failed) from the revision after the last delivered event, so that a watcher sees
//! every change exactly once across member failures.
//!
//! Why resuming from "last delivered + 1" has no gaps and no repeats: etcd sends all events of
//! one revision in one response (fedjob never asks for fragmented responses), and this stream
//! hands out a response's events before reading the next response, so a break between two
//! responses always falls on a revision boundary. Progress notifications (empty responses of
//! an idle watch) move the resume point forward, so an idle watch that reconnects after a
//! compaction does not claim to have lost history it never needed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tonic::Status;
use tonic::codec::Streaming;

use super::Inner;
use super::client::{MAX_RESPONSE_BYTES, Outcome};
use super::keys::{etcd_revision, revision};
use super::pb::etcdserverpb::{
    WatchCreateRequest, WatchRequest, WatchResponse, watch_client::WatchClient,
    watch_request::RequestUnion,
};
use crate::store::{Revision, StoreError, WatchEvent};

/// First pause before re-opening once every member failed in a row; doubles up to the max.
const INITIAL_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What the watch loop does next.
enum Step {
    Closed,
    Message(Result<Option<WatchResponse>, Status>),
}

/// A stream of every change under `prefix` after revision `after`; see [`crate::store::Store::watch`].
pub(super) fn watch(
    inner: Arc<Inner>,
    prefix: &str,
    after: Revision,
) -> BoxStream<'static, Result<WatchEvent, StoreError>> {
    let (key, range_end) = inner.keys.range(prefix);
    async_stream::stream! {
        let mut closed = inner.closed.subscribe();
        // Every change up to and including `last` has been delivered (or was not asked for).
        let mut last = after;
        let mut failures = 0usize;
        let mut backoff = INITIAL_BACKOFF;
        loop {
            if *closed.borrow() {
                yield Err(StoreError::Closed);
                return;
            }
            let opening = tokio::select! {
                biased;
                _ = closed.wait_for(|c| *c) => None,
                opened = open(&inner, &key, &range_end, last + 1) => Some(opened),
            };
            let Some((index, opened)) = opening else {
                yield Err(StoreError::Closed);
                return;
            };
            let failure = match opened {
                Ok(mut responses) => loop {
                    let step = tokio::select! {
                        biased;
                        _ = closed.wait_for(|c| *c) => Step::Closed,
                        message = responses.message() => Step::Message(message),
                    };
                    let response = match step {
                        Step::Closed => {
                            yield Err(StoreError::Closed);
                            return;
                        }
                        Step::Message(Ok(Some(response))) => response,
                        Step::Message(Ok(None)) => {
                            break Status::unavailable("etcd ended the watch stream");
                        }
                        Step::Message(Err(status)) => break status,
                    };
                    if response.compact_revision > 0 {
                        yield Err(StoreError::Compacted {
                            requested: last,
                            oldest: revision(response.compact_revision).saturating_sub(1),
                        });
                        return;
                    }
                    if response.canceled {
                        break cancel_status(&response.cancel_reason);
                    }
                    if response.created {
                        failures = 0;
                        backoff = INITIAL_BACKOFF;
                        continue;
                    }
                    if response.events.is_empty() {
                        // A progress notification: nothing at or below this revision is pending.
                        let progress = response.header.map_or(0, |h| revision(h.revision));
                        last = last.max(progress);
                        continue;
                    }
                    for event in response.events {
                        match inner.keys.event(event) {
                            Ok(event) => {
                                let at = event.revision();
                                yield Ok(event);
                                last = at;
                            }
                            Err(error) => {
                                yield Err(error);
                                return;
                            }
                        }
                    }
                },
                Err(status) => status,
            };
            match inner.client.after_stream_failure("watching etcd", index, &failure).await {
                Outcome::Fail(error) => {
                    yield Err(error);
                    return;
                }
                Outcome::Retry => {}
            }
            failures += 1;
            tracing::warn!(
                endpoint = inner.client.name(index),
                resume_after = last,
                error = %super::client::describe(&failure),
                "etcd watch broke; re-opening"
            );
            if failures >= inner.client.len() {
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                let woken_by_close = tokio::select! {
                    biased;
                    _ = closed.wait_for(|c| *c) => true,
                    _ = tokio::time::sleep(pause) => false,
                };
                if woken_by_close {
                    yield Err(StoreError::Closed);
                    return;
                }
            }
        }
    }
    .boxed()
}

/// Opens a watch stream on the current member, from `start` (inclusive).
async fn open(
    inner: &Inner,
    key: &[u8],
    range_end: &[u8],
    start: Revision,
) -> (usize, Result<Streaming<WatchResponse>, Status>) {
    let (index, channel) = inner.client.pick();
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.to_vec().into(),
            range_end: range_end.to_vec().into(),
            start_revision: etcd_revision(start),
            progress_notify: true,
            prev_kv: true,
            ..Default::default()
        })),
    };
    // The request side stays open for as long as the watch: etcd ends a watch whose client
    // closed its side.
    let requests = futures::stream::iter([create]).chain(futures::stream::pending());
    let request = inner.client.request(requests);
    let mut client = WatchClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
    let timeout = inner.client.request_timeout();
    let opened = match tokio::time::timeout(timeout, client.watch(request)).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "etcd did not open the watch within {timeout:?}"
        ))),
    };
    (index, opened)
}

/// The status a watch canceled by etcd (for a reason other than compaction) amounts to.
fn cancel_status(reason: &str) -> Status {
    if reason.contains("permission denied") {
        Status::permission_denied(reason.to_owned())
    } else if reason.contains("auth token") {
        Status::unauthenticated(reason.to_owned())
    } else {
        Status::unavailable(format!("etcd canceled the watch: {reason}"))
    }
}
