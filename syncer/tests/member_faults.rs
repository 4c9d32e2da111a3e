//! The syncer library against a member cluster that fails as real API servers fail
//! (`fedjob-kubesim`'s faults): unreachable for a while, `429` with `Retry-After`, `500` and
//! `503`, slow answers, its watch expired with `410`, a continued list expired, a certificate
//! it does not trust, and RBAC denying a verb. For each: no shard is lost or duplicated, the
//! totals are exact, `/readyz` says why while it lasts, and the syncer is ready again after.
//! Every wait is for an event (a report, a probe answer, a fault's hit), never a fixed sleep.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use fedjob_proto::v1::ShardPhase;
use fedjob_syncer::Syncer;
use fedjob_tests::kubesim::SimOptions;
use fedjob_tests::kubesim::faults::{Fault, FaultSpec, ThrottleBody};
use fedjob_tests::kubesim::tls::Identity;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams, PostParams};
use support::{MockScheduler, Shard, Sim, WAIT, http_get, init_logging, phase};

/// A member cluster, a mock scheduler, and a syncer serving its probes.
struct Rig {
    sim: Sim,
    mock: MockScheduler,
    syncer: Syncer,
    probes: SocketAddr,
}

impl Rig {
    /// Starts everything and waits until the syncer is ready.
    async fn start(options: SimOptions, extra: &[&str]) -> Rig {
        init_logging();
        let sim = Sim::start_with(SimOptions {
            name: "c1".to_owned(),
            pod_duration: Duration::from_secs(3600),
            ..options
        })
        .await;
        let mock = MockScheduler::start().await;
        let mut syncer = sim.syncer(&mock.url, extra).await;
        let probes = syncer
            .serve_probes("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        mock.wait_session().await;
        let rig = Rig {
            sim,
            mock,
            syncer,
            probes,
        };
        rig.ready().await;
        rig
    }

    /// Waits until `/readyz` answers 503 with a reason containing every one of `words`.
    async fn not_ready(&self, words: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (code, body) = http_get(self.probes, "/readyz").await;
            if code == 503 && words.iter().all(|w| body.contains(w)) {
                return body;
            }
            let last = format!("{code} {body}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for /readyz to say {words:?}; last: {last}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `/readyz` answers 200.
    async fn ready(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (code, body) = http_get(self.probes, "/readyz").await;
            if code == 200 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for /readyz 200; last: {code} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `shard` reports Complete with exactly `completions` succeeded and none
    /// active, and returns its local uid.
    async fn complete(&self, shard: &Shard) -> String {
        let completions = shard.completions.expect("a shard with completions");
        let s = self
            .mock
            .wait_report(&shard.namespace, &shard.name, "Complete", |s| {
                phase(s) == ShardPhase::Complete
            })
            .await;
        assert_eq!(
            (s.succeeded, s.active, s.failed),
            (completions, 0, 0),
            "{} ran exactly its completions",
            shard.name
        );
        s.local_uid
    }

    /// The names of the fedjob Jobs in the cluster, sorted: each shard exactly once.
    async fn shard_names(&self) -> Vec<String> {
        let list = self
            .sim
            .jobs("default")
            .list(&ListParams::default().labels("fedjob.io/managed-by=fedjob"))
            .await
            .expect("list Jobs");
        let mut names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect();
        names.sort();
        names
    }

    async fn stop(self) {
        self.syncer.stop().await;
        self.sim.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_unreachable_for_a_while() {
    let rig = Rig::start(SimOptions::default(), &[]).await;
    let alpha = Shard::new("alpha").counts(2, Some(4)).pods_run("1s");
    rig.mock.assign(alpha.run(1)).await;
    rig.mock
        .wait_report("default", "alpha", "running", |s| s.active == 2)
        .await;

    let faults = rig.sim.cluster.faults();
    let outage = faults.inject(FaultSpec::new(Fault::Unreachable));
    rig.sim.cluster.wait_reachable(false).await;
    // Work arrives while the cluster cannot be reached; alpha's pods run on meanwhile.
    let beta = Shard::new("beta").counts(1, Some(2)).pods_run("200ms");
    rig.mock.assign(beta.run(1)).await;
    rig.not_ready(&["the member cluster's API server cannot be reached"])
        .await;

    faults.remove(outage);
    rig.sim.cluster.wait_reachable(true).await;
    let alpha_uid = rig.complete(&alpha).await;
    rig.complete(&beta).await;
    rig.ready().await;
    assert_eq!(rig.shard_names().await, ["alpha", "beta"]);
    let alpha_now = rig.sim.job("default", "alpha").await.unwrap();
    assert_eq!(
        alpha_now.metadata.uid.as_deref(),
        Some(alpha_uid.as_str()),
        "alpha was never re-created"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_with_retry_after() {
    let rig = Rig::start(SimOptions::default(), &[]).await;
    let faults = rig.sim.cluster.faults();
    let retry_after = Duration::from_secs(2);
    let throttle = faults.inject(
        FaultSpec::new(Fault::TooManyRequests {
            retry_after: 2,
            body: ThrottleBody::PriorityAndFairness,
        })
        .verbs(&["create", "patch"])
        .resource("jobs")
        .count(2),
    );
    let shard = Shard::new("throttled").counts(2, Some(2)).pods_run("200ms");
    rig.mock.assign(shard.run(1)).await;
    rig.not_ready(&[
        "the member cluster's API server answers 429 Too Many Requests",
        "jobs (Retry-After: 2s)",
        "Too many requests, please try again later.",
    ])
    .await;
    rig.complete(&shard).await;
    rig.ready().await;
    let hits = faults.hits(throttle);
    assert_eq!(hits.len(), 2, "{hits:?}");
    let waited = hits[1].at - hits[0].at;
    assert!(
        waited >= retry_after - Duration::from_millis(50),
        "asked again after {waited:?}, before the {retry_after:?} the server asked for"
    );

    // The watch cache's 429 (a Status body) is waited out the same way.
    let cache = faults.inject(
        FaultSpec::new(Fault::TooManyRequests {
            retry_after: 1,
            body: ThrottleBody::Status,
        })
        .verbs(&["create", "patch"])
        .count(1),
    );
    let other = Shard::new("other").counts(1, Some(1)).pods_run("200ms");
    rig.mock.assign(other.run(1)).await;
    rig.complete(&other).await;
    assert_eq!(faults.hits(cache).len(), 1);
    assert_eq!(rig.shard_names().await, ["other", "throttled"]);
    rig.ready().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_500_and_503() {
    let rig = Rig::start(SimOptions::default(), &[]).await;
    let faults = rig.sim.cluster.faults();
    // Each fault lasts until /readyz has been seen naming it: kube's client retries a 503
    // within milliseconds, so a one-shot 503 is gone before a poll can see it. The 500 goes in
    // before the 503 comes out (the first fault injected answers), so no create slips between.
    let unavailable = faults.inject(
        FaultSpec::new(Fault::service_unavailable())
            .verbs(&["create"])
            .resource("jobs"),
    );
    let shard = Shard::new("erratic").counts(2, Some(4)).pods_run("200ms");
    rig.mock.assign(shard.run(1)).await;
    rig.not_ready(&[
        "the member cluster's API server answers 503 Service Unavailable to create jobs",
        "the server is currently unable to handle the request",
    ])
    .await;
    let internal = faults.inject(
        FaultSpec::new(Fault::internal_error())
            .verbs(&["create", "patch"])
            .resource("jobs"),
    );
    faults.remove(unavailable);
    rig.not_ready(&[
        "the member cluster's API server answers 500 Internal Server Error",
        "Internal error occurred: etcdserver: request timed out",
    ])
    .await;
    faults.remove(internal);
    rig.complete(&shard).await;
    rig.ready().await;
    for id in [unavailable, internal] {
        let hits = faults.hits(id);
        assert!(!hits.is_empty(), "{id:?} answered no request");
        assert!(hits.iter().all(|h| h.request == "create jobs"), "{hits:?}");
    }
    assert_eq!(rig.shard_names().await, ["erratic"]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_denies_a_verb_then_allows_it() {
    let rig = Rig::start(SimOptions::default(), &[]).await;
    let faults = rig.sim.cluster.faults();
    let denied = faults.inject(
        FaultSpec::new(Fault::forbidden())
            .verbs(&["create", "patch"])
            .resource("jobs")
            .namespace("default"),
    );
    let shard = Shard::new("denied").counts(2, Some(2)).pods_run("200ms");
    rig.mock.assign(shard.run(1)).await;
    let report = rig
        .mock
        .wait_report("default", "denied", "ERROR Forbidden", |s| {
            phase(s) == ShardPhase::Error
        })
        .await;
    assert_eq!(report.reason, "Forbidden");
    assert!(
        report.message.contains(
            "User \"system:serviceaccount:fedjob-system:fedjob-syncer\" cannot patch resource \"jobs\" in API group \"batch\" in the namespace \"default\""
        ) || report.message.contains("cannot create resource \"jobs\""),
        "{}",
        report.message
    );
    rig.not_ready(&[
        "the member cluster's API server answers 403 Forbidden",
        "is forbidden: User \"system:serviceaccount:fedjob-system:fedjob-syncer\" cannot",
    ])
    .await;

    // The ClusterRole is fixed.
    faults.remove(denied);
    rig.complete(&shard).await;
    rig.ready().await;
    assert_eq!(rig.shard_names().await, ["denied"]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_time_out_and_are_not_repeated_blindly() {
    let rig = Rig::start(SimOptions::default(), &["--cluster-request-timeout", "1s"]).await;
    let faults = rig.sim.cluster.faults();
    // The write is done at once; its answer comes 3 s later, after the syncer gave up on it.
    let slow = faults.inject(
        FaultSpec::new(Fault::Slow {
            delay: Duration::from_secs(3),
        })
        .verbs(&["create", "patch"])
        .resource("jobs")
        .count(1),
    );
    let shard = Shard::new("late").counts(2, Some(4)).pods_run("200ms");
    rig.mock.assign(shard.run(1)).await;
    rig.not_ready(&[
        "the member cluster's API server did not answer",
        "jobs within 1s",
    ])
    .await;
    rig.complete(&shard).await;
    rig.ready().await;
    assert_eq!(faults.hits(slow).len(), 1);
    assert_eq!(rig.shard_names().await, ["late"]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_expires_and_the_shards_are_listed_afresh() {
    let rig = Rig::start(SimOptions::default(), &[]).await;
    let kept = Shard::new("kept").counts(2, Some(4)).pods_run("1s");
    let removed = Shard::new("removed").counts(1, Some(1));
    rig.mock.assign(kept.run(1)).await;
    rig.mock.assign(removed.run(1)).await;
    rig.mock
        .wait_report("default", "removed", "running", |s| s.active == 1)
        .await;

    let faults = rig.sim.cluster.faults();
    // The re-list is slow, so the probe can see it happen.
    let slow_list = faults.inject(
        FaultSpec::new(Fault::Slow {
            delay: Duration::from_millis(1500),
        })
        .verbs(&["list"])
        .resource("jobs")
        .count(1),
    );
    let expire = faults.inject(FaultSpec::new(Fault::Expire).verbs(&["watch"]).count(1));
    // Someone deletes a shard while the syncer is not watching.
    rig.sim
        .jobs("default")
        .delete("removed", &DeleteParams::background())
        .await
        .unwrap();
    rig.not_ready(&[
        "re-listing this cluster's shards",
        "410",
        "The resourceVersion for the provided watch is too old.",
    ])
    .await;
    let gone = rig
        .mock
        .wait_report("default", "removed", "DELETED", |s| {
            phase(s) == ShardPhase::Deleted
        })
        .await;
    assert_eq!(gone.revision, 1);
    rig.complete(&kept).await;
    rig.ready().await;
    assert_eq!(faults.hits(expire).len(), 1);
    assert_eq!(faults.hits(slow_list).len(), 1);
    assert_eq!(
        rig.shard_names().await,
        ["kept"],
        "the deleted shard stays deleted"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continued_list_expires_and_the_list_starts_over() {
    init_logging();
    let sim = Sim::start_with(SimOptions {
        name: "c1".to_owned(),
        pod_duration: Duration::from_secs(3600),
        ..SimOptions::default()
    })
    .await;
    // More shards than kube-runtime's watcher reads in one page (500), suspended: no pods.
    const SHARDS: usize = 501;
    let jobs = sim.jobs("default");
    let indexes: Vec<usize> = (0..SHARDS).collect();
    for chunk in indexes.chunks(50) {
        let posts = chunk.iter().map(|i| {
            let shard = Shard::new(&format!("s{i:03}")).counts(1, Some(1));
            let job: Job = serde_json::from_value(shard.manifest(1, true)).unwrap();
            let jobs = jobs.clone();
            async move { jobs.create(&PostParams::default(), &job).await }
        });
        for created in futures::future::join_all(posts).await {
            created.expect("a Job created");
        }
    }
    let expire = sim
        .cluster
        .faults()
        .inject(FaultSpec::new(Fault::Expire).verbs(&["list"]).count(1));
    let mock = MockScheduler::start().await;
    let mut syncer = sim.syncer(&mock.url, &[]).await;
    let probes = syncer
        .serve_probes("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let rig = Rig {
        sim,
        mock,
        syncer,
        probes,
    };
    rig.not_ready(&[
        "re-listing this cluster's shards",
        "410",
        "The provided continue parameter is too old",
    ])
    .await;
    rig.mock.wait_session().await;
    rig.ready().await;
    let hello = &rig.mock.record().hellos[0].1;
    assert_eq!(hello.held.len(), SHARDS, "every shard listed once");
    assert_eq!(rig.sim.cluster.faults().hits(expire).len(), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_member_cluster_and_a_certificate_it_does_not_trust() {
    let rig = Rig::start(
        SimOptions {
            tls: true,
            ..SimOptions::default()
        },
        &[],
    )
    .await;
    assert!(rig.sim.cluster.url().starts_with("https://"));
    let secure = Shard::new("secure").counts(2, Some(2)).pods_run("200ms");
    rig.mock.assign(secure.run(1)).await;
    rig.complete(&secure).await;

    // The API server comes back with a certificate no CA in the kubeconfig signed.
    let stranger = Identity::generate("stranger").unwrap();
    rig.sim.cluster.serve_certificate(&stranger).unwrap();
    let later = Shard::new("later").counts(1, Some(1)).pods_run("200ms");
    rig.mock.assign(later.run(1)).await;
    rig.not_ready(&[
        "the member cluster's API server cannot be reached",
        "UnknownIssuer",
    ])
    .await;

    let trusted = rig.sim.cluster.identity().unwrap().clone();
    rig.sim.cluster.serve_certificate(&trusted).unwrap();
    rig.complete(&later).await;
    rig.ready().await;
    assert_eq!(rig.shard_names().await, ["later", "secure"]);
    rig.stop().await;
}
