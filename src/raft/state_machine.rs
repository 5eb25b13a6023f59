//! Adapts the pure [`Machine`] to openraft's state-machine storage.
//!
//! The application state lives in memory (see `machine/mod.rs` for why) together with
//! `last_applied` and the last membership, behind one lock, so an entry's effects and
//! `last_applied` change together. Durability comes from the log plus snapshots: a snapshot is
//! the encoded state, written to the file `raft-snapshot` in the node's data dir (a temp file,
//! fsynced, renamed over the old one, then the directory fsynced) before it is reported built
//! or installed. It is kept out of sled so that writing a large state never holds up the log's
//! flushes, and it is encoded and written on a blocking thread, off the async workers. On open,
//! the last snapshot is loaded and openraft re-applies the log after it. (Data dirs from before
//! kept the snapshot in sled's `snapshot` tree; it is still read when there is no file.)

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::{PeerNode, TypeConfig};
use crate::machine::codec;
use crate::machine::{Machine, Response};

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

/// What a snapshot's bytes hold.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, PeerNode>,
    machine: Vec<u8>,
}

/// File name of the snapshot in the node's data dir.
const SNAPSHOT_FILE: &str = "raft-snapshot";

/// A snapshot as kept on disk.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, PeerNode>,
    data: Vec<u8>,
}

/// The state machine store. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct StateMachineStore {
    applied: SharedApplied,
    /// The node's data dir, where the snapshot file lives.
    dir: PathBuf,
    /// Where data dirs of earlier versions kept the snapshot.
    legacy: sled::Tree,
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
        let legacy = db.open_tree("snapshot").map_err(snap_read_err)?;
        let store = StateMachineStore {
            applied: Arc::default(),
            dir: dir.to_path_buf(),
            legacy,
        };
        if let Some(stored) = store.load()? {
            let applied = decode_body(&stored.data)?;
            *store.applied.write().expect("state lock poisoned") = applied;
        }
        Ok(store)
    }

    /// The shared applied state.
    pub fn applied(&self) -> SharedApplied {
        self.applied.clone()
    }

    fn load(&self) -> Result<Option<StoredSnapshot>, StorageError<NodeId>> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match self.legacy.get("current").map_err(snap_read_err)? {
                    Some(bytes) => Ok(Some(codec::decode(&bytes).map_err(snap_read_err)?)),
                    None => Ok(None),
                };
            }
            Err(e) => return Err(snap_read_err(e)),
        };
        let payload = unframe(&bytes).map_err(|why| {
            snap_read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: {why}; the node does not start from a damaged snapshot",
                    path.display()
                ),
            ))
        })?;
        Ok(Some(codec::decode(payload).map_err(snap_read_err)?))
    }

    /// Writes `stored` durably as the current snapshot, on a blocking thread.
    async fn save(&self, stored: StoredSnapshot) -> Result<StoredSnapshot, StorageError<NodeId>> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            write_file(&dir, &stored)?;
            Ok(stored)
        })
        .await
        .map_err(snap_write_err)?
    }
}

/// First bytes of a snapshot file.
const SNAPSHOT_MAGIC: &[u8; 8] = b"RLSNAP\0\0";
/// Version of the snapshot file frame.
const SNAPSHOT_FRAME_VERSION: u32 = 1;
/// Magic, version (u32), payload length (u64), CRC-32 of the payload (u32).
const SNAPSHOT_HEADER_BYTES: usize = 8 + 4 + 8 + 4;

/// A snapshot file: a header with the payload's length and checksum, then the payload, so a
/// damaged or truncated file is refused instead of loaded.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + payload.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_FRAME_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a snapshot file made by [`frame`], or why the file is refused (with the
/// byte offset where it is wrong).
fn unframe(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < SNAPSHOT_HEADER_BYTES || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(
            "offset 0: not a raftline snapshot file (no header: damaged, or written by \
                    an older build)"
                .into(),
        );
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = word(8);
    if version != SNAPSHOT_FRAME_VERSION {
        return Err(format!(
            "offset 8: snapshot file version {version}, this build reads \
             {SNAPSHOT_FRAME_VERSION}"
        ));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let payload = &bytes[SNAPSHOT_HEADER_BYTES..];
    if payload.len() as u64 != len {
        return Err(format!(
            "offset {SNAPSHOT_HEADER_BYTES}: the header says {len} bytes follow, the file holds \
             {} (truncated or damaged)",
            payload.len()
        ));
    }
    let (want, got) = (word(20), crc32fast::hash(payload));
    if want != got {
        return Err(format!(
            "offsets {SNAPSHOT_HEADER_BYTES}..{}: checksum {got:08x}, the header says \
             {want:08x} (damaged)",
            bytes.len()
        ));
    }
    Ok(payload)
}

/// Temp file, fsync, rename over the old snapshot, fsync the directory.
fn write_file(dir: &Path, stored: &StoredSnapshot) -> Result<(), StorageError<NodeId>> {
    let bytes = frame(&codec::encode(stored).map_err(snap_write_err)?);
    super::durable::write_atomic(&dir.join(SNAPSHOT_FILE), &bytes).map_err(snap_write_err)
}

fn decode_body(data: &[u8]) -> Result<Applied, StorageError<NodeId>> {
    let body: SnapshotBody = codec::decode(data).map_err(snap_read_err)?;
    let machine = Machine::decode(&body.machine).map_err(snap_read_err)?;
    Ok(Applied {
        last_applied: body.last_applied,
        membership: body.membership,
        machine,
    })
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

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // Applying waits only for this clone (the job records are shared, not copied);
        // encoding runs on a thread of its own at a lower CPU priority, so the node's applies
        // and RPCs go first while it works.
        let applied = self.applied.read().expect("state lock poisoned").clone();
        let (applied, data) = in_background(move || {
            let body = SnapshotBody {
                last_applied: applied.last_applied,
                membership: applied.membership.clone(),
                machine: applied.machine.encode().map_err(snap_write_err)?,
            };
            let data = codec::encode(&body).map_err(snap_write_err)?;
            Ok::<_, StorageError<NodeId>>((applied, data))
        })
        .await??;
        let snapshot_id = match applied.last_applied {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership,
            snapshot_id,
        };
        let stored = self.save(StoredSnapshot { meta, data }).await?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
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
                EntryPayload::Normal(proposal) => applied.machine.apply(&proposal),
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::Internal
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, PeerNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let mut restored = decode_body(&data)?;
        // The snapshot's meta is authoritative for where it ends.
        restored.last_applied = meta.last_log_id;
        restored.membership = meta.last_membership.clone();
        self.save(StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .await?;
        *self.applied.write().expect("state lock poisoned") = restored;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.load()?.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A framed snapshot reads back; a flipped byte anywhere, a truncated file, a missing
    /// header and a newer version are each refused with the offset named.
    #[test]
    fn snapshot_file_refuses_damage() {
        let payload: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let file = frame(&payload);
        assert_eq!(unframe(&file).unwrap(), &payload[..]);
        for at in [SNAPSHOT_HEADER_BYTES, file.len() / 2, file.len() - 1] {
            let mut bad = file.clone();
            bad[at] ^= 0x10;
            let why = unframe(&bad).unwrap_err();
            assert!(why.contains("checksum"), "{why}");
        }
        let why = unframe(&file[..file.len() - 7]).unwrap_err();
        assert!(why.contains("truncated"), "{why}");
        assert!(unframe(&payload).unwrap_err().starts_with("offset 0"));
        let mut newer = file.clone();
        newer[8] = 2;
        assert!(unframe(&newer).unwrap_err().starts_with("offset 8"));
        let mut length = file.clone();
        length[12] ^= 1;
        assert!(unframe(&length).unwrap_err().starts_with("offset 24"));
    }
}
