//! Member clusters: what is stored of them, and their liveness, which is not stored.
//!
//! A cluster is `Ready` while its agent's heartbeats arrive within the grace period. Liveness is
//! kept in memory only: after a scheduler restart every known cluster gets one grace period from
//! the start to reconnect before it is declared NotReady, so a restart alone never moves work.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::model::clusters::{ClusterView, Clusters};
use crate::records::LiveRecord;

/// What the federation stores of a member cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Cluster name (a DNS-1123 label).
    pub name: String,
    /// Labels given by its agent.
    pub labels: BTreeMap<String, String>,
    /// New work is kept away.
    pub cordoned: bool,
    /// Fencing epoch; raised each time the cluster's work is moved away from it.
    pub epoch: u64,
    /// First registration.
    pub registered_at: Timestamp,
    /// Version string its agent reported.
    pub agent_version: String,
}

/// A cluster as the scheduler holds it: the stored record and its liveness.
#[derive(Debug, Clone)]
pub struct ClusterEntry {
    /// The stored record.
    pub record: ClusterRecord,
    /// Store revision of the record.
    pub mod_revision: u64,
    /// Last time the agent was heard from (monotonic clock).
    pub last_heartbeat: Instant,
    /// Last time the agent was heard from (wall clock, for people).
    pub last_heartbeat_wall: Option<Timestamp>,
    /// Heartbeats arrived within the grace period at the last check.
    pub ready: bool,
    /// Since when it is NotReady.
    pub not_ready_since: Option<Instant>,
    /// NotReady for longer than the failover delay.
    pub lost: bool,
    /// Its liveness record went with a dead replica's lease: NotReady at this moment unless
    /// the agent reaches another replica before.
    pub unanswered_until: Option<Instant>,
    /// The agent session that may speak for the cluster.
    pub session: Option<SessionSlot>,
}

/// The session of the agent currently speaking for a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSlot {
    /// Token handed out by Register.
    pub token: String,
    /// A stream is attached to it.
    pub attached: bool,
}

/// A change of a cluster's liveness found by [`ClusterTable::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Heartbeats resumed.
    Ready(String),
    /// Heartbeats stopped for the grace period.
    NotReady(String),
    /// NotReady for the failover delay: work may move (`rebalance: true`).
    Lost(String),
}

/// Every known cluster.
#[derive(Debug, Default)]
pub struct ClusterTable {
    entries: BTreeMap<String, ClusterEntry>,
    /// Liveness is decided from records in the store (several replicas, see `coordination`),
    /// not from the heartbeats this process sees.
    shared: bool,
    /// How long a Ready cluster whose liveness record expired stays Ready (see
    /// [`ClusterTable::unanswered_for`]).
    unanswered: Duration,
}

impl ClusterTable {
    /// Clusters loaded from the store at start: each gets one grace period from `now` to
    /// come back before it counts as silent.
    ///
    /// With `shared` liveness a cluster is NotReady until its liveness record says otherwise.
    pub fn load(records: Vec<(ClusterRecord, u64)>, now: Instant, shared: bool) -> Self {
        let entries = records
            .into_iter()
            .map(|(record, rev)| {
                (
                    record.name.clone(),
                    ClusterEntry::new(record, rev, now, shared),
                )
            })
            .collect();
        Self {
            entries,
            shared,
            unanswered: Duration::ZERO,
        }
    }

    /// A Ready cluster whose liveness record went with its replica's lease stays Ready for
    /// `unanswered` (the grace less the lease TTL: its agent was heard within the TTL before
    /// the record expired), so that an agent moving to another replica within the grace never
    /// makes it NotReady (SPEC §6).
    pub fn unanswered_for(mut self, unanswered: Duration) -> Self {
        self.unanswered = unanswered;
        self
    }

    /// One cluster.
    pub fn get(&self, name: &str) -> Option<&ClusterEntry> {
        self.entries.get(name)
    }

    /// One cluster, to change its liveness.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut ClusterEntry> {
        self.entries.get_mut(name)
    }

    /// Every cluster in name order.
    pub fn iter(&self) -> impl Iterator<Item = &ClusterEntry> {
        self.entries.values()
    }

    /// Inserts or replaces the stored part of a cluster, keeping its liveness.
    pub fn upsert(&mut self, record: ClusterRecord, mod_revision: u64, now: Instant) {
        match self.entries.get_mut(&record.name) {
            Some(e) if e.mod_revision <= mod_revision => {
                e.record = record;
                e.mod_revision = mod_revision;
            }
            Some(_) => {}
            None => {
                let entry = ClusterEntry::new(record, mod_revision, now, self.shared);
                self.entries.insert(entry.record.name.clone(), entry);
            }
        }
    }

    /// What the planner sees of every cluster.
    pub fn views(&self) -> Clusters {
        self.entries
            .iter()
            .map(|(name, e)| {
                let view = ClusterView {
                    ready: e.ready,
                    cordoned: e.record.cordoned,
                    lost: e.lost,
                    epoch: e.record.epoch,
                    labels: e.record.labels.clone(),
                    // Filled from the capacity book by the registry.
                    capacity: None,
                };
                (name.clone(), view)
            })
            .collect()
    }

    /// Records that the agent of `name` was heard from.
    pub fn heartbeat(&mut self, name: &str, now: Instant) -> Option<Transition> {
        let e = self.entries.get_mut(name)?;
        e.last_heartbeat = now;
        e.last_heartbeat_wall = Some(Timestamp::now());
        if self.shared {
            return None;
        }
        e.become_ready(name)
    }

    /// Sets a cluster's liveness from its shared record (several replicas).
    pub fn set_live(&mut self, name: &str, record: LiveRecord, now: Instant) -> Option<Transition> {
        let unanswered = self.unanswered;
        let e = self.entries.get_mut(name)?;
        match record {
            LiveRecord::Live => {
                e.unanswered_until = None;
                if e.last_heartbeat_wall.is_none() {
                    e.last_heartbeat_wall = Some(Timestamp::now());
                }
                e.become_ready(name)
            }
            LiveRecord::Expired if e.ready => {
                e.unanswered_until.get_or_insert(now + unanswered);
                None
            }
            LiveRecord::Expired | LiveRecord::Silent => e.become_not_ready(name, now),
        }
    }

    /// Clusters whose liveness record expired and that no replica answered for since, for
    /// the rest of their grace: NotReady now.
    pub fn expire_unanswered(&mut self, now: Instant) -> Vec<Transition> {
        self.entries
            .iter_mut()
            .filter(|(_, e)| e.unanswered_until.is_some_and(|until| now >= until))
            .filter_map(|(name, e)| e.become_not_ready(name, now))
            .collect()
    }

    /// Clusters this process has not heard from for `grace`.
    pub fn quiet(&self, now: Instant, grace: Duration) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_heartbeat) >= grace)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Finds clusters whose heartbeats stopped for `grace` (NotReady) and those NotReady for a
    /// further `failover_after` (lost).
    pub fn check(
        &mut self,
        now: Instant,
        grace: Duration,
        failover_after: Duration,
    ) -> Vec<Transition> {
        let mut changes = self.expire_unanswered(now);
        for (name, e) in &mut self.entries {
            // With shared liveness, NotReady comes from the records (`set_live`), not the clock.
            if !self.shared && e.ready && now.saturating_duration_since(e.last_heartbeat) >= grace {
                e.ready = false;
                e.not_ready_since = Some(now);
                changes.push(Transition::NotReady(name.clone()));
            }
            if let Some(since) = e.not_ready_since
                && !e.lost
                && now.saturating_duration_since(since) >= failover_after
            {
                e.lost = true;
                changes.push(Transition::Lost(name.clone()));
            }
        }
        changes
    }

    /// Counts of clusters by state, for metrics: (ready, not ready).
    pub fn counts(&self) -> (usize, usize) {
        let ready = self.entries.values().filter(|e| e.ready).count();
        (ready, self.entries.len() - ready)
    }
}

impl ClusterEntry {
    fn new(record: ClusterRecord, mod_revision: u64, now: Instant, shared: bool) -> Self {
        Self {
            record,
            mod_revision,
            last_heartbeat: now,
            last_heartbeat_wall: None,
            ready: !shared,
            not_ready_since: shared.then_some(now),
            lost: false,
            unanswered_until: None,
            session: None,
        }
    }

    fn become_not_ready(&mut self, name: &str, now: Instant) -> Option<Transition> {
        self.unanswered_until = None;
        if !self.ready {
            return None;
        }
        self.ready = false;
        self.not_ready_since = Some(now);
        Some(Transition::NotReady(name.to_owned()))
    }

    fn become_ready(&mut self, name: &str) -> Option<Transition> {
        if self.ready {
            return None;
        }
        self.ready = true;
        self.lost = false;
        self.not_ready_since = None;
        self.unanswered_until = None;
        Some(Transition::Ready(name.to_owned()))
    }

    /// `Ready` or `NotReady`.
    pub fn state(&self) -> &'static str {
        if self.ready { "Ready" } else { "NotReady" }
    }
}

/// Per-cluster counts of shards, for `fedctl get clusters`.
pub type ShardCounts = HashMap<String, i32>;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ClusterRecord {
        ClusterRecord {
            name: name.into(),
            labels: BTreeMap::new(),
            cordoned: false,
            epoch: 0,
            registered_at: Timestamp::UNIX_EPOCH,
            agent_version: String::new(),
        }
    }

    #[test]
    fn silence_makes_a_cluster_not_ready_then_lost_and_a_heartbeat_brings_it_back() {
        let start = Instant::now();
        let grace = Duration::from_secs(30);
        let mut table = ClusterTable::load(vec![(record("c1"), 1)], start, false);
        assert!(
            table
                .check(start + Duration::from_secs(29), grace, grace)
                .is_empty()
        );
        assert_eq!(
            table.check(start + grace, grace, grace),
            vec![Transition::NotReady("c1".into())]
        );
        assert!(!table.views()["c1"].ready);
        assert_eq!(
            table.check(start + grace * 2, grace, grace),
            vec![Transition::Lost("c1".into())]
        );
        assert!(table.views()["c1"].lost);
        assert_eq!(
            table.heartbeat("c1", start + grace * 3),
            Some(Transition::Ready("c1".into()))
        );
        let view = &table.views()["c1"];
        assert!(view.ready && !view.lost);
    }

    #[test]
    fn a_record_gone_with_its_replica_s_lease_leaves_the_agent_the_rest_of_its_grace() {
        let start = Instant::now();
        let (grace, ttl) = (Duration::from_secs(30), Duration::from_secs(5));
        let rest = grace - ttl;
        let mut table = ClusterTable::load(vec![(record("c1"), 1), (record("c2"), 1)], start, true)
            .unanswered_for(rest);
        for c in ["c1", "c2"] {
            table.set_live(c, LiveRecord::Live, start);
        }
        // Their replica died: both records expire together.
        let expired = start + ttl;
        for c in ["c1", "c2"] {
            assert_eq!(table.set_live(c, LiveRecord::Expired, expired), None);
        }
        assert!(table.check(expired + rest / 2, grace, grace).is_empty());
        assert!(table.views()["c1"].ready && table.views()["c2"].ready);
        // c1's agent reached another replica; c2's did not.
        assert_eq!(
            table.set_live("c1", LiveRecord::Live, expired + rest / 2),
            None
        );
        assert_eq!(
            table.check(expired + rest, grace, grace),
            vec![Transition::NotReady("c2".into())]
        );
        assert!(table.views()["c1"].ready);
        assert!(
            table
                .check(expired + rest * 3, grace, grace * 10)
                .is_empty(),
            "c1 answered for again"
        );
        // A record that expires for a cluster already NotReady changes nothing.
        assert_eq!(
            table.set_live("c2", LiveRecord::Expired, expired + rest),
            None
        );
        assert!(!table.views()["c2"].ready);
    }

    #[test]
    fn shared_liveness_follows_the_records_not_the_clock() {
        let start = Instant::now();
        let grace = Duration::from_secs(30);
        let mut table = ClusterTable::load(vec![(record("c1"), 1)], start, true);
        assert!(
            !table.views()["c1"].ready,
            "NotReady until a replica says it is live"
        );
        assert_eq!(table.heartbeat("c1", start), None);
        assert_eq!(
            table.set_live("c1", LiveRecord::Live, start),
            Some(Transition::Ready("c1".into()))
        );
        assert!(
            table.check(start + grace * 3, grace, grace * 10).is_empty(),
            "no clock-based NotReady"
        );
        assert_eq!(table.quiet(start + grace, grace), vec!["c1".to_owned()]);
        assert_eq!(
            table.set_live("c1", LiveRecord::Silent, start + grace),
            Some(Transition::NotReady("c1".into()))
        );
        assert_eq!(
            table.check(start + grace * 2, grace, grace),
            vec![Transition::Lost("c1".into())]
        );
    }
}
