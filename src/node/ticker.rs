//! The leader's ticker: proposes a replicated `Tick` when the state machine's earliest
//! deadline (timer, lease expiry, SLA deadline, retention purge) has passed, and the
//! cluster-wide settings of its config when the replicated ones differ. Followers do nothing;
//! an idle cluster proposes nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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

async fn ticks(replica: Arc<Replica>, settings: Settings, resources: Vec<(String, u32)>) {
    let mut changes = replica.changes();
    loop {
        changes.mark_seen();
        let wait = match step(&replica, &settings, &resources).await {
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
    replica: &Replica,
    settings: &Settings,
    resources: &[(String, u32)],
) -> crate::Result<Option<Duration>> {
    if !replica.is_leader() {
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
    if due > now {
        return Ok(Some(Duration::from_millis(due - now).min(CHECK_INTERVAL)));
    }
    match replica.propose(Command::Tick).await? {
        Response::Ticked { work } if work > 0 => Ok(Some(Duration::ZERO)),
        Response::Ticked { .. } => Ok(Some(RETRY)),
        other => {
            tracing::warn!(?other, "tick refused");
            Ok(Some(CHECK_INTERVAL))
        }
    }
}
