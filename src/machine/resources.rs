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
    use crate::machine::command::{Command, Proposal, WorkerRef};

    use crate::machine::JobSpec;
    use crate::machine::Machine;

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
}
