//! Every limit of the replicated state, in one place. A value over a limit is refused with a
//! typed error naming the field; nothing grows without bound.

/// Queue names are identifiers in URLs, metrics labels and CLI arguments: short and printable.
pub const QUEUE_NAME_BYTES_MAX: usize = 128;

/// Arguments of a shell job. argv is replicated to every node and kept in every snapshot, so it
/// is bounded well below the gRPC message limit.
pub const ARGV_ITEMS_MAX: usize = 1024;

/// Total bytes of all argv items together.
pub const ARGV_BYTES_MAX: usize = 64 * 1024;

/// Opaque payload of an external job (for gRPC workers). A job queue is not a blob store:
/// larger data belongs in object storage, with a reference in the payload.
pub const PAYLOAD_BYTES_MAX: usize = 256 * 1024;

/// Lowest and highest priority (10 is the most urgent).
pub const PRIORITY_MIN: u32 = 1;
/// See [`PRIORITY_MIN`].
pub const PRIORITY_MAX: u32 = 10;
/// Priority of a job submitted without one.
pub const PRIORITY_DEFAULT: u32 = 5;

/// Jobs held in the state machine. State lives in memory on every node (see `machine/mod.rs`),
/// so this bounds memory: past it, submits are refused with RESOURCE_EXHAUSTED (backpressure)
/// instead of growing until a node is killed by the OOM killer.
pub const JOBS_MAX: usize = 2_000_000;

/// Nodes the state machine keeps a record of (ids ever registered).
pub const NODES_MAX: usize = 1024;

/// Largest single value the codec will decode: a log entry, an RPC payload or a snapshot.
/// A snapshot holds at most `JOBS_MAX` jobs, so this is sized for that, not for one entry.
pub const DECODE_BYTES_MAX: usize = 4 * 1024 * 1024 * 1024 - 1;

/// Largest gRPC message the public API accepts or sends.
pub const API_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Largest gRPC message between peers (an append batch or one snapshot chunk).
pub const PEER_MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Largest snapshot chunk sent in one InstallSnapshot RPC.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Most entries sent in one AppendEntries RPC.
pub const APPEND_ENTRIES_MAX: u64 = 512;

/// Concurrent API requests served by one node; further ones queue in the server.
pub const API_CONCURRENCY_MAX: usize = 1024;

const _: () = assert!(PRIORITY_MIN <= PRIORITY_DEFAULT && PRIORITY_DEFAULT <= PRIORITY_MAX);
const _: () = assert!(ARGV_BYTES_MAX + PAYLOAD_BYTES_MAX < API_MESSAGE_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES_MAX < PEER_MESSAGE_BYTES_MAX);
// An append batch of the largest jobs must fit in one peer message.
const _: () = assert!(
    (APPEND_ENTRIES_MAX as usize) * (ARGV_BYTES_MAX + PAYLOAD_BYTES_MAX + 1024)
        < PEER_MESSAGE_BYTES_MAX
);
