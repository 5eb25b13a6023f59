//! `--command-template`: each imported item becomes a shell job instead of an external job
//! with a payload. The template is split into words once, when the import starts, the way a
//! POSIX shell splits a command line (blanks separate words; `'...'` is literal; `"..."` takes
//! `\"`, `\\`, `\$` and `` \` `` escapes; a backslash outside quotes escapes the next
//! character); nothing else of a shell applies (no variables, globs or pipes). Then, per item,
//! each word's placeholders are replaced: `{}` by the item's payload (a list element as text,
//! a Stream entry's fields as JSON) and `{NAME}` by the field `NAME` of a payload that is a
//! JSON object (a Stream entry's field); `{{` and `}}` are literal braces. The result is the
//! job's argv as it is: a word is never split again, so an item cannot add arguments or
//! options of its own, whatever it holds.
//!
//! What the program does with an argument is its own affair: the one case refused up front is
//! a placeholder inside the code argument of a shell or interpreter (`sh -c "echo {}"`,
//! `python3 -c ...`), which would run the item as code. Pass the item as an argument of the
//! code instead: `sh -c 'echo "$1"' sh {}`. A template whose program itself is a placeholder is
//! refused too.
//!
//! An item that cannot fill the template (not UTF-8, a NUL byte, a missing or non-string
//! field, an argv over `ARGV_BYTES_MAX`) is skipped and counted with its reason.

use crate::error::{Error, Result};
use crate::machine::limits;

/// Bytes of a template (it is typed on a command line).
pub const TEMPLATE_BYTES_MAX: usize = 16 * 1024;

/// Programs that run an argument as code after `-c` (or `-e`).
const INTERPRETERS: [&str; 13] = [
    "sh", "bash", "dash", "zsh", "ksh", "ash", "fish", "busybox", "python", "python3", "perl",
    "ruby", "node",
];

/// One piece of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// `{}`: the whole payload.
    Whole,
    /// `{NAME}`: one field of a JSON object payload.
    Field(String),
}

/// A parsed `--command-template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    words: Vec<Vec<Part>>,
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument {
        field: "command-template".into(),
        message,
    }
}

/// Splits `text` into words as a POSIX shell would, without expansions.
pub fn split_words(text: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(invalid("a ' quote is not closed".into())),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(invalid("a \" quote is not closed".into())),
                        },
                        Some(c) => w.push(c),
                        None => return Err(invalid("a \" quote is not closed".into())),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err(invalid("it ends with a lone backslash".into())),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// The placeholders and text of one word.
fn parse_word(word: &str) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => {
                            return Err(invalid(format!(
                                "{word:?} has a {{ without its }} (write {{{{ for a brace)"
                            )))
                        }
                        Some(c) => name.push(c),
                    }
                }
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(if name.is_empty() {
                    Part::Whole
                } else {
                    Part::Field(name)
                });
            }
            '}' => {
                return Err(invalid(format!(
                    "{word:?} has a }} without its {{ (write }}}} for a brace)"
                )))
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() || parts.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

fn has_placeholder(word: &[Part]) -> bool {
    word.iter().any(|p| !matches!(p, Part::Text(_)))
}

impl Template {
    /// Parses a template, refusing one that would run an item as code (see the module doc).
    pub fn parse(text: &str) -> Result<Template> {
        if text.len() > TEMPLATE_BYTES_MAX {
            return Err(invalid(format!(
                "is {} bytes, the limit is {TEMPLATE_BYTES_MAX}",
                text.len()
            )));
        }
        let raw = split_words(text)?;
        if raw.is_empty() {
            return Err(invalid("names no program".into()));
        }
        if raw.len() > limits::ARGV_ITEMS_MAX {
            return Err(invalid(format!(
                "has {} words, the limit is {} (ARGV_ITEMS_MAX)",
                raw.len(),
                limits::ARGV_ITEMS_MAX
            )));
        }
        let words = raw
            .iter()
            .map(|w| parse_word(w))
            .collect::<Result<Vec<_>>>()?;
        if has_placeholder(&words[0]) {
            return Err(invalid(
                "the program (its first word) may not come from the item".into(),
            ));
        }
        if !words.iter().skip(1).any(|w| has_placeholder(w)) {
            return Err(invalid(
                "has no placeholder: use {} for the item or {FIELD} for one of its fields".into(),
            ));
        }
        let mut interpreter = false;
        for (i, w) in raw.iter().enumerate() {
            let base = w.rsplit('/').next().unwrap_or(w);
            interpreter |= INTERPRETERS.contains(&base);
            let code_flag =
                w.starts_with('-') && !w.starts_with("--") && (w.contains('c') || w.contains('e'));
            if interpreter && code_flag && words.get(i + 1).is_some_and(|n| has_placeholder(n)) {
                return Err(invalid(format!(
                    "puts the item into the code {w} runs ({:?}), where it would run as code; \
                     pass it as an argument instead, e.g. sh -c 'echo \"$1\"' sh {{}}",
                    raw[i + 1]
                )));
            }
        }
        Ok(Template { words })
    }

    /// The argv for one item's payload, or why the item cannot fill the template.
    pub fn argv(&self, payload: &[u8]) -> std::result::Result<Vec<String>, &'static str> {
        let whole = std::str::from_utf8(payload).map_err(|_| "not UTF-8 (--command-template)")?;
        let fields = if self
            .words
            .iter()
            .flatten()
            .any(|p| matches!(p, Part::Field(_)))
        {
            match serde_json::from_slice::<serde_json::Value>(payload) {
                Ok(serde_json::Value::Object(map)) => Some(map),
                _ => return Err("not a JSON object with the template's fields"),
            }
        } else {
            None
        };
        let mut argv = Vec::with_capacity(self.words.len());
        let mut bytes = 0;
        for word in &self.words {
            let mut arg = String::new();
            for part in word {
                match part {
                    Part::Text(t) => arg.push_str(t),
                    Part::Whole => arg.push_str(whole),
                    Part::Field(name) => match fields.as_ref().and_then(|f| f.get(name.as_str())) {
                        Some(serde_json::Value::String(s)) => arg.push_str(s),
                        _ => return Err("without a text field the --command-template names"),
                    },
                }
            }
            if arg.contains('\0') {
                return Err("with a NUL byte (--command-template)");
            }
            bytes += arg.len();
            argv.push(arg);
        }
        if bytes > limits::ARGV_BYTES_MAX {
            return Err("argv over ARGV_BYTES_MAX (--command-template)");
        }
        Ok(argv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words split as a shell splits them, quotes and escapes included, without expansions.
    #[test]
    fn template_splits_like_a_shell() {
        let w = split_words(r#"a 'b c' "d \"e\" $x" f\ g  'h'"i""#).unwrap();
        assert_eq!(w, ["a", "b c", "d \"e\" $x", "f g", "hi"]);
        assert!(split_words("a 'b").is_err());
        assert!(split_words("a \"b").is_err());
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
    }

    /// An item fills one word and never adds arguments: spaces, quotes and options stay in it.
    #[test]
    fn template_substitutes_per_word() {
        let t = Template::parse("mail --to {to} --body=<{}> {{lit}}").unwrap();
        let payload = br#"{"to":"x@y -rf; $(reboot)","n":"1"}"#;
        let argv = t.argv(payload).unwrap();
        assert_eq!(argv.len(), 5);
        assert_eq!(argv[2], "x@y -rf; $(reboot)");
        assert_eq!(
            argv[3],
            format!("--body=<{}>", std::str::from_utf8(payload).unwrap())
        );
        assert_eq!(argv[4], "{lit}");
        assert!(t.argv(br#"{"n":"1"}"#).is_err(), "missing field");
        assert!(t.argv(b"not json").is_err());
        let plain = Template::parse("echo {}").unwrap();
        assert_eq!(plain.argv(b"a b").unwrap(), ["echo", "a b"]);
        assert!(plain.argv(&[0xff]).is_err());
        assert!(plain.argv(b"a\0b").is_err());
    }

    /// Templates that would run an item as code, take the program from it, or ignore it are
    /// refused; the positional-argument form is accepted.
    #[test]
    fn template_refuses_code_injection() {
        for bad in [
            r#"sh -c "echo {}""#,
            "/bin/bash -ec 'run {x}'",
            "python3 -c {}",
            "{} arg",
            "echo hello",
            "echo {",
            "echo }",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        let ok = Template::parse(r#"sh -c 'echo "$1"' sh {}"#).unwrap();
        assert_eq!(
            ok.argv(b"$(reboot)").unwrap(),
            ["sh", "-c", "echo \"$1\"", "sh", "$(reboot)"]
        );
    }
}
