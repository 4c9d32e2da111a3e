//! Keeps a replica's state in step with the store when other replicas write to it too.
//!
//! One watch over every key from the revision the state was loaded at: changes of Jobs written
//! elsewhere are re-read (this replica's own are published when written and skipped here),
//! cluster records and liveness records are applied as they come. If the watch history was
//! compacted away, everything is listed again and the watch restarts from there.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::control_plane::ControlPlane;
use crate::shutdown::Shutdown;
use crate::store::StoreError;

/// Starts following the store as two of `tasks` (the watch, and the re-reading of Jobs changed
/// elsewhere); both stop at `shutdown` or when the store closes.
pub fn spawn(cp: Arc<ControlPlane>, mut shutdown: Shutdown, tasks: &TaskTracker) {
    let refresher = cp.clone();
    let mut stop = shutdown.clone();
    tasks.spawn(async move {
        // Stopping between two Jobs is safe: a re-read only publishes what the store has.
        tokio::select! {
            _ = refresher.refresh_stale() => {}
            _ = stop.fired() => {}
        }
    });
    tasks.spawn(async move {
        let mut after = cp.loaded_at();
        loop {
            let mut events = cp.store().watch("", after);
            loop {
                let event = tokio::select! {
                    e = events.next() => e,
                    _ = shutdown.fired() => return,
                };
                match event {
                    Some(Ok(e)) => {
                        after = after.max(e.revision());
                        cp.apply_event(e).await;
                    }
                    Some(Err(StoreError::Compacted { .. })) => {
                        info!(after, "watch history compacted: listing everything again");
                        match cp.resync().await {
                            Ok(revision) => after = revision,
                            Err(e) => warn!(error = %e, "resync failed; retrying"),
                        }
                        break;
                    }
                    Some(Err(StoreError::Closed)) => return,
                    Some(Err(e)) => {
                        warn!(error = %e, after, "store watch failed; re-opening");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                    None => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                }
            }
        }
    });
}
