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
    let mut agents = Vec::new();
    for c in ["c1", "c2", "c3"] {
        agents.push(TestAgent::connect(&a, c).await);
    }
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
        .args(["--cluster-grace", "2s", "--lease-ttl", "2s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn another_replica_leads_within_the_lease_ttl_when_the_leader_is_killed() {
    let cluster = etcd::EtcdCluster::three().await;
    let (pa, ma, pb, mb) = (
        metrics_port(),
        metrics_port(),
        metrics_port(),
        metrics_port(),
    );
    let mut a = replica_process(&cluster, "/lead/", pa, ma);
    eventually("A leads", || leads(ma)).await;
    let mut b = replica_process(&cluster, "/lead/", pb, mb);
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

    // An agent on A runs a shard of a Job with rebalance; A dies; the agent moves to B.
    let a_url = format!("http://127.0.0.1:{pa}");
    let mut agent = TestAgent::connect(&a_url, "c1").await;
    let mut api = client(&b_url).await;
    create(&mut api, manifest("survivor", 2, Some(4), None))
        .await
        .unwrap();
    agent
        .until("the shard", |a| {
            a.shards_of("survivor").contains_key("survivor")
        })
        .await;

    a.kill().unwrap();
    a.wait().unwrap();
    let killed = Instant::now();
    eventually("B leads", || leads(mb)).await;
    let takeover = killed.elapsed();
    println!("leader killed -> another replica leads in {takeover:?} (lease TTL 2s)");
    assert!(takeover < Duration::from_secs(4), "took {takeover:?}");

    // As a restarted syncer: it finds its shard in the cluster but holds no assignment.
    let held: Vec<v1::ShardStatus> = agent
        .assignments
        .values()
        .map(|a| v1::ShardStatus {
            revision: 0,
            ..TestAgent::status(a, ShardPhase::Running, 2, 1, 0)
        })
        .collect();
    drop(agent);
    let again = TestAgent::connect_holding(&b_url, "c1", held).await;
    again.complete_all("survivor").await;
    eventually("the Job completes through B", || {
        let mut api = api.clone();
        async move { get_json(&mut api, "survivor").await["status"]["succeeded"] == 4 }
    })
    .await;
    let _ = b.kill();
    let _ = b.wait();
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
