//! The Raft log and vote in sled, durable before acknowledged.
//!
//! Layout (one sled database per node, keys big-endian so byte order is index order):
//! - tree `log`: `index (u64 BE)` -> encoded `Entry`
//! - tree `meta`: `vote`, `committed`, `last_purged`, and the node's identity
//!   (`cluster`, `node_id`) written on first start.
//!
//! Durability: `save_vote` flushes (fsync) before it returns. `append` writes the batch into
//! sled and hands openraft's completion callback to a flusher task; the flusher takes every
//! callback queued meanwhile, runs one `flush` (one fsync) for all of them, then completes them.
//! So one fsync covers one or more appended batches (group commit), never one per entry, and no
//! callback fires before its entries are on disk. `truncate` and `purge` are not flushed on
//! their own: if they are lost in a crash the log is merely longer, which Raft tolerates, and a
//! later flush orders them before any append that depends on them.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use tokio::sync::mpsc;

use super::TypeConfig;
use crate::machine::codec;

type NodeId = u64;
type Entry = openraft::Entry<TypeConfig>;

/// Pending flush callbacks a flusher may hold before `append` waits for room.
const FLUSH_QUEUE_MAX: usize = 4096;

/// The sled-backed log store. Cheap to clone: all handles are shared.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
    fsyncs: Arc<AtomicU64>,
    /// Total microseconds spent in those fsyncs.
    fsync_micros: Arc<AtomicU64>,
    /// This node's id: a committed vote for it is read back uncommitted (see `read_vote`).
    node_id: NodeId,
}

fn io_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

impl LogStore {
    /// Opens the log trees of `db` and starts its flusher task (needs a tokio runtime).
    pub fn new(db: sled::Db, node_id: NodeId) -> Result<LogStore, sled::Error> {
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        let fsyncs = Arc::new(AtomicU64::new(0));
        let fsync_micros = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(FLUSH_QUEUE_MAX);
        tokio::spawn(flusher(
            db.clone(),
            rx,
            fsyncs.clone(),
            fsync_micros.clone(),
        ));
        Ok(LogStore {
            db,
            log,
            meta,
            flusher: tx,
            fsyncs,
            fsync_micros,
            node_id,
        })
    }

    /// Count of fsyncs done by this store (log flushes and vote saves).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Total microseconds spent in log flushes (sled flush, including its fsync).
    pub fn fsync_micros(&self) -> u64 {
        self.fsync_micros.load(Ordering::Relaxed)
    }

    fn meta_get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self.meta.get(key).map_err(read_err)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn meta_put<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = codec::encode(value).map_err(io_err)?;
        self.meta.insert(key, bytes).map_err(io_err)?;
        Ok(())
    }

    async fn flush_now(&self) -> Result<(), StorageError<NodeId>> {
        self.db.flush_async().await.map_err(io_err)?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn flusher(
    db: sled::Db,
    mut rx: mpsc::Receiver<LogFlushed<TypeConfig>>,
    fsyncs: Arc<AtomicU64>,
    fsync_micros: Arc<AtomicU64>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, FLUSH_QUEUE_MAX).await > 0 {
        let started = std::time::Instant::now();
        let result = db.flush_async().await;
        fsync_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        fsyncs.fetch_add(1, Ordering::Relaxed);
        for callback in batch.drain(..) {
            let r = match &result {
                Ok(_) => Ok(()),
                Err(e) => Err(std::io::Error::other(format!("flushing the raft log: {e}"))),
            };
            callback.log_io_completed(r);
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
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
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        let mut entries = Vec::new();
        for item in self.log.range(index_key(start)..) {
            let (key, value) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| read_err(codec::CodecError("log key is not 8 bytes".into())))?,
            );
            if end.is_some_and(|end| index >= end) {
                break;
            }
            let entry: Entry = codec::decode(&value).map_err(read_err)?;
            assert_eq!(
                entry.log_id.index, index,
                "log entry stored under the wrong key"
            );
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<LogId<NodeId>> = self.meta_get("last_purged")?;
        let last = match self.log.last().map_err(read_err)? {
            Some((_, value)) => Some(codec::decode::<Entry>(&value).map_err(read_err)?.log_id),
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
        self.meta_put("vote", vote)?;
        self.flush_now().await
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
        let vote: Option<Vote<NodeId>> = self.meta_get("vote")?;
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
        self.meta_put("committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .meta_get::<Option<LogId<NodeId>>>("committed")?
            .flatten())
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(io_err)?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.log.apply_batch(batch).map_err(io_err)?;
        self.flusher
            .send(callback)
            .await
            .map_err(|_| io_err(std::io::Error::other("log flusher stopped")))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(read_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.meta_put("last_purged", &log_id)?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index_key(log_id.index)) {
            let (key, _) = item.map_err(read_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(io_err)
    }
}
