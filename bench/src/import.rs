//! import: `raftline import redis` of a list of `--jobs` small elements (1,000,000 by default)
//! from a local `redis-server` into the bench's cluster, run as the real CLI in a child
//! process: items per second, and the importer's peak RSS (its `ru_maxrss` from `wait4`),
//! which the import's bounded memory must keep under 200 MiB at a million elements. Then the
//! same import twice more: from the cursor it kept in the cluster (nothing left to read past
//! it), and with `--from-start` (everything read and sent again, every item answered as
//! already present, nothing created).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Bench;

/// Elements per RPUSH while filling.
const FILL_CHUNK: u64 = 1_000;

/// A redis-server child without persistence, killed on drop.
struct Redis(std::process::Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server(dir: &Path, port: u16) -> Result<Redis, String> {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e} (apt-get install redis-server)"))?;
    let redis = Redis(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not listen within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(redis)
}

/// RESP for one RPUSH of elements `from..to` (`job-N` each).
fn rpush(key: &str, from: u64, to: u64) -> Vec<u8> {
    let mut out = format!(
        "*{}\r\n$5\r\nRPUSH\r\n${}\r\n{key}\r\n",
        to - from + 2,
        key.len()
    );
    for i in from..to {
        let e = format!("job-{i:08}");
        out.push_str(&format!("${}\r\n{e}\r\n", e.len()));
    }
    out.into_bytes()
}

/// Fills `key` with `n` elements through `redis-cli --pipe`.
fn fill(port: u16, key: &str, n: u64) -> Result<(), String> {
    let mut cli = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-cli: {e}"))?;
    let mut stdin = cli.stdin.take().ok_or("redis-cli stdin")?;
    let mut from = 0;
    while from < n {
        let to = (from + FILL_CHUNK).min(n);
        stdin
            .write_all(&rpush(key, from, to))
            .map_err(|e| format!("redis-cli: {e}"))?;
        from = to;
    }
    drop(stdin);
    let status = cli.wait().map_err(|e| format!("redis-cli: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("redis-cli --pipe: {status}"))
}

/// What one import run measured.
struct Run {
    secs: f64,
    peak_rss_mib: f64,
    summary: String,
}

/// Runs the import as a child and reaps it with `wait4` for its peak RSS.
fn import(b: &Bench, port: u16, key: &str, extra: &[&str]) -> Result<Run, String> {
    let bin = raftline_jepsen::cluster::raftline_bin()?;
    let c = b
        .cluster
        .as_ref()
        .ok_or("the import section needs the bench's own cluster")?;
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.api()).collect();
    let mut cmd = Command::new(bin);
    cmd.args(["--addr", &addrs.join(",")]);
    if let Some(t) = &c.access.token {
        cmd.args(["--token", t]);
    }
    if let Some(ca) = &c.access.ca_file {
        cmd.arg("--ca-file").arg(ca);
    }
    cmd.args([
        "import",
        "redis",
        "--url",
        &format!("redis://127.0.0.1:{port}"),
    ])
    .args([
        "--from",
        &format!("list:{key}"),
        "--queue",
        "bench-import",
        "--json",
    ])
    .args(extra)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("raftline import: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("import stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not reaped by anything else (std's `Child` is not waited).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = started.elapsed().as_secs_f64();
    let summary = reader.join().unwrap_or_default();
    if rc != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!(
            "the import failed (wait status {status}): {summary}"
        ));
    }
    Ok(Run {
        secs,
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        summary: summary.trim().to_string(),
    })
}

/// The import section: `n` list elements imported, then the same import again.
pub async fn run(b: &mut Bench, dir: &Path, port: u16, n: u64) {
    let key = "bench:import";
    let redis = match redis_server(dir, port) {
        Ok(r) => r,
        Err(e) => {
            println!("import     skipped: {e}");
            return;
        }
    };
    let filled = Instant::now();
    if let Err(e) = fill(port, key, n) {
        println!("import     skipped: filling the list: {e}");
        return;
    }
    println!(
        "import     {n} list elements pushed to redis in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    let rounds: [(u32, &str, &[&str]); 3] = [
        (1, "first run", &[]),
        (2, "re-run from the cursor", &[]),
        (3, "re-run --from-start", &["--from-start"]),
    ];
    for (round, what, extra) in rounds {
        let run = match tokio::task::block_in_place(|| import(b, port, key, extra)) {
            Ok(r) => r,
            Err(e) => {
                println!("import     {what}: {e}");
                return;
            }
        };
        let rate = n as f64 / run.secs;
        println!(
            "import     {what}: {n} elements in {:.1} s = {rate:.0} items/s   importer peak RSS {:.1} MiB   {}",
            run.secs, run.peak_rss_mib, run.summary
        );
        b.record(serde_json::json!({
            "section": "import", "round": round, "elements": n, "secs": run.secs,
            "items_per_s": rate, "importer_peak_rss_mib": run.peak_rss_mib,
        }));
    }
    drop(redis);
}
