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

/// Serde for a byte vector as one run of bytes: `#[serde(with = "codec::bytes")]`. The
/// encoding is the one a plain `Vec<u8>` gets (a length, then the bytes; JSON: an array of
/// numbers), so data written either way reads either way; but it is written and read as one
/// copy instead of one serde call per byte (a 256 KiB payload took about 30 ms each way in a
/// debug build, longer than the leader's append timeout of one heartbeat).
pub mod bytes {
    use serde::{Deserializer, Serializer};

    /// Writes `v` as bytes.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Reads bytes (or a sequence of numbers).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(Visitor)
    }

    pub(super) struct Visitor;

    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// [`bytes`] for an optional byte vector: `#[serde(with = "codec::opt_bytes")]`.
pub mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct Ref<'a>(&'a [u8]);

    impl Serialize for Ref<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct Buf(Vec<u8>);

    impl<'de> Deserialize<'de> for Buf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Buf, D::Error> {
            d.deserialize_byte_buf(super::bytes::Visitor).map(Buf)
        }
    }

    /// Writes `v` as an option of bytes.
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().map(Ref).serialize(s)
    }

    /// Reads an option of bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Buf>::deserialize(d)?.map(|b| b.0))
    }
}

/// An encode or decode failure, with bincode's description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("codec: {0}")]
pub struct CodecError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Plain {
        a: Vec<u8>,
        b: Option<Vec<u8>>,
        c: Option<Vec<u8>>,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Fast {
        #[serde(with = "bytes")]
        a: Vec<u8>,
        #[serde(with = "opt_bytes")]
        b: Option<Vec<u8>>,
        #[serde(with = "opt_bytes")]
        c: Option<Vec<u8>>,
    }

    /// Byte vectors written as bytes are the same bytes as written as a sequence, both ways,
    /// in bincode and in JSON: data from earlier builds reads, and peers of either agree.
    #[test]
    fn bytes_encode_like_plain_vectors() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let plain = Plain {
            a: big.clone(),
            b: Some(vec![0, 255, 7]),
            c: None,
        };
        let fast = Fast {
            a: big,
            b: Some(vec![0, 255, 7]),
            c: None,
        };
        let (p, f) = (encode(&plain).unwrap(), encode(&fast).unwrap());
        assert_eq!(p, f);
        assert_eq!(decode::<Fast>(&p).unwrap(), fast);
        assert_eq!(decode::<Plain>(&f).unwrap(), plain);
        let (pj, fj) = (
            serde_json::to_string(&plain).unwrap(),
            serde_json::to_string(&fast).unwrap(),
        );
        assert_eq!(pj, fj);
        assert_eq!(serde_json::from_str::<Fast>(&pj).unwrap(), fast);
    }

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
