//! A cluster's API on its port, plain HTTP or TLS, with every connection under the cluster's
//! control, so it can be taken off the network and put back as a real API server is when it
//! restarts: while an `unreachable` fault is in force the port is closed (connections are
//! refused) and every open connection is dropped (watches and requests in flight break);
//! afterwards the same port serves the same store, so objects and resourceVersions are as they
//! were.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::RwLock;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use super::faults::Faults;
use fedjob_proto::shutdown::Shutdown;

/// How often a cluster coming back tries to bind its port again while something else holds it.
const REBIND_EVERY: Duration = Duration::from_millis(20);

/// The listening side of one cluster.
pub struct Server {
    cluster: String,
    addr: SocketAddr,
    router: Router,
    tls: RwLock<Option<Arc<ServerConfig>>>,
    /// Whether the port is open; a change in the TLS identity bumps `generation`.
    up: watch::Sender<bool>,
    generation: watch::Sender<u64>,
}

impl Server {
    /// The server of `cluster` on `addr` (already bound by the caller), serving `router`.
    pub fn new(
        cluster: &str,
        addr: SocketAddr,
        router: Router,
        tls: Option<Arc<ServerConfig>>,
    ) -> Server {
        Server {
            cluster: cluster.to_owned(),
            addr,
            router,
            tls: RwLock::new(tls),
            // The caller bound the port: connections queue until the first accept.
            up: watch::channel(true).0,
            generation: watch::channel(0).0,
        }
    }

    /// Serves another certificate from now on, dropping the open connections as a restart
    /// with the new certificate would.
    pub fn set_tls(&self, config: Arc<ServerConfig>) {
        *self.tls.write() = Some(config);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Resolves once the port is open (`true`) or closed (`false`).
    pub async fn wait_up(&self, up: bool) {
        let _ = self.up.subscribe().wait_for(|u| *u == up).await;
    }

    /// Serves until `stop`: the port open while no `unreachable` fault is in force.
    pub async fn run(self: Arc<Self>, listener: TcpListener, faults: Arc<Faults>, stop: Shutdown) {
        let mut listener = Some(listener);
        let mut fault_changes = faults.changes();
        let mut generations = self.generation.subscribe();
        loop {
            if faults.unreachable() {
                drop(listener.take());
                self.up.send_replace(false);
                tracing::info!(cluster = %self.cluster, addr = %self.addr, "API server unreachable");
                while faults.unreachable() {
                    tokio::select! {
                        _ = faults.changed(&mut fault_changes) => {}
                        _ = stop.fired() => return,
                    }
                }
                continue;
            }
            let listening = match listener.take() {
                Some(l) => l,
                None => match self.bind_again(&stop).await {
                    Some(l) => l,
                    None => return,
                },
            };
            self.up.send_replace(true);
            generations.borrow_and_update();
            let mut connections = JoinSet::new();
            let connection_stop = stop.clone();
            let outcome = tokio::select! {
                _ = self.accept(&listening, &mut connections, &connection_stop) => unreachable!("accepting never ends"),
                _ = async { while !faults.unreachable() { faults.changed(&mut fault_changes).await } } => Next::Down,
                _ = generations.changed() => Next::Restart,
                _ = stop.fired() => Next::Stop,
            };
            match outcome {
                // Dropping the set aborts every connection: clients see resets.
                Next::Down => drop(connections),
                Next::Restart => {
                    drop(connections);
                    listener = Some(listening);
                }
                Next::Stop => {
                    drop(listening);
                    // Each connection finishes its request in flight (open watches end with the
                    // cluster), then closes.
                    while connections.join_next().await.is_some() {}
                    self.up.send_replace(false);
                    return;
                }
            }
        }
    }

    async fn bind_again(&self, stop: &Shutdown) -> Option<TcpListener> {
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    tracing::info!(cluster = %self.cluster, addr = %self.addr, "API server reachable again");
                    return Some(l);
                }
                Err(err) => tracing::debug!(cluster = %self.cluster, %err, "port not free yet"),
            }
            tokio::select! {
                _ = tokio::time::sleep(REBIND_EVERY) => {}
                _ = stop.fired() => return None,
            }
        }
    }

    async fn accept(&self, listener: &TcpListener, connections: &mut JoinSet<()>, stop: &Shutdown) {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => {
                        let tls = self.tls.read().clone();
                        connections.spawn(connection(tcp, self.router.clone(), tls, stop.clone()));
                    }
                    // Out of file descriptors and the like: try again shortly.
                    Err(err) => {
                        tracing::warn!(cluster = %self.cluster, %err, "accept failed");
                        tokio::time::sleep(REBIND_EVERY).await;
                    }
                },
                Some(_) = connections.join_next() => {}
            }
        }
    }
}

enum Next {
    Down,
    Restart,
    Stop,
}

async fn connection(
    tcp: TcpStream,
    router: Router,
    tls: Option<Arc<ServerConfig>>,
    stop: Shutdown,
) {
    // Watch events are small writes; without TCP_NODELAY some wait for a delayed ACK (40 ms).
    // Go's net/http, and so the real API server, sets it too.
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(%err, "cannot set TCP_NODELAY");
    }
    match tls {
        None => http(tcp, router, stop).await,
        Some(config) => match TlsAcceptor::from(config).accept(tcp).await {
            Ok(stream) => http(stream, router, stop).await,
            Err(err) => tracing::debug!(%err, "TLS handshake failed"),
        },
    }
}

async fn http<I>(io: I, router: Router, stop: Shutdown)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%err, "connection ended");
            }
        }
        _ = stop.fired() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
