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

/// Jobs held in memory: live ones (scheduled, ready, leased), since finished ones move to the
/// cold tier on disk (`machine/cold.rs`). This bounds memory: past it, submits are refused
/// with RESOURCE_EXHAUSTED (backpressure) instead of growing until a node is killed by the
/// OOM killer.
pub const JOBS_MAX: usize = 2_000_000;

/// Nodes the state machine keeps a record of (ids ever registered).
pub const NODES_MAX: usize = 1024;

/// HTTP/2 streams (concurrent calls) one client connection may open, on the API and peer
/// ports.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 1024;

/// Streams a connection's client may reset before the server has accepted them, before the
/// server closes the connection (h2's guard against rapid-reset floods; its default, 20, closed
/// busy peer connections whose 50 ms AppendEntries timeouts reset streams under load).
pub const PENDING_RESET_STREAMS_MAX: usize = 1024;
/// Connections a node's API port holds open at once; one more is closed at once (so a
/// flood of idle connections can't take every file descriptor).
pub const API_CONNECTIONS_MAX: usize = 512;
/// Connections a node's peer port holds open at once (peers open one or two each).
pub const PEER_CONNECTIONS_MAX: usize = 64;
/// Bytes of jobs in one `ListJobs` page: a page ends early there (one job at least), well
/// inside the API message limit.
pub const LIST_PAGE_BYTES_MAX: usize = 2 << 20;
/// Bytes of a config file the node or CLI reads.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;
/// Bytes of a workflow file the CLI reads.
pub const WORKFLOW_FILE_BYTES_MAX: u64 = 16 << 20;
/// Connections a node's HTTP port (`/health`, `/metrics`, the REST API) holds open at once.
pub const HTTP_CONNECTIONS_MAX: usize = 64;
/// Bytes of a REST request body (JSON). Twice the gRPC message limit, for JSON's larger
/// spelling (base64 payloads, field names); the message it becomes must still fit
/// `API_MESSAGE_BYTES_MAX`.
pub const REST_BODY_BYTES_MAX: usize = 2 * API_MESSAGE_BYTES_MAX;
/// Depth of nested JSON objects and arrays in a REST body (serde_json's own recursion limit is
/// 128; the API's deepest message nests 4).
pub const REST_JSON_DEPTH_MAX: usize = 32;

/// API tokens (`machine/auth.rs`), bootstrap tokens included.
pub const TOKENS_MAX: usize = 10_000;

/// Bytes of a token's name.
pub const TOKEN_NAME_BYTES_MAX: usize = 128;

/// Queue patterns a token may be limited to.
pub const TOKEN_QUEUES_MAX: usize = 16;

/// Highest per-token call rate `[auth] rate_per_sec` accepts.
pub const TOKEN_RATE_MAX: u32 = 1_000_000;

/// Longest token lifetime (`--ttl`): 10 years.
pub const TOKEN_TTL_MS_MAX: u64 = 10 * 366 * 24 * 3600 * 1000;

/// Largest single value the codec will decode: a log entry, an RPC payload or a snapshot.
/// A snapshot holds at most `JOBS_MAX` jobs, so this is sized for that, not for one entry.
pub const DECODE_BYTES_MAX: usize = 4 * 1024 * 1024 * 1024 - 1;

/// Largest gRPC message the public API accepts or sends.
pub const API_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest message a status carries. It travels in an HTTP/2 header (`grpc-message`), and a
/// client refuses a header block past its own limit (16 KiB in hyper) by closing the whole
/// connection, failing its other calls too; a refusal that quotes a large input is cut here.
/// 4 KiB stays under 16 KiB even when percent-encoding triples every byte.
pub const STATUS_MESSAGE_BYTES_MAX: usize = 4 * 1024;

/// Largest gRPC message between peers (an append batch or one snapshot chunk).
pub const PEER_MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Largest snapshot chunk sent in one InstallSnapshot RPC.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Most entries sent in one AppendEntries RPC. openraft 0.9 gives an AppendEntries RPC the
/// heartbeat interval to complete (send, the follower's decode and fsync, the reply) and on a
/// timeout resends the same range, so a batch that cannot finish within it is never
/// delivered: a follower that fell behind on large entries (a `SubmitBatch` entry of 1,000
/// jobs is about 300 KB) never caught up. Eight entries keep a catch-up message at a few MB
/// (at most 8 x `BATCH_BYTES_MAX`); a leader's entries are batches already, so the steady
/// stream sends far fewer.
pub const APPEND_ENTRIES_MAX: u64 = 8;
/// Most entry bytes sent in one AppendEntries RPC (one entry at least, however large): under
/// load the heartbeat interval openraft allows an RPC is not enough for eight large entries,
/// so a longer request is cut and openraft told of a partial success (`raft/network.rs`).
pub const APPEND_BYTES_MAX: usize = 512 << 10;
/// How long a leader holds openraft's notice of a new commit index to a follower, waiting
/// for an entry to carry it instead (`raft/network.rs`): the gap between a client's answer
/// and its next write at one client is a few hundred microseconds. When no entry comes, the
/// notice goes out this much later, so an idle follower applies the last write at most this
/// much later than the leader's answer.
pub const COMMIT_NOTICE_LINGER_US: u64 = 1_000;
/// A commit notice rides on the next entry only to a follower that accepted entries on the
/// same connection this recently; to any other it goes at once.
pub const COMMIT_NOTICE_RIDE_WINDOW_MS: u64 = 10;

/// Concurrent API requests served by one node; further ones queue in the server.
pub const API_CONCURRENCY_MAX: usize = 1024;

/// Attempts a job may be given (`max_attempts`).
pub const MAX_ATTEMPTS_MAX: u32 = 100;
/// Attempts when a submit names none.
pub const MAX_ATTEMPTS_DEFAULT: u32 = 3;
/// Attempt records kept per job (the newest); older ones are dropped, the count stays.
pub const ATTEMPTS_KEPT_MAX: usize = 20;
/// Bytes of stdout/stderr kept per attempt (the end of the output).
pub const OUTPUT_TAIL_BYTES_MAX: usize = 4 * 1024;
/// Bytes of an error message kept per attempt.
pub const ERROR_BYTES_MAX: usize = 1024;
/// Bytes of a checkpoint a worker may store on its job.
pub const CHECKPOINT_BYTES_MAX: usize = 64 * 1024;
/// Tags per job, and bytes per tag.
pub const TAGS_MAX: usize = 16;
/// See [`TAGS_MAX`].
pub const TAG_BYTES_MAX: usize = 64;
/// Capabilities a job may require or a worker may offer, and bytes per name.
pub const CAPABILITIES_MAX: usize = 16;
/// See [`CAPABILITIES_MAX`].
pub const CAPABILITY_BYTES_MAX: usize = 64;
/// Environment variables of a shell job, and their total bytes.
pub const ENV_VARS_MAX: usize = 64;
/// See [`ENV_VARS_MAX`].
pub const ENV_BYTES_MAX: usize = 16 * 1024;
/// Bytes of a working directory path.
pub const CWD_BYTES_MAX: usize = 4096;
/// Bytes of an idempotency key.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 256;
/// Bytes of a worker id.
pub const WORKER_ID_BYTES_MAX: usize = 128;
/// Queues named in one lease request.
pub const LEASE_QUEUES_MAX: usize = 64;
/// Jobs handed out by one lease.
pub const LEASE_BATCH_MAX: u32 = 256;
/// A lease stops granting once the granted jobs' definitions and checkpoints reach this many
/// bytes (it always grants at least one), so a lease response fits in one API message.
pub const LEASE_RESPONSE_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Ready jobs a lease looks at per queue to find one whose required capabilities the worker
/// has; a lease never scans a whole queue.
pub const LEASE_SCAN_MAX: usize = 1024;
/// Shortest lease: below this, heartbeats (every ttl/3) cannot keep up with the network.
pub const LEASE_TTL_MS_MIN: u64 = 1_000;
/// Longest lease: a dead worker's job must come back within this.
pub const LEASE_TTL_MS_MAX: u64 = 3_600_000;
/// Lease ttl when a request names none.
pub const LEASE_TTL_MS_DEFAULT: u64 = 30_000;
/// Longest job timeout (7 days).
pub const TIMEOUT_MS_MAX: u64 = 7 * 24 * 3_600_000;
/// Longest delay or distance of run_at / deadline into the future (366 days).
pub const DELAY_MS_MAX: u64 = 366 * 24 * 3_600_000;
/// Backoff bounds: base and cap at most one day, factor 1..=10.
pub const BACKOFF_MS_MAX: u64 = 24 * 3_600_000;
/// See [`BACKOFF_MS_MAX`].
pub const BACKOFF_FACTOR_MAX: u32 = 10;
/// Unfinished jobs (scheduled, ready, leased) one queue may hold; past it submits to that
/// queue get RESOURCE_EXHAUSTED. Finished jobs waiting out their retention don't count: with
/// the default 7-day retention a queue finishing 2 jobs a second would otherwise fill up.
pub const QUEUE_JOBS_MAX: u64 = 1_000_000;
/// Distinct queues with jobs or settings.
pub const QUEUES_MAX: usize = 10_000;
/// Due items (timers, expiries, purges) one Tick processes; the rest wait for the next Tick,
/// so one log entry never does unbounded work.
pub const TICK_WORK_MAX: usize = 1_000;
/// Dead jobs removed by one purge command.
pub const PURGE_BATCH_MAX: usize = 10_000;
/// Jobs one bulk retry or cancel changes (`BulkJobs`: one log entry of at most this many ids).
pub const BULK_JOBS_MAX: usize = 10_000;
/// Jobs a bulk operation's filter looks at in one call.
pub const BULK_SCAN_MAX: usize = 1_000_000;
/// Jobs returned by one list call.
pub const LIST_LIMIT_MAX: u32 = 1_000;
/// Jobs a `ListJobs` page looks at for its filter: past them the page ends (perhaps empty)
/// with a cursor to go on, so a filter that matches few of millions of jobs answers in bounded
/// time.
pub const LIST_SCAN_MAX: usize = 100_000;
/// Bytes of a job search's `text`.
pub const SEARCH_TEXT_BYTES_MAX: usize = 256;
/// Latest time a search filter names: 9999-12-31T23:59:59.999Z, in ms.
pub const FILTER_TIME_MS_MAX: u64 = 253_402_300_799_999;
/// Longest long-poll wait of a lease request.
pub const LEASE_WAIT_MS_MAX: u64 = 60_000;

/// Shortest dead-letter retention: a minute, so an operator has time to look before a dead
/// job is purged.
pub const DEAD_RETENTION_MS_MIN: u64 = 60_000;
/// Longest retention of finished and dead jobs: ten years (a bound, not a recommendation).
pub const RETENTION_MS_MAX: u64 = 3_650 * 24 * 3_600_000;
/// Shortest idempotency window: a second, or a retried submit could slip past it.
pub const IDEMPOTENCY_WINDOW_MS_MIN: u64 = 1_000;
/// Longest idempotency window: a year; every key is held that long.
pub const IDEMPOTENCY_WINDOW_MS_MAX: u64 = 365 * 24 * 3_600_000;
/// Longest priority aging step: a year (aging then barely matters).
pub const PRIORITY_AGING_MS_MAX: u64 = 365 * 24 * 3_600_000;

const _: () = assert!(PRIORITY_MIN <= PRIORITY_DEFAULT && PRIORITY_DEFAULT <= PRIORITY_MAX);
const _: () = assert!(DEAD_RETENTION_MS_MIN <= RETENTION_MS_MAX);
const _: () = assert!(IDEMPOTENCY_WINDOW_MS_MIN <= IDEMPOTENCY_WINDOW_MS_MAX);
const _: () = assert!(ARGV_BYTES_MAX + PAYLOAD_BYTES_MAX < API_MESSAGE_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES_MAX < PEER_MESSAGE_BYTES_MAX);
const _: () = assert!(MAX_ATTEMPTS_DEFAULT <= MAX_ATTEMPTS_MAX);
const _: () =
    assert!(LEASE_TTL_MS_MIN <= LEASE_TTL_MS_DEFAULT && LEASE_TTL_MS_DEFAULT <= LEASE_TTL_MS_MAX);
const _: () = assert!((LEASE_BATCH_MAX as usize) <= TICK_WORK_MAX);
const _: () = assert!(QUEUE_JOBS_MAX as usize <= JOBS_MAX);
// One granted job (definition plus checkpoint) always fits in a lease response, and a response
// filled up to LEASE_RESPONSE_BYTES_MAX plus one more job fits in one API message.
const _: () = assert!(
    LEASE_RESPONSE_BYTES_MAX
        + ARGV_BYTES_MAX
        + PAYLOAD_BYTES_MAX
        + CHECKPOINT_BYTES_MAX
        + ENV_BYTES_MAX
        + 64 * 1024
        < API_MESSAGE_BYTES_MAX
);
// An append message of the largest batch entries must fit in one peer message.
const _: () =
    assert!((APPEND_ENTRIES_MAX as usize) * BATCH_BYTES_MAX * 2 <= PEER_MESSAGE_BYTES_MAX);

/// Writes a leader may hold queued for its batcher; further ones wait (backpressure).
pub const PROPOSALS_QUEUED_MAX: usize = 16 * 1024;

/// Log entries a leader's batcher has being committed at once. More overlap fsyncs and
/// replication round trips; fewer make bigger batches. Two keeps one entry replicating while
/// the next one fills.
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 2;

/// Commands in one batched log entry.
pub const BATCH_COMMANDS_MAX: usize = 1024;

/// Approximate bytes of one batched log entry (a single command may exceed it alone).
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Jobs in one `SubmitBatch` call (one log entry).
pub const SUBMIT_BATCH_JOBS_MAX: usize = 1000;

/// Completions in one `CompleteAndLease` call.
pub const COMPLETIONS_PER_CALL_MAX: usize = 256;

/// Steps in one workflow. A workflow is validated and kept whole in every replica's memory;
/// plans of dozens to hundreds of steps are the use, and a thousand leaves room.
pub const WORKFLOW_STEPS_MAX: usize = 1000;

/// Dependencies over all steps of one workflow (a fan-in of every step into one is allowed).
pub const WORKFLOW_EDGES_MAX: usize = 20_000;

/// Approximate bytes of all step definitions of one workflow: it travels in one API message
/// and one log entry.
pub const WORKFLOW_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Highest `max_parallel` of a workflow.
pub const WORKFLOW_PARALLEL_MAX: u32 = 64;

/// `max_parallel` of a workflow that names none.
pub const WORKFLOW_PARALLEL_DEFAULT: u32 = 10;

/// Workflows held (running and finished within their retention); past it submits get
/// RESOURCE_EXHAUSTED.
pub const WORKFLOWS_MAX: usize = 10_000;

/// Bytes of a workflow name and of a step name.
pub const WORKFLOW_NAME_BYTES_MAX: usize = 128;
/// See [`WORKFLOW_NAME_BYTES_MAX`].
pub const STEP_NAME_BYTES_MAX: usize = 128;

const _: () = assert!(WORKFLOW_BYTES_MAX < API_MESSAGE_BYTES_MAX);

/// Bytes of a resource name.
pub const RESOURCE_NAME_BYTES_MAX: usize = 128;
/// Largest capacity of a resource (and units one job may need of it).
pub const RESOURCE_CAPACITY_MAX: u32 = 10_000;
/// Resources that may exist.
pub const RESOURCES_MAX: usize = 10_000;
/// Resources one job may need.
pub const RESOURCES_PER_JOB_MAX: usize = 8;
/// Ready jobs ahead of a job a lease looks at per resource to keep rank order (see
/// `resources.rs`); a lease never scans a whole waiting line.
pub const RESOURCE_SCAN_MAX: usize = 64;
/// Shortest and longest lock ttl.
pub const LOCK_TTL_MS_MIN: u64 = 1_000;
/// See [`LOCK_TTL_MS_MIN`].
pub const LOCK_TTL_MS_MAX: u64 = 3_600_000;
/// Longest wait of a lock acquire for a free unit.
pub const LOCK_WAIT_MS_MAX: u64 = 60_000;
/// Largest token count of a queue's rate limit, and longest period (a day).
pub const RATE_COUNT_MAX: u32 = 1_000_000;
/// See [`RATE_COUNT_MAX`].
pub const RATE_PERIOD_MS_MAX: u64 = 86_400_000;
/// Largest concurrency limit of a queue.
pub const QUEUE_CONCURRENCY_MAX: u32 = 100_000;
/// Outcomes a breaker window may hold.
pub const BREAKER_WINDOW_MAX: u32 = 1_000;
/// Longest breaker cooldown (a day).
pub const BREAKER_COOLDOWN_MS_MAX: u64 = 86_400_000;
/// Breaker transitions kept per queue (the newest).
pub const BREAKER_TRANSITIONS_KEPT: usize = 20;
/// Schedules that may exist.
pub const SCHEDULES_MAX: usize = 10_000;
/// Bytes of a schedule name.
pub const SCHEDULE_NAME_BYTES_MAX: usize = 128;
/// Shortest interval between two ticks of a schedule (also the finest cron field: seconds).
pub const SCHEDULE_INTERVAL_MS_MIN: u64 = 1_000;
/// Longest `@every` interval: a year and a day.
pub const SCHEDULE_INTERVAL_MS_MAX: u64 = 366 * 24 * 3_600_000;
/// Latest wall-clock time any request may name (9999-12-31T23:59:59.999Z), so every time
/// fits an i64 and a calendar.
pub const WALL_MS_MAX: u64 = 253_402_300_799_999;
/// Runs kept in a schedule's history (the newest).
pub const SCHEDULE_HISTORY_MAX: usize = 100;
/// Ticks waiting for the previous run (overlap `queue`).
pub const SCHEDULE_QUEUE_MAX: usize = 10;
/// Bound of `catch_up = all:N`.
pub const CATCH_UP_TICKS_MAX: u32 = 1_000;
/// Due ticks one Tick looks at per schedule when catching up; a longer outage skips the rest.
pub const CATCH_UP_SCAN_MAX: usize = 2_000;
/// `catch_up = skip` still runs a tick this late (a leader change takes about a second).
pub const CATCH_UP_GRACE_MS: u64 = 10_000;
/// Ticks one backfill may run.
pub const BACKFILL_TICKS_MAX: usize = 1_000;

/// Durable event timers that may be pending.
pub const TIMERS_MAX: usize = 100_000;
/// Triggers that may exist.
pub const TRIGGERS_MAX: usize = 10_000;
/// Bytes of a topic name.
pub const TOPIC_BYTES_MAX: usize = 128;
/// Bytes of an event payload.
pub const EVENT_PAYLOAD_BYTES_MAX: usize = 64 * 1024;
/// Bytes of the payload handed to a shell job in `RAFTLINE_EVENT_PAYLOAD` (the end).
pub const EVENT_ENV_BYTES_MAX: usize = 4 * 1024;
/// Event dedup keys remembered at once; past it, keys are not remembered (events still run).
pub const EVENT_KEYS_MAX: usize = 1_000_000;
/// Links in a chain of work started by transition events (see `events.rs`).
pub const TRIGGER_DEPTH_MAX: u8 = 8;

/// Approximate bytes of all job definitions held (payloads, argv, env): the memory budget.
/// Past it, submits get RESOURCE_EXHAUSTED (backpressure) like past `JOBS_MAX`.
pub const JOBS_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;
const _: () = assert!(WORKFLOW_PARALLEL_DEFAULT <= WORKFLOW_PARALLEL_MAX);

// Client side: the command line and the client library. Not replicated state, but bounded
// the same way: a user-given value past these is refused, never clamped.

/// Most jobs one `raftline worker` runs at once (`--concurrency`): each is a child process
/// with its own output capture, and past a few hundred a host is better served by several
/// workers. The same bound as a node's `workers_max`.
pub const WORKER_CONCURRENCY_MAX: u32 = NODE_WORKERS_MAX as u32;
/// How long `raftline cluster status` waits for each node's own answer before showing it as
/// unreachable: a live node answers from memory within milliseconds.
pub const CLI_NODE_STATUS_MS_MAX: u64 = 2_000;
/// How long `raftline up` gives its nodes to stop after SIGTERM before killing them: a node's
/// own bound on its stop (`NODE_STOP_MS_MAX`) plus a margin, so a node is killed only when that
/// bound failed.
pub const UP_STOP_MS_MAX: u64 = NODE_STOP_MS_MAX + 3_000;
/// How long the client waits to connect to one node before it tries the next: a reachable node
/// on a LAN connects within milliseconds, and a write may only move on while unsent.
pub const CLIENT_CONNECT_MS_MAX: u64 = 1_000;
const _: () = assert!(WORKER_CONCURRENCY_MAX <= LEASE_BATCH_MAX);

// ---------------------------------------------------------------------------------------------
// Around the core: config ranges, node and executor timings, API list pages. Not used by the
// machine itself; kept here so every bound of the system is in one file.

/// Fewest `cluster.heartbeat_ms`: faster heartbeats cost CPU and bandwidth for nothing.
pub const HEARTBEAT_MS_MIN: u64 = 10;
/// Most `cluster.heartbeat_ms`: slower heartbeats make failover take minutes.
pub const HEARTBEAT_MS_MAX: u64 = 10_000;
/// Most `cluster.election_timeout_max_ms`: a longer one leaves a cluster leaderless for over a
/// minute after a crash.
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 60_000;
/// Fewest `cluster.snapshot_every_entries`: snapshotting more often than this is all overhead.
pub const SNAPSHOT_EVERY_ENTRIES_MIN: u64 = 10;
/// Most `cluster.snapshot_every_entries`: a longer log takes too long to replay at start-up.
pub const SNAPSHOT_EVERY_ENTRIES_MAX: u64 = 10_000_000;
/// Sled's page cache for the cold tier (finished jobs): the fixed part of a node's memory
/// beside its live state. Finished jobs themselves are bounded by retention and disk, not by
/// `JOBS_MAX`, which counts jobs held in memory.
pub const COLD_CACHE_BYTES: u64 = 64 << 20;
/// How often a node drops the cold tier's garbage (versions no view can see any more).
pub const COLD_COLLECT_MS: u64 = 1_000;
/// Fewest log bytes appended between snapshots (`cluster.snapshot_every_log_bytes`).
pub const SNAPSHOT_EVERY_LOG_BYTES_MIN: u64 = 1 << 20;
/// Most log bytes appended between snapshots: bounds the log a restart replays.
pub const SNAPSHOT_EVERY_LOG_BYTES_MAX: u64 = 16 << 30;
/// How often a node compares its log growth with `snapshot_every_log_bytes`.
pub const SNAPSHOT_BYTES_CHECK_MS: u64 = 250;
/// Most `cluster.snapshot_logs_kept`: the kept log lives on disk and in replay.
pub const SNAPSHOT_LOGS_KEPT_MAX: u64 = 10_000_000;
/// Most `cluster.request_timeout_ms`: a client should hear back within ten minutes.
pub const REQUEST_TIMEOUT_MS_MAX: u64 = 600_000;
/// Most `cluster.workers_max`: jobs one node runs at once (each is a process).
pub const NODE_WORKERS_MAX: u64 = 256;

/// Longest one executor lease call waits for a job before the pool re-sizes itself.
pub const EXECUTOR_LEASE_WAIT_MS: u64 = 1_000;
/// Pause after a failed lease call (no leader yet, node starting) so a down cluster is not
/// hammered.
pub const EXECUTOR_LEASE_RETRY_MS: u64 = 500;
/// How often the executor checks its leases against local state, so a cancel kills quickly.
pub const EXECUTOR_LEASE_CHECK_MS: u64 = 250;
/// Heartbeats per lease ttl: a lease survives a lost heartbeat or two.
pub const EXECUTOR_HEARTBEATS_PER_TTL: u64 = 3;
/// How long running jobs get to be killed and handed back at shutdown.
pub const EXECUTOR_SHUTDOWN_MS: u64 = 5_000;
/// Tries to record one completion; after them the lease expires and the job is retried.
pub const COMPLETE_TRIES_MAX: u32 = 10;
/// First pause between completion tries, doubled per try (bounded below).
pub const COMPLETE_RETRY_BASE_MS: u64 = 200;
/// Doublings of the completion retry pause: 200 ms grows to at most 3.2 s.
pub const COMPLETE_RETRY_DOUBLINGS_MAX: u32 = 4;
/// Longest wait for a finished or killed job's output pipes to drain.
pub const OUTPUT_DRAIN_MS: u64 = 1_000;
/// Bytes read from a job's stdout or stderr at once.
pub const OUTPUT_CHUNK_BYTES: usize = 4 * 1024;

/// How long in-flight calls may take to finish at node shutdown.
pub const NODE_DRAIN_MS: u64 = 5_000;
/// Longest a node's whole stop may take (hand jobs back, drain calls, stop Raft, flush):
/// past it the node exits anyway, so a step stuck on a failing disk cannot keep it up.
pub const NODE_STOP_MS_MAX: u64 = EXECUTOR_SHUTDOWN_MS + NODE_DRAIN_MS + 2_000;
/// Pause between tries to register a node's run while no leader is elected.
pub const NODE_REGISTER_RETRY_MS: u64 = 200;
/// Longest wait for one peer's answer to the start-up probe.
pub const PROBE_HELLO_TIMEOUT_MS: u64 = 500;
/// Pause between rounds of the start-up probe.
pub const PROBE_ROUND_PAUSE_MS: u64 = 100;
/// The start-up probe lasts this many election timeouts: long enough for peers starting at
/// the same time to answer.
pub const PROBE_ELECTION_TIMEOUTS: u64 = 4;
/// Most members (voters and learners) a cluster may have; `cluster add` refuses more.
pub const MEMBERS_MAX: usize = 64;
/// A learner is made a voter only when at most this many entries behind the leader, so the
/// new voter does not stall commits while it catches up.
pub const PROMOTE_LAG_MAX: u64 = 1_000;
/// A membership change (a learner's catch-up by snapshot included) may take this many request
/// timeouts before the caller is told the outcome is unknown.
pub const MEMBERSHIP_TIMEOUTS: u32 = 4;
/// During a leadership transfer the other voters hold their elections for this many leases
/// (`election_timeout_max_ms` each), at most [`TRANSFER_HOLD_MS_MAX`]; each ends its hold by
/// itself, so a leader that dies mid-transfer cannot leave the cluster unable to elect.
pub const TRANSFER_HOLD_LEASES: u64 = 4;
/// Longest election hold during a leadership transfer.
pub const TRANSFER_HOLD_MS_MAX: u64 = 60_000;
/// Longest sleep of the leader's ticker between checks (a new deadline also wakes it).
pub const TICKER_CHECK_MS: u64 = 1_000;
/// Ticker pause after a failed proposal or a tick that did no work.
pub const TICKER_RETRY_MS: u64 = 100;
/// Ticks the leader's ticker has proposed and not yet seen answered, while the last answered
/// one did a full `TICK_WORK_MAX` (a backlog); one otherwise.
pub const TICKS_IN_FLIGHT_MAX: usize = 4;

/// Page size of a list call whose `limit` is 0.
pub const LIST_LIMIT_DEFAULT: u32 = 100;
const _: () = assert!(LIST_LIMIT_DEFAULT <= LIST_LIMIT_MAX);
const _: () = assert!(HEARTBEAT_MS_MIN < HEARTBEAT_MS_MAX);
const _: () = assert!(ELECTION_TIMEOUT_MS_MAX <= REQUEST_TIMEOUT_MS_MAX);

// The Raft write-ahead log (`raft/wal.rs`): what its files may hold, checked on write and
// again on open, so a damaged length never makes a node allocate without bound.

/// Size at which the write-ahead log starts a new segment file. Whole segments are the unit of
/// purging, so a smaller one frees disk sooner after a snapshot; a larger one creates files
/// (each a `sync_all` plus a directory fsync) less often. etcd's WAL uses the same 64 MiB.
pub const WAL_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest record (one encoded log entry plus its 8-byte index). An entry reaches a follower
/// in one peer message, so none is larger; a longer length read from disk is damage.
pub const WAL_RECORD_BYTES_MAX: u64 = PEER_MESSAGE_BYTES_MAX as u64;
/// Largest meta file (vote, committed and purged log ids: tens of bytes when encoded).
pub const WAL_META_BYTES_MAX: u64 = 64 * 1024;
/// Append callbacks queued for the log's flusher before `append` waits for room; one sync
/// completes all of them (group commit).
pub const WAL_FLUSH_QUEUE_MAX: usize = 4096;
const _: () = assert!(WAL_RECORD_BYTES_MAX <= u32::MAX as u64);

/// Bytes of a user name in `run_as`.
pub const USER_NAME_BYTES_MAX: usize = 32;

/// Variables `[jobs] env_pass` may name.
pub const JOB_ENV_PASS_MAX: usize = 256;

/// Bytes of one variable name in `env_pass`.
pub const JOB_ENV_NAME_BYTES_MAX: usize = 256;

/// Highest `[jobs] cpu_seconds`: one year.
pub const JOB_CPU_SECONDS_MAX: u64 = 366 * 24 * 3600;

/// Lowest `[jobs] address_space_bytes` other than 0: 64 MiB, below which nothing starts.
pub const JOB_ADDRESS_SPACE_BYTES_MIN: u64 = 64 * 1024 * 1024;

/// Highest `[jobs] address_space_bytes`: 1 TiB.
pub const JOB_ADDRESS_SPACE_BYTES_MAX: u64 = 1 << 40;

/// Highest `[jobs] open_files`.
pub const JOB_OPEN_FILES_MAX: u64 = 1 << 20;

/// Highest `[jobs] processes`.
pub const JOB_PROCESSES_MAX: u64 = 1 << 22;

/// `[[jobs.queue]]` rules.
pub const JOB_QUEUE_RULES_MAX: usize = 256;

/// Programs one rule's `executables` may list.
pub const JOB_EXECUTABLES_MAX: usize = 256;

/// Bytes of one entry of `executables`.
pub const JOB_EXECUTABLE_BYTES_MAX: usize = 4096;

/// Default `[cluster] connection_idle_ms`: a connection that sends nothing for 2 minutes is
/// closed.
pub const CONNECTION_IDLE_MS_DEFAULT: u64 = 120_000;

/// Lowest `connection_idle_ms`.
pub const CONNECTION_IDLE_MS_MIN: u64 = 1_000;

/// Highest `connection_idle_ms`: one hour.
pub const CONNECTION_IDLE_MS_MAX: u64 = 3_600_000;

/// Long-poll leases one node keeps waiting at once; one more is refused with
/// RESOURCE_EXHAUSTED (the worker backs off and retries), so parked streams can't pile up.
pub const LEASE_WAITERS_MAX: usize = 1_024;

/// Empty leases in a row after which a long-poll waits for a change that comes after its
/// last lease. Until then it looks again at every change, also one applied while its lease
/// was in flight (a job that arrived as it lost a race for another); past it, a replica that
/// still shows jobs its leader has leased out proposes once per new change, not per apply.
pub const LEASE_EMPTY_IN_A_ROW_MAX: u32 = 3;

/// Bytes of a token id (16 hex digits today).
pub const TOKEN_ID_BYTES_MAX: usize = 64;

/// Accepted API writes the audit keeps (`raftline audit list`); the oldest go first.
pub const AUDIT_RECORDS_MAX: usize = 10_000;

/// Runs of consecutive job ids by one submitter the audit keeps for `job get`.
pub const AUDIT_RUNS_MAX: usize = 100_000;

/// `/ready` answers 503 while a node has more than this many log entries not yet applied.
pub const READY_APPLY_LAG_MAX: u64 = 1_000;

/// Bytes of large messages (over `PEER_BUDGET_FROM_BYTES`) one node receives on its peer port
/// at once (`server/peer_budget.rs`): twice the largest message, so a catch-up batch and a
/// snapshot chunk fit together.
pub const PEER_INFLIGHT_BYTES_MAX: usize = 2 * PEER_MESSAGE_BYTES_MAX;

/// Peer messages up to this size never wait for the budget (votes, heartbeats, steady appends).
pub const PEER_BUDGET_FROM_BYTES: u64 = 1 << 20;

/// Longest wait of a large peer message for room in the budget before RESOURCE_EXHAUSTED.
pub const PEER_BUDGET_WAIT_MS: u64 = 10_000;

/// How long `snapshot save` waits for the node to take a snapshot at the read index.
pub const BACKUP_SNAPSHOT_MS_MAX: u64 = 10 * 60 * 1000;
/// Size of one chunk of a streamed backup (`SaveSnapshot`).
pub const BACKUP_CHUNK_BYTES: usize = 1 << 20;
const _: () = assert!(BACKUP_CHUNK_BYTES < API_MESSAGE_BYTES_MAX);

/// Longest description an audited operation (`Command::Operation`) carries.
pub const OPERATION_TARGET_BYTES_MAX: usize = 512;

/// Webhooks the cluster holds (`raftline webhook create`).
pub const WEBHOOKS_MAX: usize = 64;
/// Topics one webhook subscribes to.
pub const WEBHOOK_TOPICS_MAX: usize = 32;
/// Bytes of a webhook's URL.
pub const WEBHOOK_URL_BYTES_MAX: usize = 2_048;
/// Bytes of a webhook's signing secret: at least this many ...
pub const WEBHOOK_SECRET_BYTES_MIN: usize = 16;
/// ... and at most this many.
pub const WEBHOOK_SECRET_BYTES_MAX: usize = 256;
/// Attempts of one delivery when the webhook names none.
pub const WEBHOOK_ATTEMPTS_DEFAULT: u32 = 3;
/// Most attempts a webhook may ask for per delivery.
pub const WEBHOOK_ATTEMPTS_MAX: u32 = 10;
/// Deliveries waiting to be made, over every webhook: an event that finds the outbox full is
/// not queued and counted in its webhook's `dropped` (a receiver down for hours can't grow the
/// replicated state without bound).
pub const WEBHOOK_PENDING_MAX: usize = 10_000;
/// Ended deliveries (delivered or failed) kept per webhook for `webhook deliveries`.
pub const WEBHOOK_LOG_MAX: usize = 100;
/// Wait before the second attempt of a delivery; each later one waits 5 times longer ...
pub const WEBHOOK_BACKOFF_MS: u64 = 1_000;
/// ... up to this long.
pub const WEBHOOK_BACKOFF_MS_MAX: u64 = 300_000;
/// How long one POST may take (connect, send, answer) before it counts as failed.
pub const WEBHOOK_TIMEOUT_MS: u64 = 10_000;
/// POSTs the leader has in flight at once, over every webhook.
pub const WEBHOOK_IN_FLIGHT_MAX: usize = 32;
/// Bytes of a failed attempt's error kept in the delivery log.
pub const WEBHOOK_ERROR_BYTES_MAX: usize = 512;
/// Bytes of an emitted event's payload a delivery carries (base64); a larger one is left out
/// and only its size is given.
pub const WEBHOOK_PAYLOAD_BYTES_MAX: usize = 4 * 1024;

/// Cursors the cluster holds (`PutCursor`): positions of importers and other clients that
/// read an outside source; each is a few hundred bytes, so the whole map stays under 50 MB.
pub const CURSORS_MAX: usize = 10_000;
/// Bytes of a cursor's name (printable ASCII): room for `import:redis:HOST:PORT/DB:SOURCE`
/// with a source key of `SOURCE_KEY_BYTES_MAX` (160) and a long host name.
pub const CURSOR_NAME_BYTES_MAX: usize = 512;
/// Bytes of a cursor's value: a position (a Stream entry id, an offset and a digest), not data.
pub const CURSOR_VALUE_BYTES_MAX: usize = 4 * 1024;
const _: () = assert!(
    CURSORS_MAX * (CURSOR_NAME_BYTES_MAX + CURSOR_VALUE_BYTES_MAX) < API_MESSAGE_BYTES_MAX * 16
);

/// A leader that has not heard a member answer its heartbeats for this long reports it down
/// (`node.down`); it must itself have led this long first.
pub const NODE_DOWN_MS: u64 = 5_000;
