//! The index block: for each data block, its last key and where it is stored.
//!
//! ```text
//! index := count u32 | (last_key_len u32 | last_key | offset u64 | stored_len u32 | codec u8)*
//! ```

use std::path::Path;

use crate::bytes::{put_bytes, put_u32, put_u64, put_u8, Reader};
use crate::entry::KEY_MAX_BYTES;
use crate::error::{Result, TableError};

/// Where a stored block (payload and trailer) lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHandle {
    pub offset: u64,
    pub len: u32,
}

impl BlockHandle {
    /// The offset just past the block (saturating: handles read from disk are untrusted).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.len))
    }
}

/// One data block as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub last_key: Vec<u8>,
    pub handle: BlockHandle,
    /// The codec id the block was stored with (cross-checked against the block trailer).
    pub codec_id: u8,
}

pub(crate) fn encoded_len(entries: &[IndexEntry]) -> usize {
    4 + entries
        .iter()
        .map(|e| 4 + e.last_key.len() + 8 + 4 + 1)
        .sum::<usize>()
}

pub(crate) fn encode(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(entries));
    put_u32(&mut out, entries.len() as u32);
    for e in entries {
        put_bytes(&mut out, &e.last_key);
        put_u64(&mut out, e.handle.offset);
        put_u32(&mut out, e.handle.len);
        put_u8(&mut out, e.codec_id);
    }
    out
}

/// Decodes and checks an index: blocks in file order, contiguous from offset 0 up to
/// `data_end`, last keys strictly increasing (what binary search relies on).
pub(crate) fn decode(
    file: &Path,
    offset: u64,
    raw: &[u8],
    data_end: u64,
) -> Result<Vec<IndexEntry>> {
    let bad = |reason: String| TableError::corrupt(file, offset, format!("index: {reason}"));
    let mut r = Reader::new(raw);
    let count = r.u32().ok_or_else(|| bad("no count".into()))? as usize;
    // Each index entry takes at least 17 bytes: bound the count before allocating.
    if count > r.remaining() / 17 {
        return Err(bad(format!(
            "{count} entries cannot fit in {} bytes",
            raw.len()
        )));
    }
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(count);
    let mut next_offset = 0u64;
    for i in 0..count {
        let short = || bad(format!("entry {i} overruns the block"));
        let last_key = r.len_bytes(KEY_MAX_BYTES).ok_or_else(short)?.to_vec();
        let handle = BlockHandle {
            offset: r.u64().ok_or_else(short)?,
            len: r.u32().ok_or_else(short)?,
        };
        let codec_id = r.u8().ok_or_else(short)?;
        if handle.offset != next_offset || handle.end() > data_end {
            return Err(bad(format!(
                "block {i} at {}+{} is not contiguous within {data_end} data bytes",
                handle.offset, handle.len
            )));
        }
        next_offset = handle.end();
        if entries.last().is_some_and(|p| p.last_key >= last_key) {
            return Err(bad(format!("block {i}: last keys out of order")));
        }
        entries.push(IndexEntry {
            last_key,
            handle,
            codec_id,
        });
    }
    if r.remaining() != 0 || next_offset != data_end {
        return Err(bad(format!(
            "blocks end at {next_offset}, data ends at {data_end}, {} stray bytes",
            r.remaining()
        )));
    }
    Ok(entries)
}

/// The first block whose last key is `>= key`: the only block that can hold `key`.
pub(crate) fn find_block(entries: &[IndexEntry], key: &[u8]) -> usize {
    entries.partition_point(|e| e.last_key.as_slice() < key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Vec<IndexEntry> {
        vec![
            IndexEntry {
                last_key: b"b".to_vec(),
                handle: BlockHandle {
                    offset: 0,
                    len: 100,
                },
                codec_id: 1,
            },
            IndexEntry {
                last_key: b"d".to_vec(),
                handle: BlockHandle {
                    offset: 100,
                    len: 50,
                },
                codec_id: 0,
            },
        ]
    }

    #[test]
    fn round_trip_and_search() {
        let entries = sample();
        let raw = encode(&entries);
        assert_eq!(raw.len(), encoded_len(&entries));
        let back = decode(Path::new("f"), 7, &raw, 150).unwrap();
        assert_eq!(back, entries);
        assert_eq!(find_block(&back, b"a"), 0);
        assert_eq!(find_block(&back, b"b"), 0);
        assert_eq!(find_block(&back, b"c"), 1);
        assert_eq!(find_block(&back, b"e"), 2);
    }

    #[test]
    fn inconsistent_indexes_are_refused() {
        let raw = encode(&sample());
        assert!(
            decode(Path::new("f"), 7, &raw, 151).is_err(),
            "gap at the end"
        );
        let mut swapped = sample();
        swapped[1].last_key = b"a".to_vec();
        assert!(decode(Path::new("f"), 7, &encode(&swapped), 150).is_err());
        let mut gap = sample();
        gap[1].handle.offset = 101;
        assert!(decode(Path::new("f"), 7, &encode(&gap), 151).is_err());
        for cut in 0..raw.len() {
            assert!(decode(Path::new("f"), 7, &raw[..cut], 150).is_err());
        }
    }
}
