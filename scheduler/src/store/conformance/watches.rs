//! The watch part of the store test suite (see the parent module).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::future::join_all;

use super::{next_event, next_item, value};
use crate::store::{
    KeyValue, Op, Precondition, Revision, Store, StoreError, WatchEvent, delete, put,
};

/// A watch sees exactly the prefix's changes, in revision order, op order within a txn.
pub async fn watch_delivers_changes_in_order(store: &dyn Store, prefix: &str) {
    let watched = format!("{prefix}w/");
    let (a, b, c, d) = (
        format!("{watched}a"),
        format!("{watched}b"),
        format!("{watched}c"),
        format!("{watched}d"),
    );
    let start = store.revision();
    let mut events = store.watch(&watched, start);
    let kv = |key: &str, v: &str, create: Revision, modified: Revision| KeyValue {
        key: key.to_owned(),
        value: value(v),
        create_revision: create,
        mod_revision: modified,
    };

    let r1 = put(store, &a, value("1"), Precondition::Any).await.unwrap();
    let r2 = store
        .txn(vec![
            Op::put(&b, value("2"), Precondition::Absent),
            Op::put(&c, value("3"), Precondition::Absent),
        ])
        .await
        .unwrap();
    put(
        store,
        format!("{prefix}outside"),
        value("x"),
        Precondition::Any,
    )
    .await
    .unwrap();
    let _ = put(store, &a, value("refused"), Precondition::Absent)
        .await
        .unwrap_err();
    let r3 = put(store, &a, value("4"), Precondition::ModRevision(r1))
        .await
        .unwrap();
    let r4 = delete(store, &b, Precondition::Any).await.unwrap();
    delete(store, format!("{watched}never-existed"), Precondition::Any)
        .await
        .unwrap();
    let r5 = store
        .txn(vec![
            Op::delete(&a, Precondition::Any),
            Op::put(&d, value("5"), Precondition::Any),
        ])
        .await
        .unwrap();

    let expected = [
        WatchEvent::Put(kv(&a, "1", r1, r1)),
        WatchEvent::Put(kv(&b, "2", r2, r2)),
        WatchEvent::Put(kv(&c, "3", r2, r2)),
        WatchEvent::Put(kv(&a, "4", r1, r3)),
        WatchEvent::Delete {
            key: b.clone(),
            mod_revision: r4,
            prev: Some(kv(&b, "2", r2, r2)),
        },
        WatchEvent::Delete {
            key: a.clone(),
            mod_revision: r5,
            prev: Some(kv(&a, "4", r1, r3)),
        },
        WatchEvent::Put(kv(&d, "5", r5, r5)),
    ];
    for (i, want) in expected.iter().enumerate() {
        let got = next_event(&mut events).await;
        assert_eq!(&got, want, "watch event {i}");
    }
    // Nothing else is pending: a further change is the very next event.
    let r6 = put(store, &c, value("6"), Precondition::Any).await.unwrap();
    assert_eq!(
        next_event(&mut events).await,
        WatchEvent::Put(kv(&c, "6", r2, r6))
    );
}

/// A watch from an earlier (retained) revision replays exactly the changes after it.
pub async fn watch_replays_from_past_revision(store: &dyn Store, prefix: &str) {
    let mut revisions = Vec::new();
    for i in 0..5 {
        let key = format!("{prefix}k{i}");
        revisions.push(
            put(store, &key, value("v"), Precondition::Any)
                .await
                .unwrap(),
        );
    }
    let mut events = store.watch(prefix, revisions[1]);
    for (i, revision) in revisions.iter().enumerate().skip(2) {
        let event = next_event(&mut events).await;
        assert_eq!(
            (event.key(), event.revision()),
            (format!("{prefix}k{i}").as_str(), *revision)
        );
    }
    // Watching from the latest revision delivers only what comes next.
    let mut from_now = store.watch(prefix, *revisions.last().unwrap());
    let next = put(
        store,
        format!("{prefix}later"),
        value("v"),
        Precondition::Any,
    )
    .await
    .unwrap();
    assert_eq!(next_event(&mut from_now).await.revision(), next);
}

/// Listing and then watching from the listing's revision misses nothing and repeats nothing,
/// while other tasks keep writing: the state rebuilt from list + events equals a fresh list.
pub async fn list_then_watch_under_concurrent_writes(store: &dyn Store, prefix: &str) {
    const WRITERS: u64 = 4;
    const WRITES: u64 = 80;
    let start = store.revision();
    let marker = format!("{prefix}~done");
    let writers = async {
        let writer = |seed: u64| async move {
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for i in 0..WRITES {
                // xorshift: deterministic, no dependency, good enough to mix puts and deletes.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let key = format!("{prefix}k{:02}", state % 16);
                let result = if state.is_multiple_of(4) {
                    delete(store, &key, Precondition::Any).await
                } else {
                    put(
                        store,
                        &key,
                        value(&format!("{seed}-{i}")),
                        Precondition::Any,
                    )
                    .await
                };
                result.unwrap();
            }
        };
        join_all((0..WRITERS).map(writer)).await;
        put(store, &marker, value("done"), Precondition::Any)
            .await
            .unwrap()
    };
    let reader = async {
        // List while the writers are busy, not before or after them.
        while store.revision() < start + WRITERS * WRITES / 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let listing = store.list(prefix).await.unwrap();
        let mut state: BTreeMap<String, KeyValue> = listing
            .items
            .into_iter()
            .map(|kv| (kv.key.clone(), kv))
            .collect();
        let mut events = store.watch(prefix, listing.revision);
        let mut last = listing.revision;
        let mut applied = 0;
        loop {
            let event = next_event(&mut events).await;
            let revision = event.revision();
            assert!(
                revision > listing.revision,
                "an event at or before the listing: {event:?}"
            );
            assert!(
                revision >= last,
                "events out of order: {revision} after {last}"
            );
            last = revision;
            applied += 1;
            match event {
                WatchEvent::Put(kv) => {
                    match state.get(&kv.key) {
                        Some(old) => {
                            assert!(
                                kv.mod_revision > old.mod_revision,
                                "a repeated event: {kv:?}"
                            );
                            assert_eq!(kv.create_revision, old.create_revision);
                        }
                        None => assert_eq!(kv.create_revision, kv.mod_revision),
                    }
                    let done = kv.key == marker;
                    state.insert(kv.key.clone(), kv);
                    if done {
                        assert!(
                            applied > 1,
                            "the listing was taken after the writers finished"
                        );
                        return state;
                    }
                }
                WatchEvent::Delete { key, prev, .. } => {
                    let old = state.remove(&key);
                    assert!(
                        old.is_some(),
                        "a delete of a key the listing did not have: {key}"
                    );
                    if let Some(prev) = prev {
                        assert_eq!(Some(prev), old, "delete's prev is not the last state");
                    }
                }
            }
        }
    };
    let (_, rebuilt) = tokio::join!(writers, reader);
    let fresh = store.list(prefix).await.unwrap();
    let rebuilt: Vec<KeyValue> = rebuilt.into_values().collect();
    assert_eq!(
        rebuilt, fresh.items,
        "list + watch must rebuild the store's state"
    );
}

/// A watch from before the retained history answers `Compacted` and ends; a watcher that was
/// already open never skips changes silently; watching from now on still works.
pub async fn watch_after_compaction_says_compacted<F, Fut>(
    store: &dyn Store,
    prefix: &str,
    compact: F,
) where
    F: FnOnce(Revision) -> Fut,
    Fut: Future<Output = ()>,
{
    let (k1, k2) = (format!("{prefix}k1"), format!("{prefix}k2"));
    let r1 = put(store, &k1, value("1"), Precondition::Any)
        .await
        .unwrap();
    let mut open_before = store.watch(prefix, r1 - 1);
    let r2 = put(store, &k2, value("2"), Precondition::Any)
        .await
        .unwrap();
    compact(r2).await;

    let mut late = store.watch(prefix, r1);
    match next_item(&mut late).await {
        Some(Err(StoreError::Compacted { requested, oldest })) => {
            assert_eq!(requested, r1);
            assert!(
                oldest >= r2,
                "oldest {oldest} must be past the compacted {r2}"
            );
        }
        other => panic!("expected Compacted for a watch from {r1}, got {other:?}"),
    }
    assert!(
        next_item(&mut late).await.is_none(),
        "a compacted watch must end"
    );

    // The watcher opened earlier either still delivers both changes, in order, or says
    // Compacted before any gap and ends.
    let expected = [(k1.as_str(), r1), (k2.as_str(), r2)];
    let mut seen = 0;
    while seen < expected.len() {
        match next_item(&mut open_before).await {
            Some(Ok(event)) => {
                assert_eq!((event.key(), event.revision()), expected[seen]);
                seen += 1;
            }
            Some(Err(StoreError::Compacted { .. })) => {
                assert!(
                    next_item(&mut open_before).await.is_none(),
                    "must end after Compacted"
                );
                break;
            }
            other => panic!("unexpected item from an open watch: {other:?}"),
        }
    }

    let mut fresh = store.watch(prefix, store.revision());
    let r3 = put(store, &k1, value("3"), Precondition::Any)
        .await
        .unwrap();
    assert_eq!(next_event(&mut fresh).await.revision(), r3);
}
