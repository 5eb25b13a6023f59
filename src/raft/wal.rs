//! A segmented write-ahead log: the file format under the Raft log, in plain synchronous std
//! I/O with no openraft types (`wal_store.rs` adapts it to openraft).
//!
//! ## Format
//!
//! One directory holds segment files named by the index of their first record, zero padded
//! to 20 digits (`00000000000000000042.wal`), and one `meta` file. The bytes are encoded and
//! checked in `wal/format.rs`; this file does the I/O.
//! - A segment starts with a 24-byte header: magic `RLWALSEG`, format version (u32 LE), first
//!   index (u64 LE), CRC-32 of those 20 bytes (u32 LE). Records follow back to back:
//!   `[len u32 LE][crc32 u32 LE of payload][payload]`, payload = `[index u64 LE][bytes]`.
//!   Indexes are contiguous within a segment and across segments.
//! - A segment is preallocated to the segment size when it is created (`fallocate`), so its
//!   unused end reads as zeros: a zero byte where a record would start, with only zeros after
//!   it, is the end of the segment's records. Records write into blocks the file already has,
//!   so each append's `fdatasync` is a data flush with no file length or block allocation to
//!   commit (etcd does the same). Where the filesystem cannot preallocate, or less than twice
//!   a segment is free, the file grows with its appends instead: both read the same.
//! - `meta`: magic `RLWALMET`, version (u32 LE), payload length (u32 LE), CRC-32 of the
//!   payload (u32 LE), payload = `[purged flag u8][purged index u64 LE][owner's state]`. The
//!   owner's state is opaque here (the store keeps vote, committed and purged log ids in it).
//!
//! ## Durability: what is synced when
//!
//! - [`Wal::append`] only writes (`write_all` into the page cache). [`Wal::sync`] (or an
//!   `fdatasync` of [`Wal::sync_handle`]) makes every append before it durable: only then may
//!   the owner acknowledge them. `fdatasync` writes the data and the metadata needed to read
//!   it back (the file length) and flushes the disk's write cache; `sync_file_range`, which
//!   sled 0.34 uses, does neither, so a power loss could drop writes it "flushed".
//! - A new segment is written as `NAME.tmp` (header), `sync_all`ed, renamed into place and the
//!   directory fsynced, before any record goes in: a file's directory entry is durable only
//!   after a directory fsync, and a complete header is the only header open ever accepts.
//!   Before rolling over, the old segment is `fdatasync`ed, so a durable later segment never
//!   follows an old one with a lost tail (which open would refuse as a gap).
//! - `meta` is replaced atomically: write `meta.tmp`, `sync_all`, rename over `meta`, fsync
//!   the directory. A crash leaves the old or the new meta, never a mix.
//! - [`Wal::truncate_from`] deletes later segments last-first, cuts the file (`set_len` +
//!   `sync_all`) and fsyncs the directory. [`Wal::purge_upto`] writes meta (the purged index)
//!   first, then deletes whole segments first-first and fsyncs the directory: a crash in
//!   between leaves extra old entries, which are hidden by the purged index, never a gap.
//!
//! ## Open: torn tails and damage
//!
//! [`Wal::open`] reads every segment in order and checks every header and every record's
//! checksum; zeros after the last record are preallocated space and stay. A torn tail (the last segment ends in an incomplete record, a record running
//! past the end of the file, or a checksum-failing record followed only by zeros) is what a
//! crash during unsynced appends leaves: it is cut away (`set_len` + sync) and logged. Any
//! other damage (a bad header, a bad record followed by more data, a record out of index
//! order, a gap between segments or after the purged index, a damaged meta) is refused with
//! an [`Error::Damaged`] naming the file and byte offset: never a panic, never skipped.
//! Every length read from disk is bounded (limits.rs) before anything is allocated for it.
//!
//! Invariants: segments are contiguous (`next.first == prev.first + prev.records`); only the
//! last segment is written to; entries at or below the purged index are never returned; the
//! in-memory index (per segment, the offset of each record) matches the files.
//!
//! A record of the last segment whose length runs past the end of the file is a torn tail
//! only if no valid record with the next index follows it; otherwise its length was damaged
//! and open refuses.
//!
//! CAVEATS (not implemented): a damaged length in the very last record (nothing follows to
//! tell) is taken for a torn tail and that record is cut, though it may have been
//! acknowledged (its peers send it again); no lock against two processes opening the same
//! directory (sled locks its own files; wiring the WAL in needs a lock of its own).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::machine::limits::{WAL_META_BYTES_MAX, WAL_RECORD_BYTES_MAX, WAL_SEGMENT_BYTES};

mod format;

use format::{
    check_segment_header, decode_meta, encode_meta, encode_record, parse_record, segment_header,
    HEADER_BYTES, INDEX_BYTES, META_HEADER_BYTES, RECORD_HEADER_BYTES,
};

const META_FILE: &str = "meta";
const NAME_DIGITS: usize = 20;
/// Longest a segment file can be: a roll happens before the first record past
/// `WAL_SEGMENT_BYTES`, so at most one record more.
const SEGMENT_FILE_BYTES_MAX: u64 =
    HEADER_BYTES + WAL_SEGMENT_BYTES + RECORD_HEADER_BYTES + WAL_RECORD_BYTES_MAX;

/// A write-ahead log failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file is damaged or of an unknown format: the node must not start on it.
    #[error("{}: damaged at byte {offset}: {reason}", path.display())]
    Damaged {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage in it.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An I/O call failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// A call the log refuses (an append out of index order, a record over the limit).
    #[error("write-ahead log: {0}")]
    Misuse(String),
}

/// Result of a write-ahead log call.
pub type Result<T> = std::result::Result<T, Error>;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn damaged(path: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::Damaged {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// What `meta` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Entries at or below this index are purged: never returned, their segments deleted.
    pub purged: Option<u64>,
    /// The owner's state (opaque here), written atomically with `purged`.
    pub state: Vec<u8>,
}

/// One segment file and the offset of each of its records.
struct Segment {
    first: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Byte offset of each record; record `i` holds index `first + i`.
    offsets: Vec<u64>,
    /// Bytes in use (the file length once synced).
    end: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }

    fn record_end(&self, i: usize) -> u64 {
        self.offsets.get(i + 1).copied().unwrap_or(self.end)
    }
}

/// The log: its directory, segments (oldest first) and meta.
pub struct Wal {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    meta: Meta,
    segment_bytes: u64,
}

fn segment_name(first: u64) -> String {
    format!("{first:0NAME_DIGITS$}.wal")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `fdatasync` of a segment: what makes appends durable (group commits and [`Wal::sync`]).
#[cfg(not(feature = "bug-skip-fsync"))]
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    file.sync_data()
}

/// The deliberate bug of the `bug-skip-fsync` test feature (see Cargo.toml): the pages are
/// pushed out with `sync_file_range`, as sled does, which a power loss can still undo.
#[cfg(feature = "bug-skip-fsync")]
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: sync_file_range on an open descriptor; offset 0 and length 0 = the whole file.
    match unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    super::durable::sync_dir(dir).map_err(io_at(dir))
}

/// Reserves a segment's blocks up front (`fallocate`, the file's length becomes `bytes`,
/// reading as zeros), so an append writes into blocks the file already has: its `fdatasync`
/// then has no file length or block allocation to commit with it, and stays a data flush
/// (etcd preallocates its segments for the same reason). Skipped, leaving a file that grows
/// with its appends, where the filesystem cannot (FUSE, some network filesystems) or when
/// less than twice `bytes` is free, so preallocation never is what fills a disk. A failure
/// part-way may leave the file longer, with zeros, which is still a valid segment.
fn preallocate(file: &File, bytes: u64) {
    use std::os::unix::io::AsRawFd;
    let Ok(len) = libc::off_t::try_from(bytes) else {
        return;
    };
    // SAFETY: fstatvfs fills the struct it is given, on a descriptor we own.
    let free = unsafe {
        let mut vfs: libc::statvfs = std::mem::zeroed();
        if libc::fstatvfs(file.as_raw_fd(), &mut vfs) != 0 {
            return;
        }
        vfs.f_bavail.saturating_mul(vfs.f_frsize)
    };
    if free / 2 < bytes {
        return;
    }
    // SAFETY: fallocate (mode 0: allocate and extend) on a descriptor we own.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "write-ahead log: no preallocation");
    }
}

/// Whether `bytes` are all zeros: the unused, preallocated end of a segment.
fn zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// Checks the records of a segment's bytes: their offsets and where the valid data ends
/// (before a torn tail, which only the last segment may have).
fn scan_records(path: &Path, bytes: &[u8], first: u64, is_last: bool) -> Result<(Vec<u64>, u64)> {
    let mut offsets = Vec::new();
    let mut at = HEADER_BYTES as usize;
    while at < bytes.len() {
        if bytes[at] == 0 && zeros(&bytes[at..]) {
            // Preallocated space: no record was written here (or none reached the disk).
            break;
        }
        match parse_record(&bytes[at..]) {
            Ok((index, payload)) => {
                let expected = first + offsets.len() as u64;
                if index != expected {
                    return Err(damaged(
                        path,
                        at as u64,
                        format!("record holds index {index}, expected {expected}"),
                    ));
                }
                offsets.push(at as u64);
                at += payload.end;
            }
            Err(bad) if is_last && bad.is_torn_tail(&bytes[at..]) => {
                // A crash leaves a record running past the end only with its own bytes after
                // it; a valid next record further on means its length was damaged.
                let next = first + offsets.len() as u64 + 1;
                if let Some(found) = find_record(bytes, at + 1, next) {
                    return Err(damaged(
                        path,
                        at as u64,
                        format!(
                            "{}, but record {next} follows at byte {found} (damage, not a torn \
                             tail)",
                            bad.reason
                        ),
                    ));
                }
                break;
            }
            Err(bad) => return Err(damaged(path, at as u64, bad.reason)),
        }
    }
    Ok((offsets, at as u64))
}

/// The offset, at or after `from`, of a valid record holding `index`, if any (the index is
/// compared before the checksum is computed, so the scan stays cheap).
fn find_record(bytes: &[u8], from: usize, index: u64) -> Option<usize> {
    let want = index.to_le_bytes();
    let header = RECORD_HEADER_BYTES as usize;
    (from..bytes
        .len()
        .saturating_sub(header + INDEX_BYTES as usize - 1))
        .find(|&p| {
            bytes[p + header..p + header + INDEX_BYTES as usize] == want
                && parse_record(&bytes[p..]).is_ok_and(|(got, _)| got == index)
        })
}

fn load_segment(path: &Path, first: u64, is_last: bool) -> Result<Segment> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    let len = file.metadata().map_err(io_at(path))?.len();
    if len > SEGMENT_FILE_BYTES_MAX {
        return Err(damaged(
            path,
            SEGMENT_FILE_BYTES_MAX,
            format!("{len} bytes: longer than any segment can be"),
        ));
    }
    if len < HEADER_BYTES {
        return Err(damaged(path, 0, "shorter than a segment header"));
    }
    let mut bytes = vec![0; len as usize];
    file.read_exact_at(&mut bytes, 0).map_err(io_at(path))?;
    check_segment_header(path, &bytes[..HEADER_BYTES as usize], first)?;
    let (offsets, end) = scan_records(path, &bytes, first, is_last)?;
    if end < len && !zeros(&bytes[end as usize..]) {
        tracing::warn!(
            file = %path.display(),
            offset = end,
            cut_bytes = len - end,
            "write-ahead log: cutting a torn tail left by a crash"
        );
        file.set_len(end).map_err(io_at(path))?;
        file.sync_all().map_err(io_at(path))?;
    }
    Ok(Segment {
        first,
        path: path.to_path_buf(),
        file: Arc::new(file),
        offsets,
        end,
    })
}

fn read_meta(path: &Path) -> Result<Meta> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Meta::default()),
        Err(e) => return Err(io_at(path)(e)),
    };
    let len = file.metadata().map_err(io_at(path))?.len();
    if !(META_HEADER_BYTES + 9..=WAL_META_BYTES_MAX).contains(&len) {
        return Err(damaged(path, 0, format!("meta file of {len} bytes")));
    }
    let mut bytes = vec![0; len as usize];
    file.read_exact_at(&mut bytes, 0).map_err(io_at(path))?;
    decode_meta(path, &bytes)
}

/// The segment files of `dir`, by first index; removes leftovers of interrupted segment
/// creations and meta writes (`*.tmp`: never renamed into place, so never acknowledged).
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let path = entry.map_err(io_at(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".tmp") {
            fs::remove_file(&path).map_err(io_at(&path))?;
        } else if let Some(first) = parse_segment_name(name) {
            found.push((first, path));
        } else if name.ends_with(".wal") {
            return Err(damaged(&path, 0, "not a segment file name"));
        }
    }
    found.sort();
    Ok(found)
}

impl Wal {
    /// Opens (or creates) the log in `dir`, rolling segments at [`WAL_SEGMENT_BYTES`].
    pub fn open(dir: &Path) -> Result<Wal> {
        Wal::open_with(dir, WAL_SEGMENT_BYTES)
    }

    /// Opens the log rolling segments at `segment_bytes` (smaller in tests).
    pub fn open_with(dir: &Path, segment_bytes: u64) -> Result<Wal> {
        assert!(
            (1..=WAL_SEGMENT_BYTES).contains(&segment_bytes),
            "segment size {segment_bytes} out of bounds"
        );
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(io_at(dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let meta_path = dir.join(META_FILE);
        let meta = read_meta(&meta_path)?;
        let names = list_segments(dir)?;
        let count = names.len();
        let mut segments: VecDeque<Segment> = VecDeque::with_capacity(count);
        for (i, (first, path)) in names.into_iter().enumerate() {
            if let Some(prev) = segments.back() {
                if first != prev.next_index() {
                    return Err(damaged(
                        &path,
                        0,
                        format!(
                            "starts at index {first}, but {} ends before index {}",
                            prev.path.display(),
                            prev.next_index()
                        ),
                    ));
                }
            }
            segments.push_back(load_segment(&path, first, i + 1 == count)?);
        }
        if let (Some(purged), Some(front)) = (meta.purged, segments.front()) {
            if front.first > purged.saturating_add(1) {
                return Err(damaged(
                    &front.path,
                    0,
                    format!(
                        "starts at index {} but only entries up to {purged} are purged (see {})",
                        front.first,
                        meta_path.display()
                    ),
                ));
            }
        }
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segments,
            meta,
            segment_bytes,
        };
        wal.delete_purged_segments()?;
        Ok(wal)
    }

    /// The meta file's contents.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Path of the meta file (for errors about its contents).
    pub fn meta_path(&self) -> PathBuf {
        self.dir.join(META_FILE)
    }

    /// First and last index held (inclusive), not counting purged entries.
    fn live(&self) -> Option<(u64, u64)> {
        let front = self.segments.front()?;
        let back = self.segments.back()?;
        let start = match self.meta.purged {
            Some(p) => front.first.max(p.saturating_add(1)),
            None => front.first,
        };
        let next = back.next_index();
        (next > start).then(|| (start, next - 1))
    }

    /// First index held, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.live().map(|(first, _)| first)
    }

    /// Last index held, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.live().map(|(_, last)| last)
    }

    /// The index the next append must carry; `None` while the log was never written.
    fn next_index(&self) -> Option<u64> {
        match self.segments.back() {
            Some(back) => Some(back.next_index()),
            None => self.meta.purged.map(|p| p.saturating_add(1)),
        }
    }

    /// Writes `records` (index, bytes) after the last one, without syncing: call
    /// [`Wal::sync`] before acknowledging them. Indexes must follow on from the last; records
    /// at or below the purged index are skipped (what they hold is purged already: openraft's
    /// storage Suite appends such entries after its start-up purges to the state machine's
    /// last applied entry, and the node never does).
    pub fn append<I, B>(&mut self, records: I) -> Result<()>
    where
        I: IntoIterator<Item = (u64, B)>,
        B: AsRef<[u8]>,
    {
        let mut buf = Vec::new();
        let mut pending = Vec::new();
        let mut next = self.next_index();
        for (index, bytes) in records {
            let bytes = bytes.as_ref();
            if self.meta.purged.is_some_and(|p| index <= p) {
                continue;
            }
            if bytes.len() as u64 + INDEX_BYTES > WAL_RECORD_BYTES_MAX {
                self.write_pending(&mut buf, &mut pending)?;
                return Err(Error::Misuse(format!(
                    "entry {index} of {} bytes is over the record limit",
                    bytes.len()
                )));
            }
            if next.is_some_and(|n| n != index) {
                self.write_pending(&mut buf, &mut pending)?;
                return Err(Error::Misuse(format!(
                    "append of index {index}, expected {}",
                    next.unwrap_or(0)
                )));
            }
            if self.needs_roll(buf.len()) {
                self.write_pending(&mut buf, &mut pending)?;
                self.roll(index)?;
            }
            if self.segments.is_empty() {
                self.create_segment(index)?;
            }
            pending.push(buf.len() as u64);
            encode_record(&mut buf, index, bytes);
            next = Some(index + 1);
        }
        self.write_pending(&mut buf, &mut pending)
    }

    fn needs_roll(&self, buffered: usize) -> bool {
        self.segments.back().is_some_and(|back| {
            (!back.offsets.is_empty() || buffered > 0)
                && back.end + buffered as u64 >= self.segment_bytes
        })
    }

    /// Writes buffered records to the active segment and indexes them.
    fn write_pending(&mut self, buf: &mut Vec<u8>, pending: &mut Vec<u64>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let back = self.segments.back_mut().expect("a segment to write to");
        if let Err(e) = back.file.write_all_at(buf, back.end) {
            // Best effort: do not leave a partial record where the next append would follow.
            let _ = back.file.set_len(back.end);
            return Err(io_at(&back.path)(e));
        }
        let base = back.end;
        back.offsets.extend(pending.drain(..).map(|o| base + o));
        back.end += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Syncs the active segment, then starts a new one at `first`.
    fn roll(&mut self, first: u64) -> Result<()> {
        self.sync()?;
        self.create_segment(first)
    }

    /// Creates segment `first` durably: header in a temp file, `sync_all`, rename, dir fsync.
    fn create_segment(&mut self, first: u64) -> Result<()> {
        let path = self.dir.join(segment_name(first));
        let tmp = self.dir.join(format!("{}.tmp", segment_name(first)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_at(&tmp))?;
        file.write_all_at(&segment_header(first), 0)
            .map_err(io_at(&tmp))?;
        preallocate(&file, self.segment_bytes);
        file.sync_all().map_err(io_at(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_at(&path))?;
        sync_dir(&self.dir)?;
        self.segments.push_back(Segment {
            first,
            path,
            file: Arc::new(file),
            offsets: Vec::new(),
            end: HEADER_BYTES,
        });
        Ok(())
    }

    /// Makes every append so far durable (`fdatasync` of the active segment; older segments
    /// were synced when the log rolled past them).
    pub fn sync(&mut self) -> Result<()> {
        match self.segments.back() {
            Some(back) => sync_data(&back.file).map_err(io_at(&back.path)),
            None => Ok(()),
        }
    }

    /// The active segment's file, for an owner that syncs outside its lock: an `fdatasync`
    /// of it has the effect of [`Wal::sync`] for every append made before it was taken.
    pub fn sync_handle(&self) -> Option<Arc<File>> {
        self.segments.back().map(|back| back.file.clone())
    }

    /// The records with indexes in `range` that the log holds, read from the files and
    /// checked again.
    pub fn read_range(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>> {
        let Some((first, last)) = self.live() else {
            return Ok(Vec::new());
        };
        let start = range.start.max(first);
        let end = range.end.min(last + 1);
        let mut out = Vec::with_capacity(end.saturating_sub(start).min(1024) as usize);
        let mut index = start;
        while index < end {
            let seg = &self.segments[self.segments.partition_point(|s| s.first <= index) - 1];
            let upto = end.min(seg.next_index());
            read_segment_span(seg, index, upto, &mut out)?;
            index = upto;
        }
        Ok(out)
    }

    /// Drops every entry at `index` and above: later segments are deleted, the segment
    /// holding `index` is cut after the entry before it; synced before returning.
    pub fn truncate_from(&mut self, index: u64) -> Result<()> {
        if self.meta.purged.is_some_and(|p| index <= p) {
            return Err(Error::Misuse(format!(
                "truncate from {index}: entries up to {} are purged",
                self.meta.purged.unwrap_or(0)
            )));
        }
        let mut deleted = false;
        while self.segments.back().is_some_and(|back| back.first >= index) {
            let back = self.segments.pop_back().expect("a segment");
            fs::remove_file(&back.path).map_err(io_at(&back.path))?;
            deleted = true;
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        if let Some(back) = self.segments.back_mut() {
            if back.next_index() > index {
                let keep = (index - back.first) as usize;
                let cut = back.offsets[keep];
                back.file.set_len(cut).map_err(io_at(&back.path))?;
                // The cut dropped the blocks after it; zeros read back where they were.
                preallocate(&back.file, self.segment_bytes);
                back.file.sync_all().map_err(io_at(&back.path))?;
                back.offsets.truncate(keep);
                back.end = cut;
            }
        }
        Ok(())
    }

    /// Drops every entry above `index`: [`Wal::truncate_from`] `index + 1`.
    pub fn truncate_after(&mut self, index: u64) -> Result<()> {
        self.truncate_from(index.saturating_add(1))
    }

    /// Purges every entry at or below `index`: writes meta (purged index and the owner's
    /// `state`) durably, then deletes the segments all of whose entries are purged.
    pub fn purge_upto(&mut self, index: u64, state: Vec<u8>) -> Result<()> {
        let purged = self.meta.purged.map_or(index, |p| p.max(index));
        self.write_meta(Meta {
            purged: Some(purged),
            state,
        })?;
        self.delete_purged_segments()
    }

    /// Deletes, oldest first, the segments all of whose entries are at or below the purged
    /// index, then fsyncs the directory. Also run at open, to finish a purge cut short by a
    /// crash after its meta write.
    fn delete_purged_segments(&mut self) -> Result<()> {
        let Some(purged) = self.meta.purged else {
            return Ok(());
        };
        let mut deleted = false;
        while self
            .segments
            .front()
            .is_some_and(|front| front.next_index() <= purged.saturating_add(1))
        {
            let front = self.segments.pop_front().expect("a segment");
            fs::remove_file(&front.path).map_err(io_at(&front.path))?;
            deleted = true;
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Replaces the owner's state in meta durably, keeping the purged index.
    pub fn save_state(&mut self, state: Vec<u8>) -> Result<()> {
        self.write_meta(Meta {
            purged: self.meta.purged,
            state,
        })
    }

    /// Writes meta atomically: `meta.tmp`, `sync_all`, rename over `meta`, dir fsync.
    fn write_meta(&mut self, meta: Meta) -> Result<()> {
        let bytes = encode_meta(&meta);
        if bytes.len() as u64 > WAL_META_BYTES_MAX {
            return Err(Error::Misuse(format!(
                "meta of {} bytes is over the limit",
                bytes.len()
            )));
        }
        let path = self.meta_path();
        super::durable::write_atomic(&path, &bytes).map_err(io_at(&path))?;
        self.meta = meta;
        Ok(())
    }
}

/// Reads records `start..upto` of `seg` with one read, checking each again.
fn read_segment_span(
    seg: &Segment,
    start: u64,
    upto: u64,
    out: &mut Vec<(u64, Vec<u8>)>,
) -> Result<()> {
    let a = (start - seg.first) as usize;
    let b = (upto - seg.first) as usize;
    let from = seg.offsets[a];
    let to = seg.record_end(b - 1);
    let mut bytes = vec![0; (to - from) as usize];
    seg.file
        .read_exact_at(&mut bytes, from)
        .map_err(io_at(&seg.path))?;
    let mut at = 0;
    for index in start..upto {
        let offset = from + at as u64;
        let (got, payload) =
            parse_record(&bytes[at..]).map_err(|bad| damaged(&seg.path, offset, bad.reason))?;
        if got != index {
            return Err(damaged(
                &seg.path,
                offset,
                format!("record holds index {got}, expected {index}"),
            ));
        }
        out.push((index, bytes[at + payload.start..at + payload.end].to_vec()));
        at += payload.end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::format::u32_at;
    use super::*;

    fn entries(range: Range<u64>) -> Vec<(u64, Vec<u8>)> {
        range
            .map(|i| (i, format!("entry {i}").into_bytes()))
            .collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        files.sort();
        files
    }

    fn flip_byte(path: &Path, offset: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[offset as usize] ^= 0x40;
        fs::write(path, bytes).unwrap();
    }

    fn damage_of(result: Result<Wal>) -> (PathBuf, u64, String) {
        match result {
            Err(Error::Damaged {
                path,
                offset,
                reason,
            }) => (path, offset, reason),
            Err(e) => panic!("expected damage, got {e}"),
            Ok(_) => panic!("expected damage, the log opened"),
        }
    }

    /// Entries, the owner's state and the purged index all survive a reopen.
    #[test]
    fn wal_reopen_restores_entries_state_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open_with(dir.path(), 256).unwrap();
            wal.append(entries(1..21)).unwrap();
            wal.sync().unwrap();
            wal.save_state(b"vote 7".to_vec()).unwrap();
            wal.purge_upto(5, b"vote 7, purged 5".to_vec()).unwrap();
        }
        let wal = Wal::open_with(dir.path(), 256).unwrap();
        assert_eq!(wal.meta().purged, Some(5));
        assert_eq!(wal.meta().state, b"vote 7, purged 5");
        assert_eq!((wal.first_index(), wal.last_index()), (Some(6), Some(20)));
        assert_eq!(wal.read_range(0..100).unwrap(), entries(6..21));
        assert_eq!(wal.read_range(8..10).unwrap(), entries(8..10));
    }

    /// A record cut mid-way at the end of the last segment is a torn tail: it is cut away,
    /// the entries before it survive and appends go on after them.
    #[test]
    fn wal_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(dir.path()).unwrap();
            wal.append(entries(0..10)).unwrap();
            wal.sync().unwrap();
        }
        let last = segment_files(dir.path()).pop().unwrap();
        // The last 3 bytes of the last record never reached the disk: zeros, in the
        // segment's preallocated space.
        let used = used_len(&last);
        OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .write_all_at(&[0; 3], used - 3)
            .unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        assert_eq!(wal.read_range(0..100).unwrap(), entries(0..9));
        wal.append(entries(9..12)).unwrap();
        drop(wal);
        let wal = Wal::open(dir.path()).unwrap();
        assert_eq!(wal.read_range(0..100).unwrap(), entries(0..12));
    }

    /// The length of a file up to its last non-zero byte: a segment's written records.
    fn used_len(path: &Path) -> u64 {
        let bytes = fs::read(path).unwrap();
        bytes
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |p| p as u64 + 1)
    }

    /// Garbage after the last record is a torn tail too: it is cut. Zeros there are the
    /// segment's preallocated space: kept, and the next append goes where they start.
    #[test]
    fn wal_garbage_tail_is_cut() {
        for (tail, cut) in [
            (&b"garbage that is no record"[..], true),
            (&[0u8; 40][..], false),
            (&[1, 2, 3][..], true),
        ] {
            let dir = tempfile::tempdir().unwrap();
            {
                let mut wal = Wal::open_with(dir.path(), 4096).unwrap();
                wal.append(entries(0..4)).unwrap();
                wal.sync().unwrap();
            }
            let last = segment_files(dir.path()).pop().unwrap();
            let used = used_len(&last);
            let file = OpenOptions::new().write(true).open(&last).unwrap();
            file.write_all_at(tail, used).unwrap();
            let len = fs::metadata(&last).unwrap().len();
            let mut wal = Wal::open_with(dir.path(), 4096).unwrap();
            assert_eq!(wal.read_range(0..100).unwrap(), entries(0..4));
            let after = fs::metadata(&last).unwrap().len();
            assert_eq!(after, if cut { used } else { len }, "{tail:?}");
            wal.append(entries(4..6)).unwrap();
            wal.sync().unwrap();
            drop(wal);
            let wal = Wal::open_with(dir.path(), 4096).unwrap();
            assert_eq!(wal.read_range(0..100).unwrap(), entries(0..6));
        }
    }

    /// Where the filesystem can, a new segment is preallocated to the segment size, and a
    /// log of several preallocated segments (zeros after each one's records) reopens whole.
    #[test]
    fn wal_segments_are_preallocated() {
        let dir = tempfile::tempdir().unwrap();
        let probe = File::create(dir.path().join("probe")).unwrap();
        // SAFETY: fallocate on a descriptor we own.
        let can =
            unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&probe), 0, 0, 4096) } == 0;
        drop(probe);
        fs::remove_file(dir.path().join("probe")).unwrap();
        {
            let mut wal = Wal::open_with(dir.path(), 300).unwrap();
            wal.append(entries(0..30)).unwrap();
            wal.sync().unwrap();
        }
        let files = segment_files(dir.path());
        assert!(files.len() > 2, "{files:?}");
        if can {
            // Every segment holds its 300 bytes; the newest, part full, holds zeros after.
            for f in &files {
                let len = fs::metadata(f).unwrap().len();
                assert!(len >= 300, "{}: {len} bytes", f.display());
            }
            let last = files.last().unwrap();
            assert!(used_len(last) < fs::metadata(last).unwrap().len());
        } else {
            println!("fallocate not supported here: segments grow with their appends");
        }
        let mut wal = Wal::open_with(dir.path(), 300).unwrap();
        assert_eq!(wal.read_range(0..100).unwrap(), entries(0..30));
        wal.truncate_from(25).unwrap();
        wal.append(entries(25..40)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let wal = Wal::open_with(dir.path(), 300).unwrap();
        assert_eq!(wal.read_range(0..100).unwrap(), entries(0..40));
    }

    /// A flipped byte inside a record that has more records after it is refused, naming the
    /// file and the record's offset, in the last segment and in an earlier one.
    #[test]
    fn wal_flipped_byte_mid_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open_with(dir.path(), 200).unwrap();
            wal.append(entries(0..20)).unwrap();
            wal.sync().unwrap();
        }
        let files = segment_files(dir.path());
        assert!(files.len() > 2, "{files:?}");
        for file in [&files[0], files.last().unwrap()] {
            let bytes = fs::read(file).unwrap();
            let second = HEADER_BYTES + 8 + u64::from(u32_at(&bytes, HEADER_BYTES as usize));
            let copy = tempfile::tempdir().unwrap();
            for f in &files {
                fs::copy(f, copy.path().join(f.file_name().unwrap())).unwrap();
            }
            let target = copy.path().join(file.file_name().unwrap());
            flip_byte(&target, second + 12);
            let (path, offset, reason) = damage_of(Wal::open_with(copy.path(), 200));
            assert_eq!((path, offset), (target.clone(), second), "{reason}");
            let shown = Wal::open_with(copy.path(), 200).err().unwrap().to_string();
            assert!(shown.contains(&format!("{}", target.display())), "{shown}");
            assert!(shown.contains(&format!("byte {second}")), "{shown}");
        }
    }

    /// A damaged record length in an earlier segment (here: far past the file's end) is
    /// refused at the record's offset, before anything is allocated for it.
    #[test]
    fn wal_bad_length_mid_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open_with(dir.path(), 200).unwrap();
            wal.append(entries(0..20)).unwrap();
        }
        let first = segment_files(dir.path()).remove(0);
        flip_byte(&first, HEADER_BYTES + 3);
        let (path, offset, reason) = damage_of(Wal::open_with(dir.path(), 200));
        assert_eq!((path, offset), (first, HEADER_BYTES), "{reason}");
        assert!(reason.contains("past the end"), "{reason}");
    }

    /// A damaged record length in the last segment that makes the record run past the end of
    /// the file is refused when valid records follow it: it is no torn tail, and cutting it
    /// would drop acknowledged entries.
    #[test]
    fn wal_bad_length_in_last_segment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(dir.path()).unwrap();
            wal.append(entries(0..10)).unwrap();
            wal.sync().unwrap();
        }
        let last = segment_files(dir.path()).pop().unwrap();
        let bytes = fs::read(&last).unwrap();
        let second = HEADER_BYTES + 8 + u64::from(u32_at(&bytes, HEADER_BYTES as usize));
        flip_byte(&last, second + 2);
        let (path, offset, reason) = damage_of(Wal::open(dir.path()));
        assert_eq!((path, offset), (last, second), "{reason}");
        assert!(reason.contains("not a torn tail"), "{reason}");
    }

    /// A damaged segment header is refused, even in the last segment.
    #[test]
    fn wal_bad_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(dir.path()).unwrap();
            wal.append(entries(0..3)).unwrap();
        }
        let last = segment_files(dir.path()).pop().unwrap();
        flip_byte(&last, 14);
        let (path, offset, _) = damage_of(Wal::open(dir.path()));
        assert_eq!((path, offset), (last, 0));
    }

    /// A flipped byte in the meta file is refused naming it; a missing segment between two
    /// others is refused as a gap.
    #[test]
    fn wal_damaged_meta_and_gaps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open_with(dir.path(), 200).unwrap();
            wal.append(entries(0..20)).unwrap();
            wal.save_state(b"some vote".to_vec()).unwrap();
        }
        let meta = dir.path().join(META_FILE);
        flip_byte(&meta, META_HEADER_BYTES + 10);
        let (path, offset, reason) = damage_of(Wal::open_with(dir.path(), 200));
        assert_eq!((path, offset), (meta.clone(), 16), "{reason}");
        fs::remove_file(&meta).unwrap();
        let files = segment_files(dir.path());
        fs::remove_file(&files[1]).unwrap();
        let (path, _, reason) = damage_of(Wal::open_with(dir.path(), 200));
        assert_eq!(path, files[2], "{reason}");
    }

    /// Appends roll over to new segments at the size limit; a purge deletes exactly the
    /// segments whose entries are all purged, and everything after stays readable.
    #[test]
    fn wal_rollover_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open_with(dir.path(), 200).unwrap();
        for i in 0..30 {
            wal.append(entries(i..i + 1)).unwrap();
        }
        let files = segment_files(dir.path());
        assert!(files.len() >= 4, "{files:?}");
        let second_first = parse_segment_name(files[1].file_name().unwrap().to_str().unwrap());
        let second_first = second_first.unwrap();
        wal.purge_upto(second_first, Vec::new()).unwrap();
        assert_eq!(segment_files(dir.path()), files[1..].to_vec());
        assert_eq!(wal.first_index(), Some(second_first + 1));
        assert_eq!(
            wal.read_range(0..100).unwrap(),
            entries(second_first + 1..30)
        );
        wal.purge_upto(40, Vec::new()).unwrap();
        assert!(segment_files(dir.path()).is_empty());
        assert_eq!(wal.last_index(), None);
        wal.append(entries(30..31)).unwrap();
        assert_eq!(
            wal.last_index(),
            None,
            "an entry at or below the purged index is skipped"
        );
        assert!(
            wal.append(entries(45..46)).is_err(),
            "a gap after the purge"
        );
        wal.append(entries(41..43)).unwrap();
        drop(wal);
        let wal = Wal::open_with(dir.path(), 200).unwrap();
        assert_eq!(wal.read_range(0..100).unwrap(), entries(41..43));
    }

    /// A purge cut short by a crash after its meta write (old segments still on disk) is
    /// finished at open: the old segments go, and appends follow on from the purged index.
    #[test]
    fn wal_interrupted_purge_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let saved = tempfile::tempdir().unwrap();
        let mut wal = Wal::open_with(dir.path(), 200).unwrap();
        wal.append(entries(0..30)).unwrap();
        let files = segment_files(dir.path());
        for f in &files {
            fs::copy(f, saved.path().join(f.file_name().unwrap())).unwrap();
        }
        wal.purge_upto(35, b"purged".to_vec()).unwrap();
        drop(wal);
        for f in &files {
            fs::copy(saved.path().join(f.file_name().unwrap()), f).unwrap();
        }
        let mut wal = Wal::open_with(dir.path(), 200).unwrap();
        assert!(segment_files(dir.path()).is_empty());
        assert_eq!(wal.last_index(), None);
        wal.append(entries(36..38)).unwrap();
        assert_eq!(wal.read_range(0..100).unwrap(), entries(36..38));
    }

    /// truncate_after drops later entries (whole segments and a cut in one), appends follow
    /// on from the cut, and a reopen sees the same log.
    #[test]
    fn wal_truncate_after_then_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open_with(dir.path(), 200).unwrap();
        wal.append(entries(0..30)).unwrap();
        let before = segment_files(dir.path()).len();
        wal.truncate_after(12).unwrap();
        assert_eq!(wal.last_index(), Some(12));
        assert!(segment_files(dir.path()).len() < before);
        assert!(wal.append(entries(20..21)).is_err(), "a gap after the cut");
        let replaced: Vec<(u64, Vec<u8>)> = (13..16).map(|i| (i, vec![i as u8; 5])).collect();
        wal.append(replaced.clone()).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let mut wal = Wal::open_with(dir.path(), 200).unwrap();
        let mut expected = entries(0..13);
        expected.extend(replaced);
        assert_eq!(wal.read_range(0..100).unwrap(), expected);
        wal.truncate_from(0).unwrap();
        assert_eq!(wal.last_index(), None);
        assert!(segment_files(dir.path()).is_empty());
    }
}
