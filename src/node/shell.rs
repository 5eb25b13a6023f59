//! Running one leased job as a process: spawn it in its own process group, capture the tail of
//! its output, kill it on timeout or when its lease is gone, and say how it ended.
//!
//! CAVEATS: output is captured as one interleaved tail of stdout and stderr; a process that
//! escapes its process group is not killed.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::executor::Leased;
use super::sandbox::Sandbox;
use crate::machine::job::tail;
use crate::machine::{limits, ErrorClass, JobKind, Report};

/// Why a running job is told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kill {
    No,
    /// The lease is gone (cancelled, expired): kill and stay silent.
    Lost,
    /// This worker is stopping: kill and hand the lease back.
    Shutdown,
}

/// How a run ended.
pub(super) enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
    Killed(Kill),
    SpawnFailed(String),
    /// The node's `[jobs]` rules don't let the job's queue run it.
    Refused(String),
}

/// The report of a run that ended on its own (not killed for a lost lease or a shutdown), with
/// the tail of its captured output.
pub(super) fn report(ended: &Ended, job: &Leased, output: &[u8]) -> Option<Report> {
    let output_tail = tail(
        &String::from_utf8_lossy(output),
        limits::OUTPUT_TAIL_BYTES_MAX,
    );
    let report = |class, exit_code, error: String| Report {
        error_class: class,
        exit_code,
        error,
        output_tail: output_tail.clone(),
    };
    Some(match ended {
        Ended::Killed(_) => return None,
        Ended::TimedOut => report(
            Some(ErrorClass::Timeout),
            None,
            format!(
                "killed after its timeout of {} ms",
                job.timeout_ms.unwrap_or(0)
            ),
        ),
        Ended::SpawnFailed(e) => report(Some(ErrorClass::Transient), None, e.clone()),
        Ended::Refused(e) => report(Some(ErrorClass::Permanent), None, e.clone()),
        Ended::Exited(status) => match status.code() {
            Some(0) => report(None, Some(0), String::new()),
            Some(code) => report(
                Some(ErrorClass::Transient),
                Some(code),
                format!("exited with code {code}"),
            ),
            None => report(
                Some(ErrorClass::Transient),
                None,
                format!("killed by a signal ({status})"),
            ),
        },
    })
}

/// Runs `job` (a shell job, or an external job through `handler`) until it ends, times out or
/// is killed, appending its output to `output`.
pub(super) async fn execute(
    job: &Leased,
    handler: Option<&[String]>,
    sandbox: &Sandbox,
    mut killed: watch::Receiver<Kill>,
    output: Arc<Mutex<Vec<u8>>>,
) -> Ended {
    let (argv, env, cwd, stdin) = match &job.kind {
        JobKind::Shell { argv, env, cwd } => (argv.clone(), env.clone(), cwd.clone(), None),
        JobKind::External { payload } => match handler {
            Some(h) if !h.is_empty() => (h.to_vec(), BTreeMap::new(), None, Some(payload.clone())),
            _ => return Ended::SpawnFailed("no handler command for external jobs".into()),
        },
    };
    let mut command = tokio::process::Command::new(&argv[0]);
    if let Err(e) = sandbox.apply(&job.queue, &argv, &mut command) {
        return Ended::Refused(e);
    }
    command
        .args(&argv[1..])
        .envs(&env)
        .env("RAFTLINE_JOB_ID", job.job_id.to_string())
        .env("RAFTLINE_LEASE_TOKEN", job.token.to_string())
        .env("RAFTLINE_ATTEMPT", job.attempt.to_string())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &cwd {
        command.current_dir(cwd);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return Ended::SpawnFailed(format!("cannot start {:?}: {e}", argv[0])),
    };
    let pid = child.id();
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = pipe.write_all(&data).await;
        });
    }
    let readers = [
        child
            .stdout
            .take()
            .map(|o| tokio::spawn(capture(o, output.clone()))),
        child
            .stderr
            .take()
            .map(|e| tokio::spawn(capture(e, output.clone()))),
    ];
    let timeout = job.timeout_ms.map_or(Duration::MAX, Duration::from_millis);
    let ended = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ended::Exited(status),
            Err(e) => Ended::SpawnFailed(format!("waiting for the process: {e}")),
        },
        _ = tokio::time::sleep(timeout) => Ended::TimedOut,
        kill = async {
            loop {
                if killed.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let k = *killed.borrow();
                if k != Kill::No {
                    return k;
                }
            }
        } => Ended::Killed(kill),
    };
    if !matches!(ended, Ended::Exited(_)) {
        if let Some(pid) = pid {
            // SAFETY: kill(2) of the process group this worker created for the job.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
        let _ = child.wait().await;
    }
    for reader in readers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_millis(limits::OUTPUT_DRAIN_MS), reader).await;
    }
    ended
}

/// Appends a pipe's bytes to `buffer`, keeping only the last `OUTPUT_TAIL_BYTES_MAX` bytes.
async fn capture(mut pipe: impl AsyncRead + Unpin, buffer: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; limits::OUTPUT_CHUNK_BYTES];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let mut b = buffer.lock().expect("output buffer");
        b.extend_from_slice(&chunk[..n]);
        if b.len() > 2 * limits::OUTPUT_TAIL_BYTES_MAX {
            let cut = b.len() - limits::OUTPUT_TAIL_BYTES_MAX;
            b.drain(..cut);
        }
    }
}
