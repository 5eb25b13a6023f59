//! Resources and locks: set a resource's capacity, list resources, and acquire (waiting up
//! to a bound), renew and release a lock.

use std::time::{Duration, Instant};

use tonic::Status;

use super::{check_range, ApiService};
use crate::error::Error;
use crate::machine::{limits, Command, Response as Applied};
use crate::proto::{pb, to_wire};

pub(super) async fn set_resource(
    api: &ApiService,
    req: pb::SetResourceRequest,
) -> Result<pb::ResourceInfo, Status> {
    let command = Command::SetResource {
        name: req.name.clone(),
        capacity: req.capacity,
    };
    propose_expect!(api, command, Applied::Ok => ());
    api.replica.read_barrier().await?;
    let view = api.replica.read(|m| m.resource_views(Some(&req.name)));
    let info = view
        .first()
        .map(to_wire::resource)
        .ok_or_else(|| Error::Internal(format!("resource {} vanished", req.name)))?;
    Ok(info)
}

pub(super) async fn list_resources(
    api: &ApiService,
    req: pb::ListResourcesRequest,
) -> Result<pb::ListResourcesResponse, Status> {
    api.read_barrier(req.stale).await?;
    let only = (!req.name.is_empty()).then_some(req.name.as_str());
    let resources: Vec<pb::ResourceInfo> = api.replica.read(|m| {
        m.resource_views(only)
            .iter()
            .map(to_wire::resource)
            .collect()
    });
    if let (Some(name), true) = (only, resources.is_empty()) {
        return Err(Error::NotFound(format!("resource {name}")).into());
    }
    Ok(pb::ListResourcesResponse { resources })
}

pub(super) async fn acquire_lock(
    api: &ApiService,
    req: pb::AcquireLockRequest,
) -> Result<pb::LockGrant, Status> {
    check_range("wait_ms", req.wait_ms, limits::LOCK_WAIT_MS_MAX)?;
    let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
    let mut changes = api.replica.changes();
    loop {
        changes.mark_seen();
        let command = Command::LockAcquire {
            resource: req.resource.clone(),
            owner: req.owner.clone(),
            ttl_ms: req.ttl_ms,
        };
        let (capacity, next_expiry_ms) = propose_expect!(api, command,
            Applied::LockGranted { token, expires_ms } => {
                return Ok(pb::LockGrant { token, expires_ms });
            },
            Applied::LockBusy { capacity, next_expiry_ms } => (capacity, next_expiry_ms),
        );
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let expiry = next_expiry_ms
                .map(|t| format!("; the first lock held expires at {t}"))
                .unwrap_or_default();
            return Err(Error::FailedPrecondition(format!(
                "{} is busy: all {capacity} units are held{expiry}",
                req.resource
            ))
            .into());
        }
        // Wait for the next applied change (a release, an expiry, a job ending).
        let _ = tokio::time::timeout(left, changes.changed()).await;
    }
}

pub(super) async fn renew_lock(
    api: &ApiService,
    req: pb::RenewLockRequest,
) -> Result<pb::LockGrant, Status> {
    let command = Command::LockRenew {
        resource: req.resource,
        token: req.token,
        ttl_ms: req.ttl_ms,
    };
    Ok(propose_expect!(api, command,
        Applied::LockGranted { token, expires_ms } => pb::LockGrant { token, expires_ms }))
}

pub(super) async fn release_lock(
    api: &ApiService,
    req: pb::ReleaseLockRequest,
) -> Result<pb::ReleaseLockResponse, Status> {
    let command = Command::LockRelease {
        resource: req.resource,
        token: req.token,
    };
    propose_expect!(api, command, Applied::Ok => ());
    Ok(pb::ReleaseLockResponse {})
}
