//! Who saw what when: per federated Job, when its create was acknowledged and when each
//! cluster got its shard; per sampled Job, when each cluster reported status and when the
//! aggregated status showed it. Written by many tasks at once, read when the run ends.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::stats::TimeSlot;

/// Prefix of every Job name the bench creates; the rest is the Job's index.
pub const JOB_PREFIX: &str = "bench-";

/// The name of Job `idx`.
pub fn job_name(idx: usize) -> String {
    format!("{JOB_PREFIX}{idx:06}")
}

/// The index of a Job (or of its first shard, which has the Job's name) from its name.
pub fn job_index(name: &str) -> Option<usize> {
    name.strip_prefix(JOB_PREFIX)?.parse().ok()
}

/// The name of cluster `idx`.
pub fn cluster_name(idx: usize) -> String {
    format!("c-{idx:04}")
}

/// The index of a cluster from its name.
pub fn cluster_index(name: &str) -> Option<usize> {
    name.strip_prefix("c-")?.parse().ok()
}

#[derive(Debug, Default)]
struct JobSlot {
    /// When the create was sent.
    sent_us: TimeSlot,
    /// When the create was acknowledged.
    ack_us: TimeSlot,
    /// Events to wait for (shards placed); 0 until the ack says.
    expected: AtomicU32,
    /// Events seen so far.
    seen: AtomicU32,
    /// When the last of them was seen.
    last_us: TimeSlot,
    /// Counted in `complete` already.
    done: AtomicBool,
}

/// For every Job: an acknowledgement, then one event per shard (an agent receiving its RUN
/// assignment, a shard appearing in a member cluster, a shard completing), in either order.
#[derive(Debug)]
pub struct JobTracker {
    slots: Box<[JobSlot]>,
    complete: AtomicUsize,
    changed: Notify,
}

impl JobTracker {
    /// A tracker of `jobs` Jobs.
    pub fn new(jobs: usize) -> Self {
        Self {
            slots: (0..jobs).map(|_| JobSlot::default()).collect(),
            complete: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }

    /// Records that Job `idx` was sent at `sent_us`, and acknowledged at `us` with `expected`
    /// shards to wait for.
    pub fn acknowledged(&self, idx: usize, sent_us: u64, us: u64, expected: u32) {
        let Some(slot) = self.slots.get(idx) else {
            return;
        };
        slot.sent_us.set_min(sent_us);
        slot.ack_us.set_min(us);
        slot.expected.store(expected, Ordering::SeqCst);
        self.check(slot);
    }

    /// Records one shard event of Job `idx` at `us`. Indexes beyond the run are ignored.
    pub fn seen(&self, idx: usize, us: u64) {
        let Some(slot) = self.slots.get(idx) else {
            return;
        };
        slot.last_us.set_max(us);
        slot.seen.fetch_add(1, Ordering::SeqCst);
        self.check(slot);
    }

    fn check(&self, slot: &JobSlot) {
        let expected = slot.expected.load(Ordering::SeqCst);
        if slot.ack_us.get().is_some()
            && slot.seen.load(Ordering::SeqCst) >= expected
            && !slot.done.swap(true, Ordering::SeqCst)
        {
            self.complete.fetch_add(1, Ordering::SeqCst);
            self.changed.notify_waiters();
        }
    }

    /// Jobs acknowledged whose every shard event was seen.
    pub fn complete(&self) -> usize {
        self.complete.load(Ordering::SeqCst)
    }

    /// Waits until `target` Jobs are complete or `timeout` passes; returns how many are.
    pub async fn wait_complete(&self, target: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            let done = self.complete();
            if done >= target || tokio::time::Instant::now() >= deadline {
                return done;
            }
            // Woken by progress, or every 100 ms in case a wake-up raced the check.
            let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
        }
    }

    /// For every complete Job: last event − acknowledgement, clamped at 0 (an event may beat
    /// the acknowledgement to the bench).
    pub fn latencies_us(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|s| s.done.load(Ordering::SeqCst))
            .filter_map(|s| Some(s.last_us.get()?.saturating_sub(s.ack_us.get()?)))
            .collect()
    }

    /// For every complete Job: last event − create sent (never negative: the event follows
    /// the send).
    pub fn latencies_from_send_us(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|s| s.done.load(Ordering::SeqCst))
            .filter_map(|s| Some(s.last_us.get()?.saturating_sub(s.sent_us.get()?)))
            .collect()
    }

    /// Complete Jobs whose last event came before their acknowledgement reached the bench.
    pub fn before_ack(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.done.load(Ordering::SeqCst))
            .filter(|s| matches!((s.last_us.get(), s.ack_us.get()), (Some(l), Some(a)) if l < a))
            .count()
    }

    /// When the last event of Job `idx` was seen, once all were.
    pub fn completed_at(&self, idx: usize) -> Option<u64> {
        let slot = self.slots.get(idx)?;
        if slot.done.load(Ordering::SeqCst) {
            slot.last_us.get()
        } else {
            None
        }
    }
}

/// Probes of the status path on a sample of the Jobs: per sampled Job and cluster, when the
/// cluster reported its shard Running and when a `WatchJob` stream showed it; per sampled Job,
/// when the watch opened and when it showed the Job Complete.
#[derive(Debug)]
pub struct StatusProbes {
    stride: usize,
    clusters: usize,
    probes: Box<[Probe]>,
}

#[derive(Debug)]
struct Probe {
    watch_open: AtomicBool,
    opened: Notify,
    reported_us: Box<[TimeSlot]>,
    shown_us: Box<[TimeSlot]>,
    complete_us: TimeSlot,
}

impl StatusProbes {
    /// Probes on `sample` of `jobs` Jobs (every `jobs / sample`-th one) over `clusters` clusters.
    pub fn new(jobs: usize, sample: usize, clusters: usize) -> Self {
        let sample = sample.min(jobs);
        let stride = jobs.checked_div(sample).unwrap_or(usize::MAX);
        let slots = |n: usize| (0..n).map(|_| TimeSlot::default()).collect();
        Self {
            stride,
            clusters,
            probes: (0..sample)
                .map(|_| Probe {
                    watch_open: AtomicBool::new(false),
                    opened: Notify::new(),
                    reported_us: slots(clusters),
                    shown_us: slots(clusters),
                    complete_us: TimeSlot::default(),
                })
                .collect(),
        }
    }

    /// Number of sampled Jobs.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    /// Whether no Job is sampled.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// The probe number of Job `idx`, when it is sampled.
    pub fn probe_of(&self, idx: usize) -> Option<usize> {
        (self.stride != usize::MAX && idx.is_multiple_of(self.stride))
            .then(|| idx / self.stride)
            .filter(|&k| k < self.probes.len())
    }

    /// The Job index of probe `k`.
    pub fn job_of(&self, k: usize) -> usize {
        k * self.stride
    }

    /// Marks probe `k`'s watch open: status reports held back for it may go.
    pub fn mark_open(&self, k: usize) {
        if let Some(p) = self.probes.get(k) {
            p.watch_open.store(true, Ordering::SeqCst);
            p.opened.notify_waiters();
        }
    }

    /// Waits (at most `timeout`) until probe `k`'s watch is open; returns whether it is.
    pub async fn wait_open(&self, k: usize, timeout: Duration) -> bool {
        let Some(p) = self.probes.get(k) else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let opened = p.opened.notified();
            if p.watch_open.load(Ordering::SeqCst) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), opened).await;
        }
    }

    /// Records that cluster `c` reported probe `k`'s shard at `us`.
    pub fn reported(&self, k: usize, c: usize, us: u64) {
        if let Some(slot) = self.probes.get(k).and_then(|p| p.reported_us.get(c)) {
            slot.set_min(us);
        }
    }

    /// Records that the aggregated status of probe `k` showed cluster `c`'s report at `us`.
    pub fn shown(&self, k: usize, c: usize, us: u64) {
        if let Some(slot) = self.probes.get(k).and_then(|p| p.shown_us.get(c)) {
            slot.set_min(us);
        }
    }

    /// Records that probe `k`'s Job was shown Complete at `us`.
    pub fn completed(&self, k: usize, us: u64) {
        if let Some(p) = self.probes.get(k) {
            p.complete_us.set_min(us);
        }
    }

    /// Whether probe `k`'s report from cluster `c` was shown already.
    pub fn was_shown(&self, k: usize, c: usize) -> bool {
        self.probes
            .get(k)
            .and_then(|p| p.shown_us.get(c))
            .is_some_and(|s| s.get().is_some())
    }

    /// When probe `k` was shown Complete.
    pub fn complete_at(&self, k: usize) -> Option<u64> {
        self.probes.get(k)?.complete_us.get()
    }

    /// Number of clusters probed.
    pub fn clusters(&self) -> usize {
        self.clusters
    }

    /// Report → shown, for every report that was shown (clamped at 0), and how many reports
    /// were sent but never shown.
    pub fn status_latencies_us(&self) -> (Vec<u64>, usize) {
        let mut latencies = Vec::new();
        let mut missing = 0;
        for p in self.probes.iter() {
            for (reported, shown) in p.reported_us.iter().zip(p.shown_us.iter()) {
                match (reported.get(), shown.get()) {
                    (Some(r), Some(s)) => latencies.push(s.saturating_sub(r)),
                    (Some(_), None) => missing += 1,
                    _ => {}
                }
            }
        }
        (latencies, missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(job_index(&job_name(42)), Some(42));
        assert_eq!(job_index("bench-000042-2"), None);
        assert_eq!(job_index("other"), None);
        assert_eq!(cluster_index(&cluster_name(7)), Some(7));
    }

    #[test]
    fn a_job_is_complete_after_its_ack_and_every_event_in_any_order() {
        let t = JobTracker::new(2);
        t.seen(0, 10);
        t.seen(0, 30);
        assert_eq!(t.complete(), 0, "not acknowledged yet");
        t.acknowledged(0, 5, 20, 2);
        assert_eq!(t.complete(), 1);
        t.acknowledged(1, 90, 100, 2);
        t.seen(1, 150);
        assert_eq!(t.complete(), 1, "one event of two");
        t.seen(1, 130);
        assert_eq!(t.complete(), 2);
        let mut l = t.latencies_us();
        l.sort();
        assert_eq!(l, vec![10, 50]);
        let mut from_send = t.latencies_from_send_us();
        from_send.sort();
        assert_eq!(from_send, vec![25, 60]);
        assert_eq!(t.before_ack(), 0);
        assert_eq!(t.completed_at(1), Some(150));
        t.seen(7, 1); // out of range: ignored
    }

    #[test]
    fn probes_sample_evenly_and_pair_reports_with_shows() {
        let p = StatusProbes::new(100, 10, 3);
        assert_eq!(p.len(), 10);
        assert_eq!(p.probe_of(0), Some(0));
        assert_eq!(p.probe_of(30), Some(3));
        assert_eq!(p.probe_of(31), None);
        assert_eq!(p.job_of(3), 30);
        p.reported(3, 1, 100);
        p.shown(3, 1, 160);
        p.reported(3, 2, 200);
        assert!(p.was_shown(3, 1) && !p.was_shown(3, 2));
        assert_eq!(p.status_latencies_us(), (vec![60], 1));
        assert!(StatusProbes::new(10, 0, 3).probe_of(0).is_none());
    }
}
