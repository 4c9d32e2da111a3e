//! The fedjob syncer: the agent that runs one member cluster's shards of federated Jobs.
//!
//! It pulls its cluster's assignments from the scheduler over one long-lived gRPC stream
//! ([`workers::connection`]), realises them as local `batch/v1` Jobs with the `kube` crate
//! ([`workers::reconcile`], [`cluster`]), watches those Jobs and streams their status back
//! ([`workers::watch`], [`rules::status`]). It keeps no state of its own: after a restart it
//! finds its shards again by their labels, and the scheduler sends every assignment again.
//! Cut off from every scheduler for longer than `--self-fence-after`, it suspends its
//! unfinished shards ([`rules::fence`], [`workers::fence`]) until a session is in sync again.
//!
//! ```text
//! scheduler ──assignments──▶ connection ──▶ shards table ──▶ work queue ──▶ workers ──apply/delete──▶ API server
//!     ▲                                        ▲                                                        │
//!     └────────── hello / status / heartbeats ─┴──────────────── watch (labelled Jobs) ◀────────────────┘
//! ```
//!
//! The modules form layers, each using only those below it:
//! 1. [`rules`]: pure rules over plain values (manifests and drift, status decoding, the next
//!    step for a shard, the self-fence's rules); [`config`] and [`backoff`] are leaves too;
//! 2. [`state`]: the shard table, the work queue, the lease and the metrics, in memory;
//! 3. [`cluster`]: the member cluster's API server, as the syncer calls it;
//! 4. [`context`]: what every worker shares (client, state, settings);
//! 5. [`workers`]: the tasks that do I/O; [`Syncer`] starts and stops them.

pub mod backoff;
pub mod cluster;
pub mod config;
pub mod context;
pub mod rules;
pub mod state;
pub mod workers;

#[cfg(test)]
mod fixtures;

use std::sync::Arc;
use std::time::Duration;

use fedjob_proto::shutdown;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::context::Context;
use crate::state::shards::Shards;
use crate::workers::{capacity, connection, fence, probes, reconcile, watch};

/// The syncer's version, sent at registration.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the syncer could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The member cluster could not be reached or configured.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// `--metrics-listen` could not be bound.
    #[error("--metrics-listen {addr}: {source}")]
    MetricsListen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why it could not be bound.
        source: std::io::Error,
    },
}

/// A running syncer. Dropping it aborts every task at once (as a crash would); [`stop`]
/// drains it gracefully.
///
/// [`stop`]: Syncer::stop
pub struct Syncer {
    ctx: Arc<Context>,
    watches: JoinSet<()>,
    workers: JoinSet<()>,
    connection: JoinSet<()>,
    close_stream: shutdown::Trigger,
    grace: Duration,
    probes: Option<tokio::task::JoinHandle<()>>,
}

impl Syncer {
    /// Starts watching `cluster` (from [`Cluster::connect`]), the workers, and the connection
    /// to the scheduler (opened once the first list of local shards is complete).
    pub fn start(config: &Config, cluster: Cluster) -> Self {
        let ctx = Arc::new(Context::new(config, cluster));
        let mut watches = JoinSet::new();
        watches.spawn(watch::watch_shards(ctx.clone()));
        if let Some(lease) = config.self_fence_after {
            watches.spawn(fence::watch_lease(ctx.clone(), lease));
        }
        if let Some(c) = &ctx.capacity {
            let client = ctx.cluster.client();
            watches.spawn(capacity::watch_nodes(
                ctx.clone(),
                client.clone(),
                c.clone(),
            ));
            watches.spawn(capacity::watch_pods(ctx.clone(), client, c.clone()));
        }
        if let Some(p) = &ctx.pending {
            watches.spawn(capacity::watch_unschedulable(
                ctx.clone(),
                ctx.cluster.client(),
                p.clone(),
            ));
        }
        let mut workers = JoinSet::new();
        for _ in 0..config.workers {
            workers.spawn(reconcile::worker(ctx.clone()));
        }
        let (close_stream, closed) = shutdown::channel();
        let settings = connection::Settings::from_config(config);
        let mut connection = JoinSet::new();
        connection.spawn(connection::run(ctx.clone(), settings, closed));
        info!(
            cluster = %config.cluster_name, schedulers = ?config.schedulers,
            namespace = config.namespace.as_deref().unwrap_or("*"), version = VERSION,
            self_fence_after = ?config.self_fence_after,
            "fedjob-syncer started"
        );
        Syncer {
            ctx,
            watches,
            workers,
            connection,
            close_stream,
            grace: config.shutdown_grace,
            probes: None,
        }
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the syncer stops; returns the
    /// bound address.
    pub async fn serve_probes(
        &mut self,
        addr: std::net::SocketAddr,
    ) -> Result<std::net::SocketAddr, Error> {
        let (bound, task) = probes::serve(addr, self.ctx.clone())
            .await
            .map_err(|source| Error::MetricsListen { addr, source })?;
        info!(cluster = %self.ctx.cluster_name, addr = %bound, "serving /metrics, /healthz and /readyz");
        self.probes = Some(task);
        Ok(bound)
    }

    /// The shard table (for inspection).
    pub fn shards(&self) -> &Shards {
        &self.ctx.shards
    }

    /// Stops gracefully: no new work is started, applies in flight finish (within the
    /// configured grace), their status is sent, then the stream to the scheduler is closed.
    pub async fn stop(mut self) {
        self.ctx.queue.close();
        let drain = async { while self.workers.join_next().await.is_some() {} };
        if tokio::time::timeout(self.grace, drain).await.is_err() {
            warn!(grace = ?self.grace, "work in flight did not finish within the grace period; abandoned");
            self.workers.abort_all();
        }
        self.close_stream.fire();
        let close = async { while self.connection.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), close)
            .await
            .is_err()
        {
            self.connection.abort_all();
        }
        self.watches.abort_all();
        if let Some(probes) = self.probes.take() {
            probes.abort();
            // Resolves once the task is dropped, and with it the listening socket.
            let _ = probes.await;
        }
        info!(cluster = %self.ctx.cluster_name, "fedjob-syncer stopped");
    }
}

/// Runs the syncer until SIGTERM or SIGINT, then drains it.
pub async fn run(config: Config) -> Result<(), Error> {
    let cluster = Cluster::connect(&config).await?;
    let mut syncer = Syncer::start(&config, cluster);
    if let Some(addr) = config.metrics_listen {
        syncer.serve_probes(addr).await?;
    }
    shutdown::signal().await;
    syncer.stop().await;
    Ok(())
}
