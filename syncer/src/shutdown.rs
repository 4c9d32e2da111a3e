//! Shutdown as a type: a [`Trigger`] that fires once, and [`Shutdown`] handles that any task
//! can wait on. Dropping the trigger counts as firing it, so a task never waits forever on a
//! syncer that is gone.

use tokio::sync::watch;

/// Fires the shutdown.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// Waits for the shutdown; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A new trigger and the handle that observes it.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    /// Fires the shutdown (again is harmless).
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }

    /// A handle observing this trigger.
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

    /// Resolves once the shutdown fires (or its trigger is dropped).
    pub async fn fired(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|fired| *fired).await;
    }
}

/// Resolves when the process receives SIGTERM or SIGINT (Ctrl-C).
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
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the syncer");
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
        let other = shutdown.clone();
        assert!(!shutdown.is_fired());
        let waiter = tokio::spawn(async move { other.fired().await });
        trigger.fire();
        waiter.await.unwrap();
        assert!(shutdown.is_fired());
        shutdown.fired().await;
    }

    #[tokio::test]
    async fn dropping_the_trigger_fires() {
        let (trigger, shutdown) = channel();
        drop(trigger);
        assert!(shutdown.is_fired());
        shutdown.fired().await;
    }
}
