//! The FUSE filesystem: a passthrough over a backing directory that keeps every unsynced
//! change in memory and forgets it on [`State::crash`].
//!
//! Inodes are numbered by this filesystem (a counter), mapped from the backing file's
//! `(dev, ino)`, and carry the backing path they were last seen at. All state sits behind
//! one mutex shared by the FUSE session thread and the control socket, so a crash is atomic
//! with respect to every filesystem call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

use crate::dirty::Dirty;

/// Attributes and entries are never cached by the kernel: after a crash it must ask again.
const TTL: Duration = Duration::ZERO;
/// Every open file bypasses the page cache (FOPEN_DIRECT_IO), so no stale page survives a
/// crash and every write reaches this filesystem.
const FOPEN_DIRECT_IO: u32 = 1 << 0;
/// The FUSE root inode.
const ROOT: u64 = 1;
/// Largest single read served (the kernel asks for at most max_read, 128 KiB by default).
const READ_BYTES_MAX: u32 = 1 << 20;

/// What a crash dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Files whose unsynced data or size changes were dropped.
    pub files: u64,
    /// Bytes of unsynced data dropped.
    pub bytes: u64,
    /// Directory entries removed (created or renamed in since their directory's fsync).
    pub entries: u64,
}

/// One inode.
#[derive(Debug)]
struct Node {
    /// Where the backing file was last seen.
    path: PathBuf,
    /// The backing file, open read-write while the node is open or dirty.
    file: Option<Arc<File>>,
    /// Open handles.
    opens: u64,
    /// Unsynced changes.
    dirty: Option<Dirty>,
}

/// A snapshot of a directory's entries taken at opendir.
type Listing = Vec<(u64, FileType, OsString)>;

/// The filesystem's state.
#[derive(Debug)]
pub struct State {
    nodes: HashMap<u64, Node>,
    /// Backing `(dev, ino)` to our inode.
    index: HashMap<(u64, u64), u64>,
    next_ino: u64,
    /// Directory entries created since their directory's last fsyncdir, by directory inode.
    pending: BTreeMap<u64, BTreeSet<OsString>>,
    /// Open file handles: inode and whether opened O_APPEND.
    handles: HashMap<u64, (u64, bool)>,
    dirs: HashMap<u64, Listing>,
    next_fh: u64,
    /// Dirty bytes held, over all files, and the limit.
    dirty_bytes: u64,
    dirty_bytes_max: u64,
}

impl State {
    /// A fresh state over the backing directory `root`.
    pub fn new(root: &Path, dirty_bytes_max: u64) -> io::Result<State> {
        let meta = fs::metadata(root)?;
        if !meta.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        let mut state = State {
            nodes: HashMap::new(),
            index: HashMap::new(),
            next_ino: ROOT + 1,
            pending: BTreeMap::new(),
            handles: HashMap::new(),
            dirs: HashMap::new(),
            next_fh: 1,
            dirty_bytes: 0,
            dirty_bytes_max,
        };
        state.nodes.insert(
            ROOT,
            Node {
                path: root.to_path_buf(),
                file: None,
                opens: 0,
                dirty: None,
            },
        );
        state.index.insert((meta.dev(), meta.ino()), ROOT);
        Ok(state)
    }

    /// Dirty bytes held now.
    pub fn dirty_bytes(&self) -> u64 {
        self.dirty_bytes
    }

    /// Directory entries not yet made durable by a directory fsync.
    pub fn pending_entries(&self) -> u64 {
        self.pending.values().map(|s| s.len() as u64).sum()
    }

    /// Simulates a power loss: forgets every unsynced write and size change, and removes
    /// from the backing directory every entry created since its directory's last fsync.
    pub fn crash(&mut self) -> Dropped {
        let mut dropped = Dropped::default();
        for node in self.nodes.values_mut() {
            if let Some(d) = node.dirty.take() {
                dropped.files += 1;
                dropped.bytes += d.bytes();
            }
        }
        self.dirty_bytes = 0;
        // Deepest directories first is not needed: a parent removed first takes its
        // children with it, and their removal then finds nothing.
        for (dir, names) in std::mem::take(&mut self.pending) {
            let Some(parent) = self.nodes.get(&dir).map(|n| n.path.clone()) else {
                continue;
            };
            for name in names {
                let path = parent.join(&name);
                self.forget_tree(&path);
                let removed = match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                    Ok(_) => fs::remove_file(&path),
                    Err(e) => Err(e),
                };
                if removed.is_ok() {
                    // Logged for whoever reads the mount's log after a failed test.
                    eprintln!("raftline-lossyfs: crash removed {}", path.display());
                    dropped.entries += 1;
                }
            }
        }
        dropped
    }

    /// Drops the index entries of everything at and under `path` (about to be removed), so a
    /// backing inode number reused later gets a fresh inode here.
    fn forget_tree(&mut self, path: &Path) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(path) {
                for e in entries.flatten() {
                    self.forget_tree(&e.path());
                }
            }
        }
        if meta.nlink() <= 1 || meta.is_dir() {
            if let Some(ino) = self.index.remove(&(meta.dev(), meta.ino())) {
                self.drop_dirty(ino);
            }
        }
    }

    fn drop_dirty(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            if let Some(d) = node.dirty.take() {
                self.dirty_bytes -= d.bytes();
            }
        }
    }

    fn path(&self, ino: u64) -> Result<PathBuf, i32> {
        self.nodes
            .get(&ino)
            .map(|n| n.path.clone())
            .ok_or(libc::ENOENT)
    }

    /// Our inode for the backing file at `path` (allocated on first sight).
    fn inode_at(&mut self, path: &Path, meta: &fs::Metadata) -> u64 {
        let key = (meta.dev(), meta.ino());
        if let Some(&ino) = self.index.get(&key) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = path.to_path_buf();
            }
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.index.insert(key, ino);
        self.nodes.insert(
            ino,
            Node {
                path: path.to_path_buf(),
                file: None,
                opens: 0,
                dirty: None,
            },
        );
        ino
    }

    /// The attributes of inode `ino` as readers see them (dirty size included).
    fn attr(&self, ino: u64) -> Result<FileAttr, i32> {
        let node = self.nodes.get(&ino).ok_or(libc::ENOENT)?;
        let meta = match &node.file {
            Some(f) => f.metadata(),
            None => fs::symlink_metadata(&node.path),
        }
        .map_err(errno)?;
        let mut attr = to_attr(ino, &meta);
        if let Some(d) = &node.dirty {
            attr.size = d.size;
            attr.blocks = d.size.div_ceil(512);
        }
        Ok(attr)
    }

    /// Looks `name` up under `parent`: its inode and attributes.
    fn lookup_at(&mut self, parent: u64, name: &OsStr) -> Result<FileAttr, i32> {
        let path = self.path(parent)?.join(name);
        let meta = fs::symlink_metadata(&path).map_err(errno)?;
        let ino = self.inode_at(&path, &meta);
        self.attr(ino)
    }

    /// Records a new entry `name` in directory `parent`: volatile until the directory's fsync.
    fn created(&mut self, parent: u64, name: &OsStr) {
        self.pending
            .entry(parent)
            .or_default()
            .insert(name.to_os_string());
    }

    /// Forgets a pending entry (removed or renamed away: treated as durable at once).
    fn removed(&mut self, parent: u64, name: &OsStr) {
        if let Some(set) = self.pending.get_mut(&parent) {
            set.remove(name);
            if set.is_empty() {
                self.pending.remove(&parent);
            }
        }
    }

    /// Opens the backing file of `ino` read-write (read-only when it cannot be written).
    fn open_backing(&mut self, ino: u64) -> Result<Arc<File>, i32> {
        let node = self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        if let Some(f) = &node.file {
            return Ok(f.clone());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&node.path)
            .or_else(|_| File::open(&node.path))
            .map_err(errno)?;
        let file = Arc::new(file);
        node.file = Some(file.clone());
        Ok(file)
    }

    /// The dirty state of `ino`, made on first use from the backing file's length.
    fn dirty_mut(&mut self, ino: u64) -> Result<&mut Dirty, i32> {
        let file = self.open_backing(ino)?;
        let node = self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        if node.dirty.is_none() {
            let len = file.metadata().map_err(errno)?.len();
            node.dirty = Some(Dirty::new(len));
        }
        Ok(node.dirty.as_mut().expect("just set"))
    }

    fn write_at(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<(), i32> {
        let growth = Dirty::growth(data.len());
        if self.dirty_bytes + growth > self.dirty_bytes_max {
            return Err(libc::ENOSPC);
        }
        let d = self.dirty_mut(ino)?;
        let before = d.bytes();
        d.write(offset, data);
        let after = d.bytes();
        self.dirty_bytes = self.dirty_bytes + after - before;
        Ok(())
    }

    fn truncate(&mut self, ino: u64, size: u64) -> Result<(), i32> {
        let d = self.dirty_mut(ino)?;
        let before = d.bytes();
        d.truncate(size);
        let after = d.bytes();
        self.dirty_bytes = self.dirty_bytes + after - before;
        Ok(())
    }

    fn read_at(&mut self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
        let file = self.open_backing(ino)?;
        let mut buf = vec![0u8; size.min(READ_BYTES_MAX) as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(errno(e)),
            }
        }
        let node = self.nodes.get(&ino).ok_or(libc::ENOENT)?;
        match &node.dirty {
            Some(d) => {
                let n = d.overlay(offset, &mut buf);
                buf.truncate(n);
            }
            None => buf.truncate(got),
        }
        Ok(buf)
    }

    /// Writes the dirty state of `ino` into its backing file and syncs it there.
    fn sync_file(&mut self, ino: u64, datasync: bool) -> Result<(), i32> {
        let node = self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        let Some(d) = node.dirty.take() else {
            return Ok(());
        };
        let Some(file) = node.file.clone() else {
            node.dirty = Some(d);
            return Err(libc::EBADF);
        };
        let result = (|| -> io::Result<()> {
            if let Some(floor) = d.floor {
                file.set_len(floor)?;
            }
            for (offset, bytes) in d.extents() {
                file.write_all_at(bytes, offset)?;
            }
            file.set_len(d.size)?;
            if datasync {
                file.sync_data()
            } else {
                file.sync_all()
            }
        })();
        match result {
            Ok(()) => {
                self.dirty_bytes -= d.bytes();
                self.release_file_if_idle(ino);
                Ok(())
            }
            Err(e) => {
                if let Some(node) = self.nodes.get_mut(&ino) {
                    node.dirty = Some(d);
                }
                Err(errno(e))
            }
        }
    }

    fn release_file_if_idle(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            if node.opens == 0 && node.dirty.is_none() {
                node.file = None;
            }
        }
    }

    /// Rewrites the paths of `from` and everything under it to live under `to`.
    fn moved(&mut self, from: &Path, to: &Path) {
        for node in self.nodes.values_mut() {
            if let Ok(rest) = node.path.strip_prefix(from) {
                node.path = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
            }
        }
    }

    /// Before `path` is unlinked or replaced: when its last link goes, its index entry and
    /// dirty data go too (an open handle keeps reading what it had).
    fn unlinking(&mut self, path: &Path) {
        if let Ok(meta) = fs::symlink_metadata(path) {
            if meta.nlink() <= 1 || meta.is_dir() {
                if let Some(ino) = self.index.remove(&(meta.dev(), meta.ino())) {
                    let idle = self.nodes.get(&ino).is_some_and(|n| n.opens == 0);
                    if idle {
                        self.drop_dirty(ino);
                        self.release_file_if_idle(ino);
                    }
                }
            }
        }
    }
}

fn errno(e: io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn kind(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn to_attr(ino: u64, m: &fs::Metadata) -> FileAttr {
    FileAttr {
        ino,
        size: m.size(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: time(m.ctime(), m.ctime_nsec()),
        kind: kind(m.mode()),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: m.blksize() as u32,
        flags: 0,
    }
}

fn cstring(path: &Path) -> Result<std::ffi::CString, i32> {
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)
}

fn timespec(t: Option<TimeOrNow>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            }
        }
    }
}

/// The FUSE side: every call locks the shared state.
pub struct LossyFs {
    state: Arc<Mutex<State>>,
}

impl LossyFs {
    /// A filesystem over `state`.
    pub fn new(state: Arc<Mutex<State>>) -> LossyFs {
        LossyFs { state }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves state that is still consistent enough to
        // serve (each call updates it in one step), so a poisoned lock is taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Creates the backing object of a new entry, then looks it up.
fn make_entry(
    st: &mut State,
    parent: u64,
    name: &OsStr,
    make: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<FileAttr, i32> {
    let path = st.path(parent)?.join(name);
    make(&path).map_err(errno)?;
    st.created(parent, name);
    st.lookup_at(parent, name)
}

impl Filesystem for LossyFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.lock().lookup_at(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.lock().attr(ino) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut st = self.lock();
        let result = (|| -> Result<FileAttr, i32> {
            let path = st.path(ino)?;
            // Mode, owner and times go straight to the backing file (modelled as durable).
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(errno)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid).map_err(errno)?;
            }
            if atime.is_some() || mtime.is_some() {
                let c = cstring(&path)?;
                let times = [timespec(atime), timespec(mtime)];
                // SAFETY: a valid NUL-terminated path and a two-element timespec array.
                let rc = unsafe {
                    libc::utimensat(
                        libc::AT_FDCWD,
                        c.as_ptr(),
                        times.as_ptr(),
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                };
                if rc != 0 {
                    return Err(errno(io::Error::last_os_error()));
                }
            }
            if let Some(size) = size {
                st.truncate(ino, size)?;
            }
            st.attr(ino)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let result = self
            .lock()
            .path(ino)
            .and_then(|p| fs::read_link(p).map_err(errno));
        match result {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            reply.error(libc::EPERM);
            return;
        }
        let result = make_entry(&mut self.lock(), parent, name, |p| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode & !umask & 0o7777)
                .open(p)
                .map(drop)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = make_entry(&mut self.lock(), parent, name, |p| {
            fs::create_dir(p)?;
            fs::set_permissions(p, fs::Permissions::from_mode(mode & !umask & 0o7777))
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        let result = st.path(parent).and_then(|dir| {
            let path = dir.join(name);
            st.unlinking(&path);
            fs::remove_file(&path).map_err(errno)
        });
        match result {
            Ok(()) => {
                st.removed(parent, name);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        let result = st.path(parent).and_then(|dir| {
            let path = dir.join(name);
            fs::remove_dir(&path).map_err(errno)?;
            Ok(path)
        });
        match result {
            Ok(_) => {
                st.removed(parent, name);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = make_entry(&mut self.lock(), parent, link_name, |p| {
            std::os::unix::fs::symlink(target, p)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if flags != 0 {
            reply.error(libc::EINVAL);
            return;
        }
        let mut st = self.lock();
        let result = (|| -> Result<(), i32> {
            let from = st.path(parent)?.join(name);
            let to = st.path(newparent)?.join(newname);
            let replaces = fs::symlink_metadata(&to).is_ok();
            if replaces {
                st.unlinking(&to);
            }
            fs::rename(&from, &to).map_err(errno)?;
            st.moved(&from, &to);
            st.removed(parent, name);
            // A new name is volatile until its directory's fsync; replacing an existing name
            // is modelled as atomic and durable (a real crash leaves the old or the new file,
            // and this model has no old file to bring back).
            if replaces {
                st.removed(newparent, newname);
            } else {
                st.created(newparent, newname);
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        let result = st
            .path(ino)
            .and_then(|src| make_entry(&mut st, newparent, newname, |p| fs::hard_link(&src, p)));
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let mut st = self.lock();
        match st.open_backing(ino) {
            Ok(_) => {
                let fh = st.next_fh;
                st.next_fh += 1;
                st.handles.insert(fh, (ino, flags & libc::O_APPEND != 0));
                if let Some(node) = st.nodes.get_mut(&ino) {
                    node.opens += 1;
                }
                reply.opened(fh, FOPEN_DIRECT_IO);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        match self.lock().read_at(ino, offset.max(0) as u64, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut st = self.lock();
        let append = st.handles.get(&fh).is_some_and(|h| h.1);
        let offset = if append {
            match st.dirty_mut(ino) {
                Ok(d) => d.size,
                Err(e) => {
                    reply.error(e);
                    return;
                }
            }
        } else {
            offset.max(0) as u64
        };
        match st.write_at(ino, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lo: u64, reply: ReplyEmpty) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        st.handles.remove(&fh);
        if let Some(node) = st.nodes.get_mut(&ino) {
            node.opens = node.opens.saturating_sub(1);
        }
        st.release_file_if_idle(ino);
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, datasync: bool, reply: ReplyEmpty) {
        match self.lock().sync_file(ino, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let mut st = self.lock();
        let result = (|| -> Result<Listing, i32> {
            let path = st.path(ino)?;
            let parent = path
                .parent()
                .filter(|_| ino != ROOT)
                .and_then(|p| fs::symlink_metadata(p).ok())
                .and_then(|m| st.index.get(&(m.dev(), m.ino())).copied())
                .unwrap_or(ROOT);
            let mut listing = vec![
                (ino, FileType::Directory, OsString::from(".")),
                (parent, FileType::Directory, OsString::from("..")),
            ];
            for e in fs::read_dir(&path).map_err(errno)? {
                let e = e.map_err(errno)?;
                let ft = e.file_type().map_err(errno)?;
                let k = if ft.is_dir() {
                    FileType::Directory
                } else if ft.is_symlink() {
                    FileType::Symlink
                } else {
                    FileType::RegularFile
                };
                // d_ino only: the inode a lookup gives is what stat reports.
                listing.push((e.ino().max(2), k, e.file_name()));
            }
            Ok(listing)
        })();
        match result {
            Ok(listing) => {
                let fh = st.next_fh;
                st.next_fh += 1;
                st.dirs.insert(fh, listing);
                reply.opened(fh, 0);
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let st = self.lock();
        let Some(listing) = st.dirs.get(&fh) else {
            reply.error(libc::EBADF);
            return;
        };
        for (i, (ino, kind, name)) in listing.iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(*ino, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        self.lock().dirs.remove(&fh);
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        let result = st
            .path(ino)
            .and_then(|p| File::open(p).and_then(|d| d.sync_all()).map_err(errno));
        match result {
            Ok(()) => {
                st.pending.remove(&ino);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    /// `fallocate` mode 0 (allocate, extending the size) is modelled as an unsynced size
    /// change, like an extending `truncate`: the new bytes read as zeros and the size is lost
    /// in a crash unless the file is synced after. Which blocks back it is the backing
    /// filesystem's business. Other modes (keep size, punch hole, ...) get EOPNOTSUPP.
    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(libc::EOPNOTSUPP);
        }
        let (Ok(offset), Ok(length)) = (u64::try_from(offset), u64::try_from(length)) else {
            return reply.error(libc::EINVAL);
        };
        let Some(end) = offset.checked_add(length) else {
            return reply.error(libc::EFBIG);
        };
        let mut st = self.lock();
        let result = st.attr(ino).and_then(|attr| {
            if end > attr.size {
                st.truncate(ino, end)
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let root = self.lock().path(ROOT);
        let result = root.and_then(|p| {
            let c = cstring(&p)?;
            // SAFETY: statvfs fills the zeroed struct for a valid NUL-terminated path.
            let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
            if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
                return Err(errno(io::Error::last_os_error()));
            }
            Ok(s)
        });
        match result {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        // Permissions are checked by the kernel (default_permissions).
        reply.ok();
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut st = self.lock();
        let result = (|| -> Result<(FileAttr, u64), i32> {
            let path = st.path(parent)?.join(name);
            let existed = fs::symlink_metadata(&path).is_ok();
            OpenOptions::new()
                .write(true)
                .create(true)
                .create_new(flags & libc::O_EXCL != 0)
                .mode(mode & !umask & 0o7777)
                .open(&path)
                .map_err(errno)?;
            if !existed {
                st.created(parent, name);
            }
            let attr = st.lookup_at(parent, name)?;
            if existed && flags & libc::O_TRUNC != 0 {
                st.truncate(attr.ino, 0)?;
            }
            st.open_backing(attr.ino)?;
            let fh = st.next_fh;
            st.next_fh += 1;
            st.handles
                .insert(fh, (attr.ino, flags & libc::O_APPEND != 0));
            if let Some(node) = st.nodes.get_mut(&attr.ino) {
                node.opens += 1;
            }
            Ok((st.attr(attr.ino)?, fh))
        })();
        match result {
            Ok((attr, fh)) => reply.created(&TTL, &attr, 0, fh, FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }
}
