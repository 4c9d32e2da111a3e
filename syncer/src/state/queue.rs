//! A work queue of shard keys, as a controller keeps one: a key is queued at most once, is
//! handed to one worker at a time, and a key that changes while a worker has it is handed out
//! again once that worker is done, so no two applies to one shard ever overlap.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// The queue.
#[derive(Debug)]
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
}

#[derive(Debug)]
struct State<K> {
    order: VecDeque<K>,
    queued: HashSet<K>,
    active: HashSet<K>,
    again: HashSet<K>,
    closed: bool,
}

impl<K: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty, open queue.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                order: VecDeque::new(),
                queued: HashSet::new(),
                active: HashSet::new(),
                again: HashSet::new(),
                closed: false,
            }),
            notify: Notify::new(),
        }
    }

    /// Queues `key` (once, however often it is pushed before a worker takes it).
    pub fn push(&self, key: K) {
        let mut s = self.state.lock();
        if s.closed {
            return;
        }
        if s.active.contains(&key) {
            s.again.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.order.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay` (a retry).
    pub fn push_after(self: &Arc<Self>, key: K, delay: Duration) {
        let queue = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(queue) = queue.upgrade() {
                queue.push(key);
            }
        });
    }

    /// The next key to work on; `None` once the queue is closed. The caller must call
    /// [`done`](Self::done) with it.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock();
                if s.closed {
                    return None;
                }
                if let Some(key) = s.order.pop_front() {
                    s.queued.remove(&key);
                    s.active.insert(key.clone());
                    let more = !s.order.is_empty();
                    drop(s);
                    if more {
                        // Pass the wake-up on, so that idle workers share a burst.
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks the work on `key` finished; queues it again if it was pushed meanwhile.
    pub fn done(&self, key: &K) {
        let mut s = self.state.lock();
        s.active.remove(key);
        if s.again.remove(key) && !s.closed && s.queued.insert(key.clone()) {
            s.order.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Stops handing out work: [`next`](Self::next) returns `None` from now on; keys in hand
    /// are finished by their workers.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.notify.notify_waiters();
    }

    /// Keys waiting (not counting those being worked on).
    pub fn len(&self) -> usize {
        self.state.lock().order.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_queued_once() {
        let q = WorkQueue::new();
        q.push("a");
        q.push("b");
        q.push("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_pushed_while_active_comes_back_after_done() {
        let q = WorkQueue::new();
        q.push("a");
        let a = q.next().await.unwrap();
        q.push("a");
        q.push("a");
        assert!(q.is_empty(), "never handed out twice at once");
        q.done(&a);
        assert_eq!(q.len(), 1);
        let again = q.next().await.unwrap();
        q.done(&again);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn close_wakes_idle_workers() {
        let q = Arc::new(WorkQueue::<u32>::new());
        let worker = {
            let q = q.clone();
            tokio::spawn(async move { q.next().await })
        };
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(worker.await.unwrap(), None);
        q.push(1);
        assert!(q.is_empty(), "a closed queue takes nothing");
    }

    #[tokio::test]
    async fn waiting_workers_are_woken_by_push() {
        let q = Arc::new(WorkQueue::<u32>::new());
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.next().await })
            })
            .collect();
        tokio::task::yield_now().await;
        for k in 0..3 {
            q.push(k);
        }
        let mut got: Vec<u32> = Vec::new();
        for w in workers {
            got.push(w.await.unwrap().unwrap());
        }
        got.sort();
        assert_eq!(got, vec![0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn push_after_delays() {
        let q = Arc::new(WorkQueue::new());
        q.push_after("a", Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.len(), 1);
    }
}
