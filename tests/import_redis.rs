//! `raftline import redis` against a real `redis-server` and a real 3-node cluster: list
//! elements and Stream entries (with a consumer group, pending entries and `--ack`) become
//! external jobs with the right payloads, a re-run creates nothing, and bad input (a wrong
//! type, a missing key, an unknown source kind, an unreachable server) is one clear error
//! that writes nothing. Skipped, with a printed reason, when no `redis-server` is installed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use raftline::client::Client;
use raftline::import::redis::{import, RedisImport};
use raftline::import::sink::Summary;
use raftline::proto::pb;
use raftline::Error;

/// A `redis-server` child on a free port, without persistence, in a temp dir.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    /// Starts one, or `None` (after saying why) when the binary is missing.
    async fn start() -> Option<Redis> {
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(binary) = binary else {
            eprintln!("SKIPPED: no redis-server binary (apt-get install redis-server)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let redis = Redis {
            child,
            port,
            _dir: dir,
        };
        let url = redis.url();
        wait_for("redis-server to answer", Duration::from_secs(10), || {
            let url = url.clone();
            async move { raftline::import::redis::connect(&url).await.ok() }
        })
        .await;
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs one command, panicking on an error reply.
    async fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut con = raftline::import::redis::connect(&self.url())
            .await
            .expect("connect");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut con).await.expect("redis command")
    }
}

fn args(redis: &Redis, from: &str, queue: &str) -> RedisImport {
    RedisImport {
        url: redis.url(),
        from: from.into(),
        queue: queue.into(),
        dry_run: false,
        batch: 2, // small pages, so paging is exercised
        ack: false,
        json: false,
    }
}

async fn run(client: &Client, args: &RedisImport) -> Result<Summary, Error> {
    let mut summary = Summary::default();
    import(client, args, &mut summary).await.map(|()| summary)
}

/// The queue's jobs: idempotency key -> (payload, tags).
async fn jobs_of(client: &Client, queue: &str) -> BTreeMap<String, (Vec<u8>, Vec<String>)> {
    let jobs = client
        .list_jobs(pb::ListJobsRequest {
            queue: queue.into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list jobs");
    jobs.into_iter()
        .map(|j| {
            let payload = match j.kind {
                Some(pb::job::Kind::Payload(p)) => p,
                other => panic!("job {} is not external: {other:?}", j.id),
            };
            (j.idempotency_key, (payload, j.tags))
        })
        .collect()
}

/// Each list element (duplicates and binary ones included) becomes one external job with
/// the element as payload; a dry run writes nothing; a re-run creates nothing; an element
/// pushed later is the only new job of the next run.
#[tokio::test(flavor = "multi_thread")]
async fn import_redis_list_idempotent() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let elements = ["a", "b", "a", r#"{"to":"x@y"}"#, "\u{e9}t\u{e9}"];
    // Pushed as LPUSH producers do: the first element ends at the tail, where BRPOP takes it.
    for e in elements {
        redis.cmd::<i64>(&["LPUSH", "work", e]).await;
    }

    let mut dry = args(&redis, "list:work", "imp");
    dry.dry_run = true;
    let s = run(&client, &dry).await.expect("dry run");
    assert_eq!((s.read, s.would_submit, s.created), (5, 5, 0), "{s:?}");
    assert!(jobs_of(&client, "imp").await.is_empty(), "a dry run wrote");

    let s = run(&client, &args(&redis, "list:work", "imp"))
        .await
        .expect("import");
    assert_eq!((s.read, s.created, s.already_present), (5, 5, 0), "{s:?}");
    let jobs = jobs_of(&client, "imp").await;
    let mut payloads: Vec<Vec<u8>> = jobs.values().map(|(p, _)| p.clone()).collect();
    payloads.sort();
    let mut want: Vec<Vec<u8>> = elements.iter().map(|e| e.as_bytes().to_vec()).collect();
    want.sort();
    assert_eq!(payloads, want);
    assert!(jobs.keys().all(|k| k.starts_with("list:work:")), "{jobs:?}");
    // Submitted oldest first (the tail), so raftline runs them in the order BRPOP would have.
    let list = client
        .list_jobs(pb::ListJobsRequest {
            queue: "imp".into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list jobs");
    let in_id_order: Vec<Option<pb::job::Kind>> = list.into_iter().map(|j| j.kind).collect();
    let pushed: Vec<Option<pb::job::Kind>> = elements
        .iter()
        .map(|e| Some(pb::job::Kind::Payload(e.as_bytes().to_vec())))
        .collect();
    assert_eq!(in_id_order, pushed);

    let s = run(&client, &args(&redis, "list:work", "imp"))
        .await
        .expect("re-run");
    assert_eq!((s.read, s.created, s.already_present), (5, 0, 5), "{s:?}");

    // Producers push at the head: every index shifts, yet only the new elements are new (a
    // third "a" included: equal elements count as a multiset).
    redis.cmd::<i64>(&["LPUSH", "work", "c", "a"]).await;
    let s = run(&client, &args(&redis, "list:work", "imp"))
        .await
        .expect("third run");
    assert_eq!((s.read, s.created, s.already_present), (7, 2, 5), "{s:?}");
    // A worker pops the tail: the rest shift again, and nothing is new.
    redis.cmd::<String>(&["RPOP", "work"]).await;
    let s = run(&client, &args(&redis, "list:work", "imp"))
        .await
        .expect("fourth run");
    assert_eq!((s.read, s.created, s.already_present), (6, 0, 6), "{s:?}");
    assert_eq!(jobs_of(&client, "imp").await.len(), 7);

    // The same through the binary: one JSON summary, nothing new.
    let url = args(&redis, "list:work", "imp").url;
    let out = c.cli(&[
        "import",
        "redis",
        "--url",
        &url,
        "--from",
        "list:work",
        "--queue",
        "imp",
        "--json",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON summary");
    assert_eq!(
        (v["created"].as_u64(), v["read"].as_u64()),
        (Some(0), Some(6)),
        "{v}"
    );
}

/// Stream entries become jobs with their fields as a JSON object; with a group, the pending
/// entry (tagged) and the undelivered ones are imported, `--ack` acknowledges them in Redis
/// (nothing left pending, the group moved past them), and re-runs create nothing.
#[tokio::test(flavor = "multi_thread")]
async fn import_redis_stream_group_ack() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let first: String = redis.cmd(&["XADD", "ev:s", "*", "n", "1"]).await;
    let second: String = redis
        .cmd(&["XADD", "ev:s", "*", "n", "2", "who", "b"])
        .await;
    let third: String = redis.cmd(&["XADD", "ev:s", "*", "n", "3"]).await;
    // The group has seen `first`; a consumer took `second` and never acknowledged it.
    redis
        .cmd::<()>(&["XGROUP", "CREATE", "ev:s", "g", &first])
        .await;
    let _: redis::Value = redis
        .cmd(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "1",
            "STREAMS",
            "ev:s",
            ">",
        ])
        .await;

    let s = run(&client, &args(&redis, "stream:ev:s:g", "st"))
        .await
        .expect("group");
    assert_eq!((s.read, s.created, s.acked), (2, 2, 0), "{s:?}");
    let jobs = jobs_of(&client, "st").await;
    let (payload, tags) = &jobs[&format!("stream:ev:s:{second}")];
    assert_eq!(payload, br#"{"n":"2","who":"b"}"#);
    assert_eq!(tags, &vec!["redis-pending".to_string()]);
    let (payload, tags) = &jobs[&format!("stream:ev:s:{third}")];
    assert_eq!(payload, br#"{"n":"3"}"#);
    assert!(tags.is_empty());

    let mut ack = args(&redis, "stream:ev:s:g", "st");
    ack.ack = true;
    let s = run(&client, &ack).await.expect("ack");
    assert_eq!(
        (s.read, s.created, s.already_present, s.acked),
        (2, 0, 2, 2),
        "{s:?}"
    );
    let pending: Vec<redis::Value> = redis.cmd(&["XPENDING", "ev:s", "g", "-", "+", "10"]).await;
    assert!(pending.is_empty(), "still pending: {pending:?}");
    let s = run(&client, &ack).await.expect("ack again");
    assert_eq!((s.read, s.created), (0, 0), "{s:?}");

    // Without a group: every entry; only `first` is new.
    let s = run(&client, &args(&redis, "stream:ev:s", "st"))
        .await
        .expect("all");
    assert_eq!((s.read, s.created, s.already_present), (3, 1, 2), "{s:?}");
    assert_eq!(jobs_of(&client, "st").await.len(), 3);
}

/// Bad input is one error naming the key, with exit code 2 (or 1 for an unreachable
/// server), and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn import_redis_bad_input() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    redis.cmd::<()>(&["SET", "plain", "v"]).await;
    redis.cmd::<i64>(&["RPUSH", "work", "a"]).await;

    let cases = [
        ("list:plain", "key \"plain\" is a string, not a list"),
        ("stream:work", "key \"work\" is a list, not a stream"),
        ("list:nothing", "no key \"nothing\""),
        ("stream:work:g", "key \"work\" is a list, not a stream"),
        ("set:work", "unknown source kind \"set\""),
        ("work", "names no source kind"),
    ];
    for (from, want) in cases {
        let e = run(&client, &args(&redis, from, "bad")).await.unwrap_err();
        assert_eq!(e.exit_code(), 2, "{from}: {e}");
        assert!(e.to_string().contains(want), "{from}: {e}");
    }
    redis.cmd::<String>(&["XADD", "s", "*", "a", "1"]).await;
    let e = run(&client, &args(&redis, "stream:s:nogroup", "bad"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("no consumer group \"nogroup\""),
        "{e}"
    );
    let mut ack = args(&redis, "list:work", "bad");
    ack.ack = true;
    let e = run(&client, &ack).await.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");

    let mut gone = args(&redis, "list:work", "bad");
    gone.url = format!("redis://127.0.0.1:{}/0", free_port());
    let e = run(&client, &gone).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("unreachable"), "{e}");

    let mut bad_queue = args(&redis, "list:work", "no spaces allowed");
    bad_queue.batch = 500;
    let e = run(&client, &bad_queue).await.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(
        jobs_of(&client, "bad").await.is_empty(),
        "bad input wrote jobs"
    );
}

/// A BullMQ 5 queue (tests/fixtures/bullmq/mail.jsonl: its key layout written with plain
/// commands) lands in the right states: waiting jobs ready at priority 10 with their attempts
/// left and `jobId`, prioritized ones mapped onto 9..1 in order, a delayed one scheduled at its
/// run time; failed, completed and garbage jobs are skipped and counted; a re-run creates
/// nothing; an unknown prefix is a clear error.
#[tokio::test(flavor = "multi_thread")]
async fn import_redis_bullmq_states() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let fixture = include_str!("fixtures/bullmq/mail.jsonl");
    for line in fixture.lines().filter(|l| !l.trim().is_empty()) {
        let cmd: Vec<String> = serde_json::from_str(line).expect("fixture line");
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        redis.cmd::<redis::Value>(&cmd).await;
    }
    // The delayed job's run time as BullMQ scores it (ms * 4096 + a counter), a day from now
    // so that it stays in the future whenever the test runs.
    let run_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 86_400_000;
    let score = (run_at * 4096 + 1).to_string();
    redis
        .cmd::<i64>(&["ZADD", "bull:mail:delayed", "XX", &score, "5"])
        .await;

    let s = run(&client, &args(&redis, "bullmq:mail", "mail"))
        .await
        .expect("import");
    assert_eq!((s.read, s.created, s.already_present), (9, 6, 0), "{s:?}");
    assert_eq!(s.skipped_total(), 3, "{s:?}");
    let list = client
        .list_jobs(pb::ListJobsRequest {
            queue: "mail".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    let by_key: BTreeMap<&str, &pb::Job> = list
        .iter()
        .map(|j| (j.idempotency_key.as_str(), j))
        .collect();
    let job = |id: &str| by_key[format!("bullmq:mail:{id}").as_str()];
    assert_eq!(
        job("1").kind,
        Some(pb::job::Kind::Payload(
            br#"{"data":{"to":"a"},"id":"1","name":"send"}"#.to_vec()
        ))
    );
    assert_eq!((job("1").priority, job("1").max_attempts), (10, 3));
    assert_eq!(
        (job("order-42").state.as_str(), job("order-42").max_attempts),
        ("ready", 4)
    );
    assert_eq!((job("3").priority, job("4").priority), (9, 6));
    assert_eq!(job("5").state, "scheduled");
    assert_eq!(job("5").run_at_ms, run_at);
    // BullMQ order: the oldest waiting job (the list's tail) was submitted first.
    assert!(job("1").id < job("2").id && job("2").id < job("order-42").id);

    let s = run(&client, &args(&redis, "bullmq:mail", "mail"))
        .await
        .expect("re-run");
    assert_eq!((s.created, s.already_present), (0, 6), "{s:?}");

    let e = run(&client, &args(&redis, "bullmq:mail@nope", "mail"))
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(
        e.to_string()
            .contains("no BullMQ queue \"mail\" under prefix \"nope\""),
        "{e}"
    );
}
