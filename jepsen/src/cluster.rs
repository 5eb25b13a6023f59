//! The system under test: real `raftline node` processes on this machine, each on its own
//! loopback address (127.0.1.N) so the network nemesis can cut links between chosen nodes.
//! Nodes bind their outgoing peer connections to their own address (raftline does this for
//! every node), so a packet's source and destination addresses name the link it travels.
//!
//! With [`Cluster::use_lossyfs`] each node's data dir is its own `raftline-lossyfs` mount
//! (backing dirs under `dir/backing/`), so [`Cluster::lose_unsynced`] can drop what the node
//! had not synced, as a power loss would. Mounts are unmounted when the cluster is dropped,
//! after its processes are killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raftline::client::{Access, Client};

/// One node of the cluster under test.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node id (1-based).
    pub id: u64,
    /// Loopback address of the node.
    pub ip: String,
    /// Raft port.
    pub raft_port: u16,
    /// API port.
    pub api_port: u16,
    /// HTTP port.
    pub http_port: u16,
    /// Port the node really listens on for peers when a proxy sits on `raft_port`.
    pub raft_listen_port: Option<u16>,
}

impl NodeSpec {
    /// `ip:api_port`.
    pub fn api(&self) -> String {
        format!("{}:{}", self.ip, self.api_port)
    }
}

/// Running node processes, their data and logs under `dir`.
pub struct Cluster {
    /// Directory holding cluster.toml, data dirs and node logs.
    pub dir: PathBuf,
    /// The raftline binary.
    pub bin: PathBuf,
    /// Node specs, by id.
    pub nodes: Vec<NodeSpec>,
    procs: BTreeMap<u64, Child>,
    /// lossyfs mounts under the data dirs, by node id (empty unless `use_lossyfs`).
    disks: BTreeMap<u64, Disk>,
    /// The admin token and CA clients use.
    pub access: Access,
}

/// One node's lossyfs mount: the process serving it and its control socket.
struct Disk {
    child: Child,
    control: PathBuf,
    mountpoint: PathBuf,
}

impl Disk {
    /// Unmounts through the control socket; kills the process and detaches the mount when
    /// that does not work within a bound.
    fn unmount(mut self) {
        raftline_lossyfs::control::stop(&mut self.child, &self.control, &self.mountpoint);
        let _ = std::fs::remove_file(&self.control);
    }
}

/// Finds the raftline-lossyfs binary: `RAFTLINE_LOSSYFS_BIN`, next to this executable or to
/// the raftline binary `node_bin`, or built on demand like [`raftline_bin`].
pub fn lossyfs_bin(node_bin: &Path) -> Result<PathBuf, String> {
    let beside = node_bin.with_file_name("raftline-lossyfs");
    find_or_build("RAFTLINE_LOSSYFS_BIN", "raftline-lossyfs", Some(&beside))
}

/// libfaketime, when installed (Debian's `faketime` package).
pub fn libfaketime() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Finds the raftline binary: `RAFTLINE_BIN`, or next to this executable, built on demand
/// with the same profile.
pub fn raftline_bin() -> Result<PathBuf, String> {
    find_or_build("RAFTLINE_BIN", "raftline", None)
}

/// The binary `name` (of the package of the same name): the path in env var `var`, else the
/// one beside this executable (test binaries live in target/<profile>/deps, binaries one level
/// up), else `also` when it exists, else built with cargo in this executable's profile.
fn find_or_build(var: &str, name: &str, also: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os(var) {
        return Ok(PathBuf::from(bin));
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = me.parent().ok_or("no directory for this executable")?;
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let bin = dir.join(name);
    if bin.exists() {
        return Ok(bin);
    }
    if let Some(also) = also.filter(|p| p.exists()) {
        return Ok(also.to_path_buf());
    }
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["build", "-p", name, "--bin", name]);
    if dir.ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo.status().map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() || !bin.exists() {
        return Err(format!(
            "no {name} binary at {} and cargo build failed",
            bin.display()
        ));
    }
    Ok(bin)
}

impl Cluster {
    /// Writes the config of an `n`-node cluster under `dir`, ports from `base_port`, with the
    /// harness's settings (short timeouts, no node executors); `proxied` puts each node's
    /// peer port behind a userspace proxy (see `proxy.rs`).
    pub fn new(
        dir: &Path,
        bin: PathBuf,
        n: u64,
        base_port: u16,
        proxied: bool,
    ) -> Result<Cluster, String> {
        let settings = "heartbeat_ms = 50\nelection_timeout_min_ms = 300\n\
            election_timeout_max_ms = 600\nsnapshot_every_entries = 2000\n\
            snapshot_logs_kept = 500\nrequest_timeout_ms = 2000\nworkers_max = 0\n";
        Cluster::with_settings(dir, bin, n, base_port, settings, proxied)
    }

    /// Like [`Cluster::new`], with the given `[cluster]` settings lines (after name and
    /// data_dir); auth and mutual TLS on.
    pub fn with_settings(
        dir: &Path,
        bin: PathBuf,
        n: u64,
        base_port: u16,
        settings: &str,
        proxied: bool,
    ) -> Result<Cluster, String> {
        Cluster::with_security(dir, bin, n, base_port, settings, proxied, true)
    }

    /// Like [`Cluster::with_settings`]; `secure = false` turns auth off and leaves TLS out
    /// (what `bench security` compares against).
    pub fn with_security(
        dir: &Path,
        bin: PathBuf,
        n: u64,
        base_port: u16,
        settings: &str,
        proxied: bool,
        secure: bool,
    ) -> Result<Cluster, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let nodes: Vec<NodeSpec> = (1..=n)
            .map(|id| NodeSpec {
                id,
                ip: format!("127.0.1.{id}"),
                raft_port: base_port,
                api_port: base_port + 1,
                http_port: base_port + 2,
                raft_listen_port: proxied.then_some(base_port + 3),
            })
            .collect();
        let mut text = format!("[cluster]\nname = \"jepsen\"\ndata_dir = \"data\"\n{settings}");
        for n in &nodes {
            text.push_str(&format!(
                "\n[[node]]\nid = {}\nraft_addr = \"{ip}:{}\"\napi_addr = \"{ip}:{}\"\nhttp_addr = \"{ip}:{}\"\n",
                n.id,
                n.raft_port,
                n.api_port,
                n.http_port,
                ip = n.ip
            ));
            if let Some(port) = n.raft_listen_port {
                text.push_str(&format!("raft_listen_addr = \"{}:{port}\"\n", n.ip));
            }
        }
        if !secure {
            text.push_str("\n[auth]\nenabled = false\n");
            std::fs::write(dir.join("cluster.toml"), text).map_err(|e| e.to_string())?;
            return Ok(Cluster {
                dir: dir.to_path_buf(),
                bin,
                nodes,
                procs: BTreeMap::new(),
                disks: BTreeMap::new(),
                access: Access::default(),
            });
        }
        // Auth and mutual TLS on, as a cluster on a real network runs: one bootstrap token
        // shared by every node, a CA and one certificate per node.
        let token = raftline::access::ensure_bootstrap(&dir.join("admin-token"))
            .map_err(|e| e.to_string())?;
        let certs = dir.join("certs");
        if !certs.join("ca.pem").exists() {
            let ips: Vec<(u64, Vec<std::net::IpAddr>)> = nodes
                .iter()
                .map(|n| (n.id, vec![n.ip.parse().expect("node ip")]))
                .collect();
            raftline::tls::init_certs(&certs, &ips).map_err(|e| e.to_string())?;
        }
        text.push_str(
            "\n[auth]\nbootstrap_token_file = \"admin-token\"\n\n[tls]\nca_file = \"certs/ca.pem\"\n\
             cert_file = \"certs/node-{id}.pem\"\nkey_file = \"certs/node-{id}-key.pem\"\n",
        );
        std::fs::write(dir.join("cluster.toml"), text).map_err(|e| e.to_string())?;
        Ok(Cluster {
            dir: dir.to_path_buf(),
            bin,
            nodes,
            procs: BTreeMap::new(),
            disks: BTreeMap::new(),
            access: Access {
                token: Some(token),
                ca_file: Some(certs.join("ca.pem")),
            },
        })
    }

    /// Puts every node's data dir on its own lossyfs mount (before any node starts). Fails
    /// with the reason when FUSE cannot be used here.
    pub fn use_lossyfs(&mut self) -> Result<(), String> {
        raftline_lossyfs::mount::usable()
            .map_err(|why| format!("the lose-unsynced nemesis needs FUSE: {why}"))?;
        let bin = lossyfs_bin(&self.bin)?;
        for id in self.ids() {
            let backing = self.dir.join("backing").join(format!("node-{id}"));
            let mountpoint = self.dir.join("data").join(format!("node-{id}"));
            for d in [&backing, &mountpoint] {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            }
            // Unix socket paths are short (108 bytes): the socket lives in the temp dir.
            let control = std::env::temp_dir()
                .join(format!("raftline-lossyfs-{}-{id}.sock", std::process::id()));
            let log = std::fs::File::create(self.dir.join(format!("lossyfs-{id}.log")))
                .map_err(|e| e.to_string())?;
            let err = log.try_clone().map_err(|e| e.to_string())?;
            let child = Command::new(&bin)
                .arg("mount")
                .arg("--backing")
                .arg(&backing)
                .arg("--mountpoint")
                .arg(&mountpoint)
                .arg("--control")
                .arg(&control)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("starting {}: {e}", bin.display()))?;
            let mut disk = Disk {
                child,
                control,
                mountpoint,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while raftline_lossyfs::control::request(&disk.control, "status").is_err() {
                if let Ok(Some(status)) = disk.child.try_wait() {
                    return Err(format!(
                        "raftline-lossyfs for node {id} exited ({status}) before mounting: see lossyfs-{id}.log"
                    ));
                }
                if Instant::now() > deadline {
                    disk.unmount();
                    return Err(format!(
                        "raftline-lossyfs for node {id}: no mount within 10 s"
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            self.disks.insert(id, disk);
        }
        Ok(())
    }

    /// Drops every write node `id`'s data dir has not synced (its lossyfs `crash`); the node
    /// must be down. Returns what was dropped.
    pub fn lose_unsynced(&mut self, id: u64) -> Result<String, String> {
        if self.procs.contains_key(&id) {
            return Err(format!(
                "node {id} runs: kill it before dropping its unsynced writes"
            ));
        }
        let disk = self
            .disks
            .get(&id)
            .ok_or_else(|| format!("node {id} has no lossyfs mount"))?;
        raftline_lossyfs::control::request(&disk.control, "crash")
            .map(|reply| reply.trim_start_matches("ok ").to_string())
            .map_err(|e| format!("lossyfs crash of node {id}: {e}"))
    }

    /// Node ids.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Starts node `id` (its log is appended to `dir/node-<id>.log`).
    pub fn start(&mut self, id: u64) -> Result<(), String> {
        self.start_with(id, &[])
    }

    /// Starts node `id` with extra environment variables (e.g. a faked clock).
    pub fn start_with(&mut self, id: u64, env: &[(String, String)]) -> Result<(), String> {
        self.spawn(id, env, &[])
    }

    /// Starts node `id` with `--join` the API address of node `via`: as a node that waits,
    /// with an empty data dir, to be added.
    pub fn start_joining(&mut self, id: u64, via: u64) -> Result<(), String> {
        let join = self.nodes[(via - 1) as usize].api();
        let env: Vec<(String, String)> = self
            .access
            .token
            .iter()
            .map(|t| ("RAFTLINE_TOKEN".to_string(), t.clone()))
            .collect();
        self.spawn(id, &env, &["--join".to_string(), join])
    }

    /// Empties node `id`'s data dir (kept itself: it may be a mountpoint), as a dead disk
    /// replaced by a new one would.
    pub fn wipe(&self, id: u64) -> Result<(), String> {
        let dir = self.dir.join("data").join(format!("node-{id}"));
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let gone = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            gone.map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    fn spawn(&mut self, id: u64, env: &[(String, String)], args: &[String]) -> Result<(), String> {
        if self.procs.contains_key(&id) {
            return Ok(());
        }
        let log_path = self.dir.join(format!("node-{id}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.bin)
            .args(["node", "--config"])
            .arg(self.dir.join("cluster.toml"))
            .args(["--id", &id.to_string()])
            .args(args)
            .env("RAFTLINE_LOG", "info,openraft=warn")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting node {id}: {e}"))?;
        self.procs.insert(id, child);
        Ok(())
    }

    /// `kill -9` of node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.procs.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Graceful stop of node `id` (SIGTERM, then kill after 10 s).
    pub fn stop(&mut self, id: u64) {
        if let Some(mut child) = self.procs.remove(&id) {
            // SAFETY: kill(2) on a child this harness started and has not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) to node `id`.
    pub fn pause(&self, id: u64, stop: bool) {
        if let Some(child) = self.procs.get(&id) {
            let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) on a child this harness started and has not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            }
        }
    }

    /// The process id of a running node.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.procs.get(&id).map(Child::id)
    }

    /// Whether node `id` runs.
    pub fn running(&self, id: u64) -> bool {
        self.procs.contains_key(&id)
    }

    /// A client of node `id` only.
    pub fn client_of(&self, id: u64) -> Client {
        let node = self.nodes.iter().find(|n| n.id == id).expect("node id");
        Client::with_access(&[node.api()], &self.access).expect("client")
    }

    /// A client of every node.
    pub fn client(&self) -> Client {
        let addrs: Vec<String> = self.nodes.iter().map(NodeSpec::api).collect();
        Client::with_access(&addrs, &self.access).expect("client")
    }

    /// The leader as seen by the nodes that answer, once all answering nodes agree.
    pub async fn wait_leader(&self, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut seen = None;
            let mut agreed = true;
            for id in self.ids().into_iter().filter(|id| self.running(*id)) {
                let status = tokio::time::timeout(
                    Duration::from_millis(500),
                    self.client_of(id).node_status(0),
                )
                .await;
                match status {
                    Ok(Ok(s)) if s.leader.is_some() => {
                        if seen.is_some_and(|l| Some(l) != s.leader) {
                            agreed = false;
                        }
                        seen = s.leader;
                    }
                    _ => agreed = false,
                }
            }
            if agreed && seen.is_some() {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Stops every node: SIGCONT (in case paused), then SIGTERM, then kill after a bound.
    pub fn stop_all(&mut self) {
        for id in self.ids() {
            self.pause(id, false);
        }
        for child in self.procs.values() {
            // SAFETY: as in `pause`.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (_, mut child) in std::mem::take(&mut self.procs) {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for (_, disk) in std::mem::take(&mut self.disks) {
            disk.unmount();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.procs) {
            // SAFETY: as in `pause`; a stopped process must be continued to die cleanly.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for (_, disk) in std::mem::take(&mut self.disks) {
            disk.unmount();
        }
    }
}
