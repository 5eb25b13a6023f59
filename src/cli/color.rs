//! Whether the CLI colours what it prints, and in which colour a state is shown.
//!
//! Colour is for people at a terminal: with `--color auto` (the default) stdout is coloured
//! only when it is a terminal and `NO_COLOR` is unset or empty (<https://no-color.org>), and
//! the same holds for stderr on its own. `--color always` colours even through a pipe (and
//! wins over `NO_COLOR`, as a flag given on the command line should), `--color never` never
//! does. `--json` output is never coloured: nothing here is used on that path.
//!
//! A state's colour says how it went: green for done well (`succeeded`), red for done badly
//! (`failed`, `dead`, an unreachable node), cyan for under way (`running`, `leased`), yellow
//! for held or waiting (`paused`, `waiting`, `scheduled`), dim for set aside (`cancelled`,
//! `skipped`). Styles are clap's own type ([`anstyle`]) for text, and comfy-table's colours
//! for table cells (see [`super::table`]).

use std::io::IsTerminal;
use std::sync::OnceLock;

use anstyle::{AnsiColor, Effects, Style};

/// `--color`: when to colour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    /// Always, even through a pipe.
    Always,
    /// Never.
    Never,
}

static CHOICE: OnceLock<ColorChoice> = OnceLock::new();

/// Sets the choice of the command line (once, at start; later calls are ignored).
pub fn set(choice: ColorChoice) {
    let _ = CHOICE.set(choice);
}

fn choice() -> ColorChoice {
    CHOICE.get().copied().unwrap_or_default()
}

/// Whether `NO_COLOR` asks for no colour: set to anything but the empty string.
fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The rule itself: `choice`, with `NO_COLOR` set or not, on a terminal or not.
pub fn decide(choice: ColorChoice, no_color: bool, terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !no_color && terminal,
    }
}

/// Whether to colour stdout.
pub fn stdout() -> bool {
    decide(choice(), no_color_env(), std::io::stdout().is_terminal())
}

/// Whether to colour stderr.
pub fn stderr() -> bool {
    decide(choice(), no_color_env(), std::io::stderr().is_terminal())
}

/// How a state went, which picks its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Ended well: green.
    Good,
    /// Ended badly or broken: red.
    Bad,
    /// Under way: cyan.
    Busy,
    /// Held or waiting: yellow.
    Held,
    /// Set aside: dim.
    Quiet,
}

/// The tone of a state word (job, workflow, step, queue, breaker, delivery, node), if any.
pub fn tone(state: &str) -> Option<Tone> {
    Some(match state {
        "succeeded" | "delivered" | "active" | "closed" | "leader" | "Leader" => Tone::Good,
        "failed" | "dead" | "unreachable" | "refused" | "open" | "error" => Tone::Bad,
        "running" | "leased" | "compensating" => Tone::Busy,
        "paused" | "waiting" | "scheduled" | "ready" | "pending" | "half_open" | "retrying" => {
            Tone::Held
        }
        "cancelled" | "skipped" | "dropped" => Tone::Quiet,
        _ => return None,
    })
}

/// The text style of a tone.
pub fn style(tone: Tone) -> Style {
    match tone {
        Tone::Good => AnsiColor::Green.on_default(),
        Tone::Bad => AnsiColor::Red.on_default(),
        Tone::Busy => AnsiColor::Cyan.on_default(),
        Tone::Held => AnsiColor::Yellow.on_default(),
        Tone::Quiet => Style::new().effects(Effects::DIMMED),
    }
}

/// `text` in `style` when `on`, else as it is.
pub fn paint(text: &str, style: Style, on: bool) -> String {
    if on {
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_string()
    }
}

/// A state word for stdout, coloured by its tone when stdout is coloured.
pub fn state(state: &str) -> String {
    paint_state(state, stdout())
}

/// A state word coloured by its tone when `on`.
pub fn paint_state(state: &str, on: bool) -> String {
    match tone(state) {
        Some(t) => paint(state, style(t), on),
        None => state.to_string(),
    }
}

/// The line an error is reported with on stderr: `error: ...`, red when stderr is coloured.
pub fn error_line(error: &dyn std::fmt::Display) -> String {
    let style = AnsiColor::Red.on_default().effects(Effects::BOLD);
    format!("{} {error}", paint("error:", style, stderr()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Colour only on a terminal without NO_COLOR, unless the flag says always or never.
    #[test]
    fn color_follows_terminal_no_color_and_flag() {
        use ColorChoice::*;
        assert!(decide(Auto, false, true));
        assert!(!decide(Auto, true, true), "NO_COLOR");
        assert!(!decide(Auto, false, false), "a pipe");
        assert!(decide(Always, true, false));
        assert!(!decide(Never, false, true));
        assert_eq!(paint("dead", style(Tone::Bad), false), "dead");
        assert_eq!(paint("dead", style(Tone::Bad), true), "\x1b[31mdead\x1b[0m");
        assert_eq!(tone("succeeded"), Some(Tone::Good));
        assert_eq!(tone("whatever"), None);
    }
}
