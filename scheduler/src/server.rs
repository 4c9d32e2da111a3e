//! Wiring: opens the store, loads the state, and serves gRPC (user API, agent API, reflection,
//! health), the Kubernetes API (`--kube-api-listen`, [`crate::kube_api`]) and the metrics
//! endpoint until told to shut down.
//!
//! Shutdown drains: health turns NOT_SERVING, agent sessions and watches end their streams,
//! in-flight calls finish (up to a grace period), every background task (liveness checks, TTL
//! clean-up, replication, the metrics endpoint, the coordinator) and agent session ends, and
//! only then is the store closed, so nothing writes to a closed store.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fedjob_proto::v1::{agent_server::AgentServer, federation_server::FederationServer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tracing::{info, warn};

use crate::api::agent::AgentApi;
use crate::api::user::UserApi;
use crate::auth::Guard;
use crate::config::{Config, ServerTls, StoreConfig};
use crate::control_plane::{ControlPlane, Settings};
use crate::coordination::Coordinator;
use crate::metrics::Metrics;
use crate::replication;
use crate::store::{EmbeddedOptions, EmbeddedStore, EtcdStore, Store};
use fedjob_proto::shutdown::{self, Shutdown, Trigger};

/// Calls served at once on one connection.
const PER_CONNECTION_CALLS: usize = 256;

/// How long in-flight calls get to finish once shutdown starts.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// A running scheduler.
pub struct Running {
    /// Address the gRPC API listens on.
    pub addr: SocketAddr,
    /// Address of the metrics endpoint, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Address of the Kubernetes API, when enabled.
    pub kube_api_addr: Option<SocketAddr>,
    /// The state, for in-process tests and benchmarks.
    pub control_plane: Arc<ControlPlane>,
    trigger: Trigger,
    served: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Drains and stops the server, then closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.trigger.fire();
        self.served.await.context("server task")?
    }

    /// Waits until the server stops on its own (it does not, unless it fails).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.served).await.context("server task")?
    }
}

/// Starts a scheduler as configured.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::new());
    let agent_certificates = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let tls = config.tls.as_ref().map(tls_config);
    let guard = Guard::new(config.tokens.clone(), agent_certificates, metrics.clone());
    match (&tls, config.tokens.is_some()) {
        (Some(_), _) => info!(client_certificates = agent_certificates, "serving TLS"),
        (None, true) => warn!("serving plain text: bearer tokens cross the network unencrypted"),
        (None, false) if config.listen.ip().is_loopback() => {
            info!("serving plain text on a loopback address, without authentication")
        }
        (None, false) => warn!(
            "serving plain text without authentication on a non-loopback address (--insecure)"
        ),
    }
    let (trigger, shutdown) = shutdown::channel();
    // Everything that runs beside the gRPC server, joined before the store closes.
    let tasks = TaskTracker::new();
    let mut coordinator = None;
    let store: Arc<dyn Store> = match &config.store {
        StoreConfig::Embedded { data_dir } => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating --data-dir {}", data_dir.display()))?;
            let options = EmbeddedOptions {
                observer: Some(metrics.clone()),
                // Nothing in the scheduler watches its embedded store (replicas share etcd,
                // never this file; watchers of Jobs are served by the control plane): its
                // history need only outlast a watcher's lag. The default 64 MB of old records
                // was a tenth of the memory at 100 clusters × 10,000 Jobs, read by no one.
                watch_history_bytes: 4 << 20,
                ..Default::default()
            };
            let store = EmbeddedStore::open(data_dir, options)
                .with_context(|| format!("opening the store in {}", data_dir.display()))?;
            Arc::new(store)
        }
        StoreConfig::Etcd { options, lease_ttl } => {
            let mut options = (**options).clone();
            options.observer = Some(metrics.clone());
            let store = Arc::new(
                EtcdStore::connect(options)
                    .await
                    .context("connecting to etcd (--etcd-endpoints)")?,
            );
            // Several replicas may share this etcd: elect a leader, share liveness.
            let c = Coordinator::start(store.clone(), *lease_ttl, shutdown.clone(), &tasks)
                .await
                .context("taking an etcd lease")?;
            coordinator = Some(c);
            store
        }
    };
    let settings = Settings {
        cluster_grace: config.cluster_grace,
        failover_after: config.failover_after,
        heartbeat_interval: config.heartbeat_interval,
        concurrent_job_writes: config.concurrent_job_writes,
    };
    let started = open_and_spawn(
        &config,
        store.clone(),
        settings,
        (metrics, &guard),
        coordinator,
        &shutdown,
        &tasks,
    )
    .await;
    let (cp, listener, metrics_addr, kube_api_addr) = match started {
        Ok(started) => started,
        Err(e) => {
            // What was started stops before the store it uses closes.
            trigger.fire();
            tasks.close();
            tasks.wait().await;
            let _ = store.close().await;
            return Err(e);
        }
    };
    let addr = listener.local_addr()?;
    let served = tokio::spawn(serve(Serving {
        config,
        tls,
        guard,
        listener,
        cp: cp.clone(),
        store,
        shutdown,
        tasks,
    }));
    info!(%addr, metrics = ?metrics_addr, kube_api = ?kube_api_addr, "fedjob-scheduler serving");
    Ok(Running {
        addr,
        metrics_addr,
        kube_api_addr,
        control_plane: cp,
        trigger,
        served,
    })
}

/// Loads the state, binds the listeners and starts the background tasks.
async fn open_and_spawn(
    config: &Config,
    store: Arc<dyn Store>,
    settings: Settings,
    (metrics, guard): (Arc<Metrics>, &Guard),
    coordinator: Option<Arc<Coordinator>>,
    shutdown: &Shutdown,
    tasks: &TaskTracker,
) -> anyhow::Result<(
    Arc<ControlPlane>,
    TcpListener,
    Option<SocketAddr>,
    Option<SocketAddr>,
)> {
    let shared = coordinator.is_some();
    let cp = ControlPlane::open(store, settings, metrics.clone(), coordinator).await?;
    if shared {
        replication::spawn(cp.clone(), shutdown.clone(), tasks);
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding --listen {}", config.listen))?;
    let metrics_addr = match config.metrics_listen {
        Some(a) => Some(crate::metrics_http::serve(a, cp.clone(), shutdown.clone(), tasks).await?),
        None => None,
    };
    let kube_api_addr = match config.kube_api_listen {
        Some(a) => Some(
            crate::kube_api::serve::start(
                a,
                config.tls.as_ref(),
                guard.clone(),
                metrics,
                cp.clone(),
                shutdown.clone(),
                tasks,
            )
            .await?,
        ),
        None => None,
    };
    spawn_background(cp.clone(), shutdown.clone(), tasks);
    Ok((cp, listener, metrics_addr, kube_api_addr))
}

/// What the gRPC server runs with.
struct Serving {
    config: Config,
    tls: Option<ServerTlsConfig>,
    guard: Guard,
    listener: TcpListener,
    cp: Arc<ControlPlane>,
    store: Arc<dyn Store>,
    shutdown: Shutdown,
    tasks: TaskTracker,
}

/// Serves gRPC until the shutdown, drains, joins every task, then closes the store.
async fn serve(serving: Serving) -> anyhow::Result<()> {
    let Serving {
        config,
        tls,
        guard,
        listener,
        cp,
        store,
        shutdown,
        tasks,
    } = serving;
    let stop = shutdown.clone();
    let limit = config.max_message_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<FederationServer<UserApi>>().await;
    health.set_serving::<AgentServer<AgentApi>>().await;
    // Each version lists every service on the port, the other reflection service included
    // (a builder adds only its own), so grpcurl 1.8 (v1alpha) can call the v1 service too.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fedjob_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fedjob_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let user = FederationServer::new(UserApi::new(cp.clone(), guard.clone(), shutdown.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit.max(64 * 1024 * 1024));
    let agent = AgentServer::new(AgentApi::new(
        cp.clone(),
        guard,
        shutdown.clone(),
        tasks.clone(),
    ))
    .max_decoding_message_size(limit.max(64 * 1024 * 1024))
    .max_encoding_message_size(limit.max(64 * 1024 * 1024));

    let drained = {
        let stop = stop.clone();
        let health = health.clone();
        async move {
            stop.fired().await;
            info!("shutting down: draining streams and in-flight calls");
            health.set_not_serving::<FederationServer<UserApi>>().await;
            health.set_not_serving::<AgentServer<AgentApi>>().await;
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        // One connection (a flooding client) gets at most this many calls at once; every agent
        // has a connection of its own, so a flood cannot queue ahead of its heartbeats.
        .concurrency_limit_per_connection(PER_CONNECTION_CALLS)
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(user)
        .add_service(agent)
        // The builder's `tcp_nodelay` applies only to listeners it binds itself; on this one,
        // Nagle's algorithm against the client's delayed ACKs held every answer ~40 ms.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            drained,
        );
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r.map_err(anyhow::Error::from),
        _ = async { stop.fired().await; tokio::time::sleep(DRAIN_GRACE).await } => {
            warn!(grace = ?DRAIN_GRACE, "drain grace over; closing remaining connections");
            Ok(())
        }
    };
    tasks.close();
    if tokio::time::timeout(DRAIN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        warn!(grace = ?DRAIN_GRACE, left = tasks.len(), "background tasks still running; closing the store under them");
    }
    store.close().await.context("closing the store")?;
    info!("store closed; stopped");
    result
}

/// Periodic work, as one of `tasks`: cluster liveness, spill-over and TTL clean-up; and, as
/// another, following the clusters (work waiting for room, capacity reports).
fn spawn_background(cp: Arc<ControlPlane>, shutdown: Shutdown, tasks: &TaskTracker) {
    tasks.spawn(cp.clone().follow_clusters(shutdown.clone()));
    let period =
        (cp.settings().cluster_grace / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stuck_jobs = HashSet::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.fired() => return,
            }
            cp.check_clusters().await;
            // On every replica: each acts on the reports of the agents streaming to it.
            cp.spill_over(&mut stuck_jobs, jiff::Timestamp::now()).await;
            if cp.is_leader() {
                cp.collect_finished(jiff::Timestamp::now()).await;
            }
        }
    });
}

/// The TLS settings of `--tls-cert`, `--tls-key` and `--client-ca`.
fn tls_config(tls: &ServerTls) -> ServerTlsConfig {
    let identity = Identity::from_pem(&tls.cert, &tls.key);
    let server = ServerTlsConfig::new().identity(identity);
    match &tls.client_ca {
        // Optional at the TLS level: users connect with tokens and no certificate; the agent
        // API refuses a caller without one (see `auth`).
        Some(ca) => server
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(true),
        None => server,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_joins_the_background_tasks_before_the_store_closes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let config = Config::try_parse_from([
            "fedjob-scheduler",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--metrics-listen",
            "127.0.0.1:0",
            "--cluster-grace",
            "300ms",
        ])
        .unwrap();
        let running = start(config.clone()).await.unwrap();
        let metrics = running.metrics_addr.unwrap();
        assert!(tokio::net::TcpStream::connect(metrics).await.is_ok());
        running.shutdown().await.unwrap();
        // The metrics endpoint was one of the tasks: it is gone once shutdown returns.
        assert!(
            tokio::net::TcpStream::connect(metrics).await.is_err(),
            "the metrics endpoint still accepts connections after shutdown"
        );
        // The store was closed: the same directory opens again at once.
        let again = start(config).await.unwrap();
        again.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_of_a_newer_format_is_refused_naming_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        crate::store::put(
            &store,
            crate::records::FORMAT_KEY,
            "7",
            crate::store::Precondition::Any,
        )
        .await
        .unwrap();
        store.close().await.unwrap();
        let data = dir.path().display().to_string();
        let config = Config::try_parse_from([
            "fedjob-scheduler",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
        ])
        .unwrap();
        let Err(e) = start(config).await else {
            panic!("a store of format 7 was opened");
        };
        let message = format!("{e:#}");
        assert!(
            message.contains("store format 7") && message.contains("store formats 1 to 2"),
            "{message}"
        );
    }
}
