//! raftline: a peer-to-peer clustered job executor with embedded storage.
//!
//! Layers, top to bottom (see DESIGN.md): [`cli`] and [`client`] speak gRPC to [`server`],
//! which validates requests and hands them to [`raft`] (the only module naming openraft),
//! which replicates [`machine::Command`]s into the pure, deterministic [`machine`].
#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod codec;
pub mod config;
pub mod dag;
pub mod error;
pub mod machine;
pub mod node;
pub mod proto;
pub mod raft;
pub mod server;
pub mod up;

pub use error::{Error, Result};
