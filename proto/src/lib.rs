//! The fedjob gRPC contract (`fedjob.v1`), and what every fedjob binary must agree on.
//!
//! The generated types live in [`v1`]; [`json`] converts between the `google.protobuf.Struct`
//! that carries a Job on the wire and `serde_json::Value`; [`names`] holds the labels and
//! annotations that mark a shard in a member cluster and the DNS-1123 name rules. Every binary
//! depends on this crate, so it also holds the helpers they share: [`duration`] (the one
//! duration grammar, Go's), [`shutdown`] (the one shutdown type), [`quantity`] (Kubernetes
//! resource quantities) and [`capacity`] (what a cluster's capacity report means) and [`config_error`] (how a bad
//! flag ends a binary).

pub mod capacity;
pub mod config_error;
pub mod duration;
pub mod json;
pub mod names;
pub mod quantity;
pub mod shutdown;

/// Generated messages, clients and servers of package `fedjob.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("fedjob.v1");
}

/// The encoded `FileDescriptorSet` of `fedjob.v1`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fedjob_descriptor.bin"));
