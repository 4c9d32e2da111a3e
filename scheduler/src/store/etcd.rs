//! The etcd backend: the store's keys live in an etcd cluster (v3 API over gRPC, etcd 3.4 or
//! later) under one prefix, so that several scheduler replicas can share one state.
//!
//! How the store's rules map onto etcd:
//! - One [`Store::txn`] is one etcd Txn: every precondition is a Compare (`Absent` is
//!   `create_revision == 0`, `ModRevision(r)` is `mod_revision == r`), the success branch holds
//!   every op, and the failure branch reads the keys that have preconditions, so a refused
//!   txn names the first key (in op order) whose precondition fails without another round trip.
//! - Revisions are etcd's own store-wide revisions; [`Store::revision`] is the newest revision
//!   any answer has carried.
//! - [`Store::list`] reads pages of a linearizable Range, every page at the revision of the
//!   first, so the listing is one snapshot however large.
//! - [`Store::watch`] is an etcd Watch from `after + 1` that resumes on another member after
//!   failures (see the `watches` module); etcd's compaction answer becomes
//!   [`StoreError::Compacted`].
//! - Failover, timeouts, TLS and authentication are the `client` module's.
//!
//! A txn whose connection breaks after it was sent, or that gets no answer in time (as while
//! the cluster replaces a leader that died), is not retried: etcd may have applied it, and a
//! second attempt of a compare-and-swap that won would answer `Conflict`. The caller gets
//! a [`StoreError::Backend`] whose source is [`EtcdError::OutcomeUnknown`] and must read the
//! key to learn the outcome — the one place where a `Backend` error from a txn does not mean
//! "not applied". Everything else (reads, and writes the member refused before acting on them)
//! moves to the next member by itself.
//!
//! Beyond the [`Store`] trait, [`EtcdStore`] offers what a multi-replica control plane needs
//! from etcd: leases ([`EtcdStore::grant_lease`], [`EtcdStore::keep_alive`]), writes bound to
//! a lease ([`EtcdStore::txn_with_lease`], [`EtcdStore::put_with_lease`]), an atomic
//! create-or-read for elections ([`EtcdStore::create_if_absent`]), member health
//! ([`EtcdStore::status`], [`EtcdStore::member_statuses`]) and compaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::sync::watch;

mod client;
mod keys;
mod lease;
mod options;
pub mod pb;
mod watches;

pub use client::parse_endpoint;
pub use lease::{Lease, LeaseId, LeaseKeeper, LeaseState};
pub use options::{
    ClientIdentity, Creation, DEFAULT_PREFIX, EtcdCredentials, EtcdError, EtcdOptions, EtcdStatus,
    EtcdTls,
};

use self::client::{Client, Retry};
use self::keys::{Keys, etcd_revision, revision};
use self::pb::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    RequestOp, ResponseHeader, StatusRequest, TxnRequest, TxnResponse, compare,
    kv_client::KvClient, lease_client::LeaseClient, maintenance_client::MaintenanceClient,
    request_op, response_op,
};
use super::{
    CommitObserver, KeyValue, Listing, Op, Precondition, Revision, Store, StoreError, WatchEvent,
    validate_txn,
};

/// The etcd [`Store`]. Cheap to share behind an `Arc`; every call is independent.
pub struct EtcdStore {
    inner: Arc<Inner>,
}

/// State shared by the store handle, watch streams and lease keepers.
struct Inner {
    client: Client,
    keys: Keys,
    /// The newest revision any answer carried.
    revision: AtomicU64,
    /// True once closed; watches and lease keepers wait on it.
    closed: watch::Sender<bool>,
    list_page_size: i64,
    observer: Option<Arc<dyn CommitObserver>>,
}

impl Inner {
    fn check_open(&self) -> Result<(), StoreError> {
        if *self.closed.borrow() {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    /// Notes the revision an answer carried; returns it.
    fn seen(&self, header: Option<&ResponseHeader>) -> Revision {
        let at = header.map_or(0, |h| revision(h.revision));
        self.revision.fetch_max(at, Ordering::AcqRel);
        at
    }

    async fn range(
        &self,
        request: RangeRequest,
    ) -> Result<pb::etcdserverpb::RangeResponse, StoreError> {
        let response = self
            .client
            .unary(
                "reading from etcd",
                Retry::Always,
                request,
                |channel, request| async move {
                    KvClient::new(channel)
                        .max_decoding_message_size(client::MAX_RESPONSE_BYTES)
                        .range(request)
                        .await
                },
            )
            .await?;
        self.seen(response.header.as_ref());
        Ok(response)
    }
}

impl EtcdStore {
    /// Connects to etcd: authenticates when credentials are given and reads the current
    /// revision with a linearizable read, so a store that opens has reached a member that is
    /// part of a working cluster. Fails after [`EtcdOptions::retry_timeout`] when none answers.
    pub async fn connect(options: EtcdOptions) -> Result<Self, StoreError> {
        let client = Client::new(&options)?;
        let mut prefix = options.prefix.clone();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let (closed, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            client,
            keys: Keys::new(&prefix),
            revision: AtomicU64::new(0),
            closed,
            list_page_size: i64::from(options.list_page_size.max(1)),
            observer: options.observer.clone(),
        });
        inner.client.authenticate().await?;
        let (key, range_end) = inner.keys.range("");
        inner
            .range(RangeRequest {
                key: key.into(),
                range_end: range_end.into(),
                count_only: true,
                ..Default::default()
            })
            .await?;
        tracing::info!(
            endpoints = ?options.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            prefix,
            revision = inner.revision.load(Ordering::Acquire),
            "connected to etcd"
        );
        Ok(EtcdStore { inner })
    }

    /// The prefix every key lives under.
    pub fn prefix(&self) -> &str {
        std::str::from_utf8(self.inner.keys.prefix()).unwrap_or_default()
    }

    /// The endpoint calls go to now (it changes when a member fails).
    pub fn current_endpoint(&self) -> String {
        let (index, _) = self.inner.client.pick();
        self.inner.client.name(index).to_owned()
    }

    /// Applies `ops` like [`Store::txn`], attaching every put to `lease` (see
    /// [`EtcdStore::grant_lease`]): etcd deletes those keys when the lease ends.
    pub async fn txn_with_lease(
        &self,
        ops: Vec<Op>,
        lease: LeaseId,
    ) -> Result<Revision, StoreError> {
        self.apply(ops, lease).await
    }

    /// Writes `value` at `key` bound to `lease`, if `precondition` holds.
    pub async fn put_with_lease(
        &self,
        key: impl Into<String>,
        value: impl Into<Bytes>,
        precondition: Precondition,
        lease: LeaseId,
    ) -> Result<Revision, StoreError> {
        self.apply(vec![Op::put(key, value, precondition)], lease)
            .await
    }

    /// Creates `key` with `value` (bound to `lease` unless it is 0) if the key does not exist,
    /// and otherwise returns the key as it is — in one etcd Txn, so the answer is exact: the
    /// building block of leader election ("whoever creates the key leads; the others learn
    /// who does").
    ///
    /// As with any write, a broken connection can leave the outcome unknown
    /// ([`EtcdError::OutcomeUnknown`]); a value that names its writer lets the next attempt
    /// tell from [`Creation::Exists`] that it had in fact won.
    pub async fn create_if_absent(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        lease: LeaseId,
    ) -> Result<Creation, StoreError> {
        self.inner.check_open()?;
        let ops = vec![Op::put(key, value, Precondition::Absent)];
        validate_txn(&ops)?;
        let mut request = self.txn_request(&ops, lease);
        // On failure, read the whole key, not only its revisions.
        request.failure = vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: self.inner.keys.full(key).into(),
                ..Default::default()
            })),
        }];
        let response = self.send_txn(request).await?;
        let at = self.inner.seen(response.header.as_ref());
        if response.succeeded {
            return Ok(Creation::Created(at));
        }
        let existing = response
            .responses
            .into_iter()
            .next()
            .and_then(|r| match r.response {
                Some(response_op::Response::ResponseRange(range)) => range.kvs.into_iter().next(),
                _ => None,
            });
        match existing {
            Some(kv) => Ok(Creation::Exists(self.inner.keys.key_value(kv)?)),
            // Deleted between the compare and the read cannot happen inside one txn.
            None => Err(protocol(
                "a create-if-absent was refused but the key is absent",
            )),
        }
    }

    /// Asks etcd for a lease of (at least) `ttl`, rounded up to whole seconds.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        self.inner.check_open()?;
        let seconds = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .unwrap_or(i64::MAX)
            .max(1);
        let response =
            self.inner
                .client
                .unary(
                    "granting an etcd lease",
                    // A lease granted twice costs an unused lease that expires by itself.
                    Retry::Always,
                    LeaseGrantRequest {
                        ttl: seconds,
                        id: 0,
                    },
                    |channel, request| async move {
                        LeaseClient::new(channel).lease_grant(request).await
                    },
                )
                .await?;
        if !response.error.is_empty() {
            return Err(StoreError::backend(
                "granting an etcd lease",
                EtcdError::Protocol(response.error),
            ));
        }
        self.inner.seen(response.header.as_ref());
        Ok(Lease {
            id: response.id,
            ttl: Duration::from_secs(u64::try_from(response.ttl).unwrap_or(0)),
        })
    }

    /// Keeps `lease` alive from a background task until the keeper is dropped or revoked.
    /// `granted_at` must be no later than the grant request was sent (pass the
    /// [`tokio::time::Instant`] taken before [`EtcdStore::grant_lease`]); the keeper's
    /// expiry estimate is counted from it.
    pub fn keep_alive(&self, lease: Lease, granted_at: tokio::time::Instant) -> LeaseKeeper {
        LeaseKeeper::start(self.inner.clone(), lease, granted_at)
    }

    /// Revokes a lease: etcd deletes its keys at once. A lease etcd no longer knows counts as
    /// revoked.
    pub async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        lease::revoke(&self.inner, lease).await
    }

    /// Discards the history before `revision` (etcd's Compact, waiting until the answering
    /// member has done it): a watch can then continue after `revision - 1` at the earliest.
    /// Compacting at or below an earlier compaction is not an error. etcd compacts whole
    /// clusters, so this affects every prefix and every other user of the cluster.
    pub async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.check_open()?;
        let answer = self
            .inner
            .client
            .unary(
                "compacting etcd's history",
                Retry::Always,
                CompactionRequest {
                    revision: etcd_revision(revision),
                    physical: true,
                },
                |channel, request| async move { KvClient::new(channel).compact(request).await },
            )
            .await;
        match answer {
            Ok(response) => {
                self.inner.seen(response.header.as_ref());
                Ok(())
            }
            Err(error) if refused_with(&error, "required revision has been compacted") => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The status of the first member that answers, starting with the current one.
    pub async fn status(&self) -> Result<EtcdStatus, StoreError> {
        self.inner.check_open()?;
        let (first, _) = self.inner.client.pick();
        let mut last = None;
        for offset in 0..self.inner.client.len() {
            let index = (first + offset) % self.inner.client.len();
            match self.member_status(index).await {
                Ok(status) => return Ok(status),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or(StoreError::Closed))
    }

    /// Every endpoint's status, or why it did not answer, in the configured order.
    pub async fn member_statuses(&self) -> Vec<(String, Result<EtcdStatus, StoreError>)> {
        let asks = (0..self.inner.client.len()).map(|index| async move {
            (
                self.inner.client.name(index).to_owned(),
                self.member_status(index).await,
            )
        });
        futures::future::join_all(asks).await
    }

    /// Maintenance Status of endpoint `index`, without failover.
    async fn member_status(&self, index: usize) -> Result<EtcdStatus, StoreError> {
        let client = &self.inner.client;
        let mut request = client.request(StatusRequest {});
        // A member without a leader must still say so rather than refuse.
        request.metadata_mut().remove(client::REQUIRE_LEADER_KEY);
        let timeout = client.request_timeout();
        let answer = tokio::time::timeout(
            timeout,
            MaintenanceClient::new(client.channel(index)).status(request),
        )
        .await;
        let status = match answer {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                return Err(client::refused(
                    "asking etcd for its status",
                    client.name(index),
                    &status,
                ));
            }
            Err(_) => {
                return Err(client::refused(
                    "asking etcd for its status",
                    client.name(index),
                    &tonic::Status::deadline_exceeded(format!("no answer within {timeout:?}")),
                ));
            }
        };
        Ok(EtcdStatus {
            endpoint: client.name(index).to_owned(),
            version: status.version,
            member_id: status.header.as_ref().map_or(0, |h| h.member_id),
            leader: status.leader,
            raft_term: status.raft_term,
            revision: status.header.as_ref().map_or(0, |h| revision(h.revision)),
            db_size: status.db_size,
            errors: status.errors,
        })
    }

    /// The etcd Txn for `ops`: see the module doc.
    fn txn_request(&self, ops: &[Op], lease: LeaseId) -> TxnRequest {
        let keys = &self.inner.keys;
        let mut request = TxnRequest::default();
        for op in ops {
            let key: Bytes = keys.full(op.key()).into();
            if let Some(compare) = compare_for(key.clone(), op.precondition()) {
                request.compare.push(compare);
                request.failure.push(RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key: key.clone(),
                        keys_only: true,
                        ..Default::default()
                    })),
                });
            }
            let write = match op {
                Op::Put { value, .. } => request_op::Request::RequestPut(PutRequest {
                    key,
                    value: value.clone(),
                    lease,
                    prev_kv: false,
                }),
                Op::Delete { .. } => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key,
                    ..Default::default()
                }),
            };
            request.success.push(RequestOp {
                request: Some(write),
            });
        }
        request
    }

    /// Sends a txn, retrying only where it certainly was not applied; turns etcd's limits
    /// into [`StoreError::InvalidTxn`].
    async fn send_txn(&self, request: TxnRequest) -> Result<TxnResponse, StoreError> {
        let first_key = request
            .success
            .first()
            .and_then(|op| match &op.request {
                Some(request_op::Request::RequestPut(put)) => Some(put.key.clone()),
                Some(request_op::Request::RequestDeleteRange(delete)) => Some(delete.key.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let answer = self
            .inner
            .client
            .unary(
                "applying a txn in etcd",
                Retry::IfNotSent,
                request,
                |channel, request| async move { KvClient::new(channel).txn(request).await },
            )
            .await;
        let invalid = |reason| StoreError::InvalidTxn {
            key: self.inner.keys.strip(&first_key).unwrap_or_default(),
            reason,
        };
        match answer {
            Err(error) if refused_with(&error, "too many operations in txn request") => {
                Err(invalid(
                    "it has more ops than etcd allows in one txn (--max-txn-ops, 128 by default)",
                ))
            }
            Err(error) if refused_with(&error, "request is too large") => Err(invalid(
                "it is larger than etcd accepts in one request (--max-request-bytes, 1.5 MiB by default)",
            )),
            other => other,
        }
    }

    async fn apply(&self, ops: Vec<Op>, lease: LeaseId) -> Result<Revision, StoreError> {
        self.inner.check_open()?;
        validate_txn(&ops)?;
        let started = std::time::Instant::now();
        let response = self.send_txn(self.txn_request(&ops, lease)).await?;
        let at = self.inner.seen(response.header.as_ref());
        if response.succeeded {
            if let Some(observer) = &self.inner.observer {
                observer.commit(started.elapsed(), 1);
            }
            Ok(at)
        } else {
            Err(conflict(&ops, response))
        }
    }
}

/// The Compare that checks `precondition` on `key`; none for [`Precondition::Any`].
fn compare_for(key: Bytes, precondition: Precondition) -> Option<Compare> {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let (result, target, union) = match precondition {
        Precondition::Any => return None,
        // An absent key has create_revision 0 (a deleted one too).
        Precondition::Absent => (
            CompareResult::Equal,
            CompareTarget::Create,
            TargetUnion::CreateRevision(0),
        ),
        // No write has revision 0, and an absent key's mod_revision is 0: "version < 0" is
        // etcd's way of a Compare that never holds.
        Precondition::ModRevision(0) => (
            CompareResult::Less,
            CompareTarget::Version,
            TargetUnion::Version(0),
        ),
        Precondition::ModRevision(r) => (
            CompareResult::Equal,
            CompareTarget::Mod,
            TargetUnion::ModRevision(etcd_revision(r)),
        ),
    };
    Some(Compare {
        result: result as i32,
        target: target as i32,
        key,
        target_union: Some(union),
    })
}

/// The conflict a refused txn answers: the first op (in op order) whose precondition fails on
/// the keys the failure branch read (at the same revision the Compares saw).
fn conflict(ops: &[Op], response: TxnResponse) -> StoreError {
    let checked = ops
        .iter()
        .filter(|op| op.precondition() != Precondition::Any);
    for (op, answer) in checked.zip(response.responses) {
        let Some(response_op::Response::ResponseRange(range)) = answer.response else {
            return protocol("a refused txn's failure branch did not answer a read");
        };
        let current = range.kvs.first().map(|kv| revision(kv.mod_revision));
        let holds = match op.precondition() {
            Precondition::Any => true,
            Precondition::Absent => current.is_none(),
            Precondition::ModRevision(r) => current == Some(r),
        };
        if !holds {
            return StoreError::Conflict {
                key: op.key().to_owned(),
            };
        }
    }
    protocol("etcd refused a txn whose preconditions all hold on the state it read")
}

/// Whether `error` is etcd refusing a call with a message containing `text`.
fn refused_with(error: &StoreError, text: &str) -> bool {
    match error {
        StoreError::Backend { source, .. } => matches!(
            source.downcast_ref::<EtcdError>(),
            Some(EtcdError::Refused { message, .. }) if message.contains(text)
        ),
        _ => false,
    }
}

fn protocol(message: &str) -> StoreError {
    StoreError::backend(
        "reading etcd's answer",
        EtcdError::Protocol(message.to_owned()),
    )
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.check_open()?;
        let response = self
            .inner
            .range(RangeRequest {
                key: self.inner.keys.full(key).into(),
                ..Default::default()
            })
            .await?;
        response
            .kvs
            .into_iter()
            .next()
            .map(|kv| self.inner.keys.key_value(kv))
            .transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        self.inner.check_open()?;
        let (start, range_end) = self.inner.keys.range(prefix);
        let range_end: Bytes = range_end.into();
        // A listing whose snapshot is compacted between two pages starts over, a few times.
        let mut restarts = 0;
        'listing: loop {
            let mut items = Vec::new();
            let mut from: Bytes = start.clone().into();
            let mut at = 0;
            loop {
                let page = self
                    .inner
                    .range(RangeRequest {
                        key: from,
                        range_end: range_end.clone(),
                        limit: self.inner.list_page_size,
                        revision: at,
                        ..Default::default()
                    })
                    .await;
                let page = match page {
                    Err(error)
                        if at != 0
                            && restarts < 3
                            && refused_with(&error, "required revision has been compacted") =>
                    {
                        restarts += 1;
                        continue 'listing;
                    }
                    other => other?,
                };
                if at == 0 {
                    at = page.header.as_ref().map_or(0, |h| h.revision);
                }
                let last_key = page.kvs.last().map(|kv| kv.key.clone());
                for kv in page.kvs {
                    items.push(self.inner.keys.key_value(kv)?);
                }
                match (page.more, last_key) {
                    (false, _) => {
                        return Ok(Listing {
                            items,
                            revision: revision(at),
                        });
                    }
                    (true, Some(last)) => {
                        // The next page starts just after the last key.
                        let mut next = last.to_vec();
                        next.push(0);
                        from = next.into();
                    }
                    (true, None) => {
                        return Err(protocol("an empty page of a listing says there is more"));
                    }
                }
            }
        }
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        self.apply(ops, 0).await
    }

    fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> BoxStream<'static, Result<WatchEvent, StoreError>> {
        watches::watch(self.inner.clone(), prefix, after)
    }

    fn revision(&self) -> Revision {
        self.inner.revision.load(Ordering::Acquire)
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Calls in flight finish on their own; new ones, watches and lease keepers stop.
        self.inner.closed.send_replace(true);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
