//! The embedded store against a sequential model of the interface: random txns, queued so that
//! they group-commit, answer as the model answers them one at a time.

use std::collections::BTreeMap;

use futures::poll;

use super::open;
use crate::store::{
    KeyValue, Op, Precondition, Revision, Store, StoreError, WatchEvent, conformance, validate_txn,
};

/// How a generated op's precondition relates to the model's state when it is generated.
#[derive(Debug, Clone, Copy)]
enum Pre {
    Any,
    Absent,
    Current,
    Stale,
}

fn op_spec() -> impl proptest::strategy::Strategy<Value = (u8, bool, Pre)> {
    use proptest::prelude::*;
    let pre = prop_oneof![
        Just(Pre::Any),
        Just(Pre::Absent),
        Just(Pre::Current),
        Just(Pre::Stale)
    ];
    (0u8..4, proptest::bool::weighted(0.3), pre)
}

/// The reference the store is checked against: a map, a revision, and the event log,
/// applying txns one at a time exactly as the interface describes.
#[derive(Default)]
struct Model {
    keys: BTreeMap<String, KeyValue>,
    revision: Revision,
    events: Vec<WatchEvent>,
}

impl Model {
    fn precondition(&self, key: &str, pre: Pre) -> Precondition {
        let current = self.keys.get(key).map(|kv| kv.mod_revision);
        match pre {
            Pre::Any => Precondition::Any,
            Pre::Absent => Precondition::Absent,
            Pre::Current => Precondition::ModRevision(current.unwrap_or(self.revision)),
            Pre::Stale => Precondition::ModRevision(current.map_or(0, |r| r - 1)),
        }
    }

    fn apply(&mut self, ops: &[Op]) -> Result<Revision, StoreError> {
        validate_txn(ops)?;
        for op in ops {
            let existing = self.keys.get(op.key());
            let holds = match op.precondition() {
                Precondition::Any => true,
                Precondition::Absent => existing.is_none(),
                Precondition::ModRevision(r) => existing.is_some_and(|kv| kv.mod_revision == r),
            };
            if !holds {
                return Err(StoreError::Conflict {
                    key: op.key().to_owned(),
                });
            }
        }
        let next = self.revision + 1;
        let before = self.events.len();
        for op in ops {
            match op {
                Op::Put { key, value, .. } => {
                    let create_revision = self.keys.get(key).map_or(next, |kv| kv.create_revision);
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision,
                        mod_revision: next,
                    };
                    self.keys.insert(key.clone(), kv.clone());
                    self.events.push(WatchEvent::Put(kv));
                }
                Op::Delete { key, .. } => {
                    if let Some(prev) = self.keys.remove(key) {
                        self.events.push(WatchEvent::Delete {
                            key: key.clone(),
                            mod_revision: next,
                            prev: Some(prev),
                        });
                    }
                }
            }
        }
        if self.events.len() > before {
            self.revision = next;
        }
        Ok(self.revision)
    }
}

/// A comparable form of an answer (errors are not `PartialEq`).
fn outcome(answer: &Result<Revision, StoreError>) -> String {
    match answer {
        Ok(revision) => format!("ok {revision}"),
        Err(StoreError::Conflict { key }) => format!("conflict {key}"),
        Err(StoreError::InvalidTxn { key, .. }) => format!("invalid {key}"),
        Err(other) => format!("unexpected {other}"),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Random txns, queued all at once so that they group-commit, answer exactly as the
    /// model answers them one by one; the final state and the watch log match too.
    #[test]
    fn queued_txns_behave_like_the_sequential_model(
        txns in proptest::collection::vec(proptest::collection::vec(op_spec(), 1..4), 1..30)
    ) {
        let mut model = Model { revision: 1, ..Model::default() };
        let mut planned = Vec::new();
        let mut expected = Vec::new();
        for (n, specs) in txns.iter().enumerate() {
            let ops: Vec<Op> = specs
                .iter()
                .map(|&(key, delete, pre)| {
                    let key = format!("k{key}");
                    let precondition = model.precondition(&key, pre);
                    if delete {
                        Op::delete(key, precondition)
                    } else {
                        Op::put(key, format!("v{n}"), precondition)
                    }
                })
                .collect();
            expected.push(outcome(&model.apply(&ops)));
            planned.push(ops);
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let mut events = store.watch("", store.revision());
            // Queue every txn in order before awaiting any answer.
            let mut pending = Vec::new();
            for ops in planned {
                let mut txn = store.txn(ops);
                // Invalid txns are answered at once; the rest wait in the queue.
                match poll!(&mut txn) {
                    std::task::Poll::Ready(answer) => {
                        pending.push(futures::FutureExt::boxed(futures::future::ready(answer)));
                    }
                    std::task::Poll::Pending => pending.push(txn),
                }
            }
            let answers: Vec<String> =
                futures::future::join_all(pending).await.iter().map(outcome).collect();
            assert_eq!(answers, expected);
            assert_eq!(store.revision(), model.revision);
            let listing = store.list("").await.unwrap();
            let keys: Vec<KeyValue> = model.keys.values().cloned().collect();
            assert_eq!(listing.items, keys);
            for want in &model.events {
                assert_eq!(&conformance::next_event(&mut events).await, want);
            }
            store.close().await.unwrap();
        });
    }
}
