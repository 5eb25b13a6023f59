//! The CLI's output for people on a real cluster: listings are tables (a header row, then one
//! row per item, times as RFC 3339 with how long ago), coloured on a terminal and never when
//! NO_COLOR is set, `--color never` is given, or stdout is a pipe. The terminal is a real
//! pseudo-terminal: the command runs under util-linux `script`.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const ESC: &str = "\x1b[";

/// Runs the CLI with stdout and stderr on a pseudo-terminal 160 columns wide (`script -q -e
/// -c`), with `env` set and NO_COLOR removed unless `env` sets it; returns what the terminal
/// showed.
fn on_tty(c: &Cluster, env: &[(&str, &str)], args: &[&str]) -> String {
    on_tty_of(c, 160, env, args)
}

/// [`on_tty`] on a terminal `cols` columns wide.
fn on_tty_of(c: &Cluster, cols: u16, env: &[(&str, &str)], args: &[&str]) -> String {
    let addrs: Vec<String> = c.ids().iter().map(|id| c.node(*id).api.clone()).collect();
    let mut words = vec![BIN.to_string(), "--addr".into(), addrs.join(",")];
    words.extend(args.iter().map(|a| a.to_string()));
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect();
    let line = format!("stty cols {cols} rows 50; exec {}", quoted.join(" "));
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(c.dir.path())
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run script (util-linux)");
    assert!(out.status.success(), "under a terminal: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

/// The CLI's output through a pipe, NO_COLOR removed; it must succeed.
fn piped(dir: &Path, addr: &str, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args([&["--addr", addr], args].concat())
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run raftline");
    assert!(out.status.success(), "{}", show(&out));
    out
}

/// A succeeded and a dead job on a 1-node cluster; their ids.
async fn two_jobs(c: &Cluster) -> (u64, u64) {
    c.wait_leader(None).await;
    let client = c.client();
    let ok = client.submit(shell_job("out", &["true"])).await.unwrap();
    let mut failing = shell_job("out", &["false"]);
    failing.max_attempts = 1;
    let dead = client.submit(failing).await.unwrap();
    wait_finished(&client, &[ok, dead], Duration::from_secs(30)).await;
    (ok, dead)
}

/// Through a pipe, `jobs list` is a plain table: the header row first, one row per job with
/// its state and creation time (RFC 3339 and how long ago), no colour; `--color always`
/// colours it anyway. Queue and dead-letter listings are tables with their header too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_output_tables_through_a_pipe() {
    let c = Cluster::start(Settings {
        nodes: 1,
        ..Settings::default()
    })
    .await;
    let (ok, dead) = two_jobs(&c).await;
    let addr = c.node(c.ids()[0]).api.clone();

    let out = piped(c.dir.path(), &addr, &["jobs", "list", "--queue", "out"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(ESC), "colour through a pipe: {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows: {text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "QUEUE", "STATE", "PRIO", "ATTEMPTS", "CREATED", "COMMAND"],
        "{text}"
    );
    let row = |id: u64| {
        *lines[1..]
            .iter()
            .find(|l| l.split_whitespace().next() == Some(&id.to_string()))
            .unwrap_or_else(|| panic!("no row for job {id}: {text}"))
    };
    let state_col = lines[0].find("STATE").unwrap();
    assert_eq!(row(ok).find("succeeded"), Some(state_col), "{text}");
    assert_eq!(row(dead).find("dead"), Some(state_col), "{text}");
    let created = row(ok).split_whitespace().nth(5).unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created:?} is not RFC 3339: {text}"
    );
    assert!(
        row(ok).contains(" ago)") || row(ok).contains("(now)"),
        "{text}"
    );

    let out = piped(
        c.dir.path(),
        &addr,
        &["--color", "always", "jobs", "list", "--queue", "out"],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(ESC),
        "--color always through a pipe: {}",
        show(&out)
    );

    for (args, first) in [
        (&["queue", "list"][..], "QUEUE"),
        (&["dlq", "list"][..], "ID"),
        (&["timer", "list"][..], "ID"),
        (&["resource", "list"][..], "NAME"),
    ] {
        let out = piped(c.dir.path(), &addr, args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.lines()
                .next()
                .and_then(|l| l.split_whitespace().next()),
            Some(first),
            "{args:?}: {text}"
        );
    }
    let out = piped(c.dir.path(), &addr, &["dlq", "list", "--queue", "out"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(&dead.to_string()), "{text}");
}

/// On a terminal, states are coloured (in the `jobs list` table and in `job get`); with
/// NO_COLOR=1 or `--color never` nothing is, and an empty NO_COLOR counts as unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_output_colours_only_on_a_terminal_without_no_color() {
    let c = Cluster::start(Settings {
        nodes: 1,
        ..Settings::default()
    })
    .await;
    let (ok, dead) = two_jobs(&c).await;
    let list = ["jobs", "list", "--queue", "out"];

    let shown = on_tty(&c, &[], &list);
    assert!(shown.contains(ESC), "no colour on a terminal: {shown:?}");
    assert!(
        shown.lines().next().is_some_and(|l| l.contains("STATE")),
        "{shown:?}"
    );
    assert!(
        shown.contains("succeeded") && shown.contains("dead"),
        "{shown:?}"
    );
    let get = on_tty(&c, &[], &["job", "get", &ok.to_string()]);
    assert!(get.contains("\x1b[32msucceeded"), "job get: {get:?}");
    let get = on_tty(&c, &[], &["job", "get", &dead.to_string()]);
    assert!(get.contains("\x1b[31mdead"), "job get: {get:?}");
    let shown = on_tty(&c, &[("NO_COLOR", "")], &list);
    assert!(shown.contains(ESC), "an empty NO_COLOR is unset: {shown:?}");

    let shown = on_tty(&c, &[("NO_COLOR", "1")], &list);
    assert!(!shown.contains(ESC), "colour with NO_COLOR=1: {shown:?}");
    assert!(
        shown.contains("succeeded") && shown.contains("dead"),
        "{shown:?}"
    );
    let get = on_tty(&c, &[("NO_COLOR", "1")], &["job", "get", &ok.to_string()]);
    assert!(!get.contains(ESC), "job get with NO_COLOR=1: {get:?}");
    let shown = on_tty(&c, &[], &["--color", "never", "jobs", "list"]);
    assert!(!shown.contains(ESC), "colour with --color never: {shown:?}");
    // JSON is for programs: never coloured, even on a terminal.
    let shown = on_tty(&c, &[], &["jobs", "list", "--queue", "out", "--json"]);
    assert!(!shown.contains(ESC), "colour in JSON: {shown:?}");
    let list: serde_json::Value = serde_json::from_str(shown.trim()).expect("one JSON array");
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
}

/// On a terminal a table fits the terminal's width (a long command wraps in its cell); through
/// a pipe its row stays one long line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_output_tables_fit_the_terminal() {
    let c = Cluster::start(Settings {
        nodes: 1,
        ..Settings::default()
    })
    .await;
    c.wait_leader(None).await;
    let long = "x".repeat(150);
    let id = c
        .client()
        .submit(shell_job("wide", &["echo", &long]))
        .await
        .unwrap();
    let list = ["jobs", "list", "--queue", "wide"];
    let shown = on_tty_of(&c, 80, &[("NO_COLOR", "1")], &list);
    let widest = shown.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(
        widest <= 80,
        "{widest} columns on an 80-column terminal:\n{shown}"
    );
    assert_eq!(shown.matches('x').count(), 150, "the command cut:\n{shown}");
    assert!(shown.lines().count() > 2, "nothing wrapped:\n{shown}");
    let out = c.cli(&list);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[1].trim_start().starts_with(&id.to_string()), "{text}");
    assert!(lines[1].ends_with(&long), "{text}");
}
