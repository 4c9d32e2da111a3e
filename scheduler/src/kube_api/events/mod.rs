//! Core `v1` `events` of the federated Jobs: what the federation did to each Job.
//!
//! [`derive`] tells a Job's change as events (pure).

pub mod derive;
