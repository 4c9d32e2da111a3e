//! How often an agent's capacity reports go: a byte budget per heartbeat.
//!
//! A report costs the scheduler in proportion to what it carries (the groups it decodes and
//! merges), a heartbeat a small fixed amount. A small or calm cluster's reports are a few
//! hundred bytes and go at the next heartbeat after a change; a large or busy cluster's would
//! cost the scheduler many heartbeats' worth each time, so after a report of `n` bytes the next
//! one waits `⌈n ÷ budget⌉` heartbeats. Over any stretch of time a cluster's reports then
//! average at most the budget per heartbeat, whatever its size; what waits is not lost, it goes
//! in the next report (the [`super::Reporter`] sends the difference from what it sent last).

/// The default budget, bytes of capacity reports per heartbeat: a 1,000-node cluster whose
/// pods change on 5 % of its nodes between heartbeats reports at every one of them.
pub const DEFAULT_BYTES_PER_HEARTBEAT: u64 = 2048;

/// When the next capacity report may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Bytes per heartbeat; 0 lets a report go at every heartbeat.
    budget: u64,
    /// Heartbeats still to skip before the next report.
    skip: u64,
}

impl Default for Pacing {
    fn default() -> Self {
        Self::new(DEFAULT_BYTES_PER_HEARTBEAT)
    }
}

impl Pacing {
    /// Pacing with a budget of `bytes_per_heartbeat` (0: no pacing).
    pub fn new(bytes_per_heartbeat: u64) -> Self {
        Self {
            budget: bytes_per_heartbeat,
            skip: 0,
        }
    }

    /// A heartbeat went out: whether a report may go with it.
    pub fn heartbeat(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// A report of `bytes` went: the next one waits for as many heartbeats as the report is
    /// budgets long, rounded up (the next heartbeat at the soonest).
    pub fn sent(&mut self, bytes: u64) {
        self.skip = match self.budget {
            0 => 0,
            budget => bytes.div_ceil(budget).saturating_sub(1),
        };
    }

    /// A new stream: its first report, which is full, goes at the next heartbeat.
    pub fn restart(&mut self) {
        self.skip = 0;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The heartbeats (numbered from 0) the reports go with, when the `i`-th report, of
    /// `sizes[i]` bytes, is ready from the heartbeat after the one before it went.
    fn sent_at(budget: u64, sizes: &[u64]) -> Vec<usize> {
        let mut pacing = Pacing::new(budget);
        let mut at = Vec::new();
        let mut next = sizes.iter();
        for beat in 0.. {
            if pacing.heartbeat() {
                let Some(&bytes) = next.next() else { break };
                at.push(beat);
                pacing.sent(bytes);
            }
        }
        at
    }

    #[test]
    fn a_report_within_the_budget_leaves_the_next_heartbeat_free() {
        assert_eq!(sent_at(2048, &[300, 2048, 1]), vec![0, 1, 2]);
    }

    #[test]
    fn a_larger_report_waits_a_heartbeat_per_budget_it_takes() {
        // 2049 bytes are two budgets (rounded up), 7,000 four, 10,240 exactly five.
        assert_eq!(sent_at(2048, &[2049, 7000, 10_240, 5]), vec![0, 2, 6, 11]);
    }

    #[test]
    fn no_budget_sends_at_every_heartbeat() {
        assert_eq!(sent_at(0, &[1 << 20, 1 << 20, 1]), vec![0, 1, 2]);
    }

    #[test]
    fn a_new_stream_sends_its_full_report_at_once() {
        let mut pacing = Pacing::new(1000);
        pacing.sent(10_000);
        assert!(!pacing.heartbeat());
        pacing.restart();
        assert!(pacing.heartbeat());
    }

    proptest! {
        /// Over every stretch between two reports, the bytes sent before the later one are at
        /// most the budget per heartbeat elapsed; and each report waits exactly the
        /// ⌈bytes ÷ budget⌉ heartbeats (at least one) its predecessor asked for.
        #[test]
        fn reports_average_at_most_the_budget_per_heartbeat(
            budget in 1u64..5000,
            sizes in prop::collection::vec(1u64..50_000, 1..40),
        ) {
            let at = sent_at(budget, &sizes);
            prop_assert_eq!(at.len(), sizes.len());
            for i in 0..at.len() {
                for j in i + 1..at.len() {
                    let bytes: u64 = sizes[i..j].iter().sum();
                    let beats = (at[j] - at[i]) as u64;
                    prop_assert!(bytes <= budget * beats, "{bytes} bytes in {beats} heartbeats");
                }
                if i + 1 < at.len() {
                    let waited = (at[i + 1] - at[i]) as u64;
                    prop_assert_eq!(waited, sizes[i].div_ceil(budget).max(1));
                }
            }
        }
    }
}
