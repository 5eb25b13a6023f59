//! The leader's ticker: proposes a replicated `Tick` when the state machine's earliest
//! deadline (timer, lease expiry, SLA deadline, retention purge) has passed, and the
//! cluster-wide settings of its config when the replicated ones differ. Followers do nothing;
//! an idle cluster proposes nothing.
//!
//! One Tick does at most `TICK_WORK_MAX` items. While the last one came back full (a backlog:
//! say, a second of finished jobs whose retention ended at 10,000 jobs/s), up to
//! `TICKS_IN_FLIGHT_MAX` Ticks are proposed without waiting for each other, so the backlog
//! drains at that many per commit round instead of one; otherwise one at a time, so a single
//! due item costs one log entry.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::machine::{limits, Command, Response, Settings};
use crate::raft::{wall_clock_ms, Replica};

/// Longest sleep between checks (a new deadline also wakes the ticker through a state change).
const CHECK_INTERVAL: Duration = Duration::from_millis(limits::TICKER_CHECK_MS);
/// Pause after a failed proposal or a tick that did no work.
const RETRY: Duration = Duration::from_millis(limits::TICKER_RETRY_MS);

/// Runs until `shutdown` completes.
pub async fn run(
    replica: Arc<Replica>,
    settings: Settings,
    resources: Vec<(String, u32)>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::select! {
        _ = ticks(replica, settings, resources) => {}
        _ = shutdown => {}
    }
}

/// Ticks proposed and not yet answered.
type InFlight = JoinSet<crate::Result<Response>>;

async fn ticks(replica: Arc<Replica>, settings: Settings, resources: Vec<(String, u32)>) {
    let mut changes = replica.changes();
    let mut in_flight = InFlight::new();
    let mut backlog = false;
    loop {
        changes.mark_seen();
        let wait = match step(
            &replica,
            &settings,
            &resources,
            &mut in_flight,
            &mut backlog,
        )
        .await
        {
            Ok(None) => CHECK_INTERVAL,
            Ok(Some(wait)) => wait,
            Err(e) => {
                tracing::debug!("ticker: {e}");
                RETRY
            }
        };
        if !wait.is_zero() {
            let _ = tokio::time::timeout(wait, changes.changed()).await;
        }
    }
}

/// One check: proposes what is due. Returns how long to wait before the next check at most
/// (`None`: nothing pending).
async fn step(
    replica: &Arc<Replica>,
    settings: &Settings,
    resources: &[(String, u32)],
    in_flight: &mut InFlight,
    backlog: &mut bool,
) -> crate::Result<Option<Duration>> {
    if !replica.is_leader() {
        in_flight.abort_all();
        *backlog = false;
        return Ok(None);
    }
    if replica.read(|m| m.settings() != settings) {
        replica.propose(Command::Configure(*settings)).await?;
    }
    // Resources declared in the config are kept at their declared capacity.
    for (name, capacity) in resources {
        let current = replica.read(|m| m.resource(name).map(|r| r.capacity));
        if current != Some(*capacity) {
            let command = Command::SetResource {
                name: name.clone(),
                capacity: *capacity,
            };
            if let Response::Rejected(r) = replica.propose(command).await? {
                tracing::warn!(resource = %name, "cannot apply the configured capacity: {r:?}");
            }
        }
    }
    let (due, machine_now) = replica.read(|m| (m.next_due(), m.now_ms()));
    let Some(due) = due else {
        return Ok(None);
    };
    let now = wall_clock_ms().max(machine_now);
    if due > now && in_flight.is_empty() {
        return Ok(Some(Duration::from_millis(due - now).min(CHECK_INTERVAL)));
    }
    let room = if *backlog {
        limits::TICKS_IN_FLIGHT_MAX
    } else {
        1
    };
    if due <= now && in_flight.len() < room {
        let replica = replica.clone();
        in_flight.spawn(async move { replica.propose(Command::Tick).await });
        if in_flight.len() < room {
            return Ok(Some(Duration::ZERO));
        }
    }
    let Some(answered) = in_flight.join_next().await else {
        return Ok(Some(Duration::ZERO));
    };
    let answered = answered.map_err(|e| crate::Error::Internal(format!("tick task: {e}")))?;
    match answered? {
        Response::Ticked { work } => {
            *backlog = work as usize >= limits::TICK_WORK_MAX;
            Ok(Some(if work > 0 { Duration::ZERO } else { RETRY }))
        }
        other => {
            *backlog = false;
            tracing::warn!(?other, "tick refused");
            Ok(Some(CHECK_INTERVAL))
        }
    }
}
