//! The snapshot file, `raft-snapshot` in a node's data dir: a header, then the state streamed
//! through the codec, never held whole in one buffer.
//!
//! Layout: magic `RLSNAP\0\0`, format version (u32), payload length (u64), CRC-32 of the
//! payload (u32), all little-endian, then the payload. Version 3 (this build writes it): the
//! snapshot's meta, then `(last_applied, membership)`, then a copy of the cold tier (records
//! of finished jobs keyed by log index, `machine/cold.rs`: each record a u32 key length, the
//! key, a u32 value length, the value; a zero key length ends it), then the machine, encoded
//! one after the other straight into the file. The copy is taken after the state is cloned at
//! the snapshot's index, while applies go on, so it may hold records written after that
//! index; reads at the index do not see them and the log replayed after it writes them again.
//! Version 2 (earlier builds; still read): the same without the cold copy. Version 1 (still
//! read): one encoded `{meta, data}` whose `data` held the encoded body.
//!
//! A new file is written as a temp file (header zeroed, payload streamed, header filled in),
//! `fsync`ed, renamed over the old one, and the directory `fsync`ed. The same bytes are what
//! openraft sends a follower in chunks and what the follower receives into a file of its own,
//! so the checksum is checked end to end before a received snapshot is installed. Reading
//! checks the header and the checksum in chunks first, then decodes; a damaged file is refused
//! with the byte offset where it is wrong.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use openraft::{LogId, SnapshotMeta, StoredMembership};
use serde::Deserialize;

use super::state_machine::Applied;
use super::PeerNode;
use crate::machine::cold::Cold;
use crate::machine::{codec, Machine};

type NodeId = u64;

/// A snapshot's meta, as openraft describes it.
pub type Meta = SnapshotMeta<NodeId, PeerNode>;

/// The snapshot file's name in the node's data dir.
pub const FILE: &str = "raft-snapshot";
/// Where a snapshot sent by the leader is received, before it is checked and installed.
pub const RECEIVING: &str = "raft-snapshot.receiving";

const MAGIC: &[u8; 8] = b"RLSNAP\0\0";
/// The version this build writes (see the module doc); it reads 1 to 3.
const VERSION: u32 = 3;
/// Bounds of a cold record's key and value in the file (a larger one is damage).
const COLD_KEY_BYTES_MAX: u32 = 4 << 10;
const COLD_VALUE_BYTES_MAX: u32 = 64 << 20;
/// Magic, version (u32), payload length (u64), CRC-32 of the payload (u32).
const HEADER_BYTES: u64 = 8 + 4 + 8 + 4;
/// Read and write buffer size.
const CHUNK_BYTES: usize = 1 << 16;

/// Version 1's payload.
#[derive(Deserialize)]
struct StoredV1 {
    meta: Meta,
    data: Vec<u8>,
}

/// Version 1's `data`.
#[derive(Deserialize)]
struct BodyV1 {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, PeerNode>,
    machine: Vec<u8>,
}

/// A writer that counts and checksums what passes through it.
struct Summing<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn header(version: u32, len: u64, crc: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Writes a snapshot of `applied`, described by `meta`, as `dir/FILE`, durably.
pub fn write(dir: &Path, meta: &Meta, applied: &Applied) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&[0; HEADER_BYTES as usize])?;
    let (len, crc) = {
        let mut out = Summing {
            inner: BufWriter::with_capacity(CHUNK_BYTES, &mut file),
            crc: crc32fast::Hasher::new(),
            len: 0,
        };
        codec::encode_into(meta, &mut out).map_err(io::Error::other)?;
        codec::encode_into(&(applied.last_applied, &applied.membership), &mut out)
            .map_err(io::Error::other)?;
        if let Some((cold, _)) = applied.machine.cold() {
            cold.copy_to(|key, value| {
                for part in [key, value] {
                    out.write_all(&(part.len() as u32).to_le_bytes())?;
                    out.write_all(part)?;
                }
                Ok::<_, io::Error>(())
            })?;
        }
        out.write_all(&0u32.to_le_bytes())?;
        applied
            .machine
            .encode_into(&mut out)
            .map_err(io::Error::other)?;
        out.flush()?;
        (out.len, out.crc.finalize())
    };
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&header(VERSION, len, crc))?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(FILE))?;
    super::durable::sync_dir(dir)
}

/// Checks the header and the checksum of the file at `path`, reading it in chunks; returns its
/// version and payload length, or why it is refused (with the byte offset).
fn verify(path: &Path) -> Result<(u32, u64), String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let total = file
        .metadata()
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    let mut head = [0u8; HEADER_BYTES as usize];
    if total < HEADER_BYTES || file.read_exact(&mut head).is_err() || &head[..8] != MAGIC {
        return Err(
            "offset 0: not a raftline snapshot file (no header: damaged, or written by \
                    an older build)"
                .into(),
        );
    }
    let word = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    let version = word(8);
    if !(1..=VERSION).contains(&version) {
        return Err(format!(
            "offset 8: snapshot file version {version}, this build reads 1 to {VERSION}"
        ));
    }
    let len = u64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
    if total - HEADER_BYTES != len {
        return Err(format!(
            "offset {HEADER_BYTES}: the header says {len} bytes follow, the file holds {} \
             (truncated or damaged)",
            total - HEADER_BYTES
        ));
    }
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("cannot read: {e}"))?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
    }
    let (want, got) = (word(20), crc.finalize());
    if want != got {
        return Err(format!(
            "offsets {HEADER_BYTES}..{total}: checksum {got:08x}, the header says {want:08x} \
             (damaged)"
        ));
    }
    Ok((version, len))
}

/// The meta and payload length of the snapshot file open as `file`, read from its start
/// (the checksum is not checked here: a restore checks it); leaves `file` at its start.
pub fn peek(file: &mut File) -> Result<(Meta, u64), String> {
    let mut head = [0u8; HEADER_BYTES as usize];
    file.read_exact(&mut head)
        .map_err(|e| format!("cannot read the header: {e}"))?;
    if &head[..8] != MAGIC {
        return Err("not a raftline snapshot file".into());
    }
    let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if !(2..=VERSION).contains(&version) {
        return Err(format!(
            "snapshot file version {version}; a backup needs 2 to {VERSION} (wait for the next \
             snapshot)"
        ));
    }
    let len = u64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
    let meta: Meta = codec::decode_from(&mut BufReader::new(&mut *file))
        .map_err(|e| format!("the snapshot's meta does not decode: {e}"))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot seek: {e}"))?;
    Ok((meta, HEADER_BYTES + len))
}

/// Reads the cold copy of a version 3 file into `cold` (emptied first).
fn read_cold(reader: &mut impl Read, cold: &Cold) -> Result<(), String> {
    cold.clear();
    let mut word = [0u8; 4];
    let mut at = 0u64;
    loop {
        let mut part = |max: u32, what: &str| -> Result<Option<Vec<u8>>, String> {
            reader
                .read_exact(&mut word)
                .map_err(|e| format!("cold record {at}: cannot read: {e}"))?;
            let len = u32::from_le_bytes(word);
            if len == 0 && what == "key" {
                return Ok(None);
            }
            if len > max {
                return Err(format!(
                    "cold record {at}: a {what} of {len} bytes (the bound is {max})"
                ));
            }
            let mut bytes = vec![0u8; len as usize];
            reader
                .read_exact(&mut bytes)
                .map_err(|e| format!("cold record {at}: cannot read: {e}"))?;
            Ok(Some(bytes))
        };
        let Some(key) = part(COLD_KEY_BYTES_MAX, "key")? else {
            break;
        };
        let value = part(COLD_VALUE_BYTES_MAX, "value")?.unwrap_or_default();
        cold.load(&key, &value)
            .map_err(|e| format!("cold record {at}: {e}"))?;
        at += 1;
    }
    cold.finish_load();
    Ok(())
}

/// Reads the snapshot file at `path`: its meta and the state, with the finished jobs loaded
/// into `cold` (emptied first) and attached, or why it is refused.
pub fn read(path: &Path, cold: &Cold) -> Result<(Meta, Applied), String> {
    let (version, len) = verify(path)?;
    let undecodable = |e: &dyn std::fmt::Display| {
        format!("offset {HEADER_BYTES}: the checksum holds but the state does not decode: {e}")
    };
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    file.seek(SeekFrom::Start(HEADER_BYTES))
        .map_err(|e| format!("cannot read: {e}"))?;
    let mut reader = BufReader::with_capacity(CHUNK_BYTES, file.take(len));
    if version == 1 {
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read: {e}"))?;
        let (meta, mut applied) = decode_v1(&bytes).map_err(|e| undecodable(&e))?;
        cold.clear();
        let at = applied.last_applied.map_or(0, |l| l.index);
        applied.machine.attach_cold(cold.clone(), at);
        return Ok((meta, applied));
    }
    let meta: Meta = codec::decode_from(&mut reader).map_err(|e| undecodable(&e))?;
    let (last_applied, membership): (Option<LogId<NodeId>>, _) =
        codec::decode_from(&mut reader).map_err(|e| undecodable(&e))?;
    if version >= 3 {
        read_cold(&mut reader, cold).map_err(|e| undecodable(&e))?;
    } else {
        cold.clear();
    }
    let at = last_applied.map_or(0, |l| l.index);
    let machine =
        Machine::decode_from(&mut reader, Some((cold.clone(), at))).map_err(|e| undecodable(&e))?;
    let rest = reader.fill_buf().map_err(|e| format!("cannot read: {e}"))?;
    if !rest.is_empty() {
        return Err(undecodable(&"bytes left after the state"));
    }
    Ok((
        meta,
        Applied {
            last_applied,
            membership,
            machine,
        },
    ))
}

/// Decodes a version 1 payload (also what data dirs of earlier builds kept in sled).
pub fn decode_v1(bytes: &[u8]) -> Result<(Meta, Applied), codec::CodecError> {
    let stored: StoredV1 = codec::decode(bytes)?;
    let body: BodyV1 = codec::decode(&stored.data)?;
    let machine = Machine::decode(&body.machine)?;
    Ok((
        stored.meta,
        Applied {
            last_applied: body.last_applied,
            membership: body.membership,
            machine,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{Command, JobSpec, Proposal};

    fn state() -> (Meta, Applied) {
        let mut applied = Applied::default();
        for i in 0..300u64 {
            applied.machine.apply(&Proposal {
                now_ms: 1_000 + i,
                command: Command::Submit {
                    spec: JobSpec::shell("q", &["echo", &format!("{i}")]),
                    delay_ms: 0,
                    run_at_ms: None,
                },
            });
        }
        let meta = Meta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: "test".into(),
        };
        (meta, applied)
    }

    fn encoded(applied: &Applied) -> Vec<u8> {
        applied.machine.encode().unwrap()
    }

    /// A written snapshot reads back; a flipped byte anywhere, a truncated file, a missing
    /// header, a newer version and a damaged length are each refused with the offset named.
    #[test]
    fn snapshot_file_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, applied) = state();
        write(dir.path(), &meta, &applied).unwrap();
        let path = dir.path().join(FILE);
        let (back_meta, back) = read(&path, &Cold::in_memory()).unwrap();
        assert_eq!(back_meta, meta);
        assert_eq!(encoded(&back), encoded(&applied));
        assert!(!dir.path().join(format!("{FILE}.tmp")).exists());

        let good = std::fs::read(&path).unwrap();
        let refused = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            read(&path, &Cold::in_memory()).unwrap_err()
        };
        for at in [HEADER_BYTES as usize, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            let why = refused(&bad);
            assert!(why.contains("checksum"), "{why}");
        }
        let why = refused(&good[..good.len() - 7]);
        assert!(why.contains("truncated"), "{why}");
        assert!(refused(&good[HEADER_BYTES as usize..]).starts_with("offset 0"));
        let mut newer = good.clone();
        newer[8] = 9;
        assert!(refused(&newer).starts_with("offset 8"));
        let mut length = good.clone();
        length[12] ^= 1;
        assert!(refused(&length).starts_with("offset 24"));
    }

    /// Finished jobs travel in the cold copy: a node reading the file into an empty cold tier
    /// sees the same jobs and the same cold records at the snapshot's index.
    #[test]
    fn the_cold_copy_travels_with_the_snapshot() {
        let (meta, mut applied) = state();
        applied.machine.attach_cold(Cold::in_memory(), 300);
        for (i, id) in (1..=100u64).enumerate() {
            applied.machine.apply_at(
                301 + i as u64,
                &Proposal {
                    now_ms: 5_000,
                    command: Command::Cancel { job_id: id },
                },
            );
        }
        applied.last_applied = Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 400));
        let (cold, at) = applied.machine.cold().unwrap();
        assert!(cold.entries() >= 100, "the cancelled jobs are not cold");
        let digest = cold.digest(at);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &meta, &applied).unwrap();
        let other = Cold::in_memory();
        let (_, back) = read(&dir.path().join(FILE), &other).unwrap();
        assert_eq!(other.digest(at), digest);
        assert_eq!(back.machine.job_count(), 300);
        assert_eq!(
            back.machine.job(7).unwrap().state,
            crate::machine::JobState::Cancelled
        );
    }

    /// A version 1 file, as earlier builds wrote it (one buffer), still reads.
    #[test]
    fn version_1_files_still_read() {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            last_applied: Option<LogId<NodeId>>,
            membership: &'a StoredMembership<NodeId, PeerNode>,
            machine: Vec<u8>,
        }
        #[derive(serde::Serialize)]
        struct Stored<'a> {
            meta: &'a Meta,
            data: Vec<u8>,
        }
        let (meta, applied) = state();
        let data = codec::encode(&Body {
            last_applied: applied.last_applied,
            membership: &applied.membership,
            machine: encoded(&applied),
        })
        .unwrap();
        let payload = codec::encode(&Stored { meta: &meta, data }).unwrap();
        let mut file = header(1, payload.len() as u64, crc32fast::hash(&payload));
        file.extend_from_slice(&payload);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(&path, file).unwrap();
        let (back_meta, back) = read(&path, &Cold::in_memory()).unwrap();
        assert_eq!(back_meta, meta);
        assert_eq!(encoded(&back), encoded(&applied));
    }
}
