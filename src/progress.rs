//! Progress bars on stderr for long commands: `dag submit --wait` (steps done of all),
//! `snapshot save` (bytes received) and `raftline import` (items read). One type,
//! [`Progress`], over indicatif's bar, so every command's bar looks and behaves the same.
//!
//! A bar is for a person watching: it is drawn only when stderr is a terminal and the command
//! was not asked for `--json`; otherwise it is hidden and every call on it does nothing, so a
//! script's stderr holds only what it would have held without one (errors, one-line notes).
//! It lives at the top of the crate, not under `cli/`, because the importer (`import/`) uses it
//! and must not depend on the command line.
//!
//! CAVEATS (not implemented): no colour in the bar itself (it would need the CLI's colour
//! choice, which lives in `cli/`); one bar at a time (no multi-bar for parallel work).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a bar is redrawn at most, and how often a spinner turns.
const TICK: Duration = Duration::from_millis(100);

/// A progress bar on stderr, hidden off a terminal and under `--json`.
pub struct Progress {
    bar: ProgressBar,
    unit: Unit,
}

/// What a bar counts.
#[derive(Clone, Copy)]
enum Unit {
    /// Items read (an import).
    Items,
    /// Bytes received.
    Bytes,
    /// Workflow steps ended.
    Steps,
}

/// Whether a bar is drawn: stderr is a terminal and no JSON was asked for.
pub fn shown(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

impl Progress {
    /// Progress over `total` items (0 when unknown): `imported 120/500 (40/s, eta 9s)`.
    pub fn new(total: u64, json: bool) -> Progress {
        Progress::of(Unit::Items, "imported", total, shown(json))
    }

    /// Progress over `total` bytes (0 until known, see [`Progress::set_total`]).
    pub fn bytes(label: &'static str, total: u64, json: bool) -> Progress {
        Progress::of(Unit::Bytes, label, total, shown(json))
    }

    /// Progress over `total` workflow steps.
    pub fn steps(label: &'static str, total: u64, json: bool) -> Progress {
        Progress::of(Unit::Steps, label, total, shown(json))
    }

    fn of(unit: Unit, label: &'static str, total: u64, shown: bool) -> Progress {
        let bar = if shown {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(style(unit, total));
        bar.set_prefix(label);
        if total == 0 {
            bar.enable_steady_tick(TICK);
        }
        Progress { bar, unit }
    }

    /// Sets the total once it is known (a bar started at 0 shows a spinner until then).
    pub fn set_total(&self, total: u64) {
        self.bar.disable_steady_tick();
        self.bar.set_style(style(self.unit, total));
        self.bar.set_length(total);
    }

    /// The total (0 while unknown).
    pub fn total(&self) -> u64 {
        self.bar.length().unwrap_or(0)
    }

    /// Shows that `done` were read so far.
    pub fn show(&self, done: u64) {
        self.bar.set_position(done);
    }

    /// Prints a line above the bar (or on stderr as is when the bar is hidden).
    pub fn note(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Whether the bar is hidden (off a terminal, or `--json`).
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Ends the bar, leaving its last state on screen.
    pub fn finish(&self) {
        self.bar.finish();
    }

    /// Ends the bar and removes it from the screen (the command failed, or its result says
    /// it all).
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// The look of a bar: a spinner while the total is unknown, then a bar with counts, rate and
/// time left.
fn style(unit: Unit, total: u64) -> ProgressStyle {
    ProgressStyle::with_template(template(unit, total))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>-")
}

/// The template of [`style`].
fn template(unit: Unit, total: u64) -> &'static str {
    match (unit, total) {
        (Unit::Bytes, 0) => "{prefix} {spinner} {binary_bytes} ({binary_bytes_per_sec})",
        (_, 0) => "{prefix} {spinner} {human_pos} ({per_sec})",
        (Unit::Bytes, _) => {
            "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} \
             ({binary_bytes_per_sec}, eta {eta})"
        }
        (Unit::Items, _) => "{prefix} [{bar:30}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
        (Unit::Steps, _) => "{prefix} [{bar:30}] {pos}/{len} steps ({elapsed})",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--json` hides every bar, and a hidden bar takes every call without drawing; each
    /// template parses (a bad one would silently fall back to the default bar).
    #[test]
    fn progress_hidden_under_json_and_templates_parse() {
        for p in [
            Progress::new(10, true),
            Progress::bytes("saving", 0, true),
            Progress::steps("steps", 4, true),
        ] {
            assert!(p.is_hidden());
            p.show(3);
            p.set_total(20);
            p.show(20);
            p.finish();
        }
        for unit in [Unit::Items, Unit::Bytes, Unit::Steps] {
            for total in [0, 10] {
                let t = template(unit, total);
                assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
            }
        }
    }
}
