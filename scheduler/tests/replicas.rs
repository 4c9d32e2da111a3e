//! Several scheduler replicas on one etcd cluster: any replica serves users and agents, changes
//! reach agents connected to another replica, liveness is shared, one replica leads and another
//! takes over when it dies, and conflicting updates through two replicas have one winner.

#[path = "etcd/support.rs"]
#[allow(dead_code)]
mod etcd;
mod support;

use std::time::{Duration, Instant};

use fedjob_proto::v1::{self, ShardPhase};
use fedjob_scheduler::config::Config;
use fedjob_scheduler::server::{self, Running};
use support::{TestAgent, client, create, eventually, get_json, manifest};
use tonic::Code;

const SCHEDULER: &str = env!("CARGO_BIN_EXE_fedjob-scheduler");

fn endpoints(cluster: &etcd::EtcdCluster) -> String {
    cluster
        .members
        .iter()
        .map(|m| m.client_url.clone())
        .collect::<Vec<_>>()
        .join(",")
}

/// A replica in this process.
async fn replica(cluster: &etcd::EtcdCluster, prefix: &str, grace: &str) -> (Running, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::try_parse_from([
        "fedjob-scheduler",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &dir.path().display().to_string(),
        "--metrics-listen",
        "127.0.0.1:0",
        "--store",
        "etcd",
        "--etcd-endpoints",
        &endpoints(cluster),
        "--etcd-prefix",
        prefix,
        "--cluster-grace",
        grace,
        "--lease-ttl",
        "2s",
    ])
    .unwrap();
    let running = server::start(config).await.unwrap();
    let url = format!("http://{}", running.addr);
    (running, url)
}

async fn state_of(url: &str, cluster: &str) -> String {
    let list = client(url)
        .await
        .list_clusters(v1::ListClustersRequest {})
        .await
        .unwrap()
        .into_inner();
    list.items
        .iter()
        .find(|c| c.name == cluster)
        .map(|c| c.state.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn any_replica_serves_and_changes_reach_agents_on_another() {
    let cluster = etcd::EtcdCluster::three().await;
    let (_a, a) = replica(&cluster, "/any/", "2s").await;
    let (_b, b) = replica(&cluster, "/any/", "2s").await;
    let mut agents = TestAgent::connect_all(&a, &["c1", "c2", "c3"]).await;
    eventually("clusters are Ready on the other replica too", || async {
        let mut ready = true;
        for c in ["c1", "c2", "c3"] {
            ready &= state_of(&b, c).await == "Ready";
        }
        ready
    })
    .await;
    let mut through_b = client(&b).await;
    create(&mut through_b, manifest("myjob", 9, Some(18), None))
        .await
        .unwrap();
    for agent in &mut agents {
        agent
            .until("the shard created through the other replica", |a| {
                a.shards_of("myjob").contains_key("myjob")
            })
            .await;
        assert_eq!(
            TestAgent::counts(&agent.shards_of("myjob")["myjob"]),
            (3, Some(6))
        );
    }
    // A second agent claiming c1 through replica B is refused while c1's stream is on A.
    let mut other = v1::agent_client::AgentClient::connect(b.clone())
        .await
        .unwrap();
    let err = other
        .register(v1::RegisterRequest {
            cluster: "c1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());

    let mut through_a = client(&a).await;
    through_a
        .scale_job(v1::ScaleJobRequest {
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
        agent.complete_all("myjob").await;
    }
    eventually("Complete as seen through B", || {
        let mut b = through_b.clone();
        async move {
            let job = get_json(&mut b, "myjob").await;
            job["status"]["succeeded"] == 18
                && job["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Complete"))
        }
    })
    .await;

    // Heartbeats stop on A: B sees the cluster NotReady.
    agents[2].set_heartbeats(false);
    eventually("c3 NotReady on B", || async {
        state_of(&b, "c3").await == "NotReady"
    })
    .await;
}

#[tokio::test]
async fn conflicting_updates_through_two_replicas_have_one_winner() {
    let cluster = etcd::EtcdCluster::single().await;
    let (_a, a) = replica(&cluster, "/race/", "30s").await;
    let (_b, b) = replica(&cluster, "/race/", "30s").await;
    let mut ca = client(&a).await;
    let mut cb = client(&b).await;
    for round in 0..10 {
        let name = format!("race-{round}");
        let created = create(&mut ca, manifest(&name, 1, Some(1), None))
            .await
            .unwrap();
        let rv = fedjob_scheduler::api::convert::federated_job_json(&created)["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned();
        eventually("B knows the Job", || {
            let mut cb = cb.clone();
            let name = name.clone();
            async move {
                cb.get_job(v1::GetJobRequest {
                    name,
                    ..Default::default()
                })
                .await
                .is_ok()
            }
        })
        .await;
        let scale = |parallelism| v1::ScaleJobRequest {
            name: name.clone(),
            parallelism: Some(parallelism),
            resource_version: rv.clone(),
            ..Default::default()
        };
        let (ra, rb) = tokio::join!(ca.scale_job(scale(2)), cb.scale_job(scale(3)));
        let outcomes = [ra.map(|_| ()), rb.map(|_| ())];
        let wins = outcomes.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {outcomes:?}");
        let loser = outcomes.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(loser.code(), Code::Aborted, "{}", loser.message());
    }
}

fn metrics_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn leads(metrics: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", metrics)).await else {
        return false;
    };
    let _ = conn
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut body = String::new();
    let _ = conn.read_to_string(&mut body).await;
    body.lines().any(|l| l == "fedjob_leader 1")
}

/// A replica as a process, to be killed with SIGKILL.
fn replica_process(
    cluster: &etcd::EtcdCluster,
    prefix: &str,
    port: u16,
    metrics: u16,
    grace: &str,
) -> std::process::Child {
    std::process::Command::new(SCHEDULER)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics}"),
        ])
        .args([
            "--store",
            "etcd",
            "--etcd-endpoints",
            &endpoints(cluster),
            "--etcd-prefix",
            prefix,
        ])
        .args(["--cluster-grace", grace, "--lease-ttl", "2s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The placement of `job` in `cluster`: its shards' names and completions.
fn shards_in(job: &serde_json::Value, cluster: &str) -> Vec<(String, i64)> {
    job["placements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["cluster"] == cluster)
        .flat_map(|p| p["shards"].as_array().unwrap().clone())
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["completions"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// Leadership moves when the leader dies, and the new leader does the leader's duties: it
/// moves a lost cluster's work for a Job with `rebalance: true` and deletes a finished Job
/// after its `ttlSecondsAfterFinished`. Neither can happen without a leader: the only other
/// replica is dead.
#[tokio::test]
async fn another_replica_leads_within_the_lease_ttl_when_the_leader_is_killed() {
    let cluster = etcd::EtcdCluster::three().await;
    let (pa, ma, pb, mb) = (
        metrics_port(),
        metrics_port(),
        metrics_port(),
        metrics_port(),
    );
    let mut a = replica_process(&cluster, "/lead/", pa, ma, "2s");
    eventually("A leads", || leads(ma)).await;
    let mut b = replica_process(&cluster, "/lead/", pb, mb, "2s");
    let b_url = format!("http://127.0.0.1:{pb}");
    eventually("B serves", || {
        let url = b_url.clone();
        async move {
            v1::federation_client::FederationClient::connect(url)
                .await
                .is_ok()
        }
    })
    .await;
    assert!(!leads(mb).await, "only one replica leads");

    // c1's agent is on A, which dies; c2 and c3 are on B.
    let a_url = format!("http://127.0.0.1:{pa}");
    let mut c1 = TestAgent::connect(&a_url, "c1").await;
    let mut c2 = TestAgent::connect(&b_url, "c2").await;
    let mut c3 = TestAgent::connect(&b_url, "c3").await;
    let mut api = client(&b_url).await;
    // Without rebalance, in c1 only: its work waits for c1 whatever happens to c1.
    let only_c1 = r#"{"clusters": {"c1": {"weight": 1}}}"#;
    create(&mut api, manifest("survivor", 2, Some(4), Some(only_c1)))
        .await
        .unwrap();
    // With rebalance, over c2 and c3: 1 pod and 2 completions each.
    let moving = r#"{"rebalance": true, "clusters": {"c2": {"weight": 1}, "c3": {"weight": 1}}}"#;
    create(&mut api, manifest("moving", 2, Some(4), Some(moving)))
        .await
        .unwrap();
    c1.until("the shard", |a| {
        a.shards_of("survivor").contains_key("survivor")
    })
    .await;
    for agent in [&mut c2, &mut c3] {
        agent
            .until("the shard", |a| {
                a.shards_of("moving").contains_key("moving")
            })
            .await;
        assert_eq!(
            TestAgent::counts(&agent.shards_of("moving")["moving"]),
            (1, Some(2))
        );
    }
    let running = c2.shards_of("moving")["moving"].clone();
    c2.report(vec![TestAgent::status(
        &running,
        ShardPhase::Running,
        1,
        0,
        0,
    )])
    .await;

    a.kill().unwrap();
    a.wait().unwrap();
    let killed = Instant::now();
    eventually("B leads", || leads(mb)).await;
    let takeover = killed.elapsed();
    println!("leader killed -> another replica leads in {takeover:?} (lease TTL 2s)");
    assert!(takeover < Duration::from_secs(4), "took {takeover:?}");

    // As a restarted syncer: it finds its shard in the cluster but holds no assignment.
    let held: Vec<v1::ShardStatus> = c1
        .assignments
        .values()
        .map(|a| v1::ShardStatus {
            revision: 0,
            ..TestAgent::status(a, ShardPhase::Running, 2, 1, 0)
        })
        .collect();
    drop(c1);
    let again = TestAgent::connect_holding(&b_url, "c1", held).await;
    again.complete_all("survivor").await;
    eventually("the Job completes through B", || {
        let mut api = api.clone();
        async move { get_json(&mut api, "survivor").await["status"]["succeeded"] == 4 }
    })
    .await;

    // Failover, by the new leader: c2 falls silent; past the grace (2 s) and the failover
    // delay (the grace again) its 2 unfinished completions move to c3.
    c2.set_heartbeats(false);
    c3.until("c2's unfinished work", |a| {
        a.shards_of("moving").contains_key("moving-2")
    })
    .await;
    assert_eq!(
        TestAgent::counts(&c3.shards_of("moving")["moving-2"]).1,
        Some(2),
        "2 planned in c2, none done"
    );
    let job = get_json(&mut api, "moving").await;
    assert_eq!(
        shards_in(&job, "c3"),
        [("moving".to_owned(), 2), ("moving-2".to_owned(), 2)],
        "{job}"
    );

    // TTL clean-up, by the new leader.
    let mut cleaned: serde_json::Value = serde_yaml::from_str(&manifest(
        "cleaned",
        1,
        Some(1),
        Some(r#"{"clusters": {"c3": {"weight": 1}}}"#),
    ))
    .unwrap();
    cleaned["spec"]["ttlSecondsAfterFinished"] = serde_json::json!(1);
    create(&mut api, cleaned.to_string()).await.unwrap();
    c3.until("the shard", |a| {
        a.shards_of("cleaned").contains_key("cleaned")
    })
    .await;
    c3.complete_all("cleaned").await;
    eventually("the finished Job deleted after its TTL", || {
        let mut api = api.clone();
        async move {
            let got = api
                .get_job(v1::GetJobRequest {
                    name: "cleaned".into(),
                    ..Default::default()
                })
                .await;
            got.is_err_and(|e| e.code() == Code::NotFound)
        }
    })
    .await;
    let _ = b.kill();
    let _ = b.wait();
}

/// Connects an agent for `cluster` to `url` as a syncer would: retrying while the cluster's
/// previous stream is still recorded as attached elsewhere.
async fn connect_retrying(url: &str, cluster: &str) -> TestAgent {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut agent = v1::agent_client::AgentClient::connect(url.to_owned())
            .await
            .unwrap();
        let attempt = agent
            .register(v1::RegisterRequest {
                cluster: cluster.into(),
                ..Default::default()
            })
            .await;
        match attempt {
            Ok(_) => return TestAgent::connect(url, cluster).await,
            Err(e) if e.code() == Code::FailedPrecondition && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{cluster} refused: {e}"),
        }
    }
}

/// A cluster's liveness rides on the lease of the replica its agent talks to: when that
/// replica dies, a cluster whose agent moves to another replica within the grace stays Ready
/// (SPEC §6: NotReady means silent for the grace), one whose agent does not becomes NotReady,
/// and a cluster on the surviving replica is Ready throughout. Lease 2 s, grace 5 s.
#[tokio::test]
async fn a_cluster_s_liveness_when_the_replica_its_agent_talks_to_dies() {
    const GRACE: Duration = Duration::from_secs(5);
    const LEASE_TTL: Duration = Duration::from_secs(2);
    let cluster = etcd::EtcdCluster::single().await;
    let (pa, ma) = (metrics_port(), metrics_port());
    let mut a = replica_process(&cluster, "/live/", pa, ma, "5s");
    let a_url = format!("http://127.0.0.1:{pa}");
    eventually("A serves", || {
        let url = a_url.clone();
        async move {
            v1::federation_client::FederationClient::connect(url)
                .await
                .is_ok()
        }
    })
    .await;
    let (_b, b_url) = replica(&cluster, "/live/", "5s").await;
    let moves = TestAgent::connect(&a_url, "c1").await;
    let stays_away = TestAgent::connect(&a_url, "c2").await;
    let _on_b = TestAgent::connect(&b_url, "c3").await;
    eventually("every cluster Ready on B", || async {
        let mut ready = true;
        for c in ["c1", "c2", "c3"] {
            ready &= state_of(&b_url, c).await == "Ready";
        }
        ready
    })
    .await;

    a.kill().unwrap();
    a.wait().unwrap();
    let killed = Instant::now();
    drop(moves);
    drop(stays_away);
    let watcher = {
        let b_url = b_url.clone();
        tokio::spawn(async move {
            // (c1, c2, c3) as B says, every 50 ms, until c2 is NotReady or 15 s passed.
            let mut seen: Vec<(Duration, [String; 3])> = Vec::new();
            while killed.elapsed() < Duration::from_secs(15) {
                let states = [
                    state_of(&b_url, "c1").await,
                    state_of(&b_url, "c2").await,
                    state_of(&b_url, "c3").await,
                ];
                let done = states[1] == "NotReady";
                if seen.last().is_none_or(|(_, last)| *last != states) {
                    seen.push((killed.elapsed(), states));
                }
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        })
    };
    let _moved = connect_retrying(&b_url, "c1").await;
    let reconnected = killed.elapsed();
    let seen = watcher.await.unwrap();
    let story = format!("c1 back on B after {reconnected:?}; (c1, c2, c3) on B: {seen:?}");
    println!("{story}");
    assert!(
        seen.iter()
            .all(|(_, [c1, _, c3])| c1 == "Ready" && c3 == "Ready"),
        "c1 moved within the grace and c3 never left: {story}"
    );
    let (at, last) = seen.last().unwrap();
    assert_eq!(last[1], "NotReady", "{story}");
    // A's lease ran out at most 2 s after it died; c2 was heard then at the latest.
    assert!(
        *at >= GRACE - LEASE_TTL && *at < GRACE + Duration::from_secs(5),
        "c2 NotReady {at:?} after its replica died, grace {GRACE:?}: {story}"
    );
    let clusters = client(&b_url)
        .await
        .list_clusters(v1::ListClustersRequest {})
        .await
        .unwrap()
        .into_inner();
    let connected: Vec<(String, bool)> = clusters
        .items
        .iter()
        .map(|c| (c.name.clone(), c.connected))
        .collect();
    assert_eq!(
        connected,
        [("c1", true), ("c2", false), ("c3", true)].map(|(c, on)| (c.to_owned(), on))
    );
}

#[tokio::test]
async fn the_federation_keeps_working_when_one_etcd_member_of_three_dies() {
    let mut cluster = etcd::EtcdCluster::three().await;
    let (_a, a) = replica(&cluster, "/member/", "30s").await;
    let mut api = client(&a).await;
    create(&mut api, manifest("before", 1, Some(1), None))
        .await
        .unwrap();
    cluster.members[0].kill();
    let mut created = 0;
    for i in 0..20 {
        // A write in flight when the member died may be refused once; later ones go through.
        if create(&mut api, manifest(&format!("after-{i}"), 1, Some(1), None))
            .await
            .is_ok()
        {
            created += 1;
        }
    }
    assert!(created >= 19, "only {created} of 20 creates went through");
    let list = api
        .list_jobs(v1::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.items.len(), created + 1);
}
