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
