//! The generated gRPC types, and every conversion between wire and domain types, named by
//! direction: [`from_wire`] turns requests into domain values (checking what the machine
//! will not), [`to_wire`] turns domain values into replies.

pub mod from_wire;
pub mod to_wire;

/// Generated from `proto/raftline/v1/*.proto`.
#[allow(missing_docs, clippy::all, clippy::too_many_lines)]
pub mod pb {
    tonic::include_proto!("raftline.v1");
}

/// The compiled descriptors of `proto/` (both services, with their comments), as `protoc`
/// wrote them at build time.
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/raftline_descriptor.bin"));

/// The public API's proto file; the peer protocol (`raft.proto`) is not shown to clients.
pub const API_FILE: &str = "raftline/v1/api.proto";

/// The descriptors, decoded once: the REST gateway's JSON mapping and the OpenAPI document
/// read messages and fields from them.
pub fn descriptor_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::OnceLock<prost_reflect::DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(DESCRIPTORS)
            .expect("the descriptor set compiled into the binary decodes")
    })
}

/// The public API's file alone, for gRPC reflection.
pub fn api_descriptor_set() -> prost_types::FileDescriptorSet {
    let file = descriptor_pool()
        .get_file_by_name(API_FILE)
        .expect("api.proto is in the descriptor set");
    prost_types::FileDescriptorSet {
        file: vec![file.file_descriptor_proto().clone()],
    }
}
