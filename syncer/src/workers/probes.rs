//! The syncer's HTTP endpoint on `--metrics-listen`: `GET /metrics` (Prometheus text format),
//! `GET /healthz` (the process serves) and `GET /readyz` (it is doing its job: the first list
//! of the cluster's shards is complete, the member cluster's API server answers as it should,
//! and a session with a scheduler is in sync; otherwise `503` and why).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::time::Instant;

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
    let cluster = ctx.cluster.health().problems(Instant::now());
    match readiness(
        ctx.shards.is_listed(),
        ctx.metrics.in_sync(),
        last_error,
        cluster,
    ) {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Whether the syncer is ready, or why not: the first list not complete, what is wrong with
/// the member cluster's API server, no session in sync (with why the last one failed).
fn readiness(
    listed: bool,
    in_sync: bool,
    last_error: Option<String>,
    cluster: Vec<String>,
) -> Result<(), String> {
    let mut why = Vec::new();
    if !listed {
        why.push("the first list of this cluster's shards is not complete".to_owned());
    }
    why.extend(cluster);
    if listed && !in_sync {
        let mut session = "no session with a scheduler is in sync".to_owned();
        if let Some(e) = last_error {
            session.push_str(&format!(" (last: {e})"));
        }
        why.push(session);
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!("not ready: {}", why.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_listed_and_in_sync() {
        assert!(readiness(true, true, None, vec![]).is_ok());
        assert!(
            readiness(false, true, None, vec![])
                .unwrap_err()
                .contains("first list")
        );
        assert_eq!(
            readiness(true, false, None, vec![]).unwrap_err(),
            "not ready: no session with a scheduler is in sync"
        );
        let refused = Some("https://s:50051: cannot open a session: PermissionDenied".to_owned());
        assert!(
            readiness(true, false, refused, vec![])
                .unwrap_err()
                .ends_with("(last: https://s:50051: cannot open a session: PermissionDenied)")
        );
    }

    #[test]
    fn not_ready_while_the_member_cluster_is_in_trouble() {
        let trouble =
            || vec!["the member cluster's API server cannot be reached: refused".to_owned()];
        assert_eq!(
            readiness(true, true, None, trouble()).unwrap_err(),
            "not ready: the member cluster's API server cannot be reached: refused"
        );
        assert_eq!(
            readiness(false, false, None, trouble()).unwrap_err(),
            "not ready: the first list of this cluster's shards is not complete; the member cluster's API server cannot be reached: refused"
        );
    }
}
