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

use crate::context::Context;

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
        ctx.metrics_text(),
    )
}

async fn ready(State(ctx): State<Arc<Context>>) -> (StatusCode, String) {
    let last_error = ctx.metrics.last_session_error();
    match readiness(ctx.shards.is_listed(), ctx.metrics.in_sync(), last_error) {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Whether the syncer is ready, or why not (with why the last session failed, if one did).
fn readiness(listed: bool, in_sync: bool, last_error: Option<String>) -> Result<(), String> {
    if !listed {
        Err("not ready: the first list of this cluster's shards is not complete".to_owned())
    } else if !in_sync {
        let mut why = "not ready: no session with a scheduler is in sync".to_owned();
        if let Some(e) = last_error {
            why.push_str(&format!(" (last: {e})"));
        }
        Err(why)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_listed_and_in_sync() {
        assert!(readiness(true, true, None).is_ok());
        assert!(
            readiness(false, true, None)
                .unwrap_err()
                .contains("first list")
        );
        assert_eq!(
            readiness(true, false, None).unwrap_err(),
            "not ready: no session with a scheduler is in sync"
        );
        let refused = Some("https://s:50051: cannot open a session: PermissionDenied".to_owned());
        assert!(
            readiness(true, false, refused)
                .unwrap_err()
                .ends_with("(last: https://s:50051: cannot open a session: PermissionDenied)")
        );
    }
}
