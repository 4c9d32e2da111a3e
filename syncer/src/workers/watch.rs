//! The watch of the cluster's labelled Jobs, fed into the shard table; shards that drifted are
//! queued for the reconcile workers.

use std::sync::Arc;

use futures::StreamExt;
use tracing::warn;

use crate::context::Context;

/// Feeds the watch of labelled Jobs into the shard table, queueing shards that drifted.
pub async fn watch_shards(ctx: Arc<Context>) {
    let mut events = ctx.cluster.watch();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                for key in ctx.shards.observe(event) {
                    ctx.queue.push(key);
                }
            }
            Err(e) => {
                ctx.metrics.watch_errors.inc();
                warn!(cluster = %ctx.cluster_name, error = %e, "watching the shards failed; retrying with backoff");
            }
        }
    }
}
