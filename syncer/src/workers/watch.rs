//! The watch of the cluster's labelled Jobs, fed into the shard table; shards that drifted are
//! queued for the reconcile workers. When the API server ends the watch or a list with `410
//! Expired` (its resourceVersion was compacted), the shards are listed afresh, and `/readyz`
//! says so until the list is complete.

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::watcher;
use tracing::warn;

use crate::context::Context;

/// Feeds the watch of labelled Jobs into the shard table, queueing shards that drifted.
pub async fn watch_shards(ctx: Arc<Context>) {
    let mut events = ctx.cluster.watch();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let done = matches!(event, watcher::Event::InitDone);
                for key in ctx.shards.observe(event) {
                    ctx.queue.push(key);
                }
                if done {
                    ctx.cluster.health().relisting(None);
                }
            }
            Err(e) => {
                ctx.metrics.watch_errors.inc();
                if let Some(why) = expired(&e) {
                    ctx.cluster.health().relisting(Some(why));
                }
                warn!(cluster = %ctx.cluster_name, error = %e, "watching the shards failed; retrying with backoff");
            }
        }
    }
}

/// Why the watcher lists afresh after `error`: a `410` that ended its watch or its paged list.
fn expired(error: &watcher::Error) -> Option<String> {
    let (what, status) = match error {
        watcher::Error::WatchError(status) => ("the watch", status.as_ref()),
        watcher::Error::InitialListFailed(kube::Error::Api(status)) => {
            ("the list", status.as_ref())
        }
        _ => return None,
    };
    (status.code == 410).then(|| {
        format!(
            "{what} ended with 410 {}: {}",
            status.reason, status.message
        )
    })
}
