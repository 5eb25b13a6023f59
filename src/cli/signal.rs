//! The shutdown signal of the long-running commands (`node`, `up`, `worker`).

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives while a node is still starting waits
/// for it instead of killing the process outright. Must be called inside a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (Ok(mut term), Ok(mut int)) = (term, int) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
