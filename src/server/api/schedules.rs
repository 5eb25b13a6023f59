//! Schedules: create, read (by id or name), list, and control (pause, resume, trigger, delete,
//! backfill).

use tonic::Status;

use super::ApiService;
use crate::error::Error;
use crate::machine::schedule::RunOutcome;
use crate::machine::{Command, Machine, Response as Applied};
use crate::proto::{from_wire, pb, to_wire};

/// The state of a schedule run's job or workflow, if still held.
fn run_state(m: &Machine, o: &RunOutcome) -> String {
    match o {
        RunOutcome::Job(id) => m.job(*id).map(|j| j.state.name().to_string()),
        RunOutcome::Workflow(id) => m.workflow(*id).map(|w| w.state.name().to_string()),
        _ => None,
    }
    .unwrap_or_default()
}

/// A schedule's id, looked up by name on this node's state when the reference has no id.
fn schedule_id(api: &ApiService, r: &pb::ScheduleRef) -> Result<u64, Status> {
    if r.id != 0 {
        return Ok(r.id);
    }
    api.replica
        .read(|m| m.schedule_id(&r.name))
        .ok_or_else(|| Error::NotFound(format!("schedule {:?}", r.name)).into())
}

/// A schedule as sent to clients, from this node's state.
fn schedule_info(api: &ApiService, id: u64) -> Result<pb::ScheduleInfo, Status> {
    api.replica
        .read(|m| {
            m.schedule(id)
                .map(|s| to_wire::schedule(s, |o| run_state(m, o)))
        })
        .ok_or_else(|| Error::NotFound(format!("schedule {id}")).into())
}

pub(super) async fn create_schedule(
    api: &ApiService,
    req: pb::CreateScheduleRequest,
) -> Result<pb::ScheduleInfo, Status> {
    let spec = from_wire::schedule_spec(req)?;
    let id = propose_expect!(api, Command::CreateSchedule(spec),
        Applied::ScheduleCreated { id, .. } => id);
    api.replica.read_barrier().await?;
    schedule_info(api, id)
}

pub(super) async fn get_schedule(
    api: &ApiService,
    req: pb::ScheduleRef,
) -> Result<pb::ScheduleInfo, Status> {
    api.read_barrier(req.stale).await?;
    let id = schedule_id(api, &req)?;
    schedule_info(api, id)
}

pub(super) async fn list_schedules(
    api: &ApiService,
    req: pb::ListSchedulesRequest,
) -> Result<pb::ListSchedulesResponse, Status> {
    api.read_barrier(req.stale).await?;
    let schedules = api.replica.read(|m| {
        m.schedules()
            .map(|s| to_wire::schedule(s, |o| run_state(m, o)))
            .collect()
    });
    Ok(pb::ListSchedulesResponse { schedules })
}

pub(super) async fn control_schedule(
    api: &ApiService,
    req: pb::ControlScheduleRequest,
) -> Result<pb::ControlScheduleResponse, Status> {
    let op = from_wire::schedule_op(&req)?;
    let reference = req.schedule.unwrap_or_default();
    // A name is resolved on this node's state after a read barrier.
    api.replica.read_barrier().await?;
    let id = schedule_id(api, &reference)?;
    let started = propose_expect!(api, Command::Schedule { id, op },
        Applied::ScheduleChanged { started } => started);
    Ok(pb::ControlScheduleResponse { id, started })
}
