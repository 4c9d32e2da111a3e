//! The etcd store against real etcd members (started by the tests on loopback ports): the
//! store conformance suite on a single member and on a three-member cluster, and the
//! behaviour only a cluster has — a member killed under load, a watch whose member dies,
//! replicas racing on one key — plus TLS, authentication, leases and prefixes.

// This test's own helpers (tests/support/ belongs to the API tests).
#[path = "etcd/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fedjob_scheduler::store::etcd::pb::etcdserverpb::{
    AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest, auth_client::AuthClient,
};
use fedjob_scheduler::store::etcd::{
    Creation, EtcdCredentials, EtcdError, LeaseState, parse_endpoint,
};
use fedjob_scheduler::store::{
    EtcdOptions, EtcdStore, Precondition, Revision, Store, StoreError, WatchEvent, conformance, put,
};
use futures::StreamExt;
use support::{EtcdCluster, Settings, TlsFiles, free_ports};

/// The suite, run the same way against any cluster: everything on one store (prefixes apart),
/// then the closing test on a store of its own.
async fn conformance_suite(cluster: &EtcdCluster) {
    let store = cluster.store("/fedjob-conformance/").await;
    let endpoints = cluster.endpoints();
    conformance::run_all(&store, "suite/", |revision| {
        compact_through(cluster, &endpoints, &store, revision)
    })
    .await;
    let closing = cluster.store("/fedjob-conformance/").await;
    conformance::closed_store_refuses_calls(&closing, "closing/").await;
    store.close().await.unwrap();
}

/// The suite's compaction hook: makes the history up to and including `revision` unavailable
/// to watches on every member. etcd keeps the state *at* its compaction revision, so this
/// compacts at `revision + 1` (writing a filler key first if that revision does not exist yet),
/// then waits until each member at `endpoints` refuses a watch that needs `revision`.
async fn compact_through(
    cluster: &EtcdCluster,
    endpoints: &[tonic::transport::Uri],
    store: &EtcdStore,
    revision: Revision,
) {
    if store.revision() <= revision {
        put(store, "~filler", "x", Precondition::Any).await.unwrap();
    }
    store.compact(revision + 1).await.unwrap();
    for endpoint in endpoints {
        let probe = cluster
            .store_on(vec![endpoint.clone()], store.prefix())
            .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut events = probe.watch("~probe/", revision - 1);
            match tokio::time::timeout(Duration::from_millis(200), events.next()).await {
                Ok(Some(Err(StoreError::Compacted { .. }))) => break,
                Ok(other) => panic!("a probe watch on {endpoint} answered {other:?}"),
                Err(_) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "member {endpoint} did not apply the compaction at {}",
                    revision + 1
                ),
            }
        }
        probe.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_single_member() {
    let cluster = EtcdCluster::single().await;
    conformance_suite(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_three_member_cluster() {
    let cluster = EtcdCluster::three().await;
    conformance_suite(&cluster).await;
}

/// Whether a txn failed because its outcome is unknown (the member died with it in flight).
fn outcome_unknown(error: &StoreError) -> bool {
    match error {
        StoreError::Backend { source, .. } => matches!(
            source.downcast_ref::<EtcdError>(),
            Some(EtcdError::OutcomeUnknown { .. })
        ),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_when_the_member_in_use_is_killed() {
    const WRITERS: usize = 4;
    const BEFORE_KILL: usize = 60;
    const AFTER_KILL: usize = 40;
    let mut cluster = EtcdCluster::three().await;
    let store = Arc::new(cluster.store("/fedjob-kill/").await);
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let killing = Arc::new(AtomicBool::new(false));

    // Each writer creates its own keys, one at a time. A write may fail only between the kill
    // and the writer's first write that succeeds after it — the write that was in flight at
    // the member that died, and writes sent to a survivor while the cluster still waited for
    // the dead member (when it led) — and then only with an unknown outcome.
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, acknowledged, killing) =
                (store.clone(), acknowledged.clone(), killing.clone());
            tokio::spawn(async move {
                let mut written = BTreeMap::new();
                let mut unsure = Vec::new();
                let mut after_kill = 0;
                for i in 0.. {
                    if after_kill >= AFTER_KILL {
                        break;
                    }
                    let key = format!("w{writer}/{i:05}");
                    let sent_after_kill = killing.load(Ordering::SeqCst);
                    match put(&*store, &key, key.clone(), Precondition::Absent).await {
                        Ok(revision) => {
                            written.insert(key, revision);
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                            after_kill += usize::from(sent_after_kill);
                        }
                        Err(error) => {
                            assert!(
                                killing.load(Ordering::SeqCst) && after_kill == 0,
                                "writer {writer}: {key} failed outside the kill's window: {error:#?}"
                            );
                            assert!(
                                outcome_unknown(&error),
                                "writer {writer}: {key} failed with more than an unknown outcome: {error:#?}"
                            );
                            unsure.push(key);
                        }
                    }
                }
                (written, unsure)
            })
        })
        .collect();

    while acknowledged.load(Ordering::SeqCst) < BEFORE_KILL {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let victim = store.current_endpoint();
    killing.store(true, Ordering::SeqCst);
    cluster.member_at(&victim).kill();

    let mut all = BTreeMap::new();
    let mut unsure = Vec::new();
    for writer in writers {
        let (written, failed) = tokio::time::timeout(Duration::from_secs(90), writer)
            .await
            .expect("writers stalled after the kill")
            .unwrap();
        all.extend(written);
        unsure.extend(failed);
    }
    assert_ne!(
        store.current_endpoint(),
        victim,
        "calls moved off the dead member"
    );
    let listing = store.list("").await.unwrap();
    let listed: BTreeMap<String, Revision> = listing
        .items
        .into_iter()
        .map(|kv| (kv.key, kv.mod_revision))
        .collect();
    for (key, revision) in &all {
        assert_eq!(
            listed.get(key),
            Some(revision),
            "acknowledged write {key} is missing or changed"
        );
    }
    // A write with an unknown outcome was applied whole or not at all.
    for key in &unsure {
        if let Some(kv) = store.get(key).await.unwrap() {
            assert_eq!(kv.value, key.as_bytes());
        }
    }
    // The two survivors report a leader; the dead member does not answer.
    let statuses = store.member_statuses().await;
    for (endpoint, status) in &statuses {
        if *endpoint == victim {
            assert!(status.is_err(), "the killed member answered: {status:?}");
        } else {
            let status = status.as_ref().expect("a surviving member answers");
            assert!(status.is_healthy(), "{status:?}");
        }
    }
    store.close().await.unwrap();
}

/// Creates `key`, finding out by reading whether a write whose outcome was unknown (its
/// member died, or the leader did) went through before trying again.
async fn create(store: &EtcdStore, key: &str) -> Revision {
    loop {
        match put(store, key, "v", Precondition::Absent).await {
            Ok(revision) => return revision,
            Err(error) if outcome_unknown(&error) => {
                if let Some(kv) = store.get(key).await.unwrap() {
                    return kv.mod_revision;
                }
            }
            Err(error) => panic!("creating {key}: {error:#?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_on_another_member_without_gaps_when_its_member_dies() {
    const WRITES: usize = 150;
    let mut cluster = EtcdCluster::three().await;
    let endpoints = cluster.endpoints();
    // The watcher starts on member 0; the writer on member 1, so that killing the watcher's
    // member does not cost writes.
    let watcher = cluster.store_on(endpoints.clone(), "/fedjob-watch/").await;
    let writer = Arc::new(
        cluster
            .store_on(
                vec![
                    endpoints[1].clone(),
                    endpoints[2].clone(),
                    endpoints[0].clone(),
                ],
                "/fedjob-watch/",
            )
            .await,
    );
    let start = writer.revision();
    let mut events = watcher.watch("keys/", start);
    let writing = {
        let writer = writer.clone();
        tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..WRITES {
                let key = format!("keys/{i:04}");
                revisions.push((key.clone(), create(&writer, &key).await));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            revisions
        })
    };
    let mut seen = Vec::new();
    let mut victim = None;
    while seen.len() < WRITES {
        let event = conformance::next_event(&mut events).await;
        match event {
            WatchEvent::Put(kv) => seen.push((kv.key, kv.mod_revision)),
            other => panic!("unexpected event {other:?}"),
        }
        if seen.len() == WRITES / 3 {
            let endpoint = watcher.current_endpoint();
            cluster.member_at(&endpoint).kill();
            victim = Some(endpoint);
        }
    }
    let written = writing.await.unwrap();
    assert_eq!(
        seen, written,
        "the watch must deliver every write once, in order, across the member's death"
    );
    assert_ne!(Some(watcher.current_endpoint()), victim);
    // And it keeps going.
    let next = create(&writer, "keys/after").await;
    assert_eq!(conformance::next_event(&mut events).await.revision(), next);
    watcher.close().await.unwrap();
    writer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_racing_a_cas_on_one_key_have_exactly_one_winner() {
    let cluster = EtcdCluster::single().await;
    let a = cluster.store("/fedjob-race/").await;
    let b = cluster.store("/fedjob-race/").await;
    let key = "jobs/default/race";
    put(&a, key, "base", Precondition::Absent).await.unwrap();
    for round in 0..50 {
        let current = b.get(key).await.unwrap().unwrap();
        let precondition = Precondition::ModRevision(current.mod_revision);
        let (from_a, from_b) = tokio::join!(
            put(&a, key, format!("a{round}"), precondition),
            put(&b, key, format!("b{round}"), precondition),
        );
        let (winner, revision, loser) = match (from_a, from_b) {
            (Ok(revision), Err(loser)) => ("a", revision, loser),
            (Err(loser), Ok(revision)) => ("b", revision, loser),
            other => panic!("round {round}: exactly one CAS must win, got {other:?}"),
        };
        assert!(
            matches!(&loser, StoreError::Conflict { key: k } if k == key),
            "round {round}: the loser gets a conflict on the key, got {loser:?}"
        );
        let now = a.get(key).await.unwrap().unwrap();
        assert_eq!(
            (now.value, now.mod_revision),
            (Bytes::from(format!("{winner}{round}")), revision)
        );
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_stores_apart() {
    let cluster = EtcdCluster::single().await;
    let a = cluster.store("/fedjob-a").await;
    let b = cluster.store("/fedjob-b/").await;
    assert_eq!(
        a.prefix(),
        "/fedjob-a/",
        "a missing trailing slash is added"
    );
    put(&a, "k", "from a", Precondition::Absent).await.unwrap();
    put(&b, "k", "from b", Precondition::Absent).await.unwrap();
    let listed: Vec<(String, Bytes)> = a
        .list("")
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    assert_eq!(listed, vec![("k".to_owned(), Bytes::from("from a"))]);
    // Without a prefix the store sees etcd's raw keys.
    let raw = cluster.store("").await;
    let keys: Vec<String> = raw
        .list("/fedjob-")
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, vec!["/fedjob-a/k", "/fedjob-b/k"]);
    // A watch sees its own prefix only.
    let mut events = b.watch("", b.revision());
    put(&a, "other", "x", Precondition::Any).await.unwrap();
    let mine = put(&b, "mine", "x", Precondition::Any).await.unwrap();
    assert_eq!(conformance::next_event(&mut events).await.revision(), mine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_are_paged_at_one_revision() {
    let cluster = EtcdCluster::single().await;
    let mut options = cluster.options_for(cluster.endpoints(), "/fedjob-pages/");
    options.list_page_size = 7;
    let store = EtcdStore::connect(options).await.unwrap();
    let ops = (0..50)
        .map(|i| fedjob_scheduler::store::Op::put(format!("k/{i:03}"), "v", Precondition::Absent))
        .collect();
    let written = store.txn(ops).await.unwrap();
    // Writes while the listing is under way do not show up in it.
    let listing = {
        let listing = store.list("k/");
        let writes = async {
            for i in 0..20 {
                put(&store, format!("k/{i:03}"), "new", Precondition::Any)
                    .await
                    .unwrap();
            }
        };
        tokio::join!(listing, writes).0.unwrap()
    };
    assert_eq!(listing.items.len(), 50);
    let keys: Vec<String> = listing.items.iter().map(|kv| kv.key.clone()).collect();
    let expected: Vec<String> = (0..50).map(|i| format!("k/{i:03}")).collect();
    assert_eq!(keys, expected);
    for kv in &listing.items {
        assert!(kv.mod_revision <= listing.revision);
        if kv.value == "new" {
            assert!(kv.mod_revision > written);
        } else {
            assert_eq!(kv.mod_revision, written);
        }
    }
    // Everything the listing holds is exactly the state at its revision: a watch from there
    // sees the writes it does not hold.
    let rewritten = listing.items.iter().filter(|kv| kv.value == "new").count();
    let mut events = store.watch("k/", listing.revision);
    for _ in rewritten..20 {
        let event = conformance::next_event(&mut events).await;
        assert!(event.revision() > listing.revision);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_keys_and_keepers_keep_them_alive() {
    let cluster = EtcdCluster::single().await;
    let store = cluster.store("/fedjob-lease/").await;
    let mut events = store.watch("live/", store.revision());

    let granted_at = tokio::time::Instant::now();
    let kept = store.grant_lease(Duration::from_secs(2)).await.unwrap();
    assert!(kept.ttl >= Duration::from_secs(2));
    let keeper = store.keep_alive(kept, granted_at);
    store
        .put_with_lease("live/kept", "r1", Precondition::Absent, kept.id)
        .await
        .unwrap();
    let dropped = store.grant_lease(Duration::from_secs(2)).await.unwrap();
    store
        .put_with_lease("live/dropped", "r2", Precondition::Absent, dropped.id)
        .await
        .unwrap();
    for _ in 0..2 {
        assert!(matches!(
            conformance::next_event(&mut events).await,
            WatchEvent::Put(_)
        ));
    }
    // The lease nobody renews ends, and etcd deletes its key; the kept one stays.
    match conformance::next_event(&mut events).await {
        WatchEvent::Delete { key, .. } => assert_eq!(key, "live/dropped"),
        other => panic!("expected the dropped lease's key to go, got {other:?}"),
    }
    assert!(granted_at.elapsed() >= Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(store.get("live/kept").await.unwrap().is_some());
    assert!(matches!(keeper.state(), LeaseState::Alive { .. }));

    // Election: the first to create the key leads, the others learn who does.
    match store
        .create_if_absent("live/leader", "replica-1", kept.id)
        .await
        .unwrap()
    {
        Creation::Created(revision) => assert!(revision > 0),
        other => panic!("the first creation must win, got {other:?}"),
    }
    match store
        .create_if_absent("live/leader", "replica-2", 0)
        .await
        .unwrap()
    {
        Creation::Exists(kv) => assert_eq!(kv.value, "replica-1"),
        other => panic!("the second creation must see the first, got {other:?}"),
    }
    let _ = conformance::next_event(&mut events).await; // the leader key's put

    // Revoking deletes the lease's keys at once.
    keeper.revoke().await.unwrap();
    let mut gone = Vec::new();
    for _ in 0..2 {
        match conformance::next_event(&mut events).await {
            WatchEvent::Delete { key, .. } => gone.push(key),
            other => panic!("expected deletes after the revoke, got {other:?}"),
        }
    }
    gone.sort();
    assert_eq!(gone, vec!["live/kept", "live/leader"]);
    store.revoke_lease(kept.id).await.unwrap(); // already gone: not an error

    // A keeper of a lease etcd no longer knows reports it expired.
    let keeper = store.keep_alive(kept, tokio::time::Instant::now());
    tokio::time::timeout(Duration::from_secs(10), keeper.expired())
        .await
        .expect("the keeper of a revoked lease must say it expired");
    assert_eq!(keeper.state(), LeaseState::Expired);
    store.close().await.unwrap();
}

/// Turns authentication on, with `root` / `password`.
async fn enable_auth(cluster: &EtcdCluster, password: &str) {
    let channel = tonic::transport::Endpoint::from(cluster.endpoints()[0].clone())
        .connect()
        .await
        .unwrap();
    let mut auth = AuthClient::new(channel);
    auth.user_add(AuthUserAddRequest {
        name: "root".into(),
        password: password.into(),
    })
    .await
    .unwrap();
    auth.user_grant_role(AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    })
    .await
    .unwrap();
    auth.auth_enable(AuthEnableRequest {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_with_user_and_password() {
    // Tokens live 2 s, so that the store must authenticate again during the test.
    let mut cluster = EtcdCluster::start(Settings {
        members: 1,
        extra_args: vec!["--auth-token-ttl".into(), "2".into()],
        ..Settings::default()
    })
    .await;
    enable_auth(&cluster, "s3cret").await;

    let anonymous = EtcdStore::connect(cluster.options_for(cluster.endpoints(), "/fedjob-auth/"))
        .await
        .err()
        .expect("etcd with auth on must refuse a store without credentials");
    assert!(
        anonymous.to_string().contains("etcd") || format!("{anonymous:?}").contains("Refused"),
        "{anonymous:?}"
    );
    let mut wrong = cluster.options_for(cluster.endpoints(), "/fedjob-auth/");
    wrong.credentials = Some(EtcdCredentials {
        username: "root".into(),
        password: "guess".into(),
    });
    let refused = EtcdStore::connect(wrong)
        .await
        .err()
        .expect("a wrong password is refused");
    assert!(
        format!("{refused:?}").contains("authentication failed"),
        "{refused:?}"
    );

    cluster.settings.credentials = Some(EtcdCredentials {
        username: "root".into(),
        password: "s3cret".into(),
    });
    let store = cluster.store("/fedjob-auth/").await;
    let mut events = store.watch("", store.revision());
    let first = put(&store, "a", "1", Precondition::Absent).await.unwrap();
    assert_eq!(conformance::next_event(&mut events).await.revision(), first);
    // Past the token's life: the store notices the refusal, authenticates again, goes on.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let second = put(&store, "b", "2", Precondition::Absent).await.unwrap();
    assert_eq!(store.list("").await.unwrap().items.len(), 2);
    assert_eq!(
        conformance::next_event(&mut events).await.revision(),
        second
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(certs.path());
    let cluster = EtcdCluster::start(Settings {
        members: 1,
        tls: Some(tls.clone()),
        ..Settings::default()
    })
    .await;
    let store = cluster.store("/fedjob-tls/").await;
    assert!(store.current_endpoint().starts_with("https://"));
    let mut events = store.watch("", store.revision());
    let written = put(&store, "k", "v", Precondition::Absent).await.unwrap();
    assert_eq!(
        conformance::next_event(&mut events).await.revision(),
        written
    );
    assert_eq!(store.get("k").await.unwrap().unwrap().value, "v");

    // etcd requires a client certificate.
    let mut anonymous = cluster.options_for(cluster.endpoints(), "/fedjob-tls/");
    anonymous.tls.as_mut().unwrap().client = None;
    anonymous.retry_timeout = Duration::from_secs(2);
    assert!(EtcdStore::connect(anonymous).await.is_err());
    // https needs the CA; TLS options with an http endpoint are a mistake.
    let mut no_ca = cluster.options_for(cluster.endpoints(), "/fedjob-tls/");
    no_ca.tls = None;
    let error = EtcdStore::connect(no_ca).await.err().unwrap();
    assert!(format!("{error:?}").contains("--etcd-ca"), "{error:?}");
    let mut plain = cluster.options_for(
        vec![parse_endpoint("http://127.0.0.1:2379").unwrap()],
        "/fedjob-tls/",
    );
    plain.tls = Some(tls.client());
    let error = EtcdStore::connect(plain).await.err().unwrap();
    assert!(format!("{error:?}").contains("https://"), "{error:?}");
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_are_skipped_and_all_unreachable_fails_in_time() {
    let dead: Vec<_> = free_ports(2)
        .into_iter()
        .map(|p| parse_endpoint(&format!("127.0.0.1:{p}")).unwrap())
        .collect();
    let mut options = EtcdOptions::new(dead.clone());
    options.retry_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let error = EtcdStore::connect(options)
        .await
        .err()
        .expect("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = format!("{error:?}");
    assert!(
        text.contains("Unavailable")
            && text.contains(&dead[0].to_string().trim_end_matches('/').to_owned()),
        "{text}"
    );

    let cluster = EtcdCluster::single().await;
    let mut endpoints = dead.clone();
    endpoints.extend(cluster.endpoints());
    let store = cluster.store_on(endpoints, "/fedjob-failover/").await;
    assert_eq!(
        parse_endpoint(&store.current_endpoint()).unwrap(),
        cluster.endpoints()[0]
    );
    put(&store, "k", "v", Precondition::Any).await.unwrap();
    let status = store.status().await.unwrap();
    assert!(
        status.is_healthy() && status.version.starts_with('3'),
        "{status:?}"
    );
    store.close().await.unwrap();
}

/// A scheduler started with `--store etcd` keeps its Jobs in etcd under the prefix, and a new
/// scheduler on the same etcd finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_keeps_its_state_in_etcd() {
    use fedjob_proto::v1::{self, federation_client::FederationClient};
    use fedjob_scheduler::config::Config;
    use fedjob_scheduler::server;

    let cluster = EtcdCluster::three().await;
    let endpoints: Vec<String> = cluster.endpoints().iter().map(|e| e.to_string()).collect();
    let endpoints = endpoints.join(",");
    let config = || {
        Config::try_parse_from([
            "fedjob-scheduler",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "etcd",
            "--etcd-endpoints",
            &endpoints,
            "--etcd-prefix",
            "/fedjob-server",
        ])
        .expect("valid flags")
    };
    let manifest = r#"{"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "in-etcd"},
        "spec": {"parallelism": 2, "completions": 4, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "w", "image": "busybox", "command": ["true"]}]}}}}"#;

    let first = server::start(config()).await.expect("starts on etcd");
    let mut client = FederationClient::connect(format!("http://{}", first.addr))
        .await
        .unwrap();
    let created = client
        .create_job(v1::CreateJobRequest {
            manifest: manifest.to_owned(),
            ..Default::default()
        })
        .await
        .expect("create through a scheduler on etcd")
        .into_inner();
    first.shutdown().await.unwrap();

    let raw = cluster.store("/fedjob-server/").await;
    assert!(
        !raw.list("").await.unwrap().items.is_empty(),
        "the scheduler wrote under --etcd-prefix"
    );

    let second = server::start(config()).await.expect("starts again on etcd");
    let mut client = FederationClient::connect(format!("http://{}", second.addr))
        .await
        .unwrap();
    let found = client
        .get_job(v1::GetJobRequest {
            namespace: String::new(),
            name: "in-etcd".into(),
        })
        .await
        .expect("the Job is still there")
        .into_inner();
    assert_eq!(found, created);
    second.shutdown().await.unwrap();
}

/// A watch that must resume on another member after history it still needs was compacted
/// says `Compacted` (naming the last revision it delivered) instead of skipping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resuming_past_a_compaction_says_compacted() {
    let mut cluster = EtcdCluster::three().await;
    let endpoints = cluster.endpoints();
    let watcher = cluster.store_on(endpoints.clone(), "/fedjob-resume/").await;
    let writer = cluster
        .store_on(
            vec![endpoints[1].clone(), endpoints[2].clone()],
            "/fedjob-resume/",
        )
        .await;
    let mut events = watcher.watch("", watcher.revision());
    let mut delivered = 0;
    for i in 0..5 {
        let written = create(&writer, &format!("before/{i}")).await;
        delivered = conformance::next_event(&mut events).await.revision();
        assert_eq!(delivered, written);
    }
    // The watch is not read while its member dies and the history after `delivered` goes.
    let endpoint = watcher.current_endpoint();
    cluster.member_at(&endpoint).kill();
    for i in 0..5 {
        create(&writer, &format!("after/{i}")).await;
    }
    let last = writer.revision();
    compact_through(&cluster, &endpoints[1..], &writer, last).await;
    match conformance::next_item(&mut events).await {
        Some(Err(StoreError::Compacted { requested, oldest })) => {
            assert_eq!(requested, delivered);
            assert_eq!(oldest, last);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(conformance::next_item(&mut events).await.is_none());
    watcher.close().await.unwrap();
    writer.close().await.unwrap();
}
