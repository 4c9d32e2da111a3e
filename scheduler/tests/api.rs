//! The scheduler over real gRPC on 127.0.0.1:0: user API calls and test agents speaking the
//! agent protocol.

mod support;

use std::time::Duration;

use fedjob_proto::v1::{self, AssignmentAction, ShardPhase};
use serde_json::json;
use support::{TestAgent, client, create, eventually, get_json, manifest, start, wait_complete};
use tonic::Code;

const GRACE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn seed_example_splits_three_by_six_and_completes() {
    let s = start(GRACE).await;
    let mut agents = TestAgent::connect_all(&s.url, &["c1", "c2", "c3"]).await;
    let mut api = client(&s.url).await;
    create(&mut api, manifest("myjob", 9, Some(18), None))
        .await
        .unwrap();
    for agent in &mut agents {
        agent
            .until("the shard arrives", |a| !a.shards_of("myjob").is_empty())
            .await;
        let shards = agent.shards_of("myjob");
        let shard = &shards["myjob"];
        assert_eq!(shards.len(), 1);
        assert!(TestAgent::is_run(shard) && shard.create);
        assert_eq!(TestAgent::counts(shard), (3, Some(6)));
        let manifest: serde_json::Value = serde_json::from_str(&shard.manifest).unwrap();
        assert_eq!(manifest["metadata"]["labels"]["fedjob.io/job"], "myjob");
        assert_eq!(
            manifest["metadata"]["labels"]["fedjob.io/managed-by"],
            "fedjob"
        );
        assert_eq!(manifest["metadata"]["labels"]["app"], "test");
    }
    for agent in &agents {
        agent.complete_all("myjob").await;
    }
    let job = wait_complete(&api, "myjob").await;
    assert_eq!(job["status"]["succeeded"], 18);
    assert!(job["status"]["completionTime"].is_string());
    let placements = job["placements"].as_array().unwrap();
    assert_eq!(placements.len(), 3);
    for p in placements {
        assert_eq!(
            (p["parallelism"].clone(), p["completions"].clone()),
            (json!(3), json!(6))
        );
        assert_eq!(
            (p["succeeded"].clone(), p["state"].clone()),
            (json!(6), json!("Complete"))
        );
    }
}

#[tokio::test]
async fn preferences_weights_min_and_max_reach_the_agents() {
    let s = start(GRACE).await;
    let mut agents = TestAgent::connect_all(&s.url, &["c1", "c2", "c3"]).await;
    let mut api = client(&s.url).await;
    let prefs = r#"{"clusters": {"c1": {"weight": 3, "maxReplicas": 3}, "c2": {"weight": 1, "minReplicas": 4}, "*": {"weight": 2}}}"#;
    let created = create(&mut api, manifest("weighted", 12, Some(24), Some(prefs)))
        .await
        .unwrap();
    // SPEC §3 by hand. Rank: c1 (3), c3 (2, through "*"), c2 (1). Minimums: c2 4, 8 left.
    // Webster over weight / (2·s + 1), ties to the first ranked:
    //   c1 3 · c3 2 · c1 1 (tie with c2's 1/1) · c2 1 · c3 ⅔ · c1 ⅗ (now at its max 3)
    //   · c3 ⅖ · c2 ⅓ (over c3's 2/7)
    // → c1 3, c2 4 + 2 = 6, c3 3. Completions 24 in proportion 3:6:3 → 6, 12, 6.
    let expected = [("c1", (3, 6)), ("c2", (6, 12)), ("c3", (3, 6))];
    let mut planned: Vec<(String, (i32, i32))> = created
        .placements
        .iter()
        .map(|p| {
            (
                p.cluster.clone(),
                (p.parallelism, p.completions.unwrap_or(-1)),
            )
        })
        .collect();
    planned.sort();
    let expected_owned: Vec<(String, (i32, i32))> = expected
        .iter()
        .map(|(c, share)| ((*c).to_owned(), *share))
        .collect();
    assert_eq!(planned, expected_owned);
    for agent in &mut agents {
        let (_, (p, c)) = expected
            .iter()
            .find(|(name, _)| *name == agent.cluster)
            .unwrap();
        agent
            .until("the shard arrives", |a| !a.shards_of("weighted").is_empty())
            .await;
        assert_eq!(
            TestAgent::counts(&agent.shards_of("weighted")["weighted"]),
            (i64::from(*p), Some(i64::from(*c))),
            "{}",
            agent.cluster
        );
    }
}

#[tokio::test]
async fn parallelism_changes_in_place_and_more_completions_become_new_shards() {
    let s = start(GRACE).await;
    let mut agents = TestAgent::connect_all(&s.url, &["c1", "c2", "c3"]).await;
    let mut api = client(&s.url).await;
    create(&mut api, manifest("myjob", 9, Some(18), None))
        .await
        .unwrap();
    for agent in &mut agents {
        agent
            .until("first shard", |a| !a.shards_of("myjob").is_empty())
            .await;
        let a = agent.shards_of("myjob")["myjob"].clone();
        agent
            .report(vec![TestAgent::status(&a, ShardPhase::Running, 3, 1, 0)])
            .await;
    }
    api.scale_job(v1::ScaleJobRequest {
        name: "myjob".into(),
        parallelism: Some(12),
        ..Default::default()
    })
    .await
    .unwrap();
    for agent in &mut agents {
        agent
            .until("parallelism 4", |a| {
                TestAgent::counts(&a.shards_of("myjob")["myjob"]).0 == 4
            })
            .await;
        let shards = agent.shards_of("myjob");
        assert_eq!(shards.len(), 1, "no shard re-created");
        assert_eq!(TestAgent::counts(&shards["myjob"]).1, Some(6));
    }
    api.patch_job(v1::PatchJobRequest {
        name: "myjob".into(),
        patch: r#"{"spec":{"completions":24}}"#.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut added = 0;
    for agent in &mut agents {
        agent
            .until("a second shard", |a| {
                a.shards_of("myjob").contains_key("myjob-2")
            })
            .await;
        added += TestAgent::counts(&agent.shards_of("myjob")["myjob-2"])
            .1
            .unwrap();
        assert_eq!(
            TestAgent::counts(&agent.shards_of("myjob")["myjob"]).1,
            Some(6)
        );
    }
    assert_eq!(
        added, 6,
        "exactly the 6 added completions are planned again"
    );
    let job = get_json(&mut api, "myjob").await;
    assert_eq!(job["metadata"]["generation"], 3);
}

#[tokio::test]
async fn orphan_delete_forgets_and_cascading_delete_removes_shards() {
    let s = start(GRACE).await;
    let mut agent = TestAgent::connect(&s.url, "c1").await;
    let mut api = client(&s.url).await;
    create(&mut api, manifest("keep", 1, Some(1), None))
        .await
        .unwrap();
    create(&mut api, manifest("drop", 1, Some(1), None))
        .await
        .unwrap();
    agent
        .until("both shards", |a| a.assignments.len() == 2)
        .await;
    for a in agent.assignments.values() {
        agent
            .report(vec![TestAgent::status(a, ShardPhase::Running, 1, 0, 0)])
            .await;
    }

    let orphan = api
        .delete_job(v1::DeleteJobRequest {
            name: "keep".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(orphan.deleted);
    agent
        .until("FORGET for keep", |a| {
            a.shards_of("keep")["keep"].action == AssignmentAction::Forget as i32
        })
        .await;

    let cascade = api
        .delete_job(v1::DeleteJobRequest {
            name: "drop".into(),
            propagation_policy: "Background".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!cascade.deleted, "the Job waits for the cluster to confirm");
    let terminating =
        fedjob_scheduler::api::convert::federated_job_json(cascade.job.as_ref().unwrap());
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    agent
        .until("DELETE for drop", |a| {
            a.shards_of("drop")["drop"].action == AssignmentAction::Delete as i32
        })
        .await;
    let a = agent.shards_of("drop")["drop"].clone();
    agent
        .report(vec![TestAgent::status(&a, ShardPhase::Deleted, 0, 0, 0)])
        .await;
    eventually("the Job is gone", || {
        let mut api = api.clone();
        async move {
            let r = api
                .get_job(v1::GetJobRequest {
                    name: "drop".into(),
                    ..Default::default()
                })
                .await;
            r.is_err_and(|e| e.code() == Code::NotFound)
        }
    })
    .await;
}

#[tokio::test]
async fn a_silent_cluster_becomes_not_ready_and_comes_back() {
    let s = start(Duration::from_millis(400)).await;
    let agent = TestAgent::connect(&s.url, "c1").await;
    let mut api = client(&s.url).await;
    let state = |api: &mut fedjob_proto::v1::federation_client::FederationClient<_>| {
        let mut api = api.clone();
        async move {
            let list = api
                .list_clusters(v1::ListClustersRequest {})
                .await
                .unwrap()
                .into_inner();
            list.items[0].state.clone()
        }
    };
    assert_eq!(state(&mut api).await, "Ready");
    agent.set_heartbeats(false);
    eventually("NotReady", || {
        let f = state(&mut api);
        async move { f.await == "NotReady" }
    })
    .await;
    agent.set_heartbeats(true);
    eventually("Ready again", || {
        let f = state(&mut api);
        async move { f.await == "Ready" }
    })
    .await;
}

#[tokio::test]
async fn bad_requests_name_the_field_and_store_nothing() {
    let s = start(GRACE).await;
    let mut api = client(&s.url).await;
    let bad = manifest("myjob", 2, Some(4), None).replace("Never", "Always");
    let err = create(&mut api, bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("spec.template.spec.restartPolicy"),
        "{}",
        err.message()
    );
    let err = create(&mut api, manifest("myjob", -1, Some(4), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("spec.parallelism"),
        "{}",
        err.message()
    );
    let err = create(&mut api, manifest("myjob", 1, Some(4), Some("{not json")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("federation.kubernetes.io/job-preferences"),
        "{}",
        err.message()
    );
    let err = create(&mut api, manifest("Bad_Name", 1, Some(1), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("metadata.name"), "{}", err.message());
    let list = api
        .list_jobs(v1::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        list.items.is_empty(),
        "nothing stored from a refused request"
    );

    create(&mut api, manifest("myjob", 1, Some(1), None))
        .await
        .unwrap();
    let err = create(&mut api, manifest("myjob", 1, Some(1), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = api
        .get_job(v1::GetJobRequest {
            name: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, "jobs.batch \"nope\" not found")
    );
    let err = api
        .patch_job(v1::PatchJobRequest {
            name: "myjob".into(),
            patch:
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"w","image":"alpine"}]}}}}"#
                    .into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("spec.template") && err.message().contains("immutable"),
        "{}",
        err.message()
    );
    let err = api
        .scale_job(v1::ScaleJobRequest {
            name: "myjob".into(),
            parallelism: Some(3),
            resource_version: "1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{}", err.message());
    let err = api
        .create_job(v1::CreateJobRequest {
            manifest: manifest("idx", 1, Some(2), None).replace(
                "parallelism: 1",
                "parallelism: 1\n  completionMode: Indexed",
            ),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("not supported yet"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_second_agent_cannot_take_a_connected_clusters_name() {
    let s = start(GRACE).await;
    let _first = TestAgent::connect(&s.url, "c1").await;
    let mut client = v1::agent_client::AgentClient::connect(s.url.clone())
        .await
        .unwrap();
    let err = client
        .register(v1::RegisterRequest {
            cluster: "c1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = client
        .register(v1::RegisterRequest {
            cluster: "Not_A_Label".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_reconnecting_agent_gets_only_the_difference() {
    let s = start(GRACE).await;
    let mut agent = TestAgent::connect(&s.url, "c1").await;
    let mut api = client(&s.url).await;
    create(&mut api, manifest("a", 1, Some(1), None))
        .await
        .unwrap();
    // Two completions, so that a second pod has work: a shard runs no more pods at once
    // than it has completions left.
    create(&mut api, manifest("b", 1, Some(2), None))
        .await
        .unwrap();
    agent
        .until("both shards", |a| a.assignments.len() == 2)
        .await;
    let held: Vec<v1::ShardStatus> = agent
        .assignments
        .values()
        .map(|a| TestAgent::status(a, ShardPhase::Running, 1, 0, 0))
        .collect();
    let b_uid = agent.shards_of("b")["b"].job_uid.clone();
    drop(agent);
    // While the agent is away, b changes.
    api.scale_job(v1::ScaleJobRequest {
        name: "b".into(),
        parallelism: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    eventually("the scheduler saw the agent go", || {
        let mut api = api.clone();
        async move {
            let list = api
                .list_clusters(v1::ListClustersRequest {})
                .await
                .unwrap()
                .into_inner();
            list.items.iter().any(|c| c.name == "c1" && !c.connected)
        }
    })
    .await;
    let again = TestAgent::connect_holding(&s.url, "c1", held).await;
    let resent: Vec<&str> = again.log.iter().map(|a| a.shard.as_str()).collect();
    assert_eq!(resent, vec!["b"], "only the changed shard is sent again");
    assert_eq!(again.log[0].job_uid, b_uid);
    assert!(
        !again.log[0].create,
        "a shard the agent reported is never created again"
    );
}

#[tokio::test]
async fn watch_streams_changes_until_deleted() {
    let s = start(GRACE).await;
    let mut api = client(&s.url).await;
    create(&mut api, manifest("w", 1, Some(1), None))
        .await
        .unwrap();
    let mut stream = api
        .watch_job(v1::WatchJobRequest {
            name: "w".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.r#type, "ADDED");
    api.scale_job(v1::ScaleJobRequest {
        name: "w".into(),
        parallelism: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let next = stream.message().await.unwrap().unwrap();
    assert_eq!(next.r#type, "MODIFIED");
    api.delete_job(v1::DeleteJobRequest {
        name: "w".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let last = stream.message().await.unwrap().unwrap();
    assert_eq!(last.r#type, "DELETED");
    assert!(stream.message().await.unwrap().is_none());
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let s = start(GRACE).await;
    let mut api = client(&s.url).await;
    create(&mut api, manifest("m", 1, Some(1), None))
        .await
        .unwrap();
    let addr = s.running.metrics_addr.unwrap();
    let body = http_get(addr, "/metrics").await;
    for family in [
        "fedjob_jobs{state=\"Running\"} 1",
        "fedjob_grpc_requests_total{method=\"Federation/CreateJob\",code=\"Ok\"} 1",
        "fedjob_store_commit_duration_seconds_count",
        "fedjob_clusters{state=\"Ready\"} 0",
    ] {
        assert!(body.contains(family), "{family} missing from:\n{body}");
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn a_lost_cluster_s_work_moves_only_with_rebalance() {
    let s = start(Duration::from_millis(300)).await;
    let mut c1 = TestAgent::connect(&s.url, "c1").await;
    let mut c2 = TestAgent::connect(&s.url, "c2").await;
    let mut api = client(&s.url).await;
    let moving = r#"{"rebalance": true, "clusters": {"*": {"weight": 1}}}"#;
    create(&mut api, manifest("moves", 2, Some(8), Some(moving)))
        .await
        .unwrap();
    create(&mut api, manifest("stays", 2, Some(8), None))
        .await
        .unwrap();
    c2.until("both shards", |a| a.assignments.len() == 2).await;
    let old = c2.shards_of("moves")["moves"].clone();
    c2.report(vec![TestAgent::status(&old, ShardPhase::Running, 1, 1, 0)])
        .await;
    eventually("c2's progress counted", || {
        let mut api = api.clone();
        async move { get_json(&mut api, "moves").await["status"]["succeeded"] == 1 }
    })
    .await;
    c2.set_heartbeats(false);

    // NotReady after the grace, lost after as long again: 3 unfinished completions move to c1.
    c1.until("c2's unfinished work", |a| {
        a.shards_of("moves").contains_key("moves-2")
    })
    .await;
    let moved = &c1.shards_of("moves")["moves-2"];
    assert_eq!(
        TestAgent::counts(moved).1,
        Some(3),
        "4 planned in c2 − 1 done"
    );
    assert!(
        !c1.shards_of("stays").contains_key("stays-2"),
        "rebalance: false moves nothing"
    );
    let stays = get_json(&mut api, "stays").await;
    let waiting = stays["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["cluster"] == "c2")
        .unwrap()
        .clone();
    assert_eq!(waiting["state"], "Waiting");
    assert!(waiting["message"].as_str().unwrap().contains("NotReady"));

    // c2 comes back: it learns its old shard moved, and late status from it does not count.
    c2.set_heartbeats(true);
    c2.until("DELETE for the superseded shard", |a| {
        a.shards_of("moves")["moves"].action == AssignmentAction::Delete as i32
    })
    .await;
    c2.report(vec![TestAgent::status(&old, ShardPhase::Complete, 0, 4, 0)])
        .await;
    // Then, on the same stream, the shard's deletion: once that is seen, the report before it
    // was processed too.
    c2.report(vec![TestAgent::status(&old, ShardPhase::Deleted, 0, 4, 0)])
        .await;
    eventually("c2's superseded shard confirmed deleted", || {
        let mut api = api.clone();
        async move {
            let job = get_json(&mut api, "moves").await;
            job["placements"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["cluster"] == "c2" && p["shards"][0]["state"] == "Stopped")
        }
    })
    .await;
    let job = get_json(&mut api, "moves").await;
    assert_eq!(
        job["status"]["succeeded"], 1,
        "status from a superseded shard is ignored: {job}"
    );
    let clusters = api
        .list_clusters(v1::ListClustersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        clusters
            .items
            .iter()
            .find(|c| c.name == "c2")
            .unwrap()
            .epoch,
        1
    );
}

/// Reports about one Job from many agents at once are written together (queued per Job);
/// every one of them must still count, and the counts must come out exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_many_agents_at_once_all_count() {
    const CLUSTERS: usize = 24;
    let s = start(GRACE).await;
    let mut agents = Vec::new();
    for i in 0..CLUSTERS {
        agents.push(TestAgent::connect(&s.url, &format!("c{i:02}")).await);
    }
    let mut api = client(&s.url).await;
    let n = CLUSTERS as i32;
    create(&mut api, manifest("wide", n, Some(2 * n), None))
        .await
        .unwrap();
    TestAgent::until_each_has(&mut agents, "wide").await;
    // Running everywhere at the same moment, then Complete everywhere at the same moment.
    let running = agents.iter().map(|agent| {
        let statuses = agent
            .shards_of("wide")
            .values()
            .map(|a| TestAgent::status(a, ShardPhase::Running, 1, 1, 0))
            .collect();
        agent.report(statuses)
    });
    futures::future::join_all(running).await;
    eventually("every cluster's report counted", || {
        let mut api = api.clone();
        async move {
            let job = get_json(&mut api, "wide").await;
            job["status"]["active"] == n && job["status"]["succeeded"] == n
        }
    })
    .await;
    futures::future::join_all(agents.iter().map(|a| a.complete_all("wide"))).await;
    let job = wait_complete(&api, "wide").await;
    assert_eq!(job["status"]["succeeded"], 2 * n);
    assert_eq!(job["status"]["active"].as_i64().unwrap_or(0), 0, "{job}");
    let placements = job["placements"].as_array().unwrap();
    assert_eq!(placements.len(), CLUSTERS);
    assert!(
        placements
            .iter()
            .all(|p| p["succeeded"] == 2 && p["state"] == "Complete"),
        "{placements:?}"
    );
}

/// A status for `a` with the given times, in seconds since the epoch.
fn timed(
    a: &v1::Assignment,
    phase: ShardPhase,
    succeeded: i32,
    start: i64,
    completion: Option<i64>,
) -> v1::ShardStatus {
    let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
    let active = if phase == ShardPhase::Running { 1 } else { 0 };
    v1::ShardStatus {
        start_time: Some(at(start)),
        completion_time: completion.map(at),
        ..TestAgent::status(a, phase, active, succeeded, 0)
    }
}

/// The seconds since the epoch of the RFC 3339 time at `pointer` in `job`.
fn seconds_at(job: &serde_json::Value, pointer: &str) -> Option<i64> {
    let text = job.pointer(pointer)?.as_str()?;
    let at: jiff::Timestamp = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    Some(at.as_second())
}

/// SPEC §5: `startTime` is the earliest of the shards' and set once; `completionTime` is the
/// latest of the shards', set when the Job is Complete — not the moment the federation noticed,
/// nor the time of the last report. The times reported lie minutes in the past, so neither
/// "now" nor the order of the reports can pass for them.
#[tokio::test]
async fn start_time_is_the_earliest_and_completion_time_the_latest_of_the_shards() {
    let s = start(GRACE).await;
    let mut agents = TestAgent::connect_all(&s.url, &["c1", "c2", "c3"]).await;
    let mut api = client(&s.url).await;
    create(&mut api, manifest("timed", 3, Some(3), None))
        .await
        .unwrap();
    TestAgent::until_each_has(&mut agents, "timed").await;
    let now = jiff::Timestamp::now().as_second();
    let shard = |i: usize| agents[i].shards_of("timed")["timed"].clone();
    // c1 started first, five minutes ago; the others later.
    let started = [now - 300, now - 200, now - 100];
    agents[0]
        .report(vec![timed(
            &shard(0),
            ShardPhase::Running,
            0,
            started[0],
            None,
        )])
        .await;
    eventually("c1's start seen", || {
        let mut api = api.clone();
        async move { get_json(&mut api, "timed").await["status"]["active"] == 1 }
    })
    .await;
    for i in [1, 2] {
        agents[i]
            .report(vec![timed(
                &shard(i),
                ShardPhase::Running,
                0,
                started[i],
                None,
            )])
            .await;
    }
    eventually("every start seen", || {
        let mut api = api.clone();
        async move { get_json(&mut api, "timed").await["status"]["active"] == 3 }
    })
    .await;
    let job = get_json(&mut api, "timed").await;
    assert_eq!(
        seconds_at(&job, "/status/startTime"),
        Some(started[0]),
        "{job}"
    );
    assert_eq!(seconds_at(&job, "/status/completionTime"), None, "{job}");

    // c2 finished last (ten seconds ago) but reports first; c3 reports last.
    let finished = [now - 30, now - 10, now - 20];
    for i in [1, 0, 2] {
        agents[i]
            .report(vec![timed(
                &shard(i),
                ShardPhase::Complete,
                1,
                started[i],
                Some(finished[i]),
            )])
            .await;
        if i != 2 {
            let done = if i == 1 { 1 } else { 2 };
            eventually("the completion counted", || {
                let mut api = api.clone();
                async move { get_json(&mut api, "timed").await["status"]["succeeded"] == done }
            })
            .await;
            let job = get_json(&mut api, "timed").await;
            assert_eq!(
                seconds_at(&job, "/status/completionTime"),
                None,
                "not Complete yet: {job}"
            );
        }
    }
    let job = wait_complete(&api, "timed").await;
    assert_eq!(job["status"]["succeeded"], 3, "{job}");
    assert_eq!(
        seconds_at(&job, "/status/startTime"),
        Some(started[0]),
        "{job}"
    );
    assert_eq!(
        seconds_at(&job, "/status/completionTime"),
        Some(finished[1]),
        "the latest shard's completionTime: {job}"
    );
}

/// SPEC §2: an update that carries a stale `resourceVersion` answers ABORTED and changes
/// nothing, whichever way it comes: patch (the request's field or inside the patch), apply and
/// update (the manifest's `metadata.resourceVersion`).
#[tokio::test]
async fn a_stale_resource_version_on_patch_apply_and_update_is_aborted() {
    let s = start(GRACE).await;
    let mut api = client(&s.url).await;
    let created = create(&mut api, manifest("rv", 2, Some(4), None))
        .await
        .unwrap();
    let stale =
        fedjob_scheduler::api::convert::federated_job_json(&created)["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned();
    api.scale_job(v1::ScaleJobRequest {
        name: "rv".into(),
        parallelism: Some(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let current = get_json(&mut api, "rv").await;
    assert_ne!(current["metadata"]["resourceVersion"], stale.as_str());

    let patch = |resource_version: &str, patch: serde_json::Value| v1::PatchJobRequest {
        name: "rv".into(),
        patch: patch.to_string(),
        resource_version: resource_version.to_owned(),
        ..Default::default()
    };
    let mut with_stale: serde_json::Value =
        serde_yaml::from_str(&manifest("rv", 5, Some(4), None)).unwrap();
    with_stale["metadata"]["resourceVersion"] = json!(stale);
    let stale_manifest = with_stale.to_string();
    let refusals = [
        (
            "patch, resource_version field",
            api.patch_job(patch(&stale, json!({"spec": {"parallelism": 5}})))
                .await
                .map(|_| ()),
        ),
        (
            "patch, resourceVersion inside",
            api.patch_job(patch(
                "",
                json!({"metadata": {"resourceVersion": stale}, "spec": {"parallelism": 5}}),
            ))
            .await
            .map(|_| ()),
        ),
        (
            "apply",
            api.apply_job(v1::ApplyJobRequest {
                manifest: stale_manifest.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "update",
            api.update_job(v1::UpdateJobRequest {
                manifest: stale_manifest.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
    ];
    for (how, outcome) in refusals {
        let err = outcome.expect_err(how);
        assert_eq!(err.code(), Code::Aborted, "{how}: {}", err.message());
    }
    let after = get_json(&mut api, "rv").await;
    assert_eq!(after["metadata"], current["metadata"], "nothing written");
    assert_eq!(after["spec"]["parallelism"], 3);

    // With the current version each goes through.
    let rv = current["metadata"]["resourceVersion"].as_str().unwrap();
    api.patch_job(patch(rv, json!({"spec": {"parallelism": 4}})))
        .await
        .unwrap();
    let job = get_json(&mut api, "rv").await;
    assert_eq!(job["spec"]["parallelism"], 4);
    let mut fresh = with_stale.clone();
    fresh["metadata"]["resourceVersion"] = job["metadata"]["resourceVersion"].clone();
    let applied = api
        .apply_job(v1::ApplyJobRequest {
            manifest: fresh.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let applied = fedjob_scheduler::api::convert::federated_job_json(&applied);
    assert_eq!(applied["spec"]["parallelism"], 5);
}
