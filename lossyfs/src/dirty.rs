//! The unsynced state of one file: what a write or a truncate changed since the file's last
//! fsync, held in memory over the backing file's durable bytes. Pure: no I/O here; the
//! filesystem reads the backing file and hands its bytes to [`Dirty::overlay`].
//!
//! The file a reader sees is: the backing file's bytes, except that bytes at or past
//! `floor` (the smallest size the file was truncated to since the last sync) read as zeros,
//! then the dirty extents laid over them, all cut at the logical `size`. A sync writes the
//! same picture into the backing file: cut at `floor`, write the extents, set the length to
//! `size`.
//!
//! Invariants (checked by [`Dirty::check`] in tests): extents do not overlap or touch, none
//! is empty, and none reaches past `size`; `bytes` is the sum of their lengths.

use std::collections::BTreeMap;

/// Unsynced writes and size changes of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirty {
    /// The file's logical size, as readers see it.
    pub size: u64,
    /// Bytes at or past this offset of the backing file are not part of the file any more
    /// (a truncate cut them since the last sync).
    pub floor: Option<u64>,
    /// Written data, by offset: non-overlapping, non-touching.
    extents: BTreeMap<u64, Vec<u8>>,
    /// Sum of the extents' lengths.
    bytes: u64,
}

impl Dirty {
    /// Nothing unsynced yet over a backing file of `backing_len` bytes.
    pub fn new(backing_len: u64) -> Dirty {
        Dirty {
            size: backing_len,
            floor: None,
            extents: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// Bytes of data held in memory.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How many bytes of memory a write of `len` bytes at `offset` would add (an upper
    /// bound: overwrites of held data add less).
    pub fn growth(len: usize) -> u64 {
        len as u64
    }

    /// Writes `data` at `offset`: merged with every extent it overlaps or touches.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // The extents that overlap or touch [offset, end]: the one starting at or before
        // `offset` (if it reaches `offset`) and every one starting inside (offset, end].
        let mut start = offset;
        if let Some((&s, v)) = self.extents.range(..=offset).next_back() {
            if s + v.len() as u64 >= offset {
                start = s;
            }
        }
        // The extent at `start` (if any) is the base buffer, so an append grows it in place.
        let mut mv = match self.extents.remove(&start) {
            Some(v) => {
                self.bytes -= v.len() as u64;
                v
            }
            None => Vec::new(),
        };
        let keys: Vec<u64> = self.extents.range(start..=end).map(|(k, _)| *k).collect();
        for k in keys {
            let v = self.extents.remove(&k).expect("key just listed");
            self.bytes -= v.len() as u64;
            let at = (k - start) as usize;
            if mv.len() < at + v.len() {
                mv.resize(at + v.len(), 0);
            }
            mv[at..at + v.len()].copy_from_slice(&v);
        }
        let at = (offset - start) as usize;
        if mv.len() < at + data.len() {
            mv.resize(at + data.len(), 0);
        }
        mv[at..at + data.len()].copy_from_slice(data);
        self.bytes += mv.len() as u64;
        self.extents.insert(start, mv);
        self.size = self.size.max(end);
    }

    /// Sets the logical size to `size`: data past it is dropped; when shrinking, the backing
    /// bytes past it no longer count.
    pub fn truncate(&mut self, size: u64) {
        if size < self.size {
            self.floor = Some(self.floor.map_or(size, |f| f.min(size)));
        }
        self.size = size;
        let past: Vec<u64> = self.extents.range(size..).map(|(k, _)| *k).collect();
        for k in past {
            let v = self.extents.remove(&k).expect("key just listed");
            self.bytes -= v.len() as u64;
        }
        if let Some((&s, v)) = self.extents.iter_mut().next_back() {
            let keep = size.saturating_sub(s) as usize;
            if v.len() > keep {
                self.bytes -= (v.len() - keep) as u64;
                v.truncate(keep);
                if v.is_empty() {
                    self.extents.remove(&s);
                }
            }
        }
    }

    /// The bytes a read of `buf.len()` bytes at `offset` returns, given `buf` filled with the
    /// backing file's bytes there (zeros past its end). Returns how many bytes are valid
    /// (the read is cut at the logical size).
    pub fn overlay(&self, offset: u64, buf: &mut [u8]) -> usize {
        let end = (offset + buf.len() as u64).min(self.size);
        if end <= offset {
            return 0;
        }
        let n = (end - offset) as usize;
        if let Some(floor) = self.floor {
            let from = floor.saturating_sub(offset).min(n as u64) as usize;
            buf[from..n].fill(0);
        }
        let first = self
            .extents
            .range(..=offset)
            .next_back()
            .map_or(offset, |(k, _)| *k);
        for (&s, v) in self.extents.range(first..end) {
            let e = s + v.len() as u64;
            let lo = s.max(offset);
            let hi = e.min(end);
            if lo >= hi {
                continue;
            }
            buf[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&v[(lo - s) as usize..(hi - s) as usize]);
        }
        n
    }

    /// The extents to write to the backing file on a sync, in offset order.
    pub fn extents(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.extents.iter().map(|(k, v)| (*k, v.as_slice()))
    }

    /// Asserts the invariants (see the module docs).
    pub fn check(&self) {
        let mut prev_end = None;
        let mut sum = 0;
        for (&s, v) in &self.extents {
            assert!(!v.is_empty(), "empty extent at {s}");
            assert!(
                prev_end.is_none_or(|p| p < s),
                "extents overlap or touch at {s}"
            );
            let e = s + v.len() as u64;
            assert!(e <= self.size, "extent {s}..{e} past size {}", self.size);
            prev_end = Some(e);
            sum += v.len() as u64;
        }
        assert_eq!(sum, self.bytes, "byte count");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as a plain vector: the model the extents are checked against.
    struct Model {
        bytes: Vec<u8>,
    }

    fn read_all(d: &Dirty, backing: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; d.size as usize + 8];
        let n = backing.len().min(buf.len());
        buf[..n].copy_from_slice(&backing[..n]);
        let got = d.overlay(0, &mut buf);
        buf.truncate(got);
        buf
    }

    /// Random writes and truncates over a backing file read back exactly as a plain vector
    /// would (seeded xorshift; the seed is printed).
    #[test]
    fn dirty_matches_a_plain_vector() {
        for seed in 1..=200u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move |m: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % m
            };
            let backing: Vec<u8> = (0..next(64)).map(|i| i as u8 ^ 0x5a).collect();
            let mut d = Dirty::new(backing.len() as u64);
            let mut model = Model {
                bytes: backing.clone(),
            };
            for _ in 0..40 {
                if next(5) == 0 {
                    let size = next(96);
                    d.truncate(size);
                    model.bytes.resize(size as usize, 0);
                } else {
                    let off = next(96);
                    let data: Vec<u8> = (0..1 + next(24)).map(|_| next(256) as u8).collect();
                    d.write(off, &data);
                    let end = off as usize + data.len();
                    if model.bytes.len() < end {
                        model.bytes.resize(end, 0);
                    }
                    model.bytes[off as usize..end].copy_from_slice(&data);
                }
                d.check();
                assert_eq!(read_all(&d, &backing), model.bytes, "seed {seed}");
            }
            // A partial read in the middle agrees too.
            if d.size > 4 {
                let mut buf = vec![0u8; 3];
                let off = d.size / 2;
                let avail = backing.len().saturating_sub(off as usize).min(3);
                if avail > 0 {
                    buf[..avail].copy_from_slice(&backing[off as usize..off as usize + avail]);
                }
                let n = d.overlay(off, &mut buf);
                assert_eq!(
                    &buf[..n],
                    &model.bytes[off as usize..off as usize + n],
                    "seed {seed}"
                );
            }
        }
    }

    /// Appends merge into one extent, so a log written record by record costs one buffer.
    #[test]
    fn dirty_appends_merge() {
        let mut d = Dirty::new(0);
        for i in 0..100u64 {
            d.write(i * 10, &[i as u8; 10]);
        }
        d.check();
        assert_eq!(d.extents().count(), 1);
        assert_eq!(d.bytes(), 1000);
    }
}
