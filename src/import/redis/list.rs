//! The list reader of `raftline import redis --from list:KEY`, in two modes.
//!
//! **Reading** (the default) changes nothing in Redis. The list is read with LRANGE in pages
//! of `--batch` elements, never in one reply, from the tail: with LPUSH producers and BRPOP
//! workers the tail is the oldest element, so jobs are submitted (and run) in the order the
//! workers would have taken them, and the negative indexes it reads by stay put while
//! producers push at the head. Elements have no identity of their own and their indexes
//! shift, so an element's idempotency key is `list:KEY:<hash>:<n>`: the first 128 bits of the
//! element's SHA-256, and `n`, how many elements with the same content came before it (from
//! the tail) in this read. A re-run after the list changed recognises every element it
//! imported before wherever it moved; elements with identical content count as a multiset
//! (three equal elements are three jobs, a fourth pushed later one more; but when, between two
//! runs, a worker pops one of them and a producer pushes an equal one, the new one is taken
//! for the old).
//!
//! The cursor (`import/cursor.rs`) of a read list is `N HEX`: N elements from the tail were
//! imported, and HEX is a SHA-256 chained over their hashes in order. That is the position
//! this reader can defend: a re-run reads the first N elements again (it needs their hashes
//! for the occurrence counts anyway) without submitting them, and goes on submitting from N
//! only when they chain to the same digest, i.e. the tail holds exactly the elements imported
//! before. When it does not (workers popped, an RPUSH producer, LTRIM), the run says so and
//! submits the whole list again, and idempotency keys answer `duplicate` for what is there.
//! What no read can make consistent is a tail that moves *during* the run: an element can
//! then be read twice (a duplicate job only if its content repeats) or missed (a re-run picks
//! it up). Stop the list's workers, or use `--drain`.
//!
//! **Draining** (`--drain`) moves the elements out of the list, so it is safe while producers
//! and even other consumers run. Per batch: SET `KEY:raftline-importing:batch` to a new
//! random batch id; LMOVE up to `--batch` elements from KEY's tail to the head of the holding
//! list `KEY:raftline-importing` (pipelined, each LMOVE atomic); submit them oldest first with
//! keys `list:KEY:drain:<batch id>:<i>` (i = position from the holding list's tail); only
//! after raftline acknowledged all of them, DEL the holding list and the batch id (one
//! command). A run that finds a holding list (a crashed run left it) imports it first with
//! the batch id it finds, so a crash anywhere loses nothing (an element is always in KEY, in
//! the holding list or a job) and duplicates nothing (the same holding list gets the same
//! keys; a new batch a new id). If the batch id key is gone but the holding list is not (a
//! person deleted it), the holding list gets a new id: its jobs are then created again if the
//! crashed run had submitted them. Nothing else may write the holding list. With
//! `--continuous` an empty list is waited on with BLMOVE (1 s at a time). Draining keeps no
//! cursor: the holding list is the position. Both keys must live on one node (no Redis
//! Cluster slots across them).

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;
use sha2::{Digest, Sha256};

use super::{print_dry, redis_error, Progress};
use crate::error::{Error, Result};
use crate::import::cursor::Position;
use crate::import::sink::{Sink, Summary};
use crate::import::{Item, Stop};

/// How often `--continuous` looks for new elements of a list it reads (not drains).
pub const LIST_POLL_MS: u64 = 1_000;
/// How long one BLMOVE of `--continuous --drain` waits, in seconds.
const BLMOVE_TIMEOUT_S: f64 = 1.0;
/// The suffix of the holding list's key.
pub const HOLDING_SUFFIX: &str = ":raftline-importing";
/// The suffix of the key of the holding list's batch id.
pub const BATCH_ID_SUFFIX: &str = ":raftline-importing:batch";

/// The item for one list element: key `list:KEY:<hash>:<n>` (see the module docs).
pub fn list_item(key: &str, element: Vec<u8>, seen: &mut HashMap<[u8; 16], u64>) -> Item {
    let hash = hash16(&element);
    let n = seen.entry(hash).or_insert(0);
    let occurrence = *n;
    *n += 1;
    Item {
        key: format!("list:{key}:{}:{occurrence}", hex(&hash)),
        payload: element,
        tags: Vec::new(),
        options: Default::default(),
    }
}

fn hash16(element: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(element);
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&digest[..16]);
    hash
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A read list's cursor: `N HEX` (module doc).
fn parse_cursor(value: &[u8]) -> Option<(u64, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let (n, digest) = text.split_once(' ')?;
    Some((n.parse().ok()?, digest.to_string()))
}

/// Reads (or drains) one list into a sink.
pub struct ListReader<'a> {
    /// The list's key.
    pub key: &'a str,
    /// `--json`: no per-item lines in a dry run, no progress line.
    pub json: bool,
    /// `--continuous`: keep reading until `stop`.
    pub continuous: bool,
    /// When to stop.
    pub stop: &'a Stop,
}

/// Where a read of the list is: elements read from the tail, their occurrence counts, and
/// the digest chained over their hashes.
struct Tail {
    from_tail: i64,
    seen: HashMap<[u8; 16], u64>,
    chain: Sha256,
}

impl Tail {
    fn new() -> Tail {
        Tail {
            from_tail: 0,
            seen: HashMap::new(),
            chain: Sha256::new(),
        }
    }

    /// The items of one page (oldest first), counted into the position.
    fn items(&mut self, key: &str, page: Vec<Vec<u8>>) -> Vec<Item> {
        self.from_tail += page.len() as i64;
        page.into_iter()
            .rev()
            .map(|element| {
                let item = list_item(key, element, &mut self.seen);
                self.chain.update(hash16(&item.payload));
                item
            })
            .collect()
    }

    fn cursor(&self) -> Vec<u8> {
        format!("{} {}", self.from_tail, hex(&self.chain.clone().finalize())).into_bytes()
    }
}

impl ListReader<'_> {
    async fn lrange(
        &self,
        con: &mut MultiplexedConnection,
        key: &str,
        from_tail: i64,
        count: i64,
    ) -> Result<Vec<Vec<u8>>> {
        redis::cmd("LRANGE")
            .arg(key)
            .arg(-(from_tail + count))
            .arg(-(from_tail + 1))
            .query_async(con)
            .await
            .map_err(|e| redis_error(key, e))
    }

    /// Reads the first `n` elements again without submitting them: the position after them
    /// when they chain to `digest`, else `None` (module doc).
    async fn verify(
        &self,
        con: &mut MultiplexedConnection,
        page: i64,
        n: u64,
        digest: &str,
    ) -> Result<Option<Tail>> {
        let mut tail = Tail::new();
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        while tail.from_tail < n {
            let want = page.min(n - tail.from_tail);
            let elements = self.lrange(con, self.key, tail.from_tail, want).await?;
            if (elements.len() as i64) < want {
                return Ok(None);
            }
            tail.items(self.key, elements);
        }
        let matches = hex(&tail.chain.clone().finalize()) == digest;
        Ok(matches.then_some(tail))
    }

    /// Reads the list as the module doc says, from the stored position when it still holds.
    pub async fn read(
        &self,
        con: &mut MultiplexedConnection,
        sink: &Sink<'_>,
        position: &mut Position<'_>,
        stored: Option<Vec<u8>>,
        summary: &mut Summary,
    ) -> Result<()> {
        let progress = Progress::new(llen(con, self.key).await?, self.json);
        let page = sink.batch as i64;
        let mut tail = Tail::new();
        if let Some((n, digest)) = stored.as_deref().and_then(parse_cursor) {
            match self.verify(con, page, n, &digest).await? {
                Some(resumed) => {
                    summary.behind_cursor = n;
                    tail = resumed;
                }
                None => eprintln!(
                    "the list's tail is no longer the {n} elements imported before (workers \
                     popped, or a producer pushed at the tail): reading all of it again"
                ),
            }
        }
        loop {
            let elements = self.lrange(con, self.key, tail.from_tail, page).await?;
            let count = elements.len() as i64;
            if count > 0 {
                let items = tail.items(self.key, elements);
                if sink.dry_run {
                    print_dry(&items, self.json);
                }
                sink.submit(&items, summary).await?;
                position.save(tail.cursor()).await?;
                progress.show(summary.read);
            }
            if count < page {
                if !self.continuous || self.stop.is_set() {
                    break;
                }
                self.stop.wait(LIST_POLL_MS).await;
            }
            if self.stop.is_set() {
                break;
            }
        }
        progress.finish();
        Ok(())
    }

    /// Drains the list as the module doc says.
    pub async fn drain(
        &self,
        con: &mut MultiplexedConnection,
        sink: &Sink<'_>,
        summary: &mut Summary,
    ) -> Result<()> {
        let holding = format!("{}{HOLDING_SUFFIX}", self.key);
        let batch_key = format!("{}{BATCH_ID_SUFFIX}", self.key);
        let progress = Progress::new(llen(con, self.key).await?, self.json);
        loop {
            self.import_holding(con, sink, &holding, &batch_key, summary)
                .await?;
            progress.show(summary.read);
            if self.stop.is_set() {
                break;
            }
            let id = batch_id()?;
            redis::cmd("SET")
                .arg(&batch_key)
                .arg(&id)
                .query_async::<()>(con)
                .await
                .map_err(|e| redis_error(&batch_key, e))?;
            let moved = self.move_batch(con, sink.batch, &holding).await?;
            if moved == 0 && !self.continuous {
                break;
            }
        }
        // The holding list is empty here: its batch id goes too.
        redis::cmd("DEL")
            .arg(&batch_key)
            .query_async::<()>(con)
            .await
            .map_err(|e| redis_error(&batch_key, e))?;
        progress.finish();
        Ok(())
    }

    /// Moves up to `batch` elements from the list's tail to the holding list's head; with
    /// `--continuous`, waits up to `BLMOVE_TIMEOUT_S` for a first one.
    async fn move_batch(
        &self,
        con: &mut MultiplexedConnection,
        batch: usize,
        holding: &str,
    ) -> Result<usize> {
        let lmoves = |n: usize| {
            let mut pipe = redis::pipe();
            for _ in 0..n {
                pipe.cmd("LMOVE")
                    .arg(self.key)
                    .arg(holding)
                    .arg("RIGHT")
                    .arg("LEFT");
            }
            pipe
        };
        let moved: Vec<Option<Vec<u8>>> = lmoves(batch)
            .query_async(con)
            .await
            .map_err(|e| redis_error(self.key, e))?;
        let mut n = moved.iter().filter(|m| m.is_some()).count();
        if n == 0 && self.continuous && !self.stop.is_set() {
            let first: Option<Vec<u8>> = redis::cmd("BLMOVE")
                .arg(self.key)
                .arg(holding)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(BLMOVE_TIMEOUT_S)
                .query_async(con)
                .await
                .map_err(|e| redis_error(self.key, e))?;
            if first.is_some() {
                let more: Vec<Option<Vec<u8>>> = lmoves(batch - 1)
                    .query_async(con)
                    .await
                    .map_err(|e| redis_error(self.key, e))?;
                n = 1 + more.iter().filter(|m| m.is_some()).count();
            }
        }
        Ok(n)
    }

    /// Imports the holding list (a crashed run's, or the batch just moved), oldest first,
    /// then deletes it and its batch id.
    async fn import_holding(
        &self,
        con: &mut MultiplexedConnection,
        sink: &Sink<'_>,
        holding: &str,
        batch_key: &str,
        summary: &mut Summary,
    ) -> Result<()> {
        let len: u64 = redis::cmd("LLEN")
            .arg(holding)
            .query_async(con)
            .await
            .map_err(|e| redis_error(holding, e))?;
        if len == 0 {
            return Ok(());
        }
        let stored: Option<String> = redis::cmd("GET")
            .arg(batch_key)
            .query_async(con)
            .await
            .map_err(|e| redis_error(batch_key, e))?;
        let id = match stored.filter(|id| is_batch_id(id)) {
            Some(id) => id,
            None => {
                let id = batch_id()?;
                eprintln!(
                    "the holding list {holding:?} has no batch id: its {len} elements get new \
                     keys ({id}), so jobs a crashed run made of them are made again"
                );
                redis::cmd("SET")
                    .arg(batch_key)
                    .arg(&id)
                    .query_async::<()>(con)
                    .await
                    .map_err(|e| redis_error(batch_key, e))?;
                id
            }
        };
        let page = sink.batch as i64;
        let mut from_tail: i64 = 0;
        loop {
            let elements = self.lrange(con, holding, from_tail, page).await?;
            let count = elements.len() as i64;
            let items: Vec<Item> = elements
                .into_iter()
                .rev()
                .enumerate()
                .map(|(i, payload)| Item {
                    key: format!("list:{}:drain:{id}:{}", self.key, from_tail + i as i64),
                    payload,
                    tags: Vec::new(),
                    options: Default::default(),
                })
                .collect();
            sink.submit(&items, summary).await?;
            from_tail += count;
            if count < page {
                break;
            }
        }
        redis::cmd("DEL")
            .arg(holding)
            .arg(batch_key)
            .query_async::<()>(con)
            .await
            .map_err(|e| redis_error(holding, e))?;
        summary.drained += from_tail as u64;
        Ok(())
    }
}

/// A new random batch id: 16 hex digits.
fn batch_id() -> Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("no random batch id: {e}")))?;
    Ok(hex(&bytes))
}

fn is_batch_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The list's length (LLEN).
async fn llen(con: &mut MultiplexedConnection, key: &str) -> Result<u64> {
    redis::cmd("LLEN")
        .arg(key)
        .query_async(con)
        .await
        .map_err(|e| redis_error(key, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal elements get distinct keys by occurrence; different ones by hash.
    #[test]
    fn list_item_keys_count_occurrences() {
        let mut seen = HashMap::new();
        let a0 = list_item("k", b"a".to_vec(), &mut seen);
        let b0 = list_item("k", b"b".to_vec(), &mut seen);
        let a1 = list_item("k", b"a".to_vec(), &mut seen);
        assert!(a0.key.ends_with(":0") && a1.key.ends_with(":1"));
        assert_eq!(a0.key[..a0.key.len() - 2], a1.key[..a1.key.len() - 2]);
        assert_ne!(a0.key, b0.key);
        assert!(a0.key.starts_with("list:k:"));
    }

    /// The cursor chains the hashes in order: the same elements give the same digest, any
    /// change (order, content, count) another; a malformed cursor reads as none.
    #[test]
    fn list_cursor_chains_in_order() {
        let digest = |pages: &[&[&str]]| {
            let mut t = Tail::new();
            for page in pages {
                // LRANGE gives a page head first: the tail's element last.
                let els: Vec<Vec<u8>> = page.iter().rev().map(|e| e.as_bytes().to_vec()).collect();
                t.items("k", els);
            }
            String::from_utf8(t.cursor()).unwrap()
        };
        let ab = digest(&[&["a", "b"]]);
        assert_eq!(ab, digest(&[&["a"], &["b"]]));
        assert_ne!(ab, digest(&[&["b", "a"]]));
        assert!(ab.starts_with("2 "));
        let (n, hex) = parse_cursor(ab.as_bytes()).unwrap();
        assert_eq!((n, hex.len()), (2, 64));
        assert!(parse_cursor(b"x y").is_none());
        assert!(is_batch_id(&batch_id().unwrap()));
    }
}
