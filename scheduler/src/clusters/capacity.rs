//! The latest free capacity of each member cluster, as its agent reported it on its current
//! stream (`fedjob-syncer --report-capacity`): what `dynamicWeight: AvailableReplicas` plans
//! with ([`crate::model::fit`]) and `fedctl get clusters -o wide` shows.
//!
//! It lives in memory on the replica the agent streams to: a new stream starts with a full
//! report, so nothing here needs to survive a restart. Each change is signalled
//! ([`CapacityBook::changed`]) rather than pushed into the planner's views at once: the
//! registry folds the changes of many clusters into one rebuild of the views.

use std::collections::HashMap;
use std::sync::Arc;

use fedjob_proto::capacity::{CapacityError, ClusterCapacity};
use fedjob_proto::v1;
use jiff::Timestamp;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::model::clusters::Clusters;

/// A cluster's capacity and when it last changed.
#[derive(Debug, Clone)]
pub struct Reported {
    /// The capacity (shared with the planner's views, which take it by reference).
    pub capacity: Arc<ClusterCapacity>,
    /// When the agent last reported a change.
    pub at: Timestamp,
    /// The agent session that reported it.
    session: String,
}

/// Every cluster's latest capacity.
#[derive(Debug, Default)]
pub struct CapacityBook {
    clusters: Mutex<HashMap<String, Reported>>,
    /// What the planner's views were last given ([`CapacityBook::fill`]): what users are shown,
    /// so that a capacity they see is one new Jobs are planned with.
    published: Mutex<HashMap<String, Reported>>,
    /// Told of every change; a change made while nobody waits is kept for the next wait.
    changed: Notify,
}

impl CapacityBook {
    /// Applies `report` from `cluster`'s agent speaking in `session` (a new session starts
    /// from nothing: its first report must be full); a refused report changes nothing.
    pub fn apply(
        &self,
        cluster: &str,
        session: &str,
        report: &v1::CapacityReport,
        now: Timestamp,
    ) -> Result<(), CapacityError> {
        let mut clusters = self.clusters.lock();
        // A new version (cheap to make: see `ClusterCapacity`), the planner's views may hold
        // the one it replaces.
        let replaced = match clusters.get_mut(cluster).filter(|r| r.session == session) {
            Some(reported) => {
                let next = reported.capacity.applied(report)?;
                reported.at = now;
                Some(std::mem::replace(&mut reported.capacity, Arc::new(next)))
            }
            None => {
                let mut next = ClusterCapacity::default();
                next.apply(report)?;
                let reported = Reported {
                    capacity: Arc::new(next),
                    at: now,
                    session: session.to_owned(),
                };
                clusters
                    .insert(cluster.to_owned(), reported)
                    .map(|r| r.capacity)
            }
        };
        drop(clusters);
        // Dropped (when nothing else holds it) without keeping other reports waiting.
        drop(replaced);
        self.changed.notify_one();
        Ok(())
    }

    /// Forgets what `cluster` reported in `session`, which ended (a later session's report
    /// stays).
    pub fn forget(&self, cluster: &str, session: &str) {
        let mut clusters = self.clusters.lock();
        if clusters.get(cluster).is_some_and(|r| r.session == session) {
            clusters.remove(cluster);
            self.changed.notify_one();
        }
    }

    /// `cluster`'s latest capacity, if its agent reports any.
    pub fn get(&self, cluster: &str) -> Option<Reported> {
        self.clusters.lock().get(cluster).cloned()
    }

    /// Gives each of `views` its cluster's latest capacity (by reference), or none.
    /// What it gives them is what [`CapacityBook::summary`] shows from then on.
    pub fn fill(&self, views: &mut Clusters) {
        // Copied out (names and pointers): the agents' reports wait on this lock.
        let latest = self.clusters.lock().clone();
        for (name, view) in views.iter_mut() {
            view.capacity = latest.get(name).map(|r| r.capacity.clone());
        }
        *self.published.lock() = latest;
    }

    /// Returns when a report changed something since the last call returned (at once if one
    /// did meanwhile). One waiter.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// `cluster`'s capacity summed up, for the user API.
    pub fn summary(&self, cluster: &str) -> Option<v1::CapacitySummary> {
        let reported = self.published.lock().get(cluster).cloned()?;
        let (free, nodes) = reported.capacity.totals();
        Some(v1::CapacitySummary {
            free: free.into_iter().collect(),
            nodes,
            reported: Some(prost_types::Timestamp {
                seconds: reported.at.as_second(),
                nanos: reported.at.subsec_nanosecond(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(nodes: u32, cpu: i64) -> v1::NodeGroup {
        v1::NodeGroup {
            shape: 1,
            free: [("cpu".to_owned(), cpu), ("pods".to_owned(), 10)].into(),
            nodes,
            ..Default::default()
        }
    }

    #[test]
    fn reports_build_up_and_a_bad_one_changes_nothing() {
        let book = CapacityBook::default();
        assert!(book.summary("c1").is_none());
        let full = v1::CapacityReport {
            full: true,
            shapes: vec![v1::NodeShape {
                id: 1,
                ..Default::default()
            }],
            groups: vec![group(3, 2000)],
            ..Default::default()
        };
        book.apply("c1", "s1", &full, Timestamp::UNIX_EPOCH)
            .unwrap();
        let delta = v1::CapacityReport {
            full: false,
            shapes: vec![],
            groups: vec![group(2, 2000), group(1, 500)],
            ..Default::default()
        };
        book.apply("c1", "s1", &delta, Timestamp::UNIX_EPOCH)
            .unwrap();
        assert!(book.summary("c1").is_none(), "not yet given to the planner");
        let mut views: Clusters = [("c1".to_owned(), Default::default())].into();
        book.fill(&mut views);
        assert_eq!(views["c1"].capacity.as_deref().unwrap().totals().1, 3);
        let summary = book.summary("c1").unwrap();
        assert_eq!(summary.nodes, 3);
        assert_eq!(summary.free["cpu"], 4500);
        assert_eq!(summary.free["pods"], 30);
        let bad = v1::CapacityReport {
            full: false,
            shapes: vec![],
            groups: vec![v1::NodeGroup {
                shape: 9,
                ..group(1, 1)
            }],
            ..Default::default()
        };
        assert!(book.apply("c1", "s1", &bad, Timestamp::UNIX_EPOCH).is_err());
        assert_eq!(book.summary("c1").unwrap().free["cpu"], 4500);
        assert!(
            book.apply("c2", "s9", &delta, Timestamp::UNIX_EPOCH)
                .is_err(),
            "no full report yet"
        );
        assert!(
            book.apply("c1", "s2", &delta, Timestamp::UNIX_EPOCH)
                .is_err(),
            "a new session starts in full"
        );
        book.forget("c1", "s0");
        assert!(
            book.get("c1").is_some(),
            "another session's end forgets nothing"
        );
        book.forget("c1", "s1");
        assert!(book.get("c1").is_none());
        book.fill(&mut views);
        assert!(views["c1"].capacity.is_none());
        assert!(book.summary("c1").is_none());
    }
}
