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
