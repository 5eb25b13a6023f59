//! `SaveSnapshot` (admin): streams a consistent snapshot for `raftline snapshot save`
//! (see `raft/backup.rs`).

use std::io::Read;
use std::pin::Pin;

use tonic::Status;

use super::ApiService;
use crate::machine::limits;
use crate::proto::pb;

/// The stream of chunks a `SaveSnapshot` answers with.
pub type ChunkStream =
    Pin<Box<dyn futures::Stream<Item = Result<pb::SnapshotChunk, Status>> + Send + 'static>>;

/// Chunks read ahead of the client.
const CHUNKS_AHEAD: usize = 4;

/// Takes the snapshot, then streams its file in chunks: the first carries the header fields.
pub(super) async fn save_snapshot(service: &ApiService) -> Result<ChunkStream, Status> {
    let (header, mut file) = service.replica.backup_snapshot().await?;
    let what = format!("snapshot at index {} term {}", header.index, header.term);
    super::audit_operation(service, crate::machine::Operation::SaveSnapshot, what).await;
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut first = Some(pb::SnapshotChunk {
            cluster: header.cluster,
            index: header.index,
            term: header.term,
            total_bytes: header.snapshot_bytes,
            data: Vec::new(),
        });
        let mut left = header.snapshot_bytes;
        while left > 0 {
            let mut data = vec![0u8; (limits::BACKUP_CHUNK_BYTES as u64).min(left) as usize];
            let chunk = match file.read_exact(&mut data) {
                Ok(()) => {
                    left -= data.len() as u64;
                    let mut chunk = first.take().unwrap_or_default();
                    chunk.data = data;
                    Ok(chunk)
                }
                Err(e) => Err(Status::internal(format!("reading the snapshot file: {e}"))),
            };
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok(Box::pin(stream))
}
