//! Cursors (`machine/cursors.rs`): get (a linearizable read unless `stale`) and put
//! (compare-and-set when the request names a version).

use tonic::Status;

use super::ApiService;
use crate::machine::{Command, Response as Applied};
use crate::proto::pb;

fn info(m: &crate::machine::Machine, name: &str) -> pb::CursorInfo {
    let cursor = m.cursors().get(name);
    pb::CursorInfo {
        name: name.to_string(),
        value: cursor.map(|c| c.value.clone()).unwrap_or_default(),
        version: cursor.map_or(0, |c| c.version),
        updated_ms: cursor.map_or(0, |c| c.updated_ms),
    }
}

pub(super) async fn get_cursor(
    api: &ApiService,
    req: pb::GetCursorRequest,
) -> Result<pb::CursorInfo, Status> {
    crate::machine::cursors::Cursors::check(&req.name, &[]).map_err(crate::error::Error::from)?;
    api.read_barrier(req.stale).await?;
    Ok(api.replica.read(|m| info(m, &req.name)))
}

pub(super) async fn put_cursor(
    api: &ApiService,
    req: pb::PutCursorRequest,
) -> Result<pb::CursorInfo, Status> {
    let command = Command::PutCursor {
        name: req.name.clone(),
        value: req.value.clone(),
        expected_version: req.expected_version,
    };
    let version = propose_expect!(api, command, Applied::CursorPut { version } => version);
    // Answer what was put (another put may already follow): its time when this node has
    // applied it, else 0.
    let updated_ms = api.replica.read(|m| {
        m.cursors()
            .get(&req.name)
            .filter(|c| c.version == version)
            .map_or(0, |c| c.updated_ms)
    });
    Ok(pb::CursorInfo {
        name: req.name,
        value: req.value,
        version,
        updated_ms,
    })
}
