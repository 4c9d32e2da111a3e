//! The fedjob federation control plane.
//!
//! `fedjob-scheduler` stores federated Jobs and member clusters, divides each Job over the
//! clusters, and serves the user API and the agent API over gRPC. `fedctl` is its client.
//!
//! Pure domain logic (the split, shard planning, status aggregation, validation) lives in
//! [`model`] and does no I/O; everything else is a thin edge around it. A create reads straight
//! through: [`api::user`] → [`model::manifest`] → [`control_plane`] → [`store`] →
//! [`model::planner`] → [`api::agent`] (the assignment stream) → the syncer.

pub mod api;
pub mod auth;
pub mod clusters;
pub mod config;
pub mod control_plane;
pub mod coordination;
pub mod error;
pub mod fast_hash;
pub mod fedctl;
pub mod jobs;
pub mod kube_api;
pub mod metrics;
pub mod metrics_http;
pub mod model;
pub mod records;
pub mod replication;
pub mod server;
pub mod store;
pub mod telemetry;
