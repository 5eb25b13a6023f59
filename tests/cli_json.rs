//! Every CLI command that talks to a cluster or prints a result takes `--json` (a walk of
//! clap's command tree), and on a real cluster every list command's `--json` is ONE JSON array
//! while `--jsonl` (where a list streams) is one object per line.

mod common;

use std::path::Path;
use std::time::Duration;

use clap::CommandFactory;
use common::*;

fn leaves(cmd: &clap::Command, path: String, out: &mut Vec<(String, bool)>) {
    let subs: Vec<&clap::Command> = cmd.get_subcommands().collect();
    if subs.is_empty() {
        let json = cmd.get_arguments().any(|a| a.get_id() == "json");
        out.push((path, json));
        return;
    }
    for s in subs {
        leaves(s, format!("{path} {}", s.get_name()), out);
    }
}

#[test]
fn every_command_takes_json() {
    let mut out = Vec::new();
    leaves(&raftline::cli::Cli::command(), "raftline".into(), &mut out);
    let missing: Vec<&str> = out
        .iter()
        .filter(|(_, json)| !json)
        .map(|(p, _)| p.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "{} commands without --json: {missing:#?}",
        missing.len()
    );
}

/// No subcommand argument shares its id with a global one (`--token`, `--addr`, ...): clap
/// would hand the global's value to the field and panic on the type (as `lock release
/// --fencing-token` once did, its field being named `token`).
#[test]
fn no_argument_shadows_a_global_one() {
    fn walk(cmd: &clap::Command, globals: &[String], path: String, out: &mut Vec<String>) {
        for a in cmd.get_arguments().filter(|a| !a.is_global_set()) {
            if globals.iter().any(|g| g == a.get_id().as_str()) {
                out.push(format!("{path}: {}", a.get_id()));
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, globals, format!("{path} {}", s.get_name()), out);
        }
    }
    let root = raftline::cli::Cli::command();
    let globals: Vec<String> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().to_string())
        .collect();
    assert!(globals.contains(&"token".to_string()), "{globals:?}");
    let mut out = Vec::new();
    walk(&root, &globals, "raftline".into(), &mut out);
    assert!(out.is_empty(), "arguments shadowing a global one: {out:#?}");
}

/// The stdout of a CLI run that must succeed.
fn stdout_of(c: &Cluster, args: &[&str]) -> String {
    let out = c.cli(args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// With something in every list (jobs, a dead letter, a schedule, a resource, a timer, a
/// trigger, a token, a webhook, a workflow, audit entries), each list command's `--json`
/// parses as one JSON array holding it, and each `--jsonl` as one JSON object per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_commands_print_one_json_array() {
    let c = Cluster::start(Settings {
        nodes: 1,
        ..Settings::default()
    })
    .await;
    c.wait_leader(None).await;
    let client = c.client();
    let ok = client
        .submit(shell_job("q", &["echo", "hi"]))
        .await
        .unwrap();
    let mut failing = shell_job("q", &["false"]);
    failing.max_attempts = 1;
    let dead = client.submit(failing).await.unwrap();
    wait_finished(&client, &[ok, dead], Duration::from_secs(30)).await;
    let cli = |args: &[&str]| stdout_of(&c, args);
    cli(&["resource", "set", "slot", "--capacity", "2"]);
    cli(&[
        "schedule",
        "create",
        "--name",
        "s",
        "--cron",
        "0 0 1 1 *",
        "--",
        "true",
    ]);
    cli(&[
        "timer",
        "create",
        "--topic",
        "t",
        "--dedup-key",
        "k",
        "--in",
        "1h",
    ]);
    cli(&["trigger", "create", "--topic", "t", "--", "true"]);
    cli(&["token", "create", "--role", "viewer", "--name", "v"]);
    let hook = cli(&[
        "webhook",
        "create",
        "--url",
        "http://127.0.0.1:9/hook",
        "--topics",
        "job.dead",
        "--json",
    ]);
    let hook: serde_json::Value = serde_json::from_str(&hook).expect("webhook JSON");
    let hook = hook["id"].to_string();
    let dag = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/diamond.toml");
    cli(&["dag", "submit", dag.to_str().unwrap()]);
    let ok_s = ok.to_string();

    let lists: [&[&str]; 14] = [
        &["jobs", "list"],
        &["jobs", "export", "--json"],
        &["dlq", "list"],
        &["job", "logs", &ok_s],
        &["queue", "list"],
        &["schedule", "list"],
        &["resource", "list"],
        &["timer", "list"],
        &["trigger", "list"],
        &["token", "list"],
        &["audit", "list"],
        &["webhook", "list"],
        &["webhook", "deliveries", &hook],
        &["dag", "list"],
    ];
    for args in lists {
        let mut args = args.to_vec();
        if !args.contains(&"--json") {
            args.push("--json");
        }
        let text = cli(&args);
        let value: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON value ({e}): {text}"));
        let list = value
            .as_array()
            .unwrap_or_else(|| panic!("{args:?}: not an array: {text}"));
        // A new webhook has no deliveries yet; everything else was made above.
        if args[1] != "deliveries" {
            assert!(!list.is_empty(), "{args:?}: empty: {text}");
        }
        assert!(list.iter().all(|v| v.is_object()), "{args:?}: {text}");
    }
    for args in [
        &["jobs", "list", "--jsonl"][..],
        &["jobs", "export", "--jsonl"],
        &["dlq", "list", "--jsonl"],
        &["job", "logs", &ok_s, "--jsonl"],
    ] {
        let text = cli(args);
        assert!(text.lines().count() >= 1, "{args:?}: {text}");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{args:?}: {line:?} is not JSON ({e})"));
            assert!(v.is_object(), "{args:?}: {line}");
        }
    }
    let out = c.cli(&["jobs", "list", "--json", "--jsonl"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}
