//! The fedjob gRPC contract (`fedjob.v1`) and the few names every crate must agree on.
//!
//! The generated types live in [`v1`]; [`json`] converts between the `google.protobuf.Struct`
//! that carries a Job on the wire and `serde_json::Value`; [`names`] holds the labels and
//! annotations that mark a shard in a member cluster.

pub mod json;
pub mod names;

/// Generated messages, clients and servers of package `fedjob.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("fedjob.v1");
}

/// The encoded `FileDescriptorSet` of `fedjob.v1`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fedjob_descriptor.bin"));
