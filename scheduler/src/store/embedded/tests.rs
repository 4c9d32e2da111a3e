use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::poll;
use redb::StorageBackend;
use redb::backends::FileBackend;

use super::*;

mod against_model;
use crate::store::{Precondition, conformance, delete, put};

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open the store")
}

/// A store whose watch history holds only a few events, so tests can outrun it.
fn open_small_ring(dir: &Path) -> EmbeddedStore {
    let options = EmbeddedOptions {
        watch_history_events: 16,
        ..EmbeddedOptions::default()
    };
    EmbeddedStore::open(dir, options).expect("open the store")
}

/// Pushes at least the ring's capacity of changes in one txn, so that everything before
/// it is gone from the watch history.
async fn overrun_ring(store: &EmbeddedStore, capacity: usize) {
    let ops = (0..capacity + 4)
        .map(|i| Op::put(format!("~filler/{i}"), Bytes::new(), Precondition::Any))
        .collect();
    store.txn(ops).await.unwrap();
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            conformance::$name(&store, "suite/").await;
            store.close().await.unwrap();
        }
    )*};
}

conformance_tests!(
    get_put_roundtrip,
    list_by_prefix_in_key_order,
    preconditions_are_enforced,
    multi_op_txn_is_atomic,
    delete_semantics,
    invalid_txns_are_refused,
    concurrent_txns_get_distinct_revisions,
    concurrent_cas_has_one_winner,
    watch_delivers_changes_in_order,
    watch_replays_from_past_revision,
    list_then_watch_under_concurrent_writes,
    closed_store_refuses_calls,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_after_compaction_says_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small_ring(dir.path());
    conformance::watch_after_compaction_says_compacted(&store, "suite/", |_| {
        overrun_ring(&store, 16)
    })
    .await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_runs_on_one_store() {
    // The way the etcd backend will run it: everything on one store, prefixes apart.
    let dir = tempfile::tempdir().unwrap();
    // A ring big enough for the other functions, small enough for `compact` to outrun.
    let options = EmbeddedOptions {
        watch_history_events: 4096,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    conformance::run_all(&store, "all/", |_| overrun_ring(&store, 4096)).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn new_store_starts_at_revision_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.revision(), 1);
    assert_eq!(store.list("").await.unwrap().revision, 1);
    assert_eq!(put(&store, "k", "v", Precondition::Any).await.unwrap(), 2);
    // Nothing happened before revision 1, so a watch from 0 on a new store is complete.
    let mut events = store.watch("", 0);
    assert_eq!(conformance::next_event(&mut events).await.revision(), 2);
    store.close().await.unwrap();
    assert_eq!(dir.path().join(DATA_FILE), store.path());
}

#[tokio::test]
async fn reopen_keeps_data_and_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    put(&store, "jobs/a", "A", Precondition::Absent)
        .await
        .unwrap();
    let rb = put(&store, "jobs/b", "B", Precondition::Absent)
        .await
        .unwrap();
    store
        .txn(vec![
            Op::put("jobs/b", "B2", Precondition::ModRevision(rb)),
            Op::put("clusters/c1", "C1", Precondition::Absent),
        ])
        .await
        .unwrap();
    delete(&store, "jobs/a", Precondition::Any).await.unwrap();
    let revision = store.revision();
    let listing = store.list("").await.unwrap();
    store.close().await.unwrap();

    let store = open(dir.path());
    assert_eq!(
        store.revision(),
        revision,
        "the revision survives a restart"
    );
    assert_eq!(
        store.list("").await.unwrap(),
        listing,
        "the data survives a restart"
    );
    // History before the restart is gone: a watch from it must say so, not skip.
    let mut old = store.watch("", revision - 1);
    assert!(matches!(
        conformance::next_item(&mut old).await,
        Some(Err(StoreError::Compacted { requested, oldest })) if requested == revision - 1 && oldest == revision
    ));
    let mut events = store.watch("", revision);
    let next = put(&store, "jobs/d", "D", Precondition::Any).await.unwrap();
    assert_eq!(next, revision + 1, "revisions continue after a restart");
    assert_eq!(conformance::next_event(&mut events).await.revision(), next);
    store.close().await.unwrap();
}

#[tokio::test]
async fn newer_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    put(&store, "k", "v", Precondition::Any).await.unwrap();
    store.close().await.unwrap();
    // What a future release would leave behind.
    let path = dir.path().join(DATA_FILE);
    {
        let db = Database::create(&path).unwrap();
        let wtx = db.begin_write().unwrap();
        wtx.open_table(META)
            .unwrap()
            .insert(META_FORMAT_VERSION, FORMAT_VERSION + 1)
            .unwrap();
        wtx.commit().unwrap();
    }
    let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
        .err()
        .expect("a newer format must be refused");
    match &error {
        StoreError::UnsupportedFormat {
            path: p,
            found,
            supported,
        } => {
            assert_eq!(
                (p, *found, *supported),
                (&path, FORMAT_VERSION + 1, FORMAT_VERSION)
            );
        }
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("format version 2") && message.contains("only version 1"),
        "{message}"
    );
    // The refusal wrote nothing: the file still has the newer version.
    let db = Database::create(&path).unwrap();
    let rtx = db.begin_read().unwrap();
    let meta = rtx.open_table(META).unwrap();
    assert_eq!(
        meta.get(META_FORMAT_VERSION).unwrap().unwrap().value(),
        FORMAT_VERSION + 1
    );
}

#[test]
fn file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATA_FILE);
    std::fs::write(&path, "apiVersion: batch/v1\nkind: Job\n".repeat(200)).unwrap();
    let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).err();
    assert!(
        matches!(&error, Some(StoreError::Corrupt { detail, .. }) if detail.contains("not a redb database")),
        "{error:?}"
    );
    // A few bytes are not a database either (and not an empty file to initialise).
    std::fs::write(&path, "red").unwrap();
    let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).err();
    assert!(
        matches!(error, Some(StoreError::Corrupt { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn truncated_data_file_is_refused_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..50 {
        put(&store, format!("k{i}"), vec![7u8; 4096], Precondition::Any)
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    let path = dir.path().join(DATA_FILE);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(4096).unwrap();
    drop(file);
    let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).err();
    assert!(
        matches!(error, Some(StoreError::Corrupt { .. })),
        "{error:?}"
    );
}

#[test]
fn redb_database_of_something_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATA_FILE);
    {
        let db = Database::create(&path).unwrap();
        let wtx = db.begin_write().unwrap();
        let other: TableDefinition<u64, u64> = TableDefinition::new("other");
        wtx.open_table(other).unwrap().insert(1, 2).unwrap();
        wtx.commit().unwrap();
    }
    let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).err();
    assert!(
        matches!(error, Some(StoreError::Corrupt { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn second_open_is_refused_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let error = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).err();
    assert!(matches!(error, Some(StoreError::InUse { .. })), "{error:?}");
    store.close().await.unwrap();
    // Closing really released the file.
    open(dir.path()).close().await.unwrap();
}

/// Records what the writer reports, as the metrics module would.
#[derive(Default)]
struct Recorder(Mutex<Vec<(Duration, usize)>>);

impl CommitObserver for Recorder {
    fn commit(&self, latency: Duration, txns: usize) {
        self.0.lock().push((latency, txns));
    }
}

#[tokio::test]
#[expect(
    clippy::await_holding_lock,
    reason = "holding the writer back while txns queue is the point; the awaits under the lock are single polls"
)]
async fn batch_checks_each_txn_against_the_ones_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let options = EmbeddedOptions {
        observer: Some(recorder.clone()),
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    let base = store.revision();
    let before = store.stats();

    // Hold the writer (it takes the database before draining the queue), queue four txns
    // in a known order, then let it go: they form one batch.
    let hold = store.shared.db.write();
    let mut t1 = store.txn(vec![Op::put("a", "1", Precondition::Absent)]);
    assert!(poll!(&mut t1).is_pending());
    let mut t2 = store.txn(vec![Op::put("a", "2", Precondition::Absent)]);
    assert!(poll!(&mut t2).is_pending());
    let mut t3 = store.txn(vec![
        Op::put("b", "3", Precondition::Absent),
        Op::delete("never", Precondition::Any),
    ]);
    assert!(poll!(&mut t3).is_pending());
    let mut t4 = store.txn(vec![Op::put("a", "4", Precondition::ModRevision(base + 1))]);
    assert!(poll!(&mut t4).is_pending());
    let mut t5 = store.txn(vec![Op::delete("never", Precondition::Any)]);
    assert!(poll!(&mut t5).is_pending());
    drop(hold);
    let (r1, r2, r3, r4, r5) = tokio::join!(t1, t2, t3, t4, t5);

    assert_eq!(r1.unwrap(), base + 1);
    assert!(
        matches!(&r2, Err(StoreError::Conflict { key }) if key == "a"),
        "t2 must see t1's write: {r2:?}"
    );
    assert_eq!(r3.unwrap(), base + 2, "a conflict does not take a revision");
    assert_eq!(r4.unwrap(), base + 3, "t4 must see t1's revision");
    assert_eq!(
        r5.unwrap(),
        base + 3,
        "a no-op answers the current revision"
    );
    let stats = store.stats();
    assert_eq!(
        stats.commits - before.commits,
        1,
        "one fsync for the whole batch"
    );
    assert_eq!(stats.txns - before.txns, 5);
    assert_eq!(stats.conflicts - before.conflicts, 1);
    let observed = recorder.0.lock().clone();
    assert_eq!(observed.last().map(|(_, txns)| *txns), Some(5));
    let a = store.get("a").await.unwrap().unwrap();
    assert_eq!(
        (a.value, a.create_revision, a.mod_revision),
        (Bytes::from("4"), base + 1, base + 3)
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_txns_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let writes = (0..200).map(|i| put(&store, format!("k{i}"), "v", Precondition::Any));
    for result in futures::future::join_all(writes).await {
        result.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.txns, 200);
    assert!(
        stats.commits < 200,
        "concurrent txns must share commits: {stats:?}"
    );
    store.close().await.unwrap();
}

#[tokio::test]
#[expect(
    clippy::await_holding_lock,
    reason = "holding the writer back while txns queue is the point; the awaits under the lock are single polls"
)]
async fn batch_is_bounded_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        max_batch_bytes: 10_000,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    let hold = store.shared.db.write();
    let mut pending = Vec::new();
    for i in 0..6 {
        let mut txn = Box::pin(put(
            &store,
            format!("k{i}"),
            vec![0u8; 4000],
            Precondition::Any,
        ));
        assert!(poll!(&mut txn).is_pending());
        pending.push(txn);
    }
    drop(hold);
    for result in futures::future::join_all(pending).await {
        result.unwrap();
    }
    // 4000-byte txns, 10,000 bytes per batch: two per commit.
    assert_eq!(store.stats().commits, 3);
    store.close().await.unwrap();
}

/// A file backend whose fsync can be made to fail.
#[derive(Debug)]
struct FlakySync {
    file: FileBackend,
    fail: Arc<AtomicBool>,
}

impl StorageBackend for FlakySync {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.file.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.file.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.file.close()
    }
}

#[tokio::test]
#[expect(
    clippy::await_holding_lock,
    reason = "holding the writer back while txns queue is the point; the awaits under the lock are single polls"
)]
async fn failed_commit_fails_the_whole_batch_and_shows_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATA_FILE);
    let fail = Arc::new(AtomicBool::new(false));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    let backend = FlakySync {
        file: FileBackend::new(file).unwrap(),
        fail: fail.clone(),
    };
    let db = guard_open(&path, || redb::Builder::new().create_with_backend(backend)).unwrap();
    let store = EmbeddedStore::start(path, db, EmbeddedOptions::default()).unwrap();
    let r1 = put(&store, "a", "1", Precondition::Any).await.unwrap();
    let mut events = store.watch("", r1);

    let hold = store.shared.db.write();
    let mut t1 = Box::pin(put(&store, "b", "2", Precondition::Absent));
    assert!(poll!(&mut t1).is_pending());
    let mut t2 = Box::pin(put(&store, "a", "3", Precondition::ModRevision(r1)));
    assert!(poll!(&mut t2).is_pending());
    fail.store(true, Ordering::SeqCst);
    drop(hold);
    let (r2, r3) = tokio::join!(t1, t2);
    assert!(matches!(r2, Err(StoreError::Backend { .. })), "{r2:?}");
    assert!(matches!(r3, Err(StoreError::Backend { .. })), "{r3:?}");

    assert_eq!(store.revision(), r1, "a failed commit takes no revision");
    assert_eq!(
        store.get("b").await.unwrap(),
        None,
        "a failed commit shows nothing"
    );
    assert_eq!(store.get("a").await.unwrap().unwrap().mod_revision, r1);
    assert_eq!(store.stats().failed_batches, 1);
    assert!(
        futures::FutureExt::now_or_never(events.next()).is_none(),
        "a failed commit must not reach watchers"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn watcher_that_falls_behind_gets_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small_ring(dir.path());
    let mut events = store.watch("", store.revision());
    let r1 = put(&store, "k", "0", Precondition::Any).await.unwrap();
    assert_eq!(conformance::next_event(&mut events).await.revision(), r1);
    // Twenty single-key commits outrun a ring of sixteen while this watcher sleeps.
    for i in 1..=20 {
        put(&store, "k", format!("{i}"), Precondition::Any)
            .await
            .unwrap();
    }
    match conformance::next_item(&mut events).await {
        Some(Err(StoreError::Compacted { requested, oldest })) => {
            assert_eq!(requested, r1);
            assert_eq!(oldest, r1 + 4, "sixteen of twenty changes remain");
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(conformance::next_item(&mut events).await.is_none());
    // The ring's bound is what is kept.
    assert_eq!(store.shared.ring.lock().events.len(), 16);
    store.close().await.unwrap();
}

#[tokio::test]
async fn watch_history_is_bounded_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        watch_history_bytes: 100_000,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    for i in 0..40 {
        put(
            &store,
            format!("k{i}"),
            vec![1u8; 10_000],
            Precondition::Any,
        )
        .await
        .unwrap();
    }
    let (bytes, events) = {
        let ring = store.shared.ring.lock();
        (ring.bytes, ring.events.len())
    };
    assert!(
        bytes <= 100_000 && events < 10,
        "{events} events, {bytes} bytes"
    );
    store.close().await.unwrap();
}

/// Where the crash test's child process keeps its store.
const CRASH_CHILD_DIR: &str = "FEDJOB_STORE_CRASH_CHILD_DIR";

/// Not a test of its own: the child process of `kill_9_loses_nothing_acknowledged`, which
/// runs this test binary again with only this function selected and the variable set.
#[test]
#[ignore = "child process of kill_9_loses_nothing_acknowledged"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let store = Arc::new(open(Path::new(&dir)));
        let writers = (0..8).map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("crash/{writer}/{i}");
                    let revision = put(&*store, &key, key.clone(), Precondition::Absent)
                        .await
                        .unwrap();
                    // Printed only once acknowledged; the parent checks exactly these.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {revision}").unwrap();
                    out.flush().unwrap();
                }
            })
        });
        futures::future::join_all(writers).await;
    });
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store::embedded::tests::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        // The child's panics, if any, show in this test's output.
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Read on a thread so that a child that hangs fails the test instead of hanging it.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acknowledged = Vec::new();
    let mut killed = false;
    loop {
        let line = match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            // The child's stdout closed: it is gone.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                child.kill().unwrap();
                panic!("the child acknowledged nothing for 60 s");
            }
        };
        let Some(ack) = line.strip_prefix("ACK ") else {
            continue;
        };
        let (key, revision) = ack.split_once(' ').unwrap();
        acknowledged.push((key.to_owned(), revision.parse::<Revision>().unwrap()));
        if acknowledged.len() == 400 && !killed {
            // SIGKILL, in the middle of the writers' stream of commits.
            child.kill().unwrap();
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child stopped by itself: {status:?}");
    assert!(acknowledged.len() >= 400);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = open(dir.path());
        for (key, revision) in &acknowledged {
            let kv = store.get(key).await.unwrap();
            let kv = kv.unwrap_or_else(|| panic!("acknowledged {key} is lost"));
            assert_eq!(
                (kv.value.as_ref(), kv.mod_revision),
                (key.as_bytes(), *revision)
            );
        }
        let newest = acknowledged.iter().map(|(_, r)| *r).max().unwrap();
        assert!(store.revision() >= newest);
        // The repaired file takes new writes after the last revision.
        let next = put(&store, "after-crash", "v", Precondition::Absent)
            .await
            .unwrap();
        assert!(next > newest);
        store.close().await.unwrap();
    });
}
