//! Logs: `RAFTLINE_LOG` picks what is logged (`EnvFilter` directives, e.g.
//! `info,raftline::node=debug`; default `info,openraft=warn` for nodes, `warn` for the CLI),
//! `--log-format text|json` (or `RAFTLINE_LOG_FORMAT`) how: one line per event, JSON lines for a
//! log pipeline, always on stderr. Spans can also go to an OpenTelemetry collector over OTLP
//! (`crate::otlp`, cargo feature `otlp`, on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set).
//!
//! Repeated warnings and errors are rate-limited per call site: at most `LOG_BURST` in each
//! `LOG_WINDOW_MS`; the rest are counted, and one line per call site says how many were
//! suppressed once the window has passed. (A node whose peer is down used to log the same
//! ERROR from openraft hundreds of times a second.) Info and below are never suppressed.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata};
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Warnings and errors one call site may log per window.
pub const LOG_BURST: u32 = 5;
/// The rate-limit window.
pub const LOG_WINDOW_MS: u64 = 10_000;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

struct Window {
    start: Instant,
    seen: u32,
    suppressed: u64,
    target: &'static str,
    file: Option<&'static str>,
    line: Option<u32>,
}

static WINDOWS: LazyLock<Mutex<HashMap<Identifier, Window>>> = LazyLock::new(Default::default);

/// The per-call-site rate limit of warnings and errors.
struct RateLimit;

impl<S> Filter<S> for RateLimit {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_event() && *meta.level() <= Level::WARN {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::WARN {
            return true;
        }
        let now = Instant::now();
        let mut windows = WINDOWS.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.entry(meta.callsite()).or_insert(Window {
            start: now,
            seen: 0,
            suppressed: 0,
            target: meta.target(),
            file: meta.file(),
            line: meta.line(),
        });
        if now.duration_since(w.start) >= Duration::from_millis(LOG_WINDOW_MS) && w.suppressed == 0
        {
            w.start = now;
            w.seen = 0;
        }
        w.seen += 1;
        if w.seen <= LOG_BURST {
            return true;
        }
        w.suppressed += 1;
        false
    }
}

/// Installs the global subscriber (and, with the `otlp` feature and `OTEL_EXPORTER_OTLP_ENDPOINT`
/// set, span export: `crate::otlp`; call it inside the tokio runtime then).
pub fn init(default_filter: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("RAFTLINE_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_file(true)
            .with_line_number(true)
            .boxed(),
    };
    // One combined filter, and a list of layers rather than an `Option` layer: a per-layer
    // filter stacked on another answers "always" for a call site the inner one disables, and
    // tracing-subscriber's `None` layer answers "always" for every call site. Either made every
    // span and debug event of every dependency be built (openraft formats its whole metrics
    // summary for a debug line on each Raft state change): a quarter of a node's user CPU in the
    // W1 profile.
    let mut layers: Vec<Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>> =
        vec![fmt.with_filter(filter.and(RateLimit)).boxed()];
    #[cfg(feature = "otlp")]
    layers.extend(crate::otlp::layer());
    let _ = tracing_subscriber::registry().with(layers).try_init();
}

/// Every window, logs one line per call site whose lines were suppressed in a window that has
/// passed, and opens a new window for it. Runs until the process ends.
pub async fn report_suppressed() {
    let mut every = tokio::time::interval(Duration::from_millis(LOG_WINDOW_MS));
    loop {
        every.tick().await;
        let now = Instant::now();
        let due: Vec<(u64, &'static str, String)> = {
            let mut windows = WINDOWS.lock().unwrap_or_else(|e| e.into_inner());
            windows
                .values_mut()
                .filter(|w| {
                    w.suppressed > 0
                        && now.duration_since(w.start) >= Duration::from_millis(LOG_WINDOW_MS)
                })
                .map(|w| {
                    let n = std::mem::take(&mut w.suppressed);
                    w.start = now;
                    w.seen = 0;
                    let at = format!("{}:{}", w.file.unwrap_or("?"), w.line.unwrap_or(0));
                    (n, w.target, at)
                })
                .collect()
        };
        for (suppressed, target, at) in due {
            tracing::warn!(
                suppressed,
                from = target,
                at = %at,
                "repeated log lines suppressed (more than {LOG_BURST} in {} s from one place)",
                LOG_WINDOW_MS / 1000
            );
        }
    }
}
