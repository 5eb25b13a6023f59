//! Parsers of command-line values (durations, times, `K=V` pairs) shared by the command
//! groups and the workflow file reader. Each names the flag at fault in its error, so a bad
//! value exits with code 2 and says which flag to fix.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// An invalid-argument error naming the flag (exit code 2).
pub fn invalid(field: &str, message: String) -> Error {
    Error::InvalidArgument {
        field: field.into(),
        message,
    }
}

/// Refuses 0 for a flag whose range is `min..=max` (the server checks the rest of the range).
pub fn nonzero(field: &str, value: Option<u32>, min: u32, max: u32) -> Result<()> {
    if value == Some(0) {
        return Err(invalid(field, format!("is 0, must be {min}..={max}")));
    }
    Ok(())
}

/// Parses a duration such as `250ms`, `30s`, `5m`, `2h` or `1d` into ms.
pub fn parse_duration(field: &str, text: &str) -> Result<u64> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(invalid(field, format!("{text:?} is negative")));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(invalid(
                field,
                format!("{text:?} is not a duration (a number and ms, s, m, h or d, e.g. 30s)"),
            ))
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| invalid(field, format!("{text:?} is not a duration (e.g. 30s)")))?;
    n.checked_mul(unit_ms)
        .ok_or_else(|| invalid(field, format!("{text:?} is too long")))
}

/// Parses repeated `K=V` flags into an environment.
pub fn parse_env(field: &str, pairs: &[String]) -> Result<HashMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(invalid(field, format!("{p:?} is not K=V"))),
        })
        .collect()
}

/// A time as ms since the epoch, from digits or RFC 3339.
pub fn parse_time(field: &str, text: &str) -> Result<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
        .ok_or_else(|| {
            invalid(
                field,
                format!("{text:?} is not ms since the epoch or RFC 3339 (2026-11-23T10:00:00Z)"),
            )
        })
}
