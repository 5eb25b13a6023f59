//! The public `Api` service: validate, then propose (writes) or read.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::machine::{Command, Response as MachineResponse};
use crate::proto::{self, pb};
use crate::raft::Replica;

/// Serves clients.
pub struct ApiService {
    replica: Arc<Replica>,
}

impl ApiService {
    /// A service over this node's replica.
    pub fn new(replica: Arc<Replica>) -> Self {
        ApiService { replica }
    }
}

#[tonic::async_trait]
impl pb::api_server::Api for ApiService {
    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let spec = proto::job_spec(req.into_inner())?;
        spec.validate().map_err(Error::from)?;
        match self.replica.propose(Command::Submit(spec)).await? {
            MachineResponse::Submitted { id } => Ok(Response::new(pb::SubmitResponse { id })),
            MachineResponse::Rejected(r) => Err(Error::from(r).into()),
            other => Err(Error::Internal(format!("unexpected response {other:?}")).into()),
        }
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let req = req.into_inner();
        if !req.stale {
            self.replica.read_barrier().await?;
        }
        match self.replica.read(|m| m.job(req.id).map(proto::job)) {
            Some(job) => Ok(Response::new(job)),
            None => Err(Error::NotFound(format!("job {}", req.id)).into()),
        }
    }

    async fn node_status(
        &self,
        _req: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        let s = self.replica.status();
        Ok(Response::new(pb::NodeStatusResponse {
            id: s.id,
            state: s.state.to_string(),
            leader: s.leader,
            term: s.term,
            last_applied: s.last_applied,
            last_log_index: s.last_log_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            members: s
                .members
                .into_iter()
                .map(|(id, node, voter)| pb::Member {
                    id,
                    raft_addr: node.raft_addr,
                    api_addr: node.api_addr,
                    voter,
                })
                .collect(),
            cluster: String::new(),
        }))
    }
}
