//! `raftline import redis`: the command's flags, the `--from` source, the Redis connection
//! and the list reader (the Stream reader is [`stream`], the BullMQ one [`bullmq`]).
//!
//! A list is read with LRANGE in pages of `--batch` elements, never in one reply, from the
//! tail: with LPUSH producers and BRPOP workers the tail is the oldest element, so jobs are
//! submitted (and run) in the order the workers would have taken them, and the negative
//! indexes it reads by stay put while producers push at the head during the import. Elements have
//! no identity of their own and their indexes shift, so an element's idempotency key is
//! `list:KEY:<hash>:<n>`: the first 128 bits of the element's SHA-256, and `n`, how many
//! elements with the same content came before it (from the tail) in this read. A re-run after
//! the list changed recognises every element it imported before wherever it moved; elements
//! with identical content count as a multiset (three equal elements are three jobs, and a
//! fourth pushed later becomes one more; but when, between two runs, a worker pops one of them
//! and a producer pushes an equal one, the new one is taken for the old). What it cannot read
//! consistently is a list whose tail moves during the run (workers popping, or RPUSH
//! producers): an element can then be read twice (a duplicate job only if its content
//! repeats) or missed (a re-run picks it up). Stop the list's workers for the import;
//! `--drain` (LMOVE) is the missing answer.

pub mod bullmq;
pub mod stream;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use sha2::{Digest, Sha256};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::import::sink::{Sink, Summary};
use crate::import::Item;
use crate::machine::limits;

/// How long connecting to Redis may take before the source counts as unreachable.
const REDIS_CONNECT_MS_MAX: u64 = 5_000;
/// How long one reply may take: a page of `SUBMIT_BATCH_JOBS_MAX` elements of up to
/// `PAYLOAD_BYTES_MAX` is 256 MiB (the client's default of 500 ms would cut it off).
const REDIS_REPLY_MS_MAX: u64 = 60_000;

/// Bytes of a source key: the idempotency key adds at most 60 (`list:`, a 32-digit hash and
/// a count; `stream:` and an entry id) and must fit `IDEMPOTENCY_KEY_BYTES_MAX`.
const SOURCE_KEY_BYTES_MAX: usize = 160;
const _: () = assert!(SOURCE_KEY_BYTES_MAX + 60 <= limits::IDEMPOTENCY_KEY_BYTES_MAX);

/// `raftline import redis --url redis://HOST:PORT[/DB] --from SOURCE --queue Q`.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisImport {
    /// The Redis server, `redis://[USER:PASSWORD@]HOST:PORT[/DB]` (or `rediss://` for TLS).
    #[arg(long)]
    pub url: String,
    /// What to import: `list:KEY` (every element), `stream:KEY[:GROUP]` (every entry, or
    /// with a consumer group its pending entries and those after its last-delivered id), or
    /// `bullmq:QUEUE[@PREFIX]` (a BullMQ 5 queue's waiting, paused, prioritized and delayed
    /// jobs).
    #[arg(long)]
    pub from: String,
    /// The raftline queue the jobs go to (external jobs: a `raftline worker` gets the payload
    /// on stdin).
    #[arg(long)]
    pub queue: String,
    /// Read the source and print what would be submitted; write nothing anywhere.
    #[arg(long)]
    pub dry_run: bool,
    /// Items read per page and jobs per SubmitBatch call.
    #[arg(long, default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=limits::SUBMIT_BATCH_JOBS_MAX as i64))]
    pub batch: u32,
    /// `stream:KEY:GROUP` only: acknowledge (XACK) each entry once raftline has acknowledged
    /// its job; entries not yet delivered are first read with XREADGROUP as consumer
    /// `raftline-import`, so a crash in between leaves them pending for the next run.
    #[arg(long)]
    pub ack: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A parsed `--from`, resolved against the keys Redis holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `list:KEY`.
    List {
        /// The list's key.
        key: String,
    },
    /// `stream:KEY[:GROUP]`.
    Stream {
        /// The Stream's key.
        key: String,
        /// The consumer group whose position to start from.
        group: Option<String>,
    },
    /// `bullmq:QUEUE[@PREFIX]`.
    Bullmq(bullmq::Queue),
}

/// The `--from` value split into its kind and the rest, before Redis is asked anything.
fn source_kind(from: &str) -> Result<(&str, &str)> {
    let invalid = |message: String| Error::InvalidArgument {
        field: "from".into(),
        message,
    };
    let Some((kind, rest)) = from.split_once(':') else {
        return Err(invalid(format!(
            "{from:?} names no source kind: use list:KEY, stream:KEY[:GROUP] or \
             bullmq:QUEUE[@PREFIX]"
        )));
    };
    if rest.is_empty() {
        return Err(invalid(format!("{from:?} names no key")));
    }
    match kind {
        "list" | "stream" | "bullmq" => Ok((kind, rest)),
        _ => Err(invalid(format!(
            "{from:?}: unknown source kind {kind:?}; use list:KEY, stream:KEY[:GROUP] or \
             bullmq:QUEUE[@PREFIX]"
        ))),
    }
}

/// A Redis failure while reading `key`: unreachable (exit 1) or a refusal naming the key.
fn redis_error(key: &str, e: redis::RedisError) -> Error {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
        Error::unavailable(format!("redis: reading {key:?}: {e}"))
    } else {
        Error::FailedPrecondition(format!("redis: reading {key:?}: {e}"))
    }
}

/// Connects to the Redis at `url`, or says why not: a malformed URL is invalid input, a
/// server that does not answer within `REDIS_CONNECT_MS_MAX` (5 s) is unavailable.
pub async fn connect(url: &str) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(url).map_err(|e| Error::InvalidArgument {
        field: "url".into(),
        message: format!("{url:?} is no Redis URL: {e}"),
    })?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(REDIS_CONNECT_MS_MAX)))
        .set_response_timeout(Some(Duration::from_millis(REDIS_REPLY_MS_MAX)));
    let connecting = client.get_multiplexed_async_connection_with_config(&config);
    match tokio::time::timeout(Duration::from_millis(REDIS_CONNECT_MS_MAX), connecting).await {
        Ok(Ok(mut con)) => {
            // A lazy connection may only fail on its first command: ask one now.
            redis::cmd("PING")
                .query_async::<()>(&mut con)
                .await
                .map_err(|e| Error::unavailable(format!("redis at {url}: {e}")))?;
            Ok(con)
        }
        Ok(Err(e)) => Err(Error::unavailable(format!(
            "redis at {url} is unreachable: {e}"
        ))),
        Err(_) => Err(Error::unavailable(format!(
            "redis at {url} did not answer within {REDIS_CONNECT_MS_MAX} ms"
        ))),
    }
}

/// The Redis type of `key` (`none` when it does not exist).
async fn key_type(con: &mut MultiplexedConnection, key: &str) -> Result<String> {
    redis::cmd("TYPE")
        .arg(key)
        .query_async(con)
        .await
        .map_err(|e| redis_error(key, e))
}

/// Resolves `--from` against Redis: the key must exist with the right type. For
/// `stream:A:B`, the whole `A:B` is the key when it is a Stream (keys often hold colons),
/// else `A` is the key and `B` the group, which must exist.
pub async fn resolve(con: &mut MultiplexedConnection, from: &str) -> Result<Source> {
    let (kind, rest) = source_kind(from)?;
    let wrong = |key: &str, found: &str, want: &str| Error::InvalidArgument {
        field: "from".into(),
        message: if found == "none" {
            format!("no key {key:?} in Redis (--from {from})")
        } else {
            format!("key {key:?} is a {found}, not a {want} (--from {from})")
        },
    };
    if kind == "bullmq" {
        let queue = bullmq::Queue::parse(rest);
        queue.check(con).await?;
        return Ok(Source::Bullmq(queue));
    }
    let found = key_type(con, rest).await?;
    if kind == "list" {
        return match found.as_str() {
            "list" => Ok(Source::List { key: rest.into() }),
            other => Err(wrong(rest, other, "list")),
        };
    }
    if found == "stream" {
        return Ok(Source::Stream {
            key: rest.into(),
            group: None,
        });
    }
    let Some((key, group)) = rest.rsplit_once(':').filter(|_| found == "none") else {
        return Err(wrong(rest, &found, "stream"));
    };
    match key_type(con, key).await?.as_str() {
        "stream" => {}
        "none" => return Err(wrong(rest, "none", "stream")),
        other => return Err(wrong(key, other, "stream")),
    }
    stream::check_group(con, key, group).await?;
    Ok(Source::Stream {
        key: key.into(),
        group: Some(group.into()),
    })
}

/// Prints a progress line on stderr (when it is a terminal): items read, of how many, rate.
pub struct Progress {
    started: Instant,
    total: u64,
    shown: bool,
}

impl Progress {
    /// Progress over `total` items (0 when unknown).
    pub fn new(total: u64, json: bool) -> Progress {
        Progress {
            started: Instant::now(),
            total,
            shown: !json && std::io::stderr().is_terminal(),
        }
    }

    /// Shows that `read` items were read so far.
    pub fn show(&self, read: u64) {
        if !self.shown {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = read as f64 / secs;
        let eta = if self.total > read && rate > 0.0 {
            format!(", eta {:.0} s", (self.total - read) as f64 / rate)
        } else {
            String::new()
        };
        eprint!("\rimported {read}/{} ({rate:.0}/s{eta})   ", self.total);
    }

    /// Ends the progress line.
    pub fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

/// Prints, for a dry run, the items a page would submit.
fn print_dry(items: &[Item], json: bool) {
    if json {
        return;
    }
    for item in items {
        println!("would submit {} ({} bytes)", item.key, item.payload.len());
    }
}

/// Imports a list, page by page, into `sink`, counting into `summary`.
async fn import_list(
    con: &mut MultiplexedConnection,
    key: &str,
    sink: &Sink<'_>,
    json: bool,
    summary: &mut Summary,
) -> Result<()> {
    let total: u64 = redis::cmd("LLEN")
        .arg(key)
        .query_async(con)
        .await
        .map_err(|e| redis_error(key, e))?;
    let progress = Progress::new(total, json);
    let mut seen: HashMap<[u8; 16], u64> = HashMap::new();
    let page = sink.batch as i64;
    let mut from_tail: i64 = 0;
    loop {
        let elements: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(key)
            .arg(-(from_tail + page))
            .arg(-(from_tail + 1))
            .query_async(con)
            .await
            .map_err(|e| redis_error(key, e))?;
        if elements.is_empty() {
            break;
        }
        let count = elements.len() as i64;
        let items: Vec<Item> = elements
            .into_iter()
            .rev()
            .map(|element| list_item(key, element, &mut seen))
            .collect();
        if sink.dry_run {
            print_dry(&items, json);
        }
        sink.submit(&items, summary).await?;
        progress.show(summary.read);
        from_tail += count;
        if count < page {
            break;
        }
    }
    progress.finish();
    Ok(())
}

/// The item for one list element: key `list:KEY:<hash>:<n>` (see the module docs).
pub fn list_item(key: &str, element: Vec<u8>, seen: &mut HashMap<[u8; 16], u64>) -> Item {
    let digest = Sha256::digest(&element);
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&digest[..16]);
    let n = seen.entry(hash).or_insert(0);
    let occurrence = *n;
    *n += 1;
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    Item {
        key: format!("list:{key}:{hex}:{occurrence}"),
        payload: element,
        tags: Vec::new(),
        options: Default::default(),
    }
}

/// Runs an import with `client` and counts what it did into `summary` (also when it fails
/// part-way: what was counted was done). Everything is checked before anything is written:
/// the URL, the source kind, the key's existence and type, the group.
pub async fn import(client: &Client, args: &RedisImport, summary: &mut Summary) -> Result<()> {
    source_kind(&args.from)?;
    let mut con = connect(&args.url).await?;
    let source = resolve(&mut con, &args.from).await?;
    let (Source::List { key }
    | Source::Stream { key, .. }
    | Source::Bullmq(bullmq::Queue { name: key, .. })) = &source;
    if key.len() > SOURCE_KEY_BYTES_MAX {
        return Err(Error::InvalidArgument {
            field: "from".into(),
            message: format!(
                "key {key:?} is {} bytes; an idempotency key built from it must fit \
                 IDEMPOTENCY_KEY_BYTES_MAX, so at most {SOURCE_KEY_BYTES_MAX} bytes",
                key.len()
            ),
        });
    }
    if args.ack && !matches!(source, Source::Stream { group: Some(_), .. }) {
        return Err(Error::InvalidArgument {
            field: "ack".into(),
            message: format!(
                "--ack needs a consumer group: --from stream:KEY:GROUP, not {}",
                args.from
            ),
        });
    }
    summary.dry_run = args.dry_run;
    let sink = Sink {
        client,
        queue: args.queue.clone(),
        batch: args.batch as usize,
        dry_run: args.dry_run,
    };
    match &source {
        Source::List { key } => import_list(&mut con, key, &sink, args.json, summary).await,
        Source::Stream { key, group } => {
            let reader = stream::StreamReader {
                key,
                group: group.as_deref(),
                ack: args.ack && !args.dry_run,
                json: args.json,
            };
            reader.import(&mut con, &sink, summary).await
        }
        Source::Bullmq(queue) => {
            let reader = bullmq::BullReader {
                queue,
                json: args.json,
            };
            reader.import(&mut con, &sink, summary).await
        }
    }
}

/// `raftline import redis`: imports, then prints the summary (one JSON object with
/// `--json`). On a failure part-way the summary so far goes to stderr before the error.
pub async fn run(client: &Client, args: RedisImport) -> Result<()> {
    let mut summary = Summary::default();
    match import(client, &args, &mut summary).await {
        Ok(()) => {
            if args.json {
                let text = serde_json::to_string(&summary)
                    .map_err(|e| Error::Internal(format!("summary as JSON: {e}")))?;
                println!("{text}");
            } else {
                println!("{}", summary.line());
            }
            Ok(())
        }
        Err(e) => {
            if summary.read > 0 {
                eprintln!("stopped part-way: {}", summary.line());
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Source kinds are checked before Redis is asked anything.
    #[test]
    fn source_kind_refuses_unknown() {
        assert!(source_kind("list:jobs").is_ok());
        assert!(source_kind("stream:a:b").is_ok());
        assert!(source_kind("bullmq:q@p").is_ok());
        for bad in ["jobs", "list:", "set:x", "bullmq:"] {
            let e = source_kind(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
    }

    /// The flags parse as `raftline import redis` will take them; `--batch` is bounded by the
    /// server's batch limit.
    #[test]
    fn flags_parse_with_bounded_batch() {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(subcommand)]
            cmd: crate::import::ImportCmd,
        }
        let base = [
            "x",
            "redis",
            "--url",
            "redis://h:1",
            "--from",
            "list:k",
            "--queue",
            "q",
        ];
        let crate::import::ImportCmd::Redis(args) = <Wrap as clap::Parser>::parse_from(base).cmd;
        assert_eq!(
            (args.batch, args.dry_run, args.ack, args.json),
            (500, false, false, false)
        );
        let max = limits::SUBMIT_BATCH_JOBS_MAX.to_string();
        let over = (limits::SUBMIT_BATCH_JOBS_MAX + 1).to_string();
        let with = |n: &str| {
            let mut argv = base.to_vec();
            argv.extend(["--batch", n]);
            <Wrap as clap::Parser>::try_parse_from(argv).map(|_| ())
        };
        assert!(with(&max).is_ok());
        assert!(with(&over).is_err());
        assert!(with("0").is_err());
    }

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
}
