//! raftline-lossyfs: a FUSE passthrough filesystem that loses what was not synced, the way a
//! power loss does, on command. It plays the part LazyFS plays in Jepsen's tests, written
//! here so it builds from crates.io alone and runs in CI.
//!
//! ## What is modelled
//!
//! - **File data and size.** A `write`, or a size change (`truncate`, `O_TRUNC`), is held in
//!   memory per inode ([`dirty::Dirty`]) over the backing file and served to readers at once.
//!   Only an `fsync` or `fdatasync` of that file writes it into the backing file and syncs it
//!   there (both persist data and size). `sync_file_range(2)` never reaches a FUSE filesystem,
//!   so data "flushed" that way stays volatile, as it does on a real disk with a volatile
//!   write cache (sled 0.34 flushes that way; it also calls `fsync` from a periodic thread).
//!   `close`, `sync(2)` and `syncfs(2)` make nothing durable either.
//! - **New directory entries.** A file, directory, symlink or hard link created in a
//!   directory, or a file renamed into it under a new name, is removed by a crash unless the
//!   directory was fsynced (`fsyncdir`) after it appeared. An `fsync` of the file itself
//!   does not make its name durable (POSIX does not promise it; ext4 happens to).
//! - **A crash** ([`fs::State::crash`], the `crash` control request) drops every unsynced
//!   change and removes every volatile entry, atomically with respect to filesystem calls,
//!   and answers only when done. The processes using the mount should be dead by then (the
//!   harness kills them first): their open handles would go on seeing the dropped state.
//!
//! ## What is not modelled (CAVEATS)
//!
//! - Unlink, rmdir and rename-away are durable at once (a crash never brings a removed name
//!   back); a rename over an existing name is durable at once (real filesystems leave the old
//!   or the new file; this model has no copy of the old one). Mode, owner and times are
//!   written straight through. Extended attributes, special files, `fallocate` other than
//!   mode 0 (allocate and extend, modelled as an extending `truncate`) and
//!   `RENAME_EXCHANGE`/`RENAME_NOREPLACE` are not supported.
//! - No torn writes: a write is kept or dropped whole, and every unsynced write of a file is
//!   dropped together (a real disk may keep some of them, in any order). No reordering
//!   between files either: what was synced is kept, everything else is lost.
//! - The inode table grows with every file seen (no `forget`); fine for a test run.
//!
//! ## Limits
//!
//! Dirty data is bounded by `--dirty-bytes-max` (default [`DIRTY_BYTES_MAX_DEFAULT`]); a
//! write past it fails with `ENOSPC` rather than growing memory without bound. Mount options:
//! every open is `direct_io` (no page cache to go stale after a crash), attribute and entry
//! TTLs are zero, no writeback cache.

pub mod control;
pub mod dirty;
pub mod fs;
pub mod mount;

/// Default bound on unsynced data held in memory, over all files of one mount.
pub const DIRTY_BYTES_MAX_DEFAULT: u64 = 256 << 20;
