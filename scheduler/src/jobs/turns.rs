//! Users' writes of Jobs take turns: a few at once, the others wait in the order they came.
//!
//! A create is CPU work per cluster (planning the shards, encoding the record, telling every
//! agent session), and agents' status reports need the same runtime threads. With every
//! client's create in progress at once, a status report waited behind all of them: at
//! 100 clusters × 10,000 Jobs from 64 clients on two cores, status p99 was 0.8–2 s and
//! propagation p99 0.24–0.47 s; with 8 creates at a time (the default there, 4 per core),
//! 26–80 ms and 35–52 ms for ≈ 5 % fewer creates per second (BENCHMARKS.md, "users' writes take
//! turns", which also has what it costs at other sizes). Waiting costs a client no CPU, and its
//! place is kept: the semaphore is fair. Agents' reports, heartbeats and the federation's own
//! changes (failover, spill-over, clean-up) do not take turns.
//!
//! A turn lasts the whole write, the store's round trip included, so turns cap writes at
//! turns ÷ round trip: with etcd that cap bit (1,235 creates/s with 16 turns against 1,480–1,590
//! without), and etcd's round trip paces each client anyway (status p99 71–93 ms without
//! turns), so by default only the embedded store's writes take turns.
//!
//! How many writes wait is the gauge `fedjob_job_writes_waiting`: what an operator looks at
//! before raising `--concurrent-job-writes` (or a client's deadline).

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Turns for users' writes of Jobs; with no limit, every write has its turn at once.
#[derive(Debug)]
pub struct WriteTurns {
    turns: Option<Semaphore>,
    /// Writes waiting for a turn now.
    waiting: Gauge,
}

/// A write's turn; the next write waiting starts when it is dropped.
pub type Turn<'a> = Option<SemaphorePermit<'a>>;

impl WriteTurns {
    /// At most `at_once` writes at a time (at least one), or any number with `None`; writes
    /// waiting for a turn are counted in `waiting`.
    pub fn new(at_once: Option<usize>, waiting: Gauge) -> Self {
        Self {
            turns: at_once.map(|n| Semaphore::new(n.max(1))),
            waiting,
        }
    }

    /// Waits for a turn.
    pub async fn take(&self) -> Turn<'_> {
        let turns = self.turns.as_ref()?;
        if let Ok(turn) = turns.try_acquire() {
            return Some(turn);
        }
        // Counted until the turn comes or the caller goes away (a client hung up).
        let _counted = Waiting::count(&self.waiting);
        Some(
            turns
                .acquire()
                .await
                .expect("the semaphore is never closed"),
        )
    }
}

/// One write counted as waiting while this lives.
struct Waiting<'a>(&'a Gauge);

impl<'a> Waiting<'a> {
    fn count(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn turns(at_once: Option<usize>) -> WriteTurns {
        WriteTurns::new(at_once, Gauge::default())
    }

    #[tokio::test]
    async fn a_write_waits_while_every_turn_is_taken_and_starts_when_one_ends() {
        let turns = turns(Some(2));
        let first = turns.take().await;
        let second = turns.take().await;
        let mut third = Box::pin(turns.take());
        assert!(
            (&mut third).now_or_never().is_none(),
            "a third write started"
        );
        drop(first);
        let third = third
            .now_or_never()
            .expect("the third write has the freed turn");
        let mut fourth = Box::pin(turns.take());
        assert!(
            (&mut fourth).now_or_never().is_none(),
            "a fourth write started"
        );
        drop((second, third));
        assert!(fourth.now_or_never().is_some());
    }

    #[tokio::test]
    async fn writes_start_in_the_order_they_came() {
        let turns = turns(Some(1));
        let held = turns.take().await;
        let mut early = Box::pin(turns.take());
        let mut late = Box::pin(turns.take());
        assert!((&mut early).now_or_never().is_none());
        assert!((&mut late).now_or_never().is_none());
        drop(held);
        assert!(
            (&mut late).now_or_never().is_none(),
            "the later write went first"
        );
        let early = early.now_or_never().expect("the earlier write's turn");
        drop(early);
        assert!(late.now_or_never().is_some());
    }

    #[test]
    fn zero_turns_means_one_and_none_means_no_limit() {
        let one = turns(Some(0));
        let held = one.take().now_or_never().expect("a turn");
        assert!(one.take().now_or_never().is_none(), "a second turn");
        drop(held);
        let any = turns(None);
        let taken: Vec<_> = (0..1000).map(|_| any.take().now_or_never()).collect();
        assert!(taken.iter().all(Option::is_some));
        assert_eq!(any.waiting.get(), 0);
    }

    #[test]
    fn the_gauge_counts_the_writes_waiting_and_forgets_those_that_go_away() {
        let turns = turns(Some(1));
        let held = turns.take().now_or_never().expect("a turn");
        assert_eq!(
            turns.waiting.get(),
            0,
            "a write that had its turn at once waited"
        );
        let mut first = Box::pin(turns.take());
        let mut second = Box::pin(turns.take());
        assert!((&mut first).now_or_never().is_none());
        assert!((&mut second).now_or_never().is_none());
        assert_eq!(turns.waiting.get(), 2);
        // The client of the second hangs up.
        drop(second);
        assert_eq!(turns.waiting.get(), 1);
        drop(held);
        let first = first.now_or_never().expect("the freed turn");
        assert_eq!(turns.waiting.get(), 0);
        drop(first);
    }
}
