//! `raftline import redis` run as a real child process against a real `redis-server` and a
//! real 3-node cluster, and killed: the importer with `kill -9` half-way through 20,000 list
//! elements, Stream entries or drained elements (with producers still pushing), and the
//! cluster's leader mid-import. After a re-run, every item is exactly one job: asserted on
//! the jobs the cluster holds, by payload, never on the importer's text. And `--continuous`
//! imports what arrives until SIGTERM or SIGINT, then exits 0 with its summary. Skipped, with a printed
//! reason, when no `redis-server` is installed.

mod common;
mod redis_server;

use std::collections::BTreeMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use raftline::client::Client;
use raftline::proto::pb;
use redis_server::Redis;

/// Items per crash test.
const N: usize = 20_000;

/// `raftline --addr ALL import redis --url URL ARGS...` as a child.
fn importer(c: &Cluster, redis: &Redis, args: &[&str], out: Stdio) -> Child {
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.api.clone()).collect();
    Command::new(BIN)
        .current_dir(c.dir.path())
        .args(["--addr", &addrs.join(","), "import", "redis", "--url"])
        .arg(redis.url())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the importer")
}

/// Runs an importer to its end.
fn import_to_end(c: &Cluster, redis: &Redis, args: &[&str]) -> Output {
    importer(c, redis, args, Stdio::piped())
        .wait_with_output()
        .expect("importer output")
}

/// Jobs the queue holds, any state, read through `client`.
async fn count(client: &Client, queue: &str) -> Option<u64> {
    let q = client.queue(queue, false).await.ok()?;
    Some(q.scheduled + q.ready + q.leased + q.succeeded + q.dead + q.cancelled)
}

/// Every job of the queue: payload -> how many jobs carry it (and their keys all differ).
async fn payload_counts(client: &Client, queue: &str) -> BTreeMap<Vec<u8>, u64> {
    let mut counts = BTreeMap::new();
    let mut keys = std::collections::BTreeSet::new();
    let mut after_id = 0;
    loop {
        let page = client
            .list_jobs_page(pb::ListJobsRequest {
                queue: queue.into(),
                after_id,
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("list jobs");
        for job in page.jobs {
            let Some(pb::job::Kind::Payload(p)) = job.kind else {
                panic!("job {} is not external", job.id);
            };
            assert!(keys.insert(job.idempotency_key.clone()), "key twice");
            *counts.entry(p).or_insert(0) += 1;
        }
        if page.next_after_id == 0 {
            return counts;
        }
        after_id = page.next_after_id;
    }
}

/// Asserts the queue holds exactly one job per item of `items` (by payload, through
/// `payload_of`) and nothing else.
async fn assert_exactly_once(
    client: &Client,
    queue: &str,
    items: &[String],
    payload_of: impl Fn(&str) -> Vec<u8>,
) {
    let counts = payload_counts(client, queue).await;
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "jobs made twice: {twice:?}");
    let missing: Vec<&String> = items
        .iter()
        .filter(|i| !counts.contains_key(&payload_of(i)))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "items without a job: {missing:?}");
    assert_eq!(counts.len(), items.len(), "jobs that are no item");
}

/// Starts `args` as an importer, waits until the queue holds a quarter of `N` jobs, and
/// kills it with SIGKILL; asserts the kill came before the end (or the test would prove
/// nothing).
async fn kill_mid_way(c: &Cluster, redis: &Redis, client: &Client, queue: &str, args: &[&str]) {
    let mut child = importer(c, redis, args, Stdio::null());
    wait_for(
        "the import to be under way",
        Duration::from_secs(120),
        || async { count(client, queue).await.filter(|n| *n >= N as u64 / 4) },
    )
    .await;
    child.kill().expect("kill -9 the importer");
    child.wait().expect("reap");
    let held = count(client, queue).await.expect("count");
    assert!(
        held > 0 && held < N as u64,
        "the kill came at {held} of {N} jobs: not mid-way"
    );
    eprintln!("importer killed at {held} of {N} jobs");
}

fn items(prefix: &str) -> Vec<String> {
    (0..N).map(|i| format!("{prefix}-{i:05}")).collect()
}

fn json_summary(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", show(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(out)))
}

/// A list of 20,000 elements: the importer is killed with SIGKILL half-way; the re-run
/// resumes behind the cursor and every element ends as exactly one job.
#[tokio::test(flavor = "multi_thread")]
async fn import_crash_list_exactly_once() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let all = items("l");
    redis.push_all("LPUSH", "big", &all).await;
    let args = ["--from", "list:big", "--queue", "cl", "--batch", "100"];
    kill_mid_way(&c, &redis, &client, "cl", &args).await;
    let out = import_to_end(&c, &redis, &[&args[..], &["--json"]].concat());
    let v = json_summary(&out);
    assert!(v["behind_cursor"].as_u64() > Some(0), "no resume: {v}");
    assert_exactly_once(&client, "cl", &all, |i| i.as_bytes().to_vec()).await;
    // Nothing was taken from the list.
    let len: i64 = redis.cmd(&["LLEN", "big"]).await;
    assert_eq!(len, N as i64);
}

/// A Stream of 20,000 entries: the same, resumed after the entry id in the cursor.
#[tokio::test(flavor = "multi_thread")]
async fn import_crash_stream_exactly_once() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let all = items("s");
    redis.xadd_all("big", &all).await;
    let args = ["--from", "stream:big", "--queue", "cs", "--batch", "100"];
    kill_mid_way(&c, &redis, &client, "cs", &args).await;
    let out = import_to_end(&c, &redis, &[&args[..], &["--json"]].concat());
    let v = json_summary(&out);
    assert!(v["read"].as_u64() < Some(N as u64), "no resume: {v}");
    assert_exactly_once(&client, "cs", &all, |i| {
        format!(r#"{{"n":"{i}"}}"#).into_bytes()
    })
    .await;
}

/// `--drain` of 20,000 elements while a producer pushes 2,000 more: killed with SIGKILL
/// half-way (a batch may be in the holding list), re-run to the end: the list and the
/// holding list are empty and every element pushed is exactly one job.
#[tokio::test(flavor = "multi_thread")]
async fn import_crash_drain_exactly_once() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let mut all = items("d");
    redis.push_all("LPUSH", "q", &all).await;
    let late: Vec<String> = (0..2_000).map(|i| format!("late-{i:04}")).collect();
    let producer = {
        let url = redis.url();
        let late = late.clone();
        tokio::spawn(async move {
            let mut con = raftline::import::redis::connect(&url).await.expect("con");
            for item in late {
                redis::cmd("LPUSH")
                    .arg("q")
                    .arg(item)
                    .query_async::<()>(&mut con)
                    .await
                    .expect("push");
            }
        })
    };
    let args = [
        "--from", "list:q", "--queue", "cd", "--batch", "100", "--drain",
    ];
    kill_mid_way(&c, &redis, &client, "cd", &args).await;
    producer.await.expect("producer");
    let out = import_to_end(&c, &redis, &[&args[..], &["--json"]].concat());
    json_summary(&out);
    all.extend(late);
    assert_exactly_once(&client, "cd", &all, |i| i.as_bytes().to_vec()).await;
    for key in ["q", "q:raftline-importing"] {
        let len: i64 = redis.cmd(&["LLEN", key]).await;
        assert_eq!(len, 0, "{key} still holds elements");
    }
}

/// The cluster's leader is killed with SIGKILL mid-import: the importer either finishes
/// through the failover (it sends a batch again while the cluster is unavailable) or fails
/// with an error; a re-run then leaves every element exactly one job.
#[tokio::test(flavor = "multi_thread")]
async fn import_crash_leader_killed() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mut c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let all = items("f");
    redis.push_all("LPUSH", "big", &all).await;
    let args = ["--from", "list:big", "--queue", "cf", "--batch", "100"];
    let child = importer(&c, &redis, &args, Stdio::piped());
    wait_for(
        "the import to be under way",
        Duration::from_secs(120),
        || async { count(&client, "cf").await.filter(|n| *n >= N as u64 / 4) },
    )
    .await;
    let leader = c.wait_leader(None).await;
    c.kill9(leader);
    let out = child.wait_with_output().expect("importer output");
    eprintln!("importer through the failover: {}", show(&out));
    let held = count(&client, "cf").await;
    eprintln!("jobs after the failover: {held:?} of {N}");
    let out = import_to_end(&c, &redis, &args);
    assert!(out.status.success(), "re-run: {}", show(&out));
    assert_exactly_once(&client, "cf", &all, |i| i.as_bytes().to_vec()).await;
}

/// Sends `signal` (`-TERM`, `-INT`) to a child and waits (bounded) for its exit.
fn terminate(child: Child, signal: &str) -> Output {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill -TERM");
    assert!(sent.success());
    let started = Instant::now();
    let out = child.wait_with_output().expect("importer output");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the importer took {:?} to stop",
        started.elapsed()
    );
    out
}

/// `--continuous` on a Stream, a drained list and a read (polled) list: entries and elements
/// that arrive while it runs become jobs (waited for, never slept on); SIGTERM and SIGINT
/// make it print its summary and exit 0; every item is exactly one job.
#[tokio::test(flavor = "multi_thread")]
async fn import_continuous_until_sigterm() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let first: Vec<String> = (0..50).map(|i| format!("a-{i}")).collect();
    let second: Vec<String> = (0..50).map(|i| format!("b-{i}")).collect();
    redis.xadd_all("ev", &first).await;
    redis.push_all("LPUSH", "jobs", &first).await;
    redis.push_all("LPUSH", "plain", &first).await;
    let read = importer(
        &c,
        &redis,
        &[
            "--from",
            "list:plain",
            "--queue",
            "kp",
            "--continuous",
            "--json",
        ],
        Stdio::piped(),
    );
    let stream = importer(
        &c,
        &redis,
        &[
            "--from",
            "stream:ev",
            "--queue",
            "ks",
            "--continuous",
            "--json",
        ],
        Stdio::piped(),
    );
    let list = importer(
        &c,
        &redis,
        &[
            "--from",
            "list:jobs",
            "--queue",
            "kl",
            "--drain",
            "--continuous",
            "--json",
        ],
        Stdio::piped(),
    );
    for (queue, want) in [("ks", 50), ("kl", 50), ("kp", 50)] {
        wait_for("the first items", Duration::from_secs(60), || async {
            count(&client, queue).await.filter(|n| *n == want)
        })
        .await;
    }
    redis.xadd_all("ev", &second).await;
    redis.push_all("LPUSH", "jobs", &second).await;
    redis.push_all("LPUSH", "plain", &second).await;
    for queue in ["ks", "kl", "kp"] {
        wait_for(
            "the items that arrived",
            Duration::from_secs(60),
            || async { count(&client, queue).await.filter(|n| *n == 100) },
        )
        .await;
    }
    let both: Vec<String> = first.iter().chain(&second).cloned().collect();
    for (child, queue, signal) in [
        (stream, "ks", "-TERM"),
        (list, "kl", "-INT"),
        (read, "kp", "-TERM"),
    ] {
        let out = terminate(child, signal);
        let v = json_summary(&out);
        assert_eq!(v["created"].as_u64(), Some(100), "{queue}: {v}");
    }
    assert_exactly_once(&client, "ks", &both, |i| {
        format!(r#"{{"n":"{i}"}}"#).into_bytes()
    })
    .await;
    assert_exactly_once(&client, "kl", &both, |i| i.as_bytes().to_vec()).await;
    assert_exactly_once(&client, "kp", &both, |i| i.as_bytes().to_vec()).await;
    let left: i64 = redis.cmd(&["EXISTS", "jobs:raftline-importing"]).await;
    assert_eq!(left, 0);
}
