//! Test support: a real scheduler on 127.0.0.1:0 with a temporary data dir, a user client, and
//! a test agent that speaks the real agent protocol over gRPC.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fedjob_proto::v1::{
    self, AgentMessage, Assignment, AssignmentAction, SchedulerMessage, agent_client::AgentClient,
    agent_message::Msg, federation_client::FederationClient, scheduler_message,
};
use fedjob_scheduler::config::Config;
use fedjob_scheduler::server::{self, Running};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// A scheduler for one test.
pub struct TestScheduler {
    pub running: Running,
    pub url: String,
    pub dir: tempfile::TempDir,
}

/// Starts a scheduler with the given cluster grace period.
pub async fn start(grace: Duration) -> TestScheduler {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir, grace).await
}

/// Starts a scheduler on an existing data dir.
pub async fn start_in(dir: tempfile::TempDir, grace: Duration) -> TestScheduler {
    let data_dir = dir.path().display().to_string();
    let grace = format!("{}ms", grace.as_millis());
    let config = Config::try_parse_from([
        "fedjob-scheduler",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
        "--metrics-listen",
        "127.0.0.1:0",
        "--cluster-grace",
        &grace,
    ])
    .unwrap();
    let running = server::start(config).await.expect("scheduler starts");
    let url = format!("http://{}", running.addr);
    TestScheduler { running, url, dir }
}

/// A user API client.
pub async fn client(url: &str) -> FederationClient<Channel> {
    FederationClient::connect(url.to_owned())
        .await
        .expect("connects")
}

/// Polls `check` until it holds, for at most 20 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits until Job `name` is Complete; returns it (SPEC §5 shape).
pub async fn wait_complete(api: &FederationClient<Channel>, name: &str) -> serde_json::Value {
    eventually("the Job is Complete", || {
        let mut api = api.clone();
        async move {
            let job = get_json(&mut api, name).await;
            job["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Complete"))
        }
    })
    .await;
    get_json(&mut api.clone(), name).await
}

/// A Job manifest as YAML.
pub fn manifest(
    name: &str,
    parallelism: i32,
    completions: Option<i32>,
    preferences: Option<&str>,
) -> String {
    let mut job = serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "test"}},
        "spec": {
            "parallelism": parallelism,
            "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "w", "image": "busybox", "command": ["sh", "-c", "echo hi"]}]}}
        }
    });
    if let Some(c) = completions {
        job["spec"]["completions"] = serde_json::json!(c);
    }
    if let Some(p) = preferences {
        job["metadata"]["annotations"] =
            serde_json::json!({"federation.kubernetes.io/job-preferences": p});
    }
    serde_yaml::to_string(&job).unwrap()
}

/// Creates a Job through the API.
pub async fn create(
    client: &mut FederationClient<Channel>,
    yaml: String,
) -> Result<v1::FederatedJob, tonic::Status> {
    client
        .create_job(v1::CreateJobRequest {
            manifest: yaml,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// The Job's JSON (SPEC §5 shape).
pub async fn get_json(client: &mut FederationClient<Channel>, name: &str) -> serde_json::Value {
    let job = client
        .get_job(v1::GetJobRequest {
            namespace: String::new(),
            name: name.into(),
        })
        .await
        .unwrap()
        .into_inner();
    fedjob_scheduler::api::convert::federated_job_json(&job)
}

/// An agent speaking the real protocol; it keeps every assignment it was sent.
pub struct TestAgent {
    pub cluster: String,
    tx: mpsc::Sender<AgentMessage>,
    rx: Streaming<SchedulerMessage>,
    /// (job uid, shard name) → the latest assignment.
    pub assignments: BTreeMap<(String, String), Assignment>,
    /// Every assignment in arrival order.
    pub log: Vec<Assignment>,
    heartbeating: Arc<AtomicBool>,
    heartbeats: tokio::task::JoinHandle<()>,
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        // The heartbeat task holds a sender too: stop it so the stream really ends.
        self.heartbeats.abort();
    }
}

impl TestAgent {
    /// Registers `cluster` and opens its session holding nothing.
    pub async fn connect(url: &str, cluster: &str) -> Self {
        Self::connect_holding(url, cluster, vec![]).await
    }

    /// Registers `cluster` and opens its session, reporting `held` in hello.
    pub async fn connect_holding(url: &str, cluster: &str, held: Vec<v1::ShardStatus>) -> Self {
        Self::connect_labelled(url, cluster, &[("region", "test")], held).await
    }

    /// Registers `cluster` with `labels` and opens its session, reporting `held` in hello.
    pub async fn connect_labelled(
        url: &str,
        cluster: &str,
        labels: &[(&str, &str)],
        held: Vec<v1::ShardStatus>,
    ) -> Self {
        let mut client = AgentClient::connect(url.to_owned()).await.unwrap();
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let reg = client
            .register(v1::RegisterRequest {
                cluster: cluster.into(),
                labels,
                agent_version: "test".into(),
            })
            .await
            .expect("registers")
            .into_inner();
        let (tx, rx) = mpsc::channel(64);
        let hello = v1::Hello {
            cluster: cluster.into(),
            session: reg.session,
            held,
        };
        tx.send(AgentMessage {
            msg: Some(Msg::Hello(hello)),
        })
        .await
        .unwrap();
        let stream = client
            .session(ReceiverStream::new(rx))
            .await
            .expect("session opens")
            .into_inner();
        let heartbeating = Arc::new(AtomicBool::new(true));
        let (hb_tx, flag) = (tx.clone(), heartbeating.clone());
        let heartbeats = tokio::spawn(async move {
            let mut seq = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if !flag.load(Ordering::Relaxed) {
                    continue;
                }
                seq += 1;
                let hb = AgentMessage {
                    msg: Some(Msg::Heartbeat(v1::Heartbeat { seq })),
                };
                if hb_tx.send(hb).await.is_err() {
                    return;
                }
            }
        });
        let mut agent = Self {
            cluster: cluster.into(),
            tx,
            rx: stream,
            assignments: BTreeMap::new(),
            log: Vec::new(),
            heartbeating,
            heartbeats,
        };
        agent.until_synced().await;
        agent
    }

    /// Connects an agent for each of `clusters`.
    pub async fn connect_all(url: &str, clusters: &[&str]) -> Vec<Self> {
        let mut agents = Vec::new();
        for c in clusters {
            agents.push(Self::connect(url, c).await);
        }
        agents
    }

    /// Receives assignments until one for Job `name` arrived at each of `agents`.
    pub async fn until_each_has(agents: &mut [Self], name: &str) {
        for agent in agents {
            agent
                .until("the shard arrives", |a| !a.shards_of(name).is_empty())
                .await;
        }
    }

    /// Stops (or resumes) heartbeats, keeping the stream open.
    pub fn set_heartbeats(&self, on: bool) {
        self.heartbeating.store(on, Ordering::Relaxed);
    }

    /// Receives one batch of assignments; returns whether it was the end of the initial sync.
    async fn next_batch(&mut self) -> bool {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), self.rx.message())
                .await
                .expect("a message within 20 s")
                .expect("stream healthy")
                .expect("stream open");
            if let Some(scheduler_message::Msg::Assignments(batch)) = msg.msg {
                for a in batch.assignments {
                    self.log.push(a.clone());
                    self.assignments
                        .insert((a.job_uid.clone(), a.shard.clone()), a);
                }
                return batch.synced;
            }
        }
    }

    async fn until_synced(&mut self) {
        while !self.next_batch().await {}
    }

    /// Receives assignments until `check` holds, for at most 20 s (heartbeat acknowledgements
    /// keep arriving meanwhile, so the deadline covers the whole wait, not one message).
    pub async fn until(&mut self, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !check(self) {
            if tokio::time::timeout_at(deadline, self.next_batch())
                .await
                .is_err()
            {
                panic!("timed out waiting for: {what}");
            }
        }
    }

    /// The latest assignments for Job `name`, by shard name.
    pub fn shards_of(&self, name: &str) -> BTreeMap<String, Assignment> {
        self.assignments
            .values()
            .filter(|a| {
                a.shard == name
                    || a.shard
                        .strip_prefix(name)
                        .is_some_and(|s| s.starts_with('-'))
            })
            .map(|a| (a.shard.clone(), a.clone()))
            .collect()
    }

    /// Manifest counts of a RUN assignment: (parallelism, completions).
    pub fn counts(a: &Assignment) -> (i64, Option<i64>) {
        let m: serde_json::Value = serde_json::from_str(&a.manifest).unwrap();
        (
            m["spec"]["parallelism"].as_i64().unwrap(),
            m["spec"]["completions"].as_i64(),
        )
    }

    /// Whether `a` is a RUN assignment.
    pub fn is_run(a: &Assignment) -> bool {
        a.action == AssignmentAction::Run as i32
    }

    /// Reports shard status.
    pub async fn report(&self, shards: Vec<v1::ShardStatus>) {
        let msg = AgentMessage {
            msg: Some(Msg::Status(v1::ShardStatusReport { shards })),
        };
        self.tx.send(msg).await.unwrap();
    }

    /// A status for assignment `a`.
    pub fn status(
        a: &Assignment,
        phase: v1::ShardPhase,
        active: i32,
        succeeded: i32,
        failed: i32,
    ) -> v1::ShardStatus {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let ts = prost_types::Timestamp {
            seconds: now.as_secs() as i64,
            nanos: 0,
        };
        v1::ShardStatus {
            job_uid: a.job_uid.clone(),
            namespace: a.namespace.clone(),
            shard: a.shard.clone(),
            epoch: a.epoch,
            revision: a.revision,
            phase: phase as i32,
            active,
            succeeded,
            failed,
            start_time: Some(ts),
            completion_time: (phase == v1::ShardPhase::Complete).then_some(ts),
            local_uid: format!("local-{}", a.shard),
            ..Default::default()
        }
    }

    /// Reports every RUN shard of `name` Complete with all its completions.
    pub async fn complete_all(&self, name: &str) {
        let statuses = self
            .shards_of(name)
            .values()
            .filter(|a| Self::is_run(a))
            .map(|a| {
                let (_, c) = Self::counts(a);
                Self::status(a, v1::ShardPhase::Complete, 0, c.unwrap_or(1) as i32, 0)
            })
            .collect();
        self.report(statuses).await;
    }
}
