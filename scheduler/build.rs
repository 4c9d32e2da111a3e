//! Compiles the subset of etcd's v3 API that the etcd store speaks (`proto/etcd/`) with protox
//! (a Rust protobuf compiler), so that a fresh machine needs no system `protoc`. Only clients
//! are generated; fedjob's own contract lives in the `proto` crate.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let protos = [
        "proto/etcd/etcdserverpb/rpc.proto",
        "proto/etcd/mvccpb/kv.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto/etcd"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        // Keys and values become `Bytes`, so a value reaches the store's callers uncopied.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
