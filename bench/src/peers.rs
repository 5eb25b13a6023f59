//! The peers section: raftline beside etcd and NATS JetStream, on the same machine, in the same
//! run, from the binaries a user would install (Debian's `etcd-server` and `nats-server`).
//! Absolute figures on a shared machine move by a quarter from run to run; the ratios of one
//! run are the figure, so the systems take turns within each round (the first to run alternates
//! from round to round) and each ratio is the median of its per-round ratios.
//!
//! The shapes, system by system:
//!
//! - W1 durable submit, raftline: `Submit` of a 256 B payload job; one request in flight per
//!   client, clients spread over the three nodes. A reply means the job is committed: in the
//!   fdatasynced Raft log of a majority.
//! - W1 on etcd: `KV.Put` of a new key (`bench-w1/<n>`) with a 256 B value, the same closed
//!   loop, clients spread over the three members in the same way. A reply means the put is
//!   committed in a majority's WAL, which etcd fsyncs before it acknowledges (its default,
//!   left as it is). Same durability, same payload, same one-round-trip request: the pair is
//!   "a replicated, fsynced write of a small record", which is what a submit is.
//! - W2 end to end, raftline: `n` producers submit back to back; `n` workers each call
//!   `CompleteAndLease` (complete the previous batch, lease up to 16 more, waiting up to 200 ms
//!   when none is ready); jobs/s counts committed completions.
//! - W2 on NATS JetStream: a work-queue stream with file storage and 3 replicas, one durable
//!   pull consumer with explicit acks shared by the workers. `n` producers publish and wait for
//!   the stream's ack, back to back; `n` workers each fetch up to 16 ready messages (when none
//!   is ready, wait up to 200 ms for one, then take up to 15 more), then ack them all at once
//!   and wait for every ack to be confirmed (`double_ack`); jobs/s counts confirmed acks. The
//!   pair is "a queue that hands each job to one worker and forgets it when the worker says
//!   done", replicated three ways. NATS needs two or three round trips per batch where raftline's
//!   combined call needs one: that is its API, measured as users would call it.
//!
//! Durability is not the same in W2, and this favours NATS: JetStream acknowledges a publish
//! once a majority of the stream's replicas have written it to their files, which it fsyncs
//! on a timer (minutes apart by default; `sync_interval` in servers from 2.10, fixed in the
//! 2.9 that Debian ships), not per message; the bench keeps that default as a user would.
//! raftline fdatasyncs every log batch before it acknowledges, and so does etcd (W1).
//!
//! All three clusters run for the whole section (the idle ones only heartbeat), on 127.0.1.N
//! as raftline's are: etcd's client and peer ports are `base_port + 10` and `+ 11`, NATS's
//! client and route ports `+ 20` and `+ 21`. Processes are killed when the section ends or
//! fails or the bench is interrupted (kill on drop), and die with the bench if it is killed
//! (parent-death signal); their data lives in the run's temp dir.
//!
//! CAVEATS: the peers run with their defaults, untuned, as raftline does; the W2 latency of
//! NATS is publish-to-confirmed-ack, raftline's submit-to-committed-completion.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::stream::{RetentionPolicy, StorageType};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

use crate::{closed_loop, hist, micros, ms, w1, w2, Bench, Figure, Looped, PAYLOAD_BYTES};

/// Generated from `proto/etcdserverpb/kv.proto`: etcd's `KV.Put`, nothing else.
#[allow(missing_docs, clippy::all, clippy::too_many_lines)]
mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
use etcdserverpb::kv_client::KvClient;
use etcdserverpb::PutRequest;

/// Port offsets from `--base-port` (raftline's nodes use `base_port..base_port + 3`).
const ETCD_PORT_OFFSET: u16 = 10;
const NATS_PORT_OFFSET: u16 = 20;
/// How long a peer cluster may take to elect a leader and answer.
const READY_WAIT: Duration = Duration::from_secs(60);
/// Bound on one request to a peer, as raftline's `request_timeout_ms`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A W2 worker's batch and its wait for work, as raftline's W2 workers lease.
const LEASE_MAX: usize = 16;
const LEASE_WAIT: Duration = Duration::from_millis(200);
/// Unacknowledged messages the NATS consumer may hand out: above 64 workers x 16, so NATS's
/// default (1000) does not throttle the 64-worker run where raftline has no such cap.
const NATS_ACK_PENDING_MAX: i64 = 10_000;

/// The ratios of the final line, in its order: raftline's figure over the peer's.
const RATIOS: [&str; 6] = [
    "w1_c1_vs_etcd",
    "w1_c1_p50_vs_etcd",
    "w1_c64_vs_etcd",
    "w2_c1_vs_nats",
    "w2_c16_vs_nats",
    "w2_c64_vs_nats",
];

/// The processes of one peer cluster, killed and reaped when dropped.
struct Procs {
    children: Vec<Child>,
}

impl Procs {
    /// Starts `cmd` with its output written to `log`. The child gets SIGKILL if the bench
    /// dies first; call this from the main task (a parent-death signal follows the spawning
    /// thread, and tokio's worker threads are not the main thread).
    fn spawn(&mut self, mut cmd: Command, log: &Path) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe and touches only the child's own state.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("starting {cmd:?}: {e}"))?;
        self.children.push(child);
        Ok(())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The binary `name` on the PATH, or in the sbin directories Debian installs servers to
/// (`nats-server` goes to /usr/sbin, which a user's PATH may lack).
fn installed(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The last lines of a peer's log, for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// A 3-member etcd cluster and a KV client per member.
struct Etcd {
    kv: Vec<KvClient<Channel>>,
    keys: Arc<AtomicU64>,
    _procs: Procs,
}

impl Etcd {
    async fn start(bin: PathBuf, dir: &Path, base_port: u16) -> Result<Etcd, String> {
        let client_port = base_port + ETCD_PORT_OFFSET;
        let peer_port = client_port + 1;
        let url = |i: u64, port: u16| format!("http://127.0.1.{i}:{port}");
        let initial: Vec<String> = (1..=3)
            .map(|i| format!("e{i}={}", url(i, peer_port)))
            .collect();
        let mut procs = Procs {
            children: Vec::new(),
        };
        for i in 1..=3 {
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--name=e{i}"))
                .arg(format!(
                    "--data-dir={}",
                    dir.join(format!("etcd-{i}")).display()
                ))
                .arg(format!("--listen-client-urls={}", url(i, client_port)))
                .arg(format!("--advertise-client-urls={}", url(i, client_port)))
                .arg(format!("--listen-peer-urls={}", url(i, peer_port)))
                .arg(format!(
                    "--initial-advertise-peer-urls={}",
                    url(i, peer_port)
                ))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=raftline-bench");
            procs.spawn(cmd, &dir.join(format!("etcd-{i}.log")))?;
        }
        let mut kv = Vec::new();
        for i in 1..=3 {
            let channel = Endpoint::from_shared(url(i, client_port))
                .map_err(|e| e.to_string())?
                .timeout(REQUEST_TIMEOUT)
                .connect_lazy();
            kv.push(KvClient::new(channel));
        }
        // Ready when every member has answered a committed put.
        let deadline = Instant::now() + READY_WAIT;
        for (i, client) in kv.iter().enumerate() {
            let ready = PutRequest {
                key: b"bench-ready".to_vec(),
                ..Default::default()
            };
            while let Err(e) = client.clone().put(ready.clone()).await {
                if Instant::now() > deadline {
                    let log = dir.join(format!("etcd-{}.log", i + 1));
                    return Err(format!(
                        "member {} not ready: {e}\n{}",
                        i + 1,
                        log_tail(&log)
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(Etcd {
            kv,
            keys: Arc::default(),
            _procs: procs,
        })
    }

    /// W1 on etcd: a put of a new key with a job-sized value per request. The figure, and its
    /// record for results.jsonl.
    async fn w1(&self, clients: usize, secs: u64) -> (Figure, serde_json::Value) {
        let (kv, keys) = (self.kv.clone(), self.keys.clone());
        let Looped { rate, hist, errors } = closed_loop(clients, secs, move |c| {
            let mut kv = kv[c % kv.len()].clone();
            let key = format!("bench-w1/{:012}", keys.fetch_add(1, Ordering::Relaxed));
            async move {
                let put = PutRequest {
                    key: key.into_bytes(),
                    value: vec![b'x'; PAYLOAD_BYTES],
                    ..Default::default()
                };
                kv.put(put).await.is_ok()
            }
        })
        .await;
        println!(
            "etcd W1 put clients {clients:>3}  {rate:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  errors {errors}",
            ms(&hist, 0.5),
            ms(&hist, 0.99),
            hist.max() as f64 / 1000.0,
        );
        let record = serde_json::json!({
            "section": "peers-etcd-w1", "clients": clients, "ops_per_s": rate,
            "p50_ms": ms(&hist, 0.5), "p99_ms": ms(&hist, 0.99), "errors": errors,
        });
        let figure = Figure {
            rate,
            p50_ms: ms(&hist, 0.5),
        };
        (figure, record)
    }
}

/// A 3-server NATS cluster with JetStream, and a JetStream context per server.
struct Nats {
    js: Vec<jetstream::Context>,
    _procs: Procs,
}

impl Nats {
    async fn start(bin: PathBuf, dir: &Path, base_port: u16) -> Result<Nats, String> {
        let client_port = base_port + NATS_PORT_OFFSET;
        let route_port = client_port + 1;
        let routes: Vec<String> = (1..=3)
            .map(|i| format!("\"nats-route://127.0.1.{i}:{route_port}\""))
            .collect();
        let mut procs = Procs {
            children: Vec::new(),
        };
        for i in 1..=3 {
            let conf = dir.join(format!("nats-{i}.conf"));
            let text = format!(
                "server_name: n{i}\nlisten: \"127.0.1.{i}:{client_port}\"\n\
                 jetstream {{\n  store_dir: \"{}\"\n}}\n\
                 cluster {{\n  name: raftline-bench\n  listen: \"127.0.1.{i}:{route_port}\"\n  \
                 routes: [{}]\n}}\n",
                dir.join(format!("nats-{i}")).display(),
                routes.join(", ")
            );
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(&bin);
            cmd.arg("-c").arg(&conf);
            procs.spawn(cmd, &dir.join(format!("nats-{i}.log")))?;
        }
        let deadline = Instant::now() + READY_WAIT;
        let mut js = Vec::new();
        for i in 1..=3 {
            let addr = format!("127.0.1.{i}:{client_port}");
            let client = loop {
                let connecting = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(1))
                    .request_timeout(Some(REQUEST_TIMEOUT))
                    .connect(addr.as_str());
                match connecting.await {
                    Ok(c) => break c,
                    Err(e) if Instant::now() > deadline => {
                        let log = log_tail(&dir.join(format!("nats-{i}.log")));
                        return Err(format!("server {i} refused connections: {e}\n{log}"));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            js.push(jetstream::new(client));
        }
        // Ready when the JetStream meta group has a leader and can place an R3 stream.
        let probe = stream_config("BENCH_READY");
        while let Err(e) = js[0].create_stream(probe.clone()).await {
            if Instant::now() > deadline {
                return Err(format!(
                    "JetStream not ready: {e}\n{}",
                    log_tail(&dir.join("nats-1.log"))
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = js[0].delete_stream("BENCH_READY").await;
        Ok(Nats { js, _procs: procs })
    }

    /// W2 on NATS: `n` publishers and `n` workers on a fresh stream `name`, removed after. The
    /// figure, and its record for results.jsonl.
    async fn w2(
        &self,
        n: usize,
        secs: u64,
        name: &str,
    ) -> Result<(Figure, serde_json::Value), String> {
        let subject = format!("bench.{name}");
        let stream = self.js[0]
            .create_stream(stream_config(name))
            .await
            .map_err(|e| format!("create stream {name}: {e}"))?;
        let consumer = pull::Config {
            durable_name: Some("workers".into()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: NATS_ACK_PENDING_MAX,
            ..Default::default()
        };
        stream
            .create_consumer(consumer)
            .await
            .map_err(|e| format!("create consumer on {name}: {e}"))?;
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let hist = Arc::new(Mutex::new(hist()));
        let (done, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut tasks = Vec::new();
        for p in 0..n {
            let js = self.js[p % self.js.len()].clone();
            let (stop, errors, subject) = (stop.clone(), errors.clone(), subject.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if !publish(&js, &subject, epoch).await {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for w in 0..n {
            let js = self.js[(w + 1) % self.js.len()].clone();
            let (stop, hist, done) = (stop.clone(), hist.clone(), done.clone());
            let name = name.to_string();
            tasks.push(tokio::spawn(async move {
                let Ok(consumer) = consumer_of(&js, &name).await else {
                    return;
                };
                while !stop.load(Ordering::Relaxed) {
                    let (acked, latencies) = take_and_ack(&consumer, epoch).await;
                    done.fetch_add(acked, Ordering::Relaxed);
                    let mut h = hist.lock().expect("hist");
                    for l in latencies {
                        h.record(l.max(1)).ok();
                    }
                }
            }));
        }
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        let _ = self.js[0].delete_stream(name).await;
        let h: Histogram<u64> = hist.lock().expect("hist").clone();
        let rate = done.load(Ordering::Relaxed) as f64 / elapsed;
        let errors = errors.load(Ordering::Relaxed);
        println!(
            "NATS W2 e2e clients {n:>3}  {rate:>9.0} jobs/s  publish->acked p50 {:>7.2} ms  p99 {:>7.2} ms  publish errors {errors}",
            ms(&h, 0.5),
            ms(&h, 0.99)
        );
        let record = serde_json::json!({
            "section": "peers-nats-w2", "clients": n, "jobs_per_s": rate,
            "p50_ms": ms(&h, 0.5), "p99_ms": ms(&h, 0.99), "publish_errors": errors,
        });
        let figure = Figure {
            rate,
            p50_ms: ms(&h, 0.5),
        };
        Ok((figure, record))
    }
}

/// A work-queue stream with file storage on 3 replicas, taking `bench.<name>`.
fn stream_config(name: &str) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: name.into(),
        subjects: vec![format!("bench.{name}")],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        num_replicas: 3,
        ..Default::default()
    }
}

async fn consumer_of(js: &jetstream::Context, stream: &str) -> Result<PullConsumer, String> {
    let stream = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    stream
        .get_consumer("workers")
        .await
        .map_err(|e| e.to_string())
}

/// One job: a 256 B message stamped with its publish time (µs since `epoch`), published and
/// acknowledged by the stream. False on any error.
async fn publish(js: &jetstream::Context, subject: &str, epoch: Instant) -> bool {
    let mut payload = vec![b'x'; PAYLOAD_BYTES];
    payload[..8].copy_from_slice(&micros(epoch.elapsed()).to_le_bytes());
    match js.publish(subject.to_string(), payload.into()).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

/// Up to `max` messages from one pull request, `wait` long at most (zero: only those ready).
async fn pull(consumer: &PullConsumer, max: usize, wait: Duration) -> Vec<jetstream::Message> {
    let batch = if wait.is_zero() {
        consumer.fetch().max_messages(max).messages().await
    } else {
        consumer
            .batch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await
    };
    let Ok(mut batch) = batch else {
        return Vec::new();
    };
    let mut got = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(REQUEST_TIMEOUT, batch.next()).await {
        got.push(m);
    }
    got
}

/// One worker step: take up to 16 ready messages (or wait up to 200 ms for one and take the
/// ones ready with it), ack them all and wait for the confirmations. The confirmed count, and
/// each confirmed job's publish-to-ack latency in µs.
async fn take_and_ack(consumer: &PullConsumer, epoch: Instant) -> (u64, Vec<u64>) {
    let mut got = pull(consumer, LEASE_MAX, Duration::ZERO).await;
    if got.is_empty() {
        got = pull(consumer, 1, LEASE_WAIT).await;
        if !got.is_empty() {
            got.extend(pull(consumer, LEASE_MAX - 1, Duration::ZERO).await);
        }
    }
    let acks = futures::future::join_all(got.iter().map(|m| m.double_ack())).await;
    let now = micros(epoch.elapsed());
    let latencies: Vec<u64> = got
        .iter()
        .zip(&acks)
        .filter(|(_, a)| a.is_ok())
        .filter_map(|(m, _)| m.payload.get(..8)?.try_into().ok())
        .map(|stamp| now.saturating_sub(u64::from_le_bytes(stamp)))
        .collect();
    (acks.iter().filter(|a| a.is_ok()).count() as u64, latencies)
}

/// Awaits `a` and `b` one after the other, `a` first when `a_first`.
async fn in_turn<A, B>(
    a_first: bool,
    a: impl Future<Output = A>,
    b: impl Future<Output = B>,
) -> (A, B) {
    if a_first {
        let x = a.await;
        (x, b.await)
    } else {
        let y = b.await;
        (a.await, y)
    }
}

/// Starts a peer from its installed binary, or says why it is skipped.
async fn start_peer<P, F>(
    name: &str,
    bin: &str,
    apt: &str,
    start: impl FnOnce(PathBuf) -> F,
) -> Option<P>
where
    F: Future<Output = Result<P, String>>,
{
    let Some(path) = installed(bin) else {
        println!("peers      {name}: `{bin}` is not installed (apt-get install -y {apt}); skipped, its ratios print n/a");
        return None;
    };
    match start(path).await {
        Ok(p) => Some(p),
        Err(e) => {
            println!("peers      {name}: did not start, skipped: {e}");
            None
        }
    }
}

/// Per-round ratios, by name.
type Ratios = BTreeMap<&'static str, Vec<f64>>;

/// One round: each shape on raftline and on its peer, in turn, raftline first in even rounds.
async fn round(
    b: &mut Bench,
    (etcd, nats): (Option<&Etcd>, Option<&Nats>),
    secs: u64,
    r: usize,
    ratios: &mut Ratios,
) {
    let ours_first = r.is_multiple_of(2);
    let first = if ours_first { "raftline" } else { "peers" };
    println!("peers      round {} of the section, {first} first", r + 1);
    for (c, key) in [(1, "w1_c1_vs_etcd"), (64, "w1_c64_vs_etcd")] {
        let theirs = async {
            match etcd {
                Some(e) => Some(e.w1(c, secs).await),
                None => None,
            }
        };
        let (ours, theirs) = in_turn(ours_first, w1(b, c, secs), theirs).await;
        if let Some((t, record)) = theirs {
            b.record(record);
            ratios.entry(key).or_default().push(ours.rate / t.rate);
            if c == 1 {
                let p50 = ours.p50_ms / t.p50_ms;
                ratios.entry("w1_c1_p50_vs_etcd").or_default().push(p50);
            }
        }
    }
    for (n, key) in [
        (1, "w2_c1_vs_nats"),
        (16, "w2_c16_vs_nats"),
        (64, "w2_c64_vs_nats"),
    ] {
        let queue = format!("bench-peers-w2-{n}-r{r}");
        let theirs = async {
            match nats {
                Some(p) => Some(p.w2(n, secs, &format!("W2_{n}_R{r}")).await),
                None => None,
            }
        };
        let (ours, theirs) = in_turn(ours_first, w2(b, n, secs, &queue), theirs).await;
        match theirs {
            Some(Ok((t, record))) => {
                b.record(record);
                ratios.entry(key).or_default().push(ours.rate / t.rate);
            }
            Some(Err(e)) => println!("NATS W2 e2e clients {n:>3}  failed: {e}"),
            None => {}
        }
    }
}

/// The median of `xs` (the mean of the middle two for an even count).
pub(crate) fn median(xs: &[f64]) -> Option<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[mid]),
        _ => Some((v[mid - 1] + v[mid]) / 2.0),
    }
}

/// The peers section: starts etcd and NATS (each skipped when missing), runs `rounds` rounds
/// of `secs`-second measurements, and ends with the `peers:` line of median ratios.
pub(crate) async fn run(b: &mut Bench, dir: &Path, base_port: u16, secs: u64, rounds: usize) {
    let etcd = start_peer("etcd", "etcd", "etcd-server etcd-client", |bin| {
        Etcd::start(bin, dir, base_port)
    })
    .await;
    let nats = start_peer("NATS", "nats-server", "nats-server", |bin| {
        Nats::start(bin, dir, base_port)
    })
    .await;
    let mut ratios = Ratios::new();
    for r in 0..rounds.max(1) {
        let mut within = serde_json::Map::new();
        within.insert("within".into(), "peers".into());
        within.insert("round".into(), r.into());
        b.within = Some(within);
        round(b, (etcd.as_ref(), nats.as_ref()), secs, r, &mut ratios).await;
    }
    b.within = None;
    let mut figures = Vec::new();
    for name in RATIOS {
        let per_round = ratios.get(name).map_or(&[][..], Vec::as_slice);
        let m = median(per_round);
        let each: Vec<String> = per_round.iter().map(|x| format!("{x:.2}")).collect();
        println!(
            "peers      {name:<18} raftline / peer per round [{}]  median {}",
            each.join(", "),
            m.map_or("n/a".into(), |m| format!("{m:.2}"))
        );
        figures.push(format!(
            "{name}={}",
            m.map_or("n/a".into(), |m| format!("{m:.2}"))
        ));
    }
    b.record(serde_json::json!({
        "section": "peers", "rounds": rounds, "ratios_per_round": ratios,
    }));
    println!("peers: {}", figures.join(" "));
}
