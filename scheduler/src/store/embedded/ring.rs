//! Watches: a bounded ring of recent changes that the writer appends to after each commit, and
//! watchers that are only cursors into it.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;

use super::{EVENT_OVERHEAD, Shared, WATCH_CHUNK};
use crate::store::{Revision, StoreError, WatchEvent};

/// The recent changes, oldest first, for watches to read from.
pub(super) struct Ring {
    pub(super) events: VecDeque<WatchEvent>,
    pub(super) bytes: usize,
    max_events: usize,
    max_bytes: usize,
    /// Every change after this revision is still in the ring.
    pub(super) compacted: Revision,
    /// Set when the store closed: no change will follow the ones in the ring.
    pub(super) closed: bool,
}

/// What a watcher found in the ring.
pub(super) enum Collected {
    /// Changes up to this revision have been looked at (matching ones copied out).
    Upto(Revision),
    /// Nothing after the cursor, and nothing will come.
    Closed,
}

impl Ring {
    pub(super) fn new(compacted: Revision, max_events: usize, max_bytes: usize) -> Self {
        Ring {
            events: VecDeque::new(),
            bytes: 0,
            max_events,
            max_bytes,
            compacted,
            closed: false,
        }
    }

    fn size(event: &WatchEvent) -> usize {
        EVENT_OVERHEAD
            + match event {
                WatchEvent::Put(kv) => kv.key.len() + kv.value.len(),
                WatchEvent::Delete { key, prev, .. } => {
                    key.len() + prev.as_ref().map_or(0, |p| p.value.len())
                }
            }
    }

    /// Appends one commit's changes, dropping the oldest beyond the bounds.
    pub(super) fn push(&mut self, events: Vec<WatchEvent>) {
        for event in events {
            self.bytes += Self::size(&event);
            self.events.push_back(event);
        }
        while self.events.len() > self.max_events || self.bytes > self.max_bytes {
            let Some(oldest) = self.events.pop_front() else {
                break;
            };
            self.bytes -= Self::size(&oldest);
            self.compacted = oldest.revision();
        }
    }

    /// Copies the changes under `prefix` after `cursor` into `out`, a bounded chunk at a time
    /// and never stopping inside one revision (the cursor could not express that).
    fn collect(
        &self,
        prefix: &str,
        cursor: Revision,
        out: &mut VecDeque<WatchEvent>,
    ) -> Result<Collected, StoreError> {
        if cursor < self.compacted {
            return Err(StoreError::Compacted {
                requested: cursor,
                oldest: self.compacted,
            });
        }
        let start = self.events.partition_point(|e| e.revision() <= cursor);
        if start == self.events.len() && self.closed {
            return Ok(Collected::Closed);
        }
        let mut upto = cursor;
        for (scanned, event) in self.events.range(start..).enumerate() {
            if scanned >= WATCH_CHUNK && event.revision() != upto {
                break;
            }
            upto = event.revision();
            if event.key().starts_with(prefix) {
                out.push_back(event.clone());
            }
        }
        Ok(Collected::Upto(upto))
    }
}

/// The state of one watch stream: a cursor into the ring.
pub(super) struct Watcher {
    pub(super) shared: Arc<Shared>,
    pub(super) ring_changed: watch::Receiver<Revision>,
    pub(super) prefix: String,
    /// Every change up to this revision has been delivered or filtered out.
    pub(super) cursor: Revision,
    pub(super) buffered: VecDeque<WatchEvent>,
    /// An error ended the stream.
    pub(super) done: bool,
}

impl Watcher {
    pub(super) async fn next(mut self) -> Option<(Result<WatchEvent, StoreError>, Self)> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            let collected =
                self.shared
                    .ring
                    .lock()
                    .collect(&self.prefix, self.cursor, &mut self.buffered);
            match collected {
                Ok(Collected::Upto(upto)) if upto > self.cursor => {
                    self.cursor = upto;
                    continue;
                }
                Ok(Collected::Upto(_)) => {}
                Ok(Collected::Closed) => {
                    self.done = true;
                    return Some((Err(StoreError::Closed), self));
                }
                Err(error) => {
                    self.done = true;
                    return Some((Err(error), self));
                }
            }
            // The sender lives in `shared`, which we hold, so this cannot fail; every push and
            // the close notify it after changing the ring.
            let _ = self.ring_changed.changed().await;
        }
    }
}
