//! Least privilege for shell jobs: the user a job runs as, the environment it sees, the
//! resource limits it gets and the programs its queue may start, from the `[jobs]` table
//! (`config/jobs.rs`), resolved once when the node starts.
//!
//! - User: a `[[jobs.queue]]` rule's `run_as`, else the node's, else `[jobs] run_as`, else the
//!   node's own user; a node running as root with nothing configured runs jobs as `nobody`
//!   (uid 65534 where no such user exists). Root only when the config names it. Switching to
//!   another user needs the node to run as root; a node that can't is refused at start.
//! - Environment: cleared, then the node's variables named in `env_pass`, then HOME, USER and
//!   LOGNAME of the job's user (when it differs from the node's), then the job's own variables
//!   and the `RAFTLINE_*` ones.
//! - Limits: setrlimit in the child before exec, never above the node's own hard limit.
//! - Executables: a rule's `executables` is matched against the job's first argument as
//!   written; `sh` in the list allows any script, so list interpreters with care.
//!
//! `raftline worker` runs jobs as whoever started it, with its environment ([`Sandbox::inherit`]).

use std::ffi::{CStr, CString, OsString};
use std::path::PathBuf;

use crate::config::{ConfigError, JobLimits, JobsConfig, NodeConfig};
use crate::machine::auth::pattern_matches;

/// The user `nobody` has on Debian, Ubuntu and Fedora, used when no such entry exists.
const NOBODY_ID: u32 = 65534;
/// PATH a job gets when the node has none to pass on.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A user to run jobs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Name (the uid as text when the user has no entry).
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    user: Option<Identity>,
    executables: Option<Vec<String>>,
}

/// How this node starts a job's process.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// `None`: inherit everything (the external worker).
    policy: Option<Policy>,
}

#[derive(Debug, Clone)]
struct Policy {
    /// The user for queues no rule names; `None` = the node's own user.
    user: Option<Identity>,
    rules: Vec<Rule>,
    /// Passed variables, read from the node's environment at start.
    env: Vec<(String, OsString)>,
    limits: JobLimits,
}

impl Sandbox {
    /// The external worker's: the process runs as its starter, with their environment.
    pub fn inherit() -> Sandbox {
        Sandbox { policy: None }
    }

    /// Resolves node `node`'s settings: users must exist here (or be numeric), and a node not
    /// running as root may only name its own user.
    pub fn for_node(jobs: &JobsConfig, node: &NodeConfig) -> Result<Sandbox, ConfigError> {
        // SAFETY: geteuid(2) has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let resolve = |key: String, user: &str| -> Result<Option<Identity>, ConfigError> {
            let id = lookup(user)
                .ok_or_else(|| ConfigError(format!("{key}: no user {user:?} on this machine")))?;
            if id.uid == euid {
                return Ok(None);
            }
            if euid != 0 {
                return Err(ConfigError(format!(
                    "{key}: running jobs as {user:?} (uid {}) needs the node to run as root; \
                     it runs as uid {euid}",
                    id.uid
                )));
            }
            Ok(Some(id))
        };
        let user = match (&node.run_as, &jobs.run_as) {
            (Some(u), _) => resolve(format!("node[id={}].run_as", node.id), u)?,
            (None, Some(u)) => resolve("jobs.run_as".into(), u)?,
            (None, None) if euid == 0 => Some(lookup("nobody").unwrap_or(Identity {
                name: NOBODY_ID.to_string(),
                uid: NOBODY_ID,
                gid: NOBODY_ID,
                home: PathBuf::from("/"),
            })),
            (None, None) => None,
        };
        let rules = jobs
            .queues
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let user = match &r.run_as {
                    Some(u) => resolve(format!("jobs.queue[{i}].run_as"), u)?,
                    None => user.clone(),
                };
                Ok(Rule {
                    pattern: r.queues.clone(),
                    user,
                    executables: r.executables.clone(),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let mut env: Vec<(String, OsString)> = jobs
            .env_pass
            .iter()
            .filter_map(|name| std::env::var_os(name).map(|v| (name.clone(), v)))
            .collect();
        if !env.iter().any(|(name, _)| name == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        Ok(Sandbox {
            policy: Some(Policy {
                user,
                rules,
                env,
                limits: jobs.limits,
            }),
        })
    }

    /// The user a job of `queue` runs as (`None`: the node's own).
    pub fn user_for(&self, queue: &str) -> Option<&Identity> {
        let policy = self.policy.as_ref()?;
        policy.user_of(policy.rule(queue))
    }

    /// Sets up `command` to run `argv` of a job of `queue`; an error says why the queue may
    /// not run it (a permanent failure).
    pub fn apply(
        &self,
        queue: &str,
        argv: &[String],
        command: &mut tokio::process::Command,
    ) -> Result<(), String> {
        let Some(policy) = &self.policy else {
            return Ok(());
        };
        let rule = policy.rule(queue);
        if let Some(i) = rule {
            if let Some(allowed) = &policy.rules[i].executables {
                let program = argv.first().map(String::as_str).unwrap_or_default();
                if !allowed.iter().any(|a| a == program) {
                    return Err(format!(
                        "{program:?} is not allowed on queue {queue:?}: jobs.queue[{i}].executables \
                         lists {allowed:?}"
                    ));
                }
            }
        }
        command.env_clear();
        command.envs(policy.env.iter().map(|(k, v)| (k, v)));
        if let Some(user) = policy.user_of(rule) {
            command
                .uid(user.uid)
                .gid(user.gid)
                .env("HOME", &user.home)
                .env("USER", &user.name)
                .env("LOGNAME", &user.name);
        }
        let limits = policy.limits;
        // SAFETY: the closure runs in the child between fork and exec; it only calls
        // getrlimit(2) and setrlimit(2), which are async-signal-safe, and allocates nothing.
        unsafe {
            command.pre_exec(move || set_limits(limits));
        }
        Ok(())
    }
}

impl Policy {
    /// The index of the first rule whose pattern matches `queue`.
    fn rule(&self, queue: &str) -> Option<usize> {
        self.rules
            .iter()
            .position(|r| pattern_matches(&r.pattern, queue))
    }

    /// The user of the jobs under `rule` (`None`: the node's own).
    fn user_of(&self, rule: Option<usize>) -> Option<&Identity> {
        match rule {
            Some(i) => self.rules[i].user.as_ref(),
            None => self.user.as_ref(),
        }
    }
}

/// Lowers the calling process's limits to `limits` (never above its current hard limits).
fn set_limits(limits: JobLimits) -> std::io::Result<()> {
    let pairs = [
        (libc::RLIMIT_CPU, limits.cpu_seconds),
        (libc::RLIMIT_AS, limits.address_space_bytes),
        (libc::RLIMIT_NOFILE, limits.open_files),
        (libc::RLIMIT_NPROC, limits.processes),
    ];
    for (resource, value) in pairs {
        if value == 0 {
            continue;
        }
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a local.
        unsafe {
            if libc::getrlimit(resource, &mut current) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let value = (value as libc::rlim_t).min(current.rlim_max);
            let new = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &new) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Looks up a user by name, or by uid when `user` is all digits.
fn lookup(user: &str) -> Option<Identity> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let numeric = user
        .parse::<u32>()
        .ok()
        .filter(|_| user.bytes().all(|b| b.is_ascii_digit()));
    // SAFETY: getpwnam_r/getpwuid_r write only into `entry` and `buf`, whose sizes are given;
    // `found` is null or points at `entry`.
    let rc = unsafe {
        match numeric {
            Some(uid) => libc::getpwuid_r(
                uid,
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            ),
            None => {
                let name = CString::new(user).ok()?;
                libc::getpwnam_r(
                    name.as_ptr(),
                    &mut entry,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut found,
                )
            }
        }
    };
    if rc != 0 || found.is_null() {
        // A uid needs no entry to be switched to.
        return numeric.map(|uid| Identity {
            name: uid.to_string(),
            uid,
            gid: uid,
            home: PathBuf::from("/"),
        });
    }
    // SAFETY: on success pw_name and pw_dir point at NUL-terminated strings in `buf`.
    let text = |p: *const libc::c_char| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    Some(Identity {
        name: text(entry.pw_name),
        uid: entry.pw_uid,
        gid: entry.pw_gid,
        home: PathBuf::from(text(entry.pw_dir)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_name_and_uid() {
        let root = lookup("root").expect("root");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup("0").expect("uid 0").name, "root");
        let unknown = lookup("4000000").expect("a bare uid");
        assert_eq!((unknown.uid, unknown.gid), (4_000_000, 4_000_000));
        assert!(lookup("no-such-user-here").is_none());
    }
}
