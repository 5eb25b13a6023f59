//! openraft's network over the internal tonic `RaftPeer` service.
//!
//! Each RPC carries an openraft request encoded with [`crate::machine::codec`] and returns the encoded
//! `Result` of the peer's handler. A peer that cannot be connected to is reported
//! `Unreachable` (openraft backs off replication to it); other transport failures are
//! `Network` errors (retried at once).

use std::net::IpAddr;

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
use tonic::transport::Channel;

use super::{PeerNode, TypeConfig};
use crate::error::not_sent;
use crate::machine::codec;
use crate::proto::pb;
use crate::proto::pb::raft_peer_client::RaftPeerClient;

type NodeId = u64;

/// Creates peer connections on openraft's request.
#[derive(Clone, Default)]
pub struct Network {
    /// Source address of outgoing peer connections (this node's raft_addr IP).
    pub local_ip: Option<IpAddr>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerConnection {
        PeerConnection {
            target,
            client: peer_client(&node.raft_addr, self.local_ip),
        }
    }
}

/// A lazily connected client of a peer's `RaftPeer` service, with raftline's message limits.
/// Outgoing connections leave from `local_ip` when given (a node's own raft_addr IP), so
/// peer traffic can be told apart by address, e.g. by firewall rules in partition tests.
pub fn peer_client(raft_addr: &str, local_ip: Option<IpAddr>) -> Option<RaftPeerClient<Channel>> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{raft_addr}")).ok()?;
    let channel = endpoint
        .connect_timeout(std::time::Duration::from_millis(500))
        .tcp_nodelay(true)
        .local_address(local_ip)
        .connect_lazy();
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
}

impl PeerConnection {
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
        let request = pb::PeerBytes { data };
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

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        self.call(&rpc, &option, Method::Append).await
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
