//! Which nodes a client command talks to: `--addr`, else every `api_addr` of ./cluster.toml.

use std::path::Path;

use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, Result};

/// The API addresses to use: `--addr`, else every api_addr of ./cluster.toml, with node ids
/// when known.
pub fn targets(addr: &[String]) -> Result<Vec<(Option<u64>, String)>> {
    if !addr.is_empty() {
        return Ok(addr.iter().map(|a| (None, a.clone())).collect());
    }
    let path = Path::new("cluster.toml");
    if !path.exists() {
        return Err(Error::Config(
            "no --addr given and no ./cluster.toml to read node addresses from".into(),
        ));
    }
    let config = Config::load(path)?;
    Ok(config
        .nodes
        .iter()
        .map(|n| (Some(n.id), n.api_addr.to_string()))
        .collect())
}

/// A client of the nodes [`targets`] names.
pub fn client(addr: &[String]) -> Result<Client> {
    let addrs: Vec<String> = targets(addr)?.into_iter().map(|(_, a)| a).collect();
    Client::new(&addrs)
}
