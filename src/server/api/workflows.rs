//! Workflows: submit, read, list, and control (cancel, pause, resume, retry or skip a step).

use tonic::Status;

use super::ApiService;
use crate::error::Error;
use crate::machine::{Command, Response as Applied};
use crate::proto::{from_wire, pb, to_wire};

pub(super) async fn submit_workflow(
    api: &ApiService,
    req: pb::SubmitWorkflowRequest,
) -> Result<pb::SubmitWorkflowResponse, Status> {
    let spec = from_wire::workflow_spec(req)?;
    let id = propose_expect!(api, Command::SubmitWorkflow(spec),
        Applied::WorkflowSubmitted { id } => id);
    Ok(pb::SubmitWorkflowResponse { id })
}

pub(super) async fn get_workflow(
    api: &ApiService,
    req: pb::GetWorkflowRequest,
) -> Result<pb::Workflow, Status> {
    api.read_barrier(req.stale).await?;
    api.replica
        .read(|m| {
            m.workflow(req.id)
                .map(|w| to_wire::workflow(w, m.now_ms(), true))
        })
        .ok_or_else(|| Error::NotFound(format!("workflow {}", req.id)).into())
}

pub(super) async fn list_workflows(
    api: &ApiService,
    req: pb::ListWorkflowsRequest,
) -> Result<pb::ListWorkflowsResponse, Status> {
    let state = from_wire::workflow_state(&req.state)?;
    let limit = from_wire::list_limit(req.limit)?;
    api.read_barrier(req.stale).await?;
    let workflows = api.replica.read(|m| {
        m.list_workflows(state, req.after_id, limit)
            .into_iter()
            .map(|w| to_wire::workflow(w, m.now_ms(), false))
            .collect()
    });
    Ok(pb::ListWorkflowsResponse { workflows })
}

pub(super) async fn control_workflow(
    api: &ApiService,
    req: pb::ControlWorkflowRequest,
) -> Result<pb::WorkflowStateReply, Status> {
    let op = from_wire::workflow_op(&req)?;
    let command = Command::Workflow { id: req.id, op };
    let state = propose_expect!(api, command, Applied::WorkflowChanged { state } => state);
    Ok(pb::WorkflowStateReply {
        id: req.id,
        state: state.name().into(),
    })
}
