//! The syncer's HTTP endpoint on `--metrics-listen`: `GET /metrics` (Prometheus text format),
//! `GET /healthz` (the process serves) and `GET /readyz` (it is doing its job: the first list
//! of the cluster's shards is complete and a session with a scheduler is in sync).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::reconcile::Context;

/// Binds `addr` and serves the endpoint until the returned task is aborted; returns the bound
/// address too (for `127.0.0.1:0`).
pub async fn serve(
    addr: SocketAddr,
    ctx: Arc<Context>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(ctx);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok((bound, task))
}

async fn metrics(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.metrics.encode(&ctx),
    )
}

async fn ready(State(ctx): State<Arc<Context>>) -> (StatusCode, &'static str) {
    match readiness(ctx.shards.is_listed(), ctx.metrics.in_sync()) {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Whether the syncer is ready, or why not.
fn readiness(listed: bool, in_sync: bool) -> Result<(), &'static str> {
    if !listed {
        Err("not ready: the first list of this cluster's shards is not complete")
    } else if !in_sync {
        Err("not ready: no session with a scheduler is in sync")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_listed_and_in_sync() {
        assert!(readiness(true, true).is_ok());
        assert!(readiness(false, true).unwrap_err().contains("first list"));
        assert!(readiness(true, false).unwrap_err().contains("scheduler"));
    }
}
