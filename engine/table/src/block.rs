//! Data blocks: the raw (uncompressed) layout, its builder, and the decoded form the cache
//! holds.
//!
//! Raw layout: the entries back to back, then their count:
//!
//! ```text
//! entry := kind u8 | key_len u32 | lsn u64 | [expires_at_ms u64] | [value_len u32] | key | value
//! block := entry* | count u32
//! ```
//!
//! `kind` is 0 (put), 1 (put with expiry: `expires_at_ms` present) or 2 (delete: no value
//! length, no value). Keys within a block are strictly increasing.

use crate::bytes::{put_u32, put_u64, put_u8, Reader};
use crate::entry::{Entry, EntryKind, KEY_MAX_BYTES, VALUE_MAX_BYTES};

const KIND_PUT: u8 = 0;
const KIND_PUT_EXPIRING: u8 = 1;
const KIND_DELETE: u8 = 2;

/// Bytes of the count at the end of a block.
const COUNT_BYTES: usize = 4;

/// The encoded size of one entry in a raw block.
pub(crate) fn encoded_len(entry: &Entry) -> usize {
    let fixed = 1 + 4 + 8 + entry.key.len();
    match &entry.kind {
        EntryKind::Put {
            value,
            expires_at_ms,
        } => fixed + 4 + value.len() + if expires_at_ms.is_some() { 8 } else { 0 },
        EntryKind::Delete => fixed,
    }
}

/// Accumulates the entries of the block being written.
#[derive(Default)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl BlockBuilder {
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The raw size of the block if `entry` were added now.
    pub(crate) fn raw_len_with(&self, entry: &Entry) -> usize {
        self.buf.len() + encoded_len(entry) + COUNT_BYTES
    }

    /// Appends `entry`; the caller checked its limits and its key order.
    pub(crate) fn add(&mut self, entry: &Entry) {
        assert!(entry.key.len() <= KEY_MAX_BYTES);
        let key_len = entry.key.len() as u32;
        match &entry.kind {
            EntryKind::Put {
                value,
                expires_at_ms,
            } => {
                assert!(value.len() <= VALUE_MAX_BYTES);
                let kind = if expires_at_ms.is_some() {
                    KIND_PUT_EXPIRING
                } else {
                    KIND_PUT
                };
                put_u8(&mut self.buf, kind);
                put_u32(&mut self.buf, key_len);
                put_u64(&mut self.buf, entry.lsn);
                if let Some(at) = expires_at_ms {
                    put_u64(&mut self.buf, *at);
                }
                put_u32(&mut self.buf, value.len() as u32);
                self.buf.extend_from_slice(&entry.key);
                self.buf.extend_from_slice(value);
            }
            EntryKind::Delete => {
                put_u8(&mut self.buf, KIND_DELETE);
                put_u32(&mut self.buf, key_len);
                put_u64(&mut self.buf, entry.lsn);
                self.buf.extend_from_slice(&entry.key);
            }
        }
        self.count += 1;
    }

    /// Seals the block and returns its raw bytes; call [`BlockBuilder::reset`] afterwards.
    pub(crate) fn finish(&mut self) -> &[u8] {
        assert!(self.count > 0, "sealing an empty block");
        put_u32(&mut self.buf, self.count);
        &self.buf
    }

    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.count = 0;
    }
}

/// Where one entry lives inside a decoded block.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key_start: u32,
    key_len: u32,
    value_start: u32,
    value_len: u32,
    lsn: u64,
    expires_at_ms: u64,
    kind: u8,
}

/// Fixed bytes charged to the cache per block on top of its data and slots.
const BLOCK_OVERHEAD_BYTES: usize = 96;

/// A verified, decompressed and parsed data block. Immutable; shared through the cache.
#[derive(Debug)]
pub struct Block {
    data: Vec<u8>,
    slots: Vec<Slot>,
}

impl Block {
    /// Parses a raw block, checking every length and the key order, so that later accesses
    /// cannot go out of bounds. The error is a reason for `TableError::Corrupt`.
    pub(crate) fn decode(data: Vec<u8>) -> Result<Block, String> {
        if data.len() < COUNT_BYTES || u32::try_from(data.len()).is_err() {
            return Err(format!("data block of {} raw bytes", data.len()));
        }
        let entries_len = data.len() - COUNT_BYTES;
        let count = Reader::new(&data[entries_len..]).u32().unwrap_or(0) as usize;
        // Every entry takes at least 13 bytes: bound the count before allocating slots.
        if count == 0 || count > entries_len / 13 {
            return Err(format!(
                "data block claims {count} entries in {entries_len} bytes"
            ));
        }
        let mut slots = Vec::with_capacity(count);
        let mut r = Reader::new(&data[..entries_len]);
        for i in 0..count {
            let slot = parse_slot(&mut r).ok_or_else(|| format!("entry {i} overruns the block"))?;
            if let Some(prev) = slots.last() {
                if key_of(&data, prev) >= key_of(&data, &slot) {
                    return Err(format!("entry {i}: keys out of order"));
                }
            }
            slots.push(slot);
        }
        if r.remaining() != 0 {
            return Err(format!("{} stray bytes after the entries", r.remaining()));
        }
        Ok(Block { data, slots })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The bytes this block holds in memory (what the cache charges).
    pub fn size_bytes(&self) -> usize {
        self.data.len() + self.slots.len() * std::mem::size_of::<Slot>() + BLOCK_OVERHEAD_BYTES
    }

    pub fn key(&self, i: usize) -> &[u8] {
        key_of(&self.data, &self.slots[i])
    }

    pub fn last_key(&self) -> &[u8] {
        self.key(self.slots.len() - 1)
    }

    pub fn entry(&self, i: usize) -> Entry {
        let s = &self.slots[i];
        let kind = match s.kind {
            KIND_DELETE => EntryKind::Delete,
            kind => {
                let start = s.value_start as usize;
                EntryKind::Put {
                    value: self.data[start..start + s.value_len as usize].to_vec(),
                    expires_at_ms: (kind == KIND_PUT_EXPIRING).then_some(s.expires_at_ms),
                }
            }
        };
        Entry {
            key: self.key(i).to_vec(),
            lsn: s.lsn,
            kind,
        }
    }

    /// The index of the first entry whose key is `>= key` (`len()` if none).
    pub fn seek(&self, key: &[u8]) -> usize {
        self.slots.partition_point(|s| key_of(&self.data, s) < key)
    }

    /// The index of the entry with exactly `key`.
    pub fn find(&self, key: &[u8]) -> Option<usize> {
        let i = self.seek(key);
        (i < self.len() && self.key(i) == key).then_some(i)
    }
}

fn key_of<'a>(data: &'a [u8], s: &Slot) -> &'a [u8] {
    let start = s.key_start as usize;
    &data[start..start + s.key_len as usize]
}

fn parse_slot(r: &mut Reader<'_>) -> Option<Slot> {
    let kind = r.u8()?;
    let key_len = r.u32()?;
    let lsn = r.u64()?;
    if key_len as usize > KEY_MAX_BYTES {
        return None;
    }
    let (expires_at_ms, value_len) = match kind {
        KIND_PUT => (0, r.u32()?),
        KIND_PUT_EXPIRING => (r.u64()?, r.u32()?),
        KIND_DELETE => (0, 0),
        _ => return None,
    };
    if value_len as usize > VALUE_MAX_BYTES {
        return None;
    }
    let key_start = r.pos() as u32;
    r.bytes(key_len as usize)?;
    let value_start = r.pos() as u32;
    r.bytes(value_len as usize)?;
    Some(Slot {
        key_start,
        key_len,
        value_start,
        value_len,
        lsn,
        expires_at_ms,
        kind,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn block_of(entries: &[Entry]) -> Block {
    let mut b = BlockBuilder::default();
    for e in entries {
        b.add(e);
    }
    Block::decode(b.finish().to_vec()).unwrap()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry::put(b"a".to_vec(), 1, b"one".to_vec()),
            Entry::delete(b"b".to_vec(), 2),
            Entry::put_expiring(b"c".to_vec(), 3, Vec::new(), 99),
        ]
    }

    #[test]
    fn builder_and_decoder_agree() {
        let entries = &sample();
        let mut b = BlockBuilder::default();
        let mut expected_len = 4;
        for e in entries {
            assert_eq!(b.raw_len_with(e), expected_len + encoded_len(e));
            expected_len += encoded_len(e);
            b.add(e);
        }
        let raw = b.finish().to_vec();
        assert_eq!(raw.len(), expected_len);
        let block = Block::decode(raw).unwrap();
        assert_eq!(block.len(), 3);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(&block.entry(i), e);
            assert_eq!(block.find(&e.key), Some(i));
        }
        assert_eq!(block.find(b"bb"), None);
        assert_eq!(block.seek(b"bb"), 2);
        assert_eq!(block.seek(b"z"), 3);
        assert_eq!(block.last_key(), b"c");
    }

    #[test]
    fn out_of_order_keys_and_overruns_are_refused() {
        let entries = sample();
        let mut b = BlockBuilder::default();
        b.add(&entries[1]);
        b.add(&entries[0]);
        assert!(Block::decode(b.finish().to_vec()).is_err());

        let mut b = BlockBuilder::default();
        b.add(&entries[0]);
        let raw = b.finish().to_vec();
        for cut in 0..raw.len() {
            let mut bad = raw[..cut].to_vec();
            bad.extend_from_slice(&1u32.to_le_bytes());
            if cut != raw.len() - 4 {
                assert!(Block::decode(bad).is_err(), "cut {cut}");
            }
        }
        let mut huge_count = raw.clone();
        let n = huge_count.len();
        huge_count[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Block::decode(huge_count).is_err());
    }
}
