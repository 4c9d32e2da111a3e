//! The fedjob federation control plane.
//!
//! `fedjob-scheduler` stores federated Jobs and member clusters, divides each Job over the
//! clusters, and serves the user API and the agent API over gRPC. `fedctl` is its client.
//!
//! Pure domain logic (the split, shard planning, status aggregation, validation) lives in
//! [`model`] and does no I/O; everything else is a thin edge around it.

pub mod model;
pub mod store;
