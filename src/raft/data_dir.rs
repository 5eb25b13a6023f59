//! A node's data dir: the identity that ties it to one cluster and node (`identity.json`,
//! written durably), and opening its sled database, where a damaged database, also one sled
//! panics on, is refused with a clear message.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::durable;
use crate::error::{Error, Result};
use crate::machine::codec;

/// The identity written into a data dir on first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Cluster name from the config.
    pub cluster: String,
    /// This node's id.
    pub node_id: u64,
}

/// The file in a node's data dir that names the cluster and node it belongs to.
pub const IDENTITY_FILE: &str = "identity.json";

/// Opens (or creates) a node's data dir and sled database, and checks that the dir belongs
/// to this cluster and node. A data dir from another cluster or node is refused.
///
/// The identity is kept in `identity.json`, written durably (temp file, fsync, rename,
/// directory fsync) before anything else on first start. A data dir of an earlier build kept
/// it in sled's `meta` tree; it is copied into the file once.
///
/// A damaged sled database is refused, also when sled panics on it instead of returning an
/// error (sled 0.34 asserts on some damage): the panic is caught, without a trace, and
/// turned into a refusal naming the data dir.
pub fn open_db(dir: &Path, identity: &Identity) -> Result<sled::Db> {
    let at = |e: &dyn fmt::Display| Error::Config(format!("data dir {}: {e}", dir.display()));
    durable::create_dir_all(dir).map_err(|e| at(&format!("cannot create: {e}")))?;
    let was_empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
    let path = dir.join(IDENTITY_FILE);
    if was_empty {
        write_identity(&path, identity)?;
    }
    let in_file = read_identity(&path)?;
    let db = catch_damage(dir, || open_sled(dir))?;
    let found = match in_file {
        Some(found) => Some(found),
        None => catch_damage(dir, || legacy_identity(&db).map_err(|e| at(&e)))?,
    };
    match found {
        Some(found) if &found != identity => Err(Error::Config(format!(
            "data dir {} belongs to cluster {:?} node {}, but this node is cluster {:?} node {}; \
             refusing to mix data of different clusters or nodes",
            dir.display(),
            found.cluster,
            found.node_id,
            identity.cluster,
            identity.node_id
        ))),
        Some(_) if !path.exists() => write_identity(&path, identity).map(|()| db),
        Some(_) => Ok(db),
        None => Err(Error::Config(format!(
            "data dir {} is not empty but holds no raftline identity ({IDENTITY_FILE}): it is \
             damaged or not a raftline data dir. If this node never started successfully, \
             delete the directory; otherwise see \"When a node's data is damaged\" in the README.",
            dir.display()
        ))),
    }
}

/// Format of a data dir's layout, written into `identity.json`: 1 for data dirs of earlier
/// builds (no number), 2 for this build's. Each file also carries its own version (WAL
/// segments and meta, the snapshot file and the state in it); this one lets a build refuse
/// a whole data dir written by a newer one before it reads anything else.
pub const DATA_DIR_FORMAT: u64 = 2;

fn write_identity(path: &Path, identity: &Identity) -> Result<()> {
    let mut value = serde_json::to_value(identity)
        .map_err(|e| Error::Internal(format!("encoding the identity: {e}")))?;
    value["format"] = DATA_DIR_FORMAT.into();
    let text = serde_json::to_vec_pretty(&value)
        .map_err(|e| Error::Internal(format!("encoding the identity: {e}")))?;
    durable::write_atomic(path, &text)
        .map_err(|e| Error::Config(format!("{}: cannot write: {e}", path.display())))
}

fn read_identity(path: &Path) -> Result<Option<Identity>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Config(format!(
                "{}: cannot read: {e}",
                path.display()
            )))
        }
    };
    let damaged = |e: serde_json::Error| {
        Error::Config(format!(
            "{}: damaged ({e}); rebuild this node from its peers or a backup",
            path.display()
        ))
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(damaged)?;
    let format = value
        .get("format")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    if format > DATA_DIR_FORMAT {
        return Err(Error::Config(format!(
            "{}: written by a newer raftline (data dir format {format}; this build reads 1 to \
             {DATA_DIR_FORMAT}): run that build or a later one on it",
            path.display()
        )));
    }
    serde_json::from_value(value).map(Some).map_err(damaged)
}

/// The identity as an earlier build kept it, in sled's `meta` tree.
fn legacy_identity(db: &sled::Db) -> std::result::Result<Option<Identity>, String> {
    let meta = db.open_tree("meta").map_err(|e| e.to_string())?;
    match meta.get("identity").map_err(|e| e.to_string())? {
        Some(bytes) => codec::decode(&bytes)
            .map(Some)
            .map_err(|e| format!("unreadable identity in sled: {e}")),
        None => Ok(None),
    }
}

fn open_sled(dir: &Path) -> Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(crate::machine::limits::COLD_CACHE_BYTES)
        .open()
        .map_err(|e| sled_error(dir, e))
}

/// The refusal for a damaged sled database in `dir`.
fn damaged_db(dir: &Path, detail: &str) -> Error {
    Error::Config(format!(
        "data dir {}: the sled database (files conf, db, snap.*, blobs/) is damaged ({detail}); \
         the node does not start on it. See \"When a node's data is damaged\" in the README.",
        dir.display()
    ))
}

fn sled_error(dir: &Path, e: sled::Error) -> Error {
    match e {
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => {
            damaged_db(dir, &e.to_string())
        }
        sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
            Error::Config(format!(
                "data dir {}: the database is locked: is another raftline node using it? ({e})",
                dir.display()
            ))
        }
        other => Error::Config(format!(
            "data dir {}: cannot open the database: {other}",
            dir.display()
        )),
    }
}

thread_local! {
    /// Set while [`catch_damage`] runs a call that may panic: the panic hook stays quiet.
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, a call into sled, turning a panic into [`damaged_db`]. While it runs, panics on
/// this thread print no message or trace (the refusal says what happened); every other panic
/// goes to the hook that was installed before.
fn catch_damage<T>(dir: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET_PANICS.with(|q| q.set(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(false));
    outcome.unwrap_or_else(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        Err(damaged_db(dir, &format!("sled panicked: {text}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(node_id: u64) -> Identity {
        Identity {
            cluster: "c".into(),
            node_id,
        }
    }

    #[test]
    fn first_start_writes_the_identity_file_and_a_restart_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node-1");
        drop(open_db(&node, &me(1)).unwrap());
        let text = std::fs::read_to_string(node.join(IDENTITY_FILE)).unwrap();
        assert!(text.contains("\"node_id\": 1"), "{text}");
        drop(open_db(&node, &me(1)).unwrap());
        let err = open_db(&node, &me(2)).unwrap_err().to_string();
        assert!(err.contains("belongs to cluster \"c\" node 1"), "{err}");
    }

    #[test]
    fn an_identity_kept_in_sled_by_an_earlier_build_moves_into_the_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            let meta = db.open_tree("meta").unwrap();
            meta.insert("identity", codec::encode(&me(3)).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        assert!(!dir.path().join(IDENTITY_FILE).exists());
        drop(open_db(dir.path(), &me(3)).unwrap());
        assert!(dir.path().join(IDENTITY_FILE).exists());
        let err = open_db(dir.path(), &me(4)).unwrap_err().to_string();
        assert!(err.contains("node 3"), "{err}");
    }

    #[test]
    fn a_damaged_identity_file_or_a_foreign_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_db(dir.path(), &me(1)).unwrap());
        std::fs::write(dir.path().join(IDENTITY_FILE), b"{\"clus").unwrap();
        let err = open_db(dir.path(), &me(1)).unwrap_err().to_string();
        assert!(err.contains("identity.json: damaged"), "{err}");

        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("notes.txt"), b"mine").unwrap();
        let err = open_db(other.path(), &me(1)).unwrap_err().to_string();
        assert!(err.contains("holds no raftline identity"), "{err}");
    }
}

#[cfg(test)]
mod damage_tests {
    use super::*;

    /// A panic inside a guarded sled call (as sled 0.34 panics on some damaged files) becomes
    /// a refusal naming the data dir and the panic, and later panics are reported again.
    #[test]
    fn open_db_turns_a_sled_panic_into_a_refusal() {
        let dir = Path::new("/some/node-dir");
        let refused = catch_damage::<()>(dir, || panic!("tried to serialize Uninitialized"))
            .unwrap_err()
            .to_string();
        assert!(refused.contains("/some/node-dir"), "{refused}");
        assert!(refused.contains("is damaged"), "{refused}");
        assert!(
            refused.contains("sled panicked: tried to serialize Uninitialized"),
            "{refused}"
        );
        assert!(!QUIET_PANICS.with(|q| q.get()), "the hook is loud again");
        assert_eq!(catch_damage(dir, || Ok(7)).unwrap(), 7);
    }

    /// A sled file that fails its checks is refused as damaged, naming the data dir.
    #[test]
    fn open_db_refuses_a_damaged_sled_config() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity {
            cluster: "c".into(),
            node_id: 1,
        };
        drop(open_db(dir.path(), &identity).unwrap());
        let conf = dir.path().join("conf");
        let mut bytes = std::fs::read(&conf).unwrap();
        for b in bytes.iter_mut().take(8) {
            *b ^= 0x55;
        }
        std::fs::write(&conf, bytes).unwrap();
        let refused = open_db(dir.path(), &identity).unwrap_err().to_string();
        assert!(
            refused.contains(&dir.path().display().to_string()),
            "{refused}"
        );
        assert!(refused.contains("damaged"), "{refused}");
    }
}
