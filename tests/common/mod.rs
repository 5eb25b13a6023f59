//! Test harness: real `raftline node` processes on loopback, each with a sled data dir in a
//! temp dir, driven through the real gRPC client and CLI.
//!
//! Ports come from a fixed test range below the kernel's ephemeral range (so no outgoing
//! connection can take one), starting at an offset derived from the process id and advanced
//! by an atomic counter; each port is checked free by binding it before use.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use raftline::client::{Access, Client};
use raftline::proto::pb;

/// The built binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_raftline");

/// Test port range: [PORT_LO, PORT_HI), below the ephemeral range (32768+).
const PORT_LO: u16 = 20_000;
const PORT_HI: u16 = 32_000;

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A free port from the test range.
pub fn free_port() -> u16 {
    let span = PORT_HI - PORT_LO;
    let _ = NEXT_PORT.compare_exchange(
        0,
        ((std::process::id() * 97) % span as u32) as u16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let offset = NEXT_PORT.fetch_add(1, Ordering::SeqCst) % span;
        let port = PORT_LO + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORT_LO}..{PORT_HI}");
}

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` at the deadline.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One node's addresses.
#[derive(Clone, Debug)]
pub struct NodeAddrs {
    pub id: u64,
    pub raft: String,
    pub api: String,
    pub http: String,
}

/// A cluster of real node processes.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub nodes: Vec<NodeAddrs>,
    procs: BTreeMap<u64, Child>,
    node_env: Vec<(String, String)>,
    /// Nodes outside the config, started with `--join` at the given API address.
    joins: BTreeMap<u64, String>,
    /// The admin token (the shared bootstrap token) and CA clients use.
    pub access: Access,
}

/// Settings a test may change; the rest are fast defaults for loopback.
pub struct Settings {
    pub nodes: u64,
    pub snapshot_every_entries: u64,
    pub snapshot_logs_kept: u64,
    pub request_timeout_ms: u64,
    /// Extra lines for the `[cluster]` table.
    pub cluster_extra: String,
    /// Extra lines for every `[[node]]` table.
    pub node_extra: String,
    /// Extra lines for the `[auth]` table.
    pub auth_extra: String,
    /// Mutual TLS on every port, with a CA and node certificates made by `certs init`.
    pub tls: bool,
    /// The `[jobs]` table; `None`: jobs run as the test's own user, named explicitly (so
    /// shell jobs may write to the test's files when tests run as root).
    pub jobs: Option<String>,
    /// Extra environment variables of every node process.
    pub node_env: Vec<(String, String)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            nodes: 3,
            snapshot_every_entries: 10_000,
            snapshot_logs_kept: 1_000,
            request_timeout_ms: 3_000,
            cluster_extra: String::new(),
            node_extra: String::new(),
            auth_extra: String::new(),
            tls: false,
            jobs: None,
            node_env: Vec::new(),
        }
    }
}

impl Cluster {
    /// Writes a config for a new cluster in a temp dir (no process started).
    pub fn new(settings: Settings) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let nodes: Vec<NodeAddrs> = (1..=settings.nodes)
            .map(|id| NodeAddrs {
                id,
                raft: format!("127.0.0.1:{}", free_port()),
                api: format!("127.0.0.1:{}", free_port()),
                http: format!("127.0.0.1:{}", free_port()),
            })
            .collect();
        let mut text = format!(
            "[cluster]\nname = \"test\"\ndata_dir = \"data\"\nheartbeat_ms = 50\n\
             election_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n\
             snapshot_every_entries = {}\nsnapshot_logs_kept = {}\nrequest_timeout_ms = {}\n{}\n",
            settings.snapshot_every_entries,
            settings.snapshot_logs_kept,
            settings.request_timeout_ms,
            settings.cluster_extra
        );
        // Every node shares one bootstrap token, made here, so a client has it from the start.
        let token = raftline::access::ensure_bootstrap(&dir.path().join("admin-token"))
            .expect("bootstrap token");
        text.push_str(&format!(
            "\n[auth]\nbootstrap_token_file = \"admin-token\"\n{}\n",
            settings.auth_extra
        ));
        let ca_file = settings.tls.then(|| {
            let certs = dir.path().join("certs");
            let ips: Vec<(u64, Vec<std::net::IpAddr>)> = nodes
                .iter()
                .map(|n| (n.id, vec![std::net::Ipv4Addr::LOCALHOST.into()]))
                .collect();
            raftline::tls::init_certs(&certs, &ips).expect("certs");
            text.push_str(
                "\n[tls]\nca_file = \"certs/ca.pem\"\ncert_file = \"certs/node-{id}.pem\"\n\
                 key_file = \"certs/node-{id}-key.pem\"\n",
            );
            certs.join("ca.pem")
        });
        // SAFETY: geteuid(2) has no preconditions.
        let euid = unsafe { libc::geteuid() };
        text.push('\n');
        text.push_str(
            &settings
                .jobs
                .unwrap_or_else(|| format!("[jobs]\nrun_as = \"{euid}\"\n")),
        );
        for n in &nodes {
            text.push_str(&format!(
                "\n[[node]]\nid = {}\nraft_addr = \"{}\"\napi_addr = \"{}\"\nhttp_addr = \"{}\"\n{}\n",
                n.id, n.raft, n.api, n.http, settings.node_extra
            ));
        }
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, text).expect("write config");
        Cluster {
            dir,
            config,
            nodes,
            procs: BTreeMap::new(),
            node_env: settings.node_env,
            joins: BTreeMap::new(),
            access: Access {
                token: Some(token),
                ca_file,
            },
        }
    }

    /// A started cluster with a leader.
    pub async fn start(settings: Settings) -> Cluster {
        let mut c = Cluster::new(settings);
        for id in c.ids() {
            c.spawn(id);
        }
        c.wait_leader(None).await;
        c
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn node(&self, id: u64) -> &NodeAddrs {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }

    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join("data").join(format!("node-{id}"))
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    /// Starts node `id` as a process; its output is appended to its log file.
    pub fn spawn(&mut self, id: u64) {
        self.spawn_wrapped(id, &[]);
    }

    /// Starts node `id` under `wrapper` (a program and its arguments, e.g. strace), which is
    /// given the node's command line after its own arguments.
    pub fn spawn_wrapped(&mut self, id: u64, wrapper: &[String]) {
        assert!(!self.procs.contains_key(&id), "node {id} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .expect("log file");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = command
            .args(["node", "--config"])
            .arg(&self.config)
            .args(["--id", &id.to_string()])
            .args(self.joins.get(&id).map_or(Vec::new(), |join| {
                let n = self.node(id);
                vec![
                    "--join".to_string(),
                    join.clone(),
                    "--raft-addr".into(),
                    n.raft.clone(),
                    "--api-addr".into(),
                    n.api.clone(),
                    "--http-addr".into(),
                    n.http.clone(),
                ]
            }))
            .env("RAFTLINE_LOG", "info,openraft=warn")
            .envs(self.node_env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn node");
        self.procs.insert(id, child);
    }

    /// Starts node `id`, not in the config, with `raftline node --join JOIN` and its own
    /// addresses (new free ports the first time, the same ones on a later call).
    pub fn spawn_joining(&mut self, id: u64, join: &str) -> NodeAddrs {
        if !self.nodes.iter().any(|n| n.id == id) {
            self.nodes.push(NodeAddrs {
                id,
                raft: format!("127.0.0.1:{}", free_port()),
                api: format!("127.0.0.1:{}", free_port()),
                http: format!("127.0.0.1:{}", free_port()),
            });
        }
        self.joins.insert(id, join.to_string());
        self.spawn(id);
        self.node(id).clone()
    }

    /// `kill -9` of node `id`.
    pub fn kill9(&mut self, id: u64) {
        let mut child = self.procs.remove(&id).expect("node running");
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to node `id`.
    pub fn signal(&self, id: u64, signal: i32) {
        let child = self.procs.get(&id).expect("node running");
        // SAFETY: kill(2) on a child this harness started and has not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
    }

    /// SIGTERM to node `id`; returns its exit status after it stopped.
    pub async fn stop(&mut self, id: u64) -> std::process::ExitStatus {
        let mut child = self.procs.remove(&id).expect("node running");
        // SAFETY: kill(2) on a child this harness started and has not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        wait_for(
            &format!("node {id} to exit"),
            Duration::from_secs(15),
            || {
                let status = child.try_wait().expect("try_wait");
                async move { status }
            },
        )
        .await
    }

    /// SIGTERM to the processes node `id`'s wrapper started (the node itself), then waits
    /// for the wrapper to exit.
    pub async fn stop_wrapped(&mut self, id: u64) -> std::process::ExitStatus {
        let pid = self.procs.get(&id).expect("node running").id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let child: libc::pid_t = child.parse().expect("pid");
            // SAFETY: kill(2) on a process our own child started.
            unsafe {
                libc::kill(child, libc::SIGTERM);
            }
        }
        self.wait_exit(id, Duration::from_secs(15)).await
    }

    /// Waits for node `id`, started with `spawn`, to exit by itself; returns its status.
    pub async fn wait_exit(&mut self, id: u64, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.procs.remove(&id).expect("node running");
        wait_for(&format!("node {id} to exit"), timeout, || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await
    }

    /// If node `id`, started with `spawn`, has exited: its status (and it is no longer
    /// running). `None` while it runs.
    pub fn try_exit(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let status = self.procs.get_mut(&id)?.try_wait().expect("try_wait")?;
        self.procs.remove(&id);
        Some(status)
    }

    /// The process id of node `id`, while this harness runs it.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.procs.get(&id).map(Child::id)
    }

    pub fn running(&self) -> Vec<u64> {
        self.procs.keys().copied().collect()
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    /// A client of the given nodes.
    pub fn client_of(&self, ids: &[u64]) -> Client {
        let addrs: Vec<String> = ids.iter().map(|id| self.node(*id).api.clone()).collect();
        Client::with_access(&addrs, &self.access).expect("client")
    }

    /// A client of every running node.
    pub fn client(&self) -> Client {
        self.client_of(&self.running())
    }

    /// Node `id`'s own status, if it answers.
    pub async fn status(&self, id: u64) -> Option<pb::NodeStatusResponse> {
        let client = self.client_of(&[id]);
        tokio::time::timeout(Duration::from_secs(2), client.node_status(0))
            .await
            .ok()?
            .ok()
    }

    /// Waits until every running node reports the same leader (other than `not`), in the same
    /// term; returns it.
    pub async fn wait_leader(&self, not: Option<u64>) -> u64 {
        wait_for("an agreed leader", Duration::from_secs(20), || async {
            let mut seen = None;
            for id in self.running() {
                let s = self.status(id).await?;
                let view = (s.leader?, s.term);
                if seen.is_some_and(|v| v != view) {
                    return None;
                }
                seen = Some(view);
            }
            let (leader, _) = seen?;
            (Some(leader) != not && self.running().contains(&leader)).then_some(leader)
        })
        .await
    }

    /// Waits until every running node reports the same state digest at the same applied
    /// index; returns that index.
    pub async fn wait_same_digest(&self) -> u64 {
        wait_for("equal state digests", Duration::from_secs(20), || async {
            let running = self.running();
            let all = self.client_of(&running);
            let mut digests = Vec::new();
            for i in 0..running.len() {
                let s = all.node_digest(i).await.ok()?;
                digests.push((s.digest_applied, s.digest));
            }
            let same = digests.windows(2).all(|w| w[0] == w[1]);
            same.then_some(digests.first()?.0)
        })
        .await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64) {
        wait_for(
            &format!("node {id} to apply index {index}"),
            Duration::from_secs(30),
            || async { (self.status(id).await?.last_applied >= index).then_some(()) },
        )
        .await
    }

    /// Runs the CLI with `--addr` set to every node; returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        let addrs: Vec<String> = self.nodes.iter().map(|n| n.api.clone()).collect();
        run_cli(
            self.dir.path(),
            &[&["--addr", &addrs.join(",")], args].concat(),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.procs) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until every job of `ids` is finished (succeeded, dead or cancelled), reading through
/// `client`.
#[allow(dead_code)]
pub async fn wait_finished(client: &Client, ids: &[u64], timeout: Duration) {
    wait_for("every job finished", timeout, || async {
        for id in ids {
            let job = client.job(*id, false).await.ok()?;
            if !matches!(job.state.as_str(), "succeeded" | "dead" | "cancelled") {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// Runs the CLI in `dir` and returns its output.
pub fn run_cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run raftline")
}

/// A shell job request.
pub fn shell_job(queue: &str, argv: &[&str]) -> pb::SubmitRequest {
    pb::SubmitRequest {
        queue: queue.to_string(),
        priority: 0,
        kind: Some(pb::submit_request::Kind::Shell(pb::ShellCommand {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The argv of a job read back.
pub fn argv_of(job: &pb::Job) -> Vec<String> {
    match &job.kind {
        Some(pb::job::Kind::Shell(s)) => s.argv.clone(),
        other => panic!("job {} is not a shell job: {other:?}", job.id),
    }
}

/// stdout and stderr of a CLI run, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// GET `path` from a node's HTTP address; returns the body.
pub async fn http_get(addr: &str, path: &str) -> String {
    raftline::tls::http_get(addr, path, None)
        .await
        .unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"))
}

/// Copies the directory tree `from` into `to` (created).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl Cluster {
    /// The ids of every job node `id` holds (of `queue`, or all with ""), read page by page
    /// from its own state.
    pub async fn job_ids_on(&self, id: u64, queue: &str) -> std::collections::BTreeSet<u64> {
        let client = self.client_of(&[id]);
        let mut held = std::collections::BTreeSet::new();
        loop {
            let page = client
                .list_jobs(pb::ListJobsRequest {
                    queue: queue.into(),
                    after_id: held.last().copied().unwrap_or(0),
                    limit: 1000,
                    stale: true,
                    ..Default::default()
                })
                .await
                .expect("list jobs");
            if page.is_empty() {
                return held;
            }
            held.extend(page.iter().map(|j| j.id));
        }
    }
}

/// Clients submitting shell jobs to one queue, one after another each, through any of the
/// cluster's nodes, until stopped; the id of every acknowledged job is recorded.
pub struct Load {
    acked: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `writers` clients submitting to `queue`.
    pub fn start(c: &Cluster, writers: usize, queue: &str) -> Load {
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let addrs: Vec<String> = c.nodes.iter().map(|n| n.api.clone()).collect();
        let tasks = (0..writers)
            .map(|w| {
                let (acked, stop) = (acked.clone(), stop.clone());
                let client = Client::with_access(&addrs, &c.access).expect("client");
                let queue = queue.to_string();
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let job = shell_job(&queue, &["true", &format!("{w}-{n}")]);
                        match client.submit(job).await {
                            Ok(id) => acked.lock().unwrap().push(id),
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                })
            })
            .collect();
        Load { acked, stop, tasks }
    }

    /// The ids acknowledged so far.
    pub fn acked(&self) -> Vec<u64> {
        self.acked.lock().unwrap().clone()
    }

    /// Stops the clients; returns every id acknowledged.
    pub async fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load client");
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// One HTTP/1.1 exchange with a node's HTTP port: status, headers (lowercase names) and body
/// (chunked replies decoded). `token` goes in `authorization: Bearer`.
pub async fn http_call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), tcp.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no reply in 60 s"))
        .expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP reply");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, headers, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}
