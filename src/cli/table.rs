//! Tables for people: every listing the CLI prints without `--json` goes through [`Table`], so
//! all of them look alike. A header row of upper-case names, then one row per item, columns
//! lined up, no borders; on a terminal the table fits the terminal's width (long cells wrap)
//! and states are coloured (see [`super::color`]); through a pipe the rows are plain and never
//! wrapped, one line each, so `grep` and `wc -l` still work (the header is the first line).
//!
//! Times are shown as RFC 3339 in the local zone with how long ago or ahead they are
//! (`2026-12-07T14:03:11+01:00 (3 min ago)`), durations as people say them (`1h 30m`), never
//! as raw milliseconds: `--json` keeps the milliseconds for scripts.
//!
//! A table is printed whole, once its rows are in: a listing read page by page is buffered
//! (rows are small; `--json`/`--jsonl` stream instead).

use std::fmt::Display;
use std::time::Duration;

use comfy_table::{presets, Attribute, Cell, CellAlignment, Color, ContentArrangement};

use super::color::{self, Tone};

/// The narrowest terminal a table is fitted to; on a narrower one, rows run past its edge.
const TERMINAL_WIDTH_MIN: u16 = 40;

/// One table: a header and rows.
pub struct Table {
    inner: comfy_table::Table,
    color: bool,
}

impl Table {
    /// A table with these column names, coloured when stdout is (see [`color::stdout`]).
    pub fn new(header: &[&str]) -> Table {
        Table::with_color(header, color::stdout())
    }

    /// A table coloured when `color`.
    pub fn with_color(header: &[&str], color: bool) -> Table {
        let mut inner = comfy_table::Table::new();
        inner.load_preset(presets::NOTHING);
        // Fit a terminal's width; not one too narrow to hold anything (a pseudo-terminal
        // without a size says 0), nor a pipe (no width: one line per row).
        if inner.width().is_some_and(|w| w >= TERMINAL_WIDTH_MIN) {
            inner.set_content_arrangement(ContentArrangement::Dynamic);
        }
        if color {
            // Also through a pipe under `--color always`.
            inner.enforce_styling();
        }
        inner.set_header(header.iter().map(|h| {
            let cell = Cell::new(h);
            if color {
                cell.add_attribute(Attribute::Bold)
            } else {
                cell
            }
        }));
        for column in inner.column_iter_mut() {
            column.set_padding((0, 2));
        }
        Table { inner, color }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.inner.add_row(cells);
    }

    /// A cell holding a state word, coloured by its tone (see [`color::tone`]).
    pub fn state(&self, state: &str) -> Cell {
        let cell = Cell::new(state);
        match color::tone(state).filter(|_| self.color) {
            Some(Tone::Good) => cell.fg(Color::Green),
            Some(Tone::Bad) => cell.fg(Color::Red),
            Some(Tone::Busy) => cell.fg(Color::Cyan),
            Some(Tone::Held) => cell.fg(Color::Yellow),
            Some(Tone::Quiet) => cell.add_attribute(Attribute::Dim),
            None => cell,
        }
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.inner.row_count()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The table as text (no trailing spaces, no final newline).
    pub fn render(&self) -> String {
        self.inner.trim_fmt()
    }

    /// Prints the table on stdout.
    pub fn print(&self) {
        println!("{}", self.render());
    }
}

/// A text cell.
pub fn text(value: impl Display) -> Cell {
    Cell::new(value)
}

/// A number cell, aligned right.
pub fn num(value: impl Display) -> Cell {
    Cell::new(value).set_alignment(CellAlignment::Right)
}

/// Now, in ms since the epoch, for relative times.
fn now_ms() -> u64 {
    crate::raft::wall_clock_ms()
}

/// `ms` (since the epoch) as RFC 3339 in the local zone, with how far it is from now:
/// `2026-12-07T14:03:11Z (3 min ago)`.
pub fn time(ms: u64) -> String {
    time_at(ms, now_ms())
}

/// [`time`], or `-` for none (or 0, which the API sends for "not set").
pub fn time_opt(ms: Option<u64>) -> String {
    match ms {
        Some(ms) if ms > 0 => time(ms),
        _ => "-".into(),
    }
}

/// [`time`] with `now_ms` given.
pub fn time_at(ms: u64, now_ms: u64) -> String {
    use chrono::TimeZone as _;
    let local = i64::try_from(ms)
        .ok()
        .and_then(|ms| chrono::Local.timestamp_millis_opt(ms).single());
    match local {
        Some(t) => format!(
            "{} ({})",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            relative(ms, now_ms)
        ),
        None => ms.to_string(),
    }
}

/// How far `ms` is from `now_ms`, in the largest whole unit: `now`, `12 s ago`, `3 min ago`,
/// `in 2 h`, `5 d ago`.
pub fn relative(ms: u64, now_ms: u64) -> String {
    let (gap, ahead) = if ms >= now_ms {
        (ms - now_ms, true)
    } else {
        (now_ms - ms, false)
    };
    let s = gap / 1_000;
    let amount = match s {
        0 => return "now".into(),
        1..=59 => format!("{s} s"),
        60..=3_599 => format!("{} min", s / 60),
        3_600..=86_399 => format!("{} h", s / 3_600),
        _ => format!("{} d", s / 86_400),
    };
    if ahead {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A duration for people (`1h 30m`, `2s 500ms`): whole seconds from a minute up.
pub fn duration(ms: u64) -> String {
    let ms = if ms >= 60_000 { ms / 1_000 * 1_000 } else { ms };
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative times round down to the largest unit, both ways; durations read as people
    /// write them.
    #[test]
    fn times_read_as_people_say_them() {
        let now = 1_800_000_000_000;
        assert_eq!(relative(now, now), "now");
        assert_eq!(relative(now - 12_500, now), "12 s ago");
        assert_eq!(relative(now - 3 * 60_000 - 5, now), "3 min ago");
        assert_eq!(relative(now + 2 * 3_600_000 + 99, now), "in 2 h");
        assert_eq!(relative(now - 5 * 86_400_000, now), "5 d ago");
        assert!(time_at(now - 60_000, now).ends_with(" (1 min ago)"));
        let shown = time_at(now, now);
        let rfc3339 = shown.strip_suffix(" (now)").expect("relative part");
        let back = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("RFC 3339");
        assert_eq!(back.timestamp_millis(), now as i64, "{shown}");
        assert_eq!(duration(5_400_000), "1h 30m");
        assert_eq!(duration(2_500), "2s 500ms");
        assert_eq!(duration(61_234), "1m 1s");
    }

    /// A table has its header first, lines its columns up, and has no borders nor trailing
    /// spaces.
    #[test]
    fn tables_have_a_header_and_aligned_columns() {
        let mut t = Table::new(&["ID", "STATE", "COMMAND"]);
        t.row(vec![num(7), t.state("succeeded"), text("echo hi")]);
        t.row(vec![num(1234), t.state("dead"), text("false")]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ID"), "{text}");
        let col = lines[0].find("STATE").unwrap();
        assert_eq!(lines[1].find("succeeded"), Some(col), "{text}");
        assert_eq!(lines[2].find("dead"), Some(col), "{text}");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{text}");
        assert!(!text.contains('|') && !text.contains('+'), "{text}");
    }
}
