//! The agent's side of the `fedjob.v1.Agent` protocol: register, open the session stream with
//! a `Hello` listing every shard in the cluster, then keep it open (heartbeats up, assignments
//! down, shard status up as it changes) and open it again, with backoff, whenever it drops.
//!
//! Reading the stream runs in its own task and never waits on anything else, so a scheduler
//! that is busy sending assignments is never blocked by the agent's own sends (and the other
//! way round).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fedjob_proto::v1::{
    AgentMessage, Heartbeat, Hello, RegisterRequest, SchedulerMessage, ShardStatusReport,
    agent_client::AgentClient, agent_message::Msg, scheduler_message,
};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::context::Context;
use crate::state::shards::REPORT_CHUNK;
use fedjob_proto::capacity::ReportForm;
use fedjob_proto::shutdown::Shutdown;

/// How long to wait for a TCP/HTTP2 connection to a scheduler.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `Register` and opening the session may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// How long status changes are gathered before they are sent, so a burst goes as one report.
pub const COALESCE: Duration = Duration::from_millis(50);
/// A scheduler silent for this many heartbeat intervals is taken for gone.
const SILENCE_INTERVALS: u32 = 3;

/// What the connection needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Scheduler URLs, tried in turn.
    pub schedulers: Vec<String>,
    /// This member cluster's name.
    pub cluster: String,
    /// Labels sent at registration.
    pub labels: BTreeMap<String, String>,
    /// Longest time between heartbeats (the scheduler may ask for a shorter one).
    pub heartbeat_interval: Duration,
    /// TLS for `https://` schedulers.
    pub tls: Option<ClientTlsConfig>,
}

impl Settings {
    /// The connection settings of a configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        let tls = config.tls.as_ref().map(|t| {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&t.ca));
            if let Some((cert, key)) = &t.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            tls
        });
        Settings {
            schedulers: config.schedulers.clone(),
            cluster: config.cluster_name.clone(),
            labels: config.labels.clone(),
            heartbeat_interval: config.heartbeat_interval,
            tls,
        }
    }
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The URL cannot be used by the gRPC client.
    #[error("scheduler URL {url:?} is not usable: {source}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// No connection could be made.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The scheduler refused a call (`FAILED_PRECONDITION` while another live agent holds the
    /// cluster's name).
    #[error("{call} refused by {url}: {status}")]
    Refused {
        /// `Register` or `Session`.
        call: &'static str,
        /// The URL.
        url: String,
        /// The scheduler's answer.
        status: tonic::Status,
    },
    /// A call did not answer in time.
    #[error("{call} to {url} timed out")]
    Timeout {
        /// `Register` or `Session`.
        call: &'static str,
        /// The URL.
        url: String,
    },
}

/// How an open session ended.
#[derive(Debug)]
enum End {
    /// The syncer is stopping.
    Shutdown,
    /// The stream is gone; `synced` tells whether it had been fully established.
    Lost {
        /// Why.
        reason: String,
        /// The scheduler had sent its `synced` batch.
        synced: bool,
    },
}

/// Keeps the syncer connected to a scheduler until `shutdown` fires.
pub async fn run(ctx: Arc<Context>, settings: Settings, shutdown: Shutdown) {
    tokio::select! {
        _ = ctx.shards.listed() => {}
        _ = shutdown.fired() => return,
    }
    let mut backoff = Backoff::reconnect();
    // The heartbeat interval the last scheduler asked for: reconnects are never slower.
    let mut interval = None;
    let mut index = 0usize;
    loop {
        let url = &settings.schedulers[index % settings.schedulers.len()];
        let outcome = session(&ctx, &settings, url, &shutdown, &mut interval).await;
        if let Some(i) = interval.take() {
            backoff.limit_reconnect(i);
        }
        match outcome {
            Ok(End::Shutdown) => return,
            Ok(End::Lost { reason, synced }) => {
                warn!(cluster = %settings.cluster, scheduler = %url, reason, "session lost; reconnecting");
                // The reason first, so that `/readyz` never says "not ready" without it.
                ctx.metrics
                    .session_failed(format!("{url}: session lost: {reason}"));
                ctx.metrics.set_in_sync(false);
                if synced {
                    backoff.reset();
                }
            }
            Err(e) => {
                warn!(cluster = %settings.cluster, scheduler = %url, error = %e, "cannot open a session");
                ctx.metrics
                    .session_failed(format!("{url}: cannot open a session: {e}"));
                index = index.wrapping_add(1);
            }
        }
        let delay = backoff.next_delay();
        debug!(cluster = %settings.cluster, delay_ms = delay.as_millis() as u64, "waiting before reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.fired() => return,
        }
    }
}

/// The heartbeat interval to use: ours, or the scheduler's when it asks for a shorter one.
pub fn effective_interval(ours: Duration, scheduler_ms: u64) -> Duration {
    if scheduler_ms == 0 {
        ours
    } else {
        ours.min(Duration::from_millis(scheduler_ms))
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn connect(url: &str, tls: Option<&ClientTlsConfig>) -> Result<Channel, ConnectionError> {
    let mut endpoint =
        Endpoint::from_shared(url.to_owned()).map_err(|source| ConnectionError::Url {
            url: url.to_owned(),
            source,
        })?;
    if url.starts_with("https://")
        && let Some(tls) = tls
    {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|source| ConnectionError::Url {
                url: url.to_owned(),
                source,
            })?;
    }
    let endpoint = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    endpoint
        .connect()
        .await
        .map_err(|source| ConnectionError::Connect {
            url: url.to_owned(),
            source,
        })
}

/// One session: register, hello, then serve until the stream ends or the syncer stops.
/// Sets `interval_out` to the heartbeat interval once the scheduler answered `Register`.
async fn session(
    ctx: &Arc<Context>,
    settings: &Settings,
    url: &str,
    shutdown: &Shutdown,
    interval_out: &mut Option<Duration>,
) -> Result<End, ConnectionError> {
    let channel = connect(url, settings.tls.as_ref()).await?;
    let mut client = AgentClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let request = RegisterRequest {
        cluster: settings.cluster.clone(),
        labels: settings.labels.clone().into_iter().collect(),
        agent_version: crate::VERSION.to_owned(),
    };
    let registered = timeout(RPC_TIMEOUT, client.register(request))
        .await
        .map_err(|_| ConnectionError::Timeout {
            call: "Register",
            url: url.to_owned(),
        })?
        .map_err(|status| ConnectionError::Refused {
            call: "Register",
            url: url.to_owned(),
            status,
        })?
        .into_inner();
    let interval = effective_interval(
        settings.heartbeat_interval,
        registered.heartbeat_interval_ms,
    );
    *interval_out = Some(interval);

    let held = ctx.shards.begin_session();
    if let Some(capacity) = &ctx.capacity {
        capacity.begin_stream(if registered.capacity_columns {
            ReportForm::Columns
        } else {
            ReportForm::NamedGroups
        });
    }
    if let Some(pending) = &ctx.pending {
        pending.begin_stream();
    }
    let held_count = held.len();
    let (tx, rx) = mpsc::channel::<AgentMessage>(64);
    let hello = AgentMessage {
        msg: Some(Msg::Hello(Hello {
            cluster: settings.cluster.clone(),
            session: registered.session,
            held,
        })),
    };
    tx.send(hello).await.expect("the receiver is held below");
    let inbound = timeout(RPC_TIMEOUT, client.session(ReceiverStream::new(rx)))
        .await
        .map_err(|_| ConnectionError::Timeout {
            call: "Session",
            url: url.to_owned(),
        })?
        .map_err(|status| ConnectionError::Refused {
            call: "Session",
            url: url.to_owned(),
            status,
        })?
        .into_inner();
    info!(
        cluster = %settings.cluster, scheduler = %url, epoch = registered.epoch, held = held_count,
        heartbeat_ms = interval.as_millis() as u64, "session open"
    );

    let heard = Arc::new(Mutex::new(Instant::now()));
    let synced = Arc::new(AtomicBool::new(false));
    let mut fenced = ctx.lease.subscribe();
    let mut reader = AbortOnDrop(tokio::spawn(read(
        ctx.clone(),
        inbound,
        heard.clone(),
        synced.clone(),
    )));
    let mut heartbeat = tokio::time::interval(interval);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let silence = interval * SILENCE_INTERVALS + Duration::from_millis(500);
    let mut seq = 0u64;
    let lost = |reason: String| End::Lost {
        reason,
        synced: synced.load(Ordering::Relaxed),
    };
    loop {
        tokio::select! {
            biased;
            _ = shutdown.fired() => {
                // Tell the scheduler the final state, then close our side and let it close its.
                let _ = flush(ctx, &tx).await;
                drop(tx);
                let _ = timeout(Duration::from_secs(2), &mut reader.0).await;
                info!(cluster = %settings.cluster, scheduler = %url, "session closed");
                return Ok(End::Shutdown);
            }
            Ok(()) = fenced.changed() => {
                // The scheduler went silent past the lease while this stream stayed open: only
                // a session in sync from its start may lift the fence.
                return Ok(lost("self-fenced; reopening the session to get in sync again".into()));
            }
            ended = &mut reader.0 => {
                let reason = ended.unwrap_or_else(|e| format!("reader failed: {e}"));
                return Ok(lost(reason));
            }
            _ = heartbeat.tick() => {
                let quiet = heard.lock().elapsed();
                if quiet > silence {
                    return Ok(lost(format!("no word from the scheduler for {quiet:?}")));
                }
                seq += 1;
                let beat = AgentMessage { msg: Some(Msg::Heartbeat(Heartbeat { seq })) };
                if tx.send(beat).await.is_err() {
                    return Ok(lost("the outbound stream closed".into()));
                }
                // Capacity goes with a heartbeat when it changed and its pacing allows.
                if let Some(report) = ctx.capacity.as_ref().and_then(|c| c.report()) {
                    debug!(cluster = %settings.cluster, full = report.full, groups = report.group_count(), "reporting capacity");
                    if tx.send(AgentMessage { msg: Some(Msg::Capacity(report)) }).await.is_err() {
                        return Ok(lost("the outbound stream closed".into()));
                    }
                }
                if let Some(report) = ctx.pending.as_ref().and_then(|p| p.report()) {
                    debug!(cluster = %settings.cluster, shards = report.shards.len(), "reporting unschedulable shards");
                    if tx.send(AgentMessage { msg: Some(Msg::Pending(report)) }).await.is_err() {
                        return Ok(lost("the outbound stream closed".into()));
                    }
                }
            }
            _ = ctx.shards.changed() => {
                tokio::time::sleep(COALESCE).await;
                if flush(ctx, &tx).await.is_err() {
                    return Ok(lost("the outbound stream closed".into()));
                }
            }
        }
    }
}

/// Sends every status that changed since it was last sent.
async fn flush(ctx: &Context, tx: &mpsc::Sender<AgentMessage>) -> Result<(), ()> {
    let reports = ctx.shards.take_reports();
    if reports.is_empty() {
        return Ok(());
    }
    debug!(cluster = %ctx.cluster_name, count = reports.len(), "reporting shard status");
    for chunk in reports.chunks(REPORT_CHUNK) {
        let message = AgentMessage {
            msg: Some(Msg::Status(ShardStatusReport {
                shards: chunk.to_vec(),
            })),
        };
        tx.send(message).await.map_err(|_| ())?;
        ctx.metrics.reports.inc_by(chunk.len() as u64);
    }
    Ok(())
}

/// Reads the scheduler's messages until the stream ends; returns why it ended.
async fn read(
    ctx: Arc<Context>,
    mut inbound: Streaming<SchedulerMessage>,
    heard: Arc<Mutex<Instant>>,
    synced: Arc<AtomicBool>,
) -> String {
    loop {
        match inbound.message().await {
            Ok(Some(message)) => {
                *heard.lock() = Instant::now();
                ctx.lease.heard();
                match message.msg {
                    Some(scheduler_message::Msg::Assignments(batch)) => {
                        debug!(
                            cluster = %ctx.cluster_name, count = batch.assignments.len(),
                            synced = batch.synced, "assignments received"
                        );
                        ctx.assign(&batch);
                        if batch.synced {
                            synced.store(true, Ordering::Relaxed);
                            ctx.metrics.set_in_sync(true);
                        }
                    }
                    Some(scheduler_message::Msg::HeartbeatAck(_)) | None => {}
                }
            }
            Ok(None) => return "the scheduler closed the stream".into(),
            Err(status) => return format!("stream error: {status}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shorter_heartbeat_wins() {
        let five = Duration::from_secs(5);
        assert_eq!(effective_interval(five, 0), five);
        assert_eq!(effective_interval(five, 1000), Duration::from_secs(1));
        assert_eq!(effective_interval(five, 30_000), five);
    }
}
