//! Resources: named capacities (1 = exclusive) that jobs need and lock clients hold.
//!
//! A job lists what it needs (`deployment_slot`, `test_redis:2`). It is leased only when all
//! of it is free, and takes it in the same apply as the lease (all or nothing, so no two jobs
//! can each hold half of what the other needs: no deadlock). What a leased job holds is derived
//! from the job table (the index counts units by resource over leased jobs), so every way a
//! lease ends (completion, failure, cancel, release, expiry, its node restarting) gives the
//! units back, with no separate bookkeeping to forget.
//!
//! Fairness: units are handed out in rank order (priority, then age) per resource. A ready job
//! may take units only from what is left after the ready jobs ranked ahead of it that need the
//! same resource (looking at most `RESOURCE_SCAN_MAX` of them) have been served, so a job
//! needing 2 units of a capacity-2 resource is not starved by a stream of 1-unit jobs: they
//! queue behind it once it reaches the head. Jobs in paused queues do not hold a place.
//!
//! The lock service uses the same units: an external client acquires one unit for an owner
//! with a ttl, and gets a fencing token from the resource's own counter, strictly increasing
//! over every grant of that resource. Renew and release need the current token; a stale one is
//! refused. Expired locks are removed by a Tick, on state-machine time, so a holder that is
//! paused or partitioned past its ttl loses the lock before anyone else gets it, and its later
//! renew or release is refused. Job holders and lock holders together never exceed capacity
//! (checked after every apply in debug builds).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{in_range, invalid, precondition, Ctx, Rejection, Response};
use super::job::{validate_name, Job, JobId, JobSpec};
use super::limits;

/// The resources subsystem: capacities, and the locks clients hold on them (units held by
/// leased jobs are derived from the jobs' index).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Resources by name.
    by_name: BTreeMap<String, Resource>,
    /// Locks by expiry: (expires_ms, resource, token).
    lock_expiry: BTreeSet<(u64, String, u64)>,
}

/// What a job needs of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// Resource name.
    pub resource: String,
    /// Units (1 when not given).
    pub units: u32,
}

impl Need {
    /// Parses `name` or `name:units`.
    pub fn parse(field: &str, text: &str) -> Result<Need, Rejection> {
        let (name, units) = match text.split_once(':') {
            Some((name, units)) => {
                let units = units.parse::<u32>().map_err(|_| Rejection::Invalid {
                    field: field.into(),
                    message: format!("{text:?}: the units after ':' must be a number"),
                })?;
                (name, units)
            }
            None => (text, 1),
        };
        let need = Need {
            resource: name.to_string(),
            units,
        };
        need.validate(field)?;
        Ok(need)
    }

    /// Checks the name and the units.
    pub fn validate(&self, field: &str) -> Result<(), Rejection> {
        validate_name(field, &self.resource, limits::RESOURCE_NAME_BYTES_MAX)?;
        if !(1..=limits::RESOURCE_CAPACITY_MAX).contains(&self.units) {
            return Err(Rejection::Invalid {
                field: field.into(),
                message: format!(
                    "{} units of {}: must be 1..={}",
                    self.units,
                    self.resource,
                    limits::RESOURCE_CAPACITY_MAX
                ),
            });
        }
        Ok(())
    }

    /// `name` or `name:units`.
    pub fn text(&self) -> String {
        if self.units == 1 {
            self.resource.clone()
        } else {
            format!("{}:{}", self.resource, self.units)
        }
    }
}

/// A lock held by an external client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHold {
    /// Fencing token of the grant.
    pub token: u64,
    /// Who holds it.
    pub owner: String,
    /// When it was granted.
    pub acquired_ms: u64,
    /// Expiry, state-machine time.
    pub expires_ms: u64,
}

/// A named capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Units in all (0 closes it).
    pub capacity: u32,
    /// Next fencing token of a lock grant (strictly increasing per resource).
    pub next_token: u64,
    /// Locks held, by token.
    pub locks: BTreeMap<u64, LockHold>,
}

/// A view of one resource for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceView {
    /// Name.
    pub name: String,
    /// Units in all.
    pub capacity: u32,
    /// Units held by leased jobs.
    pub used_by_jobs: u32,
    /// Leased jobs holding units: (job, units).
    pub job_holders: Vec<(JobId, u32)>,
    /// Locks held.
    pub locks: Vec<LockHold>,
    /// Ready jobs waiting for units, in the order they get them (at most 100): (job, units).
    pub waiters: Vec<(JobId, u32)>,
}

impl Resources {
    /// A resource by name.
    pub fn get(&self, name: &str) -> Option<&Resource> {
        self.by_name.get(name)
    }

    /// Every resource, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Resource)> + '_ {
        self.by_name.iter()
    }

    /// Earliest lock expiry.
    pub fn next_due(&self) -> Option<u64> {
        self.lock_expiry.first().map(|(t, _, _)| *t)
    }

    /// Units of `resource` a job needs.
    pub fn units_of(job: &Job, resource: &str) -> u32 {
        job.spec
            .resources
            .iter()
            .filter(|n| n.resource == resource)
            .map(|n| n.units)
            .sum()
    }

    /// Units of a resource free now: capacity minus `used_by_jobs` (units leased jobs hold)
    /// and lock holders.
    pub fn free_units(&self, name: &str, used_by_jobs: u32) -> u32 {
        let Some(r) = self.by_name.get(name) else {
            return 0;
        };
        r.capacity
            .saturating_sub(used_by_jobs + r.locks.len() as u32)
    }

    /// Checks that every resource a job spec needs exists and can ever hold it. `prefix`
    /// prefixes the field name (`resources[i]`).
    pub(super) fn check_needs(&self, prefix: &str, job: &JobSpec) -> Result<(), Response> {
        for (i, need) in job.resources.iter().enumerate() {
            let field = format!("{prefix}resources[{i}]");
            let Some(r) = self.by_name.get(&need.resource) else {
                return Err(invalid(
                    &field,
                    format!(
                        "unknown resource {:?}; create it first (raftline resource set)",
                        need.resource
                    ),
                ));
            };
            if need.units > r.capacity {
                return Err(invalid(
                    &field,
                    format!(
                        "needs {} units of {}, whose capacity is {}: it could never run",
                        need.units, need.resource, r.capacity
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Creates a resource or changes its capacity. `used_by_jobs` is what leased jobs hold
    /// of it and `needed` the most a ready job needs (computed lazily: only an existing
    /// resource's capacity change asks).
    pub(super) fn set(
        &mut self,
        name: &str,
        capacity: u32,
        used_by_jobs: u32,
        needed: impl FnOnce() -> u32,
    ) -> Response {
        if let Err(r) = validate_name("name", name, limits::RESOURCE_NAME_BYTES_MAX) {
            return Response::Rejected(r);
        }
        if let Err(r) = in_range(
            "capacity",
            capacity.into(),
            0,
            limits::RESOURCE_CAPACITY_MAX.into(),
        ) {
            return Response::Rejected(r);
        }
        match self.by_name.get_mut(name) {
            Some(r) => {
                let held = used_by_jobs + r.locks.len() as u32;
                if capacity < held {
                    return precondition(format!(
                        "{name} has {held} units held; wait for them to be released before \
                         lowering its capacity to {capacity}"
                    ));
                }
                let needed = needed();
                if capacity < needed {
                    return precondition(format!(
                        "a ready job needs {needed} units of {name}; a capacity of {capacity} \
                         would leave it waiting forever"
                    ));
                }
                r.capacity = capacity;
            }
            None => {
                if self.by_name.len() >= limits::RESOURCES_MAX {
                    return Response::Rejected(Rejection::Exhausted {
                        message: format!(
                            "{} resources exist, the limit (RESOURCES_MAX)",
                            limits::RESOURCES_MAX
                        ),
                    });
                }
                self.by_name.insert(
                    name.to_string(),
                    Resource {
                        capacity,
                        next_token: 1,
                        locks: BTreeMap::new(),
                    },
                );
            }
        }
        Response::Ok
    }

    fn check_ttl(ttl_ms: u64) -> Result<(), Response> {
        in_range(
            "ttl_ms",
            ttl_ms,
            limits::LOCK_TTL_MS_MIN,
            limits::LOCK_TTL_MS_MAX,
        )
        .map_err(Response::Rejected)
    }

    /// Grants a lock on a unit of `name` to `owner` if one is free (`used_by_jobs`: units
    /// leased jobs hold).
    pub(super) fn acquire(
        &mut self,
        ctx: Ctx,
        name: &str,
        owner: &str,
        ttl_ms: u64,
        used_by_jobs: u32,
    ) -> Response {
        if let Err(r) = validate_name("owner", owner, limits::WORKER_ID_BYTES_MAX) {
            return Response::Rejected(r);
        }
        if let Err(r) = Resources::check_ttl(ttl_ms) {
            return r;
        }
        let free = self.free_units(name, used_by_jobs);
        let now = ctx.now_ms;
        let Some(r) = self.by_name.get_mut(name) else {
            return Response::Rejected(Rejection::Missing {
                what: format!("resource {name}"),
            });
        };
        if let Some(held) = r.locks.values().find(|l| l.owner == owner) {
            return precondition(format!(
                "{owner} already holds {name} under token {}; renew or release it",
                held.token
            ));
        }
        if free == 0 {
            return Response::LockBusy {
                capacity: r.capacity,
                next_expiry_ms: r.locks.values().map(|l| l.expires_ms).min(),
            };
        }
        let token = r.next_token;
        r.next_token += 1;
        let expires_ms = now.saturating_add(ttl_ms);
        r.locks.insert(
            token,
            LockHold {
                token,
                owner: owner.to_string(),
                acquired_ms: now,
                expires_ms,
            },
        );
        self.lock_expiry
            .insert((expires_ms, name.to_string(), token));
        Response::LockGranted { token, expires_ms }
    }

    fn held_lock(&self, name: &str, token: u64) -> Result<&LockHold, Response> {
        let r = self
            .by_name
            .get(name)
            .ok_or(Response::Rejected(Rejection::Missing {
                what: format!("resource {name}"),
            }))?;
        r.locks.get(&token).ok_or_else(|| {
            let newest = r.next_token.saturating_sub(1);
            precondition(format!(
                "stale fencing token {token} for {name}: no lock is held under it (expired or \
                 released; newest token granted {newest})"
            ))
        })
    }

    /// Extends a lock held under `token`.
    pub(super) fn renew(&mut self, ctx: Ctx, name: &str, token: u64, ttl_ms: u64) -> Response {
        if let Err(r) = Resources::check_ttl(ttl_ms) {
            return r;
        }
        let old = match self.held_lock(name, token) {
            Ok(l) => l.expires_ms,
            Err(r) => return r,
        };
        let expires_ms = ctx.now_ms.saturating_add(ttl_ms);
        self.lock_expiry.remove(&(old, name.to_string(), token));
        self.lock_expiry
            .insert((expires_ms, name.to_string(), token));
        let r = self.by_name.get_mut(name).expect("checked");
        r.locks.get_mut(&token).expect("checked").expires_ms = expires_ms;
        Response::LockGranted { token, expires_ms }
    }

    /// Releases a lock held under `token`.
    pub(super) fn release(&mut self, name: &str, token: u64) -> Response {
        let expires = match self.held_lock(name, token) {
            Ok(l) => l.expires_ms,
            Err(r) => return r,
        };
        self.drop_lock(expires, name, token);
        Response::Ok
    }

    /// Removes a lock (released or expired).
    fn drop_lock(&mut self, expires_ms: u64, name: &str, token: u64) {
        self.lock_expiry
            .remove(&(expires_ms, name.to_string(), token));
        if let Some(r) = self.by_name.get_mut(name) {
            r.locks.remove(&token);
        }
    }

    /// Drops one lock whose ttl passed; returns whether it did.
    pub(super) fn expire_one(&mut self, now_ms: u64) -> bool {
        let Some((at, name, token)) = self
            .lock_expiry
            .first()
            .filter(|(t, _, _)| *t <= now_ms)
            .cloned()
        else {
            return false;
        };
        self.drop_lock(at, &name, token);
        true
    }

    /// Panics if holders exceed a capacity or the lock index is off. `used_by_jobs` gives the
    /// units leased jobs hold of each resource (from the jobs' index).
    pub fn check_invariants(&self, used_by_jobs: &BTreeMap<String, u32>) {
        for (name, r) in &self.by_name {
            let jobs = used_by_jobs.get(name).copied().unwrap_or(0);
            assert!(
                jobs + r.locks.len() as u32 <= r.capacity,
                "resource {name}: {jobs} job units + {} locks > capacity {}",
                r.locks.len(),
                r.capacity
            );
            for (token, l) in &r.locks {
                assert!(
                    *token < r.next_token,
                    "resource {name} token from the future"
                );
                assert!(
                    self.lock_expiry
                        .contains(&(l.expires_ms, name.clone(), *token)),
                    "resource {name} lock {token} has no expiry"
                );
            }
        }
        for name in used_by_jobs.keys() {
            assert!(
                self.by_name.contains_key(name),
                "unknown resource {name} in use"
            );
        }
        let locks: usize = self.by_name.values().map(|r| r.locks.len()).sum();
        assert_eq!(locks, self.lock_expiry.len(), "lock expiry index");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::command::{Command, Proposal, Report, WorkerRef};
    use crate::machine::controls::{BreakerConfig, BreakerState, QueuePolicy, Rate};
    use crate::machine::Machine;
    use crate::machine::{ErrorClass, JobSpec, JobState};

    struct T {
        m: Machine,
        now: u64,
    }

    impl T {
        fn new(resources: &[(&str, u32)]) -> T {
            let mut t = T {
                m: Machine::new(),
                now: 1_000,
            };
            for (name, cap) in resources {
                assert_eq!(
                    t.apply(Command::SetResource {
                        name: name.to_string(),
                        capacity: *cap
                    }),
                    Response::Ok
                );
            }
            t
        }

        fn apply(&mut self, command: Command) -> Response {
            self.m.apply(&Proposal {
                now_ms: self.now,
                command,
            })
        }

        fn submit(&mut self, queue: &str, needs: &[&str]) -> JobId {
            let mut spec = JobSpec::shell(queue, &["true"]);
            spec.max_attempts = 5;
            spec.resources = needs
                .iter()
                .map(|n| Need::parse("resources", n).unwrap())
                .collect();
            match self.apply(Command::Submit {
                spec,
                delay_ms: 0,
                run_at_ms: None,
            }) {
                Response::Submitted { id, .. } => id,
                other => panic!("submit: {other:?}"),
            }
        }

        /// One lease over `queues` (all when empty): (job, token) if granted.
        fn lease(&mut self, queues: &[&str]) -> Option<(JobId, u64)> {
            let r = self.apply(Command::Lease {
                worker: WorkerRef {
                    id: "w".into(),
                    node: None,
                },
                queues: queues.iter().map(|q| q.to_string()).collect(),
                capabilities: vec![],
                max: 1,
                ttl_ms: Some(5_000),
            });
            let Response::Leased(grants) = r else {
                panic!("lease: {r:?}");
            };
            grants.first().map(|g| (g.job_id, g.token))
        }

        fn complete(&mut self, (id, token): (JobId, u64), ok: bool) {
            let r = self.apply(Command::Complete {
                job_id: id,
                token,
                report: Report {
                    error_class: (!ok).then_some(ErrorClass::Transient),
                    exit_code: None,
                    error: String::new(),
                    output_tail: String::new(),
                },
            });
            assert!(matches!(r, Response::Completed { .. }), "{r:?}");
        }

        fn used(&self, name: &str) -> u32 {
            self.m
                .jobs
                .index()
                .resource_used
                .get(name)
                .copied()
                .unwrap_or(0)
        }

        fn acquire(&mut self, name: &str, owner: &str) -> Response {
            self.apply(Command::LockAcquire {
                resource: name.into(),
                owner: owner.into(),
                ttl_ms: 2_000,
            })
        }
    }

    /// A job needing two resources takes both in its lease or neither; a half-free pair is
    /// left whole for others.
    #[test]
    fn acquisition_is_all_or_nothing() {
        let mut t = T::new(&[("a", 1), ("b", 1)]);
        let j1 = t.submit("q", &["a"]);
        let j2 = t.submit("q", &["a", "b"]);
        let first = t.lease(&[]).unwrap();
        assert_eq!(first.0, j1);
        assert_eq!(t.lease(&[]), None, "j2 needs a, which j1 holds");
        assert_eq!((t.used("a"), t.used("b")), (1, 0), "b was not taken alone");
        assert!(matches!(t.acquire("b", "x"), Response::LockGranted { .. }));
        t.complete(first, true);
        assert_eq!(t.lease(&[]), None, "b is locked by x");
        let Some(hold) = t.m.resources.by_name["b"].locks.values().next().cloned() else {
            panic!("lock");
        };
        t.apply(Command::LockRelease {
            resource: "b".into(),
            token: hold.token,
        });
        assert_eq!(t.lease(&[]).map(|l| l.0), Some(j2));
        assert_eq!((t.used("a"), t.used("b")), (1, 1));
    }

    /// Units come back on every way a lease ends.
    #[test]
    fn units_return_on_every_terminal_path_and_expiry() {
        let mut t = T::new(&[("slot", 1)]);
        // Success.
        t.submit("q", &["slot"]);
        let l = t.lease(&[]).unwrap();
        assert_eq!(t.used("slot"), 1);
        t.complete(l, true);
        assert_eq!(t.used("slot"), 0);
        // Failure (retry scheduled).
        let j = t.submit("q", &["slot"]);
        let l = t.lease(&[]).unwrap();
        t.complete(l, false);
        assert_eq!(t.m.job(j).unwrap().state, JobState::Scheduled);
        assert_eq!(t.used("slot"), 0);
        // Cancel while leased.
        t.now += 60_000;
        t.apply(Command::Tick);
        let l = t.lease(&[]).unwrap();
        assert_eq!(t.used("slot"), 1);
        t.apply(Command::Cancel { job_id: l.0 });
        assert_eq!(t.used("slot"), 0);
        // Release by the worker.
        t.submit("q", &["slot"]);
        let l = t.lease(&[]).unwrap();
        t.apply(Command::Release {
            job_id: l.0,
            token: l.1,
        });
        assert_eq!(t.used("slot"), 0);
        // Lease expiry.
        let l = t.lease(&[]).unwrap();
        assert_eq!(t.used("slot"), 1);
        t.now += 5_001;
        t.apply(Command::Tick);
        assert_eq!(t.used("slot"), 0, "{:?}", t.m.job(l.0).unwrap().state);
    }

    /// Lock tokens strictly increase per resource; a stale renew or release is refused; an
    /// expired holder loses the lock to the next client, who gets a larger token.
    #[test]
    fn lock_fencing_is_monotonic() {
        let mut t = T::new(&[("db", 1), ("other", 1)]);
        let Response::LockGranted { token: t1, .. } = t.acquire("db", "alice") else {
            panic!()
        };
        assert!(matches!(t.acquire("db", "bob"), Response::LockBusy { .. }));
        assert!(matches!(
            t.acquire("db", "alice"),
            Response::Rejected(Rejection::Precondition { .. })
        ));
        t.now += 2_001;
        t.apply(Command::Tick);
        let Response::LockGranted { token: t2, .. } = t.acquire("db", "bob") else {
            panic!()
        };
        assert!(t2 > t1);
        for stale in [
            Command::LockRelease {
                resource: "db".into(),
                token: t1,
            },
            Command::LockRenew {
                resource: "db".into(),
                token: t1,
                ttl_ms: 5_000,
            },
        ] {
            let r = t.apply(stale);
            assert!(
                matches!(&r, Response::Rejected(Rejection::Precondition { message }) if message.contains("stale fencing token")),
                "{r:?}"
            );
        }
        assert!(matches!(
            t.apply(Command::LockRenew {
                resource: "db".into(),
                token: t2,
                ttl_ms: 5_000
            }),
            Response::LockGranted { token, .. } if token == t2
        ));
        assert_eq!(
            t.apply(Command::LockRelease {
                resource: "db".into(),
                token: t2
            }),
            Response::Ok
        );
        let Response::LockGranted { token: t3, .. } = t.acquire("db", "carol") else {
            panic!()
        };
        assert!(t3 > t2);
        let Response::LockGranted { token: o1, .. } = t.acquire("other", "alice") else {
            panic!()
        };
        assert_eq!(o1, 1, "tokens count per resource");
    }

    /// A job needing both units of a capacity-2 resource is not starved by a stream of
    /// 1-unit jobs submitted after it.
    #[test]
    fn large_request_is_not_starved() {
        let mut t = T::new(&[("redis", 2)]);
        t.submit("q", &["redis"]);
        t.submit("q", &["redis"]);
        let mut held = vec![t.lease(&[]).unwrap(), t.lease(&[]).unwrap()];
        t.now += 10;
        let big = t.submit("q", &["redis:2"]);
        for _ in 0..5 {
            t.now += 10;
            t.submit("q", &["redis"]);
        }
        // One unit frees: a small job behind the big one must not take it.
        t.complete(held.remove(0), true);
        assert_eq!(t.lease(&[]), None, "the freed unit waits for the big job");
        t.complete(held.remove(0), true);
        assert_eq!(t.lease(&[]).map(|l| l.0), Some(big));
        assert_eq!(t.used("redis"), 2);
    }

    /// Unknown resources and impossible needs are refused at submit, naming the field.
    #[test]
    fn bad_needs_are_refused() {
        let mut t = T::new(&[("slot", 1)]);
        let mut spec = JobSpec::shell("q", &["true"]);
        spec.resources = vec![Need::parse("r", "nope").unwrap()];
        let r = t.apply(Command::Submit {
            spec: spec.clone(),
            delay_ms: 0,
            run_at_ms: None,
        });
        assert!(
            matches!(&r, Response::Rejected(Rejection::Invalid { field, .. }) if field == "resources[0]"),
            "{r:?}"
        );
        spec.resources = vec![Need::parse("r", "slot:2").unwrap()];
        let r = t.apply(Command::Submit {
            spec,
            delay_ms: 0,
            run_at_ms: None,
        });
        assert!(
            matches!(&r, Response::Rejected(Rejection::Invalid { message, .. }) if message.contains("never run")),
            "{r:?}"
        );
        assert!(Need::parse("r", "slot:x").is_err());
        assert!(Need::parse("r", "slot:0").is_err());
        // Capacity cannot drop under what is held.
        t.submit("q", &["slot"]);
        t.lease(&[]).unwrap();
        let r = t.apply(Command::SetResource {
            name: "slot".into(),
            capacity: 0,
        });
        assert!(matches!(
            r,
            Response::Rejected(Rejection::Precondition { .. })
        ));
    }

    fn policy(t: &mut T, queue: &str, policy: QueuePolicy) {
        assert_eq!(
            t.apply(Command::SetQueuePolicy {
                queue: queue.into(),
                policy
            }),
            Response::Ok
        );
    }

    /// The breaker opens above its threshold, stops leasing, turns half-open after the
    /// cooldown (a Tick on state-machine time), lets one probe through, and closes on its
    /// success; a failed probe opens it again.
    #[test]
    fn breaker_opens_probes_and_closes() {
        let mut t = T::new(&[]);
        let b = BreakerConfig {
            threshold_pct: 50,
            window: 4,
            cooldown_ms: 1_000,
        };
        policy(
            &mut t,
            "q",
            QueuePolicy {
                breaker: Some(b),
                ..Default::default()
            },
        );
        for _ in 0..8 {
            t.submit("q", &[]);
        }
        let state = |t: &T| t.m.queue_control("q").unwrap().breaker;
        for ok in [true, false, false] {
            let l = t.lease(&["q"]).unwrap();
            t.complete(l, ok);
            assert_eq!(state(&t), BreakerState::Closed);
        }
        let l = t.lease(&["q"]).unwrap();
        t.complete(l, false);
        assert_eq!(
            state(&t),
            BreakerState::Open {
                until_ms: t.now + 1_000
            }
        );
        assert_eq!(t.lease(&["q"]), None, "open: not leased");
        assert_eq!(
            t.m.controls.next_due(|q| t.m.jobs.has_ready(q)),
            Some(t.now + 1_000)
        );
        t.now += 1_000;
        t.apply(Command::Tick);
        assert_eq!(state(&t), BreakerState::HalfOpen);
        let probe = t.lease(&["q"]).unwrap();
        assert_eq!(t.lease(&["q"]), None, "one probe at a time");
        t.complete(probe, false);
        assert!(matches!(state(&t), BreakerState::Open { .. }));
        t.now += 1_000;
        t.apply(Command::Tick);
        let probe = t.lease(&["q"]).unwrap();
        t.complete(probe, true);
        assert_eq!(state(&t), BreakerState::Closed);
        assert!(t.lease(&["q"]).is_some());
        let names: Vec<&str> =
            t.m.queue_control("q")
                .unwrap()
                .transitions
                .iter()
                .map(|(_, s)| s.name())
                .collect();
        assert_eq!(names, ["open", "half_open", "open", "half_open", "closed"]);
    }

    /// The token bucket refills on state-machine time and wakes waiting workers with a Tick;
    /// the concurrency limit caps leased jobs.
    #[test]
    fn token_bucket_and_concurrency() {
        let mut t = T::new(&[]);
        policy(
            &mut t,
            "q",
            QueuePolicy {
                rate: Some(Rate {
                    count: 2,
                    per_ms: 1_000,
                }),
                ..Default::default()
            },
        );
        for _ in 0..6 {
            t.submit("q", &[]);
        }
        assert!(t.lease(&["q"]).is_some());
        assert!(t.lease(&["q"]).is_some());
        assert_eq!(t.lease(&["q"]), None, "bucket empty");
        assert_eq!(t.m.next_due(), Some(t.now + 500), "one token per 500 ms");
        t.now += 499;
        assert_eq!(t.lease(&["q"]), None);
        t.now += 1;
        t.apply(Command::Tick);
        assert!(t.lease(&["q"]).is_some());
        assert_eq!(t.lease(&["q"]), None);
        t.now += 10_000;
        assert!(t.lease(&["q"]).is_some());
        assert!(t.lease(&["q"]).is_some(), "the burst is the count");
        policy(
            &mut t,
            "c",
            QueuePolicy {
                concurrency: Some(1),
                ..Default::default()
            },
        );
        t.submit("c", &[]);
        t.submit("c", &[]);
        let l = t.lease(&["c"]).unwrap();
        assert_eq!(t.lease(&["c"]), None, "concurrency 1");
        t.complete(l, true);
        assert!(t.lease(&["c"]).is_some());
        let bad = t.apply(Command::SetQueuePolicy {
            queue: "c".into(),
            policy: QueuePolicy {
                concurrency: Some(0),
                ..Default::default()
            },
        });
        assert!(matches!(bad, Response::Rejected(Rejection::Invalid { .. })));
    }
}
