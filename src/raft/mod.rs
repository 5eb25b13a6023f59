//! Consensus: the only module that names openraft.
//!
//! [`Replica`] wraps one node's `openraft::Raft` with its storage and gives the rest of
//! raftline four things: `propose` a command (forwarded to the leader when this node is not
//! it), `read_barrier` for linearizable reads (read index, also from followers), `read` the
//! local applied state, and the peer RPC handlers that take and return encoded bytes.
//!
//! Durability: an entry is acknowledged to a client only after openraft reports it committed,
//! i.e. appended and `fdatasync`ed on a majority: the log is the write-ahead log of `wal.rs`
//! behind `wal_store.rs` (a data dir of an earlier build, with the log in sled, is moved into
//! it once at start: `migrate.rs`). The identity is a small fsynced file (`data_dir.rs`); the
//! state lives in memory and in checksummed snapshot files (`snapshot_file.rs`).
//!
//! CAVEATS (not implemented): membership change at runtime, leader transfer, TLS between
//! peers; a forwarded write whose connection breaks mid-call reports UNAVAILABLE with an
//! unknown outcome instead of retrying (retries need idempotency keys, a later issue).

// openraft's `StorageError` is large, and its storage traits fix it as the error type; our
// helpers return it as is rather than boxing it twice.
#![allow(clippy::result_large_err)]

pub mod backup;
mod batcher;
mod cold_store;
mod data_dir;
pub mod durable;
mod lease;
pub mod membership;
mod migrate;
pub mod network;
pub mod snapshot_file;
pub mod state_machine;
pub mod wal;
pub mod wal_store;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, InitializeError, RaftError};
use openraft::{Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::machine::codec;
use crate::machine::{Command, Machine, Proposal, Response};
use crate::proto::pb;
use crate::proto::pb::raft_peer_client::RaftPeerClient;
use state_machine::{SharedApplied, StateMachineStore};
use wal_store::WalLogStore;

pub use data_dir::{open_db, Identity, IDENTITY_FILE};
pub use membership::{Change, MemberView, Progress};

/// A cluster member's addresses, stored in Raft membership entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// Raft and forwarding address.
    pub raft_addr: String,
    /// Public API address.
    pub api_addr: String,
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} api={}", self.raft_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// raftline's openraft type configuration.
    pub TypeConfig:
        D = Proposal,
        R = Response,
        NodeId = u64,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A snapshot bound spread by node id (+0%, +12.5%, +25%, +37.5%, then again), so the nodes of
/// a cluster, which apply the same entries, don't all build a snapshot at the same moment.
fn staggered(every: u64, id: u64) -> u64 {
    every.saturating_add(every / 8 * (id.saturating_sub(1) % 4))
}

/// Asks openraft for a snapshot whenever `every` bytes were appended to the log since the
/// last one (openraft's own policy counts entries only; large entries would grow the log, and
/// a restart's replay, without bound). Ends when Raft shuts down.
///
/// The bound grows with the state: at least the size of the last snapshot file, so writing
/// snapshots (which carry the cold tier) costs at most about as many bytes as the log takes.
async fn snapshot_by_log_bytes(
    raft: Raft<TypeConfig>,
    log: WalLogStore,
    every: u64,
    snapshot_file: std::path::PathBuf,
) {
    // Looked at every `check`, not on each metrics report (several per write).
    let metrics = raft.metrics();
    let mut last_snapshot = metrics.borrow().snapshot;
    let mut base = log.appended_bytes();
    let check = Duration::from_millis(crate::machine::limits::SNAPSHOT_BYTES_CHECK_MS);
    // When the last request was made: openraft may decline one (say, nothing applied yet), so
    // it is asked again after a while until a snapshot actually appears.
    let mut asked: Option<Instant> = None;
    loop {
        tokio::time::sleep(check).await;
        if metrics.has_changed().is_err() {
            return;
        }
        let snapshot = metrics.borrow().snapshot;
        if snapshot != last_snapshot {
            last_snapshot = snapshot;
            base = log.appended_bytes();
            asked = None;
        }
        let due = asked.is_none_or(|at| at.elapsed() >= check * 4);
        let bound = every.max(std::fs::metadata(&snapshot_file).map_or(0, |m| m.len()));
        if due && log.appended_bytes().saturating_sub(base) >= bound {
            asked = Some(Instant::now());
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            tracing::debug!(every, "log bytes since the last snapshot passed the bound");
        }
    }
}

/// A snapshot of this node's Raft metrics, without openraft types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    /// This node's id.
    pub id: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: &'static str,
    /// Known leader.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Index of the last applied entry.
    pub last_applied: u64,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Index of the last entry known committed.
    pub committed_index: u64,
    /// Index covered by the last snapshot.
    pub snapshot_index: u64,
    /// Index up to which the log was purged.
    pub purged_index: u64,
    /// Members: id, node, voter.
    pub members: Vec<(u64, PeerNode, bool)>,
    /// fsyncs done by the log store since start.
    pub fsyncs: u64,
    /// Microseconds spent in log flushes since start.
    pub fsync_micros: u64,
    /// This node leads but no majority acknowledged it for longer than the request timeout
    /// (a leader cut off from its quorum, which writes can't reach).
    pub leader_without_quorum: bool,
}

/// Notifications of Raft state changes, see [`Replica::changes`].
///
/// It wakes once per applied batch of entries and on each change of vote, role, leader or
/// membership; not on every Raft event (an append, a flush, a follower's progress each
/// report openraft's metrics, several times per write), which woke every waiter on every node
/// several times per write.
pub struct Changes {
    applies: tokio::sync::watch::Receiver<u64>,
    server: tokio::sync::watch::Receiver<openraft::metrics::RaftServerMetrics<u64, PeerNode>>,
}

impl Changes {
    /// Waits for the next change after the last one seen.
    pub async fn changed(&mut self) {
        let changed = tokio::select! {
            r = self.applies.changed() => r.is_ok(),
            r = self.server.changed() => r.is_ok(),
        };
        if !changed {
            std::future::pending::<()>().await;
        }
    }

    /// Marks the current state as seen.
    pub fn mark_seen(&mut self) {
        self.applies.borrow_and_update();
        self.server.borrow_and_update();
    }
}

/// Outcome of a write forwarded to the leader, as sent back over the peer service.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum ForwardReply {
    Applied(Response),
    /// The receiver is not the leader; nothing was proposed.
    NotLeader,
    /// Proposed, but the outcome is unknown (timeout, leadership lost).
    Unavailable(String),
}

/// Version of the peer protocol this build speaks (the messages between nodes), sent with
/// every peer call in the [`PEER_PROTOCOL_HEADER`] metadata; a call without it is from an
/// earlier build (protocol 1). A node refuses a call of a newer protocol than its own, so an
/// old node can't misread a new one during a rolling upgrade.
pub const PEER_PROTOCOL: u32 = 1;

/// How often [`Replica::failed`] looks whether Raft stopped on a fatal error.
const FAILED_POLL_MS: u64 = 50;

/// The metadata key that carries [`PEER_PROTOCOL`].
pub const PEER_PROTOCOL_HEADER: &str = "raftline-peer-protocol";

/// A peer call's request, with this build's protocol version.
pub fn peer_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(PEER_PROTOCOL_HEADER, PEER_PROTOCOL.into());
    request
}

/// One node's Raft replica.
pub struct Replica {
    id: u64,
    raft: Raft<TypeConfig>,
    applied: SharedApplied,
    /// Changes after each applied batch (`Changes`).
    applies: tokio::sync::watch::Receiver<u64>,
    log: WalLogStore,
    request_timeout: Duration,
    election_timeout_max: u64,
    /// Clients of the other members, by id, with the raft address each was made for; the
    /// addresses come from the membership, so they follow runtime changes.
    peers: std::sync::Mutex<BTreeMap<u64, (String, RaftPeerClient<Channel>)>>,
    local_ip: Option<std::net::IpAddr>,
    tls: Option<Arc<crate::tls::NodeTls>>,
    batcher: tokio::sync::mpsc::Sender<batcher::Pending>,
    /// Set while this leader hands over leadership: new writes wait (`membership.rs`).
    hold_writes: std::sync::atomic::AtomicBool,
    /// Generation of this node's latest election hold (`membership.rs`).
    election_hold: Arc<std::sync::atomic::AtomicU64>,
    /// This node's data dir.
    dir: std::path::PathBuf,
    /// When each peer last answered this node's appends.
    heard: network::Heard,
}

impl Replica {
    /// Starts Raft on an opened database.
    pub async fn start(
        config: &Config,
        id: u64,
        db: sled::Db,
        tls: Option<Arc<crate::tls::NodeTls>>,
    ) -> Result<Arc<Replica>> {
        let raft_config = openraft::Config {
            cluster_name: config.name.clone(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(staggered(
                config.snapshot_every_entries,
                id,
            )),
            max_in_snapshot_log_to_keep: config.snapshot_logs_kept,
            max_payload_entries: crate::machine::limits::APPEND_ENTRIES_MAX,
            snapshot_max_chunk_size: crate::machine::limits::SNAPSHOT_CHUNK_BYTES_MAX as u64,
            install_snapshot_timeout: config.request_timeout_ms,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Config(format!("raft settings: {e}")))?;
        let wal_dir = config.node_dir(id).join("wal");
        migrate::sled_log_into_wal(&db, &wal_dir)?;
        let log = WalLogStore::open(&wal_dir, id).map_err(|e| {
            Error::Config(format!("the Raft log in the data dir is unreadable: {e}"))
        })?;
        let sm = StateMachineStore::open(db, &config.node_dir(id)).map_err(|e| {
            Error::Config(format!(
                "the state snapshot in the data dir is unreadable: {e}"
            ))
        })?;
        let applied = sm.applied();
        let applies = sm.applies();
        let local_ip = config.peer_source_ip(id);
        let heard = network::Heard::default();
        let network = network::Network {
            local_ip,
            tls: tls.clone(),
            heard: heard.clone(),
            log_tail: Some(log.tail()),
        };
        let raft = Raft::new(id, Arc::new(raft_config), network, log.clone(), sm)
            .await
            .map_err(|e| Error::Internal(format!("starting raft: {e}")))?;
        let request_timeout = Duration::from_millis(config.request_timeout_ms);
        let batcher = batcher::spawn(raft.clone(), request_timeout);
        tokio::spawn(snapshot_by_log_bytes(
            raft.clone(),
            log.clone(),
            staggered(config.snapshot_every_log_bytes, id),
            config.node_dir(id).join(snapshot_file::FILE),
        ));
        Ok(Arc::new(Replica {
            id,
            batcher,
            raft,
            applied,
            applies,
            log,
            request_timeout,
            election_timeout_max: config.election_timeout_max_ms,
            peers: std::sync::Mutex::new(BTreeMap::new()),
            local_ip,
            tls,
            hold_writes: std::sync::atomic::AtomicBool::new(false),
            election_hold: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            dir: config.node_dir(id),
            heard,
        }))
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Writes the initial membership (every node of the config) into the log. Safe when several
    /// nodes do it at once with the same config; a no-op once this node holds any Raft state.
    pub async fn initialize(&self, config: &Config) -> Result<()> {
        let members: BTreeMap<u64, PeerNode> = config
            .nodes
            .iter()
            .map(|n| {
                (
                    n.id,
                    PeerNode {
                        raft_addr: n.raft_addr.to_string(),
                        api_addr: n.api_addr.to_string(),
                    },
                )
            })
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Internal(format!("initializing the cluster: {e}"))),
        }
    }

    /// Whether this node holds Raft state (a vote or log entries).
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Reads the applied state of this node (no Raft round: use after `read_barrier` for a
    /// linearizable read).
    pub fn read<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        f(&self.applied.read().expect("state lock poisoned").machine)
    }

    /// Whether this node has a membership yet: false while a node started with `--join`
    /// waits to be added.
    pub fn has_membership(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        let has = m.membership_config.membership().nodes().next().is_some();
        has
    }

    /// Index of the last entry applied to the state that reads see. It moves before
    /// [`Changes`] fires for it, whereas openraft's metrics (`status`) catch up only after.
    pub fn applied_index(&self) -> u64 {
        let applied = self.applied.read().expect("state lock poisoned");
        applied.last_applied.map_or(0, |l| l.index)
    }

    /// Whether this node is the leader, as far as it knows.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// A watch that fires whenever this node's Raft state changes (an entry applied, a leader
    /// elected).
    pub fn changes(&self) -> Changes {
        Changes {
            applies: self.applies.clone(),
            server: self.raft.server_metrics(),
        }
    }

    /// A digest of the applied state (FNV-1a 64 of its encoding, hex) and the log index it
    /// covers, read together: replicas at the same index must have equal digests.
    pub fn digest(&self) -> Result<(u64, String)> {
        let applied = self.applied.read().expect("state lock poisoned");
        let bytes = applied.machine.encode()?;
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        if let Some((cold, at)) = applied.machine.cold() {
            for b in cold.digest(at).to_le_bytes() {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        Ok((
            applied.last_applied.map_or(0, |l| l.index),
            format!("{hash:016x}"),
        ))
    }

    /// The cluster's name (`[cluster] name`).
    pub fn cluster_name(&self) -> &str {
        &self.raft.config().cluster_name
    }

    /// How long ago each peer last answered this node's appends (as leader: heartbeats every
    /// `heartbeat_ms`); a peer never heard from is absent.
    pub fn peers_heard(&self) -> BTreeMap<u64, Duration> {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        heard.iter().map(|(id, at)| (*id, at.elapsed())).collect()
    }

    /// This node's metrics.
    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let membership = m.membership_config.membership();
        // Started with `--join` and not added yet.
        let state = if membership.nodes().next().is_none() {
            "joining"
        } else {
            state
        };
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        RaftStatus {
            id: self.id,
            state,
            leader: m.current_leader,
            term: m.current_term,
            last_applied: m.last_applied.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: self.log.committed_index(),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            members: membership
                .nodes()
                .map(|(id, node)| (*id, node.clone(), voters.contains(id)))
                .collect(),
            leader_without_quorum: m.state == ServerState::Leader
                && m.millis_since_quorum_ack
                    .is_none_or(|ms| u128::from(ms) > self.request_timeout.as_millis()),
            fsyncs: self.log.fsync_count(),
            fsync_micros: self.log.fsync_micros(),
        }
    }

    /// Waits until a leader is known, up to `deadline`.
    async fn leader(&self, deadline: Instant) -> Result<u64> {
        let mut metrics = self.raft.metrics();
        loop {
            if let Some(leader) = metrics.borrow_and_update().current_leader {
                return Ok(leader);
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, metrics.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::unavailable("this node is shutting down")),
                Err(_) => {
                    return Err(Error::unavailable(format!(
                        "no leader elected within {} ms (is a majority of nodes up and \
                         connected?); nothing was written",
                        self.request_timeout.as_millis()
                    )))
                }
            }
        }
    }

    /// Pauses briefly before another attempt, without passing the deadline.
    async fn backoff(&self, deadline: Instant) {
        let pause =
            Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
    }

    fn timed_out(&self, what: &str) -> Error {
        Error::unavailable(format!(
            "{what} not confirmed within {} ms (no quorum reachable?); the outcome is unknown and \
             it may still be applied",
            self.request_timeout.as_millis()
        ))
    }

    /// Proposes a command and returns the state machine's response once it is committed on a
    /// majority and applied here or on the leader. Forwards to the leader if this node is not
    /// it; waits for a leader up to the request timeout, then fails UNAVAILABLE.
    pub async fn propose(&self, command: Command) -> Result<Response> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let leader = self.leader(deadline).await?;
            let reply = if leader == self.id {
                self.propose_local(command.clone(), deadline).await
            } else {
                self.forward(leader, &command, deadline).await?
            };
            match reply {
                ForwardReply::Applied(response) => return Ok(response),
                ForwardReply::Unavailable(message) => {
                    return Err(Error::Unavailable {
                        message,
                        leader: Some(leader),
                    })
                }
                ForwardReply::NotLeader if Instant::now() < deadline => {
                    self.backoff(deadline).await
                }
                ForwardReply::NotLeader => {
                    return Err(Error::unavailable(format!(
                        "no reachable leader within {} ms; nothing was written",
                        self.request_timeout.as_millis()
                    )))
                }
            }
        }
    }

    /// Proposes through the batcher (see [`batcher`]); waits for the outcome until `deadline`.
    async fn propose_local(&self, command: Command, deadline: Instant) -> ForwardReply {
        if self.hold_writes.load(std::sync::atomic::Ordering::Acquire) {
            // Handing over leadership: the caller waits and asks the next leader.
            return ForwardReply::NotLeader;
        }
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let pending = batcher::Pending { command, reply };
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, self.batcher.send(pending)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return ForwardReply::Unavailable("this node is shutting down".into()),
            // Still queued on this node: nothing was proposed.
            Err(_) => return ForwardReply::NotLeader,
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, outcome).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => {
                ForwardReply::Unavailable("write outcome unknown: the batcher stopped".into())
            }
            Err(_) => ForwardReply::Unavailable(self.timed_out("write").to_string()),
        }
    }

    /// A client of member `id`, at the raft address the latest membership gives it.
    fn peer(&self, id: u64) -> Result<RaftPeerClient<Channel>> {
        let addr = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.raft_addr.clone())
        };
        let addr = addr.ok_or_else(|| {
            Error::unavailable(format!(
                "node {id} is not in this node's view of the membership"
            ))
        })?;
        let mut peers = self.peers.lock().expect("peers lock");
        if let Some((known, client)) = peers.get(&id) {
            if *known == addr {
                return Ok(client.clone());
            }
        }
        let client = network::peer_client(&addr, self.local_ip, self.tls.as_ref())
            .ok_or_else(|| Error::Internal(format!("node {id}: raft_addr {addr} is not valid")))?;
        peers.insert(id, (addr, client.clone()));
        Ok(client)
    }

    async fn forward(
        &self,
        leader: u64,
        command: &Command,
        deadline: Instant,
    ) -> Result<ForwardReply> {
        let mut client = self.peer(leader)?;
        let data = codec::encode(command)?;
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, client.propose(peer_request(pb::PeerBytes { data }))).await
        {
            Err(_) => Ok(ForwardReply::Unavailable(
                self.timed_out("forwarded write").to_string(),
            )),
            Ok(Err(status)) if crate::error::not_sent(&status) => Ok(ForwardReply::NotLeader),
            Ok(Err(status)) => Ok(ForwardReply::Unavailable(format!(
                "forwarding to leader {leader} failed, outcome unknown: {}",
                status.message()
            ))),
            Ok(Ok(reply)) => codec::decode(&reply.into_inner().data)
                .map_err(|e| Error::Internal(format!("leader {leader} answered: {e}"))),
        }
    }

    /// Returns once this node's applied state includes every write acknowledged before the
    /// call began (read index: the leader confirms leadership with a quorum; a follower asks
    /// the leader for the index and waits to apply it).
    pub async fn read_barrier(&self) -> Result<()> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let leader = self.leader(deadline).await?;
            let index = if leader == self.id {
                self.read_index_local(deadline).await?
            } else {
                self.read_index_remote(leader, deadline).await?
            };
            if let Some(index) = index {
                let wait = deadline.saturating_duration_since(Instant::now());
                return self
                    .raft
                    .wait(Some(wait))
                    .applied_index_at_least(Some(index), "read index")
                    .await
                    .map(|_| ())
                    .map_err(|_| self.timed_out("read"));
            }
            if Instant::now() >= deadline {
                return Err(self.timed_out("read"));
            }
            self.backoff(deadline).await;
        }
    }

    /// `Ok(None)` means "not the leader after all, ask again".
    async fn read_index_local(&self, deadline: Instant) -> Result<Option<u64>> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, self.raft.get_read_log_id()).await {
            Ok(Ok((read_log_id, _))) => Ok(Some(read_log_id.map_or(0, |l| l.index))),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => Ok(None),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => Ok(None),
            Ok(Err(e)) => Err(Error::unavailable(format!("read index: {e}"))),
            Err(_) => Err(self.timed_out("read")),
        }
    }

    async fn read_index_remote(&self, leader: u64, deadline: Instant) -> Result<Option<u64>> {
        let mut client = self.peer(leader)?;
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(
            wait,
            client.read_index(peer_request(pb::ReadIndexRequest {})),
        )
        .await
        {
            Ok(Ok(reply)) => Ok(Some(reply.into_inner().index)),
            Ok(Err(_)) => Ok(None),
            Err(_) => Err(self.timed_out("read")),
        }
    }

    /// Peer handler: a write forwarded by a follower.
    pub async fn handle_propose(&self, data: &[u8]) -> Result<Vec<u8>> {
        let command: Command = codec::decode(data)?;
        let reply = if self.raft.metrics().borrow().current_leader == Some(self.id) {
            self.propose_local(command, Instant::now() + self.request_timeout)
                .await
        } else {
            ForwardReply::NotLeader
        };
        Ok(codec::encode(&reply)?)
    }

    /// Peer handler: read index for a follower. Errors if this node is not a confirmed leader.
    pub async fn handle_read_index(&self) -> Result<u64> {
        let deadline = Instant::now() + self.request_timeout;
        match self.read_index_local(deadline).await? {
            Some(index) => Ok(index),
            None => Err(Error::unavailable("not the leader")),
        }
    }

    /// Peer handler: AppendEntries.
    pub async fn handle_append(&self, data: &[u8]) -> Result<Vec<u8>> {
        let rpc = decode_rpc(data)?;
        encode_rpc(&self.raft.append_entries(rpc).await)
    }

    /// Peer handler: Vote.
    pub async fn handle_vote(&self, data: &[u8]) -> Result<Vec<u8>> {
        let rpc = decode_rpc(data)?;
        encode_rpc(&self.raft.vote(rpc).await)
    }

    /// Peer handler: InstallSnapshot (one chunk).
    pub async fn handle_install_snapshot(&self, data: &[u8]) -> Result<Vec<u8>> {
        let rpc = decode_rpc(data)?;
        encode_rpc(&self.raft.install_snapshot(rpc).await)
    }

    /// Completes when Raft has stopped on a fatal error (a failing or full disk, a broken
    /// invariant), with its description. Pending forever while Raft runs normally.
    pub async fn failed(&self) -> String {
        // Polled, not woken by every metrics report (several per write).
        let metrics = self.raft.metrics();
        let mut every = tokio::time::interval(Duration::from_millis(FAILED_POLL_MS));
        loop {
            every.tick().await;
            if let Err(e) = &metrics.borrow().running_state {
                return e.to_string();
            }
            if metrics.has_changed().is_err() {
                return "raft stopped unexpectedly".to_string();
            }
        }
    }

    /// Stops Raft (no more votes or appends from this node).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}

fn decode_rpc<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T> {
    codec::decode(data).map_err(|e| Error::Internal(format!("peer message: {e}")))
}

fn encode_rpc<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    codec::encode(value).map_err(|e| Error::Internal(format!("peer reply: {e}")))
}

/// The leader's wall clock, in ms since the Unix epoch: the only place raftline reads the
/// clock for the state machine (DESIGN.md: Time).
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
