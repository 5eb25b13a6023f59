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

/// Parses a duration such as `250ms`, `30s`, `5m`, `2h`, `1d`, or a sum of them (`1h30m`,
/// `2m30s`) into ms. Unlike the config file's durations, a bare number is refused: on a flag,
/// `--timeout 10` is more likely meant as seconds than as ms.
pub fn parse_duration(field: &str, text: &str) -> Result<u64> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(invalid(field, format!("{text:?} is negative")));
    }
    let bad = || {
        invalid(
            field,
            format!(
                "{text:?} is not a duration (numbers with ms, s, m, h or d, e.g. 30s or 1h30m)"
            ),
        )
    };
    let too_long = || invalid(field, format!("{text:?} is too long"));
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total = 0u64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        if number.is_empty() {
            return Err(bad());
        }
        let n: u64 = number.parse().map_err(|_| too_long())?;
        total = n
            .checked_mul(unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(too_long)?;
        rest = next;
    }
    Ok(total)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations are one or more number-unit pairs, summed; anything else names the flag.
    #[test]
    fn durations_sum_their_parts() {
        assert_eq!(parse_duration("t", "250ms").unwrap(), 250);
        assert_eq!(parse_duration("t", "30s").unwrap(), 30_000);
        assert_eq!(parse_duration("t", "1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("t", "2m30s").unwrap(), 150_000);
        assert_eq!(parse_duration("t", "1d2h3m4s5ms").unwrap(), 93_784_005);
        assert_eq!(parse_duration("t", " 10m ").unwrap(), 600_000);
        for bad in [
            "",
            "10",
            "1h30",
            "h",
            "1x",
            "-5s",
            "1.5h",
            "1h 30m",
            "99999999999999999999s",
        ] {
            let e = parse_duration("timeout", bad).unwrap_err().to_string();
            assert!(e.contains("timeout"), "{bad:?}: {e}");
        }
    }

    /// Times are ms since the epoch or RFC 3339 with an offset.
    #[test]
    fn times_are_ms_or_rfc3339() {
        assert_eq!(
            parse_time("at", "1700000000000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("at", "2026-12-01T08:00:00Z").unwrap(),
            1_796_112_000_000
        );
        assert_eq!(
            parse_time("at", "2026-12-01T09:00:00+01:00").unwrap(),
            1_796_112_000_000
        );
        assert!(parse_time("run_at", "tomorrow")
            .unwrap_err()
            .to_string()
            .contains("run_at"));
    }
}
