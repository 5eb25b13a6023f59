//! `raftline import redis --from bullmq:QUEUE` against a queue the real `bullmq` npm client
//! filled (`tests/fixtures/bullmq/fill.js`, bullmq pinned in its `package.json`): a real
//! Worker fails and completes jobs, then waiting, prioritized, delayed and repeatable jobs are
//! added; the import into a real 3-node cluster must put each in its raftline state. Needs
//! `redis-server`, `node` and `npm` (the fixture's packages are installed with `npm ci` when
//! missing); without them the test is skipped with a printed reason, except on CI (`CI=true`),
//! where a missing tool fails it.

mod common;
mod redis_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use raftline::client::Client;
use raftline::import::redis::{import, RedisImport};
use raftline::import::sink::Summary;
use raftline::proto::pb;
use redis_server::Redis;

/// Whether `program --version` runs.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The fixture directory with its packages installed, and redis-server; `None` (after saying
/// why) when a tool is missing off CI. On CI a missing tool fails the test.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let redis = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let missing: Vec<&str> = [
        ("redis-server", redis.is_some()),
        ("node", runs("node")),
        ("npm", runs("npm")),
    ]
    .into_iter()
    .filter(|(_, found)| !found)
    .map(|(name, _)| name)
    .collect();
    if !missing.is_empty() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "CI=true and {} missing", missing.join(", "));
        eprintln!(
            "SKIPPED: {} not installed (apt-get install redis-server nodejs npm)",
            missing.join(", ")
        );
        return None;
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bullmq");
    if !fixture.join("node_modules/bullmq").exists() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&fixture)
            .output()
            .expect("run npm ci");
        assert!(
            out.status.success(),
            "npm ci --prefix {}: {}",
            fixture.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some((fixture, redis.expect("redis-server")))
}

/// Runs `fill.js` against `url` for queue `queue`: its JSON summary.
fn fill(fixture: &Path, url: &str, queue: &str) -> serde_json::Value {
    let out = Command::new("node")
        .arg(fixture.join("fill.js"))
        .args([url, queue])
        .output()
        .expect("run node fill.js");
    assert!(
        out.status.success(),
        "fill.js: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("fill.js prints JSON")
}

async fn run(client: &Client, redis: &Redis) -> Summary {
    let args = RedisImport {
        url: redis.url(),
        from: "bullmq:mail".into(),
        queue: "mail".into(),
        batch: 2, // small pages, so paging is exercised
        ..Default::default()
    };
    let mut summary = Summary::default();
    import(client, &args, &mut summary).await.expect("import");
    summary
}

/// The imported jobs of queue `mail` by BullMQ id (schedule runs, if one fired, left out).
async fn jobs_by_id(client: &Client) -> BTreeMap<String, pb::Job> {
    let jobs = client
        .list_jobs(pb::ListJobsRequest {
            queue: "mail".into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list jobs");
    jobs.into_iter()
        .filter_map(|j| {
            let id = j.idempotency_key.strip_prefix("bullmq:mail:")?.to_string();
            Some((id, j))
        })
        .collect()
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

/// A queue the real bullmq client filled lands in the right states: waiting jobs ready at
/// priority 10 with their attempts and backoff, prioritized ones leased in BullMQ's order,
/// the delayed one scheduled at its run time, failed ones dead with their reason, stack trace
/// and attempts (and requeueable), completed ones counted and left, repeatables as schedules
/// in their zone (the one under a second skipped), the queued next runs of repeatables not
/// imported, garbage hashes skipped naming the field; a dry run before writes nothing and a
/// second import changes nothing; an unknown prefix is a clear error; a `dead` submit out of
/// its bounds is refused at the edge.
#[tokio::test(flavor = "multi_thread")]
async fn import_bullmq_from_the_real_client() {
    let Some((fixture, _)) = tools() else {
        return;
    };
    let redis = Redis::start().await.expect("redis-server was found above");
    let made = fill(&fixture, &redis.url(), "mail");
    // Two hashes the client would never write: garbage data, and an id without a hash.
    redis
        .cmd::<i64>(&["HSET", "bull:mail:junk", "name", "x", "data", "{not json"])
        .await;
    redis
        .cmd::<i64>(&["LPUSH", "bull:mail:wait", "junk", "ghost"])
        .await;
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();

    // A dry run counts what it would create and writes nothing.
    let dry = RedisImport {
        url: redis.url(),
        from: "bullmq:mail".into(),
        queue: "mail".into(),
        batch: 2,
        dry_run: true,
        json: true,
        ..Default::default()
    };
    let mut s = Summary::default();
    import(&client, &dry, &mut s).await.expect("dry run");
    assert_eq!((s.would_submit, s.created), (12, 0), "{s:?}");
    assert!(jobs_by_id(&client).await.is_empty());
    assert!(client.schedules().await.expect("schedules").is_empty());

    let s = run(&client, &redis).await;
    check_first_summary(&s, &made);
    let jobs = check_jobs(&client, &made).await;
    check_schedules(&client, &redis, &made).await;
    let again = run(&client, &redis).await;
    assert_eq!((again.created, again.already_present), (0, 12), "{again:?}");
    assert_eq!(again.skipped, s.skipped);
    assert_eq!(client.schedules().await.expect("schedules").len(), 2);

    // A prefix with no queue under it is a clear error that writes nothing.
    let nope = RedisImport {
        url: redis.url(),
        from: "bullmq:mail@nope".into(),
        queue: "mail".into(),
        batch: 2,
        ..Default::default()
    };
    let e = import(&client, &nope, &mut Summary::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(
        e.to_string()
            .contains("no BullMQ queue \"mail\" under prefix \"nope\""),
        "{e}"
    );

    check_lease_order_and_requeue(&client, &made, &jobs).await;
    check_dead_letters_at_the_edge(&client).await;
}

/// The first import's counts: everything read, what was created, each skip with its reason.
fn check_first_summary(s: &Summary, made: &serde_json::Value) {
    let counts = &made["counts"];
    let in_redis: u64 = ["wait", "prioritized", "delayed", "failed", "completed"]
        .iter()
        .map(|k| counts[k].as_u64().unwrap())
        .sum();
    assert_eq!(s.read, in_redis + 2 + 3, "{s:?}");
    // 3 waiting, 4 prioritized, 1 delayed, 2 failed jobs and 2 schedules.
    assert_eq!((s.created, s.already_present), (12, 0), "{s:?}");
    let skipped: BTreeMap<&str, u64> = s.skipped.iter().map(|(r, n)| (r.as_str(), *n)).collect();
    let expected: BTreeMap<&str, u64> = [
        ("bullmq job hash missing", 1),
        ("bullmq job hash with missing or garbage `data`", 1),
        (
            "bullmq repeatable every under 1 s (raftline's shortest interval)",
            1,
        ),
        ("completed in BullMQ (left in Redis)", 1),
        (
            "next run of a bullmq repeatable (imported as its schedule)",
            3,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(skipped, expected, "{s:?}");
}

/// Each imported job in its state, with its BullMQ settings; the imported jobs by BullMQ id.
async fn check_jobs(client: &Client, made: &serde_json::Value) -> BTreeMap<String, pb::Job> {
    let jobs = jobs_by_id(client).await;
    assert_eq!(jobs.len(), 10, "{:?}", jobs.keys());
    let waiting = &made["waiting"];
    let [a, b, c42] = [0, 1, 2].map(|i| &jobs[waiting[i]["id"].as_str().unwrap()]);
    assert_eq!(
        a.kind,
        Some(pb::job::Kind::Payload(
            format!(
                r#"{{"data":{{"to":"a"}},"id":"{}","name":"send"}}"#,
                waiting[0]["id"].as_str().unwrap()
            )
            .into_bytes()
        ))
    );
    assert_eq!(
        (a.state.as_str(), a.priority, a.max_attempts),
        ("ready", 10, 3)
    );
    assert_eq!((b.max_attempts, c42.max_attempts), (1, 5));
    assert_eq!(c42.idempotency_key, "bullmq:mail:order-42");
    assert!(a.id < b.id && b.id < c42.id, "FIFO of the wait list");

    let delayed = &made["delayed"];
    let d = &jobs[delayed["id"].as_str().unwrap()];
    let run_at = delayed["timestamp"].as_u64().unwrap() + delayed["delay"].as_u64().unwrap();
    assert_eq!((d.state.as_str(), d.run_at_ms), ("scheduled", run_at));

    for f in made["failed"].as_array().unwrap() {
        let job = &jobs[f["id"].as_str().unwrap()];
        let reason = f["failedReason"].as_str().unwrap();
        let made_n: u32 = f["attemptsMade"].as_u64().unwrap() as u32;
        assert_eq!((job.state.as_str(), job.error.as_str()), ("dead", reason));
        assert_eq!((job.attempts_used, job.attempts_total), (made_n, made_n));
        assert_eq!(job.max_attempts, f["attempts"].as_u64().unwrap() as u32);
        let last = job.attempts.last().expect("the failure's attempt record");
        assert_eq!((last.number, last.worker.as_str()), (made_n, "bullmq"));
        assert_eq!(last.error, reason);
        assert_eq!(last.ended_ms, f["finishedOn"].as_u64());
        assert!(last.output_tail.starts_with(&format!("Error: {reason}")));
    }
    let info = client.queue("mail", false).await.expect("queue");
    assert_eq!(
        (info.ready, info.scheduled, info.dead),
        (7, 1, 2),
        "{info:?}"
    );
    let dead = client
        .list_jobs(pb::ListJobsRequest {
            queue: "mail".into(),
            state: "dead".into(),
            ..Default::default()
        })
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 2);

    jobs
}

/// The repeatables as schedules, in their zones, on BullMQ's ticks.
async fn check_schedules(client: &Client, redis: &Redis, made: &serde_json::Value) {
    let schedules: BTreeMap<String, pb::ScheduleInfo> = client
        .schedules()
        .await
        .expect("schedules")
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let repeat = |name: &str| {
        made["repeatables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(schedules.len(), 2, "{:?}", schedules.keys());
    let nightly = &schedules["bullmq.mail.nightly-report"];
    assert_eq!(
        (nightly.cron.as_str(), nightly.tz.as_str()),
        ("0 30 3 * * *", "Europe/Berlin")
    );
    assert!(
        nightly.target.starts_with("external job in mail"),
        "{}",
        nightly.target
    );
    let ping = &schedules[&format!("bullmq.mail.{}", repeat("ping"))];
    assert_eq!(
        (ping.cron.as_str(), ping.tz.as_str()),
        ("@every 3600000ms", "UTC")
    );
    // On BullMQ's ticks (multiples of `every`), from its next run on.
    let next_run: u64 = redis
        .cmd(&["ZSCORE", "bull:mail:repeat", &repeat("ping")])
        .await;
    let fire = ping.next_fire_ms.expect("next fire");
    assert!(
        fire >= next_run && fire % 3_600_000 == 0,
        "{fire} {next_run}"
    );
}

/// Jobs are leased in BullMQ's order, and a dead letter from BullMQ runs again on requeue.
async fn check_lease_order_and_requeue(
    client: &Client,
    made: &serde_json::Value,
    jobs: &BTreeMap<String, pb::Job>,
) {
    // BullMQ's order: waiting first (FIFO), then prioritized by priority (1 most urgent),
    // FIFO within one.
    let leased = client
        .lease(pb::LeaseRequest {
            worker_id: "w1".into(),
            queues: vec!["mail".into()],
            max: 100,
            ..Default::default()
        })
        .await
        .expect("lease");
    let order: Vec<String> = leased
        .jobs
        .iter()
        .filter_map(|l| {
            let key = &l.job.as_ref().unwrap().idempotency_key;
            key.strip_prefix("bullmq:mail:").map(str::to_string)
        })
        .collect();
    let mut want = ids(&made["waiting"]);
    let p = ids(&made["prioritized"]);
    // Added with priorities 300, 1, 5, 5.
    want.extend([p[1].clone(), p[2].clone(), p[3].clone(), p[0].clone()]);
    assert_eq!(order, want);

    // A dead letter from BullMQ runs again on requeue, with a fresh budget.
    let failed = made["failed"][0]["id"].as_str().unwrap();
    let id = jobs[failed].id;
    client
        .retry(pb::RetryJobRequest {
            id,
            ..Default::default()
        })
        .await
        .expect("requeue");
    let job = client.job(id, false).await.expect("job");
    assert_eq!((job.state.as_str(), job.attempts_used), ("ready", 0));
}

/// A submit with `dead` out of its bounds, or with a run time, is refused at the edge naming
/// the field, and writes nothing.
async fn check_dead_letters_at_the_edge(client: &Client) {
    let before = client.queue("edge", false).await.map(|q| q.dead).ok();
    let dead = |error: String, attempts_made: u32| pb::SubmitRequest {
        queue: "edge".into(),
        kind: Some(pb::submit_request::Kind::Payload(b"{}".to_vec())),
        dead: Some(pb::DeadLetter {
            error,
            attempts_made,
            ..Default::default()
        }),
        ..Default::default()
    };
    let long = "e".repeat(raftline::machine::limits::ERROR_BYTES_MAX + 1);
    let mut delayed = dead("boom".into(), 1);
    delayed.delay_ms = 1_000;
    for (req, field) in [
        (dead(long, 1), "dead.error"),
        (dead("boom".into(), 101), "dead.attempts_made"),
        (delayed, "dead"),
    ] {
        match client.submit(req).await {
            Err(raftline::Error::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let after = client.queue("edge", false).await.map(|q| q.dead).ok();
    assert_eq!(before, after, "a refused dead letter wrote nothing");
    let id = client
        .submit(dead("boom".into(), 1))
        .await
        .expect("a dead letter in bounds");
    let job = client.job(id, false).await.expect("job");
    assert_eq!((job.state.as_str(), job.error.as_str()), ("dead", "boom"));
}
