//! The syncer's rules: pure functions and plain types, no I/O, no shared state, tested by
//! examples and against the recorded answers of a real API server (`k8s-facts/`).
//!
//! From the bottom: [`key`] and [`job`] (reading a live Job) → [`manifest`] (the Job an
//! assignment asks for, and drift), [`fence`] (the self-fence's rules) → [`status`] (what is
//! reported of a Job), [`assignment`] (the held assignment and what can be wrong) →
//! [`decide`] (the next step for a shard); [`request`] names the requests the syncer makes.

pub mod assignment;
pub mod decide;
pub mod fence;
pub mod job;
pub mod key;
pub mod manifest;
pub mod request;
pub mod status;
