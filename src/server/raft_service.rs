//! The internal `RaftPeer` service: openraft RPCs, forwarded writes, read index, start-up probe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::proto::pb;
use crate::proto::pb::raft_peer_server::RaftPeer;
use crate::raft::Replica;

/// Serves peers.
pub struct RaftService {
    replica: Arc<Replica>,
    cluster: String,
    open: Arc<AtomicBool>,
}

impl RaftService {
    /// A service over this node's replica. Until `open` is set, only `Hello` is answered: a node
    /// still deciding whether it may join must not vote or accept entries.
    pub fn new(replica: Arc<Replica>, cluster: String, open: Arc<AtomicBool>) -> Self {
        RaftService {
            replica,
            cluster,
            open,
        }
    }

    fn check_open<T>(&self, req: &Request<T>) -> Result<(), Status> {
        check_protocol(req)?;
        if self.open.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Status::unavailable("node is starting"))
        }
    }
}

/// Refuses a call of a newer peer protocol than this build's (no header: protocol 1).
fn check_protocol<T>(req: &Request<T>) -> Result<(), Status> {
    use crate::raft::{PEER_PROTOCOL, PEER_PROTOCOL_HEADER};
    let Some(value) = req.metadata().get(PEER_PROTOCOL_HEADER) else {
        return Ok(());
    };
    match value.to_str().ok().and_then(|v| v.parse::<u32>().ok()) {
        Some(v) if v <= PEER_PROTOCOL => Ok(()),
        Some(v) => Err(Status::failed_precondition(format!(
            "a peer speaks protocol {v}; this node speaks 1 to {PEER_PROTOCOL}: upgrade this \
             node to the peer's build"
        ))),
        None => Err(Status::invalid_argument(format!(
            "{PEER_PROTOCOL_HEADER}: not a protocol number"
        ))),
    }
}

fn bytes(r: crate::error::Result<Vec<u8>>) -> Result<Response<pb::PeerBytes>, Status> {
    r.map(|data| Response::new(pb::PeerBytes { data }))
        .map_err(Status::from)
}

#[tonic::async_trait]
impl RaftPeer for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::PeerBytes>,
    ) -> Result<Response<pb::PeerBytes>, Status> {
        self.check_open(&req)?;
        bytes(self.replica.handle_append(&req.into_inner().data).await)
    }

    async fn vote(&self, req: Request<pb::PeerBytes>) -> Result<Response<pb::PeerBytes>, Status> {
        self.check_open(&req)?;
        bytes(self.replica.handle_vote(&req.into_inner().data).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::PeerBytes>,
    ) -> Result<Response<pb::PeerBytes>, Status> {
        self.check_open(&req)?;
        bytes(
            self.replica
                .handle_install_snapshot(&req.into_inner().data)
                .await,
        )
    }

    async fn propose(
        &self,
        req: Request<pb::PeerBytes>,
    ) -> Result<Response<pb::PeerBytes>, Status> {
        self.check_open(&req)?;
        bytes(self.replica.handle_propose(&req.into_inner().data).await)
    }

    async fn read_index(
        &self,
        req: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        self.check_open(&req)?;
        let index = self.replica.handle_read_index().await?;
        Ok(Response::new(pb::ReadIndexResponse { index }))
    }

    async fn manage(&self, req: Request<pb::PeerBytes>) -> Result<Response<pb::PeerBytes>, Status> {
        self.check_open(&req)?;
        bytes(self.replica.handle_manage(&req.into_inner().data).await)
    }

    async fn hello(
        &self,
        req: Request<pb::HelloRequest>,
    ) -> Result<Response<pb::HelloResponse>, Status> {
        check_protocol(&req)?;
        let req = req.into_inner();
        let known = self.replica.read(|m| m.node(req.from_id).cloned());
        Ok(Response::new(pb::HelloResponse {
            cluster: self.cluster.clone(),
            id: self.replica.id(),
            initialized: self.replica.is_initialized().await,
            knows_caller: known.is_some(),
            caller_first_registered_ms: known.map_or(0, |n| n.first_registered_ms),
        }))
    }
}
