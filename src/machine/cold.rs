//! The cold tier: finished jobs (with their attempts and output tails), their purge times and
//! the dead-letter sets, kept in an ordered key-value store (sled on a node) instead of
//! memory, so memory holds live work only.
//!
//! ## Records keyed by log index
//!
//! Every record is immutable and carries the index of the log entry whose apply wrote it:
//! the key is `kind · user key · index` (big-endian, so versions of one user key sort
//! together, oldest first) and the value a tag (`1` present, `0` removed) and the payload. A
//! read at index `x` takes the newest version at or below `x`. That is what makes a *fuzzy*
//! copy exact: a snapshot at index `s` carries the live state at `s` plus a copy of this store
//! made while applies go on, so the copy may hold versions written after `s`; a node that
//! loads it reads at `s` (later versions are invisible) and the log replayed after `s` writes
//! those same versions again, byte for byte. Nothing is read from the store but through a
//! view at the applying index, so the placement of a record (memory or here, earlier or
//! later version) never changes what a transition sees.
//!
//! ## Garbage
//!
//! A removal writes a tombstone version and notes the user key in a `g` list under the
//! tombstone's index (a key is only written again after a removal). [`Cold::collect`] at a
//! horizon `h` drops, for every key noted at or below `h`, the versions at or below `h` that
//! no view at or after `h` can see. Any `h` up to the index applied is safe for the live
//! state (reads are at the index applied, and only grow), and a snapshot at `s` needs views
//! at or after `s` only, which its copy keeps: a node collects every second up to the index
//! it applied, and before each snapshot's copy up to the snapshot's index. Collection never
//! runs while a copy is being taken (one lock), so a copy never holds an old version without
//! the tombstone that hides it.
//!
//! Sled is not the durability mechanism: a node clears this store when it opens and loads it
//! from its snapshot file (which is fsynced), then replays the log.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::codec;
use super::job::{Job, JobId, JobState};

/// Bytes of the version suffix of every key.
const VERSION_BYTES: usize = 8;
/// Key kinds.
const JOB: u8 = b'j';
const PURGE: u8 = b'p';
const DEAD: u8 = b'd';
const GARBAGE: u8 = b'g';
/// Value tags.
const REMOVED: u8 = 0;
const PRESENT: u8 = 1;

/// What removing a finished job from the counters needs, kept as the payload of its purge
/// entry so a retention purge doesn't read and decode the whole job: `[state][deadline
/// missed][queue]`. Purge entries written before it (an empty payload) are read the long way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeNote {
    /// The job's (terminal) state.
    pub state: JobState,
    /// Whether it missed its SLA deadline.
    pub deadline_missed: bool,
    /// Its queue.
    pub queue: String,
}

impl PurgeNote {
    /// The note of `job`.
    pub fn of(job: &Job) -> PurgeNote {
        PurgeNote {
            state: job.state,
            deadline_missed: job.deadline_missed,
            queue: job.spec.queue.clone(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(2 + self.queue.len());
        bytes.push(self.state as u8);
        bytes.push(u8::from(self.deadline_missed));
        bytes.extend_from_slice(self.queue.as_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<PurgeNote> {
        let (&state, rest) = bytes.split_first()?;
        let (&missed, queue) = rest.split_first()?;
        Some(PurgeNote {
            state: *JobState::ALL.get(usize::from(state))?,
            deadline_missed: missed == 1,
            queue: String::from_utf8(queue.to_vec()).ok()?,
        })
    }
}

/// An ordered byte map, the store under the cold tier (sled on a node, memory in tests).
/// An I/O error is fatal to the node: implementations panic with the cause.
pub trait Kv: Send + Sync {
    /// Sets `key` to `value`.
    fn insert(&self, key: &[u8], value: &[u8]);
    /// Removes `key`.
    fn remove(&self, key: &[u8]);
    /// Entries with `from <= key < to`, in key order.
    fn scan<'a>(
        &'a self,
        from: &[u8],
        to: &[u8],
    ) -> Box<dyn Iterator<Item = (Vec<u8>, Vec<u8>)> + 'a>;
    /// The last entry with `from <= key < to`.
    fn last_in(&self, from: &[u8], to: &[u8]) -> Option<(Vec<u8>, Vec<u8>)>;
    /// Removes every entry.
    fn clear(&self);
}

/// A [`Kv`] in memory (tests, the model test, golden scripts).
#[derive(Default)]
pub struct MemKv(Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>);

impl Kv for MemKv {
    fn insert(&self, key: &[u8], value: &[u8]) {
        self.0
            .lock()
            .expect("kv lock")
            .insert(key.to_vec(), value.to_vec());
    }

    fn remove(&self, key: &[u8]) {
        self.0.lock().expect("kv lock").remove(key);
    }

    fn scan<'a>(
        &'a self,
        from: &[u8],
        to: &[u8],
    ) -> Box<dyn Iterator<Item = (Vec<u8>, Vec<u8>)> + 'a> {
        let map = self.0.lock().expect("kv lock");
        let all: Vec<_> = map
            .range(from.to_vec()..to.to_vec())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Box::new(all.into_iter())
    }

    fn last_in(&self, from: &[u8], to: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let map = self.0.lock().expect("kv lock");
        map.range(from.to_vec()..to.to_vec())
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone()))
    }

    fn clear(&self) {
        self.0.lock().expect("kv lock").clear();
    }
}

/// The cold tier over a [`Kv`]. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct Cold {
    kv: Arc<dyn Kv>,
    /// Held by a copy and by garbage collection, never both.
    copying: Arc<Mutex<()>>,
    /// Copies promised (a snapshot's state cloned, its copy of this store not yet taken or
    /// not finished): while there is one, removals write tombstones.
    pending: Arc<AtomicUsize>,
}

/// A copy promised by [`Cold::promise_copy`]; dropping it ends the promise.
pub struct CopyPromise(Arc<AtomicUsize>);

impl Drop for CopyPromise {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Cold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cold")
    }
}

fn versioned(user: &[u8], version: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.len() + VERSION_BYTES);
    key.extend_from_slice(user);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn split(key: &[u8]) -> (&[u8], u64) {
    let (user, version) = key.split_at(key.len() - VERSION_BYTES);
    (
        user,
        u64::from_be_bytes(version.try_into().expect("version bytes")),
    )
}

fn job_key(id: JobId) -> Vec<u8> {
    let mut key = vec![JOB];
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn purge_key(at_ms: u64, id: JobId) -> Vec<u8> {
    let mut key = vec![PURGE];
    key.extend_from_slice(&at_ms.to_be_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// `d · queue · 0 · id`: queue names hold no zero byte, so this sorts as `(queue, id)`.
fn dead_key(queue: &str, id: JobId) -> Vec<u8> {
    let mut key = vec![DEAD];
    key.extend_from_slice(queue.as_bytes());
    key.push(0);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// The key just after every key that starts with `prefix`.
fn after_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; 1]
}

/// User keys visible at index `at` among `entries` (in key order): the newest version at or
/// below `at` of each, when it is present, with its payload.
fn visible(
    entries: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    at: u64,
) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    let mut entries = entries.peekable();
    std::iter::from_fn(move || loop {
        let (key, value) = entries.next()?;
        let (user, version) = split(&key);
        let user = user.to_vec();
        let mut best = (version <= at).then_some(value);
        while let Some((next, _)) = entries.peek() {
            let (next_user, next_version) = split(next);
            if next_user != user.as_slice() {
                break;
            }
            let (_, value) = entries.next().expect("peeked");
            if next_version <= at {
                best = Some(value);
            }
        }
        if let Some(value) = best.filter(|v| v.first() == Some(&PRESENT)) {
            return Some((user, value[1..].to_vec()));
        }
    })
}

impl Cold {
    /// A cold tier over `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> Cold {
        Cold {
            kv,
            copying: Arc::default(),
            pending: Arc::default(),
        }
    }

    /// A cold tier in memory.
    pub fn in_memory() -> Cold {
        Cold::new(Arc::new(MemKv::default()))
    }

    fn read(&self, user: &[u8], at: u64) -> Option<Vec<u8>> {
        let (_, value) = self
            .kv
            .last_in(&versioned(user, 0), &versioned(user, at.saturating_add(1)))?;
        (value.first() == Some(&PRESENT)).then(|| value[1..].to_vec())
    }

    /// Promises a copy of the store as of index `at` or later: from now until the promise
    /// is dropped, removals keep what they remove visible to earlier views (a tombstone).
    /// Taken at the moment the state to go with the copy is cloned (under the lock that
    /// orders it with applies).
    pub fn promise_copy(&self) -> CopyPromise {
        self.pending.fetch_add(1, Ordering::AcqRel);
        CopyPromise(self.pending.clone())
    }

    /// Writes a version. A removal while no copy is promised deletes the versions at or
    /// below `at` outright: every reader from now on reads at `at` or later, where they are
    /// gone either way. While a copy is promised it writes a tombstone instead, noted as
    /// garbage; a user key is written again only after a removal (a job comes back into
    /// memory before it can finish again), so the note covers every version before it.
    fn write(&self, user: &[u8], at: u64, payload: Option<&[u8]>) {
        if payload.is_none() && self.pending.load(Ordering::Acquire) == 0 {
            let old: Vec<Vec<u8>> = self
                .kv
                .scan(&versioned(user, 0), &versioned(user, at.saturating_add(1)))
                .map(|(k, _)| k)
                .collect();
            for key in old {
                self.kv.remove(&key);
            }
            return;
        }
        let mut value = Vec::with_capacity(1 + payload.map_or(0, <[u8]>::len));
        value.push(if payload.is_some() { PRESENT } else { REMOVED });
        value.extend_from_slice(payload.unwrap_or_default());
        self.kv.insert(&versioned(user, at), &value);
        if payload.is_none() {
            let mut note = vec![GARBAGE];
            note.extend_from_slice(&at.to_be_bytes());
            note.extend_from_slice(user);
            self.kv.insert(&note, &[]);
        }
    }

    /// The job `id` as of index `at`.
    pub fn job(&self, id: JobId, at: u64) -> Option<Job> {
        let bytes = self.read(&job_key(id), at)?;
        Some(codec::decode(&bytes).unwrap_or_else(|e| {
            panic!("cold store: job {id} does not decode ({e}); the node's data is damaged")
        }))
    }

    /// Writes job `id` (or its removal) at index `at`.
    pub fn put_job(&self, id: JobId, at: u64, job: Option<&Job>) {
        let bytes = job.map(|j| codec::encode(j).expect("a job encodes"));
        self.write(&job_key(id), at, bytes.as_deref());
    }

    /// Adds `(at_ms, id)` to the purge set at index `at`, with the job's note, or removes it.
    pub fn set_purge(&self, at_ms: u64, id: JobId, at: u64, note: Option<&PurgeNote>) {
        let bytes = note.map(PurgeNote::encode);
        self.write(&purge_key(at_ms, id), at, bytes.as_deref());
    }

    /// The note of `(at_ms, id)` in the purge set as of `at`: `None` when it isn't there or
    /// was written without one.
    pub fn purge_note(&self, at_ms: u64, id: JobId, at: u64) -> Option<PurgeNote> {
        PurgeNote::decode(&self.read(&purge_key(at_ms, id), at)?)
    }

    /// Adds or removes job `id` in the dead set of `queue` at index `at`.
    pub fn set_dead(&self, queue: &str, id: JobId, at: u64, present: bool) {
        self.write(&dead_key(queue, id), at, present.then_some(&[][..]));
    }

    /// The first `(purge time, job)` at or after `from` in the purge set as of `at`.
    pub fn purge_first(&self, from: (u64, JobId), at: u64) -> Option<(u64, JobId)> {
        let start = versioned(&purge_key(from.0, from.1), 0);
        visible(self.kv.scan(&start, &[PURGE + 1]), at)
            .next()
            .map(|(user, _)| (u64_at(&user, 1), u64_at(&user, 9)))
    }

    /// Dead jobs as `(queue, id)` in that order, of `queue` (or all), after `after` (a
    /// position in that order), as of `at`, at most `limit`.
    pub fn dead(
        &self,
        queue: Option<&str>,
        after: Option<(&str, JobId)>,
        at: u64,
        limit: usize,
    ) -> Vec<(String, JobId)> {
        let prefix = match queue {
            Some(q) => {
                let mut p = vec![DEAD];
                p.extend_from_slice(q.as_bytes());
                p.push(0);
                p
            }
            None => vec![DEAD],
        };
        let start = match after {
            Some((q, id)) => versioned(&dead_key(q, id.saturating_add(1)), 0),
            None => prefix.clone(),
        };
        visible(self.kv.scan(&start, &after_prefix(&prefix)), at)
            .take(limit)
            .map(|(user, _)| {
                let id = u64_at(&user, user.len() - 8);
                let queue = String::from_utf8_lossy(&user[1..user.len() - 9]).into_owned();
                (queue, id)
            })
            .collect()
    }

    /// Jobs in id order after `after`, as of `at`.
    pub fn jobs_after(&self, after: JobId, at: u64) -> impl Iterator<Item = Job> + '_ {
        let start = versioned(&job_key(after.saturating_add(1)), 0);
        visible(self.kv.scan(&start, &[JOB + 1]), at).map(|(user, bytes)| {
            codec::decode(&bytes).unwrap_or_else(|e| {
                panic!(
                    "cold store: job {} does not decode ({e}); the node's data is damaged",
                    u64_at(&user, 1)
                )
            })
        })
    }

    /// Drops what no view at or after `horizon` can see (`horizon` at most the index applied;
    /// see the module doc). Returns the number of entries removed.
    pub fn collect(&self, horizon: u64) -> u64 {
        let _alone = self.copying.lock().expect("cold copy lock");
        let mut removed = 0;
        let end = {
            let mut e = vec![GARBAGE];
            e.extend_from_slice(&horizon.saturating_add(1).to_be_bytes());
            e
        };
        let notes: Vec<Vec<u8>> = self.kv.scan(&[GARBAGE], &end).map(|(k, _)| k).collect();
        for note in notes {
            let user = &note[1 + 8..];
            let versions: Vec<(Vec<u8>, Vec<u8>)> = self
                .kv
                .scan(
                    &versioned(user, 0),
                    &versioned(user, horizon.saturating_add(1)),
                )
                .collect();
            let keep = versions
                .last()
                .filter(|(_, v)| v.first() == Some(&PRESENT))
                .map(|(k, _)| k.clone());
            for (key, _) in &versions {
                if Some(key) != keep.as_ref() {
                    self.kv.remove(key);
                    removed += 1;
                }
            }
            self.kv.remove(&note);
        }
        removed
    }

    /// Hands every entry to `sink`, in key order, while nothing is collected (the copy a
    /// snapshot carries).
    pub fn copy_to<E>(&self, mut sink: impl FnMut(&[u8], &[u8]) -> Result<(), E>) -> Result<(), E> {
        let _alone = self.copying.lock().expect("cold copy lock");
        for (key, value) in self.kv.scan(&[], &[u8::MAX]) {
            if key.first() != Some(&GARBAGE) {
                sink(&key, &value)?;
            }
        }
        Ok(())
    }

    /// Empties the store (a node opening, or installing a snapshot, before `load`).
    pub fn clear(&self) {
        self.kv.clear();
    }

    /// Adds one entry of a copy (see [`Cold::copy_to`]); `finish_load` after the last.
    pub fn load(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let kind = key.first().copied();
        if key.len() < 1 + VERSION_BYTES
            || !matches!(kind, Some(JOB | PURGE | DEAD))
            || !matches!(value.first(), Some(&(REMOVED | PRESENT)))
        {
            return Err(format!(
                "a cold record with a malformed key ({} bytes) or value",
                key.len()
            ));
        }
        self.kv.insert(key, value);
        Ok(())
    }

    /// Notes, after a load, every key that has garbage (the copy leaves the notes out).
    pub fn finish_load(&self) {
        let mut notes = Vec::new();
        let mut last: Option<(Vec<u8>, u64, bool, usize)> = None;
        let mut flush = |last: Option<(Vec<u8>, u64, bool, usize)>| {
            if let Some((user, version, present, count)) = last {
                if !present || count > 1 {
                    let mut note = vec![GARBAGE];
                    note.extend_from_slice(&version.to_be_bytes());
                    note.extend_from_slice(&user);
                    notes.push(note);
                }
            }
        };
        for (key, value) in self.kv.scan(&[], &[u8::MAX]) {
            if key.first() == Some(&GARBAGE) {
                continue;
            }
            let (user, version) = split(&key);
            let present = value.first() == Some(&PRESENT);
            match &mut last {
                Some((u, v, p, count)) if u.as_slice() == user => {
                    *v = version;
                    *p = present;
                    *count += 1;
                }
                _ => flush(last.replace((user.to_vec(), version, present, 1))),
            }
        }
        flush(last);
        for note in notes {
            self.kv.insert(&note, &[]);
        }
    }

    /// FNV-1a digest of everything visible at `at` (state comparisons between nodes).
    pub fn digest(&self, at: u64) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (user, payload) in visible(
            self.kv
                .scan(&[], &[u8::MAX])
                .filter(|(k, _)| k.first() != Some(&GARBAGE)),
            at,
        ) {
            for b in user.iter().chain(payload.iter()) {
                hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }

    /// Number of entries (every version and note; tests and status).
    pub fn entries(&self) -> usize {
        self.kv.scan(&[], &[u8::MAX]).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::JobSpec;

    fn job(id: JobId, note: &str) -> Job {
        let mut j = Job::new(id, JobSpec::shell("q", &["echo", note]), 1, 1);
        j.state = crate::machine::JobState::Succeeded;
        j.finished_ms = Some(2);
        j.error = Some(note.into());
        j
    }

    /// A purge note round-trips; a purge entry without one (an older build's) reads as none.
    #[test]
    fn purge_notes_round_trip_and_old_entries_have_none() {
        let cold = Cold::in_memory();
        let mut dead = job(4, "x");
        dead.state = JobState::Dead;
        dead.deadline_missed = true;
        dead.spec.queue = "emails.é".into();
        let note = PurgeNote::of(&dead);
        cold.set_purge(9, 4, 1, Some(&note));
        assert_eq!(cold.purge_note(9, 4, 1), Some(note));
        cold.write(&purge_key(9, 5), 1, Some(&[]));
        assert_eq!(cold.purge_first((9, 5), 1), Some((9, 5)));
        assert_eq!(cold.purge_note(9, 5, 1), None);
    }

    /// Reads see the newest version at or below their index; removals hide older versions;
    /// collecting at a horizon changes no view at or after it.
    #[test]
    fn views_by_index_and_collection_keep_them() {
        let cold = Cold::in_memory();
        let _copy = cold.promise_copy();
        let note = PurgeNote::of(&job(7, "a"));
        cold.put_job(7, 10, Some(&job(7, "a")));
        cold.set_purge(500, 7, 10, Some(&note));
        cold.set_dead("q", 7, 10, true);
        cold.put_job(7, 20, None);
        cold.set_purge(500, 7, 20, None);
        cold.set_dead("q", 7, 20, false);
        cold.put_job(7, 30, Some(&job(7, "b")));
        assert!(cold.job(7, 9).is_none());
        assert_eq!(cold.job(7, 15).unwrap().error.as_deref(), Some("a"));
        assert!(cold.job(7, 25).is_none());
        assert_eq!(cold.job(7, 30).unwrap().error.as_deref(), Some("b"));
        assert_eq!(cold.purge_first((0, 0), 15), Some((500, 7)));
        assert_eq!(cold.purge_first((0, 0), 25), None);
        assert_eq!(cold.purge_note(500, 7, 15), Some(note));
        assert_eq!(cold.purge_note(500, 7, 25), None);
        assert_eq!(cold.dead(None, None, 15, 10), vec![("q".to_string(), 7)]);
        assert!(cold.dead(Some("q"), None, 25, 10).is_empty());
        let views: Vec<u64> = [20, 25, 30, 40].map(|at| cold.digest(at)).to_vec();
        let before = cold.entries();
        cold.collect(25);
        assert!(cold.entries() < before, "nothing collected");
        assert_eq!(views, [20, 25, 30, 40].map(|at| cold.digest(at)).to_vec());
        assert_eq!(cold.job(7, 30).unwrap().error.as_deref(), Some("b"));
    }

    /// With no copy promised a removal deletes outright (no tombstone, nothing to collect);
    /// views at and after the removal read the same as with a tombstone.
    #[test]
    fn removals_without_a_promised_copy_delete_outright() {
        let (kept, deleted) = (Cold::in_memory(), Cold::in_memory());
        let _copy = kept.promise_copy();
        let note = PurgeNote::of(&job(3, "a"));
        for cold in [&kept, &deleted] {
            cold.put_job(3, 5, Some(&job(3, "a")));
            cold.set_purge(100, 3, 5, Some(&note));
            cold.put_job(3, 8, None);
            cold.set_purge(100, 3, 8, None);
            cold.put_job(3, 12, Some(&job(3, "b")));
        }
        assert_eq!(deleted.entries(), 1);
        for at in [8, 10, 12, 20] {
            assert_eq!(kept.digest(at), deleted.digest(at), "at {at}");
        }
    }

    /// A copy loaded into another store reads the same at every index, and its garbage is
    /// noted again.
    #[test]
    fn a_copy_loads_into_the_same_views() {
        let cold = Cold::in_memory();
        let _copy = cold.promise_copy();
        for id in 1..50u64 {
            cold.put_job(id, id, Some(&job(id, "x")));
            cold.set_dead("d", id, id, true);
            if id % 3 == 0 {
                cold.put_job(id, id + 100, None);
                cold.set_dead("d", id, id + 100, false);
            }
        }
        let other = Cold::in_memory();
        cold.copy_to(|k, v| other.load(k, v)).unwrap();
        other.finish_load();
        for at in [0, 10, 60, 120, 200] {
            assert_eq!(cold.digest(at), other.digest(at), "at {at}");
        }
        assert_eq!(cold.entries(), other.entries());
        assert!(other.load(b"zz", &[1]).is_err());
    }
}
