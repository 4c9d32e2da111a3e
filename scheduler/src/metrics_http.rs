//! The metrics endpoint: `GET /metrics` in the Prometheus text format, `GET /healthz`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::control_plane::ControlPlane;
use crate::metrics::Metrics;
use fedjob_proto::shutdown::Shutdown;

/// Starts serving metrics on `addr` as one of `tasks`, until `shutdown`; returns the bound
/// address.
pub async fn serve(
    addr: SocketAddr,
    cp: Arc<ControlPlane>,
    shutdown: Shutdown,
    tasks: &TaskTracker,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --metrics-listen {addr}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(cp);
    tasks.spawn(async move {
        let stopped = async move { shutdown.fired().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            warn!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(bound)
}

async fn metrics(State(cp): State<Arc<ControlPlane>>) -> impl IntoResponse {
    let mut jobs = [
        ("Running", 0i64),
        ("Complete", 0),
        ("Failed", 0),
        ("Suspended", 0),
        ("Terminating", 0),
    ];
    for j in cp.jobs(None) {
        let r = &j.record;
        let state = if r.deletion.is_some() {
            4
        } else if r.condition("Complete") {
            1
        } else if r.condition("Failed") {
            2
        } else if r.spec().suspend == Some(true) {
            3
        } else {
            0
        };
        jobs[state].1 += 1;
    }
    let m = cp.metrics();
    m.leader.set(i64::from(cp.is_leader()));
    Metrics::set_states(&m.jobs, &jobs);
    let (ready, not_ready) = cp.with_clusters(|t| t.counts());
    Metrics::set_states(
        &m.clusters,
        &[("Ready", ready as i64), ("NotReady", not_ready as i64)],
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.encode(),
    )
}
