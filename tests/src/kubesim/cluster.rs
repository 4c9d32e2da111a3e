//! Starting and stopping simulated clusters: one [`SimCluster`] is an HTTP server on a
//! loopback port, its store and its controller; a [`Fleet`] is several, as `fedjob-kubesim`
//! hosts them. A cluster started with nodes also runs a scheduler, and [`NodeHandle`] changes
//! its nodes while it runs. [`SimCluster::faults`] makes it fail as a real API server fails
//! (see [`super::faults`]); with [`SimOptions::tls`] it serves HTTPS with a CA of its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fedjob_proto::shutdown::Trigger;
use fedjob_scheduler::kube_api::kubeconfig;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::api::{self, App};
use super::controller::{Controller, ControllerConfig};
use super::events::EventLog;
use super::faults::{FaultSpec, Faults};
use super::hooks::RequestHooks;
use super::node::{Kubelets, Registration};
use super::nodes::NodeHandle;
use super::pods::PodTable;
use super::resource::Resource;
use super::sched::Scheduler;
use super::serve::Server;
use super::store::Store;
use super::tls::{Identity, TlsError};
use super::writes::Writer;

/// Namespaces every cluster starts with.
const INITIAL_NAMESPACES: &[&str] = &["default", "kube-node-lease", "kube-public", "kube-system"];

/// How a simulated cluster behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The cluster's name (kubeconfig context, logs).
    pub name: String,
    /// The loopback port; 0 picks a free one.
    pub port: u16,
    /// A bearer token every request must carry.
    pub token: Option<String>,
    /// How long a simulated pod runs unless its template says otherwise.
    pub pod_duration: Duration,
    /// How many changes the watch history keeps; older resourceVersions get 410.
    pub history: usize,
    /// How often watches with `allowWatchBookmarks=true` get a bookmark.
    pub bookmark_interval: Duration,
    /// The nodes it starts with. With none, pods run as soon as they exist and no scheduler
    /// runs; with some, a scheduler binds each pod to a node where it fits first.
    pub nodes: Vec<Registration>,
    /// Serve HTTPS with a certificate signed by a CA of the cluster's own (generated at
    /// start; kubeconfigs carry it as `certificate-authority-data`).
    pub tls: bool,
    /// Faults injected when it starts.
    pub faults: Vec<FaultSpec>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            name: "sim-1".to_owned(),
            port: 0,
            token: None,
            pod_duration: Duration::from_secs(1),
            history: 1024,
            bookmark_interval: Duration::from_secs(10),
            nodes: Vec::new(),
            tls: false,
            faults: Vec::new(),
        }
    }
}

/// A cluster that could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The port could not be bound.
    #[error("cluster {name}: cannot listen on 127.0.0.1:{port}")]
    Bind {
        /// The cluster.
        name: String,
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its certificate could not be generated or served.
    #[error("cluster {name}: TLS: {source}")]
    Tls {
        /// The cluster.
        name: String,
        /// Why.
        #[source]
        source: TlsError,
    },
    /// The initial namespaces could not be created (a bug).
    #[error("cluster {name}: setting up: {message}")]
    Setup {
        /// The cluster.
        name: String,
        /// What failed.
        message: String,
    },
}

/// A running simulated cluster.
pub struct SimCluster {
    name: String,
    addr: SocketAddr,
    url: String,
    store: Arc<Store>,
    pods: Arc<PodTable>,
    events: Arc<EventLog>,
    nodes: NodeHandle,
    faults: Arc<Faults>,
    hooks: Arc<RequestHooks>,
    identity: Option<Identity>,
    listening: Arc<Server>,
    trigger: Trigger,
    server: JoinHandle<()>,
    controller: JoinHandle<()>,
}

impl SimCluster {
    /// Starts a cluster: binds its port, creates the initial namespaces, starts its
    /// controller and serves the API.
    pub async fn start(options: SimOptions) -> Result<Self, ClusterError> {
        let listener = TcpListener::bind(("127.0.0.1", options.port))
            .await
            .map_err(|source| ClusterError::Bind {
                name: options.name.clone(),
                port: options.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ClusterError::Bind {
            name: options.name.clone(),
            port: options.port,
            source,
        })?;
        let store = Arc::new(Store::new(options.history));
        let pods = Arc::new(PodTable::new(store.clone(), options.history));
        let trigger = Trigger::default();

        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        store.set_listener(changes_tx);
        let writer = Writer::new(&store, "kube-apiserver", false);
        for ns in INITIAL_NAMESPACES {
            writer
                .create(Resource::Namespace, "", json!({"metadata": {"name": ns}}))
                .map_err(|e| ClusterError::Setup {
                    name: options.name.clone(),
                    message: e.to_string(),
                })?;
        }
        let events = Arc::new(EventLog::default());
        let kubelets = Arc::new(Kubelets::default());
        let nodes = NodeHandle::new(store.clone(), kubelets.clone(), pods.clone());
        for node in &options.nodes {
            nodes.register(node).map_err(|e| ClusterError::Setup {
                name: options.name.clone(),
                message: format!("node {}: {e}", node.name),
            })?;
        }
        let mut controller = Controller::new(
            store.clone(),
            pods.clone(),
            ControllerConfig {
                pod_duration: options.pod_duration,
            },
        );
        if !options.nodes.is_empty() {
            let scheduler = Scheduler::new(events.clone(), kubelets, &options.name);
            controller = controller.with_scheduler(scheduler);
        }
        let controller = tokio::spawn(controller.run(changes_rx, trigger.subscribe()));
        // Serve once the node lifecycle controller has untainted the nodes that are Ready, so
        // the first pods find them schedulable.
        for node in &options.nodes {
            nodes.settled(&node.name).await;
        }

        let faults = Arc::new(Faults::default());
        for spec in &options.faults {
            faults.inject(spec.clone());
        }
        let hooks = Arc::new(RequestHooks::default());
        let app = Arc::new(App {
            cluster: options.name.clone(),
            store: store.clone(),
            pods: pods.clone(),
            events: events.clone(),
            token: options.token.clone(),
            shutdown: trigger.subscribe(),
            bookmark_interval: options.bookmark_interval,
            server_address: addr.to_string(),
            pages: Default::default(),
            faults: faults.clone(),
            hooks: hooks.clone(),
        });
        let tls_error = |source| ClusterError::Tls {
            name: options.name.clone(),
            source,
        };
        let identity = match options.tls {
            true => Some(Identity::generate(&options.name).map_err(tls_error)?),
            false => None,
        };
        let tls = match &identity {
            Some(identity) => Some(identity.server_config().map_err(tls_error)?),
            None => None,
        };
        let listening = Arc::new(Server::new(&options.name, addr, api::router(app), tls));
        let server = tokio::spawn(listening.clone().run(
            listener,
            faults.clone(),
            trigger.subscribe(),
        ));
        let scheme = if identity.is_some() { "https" } else { "http" };
        tracing::info!(cluster = %options.name, %addr, scheme, "simulated cluster serving");
        Ok(Self {
            name: options.name,
            url: format!("{scheme}://{addr}"),
            addr,
            store,
            pods,
            events,
            nodes,
            faults,
            hooks,
            identity,
            listening,
            trigger,
            server,
            controller,
        })
    }

    /// Its nodes, to add, resize, cordon, make NotReady or remove while it runs.
    pub fn nodes(&self) -> &NodeHandle {
        &self.nodes
    }

    /// How many events it keeps (the scheduler's `FailedScheduling`).
    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:PORT`, or `https://…` with TLS.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Hooks a test runs as each request arrives (see [`super::hooks`]).
    pub fn hooks(&self) -> &RequestHooks {
        &self.hooks
    }

    /// Its faults: inject, remove, and see what they hit.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Resolves once its port is open (`true`) or closed (`false`), as its `unreachable`
    /// faults say.
    pub async fn wait_reachable(&self, reachable: bool) {
        self.listening.wait_up(reachable).await;
    }

    /// Its TLS identity (the CA its kubeconfig trusts), when it serves HTTPS.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Serves `identity`'s certificate from now on (open connections are dropped, as by a
    /// restart with new certificates); its kubeconfig still trusts the CA it started with.
    pub fn serve_certificate(&self, identity: &Identity) -> Result<(), ClusterError> {
        let config = identity
            .server_config()
            .map_err(|source| ClusterError::Tls {
                name: self.name.clone(),
                source,
            })?;
        self.listening.set_tls(config);
        Ok(())
    }

    /// This cluster as a kubeconfig context named after it, presenting `token` when given
    /// (and trusting its CA, with TLS).
    pub fn kubeconfig_context(&self, token: Option<&str>) -> kubeconfig::Context {
        kubeconfig::Context {
            name: self.name.clone(),
            server: self.url.clone(),
            ca_pem: self
                .identity
                .as_ref()
                .map(|i| i.ca_pem.clone().into_bytes()),
            token: token.map(str::to_owned),
            namespace: Some("default".to_owned()),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many Jobs it holds (for load tests and logs).
    pub fn job_count(&self) -> usize {
        self.store.count(Resource::Job)
    }

    /// How many simulated pods it holds.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Stops serving: open watches end, in-flight requests finish, the controller stops.
    pub async fn shutdown(self) {
        self.trigger.fire();
        let grace = Duration::from_secs(5);
        if tokio::time::timeout(grace, self.server).await.is_err() {
            tracing::warn!(cluster = %self.name, "server did not stop within {grace:?}");
        }
        let _ = tokio::time::timeout(grace, self.controller).await;
    }
}

/// Several clusters served by one process.
pub struct Fleet {
    clusters: Vec<SimCluster>,
    token: Option<String>,
}

impl Fleet {
    /// Starts one cluster per name with `options` (name and port replaced); with a non-zero
    /// `port_base`, cluster *i* listens on `port_base + i`.
    pub async fn start(
        names: &[String],
        options: &SimOptions,
        port_base: u16,
    ) -> Result<Self, ClusterError> {
        let each = names
            .iter()
            .map(|name| SimOptions {
                name: name.clone(),
                ..options.clone()
            })
            .collect();
        Self::start_each(each, port_base).await
    }

    /// Starts one cluster per entry of `clusters` (each with its own name, nodes, …; the port
    /// replaced as [`Fleet::start`] does; the first entry's token is the kubeconfig's).
    pub async fn start_each(
        clusters: Vec<SimOptions>,
        port_base: u16,
    ) -> Result<Self, ClusterError> {
        let token = clusters.first().and_then(|o| o.token.clone());
        let mut started = Vec::with_capacity(clusters.len());
        for (i, options) in clusters.into_iter().enumerate() {
            let port = if port_base == 0 {
                0
            } else {
                port_base.saturating_add(i as u16)
            };
            let cluster = SimCluster::start(SimOptions { port, ..options }).await;
            match cluster {
                Ok(c) => started.push(c),
                Err(e) => {
                    for c in started {
                        c.shutdown().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(Self {
            clusters: started,
            token,
        })
    }

    /// The clusters, in start order.
    pub fn clusters(&self) -> &[SimCluster] {
        &self.clusters
    }

    /// A kubeconfig with a context per cluster, the first current.
    pub fn kubeconfig(&self) -> String {
        let contexts: Vec<kubeconfig::Context> = self
            .clusters
            .iter()
            .map(|c| c.kubeconfig_context(self.token.as_deref()))
            .collect();
        kubeconfig::render(&contexts)
    }

    /// The one line `fedjob-kubesim` prints when ready:
    /// `{"ready":true,"kubeconfig":PATH,"clusters":{"c1":"http://127.0.0.1:PORT",…}}`.
    pub fn ready_line(&self, kubeconfig_path: &str) -> String {
        let clusters: BTreeMap<&str, &str> =
            self.clusters.iter().map(|c| (c.name(), c.url())).collect();
        json!({"ready": true, "kubeconfig": kubeconfig_path, "clusters": clusters}).to_string()
    }

    /// Stops every cluster.
    pub async fn shutdown(self) {
        futures::future::join_all(self.clusters.into_iter().map(SimCluster::shutdown)).await;
    }
}
