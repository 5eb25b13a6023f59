//! Schedules and events on a real 3-node cluster: a schedule firing every second while the
//! leader is killed every ~10 s runs each tick exactly once (from its run history and the
//! jobs); an event emitted twice with one dedup key starts its trigger once; bad schedules are
//! refused naming the field.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use raftline::proto::pb;

/// Every second for 60 s, `catch_up = all`, with `kill -9` of the leader every ~10 s (restarted
/// at once): each tick in the window has exactly one run, none doubled, none missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_second_schedule_survives_leader_kills_exactly_once() {
    let mut c = Cluster::start(Settings::default()).await;
    let out = c.cli(&[
        "schedule",
        "create",
        "--name",
        "heartbeat",
        "--cron",
        "* * * * * *",
        "--tz",
        "Europe/Berlin",
        "--catch-up",
        "all:100",
        "--queue",
        "cron",
        "--json",
        "--",
        "true",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = created["id"].as_u64().unwrap();
    let start = Instant::now();
    let mut kills = 0;
    while start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let leader = c.wait_leader(None).await;
        c.kill9(leader);
        c.spawn(leader);
        kills += 1;
    }
    c.wait_leader(None).await;
    let client = c.client();
    // Let the last ticks be created, then stop the schedule.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paused = client
        .control_schedule(pb::ControlScheduleRequest {
            schedule: Some(pb::ScheduleRef {
                id,
                ..Default::default()
            }),
            op: "pause".into(),
            ..Default::default()
        })
        .await
        .expect("pause");
    assert_eq!(paused.id, id);
    let s = client.schedule(id, "").await.expect("schedule");
    let mut runs: BTreeMap<u64, Vec<&pb::ScheduleRun>> = BTreeMap::new();
    for r in &s.history {
        runs.entry(r.tick_ms).or_default().push(r);
    }
    let first = *runs.keys().next().expect("runs");
    let last = *runs.keys().last().unwrap();
    let mut missing = Vec::new();
    let mut tick = first;
    while tick <= last {
        match runs.get(&tick).map(Vec::as_slice) {
            Some([one]) => assert_eq!(one.outcome, "job", "tick {tick}: {one:?}"),
            Some(many) => panic!("tick {tick} ran {} times: {many:?}", many.len()),
            None => missing.push(tick),
        }
        tick += 1_000;
    }
    assert!(missing.is_empty(), "ticks with no run: {missing:?}");
    let ticks = runs.len();
    assert!(ticks >= 55, "only {ticks} ticks in about 62 s");
    // The jobs agree: one per tick, keyed by it.
    let jobs = client
        .list_jobs(pb::ListJobsRequest {
            queue: "cron".into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("jobs");
    assert_eq!(jobs.len(), ticks, "one job per tick");
    let mut keys: Vec<&str> = jobs.iter().map(|j| j.idempotency_key.as_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), ticks);
    println!("{ticks} ticks, {kills} leader kills, each tick ran once");
    let out = c.cli(&["schedule", "get", "heartbeat"]);
    assert!(out.status.success(), "{}", show(&out));
}

/// An event emitted twice with the same dedup key starts its trigger's job once; bad schedules
/// are refused with the field named and exit code 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_dedup_and_bad_schedules() {
    let c = Cluster::start(Settings::default()).await;
    let out = c.cli(&[
        "trigger",
        "create",
        "--topic",
        "deploys",
        "--queue",
        "hooks",
        "--",
        "sh",
        "-c",
        "echo $RAFTLINE_EVENT_PAYLOAD",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let emit = || {
        c.cli(&[
            "event",
            "emit",
            "deploys",
            "--dedup-key",
            "release-42",
            "--payload",
            "{\"version\":42}",
            "--json",
        ])
    };
    let first: serde_json::Value = serde_json::from_slice(&emit().stdout).expect("json");
    assert_eq!(first["duplicate"], false);
    assert_eq!(first["jobs"].as_array().unwrap().len(), 1);
    let second: serde_json::Value = serde_json::from_slice(&emit().stdout).expect("json");
    assert_eq!(second["duplicate"], true);
    assert!(second["jobs"].as_array().unwrap().is_empty());
    let client = c.client();
    let job_id = first["jobs"][0].as_u64().unwrap();
    let job = wait_for("the triggered job", Duration::from_secs(30), || async {
        let j = client.job(job_id, false).await.ok()?;
        (j.state == "succeeded").then_some(j)
    })
    .await;
    assert!(
        job.attempts[0].output_tail.contains("{\"version\":42}"),
        "{job:?}"
    );
    let hooks = client
        .list_jobs(pb::ListJobsRequest {
            queue: "hooks".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(hooks.len(), 1);

    // A durable timer emits the same topic later, with a new key: one more job.
    let out = c.cli(&[
        "timer",
        "create",
        "--topic",
        "deploys",
        "--dedup-key",
        "release-43",
        "--in",
        "1s",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    wait_for("the timer's job", Duration::from_secs(30), || async {
        let hooks = client
            .list_jobs(pb::ListJobsRequest {
                queue: "hooks".into(),
                ..Default::default()
            })
            .await
            .ok()?;
        (hooks.len() == 2).then_some(())
    })
    .await;
    assert!(client.timers().await.unwrap().is_empty(), "fired and gone");

    for (args, field) in [
        (vec!["--cron", "61 * * * *"], "cron"),
        (vec!["--cron", "0 * * * *", "--tz", "Mars/Olympus"], "tz"),
        (
            vec!["--cron", "0 * * * *", "--start", "2000", "--end", "1000"],
            "end_ms",
        ),
        (vec!["--cron", "@every 100ms"], "cron"),
        (
            vec!["--cron", "0 * * * *", "--catch-up", "some"],
            "catch_up",
        ),
    ] {
        let mut cmd = vec!["schedule", "create", "--name", "bad"];
        cmd.extend(args);
        cmd.extend(["--", "true"]);
        let out = c.cli(&cmd);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("invalid argument: {field}")), "{err}");
    }
    assert!(client.schedules().await.unwrap().is_empty());
}
