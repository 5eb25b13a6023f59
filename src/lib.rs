//! raftline: a peer-to-peer clustered job executor with embedded storage.
//!
//! Layers, top to bottom (see DESIGN.md): [`cli`] and [`client`] speak gRPC to [`server`],
//! which validates requests and hands them to [`raft`] (the only module naming openraft),
//! which replicates [`machine::Command`]s into the pure, deterministic [`machine`].
//!
//! The client side has its own folders: `cli/` (the command line, one file per command group,
//! with the workflow file reader, the views and `raftline up`) over `client/` (the gRPC client
//! with leader discovery and bounded, never-duplicating retries). `client` imports neither the
//! command line nor the node side.
#![warn(missing_docs)]

pub mod access;
pub mod cli;
pub mod client;

pub mod config;
pub mod error;
pub mod files;
pub mod import;
pub mod logging;
pub mod machine;
pub mod metrics;
pub mod node;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod progress;
pub mod proto;
pub mod raft;
pub mod server;
pub mod tls;

pub use error::{Error, Result};
