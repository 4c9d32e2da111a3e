//! Capped, jittered exponential backoff between reconnects (and between retries of a shard).
//!
//! Each failure doubles the ceiling, from `min` up to `max`; the delay is drawn uniformly from
//! the upper half of the ceiling ("equal jitter"), so agents that lost the scheduler together
//! do not all come back in the same instant, yet none retries sooner than half the ceiling.

use std::time::Duration;

use rand::Rng;

/// Backoff state for one thing that is retried.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and never above `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.min(max);
        Self {
            min,
            max,
            ceiling: min,
        }
    }

    /// The syncer's reconnect backoff: 100 ms doubling up to 5 s.
    pub fn reconnect() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// Limits the syncer's reconnect backoff once a scheduler asked for a heartbeat every
    /// `interval`: never slower than that (nor than 5 s), without starting again from `min`.
    /// A scheduler gives a cluster a grace of several heartbeat intervals, also after its own
    /// restart; a syncer that had backed off to 5 s while it was down would come back after
    /// that grace, and the scheduler would take the cluster for lost (and move
    /// `rebalance: true` work away) although nothing but the scheduler had failed.
    pub fn limit_reconnect(&mut self, interval: Duration) {
        let usual = Self::reconnect();
        self.max = usual.max.min(interval);
        self.min = usual.min.min(self.max);
        self.ceiling = self.ceiling.clamp(self.min, self.max);
    }

    /// The delay before the next attempt, drawn with `rng`; raises the ceiling for the one after.
    pub fn next_with(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(rng.random_range(0..=spread))
    }

    /// The delay before the next attempt (thread-local randomness).
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(&mut rand::rng())
    }

    /// Starts again from `min` after a success.
    pub fn reset(&mut self) {
        self.ceiling = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::reconnect();
        let mut ceiling = Duration::from_millis(100);
        for _ in 0..12 {
            let d = b.next_with(&mut rng);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(Duration::from_secs(5));
        }
        // Capped: never more than 5 s however long it fails.
        assert!(b.next_with(&mut rng) <= Duration::from_secs(5));
        b.reset();
        assert!(b.next_with(&mut rng) <= Duration::from_millis(100));
    }

    #[test]
    fn reconnects_at_least_as_often_as_the_scheduler_asked_for_heartbeats() {
        let mut rng = StdRng::seed_from_u64(3);
        let interval = Duration::from_millis(333);
        let mut b = Backoff::reconnect();
        for _ in 0..10 {
            b.next_with(&mut rng);
        }
        b.limit_reconnect(interval);
        let delays: Vec<Duration> = (0..20).map(|_| b.next_with(&mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= interval), "{delays:?}");
        assert!(
            delays.iter().all(|d| *d >= interval / 2),
            "not started again from 100 ms: {delays:?}"
        );
        // A longer interval (the scheduler came back with a longer grace): the 5 s cap again.
        b.limit_reconnect(Duration::from_secs(30));
        let last = (0..20).map(|_| b.next_with(&mut rng)).last().unwrap();
        assert!(last > Duration::from_secs(2) && last <= Duration::from_secs(5));
        // Shorter than the usual start: every delay is at most the interval.
        b.reset();
        b.limit_reconnect(Duration::from_millis(40));
        assert!((0..5).all(|_| b.next_with(&mut rng) <= Duration::from_millis(40)));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| {
                Backoff::new(Duration::from_secs(4), Duration::from_secs(4)).next_with(&mut rng)
            })
            .collect();
        assert!(delays.len() > 10, "delays are not spread: {delays:?}");
    }
}
