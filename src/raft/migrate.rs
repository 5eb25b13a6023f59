//! Moving the Raft log of a data dir written by an earlier build (log and vote in sled) into
//! the write-ahead log, once, at start.
//!
//! The copy is built in `wal.migrating` beside the node's other files: the purged point and
//! the vote, committed and purged log ids first (meta, synced), then every entry after the
//! purged point (synced), then the directory is renamed to `wal` and the node dir fsynced. A
//! crash before the rename leaves the sled log as the source and the next start copies again
//! from scratch; after it, the WAL is the log and sled's copy is never read again.
//!
//! CAVEATS (not implemented): sled's copy of the log is left in place (disk space, not
//! correctness).

use std::path::Path;

use openraft::{LogId, Vote};

use super::wal::Wal;
use super::wal_store::State;
use crate::error::{Error, Result};
use crate::machine::codec;

/// Entries copied per append to the WAL.
const CHUNK: u64 = 1_024;

/// If `wal_dir` does not exist and sled holds a log or a vote, copies them into a new WAL at
/// `wal_dir`. Returns whether it copied anything.
pub fn sled_log_into_wal(db: &sled::Db, wal_dir: &Path) -> Result<bool> {
    if wal_dir.exists() {
        return Ok(false);
    }
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::Internal(format!(
            "moving the Raft log from sled into {}: {what}: {e}",
            wal_dir.display()
        ))
    };
    // The layout an earlier build kept (keys big-endian): tree `log`, index -> encoded
    // entry; tree `meta`, `vote`, `committed` and `last_purged`, each encoded.
    let log = db
        .open_tree("log")
        .map_err(|e| fail("open the log tree", &e))?;
    let meta = db
        .open_tree("meta")
        .map_err(|e| fail("open the meta tree", &e))?;
    let read = |key: &str| meta.get(key).map_err(|e| fail(key, &e));
    let vote: Option<Vote<u64>> = read("vote")?.map(|b| codec::decode(&b)).transpose()?;
    if log.is_empty() && vote.is_none() {
        return Ok(false);
    }
    let committed: Option<LogId<u64>> = match read("committed")? {
        Some(b) => codec::decode(&b)?,
        None => None,
    };
    let last_purged: Option<LogId<u64>> = read("last_purged")?
        .map(|b| codec::decode(&b))
        .transpose()?;
    let state = State {
        vote,
        committed,
        last_purged,
    };
    let tmp = wal_dir.with_extension("migrating");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| fail("remove an earlier attempt", &e))?;
    }
    let mut wal = Wal::open(&tmp).map_err(|e| fail("create", &e))?;
    let state_bytes = codec::encode(&state)?;
    match state.last_purged {
        Some(purged) => wal.purge_upto(purged.index, state_bytes),
        None => wal.save_state(state_bytes),
    }
    .map_err(|e| fail("meta", &e))?;
    let mut copied = 0u64;
    let mut records = Vec::new();
    for item in log.iter() {
        let (key, bytes) = item.map_err(|e| fail("read entries", &e))?;
        let key: [u8; 8] = key
            .as_ref()
            .try_into()
            .map_err(|_| fail("read entries", &"a key that is not an index"))?;
        records.push((u64::from_be_bytes(key), bytes.to_vec()));
        if records.len() as u64 >= CHUNK {
            copied += records.len() as u64;
            wal.append(std::mem::take(&mut records))
                .map_err(|e| fail("append", &e))?;
        }
    }
    copied += records.len() as u64;
    wal.append(records).map_err(|e| fail("append", &e))?;
    wal.sync().map_err(|e| fail("sync", &e))?;
    drop(wal);
    std::fs::rename(&tmp, wal_dir).map_err(|e| fail("rename", &e))?;
    if let Some(parent) = wal_dir.parent() {
        super::durable::sync_dir(parent).map_err(|e| fail("sync the data dir", &e))?;
    }
    tracing::info!(
        entries = copied,
        "moved the Raft log from sled into {}",
        wal_dir.display()
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorage;
    use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftLogReader, Vote};

    use super::*;
    use crate::raft::wal_store::WalLogStore;
    use crate::raft::TypeConfig;

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 2), index)
    }

    /// A sled log as an earlier build left it (entries 6..=10, purged up to 5, a vote and a
    /// committed id) is copied into a new WAL that reads back the same; a second start
    /// copies nothing.
    #[tokio::test]
    async fn sled_log_moves_into_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let log = db.open_tree("log").unwrap();
        let meta = db.open_tree("meta").unwrap();
        for index in 6..=10u64 {
            let entry = openraft::Entry::<TypeConfig> {
                log_id: log_id(3, index),
                payload: EntryPayload::Blank,
            };
            log.insert(index.to_be_bytes(), codec::encode(&entry).unwrap())
                .unwrap();
        }
        let put = |key: &str, bytes: Vec<u8>| {
            meta.insert(key, bytes).unwrap();
        };
        put(
            "vote",
            codec::encode(&Vote::<u64>::new_committed(3, 2)).unwrap(),
        );
        put("committed", codec::encode(&Some(log_id(3, 8))).unwrap());
        put("last_purged", codec::encode(&log_id(2, 5)).unwrap());
        db.flush().unwrap();

        let wal_dir = dir.path().join("wal");
        assert!(sled_log_into_wal(&db, &wal_dir).unwrap());
        let mut wal = WalLogStore::open(&wal_dir, 1).unwrap();
        let state = wal.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(2, 5)));
        assert_eq!(state.last_log_id, Some(log_id(3, 10)));
        let entries = wal.try_get_log_entries(6..11).await.unwrap();
        let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, vec![6, 7, 8, 9, 10]);
        assert_eq!(
            wal.read_vote().await.unwrap(),
            Some(Vote::new_committed(3, 2))
        );
        assert_eq!(wal.read_committed().await.unwrap(), Some(log_id(3, 8)));
        assert!(!sled_log_into_wal(&db, &wal_dir).unwrap());
    }
}
