//! A simulated member-cluster agent: registers, keeps one `Session` stream open over its own
//! gRPC connection, heartbeats at the interval the scheduler asks for, takes note of every RUN
//! assignment it receives and reports shards Running as a syncer would after applying them.
//!
//! It runs no Kubernetes: it measures the scheduler, not a cluster.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use fedjob_proto::shutdown::Shutdown;
use fedjob_proto::v1::{
    self, AgentMessage, AssignmentAction, SchedulerMessage, agent_client::AgentClient,
    agent_message::Msg, scheduler_message,
};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

use super::capacity::{AgentCapacity, CapacityFeed};
use super::stats::Clock;
use super::tracker::{JobTracker, StatusProbes, cluster_name, job_index};

/// How long an agent waits for the scheduler at each step of connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a held-back status report waits for its probe's watch to open.
const PROBE_WAIT: Duration = Duration::from_secs(60);

/// What every agent of a run shares.
#[derive(Debug, Clone)]
pub struct AgentContext {
    /// The run's clock.
    pub clock: Clock,
    /// Where RUN receipts go.
    pub tracker: Arc<JobTracker>,
    /// The sampled Jobs whose status is probed.
    pub probes: Arc<StatusProbes>,
    /// Report every shard Running (as a syncer would), not only the sampled ones.
    pub report_all: bool,
    /// With `--nodes-per-cluster`: report a simulated cluster's capacity after heartbeats.
    pub capacity: Option<CapacityFeed>,
    /// Fires when the run is over.
    pub stop: Shutdown,
}

/// What one agent counted; summed over agents for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AgentCounters {
    /// Assignments received, of any action.
    pub assignments: u64,
    /// Distinct shards that got a RUN assignment.
    pub runs: u64,
    /// Shard status entries sent.
    pub reports: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Heartbeats acknowledged.
    pub heartbeat_acks: u64,
    /// Slowest heartbeat → acknowledgement, microseconds.
    pub max_heartbeat_rtt_us: u64,
}

impl AgentCounters {
    /// Adds `other`'s counts (the maximum for the RTT).
    pub fn add(&mut self, other: &Self) {
        self.assignments += other.assignments;
        self.runs += other.runs;
        self.reports += other.reports;
        self.heartbeats += other.heartbeats;
        self.heartbeat_acks += other.heartbeat_acks;
        self.max_heartbeat_rtt_us = self.max_heartbeat_rtt_us.max(other.max_heartbeat_rtt_us);
    }
}

/// A connected agent, running in its own tasks.
pub struct SimAgent {
    /// Cluster index.
    pub index: usize,
    /// The heartbeat interval the scheduler asked for.
    pub heartbeat_interval: Duration,
    reader: JoinHandle<anyhow::Result<AgentCounters>>,
    heartbeats: JoinHandle<()>,
    sent: Arc<Mutex<Sent>>,
}

/// Heartbeats in flight, shared by the heartbeat task and the reader.
#[derive(Debug, Default)]
struct Sent {
    in_flight: VecDeque<(u64, u64)>,
    heartbeats: u64,
    reports: u64,
}

impl SimAgent {
    /// Connects agent `index` (cluster `c-INDEX`) to `url` and waits for the end of its initial
    /// sync.
    pub async fn connect(url: &str, index: usize, ctx: AgentContext) -> anyhow::Result<Self> {
        let cluster = cluster_name(index);
        let channel = Endpoint::from_shared(url.to_owned())?
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .with_context(|| format!("{cluster}: connecting to {url}"))?;
        let mut client = AgentClient::new(channel);
        let reg = tokio::time::timeout(
            CONNECT_TIMEOUT,
            client.register(v1::RegisterRequest {
                cluster: cluster.clone(),
                labels: [("fedjob.io/bench".to_owned(), "true".to_owned())].into(),
                agent_version: "fedjob-bench".into(),
            }),
        )
        .await
        .map_err(|_| anyhow!("{cluster}: Register timed out"))?
        .with_context(|| format!("{cluster}: Register"))?
        .into_inner();
        let (tx, rx) = mpsc::channel(256);
        tx.send(AgentMessage {
            msg: Some(Msg::Hello(v1::Hello {
                cluster: cluster.clone(),
                session: reg.session,
                held: vec![],
            })),
        })
        .await
        .map_err(|_| anyhow!("{cluster}: session channel closed"))?;
        let mut stream =
            tokio::time::timeout(CONNECT_TIMEOUT, client.session(ReceiverStream::new(rx)))
                .await
                .map_err(|_| anyhow!("{cluster}: Session timed out"))?
                .with_context(|| format!("{cluster}: Session"))?
                .into_inner();
        let mut reader = Reader {
            index,
            ctx: ctx.clone(),
            tx: tx.clone(),
            counters: AgentCounters::default(),
            runs: Bitset::default(),
            sent: Arc::default(),
        };
        tokio::time::timeout(CONNECT_TIMEOUT, reader.until_synced(&mut stream))
            .await
            .map_err(|_| anyhow!("{cluster}: no initial sync within {CONNECT_TIMEOUT:?}"))??;
        let interval = Duration::from_millis(reg.heartbeat_interval_ms.max(10));
        let sent = reader.sent.clone();
        let phase = phase(index);
        let capacity = ctx
            .capacity
            .clone()
            .map(|feed| AgentCapacity::new(feed, index as u64, phase));
        let heartbeats = tokio::spawn(heartbeat(
            tx,
            interval,
            interval.mul_f64(phase),
            ctx.clock,
            sent.clone(),
            capacity,
            ctx.stop.clone(),
        ));
        let reader = tokio::spawn(async move { reader.run(stream, client).await });
        Ok(Self {
            index,
            heartbeat_interval: interval,
            reader,
            heartbeats,
            sent,
        })
    }

    /// Stops the agent (the run's stop signal must have fired) and returns its counts, or why
    /// its session ended early.
    pub async fn finish(self) -> anyhow::Result<AgentCounters> {
        let mut counters = match tokio::time::timeout(Duration::from_secs(10), self.reader).await {
            Ok(joined) => joined.map_err(|e| anyhow!("agent task: {e}"))??,
            Err(_) => bail!("{}: did not stop", cluster_name(self.index)),
        };
        self.heartbeats.abort();
        let sent = self.sent.lock();
        counters.heartbeats = sent.heartbeats;
        counters.reports = sent.reports;
        Ok(counters)
    }
}

/// Where in the heartbeat interval agent `index` sends (and in the change interval its
/// simulated cluster changes), as a share of it: spread evenly over the interval for any
/// number of agents (multiples of the golden ratio, modulo 1). Member clusters' syncers start
/// independently; agents that connected together and sent in step would let the scheduler take
/// every heartbeat in one wake-up, which no federation sees, and anything that shifted them
/// apart (a busy bench) would look like a cost of the scheduler.
fn phase(index: usize) -> f64 {
    (index as f64 * 0.618_033_988_749_895).fract()
}

/// Sends a heartbeat at once and then every `interval`, `phase` into it, until the run stops,
/// each followed by a capacity report when the cluster reports one and it changed (the
/// syncer's debounce).
async fn heartbeat(
    tx: mpsc::Sender<AgentMessage>,
    interval: Duration,
    phase: Duration,
    clock: Clock,
    sent: Arc<Mutex<Sent>>,
    mut capacity: Option<AgentCapacity>,
    stop: Shutdown,
) {
    // The first heartbeat goes at once, as the session opens; the later ones at the phase.
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + interval + phase, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut late = Duration::ZERO;
    let mut seq = 0u64;
    loop {
        if seq > 0 {
            late = tokio::select! {
                due = tick.tick() => due.elapsed(),
                _ = stop.fired() => return,
            };
        }
        seq += 1;
        {
            let mut sent = sent.lock();
            sent.in_flight.push_back((seq, clock.now_us()));
            sent.heartbeats += 1;
        }
        let hb = AgentMessage {
            msg: Some(Msg::Heartbeat(v1::Heartbeat { seq })),
        };
        if tx.send(hb).await.is_err() {
            return;
        }
        if let Some(report) = capacity.as_mut().and_then(|c| c.after_heartbeat(late))
            && tx.send(report).await.is_err()
        {
            return;
        }
    }
}

/// The receiving side of a session.
struct Reader {
    index: usize,
    ctx: AgentContext,
    tx: mpsc::Sender<AgentMessage>,
    counters: AgentCounters,
    runs: Bitset,
    sent: Arc<Mutex<Sent>>,
}

impl Reader {
    async fn until_synced(
        &mut self,
        stream: &mut Streaming<SchedulerMessage>,
    ) -> anyhow::Result<()> {
        loop {
            let message = stream
                .message()
                .await?
                .ok_or_else(|| anyhow!("session ended before the initial sync"))?;
            if self.handle(message).await? {
                return Ok(());
            }
        }
    }

    /// Reads until the run stops. The client is kept so that its connection lives as long.
    async fn run(
        mut self,
        mut stream: Streaming<SchedulerMessage>,
        _client: AgentClient<Channel>,
    ) -> anyhow::Result<AgentCounters> {
        let cluster = cluster_name(self.index);
        let stop = self.ctx.stop.clone();
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = stop.fired() => return Ok(self.counters),
            };
            match message {
                Ok(Some(m)) => {
                    self.handle(m).await?;
                }
                // The run is over: the session may end at any moment now.
                Ok(None) | Err(_) if stop.is_fired() => return Ok(self.counters),
                Ok(None) => bail!("{cluster}: the scheduler ended the session"),
                Err(e) => bail!("{cluster}: session broke: {e}"),
            }
        }
    }

    /// Handles one message; returns whether it ended the initial sync.
    async fn handle(&mut self, message: SchedulerMessage) -> anyhow::Result<bool> {
        match message.msg {
            Some(scheduler_message::Msg::HeartbeatAck(ack)) => {
                let now = self.ctx.clock.now_us();
                let mut sent = self.sent.lock();
                while let Some(&(seq, at)) = sent.in_flight.front() {
                    if seq > ack.seq {
                        break;
                    }
                    sent.in_flight.pop_front();
                    if seq == ack.seq {
                        self.counters.heartbeat_acks += 1;
                        self.counters.max_heartbeat_rtt_us =
                            self.counters.max_heartbeat_rtt_us.max(now - at);
                        if let Some(feed) = &self.ctx.capacity {
                            feed.tally.acked(now - at);
                        }
                    }
                }
                Ok(false)
            }
            Some(scheduler_message::Msg::Assignments(batch)) => {
                let now = self.ctx.clock.now_us();
                self.counters.assignments += batch.assignments.len() as u64;
                let mut reports = Vec::new();
                for a in batch.assignments {
                    if a.action != AssignmentAction::Run as i32 {
                        continue;
                    }
                    // The first shard of a Job in a cluster has the Job's name.
                    let Some(idx) = job_index(&a.shard) else {
                        continue;
                    };
                    if !self.runs.insert(idx) {
                        continue;
                    }
                    self.counters.runs += 1;
                    self.ctx.tracker.seen(idx, now);
                    let probe = self.ctx.probes.probe_of(idx);
                    match probe {
                        Some(k) => self.report_probe(k, &a),
                        None if self.ctx.report_all => reports.push(running(&a)),
                        None => {}
                    }
                }
                if !reports.is_empty() {
                    self.sent.lock().reports += reports.len() as u64;
                    let report = AgentMessage {
                        msg: Some(Msg::Status(v1::ShardStatusReport { shards: reports })),
                    };
                    self.tx
                        .send(report)
                        .await
                        .map_err(|_| anyhow!("session channel closed"))?;
                }
                Ok(batch.synced)
            }
            None => Ok(false),
        }
    }

    /// Reports a sampled shard Running once its probe's watch is open, so that the probe
    /// measures the status path, not the time the watch took to open.
    fn report_probe(&self, k: usize, a: &v1::Assignment) {
        let (ctx, tx, sent, a, c) = (
            self.ctx.clone(),
            self.tx.clone(),
            self.sent.clone(),
            a.clone(),
            self.index,
        );
        tokio::spawn(async move {
            if !ctx.probes.wait_open(k, PROBE_WAIT).await {
                return;
            }
            let now = ctx.clock.now_us();
            let report = AgentMessage {
                msg: Some(Msg::Status(v1::ShardStatusReport {
                    shards: vec![running(&a)],
                })),
            };
            ctx.probes.reported(k, c, now);
            sent.lock().reports += 1;
            let _ = tx.send(report).await;
        });
    }
}

/// What a syncer reports once it applied a RUN assignment and its pods started: Running, one
/// pod active per unit of parallelism.
fn running(a: &v1::Assignment) -> v1::ShardStatus {
    let parallelism = serde_json::from_str::<serde_json::Value>(&a.manifest)
        .ok()
        .and_then(|m| m["spec"]["parallelism"].as_i64())
        .unwrap_or(1) as i32;
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    v1::ShardStatus {
        job_uid: a.job_uid.clone(),
        namespace: a.namespace.clone(),
        shard: a.shard.clone(),
        epoch: a.epoch,
        revision: a.revision,
        phase: v1::ShardPhase::Running as i32,
        active: parallelism,
        start_time: Some(prost_types::Timestamp {
            seconds: wall.as_secs() as i64,
            nanos: 0,
        }),
        // API servers make uids as UUIDs, and the scheduler holds those in 16 bytes.
        local_uid: uuid::Uuid::new_v4().to_string(),
        parallelism,
        ..Default::default()
    }
}

/// A growable set of small integers.
#[derive(Debug, Default)]
struct Bitset(Vec<u64>);

impl Bitset {
    /// Adds `i`; returns whether it was new.
    fn insert(&mut self, i: usize) -> bool {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_phases_spread_over_the_interval_for_any_number_of_agents() {
        for agents in 2..=1000usize {
            let mut phases: Vec<f64> = (0..agents).map(phase).collect();
            phases.sort_by(f64::total_cmp);
            assert!(phases[0] == 0.0 && phases[agents - 1] < 1.0);
            // Golden-ratio steps leave at most three gap sizes, the widest under twice the even
            // gap (1.89 times it at worst up to 1,000 agents).
            let widest = phases
                .windows(2)
                .map(|w| w[1] - w[0])
                .chain([1.0 - phases[agents - 1]])
                .fold(0.0, f64::max);
            assert!(
                widest < 2.0 / agents as f64,
                "{agents} agents: gap {widest}"
            );
        }
    }

    #[test]
    fn bitset_reports_new_members_once() {
        let mut b = Bitset::default();
        assert!(b.insert(3));
        assert!(!b.insert(3));
        assert!(b.insert(1000));
        assert!(!b.insert(1000));
        assert!(b.insert(64));
    }

    #[test]
    fn a_running_report_carries_the_assignment_and_its_parallelism() {
        let a = v1::Assignment {
            job_uid: "u".into(),
            namespace: "default".into(),
            shard: "bench-000001".into(),
            epoch: 2,
            revision: 5,
            manifest: r#"{"spec":{"parallelism":3}}"#.into(),
            ..Default::default()
        };
        let s = running(&a);
        assert_eq!((s.epoch, s.revision, s.active, s.parallelism), (2, 5, 3, 3));
        assert!(
            uuid::Uuid::try_parse(&s.local_uid).is_ok(),
            "{}",
            s.local_uid
        );
        assert_eq!(s.phase, v1::ShardPhase::Running as i32);
        assert_eq!(s.job_uid, "u");
    }
}
