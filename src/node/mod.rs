//! One node's lifecycle: bind, open the data dir, decide whether to form or join the cluster,
//! serve, and shut down cleanly. The node side of raftline: this wiring, the leader's
//! [`ticker`] and the node's own [`executor`] (the worker pool, shared with `raftline worker`).
//!
//! Start-up order matters:
//! 1. Bind every listener first, so a port in use fails before anything is written.
//! 2. Open (or create) the data dir, checking its stored identity (cluster name, node id).
//! 3. Start Raft and the peer server, gated: until the node has decided it may take part, peers
//!    get only `Hello` answers, never a vote or an append.
//! 4. A node without Raft state probes its peers. If any peer's replicated state records that
//!    this node ran before, its data was lost: it refuses to start, because a node that forgot
//!    its vote can vote twice in one term and elect a second leader. If a peer already holds the
//!    cluster, the node joins without initializing; if no peer does, it initializes the
//!    membership from the config (safe when all nodes do it at once with the same config).
//! 5. Open the gate, serve the API and HTTP, and register this run's incarnation.
//!
//! Shutdown: stop accepting, drain in-flight calls (bounded), stop Raft, flush sled, return;
//! the whole stop is bounded too. Raft stopping on a fatal error (a full or failing disk)
//! stops the node the same way, and it exits non-zero saying why (a full disk by name).
//!
//! A node started with `--join ADDR` is not in the seed list: before anything else it asks the
//! node at ADDR for the membership, refuses addresses that clash with a member's (or an id
//! that is a member at other addresses), probes the members' peer ports as above, and never
//! forms a cluster: it waits, answering peers, until `raftline cluster add` makes it a learner.
//!
//! CAVEATS: a node whose disk was lost while *every* peer is unreachable cannot tell that it
//! ran before and will start as new; the window between a node's first vote and its first
//! registration being applied is likewise unprotected. Replacing a lost disk is a membership
//! change: `cluster remove` (the members then forget the id), then a new node, under a new id
//! or the same one, with `--join`.

pub mod alerts;
pub mod executor;
pub mod sandbox;
mod shell;
pub mod ticker;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::access;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::machine::{limits, Command, NodeRun, Response, WorkerRef};
use crate::proto::pb;
use crate::raft::{self, Identity, Replica};
use crate::server;
use crate::server::auth::Gate;

/// How long in-flight calls may take to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(limits::NODE_DRAIN_MS);
/// How long the whole stop may take.
const STOP_TIMEOUT: Duration = Duration::from_millis(limits::NODE_STOP_MS_MAX);

async fn bind(id: u64, key: &str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("node {id}: cannot listen on {key} {addr}: {e}")))
}

/// What a node without Raft state does.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// No peer holds the cluster: write the initial membership.
    Form,
    /// A peer holds the cluster and has never seen this node: wait to be replicated to.
    Join,
}

/// Starts the node's own executor (unless `workers_max` is 0): it runs shell jobs of the
/// queues the node's config names, leasing and completing through Raft, until the returned
/// sender says stop.
fn spawn_executor(
    config: &Config,
    me: &crate::config::NodeConfig,
    replica: &Arc<Replica>,
    incarnation: u64,
    sandbox: sandbox::Sandbox,
) -> (watch::Sender<bool>, Option<tokio::task::JoinHandle<()>>) {
    let id = me.id;
    let (stop, mut stopped) = watch::channel(false);
    let task = (config.workers_max > 0).then(|| {
        let backend = Arc::new(executor::LocalBackend {
            replica: replica.clone(),
            worker: WorkerRef {
                id: format!("node-{id}"),
                node: Some(NodeRun {
                    node_id: id,
                    incarnation,
                }),
            },
            queues: me.queues.clone(),
            capabilities: me.capabilities.clone(),
        });
        let pool = executor::PoolConfig {
            min: config.workers_min,
            max: config.workers_max,
            handler: None,
            sandbox,
        };
        tokio::spawn(async move {
            let run = executor::run(backend, pool, async move {
                let _ = stopped.wait_for(|s| *s).await;
            });
            if let Err(e) = run.await {
                tracing::error!("the node's executor stopped: {e}");
            }
        })
    });
    (stop, task)
}

/// The line that tells whoever started the node that it is up.
fn announce(me: &crate::config::NodeConfig, dir: &std::path::Path) {
    println!(
        "raftline node {} up: raft {} api {} http {} data {}",
        me.id,
        me.raft_addr,
        me.api_addr,
        me.http_addr,
        dir.display()
    );
}

/// How this node's executor starts jobs (users looked up on this machine), said in the log.
fn job_sandbox(config: &Config, me: &crate::config::NodeConfig) -> Result<sandbox::Sandbox> {
    if config.workers_max == 0 {
        return Ok(sandbox::Sandbox::inherit());
    }
    let sandbox = sandbox::Sandbox::for_node(&config.jobs, me)?;
    match sandbox.user_for("") {
        Some(user) => tracing::info!(
            node = me.id,
            "shell jobs run as {} (uid {})",
            user.name,
            user.uid
        ),
        None => tracing::info!(node = me.id, "shell jobs run as this node's user"),
    }
    Ok(sandbox)
}

/// How a node outside the seed list reaches the cluster it joins.
#[derive(Debug, Clone)]
pub struct Join {
    /// The API address (`host:port`) of a member.
    pub addr: String,
    /// The token and CA to ask it with.
    pub access: crate::client::Access,
}

/// Runs node `id` of `config` until `shutdown` completes; with `join`, as a node that waits to
/// be added to the running cluster a member of which is at `join.addr`.
pub async fn run(
    config: Config,
    id: u64,
    join: Option<Join>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let me = config.node(id)?.clone();
    let sandbox = job_sandbox(&config, &me)?;
    crate::tls::set_connection_idle(std::time::Duration::from_millis(config.connection_idle_ms));
    let raft_listener = bind(id, "raft_addr", me.raft_listen_addr).await?;
    let api_listener = bind(id, "api_addr", me.api_addr).await?;
    let http_listener = bind(id, "http_addr", me.http_addr).await?;

    let dir = config.node_dir(id);
    let identity = Identity {
        cluster: config.name.clone(),
        node_id: id,
    };
    let db = raft::open_db(&dir, &identity)?;
    let (bootstrap, tls) = load_access(&config, id)?;
    let replica = Replica::start(&config, id, db.clone(), tls.clone()).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let gate = Arc::new(AtomicBool::new(false));
    let raft_server = tokio::spawn(server::serve_raft(
        raft_listener,
        replica.clone(),
        config.name.clone(),
        gate.clone(),
        tls.clone(),
        stopped(),
    ));

    let plan = if replica.is_initialized().await {
        None
    } else {
        match decide(&config, id, join.as_ref(), tls.as_ref()).await {
            Ok(plan) => Some(plan),
            Err(e) => {
                let _ = stop_tx.send(true);
                let _ = raft_server.await;
                replica.shutdown().await;
                return Err(e);
            }
        }
    };
    gate.store(true, Ordering::Release);
    if plan == Some(Plan::Form) {
        replica.initialize(&config).await?;
    }
    tracing::info!(node = id, ?plan, dir = %dir.display(), "node started");

    let [api_server, http_server] = serve_clients(
        &config,
        &replica,
        bootstrap.clone(),
        tls.as_ref(),
        [api_listener, http_listener],
        &stopped,
    );
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let register = tokio::spawn(register(replica.clone(), incarnation, bootstrap, stopped()));
    let ticker = tokio::spawn(ticker::run(
        replica.clone(),
        config.settings,
        config.resources.clone(),
        stopped(),
    ));
    // Ends with the stop signal, like the ticker; nothing to hand back (an attempt cut off is
    // made again by the next leader).
    tokio::spawn(webhooks::run(replica.clone(), stopped()));
    tokio::spawn(alerts::run(replica.clone(), stopped()));
    let (executor_stop, executor) = spawn_executor(&config, &me, &replica, incarnation, sandbox);
    announce(&me, &dir);

    tokio::pin!(shutdown);
    let failure = tokio::select! {
        _ = &mut shutdown => None,
        reason = replica.failed() => Some(reason),
    };
    match &failure {
        None => tracing::info!(node = id, "shutting down"),
        Some(reason) => tracing::error!(node = id, "raft stopped on a fatal error: {reason}"),
    }
    let tasks = Tasks {
        executor_stop,
        executor,
        stop_tx,
        register,
        ticker,
        servers: [api_server, http_server, raft_server],
    };
    // Every step of the stop is bounded, and so is the whole: a node must end (and a
    // supervisor restart it) even when a step hangs on a failing disk. After a fatal error
    // the shutdown signal still counts: SIGTERM ends the stop at once.
    let stopping = tokio::time::timeout(STOP_TIMEOUT, stop(tasks, &replica, &db));
    let stopped_in_time = if failure.is_some() {
        tokio::select! {
            done = stopping => done.is_ok(),
            _ = &mut shutdown => {
                tracing::warn!(node = id, "shutdown signal during the stop: exiting now");
                true
            }
        }
    } else {
        stopping.await.is_ok()
    };
    if !stopped_in_time {
        tracing::error!(
            node = id,
            "the stop did not finish within {STOP_TIMEOUT:?}: exiting"
        );
    }
    if let Some(reason) = failure {
        return Err(Error::Internal(fatal_message(id, &dir, &reason)));
    }
    if !stopped_in_time {
        return Err(Error::Internal(format!(
            "node {id}: the stop did not finish within {STOP_TIMEOUT:?}"
        )));
    }
    tracing::info!(node = id, "stopped");
    Ok(())
}

/// What a running node stops at shutdown.
struct Tasks {
    executor_stop: watch::Sender<bool>,
    executor: Option<tokio::task::JoinHandle<()>>,
    stop_tx: watch::Sender<bool>,
    register: tokio::task::JoinHandle<()>,
    ticker: tokio::task::JoinHandle<()>,
    servers: [tokio::task::JoinHandle<Result<()>>; 3],
}

/// Hands running jobs back while Raft still runs, stops serving (draining in-flight calls,
/// bounded), stops Raft and flushes sled.
async fn stop(tasks: Tasks, replica: &Replica, db: &sled::Db) {
    let _ = tasks.executor_stop.send(true);
    if let Some(executor) = tasks.executor {
        let _ = executor.await;
    }
    let _ = tasks.stop_tx.send(true);
    tasks.register.abort();
    tasks.ticker.abort();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        for server in tasks.servers {
            match server.await {
                Ok(Err(e)) => tracing::warn!("{e}"),
                Err(e) => tracing::warn!("server task: {e}"),
                Ok(Ok(())) => {}
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight calls did not finish within {DRAIN_TIMEOUT:?}");
    }
    replica.shutdown().await;
    if let Err(e) = db.flush_async().await {
        tracing::error!("final flush of the database: {e}");
    }
}

/// What a node says when Raft stopped on a fatal error. A full disk is named as such (the
/// error's text carries the OS error: ENOSPC is "os error 28" on Linux, the only platform
/// raftline runs on), with what to do about it.
fn fatal_message(id: u64, dir: &std::path::Path, reason: &str) -> String {
    let enospc = format!("(os error {})", libc::ENOSPC);
    if reason.contains(&enospc) {
        format!(
            "node {id} stopped: disk full writing to its data dir {}: {reason}. Nothing it \
             acknowledged is lost; free space on that disk and start it again: it catches up \
             from its peers",
            dir.display()
        )
    } else {
        format!(
            "node {id} stopped: raft failed: {reason} (is the disk of {} failing?)",
            dir.display()
        )
    }
}

/// Records this process run in the replicated state (and this node's bootstrap token, when
/// auth is on), retrying each until it commits or shutdown.
async fn register(
    replica: Arc<Replica>,
    incarnation: u64,
    bootstrap_hash: Option<String>,
    stopped: impl Future<Output = ()>,
) {
    let run = Command::RegisterNode {
        node_id: replica.id(),
        incarnation,
    };
    let token = bootstrap_hash.map(|hash| Command::BootstrapToken {
        node_id: replica.id(),
        hash,
    });
    let attempts = async {
        for command in std::iter::once(run).chain(token) {
            propose_until_committed(&replica, command).await;
        }
    };
    tokio::select! {
        () = attempts => {}
        () = stopped => {}
    }
}

/// Starts the API server (behind the auth gate) and the HTTP server, and the tasks that serve
/// them: SIGHUP reloads of the TLS files, reports of token use.
fn serve_clients<S, F>(
    config: &Config,
    replica: &Arc<Replica>,
    bootstrap: Option<String>,
    tls: Option<&Arc<crate::tls::NodeTls>>,
    [api_listener, http_listener]: [tokio::net::TcpListener; 2],
    stopped: &S,
) -> [tokio::task::JoinHandle<Result<()>>; 2]
where
    S: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let api_gate = Gate::new(
        replica.clone(),
        config.auth_enabled,
        bootstrap,
        config.token_rate,
    );
    if let Some(tls) = tls {
        tokio::spawn(reload_on_sighup(tls.clone(), stopped()));
    }
    tokio::spawn(api_gate.clone().report_use(stopped()));
    let api_service = server::api_service(replica.clone(), api_gate);
    let api = tokio::spawn(server::serve_api(
        api_listener,
        replica.clone(),
        api_service.clone(),
        tls.cloned(),
        stopped(),
    ));
    let http = tokio::spawn(server::http::serve(
        http_listener,
        replica.clone(),
        api_service,
        tls.cloned(),
        stopped(),
    ));
    [api, http]
}

/// The hash of this node's bootstrap admin token (made on first start) when auth is on, and
/// its TLS files when configured; says once a minute while `insecure` leaves either off.
fn load_access(
    config: &Config,
    id: u64,
) -> Result<(Option<String>, Option<Arc<crate::tls::NodeTls>>)> {
    let bootstrap = if config.auth_enabled {
        let path = access::bootstrap_path(config, id);
        let secret = access::ensure_bootstrap(&path)?;
        tracing::info!(path = %path.display(), "bootstrap admin token");
        Some(access::hash(&secret))
    } else {
        None
    };
    let tls = match &config.tls {
        Some(paths) => Some(crate::tls::NodeTls::load(paths, id)?),
        None => None,
    };
    if config.insecure && !(config.auth_enabled && tls.is_some()) {
        tokio::spawn(warn_insecure(config.auth_enabled, tls.is_some()));
    }
    Ok((bootstrap, tls))
}

/// Says once a minute, for the life of the process, that this node runs with `insecure = true` and what
/// is off, so an exposed node is never quiet about it.
async fn warn_insecure(auth: bool, tls: bool) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        tracing::warn!(
            auth,
            tls,
            "insecure = true: this node runs with auth or TLS off; anyone who reaches its \
             ports may use them (README, Security)"
        );
    }
}

/// Reloads the TLS files on every SIGHUP until `stopped`; a failed reload keeps the files in
/// use and says why.
async fn reload_on_sighup(tls: Arc<crate::tls::NodeTls>, stopped: impl Future<Output = ()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP: TLS files reload only on restart");
        return;
    };
    let reloads = async {
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                Err(e) => tracing::error!("SIGHUP: TLS reload failed, keeping the old files: {e}"),
            }
        }
    };
    tokio::select! {
        () = reloads => {}
        () = stopped => {}
    }
}

/// Proposes `command` until it commits; logs the outcome.
async fn propose_until_committed(replica: &Replica, command: Command) {
    loop {
        match replica.propose(command.clone()).await {
            Ok(Response::NodeRegistered { released }) => {
                tracing::info!(released, "registered this run with the cluster");
                return;
            }
            Ok(Response::Rejected(r)) => {
                tracing::warn!(?r, "refused: {command:?}");
                return;
            }
            Ok(_) => return,
            Err(e) => {
                tracing::debug!("not yet committed: {e}");
                tokio::time::sleep(Duration::from_millis(limits::NODE_REGISTER_RETRY_MS)).await;
            }
        }
    }
}

/// What a node without Raft state does: a seed node probes the other seeds; a joining node
/// checks its place in the membership the join address reports, probes the members, and
/// always waits to be added.
async fn decide(
    config: &Config,
    id: u64,
    join: Option<&Join>,
    tls: Option<&Arc<crate::tls::NodeTls>>,
) -> Result<Plan> {
    let Some(join) = join else {
        let seeds = config
            .nodes
            .iter()
            .filter(|n| n.id != id)
            .map(|n| Peer {
                id: n.id,
                raft_addr: n.raft_addr.to_string(),
            })
            .collect();
        return probe(config, id, seeds, tls).await;
    };
    let members = join_check(config, id, join).await?;
    probe(config, id, members, tls).await?;
    Ok(Plan::Join)
}

/// A peer the start-up probe asks.
struct Peer {
    id: u64,
    raft_addr: String,
}

/// Asks the node at `join.addr` for the membership (retrying within the probe's bound) and
/// checks that this node fits in it. Returns the other members' peer addresses.
async fn join_check(config: &Config, id: u64, join: &Join) -> Result<Vec<Peer>> {
    let me = config.node(id)?;
    let client = crate::client::Client::with_access(&[join.addr.as_str()], &join.access)?;
    let deadline = Instant::now()
        + Duration::from_millis(config.election_timeout_max_ms * limits::PROBE_ELECTION_TIMEOUTS);
    let status = loop {
        match client.node_status(0).await {
            Ok(status) => break status,
            Err(Error::Unauthenticated(m) | Error::PermissionDenied(m)) => {
                return Err(Error::Config(format!(
                    "--join {}: the node refused the membership query ({m}); give a token \
                     with read access in RAFTLINE_TOKEN or --token",
                    join.addr
                )))
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::Config(format!(
                    "--join {}: cannot ask it for the membership: {e}",
                    join.addr
                )))
            }
            Err(e) => {
                tracing::info!("--join {}: {e}; retrying", join.addr);
                tokio::time::sleep(Duration::from_millis(limits::PROBE_ROUND_PAUSE_MS)).await;
            }
        }
    };
    if status.cluster != config.name {
        return Err(Error::Config(format!(
            "--join {}: that node belongs to cluster {:?}, not {:?}",
            join.addr, status.cluster, config.name
        )));
    }
    let mine = [me.raft_addr.to_string(), me.api_addr.to_string()];
    for m in &status.members {
        let theirs = [m.raft_addr.clone(), m.api_addr.clone()];
        if m.id == id && theirs != mine {
            return Err(Error::Config(format!(
                "node {id} is a member at raft {} api {}; start it with those addresses, or \
                 remove it first (raftline cluster remove --id {id})",
                m.raft_addr, m.api_addr
            )));
        }
        if m.id != id && mine.iter().any(|a| theirs.contains(a)) {
            return Err(Error::Config(format!(
                "node {id}'s addresses clash with member {} (raft {} api {})",
                m.id, m.raft_addr, m.api_addr
            )));
        }
    }
    tracing::info!(
        node = id,
        members = status.members.len(),
        "joining: waiting for `raftline cluster add --id {id}`"
    );
    Ok(status
        .members
        .into_iter()
        .filter(|m| m.id != id)
        .map(|m| Peer {
            id: m.id,
            raft_addr: m.raft_addr,
        })
        .collect())
}

/// Asks every peer about the cluster. Returns the plan, or an error when this node must not
/// start. Waits for every peer's answer up to a bound; unreachable peers count as fresh.
async fn probe(
    config: &Config,
    id: u64,
    peers: Vec<Peer>,
    tls: Option<&Arc<crate::tls::NodeTls>>,
) -> Result<Plan> {
    let deadline = Instant::now()
        + Duration::from_millis(config.election_timeout_max_ms * limits::PROBE_ELECTION_TIMEOUTS);
    let mut pending = peers;
    let mut initialized = Vec::new();
    let local_ip = config.peer_source_ip(id);
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for peer in pending {
            let Some(mut client) = raft::network::peer_client(&peer.raft_addr, local_ip, tls)
            else {
                continue;
            };
            let hello = pb::HelloRequest {
                cluster: config.name.clone(),
                from_id: id,
            };
            let reply = tokio::time::timeout(
                Duration::from_millis(limits::PROBE_HELLO_TIMEOUT_MS),
                client.hello(crate::raft::peer_request(hello)),
            )
            .await;
            match reply {
                Ok(Ok(reply)) => {
                    let reply = reply.into_inner();
                    if reply.cluster != config.name {
                        return Err(Error::Config(format!(
                            "peer {} at {} belongs to cluster {:?}, not {:?}; check raft_addr",
                            peer.id, peer.raft_addr, reply.cluster, config.name
                        )));
                    }
                    if reply.knows_caller {
                        return Err(Error::Config(format!(
                            "node {id}: the data dir {} is empty, but peer {} records that node \
                             {id} has run in this cluster before (first seen at {} ms): its vote \
                             and log were lost. Starting it would let it vote twice in a term \
                             and elect a second leader, so it refuses. Restore its data dir, or \
                             replace it: `raftline cluster remove --id {id}`, then start it \
                             with `--join` and `raftline cluster add` it (same id or a new \
                             one).",
                            config.node_dir(id).display(),
                            peer.id,
                            reply.caller_first_registered_ms
                        )));
                    }
                    if reply.initialized {
                        initialized.push(peer.id);
                    }
                }
                _ => still.push(peer),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(limits::PROBE_ROUND_PAUSE_MS)).await;
        }
    }
    if !pending.is_empty() {
        let ids: Vec<String> = pending.iter().map(|p| p.id.to_string()).collect();
        tracing::warn!("peers {} did not answer the start-up probe", ids.join(", "));
    }
    Ok(if initialized.is_empty() {
        Plan::Form
    } else {
        Plan::Join
    })
}
