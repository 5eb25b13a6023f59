//! Cursors: a small replicated map from a name to an opaque value, for clients that read an
//! outside source and must remember how far they got (`raftline import redis` keeps its
//! position in a Stream or list under `import:redis:...`). Keeping the position in the cluster
//! rather than in a local file means a re-run from another machine, or after the importer's
//! disk is gone, continues where the last one stopped, and the position is as durable as the
//! jobs it describes.
//!
//! The model: `name -> (value, version, updated_ms)`. A put replaces the value and bumps the
//! version by one (a new cursor starts at 1); a put with an empty value deletes the cursor. A
//! put may name the version it expects (`expected_version`, 0 = "no such cursor"): when the
//! cursor moved since the caller read it, the put is refused (FAILED_PRECONDITION) and changes
//! nothing, so two importers of one source notice each other instead of moving one position
//! back and forth. The value means nothing to the cluster: a cursor is a hint for resuming,
//! and the real guarantee against doubles stays the idempotency key of each job (a crash
//! between a batch's acknowledgement and the cursor's put re-sends that batch, answered
//! `duplicate`).
//!
//! Invariants: at most `CURSORS_MAX` cursors; every name is 1..=`CURSOR_NAME_BYTES_MAX`
//! printable ASCII bytes; every value is 1..=`CURSOR_VALUE_BYTES_MAX` bytes; every version is
//! at least 1.
//!
//! CAVEATS (not implemented): no listing or expiry: a cursor lives until it is deleted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{exhausted, precondition, Ctx, Rejection, Response};
use super::limits;

/// One cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The value last put.
    #[serde(with = "super::codec::bytes")]
    pub value: Vec<u8>,
    /// Puts so far, 1 for a new cursor.
    pub version: u64,
    /// State-machine time of the last put.
    pub updated_ms: u64,
}

/// Every cursor, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursors {
    map: BTreeMap<String, Cursor>,
}

impl Cursors {
    /// The cursor named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Cursor> {
        self.map.get(name)
    }

    /// Cursors held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no cursor is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Checks what does not depend on the state: the name and the value's size.
    pub fn check(name: &str, value: &[u8]) -> Result<(), Rejection> {
        if name.is_empty() || name.len() > limits::CURSOR_NAME_BYTES_MAX {
            return Err(Rejection::invalid(
                "name",
                format!(
                    "is {} bytes, must be 1..={}",
                    name.len(),
                    limits::CURSOR_NAME_BYTES_MAX
                ),
            ));
        }
        if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(Rejection::invalid(
                "name",
                format!("has the character {c:?}; allowed is printable ASCII without spaces"),
            ));
        }
        if value.len() > limits::CURSOR_VALUE_BYTES_MAX {
            return Err(Rejection::invalid(
                "value",
                format!(
                    "is {} bytes, the limit is {} (CURSOR_VALUE_BYTES_MAX)",
                    value.len(),
                    limits::CURSOR_VALUE_BYTES_MAX
                ),
            ));
        }
        Ok(())
    }

    /// Puts `value` under `name` (deletes it when `value` is empty), if the cursor is at
    /// `expected` (0 = absent) or no version is expected. Answers the new version (0 after a
    /// delete).
    pub(super) fn put(
        &mut self,
        ctx: Ctx,
        name: &str,
        value: &[u8],
        expected: Option<u64>,
    ) -> Response {
        // `check` bounds the name (CURSOR_NAME_BYTES_MAX) before a message echoes it.
        if let Err(r) = Cursors::check(name, value) {
            return Response::Rejected(r);
        }
        let current = self.map.get(name).map_or(0, |c| c.version);
        if let Some(expected) = expected.filter(|e| *e != current) {
            return precondition(format!(
                "cursor {name} is at version {current}, not {expected}: another client moved \
                 it"
            ));
        }
        if value.is_empty() {
            self.map.remove(name);
            return Response::CursorPut { version: 0 };
        }
        if current == 0 && self.map.len() >= limits::CURSORS_MAX {
            return exhausted(format!(
                "{} cursors are held, the limit (CURSORS_MAX); delete one first",
                limits::CURSORS_MAX
            ));
        }
        let version = current + 1;
        self.map.insert(
            name.to_string(),
            Cursor {
                value: value.to_vec(),
                version,
                updated_ms: ctx.now_ms,
            },
        );
        Response::CursorPut { version }
    }

    /// Panics if an invariant of the module doc is broken.
    pub fn check_invariants(&self) {
        assert!(self.map.len() <= limits::CURSORS_MAX, "too many cursors");
        for (name, c) in &self.map {
            assert!(
                Cursors::check(name, &c.value).is_ok() && !c.value.is_empty(),
                "cursor {name:?} breaks its limits"
            );
            assert!(c.version >= 1, "cursor {name:?} has version 0");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Versions count puts, a stale expected version changes nothing, an empty value deletes.
    #[test]
    fn cursor_versions_and_compare() {
        let mut c = Cursors::default();
        let ctx = Ctx::at(5);
        assert_eq!(
            c.put(ctx, "a", b"1", Some(0)),
            Response::CursorPut { version: 1 }
        );
        assert_eq!(
            c.put(ctx, "a", b"2", None),
            Response::CursorPut { version: 2 }
        );
        assert!(matches!(
            c.put(ctx, "a", b"3", Some(1)),
            Response::Rejected(Rejection::Precondition { .. })
        ));
        assert_eq!(c.get("a").map(|x| x.value.clone()), Some(b"2".to_vec()));
        assert_eq!(
            c.put(ctx, "a", b"", Some(2)),
            Response::CursorPut { version: 0 }
        );
        assert!(c.get("a").is_none());
        assert!(matches!(
            c.put(ctx, "a b", b"1", None),
            Response::Rejected(Rejection::Invalid { .. })
        ));
        let big = vec![0u8; limits::CURSOR_VALUE_BYTES_MAX + 1];
        assert!(matches!(
            c.put(ctx, "a", &big, None),
            Response::Rejected(Rejection::Invalid { .. })
        ));
        c.check_invariants();
    }
}
