//! The etcd v3 wire types and clients this backend speaks: a subset of etcd's `etcdserverpb`
//! and `mvccpb` packages, generated at build time from `scheduler/proto/etcd/` (see
//! `build.rs`). Public so that tests and tools can make calls the store does not wrap.

/// Keys, values and watch events (`mvccpb`).
#[allow(missing_docs, clippy::all)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// Requests, responses and clients of the KV, Watch, Lease, Maintenance and Auth services
/// (`etcdserverpb`).
#[allow(missing_docs, clippy::all)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
