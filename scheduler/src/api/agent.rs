//! The agent API, `fedjob.v1.Agent`: registration and the long-lived session stream of each
//! member cluster's syncer.
//!
//! A session runs three loops so that none waits on another: the *reader* takes messages off
//! the stream (heartbeats are handled at once, so a busy store never makes a cluster NotReady),
//! the *reporter* writes shard status to the store, coalescing whatever queued up meanwhile, and
//! the *dispatcher* sends the cluster what changed, comparing each Job with the version the
//! agent was last told of ([`agent_news`](super::agent_news)).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fedjob_proto::names;
use fedjob_proto::v1::{
    self, AgentMessage, AssignmentBatch, HeartbeatAck, SchedulerMessage, agent_message::Msg,
    agent_server::Agent, scheduler_message,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::agent_news::{News, Told, news};
use super::{convert, measured, status};
use crate::auth::Guard;
use crate::control_plane::{Changed, ControlPlane, SessionInbox, ShardReport};
use crate::metrics::ReasonLabels;
use crate::model::job::split_job_key;
use fedjob_proto::shutdown::Shutdown;

/// Assignments per message.
const BATCH: usize = 256;
/// Least time between two sends of changed assignments to one agent: changes that arrive
/// meanwhile go in one message. Under load a cluster gets an assignment for nearly every Job
/// created; sent one message each, the messages (encoding, HTTP/2 frames, the agent waking)
/// cost more than the assignments. Idle, a change is sent at once.
const COALESCE: Duration = Duration::from_millis(5);
/// How long an agent has to say hello after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `fedjob.v1.Agent`.
#[derive(Clone)]
pub struct AgentApi {
    cp: Arc<ControlPlane>,
    guard: Guard,
    shutdown: Shutdown,
    tasks: TaskTracker,
}

impl AgentApi {
    /// A service over `cp` checking agents with `guard`; sessions run as `tasks` and end when
    /// `shutdown` fires.
    pub fn new(
        cp: Arc<ControlPlane>,
        guard: Guard,
        shutdown: Shutdown,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            cp,
            guard,
            shutdown,
            tasks,
        }
    }

    fn refuse(&self, reason: &str, status: Status) -> Status {
        self.cp
            .metrics()
            .refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
        status
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<SchedulerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentApi {
    async fn register(
        &self,
        req: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        measured(self.cp.metrics(), "Agent/Register", async {
            self.guard.agent(&req, &req.get_ref().cluster)?;
            let r = req.into_inner();
            if let Err(rule) = names::check_cluster_name(&r.cluster) {
                return Err(self.refuse(
                    "invalid",
                    Status::invalid_argument(format!(
                        "cluster: Invalid value: \"{}\": {rule}",
                        r.cluster
                    )),
                ));
            }
            let labels: BTreeMap<String, String> = r.labels.into_iter().collect();
            let (session, epoch) = self
                .cp
                .register_cluster(&r.cluster, labels, &r.agent_version)
                .await
                .map_err(status)?;
            Ok(Response::new(v1::RegisterResponse {
                session,
                heartbeat_interval_ms: self.cp.settings().heartbeat_interval.as_millis() as u64,
                epoch,
                capacity_columns: true,
            }))
        })
        .await
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        let certificate = Guard::certificate_of(&req);
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(AgentMessage {
                msg: Some(Msg::Hello(hello)),
            }))) => hello,
            Ok(Err(e)) => return Err(e),
            _ => {
                return Err(self.refuse(
                    "no-hello",
                    Status::invalid_argument("the first message of a session must be hello"),
                ));
            }
        };
        self.guard.allow_agent(&certificate, &hello.cluster)?;
        let inbox = self
            .cp
            .attach_session(&hello.cluster, &hello.session)
            .await
            .map_err(|e| self.refuse("stale-session", status(e)))?;
        info!(cluster = %hello.cluster, held = hello.held.len(), "agent session open");
        let (tx, rx) = mpsc::channel(64);
        let session = Session {
            cp: self.cp.clone(),
            cluster: hello.cluster,
            token: hello.session,
            inbox,
            tx,
        };
        self.tasks
            .spawn(session.run(hello.held, inbound, self.shutdown.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct Session {
    cp: Arc<ControlPlane>,
    cluster: String,
    token: String,
    inbox: Arc<SessionInbox>,
    tx: mpsc::Sender<Result<SchedulerMessage, Status>>,
}

/// Why a session ended.
enum End {
    AgentClosed,
    Superseded,
    Shutdown,
    Refused(Status),
}

impl Session {
    async fn run(
        mut self,
        held: Vec<v1::ShardStatus>,
        inbound: Streaming<AgentMessage>,
        shutdown: Shutdown,
    ) {
        self.cp.heartbeat(&self.cluster).await;
        let end = self.serve(held, inbound, &shutdown).await;
        let reason = match end {
            End::AgentClosed => "agent closed the stream".to_owned(),
            End::Superseded => "a newer session replaced it".to_owned(),
            End::Shutdown => {
                let _ = self
                    .tx
                    .send(Err(Status::unavailable("the scheduler is shutting down")))
                    .await;
                "scheduler shutting down".to_owned()
            }
            End::Refused(s) => {
                let message = s.message().to_owned();
                let _ = self.tx.send(Err(s)).await;
                message
            }
        };
        self.cp
            .detach_session(&self.cluster, &self.token, &self.inbox)
            .await;
        self.cp.capacity().forget(&self.cluster, &self.token);
        self.cp.pending().forget(&self.cluster, &self.token);
        info!(cluster = %self.cluster, reason, "agent session closed");
    }

    async fn serve(
        &mut self,
        held: Vec<v1::ShardStatus>,
        inbound: Streaming<AgentMessage>,
        shutdown: &Shutdown,
    ) -> End {
        // What the agent holds is reported first, so that the answer accounts for it.
        let reports: Vec<ShardReport> = held.iter().map(convert::shard_report).collect();
        match self.cp.report(&self.cluster, reports).await {
            Ok(unknown) => {
                for r in unknown {
                    let forget = convert::forget(&r.job_uid, &r.namespace, &r.shard);
                    if self.send(vec![forget], false).await.is_err() {
                        return End::AgentClosed;
                    }
                }
            }
            Err(e) => warn!(cluster = %self.cluster, error = %e, "held shards not recorded"),
        }
        // What the agent holds is what it was told; later changes are compared with the
        // version posted before them.
        let mut held_by_job: HashMap<String, Told<'_>> = HashMap::new();
        for h in &held {
            if let Some(key) = self.cp.job_key_by_uid(&h.job_uid) {
                let told = held_by_job.entry(key).or_insert_with(|| Told {
                    uid: &h.job_uid,
                    shards: Vec::new(),
                });
                if told.uid == h.job_uid {
                    told.shards.push((&h.shard, h.revision));
                }
            }
        }
        // Changes posted since the session subscribed are older than the versions read below.
        drop(self.inbox.take());
        let mut all: HashSet<String> = self.cp.jobs_in_cluster(&self.cluster).into_iter().collect();
        all.extend(held_by_job.keys().cloned());
        // Collected first: dispatching borrows the session.
        let current: Vec<(Arc<str>, Changed)> = all
            .into_iter()
            .map(|key| {
                let change = Changed::current(self.cp.job(&key), &self.cluster);
                (key.into(), change)
            })
            .collect();
        if self.dispatch(current, Some(&held_by_job)).await.is_err() {
            return End::AgentClosed;
        }

        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let (forget_tx, mut forget_rx) = mpsc::unbounded_channel();
        let mut reader = tokio::spawn(read(
            self.cp.clone(),
            self.cluster.clone(),
            self.token.clone(),
            inbound,
            self.tx.clone(),
            report_tx,
        ));
        let reporter = tokio::spawn(report(
            self.cp.clone(),
            self.cluster.clone(),
            report_rx,
            forget_tx,
        ));
        let mut check = tokio::time::interval(Duration::from_secs(1));
        let mut reader_ended = false;
        let mut last_dispatch = tokio::time::Instant::now();
        let end = loop {
            tokio::select! {
                _ = self.inbox.notify.notified() => {
                    tokio::time::sleep_until(last_dispatch + COALESCE).await;
                    last_dispatch = tokio::time::Instant::now();
                    let changed = self.inbox.take();
                    if self.dispatch(changed, None).await.is_err() {
                        break End::AgentClosed;
                    }
                }
                Some(unknown) = forget_rx.recv() => {
                    let forgets: Vec<_> = unknown.iter().map(|r: &ShardReport| convert::forget(&r.job_uid, &r.namespace, &r.shard)).collect();
                    if self.send(forgets, false).await.is_err() {
                        break End::AgentClosed;
                    }
                }
                read = &mut reader => {
                    reader_ended = true;
                    break match read {
                        Ok(Some(refusal)) => End::Refused(refusal),
                        _ => End::AgentClosed,
                    };
                }
                _ = check.tick() => {
                    if !self.cp.session_current(&self.cluster, &self.token) {
                        break End::Superseded;
                    }
                }
                _ = shutdown.fired() => break End::Shutdown,
            }
        };
        // The reporter ends by itself once the reader is gone, after writing what was queued;
        // the session ends after it, so nothing it writes outlives the store.
        if !reader_ended {
            reader.abort();
            let _ = reader.await;
        }
        let _ = reporter.await;
        end
    }

    /// Sends the agent whatever changed in the given Jobs since it was last told: since the
    /// version posted before each change, or, when the session opens, since what the agent
    /// holds (`held`, by Job key).
    async fn dispatch(
        &self,
        changes: impl IntoIterator<Item = (Arc<str>, Changed)>,
        held: Option<&HashMap<String, Told<'_>>>,
    ) -> Result<(), ()> {
        let mut out = Vec::new();
        for (key, change) in changes {
            let before;
            let told = match held {
                Some(held) => held.get(&*key),
                None => {
                    before = change
                        .before
                        .as_ref()
                        .map(|b| Told::of(&b.record, change.shards_before()));
                    before.as_ref()
                }
            };
            tell(&key, told, &change, &mut out);
            if out.len() >= BATCH {
                self.send(std::mem::take(&mut out), false).await?;
            }
        }
        if !out.is_empty() || held.is_some() {
            self.send(out, held.is_some()).await?;
        }
        Ok(())
    }

    async fn send(&self, assignments: Vec<v1::Assignment>, synced: bool) -> Result<(), ()> {
        let count = assignments.len() as u64;
        let message = SchedulerMessage {
            msg: Some(scheduler_message::Msg::Assignments(AssignmentBatch {
                assignments,
                synced,
            })),
        };
        self.tx.send(Ok(message)).await.map_err(|_| ())?;
        self.cp.metrics().assignments_sent.inc_by(count);
        self.cp.metrics().assignment_messages.inc();
        debug!(cluster = %self.cluster, count, synced, "assignments sent");
        Ok(())
    }
}

/// Appends to `out` what an agent `told` so of Job `key` must be told for `change`.
fn tell(key: &str, told: Option<&Told<'_>>, change: &Changed, out: &mut Vec<v1::Assignment>) {
    let namespace = split_job_key(key).0;
    let now = change.job.as_deref().map(|j| (&j.record, change.shards()));
    news(told, now, |n| {
        out.push(match n {
            News::Assign { job, shard } => convert::assignment(job, &change.manifest, shard),
            News::Forget { uid, shard } => convert::forget(uid, namespace, shard),
        })
    });
}

/// Reads the agent's messages until the stream ends. Returns the refusal to send back when the
/// agent broke the protocol.
async fn read(
    cp: Arc<ControlPlane>,
    cluster: String,
    session: String,
    mut inbound: Streaming<AgentMessage>,
    tx: mpsc::Sender<Result<SchedulerMessage, Status>>,
    reports: mpsc::UnboundedSender<Vec<ShardReport>>,
) -> Option<Status> {
    loop {
        let message = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(e) => {
                debug!(cluster = %cluster, error = %e, "agent stream broke");
                return None;
            }
        };
        cp.heartbeat(&cluster).await;
        match message.msg {
            Some(Msg::Heartbeat(hb)) => {
                let ack = SchedulerMessage {
                    msg: Some(scheduler_message::Msg::HeartbeatAck(HeartbeatAck {
                        seq: hb.seq,
                    })),
                };
                if tx.send(Ok(ack)).await.is_err() {
                    return None;
                }
            }
            Some(Msg::Status(report)) => {
                let decoded = report.shards.iter().map(convert::shard_report).collect();
                if reports.send(decoded).is_err() {
                    return None;
                }
            }
            Some(Msg::Capacity(report)) => {
                let applied =
                    cp.capacity()
                        .apply(&cluster, &session, &report, jiff::Timestamp::now());
                if let Err(e) = applied {
                    warn!(cluster = %cluster, error = %e, "capacity report refused");
                    return Some(Status::invalid_argument(e.to_string()));
                }
                debug!(cluster = %cluster, full = report.full, groups = report.group_count(), "capacity reported");
            }
            Some(Msg::Pending(report)) => {
                cp.pending().apply(&cluster, &session, &report);
                debug!(cluster = %cluster, shards = report.shards.len(), "unschedulable shards reported");
            }
            Some(Msg::Hello(_)) | None => {
                cp.metrics()
                    .refused
                    .get_or_create(&ReasonLabels {
                        reason: "protocol".into(),
                    })
                    .inc();
                warn!(cluster = %cluster, "agent broke the protocol (second hello or empty message)");
                return Some(Status::invalid_argument(
                    "hello may only be the first message; every message needs a body",
                ));
            }
        }
    }
}

/// Writes shard status to the store, coalescing reports that queued up meanwhile.
async fn report(
    cp: Arc<ControlPlane>,
    cluster: String,
    mut queue: mpsc::UnboundedReceiver<Vec<ShardReport>>,
    forget: mpsc::UnboundedSender<Vec<ShardReport>>,
) {
    while let Some(mut batch) = queue.recv().await {
        while let Ok(more) = queue.try_recv() {
            batch.extend(more);
        }
        match cp.report(&cluster, batch).await {
            Ok(unknown) if !unknown.is_empty() => {
                let _ = forget.send(unknown);
            }
            Ok(_) => {}
            Err(e) => warn!(cluster = %cluster, error = %e, "shard status not recorded"),
        }
    }
}
