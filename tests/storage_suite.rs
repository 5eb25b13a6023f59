//! openraft's storage conformance suite against raftline's sled log store and state machine.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raftline::raft::log_store::LogStore;
use raftline::raft::state_machine::StateMachineStore;
use raftline::raft::TypeConfig;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::open(dir.path()).expect("open sled");
        let log = LogStore::new(db.clone()).expect("log store");
        let sm = StateMachineStore::open(db)?;
        Ok((dir, log, sm))
    }
}

/// Every check of openraft's storage suite passes on a real sled database in a temp dir.
#[test]
fn storage_suite_passes() {
    Suite::test_all(SledBuilder).expect("openraft storage suite");
}
