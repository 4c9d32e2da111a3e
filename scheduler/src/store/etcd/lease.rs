//! Leases: keys that vanish when their owner stops renewing — the base of leader election and
//! of cluster liveness that any replica can read.
//!
//! A [`LeaseKeeper`] renews a lease from a task, on whichever member answers, and tells its
//! owner when the lease is gone *or may be gone*: it counts the lease's time to live from the
//! moment it sent the renewal that etcd answered, never from the answer, so its idea of the
//! expiry is never later than etcd's. An owner that acts only while the keeper says
//! [`LeaseState::Alive`] (with some margin for clock rates) never acts after etcd dropped the
//! lease and, with it, the owner's keys.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::Inner;
use super::client::Outcome;
use super::pb::etcdserverpb::{LeaseKeepAliveRequest, lease_client::LeaseClient};
use crate::store::StoreError;

/// etcd's lease id.
pub type LeaseId = i64;

/// A lease etcd granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// etcd's id of the lease, for [`super::EtcdStore::put_with_lease`] and friends.
    pub id: LeaseId,
    /// The time to live etcd granted (it may raise a short request to its minimum).
    pub ttl: Duration,
}

/// What a [`LeaseKeeper`] knows about its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed; etcd keeps the lease at least until `until` (by this process's clock).
    Alive {
        /// The expiry the last renewal guarantees.
        until: Instant,
    },
    /// etcd dropped the lease, or may have: a renewal failed to get through before the last
    /// guaranteed expiry, it was revoked, or the store closed. Final.
    Expired,
}

/// Keeps a lease alive from a background task until dropped, revoked or expired.
pub struct LeaseKeeper {
    lease: Lease,
    state: watch::Receiver<LeaseState>,
    task: JoinHandle<()>,
    inner: Arc<Inner>,
}

impl LeaseKeeper {
    /// Starts renewing `lease`, which was granted no earlier than `granted_at`.
    pub(super) fn start(inner: Arc<Inner>, lease: Lease, granted_at: Instant) -> Self {
        let (state_tx, state) = watch::channel(LeaseState::Alive {
            until: granted_at + lease.ttl,
        });
        let task = tokio::spawn(keep_alive(inner.clone(), lease, state_tx));
        LeaseKeeper {
            lease,
            state,
            task,
            inner,
        }
    }

    /// The lease kept alive.
    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// What is known about the lease now.
    pub fn state(&self) -> LeaseState {
        match *self.state.borrow() {
            LeaseState::Alive { until } if until <= Instant::now() => LeaseState::Expired,
            state => state,
        }
    }

    /// A receiver of every change of [`LeaseKeeper::state`].
    pub fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }

    /// Resolves once the lease is (or may be) gone.
    pub async fn expired(&self) {
        let mut state = self.state.clone();
        loop {
            let until = match *state.borrow_and_update() {
                LeaseState::Expired => return,
                LeaseState::Alive { until } => until,
            };
            tokio::select! {
                changed = state.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(until) => return,
            }
        }
    }

    /// Stops renewing and revokes the lease: etcd deletes its keys now, not after the TTL.
    pub async fn revoke(self) -> Result<(), StoreError> {
        self.task.abort();
        revoke(&self.inner, self.lease.id).await
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        // Stops renewing; the lease then expires after its TTL.
        self.task.abort();
    }
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("lease", &self.lease)
            .field("state", &self.state())
            .finish()
    }
}

/// Revokes lease `id`; a lease etcd no longer knows counts as revoked.
pub(super) async fn revoke(inner: &Inner, id: LeaseId) -> Result<(), StoreError> {
    use super::pb::etcdserverpb::LeaseRevokeRequest;
    inner.check_open()?;
    let answer = inner
        .client
        .unary(
            "revoking an etcd lease",
            super::client::Retry::Always,
            LeaseRevokeRequest { id },
            |channel, request| async move { LeaseClient::new(channel).lease_revoke(request).await },
        )
        .await;
    match answer {
        Ok(response) => {
            inner.seen(response.header.as_ref());
            Ok(())
        }
        Err(error) if super::refused_with(&error, "lease not found") => Ok(()),
        Err(error) => Err(error),
    }
}

/// The renewal loop: a keep-alive stream on the current member, a renewal every third of the
/// TTL, and a new stream (on the next member) when one breaks, until the lease cannot be
/// renewed before its guaranteed expiry.
async fn keep_alive(inner: Arc<Inner>, lease: Lease, state: watch::Sender<LeaseState>) {
    let mut closed = inner.closed.subscribe();
    let interval = (lease.ttl / 3).max(Duration::from_millis(100));
    let mut until = match *state.borrow() {
        LeaseState::Alive { until } => until,
        LeaseState::Expired => return,
    };
    let mut failures = 0usize;
    let give_up = |state: &watch::Sender<LeaseState>, why: &str| {
        tracing::warn!(lease = lease.id, "etcd lease lost: {why}");
        state.send_replace(LeaseState::Expired);
    };
    loop {
        if Instant::now() >= until {
            give_up(&state, "no renewal got through before it expired");
            return;
        }
        let (index, channel) = inner.client.pick();
        let (requests, queue) = mpsc::channel(1);
        let mut sent_at = Instant::now();
        // etcd answers the stream's headers with its first response, so the first renewal
        // must be queued before the stream is opened.
        let _ = requests.try_send(LeaseKeepAliveRequest { id: lease.id });
        let request = inner.client.request(ReceiverStream::new(queue));
        let opened = tokio::time::timeout_at(
            until.min(Instant::now() + inner.client.request_timeout()),
            LeaseClient::new(channel).lease_keep_alive(request),
        )
        .await;
        let failure = match opened {
            Err(_) => Status::deadline_exceeded("etcd did not open the keep-alive stream"),
            Ok(Err(status)) => status,
            Ok(Ok(response)) => {
                let mut responses = response.into_inner();
                loop {
                    let answer = tokio::select! {
                        biased;
                        _ = closed.wait_for(|c| *c) => {
                            give_up(&state, "the store was closed");
                            return;
                        }
                        answer = tokio::time::timeout_at(until, responses.message()) => answer,
                    };
                    match answer {
                        Err(_) => {
                            give_up(&state, "no renewal got through before it expired");
                            return;
                        }
                        Ok(Ok(Some(renewed))) if renewed.ttl <= 0 => {
                            give_up(&state, "etcd no longer knows it");
                            return;
                        }
                        Ok(Ok(Some(renewed))) => {
                            let ttl = Duration::from_secs(u64::try_from(renewed.ttl).unwrap_or(0));
                            until = sent_at + ttl;
                            state.send_replace(LeaseState::Alive { until });
                            failures = 0;
                            inner.seen(renewed.header.as_ref());
                        }
                        Ok(Ok(None)) => {
                            break Status::unavailable("etcd ended the keep-alive stream");
                        }
                        Ok(Err(status)) => break status,
                    }
                    tokio::select! {
                        biased;
                        _ = closed.wait_for(|c| *c) => {
                            give_up(&state, "the store was closed");
                            return;
                        }
                        _ = tokio::time::sleep(interval) => {}
                    }
                    sent_at = Instant::now();
                    if requests
                        .send(LeaseKeepAliveRequest { id: lease.id })
                        .await
                        .is_err()
                    {
                        break Status::unavailable("the keep-alive stream closed");
                    }
                }
            }
        };
        match inner
            .client
            .after_stream_failure("keeping an etcd lease alive", index, &failure)
            .await
        {
            Outcome::Fail(error) => {
                give_up(&state, &error.to_string());
                return;
            }
            Outcome::Retry => {}
        }
        failures += 1;
        tracing::debug!(lease = lease.id, endpoint = inner.client.name(index), error = %super::client::describe(&failure), "lease keep-alive broke; re-opening");
        if failures >= inner.client.len() {
            // Every member failed in a row: pause a little, but keep trying until the expiry.
            tokio::time::sleep(Duration::from_millis(100).min(interval)).await;
        }
    }
}
