//! What the pure model knows of the member clusters: one [`ClusterView`] per registered
//! cluster. The bottom layer that the planner and the status both read.

use std::collections::BTreeMap;
use std::sync::Arc;

use fedjob_proto::capacity::ClusterCapacity;

/// What the planner needs to know of a member cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Heartbeats arrive within the grace period.
    pub ready: bool,
    /// New work is kept away from it.
    pub cordoned: bool,
    /// NotReady for longer than the failover delay: with `rebalance: true` its unfinished
    /// work is planned again elsewhere.
    pub lost: bool,
    /// Current fencing epoch.
    pub epoch: u64,
    /// The labels its syncer registered with (`--labels`), which a Job's `clusterSelector`
    /// matches.
    pub labels: BTreeMap<String, String>,
    /// The free capacity its agent last reported (`--report-capacity`), which
    /// `dynamicWeight: AvailableReplicas` weighs by; `None` when it reports none.
    pub capacity: Option<Arc<ClusterCapacity>>,
}

impl ClusterView {
    /// Whether new work may go there.
    pub fn schedulable(&self) -> bool {
        self.ready && !self.cordoned
    }
}

/// Every registered cluster by name.
pub type Clusters = BTreeMap<String, ClusterView>;
