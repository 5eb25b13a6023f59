//! The filesystem's own tests: a real mount on a temporary directory. They need FUSE (root,
//! or fusermount3, and /dev/fuse); without it each test prints why it is skipped and passes.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raftline_lossyfs::control;

/// A mounted lossyfs over a temporary backing directory; unmounted on drop.
struct Mount {
    _tmp: tempfile::TempDir,
    backing: PathBuf,
    dir: PathBuf,
    control: PathBuf,
    child: Child,
}

impl Mount {
    /// Mounts, or says why it cannot (the caller skips).
    fn new(dirty_bytes_max: u64) -> Option<Mount> {
        if let Err(why) = raftline_lossyfs::mount::usable() {
            eprintln!("SKIP: lossyfs tests need FUSE: {why}");
            return None;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let backing = tmp.path().join("backing");
        let dir = tmp.path().join("mnt");
        let control = tmp.path().join("control.sock");
        fs::create_dir(&backing).expect("backing dir");
        fs::create_dir(&dir).expect("mount dir");
        let child = Command::new(env!("CARGO_BIN_EXE_raftline-lossyfs"))
            .arg("mount")
            .arg("--backing")
            .arg(&backing)
            .arg("--mountpoint")
            .arg(&dir)
            .arg("--control")
            .arg(&control)
            .args(["--dirty-bytes-max", &dirty_bytes_max.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .expect("start raftline-lossyfs");
        let mut mount = Mount {
            _tmp: tmp,
            backing,
            dir,
            control,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while control::request(&mount.control, "status").is_err() {
            if let Ok(Some(status)) = mount.child.try_wait() {
                panic!("raftline-lossyfs exited before mounting: {status}");
            }
            assert!(Instant::now() < deadline, "no mount within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(mount)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn crash(&self) -> String {
        control::request(&self.control, "crash").expect("crash")
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        control::stop(&mut self.child, &self.control, &self.dir);
    }
}

fn fsync_dir(dir: &Path) {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
}

fn write_file(path: &Path, bytes: &[u8]) -> File {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    f.write_all(bytes).expect("write");
    f
}

fn read(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    File::open(path)
        .expect("open for read")
        .read_to_end(&mut out)
        .expect("read");
    out
}

/// Data made durable by fsync, in a file whose name was made durable by a directory fsync,
/// survives a crash; writes after the fsync do not.
#[test]
fn lossyfs_fsynced_data_survives_a_crash() {
    let Some(m) = Mount::new(1 << 20) else { return };
    let f = write_file(&m.path("a"), b"durable");
    f.sync_all().expect("fsync");
    fsync_dir(&m.dir);
    let mut f = f;
    f.write_all(b" and volatile").expect("write");
    drop(f);
    assert_eq!(read(&m.path("a")), b"durable and volatile");
    m.crash();
    assert_eq!(read(&m.path("a")), b"durable");
    assert_eq!(read(&m.backing.join("a")), b"durable");
}

/// fdatasync persists the size too, so an appended record is readable after a crash.
#[test]
fn lossyfs_fdatasync_persists_appends() {
    let Some(m) = Mount::new(1 << 20) else { return };
    let f = write_file(&m.path("log"), b"");
    f.sync_all().expect("fsync");
    fsync_dir(&m.dir);
    let mut f = OpenOptions::new()
        .append(true)
        .open(m.path("log"))
        .expect("open");
    f.write_all(b"record-1;").expect("write");
    f.sync_data().expect("fdatasync");
    f.write_all(b"record-2;").expect("write");
    drop(f);
    m.crash();
    assert_eq!(read(&m.path("log")), b"record-1;");
}

/// `fallocate` (mode 0) extends a file with zeros; the new size is durable only once the
/// file is synced, and records written into the preallocated space later are durable only
/// with an fdatasync of their own (the WAL's preallocated segments).
#[test]
fn lossyfs_fallocate_extends_with_zeros_until_a_crash() {
    use std::os::unix::fs::FileExt;
    let Some(m) = Mount::new(1 << 20) else { return };
    let fallocate = |f: &File, len: i64| {
        // SAFETY: fallocate on a descriptor we own.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) };
        assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
    };
    let unsynced = write_file(&m.path("a"), b"head");
    let synced = write_file(&m.path("b"), b"head");
    for f in [&unsynced, &synced] {
        f.sync_all().expect("fsync");
    }
    fsync_dir(&m.dir);
    for f in [&unsynced, &synced] {
        fallocate(f, 64);
    }
    assert_eq!(read(&m.path("a")), [&b"head"[..], &[0; 60]].concat());
    synced.write_all_at(b"rec1", 4).expect("write");
    synced.sync_data().expect("fdatasync");
    synced.write_all_at(b"rec2", 8).expect("write");
    drop((unsynced, synced));
    m.crash();
    assert_eq!(read(&m.path("a")), b"head", "the unsynced size is dropped");
    assert_eq!(read(&m.path("b")), [&b"headrec1"[..], &[0; 56]].concat());
}

/// Data only pushed out with sync_file_range (what sled's flush does) is lost in a crash.
#[test]
fn lossyfs_sync_file_range_is_not_durable() {
    let Some(m) = Mount::new(1 << 20) else { return };
    let f = write_file(&m.path("sled"), b"base");
    f.sync_all().expect("fsync");
    fsync_dir(&m.dir);
    let mut f = OpenOptions::new()
        .write(true)
        .open(m.path("sled"))
        .expect("open");
    f.write_all(b"BASE plus more").expect("write");
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a valid open descriptor; offset 0 and length 0 mean the whole file.
    let rc = unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, flags) };
    assert_eq!(
        rc,
        0,
        "sync_file_range: {}",
        std::io::Error::last_os_error()
    );
    drop(f);
    assert_eq!(read(&m.path("sled")), b"BASE plus more");
    m.crash();
    assert_eq!(read(&m.path("sled")), b"base");
}

/// A new file whose directory was not fsynced vanishes in a crash, even if the file itself
/// was fsynced; after a directory fsync it stays. A rename to a new name is volatile the same
/// way.
#[test]
fn lossyfs_new_entries_need_a_directory_fsync() {
    let Some(m) = Mount::new(1 << 20) else { return };
    fs::create_dir(m.path("sub")).expect("mkdir");
    let f = write_file(&m.path("sub/kept"), b"k");
    f.sync_all().expect("fsync");
    fsync_dir(&m.path("sub"));
    fsync_dir(&m.dir);
    let f = write_file(&m.path("sub/tmp"), b"t");
    f.sync_all().expect("fsync");
    fsync_dir(&m.path("sub"));
    let f = write_file(&m.path("sub/lost"), b"l");
    f.sync_all().expect("fsync");
    fs::rename(m.path("sub/tmp"), m.path("sub/renamed")).expect("rename");
    fs::create_dir(m.path("newdir")).expect("mkdir");
    assert!(m.path("sub/lost").exists());
    let reply = m.crash();
    assert!(reply.contains("entries=3"), "{reply}");
    assert_eq!(read(&m.path("sub/kept")), b"k");
    assert!(
        !m.path("sub/lost").exists(),
        "an unsynced new name survived"
    );
    assert!(
        !m.path("sub/renamed").exists(),
        "an unsynced rename target survived"
    );
    assert!(
        !m.path("newdir").exists(),
        "an unsynced new directory survived"
    );
    assert!(!m.backing.join("sub/lost").exists());
}

/// Reads see unsynced data, truncates included, before a crash; the crash restores the
/// synced length.
#[test]
fn lossyfs_reads_see_dirty_data_before_a_crash() {
    let Some(m) = Mount::new(1 << 20) else { return };
    let f = write_file(&m.path("f"), b"0123456789");
    f.sync_all().expect("fsync");
    fsync_dir(&m.dir);
    f.set_len(4).expect("truncate");
    let mut f = f;
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(6)).expect("seek");
    f.write_all(b"xy").expect("write");
    drop(f);
    assert_eq!(read(&m.path("f")), b"0123\0\0xy");
    assert_eq!(fs::metadata(m.path("f")).expect("stat").len(), 8);
    assert_eq!(read(&m.backing.join("f")), b"0123456789");
    m.crash();
    assert_eq!(read(&m.path("f")), b"0123456789");
}

/// Unsynced data past the memory bound is refused with ENOSPC, and a sync frees room.
#[test]
fn lossyfs_dirty_data_is_bounded() {
    let Some(m) = Mount::new(64 << 10) else {
        return;
    };
    let mut f = write_file(&m.path("big"), b"");
    let chunk = vec![7u8; 16 << 10];
    let mut written = 0;
    let err = loop {
        match f.write_all(&chunk) {
            Ok(()) => written += chunk.len(),
            Err(e) => break e,
        }
        assert!(written <= 64 << 10, "wrote past the bound");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    f.sync_data().expect("fdatasync");
    f.write_all(&chunk).expect("room again after a sync");
}
