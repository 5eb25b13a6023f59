//! Membership at runtime (admin only): the request is checked here, at the edge, and carried
//! out by the leader (`raft/membership.rs`).

use std::net::SocketAddr;

use tonic::Status;

use super::ApiService;
use crate::error::Error;
use crate::machine::Operation;
use crate::proto::pb;
use crate::raft::{Change, PeerNode, Progress};

fn invalid(field: &str, message: impl Into<String>) -> Status {
    Error::InvalidArgument {
        field: field.into(),
        message: message.into(),
    }
    .into()
}

fn address(field: &str, value: &str) -> Result<String, Status> {
    let addr: SocketAddr = value
        .parse()
        .map_err(|_| invalid(field, format!("{value:?} is not an ip:port address")))?;
    if addr.port() == 0 || addr.ip().is_unspecified() {
        return Err(invalid(
            field,
            format!("{addr}: peers must reach it, so no port 0 and no 0.0.0.0 or ::"),
        ));
    }
    Ok(addr.to_string())
}

/// What the request asks for; `None` for a progress read.
fn change(req: &pb::ChangeMembershipRequest) -> Result<Option<Change>, Status> {
    let id = req.node_id;
    let needs_id = req.action != "progress";
    if needs_id && id == 0 {
        return Err(invalid("node_id", "must be a node id (1 or more)"));
    }
    if req.action != "add" && !(req.raft_addr.is_empty() && req.api_addr.is_empty()) {
        return Err(invalid(
            "raft_addr",
            format!(
                "addresses are given only with action add, not {:?}",
                req.action
            ),
        ));
    }
    Ok(Some(match req.action.as_str() {
        "add" => Change::Add {
            id,
            node: PeerNode {
                raft_addr: address("raft_addr", &req.raft_addr)?,
                api_addr: address("api_addr", &req.api_addr)?,
            },
        },
        "promote" => Change::Promote { id },
        "demote" => Change::Demote { id },
        "remove" => Change::Remove { id },
        "transfer_leader" => Change::TransferLeader { to: id },
        "progress" => return Ok(None),
        other => {
            return Err(invalid(
                "action",
                format!(
                    "is {other:?}; actions are add, promote, demote, remove, transfer_leader, \
                     progress"
                ),
            ))
        }
    }))
}

fn response(p: Progress) -> pb::ChangeMembershipResponse {
    pb::ChangeMembershipResponse {
        leader: p.leader,
        leader_last_log_index: p.last_log_index,
        members: p
            .members
            .into_iter()
            .map(|m| pb::Member {
                id: m.id,
                raft_addr: m.node.raft_addr,
                api_addr: m.node.api_addr,
                voter: m.voter,
                matched_index: m.matched,
            })
            .collect(),
    }
}

/// Serves `ChangeMembership`.
pub(super) async fn change_membership(
    service: &ApiService,
    req: pb::ChangeMembershipRequest,
) -> Result<pb::ChangeMembershipResponse, Status> {
    let progress = match change(&req)? {
        Some(change) => {
            let done = service.replica.change_membership(change.clone()).await?;
            let what = format!("{change:?}");
            super::audit_operation(service, Operation::ChangeMembership, what).await;
            done
        }
        None => service.replica.progress().await?,
    };
    Ok(response(progress))
}
