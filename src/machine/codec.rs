//! The one binary codec used for everything raftline writes to disk or sends between peers:
//! log entries, votes, snapshots and the internal Raft RPC payloads.
//!
//! It is kept in this one module so the encoding can be swapped (bincode 2 today) without
//! touching storage or network code. The configuration is fixed: little-endian, variable-length
//! integers, and a decode limit so a corrupt or hostile buffer cannot make us allocate without
//! bound.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::limits::DECODE_BYTES_MAX;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_BYTES_MAX>()
}

/// Encodes a value. Encoding our own in-memory types cannot fail except on a broken invariant
/// (a value over the decode limit), which is a bug, so the error is returned for the caller to
/// turn into a storage or network error rather than hidden.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError(e.to_string()))
}

/// Decodes a value, refusing trailing bytes: a buffer must hold exactly one value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError(format!(
            "{} trailing bytes after the value",
            bytes.len() - read
        )));
    }
    Ok(value)
}

/// Encodes a value into a writer as it goes (no buffer of the whole value): large snapshots.
pub fn encode_into<T: Serialize, W: std::io::Write>(
    value: &T,
    writer: &mut W,
) -> Result<usize, CodecError> {
    bincode::serde::encode_into_std_write(value, writer, config())
        .map_err(|e| CodecError(e.to_string()))
}

/// Decodes one value from a reader, reading only its bytes (the caller checks what follows).
pub fn decode_from<T: DeserializeOwned, R: std::io::Read>(reader: &mut R) -> Result<T, CodecError> {
    bincode::serde::decode_from_std_read(reader, config()).map_err(|e| CodecError(e.to_string()))
}

/// An encode or decode failure, with bincode's description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("codec: {0}")]
pub struct CodecError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    /// Round-trips a value and rejects a buffer with trailing garbage.
    #[test]
    fn codec_round_trip_and_trailing_bytes() {
        let v = (7u64, "queue".to_string(), vec![1u8, 2, 3]);
        let mut bytes = encode(&v).unwrap();
        let back: (u64, String, Vec<u8>) = decode(&bytes).unwrap();
        assert_eq!(back, v);
        bytes.push(0);
        assert!(decode::<(u64, String, Vec<u8>)>(&bytes).is_err());
    }
}
