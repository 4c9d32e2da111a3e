//! The syncer's state, in memory only, above the rules and below the I/O: the shard table
//! ([`shards`]), the work queue ([`queue`]), the self-fence's lease ([`lease`]), the metrics
//! ([`metrics`]), how the member cluster's API server has been answering
//! ([`cluster_health`]) and, with `--report-capacity`, the cluster's free [`capacity`] and its
//! [`pending`] (unschedulable) shards.
//! Everything here is synchronous and short; no lock is held across an `await`.

pub mod capacity;
pub mod cluster_health;
pub mod lease;
pub mod metrics;
pub mod pending;
pub mod queue;
pub mod shards;
