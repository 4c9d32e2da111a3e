//! Latency samples and their summary (p50, p99, max), and the clock every sample is taken on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

/// A monotonic clock shared by every task of a run: microseconds since the run started, so that
/// times taken in different tasks (a client's ack, an agent's receipt) compare directly.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    /// Microseconds since the clock started.
    pub fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
}

/// "Not yet": the value of a time slot that nothing wrote.
pub const UNSET: u64 = u64::MAX;

/// A time slot written once or raised by several tasks.
#[derive(Debug)]
pub struct TimeSlot(AtomicU64);

impl Default for TimeSlot {
    fn default() -> Self {
        Self(AtomicU64::new(UNSET))
    }
}

impl TimeSlot {
    /// Keeps the earliest of the times set.
    pub fn set_min(&self, us: u64) {
        self.0.fetch_min(us, Ordering::AcqRel);
    }

    /// Keeps the latest of the times set (UNSET counts as earliest).
    pub fn set_max(&self, us: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur == UNSET || us > cur).then_some(us)
            });
    }

    /// The time, when one was set.
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            UNSET => None,
            us => Some(us),
        }
    }
}

/// p50, p99 and max of a set of latencies, in milliseconds, with how many there were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
}

impl Summary {
    /// Summarises latencies given in microseconds (nearest-rank percentiles).
    pub fn of_micros(mut samples: Vec<u64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        let rank = |p: f64| {
            let r = (p * samples.len() as f64).ceil() as usize;
            samples[r.clamp(1, samples.len()) - 1]
        };
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Self {
            count: samples.len(),
            p50_ms: ms(rank(0.50)),
            p99_ms: ms(rank(0.99)),
            max_ms: ms(*samples.last().expect("not empty")),
            mean_ms: ms((sum / samples.len() as u128) as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Summary::of_micros((1..=100).map(|i| i * 1000).collect());
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(s.mean_ms, 50.5);
        let one = Summary::of_micros(vec![1500]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (1.5, 1.5, 1.5));
        assert_eq!(Summary::of_micros(vec![]), Summary::default());
    }

    #[test]
    fn slots_keep_the_earliest_or_latest() {
        let s = TimeSlot::default();
        assert_eq!(s.get(), None);
        s.set_max(5);
        s.set_max(3);
        assert_eq!(s.get(), Some(5));
        let m = TimeSlot::default();
        m.set_min(5);
        m.set_min(7);
        assert_eq!(m.get(), Some(5));
    }
}
