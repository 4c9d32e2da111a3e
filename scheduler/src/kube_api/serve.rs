//! The Kubernetes API's listener: HTTPS with the scheduler's `--tls-cert/--tls-key` (client
//! certificates verified by `--client-ca` when given, and optional), or plain HTTP; HTTP/1.1 on
//! every connection, which kubectl and every Kubernetes client speak.
//!
//! Each connection is a task of the scheduler's [`TaskTracker`], so shutdown waits for requests
//! in flight (their writes reach the store before it closes); on shutdown the listener stops,
//! idle connections close and watches end.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::call::ServedResource;
use super::edge::{Edge, Peer};
use super::jobs::Jobs;
use super::jobs::cache::{HISTORY, JobCache};
use super::objects::Collection;
use crate::auth::{Guard, certificate_names};
use crate::config::ServerTls;
use crate::control_plane::ControlPlane;
use crate::metrics::Metrics;
use fedjob_proto::shutdown::Shutdown;

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Starts the Kubernetes API on `addr` (over TLS with `tls`), serving `cp`'s resources to the
/// callers `guard` lets in, until `shutdown`; its tasks join `tasks`. Returns the address bound.
pub async fn start(
    addr: SocketAddr,
    tls: Option<&ServerTls>,
    guard: Guard,
    metrics: Arc<Metrics>,
    cp: Arc<ControlPlane>,
    shutdown: Shutdown,
    tasks: &TaskTracker,
) -> anyhow::Result<SocketAddr> {
    let acceptor = tls.map(tls_acceptor).transpose()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --kube-api-listen {addr}"))?;
    let local = listener.local_addr()?;
    let cache = JobCache::start(cp.clone(), HISTORY, shutdown.clone(), tasks);
    let events = super::events::log();
    super::events::record::start(cp.clone(), events.clone(), shutdown.clone(), tasks);
    let clusters = super::clusters::log();
    super::clusters::start(cp.clone(), clusters.clone(), shutdown.clone(), tasks);
    let refresh = super::clusters::refresher(cp.clone(), clusters.clone());
    let collection =
        |log, refresh| Collection::new(log, refresh, shutdown.clone(), BOOKMARK_INTERVAL);
    let resources: Vec<Arc<dyn ServedResource>> = vec![
        Arc::new(Jobs::new(cp, cache, shutdown.clone(), BOOKMARK_INTERVAL)),
        Arc::new(collection(events, None)),
        Arc::new(collection(clusters, Some(refresh))),
    ];
    let edge = Arc::new(Edge::new(guard, metrics, resources, &local.to_string()));
    tasks.spawn(serve(listener, acceptor, edge, shutdown, tasks.clone()));
    info!(addr = %local, tls = tls.is_some(), "kube api serving");
    Ok(local)
}

/// The TLS settings of the Kubernetes API, from the scheduler's certificate, key and client CA.
pub fn tls_acceptor(tls: &ServerTls) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&tls.cert)
        .collect::<Result<_, _>>()
        .context("--tls-cert: reading the PEM certificates")?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key).context("--tls-key: reading the PEM key")?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                roots
                    .add(cert.context("--client-ca: reading the PEM certificates")?)
                    .context("--client-ca: a certificate is not a CA certificate")?;
            }
            // Optional: kubectl users come with tokens and no certificate.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .context("--client-ca: building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("--tls-cert/--tls-key: the key does not match the certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `edge` on `listener` until `shutdown` fires; every connection is one of `tasks`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    edge: Arc<Edge>,
    shutdown: Shutdown,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.fired() => break,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: the next accept may work.
                debug!(error = %e, "kube api: accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (edge, tls, shutdown) = (edge.clone(), tls.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = connection(stream, addr, tls, edge, shutdown).await {
                debug!(%addr, error = %e, "kube api: connection ended");
            }
        });
    }
    info!("kube api: stopped accepting connections");
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    edge: Arc<Edge>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    match tls {
        Some(acceptor) => {
            let stream = acceptor.accept(stream).await.context("TLS handshake")?;
            let peer = Peer {
                certificate_names: stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| certificate_names(leaf.as_ref()))
                    .unwrap_or_default(),
            };
            http(TokioIo::new(stream), addr, peer, edge, shutdown).await
        }
        None => http(TokioIo::new(stream), addr, Peer::default(), edge, shutdown).await,
    }
}

async fn http<I>(
    io: I,
    addr: SocketAddr,
    peer: Peer,
    edge: Arc<Edge>,
    shutdown: Shutdown,
) -> anyhow::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = Arc::new(peer);
    let service = service_fn(move |request| {
        let (edge, peer) = (edge.clone(), peer.clone());
        async move { Ok::<_, std::convert::Infallible>(edge.handle(&peer, request).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result.with_context(|| format!("serving {addr}")),
        _ = shutdown.fired() => {}
    }
    // Let the request in flight finish; an idle connection closes at once.
    conn.as_mut().graceful_shutdown();
    conn.await.with_context(|| format!("serving {addr}"))
}
