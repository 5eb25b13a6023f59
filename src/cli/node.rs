//! `raftline node`: loads the config, checks this node is in it, and runs the node until
//! SIGTERM or SIGINT (see [`crate::node`]).

use std::path::Path;

use super::signal::shutdown_signal;
use crate::config::Config;
use crate::error::Result;

/// Runs `raftline node --config PATH --id ID`.
pub async fn run(config: &Path, id: u64) -> Result<()> {
    let config = Config::load(config)?;
    config.node(id)?;
    crate::node::run(config, id, shutdown_signal()).await
}
