//! Which nodes a client command talks to (`--addr`, else every `api_addr` of ./cluster.toml)
//! and how: the token (`--token`, `RAFTLINE_TOKEN`, `--token-file`, else a local node's
//! bootstrap token) and the CA (`--ca-file`, `RAFTLINE_CA_FILE`, else `[tls] ca_file` of
//! ./cluster.toml).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::client::{Access, Client};
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

/// The access flags given on the command line.
#[derive(Debug, Clone, Default)]
pub struct AccessFlags {
    /// `--token`.
    pub token: Option<String>,
    /// `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `--ca-file`.
    pub ca_file: Option<PathBuf>,
}

static FLAGS: OnceLock<AccessFlags> = OnceLock::new();

/// Records the command line's access flags for [`client`] (once, at start).
pub fn set_access(flags: AccessFlags) {
    let _ = FLAGS.set(flags);
}

/// The token and CA a client command uses.
pub fn access() -> Result<Access> {
    let flags = FLAGS.get().cloned().unwrap_or_default();
    let token = crate::access::cli_token(flags.token.as_deref(), flags.token_file.as_deref())?;
    let env_ca = std::env::var_os("RAFTLINE_CA_FILE").map(PathBuf::from);
    let ca_file = flags.ca_file.or(env_ca).or_else(|| {
        let path = Path::new("cluster.toml");
        path.exists()
            .then(|| Config::load(path).ok())
            .flatten()
            .and_then(|c| c.tls.map(|t| t.ca_file))
    });
    Ok(Access { token, ca_file })
}

/// A client of the nodes [`targets`] names, with [`access`].
pub fn client(addr: &[String]) -> Result<Client> {
    let addrs: Vec<String> = targets(addr)?.into_iter().map(|(_, a)| a).collect();
    client_of(&addrs)
}

/// A client of `addrs` with [`access`].
pub fn client_of<S: AsRef<str>>(addrs: &[S]) -> Result<Client> {
    Client::with_access(addrs, &access()?)
}
