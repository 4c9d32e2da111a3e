//! Shutdown as a value (after mini-redis' `shutdown.rs`): one [`Trigger`] per simulated
//! cluster, and a [`Shutdown`] clone in every task that must stop with it — the HTTP server,
//! each open watch, the controller.

use tokio::sync::watch;

/// Fires the shutdown of everything subscribed.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

impl Default for Trigger {
    fn default() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }
}

impl Trigger {
    /// Starts the shutdown; idempotent.
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }

    /// A handle that resolves once the shutdown starts.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

/// Resolves when the shutdown starts.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Waits for the shutdown (returns at once if it already started).
    pub async fn recv(&mut self) {
        // An error means the trigger is gone, which is a shutdown too.
        let _ = self.rx.wait_for(|fired| *fired).await;
    }

    /// Whether the shutdown started.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }
}
