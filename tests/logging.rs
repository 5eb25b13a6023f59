//! Logs of a real node: `--log-format json` (here through RAFTLINE_LOG_FORMAT) gives one JSON
//! object per line, and a warning or error repeated from one place (a peer killed while reads
//! need its heartbeat answers) is rate-limited to `LOG_BURST` lines per window, the rest
//! counted in a "suppressed" line.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{wait_for, Cluster, Settings};
use raftline::logging::{LOG_BURST, LOG_WINDOW_MS};
use serde_json::Value;

fn lines(c: &Cluster, id: u64) -> Vec<Value> {
    c.log(id)
        .lines()
        // The one line on stdout: the start announcement.
        .filter(|l| !l.trim().is_empty() && !l.starts_with("raftline node "))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_and_repeated_errors_rate_limited() {
    let settings = Settings {
        node_env: vec![("RAFTLINE_LOG_FORMAT".into(), "json".into())],
        ..Settings::default()
    };
    let mut c = Cluster::start(settings).await;
    let leader = c.wait_leader(None).await;
    let follower = *c.ids().iter().find(|&&i| i != leader).expect("a follower");
    c.kill9(follower);
    let client = c.client_of(&[leader]);
    let id = client
        .submit(common::shell_job("logs", &["true"]))
        .await
        .unwrap();
    // Linearizable reads while a voter is gone: openraft logs an error per read about the
    // unreachable node; past the burst, a report line says how many were suppressed.
    let report = wait_for(
        "a suppressed-lines report",
        Duration::from_secs(40),
        || async {
            for _ in 0..50 {
                let _ = client.job(id, false).await;
            }
            lines(&c, leader)
                .into_iter()
                .find(|l| l["fields"]["suppressed"].as_u64().is_some_and(|n| n > 0))
        },
    )
    .await;
    println!("report: {report}");

    // No place logged more than the burst of warnings and errors in one window.
    let mut per_place: BTreeMap<(String, u64), Vec<chrono::DateTime<chrono::Utc>>> =
        BTreeMap::new();
    for l in lines(&c, leader) {
        let level = l["level"].as_str().unwrap_or("");
        if level != "WARN" && level != "ERROR" {
            continue;
        }
        let place = (
            l["filename"].as_str().unwrap_or("").to_string(),
            l["line_number"].as_u64().unwrap_or(0),
        );
        let at = l["timestamp"].as_str().expect("a timestamp");
        let at = chrono::DateTime::parse_from_rfc3339(at)
            .expect("RFC 3339")
            .to_utc();
        per_place.entry(place).or_default().push(at);
    }
    let window = chrono::Duration::milliseconds(LOG_WINDOW_MS as i64);
    let mut busiest = 0;
    for (place, times) in &per_place {
        for (i, t) in times.iter().enumerate() {
            let within = times[i..].iter().take_while(|u| **u - *t < window).count();
            busiest = busiest.max(within);
            assert!(
                within <= LOG_BURST as usize + 1,
                "{place:?}: {within} lines within {LOG_WINDOW_MS} ms"
            );
        }
    }
    assert!(busiest >= LOG_BURST as usize, "no place reached the burst");
}
