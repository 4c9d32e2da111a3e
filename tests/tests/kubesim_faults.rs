//! Fault injection in `fedjob-kubesim`: each fault answers what a real API server answers
//! when it fails that way (status, headers, `Status` body), hits exactly the requests it
//! selects for exactly its count or duration, and leaves the cluster's state as it was.

mod kubesim_support;

use std::time::Duration;

use fedjob_tests::kubesim::faults::{Fault, FaultSpec, ThrottleBody};
use fedjob_tests::kubesim::tls::Identity;
use fedjob_tests::kubesim::{SimCluster, SimOptions, kubeconfig};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubesim_support::*;
use serde_json::{Value, json};
use tokio::time::Instant;

fn job(name: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"parallelism": 1, "completions": 1, "template": {
            "metadata": {"annotations": {"fedjob.io/sim-duration": "600s"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}}}
    })
}

fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a numeric resourceVersion")
}

#[tokio::test]
async fn an_unreachable_server_refuses_connections_then_comes_back_with_its_state() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let created = http.post(JOBS, &job("a")).await;
    assert_eq!(created.status, 201);
    let before = wait_job(&http, "a", "running", |j| j["status"]["active"] == 1).await;
    let list = http.get(JOBS).await.json();
    let mut watch = http
        .watch(&format!("{JOBS}?watch=1&resourceVersion={}", rv(&list)))
        .await;

    let outage = sim.faults().inject(FaultSpec::new(Fault::Unreachable));
    sim.wait_reachable(false).await;
    let refused = tokio::net::TcpStream::connect(sim.addr())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(watch.next().await, None, "the open watch is cut");

    sim.faults().remove(outage);
    sim.wait_reachable(true).await;
    let http = Http::new(sim.url());
    let after = http.get(&job_path("a")).await.json();
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(rv(&after), rv(&before), "nothing changed it meanwhile");
    let mut resumed = http
        .watch(&format!("{JOBS}?watch=1&resourceVersion={}", rv(&list)))
        .await;
    assert!(http.post(JOBS, &job("b")).await.status == 201);
    let added = resumed.next_change().await.unwrap();
    assert_eq!(
        (&added["type"], &added["object"]["metadata"]["name"]),
        (&json!("ADDED"), &json!("b")),
        "a watch from before the outage resumes: the history is kept"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_outage_for_a_duration_ends_by_itself() {
    let sim = cluster(slow_pods()).await;
    let spec = FaultSpec::new(Fault::Unreachable)
        .after(Duration::from_millis(100))
        .lasting(Duration::from_millis(300));
    let id = sim.faults().inject(spec);
    sim.wait_reachable(false).await;
    let down = Instant::now();
    sim.wait_reachable(true).await;
    assert!(
        down.elapsed() >= Duration::from_millis(250),
        "{:?}",
        down.elapsed()
    );
    assert!(!sim.faults().is_active(id));
    assert_eq!(Http::new(sim.url()).get(JOBS).await.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn throttled_as_priority_and_fairness_and_the_watch_cache_answer() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let throttle = sim.faults().inject(
        FaultSpec::new(Fault::throttle())
            .verbs(&["list"])
            .resource("jobs")
            .count(2),
    );
    for _ in 0..2 {
        let reply = http.get(JOBS).await;
        assert_eq!(reply.status, 429);
        assert_eq!(reply.headers["retry-after"], "1");
        assert_eq!(reply.content_type, "text/plain; charset=utf-8");
        assert_eq!(
            &reply.raw[..],
            b"Too many requests, please try again later.\n"
        );
    }
    assert_eq!(http.get(JOBS).await.status, 200, "two, then served");
    assert_eq!(http.get("/api/v1/namespaces").await.status, 200);
    let hits = sim.faults().hits(throttle);
    assert_eq!(
        hits.iter().map(|h| h.request.as_str()).collect::<Vec<_>>(),
        ["list jobs", "list jobs"]
    );

    sim.faults().inject(
        FaultSpec::new(Fault::TooManyRequests {
            retry_after: 3,
            body: ThrottleBody::Status,
        })
        .count(1),
    );
    let reply = http.get(&job_path("x")).await;
    assert_eq!(
        (reply.status, &reply.headers["retry-after"]),
        (429, &"3".parse().unwrap())
    );
    assert_eq!(
        reply.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "storage is (re)initializing", "reason": "TooManyRequests",
               "details": {"retryAfterSeconds": 3}, "code": 429})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_and_denials_hit_the_requests_they_select() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    sim.faults().inject(
        FaultSpec::new(Fault::internal_error())
            .verbs(&["create"])
            .count(1),
    );
    let failed = http.post(JOBS, &job("a")).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.json()["reason"], "InternalError");
    assert_eq!(
        failed.json()["message"],
        "Internal error occurred: etcdserver: request timed out"
    );
    assert_eq!(
        http.get(&job_path("a")).await.status,
        404,
        "nothing was written"
    );
    assert_eq!(http.post(JOBS, &job("a")).await.status, 201);

    sim.faults().inject(
        FaultSpec::new(Fault::service_unavailable())
            .verbs(&["get"])
            .count(1),
    );
    let unavailable = http.get(&job_path("a")).await;
    assert_eq!(
        (unavailable.status, unavailable.json()["reason"].clone()),
        (503, json!("ServiceUnavailable"))
    );

    let denied = sim.faults().inject(
        FaultSpec::new(Fault::forbidden())
            .verbs(&["create", "patch"])
            .resource("jobs")
            .namespace("default"),
    );
    let create = http.post(JOBS, &job("b")).await;
    assert_eq!(
        create.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "jobs.batch is forbidden: User \"system:serviceaccount:fedjob-system:fedjob-syncer\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"default\"",
               "reason": "Forbidden", "details": {"group": "batch", "kind": "jobs"}, "code": 403})
    );
    let patch = http
        .patch(
            &job_path("a"),
            "application/merge-patch+json",
            &json!({"spec": {"parallelism": 2}}),
        )
        .await;
    assert_eq!(patch.status, 403);
    assert!(
        patch.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("jobs.batch \"a\" is forbidden: User \"system:serviceaccount:fedjob-system:fedjob-syncer\" cannot patch resource \"jobs\""),
        "{}",
        patch.json()
    );
    assert_eq!(
        http.get(&job_path("a")).await.status,
        200,
        "reads are allowed"
    );
    assert_eq!(
        http.post(
            "/apis/batch/v1/namespaces/kube-system/jobs",
            &json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "b", "namespace": "kube-system"},
                    "spec": job("b")["spec"].clone()})
        )
        .await
        .status,
        201,
        "other namespaces are allowed"
    );
    sim.faults().remove(denied);
    assert_eq!(http.post(JOBS, &job("b")).await.status, 201);
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_answers_come_after_the_delay() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let delay = Duration::from_millis(400);
    let slow = sim.faults().inject(
        FaultSpec::new(Fault::Slow { delay })
            .verbs(&["list"])
            .count(1),
    );
    let started = Instant::now();
    assert_eq!(http.get(JOBS).await.status, 200, "late, but served");
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert_eq!(http.get(JOBS).await.status, 200);
    assert_eq!(
        sim.faults().hits(slow).len(),
        1,
        "only the first list was slowed"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_expired_watch_gets_410_and_its_version_is_compacted() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    assert_eq!(http.post(JOBS, &job("a")).await.status, 201);
    let listed = rv(&http.get(JOBS).await.json());
    let mut open = http
        .watch(&format!(
            "/apis/batch/v1/jobs?watch=1&resourceVersion={listed}"
        ))
        .await;
    assert_eq!(http.post(JOBS, &job("b")).await.status, 201);
    assert_eq!(open.next_change().await.unwrap()["type"], "ADDED");
    sim.faults()
        .inject(FaultSpec::new(Fault::Expire).verbs(&["watch"]).count(1));
    // The controller's status writes may come first.
    let error = loop {
        let event = open.next_change().await.unwrap();
        if event["type"] == "ERROR" {
            break event;
        }
        assert_eq!(event["type"], "MODIFIED");
    };
    assert_eq!(
        error,
        json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
               "status": "Failure", "message": "The resourceVersion for the provided watch is too old.",
               "reason": "Expired", "code": 410}})
    );
    assert_eq!(open.next().await, None, "the watch ends");
    // Compacted: resuming from a version before it is refused too; a fresh list works.
    let mut resumed = http
        .watch(&format!(
            "/apis/batch/v1/jobs?watch=1&resourceVersion={listed}"
        ))
        .await;
    let error = resumed.next().await.unwrap();
    assert_eq!(
        (&error["type"], &error["object"]["code"]),
        (&json!("ERROR"), &json!(410))
    );
    let exact = http
        .get(&format!(
            "{JOBS}?resourceVersion={listed}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(exact.status, 410);
    let current = rv(&http.get(JOBS).await.json());
    let mut fresh = http
        .watch(&format!(
            "/apis/batch/v1/jobs?watch=1&resourceVersion={current}"
        ))
        .await;
    assert_eq!(http.post(JOBS, &job("c")).await.status, 201);
    assert_eq!(fresh.next_change().await.unwrap()["type"], "ADDED");

    sim.faults()
        .inject(FaultSpec::new(Fault::Expire).verbs(&["watch"]).count(1));
    let mut at_once = http
        .watch(&format!(
            "/apis/batch/v1/jobs?watch=1&resourceVersion={current}"
        ))
        .await;
    let error = at_once.next().await.unwrap();
    assert_eq!(error["object"]["reason"], "Expired");
    assert!(
        error["object"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("too old resource version: {current} (")),
        "{error}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_continued_list_expires() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    for name in ["a", "b", "c"] {
        assert_eq!(http.post(JOBS, &job(name)).await.status, 201);
    }
    let first = http.get(&format!("{JOBS}?limit=1")).await.json();
    let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    sim.faults()
        .inject(FaultSpec::new(Fault::Expire).verbs(&["list"]).count(1));
    let expired = http.get(&format!("{JOBS}?limit=1&continue={token}")).await;
    assert_eq!(expired.status, 410);
    assert_eq!(expired.json()["reason"], "Expired");
    assert!(
        expired.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("The provided continue parameter is too old")
    );
    assert_eq!(
        http.get(&format!("{JOBS}?limit=1&continue={token}"))
            .await
            .status,
        200,
        "once"
    );
    sim.shutdown().await;
}

async fn kube_client(sim: &SimCluster) -> kube::Client {
    let yaml = kubeconfig::render(&[sim.kubeconfig_context(None)]);
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&yaml).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn tls_serves_what_the_kubeconfig_trusts() {
    let sim = cluster(SimOptions {
        tls: true,
        ..slow_pods()
    })
    .await;
    assert!(sim.url().starts_with("https://127.0.0.1:"), "{}", sim.url());
    let yaml = kubeconfig::render(&[sim.kubeconfig_context(None)]);
    assert!(yaml.contains("certificate-authority-data"), "{yaml}");
    let jobs: Api<Job> = Api::namespaced(kube_client(&sim).await, "default");
    let created = jobs
        .create(
            &PostParams::default(),
            &serde_json::from_value(job("a")).unwrap(),
        )
        .await
        .expect("a create over TLS");
    assert_eq!(created.metadata.name.as_deref(), Some("a"));

    // A certificate no trusted CA signed: the client refuses the server.
    let stranger = Identity::generate("stranger").unwrap();
    sim.serve_certificate(&stranger).unwrap();
    let fresh: Api<Job> = Api::namespaced(kube_client(&sim).await, "default");
    let refused = fresh.get("a").await.unwrap_err();
    assert!(
        format!("{refused:?}").contains("UnknownIssuer"),
        "{refused:?}"
    );
    sim.serve_certificate(sim.identity().unwrap()).unwrap();
    let job = eventually("the trusted certificate again", || async {
        fresh.get("a").await.ok()
    })
    .await;
    assert_eq!(job.metadata.uid, created.metadata.uid);
    sim.shutdown().await;
}
