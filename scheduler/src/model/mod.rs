//! Pure domain logic: no I/O, no clocks read, no randomness. Tested by examples and properties.
//!
//! Layers, bottom first (a module imports only from those above it in this list):
//! - [`cluster_name`]: member cluster names, interned;
//! - [`labels`]: label rules and label selectors;
//! - [`packed`]: compact values a shard holds (uids, instants, reason and message);
//! - [`sorted_set`]: small sets kept as sorted vectors;
//! - [`preferences`]: the placement preferences annotation;
//! - [`fit`]: how many pods of a Job's template fit in a cluster, node by node;
//! - [`manifest`]: reading and validating a Job as the API server would;
//! - [`split`]: dividing parallelism and completions over clusters;
//! - [`job`]: the federated Job record and its shards;
//! - [`clusters`]: what the model knows of the member clusters;
//! - [`left_out`]: why a cluster has no shard of a Job;
//! - [`status`]: the aggregated status and per-cluster breakdown;
//! - [`render`]: what an agent must apply for a shard;
//! - [`planner`]: which shards each cluster must run;
//! - [`reports`]: agents' shard reports applied to a Job, planning it again only when needed;
//! - [`spill`]: moving the work of shards whose pods their cluster cannot place;
//! - [`edit`]: what each change of a federated Job writes (create, update, delete, reports).
//!
//! # Placement that follows the clusters (SPEC §10): what the I/O side provides
//! - [`clusters::ClusterView::labels`]: the labels the cluster's syncer registered with; the
//!   planner keeps a Job to the clusters its `clusterSelector` selects
//!   ([`preferences::Preferences::allows`]). `fedctl plan` leaves out of its cluster list those
//!   [`preferences::Preferences::selects`] refuses.
//! - [`clusters::ClusterView::capacity`]: the capacity the cluster's agent last reported (the
//!   cluster registry puts it into the shared views, folding reports together);
//!   with `dynamicWeight: AvailableReplicas` the planner weighs the clusters by how many pods
//!   of the Job's template fit there ([`crate::model::fit::pods_that_fit`]; split:
//!   [`split::split_parallelism_fitting`], offline: [`split::plan_fitting`]). With no capacity
//!   anywhere it uses the static weights and sets the condition `StaticWeights` (reason
//!   `NoCapacityReported`; `CapacityExceeded` when more parallelism is asked than fits).
//!   Planning by capacity happens wherever the planner divides work afresh (create, counts
//!   changed, new preferences, a member gone, work waiting for room); in between, the shares
//!   planned last stand for what fits, so capacity that moves (the Job's own pods filling the
//!   clusters) changes no share and no note, and running shards keep what they run.
//! - Work waiting for room is placed as soon as a cluster may take it: the control plane asks
//!   [`planner::room_appeared`] of each waiting Job whenever the clusters change.

pub mod cluster_name;
pub mod clusters;
pub mod edit;
pub mod fit;
#[cfg(test)]
mod fixtures;
pub mod job;
pub mod labels;
pub mod left_out;
pub mod manifest;
pub mod packed;
pub mod planner;
pub mod preferences;
pub mod render;
pub mod reports;
pub mod sorted_set;
pub mod spill;
pub mod split;
pub mod status;
