//! The run report: operations and availability (overall and during faults), latency
//! percentiles, the faults applied, and each checker's figures and verdict.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::checker::Verdict;
use crate::history::{Event, Kind};
use crate::nemesis::Fault;

#[derive(Default)]
struct OpStats {
    ok: u64,
    fail: u64,
    info: u64,
    during_faults: [u64; 2],
    latencies: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// The report of one run, as text.
pub fn render(
    test: &str,
    seed: u64,
    notes: &[String],
    history: &[Event],
    faults: &[Fault],
    verdicts: &[Verdict],
) -> String {
    let in_fault = |t: u64| faults.iter().any(|f| f.start_ms <= t && t <= f.end_ms);
    let mut stats: BTreeMap<&'static str, OpStats> = BTreeMap::new();
    let mut open: BTreeMap<u64, u64> = BTreeMap::new();
    for e in history {
        if e.kind == Kind::Invoke {
            open.insert(e.process, e.time_ms);
            continue;
        }
        let Some(started) = open.remove(&e.process) else {
            continue; // an observation (final read, digest), not an operation
        };
        let s = stats.entry(e.op.name()).or_default();
        match e.kind {
            Kind::Ok => {
                s.ok += 1;
                s.latencies.push(e.time_ms.saturating_sub(started));
            }
            Kind::Fail => s.fail += 1,
            _ => s.info += 1,
        }
        if in_fault(e.time_ms) {
            s.during_faults[usize::from(e.kind == Kind::Ok)] += 1;
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "== {test}  (seed {seed}, replay with --seed {seed})");
    for note in notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(
        out,
        "{:<10} {:>8} {:>7} {:>7} {:>7} {:>9} {:>12} {:>8} {:>8} {:>8}",
        "op", "total", "ok", "fail", "info", "avail", "avail-fault", "p50 ms", "p99 ms", "max ms"
    );
    for (name, s) in &mut stats {
        s.latencies.sort_unstable();
        let total = s.ok + s.fail + s.info;
        let fault_total = s.during_faults[0] + s.during_faults[1];
        let pct = |a: u64, b: u64| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        let _ = writeln!(
            out,
            "{:<10} {:>8} {:>7} {:>7} {:>7} {:>8.1}% {:>11.1}% {:>8} {:>8} {:>8}",
            name,
            total,
            s.ok,
            s.fail,
            s.info,
            pct(s.ok, total),
            pct(s.during_faults[1], fault_total),
            percentile(&s.latencies, 0.5),
            percentile(&s.latencies, 0.99),
            s.latencies.last().copied().unwrap_or(0)
        );
    }
    let _ = writeln!(out, "faults: {}", faults.len());
    for f in faults {
        let _ = writeln!(out, "  {:>7} .. {:>7} ms  {}", f.start_ms, f.end_ms, f.what);
    }
    for v in verdicts {
        let _ = writeln!(out, "{v}");
    }
    out
}
