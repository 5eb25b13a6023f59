//! `raftline import redis`: the command's flags, the `--from` source, the Redis connection,
//! and which reader runs: lists ([`list`], read or `--drain`ed), Streams ([`stream`]) and
//! BullMQ queues ([`bullmq`]). Lists and Streams keep their position in a raftline cursor
//! named `import:redis:HOST:PORT/DB:SOURCE` (`import/cursor.rs`), so a re-run continues where
//! the last one stopped (`--from-start` ignores it); idempotency keys remain what prevents
//! doubles. `--continuous` keeps importing what arrives until SIGINT or SIGTERM, then prints
//! the summary and exits 0. Reads are paged (LRANGE, XRANGE, XREADGROUP with COUNT), never
//! one huge reply and never KEYS.
pub mod bullmq;
pub mod list;
pub mod stream;

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::import::cursor::{escape, Position};
use crate::import::sink::{Sink, Summary};
use crate::import::template::Template;
use crate::import::{Item, Stop};
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
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RedisImport {
    /// The Redis server, `redis://[USER:PASSWORD@]HOST:PORT[/DB]` (or `rediss://` for TLS).
    #[arg(long)]
    pub url: String,
    /// What to import: `list:KEY` (every element), `stream:KEY[:GROUP]` (every entry, or
    /// with a consumer group its pending entries and those after its last-delivered id), or
    /// `bullmq:QUEUE[@PREFIX]` (a BullMQ 5 queue's waiting, paused, prioritized and delayed
    /// jobs; its failed jobs become dead letters and its repeatables schedules).
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
    /// `stream:KEY:GROUP` only, read-only: every entry of the Stream (after the stored
    /// position, if any), not only those after the group's last-delivered id; the group's
    /// pending entries are still read first and tagged `redis-pending`.
    #[arg(long)]
    pub all: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Lists and Streams: ignore the position stored in the cluster by an earlier run and
    /// read the source from its start (what was imported is answered `duplicate`).
    #[arg(long)]
    pub from_start: bool,
    /// `list:KEY` only: move each element out of the list (LMOVE to the holding list
    /// `KEY:raftline-importing`) and delete it there once raftline acknowledged its job; a
    /// holding list left by a crashed run is imported first. Safe while producers and
    /// workers run.
    #[arg(long)]
    pub drain: bool,
    /// Lists and Streams: make each item a shell job running this command instead of an
    /// external job with a payload. Split into words once, like a shell; `{}` is the item
    /// (an element, or a Stream entry's fields as JSON) and `{FIELD}` one field of it, each
    /// replaced inside its word, never split again. E.g. `mail-one --to {to} --id {}`.
    #[arg(long, value_name = "TEMPLATE")]
    pub command_template: Option<String>,
    /// Lists and Streams: keep importing new items until SIGINT or SIGTERM, then print the
    /// summary and exit 0 (Streams block in XREAD/XREADGROUP, drained lists in BLMOVE, read
    /// lists are polled every second).
    #[arg(long)]
    pub continuous: bool,
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

/// A progress bar on stderr (when it is a terminal, without `--json`): items read, of how
/// many, rate and time left (see [`crate::progress`]).
pub use crate::progress::Progress;

/// Prints, for a dry run, the items a page would submit.
pub(crate) fn print_dry(items: &[Item], json: bool) {
    if json {
        return;
    }
    for item in items {
        println!("would submit {} ({} bytes)", item.key, item.payload.len());
    }
}

/// The flags that need a kind of source, checked against the one `--from` names.
fn check_flags(args: &RedisImport, source: &Source) -> Result<()> {
    let invalid = |field: &str, message: String| {
        Err(Error::InvalidArgument {
            field: field.into(),
            message,
        })
    };
    let from = &args.from;
    if args.ack && !matches!(source, Source::Stream { group: Some(_), .. }) {
        return invalid(
            "ack",
            format!("--ack needs a consumer group: --from stream:KEY:GROUP, not {from}"),
        );
    }
    if args.all && !matches!(source, Source::Stream { group: Some(_), .. }) {
        return invalid(
            "all",
            format!("--all needs a consumer group: --from stream:KEY:GROUP, not {from}"),
        );
    }
    if args.all && args.ack {
        return invalid(
            "all",
            "--all reads past the group and --ack reads through it: they exclude each other".into(),
        );
    }
    if args.drain && !matches!(source, Source::List { .. }) {
        return invalid(
            "drain",
            format!("--drain needs --from list:KEY, not {from}"),
        );
    }
    if let Source::Bullmq(_) = source {
        if args.command_template.is_some() {
            return invalid(
                "command-template",
                format!("--command-template needs a list or a Stream, not {from}"),
            );
        }
        if args.continuous {
            return invalid(
                "continuous",
                format!("--continuous needs a list or a Stream, not {from}"),
            );
        }
    }
    if args.continuous && args.dry_run {
        return invalid(
            "continuous",
            "--continuous and --dry-run exclude each other".into(),
        );
    }
    Ok(())
}

/// The host, port and database of a Redis URL, without the scheme and any credentials:
/// `127.0.0.1:6379/0` (6379 and 0 when the URL names none).
pub fn server_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port_given = host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
    let db = path
        .split(['?', '#'])
        .next()
        .filter(|d| !d.is_empty())
        .unwrap_or("0");
    if port_given {
        format!("{host}/{db}")
    } else {
        format!("{host}:6379/{db}")
    }
}

/// The name of the cursor of `source` at `url` (`import/cursor.rs`).
pub fn cursor_name(url: &str, source: &Source) -> String {
    let what = match source {
        Source::List { key } => format!("list:{key}"),
        Source::Stream { key, group: None } => format!("stream:{key}"),
        Source::Stream {
            key,
            group: Some(g),
        } => format!("stream:{key}:{g}"),
        Source::Bullmq(q) => format!("bullmq:{}", q.name),
    };
    format!(
        "import:redis:{}:{}",
        escape(&server_name(url)),
        escape(&what)
    )
}

/// Runs an import with `client` and counts what it did into `summary` (also when it fails
/// part-way: what was counted was done). A `--continuous` import runs until `stop`.
/// Everything is checked before anything is written: the URL, the source kind, the key's
/// existence and type, the group, the flags against the source, the template.
pub async fn import_until(
    client: &Client,
    args: &RedisImport,
    stop: &Stop,
    summary: &mut Summary,
) -> Result<()> {
    source_kind(&args.from)?;
    let template = args
        .command_template
        .as_deref()
        .map(Template::parse)
        .transpose()?;
    let mut con = connect(&args.url).await?;
    let source = match source_kind(&args.from)? {
        // A drained list is gone once empty (Redis deletes empty lists), and a holding list
        // may be all that is left: a missing key is an empty list here.
        ("list", key) if args.drain && key_type(&mut con, key).await? == "none" => {
            Source::List { key: key.into() }
        }
        _ => resolve(&mut con, &args.from).await?,
    };
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
    check_flags(args, &source)?;
    summary.dry_run = args.dry_run;
    let sink = Sink {
        client,
        queue: args.queue.clone(),
        batch: args.batch as usize,
        dry_run: args.dry_run,
        template,
    };
    let name = cursor_name(&args.url, &source);
    match &source {
        Source::List { key } => {
            let reader = list::ListReader {
                key,
                json: args.json,
                continuous: args.continuous,
                stop,
            };
            if args.drain && !args.dry_run {
                return reader.drain(&mut con, &sink, summary).await;
            }
            let (mut position, stored) =
                Position::load(client, name, args.from_start, args.dry_run).await?;
            reader
                .read(&mut con, &sink, &mut position, stored, summary)
                .await
        }
        Source::Stream { key, group } => {
            let reader = stream::StreamReader {
                key,
                group: group.as_deref(),
                ack: args.ack && !args.dry_run,
                all: args.all,
                json: args.json,
                continuous: args.continuous,
                stop,
            };
            let (mut position, stored) =
                Position::load(client, name, args.from_start, args.dry_run).await?;
            reader
                .import(&mut con, &sink, &mut position, stored, summary)
                .await
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

/// [`import_until`] without a stop: a one-shot import.
pub async fn import(client: &Client, args: &RedisImport, summary: &mut Summary) -> Result<()> {
    import_until(client, args, &Stop::never(), summary).await
}

/// `raftline import redis`: imports, then prints the summary (one JSON object with
/// `--json`). On a failure part-way the summary so far goes to stderr before the error.
pub async fn run(client: &Client, args: RedisImport) -> Result<()> {
    let mut summary = Summary::default();
    let stop = if args.continuous {
        Stop::on_signal()?
    } else {
        Stop::never()
    };
    match import_until(client, &args, &stop, &mut summary).await {
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

    /// A cursor's name has the server and the source, never the URL's credentials.
    #[test]
    fn cursor_name_leaves_out_credentials() {
        assert_eq!(server_name("redis://u:p@h:7/3"), "h:7/3");
        assert_eq!(server_name("redis://h"), "h:6379/0");
        assert_eq!(server_name("rediss://:pw@[::1]:6380"), "[::1]:6380/0");
        let list = Source::List { key: "a b".into() };
        assert_eq!(
            cursor_name("redis://x:s3cret@h:7/1", &list),
            "import:redis:h:7/1:list:a%20b"
        );
    }
}
