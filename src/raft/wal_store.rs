//! The Raft log and vote in the write-ahead log of `wal.rs`: openraft's log storage traits
//! over it. It replaced the sled log store of earlier builds, whose flush is
//! `sync_file_range`, not a sync (DESIGN.md, Storage); `migrate.rs` moves such a log in.
//!
//! Entries are encoded with `machine::codec` into one WAL record each, keyed by their index.
//! Vote, committed log id and last purged log id are one codec-encoded [`State`] kept as the
//! owner's state in the WAL's `meta` file, replaced atomically (tmp, `sync_all`, rename,
//! directory fsync).
//!
//! Durability:
//! - `append` writes the entries (into the page cache) and hands openraft's callback to ONE
//!   flusher task over a bounded channel. The flusher takes every callback queued meanwhile,
//!   does one `fdatasync` of the active segment for all of them (group commit) on a blocking
//!   thread, then completes them. A callback is sent only after its bytes were written, and
//!   completed only after a sync that began after that, so no callback fires before its
//!   entries are on stable storage. Older segments were synced when the log rolled past them.
//! - `save_vote` and `purge` write meta durably before they return; `truncate` cuts and syncs
//!   the file and the directory before it returns. These run on a blocking thread.
//! - `save_committed` only updates memory; the committed log id reaches disk with the next
//!   vote or purge. openraft allows it to lag: it only means re-applying less at start-up.
//! - A failed sync poisons the flusher: every later callback fails too, because after a
//!   failed `fsync` the kernel may have dropped the dirty pages and a later sync can succeed
//!   without them ("fsyncgate"). openraft then stops the node.
//!
//! Invariants: the purged index in `meta` equals the index of [`State::last_purged`] (both in
//! one atomic write); every entry read back carries the index it was stored under.
//!
//! Blocking: group-commit syncs and the vote, purge and truncate writes run on blocking
//! threads. Appends write into the page cache and reads use `pread`, inline under a std
//! mutex (short). The exception is a roll inside `append`, once per `WAL_SEGMENT_BYTES`: it
//! syncs the old segment and creates the new one (`sync_all`, directory fsync) inline.
//!
//! CAVEATS (not implemented): a roll blocks a
//! runtime thread for two or three syncs; a reader waits for the lock while a vote, purge or
//! truncate syncs.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::wal::{self, Wal};
use super::TypeConfig;
use crate::machine::codec;
use crate::machine::limits::WAL_FLUSH_QUEUE_MAX;

type NodeId = u64;
type Entry = openraft::Entry<TypeConfig>;

/// What the flusher calls once an append's bytes are synced (or the sync failed): openraft's
/// `LogFlushed` callback, boxed so tests can hand in their own.
type Completion = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// What the store keeps in the WAL's meta file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The last saved vote.
    pub vote: Option<Vote<NodeId>>,
    /// The last committed log id saved with a vote or purge (may lag the one in memory).
    pub committed: Option<LogId<NodeId>>,
    /// The last purged log id.
    pub last_purged: Option<LogId<NodeId>>,
}

/// The log, and its state as last saved (or, for `committed`, as last told).
struct Inner {
    wal: Wal,
    state: State,
}

/// Counters of durable points, shared with the flusher.
#[derive(Default)]
struct Syncs {
    count: AtomicU64,
    micros: AtomicU64,
    /// Bytes of records appended since open.
    appended: AtomicU64,
}

impl Syncs {
    fn record(&self, started: Instant) {
        let took = started.elapsed();
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        crate::metrics::EVENTS
            .fsync_seconds
            .observe(took.as_secs_f64());
    }
}

/// The WAL-backed log store. Cheap to clone: all handles are shared.
#[derive(Clone)]
pub struct WalLogStore {
    inner: Arc<Mutex<Inner>>,
    flusher: mpsc::Sender<Completion>,
    syncs: Arc<Syncs>,
    /// This node's id: a committed vote for it is read back uncommitted (see `read_vote`).
    node_id: NodeId,
    /// Index of the last entry written (0 for none), told to whoever watches the log grow
    /// (the network's commit notices, `network.rs`).
    tail: Arc<watch::Sender<u64>>,
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn vote_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_vote(&e).into()
}

impl WalLogStore {
    /// Opens (or creates) the log in `dir` and starts its flusher task (needs a tokio
    /// runtime). A damaged log or meta file is refused naming the file and offset.
    pub fn open(dir: &Path, node_id: NodeId) -> Result<WalLogStore, wal::Error> {
        let wal = Wal::open(dir)?;
        let state = decode_state(&wal)?;
        let tail = Arc::new(watch::Sender::new(wal.last_index().unwrap_or(0)));
        let inner = Arc::new(Mutex::new(Inner { wal, state }));
        let syncs = Arc::new(Syncs::default());
        let (tx, rx) = mpsc::channel(WAL_FLUSH_QUEUE_MAX);
        tokio::spawn(flusher(inner.clone(), rx, syncs.clone()));
        Ok(WalLogStore {
            inner,
            flusher: tx,
            syncs,
            node_id,
            tail,
        })
    }

    /// Watches the index of the last entry written (written, not yet synced).
    pub fn tail(&self) -> watch::Receiver<u64> {
        self.tail.subscribe()
    }

    /// Count of durable points: one per group commit (one `fdatasync`) and one per meta write
    /// (vote, purge).
    pub fn fsync_count(&self) -> u64 {
        self.syncs.count.load(Ordering::Relaxed)
    }

    /// Index of the last entry this node knows committed (as openraft last told the store;
    /// 0 before any).
    pub fn committed_index(&self) -> u64 {
        lock(&self.inner).map_or(0, |i| i.state.committed.map_or(0, |l| l.index))
    }

    /// Total microseconds spent in those syncs.
    pub fn fsync_micros(&self) -> u64 {
        self.syncs.micros.load(Ordering::Relaxed)
    }

    /// Bytes of log records appended since the log was opened.
    pub fn appended_bytes(&self) -> u64 {
        self.syncs.appended.load(Ordering::Relaxed)
    }

    /// Writes `entries` and queues `done` for the flusher, which calls it after a sync.
    async fn append_then(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        done: Completion,
    ) -> Result<(), StorageError<NodeId>> {
        let mut records = Vec::new();
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(write_err)?;
            records.push((entry.log_id.index, bytes));
        }
        let bytes: usize = records.iter().map(|(_, r)| r.len()).sum();
        let last = records.last().map(|(index, _)| *index);
        self.lock()?.wal.append(records).map_err(write_err)?;
        if let Some(last) = last {
            self.tail.send_replace(last);
        }
        self.syncs
            .appended
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.flusher
            .send(done)
            .await
            .map_err(|_| write_err(std::io::Error::other("log flusher stopped")))
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StorageError<NodeId>> {
        lock(&self.inner).map_err(|e| read_err(std::io::Error::other(e)))
    }

    /// Runs `f` on the log on a blocking thread (it syncs).
    async fn blocking<T, F>(&self, f: F) -> Result<T, StorageError<NodeId>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Inner) -> Result<T, StorageError<NodeId>> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = lock(&inner).map_err(|e| write_err(std::io::Error::other(e)))?;
            f(&mut guard)
        })
        .await
        .map_err(write_err)?
    }

    /// Writes `state` into meta (and memory) durably.
    async fn save_state(
        &self,
        change: impl FnOnce(&mut State) + Send + 'static,
    ) -> Result<(), StorageError<NodeId>> {
        let started = Instant::now();
        self.blocking(move |inner| {
            let mut state = inner.state.clone();
            change(&mut state);
            let bytes = codec::encode(&state).map_err(vote_err)?;
            inner.wal.save_state(bytes).map_err(vote_err)?;
            inner.state = state;
            Ok(())
        })
        .await?;
        self.syncs.record(started);
        Ok(())
    }
}

fn lock(inner: &Mutex<Inner>) -> Result<MutexGuard<'_, Inner>, String> {
    inner
        .lock()
        .map_err(|_| "the write-ahead log lock is poisoned (a panic mid-write)".to_string())
}

fn decode_state(wal: &Wal) -> Result<State, wal::Error> {
    let damaged = |reason: String| wal::Error::Damaged {
        path: wal.meta_path(),
        offset: 0,
        reason,
    };
    let state: State = if wal.meta().state.is_empty() {
        State::default()
    } else {
        codec::decode(&wal.meta().state).map_err(|e| damaged(e.to_string()))?
    };
    let purged_index = state.last_purged.map(|id| id.index);
    if purged_index != wal.meta().purged {
        return Err(damaged(format!(
            "last purged log id {:?} disagrees with the purged index {:?}",
            state.last_purged,
            wal.meta().purged
        )));
    }
    Ok(state)
}

/// Syncs the active segment on a blocking thread: Ok or what went wrong.
async fn sync_active(inner: &Mutex<Inner>, syncs: &Syncs) -> Result<(), String> {
    let handle = lock(inner)?.wal.sync_handle();
    let Some(file) = handle else {
        return Ok(());
    };
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || wal::sync_data(&file)).await;
    syncs.record(started);
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("syncing the raft log: {e}")),
        Err(e) => Err(format!("syncing the raft log: {e}")),
    }
}

/// Completes append callbacks: every callback queued while a sync ran shares the next one.
async fn flusher(inner: Arc<Mutex<Inner>>, mut rx: mpsc::Receiver<Completion>, syncs: Arc<Syncs>) {
    let mut batch = Vec::new();
    let mut failed: Option<String> = None;
    while rx.recv_many(&mut batch, WAL_FLUSH_QUEUE_MAX).await > 0 {
        let result = match &failed {
            Some(reason) => Err(format!("an earlier sync failed: {reason}")),
            None => sync_active(&inner, &syncs).await,
        };
        if let Err(reason) = &result {
            tracing::error!(%reason, "raft log sync failed; failing every later append");
            failed.get_or_insert_with(|| reason.clone());
        }
        for done in batch.drain(..) {
            done(result.clone().map_err(std::io::Error::other));
        }
    }
}

impl RaftLogReader<TypeConfig> for WalLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        let records = self.lock()?.wal.read_range(start..end).map_err(read_err)?;
        let mut entries = Vec::with_capacity(records.len());
        for (index, bytes) in records {
            let entry: Entry = codec::decode(&bytes).map_err(read_err)?;
            assert_eq!(
                entry.log_id.index, index,
                "log entry stored under the wrong index"
            );
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for WalLogStore {
    type LogReader = WalLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let (last_purged, last) = {
            let inner = self.lock()?;
            let last = match inner.wal.last_index() {
                Some(i) => inner.wal.read_range(i..i + 1).map_err(read_err)?.pop(),
                None => None,
            };
            (inner.state.last_purged, last)
        };
        let last = match last {
            Some((_, bytes)) => Some(codec::decode::<Entry>(&bytes).map_err(read_err)?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.save_state(move |state| state.vote = Some(vote)).await
    }

    /// The saved vote, except that a committed vote for this node (it led the cluster when it
    /// stopped) is returned uncommitted.
    ///
    /// With its own committed vote, openraft resumes leadership at startup without an
    /// election, and its read index is then the larger of its first entry of the term and the
    /// commit index saved last, which may lag the writes it acknowledged before the crash:
    /// a linearizable read could miss them. Uncommitted, the vote is what a candidate that
    /// crashed mid-election leaves behind: the node starts as a follower and still never votes
    /// for another node in that term, and whoever wins the next election appends a blank entry
    /// of its own term, which settles the commit index before any read is served.
    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let vote = self.lock()?.state.vote;
        Ok(vote.map(|mut v| {
            if v.leader_id.voted_for() == Some(self.node_id) {
                v.committed = false;
            }
            v
        }))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.lock()?.state.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock()?.state.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let done: Completion = Box::new(move |result| callback.log_io_completed(result));
        self.append_then(entries, done).await
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |inner| inner.wal.truncate_from(log_id.index).map_err(write_err))
            .await?;
        self.tail.send_replace(log_id.index.saturating_sub(1));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let started = Instant::now();
        self.blocking(move |inner| {
            if inner
                .state
                .last_purged
                .is_some_and(|p| p.index >= log_id.index)
            {
                return Ok(());
            }
            let mut state = inner.state.clone();
            state.last_purged = Some(log_id);
            let bytes = codec::encode(&state).map_err(write_err)?;
            inner
                .wal
                .purge_upto(log_id.index, bytes)
                .map_err(write_err)?;
            inner.state = state;
            Ok(())
        })
        .await?;
        self.syncs.record(started);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::CommittedLeaderId;
    use tokio::sync::oneshot;

    use super::*;

    fn blank(index: u64) -> Entry {
        Entry::new_blank(LogId::new(CommittedLeaderId::new(1, 0), index))
    }

    async fn append_synced(store: &WalLogStore, entries: Vec<Entry>) {
        let (tx, rx) = oneshot::channel();
        let done: Completion = Box::new(move |r| {
            let _ = tx.send(r.is_ok());
        });
        store.append_then(entries, done).await.unwrap();
        assert!(rx.await.unwrap(), "append completed with an error");
    }

    /// Log state (last purged, last entry), vote and the committed id saved with a later vote
    /// all read back the same after a reopen.
    #[tokio::test]
    async fn wal_store_reopen_restores_log_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = WalLogStore::open(dir.path(), 1).unwrap();
        append_synced(&store, (0..10).map(blank).collect()).await;
        store
            .purge(LogId::new(CommittedLeaderId::new(1, 0), 4))
            .await
            .unwrap();
        store.save_committed(Some(blank(8).log_id)).await.unwrap();
        store.save_vote(&Vote::new(3, 2)).await.unwrap();
        let before = store.get_log_state().await.unwrap();
        drop(store);
        let mut store = WalLogStore::open(dir.path(), 1).unwrap();
        let after = store.get_log_state().await.unwrap();
        assert_eq!(after.last_purged_log_id, before.last_purged_log_id);
        assert_eq!(after.last_purged_log_id, Some(blank(4).log_id));
        assert_eq!(after.last_log_id, Some(blank(9).log_id));
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        assert_eq!(store.read_committed().await.unwrap(), Some(blank(8).log_id));
        let read = store.try_get_log_entries(..).await.unwrap();
        let indexes: Vec<u64> = read.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (5..10).collect::<Vec<u64>>());
    }

    /// Appends queued while no sync runs share one sync (group commit), every one of them is
    /// completed with Ok after it, and a reopen reads them all back.
    #[tokio::test]
    async fn wal_store_group_commit_one_sync_for_queued_appends() {
        let dir = tempfile::tempdir().unwrap();
        let store = WalLogStore::open(dir.path(), 1).unwrap();
        let mut waits = Vec::new();
        // On this single-threaded runtime the flusher runs only once the test awaits.
        for index in 0..20 {
            let (tx, rx) = oneshot::channel();
            let done: Completion = Box::new(move |r| {
                let _ = tx.send(r.is_ok());
            });
            store.append_then([blank(index)], done).await.unwrap();
            waits.push(rx);
        }
        for rx in waits {
            assert!(rx.await.unwrap(), "append completed with an error");
        }
        assert_eq!(store.fsync_count(), 1, "one sync for the whole group");
        let (tx, rx) = oneshot::channel();
        let done: Completion = Box::new(move |r| {
            let _ = tx.send(r.is_ok());
        });
        store.append_then([blank(20)], done).await.unwrap();
        assert!(rx.await.unwrap());
        assert_eq!(store.fsync_count(), 2);
        drop(store);
        let mut store = WalLogStore::open(dir.path(), 1).unwrap();
        let read = store.try_get_log_entries(..).await.unwrap();
        let indexes: Vec<u64> = read.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (0..21).collect::<Vec<u64>>());
    }
}
