//! What `cluster.toml` becomes before it is checked:
//!
//! - `RAFTLINE_<SECTION>_<KEY>` environment variables override keys of the `[cluster]`,
//!   `[auth]`, `[tls]` and `[jobs]` tables, e.g. `RAFTLINE_CLUSTER_HEARTBEAT_MS=100` or
//!   `RAFTLINE_JOBS_RUN_AS=builder`. The value is read as TOML (a number, `true`, a quoted
//!   string, a `[list]`), else taken as a string. Node tables are not overridden this way:
//!   each node's addresses are the config's own.
//! - Durations and sizes may be written as people write them: a key ending in `_ms` takes
//!   `"30d"`, `"1h30m"` or `"250ms"` as well as a number of milliseconds; one ending in
//!   `_bytes` takes `"512MiB"`, `"64MB"` or `"1GiB"` as well as a number of bytes.

use super::ConfigError;

/// The tables environment variables may override.
pub const SECTIONS: [&str; 4] = ["cluster", "auth", "tls", "jobs"];

/// Applies `env` (the process's `RAFTLINE_*` variables) and the human forms to `config`;
/// returns the names of the variables applied.
pub fn apply(
    config: &mut toml::Table,
    env: &[(String, String)],
) -> Result<Vec<String>, ConfigError> {
    let mut applied = Vec::new();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("RAFTLINE_") else {
            continue;
        };
        let Some((section, key)) = SECTIONS.iter().find_map(|s| {
            rest.strip_prefix(&s.to_ascii_uppercase())
                .and_then(|k| k.strip_prefix('_'))
                .map(|k| (*s, k.to_ascii_lowercase()))
        }) else {
            continue;
        };
        if key.is_empty() {
            continue;
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let table = config
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(table) = table.as_table_mut() else {
            return Err(ConfigError(format!(
                "{name}: {section} is not a table in the config"
            )));
        };
        table.insert(key, value);
        applied.push(name.clone());
    }
    humanize(config, "")?;
    Ok(applied)
}

/// Turns human durations and sizes under `table` (at `path`) into numbers.
fn humanize(table: &mut toml::Table, path: &str) -> Result<(), ConfigError> {
    for (key, value) in table.iter_mut() {
        let at = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match value {
            toml::Value::Table(t) => humanize(t, &at)?,
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(t) = item {
                        humanize(t, &format!("{at}[{i}]"))?;
                    }
                }
            }
            toml::Value::String(text) if key.ends_with("_ms") => {
                let ms = duration_ms(text).ok_or_else(|| {
                    ConfigError(format!(
                        "{at}: {text:?} is not a duration (milliseconds, or e.g. 250ms, 30s, 1h30m, 7d)"
                    ))
                })?;
                *value = toml::Value::Integer(as_toml_int(&at, ms)?);
            }
            toml::Value::String(text) if key.ends_with("_bytes") => {
                let bytes = size_bytes(text).ok_or_else(|| {
                    ConfigError(format!(
                        "{at}: {text:?} is not a size (bytes, or e.g. 64KiB, 512MiB, 1GiB, 10MB)"
                    ))
                })?;
                *value = toml::Value::Integer(as_toml_int(&at, bytes)?);
            }
            _ => {}
        }
    }
    Ok(())
}

fn as_toml_int(at: &str, n: u64) -> Result<i64, ConfigError> {
    i64::try_from(n).map_err(|_| ConfigError(format!("{at}: {n} is too large")))
}

/// Splits `text` into (number, unit) pairs: `1h30m` → [(1, "h"), (30, "m")].
fn pairs(text: &str) -> Option<Vec<(u64, &str)>> {
    let mut rest = text.trim();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == ' ')
            .unwrap_or(rest.len());
        out.push((number, &rest[..unit_len]));
        rest = rest[unit_len..].trim_start();
    }
    (!out.is_empty()).then_some(out)
}

/// `250ms`, `30s`, `5m`, `2h`, `7d`, or a sum of them (`1h30m`), in milliseconds.
pub fn duration_ms(text: &str) -> Option<u64> {
    pairs(text)?.into_iter().try_fold(0u64, |total, (n, unit)| {
        let scale = match unit {
            "" | "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total.checked_add(n.checked_mul(scale)?)
    })
}

/// `512MiB`, `64MB`, `1GiB`, `4096`, `16KiB`, in bytes.
pub fn size_bytes(text: &str) -> Option<u64> {
    let [(n, unit)] = pairs(text)?[..] else {
        return None;
    };
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_forms_and_environment() {
        assert_eq!(duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(duration_ms("30d"), Some(2_592_000_000));
        assert_eq!(duration_ms("250ms"), Some(250));
        assert_eq!(duration_ms("2 s"), Some(2_000));
        assert_eq!(duration_ms("soon"), None);
        assert_eq!(duration_ms("99999999999999999d"), None);
        assert_eq!(size_bytes("512MiB"), Some(512 << 20));
        assert_eq!(size_bytes("64MB"), Some(64_000_000));
        assert_eq!(size_bytes("1GiB1MiB"), None);

        let mut config: toml::Table = toml::from_str(
            "[cluster]\nname = \"x\"\nheartbeat_ms = \"1s\"\nsnapshot_every_log_bytes = \"64MiB\"\n",
        )
        .unwrap();
        let env = [
            (
                "RAFTLINE_CLUSTER_REQUEST_TIMEOUT_MS".to_string(),
                "10s".to_string(),
            ),
            (
                "RAFTLINE_JOBS_ENV_PASS".to_string(),
                "[\"PATH\"]".to_string(),
            ),
            ("RAFTLINE_AUTH_ENABLED".to_string(), "false".to_string()),
            ("RAFTLINE_TOKEN".to_string(), "not a key".to_string()),
        ];
        let applied = apply(&mut config, &env).unwrap();
        assert_eq!(applied.len(), 3);
        let cluster = config["cluster"].as_table().unwrap();
        assert_eq!(cluster["heartbeat_ms"].as_integer(), Some(1_000));
        assert_eq!(
            cluster["snapshot_every_log_bytes"].as_integer(),
            Some(64 << 20)
        );
        assert_eq!(cluster["request_timeout_ms"].as_integer(), Some(10_000));
        assert_eq!(config["auth"]["enabled"].as_bool(), Some(false));
        assert_eq!(config["jobs"]["env_pass"][0].as_str(), Some("PATH"));
        let mut bad: toml::Table = toml::from_str("[cluster]\nheartbeat_ms = \"fast\"\n").unwrap();
        let e = apply(&mut bad, &[]).unwrap_err();
        assert!(e.0.contains("cluster.heartbeat_ms"), "{e}");
    }
}
