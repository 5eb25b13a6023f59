//! Events: emit, triggers (create, list, delete) and durable timers (create, list, cancel).

use tonic::Status;

use super::{check_range, ApiService};
use crate::error::Error;
use crate::machine::{limits, Command, Response as Applied};
use crate::proto::{from_wire, pb, to_wire};

pub(super) async fn emit(
    api: &ApiService,
    req: pb::EmitRequest,
) -> Result<pb::EmitResponse, Status> {
    let command = Command::Emit {
        topic: req.topic,
        dedup_key: req.dedup_key,
        payload: req.payload,
    };
    Ok(propose_expect!(api, command,
    Applied::Emitted { started, duplicate } => pb::EmitResponse {
        duplicate,
        jobs: started.jobs,
        workflows: started.workflows,
        failed: started.failed,
    }))
}

pub(super) async fn create_trigger(
    api: &ApiService,
    req: pb::CreateTriggerRequest,
) -> Result<pb::TriggerInfo, Status> {
    let topic = req.topic.clone();
    let target = from_wire::trigger_target(req)?;
    let id = propose_expect!(api, Command::CreateTrigger { topic, target },
        Applied::TriggerCreated { id } => id);
    api.replica.read_barrier().await?;
    api.replica
        .read(|m| m.triggers().find(|t| t.id == id).map(to_wire::trigger))
        .ok_or_else(|| Error::Internal(format!("trigger {id} vanished")).into())
}

pub(super) async fn list_triggers(
    api: &ApiService,
    req: pb::ListTriggersRequest,
) -> Result<pb::ListTriggersResponse, Status> {
    api.read_barrier(req.stale).await?;
    let triggers = api
        .replica
        .read(|m| m.triggers().map(to_wire::trigger).collect());
    Ok(pb::ListTriggersResponse { triggers })
}

pub(super) async fn delete_trigger(
    api: &ApiService,
    req: pb::TriggerRef,
) -> Result<pb::DeleteTriggerResponse, Status> {
    propose_expect!(api, Command::DeleteTrigger { id: req.id }, Applied::Ok => ());
    Ok(pb::DeleteTriggerResponse {})
}

pub(super) async fn create_timer(
    api: &ApiService,
    req: pb::CreateTimerRequest,
) -> Result<pb::TimerInfo, Status> {
    check_range("delay_ms", req.delay_ms, limits::DELAY_MS_MAX)?;
    let command = Command::CreateTimer {
        due_ms: req.due_ms,
        delay_ms: req.delay_ms,
        topic: req.topic.clone(),
        dedup_key: req.dedup_key.clone(),
        payload: req.payload,
    };
    Ok(propose_expect!(api, command,
    Applied::TimerCreated { id, due_ms } => pb::TimerInfo {
        id,
        due_ms,
        topic: req.topic,
        dedup_key: req.dedup_key,
        created_ms: 0,
    }))
}

pub(super) async fn list_timers(
    api: &ApiService,
    req: pb::ListTimersRequest,
) -> Result<pb::ListTimersResponse, Status> {
    api.read_barrier(req.stale).await?;
    let timers = api.replica.read(|m| {
        m.timers()
            .take(limits::LIST_LIMIT_MAX as usize)
            .map(to_wire::timer)
            .collect()
    });
    Ok(pb::ListTimersResponse { timers })
}

pub(super) async fn cancel_timer(
    api: &ApiService,
    req: pb::TimerRef,
) -> Result<pb::CancelTimerResponse, Status> {
    propose_expect!(api, Command::CancelTimer { id: req.id }, Applied::Ok => ());
    Ok(pb::CancelTimerResponse {})
}
