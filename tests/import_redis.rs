//! `raftline import redis` against a real `redis-server` and a real 3-node cluster: list
//! elements and Stream entries (with a consumer group, pending entries and `--ack`) become
//! external jobs with the right payloads, a re-run creates nothing and resumes behind the
//! cursor kept in the cluster, `--command-template` makes shell jobs whose argv an item cannot
//! break out of, `--drain` empties the list through its holding list (one left by a crash
//! first), and bad input (a wrong type, a missing key, an unknown source kind, a flag that does
//! not fit the source, an unreachable server) is one clear error that writes nothing. The
//! crash tests are `import_redis_crash.rs`. Skipped, with a printed reason, when no
//! `redis-server` is installed.

mod common;
mod redis_server;

use std::collections::BTreeMap;

use common::*;
use raftline::client::Client;
use raftline::import::redis::{import, RedisImport};
use raftline::import::sink::Summary;
use raftline::proto::pb;
use raftline::Error;
use redis_server::Redis;

fn args(redis: &Redis, from: &str, queue: &str) -> RedisImport {
    RedisImport {
        url: redis.url(),
        from: from.into(),
        queue: queue.into(),
        dry_run: false,
        batch: 2, // small pages, so paging is exercised
        ..Default::default()
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

    // The re-run finds the cursor: the 5 elements are checked, not sent again.
    let s = run(&client, &args(&redis, "list:work", "imp"))
        .await
        .expect("re-run");
    assert_eq!((s.read, s.created, s.behind_cursor), (0, 0, 5), "{s:?}");
    let mut from_start = args(&redis, "list:work", "imp");
    from_start.from_start = true;
    let s = run(&client, &from_start).await.expect("from the start");
    assert_eq!((s.read, s.created, s.already_present), (5, 0, 5), "{s:?}");

    // Producers push at the head: every index shifts, yet only the new elements are read and
    // new (a third "a" included: equal elements count as a multiset, counted behind the
    // cursor too).
    redis.cmd::<i64>(&["LPUSH", "work", "c", "a"]).await;
    let s = run(&client, &args(&redis, "list:work", "imp"))
        .await
        .expect("third run");
    assert_eq!(
        (s.read, s.created, s.already_present, s.behind_cursor),
        (2, 2, 0, 5),
        "{s:?}"
    );
    // A worker pops the tail: the cursor no longer matches, the whole list is read again,
    // and nothing is new.
    redis.cmd::<String>(&["RPOP", "work"]).await;
    let s = run(&client, &args(&redis, "list:work", "imp"))
        .await
        .expect("fourth run");
    assert_eq!(
        (s.read, s.created, s.already_present, s.behind_cursor),
        (6, 0, 6, 0),
        "{s:?}"
    );
    assert_eq!(jobs_of(&client, "imp").await.len(), 7);
    let cursor = client
        .get_cursor(&format!(
            "import:redis:127.0.0.1:{}/0:list:work",
            redis.port
        ))
        .await
        .expect("cursor");
    assert!(cursor.value.starts_with(b"6 "), "{cursor:?}");

    // The same through the binary from the start: one JSON summary, nothing new.
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
        "--from-start",
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
    // The cursor holds the last entry: a re-run reads nothing, a new entry is all it reads.
    let s = run(&client, &args(&redis, "stream:ev:s", "st"))
        .await
        .expect("again");
    assert_eq!(s.read, 0, "{s:?}");
    let fourth: String = redis.cmd(&["XADD", "ev:s", "*", "n", "4"]).await;
    let s = run(&client, &args(&redis, "stream:ev:s", "st"))
        .await
        .expect("the new one");
    assert_eq!((s.read, s.created), (1, 1), "{s:?}");
    let cursor = client
        .get_cursor(&format!(
            "import:redis:127.0.0.1:{}/0:stream:ev:s",
            redis.port
        ))
        .await
        .expect("cursor");
    assert_eq!(cursor.value, fourth.as_bytes());
    // The group's own run: after its last-delivered id and the cursor, only `fourth`.
    let s = run(&client, &args(&redis, "stream:ev:s:g", "st"))
        .await
        .expect("group again");
    assert_eq!((s.read, s.created, s.already_present), (1, 0, 1), "{s:?}");

    // `--all`: a group's Stream from its first entry, not only after the last-delivered id.
    let a: String = redis.cmd(&["XADD", "ev:all", "*", "n", "a"]).await;
    redis
        .cmd::<String>(&["XADD", "ev:all", "*", "n", "b"])
        .await;
    redis
        .cmd::<()>(&["XGROUP", "CREATE", "ev:all", "g", &a])
        .await;
    let s = run(&client, &args(&redis, "stream:ev:all:g", "sa"))
        .await
        .expect("group");
    assert_eq!(
        (s.read, s.created),
        (1, 1),
        "after the last-delivered id: {s:?}"
    );
    let mut all = args(&redis, "stream:ev:all:g", "sa");
    (all.all, all.from_start) = (true, true);
    let s = run(&client, &all).await.expect("--all");
    assert_eq!(
        (s.read, s.created, s.already_present),
        (2, 1, 1),
        "every entry: {s:?}"
    );
    assert!(jobs_of(&client, "sa")
        .await
        .contains_key(&format!("stream:ev:all:{a}")));
    all.ack = true;
    match run(&client, &all).await {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "all"),
        other => panic!("--all with --ack: {other:?}"),
    }
}

/// The queue's jobs as (idempotency key, argv) of shell jobs.
async fn shell_jobs_of(client: &Client, queue: &str) -> BTreeMap<String, Vec<String>> {
    let jobs = client
        .list_jobs(pb::ListJobsRequest {
            queue: queue.into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list jobs");
    jobs.iter()
        .map(|j| (j.idempotency_key.clone(), argv_of(j)))
        .collect()
}

/// `--command-template`: each list element and each Stream entry becomes a shell job whose
/// argv is the template with `{}` (the item) and `{FIELD}` replaced inside their words: an
/// element full of spaces, quotes and `$(...)` stays one argument; an entry without the field
/// is skipped and counted.
#[tokio::test(flavor = "multi_thread")]
async fn import_redis_command_template() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let nasty = r#"a b; rm -rf / "$(reboot)" --force"#;
    for e in ["plain", nasty] {
        redis.cmd::<i64>(&["LPUSH", "mail", e]).await;
    }
    let mut a = args(&redis, "list:mail", "tpl");
    a.command_template = Some(r#"true --to {} 'literal {{x}}'"#.into());
    let s = run(&client, &a).await.expect("list");
    assert_eq!(s.created, 2, "{s:?}");
    let mut argvs: Vec<Vec<String>> = shell_jobs_of(&client, "tpl").await.into_values().collect();
    argvs.sort();
    assert_eq!(
        argvs,
        vec![
            vec![
                "true".to_string(),
                "--to".into(),
                nasty.into(),
                "literal {x}".into()
            ],
            vec![
                "true".to_string(),
                "--to".into(),
                "plain".into(),
                "literal {x}".into()
            ],
        ]
    );

    redis
        .cmd::<String>(&["XADD", "ev", "*", "to", "x@y", "n", "1"])
        .await;
    redis.cmd::<String>(&["XADD", "ev", "*", "n", "2"]).await;
    let mut a = args(&redis, "stream:ev", "tpl2");
    a.command_template = Some("true {to} {}".into());
    let s = run(&client, &a).await.expect("stream");
    assert_eq!((s.read, s.created, s.skipped_total()), (2, 1, 1), "{s:?}");
    let jobs = shell_jobs_of(&client, "tpl2").await;
    let argv = jobs.values().next().expect("one job");
    assert_eq!(argv, &["true", "x@y", r#"{"n":"1","to":"x@y"}"#]);
}

/// `--drain` moves every element out of the list and deletes it only once its job exists; a
/// holding list left by a crashed run (here made by hand: its first element's job was
/// submitted, the second's not) is imported first with the keys it had, so the first is
/// answered `duplicate` and nothing is lost; a re-run finds nothing; `--continuous` is tested
/// in `import_redis_crash.rs`.
#[tokio::test(flavor = "multi_thread")]
async fn import_redis_drain() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let holding = "work:raftline-importing";
    let batch_id = "00000000000000aa";
    // The crashed run moved "old1" then "old2" (LMOVE pushes at the holding list's head).
    redis.cmd::<i64>(&["LPUSH", holding, "old1", "old2"]).await;
    redis
        .cmd::<()>(&["SET", "work:raftline-importing:batch", batch_id])
        .await;
    client
        .submit(pb::SubmitRequest {
            queue: "dr".into(),
            kind: Some(pb::submit_request::Kind::Payload(b"old1".to_vec())),
            idempotency_key: format!("list:work:drain:{batch_id}:0"),
            ..Default::default()
        })
        .await
        .expect("the crashed run's submit");
    for e in ["a", "b", "a", "c", "d"] {
        redis.cmd::<i64>(&["LPUSH", "work", e]).await;
    }
    let mut a = args(&redis, "list:work", "dr");
    a.drain = true;
    let s = run(&client, &a).await.expect("drain");
    assert_eq!(
        (s.read, s.created, s.already_present, s.drained),
        (7, 6, 1, 7),
        "{s:?}"
    );
    for key in ["work", holding, "work:raftline-importing:batch"] {
        let exists: i64 = redis.cmd(&["EXISTS", key]).await;
        assert_eq!(exists, 0, "{key} is left");
    }
    let jobs = jobs_of(&client, "dr").await;
    let mut payloads: Vec<&[u8]> = jobs.values().map(|(p, _)| p.as_slice()).collect();
    payloads.sort();
    let want: Vec<&[u8]> = vec![b"a", b"a", b"b", b"c", b"d", b"old1", b"old2"];
    assert_eq!(payloads, want);
    // Pushed again later, equal content is a new job (draining has no content keys).
    redis.cmd::<i64>(&["LPUSH", "work", "a"]).await;
    let s = run(&client, &a).await.expect("drain again");
    assert_eq!((s.read, s.created), (1, 1), "{s:?}");
    let s = run(&client, &a).await.expect("nothing left");
    assert_eq!(s.read, 0, "{s:?}");
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

    // Flags that do not fit the source, and a template that would run an item as code,
    // name their flag.
    let mut drain = args(&redis, "stream:s", "bad");
    drain.drain = true;
    let mut inject = args(&redis, "list:work", "bad");
    inject.command_template = Some(r#"sh -c "echo {}""#.into());
    let mut dry = args(&redis, "list:work", "bad");
    (dry.dry_run, dry.continuous) = (true, true);
    let mut all = args(&redis, "list:work", "bad");
    all.all = true;
    for (a, field) in [
        (drain, "drain"),
        (all, "all"),
        (inject, "command-template"),
        (dry, "continuous"),
    ] {
        match run(&client, &a).await {
            Err(Error::InvalidArgument { field: f, message }) => {
                assert_eq!(f, field, "{message}")
            }
            other => panic!("{field}: {other:?}"),
        }
    }

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
