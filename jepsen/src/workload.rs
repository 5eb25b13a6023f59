//! Workloads: client processes that drive the cluster and record every operation.
//!
//! - `queue`: submitters add jobs with unique payload values (external jobs, so only these
//!   workers run them); workers lease batches, and sometimes crash holding a lease (the job
//!   must come back) or complete after their lease expired (the completion must be refused);
//!   at the end the queue is drained and every job read back.
//! - `reads`: `queue` plus readers that read known jobs, and the queue's job count,
//!   linearizably through every node, including nodes on the minority side of a partition.
//!
//! - `lock`: lock clients acquire the one-unit resource `LOCK` through the nodes in turn (with
//!   a short ttl and a bounded wait), write to a fenced register with the token they were
//!   granted (the register, kept by the harness like the storage a lock protects, accepts a
//!   write only with a token at least the largest it has seen), sometimes hold past the ttl,
//!   then release. The checker wants grant tokens increasing in real-time order and never one
//!   token for two owners.
//!
//! - `cron`: a schedule firing every second with `catch_up = all`; after healing, every tick of
//!   the checked window must have exactly one run (a job keyed `schedule:ID:TICK`).
//!
//! Every client talks to one node at a time (no client-side failover), so a request to a
//! node cut off from the majority exercises that node's forwarding and read-index paths.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftline::client::Client;
use raftline::proto::pb;
use raftline::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cluster::NodeSpec;
use crate::history::{Grant, Kind, Op, Recorder};

/// Queue every workload job goes to.
pub const QUEUE: &str = "jepsen";
/// Lease ttl of workload jobs: short, so crashed workers' jobs come back during the test.
pub const LEASE_TTL_MS: u64 = 2_000;
/// Bound on one client call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared state of the client processes.
pub struct Ctx {
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    /// The history.
    pub rec: Arc<Recorder>,
    /// Set to stop the processes.
    pub stop: AtomicBool,
    /// Set while draining: workers no longer crash or dawdle.
    pub draining: AtomicBool,
    /// Set to stop the submitters (before draining).
    pub stop_submitting: AtomicBool,
    /// Next unique payload value.
    next_value: AtomicU64,
    /// Ids of acknowledged jobs, for readers.
    known: Mutex<Vec<u64>>,
    /// Seed of the processes' choices.
    seed: u64,
    /// One client per node (index = node id - 1).
    clients: Vec<Arc<Client>>,
    /// The fenced register of the lock workload: resource -> largest token accepted.
    register: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Ctx {
    /// A context over `nodes`, recording into `rec`.
    pub fn new(
        nodes: Vec<NodeSpec>,
        access: &raftline::client::Access,
        rec: Arc<Recorder>,
        seed: u64,
    ) -> Arc<Ctx> {
        let clients: Vec<Arc<Client>> = nodes
            .iter()
            .map(|n| Arc::new(Client::with_access(&[n.api()], access).expect("client")))
            .collect();
        Arc::new(Ctx {
            nodes,
            rec,
            stop: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stop_submitting: AtomicBool::new(false),
            next_value: AtomicU64::new(1),
            known: Mutex::new(Vec::new()),
            seed,
            clients,
            register: Mutex::new(std::collections::BTreeMap::new()),
        })
    }

    fn client(&self, node: &NodeSpec) -> Arc<Client> {
        self.clients[(node.id - 1) as usize].clone()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn rng(&self, process: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ process.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

/// How a call ended, for the history: ok, fail (did not happen) or info (unknown).
fn outcome<T>(r: &Result<Result<T, Error>, tokio::time::error::Elapsed>) -> Kind {
    match r {
        Ok(Ok(_)) => Kind::Ok,
        Ok(Err(Error::InvalidArgument { .. }))
        | Ok(Err(Error::NotFound(_)))
        | Ok(Err(Error::FailedPrecondition(_)))
        | Ok(Err(Error::ResourceExhausted(_))) => Kind::Fail,
        Ok(Err(Error::Unavailable { message, .. })) if message.contains("nothing was written") => {
            Kind::Fail
        }
        _ => Kind::Info,
    }
}

/// A submitter: adds jobs until stopped.
pub async fn submitter(ctx: Arc<Ctx>, process: u64) {
    let mut i = process as usize;
    while !ctx.stopped() && !ctx.stop_submitting.load(Ordering::Relaxed) {
        let node = &ctx.nodes[i % ctx.nodes.len()];
        i += 1;
        let value = ctx.next_value.fetch_add(1, Ordering::Relaxed);
        ctx.rec
            .invoke(process, Some(node.id), Op::Submit { value, job: None });
        let req = pb::SubmitRequest {
            queue: QUEUE.into(),
            kind: Some(pb::submit_request::Kind::Payload(
                value.to_string().into_bytes(),
            )),
            max_attempts: 100,
            lease_ttl_ms: LEASE_TTL_MS,
            backoff: Some(pb::Backoff {
                base_ms: 50,
                factor: 2,
                cap_ms: 500,
                no_jitter: false,
            }),
            ..Default::default()
        };
        let r = tokio::time::timeout(CALL_TIMEOUT, ctx.client(node).submit(req)).await;
        let kind = outcome(&r);
        let job = match &r {
            Ok(Ok(id)) => Some(*id),
            _ => None,
        };
        if let Some(id) = job {
            ctx.known.lock().expect("known").push(id);
        }
        ctx.rec
            .complete(process, Some(node.id), kind, Op::Submit { value, job });
        let pause = if kind == Kind::Ok { 20 } else { 50 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

fn value_of(job: &pb::Job) -> u64 {
    match &job.kind {
        Some(pb::job::Kind::Payload(p)) => String::from_utf8_lossy(p).parse().unwrap_or(0),
        _ => 0,
    }
}

/// Completions a worker may have in flight before it waits to lease more.
const WORKER_INFLIGHT_MAX: usize = 16;

/// A worker: leases, then completes, crashes holding the lease, or completes too late.
/// Completions run concurrently with further leases, as in a real worker pool.
pub async fn worker(ctx: Arc<Ctx>, process: u64) {
    let mut rng = ctx.rng(process);
    let worker_id = format!("jepsen-{process}");
    let mut inflight = tokio::task::JoinSet::new();
    let mut i = process as usize;
    let mut sub = 0;
    while !ctx.stopped() {
        while inflight.len() >= WORKER_INFLIGHT_MAX {
            inflight.join_next().await;
        }
        while inflight.try_join_next().is_some() {}
        let node = ctx.nodes[i % ctx.nodes.len()].clone();
        i += 1;
        let client = ctx.client(&node);
        ctx.rec
            .invoke(process, Some(node.id), Op::Lease { grants: Vec::new() });
        let req = pb::LeaseRequest {
            worker_id: worker_id.clone(),
            queues: vec![QUEUE.into()],
            max: 8,
            wait_ms: 500,
            ..Default::default()
        };
        let r = tokio::time::timeout(CALL_TIMEOUT, client.lease(req)).await;
        let kind = outcome(&r);
        let grants: Vec<Grant> = match &r {
            Ok(Ok(reply)) => reply
                .jobs
                .iter()
                .filter_map(|l| {
                    let job = l.job.as_ref()?;
                    Some(Grant {
                        job: job.id,
                        token: l.token,
                        value: value_of(job),
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        ctx.rec.complete(
            process,
            Some(node.id),
            kind,
            Op::Lease {
                grants: grants.clone(),
            },
        );
        if kind != Kind::Ok {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let draining = ctx.draining.load(Ordering::Relaxed);
        for grant in grants {
            let roll: f64 = rng.random();
            if !draining && roll < 0.1 {
                continue; // crash holding the lease: it must expire and the job come back
            }
            // Work takes a while; one grant in ten finishes after its lease expired, while the
            // job may already be held by another worker (its completion must be refused).
            let work_ms = if draining {
                0
            } else if roll < 0.2 {
                LEASE_TTL_MS + rng.random_range(300..2_000)
            } else {
                rng.random_range(100..1_200)
            };
            // Each completion is its own process in the history (one operation in flight each).
            sub += 1;
            let id = process * 1_000_000 + sub;
            let (ctx, node, client) = (ctx.clone(), node.clone(), client.clone());
            inflight.spawn(async move {
                tokio::time::sleep(Duration::from_millis(work_ms)).await;
                complete(&ctx, id, &node, &client, grant).await;
            });
        }
    }
    while inflight.join_next().await.is_some() {}
}

async fn complete(ctx: &Ctx, process: u64, node: &NodeSpec, client: &Client, g: Grant) {
    let op = Op::Complete {
        job: g.job,
        token: g.token,
        value: g.value,
    };
    ctx.rec.invoke(process, Some(node.id), op.clone());
    let report = raftline::machine::Report {
        error_class: None,
        exit_code: None,
        error: String::new(),
        output_tail: String::new(),
    };
    let r = tokio::time::timeout(CALL_TIMEOUT, client.complete(g.job, g.token, &report)).await;
    ctx.rec.complete(process, Some(node.id), outcome(&r), op);
}

/// A reader: reads known jobs through every node in turn.
pub async fn reader(ctx: Arc<Ctx>, process: u64) {
    let mut rng = ctx.rng(process);
    let mut i = process as usize;
    while !ctx.stopped() {
        let job = {
            let known = ctx.known.lock().expect("known");
            if known.is_empty() {
                None
            } else {
                Some(known[rng.random_range(0..known.len())])
            }
        };
        let Some(job) = job else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let node = &ctx.nodes[i % ctx.nodes.len()];
        i += 1;
        if rng.random_bool(0.2) {
            count_read(&ctx, process, node).await;
            continue;
        }
        ctx.rec.invoke(
            process,
            Some(node.id),
            Op::Read {
                job,
                value: None,
                state: None,
            },
        );
        let r = tokio::time::timeout(CALL_TIMEOUT, ctx.client(node).job(job, false)).await;
        let (kind, value, state) = match &r {
            Ok(Ok(j)) => (Kind::Ok, Some(value_of(j)), Some(j.state.clone())),
            Ok(Err(Error::NotFound(_))) => (Kind::Ok, None, None),
            _ => (Kind::Fail, None, None),
        };
        ctx.rec
            .complete(process, Some(node.id), kind, Op::Read { job, value, state });
        if kind != Kind::Ok {
            // A node that is down refuses at once: do not spin on it.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads the queue's job count through `node` (linearizable).
async fn count_read(ctx: &Ctx, process: u64, node: &NodeSpec) {
    let op = |total| Op::CountRead {
        queue: QUEUE.into(),
        total,
    };
    ctx.rec.invoke(process, Some(node.id), op(None));
    let r = tokio::time::timeout(CALL_TIMEOUT, ctx.client(node).queue(QUEUE, false)).await;
    match r {
        Ok(Ok(q)) => {
            let total = q.scheduled + q.ready + q.leased + q.succeeded + q.dead + q.cancelled;
            ctx.rec
                .complete(process, Some(node.id), Kind::Ok, op(Some(total)));
        }
        _ => {
            ctx.rec
                .complete(process, Some(node.id), Kind::Fail, op(None));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads every job of the queue back (linearizable, paged) as `FinalRead` observations.
pub async fn final_reads(ctx: &Ctx, client: &Client, process: u64) -> Result<usize, String> {
    let mut after = 0;
    let mut count = 0;
    loop {
        let req = pb::ListJobsRequest {
            queue: QUEUE.into(),
            after_id: after,
            limit: 1000,
            ..Default::default()
        };
        let jobs = client.list_jobs(req).await.map_err(|e| e.to_string())?;
        let Some(last) = jobs.last() else {
            return Ok(count);
        };
        after = last.id;
        for j in &jobs {
            let succeeded = j
                .attempts
                .iter()
                .filter(|a| a.result == "succeeded")
                .count();
            ctx.rec.complete(
                process,
                None,
                Kind::Ok,
                Op::FinalRead {
                    job: j.id,
                    value: value_of(j),
                    state: j.state.clone(),
                    attempts_succeeded: succeeded as u32,
                },
            );
            count += 1;
        }
    }
}

/// Waits until the queue has nothing scheduled, ready or leased, up to `timeout`.
pub async fn drained(client: &Client, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(q) = client.queue(QUEUE, false).await {
            if q.scheduled + q.ready + q.leased == 0 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The resource the lock workload contends for (capacity 1).
pub const LOCK: &str = "jepsen-lock";
/// Lock ttl of the lock workload: short, so holders lose locks they hold too long.
pub const LOCK_TTL_MS: u64 = 1_500;

/// Creates the lock workload's resource, retrying through the nodes until `timeout`.
pub async fn create_lock(ctx: &Ctx, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    for node in ctx.nodes.iter().cycle() {
        if Instant::now() > deadline {
            return Err(format!("could not create {LOCK}: {last}"));
        }
        match tokio::time::timeout(CALL_TIMEOUT, ctx.client(node).set_resource(LOCK, 1)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A write to the fenced register: accepted when `token` is at least the largest seen.
fn fenced_write(ctx: &Ctx, process: u64, node: u64, token: u64, value: u64) {
    let op = Op::FencedWrite {
        resource: LOCK.into(),
        token,
        value,
    };
    ctx.rec.invoke(process, Some(node), op.clone());
    let accepted = {
        let mut register = ctx.register.lock().expect("register");
        let newest = register.entry(LOCK.to_string()).or_insert(0);
        if token >= *newest {
            *newest = token;
            true
        } else {
            false
        }
    };
    let kind = if accepted { Kind::Ok } else { Kind::Fail };
    ctx.rec.complete(process, Some(node), kind, op);
}

/// A lock client: acquire (waiting up to a second), write with the token, hold a while
/// (sometimes past the ttl), write again, release.
pub async fn locker(ctx: Arc<Ctx>, process: u64) {
    let mut rng = ctx.rng(process);
    let owner = format!("locker-{process}");
    let mut i = process as usize;
    while !ctx.stopped() {
        let node = ctx.nodes[i % ctx.nodes.len()].clone();
        i += 1;
        let client = ctx.client(&node);
        let acquire = |token| Op::Acquire {
            resource: LOCK.into(),
            owner: owner.clone(),
            token,
        };
        ctx.rec.invoke(process, Some(node.id), acquire(None));
        let req = pb::AcquireLockRequest {
            resource: LOCK.into(),
            owner: owner.clone(),
            ttl_ms: LOCK_TTL_MS,
            wait_ms: 1_000,
        };
        let r = tokio::time::timeout(CALL_TIMEOUT, client.acquire_lock(req)).await;
        let kind = outcome(&r);
        let token = match &r {
            Ok(Ok(g)) => Some(g.token),
            _ => None,
        };
        ctx.rec
            .complete(process, Some(node.id), kind, acquire(token));
        let Some(token) = token else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..200))).await;
            continue;
        };
        let value = ctx.next_value.fetch_add(1, Ordering::Relaxed);
        fenced_write(&ctx, process, node.id, token, value);
        // One hold in five runs past the ttl: the lock expires under its holder.
        let hold = if rng.random_bool(0.2) {
            LOCK_TTL_MS + rng.random_range(200..1_000)
        } else {
            rng.random_range(10..400)
        };
        tokio::time::sleep(Duration::from_millis(hold)).await;
        let value = ctx.next_value.fetch_add(1, Ordering::Relaxed);
        fenced_write(&ctx, process, node.id, token, value);
        let release = Op::Release {
            resource: LOCK.into(),
            token,
        };
        ctx.rec.invoke(process, Some(node.id), release.clone());
        let r = tokio::time::timeout(CALL_TIMEOUT, client.release_lock(LOCK, token)).await;
        ctx.rec
            .complete(process, Some(node.id), outcome(&r), release);
    }
}

/// Queue of the cron workload's runs (external jobs nobody leases: a run is its creation).
pub const CRON_QUEUE: &str = "jepsen-cron";

/// Creates the cron workload's schedule: every second, `catch_up = all:1000`. Returns its id and
/// first tick.
pub async fn create_cron(ctx: &Ctx, timeout: Duration) -> Result<(u64, u64), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    for node in ctx.nodes.iter().cycle() {
        if Instant::now() > deadline {
            return Err(format!("could not create the schedule: {last}"));
        }
        let req = pb::CreateScheduleRequest {
            name: "jepsen-cron".into(),
            cron: "* * * * * *".into(),
            tz: "UTC".into(),
            target: Some(pb::create_schedule_request::Target::Job(
                pb::SubmitRequest {
                    queue: CRON_QUEUE.into(),
                    kind: Some(pb::submit_request::Kind::Payload(b"tick".to_vec())),
                    ..Default::default()
                },
            )),
            catch_up: "all:1000".into(),
            overlap: "allow".into(),
            ..Default::default()
        };
        match tokio::time::timeout(CALL_TIMEOUT, ctx.client(node).create_schedule(req)).await {
            Ok(Ok(s)) => return Ok((s.id, s.next_fire_ms.unwrap_or(0))),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("no nodes".into())
}

/// After healing: pauses the schedule and records, for the window from its first tick to two
/// seconds before now, the ticks expected and every run (job) the cluster created for them,
/// read back from the jobs' `schedule:ID:TICK` keys.
pub async fn cron_reads(
    ctx: &Ctx,
    client: &Client,
    id: u64,
    first: u64,
    process: u64,
) -> Result<usize, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let window_end = now.saturating_sub(2_000);
    client
        .control_schedule(pb::ControlScheduleRequest {
            schedule: Some(pb::ScheduleRef {
                id,
                ..Default::default()
            }),
            op: "pause".into(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let schedule = format!("schedule-{id}");
    let mut expected = Vec::new();
    let mut tick = first;
    while tick <= window_end {
        expected.push(tick);
        tick += 1_000;
    }
    ctx.rec.complete(
        process,
        None,
        Kind::Ok,
        Op::CronExpect {
            schedule: schedule.clone(),
            ticks_ms: expected,
        },
    );
    let prefix = format!("schedule:{id}:");
    let mut after = 0;
    let mut runs = 0;
    loop {
        let req = pb::ListJobsRequest {
            queue: CRON_QUEUE.into(),
            after_id: after,
            limit: 1000,
            ..Default::default()
        };
        let jobs = client.list_jobs(req).await.map_err(|e| e.to_string())?;
        let Some(last) = jobs.last() else {
            return Ok(runs);
        };
        after = last.id;
        for j in &jobs {
            let Some(tick) = j
                .idempotency_key
                .strip_prefix(&prefix)
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            if tick > window_end {
                continue;
            }
            runs += 1;
            ctx.rec.complete(
                process,
                None,
                Kind::Ok,
                Op::CronRun {
                    schedule: schedule.clone(),
                    tick_ms: tick,
                    node: 0,
                    token: j.id,
                },
            );
        }
    }
}
