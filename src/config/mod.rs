//! Cluster configuration: `cluster.toml`, overridden by environment variables, overridden by
//! flags; loaded once at start-up and validated by the consuming [`RawConfig::validate`].
//!
//! Every node of a cluster reads the same file. Each error names the key at fault in one line,
//! e.g. `cluster.toml: node[2].api_addr: "127.0.0.1:70001" is not an address (ip:port)`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::machine::job::{validate_name, validate_queue_name};
use crate::machine::{limits, Rejection, Settings};

pub mod jobs;
pub mod overrides;
pub use jobs::{JobLimits, JobsConfig, QueueRule};

/// A configuration error: one line naming the file and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// `cluster.toml` as written, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Cluster-wide settings.
    pub cluster: RawCluster,
    /// One table per node.
    #[serde(default)]
    pub node: Vec<RawNode>,
    /// Resources the leader keeps at the declared capacity.
    #[serde(default)]
    pub resource: Vec<RawResource>,
    /// API tokens.
    #[serde(default)]
    pub auth: RawAuth,
    /// TLS for the API and peer ports; absent means plaintext.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// How nodes run shell jobs: user, environment, limits, per-queue rules.
    #[serde(default)]
    pub jobs: jobs::RawJobs,
}

/// The `[auth]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Every API call needs a token (the default).
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// The bootstrap admin token's file, the same secret on every node; default: each node
    /// makes its own in its data dir.
    #[serde(default)]
    pub bootstrap_token_file: Option<PathBuf>,
    /// Calls per second each token may make (token bucket); 0 = unlimited.
    #[serde(default)]
    pub rate_per_sec: u32,
    /// Bucket size of that limit; default: one second's worth.
    #[serde(default)]
    pub burst: u32,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            enabled: true,
            bootstrap_token_file: None,
            rate_per_sec: 0,
            burst: 0,
        }
    }
}

fn d_true() -> bool {
    true
}

/// The `[tls]` table: PEM files, relative to the config file; `{id}` in a node's paths is
/// replaced by its id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The cluster CA certificate: peers must present a certificate it signed, and clients
    /// check nodes against it.
    pub ca_file: PathBuf,
    /// A node's certificate (chain), e.g. `certs/node-{id}.pem`.
    pub cert_file: String,
    /// A node's private key, e.g. `certs/node-{id}-key.pem`.
    pub key_file: String,
}

/// Validated TLS paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// CA certificate.
    pub ca_file: PathBuf,
    /// Node certificate path with `{id}` unreplaced.
    cert_file: PathBuf,
    /// Node key path with `{id}` unreplaced.
    key_file: PathBuf,
}

impl TlsPaths {
    /// Node `id`'s certificate and key files.
    pub fn node_files(&self, id: u64) -> (PathBuf, PathBuf) {
        let with_id =
            |p: &Path| PathBuf::from(p.to_string_lossy().replace("{id}", &id.to_string()));
        (with_id(&self.cert_file), with_id(&self.key_file))
    }
}

/// A `[[resource]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    /// Name, `[A-Za-z0-9_.-]{1,128}`.
    pub name: String,
    /// Units (1 = exclusive).
    pub capacity: u32,
}

/// The `[cluster]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Cluster name, stored in every data dir on first start.
    pub name: String,
    /// Directory for node data; node N uses `data_dir/node-N`. Relative to the config file.
    pub data_dir: PathBuf,
    /// Leader heartbeat interval.
    #[serde(default = "d_heartbeat")]
    pub heartbeat_ms: u64,
    /// Election timeout lower bound.
    #[serde(default = "d_election_min")]
    pub election_timeout_min_ms: u64,
    /// Election timeout upper bound.
    #[serde(default = "d_election_max")]
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many applied entries since the last one.
    #[serde(default = "d_snapshot_every")]
    pub snapshot_every_entries: u64,
    /// Also build a snapshot once this many bytes were appended to the log since the last
    /// one, so large entries don't grow the log (and a restart's replay) without bound.
    #[serde(default = "d_snapshot_every_log_bytes")]
    pub snapshot_every_log_bytes: u64,
    /// Entries kept in the log behind a snapshot, so a briefly lagging follower catches up by
    /// log replication instead of a full snapshot.
    #[serde(default = "d_snapshot_keep")]
    pub snapshot_logs_kept: u64,
    /// How long a write or linearizable read waits for a leader and a commit before the call
    /// fails with UNAVAILABLE.
    #[serde(default = "d_request_timeout")]
    pub request_timeout_ms: u64,
    /// Fewest shell jobs a node runs at once (when work is waiting).
    #[serde(default = "d_workers_min")]
    pub workers_min: u32,
    /// Most shell jobs a node runs at once; 0 turns the node's executor off.
    #[serde(default = "d_workers_max")]
    pub workers_max: u32,
    /// How long dead jobs are kept before they are purged.
    #[serde(default = "d_dead_retention")]
    pub dead_retention_ms: u64,
    /// How long succeeded and cancelled jobs are kept.
    #[serde(default = "d_finished_retention")]
    pub finished_retention_ms: u64,
    /// How long an idempotency key returns its first job.
    #[serde(default = "d_idempotency_window")]
    pub idempotency_window_ms: u64,
    /// Waiting this long raises a ready job's effective priority by one level.
    #[serde(default = "d_priority_aging")]
    pub priority_aging_ms: u64,
    /// Allows binding non-loopback addresses with auth or TLS off.
    #[serde(default)]
    pub insecure: bool,
    /// A connection on any port that sends nothing for this long is closed (HTTP/2 clients
    /// answer the node's keepalive pings, sent every quarter of it, so live ones stay).
    #[serde(default = "d_connection_idle")]
    pub connection_idle_ms: u64,
}

fn d_heartbeat() -> u64 {
    50
}
fn d_election_min() -> u64 {
    200
}
fn d_election_max() -> u64 {
    400
}
fn d_snapshot_every() -> u64 {
    10_000
}
fn d_snapshot_every_log_bytes() -> u64 {
    64 << 20
}
fn d_snapshot_keep() -> u64 {
    1_000
}
fn d_connection_idle() -> u64 {
    limits::CONNECTION_IDLE_MS_DEFAULT
}
fn d_request_timeout() -> u64 {
    5_000
}
fn d_workers_min() -> u32 {
    2
}
fn d_workers_max() -> u32 {
    8
}
fn d_dead_retention() -> u64 {
    Settings::default().dead_retention_ms
}
fn d_finished_retention() -> u64 {
    Settings::default().finished_retention_ms
}
fn d_idempotency_window() -> u64 {
    Settings::default().idempotency_window_ms
}
fn d_priority_aging() -> u64 {
    Settings::default().priority_aging_ms
}
fn d_queues() -> Vec<String> {
    vec!["*".to_string()]
}

/// One `[[node]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// Node id, unique, >= 1.
    pub id: u64,
    /// Address peers use for Raft and forwarding.
    pub raft_addr: String,
    /// Address this node listens on for peers, when it differs from `raft_addr` (behind a
    /// proxy or NAT); defaults to `raft_addr`.
    #[serde(default)]
    pub raft_listen_addr: Option<String>,
    /// Address of the public gRPC API.
    pub api_addr: String,
    /// Address of the HTTP endpoint (`/metrics`, `/health`).
    pub http_addr: String,
    /// Queues this node's executor takes shell jobs from; `["*"]` (the default) means all.
    #[serde(default = "d_queues")]
    pub queues: Vec<String>,
    /// Capabilities this node's executor offers.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// User this node's shell jobs run as, over `[jobs] run_as`.
    #[serde(default)]
    pub run_as: Option<String>,
}

/// A validated node entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Node id.
    pub id: u64,
    /// Raft and forwarding address (as peers reach it).
    pub raft_addr: SocketAddr,
    /// Address the node binds for peers (`raft_addr` unless set).
    pub raft_listen_addr: SocketAddr,
    /// Public gRPC API address.
    pub api_addr: SocketAddr,
    /// HTTP address.
    pub http_addr: SocketAddr,
    /// Queues the executor serves; empty means all.
    pub queues: Vec<String>,
    /// Capabilities the executor offers.
    pub capabilities: Vec<String>,
    /// User this node's shell jobs run as, when set for the node.
    pub run_as: Option<String>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Cluster name.
    pub name: String,
    /// Absolute data directory (node N uses `data_dir/node-N`).
    pub data_dir: PathBuf,
    /// Heartbeat interval in ms.
    pub heartbeat_ms: u64,
    /// Election timeout lower bound in ms.
    pub election_timeout_min_ms: u64,
    /// Election timeout upper bound in ms.
    pub election_timeout_max_ms: u64,
    /// Snapshot interval in applied entries.
    pub snapshot_every_entries: u64,
    /// Snapshot interval in log bytes appended.
    pub snapshot_every_log_bytes: u64,
    /// Entries kept behind a snapshot.
    pub snapshot_logs_kept: u64,
    /// Request timeout in ms.
    pub request_timeout_ms: u64,
    /// Fewest concurrent shell jobs per node (when work waits).
    pub workers_min: u32,
    /// Most concurrent shell jobs per node; 0 = no executor.
    pub workers_max: u32,
    /// Replicated settings the leader proposes (retentions, windows, aging).
    pub settings: Settings,
    /// Nodes, ordered by id.
    pub nodes: Vec<NodeConfig>,
    /// Declared resources: (name, capacity).
    pub resources: Vec<(String, u32)>,
    /// API calls need a token.
    pub auth_enabled: bool,
    /// The shared bootstrap token file, if configured.
    pub bootstrap_token_file: Option<PathBuf>,
    /// Per-token calls per second (0 = unlimited) and bucket size.
    pub token_rate: (u32, u32),
    /// TLS files; `None` = plaintext.
    pub tls: Option<TlsPaths>,
    /// Binding a non-loopback address without auth and TLS is allowed.
    pub insecure: bool,
    /// Idle connections are closed after this long.
    pub connection_idle_ms: u64,
    /// How shell jobs run.
    pub jobs: JobsConfig,
    /// Data directories given on the command line (`node --data-dir`), by node id.
    pub node_dirs: BTreeMap<u64, PathBuf>,
}

impl Config {
    /// Reads and validates a config file; `RAFTLINE_DATA_DIR` overrides `cluster.data_dir`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = crate::files::read_bounded(path, limits::CONFIG_FILE_BYTES_MAX)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("RAFTLINE_"))
            .collect();
        let mut raw = RawConfig::parse_with(&text, &env).map_err(|e| prefix(path, e))?;
        if let Some(dir) = std::env::var_os("RAFTLINE_DATA_DIR") {
            raw.cluster.data_dir = PathBuf::from(dir);
        }
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        raw.validate(&base).map_err(|e| prefix(path, e))
    }

    /// The entry of node `id`.
    pub fn node(&self, id: u64) -> Result<&NodeConfig, ConfigError> {
        self.nodes.iter().find(|n| n.id == id).ok_or_else(|| {
            let ids: Vec<String> = self.nodes.iter().map(|n| n.id.to_string()).collect();
            ConfigError(format!(
                "--id {id}: no such node in the config (ids are {})",
                ids.join(", ")
            ))
        })
    }

    /// Source address for node `id`'s outgoing peer connections: its raft_addr IP, unless
    /// that is unspecified (0.0.0.0), so peers and firewall rules can tell links apart.
    pub fn peer_source_ip(&self, id: u64) -> Option<std::net::IpAddr> {
        self.node(id)
            .ok()
            .map(|n| n.raft_addr.ip())
            .filter(|ip| !ip.is_unspecified())
    }

    /// Data directory of node `id`.
    pub fn node_dir(&self, id: u64) -> PathBuf {
        if let Some(dir) = self.node_dirs.get(&id) {
            return dir.clone();
        }
        self.data_dir.join(format!("node-{id}"))
    }
}

fn absolute(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

fn prefix(path: &Path, e: ConfigError) -> ConfigError {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    ConfigError(format!("{name}: {}", e.0))
}

impl RawConfig {
    /// Parses TOML with no environment overrides; see [`RawConfig::parse_with`].
    pub fn parse(text: &str) -> Result<RawConfig, ConfigError> {
        RawConfig::parse_with(text, &[])
    }

    /// Parses TOML, applies `env`'s `RAFTLINE_<SECTION>_<KEY>` overrides and reads human
    /// durations and sizes (`overrides.rs`); an error is one line, with the position in the
    /// file when the file alone shows it.
    pub fn parse_with(text: &str, env: &[(String, String)]) -> Result<RawConfig, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let applied = overrides::apply(&mut table, env)?;
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                let plain = RawConfig::parse_plain(text);
                match plain {
                    // The file alone has this fault: say where.
                    Err(located)
                        if located
                            .0
                            .ends_with(e.message().lines().next().unwrap_or("")) =>
                    {
                        located
                    }
                    _ if applied.is_empty() => {
                        ConfigError(e.message().lines().next().unwrap_or("invalid").into())
                    }
                    _ => ConfigError(format!(
                        "{} (with {} from the environment)",
                        e.message().lines().next().unwrap_or("invalid"),
                        applied.join(", ")
                    )),
                }
            })
    }

    /// Parses TOML as written, with no overrides.
    fn parse_plain(text: &str) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| toml_error(text, &e))
    }
}

/// A TOML error in one line, with its position in `text`.
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let position = e
        .span()
        .map(|s| {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: ")
        })
        .unwrap_or_default();
    ConfigError(format!(
        "{position}{}",
        e.message().lines().next().unwrap_or("invalid TOML")
    ))
}

impl RawConfig {
    /// Checks every key and resolves `data_dir` against `base` (the config file's directory).
    pub fn validate(self, base: &Path) -> Result<Config, ConfigError> {
        let settings = check_cluster(&self.cluster)?;
        if self.node.is_empty() {
            return Err(ConfigError(
                "node: no [[node]] entries; a cluster needs at least one".into(),
            ));
        }
        let mut nodes = check_nodes(&self.node)?;
        nodes.sort_by_key(|n| n.id);
        let resources = check_resources(&self.resource)?;
        let jobs = self.jobs.validate()?;
        if self.auth.rate_per_sec > limits::TOKEN_RATE_MAX {
            return Err(ConfigError(format!(
                "auth.rate_per_sec: is {}, the limit is {}",
                self.auth.rate_per_sec,
                limits::TOKEN_RATE_MAX
            )));
        }
        check_exposure(
            &nodes,
            self.auth.enabled,
            self.tls.is_some(),
            self.cluster.insecure,
        )?;
        let c = self.cluster;
        let data_dir = if c.data_dir.is_absolute() {
            c.data_dir
        } else {
            base.join(c.data_dir)
        };
        let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
        Ok(Config {
            name: c.name,
            data_dir,
            heartbeat_ms: c.heartbeat_ms,
            election_timeout_min_ms: c.election_timeout_min_ms,
            election_timeout_max_ms: c.election_timeout_max_ms,
            snapshot_every_entries: c.snapshot_every_entries,
            snapshot_every_log_bytes: c.snapshot_every_log_bytes,
            snapshot_logs_kept: c.snapshot_logs_kept,
            request_timeout_ms: c.request_timeout_ms,
            workers_min: c.workers_min.min(c.workers_max),
            workers_max: c.workers_max,
            settings,
            nodes,
            resources,
            auth_enabled: self.auth.enabled,
            bootstrap_token_file: self.auth.bootstrap_token_file.map(|p| absolute(base, p)),
            token_rate: (
                self.auth.rate_per_sec,
                self.auth.burst.max(self.auth.rate_per_sec),
            ),
            tls: self.tls.map(|t| TlsPaths {
                ca_file: absolute(base, t.ca_file),
                cert_file: absolute(base, PathBuf::from(t.cert_file)),
                key_file: absolute(base, PathBuf::from(t.key_file)),
            }),
            insecure: c.insecure,
            connection_idle_ms: c.connection_idle_ms,
            jobs,
            node_dirs: BTreeMap::new(),
        })
    }
}

/// Checks the `[cluster]` keys; returns the replicated settings they give.
fn check_cluster(c: &RawCluster) -> Result<Settings, ConfigError> {
    let err = |key: &str, msg: String| Err(ConfigError(format!("{key}: {msg}")));
    if let Err(Rejection::Invalid { message, .. }) = validate_queue_name("name", &c.name) {
        return err("cluster.name", format!("{:?} {message}", c.name));
    }
    if c.data_dir.as_os_str().is_empty() {
        return err("cluster.data_dir", "must not be empty".into());
    }
    let range = |key: &str, value: u64, min: u64, max: u64| {
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(ConfigError(format!(
                "{key}: is {value}, must be {min}..={max}"
            )))
        }
    };
    range(
        "cluster.heartbeat_ms",
        c.heartbeat_ms,
        limits::HEARTBEAT_MS_MIN,
        limits::HEARTBEAT_MS_MAX,
    )?;
    if c.election_timeout_min_ms <= c.heartbeat_ms * 2 {
        return err(
            "cluster.election_timeout_min_ms",
            format!(
                "is {}, must be more than twice heartbeat_ms ({})",
                c.election_timeout_min_ms, c.heartbeat_ms
            ),
        );
    }
    if c.election_timeout_max_ms <= c.election_timeout_min_ms {
        return err(
            "cluster.election_timeout_max_ms",
            format!(
                "is {}, must be more than election_timeout_min_ms ({})",
                c.election_timeout_max_ms, c.election_timeout_min_ms
            ),
        );
    }
    range(
        "cluster.election_timeout_max_ms",
        c.election_timeout_max_ms,
        0,
        limits::ELECTION_TIMEOUT_MS_MAX,
    )?;
    range(
        "cluster.snapshot_every_entries",
        c.snapshot_every_entries,
        limits::SNAPSHOT_EVERY_ENTRIES_MIN,
        limits::SNAPSHOT_EVERY_ENTRIES_MAX,
    )?;
    range(
        "cluster.snapshot_every_log_bytes",
        c.snapshot_every_log_bytes,
        limits::SNAPSHOT_EVERY_LOG_BYTES_MIN,
        limits::SNAPSHOT_EVERY_LOG_BYTES_MAX,
    )?;
    range(
        "cluster.snapshot_logs_kept",
        c.snapshot_logs_kept,
        0,
        limits::SNAPSHOT_LOGS_KEPT_MAX,
    )?;
    if c.request_timeout_ms < c.election_timeout_max_ms
        || c.request_timeout_ms > limits::REQUEST_TIMEOUT_MS_MAX
    {
        return err(
            "cluster.request_timeout_ms",
            format!(
                "is {}, must be election_timeout_max_ms ({})..={}",
                c.request_timeout_ms,
                c.election_timeout_max_ms,
                limits::REQUEST_TIMEOUT_MS_MAX
            ),
        );
    }
    range(
        "cluster.connection_idle_ms",
        c.connection_idle_ms,
        limits::CONNECTION_IDLE_MS_MIN,
        limits::CONNECTION_IDLE_MS_MAX,
    )?;
    range(
        "cluster.workers_max",
        c.workers_max.into(),
        0,
        limits::NODE_WORKERS_MAX,
    )?;
    if c.workers_max > 0 && c.workers_min > c.workers_max {
        return err(
            "cluster.workers_min",
            format!(
                "is {}, must be at most workers_max ({})",
                c.workers_min, c.workers_max
            ),
        );
    }
    let settings = Settings {
        dead_retention_ms: c.dead_retention_ms,
        finished_retention_ms: c.finished_retention_ms,
        idempotency_window_ms: c.idempotency_window_ms,
        priority_aging_ms: c.priority_aging_ms,
    };
    let mut probe = crate::machine::Machine::new();
    if let crate::machine::Response::Rejected(Rejection::Invalid { field, message }) =
        probe.apply(&crate::machine::Proposal {
            now_ms: 0,
            command: crate::machine::Command::Configure(settings),
        })
    {
        return err(&format!("cluster.{field}"), message);
    }
    Ok(settings)
}

/// Safe defaults: a node binds an address other hosts can reach only with auth and TLS on,
/// unless `insecure = true` says the operator means it.
fn check_exposure(
    nodes: &[NodeConfig],
    auth: bool,
    tls: bool,
    insecure: bool,
) -> Result<(), ConfigError> {
    if (auth && tls) || insecure {
        return Ok(());
    }
    let missing = match (auth, tls) {
        (false, false) => "auth is off and [tls] is missing",
        (false, true) => "auth is off",
        _ => "[tls] is missing",
    };
    for (i, n) in nodes.iter().enumerate() {
        let addrs = [
            ("raft_addr", n.raft_listen_addr),
            ("api_addr", n.api_addr),
            ("http_addr", n.http_addr),
        ];
        if let Some((key, addr)) = addrs.iter().find(|(_, a)| !a.ip().is_loopback()) {
            return Err(ConfigError(format!(
                "node[{i}].{key}: {addr} is reachable from other hosts, but {missing}; turn \
                 both on (see README, Security), or set insecure = true in [cluster] to accept \
                 that anyone who reaches it can run commands as this node"
            )));
        }
    }
    Ok(())
}

/// Checks every `[[node]]`: ids, addresses (each used once), queues and capabilities.
fn check_nodes(raw: &[RawNode]) -> Result<Vec<NodeConfig>, ConfigError> {
    let err = |key: &str, msg: String| Err(ConfigError(format!("{key}: {msg}")));
    let mut ids = BTreeSet::new();
    let mut addrs = BTreeSet::new();
    let mut nodes = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        let at = |key: &str| format!("node[{i}].{key}");
        if n.id == 0 {
            return err(&at("id"), "must be at least 1".into());
        }
        if !ids.insert(n.id) {
            return err(&at("id"), format!("{} is used by another node", n.id));
        }
        let mut parse = |key: &str, value: &str| -> Result<SocketAddr, ConfigError> {
            let addr: SocketAddr = value.parse().map_err(|_| {
                ConfigError(format!(
                    "{}: {value:?} is not an address (ip:port)",
                    at(key)
                ))
            })?;
            if addr.port() == 0 {
                return Err(ConfigError(format!("{}: port must not be 0", at(key))));
            }
            if !addrs.insert(addr) {
                return Err(ConfigError(format!(
                    "{}: {addr} is used twice in the config",
                    at(key)
                )));
            }
            Ok(addr)
        };
        let queues = if n.queues.iter().any(|q| q == "*") {
            Vec::new()
        } else {
            for (j, q) in n.queues.iter().enumerate() {
                if let Err(Rejection::Invalid { message, .. }) = validate_queue_name("", q) {
                    return err(&at(&format!("queues[{j}]")), format!("{q:?} {message}"));
                }
            }
            if n.queues.is_empty() || n.queues.len() > limits::LEASE_QUEUES_MAX {
                return err(
                    &at("queues"),
                    format!(
                        "must list 1..={} queues, or \"*\"",
                        limits::LEASE_QUEUES_MAX
                    ),
                );
            }
            n.queues.clone()
        };
        for (j, cap) in n.capabilities.iter().enumerate() {
            if let Err(Rejection::Invalid { message, .. }) =
                validate_name("", cap, limits::CAPABILITY_BYTES_MAX)
            {
                return err(
                    &at(&format!("capabilities[{j}]")),
                    format!("{cap:?} {message}"),
                );
            }
        }
        if n.capabilities.len() > limits::CAPABILITIES_MAX {
            return err(
                &at("capabilities"),
                format!("has more than {}", limits::CAPABILITIES_MAX),
            );
        }
        if let Some(user) = &n.run_as {
            jobs::check_user(&at("run_as"), user)?;
        }
        nodes.push(NodeConfig {
            id: n.id,
            raft_addr: parse("raft_addr", &n.raft_addr)?,
            raft_listen_addr: match &n.raft_listen_addr {
                Some(a) => parse("raft_listen_addr", a)?,
                None => n
                    .raft_addr
                    .parse()
                    .map_err(|_| ConfigError("raft_addr".into()))?,
            },
            api_addr: parse("api_addr", &n.api_addr)?,
            http_addr: parse("http_addr", &n.http_addr)?,
            queues,
            capabilities: n.capabilities.clone(),
            run_as: n.run_as.clone(),
        });
    }
    Ok(nodes)
}

/// Checks every `[[resource]]` as the machine would (name, capacity), and that none is
/// declared twice.
fn check_resources(raw: &[RawResource]) -> Result<Vec<(String, u32)>, ConfigError> {
    let err = |key: &str, msg: String| Err(ConfigError(format!("{key}: {msg}")));
    let mut resources = Vec::new();
    let mut probe = crate::machine::Machine::new();
    for (i, r) in raw.iter().enumerate() {
        if resources.iter().any(|(name, _)| name == &r.name) {
            return err(
                &format!("resource[{i}].name"),
                format!("{:?} is declared twice", r.name),
            );
        }
        if let crate::machine::Response::Rejected(Rejection::Invalid { field, message }) = probe
            .apply(&crate::machine::Proposal {
                now_ms: 0,
                command: crate::machine::Command::SetResource {
                    name: r.name.clone(),
                    capacity: r.capacity,
                },
            })
        {
            return err(&format!("resource[{i}].{field}"), message);
        }
        resources.push((r.name.clone(), r.capacity));
    }
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[cluster]
name = "t"
data_dir = "data"
[[node]]
id = 1
raft_addr = "127.0.0.1:7101"
api_addr = "127.0.0.1:7201"
http_addr = "127.0.0.1:7301"
[[node]]
id = 2
raft_addr = "127.0.0.1:7102"
api_addr = "127.0.0.1:7202"
http_addr = "127.0.0.1:7302"
"#;

    fn check(text: &str) -> Result<Config, ConfigError> {
        RawConfig::parse(text)?.validate(Path::new("/base"))
    }

    /// A good config validates and resolves data_dir against the config's directory.
    #[test]
    fn config_good() {
        let c = check(GOOD).unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.node_dir(2), PathBuf::from("/base/data/node-2"));
        assert!(c.node(3).unwrap_err().0.contains("--id 3"));
    }

    /// Each mistake gives one line naming the key.
    #[test]
    fn config_errors_name_the_key() {
        let cases = [
            (
                GOOD.replace("name = \"t\"", "name = \"t\"\nbogus = 1"),
                "bogus",
            ),
            (GOOD.replace("id = 2", "id = 1"), "node[1].id"),
            (GOOD.replace("7202", "7201"), "node[1].api_addr"),
            (GOOD.replace("127.0.0.1:7302", "nope"), "node[1].http_addr"),
            (GOOD.replace("name = \"t\"", "name = \"\""), "cluster.name"),
            (
                GOOD.replace(
                    "data_dir = \"data\"",
                    "data_dir = \"data\"\nheartbeat_ms = 500",
                ),
                "cluster.election_timeout_min_ms",
            ),
            (GOOD.replace("id = 1", "id = \"one\""), "line"),
        ];
        for (text, key) in cases {
            let e = check(&text).unwrap_err().0;
            assert!(e.contains(key), "{e:?} should name {key}");
            assert_eq!(e.lines().count(), 1, "{e:?} should be one line");
        }
    }
}
