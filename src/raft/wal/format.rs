//! The bytes of the write-ahead log's files: segment headers, records and the meta file,
//! encoded and checked here (the format is described in `wal.rs`); I/O stays in `wal.rs`.

use std::ops::Range;
use std::path::Path;

use super::{damaged, Meta, Result};
use crate::machine::limits::WAL_RECORD_BYTES_MAX;

pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"RLWALSEG";
pub(super) const META_MAGIC: &[u8; 8] = b"RLWALMET";
/// The one format version this build reads and writes; a newer file is refused.
pub(super) const FORMAT_VERSION: u32 = 1;
pub(super) const HEADER_BYTES: u64 = 24;
pub(super) const RECORD_HEADER_BYTES: u64 = 8;
pub(super) const INDEX_BYTES: u64 = 8;
pub(super) const META_HEADER_BYTES: u64 = 20;

pub(super) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

pub(super) fn segment_header(first: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_BYTES as usize);
    h.extend_from_slice(SEGMENT_MAGIC);
    h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    h.extend_from_slice(&first.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

pub(super) fn check_segment_header(path: &Path, h: &[u8], first: u64) -> Result<()> {
    if &h[..8] != SEGMENT_MAGIC {
        return Err(damaged(
            path,
            0,
            "not a write-ahead log segment (bad magic)",
        ));
    }
    if crc32fast::hash(&h[..20]) != u32_at(h, 20) {
        return Err(damaged(path, 0, "segment header checksum mismatch"));
    }
    let version = u32_at(h, 8);
    if version != FORMAT_VERSION {
        return Err(damaged(
            path,
            8,
            format!("format version {version}; this build reads {FORMAT_VERSION}"),
        ));
    }
    let in_header = u64_at(h, 12);
    if in_header != first {
        return Err(damaged(
            path,
            12,
            format!("header says first index {in_header}, the file name {first}"),
        ));
    }
    Ok(())
}

pub(super) fn encode_record(buf: &mut Vec<u8>, index: u64, bytes: &[u8]) {
    let len = INDEX_BYTES as usize + bytes.len();
    let start = buf.len();
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(bytes);
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why the bytes at some offset are not a record.
pub(super) struct BadRecord {
    pub(super) reason: String,
    /// Where the record claims to end, relative to its start; `None`: past the end of the data.
    claimed_end: Option<usize>,
}

/// Parses the record at the start of `rest`: its index, payload range and size.
pub(super) fn parse_record(rest: &[u8]) -> std::result::Result<(u64, Range<usize>), BadRecord> {
    let header = RECORD_HEADER_BYTES as usize;
    if rest.len() < header {
        return Err(BadRecord {
            reason: format!("incomplete record header ({} bytes)", rest.len()),
            claimed_end: None,
        });
    }
    let len = u32_at(rest, 0) as usize;
    if len > rest.len() - header {
        return Err(BadRecord {
            reason: format!("record of {len} bytes runs past the end of the file"),
            claimed_end: None,
        });
    }
    let claimed_end = Some(header + len);
    if (len as u64) < INDEX_BYTES || len as u64 > WAL_RECORD_BYTES_MAX {
        return Err(BadRecord {
            reason: format!("record length {len} out of bounds"),
            claimed_end,
        });
    }
    let payload = &rest[header..header + len];
    if crc32fast::hash(payload) != u32_at(rest, 4) {
        return Err(BadRecord {
            reason: "record checksum mismatch".into(),
            claimed_end,
        });
    }
    Ok((u64_at(payload, 0), header + 8..header + len))
}

impl BadRecord {
    /// Whether this bad record is what a crash during unsynced appends leaves at the end of
    /// the last segment: incomplete, running past the end, or followed only by zeros.
    pub(super) fn is_torn_tail(&self, rest: &[u8]) -> bool {
        match self.claimed_end {
            None => true,
            Some(end) => rest[end..].iter().all(|b| *b == 0),
        }
    }
}

pub(super) fn encode_meta(meta: &Meta) -> Vec<u8> {
    let mut payload = Vec::with_capacity(9 + meta.state.len());
    payload.push(u8::from(meta.purged.is_some()));
    payload.extend_from_slice(&meta.purged.unwrap_or(0).to_le_bytes());
    payload.extend_from_slice(&meta.state);
    let mut out = Vec::with_capacity(META_HEADER_BYTES as usize + payload.len());
    out.extend_from_slice(META_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Checks and decodes the bytes of a meta file (length already bounded by the caller).
pub(super) fn decode_meta(path: &Path, bytes: &[u8]) -> Result<Meta> {
    if bytes.len() < (META_HEADER_BYTES + 9) as usize {
        return Err(damaged(
            path,
            0,
            format!("meta file of {} bytes", bytes.len()),
        ));
    }
    if &bytes[..8] != META_MAGIC {
        return Err(damaged(
            path,
            0,
            "not a write-ahead log meta file (bad magic)",
        ));
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(damaged(
            path,
            8,
            format!("format version {version}; this build reads {FORMAT_VERSION}"),
        ));
    }
    let payload = &bytes[META_HEADER_BYTES as usize..];
    if u32_at(bytes, 12) as usize != payload.len() {
        return Err(damaged(path, 12, "meta length does not match the file"));
    }
    if crc32fast::hash(payload) != u32_at(bytes, 16) {
        return Err(damaged(path, 16, "meta checksum mismatch"));
    }
    let purged = match payload[0] {
        0 => None,
        1 => Some(u64_at(payload, 1)),
        flag => return Err(damaged(path, 20, format!("purged flag {flag}"))),
    };
    Ok(Meta {
        purged,
        state: payload[9..].to_vec(),
    })
}
