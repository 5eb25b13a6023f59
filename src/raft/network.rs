//! openraft's network over the internal tonic `RaftPeer` service.
//!
//! Each RPC carries an openraft request encoded with [`crate::machine::codec`] and returns the encoded
//! `Result` of the peer's handler. A peer that cannot be connected to is reported
//! `Unreachable` (openraft backs off replication to it); other transport failures are
//! `Network` errors (retried at once).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::{PeerNode, TypeConfig};
use crate::error::not_sent;
use crate::machine::codec;
use crate::proto::pb;
use crate::proto::pb::raft_peer_client::RaftPeerClient;
use crate::tls::{Connector, NodeTls};

type NodeId = u64;

/// Creates peer connections on openraft's request.
#[derive(Clone, Default)]
pub struct Network {
    /// Source address of outgoing peer connections (this node's raft_addr IP).
    pub local_ip: Option<IpAddr>,
    /// Mutual TLS to peers, when on.
    pub tls: Option<Arc<NodeTls>>,
    /// When each peer last answered an append (heartbeats included): a leader's view of who
    /// is up (`node/alerts.rs`).
    pub heard: Heard,
    /// The index of this node's last log entry, as its log store tells it: lets a commit
    /// notice ride on the entry that follows it (`PeerConnection::rides_on_next_append`).
    pub log_tail: Option<watch::Receiver<u64>>,
}

/// When each peer last answered an append, by node id.
pub type Heard = Arc<std::sync::Mutex<std::collections::BTreeMap<NodeId, std::time::Instant>>>;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerConnection {
        PeerConnection {
            target,
            client: peer_client(&node.raft_addr, self.local_ip, self.tls.as_ref()),
            heard: self.heard.clone(),
            log_tail: self.log_tail.clone(),
            entries_acked: None,
        }
    }
}

/// A lazily connected client of a peer's `RaftPeer` service, with raftline's message limits.
/// Outgoing connections leave from `local_ip` when given (a node's own raft_addr IP), so
/// peer traffic can be told apart by address, e.g. by firewall rules in partition tests.
pub fn peer_client(
    raft_addr: &str,
    local_ip: Option<IpAddr>,
    tls: Option<&Arc<NodeTls>>,
) -> Option<RaftPeerClient<Channel>> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{raft_addr}"))
        .ok()?
        .connect_timeout(std::time::Duration::from_millis(500));
    let channel = match tls {
        Some(tls) => {
            let tls = tls.clone();
            endpoint
                .connect_with_connector_lazy(Connector::new(move || tls.peer_client(), local_ip))
        }
        None => endpoint
            .tcp_nodelay(true)
            .local_address(local_ip)
            .connect_lazy(),
    };
    Some(
        RaftPeerClient::new(channel)
            .max_decoding_message_size(crate::machine::limits::PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(crate::machine::limits::PEER_MESSAGE_BYTES_MAX),
    )
}

/// One peer, as openraft sees it.
pub struct PeerConnection {
    target: NodeId,
    client: Option<RaftPeerClient<Channel>>,
    heard: Heard,
    log_tail: Option<watch::Receiver<u64>>,
    /// When this connection last had entries accepted by the peer.
    entries_acked: Option<Instant>,
}

impl PeerConnection {
    /// Whether an append without entries can be left out because an append with entries
    /// follows at once and carries the same news. openraft sends one to every follower each
    /// time the commit index moves, only to tell it so, and waits for the answer before it
    /// sends the next entries: at one client that is a round trip between every two writes,
    /// and a third of the peer calls. It can ride when the peer accepted entries on this
    /// connection within `COMMIT_NOTICE_RIDE_WINDOW_MS` and this node's log grows past the
    /// notice's `prev_log_id` within `COMMIT_NOTICE_LINGER_US`: the next append then follows
    /// (openraft queues it behind this call) with `leader_commit` in it. Otherwise it is sent.
    ///
    /// What is answered for a left-out notice is `Success` with nothing new matched: openraft
    /// takes no log position from an append without entries, and in 0.9 uses its time only
    /// for the `millis_since_quorum_ack` metric, which it keeps fresh for at most the window.
    /// A fresh connection (openraft's leadership check for a linearizable read makes one per
    /// call) has no accepted entries, so every such check is sent and answered for real.
    async fn rides_on_next_append(&mut self, rpc: &AppendEntriesRequest<TypeConfig>) -> bool {
        use crate::machine::limits::{COMMIT_NOTICE_LINGER_US, COMMIT_NOTICE_RIDE_WINDOW_MS};
        let recent = self
            .entries_acked
            .is_some_and(|t| t.elapsed() < Duration::from_millis(COMMIT_NOTICE_RIDE_WINDOW_MS));
        let Some(tail) = self.log_tail.as_mut().filter(|_| recent) else {
            return false;
        };
        let prev = rpc.prev_log_id.map_or(0, |l| l.index);
        let linger = Duration::from_micros(COMMIT_NOTICE_LINGER_US);
        matches!(
            tokio::time::timeout(linger, tail.wait_for(|last| *last > prev)).await,
            Ok(Ok(_))
        )
    }

    async fn call<Req, Resp, E>(
        &mut self,
        rpc: &Req,
        option: &RPCOption,
        method: Method,
    ) -> Result<Resp, RPCError<NodeId, PeerNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = self.client.as_mut().ok_or_else(|| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(
                "peer raft_addr is not a valid address",
            )))
        })?;
        let data = codec::encode(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let request = super::peer_request(pb::PeerBytes { data });
        let call = async {
            match method {
                Method::Append => client.append_entries(request).await,
                Method::Vote => client.vote(request).await,
                Method::Snapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(option.hard_ttl(), call).await {
            Err(elapsed) => return Err(RPCError::Network(NetworkError::new(&elapsed))),
            Ok(Err(status)) if not_sent(&status) => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)))
            }
            Ok(Err(status)) => return Err(RPCError::Network(NetworkError::new(&status))),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            codec::decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// Keeps the longest prefix of `entries` (one entry at least) whose encoding fits in `max`
/// bytes; returns whether any was cut. A lone entry is not measured; several are encoded
/// once more each to be measured (about 0.3 ms for a 300 KB batch entry), which stops at the
/// cut.
fn cut_to_bytes(entries: &mut Vec<openraft::Entry<TypeConfig>>, max: usize) -> bool {
    if entries.len() < 2 {
        return false;
    }
    let mut total = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        total += codec::encode(entry).map_or(0, |b| b.len());
        if total > max && i > 0 {
            entries.truncate(i);
            return true;
        }
    }
    false
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    /// Sends at most `APPEND_BYTES_MAX` of entries (one entry at least): a longer request is
    /// cut to a prefix, and the follower's success reported to openraft as a partial one up
    /// to the last entry sent, so openraft sends the rest next. A request that could not
    /// finish within the heartbeat interval openraft allows it would otherwise be resent
    /// whole, and time out again, for as long as the node is loaded.
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        let kind = if !rpc.entries.is_empty() {
            "entries"
        } else if self.rides_on_next_append(&rpc).await {
            "ridden"
        } else {
            "empty"
        };
        crate::metrics::EVENTS
            .peer_appends
            .get_or_create(&crate::metrics::label("kind", kind))
            .inc();
        if kind == "ridden" {
            return Ok(AppendEntriesResponse::Success);
        }
        let cut = cut_to_bytes(&mut rpc.entries, crate::machine::limits::APPEND_BYTES_MAX);
        let last = rpc.entries.last().map(|e| e.log_id);
        let reply = self.call(&rpc, &option, Method::Append).await?;
        let now = Instant::now();
        self.heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.target, now);
        if last.is_some()
            && matches!(
                reply,
                AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_)
            )
        {
            self.entries_acked = Some(now);
        }
        Ok(match reply {
            AppendEntriesResponse::Success if cut => AppendEntriesResponse::PartialSuccess(last),
            other => other,
        })
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, PeerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(&rpc, &option, Method::Snapshot).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        self.call(&rpc, &option, Method::Vote).await
    }
}
