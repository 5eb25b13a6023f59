//! Adapts the pure [`Machine`] to openraft's state-machine storage.
//!
//! The application state lives in memory (see `machine/mod.rs` for why) together with
//! `last_applied` and the last membership, behind one lock, so an entry's effects and
//! `last_applied` change together. Durability comes from the log plus snapshots: a snapshot is
//! the state streamed into the file `raft-snapshot` in the node's data dir (`snapshot_file.rs`:
//! header, checksum, temp file, fsync, rename, directory fsync) before it is reported built or
//! installed. Building one takes a clone of the state under the lock (cheap: the job records
//! are shared, not copied) and encodes it on a thread of its own at a lower CPU priority, so
//! applies go on meanwhile. The file itself is what openraft sends a follower, in chunks, and
//! what a follower receives into a file, so no snapshot is ever held whole in memory as bytes.
//! On open, the last snapshot is loaded and openraft re-applies the log after it. (Data dirs
//! from before kept the snapshot in sled's `snapshot` tree; it is moved into the file once.)

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::snapshot_file::{self, Meta};
use super::{cold_store, PeerNode, TypeConfig};
use crate::machine::cold::Cold;
use crate::machine::{Command, Machine, Response};

type NodeId = u64;

/// The applied state: the machine plus what openraft needs to know about it.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Last log id applied to `machine`.
    pub last_applied: Option<LogId<NodeId>>,
    /// Last membership config applied.
    pub membership: StoredMembership<NodeId, PeerNode>,
    /// The application state.
    pub machine: Machine,
}

impl Default for Applied {
    fn default() -> Self {
        Applied {
            last_applied: None,
            membership: StoredMembership::default(),
            machine: Machine::new(),
        }
    }
}

/// Shared handle to the applied state, read by the API without going through openraft.
pub type SharedApplied = Arc<RwLock<Applied>>;

/// The state machine store. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct StateMachineStore {
    applied: SharedApplied,
    /// The meta of the snapshot file on disk, if there is one.
    current: Arc<Mutex<Option<Meta>>>,
    /// The node's data dir, where the snapshot file lives.
    dir: PathBuf,
    /// Where finished jobs are kept (the state's, loaded with each snapshot).
    cold: Cold,
    /// Bumped after every apply and snapshot install: what [`super::Changes`] waits on.
    applies: Arc<tokio::sync::watch::Sender<u64>>,
}

fn snap_read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(None, &e).into()
}

fn snap_write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, &e).into()
}

impl StateMachineStore {
    /// Opens the store of the node whose data dir is `dir` and restores the state from the
    /// last snapshot, if any.
    pub fn open(db: sled::Db, dir: &Path) -> Result<StateMachineStore, StorageError<NodeId>> {
        let store = StateMachineStore {
            applied: Arc::default(),
            current: Arc::default(),
            dir: dir.to_path_buf(),
            cold: cold_store::open(&db).map_err(snap_read_err)?,
            applies: Arc::new(tokio::sync::watch::channel(0).0),
        };
        let path = dir.join(snapshot_file::FILE);
        let loaded = if path.exists() {
            Some(snapshot_file::read(&path, &store.cold).map_err(|why| {
                snap_read_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: {why}; the node does not start from a damaged snapshot",
                        path.display()
                    ),
                ))
            })?)
        } else {
            store.legacy(&db)?
        };
        let mut state = store.applied.write().expect("state lock poisoned");
        match loaded {
            Some((meta, applied)) => {
                *state = applied;
                *store.current.lock().expect("snapshot lock poisoned") = Some(meta);
            }
            None => state.machine.attach_cold(store.cold.clone(), 0),
        }
        if state.machine.cold().is_none() {
            // A snapshot an earlier build kept in sled: its finished jobs are all in memory.
            let at = state.last_applied.map_or(0, |l| l.index);
            state.machine.attach_cold(store.cold.clone(), at);
        }
        drop(state);
        store.collect_in_background();
        Ok(store)
    }

    /// Starts the thread that drops the cold tier's garbage every `COLD_COLLECT_MS`, up to
    /// the index applied (no view at or after it changes: see `machine/cold.rs`). It ends
    /// with the store.
    fn collect_in_background(&self) {
        let (state, cold) = (Arc::downgrade(&self.applied), self.cold.clone());
        let every = std::time::Duration::from_millis(crate::machine::limits::COLD_COLLECT_MS);
        let spawned = std::thread::Builder::new()
            .name("raftline-cold-gc".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(state) = state.upgrade() else {
                    return;
                };
                let at = state
                    .read()
                    .expect("state lock poisoned")
                    .last_applied
                    .map_or(0, |l| l.index);
                drop(state);
                cold.collect(at);
            });
        if let Err(e) = spawned {
            tracing::warn!(
                "cold tier collection thread: {e}; garbage is collected at snapshots only"
            );
        }
    }

    /// A snapshot kept in sled by an earlier build, moved into the snapshot file.
    fn legacy(&self, db: &sled::Db) -> Result<Option<(Meta, Applied)>, StorageError<NodeId>> {
        let tree = db.open_tree("snapshot").map_err(snap_read_err)?;
        let Some(bytes) = tree.get("current").map_err(snap_read_err)? else {
            return Ok(None);
        };
        let (meta, applied) = snapshot_file::decode_v1(&bytes).map_err(snap_read_err)?;
        snapshot_file::write(&self.dir, &meta, &applied).map_err(snap_write_err)?;
        Ok(Some((meta, applied)))
    }

    /// The shared applied state.
    pub fn applied(&self) -> SharedApplied {
        self.applied.clone()
    }

    /// A watch that changes after each apply of committed entries and each snapshot install
    /// (once per applied batch, not per Raft event).
    pub fn applies(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applies.subscribe()
    }

    /// Wakes what waits on [`Self::applies`]; called with the state lock released.
    fn applied_changed(&self) {
        self.applies.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The snapshot file, opened for reading, with its meta.
    async fn open_current(&self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let meta = self.current.lock().expect("snapshot lock poisoned").clone();
        let Some(meta) = meta else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.dir.join(snapshot_file::FILE))
            .await
            .map_err(snap_read_err)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

/// Nice value of the thread that encodes a snapshot (higher is lower priority).
const SNAPSHOT_THREAD_NICE: libc::c_int = 10;

/// Runs `f` on a new thread at nice `SNAPSHOT_THREAD_NICE` (a per-thread setting on Linux;
/// a new thread, because a thread cannot lower its nice value again without privileges).
async fn in_background<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StorageError<NodeId>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("raftline-snapshot".into())
        .spawn(move || {
            // SAFETY: setpriority(2) on this thread's own id; failure only leaves the default.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, SNAPSHOT_THREAD_NICE);
            }
            let _ = tx.send(f());
        })
        .map_err(snap_write_err)?;
    rx.await
        .map_err(|_| snap_write_err(std::io::Error::other("the snapshot thread panicked")))
}

/// Whether `file` is the file at `path` (same device and inode).
async fn same_file(file: &tokio::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata().await, std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // Applying waits only for this clone (the job records are shared, not copied);
        // encoding and writing run on a thread of its own at a lower CPU priority, so the
        // node's applies and RPCs go first while it works.
        let (applied, promise) = {
            let state = self.applied.read().expect("state lock poisoned");
            // Removals keep tombstones from now until the cold tier is copied for this state.
            (
                state.clone(),
                state.machine.cold().map(|(c, _)| c.promise_copy()),
            )
        };
        let snapshot_id = match applied.last_applied {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id,
        };
        let dir = self.dir.clone();
        let written = meta.clone();
        in_background(move || {
            // What no view at or after the snapshot's index can see is left out of its copy.
            if let (Some((cold, _)), Some(at)) = (applied.machine.cold(), applied.last_applied) {
                cold.collect(at.index);
            }
            let written = snapshot_file::write(&dir, &written, &applied);
            drop(promise);
            written
        })
        .await?
        .map_err(snap_write_err)?;
        *self.current.lock().expect("snapshot lock poisoned") = Some(meta);
        self.open_current()
            .await?
            .ok_or_else(|| snap_read_err(std::io::Error::other("the snapshot just built is gone")))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, PeerNode>), StorageError<NodeId>>
    {
        let applied = self.applied.read().expect("state lock poisoned");
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut applied = self.applied.write().expect("state lock poisoned");
        let mut responses = Vec::new();
        for entry in entries {
            if let Some(last) = applied.last_applied {
                assert!(
                    entry.log_id.index > last.index,
                    "apply out of order: {} after {}",
                    entry.log_id.index,
                    last.index
                );
            }
            applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response::Internal,
                EntryPayload::Normal(proposal) => {
                    let mut ending = Vec::new();
                    attempts_ending(&applied.machine, &proposal.command, &mut ending);
                    let response = applied.machine.apply_at(entry.log_id.index, &proposal);
                    observe(&applied.machine, &proposal.command, &response, &ending);
                    response
                }
                EntryPayload::Membership(m) => {
                    // A removed node is forgotten, so a node of the same id may join again
                    // later with an empty disk (it must be added like any new node).
                    let members: std::collections::BTreeSet<u64> =
                        m.nodes().map(|(id, _)| *id).collect();
                    applied.machine.forget_nodes_outside(&members);
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::Internal
                }
            };
            responses.push(response);
        }
        drop(applied);
        self.applied_changed();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.dir.join(snapshot_file::RECEIVING))
            .await
            .map_err(snap_write_err)?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, PeerNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut file = *snapshot;
        file.flush().await.map_err(snap_write_err)?;
        let receiving = self.dir.join(snapshot_file::RECEIVING);
        if !same_file(&file, &receiving).await {
            // Handed a snapshot other than the one received here (openraft's storage suite
            // passes the leader's file): copy it in first.
            file.seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(snap_read_err)?;
            let mut copy = tokio::fs::File::create(&receiving)
                .await
                .map_err(snap_write_err)?;
            tokio::io::copy(&mut file, &mut copy)
                .await
                .map_err(snap_write_err)?;
            file = copy;
        }
        file.sync_all().await.map_err(snap_write_err)?;
        drop(file);
        let dir = self.dir.clone();
        let (state, cold, authoritative) = (self.applied.clone(), self.cold.clone(), meta.clone());
        tokio::task::spawn_blocking(move || {
            // Readers wait while the cold tier is replaced, so none sees it half loaded.
            let mut state = state.write().expect("state lock poisoned");
            let received = dir.join(snapshot_file::RECEIVING);
            let (_, mut restored) = snapshot_file::read(&received, &cold).map_err(|why| {
                snap_read_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the snapshot received from the leader is refused: {why}"),
                ))
            })?;
            std::fs::rename(&received, dir.join(snapshot_file::FILE)).map_err(snap_write_err)?;
            super::durable::sync_dir(&dir).map_err(snap_write_err)?;
            // The snapshot's meta is authoritative for where it ends.
            restored.last_applied = authoritative.last_log_id;
            restored.membership = authoritative.last_membership.clone();
            *state = restored;
            Ok::<_, StorageError<NodeId>>(())
        })
        .await
        .map_err(snap_write_err)??;
        *self.current.lock().expect("snapshot lock poisoned") = Some(meta.clone());
        self.applied_changed();
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.open_current().await
    }
}

/// The attempts a proposal's Complete commands will end: (job, queue, start time), read off
/// the state before the apply (a leased job is in memory; one whose token is stale is left
/// out, as its Complete will be refused).
fn attempts_ending(machine: &Machine, command: &Command, out: &mut Vec<(u64, String, u64)>) {
    match command {
        Command::Batch(commands) => {
            for c in commands {
                attempts_ending(machine, c, out);
            }
        }
        Command::By { command, .. } => attempts_ending(machine, command, out),
        Command::Complete { job_id, token, .. } => {
            if let Some(job) = machine.job(*job_id) {
                let current = job.lease.as_ref().is_some_and(|l| l.token == *token);
                if let (true, Some(a)) = (current, job.attempts.last()) {
                    out.push((*job_id, job.spec.queue.clone(), a.started_ms));
                }
            }
        }
        _ => {}
    }
}

/// Counts an applied proposal's commands by kind, the run time of the attempts it ended and
/// the wait of the jobs it leased for the first time (`crate::metrics`).
fn observe(
    machine: &Machine,
    command: &Command,
    response: &Response,
    ending: &[(u64, String, u64)],
) {
    use crate::metrics::{label, EVENTS};
    match (command, response) {
        (Command::Batch(commands), Response::Batch(responses)) => {
            for (c, r) in commands.iter().zip(responses) {
                observe(machine, c, r, ending);
            }
            return;
        }
        (Command::By { command, .. }, r) => return observe(machine, command, r, ending),
        _ => {}
    }
    EVENTS
        .applied
        .get_or_create(&label("command", command.action()))
        .inc();
    let now = machine.now_ms();
    match (command, response) {
        (Command::Complete { job_id, .. }, Response::Completed { .. }) => {
            if let Some((_, queue, started)) = ending.iter().find(|(id, ..)| id == job_id) {
                let secs = now.saturating_sub(*started) as f64 / 1000.0;
                EVENTS
                    .job_run_seconds
                    .get_or_create(&label("queue", queue))
                    .observe(secs);
            }
        }
        (Command::Lease { .. }, Response::Leased(grants)) => {
            for g in grants.iter().filter(|g| g.attempt == 1) {
                if let Some(job) = machine.job(g.job_id) {
                    let secs = now.saturating_sub(job.run_at_ms) as f64 / 1000.0;
                    EVENTS
                        .job_wait_seconds
                        .get_or_create(&label("queue", &job.spec.queue))
                        .observe(secs);
                }
            }
        }
        _ => {}
    }
}
