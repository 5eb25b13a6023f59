//! The CLI for people and scripts on a real 3-node cluster: `job wait` (exit codes, timeout),
//! `job logs --follow`, the `--json` output of control and list commands, and times and
//! durations in their human forms (RFC 3339, `1h30m`).

mod common;

use std::process::Output;

use common::*;

/// The JSON object a command printed on stdout.
fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", show(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON value ({e}): {}", show(out)))
}

/// Each line a command printed on stdout, as JSON.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", show(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The id `submit --json` printed.
fn submit(c: &Cluster, args: &[&str]) -> u64 {
    let out = c.cli(&[&["submit", "--json"], args].concat());
    json_of(&out)["id"].as_u64().expect("an id")
}

/// `job wait` returns when the job ends: exit 0 with the job (JSON, state succeeded) when it
/// succeeded, exit 1 when it ended dead, and exit 1 with a message when the timeout passed
/// first (the job goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_with_the_jobs_outcome() {
    let c = Cluster::start(Settings::default()).await;
    c.wait_leader(None).await;

    let id = submit(&c, &["--queue", "w", "--", "sleep", "1"]);
    let out = c.cli(&["job", "wait", &id.to_string(), "--timeout", "1m", "--json"]);
    let job = json_of(&out);
    assert_eq!(
        (job["id"].as_u64(), job["state"].as_str()),
        (Some(id), Some("succeeded"))
    );

    let failing = submit(
        &c,
        &[
            "--queue",
            "w",
            "--max-attempts",
            "1",
            "--",
            "sh",
            "-c",
            "exit 7",
        ],
    );
    let out = c.cli(&["job", "wait", &failing.to_string(), "--timeout", "1m"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("dead") && stdout.contains("exit 7"),
        "{}",
        show(&out)
    );
    assert!(stderr.contains("ended dead"), "{}", show(&out));
    assert_eq!(
        stderr.lines().count(),
        1,
        "errors are one line: {}",
        show(&out)
    );

    let slow = submit(&c, &["--queue", "w", "--", "sleep", "30"]);
    let started = std::time::Instant::now();
    let out = c.cli(&["job", "wait", &slow.to_string(), "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timed out"),
        "{}",
        show(&out)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let out = c.cli(&["job", "cancel", &slow.to_string(), "--json"]);
    assert_eq!(json_of(&out)["state"], "cancelled");
    let out = c.cli(&["job", "wait", &slow.to_string(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    for bad in ["0s", "25h", "soon"] {
        let out = c.cli(&["job", "wait", &id.to_string(), "--timeout", bad]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "--timeout {bad}: {}",
            show(&out)
        );
    }
    let out = c.cli(&["job", "wait", "999999", "--timeout", "5s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

/// `job logs --follow` on a job that starts a moment later prints the attempt (number, node,
/// worker, exit code) and its output, and ends when the job does; `--json` prints one object
/// per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_prints_each_attempts_output() {
    let c = Cluster::start(Settings::default()).await;
    c.wait_leader(None).await;

    let id = submit(
        &c,
        &[
            "--queue",
            "l",
            "--delay",
            "1s",
            "--",
            "echo",
            "hello-from-logs",
        ],
    );
    let out = c.cli(&["job", "logs", &id.to_string(), "--follow"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hello-from-logs"), "{}", show(&out));
    assert!(
        text.contains(&format!("job {id} attempt 1")),
        "{}",
        show(&out)
    );
    assert!(
        text.contains("exit 0") && text.contains("succeeded"),
        "{}",
        show(&out)
    );

    let out = c.cli(&["job", "logs", &id.to_string(), "--json"]);
    let lines = json_of(&out).as_array().cloned().unwrap_or_default();
    assert_eq!(lines.len(), 1, "{}", show(&out));
    let a = &lines[0];
    assert_eq!(
        (a["job_id"].as_u64(), a["attempt"].as_u64()),
        (Some(id), Some(1))
    );
    assert_eq!(
        (a["result"].as_str(), a["exit_code"].as_i64()),
        (Some("succeeded"), Some(0))
    );
    assert!(a["node"].as_u64().is_some(), "{a}");
    assert_eq!(a["output"].as_str().map(str::trim), Some("hello-from-logs"));

    // Two attempts: both printed, in order, with their exit codes.
    let twice = submit(
        &c,
        &[
            "--queue",
            "l",
            "--max-attempts",
            "2",
            "--",
            "sh",
            "-c",
            "echo try; exit 4",
        ],
    );
    let out = c.cli(&["job", "logs", &twice.to_string(), "--follow", "--jsonl"]);
    let ended: Vec<_> = json_lines(&out)
        .into_iter()
        .filter(|a| a["result"] != "running")
        .collect();
    let attempts: Vec<_> = ended.iter().map(|a| a["attempt"].as_u64()).collect();
    assert_eq!(attempts, [Some(1), Some(2)], "{}", show(&out));
    assert!(ended.iter().all(|a| a["exit_code"] == 4), "{}", show(&out));
}

/// `--run-at` and timer times take RFC 3339, durations take `1h30m`, and a time that is
/// neither RFC 3339 nor ms is refused naming the flag (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_take_rfc3339_and_durations_1h30m() {
    let c = Cluster::start(Settings::default()).await;
    c.wait_leader(None).await;

    // --run-at as RFC 3339, --delay as a sum of units.
    let at_ms = raftline::raft::wall_clock_ms() + 3_600_000;
    let at = chrono::DateTime::from_timestamp_millis(at_ms as i64)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let id = submit(&c, &["--queue", "t", "--run-at", &at, "--", "true"]);
    let job = json_of(&c.cli(&["job", "get", &id.to_string(), "--json"]));
    assert_eq!(job["run_at_ms"].as_u64(), Some(at_ms), "{job}");
    let delayed = submit(&c, &["--queue", "t", "--delay", "1h30m", "--", "true"]);
    let job = json_of(&c.cli(&["job", "get", &delayed.to_string(), "--json"]));
    let delay = job["run_at_ms"].as_u64().unwrap() - job["created_ms"].as_u64().unwrap();
    assert_eq!(delay, 5_400_000, "{job}");
    let out = c.cli(&[
        "submit", "--queue", "t", "--run-at", "tomorrow", "--", "true",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run_at"),
        "{}",
        show(&out)
    );

    // Timers: created at an RFC 3339 time and after 1h30m, listed as one array, cancelled.
    let out = c.cli(&[
        "timer",
        "create",
        "--topic",
        "tick",
        "--dedup-key",
        "a",
        "--at",
        &at,
        "--json",
    ]);
    let timer = json_of(&out);
    assert_eq!(timer["due_ms"].as_u64(), Some(at_ms), "{timer}");
    let out = c.cli(&[
        "timer",
        "create",
        "--topic",
        "tick",
        "--dedup-key",
        "b",
        "--in",
        "1h30m",
        "--json",
    ]);
    let later = json_of(&out);
    let list = json_of(&c.cli(&["timer", "list", "--json"]));
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let tid = timer["id"].as_u64().unwrap().to_string();
    let out = json_of(&c.cli(&["timer", "cancel", &tid, "--json"]));
    assert_eq!(
        (out["id"].as_u64(), out["state"].as_str()),
        (timer["id"].as_u64(), Some("cancelled"))
    );
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == later["id"]);
    let created = listed
        .and_then(|t| t["created_ms"].as_u64())
        .expect("listed");
    assert_eq!(
        later["due_ms"].as_u64(),
        Some(created + 5_400_000),
        "{list}"
    );

    let out = c.cli(&["jobs", "export", "--queue", "t", "--jsonl"]);
    let ids: Vec<_> = json_lines(&out).iter().map(|j| j["id"].as_u64()).collect();
    assert_eq!(ids, [Some(id), Some(delayed)], "{}", show(&out));
    let out = json_of(&c.cli(&["jobs", "export", "--queue", "t", "--json"]));
    let ids: Vec<_> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64())
        .collect();
    assert_eq!(ids, [Some(id), Some(delayed)], "{out}");
}

/// Control and list commands print one JSON value with `--json`: triggers, schedules, locks,
/// workflow files checked offline, the API document; `--json` and `--format csv` conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_of_control_and_list_commands() {
    let c = Cluster::start(Settings::default()).await;
    c.wait_leader(None).await;

    let trig = json_of(&c.cli(&["trigger", "create", "--topic", "t1", "--json", "--", "true"]));
    let list = json_of(&c.cli(&["trigger", "list", "--json"]));
    assert_eq!(list[0]["id"], trig["id"], "{list}");
    let out = json_of(&c.cli(&["trigger", "delete", &trig["id"].to_string(), "--json"]));
    assert_eq!(out["state"], "deleted");
    let out = c.cli(&[
        "schedule",
        "create",
        "--name",
        "s1",
        "--cron",
        "@every 1h",
        "--json",
        "--",
        "true",
    ]);
    assert_eq!(json_of(&out)["name"], "s1");
    let out = json_of(&c.cli(&["schedule", "trigger", "s1", "--json"]));
    assert_eq!(out["started"], 1, "{out}");
    let out = json_of(&c.cli(&["schedule", "pause", "s1", "--json"]));
    assert_eq!(
        (out["op"].as_str(), out["state"].as_str()),
        (Some("pause"), Some("paused"))
    );

    // Locks (renewed and released by fencing token), workflows, the API document.
    json_of(&c.cli(&["resource", "set", "slot", "--capacity", "1", "--json"]));
    let grant = json_of(&c.cli(&["lock", "acquire", "slot", "--owner", "me", "--json"]));
    let token = grant["token"].to_string();
    let renewed = json_of(&c.cli(&["lock", "renew", "slot", "--fencing-token", &token, "--json"]));
    assert_eq!(renewed["token"], grant["token"]);
    let out = json_of(&c.cli(&[
        "lock",
        "release",
        "slot",
        "--fencing-token",
        &token,
        "--json",
    ]));
    assert_eq!(
        (out["resource"].as_str(), out["released"].as_bool()),
        (Some("slot"), Some(true))
    );
    let plan = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/release-plan.toml");
    let out = json_of(&c.cli(&["dag", "validate", plan, "--json"]));
    assert_eq!(
        (out["valid"].as_bool(), out["step_count"].as_u64()),
        (Some(true), Some(86))
    );
    assert_eq!(out["steps"].as_array().map(Vec::len), Some(86));
    let diamond = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/diamond.toml");
    let wf = json_of(&c.cli(&["dag", "submit", diamond, "--json"]))["id"].to_string();
    let out = json_of(&c.cli(&["dag", "show", &wf, "--format", "mermaid", "--json"]));
    assert_eq!(out["name"], "diamond");
    assert!(
        out["rendered"]
            .as_str()
            .is_some_and(|r| r.starts_with("flowchart")),
        "{out}"
    );
    let out = json_of(&c.cli(&["dag", "cancel", &wf, "--json"]));
    assert_eq!(
        (out["op"].as_str(), out["state"].as_str()),
        (Some("cancel"), Some("cancelled"))
    );
    let out = json_of(&c.cli(&["openapi", "--json"]));
    assert!(out["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1")));
    let out = c.cli(&["jobs", "export", "--json", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

/// `worker --json` prints one JSON line per attempt it ran: the job, the attempt, the queue,
/// the outcome and the exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_json_prints_each_attempt() {
    let c = Cluster::start(Settings {
        node_extra: "queues = [\"nodes-only\"]".into(),
        ..Settings::default()
    })
    .await;
    c.wait_leader(None).await;
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.api.clone()).collect();
    let worker = std::process::Command::new(BIN)
        .args([
            "--addr",
            &addrs.join(","),
            "worker",
            "--queue",
            "ext",
            "--json",
        ])
        .current_dir(c.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn worker");
    let ok = submit(&c, &["--queue", "ext", "--", "true"]);
    let failing = submit(
        &c,
        &[
            "--queue",
            "ext",
            "--max-attempts",
            "1",
            "--",
            "sh",
            "-c",
            "exit 5",
        ],
    );
    let out = c.cli(&["job", "wait", &ok.to_string(), "--timeout", "30s"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = c.cli(&["job", "wait", &failing.to_string(), "--timeout", "30s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(worker.id() as libc::pid_t, libc::SIGTERM);
    }
    let out = worker.wait_with_output().expect("worker output");
    let lines = json_lines(&out);
    let of = |id: u64| lines.iter().find(|l| l["id"] == id).cloned();
    let ran = of(ok).unwrap_or_else(|| panic!("job {ok}: {}", show(&out)));
    assert_eq!(
        (ran["attempt"].as_u64(), ran["queue"].as_str()),
        (Some(1), Some("ext"))
    );
    assert_eq!(
        (ran["outcome"].as_str(), ran["exit_code"].as_i64()),
        (Some("succeeded"), Some(0))
    );
    let failed = of(failing).unwrap_or_else(|| panic!("job {failing}: {}", show(&out)));
    assert_eq!(
        (failed["outcome"].as_str(), failed["exit_code"].as_i64()),
        (Some("failed"), Some(5))
    );
    assert_eq!(failed["error_class"], "transient", "{failed}");
    assert_eq!(lines.len(), 2, "{}", show(&out));
}
