//! Pure domain logic: no I/O, no clocks read, no randomness. Tested by examples and properties.
//!
//! - [`manifest`]: reading and validating a Job as the API server would;
//! - [`preferences`]: the placement preferences annotation;
//! - [`split`]: dividing parallelism and completions over clusters;
//! - [`job`]: the federated Job record and its shards;
//! - [`planner`]: which shards each cluster must run;
//! - [`status`]: the aggregated status and per-cluster breakdown;
//! - [`render`]: what an agent must apply for a shard.

pub mod job;
pub mod manifest;
pub mod planner;
pub mod preferences;
pub mod render;
pub mod split;
pub mod status;
