//! The control socket: a Unix stream socket outside the mount, one request line and one
//! reply line per connection.
//!
//! Requests: `crash` (drop every unsynced write and directory entry; the reply comes after
//! the drop is complete), `status` (dirty bytes and pending entries), `unmount` (reply, then
//! unmount and exit). Replies start with `ok` or `err`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fs::State;

/// Longest request line accepted.
const REQUEST_BYTES_MAX: u64 = 64;
/// How long a client waits for a reply (a crash removes files: bounded, but not instant).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`stop`] waits for a mount to go away after asking for it.
const UNMOUNT_WAIT: Duration = Duration::from_secs(10);

/// Stops the lossyfs process `child` that serves `mountpoint`: asks it to unmount through the
/// control socket at `control`, waits up to `UNMOUNT_WAIT` for it to exit, then kills it and
/// detaches the mount (`umount2(MNT_DETACH)`, harmless when nothing is mounted), so a stuck
/// filesystem never outlives the run that made it.
pub fn stop(child: &mut std::process::Child, control: &Path, mountpoint: &Path) {
    let _ = request(control, "unmount");
    let deadline = std::time::Instant::now() + UNMOUNT_WAIT;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Ok(path) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) {
        // SAFETY: umount2 on a NUL-terminated path; failure (not mounted) is harmless.
        unsafe {
            libc::umount2(path.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// Sends `request` to the control socket at `path` and returns the reply line (without its
/// newline). An `err ...` reply is an error.
pub fn request(path: &Path, request: &str) -> io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    let line = line.trim_end().to_string();
    if line.starts_with("ok") {
        Ok(line)
    } else if line.is_empty() {
        Err(io::Error::other(
            "the lossyfs control socket closed without a reply",
        ))
    } else {
        Err(io::Error::other(line))
    }
}

/// Serves requests on `listener` until an `unmount` request comes: returns its connection,
/// to be answered ([`answer`]) once the filesystem is unmounted.
pub fn serve(listener: &UnixListener, state: &Arc<Mutex<State>>) -> Option<UnixStream> {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let mut line = String::new();
        let Ok(read_half) = stream.try_clone() else {
            continue;
        };
        let mut reader = BufReader::new(read_half.take(REQUEST_BYTES_MAX));
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let reply = match line.trim() {
            "crash" => {
                let dropped = state.lock().unwrap_or_else(|p| p.into_inner()).crash();
                format!(
                    "ok dropped files={} bytes={} entries={}",
                    dropped.files, dropped.bytes, dropped.entries
                )
            }
            "status" => {
                let st = state.lock().unwrap_or_else(|p| p.into_inner());
                format!(
                    "ok dirty_bytes={} pending_entries={}",
                    st.dirty_bytes(),
                    st.pending_entries()
                )
            }
            "unmount" => return Some(stream),
            other => format!("err unknown request {other:?}"),
        };
        answer(stream, &reply);
    }
    None
}

/// Writes the reply line `reply` to a control connection.
pub fn answer(mut stream: UnixStream, reply: &str) {
    let _ = stream.write_all(format!("{reply}\n").as_bytes());
}
