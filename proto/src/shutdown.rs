//! Shutdown as a type (after mini-redis' `shutdown.rs`), one for every fedjob binary: a
//! [`Trigger`] fired once, and any number of [`Shutdown`] handles that long-lived tasks (agent
//! streams, watches, background loops, HTTP servers) select on to end cleanly.
//!
//! Dropping the trigger counts as firing it, so no task waits forever on an owner that is gone.
//! [`signal`] resolves on SIGTERM or Ctrl-C, which is where a binary starts its drain.

use tokio::sync::watch;

/// Fires the shutdown of everything subscribed.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// Waits for the shutdown; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A new trigger and a first handle observing it.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Default for Trigger {
    fn default() -> Self {
        channel().0
    }
}

impl Trigger {
    /// Fires the shutdown (again is harmless).
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }

    /// Another handle observing this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    /// Whether the shutdown has fired (or its trigger is gone).
    pub fn is_fired(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolves once the shutdown fires (at once if it already has, or if the trigger is gone).
    pub async fn fired(&self) {
        let mut rx = self.rx.clone();
        // An error means the trigger is gone, which is a shutdown too.
        let _ = rx.wait_for(|fired| *fired).await;
    }
}

/// Resolves when the process receives SIGTERM or SIGINT (Ctrl-C), saying which.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received, draining"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, draining"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the process");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_once_for_every_handle() {
        let (trigger, shutdown) = channel();
        let other = trigger.subscribe();
        let clone = shutdown.clone();
        assert!(!shutdown.is_fired());
        let waiter = tokio::spawn(async move { clone.fired().await });
        trigger.fire();
        waiter.await.unwrap();
        assert!(shutdown.is_fired() && other.is_fired());
        shutdown.fired().await;
        other.fired().await;
        trigger.fire();
        assert!(shutdown.is_fired(), "firing again is harmless");
    }

    #[tokio::test]
    async fn dropping_the_trigger_fires() {
        let trigger = Trigger::default();
        let shutdown = trigger.subscribe();
        assert!(!shutdown.is_fired());
        drop(trigger);
        assert!(shutdown.is_fired());
        shutdown.fired().await;
    }
}
