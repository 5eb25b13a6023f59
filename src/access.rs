//! Token secrets and token files, shared by the node (which makes its bootstrap token) and the
//! CLI (which finds a token to present).
//!
//! A secret is `rl_` followed by 64 hex digits (256 random bits from the OS); the cluster keeps
//! only its SHA-256. With 256 random bits a fast hash is enough: there is nothing to guess.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};

/// Prefix of every secret, so a leaked one is recognisable (secret scanners, logs).
pub const SECRET_PREFIX: &str = "rl_";

/// Name of a node's bootstrap token file in its data dir.
pub const BOOTSTRAP_FILE: &str = "bootstrap-token";

/// Largest token file the CLI or a node reads.
const TOKEN_FILE_BYTES_MAX: u64 = 4096;

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness from the OS: {e}")))?;
    Ok(bytes)
}

/// A new secret.
pub fn new_secret() -> Result<String> {
    Ok(format!("{SECRET_PREFIX}{}", hex(&random::<32>()?)))
}

/// A new webhook signing secret: `whsec_` and 64 hex digits.
pub fn new_webhook_secret() -> Result<String> {
    Ok(format!("whsec_{}", hex(&random::<32>()?)))
}

/// A new public token id: 16 hex digits.
pub fn new_id() -> Result<String> {
    Ok(hex(&random::<8>()?))
}

/// What the cluster stores of a secret: SHA-256, lowercase hex.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Reads a token file: one secret, surrounding whitespace ignored, at most 4 KiB.
pub fn read_token_file(path: &Path) -> Result<String> {
    let fail = |what: String| Error::Config(format!("token file {}: {what}", path.display()));
    let text = crate::files::read_bounded(path, TOKEN_FILE_BYTES_MAX).map_err(fail)?;
    let secret = text.trim();
    if secret.is_empty() || secret.contains(char::is_whitespace) {
        return Err(fail("does not hold one token".into()));
    }
    Ok(secret.to_string())
}

/// Reads the bootstrap token at `path`, or makes one there (readable by its owner only,
/// synced, its directory entry synced) when there is none. Returns the secret.
pub fn ensure_bootstrap(path: &Path) -> Result<String> {
    if path.exists() {
        return read_token_file(path);
    }
    let secret = new_secret()?;
    let fail = |e: std::io::Error| {
        Error::Config(format!(
            "cannot write the bootstrap token {}: {e}",
            path.display()
        ))
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(format!("{secret}\n").as_bytes())
        .map_err(fail)?;
    file.sync_all().map_err(fail)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
    }
    Ok(secret)
}

/// Where node `id` of `config` keeps its bootstrap token.
pub fn bootstrap_path(config: &Config, id: u64) -> PathBuf {
    config
        .bootstrap_token_file
        .clone()
        .unwrap_or_else(|| config.node_dir(id).join(BOOTSTRAP_FILE))
}

/// The token a CLI command presents: `--token`, else `RAFTLINE_TOKEN`, else the file named by
/// `--token-file` or `RAFTLINE_TOKEN_FILE`, else the bootstrap token of a node whose data dir
/// ./cluster.toml names and this user can read. `None` when there is none (a cluster with
/// auth off).
pub fn cli_token(flag: Option<&str>, file: Option<&Path>) -> Result<Option<String>> {
    if let Some(token) = flag {
        return Ok(Some(token.to_string()));
    }
    if let Ok(token) = std::env::var("RAFTLINE_TOKEN") {
        if !token.is_empty() {
            return Ok(Some(token));
        }
    }
    let env_file = std::env::var_os("RAFTLINE_TOKEN_FILE").map(PathBuf::from);
    if let Some(path) = file.map(Path::to_path_buf).or(env_file) {
        return read_token_file(&path).map(Some);
    }
    let config_path = Path::new("cluster.toml");
    if !config_path.exists() {
        return Ok(None);
    }
    let Ok(config) = Config::load(config_path) else {
        return Ok(None);
    };
    // The oldest readable one: a node that rejoined with an empty data dir has a new token
    // that the cluster learns only after it is added.
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = config
        .nodes
        .iter()
        .map(|n| bootstrap_path(&config, n.id))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    Ok(found.iter().find_map(|(_, p)| read_token_file(p).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == 67);
        assert_eq!(hash(&a).len(), 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn the_bootstrap_file_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BOOTSTRAP_FILE);
        let first = ensure_bootstrap(&path).unwrap();
        assert_eq!(ensure_bootstrap(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "a b").unwrap();
        assert!(read_token_file(&path).is_err());
    }
}
