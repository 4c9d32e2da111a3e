use std::collections::BTreeMap;

use proptest::prelude::*;

use super::migrate::{self, MigrateError, Opened};
use super::*;
use crate::model::clusters::{ClusterView, Clusters};
use crate::model::job::{
    ClusterName, Deletion, Detail, Observed, ObservedPhase, Shard, ShardState, StopReason, Uid,
    Unplaced,
};
use crate::model::planner::{observe, reconcile};
use crate::store::{EmbeddedOptions, EmbeddedStore, Store, StoreError};

fn clusters(names: &[&str]) -> Clusters {
    names
        .iter()
        .map(|c| {
            (
                (*c).to_owned(),
                ClusterView {
                    ready: true,
                    ..Default::default()
                },
            )
        })
        .collect()
}

fn job(name: &str, uid: &str, parallelism: i32, completions: i32) -> FederatedJob {
    let job = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"parallelism": parallelism, "completions": completions,
            "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "w", "image": "busybox"}]}}}
    });
    let mut fj = FederatedJob::new(serde_json::from_value(job).unwrap());
    reconcile(
        &mut fj,
        &clusters(&["c1", "c2", "c3"]),
        jiff::Timestamp::UNIX_EPOCH,
    );
    fj
}

fn running(succeeded: i32) -> Observed {
    Observed {
        phase: ObservedPhase::Running,
        active: 3,
        succeeded,
        local_uid: "6f1c0c4e-6a3e-4d2b-9f0e-3c2a1b0d9e8f".into(),
        start_time: Some(jiff::Timestamp::from_second(1_700_000_000).unwrap()).into(),
        revision: 1,
        ..Default::default()
    }
}

async fn open_store(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, EmbeddedOptions::default()).unwrap()
}

#[tokio::test]
async fn a_job_is_one_record_written_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let fj = job("myjob", "u1", 9, 18);
    assert_eq!(fj.shards.len(), 3);
    store
        .txn(vec![write_op("default/myjob", None, &fj)])
        .await
        .unwrap();
    let listed = store.list("").await.unwrap();
    assert_eq!(listed.items.len(), 1, "one key for the Job and its shards");
    let stored = decode_job(&listed.items[0]).unwrap();
    assert_eq!(stored.record, fj);

    let mut next = stored.record.clone();
    assert!(observe(&mut next, "c2", "myjob", 0, running(2)));
    let revision = store
        .txn(vec![write_op("default/myjob", Some(&stored), &next)])
        .await
        .unwrap();
    let reloaded = decode_job(&store.get("jobs/default/myjob").await.unwrap().unwrap()).unwrap();
    assert_eq!(reloaded, StoredJob::new(next.clone(), revision));

    // A stale writer (revision read before) loses the compare-and-swap.
    let stale = store
        .txn(vec![write_op("default/myjob", Some(&stored), &next)])
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })));

    store
        .txn(vec![delete_op("default/myjob", &reloaded)])
        .await
        .unwrap();
    assert!(store.list("").await.unwrap().items.is_empty());
}

#[test]
fn a_shard_takes_tens_of_bytes_not_hundreds() {
    let mut fj = job("bench-000123", "u1", 100, 100);
    let names: Vec<String> = (0..100).map(|i| format!("cluster-{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    reconcile(&mut fj, &clusters(&names), jiff::Timestamp::UNIX_EPOCH);
    for name in &names {
        let shard = fj.shards_of(name)[0].name.clone();
        assert!(observe(&mut fj, name, &shard, 0, running(0)));
    }
    let compact = codec::encode(&fj).len();
    let mut header_only = fj.clone();
    header_only.shards.clear();
    header_only.members.clear();
    header_only.planned.clear();
    let per_shard = (compact - codec::encode(&header_only).len()) / fj.shards.len();
    let json: usize = fj
        .shards
        .iter()
        .map(|s| serde_json::to_vec(s).unwrap().len())
        .sum::<usize>()
        / fj.shards.len();
    // Measured: 74 bytes per shard with its cluster name and a report, against 393 in JSON.
    assert!(
        per_shard <= 80,
        "{per_shard} bytes per shard (JSON: {json})"
    );
    assert!(
        json >= 4 * per_shard,
        "{per_shard} bytes per shard (JSON: {json})"
    );
}

fn any_state() -> impl Strategy<Value = ShardState> {
    prop_oneof![
        Just(ShardState::Active),
        Just(ShardState::Finished),
        Just(ShardState::Lost),
        Just(ShardState::Stopping),
        Just(ShardState::Stopped),
        Just(ShardState::Retired),
    ]
}

fn any_stop_reason() -> impl Strategy<Value = Option<StopReason>> {
    prop::option::of(prop_oneof![
        Just(StopReason::Surplus),
        Just(StopReason::Unstarted),
        Just(StopReason::Superseded),
        Just(StopReason::Excluded),
        Just(StopReason::Cascade),
    ])
}

fn any_time() -> impl Strategy<Value = Option<jiff::Timestamp>> {
    prop::option::of(
        (0i64..4_000_000_000, 0i32..1_000_000_000)
            .prop_map(|(s, n)| jiff::Timestamp::new(s, n).unwrap()),
    )
}

fn any_observed() -> impl Strategy<Value = Option<Observed>> {
    let phase = prop_oneof![
        Just(ObservedPhase::Running),
        Just(ObservedPhase::Complete),
        Just(ObservedPhase::Failed),
        Just(ObservedPhase::Suspended),
        Just(ObservedPhase::Deleted),
        Just(ObservedPhase::Missing),
        Just(ObservedPhase::Conflict),
        Just(ObservedPhase::Error),
    ];
    let uid = prop_oneof![
        Just(String::new()),
        Just("6f1c0c4e-6a3e-4d2b-9f0e-3c2a1b0d9e8f".to_owned()),
        Just("6F1C0C4E-6A3E-4D2B-9F0E-3C2A1B0D9E8F".to_owned()),
        "[a-z0-9-]{0,40}",
    ];
    prop::option::of(
        (
            phase,
            (0i32..1000, 0i32..1000, 0i32..1000),
            any_time(),
            any_time(),
            uid,
            ".{0,20}",
            ".{0,40}",
            any::<u64>(),
        )
            .prop_map(
                |(
                    phase,
                    (active, succeeded, failed),
                    start,
                    end,
                    local_uid,
                    reason,
                    message,
                    revision,
                )| {
                    Observed {
                        phase,
                        active,
                        succeeded,
                        failed,
                        start_time: start.into(),
                        completion_time: end.into(),
                        local_uid: Uid::new(&local_uid),
                        detail: Detail::new(&reason, &message),
                        revision,
                    }
                },
            ),
    )
}

fn any_shard() -> impl Strategy<Value = Shard> {
    let name = prop_oneof![
        Just("j".to_owned()),
        (2u32..50).prop_map(|k| format!("j-{k}")),
        Just("j-1".to_owned()),
        Just("j-02".to_owned()),
        Just("other".to_owned()),
        Just("j-x".to_owned()),
    ];
    (
        "c[0-9]{1,2}",
        name,
        prop::option::of(0i32..100),
        (0i32..100, any::<u64>(), any::<u64>(), any::<u64>()),
        any_state(),
        any_stop_reason(),
        (
            any::<bool>(),
            0i32..10,
            prop::option::of(0i64..2_000_000_000),
        ),
        any_observed(),
    )
        .prop_map(
            |(
                cluster,
                name,
                completions,
                (parallelism, epoch, revision, fingerprint),
                state,
                stop_reason,
                (seen, moved, spilled_at),
                observed,
            )| {
                Shard {
                    cluster: ClusterName::new(&cluster),
                    name,
                    completions,
                    parallelism,
                    epoch,
                    state,
                    stop_reason,
                    revision,
                    fingerprint,
                    seen,
                    observed,
                    moved,
                    spilled_at: spilled_at
                        .map(|s| jiff::Timestamp::from_second(s).unwrap())
                        .into(),
                }
            },
        )
}

proptest! {
    /// Whatever a record holds comes back exactly.
    #[test]
    fn every_record_decodes_to_what_was_encoded(
        shards in prop::collection::vec(any_shard(), 0..12),
        members in prop::collection::btree_set("c[0-9]{1,2}", 0..5),
        planned in prop::collection::btree_map("c[0-9]{1,2}", 0i32..50, 0..5),
        unplaced in (0i32..9, 0i32..9),
        grow_members in any::<bool>(),
        deleting in any::<bool>(),
    ) {
        let mut fj = job("j", "u1", 3, 3);
        fj.shards = shards;
        fj.members = members.iter().map(ClusterName::from).collect();
        fj.planned = planned.iter().map(|(c, p)| (ClusterName::new(c), *p)).collect();
        fj.unplaced = Unplaced { parallelism: unplaced.0, completions: unplaced.1 };
        fj.grow_members = grow_members;
        fj.deletion = deleting.then(|| Deletion { requested_at: jiff::Timestamp::from_second(7).unwrap() });
        let bytes = codec::encode(&fj);
        prop_assert_eq!(bytes[0], codec::MAGIC);
        prop_assert_eq!(codec::decode(&bytes).unwrap(), fj);
    }
}

/// Writes `fj` as store format 1 did: the Job record without shards, and one record of shards
/// per cluster.
async fn write_v1(store: &EmbeddedStore, fj: &FederatedJob) {
    let key = fj.key();
    let mut ops = vec![Op::put(
        format!("jobs/{key}"),
        serde_json::to_vec(fj).unwrap(),
        Precondition::Absent,
    )];
    let mut by_cluster: BTreeMap<&str, Vec<&Shard>> = BTreeMap::new();
    for s in &fj.shards {
        by_cluster.entry(&s.cluster).or_default().push(s);
    }
    for (cluster, shards) in by_cluster {
        let value = serde_json::json!({"format": 1, "uid": fj.uid(), "shards": shards});
        ops.push(Op::put(
            format!("shards/{key}/{cluster}"),
            serde_json::to_vec(&value).unwrap(),
            Precondition::Absent,
        ));
    }
    store.txn(ops).await.unwrap();
}

#[tokio::test]
async fn a_format_1_store_is_rewritten_one_record_per_job_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let mut a = job("a", "ua", 9, 18);
    assert!(observe(&mut a, "c1", "a", 0, running(4)));
    let b = job("b", "ub", 2, 2);
    write_v1(&store, &a).await;
    write_v1(&store, &b).await;
    // A shard record left by an earlier Job of the same name, and one of a Job that is gone.
    for (key, uid) in [
        ("shards/default/a/c9", "old"),
        ("shards/default/gone/c1", "ug"),
    ] {
        let value = serde_json::json!({"format": 1, "uid": uid, "shards": []});
        crate::store::put(
            &store,
            key,
            serde_json::to_vec(&value).unwrap(),
            Precondition::Any,
        )
        .await
        .unwrap();
    }
    assert_eq!(store.list("").await.unwrap().items.len(), 2 + 3 + 2 + 2);

    assert_eq!(
        migrate::open(&store).await.unwrap(),
        Opened::Migrated { jobs: 2 }
    );
    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, ["format", "jobs/default/a", "jobs/default/b"]);
    let read = |key: &'static str| {
        let store = &store;
        async move {
            decode_job(&store.get(key).await.unwrap().unwrap())
                .unwrap()
                .record
        }
    };
    assert_eq!(read("jobs/default/a").await, a);
    assert_eq!(read("jobs/default/b").await, b);
    assert_eq!(migrate::open(&store).await.unwrap(), Opened::Current);
}

#[tokio::test]
async fn a_migration_cut_short_carries_on_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let a = job("a", "ua", 3, 3);
    let b = job("b", "ub", 3, 3);
    write_v1(&store, &a).await;
    write_v1(&store, &b).await;
    // As if the process died after rewriting `a` and before deleting its shard records.
    let current = store.get("jobs/default/a").await.unwrap().unwrap();
    let stored = StoredJob::new(a.clone(), current.mod_revision);
    store
        .txn(vec![write_op("default/a", Some(&stored), &a)])
        .await
        .unwrap();
    assert_eq!(
        migrate::open(&store).await.unwrap(),
        Opened::Migrated { jobs: 1 }
    );
    assert!(store.list("shards/").await.unwrap().items.is_empty());
    for (key, want) in [("jobs/default/a", &a), ("jobs/default/b", &b)] {
        let kv = store.get(key).await.unwrap().unwrap();
        assert_eq!(&decode_job(&kv).unwrap().record, want);
    }
}

#[tokio::test]
async fn an_empty_store_is_marked_and_a_newer_one_is_refused_naming_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    assert_eq!(migrate::open(&store).await.unwrap(), Opened::New);
    let format = store.get(FORMAT_KEY).await.unwrap().unwrap();
    assert_eq!(&format.value[..], b"2");

    crate::store::put(&store, FORMAT_KEY, "3", Precondition::Any)
        .await
        .unwrap();
    let err = migrate::open(&store).await.unwrap_err();
    assert!(matches!(
        err,
        MigrateError::Record(RecordError::NewerFormat {
            found: 3,
            supported: 2
        })
    ));
    let message = err.to_string();
    assert!(
        message.contains("store format 3") && message.contains("store formats 1 to 2"),
        "{message}"
    );
}
