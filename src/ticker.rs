//! The leader's ticker: proposes a replicated `Tick` when the state machine's earliest
//! deadline (timer, lease expiry, SLA deadline, retention purge) has passed, and the
//! cluster-wide settings of its config when the replicated ones differ. Followers do nothing;
//! an idle cluster proposes nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::machine::{Command, Response, Settings};
use crate::raft::{wall_clock_ms, Replica};

/// Longest sleep between checks (a new deadline also wakes the ticker through a state change).
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until `shutdown` completes.
pub async fn run(replica: Arc<Replica>, settings: Settings, shutdown: impl Future<Output = ()>) {
    tokio::select! {
        _ = ticks(replica, settings) => {}
        _ = shutdown => {}
    }
}

async fn ticks(replica: Arc<Replica>, settings: Settings) {
    let mut changes = replica.changes();
    loop {
        changes.mark_seen();
        let wait = match step(&replica, &settings).await {
            Ok(None) => CHECK_INTERVAL,
            Ok(Some(wait)) => wait,
            Err(e) => {
                tracing::debug!("ticker: {e}");
                Duration::from_millis(100)
            }
        };
        if !wait.is_zero() {
            let _ = tokio::time::timeout(wait, changes.changed()).await;
        }
    }
}

/// One check: proposes what is due. Returns how long to wait before the next check at most
/// (`None`: nothing pending).
async fn step(replica: &Replica, settings: &Settings) -> crate::Result<Option<Duration>> {
    if !replica.is_leader() {
        return Ok(None);
    }
    if replica.read(|m| m.settings() != settings) {
        replica.propose(Command::Configure(*settings)).await?;
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
        Response::Ticked { .. } => Ok(Some(Duration::from_millis(100))),
        other => {
            tracing::warn!(?other, "tick refused");
            Ok(Some(CHECK_INTERVAL))
        }
    }
}
