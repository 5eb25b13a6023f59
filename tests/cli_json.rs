//! Every CLI command that talks to a cluster or prints a result takes `--json`: a walk of
//! clap's command tree.

use clap::CommandFactory;

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
