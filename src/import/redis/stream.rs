//! The Stream reader of `raftline import redis --from stream:KEY[:GROUP]`.
//!
//! An entry's idempotency key is `stream:KEY:ENTRYID` (entry ids never change) and its
//! payload the entry's fields as a JSON object of strings (a field named twice keeps its last
//! value; an entry with a field that is not UTF-8 is skipped and counted).
//!
//! - Without a group: every entry, XRANGE in pages of `--batch`.
//! - With a group, read-only: first the group's pending entries (XPENDING, any consumer:
//!   delivered, never acknowledged), tagged `redis-pending`, then the entries after the
//!   group's last-delivered id (every entry with `--all`). Nothing in Redis changes.
//! - With a group and `--ack`: pending entries as above, each XACKed once raftline has
//!   acknowledged its job; then the undelivered entries are read with XREADGROUP as consumer
//!   [`CONSUMER`] (which makes them pending to it), submitted, and XACKed. A crash between
//!   the read and the XACK leaves them pending, so the next run imports them (the cluster
//!   answers `duplicate`) and acknowledges them then. An XACK takes a pending entry from a
//!   consumer that may still be working on it: stop the group's consumers first.
//!
//! The cursor (`import/cursor.rs`) is the id of the last entry imported, put after each page
//! raftline acknowledged: a re-run without a group reads after it (XRANGE `(ID`), and with a
//! group (read-only) after the later of it and the group's last-delivered id; the pending
//! entries are read again each run (they are few, and answered `duplicate`). With `--ack` the
//! group itself is the position (its last-delivered id and its pending entries), so no cursor
//! is put. `--continuous` then waits for new entries with XREAD BLOCK (XREADGROUP BLOCK with
//! `--ack`), `BLOCK_MS` at a time, until the import is stopped.
//! A cursor trusts entry ids to grow: entries added later with ids below it (explicit ids, a
//! Stream deleted and made again) are not read unless `--from-start` is given.

use redis::aio::MultiplexedConnection;

use super::{print_dry, redis_error, Progress};
use crate::error::{Error, Result};
use crate::import::cursor::Position;
use crate::import::sink::{Sink, Summary};
use crate::import::{Item, Stop};

/// How long one blocking read of `--continuous` waits before it looks for a stop.
pub const BLOCK_MS: u64 = 1_000;

/// The consumer name `--ack` reads undelivered entries as.
pub const CONSUMER: &str = "raftline-import";

/// The tag of a job made from an entry that was pending in its group.
pub const PENDING_TAG: &str = "redis-pending";

/// One Stream entry as Redis sends it: its id and its fields, name then value.
type Entry = (String, Vec<Vec<u8>>);

/// An entry id as numbers, for comparing (`0-0` for one that does not parse).
fn id_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// The later of two entry ids.
fn later(a: String, b: Option<String>) -> String {
    match b {
        Some(b) if id_order(&b) > id_order(&a) => b,
        _ => a,
    }
}

/// The group's last-delivered id, or an error naming the key and group when it has none.
pub async fn check_group(
    con: &mut MultiplexedConnection,
    key: &str,
    group: &str,
) -> Result<String> {
    let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query_async(con)
        .await
        .map_err(|e| redis_error(key, e))?;
    let field = |g: &std::collections::HashMap<String, redis::Value>, name: &str| {
        g.get(name)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
    };
    groups
        .iter()
        .find(|g| field(g, "name").as_deref() == Some(group))
        .and_then(|g| field(g, "last-delivered-id"))
        .ok_or_else(|| Error::InvalidArgument {
            field: "from".into(),
            message: format!("stream {key:?} has no consumer group {group:?}"),
        })
}

/// The item for one entry, or why it is skipped.
pub fn entry_item(
    key: &str,
    (id, fields): Entry,
    pending: bool,
) -> std::result::Result<Item, &'static str> {
    if fields.len() % 2 != 0 {
        return Err("stream entry with an odd field list");
    }
    let mut map = serde_json::Map::new();
    for pair in fields.chunks(2) {
        let (Ok(name), Ok(value)) = (std::str::from_utf8(&pair[0]), std::str::from_utf8(&pair[1]))
        else {
            return Err("stream entry with a field that is not UTF-8");
        };
        map.insert(
            name.to_string(),
            serde_json::Value::String(value.to_string()),
        );
    }
    let payload = serde_json::to_vec(&serde_json::Value::Object(map))
        .map_err(|_| "stream entry that is not JSON-encodable")?;
    Ok(Item {
        key: format!("stream:{key}:{id}"),
        payload,
        tags: if pending {
            vec![PENDING_TAG.to_string()]
        } else {
            Vec::new()
        },
        options: Default::default(),
    })
}

/// Reads one Stream (and maybe one group of it) into a sink.
pub struct StreamReader<'a> {
    /// The Stream's key.
    pub key: &'a str,
    /// The consumer group, if any.
    pub group: Option<&'a str>,
    /// XACK what raftline acknowledged (a group, not a dry run).
    pub ack: bool,
    /// `--all` (a group, read-only): every entry after the stored position, not only those
    /// after the group's last-delivered id.
    pub all: bool,
    /// `--json`: no per-item lines in a dry run, no progress line.
    pub json: bool,
    /// `--continuous`: keep reading until `stop`.
    pub continuous: bool,
    /// When to stop.
    pub stop: &'a Stop,
}

impl StreamReader<'_> {
    /// Imports the Stream as the module docs say.
    pub async fn import(
        &self,
        con: &mut MultiplexedConnection,
        sink: &Sink<'_>,
        position: &mut Position<'_>,
        stored: Option<Vec<u8>>,
        summary: &mut Summary,
    ) -> Result<()> {
        let stored = stored.and_then(|v| String::from_utf8(v).ok());
        let total: u64 = redis::cmd("XLEN")
            .arg(self.key)
            .query_async(con)
            .await
            .map_err(|e| redis_error(self.key, e))?;
        let progress = Progress::new(total, self.json);
        match self.group {
            None => {
                let after = stored.unwrap_or_else(|| "0-0".into());
                self.range(con, after, sink, position, summary, &progress)
                    .await?
            }
            Some(group) => {
                self.pending(con, group, sink, summary, &progress).await?;
                if self.ack {
                    self.claim(con, group, sink, summary, &progress).await?;
                } else {
                    let last = check_group(con, self.key, group).await?;
                    let after = if self.all {
                        stored.unwrap_or_else(|| "0-0".into())
                    } else {
                        later(last, stored)
                    };
                    self.range(con, after, sink, position, summary, &progress)
                        .await?;
                }
            }
        }
        progress.finish();
        Ok(())
    }

    /// Submits one page of entries, XACKs the acknowledged ones when asked, and returns the
    /// id to continue after.
    async fn page(
        &self,
        con: &mut MultiplexedConnection,
        entries: Vec<Entry>,
        pending: bool,
        sink: &Sink<'_>,
        summary: &mut Summary,
    ) -> Result<Option<String>> {
        let last = entries.last().map(|(id, _)| id.clone());
        let mut items = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry_item(self.key, entry, pending) {
                Ok(item) => items.push(item),
                Err(reason) => {
                    summary.read += 1;
                    summary.skip(reason);
                }
            }
        }
        if sink.dry_run {
            print_dry(&items, self.json);
        }
        let accepted = sink.submit(&items, summary).await?;
        if let (true, Some(group)) = (self.ack && !accepted.is_empty(), self.group) {
            let prefix = format!("stream:{}:", self.key);
            let ids: Vec<&str> = accepted
                .iter()
                .map(|&i| &items[i].key[prefix.len()..])
                .collect();
            let acked: u64 = redis::cmd("XACK")
                .arg(self.key)
                .arg(group)
                .arg(&ids)
                .query_async(con)
                .await
                .map_err(|e| redis_error(self.key, e))?;
            summary.acked += acked;
        }
        Ok(last)
    }

    /// Every entry after the id `after` (`0-0`: all), XRANGE in pages, then with
    /// `--continuous` XREAD BLOCK until the stop; the cursor is put after each page.
    async fn range(
        &self,
        con: &mut MultiplexedConnection,
        mut after: String,
        sink: &Sink<'_>,
        position: &mut Position<'_>,
        summary: &mut Summary,
        progress: &Progress,
    ) -> Result<()> {
        let mut caught_up = false;
        while !self.stop.is_set() {
            let entries = if caught_up {
                self.read_new(con, &after, sink.batch).await?
            } else {
                redis::cmd("XRANGE")
                    .arg(self.key)
                    .arg(format!("({after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(sink.batch)
                    .query_async(con)
                    .await
                    .map_err(|e| redis_error(self.key, e))?
            };
            let full = entries.len() >= sink.batch;
            if let Some(last) = self.page(con, entries, false, sink, summary).await? {
                position.save(last.clone().into_bytes()).await?;
                after = last;
                progress.show(summary.read);
            }
            if !full && !caught_up {
                if !self.continuous {
                    return Ok(());
                }
                caught_up = true;
            }
        }
        Ok(())
    }

    /// `--continuous`: entries after `after`, waiting up to `BLOCK_MS` for one (XREAD).
    async fn read_new(
        &self,
        con: &mut MultiplexedConnection,
        after: &str,
        count: usize,
    ) -> Result<Vec<Entry>> {
        let reply: Option<Vec<(String, Vec<Entry>)>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(self.key)
            .arg(after)
            .query_async(con)
            .await
            .map_err(|e| redis_error(self.key, e))?;
        Ok(reply
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .collect())
    }

    /// The group's pending entries (any consumer), XPENDING in pages, each entry read by id.
    async fn pending(
        &self,
        con: &mut MultiplexedConnection,
        group: &str,
        sink: &Sink<'_>,
        summary: &mut Summary,
        progress: &Progress,
    ) -> Result<()> {
        let mut start = "-".to_string();
        loop {
            // id, consumer, idle ms, deliveries
            let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
                .arg(self.key)
                .arg(group)
                .arg(&start)
                .arg("+")
                .arg(sink.batch)
                .query_async(con)
                .await
                .map_err(|e| redis_error(self.key, e))?;
            let Some(last) = pending.last().map(|p| p.0.clone()) else {
                return Ok(());
            };
            let full = pending.len() >= sink.batch;
            let mut pipe = redis::pipe();
            for (id, ..) in &pending {
                pipe.cmd("XRANGE").arg(self.key).arg(id).arg(id);
            }
            let found: Vec<Vec<Entry>> = pipe
                .query_async(con)
                .await
                .map_err(|e| redis_error(self.key, e))?;
            let mut entries = Vec::with_capacity(found.len());
            for one in found {
                match one.into_iter().next() {
                    Some(entry) => entries.push(entry),
                    None => {
                        summary.read += 1;
                        summary.skip("pending entry deleted from the stream");
                    }
                }
            }
            self.page(con, entries, true, sink, summary).await?;
            progress.show(summary.read);
            if !full {
                return Ok(());
            }
            start = format!("({last}");
        }
    }

    /// `--ack`: the entries not yet delivered to the group, read with XREADGROUP as
    /// [`CONSUMER`], submitted, acknowledged.
    async fn claim(
        &self,
        con: &mut MultiplexedConnection,
        group: &str,
        sink: &Sink<'_>,
        summary: &mut Summary,
        progress: &Progress,
    ) -> Result<()> {
        let mut caught_up = false;
        while !self.stop.is_set() {
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP")
                .arg(group)
                .arg(CONSUMER)
                .arg("COUNT")
                .arg(sink.batch);
            if caught_up {
                read.arg("BLOCK").arg(BLOCK_MS);
            }
            let reply: Option<Vec<(String, Vec<Entry>)>> = read
                .arg("STREAMS")
                .arg(self.key)
                .arg(">")
                .query_async(con)
                .await
                .map_err(|e| redis_error(self.key, e))?;
            let entries: Vec<Entry> = reply
                .into_iter()
                .flatten()
                .flat_map(|(_, entries)| entries)
                .collect();
            let full = entries.len() >= sink.batch;
            self.page(con, entries, false, sink, summary).await?;
            progress.show(summary.read);
            if !full && !caught_up {
                if !self.continuous {
                    return Ok(());
                }
                caught_up = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry's fields become a JSON object; a non-UTF-8 field skips the entry.
    #[test]
    fn entry_item_maps_fields() {
        let entry = ("1-0".to_string(), vec![b"a".to_vec(), b"1".to_vec()]);
        let item = entry_item("s", entry, true).unwrap();
        assert_eq!(item.key, "stream:s:1-0");
        assert_eq!(item.payload, br#"{"a":"1"}"#);
        assert_eq!(item.tags, vec![PENDING_TAG.to_string()]);
        let bad = ("2-0".to_string(), vec![b"a".to_vec(), vec![0xff]]);
        assert!(entry_item("s", bad, false).is_err());
    }
}
