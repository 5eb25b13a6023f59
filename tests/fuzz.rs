//! Adversarial API fuzz (issue 15, item 5): seeded random bytes and mutations of valid
//! messages go, as raw request bodies, to every method of the `Api` service on a real 3-node
//! cluster, and the cluster must come through it: every reply is a clean gRPC status, every
//! node still runs and answers, no node's memory grows past a bound, and calls that are
//! refused (no token, a viewer's writes, bodies that do not decode) write nothing.
//!
//! The method paths come from `server::auth::METHODS`, so a new RPC is fuzzed without a change
//! here (but for `fuzz_input::NOT_FUZZED`, which says why). The seed is printed at the start; `RAFTLINE_FUZZ_SEED=<seed>` replays a run (the
//! inputs are made from the seed alone; replies may differ with timing) and
//! `RAFTLINE_FUZZ_CASES=<n>` raises the number of calls (6,000 by default).
//!
//! Phases, in order: no token; a viewer token; an admin token with bodies that cannot decode
//! (protobuf and gRPC framing); an admin token with random, typed (built from the service
//! descriptor) and mutated bodies, some of which decode into valid writes. Node executors take
//! no queue the fuzzer uses, so a fuzzed shell job never runs. A second test sends every
//! method every field at a limit's edge, one call at a time, and checks that an
//! INVALID_ARGUMENT refusal wrote nothing; a third keeps what the fuzz found from coming back.
//!
//! CAVEATS (not checked): the peer port (`RaftPeer`) and the HTTP port are not fuzzed here; a
//! decode failure comes back INTERNAL, as tonic and the gRPC status-code guide give it, not the
//! INVALID_ARGUMENT the API uses for bad fields.

mod common;
mod fuzz_input;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{wait_for, Cluster, Settings};
use futures::StreamExt;
use fuzz_input::{case_count, fuzz_cases, malformed_cases, phase_rng, seed, Case, Fill, Schema};
use prost::bytes::{Buf, BufMut, Bytes};
use raftline::machine::auth::Role;
use raftline::machine::limits;
use raftline::proto::pb;
use raftline::server::auth::allowed;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The deadline each call sends (`grpc-timeout`): a long poll ends with CANCELLED after it.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A call with no reply after this long is a hang.
const HANG_TIMEOUT: Duration = Duration::from_secs(20);
/// Calls in flight at once, spread over the nodes.
const IN_FLIGHT: usize = 8;
/// How much a node's resident memory may grow over the run. Generous on purpose: it catches
/// a leak of the bodies (a few hundred MiB at the default case count), not allocator noise.
const RSS_GROWTH_MAX_KIB: u64 = 256 * 1024;
/// The queue node executors take shell jobs from: one the fuzzer's inputs never name.
const EXECUTOR_QUEUE: &str = "executor-off-during-fuzz";

/// A pass-through codec: the request is the body's bytes as given, the reply is only counted.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = usize;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = usize;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<usize>, Status> {
        let n = src.remaining();
        src.advance(n);
        Ok(Some(n))
    }
}

/// A reply the server sent: its code and message. A broken call (transport error, hang, no
/// gRPC status) is an `Err` naming what broke.
type Outcome = Result<(Code, String), String>;

/// Messages tonic gives, with code INTERNAL, when a request body does not parse: a protobuf
/// decode error (tonic-prost), a bad compressed flag, a body cut short, a missing message.
const PARSE_FAILURES: &[&str] = &[
    "failed to decode Protobuf message",
    "protocol error: received message with",
    "Unexpected EOF decoding stream",
    "Missing request message",
];

/// Whether `status` is a clean answer to a fuzzed call.
///
/// Clean means the server itself answered with a gRPC status (tonic sets no `source` on a
/// status read from the reply's headers or trailers; a transport failure such as an h2
/// protocol error, a reset stream or a refused connection carries its cause as the source),
/// and the code is one the API gives on purpose: not UNKNOWN (a status that lost its cause),
/// UNIMPLEMENTED (every path is a real method) or DATA_LOSS, and INTERNAL only with one of
/// tonic's [`PARSE_FAILURES`] (INTERNAL from raftline itself means a handler met a response
/// it did not expect: a bug).
fn unclean(status: &Status) -> Option<String> {
    if let Some(source) = std::error::Error::source(status) {
        return Some(format!("transport broke: {status:?} ({source})"));
    }
    let fine = match status.code() {
        Code::Unknown | Code::Unimplemented | Code::DataLoss => false,
        Code::Internal => is_parse_failure(status.code(), status.message()),
        _ => true,
    };
    (!fine).then(|| format!("{:?}: {}", status.code(), status.message()))
}

/// Whether the reply is tonic's refusal of a body it could not read: a parse failure, or a
/// message over the size limit (OUT_OF_RANGE).
fn is_parse_failure(code: Code, message: &str) -> bool {
    match code {
        Code::Internal => PARSE_FAILURES.iter().any(|p| message.starts_with(p)),
        Code::OutOfRange => message.contains("message length too large"),
        _ => false,
    }
}

/// The gRPC path of `method`.
fn path(method: &str) -> String {
    format!("/{}/{method}", pb::api_server::SERVICE_NAME)
}

/// Sends `body` to `method` as the request message, with `token` as bearer when given.
async fn call(channel: &Channel, token: Option<&str>, method: &str, body: Vec<u8>) -> Outcome {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let path = http::uri::PathAndQuery::try_from(path(method)).expect("path");
    let mut req = tonic::Request::new(body);
    req.set_timeout(CALL_TIMEOUT);
    if let Some(t) = token {
        let bearer = format!("Bearer {t}").parse().expect("header");
        req.metadata_mut().insert("authorization", bearer);
    }
    let answer = async {
        grpc.ready().await.map_err(|e| format!("not ready: {e}"))?;
        Ok::<_, String>(grpc.unary(req, path, Raw).await)
    };
    match tokio::time::timeout(HANG_TIMEOUT, answer).await {
        Err(_) => Err(format!("no answer in {HANG_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e),
        Ok(Ok(Ok(_))) => Ok((Code::Ok, String::new())),
        Ok(Ok(Err(status))) => match unclean(&status) {
            Some(why) => Err(why),
            None => Ok((status.code(), status.message().to_string())),
        },
    }
}

/// Sends `body` as the whole HTTP/2 request body (gRPC frame headers included), so the
/// framing itself can be wrong; reads the status from the reply's headers or trailers.
async fn call_framed(channel: &Channel, token: &str, method: &str, body: Vec<u8>) -> Outcome {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = http::Request::post(path(method))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", format!("{}m", CALL_TIMEOUT.as_millis()))
        .header("authorization", format!("Bearer {token}"))
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(body),
        )))
        .expect("request");
    let answer = async {
        let reply = channel
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let (head, body) = reply.into_parts();
        let collected = body
            .collect()
            .await
            .map_err(|e| format!("reply body: {e}"))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        if head.status != http::StatusCode::OK {
            return Err(format!("HTTP status {}", head.status));
        }
        Status::from_header_map(&head.headers)
            .or_else(|| Status::from_header_map(&trailers))
            .ok_or_else(|| "no grpc-status in the reply".to_string())
    };
    match tokio::time::timeout(HANG_TIMEOUT, answer).await {
        Err(_) => Err(format!("no answer in {HANG_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e),
        Ok(Ok(status)) => match unclean(&status) {
            Some(why) => Err(why),
            None => Ok((status.code(), status.message().to_string())),
        },
    }
}

/// Makes every call of `cases`, `IN_FLIGHT` at a time, spread over `channels`; returns each
/// case's label, method and outcome.
async fn run(
    channels: &[Channel],
    token: Option<&str>,
    cases: Vec<Case>,
) -> Vec<(String, &'static str, Outcome)> {
    futures::stream::iter(cases.into_iter().enumerate())
        .map(|(i, case)| async move {
            let channel = &channels[i % channels.len()];
            let label = case.label();
            let outcome = if case.framed {
                call_framed(
                    channel,
                    token.expect("framed calls carry a token"),
                    case.method,
                    case.body,
                )
                .await
            } else {
                call(channel, token, case.method, case.body).await
            };
            (label, case.method, outcome)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

/// Fails, naming the seed and the first failures, if `check` refuses any outcome.
fn expect(
    seed: u64,
    phase: &str,
    results: &[(String, &'static str, Outcome)],
    check: impl Fn(&'static str, &Outcome) -> Result<(), String>,
) {
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(label, method, outcome)| {
            check(method, outcome)
                .err()
                .map(|why| format!("  {label}: {why}"))
        })
        .collect();
    let shown = failures[..failures.len().min(20)].join("\n");
    assert!(
        failures.is_empty(),
        "RAFTLINE_FUZZ_SEED={seed}: {phase}: {} of {} calls failed:\n{shown}",
        failures.len(),
        results.len(),
    );
}

/// Replies counted by code, for the log of a run.
fn tally(results: &[(String, &'static str, Outcome)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, _, outcome) in results {
        let key = match outcome {
            Ok((code, _)) => format!("{code:?}"),
            Err(_) => "broken".to_string(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Whether `method` may change state: any method a viewer may not call.
fn is_write(method: &str) -> bool {
    !allowed(method).expect("in METHODS").contains(&Role::Viewer)
}

/// The leader's (term, last log index) once its log has stopped moving: the same for half a
/// second, with everything applied.
async fn settled_log(c: &Cluster) -> (u64, u64) {
    let leader = c.wait_leader(None).await;
    let seen: RefCell<Option<((u64, u64), Instant)>> = RefCell::new(None);
    wait_for("a settled log", Duration::from_secs(20), || async {
        let s = c.status(leader).await?;
        let view = (s.term, s.last_log_index);
        let mut seen = seen.borrow_mut();
        match *seen {
            Some((v, since)) if v == view => {
                let done =
                    s.last_applied == view.1 && since.elapsed() >= Duration::from_millis(500);
                done.then_some(view)
            }
            _ => {
                *seen = Some((view, Instant::now()));
                None
            }
        }
    })
    .await
}

/// Asserts that the leader's log did not grow since `before`, except by what nodes write on
/// their own: an election's blank entry (then the term moved, and the index is not compared)
/// and the token-use report each node proposes at most once a minute after it started (so
/// none while `started`, taken before the nodes were, is under a minute old).
async fn assert_log_unchanged(c: &Cluster, started: Instant, before: (u64, u64), what: &str) {
    let leader = c.wait_leader(None).await;
    let after = c.status(leader).await.expect("leader status");
    if after.term != before.0 {
        eprintln!("fuzz: {what}: the term moved; log index not compared");
        return;
    }
    let reports = c.nodes.len() as u64 * (started.elapsed().as_secs() / 60);
    assert!(
        after.last_log_index <= before.1 + reports,
        "{what} wrote: the log went from {} to {} (token-use reports allowed: {reports})",
        before.1,
        after.last_log_index
    );
}

/// What the admin reads of the state: jobs, queues, tokens, schedules, timers and triggers.
async fn footprint(c: &Cluster) -> [usize; 6] {
    let client = c.client();
    let jobs = pb::ListJobsRequest {
        limit: 1_000,
        ..Default::default()
    };
    [
        client.list_jobs(jobs).await.expect("jobs").len(),
        client.queues(false).await.expect("queues").len(),
        client.list_tokens().await.expect("tokens").tokens.len(),
        client.schedules().await.expect("schedules").len(),
        client.timers().await.expect("timers").len(),
        client.triggers().await.expect("triggers").len(),
    ]
}

/// Resident memory of every running node, in KiB, from `/proc/<pid>/status`.
fn rss_kib(c: &Cluster) -> BTreeMap<u64, u64> {
    c.running()
        .into_iter()
        .map(|id| {
            let pid = c.pid(id).expect("running");
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .expect("VmRSS");
            (id, kib)
        })
        .collect()
}

/// A plaintext channel to `addr`.
fn channel(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy()
}

/// Every method of a real cluster fuzzed with no token, a viewer token and the admin token:
/// every reply is a clean status, refused and unreadable calls write nothing, and every node
/// still runs and answers afterwards with its memory grown less than the bound.
#[tokio::test(flavor = "multi_thread")]
async fn fuzz_every_method_answers_cleanly_and_refusals_write_nothing() {
    let (seed, total) = (seed(), case_count());
    let started = Instant::now();
    let mut c = Cluster::start(Settings {
        node_extra: format!("queues = [\"{EXECUTOR_QUEUE}\"]"),
        ..Settings::default()
    })
    .await;
    let channels: Vec<Channel> = c.ids().iter().map(|id| channel(&c.node(*id).api)).collect();
    let admin = c.access.token.clone().expect("admin token");
    let viewer = c
        .client()
        .create_token(pb::CreateTokenRequest {
            name: "fuzz-viewer".into(),
            role: "viewer".into(),
            ..Default::default()
        })
        .await
        .expect("viewer token")
        .secret;
    c.wait_same_digest().await;
    let rss_before = rss_kib(&c);
    let log = settled_log(&c).await;
    let state = footprint(&c).await;
    let (n_refused, n_malformed) = (total / 10, total / 5);

    let results = run(
        &channels,
        None,
        fuzz_cases(&mut phase_rng(seed, 0), n_refused),
    )
    .await;
    expect(seed, "no token", &results, |_, outcome| match outcome {
        Ok((Code::Unauthenticated, _)) => Ok(()),
        other => Err(format!("expected Unauthenticated, got {other:?}")),
    });
    let results = run(
        &channels,
        Some(&viewer),
        fuzz_cases(&mut phase_rng(seed, 1), 2 * n_refused),
    )
    .await;
    expect(seed, "viewer", &results, |method, outcome| match outcome {
        Ok((Code::PermissionDenied, _)) => Ok(()),
        Ok(_) if !is_write(method) => Ok(()),
        other => Err(format!("a viewer's write got {other:?}")),
    });
    let results = run(
        &channels,
        Some(&admin),
        malformed_cases(&mut phase_rng(seed, 2), n_malformed),
    )
    .await;
    expect(
        seed,
        "unreadable bodies",
        &results,
        |_, outcome| match outcome {
            Ok((code, message)) if is_parse_failure(*code, message) => Ok(()),
            other => Err(format!("expected a parse failure, got {other:?}")),
        },
    );
    assert_log_unchanged(&c, started, log, "refused and unreadable calls").await;
    assert_eq!(
        footprint(&c).await,
        state,
        "refused and unreadable calls changed the state"
    );

    let rest = total.saturating_sub(3 * n_refused + n_malformed);
    let log = settled_log(&c).await;
    let results = run(
        &channels,
        Some(&admin),
        fuzz_cases(&mut phase_rng(seed, 3), rest),
    )
    .await;
    expect(seed, "admin", &results, |_, outcome| {
        outcome.as_ref().map(|_| ()).map_err(Clone::clone)
    });
    admin_writes(&c, started, log, &results).await;

    for id in c.ids() {
        assert_eq!(c.try_exit(id), None, "node {id} exited; see {}", c.log(id));
        assert!(
            c.status(id).await.is_some(),
            "node {id} does not answer NodeStatus"
        );
    }
    let rss_after = rss_kib(&c);
    for (id, before) in &rss_before {
        let after = rss_after[id];
        eprintln!("fuzz: node {id} resident memory {before} KiB -> {after} KiB");
        assert!(
            after.saturating_sub(*before) < RSS_GROWTH_MAX_KIB,
            "RAFTLINE_FUZZ_SEED={seed}: node {id} grew from {before} KiB to {after} KiB"
        );
    }
    eprintln!(
        "fuzz: {total} calls in {:?} (seed {seed})",
        started.elapsed()
    );
}

/// After the admin phase: writes that decoded are counted and printed (random bytes do decode
/// into valid requests now and then); when none decoded, the log must not have moved. A write
/// that decodes may append an entry even when refused: the machine's own rejections (unknown
/// job, lock held) are committed like any other response.
async fn admin_writes(
    c: &Cluster,
    started: Instant,
    log: (u64, u64),
    results: &[(String, &'static str, Outcome)],
) {
    let decoded: Vec<&Code> = results
        .iter()
        .filter(|(_, method, _)| is_write(method))
        .filter_map(|(_, _, outcome)| outcome.as_ref().ok())
        .filter(|(code, message)| !is_parse_failure(*code, message))
        .map(|(code, _)| code)
        .collect();
    let accepted = decoded.iter().filter(|code| ***code == Code::Ok).count();
    eprintln!(
        "fuzz: admin replies {:?}; {} writes decoded, {accepted} accepted",
        tally(results),
        decoded.len()
    );
    if decoded.is_empty() {
        assert_log_unchanged(c, started, log, "admin calls that did not decode").await;
    }
}

/// Regression (found by the fuzz): a lock renew or release naming a 70 KB resource was
/// proposed, so the log took the name before the machine refused it, and a refusal that
/// echoes a large input (that NOT_FOUND, a queue-limited token's PERMISSION_DENIED naming the
/// queue) sent it back whole in the `grpc-message` header, which the client's HTTP/2 layer
/// answers by closing the connection, failing every other call on it. Now the name is refused
/// at the edge, writing nothing, and every status message is cut short.
#[tokio::test(flavor = "multi_thread")]
async fn fuzz_regression_huge_names_get_short_refusals_and_write_nothing() {
    use raftline::error::Error;
    let started = Instant::now();
    let c = Cluster::start(Settings::default()).await;
    let queue_limited = c
        .client()
        .create_token(pb::CreateTokenRequest {
            name: "limited".into(),
            role: "operator".into(),
            queues: vec!["build-*".into()],
            ttl_ms: 0,
        })
        .await
        .expect("token")
        .secret;
    c.wait_same_digest().await;
    let log = settled_log(&c).await;
    let huge = "a".repeat(70_000);
    let client = c.client();
    let limited = raftline::client::Client::with_access(
        &[c.node(1).api.clone()],
        &raftline::client::Access {
            token: Some(queue_limited),
            ca_file: None,
        },
    )
    .expect("client");
    let refusals = [
        ("release", client.release_lock(&huge, 1).await.err()),
        ("renew", client.renew_lock(&huge, 1, 5_000).await.err()),
        ("queue", limited.pause(&huge, true).await.err()),
        ("worker", client.heartbeat(&huge).await.err()),
        (
            "topic",
            client
                .create_timer(pb::CreateTimerRequest {
                    delay_ms: 1_000,
                    topic: huge.clone(),
                    dedup_key: "k".into(),
                    ..Default::default()
                })
                .await
                .err(),
        ),
        (
            "rate",
            client
                .set_queue_policy(pb::SetQueuePolicyRequest {
                    queue: "q".into(),
                    rate_count: u32::MAX,
                    rate_per_ms: 1_000,
                    ..Default::default()
                })
                .await
                .err(),
        ),
    ];
    for (what, err) in refusals {
        let err = err.unwrap_or_else(|| panic!("{what}: accepted"));
        let expected = match what {
            "queue" => matches!(err, Error::PermissionDenied(_)),
            "release" | "renew" => {
                matches!(err, Error::InvalidArgument { ref field, .. } if field == "resource")
            }
            field => matches!(err, Error::InvalidArgument { field: ref f, .. } if f == field),
        };
        assert!(expected, "{what}: {:.200}", err.to_string());
        assert!(
            err.to_string().len() <= limits::STATUS_MESSAGE_BYTES_MAX + 64,
            "{what}: {} bytes",
            err.to_string().len()
        );
    }
    assert_log_unchanged(&c, started, log, "refusals of huge names").await;
}

/// Every method, one call at a time, with every field set: strings just past the 128-byte name
/// limit or of 70 KB, numbers 0 or 1. A refusal as INVALID_ARGUMENT must leave the log as it
/// was: what depends on nothing but the request is checked before it is proposed.
#[tokio::test(flavor = "multi_thread")]
async fn fuzz_edge_values_refused_as_invalid_write_nothing() {
    let c = Cluster::start(Settings {
        node_extra: format!("queues = [\"{EXECUTOR_QUEUE}\"]"),
        ..Settings::default()
    })
    .await;
    let (schema, admin) = (Schema::load(), c.access.token.clone().expect("admin token"));
    settled_log(&c).await;
    let channel = channel(&c.node(c.wait_leader(None).await).api);
    let mut failures = Vec::new();
    for (text_len, number) in [(129, 1), (70_000, 1), (129, 0)] {
        for (method, _) in raftline::server::auth::METHODS {
            if fuzz_input::NOT_FUZZED.contains(method) {
                continue;
            }
            let mut fill = Fill::Edge { text_len, number };
            let body = schema.message(&mut fill, &schema.input(method), 0);
            let before = c.status(c.wait_leader(None).await).await.expect("status");
            let outcome = call(&channel, Some(&admin), method, body).await;
            let after = c.status(c.wait_leader(None).await).await.expect("status");
            let grew = after.term == before.term && after.last_log_index > before.last_log_index;
            match outcome {
                Ok((Code::InvalidArgument, message)) if grew => failures.push(format!(
                    "{method} ({text_len}-byte strings, numbers {number}): refused as \
                     invalid ({message:.100}) after writing"
                )),
                Ok(_) => {}
                Err(why) => failures.push(format!("{method}: {why}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
