//! A bug planted on purpose, for the model test to catch (`model/mod.rs`,
//! `model_catches_planted_units_leak`): off unless a test turns it on, on its own thread only.
//! Compiled in test builds only.
//!
//! The bug: a job cancelled while leased keeps its resource units (the units index is not
//! given back). Its one call site is in `jobs/mod.rs`, `Jobs::cancel`, right after the job
//! is finished.

use std::cell::Cell;

use super::index::Index;
use super::job::{ErrorClass, Job};

thread_local! {
    static UNITS_LEAK: Cell<bool> = const { Cell::new(false) };
}

/// Turns the units leak on for this thread until dropped.
pub(crate) struct Planted;

impl Planted {
    /// Switches the leak on.
    pub(crate) fn units_leak() -> Planted {
        UNITS_LEAK.with(|f| f.set(true));
        Planted
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        UNITS_LEAK.with(|f| f.set(false));
    }
}

/// After `job` was cancelled: when the leak is on and the job was leased (its last attempt
/// just ended as cancelled), counts its units as still held.
pub(crate) fn after_cancel(index: &mut Index, job: &Job) {
    if !UNITS_LEAK.with(Cell::get) {
        return;
    }
    let was_leased = job.attempts.last().is_some_and(|a| {
        a.ended_ms == job.finished_ms
            && a.outcome
                .as_ref()
                .is_some_and(|o| o.error_class == Some(ErrorClass::Cancelled))
    });
    if was_leased {
        for need in &job.spec.resources {
            *index
                .resource_used
                .entry(need.resource.clone())
                .or_default() += need.units;
        }
    }
}
