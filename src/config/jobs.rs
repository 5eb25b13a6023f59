//! The `[jobs]` table and `[[jobs.queue]]` rules: which user a node's shell jobs run as, which
//! of the node's environment variables they see, the resource limits they get, and which
//! executables a queue may start. Checked here for form; users are looked up when a node starts
//! (`node/sandbox.rs`), since they must exist on that machine.

use serde::Deserialize;

use super::ConfigError;
use crate::machine::auth::validate_pattern;
use crate::machine::job::validate_name;
use crate::machine::{limits, Rejection};

/// `[jobs]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJobs {
    /// User (name or numeric uid) shell jobs run as; default: the node's own user, or
    /// `nobody` when the node runs as root. Root only when written here (or on a node or rule).
    #[serde(default)]
    pub run_as: Option<String>,
    /// Names of the node's environment variables a job sees; every other one is scrubbed.
    #[serde(default = "d_env_pass")]
    pub env_pass: Vec<String>,
    /// RLIMIT_CPU of a job's processes, seconds; 0 = unlimited.
    #[serde(default = "d_cpu_seconds")]
    pub cpu_seconds: u64,
    /// RLIMIT_AS (address space) of each job process, bytes; 0 = unlimited (the default, since
    /// Go, Java and JavaScript runtimes reserve far more address space than they use).
    #[serde(default)]
    pub address_space_bytes: u64,
    /// RLIMIT_NOFILE of a job's processes; 0 = the node's own limit.
    #[serde(default = "d_open_files")]
    pub open_files: u64,
    /// RLIMIT_NPROC: processes (threads) the job's user may have; 0 = unlimited.
    #[serde(default = "d_processes")]
    pub processes: u64,
    /// Rules for queues matching a pattern; the first match applies.
    #[serde(default)]
    pub queue: Vec<RawJobQueue>,
}

impl Default for RawJobs {
    fn default() -> Self {
        RawJobs {
            run_as: None,
            env_pass: d_env_pass(),
            cpu_seconds: d_cpu_seconds(),
            address_space_bytes: 0,
            open_files: d_open_files(),
            processes: d_processes(),
            queue: Vec::new(),
        }
    }
}

fn d_env_pass() -> Vec<String> {
    ["PATH", "LANG", "LC_ALL", "TZ"].map(String::from).to_vec()
}
fn d_cpu_seconds() -> u64 {
    24 * 3600
}
fn d_open_files() -> u64 {
    4096
}
fn d_processes() -> u64 {
    4096
}

/// A `[[jobs.queue]]` rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJobQueue {
    /// Queue name pattern, `*` matching any run of characters (`build-*`).
    pub queues: String,
    /// User the queue's jobs run as, over the node's and `[jobs]`' setting.
    #[serde(default)]
    pub run_as: Option<String>,
    /// When set, the only programs (a job's first argument, as written) the queue's jobs may
    /// start; anything else fails at once as a permanent error.
    #[serde(default)]
    pub executables: Option<Vec<String>>,
}

/// Resource limits for job processes; 0 = unlimited (for `open_files`: the node's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// RLIMIT_CPU, seconds.
    pub cpu_seconds: u64,
    /// RLIMIT_AS, bytes.
    pub address_space_bytes: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
    /// RLIMIT_NPROC.
    pub processes: u64,
}

/// A validated `[[jobs.queue]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRule {
    /// Queue name pattern.
    pub queues: String,
    /// User override.
    pub run_as: Option<String>,
    /// Allowed programs, when limited.
    pub executables: Option<Vec<String>>,
}

/// The validated `[jobs]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsConfig {
    /// Cluster-wide user, under a node's `run_as` and a queue rule's.
    pub run_as: Option<String>,
    /// Variables passed from the node's environment.
    pub env_pass: Vec<String>,
    /// Resource limits.
    pub limits: JobLimits,
    /// Queue rules in file order.
    pub queues: Vec<QueueRule>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        RawJobs::default()
            .validate()
            .expect("default [jobs] is valid")
    }
}

/// Checks a user name or uid as written in `run_as`: a name of `[A-Za-z0-9_.-]` that does not
/// start with `-`.
pub fn check_user(key: &str, user: &str) -> Result<(), ConfigError> {
    let refuse = |message: String| {
        ConfigError(format!(
            "{key}: {user:?} is not a user name or uid: {message}"
        ))
    };
    if let Err(Rejection::Invalid { message, .. }) =
        validate_name("", user, limits::USER_NAME_BYTES_MAX)
    {
        return Err(refuse(message));
    }
    if user.starts_with('-') {
        return Err(refuse("must not start with -".into()));
    }
    Ok(())
}

impl RawJobs {
    /// Checks every key.
    pub fn validate(self) -> Result<JobsConfig, ConfigError> {
        if let Some(user) = &self.run_as {
            check_user("jobs.run_as", user)?;
        }
        if self.env_pass.len() > limits::JOB_ENV_PASS_MAX {
            return Err(ConfigError(format!(
                "jobs.env_pass: {} names, the limit is {}",
                self.env_pass.len(),
                limits::JOB_ENV_PASS_MAX
            )));
        }
        for name in &self.env_pass {
            let ok = name.len() <= limits::JOB_ENV_NAME_BYTES_MAX
                && name
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(ConfigError(format!(
                    "jobs.env_pass: {name:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
                )));
            }
        }
        let range = |key: &str, value: u64, min: u64, max: u64| {
            if value == 0 || (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError(format!(
                    "jobs.{key}: is {value}, must be 0 (no limit) or {min}..={max}"
                )))
            }
        };
        range(
            "cpu_seconds",
            self.cpu_seconds,
            1,
            limits::JOB_CPU_SECONDS_MAX,
        )?;
        range(
            "address_space_bytes",
            self.address_space_bytes,
            limits::JOB_ADDRESS_SPACE_BYTES_MIN,
            limits::JOB_ADDRESS_SPACE_BYTES_MAX,
        )?;
        range(
            "open_files",
            self.open_files,
            16,
            limits::JOB_OPEN_FILES_MAX,
        )?;
        range("processes", self.processes, 1, limits::JOB_PROCESSES_MAX)?;
        if self.queue.len() > limits::JOB_QUEUE_RULES_MAX {
            return Err(ConfigError(format!(
                "jobs.queue: {} rules, the limit is {}",
                self.queue.len(),
                limits::JOB_QUEUE_RULES_MAX
            )));
        }
        let queues = self
            .queue
            .into_iter()
            .enumerate()
            .map(|(i, rule)| check_rule(i, rule))
            .collect::<Result<_, _>>()?;
        Ok(JobsConfig {
            run_as: self.run_as,
            env_pass: self.env_pass,
            limits: JobLimits {
                cpu_seconds: self.cpu_seconds,
                address_space_bytes: self.address_space_bytes,
                open_files: self.open_files,
                processes: self.processes,
            },
            queues,
        })
    }
}

fn check_rule(i: usize, rule: RawJobQueue) -> Result<QueueRule, ConfigError> {
    let key = format!("jobs.queue[{i}]");
    if let Err(Rejection::Invalid { message, .. }) = validate_pattern("", &rule.queues) {
        return Err(ConfigError(format!(
            "{key}.queues: {:?} is not a queue pattern: {message}",
            rule.queues
        )));
    }
    if let Some(user) = &rule.run_as {
        check_user(&format!("{key}.run_as"), user)?;
    }
    if let Some(list) = &rule.executables {
        if list.len() > limits::JOB_EXECUTABLES_MAX {
            return Err(ConfigError(format!(
                "{key}.executables: {} entries, the limit is {}",
                list.len(),
                limits::JOB_EXECUTABLES_MAX
            )));
        }
        if let Some(bad) = list.iter().find(|e| {
            e.is_empty() || e.len() > limits::JOB_EXECUTABLE_BYTES_MAX || e.contains('\0')
        }) {
            return Err(ConfigError(format!(
                "{key}.executables: {bad:?} is not a program name or path (1 to {} bytes, no NUL)",
                limits::JOB_EXECUTABLE_BYTES_MAX
            )));
        }
    }
    Ok(QueueRule {
        queues: rule.queues,
        run_as: rule.run_as,
        executables: rule.executables,
    })
}
