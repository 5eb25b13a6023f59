//! Backups: `raftline snapshot save FILE` and `raftline snapshot restore FILE`.
//!
//! Save: the node asked makes a linearizable read barrier (every write acknowledged before the
//! call is applied here), has a snapshot taken at or after that index if the one on disk is
//! older, and streams its snapshot file (`snapshot_file.rs`, itself checksummed) to the
//! client, which writes a backup file: a header, then those bytes.
//!
//! Backup file: magic `RLBACKUP`, format version (u32), the cluster's name (u16 length, bytes),
//! the snapshot's log index and term (u64 each), the length of the snapshot bytes (u64), a
//! CRC-32 of the header so far (u32), all little-endian; then the snapshot file. A damaged
//! header, a wrong length or a snapshot whose own checksum fails is refused; so is a file
//! that is not a backup, or one of a newer format.
//!
//! Restore (like `etcdctl snapshot restore`): seeds the empty data dirs of every node of a
//! config with the backup's state, under the config's cluster name and membership (a new
//! cluster: the old one's node registry is dropped, its tokens and data are kept). Each node
//! gets the snapshot, a vote in the snapshot's term (so the first election is in a later term
//! than any entry) and an empty log; started, they elect a leader and go on from the
//! snapshot's index.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorage;
use openraft::{Membership, StoredMembership, Vote};

use super::{snapshot_file, PeerNode, Replica};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::machine::limits;

const MAGIC: &[u8; 8] = b"RLBACKUP";
/// The backup format this build writes and reads.
pub const VERSION: u32 = 1;
/// Longest cluster name a header may carry.
const NAME_BYTES_MAX: usize = 1024;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupHeader {
    /// The name of the cluster it was taken from.
    pub cluster: String,
    /// The log index of the snapshot: every write acknowledged before the save began is at or
    /// below it.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// Length of the snapshot bytes that follow the header.
    pub snapshot_bytes: u64,
}

impl BackupHeader {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let name = self.cluster.as_bytes();
        let mut out = Vec::with_capacity(48 + name.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        for n in [self.index, self.term, self.snapshot_bytes] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads and checks a header from the start of `r`.
    pub fn read(r: &mut impl Read) -> std::result::Result<BackupHeader, String> {
        let not_backup = || "not a raftline backup file (no RLBACKUP header)".to_string();
        let mut head = [0u8; 14];
        r.read_exact(&mut head).map_err(|_| not_backup())?;
        if &head[..8] != MAGIC {
            return Err(not_backup());
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(format!(
                "backup format {version}; this build reads format {VERSION} (a newer build \
                 wrote it?)"
            ));
        }
        let name_len = u16::from_le_bytes(head[12..14].try_into().expect("2 bytes")) as usize;
        if name_len > NAME_BYTES_MAX {
            return Err(format!(
                "header: a cluster name of {name_len} bytes (damaged)"
            ));
        }
        let mut rest = vec![0u8; name_len + 8 * 3 + 4];
        r.read_exact(&mut rest)
            .map_err(|_| "the header is cut short (truncated file)".to_string())?;
        let mut all = head.to_vec();
        all.extend_from_slice(&rest[..rest.len() - 4]);
        let want = u32::from_le_bytes(rest[rest.len() - 4..].try_into().expect("4 bytes"));
        if crc32fast::hash(&all) != want {
            return Err("header checksum mismatch (damaged)".into());
        }
        let cluster = String::from_utf8(rest[..name_len].to_vec())
            .map_err(|_| "header: the cluster name is not UTF-8 (damaged)".to_string())?;
        let n = |i: usize| {
            let at = name_len + 8 * i;
            u64::from_le_bytes(rest[at..at + 8].try_into().expect("8 bytes"))
        };
        Ok(BackupHeader {
            cluster,
            index: n(0),
            term: n(1),
            snapshot_bytes: n(2),
        })
    }
}

impl Replica {
    /// A snapshot for a backup: after a read barrier, the snapshot file at or after the
    /// barrier's index (taken now if the one on disk is older), opened, with its header.
    pub async fn backup_snapshot(&self) -> Result<(BackupHeader, File)> {
        self.read_barrier().await?;
        let applied = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        let at_least = |m: &openraft::RaftMetrics<u64, PeerNode>| {
            m.snapshot.is_some_and(|s| s.index >= applied)
        };
        if !at_least(&self.raft.metrics().borrow()) {
            self.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| Error::unavailable(format!("taking a snapshot: {e}")))?;
            let limit = Duration::from_millis(limits::BACKUP_SNAPSHOT_MS_MAX);
            let deadline = Instant::now() + limit;
            let mut metrics = self.raft.metrics();
            while !at_least(&metrics.borrow_and_update()) {
                let wait = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(wait, metrics.changed()).await {
                    Ok(Ok(())) => {}
                    _ => {
                        return Err(Error::unavailable(format!(
                            "no snapshot at index {applied} within {limit:?}"
                        )))
                    }
                }
            }
        }
        let path = self.dir.join(snapshot_file::FILE);
        let read = move || -> std::result::Result<(BackupHeader, File), String> {
            let mut file = File::open(&path).map_err(|e| e.to_string())?;
            let (meta, len) = snapshot_file::peek(&mut file)?;
            let last = meta.last_log_id.unwrap_or_default();
            let header = BackupHeader {
                cluster: String::new(),
                index: last.index,
                term: last.leader_id.term,
                snapshot_bytes: len,
            };
            Ok((header, file))
        };
        let (mut header, file) = tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| Error::Internal(format!("snapshot reader: {e}")))?
            .map_err(|e| Error::Internal(format!("reading the snapshot file: {e}")))?;
        header.cluster = self.cluster_name().to_string();
        Ok((header, file))
    }
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct Restored {
    /// The backup's header.
    pub header: BackupHeader,
    /// The data dirs seeded.
    pub dirs: Vec<std::path::PathBuf>,
}

/// Seeds the data dir of every node of `config` from the backup at `file`. Refuses a damaged
/// or foreign file, and any data dir that exists and is not empty.
pub async fn restore(config: &Config, file: &Path) -> Result<Restored> {
    let refused = |why: String| Error::Config(format!("{}: {why}", file.display()));
    let mut input = File::open(file).map_err(|e| refused(format!("cannot open: {e}")))?;
    let header = BackupHeader::read(&mut input).map_err(refused)?;
    let total = input.metadata().map_err(|e| refused(e.to_string()))?.len();
    let head_len = header.encode().len() as u64;
    if total != head_len + header.snapshot_bytes {
        return Err(refused(format!(
            "the header says {} snapshot bytes follow, the file holds {} (truncated or damaged)",
            header.snapshot_bytes,
            total.saturating_sub(head_len)
        )));
    }
    let dirs: Vec<_> = config.nodes.iter().map(|n| config.node_dir(n.id)).collect();
    for dir in &dirs {
        let used = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
        if used {
            return Err(Error::Config(format!(
                "{} is not empty: restore seeds the data dirs of a new cluster; move it aside",
                dir.display()
            )));
        }
    }
    let members: BTreeMap<u64, PeerNode> = config
        .nodes
        .iter()
        .map(|n| {
            let node = PeerNode {
                raft_addr: n.raft_addr.to_string(),
                api_addr: n.api_addr.to_string(),
            };
            (n.id, node)
        })
        .collect();
    let seeded = seed_all(config, &mut input, &members, file, header.term).await;
    if let Err(e) = seeded {
        // They were empty or absent: leave them so, for the next try.
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        return Err(e);
    }
    Ok(Restored { header, dirs })
}

/// Seeds every node's data dir: the first from the backup, the others with a copy of its
/// snapshot file.
async fn seed_all(
    config: &Config,
    input: &mut File,
    members: &BTreeMap<u64, PeerNode>,
    file: &Path,
    term: u64,
) -> Result<()> {
    let first = config.nodes.first().map_or(0, |n| n.id);
    let seeded = seed_first(config, first, input, members, file).await?;
    for n in config.nodes.iter().filter(|n| n.id != first) {
        let dir = config.node_dir(n.id);
        open_dir(config, n.id)?;
        std::fs::copy(&seeded, dir.join(snapshot_file::FILE))
            .and_then(|_| File::open(dir.join(snapshot_file::FILE))?.sync_all())
            .and_then(|()| super::durable::sync_dir(&dir))
            .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
        save_vote(&dir, n.id, term).await?;
    }
    Ok(())
}

/// Creates node `id`'s data dir with its identity, and closes the database again.
fn open_dir(config: &Config, id: u64) -> Result<sled::Db> {
    let identity = super::Identity {
        cluster: config.name.clone(),
        node_id: id,
    };
    super::open_db(&config.node_dir(id), &identity)
}

/// Decodes the backup's snapshot in the first node's data dir (checking its checksum), gives
/// it the new membership, and writes it as that node's snapshot; returns its path.
async fn seed_first(
    config: &Config,
    id: u64,
    input: &mut File,
    members: &BTreeMap<u64, PeerNode>,
    file: &Path,
) -> Result<std::path::PathBuf> {
    let dir = config.node_dir(id);
    let db = open_dir(config, id)?;
    let receiving = dir.join(snapshot_file::RECEIVING);
    let copied = File::create(&receiving).and_then(|mut out| {
        std::io::copy(input, &mut out)?;
        out.flush()
    });
    copied.map_err(|e| Error::Config(format!("{}: {e}", receiving.display())))?;
    let cold = super::cold_store::open(&db)
        .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
    let (mut meta, mut applied) = snapshot_file::read(&receiving, &cold)
        .map_err(|why| Error::Config(format!("{}: the snapshot in it: {why}", file.display())))?;
    let voters: BTreeSet<u64> = members.keys().copied().collect();
    let membership = StoredMembership::new(
        applied.last_applied,
        Membership::new(vec![voters.clone()], members.clone()),
    );
    applied.membership = membership.clone();
    applied.machine.forget_nodes_outside(&BTreeSet::new());
    meta.last_membership = membership;
    meta.snapshot_id = format!("restored-{}", meta.snapshot_id);
    snapshot_file::write(&dir, &meta, &applied)
        .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&receiving);
    cold.clear();
    db.flush()
        .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
    drop(db);
    let term = meta.last_log_id.map_or(0, |l| l.leader_id.term);
    save_vote(&dir, id, term).await?;
    Ok(dir.join(snapshot_file::FILE))
}

/// Records node `id` as having voted for itself in `term`, so its first election is in a
/// later term than any entry of the restored state.
async fn save_vote(dir: &Path, id: u64, term: u64) -> Result<()> {
    let mut log = super::WalLogStore::open(&dir.join("wal"), id)
        .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
    log.save_vote(&Vote::new(term, id))
        .await
        .map_err(|e| Error::Config(format!("{}: saving the vote: {e}", dir.display())))
}
