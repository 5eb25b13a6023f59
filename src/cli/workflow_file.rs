//! Workflow files, for the CLI: a definition in TOML or JSON becomes a
//! [`pb::SubmitWorkflowRequest`] (how a workflow is shown is [`super::workflow_view`]).
//!
//! ## File format
//!
//! ```toml
//! name = "release"
//! failure_policy = "fail_fast"   # or "continue"; default fail_fast
//! max_parallel = 4               # 1..=64; default 10
//!
//! [[steps]]
//! name = "build"
//! command = ["make", "all"]      # or: shell = "make all" (run by sh -c), or: payload = "..."
//! queue = "default"              # default "default"
//! priority = 5                   # 1..=10
//! retries = 2                    # attempts after the first (or max_attempts = 3)
//! timeout = "10m"                # also lease_ttl = "30s"
//! tags = ["ci"]
//! requires = ["docker"]          # capabilities a worker must offer
//! resources = ["deploy_slot", "test_redis:1"]   # held while it runs (see machine::resources)
//! env = { CI = "1" }
//! cwd = "/srv/app"
//! permanent_exit_codes = [2]
//! depends_on = ["fetch", { step = "lint", condition = "always" }]
//! compensate = { shell = "make clean" }   # same job fields; run on rollback
//! ```
//!
//! Unknown keys are refused, so a typo (`depend_on`) is an error rather than a step that runs
//! too early. The same checks as the server's run offline in `raftline dag validate`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::machine::limits::{MAX_ATTEMPTS_MAX, PRIORITY_MAX, PRIORITY_MIN};
use crate::proto::{self, pb};

/// A step (or, without `name`/`depends_on`/`compensate`, a compensation job) in a file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStep {
    #[serde(default)]
    name: String,
    command: Option<Vec<String>>,
    shell: Option<String>,
    payload: Option<String>,
    queue: Option<String>,
    priority: Option<u32>,
    retries: Option<u32>,
    max_attempts: Option<u32>,
    timeout: Option<String>,
    lease_ttl: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    #[serde(default)]
    permanent_exit_codes: Vec<i32>,
    #[serde(default)]
    depends_on: Vec<FileDep>,
    compensate: Option<Box<FileStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileDep {
    Name(String),
    Full {
        step: String,
        #[serde(default)]
        condition: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    failure_policy: String,
    #[serde(default)]
    max_parallel: u32,
    steps: Vec<FileStep>,
}

fn invalid(field: String, message: impl Into<String>) -> Error {
    Error::InvalidArgument {
        field,
        message: message.into(),
    }
}

/// The queue a step runs in when its file names none.
pub const DEFAULT_QUEUE: &str = "default";

impl FileStep {
    fn job(&self, at: &str) -> Result<pb::SubmitRequest> {
        let kind = match (&self.command, &self.shell, &self.payload) {
            (Some(argv), None, None) => pb::submit_request::Kind::Shell(pb::ShellCommand {
                argv: argv.clone(),
                env: self.env.clone().into_iter().collect::<HashMap<_, _>>(),
                cwd: self.cwd.clone().unwrap_or_default(),
            }),
            (None, Some(script), None) => pb::submit_request::Kind::Shell(pb::ShellCommand {
                argv: vec!["sh".into(), "-c".into(), script.clone()],
                env: self.env.clone().into_iter().collect::<HashMap<_, _>>(),
                cwd: self.cwd.clone().unwrap_or_default(),
            }),
            (None, None, Some(payload)) => {
                pb::submit_request::Kind::Payload(payload.clone().into_bytes())
            }
            _ => {
                return Err(invalid(
                    format!("{at}command"),
                    "give exactly one of command, shell or payload",
                ))
            }
        };
        let max_attempts = match (self.retries, self.max_attempts) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    format!("{at}retries"),
                    "give retries or max_attempts, not both",
                ))
            }
            (Some(r), None) => r.saturating_add(1),
            (None, Some(0)) => {
                return Err(invalid(
                    format!("{at}max_attempts"),
                    format!("is 0, must be 1..={MAX_ATTEMPTS_MAX}"),
                ))
            }
            (None, Some(m)) => m,
            (None, None) => 0,
        };
        super::parse::nonzero(
            &format!("{at}priority"),
            self.priority,
            PRIORITY_MIN,
            PRIORITY_MAX,
        )?;
        let duration = |field: &str, text: &Option<String>| -> Result<Option<u64>> {
            text.as_deref()
                .map(|t| super::parse::parse_duration(&format!("{at}{field}"), t))
                .transpose()
        };
        Ok(pb::SubmitRequest {
            queue: self
                .queue
                .clone()
                .unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
            priority: self.priority.unwrap_or(0),
            kind: Some(kind),
            max_attempts,
            timeout_ms: duration("timeout", &self.timeout)?,
            lease_ttl_ms: duration("lease_ttl", &self.lease_ttl)?.unwrap_or(0),
            tags: self.tags.clone(),
            required_capabilities: self.requires.clone(),
            resources: self.resources.clone(),
            permanent_exit_codes: self.permanent_exit_codes.clone(),
            ..Default::default()
        })
    }
}

/// Parses a workflow file (`.json` as JSON, anything else as TOML) into a submit request.
/// Syntax errors and unknown keys name the file and the place; field checks are left to
/// [`check`] (the server runs the same ones).
pub fn parse(path: &Path, text: &str) -> Result<pb::SubmitWorkflowRequest> {
    let shown = path.display();
    let file: File = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text).map_err(|e| invalid("file".into(), format!("{shown}: {e}")))?
    } else {
        toml::from_str(text).map_err(|e| invalid("file".into(), format!("{shown}: {e}")))?
    };
    let mut steps = Vec::with_capacity(file.steps.len());
    for (i, step) in file.steps.iter().enumerate() {
        let label = if step.name.is_empty() {
            i.to_string()
        } else {
            step.name.clone()
        };
        let at = format!("steps[{label}].");
        let compensate = match &step.compensate {
            None => None,
            Some(c) => {
                let at = format!("{at}compensate.");
                if !c.name.is_empty() || !c.depends_on.is_empty() || c.compensate.is_some() {
                    return Err(invalid(
                        format!("{at}name"),
                        "a compensation is a job: no name, depends_on or compensate",
                    ));
                }
                Some(c.job(&at)?)
            }
        };
        steps.push(pb::WorkflowStepSpec {
            name: step.name.clone(),
            job: Some(step.job(&at)?),
            depends_on: step
                .depends_on
                .iter()
                .map(|d| match d {
                    FileDep::Name(step) => pb::StepDependency {
                        step: step.clone(),
                        condition: String::new(),
                    },
                    FileDep::Full { step, condition } => pb::StepDependency {
                        step: step.clone(),
                        condition: condition.clone(),
                    },
                })
                .collect(),
            compensate,
        });
    }
    Ok(pb::SubmitWorkflowRequest {
        name: file.name,
        failure_policy: file.failure_policy,
        max_parallel: file.max_parallel,
        steps,
    })
}

/// Reads and parses a workflow file.
pub fn load(path: &Path) -> Result<pb::SubmitWorkflowRequest> {
    let text = crate::files::read_bounded(path, crate::machine::limits::WORKFLOW_FILE_BYTES_MAX)
        .map_err(|e| invalid("file".into(), format!("{}: {e}", path.display())))?;
    parse(path, &text)
}

/// Runs every check the server runs (shape, names, limits, job templates), offline.
pub fn check(req: &pb::SubmitWorkflowRequest) -> Result<()> {
    proto::from_wire::workflow_spec(req.clone()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(path: &str, text: &str) -> String {
        let e = parse(Path::new(path), text).and_then(|r| check(&r));
        match e {
            Err(e) => e.to_string(),
            Ok(()) => panic!("accepted: {text}"),
        }
    }

    /// TOML and JSON give the same request; a typo'd key, a cycle and a bad template are
    /// refused with the place named.
    #[test]
    fn files_parse_and_errors_name_the_place() {
        let toml = r#"
            name = "w"
            max_parallel = 2
            [[steps]]
            name = "a"
            shell = "true"
            [[steps]]
            name = "b"
            command = ["echo", "hi"]
            retries = 2
            timeout = "5s"
            depends_on = ["a", { step = "a2", condition = "always" }]
            compensate = { shell = "echo undo" }
            [[steps]]
            name = "a2"
            payload = "x"
            queue = "ext"
        "#;
        let t = parse(Path::new("w.toml"), toml).unwrap();
        check(&t).unwrap();
        let json = r#"{"name":"w","max_parallel":2,"steps":[
            {"name":"a","shell":"true"},
            {"name":"b","command":["echo","hi"],"retries":2,"timeout":"5s",
             "depends_on":["a",{"step":"a2","condition":"always"}],
             "compensate":{"shell":"echo undo"}},
            {"name":"a2","payload":"x","queue":"ext"}]}"#;
        assert_eq!(parse(Path::new("w.json"), json).unwrap(), t);
        let b = &t.steps[1];
        assert_eq!(b.job.as_ref().unwrap().max_attempts, 3);
        assert_eq!(b.job.as_ref().unwrap().timeout_ms, Some(5_000));

        let typo = "name = \"w\"\n[[steps]]\nname = \"a\"\nshell = \"true\"\ndepend_on = []\n";
        assert!(
            err("w.toml", typo).contains("depend_on"),
            "{}",
            err("w.toml", typo)
        );
        let cycle = r#"
            name = "w"
            [[steps]]
            name = "a"
            shell = "true"
            depends_on = ["b"]
            [[steps]]
            name = "b"
            shell = "true"
            depends_on = ["a"]
        "#;
        assert_eq!(
            err("w.toml", cycle),
            "invalid argument: steps[a].depends_on: cycle: a -> b -> a"
        );
        let no_cmd = "name = \"w\"\n[[steps]]\nname = \"a\"\n";
        assert!(err("w.toml", no_cmd).contains("steps[a].command"));
        let bad_cond = "name = \"w\"\n[[steps]]\nname = \"a\"\nshell = \"true\"\n[[steps]]\nname = \"b\"\nshell = \"true\"\ndepends_on = [{ step = \"a\", condition = \"sometimes\" }]\n";
        assert!(
            err("w.toml", bad_cond).contains("steps[b].depends_on[0].condition"),
            "{}",
            err("w.toml", bad_cond)
        );
        let bad_queue =
            "name = \"w\"\n[[steps]]\nname = \"a\"\nshell = \"true\"\nqueue = \"no spaces\"\n";
        assert!(err("w.toml", bad_queue).contains("steps[a].queue"));
    }
}
