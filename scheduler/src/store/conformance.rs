//! The store test suite, written once against [`Store`] and run against every backend.
//!
//! Compiled for this crate's tests and, with the `testing` feature, for other crates' tests:
//! the etcd backend's tests run the same functions against a real etcd, which is why each
//! function confines itself to keys under the `prefix` it is given (so several can share one
//! etcd) and compares revisions only relatively (other writers may advance them).
//!
//! Every function panics with a message on the first violation, like an assertion.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::join_all;
use futures::stream::BoxStream;

use super::{KeyValue, Op, Precondition, Revision, Store, StoreError, WatchEvent, delete, put};

mod watches;

pub use self::watches::{
    list_then_watch_under_concurrent_writes, watch_after_compaction_says_compacted,
    watch_delivers_changes_in_order, watch_replays_from_past_revision,
};

/// How long a test waits for a watch event before it calls the store stuck.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A watch stream as the tests hold it.
type Events = BoxStream<'static, Result<WatchEvent, StoreError>>;

/// Runs every function of the suite that needs nothing but a store, each under its own
/// sub-prefix of `prefix`. `compact` must make all history up to and including the given
/// revision unavailable to watches (etcd: compact; embedded: push it out of the ring).
/// [`closed_store_refuses_calls`] is not included: it closes the store.
pub async fn run_all<F, Fut>(store: &dyn Store, prefix: &str, compact: F)
where
    F: FnOnce(Revision) -> Fut,
    Fut: Future<Output = ()>,
{
    get_put_roundtrip(store, &format!("{prefix}get/")).await;
    list_by_prefix_in_key_order(store, &format!("{prefix}list/")).await;
    preconditions_are_enforced(store, &format!("{prefix}pre/")).await;
    multi_op_txn_is_atomic(store, &format!("{prefix}atomic/")).await;
    delete_semantics(store, &format!("{prefix}delete/")).await;
    invalid_txns_are_refused(store, &format!("{prefix}invalid/")).await;
    concurrent_txns_get_distinct_revisions(store, &format!("{prefix}revs/")).await;
    concurrent_cas_has_one_winner(store, &format!("{prefix}cas/")).await;
    watch_delivers_changes_in_order(store, &format!("{prefix}watch/")).await;
    watch_replays_from_past_revision(store, &format!("{prefix}replay/")).await;
    list_then_watch_under_concurrent_writes(store, &format!("{prefix}lw/")).await;
    watch_after_compaction_says_compacted(store, &format!("{prefix}compact/"), compact).await;
}

/// The next watch event, failing the test on an error, the end of the stream or a timeout.
pub async fn next_event(events: &mut Events) -> WatchEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, events.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("watch failed: {error}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

/// The next item of a watch (`None` when it ended), failing the test on a timeout.
pub async fn next_item(events: &mut Events) -> Option<Result<WatchEvent, StoreError>> {
    tokio::time::timeout(EVENT_TIMEOUT, events.next())
        .await
        .unwrap_or_else(|_| panic!("no watch item within {EVENT_TIMEOUT:?}"))
}

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// A put is read back with its revisions; a second put keeps the create revision.
pub async fn get_put_roundtrip(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}a");
    assert_eq!(
        store.get(&key).await.unwrap(),
        None,
        "a new key must be absent"
    );
    let before = store.revision();
    let r1 = put(store, &key, value("one"), Precondition::Any)
        .await
        .unwrap();
    assert!(
        r1 > before,
        "a write must advance the revision ({r1} after {before})"
    );
    assert!(
        store.revision() >= r1,
        "revision() must include an acknowledged write"
    );
    let got = store
        .get(&key)
        .await
        .unwrap()
        .expect("a written key must be there");
    assert_eq!(
        got,
        KeyValue {
            key: key.clone(),
            value: value("one"),
            create_revision: r1,
            mod_revision: r1
        }
    );
    let r2 = put(store, &key, value("two"), Precondition::Any)
        .await
        .unwrap();
    assert!(r2 > r1);
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.create_revision, got.mod_revision),
        (value("two"), r1, r2)
    );
    // Values are bytes, not text; an empty value is a value.
    let binary = Bytes::from_static(&[0, 159, 146, 150, 255]);
    put(store, &key, binary.clone(), Precondition::Any)
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap().unwrap().value, binary);
    put(store, &key, Bytes::new(), Precondition::Any)
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap().unwrap().value, Bytes::new());
}

/// A listing holds exactly the prefix's keys, in key order, at a revision covering them.
pub async fn list_by_prefix_in_key_order(store: &dyn Store, prefix: &str) {
    let empty = store.list(prefix).await.unwrap();
    assert!(
        empty.items.is_empty(),
        "nothing was written under {prefix} yet"
    );
    let names = ["m", "a", "z", "a/b", "b", "ab", "é"];
    let mut last = 0;
    for name in names {
        last = put(
            store,
            format!("{prefix}in/{name}"),
            value(name),
            Precondition::Any,
        )
        .await
        .unwrap();
    }
    // Keys next to the prefix that must not be listed under it.
    put(store, format!("{prefix}i"), value("x"), Precondition::Any)
        .await
        .unwrap();
    put(store, format!("{prefix}in"), value("x"), Precondition::Any)
        .await
        .unwrap();
    put(store, format!("{prefix}in0"), value("x"), Precondition::Any)
        .await
        .unwrap();
    let listing = store.list(&format!("{prefix}in/")).await.unwrap();
    let mut expected: Vec<String> = names.iter().map(|n| format!("{prefix}in/{n}")).collect();
    expected.sort();
    let keys: Vec<&str> = listing.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys, expected,
        "a listing is the prefix's keys in byte order"
    );
    for kv in &listing.items {
        let name = kv.key.rsplit_once("in/").unwrap().1;
        assert_eq!(kv.value, value(name));
        assert!(kv.mod_revision <= listing.revision);
    }
    assert!(
        listing.revision >= last,
        "a listing must include acknowledged writes"
    );
    let all = store.list(prefix).await.unwrap();
    assert_eq!(all.items.len(), names.len() + 3);
}

/// `Absent` and `ModRevision` are checked; a failed one answers `Conflict` and writes nothing.
pub async fn preconditions_are_enforced(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}k");
    let conflict = |result: Result<Revision, StoreError>| match result {
        Err(StoreError::Conflict { key: k }) => assert_eq!(k, key),
        other => panic!("expected a conflict on {key}, got {other:?}"),
    };
    conflict(put(store, &key, value("x"), Precondition::ModRevision(1)).await);
    conflict(delete(store, &key, Precondition::ModRevision(1)).await);
    assert_eq!(store.get(&key).await.unwrap(), None);

    let created = put(store, &key, value("v1"), Precondition::Absent)
        .await
        .unwrap();
    conflict(put(store, &key, value("again"), Precondition::Absent).await);
    conflict(
        put(
            store,
            &key,
            value("stale"),
            Precondition::ModRevision(created - 1),
        )
        .await,
    );
    conflict(
        put(
            store,
            &key,
            value("future"),
            Precondition::ModRevision(created + 1),
        )
        .await,
    );
    let current = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (current.value, current.mod_revision),
        (value("v1"), created)
    );

    let updated = put(store, &key, value("v2"), Precondition::ModRevision(created))
        .await
        .unwrap();
    assert!(updated > created);
    conflict(put(store, &key, value("v3"), Precondition::ModRevision(created)).await);
    conflict(delete(store, &key, Precondition::ModRevision(created)).await);
    conflict(delete(store, &key, Precondition::Absent).await);
    let deleted = delete(store, &key, Precondition::ModRevision(updated))
        .await
        .unwrap();
    assert!(deleted > updated);
    assert_eq!(store.get(&key).await.unwrap(), None);
    conflict(put(store, &key, value("v4"), Precondition::ModRevision(updated)).await);
    put(store, &key, value("v4"), Precondition::Absent)
        .await
        .unwrap();
}

/// All ops of a txn share one revision; one failing precondition means none is applied.
pub async fn multi_op_txn_is_atomic(store: &dyn Store, prefix: &str) {
    let (a, b, c) = (
        format!("{prefix}a"),
        format!("{prefix}b"),
        format!("{prefix}c"),
    );
    let ra = put(store, &a, value("a0"), Precondition::Absent)
        .await
        .unwrap();
    put(store, &c, value("c0"), Precondition::Absent)
        .await
        .unwrap();
    let before = store.list(prefix).await.unwrap().items;

    // The last op's precondition fails: the first two must not be applied.
    let refused = store
        .txn(vec![
            Op::put(&a, value("a1"), Precondition::ModRevision(ra)),
            Op::put(&b, value("b1"), Precondition::Absent),
            Op::delete(&c, Precondition::Absent),
        ])
        .await;
    match refused {
        Err(StoreError::Conflict { key }) => assert_eq!(key, c),
        other => panic!("expected a conflict on {c}, got {other:?}"),
    }
    assert_eq!(
        store.list(prefix).await.unwrap().items,
        before,
        "a refused txn wrote something"
    );

    let revision = store
        .txn(vec![
            Op::put(&a, value("a1"), Precondition::ModRevision(ra)),
            Op::put(&b, value("b1"), Precondition::Absent),
            Op::delete(&c, Precondition::Any),
        ])
        .await
        .unwrap();
    let after = store.list(prefix).await.unwrap();
    let got: Vec<(&str, &[u8], Revision, Revision)> = after
        .items
        .iter()
        .map(|kv| {
            (
                kv.key.as_str(),
                kv.value.as_ref(),
                kv.create_revision,
                kv.mod_revision,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (a.as_str(), &b"a1"[..], ra, revision),
            (b.as_str(), &b"b1"[..], revision, revision)
        ],
        "every op of a txn applies at the txn's one revision"
    );
}

/// Deleting removes a key; deleting an absent key is no error; re-creating starts anew.
pub async fn delete_semantics(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}k");
    let before = store.revision();
    let nothing = delete(store, &key, Precondition::Any).await.unwrap();
    assert!(
        nothing >= before,
        "a no-op delete answers a current revision"
    );
    let created = put(store, &key, value("v"), Precondition::Any)
        .await
        .unwrap();
    let deleted = delete(store, &key, Precondition::Any).await.unwrap();
    assert!(deleted > created);
    assert_eq!(store.get(&key).await.unwrap(), None);
    assert!(store.list(prefix).await.unwrap().items.is_empty());
    let recreated = put(store, &key, value("w"), Precondition::Absent)
        .await
        .unwrap();
    let kv = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision),
        (recreated, recreated)
    );
}

/// Empty keys and keys named twice in one txn are refused, and nothing is written.
pub async fn invalid_txns_are_refused(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}k");
    let twice = store
        .txn(vec![
            Op::put(&key, value("1"), Precondition::Any),
            Op::delete(&key, Precondition::Any),
        ])
        .await;
    assert!(
        matches!(&twice, Err(StoreError::InvalidTxn { key: k, .. }) if *k == key),
        "a key named twice must be refused, got {twice:?}"
    );
    let empty = store
        .txn(vec![Op::put("", value("1"), Precondition::Any)])
        .await;
    assert!(
        matches!(empty, Err(StoreError::InvalidTxn { .. })),
        "got {empty:?}"
    );
    assert_eq!(store.get(&key).await.unwrap(), None);
}

/// Concurrent txns each get their own revision, and the keys carry exactly that revision.
pub async fn concurrent_txns_get_distinct_revisions(store: &dyn Store, prefix: &str) {
    let writes = (0..64).map(|i| async move {
        let key = format!("{prefix}{i:02}");
        let revision = put(store, &key, value(&key), Precondition::Absent)
            .await
            .unwrap();
        (key, revision)
    });
    let mut written = join_all(writes).await;
    let mut revisions: Vec<Revision> = written.iter().map(|(_, r)| *r).collect();
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 64, "each txn must get its own revision");
    assert!(store.revision() >= *revisions.last().unwrap());
    written.sort();
    let listing = store.list(prefix).await.unwrap();
    let listed: Vec<(String, Revision)> = listing
        .items
        .into_iter()
        .map(|kv| (kv.key, kv.mod_revision))
        .collect();
    assert_eq!(listed, written);
}

/// Of many concurrent compare-and-swaps from one revision, exactly one wins.
pub async fn concurrent_cas_has_one_winner(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}k");
    let base = put(store, &key, value("base"), Precondition::Absent)
        .await
        .unwrap();
    let attempts = (0..32).map(|i| {
        let key = &key;
        async move {
            put(
                store,
                key,
                value(&i.to_string()),
                Precondition::ModRevision(base),
            )
            .await
        }
    });
    let results = join_all(attempts).await;
    let winners: Vec<(usize, Revision)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().ok().map(|rev| (i, *rev)))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one CAS must win: {results:?}");
    for result in &results {
        if let Err(error) = result {
            assert!(
                matches!(error, StoreError::Conflict { .. }),
                "losers conflict: {error:?}"
            );
        }
    }
    let (winner, revision) = winners[0];
    let kv = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (kv.value, kv.mod_revision),
        (value(&winner.to_string()), revision)
    );
}

/// After `close`, calls answer `Closed`, open watches end with `Closed`, and closing again is
/// harmless. Closes the store, so run it last or on a store of its own.
pub async fn closed_store_refuses_calls(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}k");
    let written = put(store, &key, value("v"), Precondition::Any)
        .await
        .unwrap();
    let mut open = store.watch(prefix, written - 1);
    store.close().await.unwrap();
    assert!(matches!(store.get(&key).await, Err(StoreError::Closed)));
    assert!(matches!(store.list(prefix).await, Err(StoreError::Closed)));
    assert!(matches!(
        put(store, &key, value("w"), Precondition::Any).await,
        Err(StoreError::Closed)
    ));
    // The open watch may still hand out what happened before the close, then says Closed.
    loop {
        match next_item(&mut open).await {
            Some(Ok(event)) => assert_eq!(event.revision(), written),
            Some(Err(StoreError::Closed)) => break,
            other => panic!("expected Closed from an open watch, got {other:?}"),
        }
    }
    assert!(next_item(&mut open).await.is_none());
    let mut after = store.watch(prefix, store.revision());
    assert!(matches!(
        next_item(&mut after).await,
        Some(Err(StoreError::Closed))
    ));
    store.close().await.unwrap();
}
