//! The self-fence's task: watches the lease and raises the fence when it runs out (the rules
//! are [`crate::rules::fence`]; lifting it is [`Context::lift_fence`]).

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::context::Context;
use crate::rules::fence::due;

/// Watches the lease: when no scheduler was heard from for longer than `lease`, suspends the
/// unfinished shards (queued for the workers) and tells the open session, if any, to end, so
/// that the fence is lifted only by a session that is in sync again from its start.
pub async fn watch_lease(ctx: Arc<Context>, lease: Duration) {
    let tick = (lease / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let silent = ctx.lease.silent_for();
        if !due(lease, silent, ctx.shards.standing()) {
            continue;
        }
        let keys = ctx.shards.fence();
        warn!(
            cluster = %ctx.cluster_name, silent_ms = silent.as_millis() as u64,
            lease_ms = lease.as_millis() as u64, shards = keys.len(),
            "self-fencing: no scheduler heard from for longer than --self-fence-after; suspending the unfinished shards so that their work can be reassigned safely"
        );
        ctx.lease.raise();
        for key in keys {
            ctx.queue.push(key);
        }
    }
}
