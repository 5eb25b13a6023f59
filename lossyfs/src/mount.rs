//! Mounting: the filesystem on a FUSE session thread, the control socket on the calling
//! thread, SIGINT/SIGTERM turned into an `unmount` request.

use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fuser::MountOption;

use crate::control;
use crate::fs::{LossyFs, State};

/// What to mount where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The backing directory (durable state lives here).
    pub backing: PathBuf,
    /// Where the filesystem appears.
    pub mountpoint: PathBuf,
    /// The control socket's path (outside the mount).
    pub control: PathBuf,
    /// Bound on unsynced data held in memory.
    pub dirty_bytes_max: u64,
    /// Let other users than the mounting one in (needs `user_allow_other` in
    /// /etc/fuse.conf when not root).
    pub allow_other: bool,
}

/// Whether FUSE can be used here: `Ok` or why not.
pub fn usable() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse does not exist (no FUSE in this kernel or container)".into());
    }
    let fusermount = ["fusermount3", "fusermount"].iter().any(|bin| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(bin).exists()))
    });
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && !fusermount {
        return Err("not root and no fusermount3 on PATH (Debian: apt-get install fuse3)".into());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| format!("cannot open /dev/fuse: {e}"))?;
    Ok(())
}

/// Blocks SIGINT and SIGTERM in this thread and every thread started after, and starts a
/// thread that waits for them and asks the control socket to unmount.
fn forward_signals(control: PathBuf) {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
            let _ = control::request(&control, "unmount");
        });
    }
}

/// Mounts, serves the control socket until an `unmount` request or a signal, unmounts.
pub fn run(opts: &Options) -> io::Result<()> {
    usable().map_err(io::Error::other)?;
    let state = Arc::new(Mutex::new(State::new(&opts.backing, opts.dirty_bytes_max)?));
    let _ = std::fs::remove_file(&opts.control);
    let listener = UnixListener::bind(&opts.control)?;
    forward_signals(opts.control.clone());
    let mut options = vec![
        MountOption::FSName("raftline-lossyfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::RW,
    ];
    if opts.allow_other {
        options.push(MountOption::AllowOther);
    }
    let session = fuser::spawn_mount2(LossyFs::new(state.clone()), &opts.mountpoint, &options)?;
    eprintln!(
        "raftline-lossyfs: {} mounted over {} (control {})",
        opts.mountpoint.display(),
        opts.backing.display(),
        opts.control.display()
    );
    let pending = control::serve(&listener, &state);
    // Dropping the session unmounts (umount2 with MNT_DETACH as root, else fusermount -u).
    drop(session);
    let _ = std::fs::remove_file(&opts.control);
    eprintln!("raftline-lossyfs: {} unmounted", opts.mountpoint.display());
    if let Some(stream) = pending {
        control::answer(stream, "ok unmounted");
    }
    Ok(())
}
