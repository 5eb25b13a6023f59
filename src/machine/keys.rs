//! Keys that expire: a map from a key to a value, each entry forgotten at its expiry by a
//! replicated Tick. Idempotency keys (key -> first job) and event dedup keys (key -> nothing)
//! are both this.
//!
//! Invariant ([`ExpiringKeys::check_invariants`]): every key has exactly one entry in the
//! expiry index, at its own expiry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use serde::{Deserialize, Serialize};

/// Keys with values, each until its expiry (state-machine time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringKeys<V> {
    /// Key -> (value, expiry).
    entries: BTreeMap<String, (V, u64)>,
    /// Keys by expiry.
    by_expiry: BTreeSet<(u64, String)>,
}

impl<V> Default for ExpiringKeys<V> {
    fn default() -> Self {
        ExpiringKeys {
            entries: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }
}

impl<V: Debug> ExpiringKeys<V> {
    /// The value of a key not yet expired.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every key with its value and expiry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V, u64)> + '_ {
        self.entries.iter().map(|(k, (v, at))| (k, v, *at))
    }

    /// Adds a key that is not held (a broken invariant otherwise).
    pub(super) fn insert(&mut self, key: String, value: V, expires_ms: u64) {
        self.by_expiry.insert((expires_ms, key.clone()));
        let previous = self.entries.insert(key, (value, expires_ms));
        assert!(previous.is_none(), "expiring key inserted twice");
    }

    /// The earliest expiry.
    pub fn next_due(&self) -> Option<u64> {
        self.by_expiry.first().map(|(t, _)| *t)
    }

    /// Forgets one key whose expiry is at or before `now_ms`; returns whether it did.
    pub(super) fn expire_one(&mut self, now_ms: u64) -> bool {
        let Some((at, key)) = self
            .by_expiry
            .first()
            .filter(|(t, _)| *t <= now_ms)
            .cloned()
        else {
            return false;
        };
        self.by_expiry.remove(&(at, key.clone()));
        self.entries.remove(&key);
        true
    }

    /// Panics if a key lacks its expiry entry or the index holds a key that is gone.
    pub fn check_invariants(&self, what: &str) {
        for (key, (value, expires)) in &self.entries {
            assert!(
                self.by_expiry.contains(&(*expires, key.clone())),
                "{what} key {key:?} ({value:?}) has no expiry"
            );
        }
        assert_eq!(self.entries.len(), self.by_expiry.len(), "{what} keys");
    }
}
