//! The I/O workers, each a task over the shared [`Context`](crate::context::Context): the
//! [`connection`] to the scheduler, the [`reconcile`] workers, the [`watch`] of the cluster's
//! shards, the self-[`fence`] task, and the [`probes`] endpoint.

pub mod capacity;
pub mod connection;
pub mod fence;
pub mod probes;
pub mod reconcile;
pub mod watch;
