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

use tokio::sync::{Semaphore, SemaphorePermit};

/// Turns for users' writes of Jobs; with no limit, every write has its turn at once.
#[derive(Debug)]
pub struct WriteTurns {
    turns: Option<Semaphore>,
}

/// A write's turn; the next write waiting starts when it is dropped.
pub type Turn<'a> = Option<SemaphorePermit<'a>>;

impl WriteTurns {
    /// At most `at_once` writes at a time (at least one), or any number with `None`.
    pub fn new(at_once: Option<usize>) -> Self {
        Self {
            turns: at_once.map(|n| Semaphore::new(n.max(1))),
        }
    }

    /// Waits for a turn.
    pub async fn take(&self) -> Turn<'_> {
        match &self.turns {
            Some(turns) => Some(
                turns
                    .acquire()
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_write_waits_while_every_turn_is_taken_and_starts_when_one_ends() {
        let turns = WriteTurns::new(Some(2));
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
        let turns = WriteTurns::new(Some(1));
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
        let one = WriteTurns::new(Some(0));
        let held = one.take().now_or_never().expect("a turn");
        assert!(one.take().now_or_never().is_none(), "a second turn");
        drop(held);
        let any = WriteTurns::new(None);
        let turns: Vec<_> = (0..1000).map(|_| any.take().now_or_never()).collect();
        assert!(turns.iter().all(Option::is_some));
    }
}
