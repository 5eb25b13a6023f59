//! Damaged data dirs, end to end (issue 14). One node of a real 3-node cluster is stopped,
//! one of its files is damaged (flipped bytes, a cut tail) and the node is started again. It
//! must either refuse to start, naming the file (and the byte offset where the format knows
//! it), exiting non-zero with no panic trace, or recover: rejoin, catch up from its peers and
//! end with the same state as they have. Never a hang (every wait has a deadline), never a
//! silent wrong state (a recovered node's linearizable reads and state digest must equal its
//! peers'). The other two nodes take writes while the damaged one is down.
//!
//! Flip positions come from a seeded PRNG: the seed is printed, and `RAFTLINE_DAMAGE_SEED=N`
//! replays a run (the default seed is fixed, so CI runs are repeatable).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use raftline::proto::pb;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The node whose files are damaged.
const VICTIM: u64 = 3;
/// How long a damaged node gets to refuse or to catch up.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a start on a damaged file may end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A refusal naming the file, and the byte offset when `offset`.
    Refused { offset: bool },
    /// Recovery: the damage is a legitimate crash leftover (a torn tail).
    Recovered,
    /// Either, as long as it is clean: a flip may land in bytes sled's format does not use,
    /// or sled may drop what follows a bad record as its own torn tail.
    Either,
}

/// How a damaged start ended.
#[derive(Debug)]
enum Verdict {
    Refused { status: std::process::ExitStatus },
    Recovered,
}

/// One kind of damage: the file it hits (found in the stopped node's data dir) and what it
/// does to it.
struct Case {
    name: &'static str,
    expect: Expect,
    damage: fn(&Path, &mut ChaCha8Rng) -> PathBuf,
}

fn seed() -> u64 {
    let seed = std::env::var("RAFTLINE_DAMAGE_SEED")
        .ok()
        .map(|s| s.parse().expect("RAFTLINE_DAMAGE_SEED is a number"))
        .unwrap_or(14);
    println!("damage seed {seed} (replay: RAFTLINE_DAMAGE_SEED={seed})");
    seed
}

/// Flips `count` random bits in `at` (fractions of the length up to the last non-zero byte:
/// sled's `db` is a mostly empty preallocated segment) of `path`'s bytes; returns `path`.
fn flip(path: PathBuf, rng: &mut ChaCha8Rng, count: usize, at: std::ops::Range<f64>) -> PathBuf {
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    assert!(used > 0, "{} is empty", path.display());
    let len = used as f64;
    let (lo, hi) = ((at.start * len) as usize, ((at.end * len) as usize).max(1));
    let mut offsets = Vec::new();
    for _ in 0..count {
        let offset = rng.random_range(lo..hi.max(lo + 1)).min(bytes.len() - 1);
        bytes[offset] ^= 1 << rng.random_range(0..8);
        offsets.push(offset);
    }
    offsets.sort_unstable();
    println!(
        "  flipped {count} bit(s) of {} ({} bytes, {used} up to the last non-zero) at \
         {offsets:?}",
        path.display(),
        bytes.len()
    );
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Cuts `bytes` off the end of `path`; returns `path`.
fn cut_tail(path: PathBuf, bytes: u64) -> PathBuf {
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    assert!(len > bytes, "{} has only {len} bytes", path.display());
    file.set_len(len - bytes).unwrap();
    println!("  cut {bytes} bytes off {} ({len} bytes)", path.display());
    path
}

/// Zeros the last `bytes` written bytes of `path` (up to its last non-zero byte), keeping its
/// length: the end of an append that never reached the disk, in a preallocated WAL segment.
/// Returns `path`.
fn tear_tail(path: PathBuf, bytes: u64) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let content = std::fs::read(&path).unwrap();
    let used = content
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |p| p as u64 + 1);
    assert!(
        used > bytes,
        "{} has only {used} bytes written",
        path.display()
    );
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&vec![0; bytes as usize], used - bytes)
        .unwrap();
    println!(
        "  zeroed {bytes} bytes of {} before byte {used} ({} bytes long)",
        path.display(),
        content.len()
    );
    path
}

/// The newest WAL segment of a node dir.
fn last_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a WAL segment")
}

/// The first file in `dir` whose name starts with `prefix`.
fn file_starting(dir: &Path, prefix: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "wal segment, one flipped bit mid-file",
            expect: Expect::Refused { offset: true },
            damage: |dir, rng| flip(last_segment(dir), rng, 1, 0.25..0.5),
        },
        Case {
            name: "wal segment, truncated tail",
            expect: Expect::Recovered,
            damage: |dir, _| cut_tail(last_segment(dir), 5),
        },
        Case {
            name: "wal segment, last record torn in its preallocated space",
            expect: Expect::Recovered,
            damage: |dir, _| tear_tail(last_segment(dir), 5),
        },
        Case {
            name: "wal meta (vote), one flipped bit",
            expect: Expect::Refused { offset: true },
            damage: |dir, rng| flip(dir.join("wal").join("meta"), rng, 1, 0.0..1.0),
        },
        Case {
            name: "wal meta (vote), truncated tail",
            expect: Expect::Refused { offset: true },
            damage: |dir, _| cut_tail(dir.join("wal").join("meta"), 3),
        },
        Case {
            name: "snapshot, truncated tail",
            expect: Expect::Refused { offset: true },
            damage: |dir, _| cut_tail(dir.join("raft-snapshot"), 7),
        },
        Case {
            name: "sled db, 64 flipped bits",
            expect: Expect::Either,
            damage: |dir, rng| flip(dir.join("db"), rng, 64, 0.0..1.0),
        },
        Case {
            name: "sled db, truncated tail",
            expect: Expect::Either,
            damage: |dir, _| cut_tail(dir.join("db"), 100),
        },
        Case {
            name: "sled conf, 4 flipped bits",
            expect: Expect::Either,
            damage: |dir, rng| flip(dir.join("conf"), rng, 4, 0.0..1.0),
        },
        Case {
            name: "sled snapshot (snap.*), 16 flipped bits",
            expect: Expect::Either,
            damage: |dir, rng| flip(file_starting(dir, "snap."), rng, 16, 0.0..1.0),
        },
    ]
}

fn list_dir(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            list_dir(&entry.path(), out);
        } else {
            out.push(format!(
                "{} ({} bytes)",
                entry.path().display(),
                entry.metadata().unwrap().len()
            ));
        }
    }
}

/// Submits `n` jobs through `via` (no executor runs them: the cluster has `workers_max = 0`,
/// so every replica's state stays put between writes).
async fn submit(c: &Cluster, via: &[u64], tag: &str, n: usize, acked: &mut BTreeMap<u64, String>) {
    let client = c.client_of(via);
    for i in 0..n {
        let word = format!("{tag}-{i}");
        let id = client
            .submit(shell_job("q", &["echo", &word]))
            .await
            .unwrap_or_else(|e| panic!("submit {word} through {via:?}: {e}"));
        assert!(acked.insert(id, word).is_none(), "id {id} handed out twice");
    }
}

/// Starts the damaged victim and waits, up to a deadline, for it to exit or to catch up.
async fn verdict(c: &mut Cluster) -> Verdict {
    c.spawn(VICTIM);
    let deadline = Instant::now() + VERDICT_TIMEOUT;
    loop {
        if let Some(status) = c.try_exit(VICTIM) {
            return Verdict::Refused { status };
        }
        let others = c
            .ids()
            .into_iter()
            .filter(|id| *id != VICTIM)
            .collect::<Vec<_>>();
        if let (Some(mine), Some(theirs)) = (c.status(VICTIM).await, c.status(others[0]).await) {
            if mine.leader.is_some() && mine.last_applied >= theirs.last_applied {
                return Verdict::Recovered;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {VICTIM} neither exited nor caught up within {VERDICT_TIMEOUT:?} (a hang); \
             log:\n{}",
            c.log(VICTIM)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every acknowledged job reads the same through every running node (linearizable reads),
/// and every node's state digest is the same at the same index.
async fn assert_same_state(c: &Cluster, acked: &BTreeMap<u64, String>) {
    let running = c.running();
    for (id, word) in acked {
        let mut seen: Option<pb::Job> = None;
        for node in &running {
            let job = c
                .client_of(&[*node])
                .job(*id, false)
                .await
                .unwrap_or_else(|e| panic!("node {node}: job {id}: {e}; log:\n{}", c.log(*node)));
            assert_eq!(
                argv_of(&job),
                ["echo", word.as_str()],
                "node {node}: job {id}"
            );
            if let Some(first) = &seen {
                assert_eq!(first, &job, "node {node} disagrees on job {id}");
            }
            seen = Some(job);
        }
    }
    c.wait_same_digest().await;
}

/// Each kind of damage to each kind of file, one after the other on the same node; between
/// cases the node's data dir is put back as it was and the node catches up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_refused_or_recovered() {
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let mut c = Cluster::start(Settings {
        snapshot_every_entries: 20,
        cluster_extra: "workers_max = 0".into(),
        ..Settings::default()
    })
    .await;
    let mut acked = BTreeMap::new();
    submit(&c, &c.ids(), "start", 40, &mut acked).await;
    let dir = c.node_dir(VICTIM);
    wait_for(
        "a snapshot on the victim",
        Duration::from_secs(20),
        || async { dir.join("raft-snapshot").exists().then_some(()) },
    )
    .await;
    c.wait_applied(VICTIM, c.status(1).await.unwrap().last_applied)
        .await;
    let others: Vec<u64> = c.ids().into_iter().filter(|id| *id != VICTIM).collect();
    let backup = c.dir.path().join("victim-backup");
    let mut files = Vec::new();
    list_dir(&dir, &mut files);
    println!("node {VICTIM} data dir:\n  {}", files.join("\n  "));

    for (n, case) in cases().into_iter().enumerate() {
        println!("case {n}: {}", case.name);
        assert!(c.stop(VICTIM).await.success(), "{}", c.log(VICTIM));
        let _ = std::fs::remove_dir_all(&backup);
        copy_dir(&dir, &backup);
        let file = (case.damage)(&dir, &mut rng);
        // The other two go on taking writes while the victim is down.
        submit(&c, &others, &format!("case{n}"), 5, &mut acked).await;

        let log_from = c.log(VICTIM).len();
        let verdict = verdict(&mut c).await;
        let log = c.log(VICTIM)[log_from..].to_string();
        println!("  -> {verdict:?}");
        assert!(
            !log.contains("panicked at"),
            "case {n} ({}): a panic trace:\n{log}",
            case.name
        );
        match verdict {
            Verdict::Refused { status } => {
                assert!(
                    case.expect != Expect::Recovered,
                    "case {n} ({}): refused, but it must recover:\n{log}",
                    case.name
                );
                assert!(!status.success(), "case {n}: refused with {status}:\n{log}");
                let error = log
                    .lines()
                    .find(|l| l.starts_with("error: "))
                    .unwrap_or_else(|| panic!("case {n}: no error line:\n{log}"));
                println!("  {error}");
                let named = error.contains(&file.display().to_string())
                    || (file.parent() == Some(dir.as_path())
                        && error.contains(&dir.display().to_string()));
                assert!(
                    named,
                    "case {n}: the error does not name {}",
                    file.display()
                );
                assert!(
                    error.contains("damaged") || error.contains("checksum"),
                    "case {n}: the error does not say the file is damaged: {error}"
                );
                if case.expect == (Expect::Refused { offset: true }) {
                    assert!(
                        error.contains("byte") || error.contains("offset"),
                        "case {n}: the error does not name the offset: {error}"
                    );
                }
                std::fs::remove_dir_all(&dir).unwrap();
                copy_dir(&backup, &dir);
                c.spawn(VICTIM);
            }
            Verdict::Recovered => {
                assert!(
                    case.expect != (Expect::Refused { offset: true }),
                    "case {n} ({}): started on a damaged file:\n{log}",
                    case.name
                );
            }
        }
        submit(&c, &c.ids(), &format!("case{n}-after"), 3, &mut acked).await;
        c.wait_applied(VICTIM, c.status(others[0]).await.unwrap().last_applied)
            .await;
        assert_same_state(&c, &acked).await;
    }

    // What the README says about rebuilding a node from its peers, checked: a node started
    // with an empty data dir, after it ran in the cluster, is refused (it would have forgotten
    // its vote); with its data dir back it rejoins.
    assert!(c.stop(VICTIM).await.success(), "{}", c.log(VICTIM));
    let aside = c.dir.path().join("node-3-aside");
    std::fs::rename(&dir, &aside).unwrap();
    let log_from = c.log(VICTIM).len();
    c.spawn(VICTIM);
    let status = c.wait_exit(VICTIM, VERDICT_TIMEOUT).await;
    let log = c.log(VICTIM)[log_from..].to_string();
    assert!(!status.success(), "an emptied node started:\n{log}");
    assert!(log.contains("has run in this cluster before"), "{log}");
    assert!(!log.contains("panicked at"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::rename(&aside, &dir).unwrap();
    c.spawn(VICTIM);
    submit(&c, &c.ids(), "end", 3, &mut acked).await;
    c.wait_applied(VICTIM, c.status(others[0]).await.unwrap().last_applied)
        .await;
    assert_same_state(&c, &acked).await;
}

/// A tmpfs mounted for one test, unmounted (lazily, so a process still using it cannot stop
/// the unmount) when dropped, also when the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "mount tmpfs: {}", show(&out));
        Tmpfs(at.to_path_buf())
    }

    /// Bytes free on it.
    fn free(&self) -> u64 {
        let path = std::ffi::CString::new(self.0.display().to_string()).unwrap();
        // SAFETY: statvfs(3) writes into the zeroed struct we own; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::statvfs(path.as_ptr(), &mut st) },
            0,
            "statvfs"
        );
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A node whose disk fills up (its data dir on a small tmpfs, mostly taken by a filler file)
/// while the cluster takes writes exits non-zero within a deadline, saying the disk is full,
/// without a panic trace and without hanging; the other two go on taking writes; once the
/// filler is deleted and the node restarted it catches up, and every acknowledged write is
/// there, the same on every node. Needs root (mount); skipped, saying so, otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_stops_the_node_and_it_catches_up_later() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!(
            "SKIPPED full_disk_stops_the_node_and_it_catches_up_later: needs root to mount a tmpfs"
        );
        return;
    }
    let mut c = Cluster::new(Settings {
        cluster_extra: "workers_max = 0".into(),
        ..Settings::default()
    });
    let disk = Tmpfs::mount(&c.dir.path().join("disk"), "16m");
    let dir = c.node_dir(VICTIM);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::create_dir(disk.0.join("node")).unwrap();
    std::os::unix::fs::symlink(disk.0.join("node"), &dir).unwrap();
    for id in c.ids() {
        c.spawn(id);
    }
    // The harder case: the node whose disk fills is the leader (restart whoever else leads,
    // a bounded number of times, until it is).
    let mut leader = c.wait_leader(None).await;
    for _ in 0..12 {
        if leader == VICTIM {
            break;
        }
        assert!(c.stop(leader).await.success(), "{}", c.log(leader));
        let next = c.wait_leader(Some(leader)).await;
        c.spawn(leader);
        leader = next;
    }
    println!("node {leader} leads");
    let others: Vec<u64> = c.ids().into_iter().filter(|id| *id != VICTIM).collect();
    let mut acked = BTreeMap::new();
    submit(&c, &c.ids(), "before", 5, &mut acked).await;

    // Leave about 1 MiB free.
    let filler = disk.0.join("filler");
    let keep = 1 << 20;
    let fill = disk.free().saturating_sub(keep);
    std::fs::write(&filler, vec![0x5a; fill as usize]).unwrap();
    println!("filler of {fill} bytes, {} bytes free", disk.free());

    // 32 KiB per job: the free space is gone after about 32 of them.
    let big = "x".repeat(32 * 1024);
    let client = c.client_of(&others);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failed_writes = 0;
    let status = loop {
        if let Some(status) = c.try_exit(VICTIM) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "node {VICTIM} did not exit within 60 s of its disk filling up ({} bytes free); \
             log:\n{}",
            disk.free(),
            c.log(VICTIM)
        );
        let word = format!("fill-{}-{big}", acked.len());
        match client.submit(shell_job("q", &["echo", &word])).await {
            Ok(id) => assert!(acked.insert(id, word).is_none(), "id {id} twice"),
            // A write in flight while the full node was the leader may fail (unknown outcome).
            Err(e) => {
                failed_writes += 1;
                assert!(
                    failed_writes < 20,
                    "the other nodes stopped taking writes: {e}"
                );
            }
        }
    };
    let log = c.log(VICTIM);
    println!(
        "node {VICTIM} exited with {status} after {} writes",
        acked.len()
    );
    assert!(!status.success(), "{log}");
    assert!(!log.contains("panicked at"), "a panic trace:\n{log}");
    let error = log
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    println!("  {error}");
    assert!(error.contains("disk full writing to"), "{error}");

    // The other two go on; then space comes back and the node catches up.
    submit(&c, &others, "while-down", 5, &mut acked).await;
    std::fs::remove_file(&filler).unwrap();
    c.spawn(VICTIM);
    submit(&c, &c.ids(), "after", 5, &mut acked).await;
    c.wait_applied(VICTIM, c.status(others[0]).await.unwrap().last_applied)
        .await;
    assert_same_state(&c, &acked).await;
    assert!(c.stop(VICTIM).await.success(), "{}", c.log(VICTIM));
}
