//! Pure domain logic: no I/O, no clocks read, no randomness. Tested by examples and properties.
//!
//! Layers, bottom first (a module imports only from those above it in this list):
//! - [`labels`]: label rules and label selectors;
//! - [`preferences`]: the placement preferences annotation;
//! - [`manifest`]: reading and validating a Job as the API server would;
//! - [`split`]: dividing parallelism and completions over clusters;
//! - [`job`]: the federated Job record and its shards;
//! - [`clusters`]: what the model knows of the member clusters;
//! - [`status`]: the aggregated status and per-cluster breakdown;
//! - [`render`]: what an agent must apply for a shard;
//! - [`planner`]: which shards each cluster must run;
//! - [`edit`]: what each change of a federated Job writes (create, update, delete, reports).

pub mod clusters;
pub mod edit;
#[cfg(test)]
mod fixtures;
pub mod job;
pub mod labels;
pub mod manifest;
pub mod planner;
pub mod preferences;
pub mod render;
pub mod split;
pub mod status;
