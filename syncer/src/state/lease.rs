//! The self-fence's lease ([`crate::rules::fence`]): when a scheduler was last heard from, and
//! the signal that the fence went up, which an open session watches to end itself.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

/// When a scheduler was last heard from, and the signal that the fence went up.
#[derive(Debug)]
pub struct Lease {
    after: Option<Duration>,
    last: Mutex<Instant>,
    raised: watch::Sender<u64>,
}

impl Lease {
    /// A lease of `after` (none: never fence), counted from now.
    pub fn new(after: Option<Duration>) -> Self {
        Self {
            after,
            last: Mutex::new(Instant::now()),
            raised: watch::channel(0).0,
        }
    }

    /// The lease, when self-fencing is on.
    pub fn after(&self) -> Option<Duration> {
        self.after
    }

    /// A scheduler spoke.
    pub fn heard(&self) {
        *self.last.lock() = Instant::now();
    }

    /// How long no scheduler has spoken.
    pub fn silent_for(&self) -> Duration {
        self.last.lock().elapsed()
    }

    /// A receiver that changes each time the fence goes up (a session subscribes at its start).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.raised.subscribe()
    }

    /// Signals that the fence went up.
    pub fn raise(&self) {
        self.raised.send_modify(|n| *n += 1);
    }
}
