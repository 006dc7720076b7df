//! The properties block: what a segment holds, for the manifest, compaction picking, TTL
//! sweeps and the compression report.
//!
//! ```text
//! props := entry_count u64 | put_count u64 | tombstone_count u64 | expiring_count u64
//!        | has_expiry u8 | earliest_expiry_ms u64 | min_lsn u64 | max_lsn u64
//!        | min_key_len u32 | min_key | max_key_len u32 | max_key
//!        | key_bytes u64 | value_bytes u64 | block_count u64 | block_size_target u32
//!        | codec u8 | zstd_level u32 (i32 bits) | raw_data_bytes u64 | stored_data_bytes u64
//!        | blocks_by_codec u64 * 4 (none, lz4, snappy, zstd)
//! ```

use std::path::Path;

use crate::bytes::{put_bytes, put_u32, put_u64, put_u8, Reader};
use crate::codec::{Codec, CODEC_ID_COUNT};
use crate::entry::{Entry, EntryKind, KEY_MAX_BYTES};
use crate::error::{Result, TableError};

/// How the data blocks compressed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodecStats {
    /// Data block bytes before compression (block contents, without trailers).
    pub raw_data_bytes: u64,
    /// Data block bytes as stored (payloads and trailers).
    pub stored_data_bytes: u64,
    /// Data blocks stored with each codec, indexed none, lz4, snappy, zstd. Blocks that did
    /// not compress by 1/8 count as none.
    pub blocks_by_codec: [u64; CODEC_ID_COUNT],
}

impl CodecStats {
    /// stored / raw; 1.0 for an empty segment.
    pub fn ratio(&self) -> f64 {
        if self.raw_data_bytes == 0 {
            1.0
        } else {
            self.stored_data_bytes as f64 / self.raw_data_bytes as f64
        }
    }
}

/// The summary of a segment's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentProperties {
    pub entry_count: u64,
    pub put_count: u64,
    pub tombstone_count: u64,
    /// Puts that carry an expiry.
    pub expiring_count: u64,
    pub earliest_expiry_ms: Option<u64>,
    /// LSN range of the entries; both 0 for an empty segment.
    pub min_lsn: u64,
    pub max_lsn: u64,
    /// Key range; both empty for an empty segment.
    pub min_key: Vec<u8>,
    pub max_key: Vec<u8>,
    pub key_bytes: u64,
    pub value_bytes: u64,
    pub block_count: u64,
    pub block_size_target_bytes: u32,
    /// The codec the writer was configured with.
    pub codec: Codec,
    pub codec_stats: CodecStats,
}

impl SegmentProperties {
    pub(crate) fn new(codec: Codec, block_size_target_bytes: u32) -> Self {
        SegmentProperties {
            entry_count: 0,
            put_count: 0,
            tombstone_count: 0,
            expiring_count: 0,
            earliest_expiry_ms: None,
            min_lsn: 0,
            max_lsn: 0,
            min_key: Vec::new(),
            max_key: Vec::new(),
            key_bytes: 0,
            value_bytes: 0,
            block_count: 0,
            block_size_target_bytes,
            codec,
            codec_stats: CodecStats::default(),
        }
    }

    /// Accounts one entry; keys arrive in order, so the first is the minimum.
    pub(crate) fn add(&mut self, e: &Entry) {
        if self.entry_count == 0 {
            self.min_key = e.key.clone();
            self.min_lsn = e.lsn;
            self.max_lsn = e.lsn;
        }
        self.entry_count += 1;
        self.min_lsn = self.min_lsn.min(e.lsn);
        self.max_lsn = self.max_lsn.max(e.lsn);
        self.key_bytes += e.key.len() as u64;
        match &e.kind {
            EntryKind::Put {
                value,
                expires_at_ms,
            } => {
                self.put_count += 1;
                self.value_bytes += value.len() as u64;
                if let Some(at) = *expires_at_ms {
                    self.expiring_count += 1;
                    self.earliest_expiry_ms =
                        Some(self.earliest_expiry_ms.map_or(at, |cur| cur.min(at)));
                }
            }
            EntryKind::Delete => self.tombstone_count += 1,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.min_key.len() + self.max_key.len());
        for v in [
            self.entry_count,
            self.put_count,
            self.tombstone_count,
            self.expiring_count,
        ] {
            put_u64(&mut out, v);
        }
        put_u8(&mut out, u8::from(self.earliest_expiry_ms.is_some()));
        put_u64(&mut out, self.earliest_expiry_ms.unwrap_or(0));
        put_u64(&mut out, self.min_lsn);
        put_u64(&mut out, self.max_lsn);
        put_bytes(&mut out, &self.min_key);
        put_bytes(&mut out, &self.max_key);
        put_u64(&mut out, self.key_bytes);
        put_u64(&mut out, self.value_bytes);
        put_u64(&mut out, self.block_count);
        put_u32(&mut out, self.block_size_target_bytes);
        put_u8(&mut out, self.codec.id());
        let level = match self.codec {
            Codec::Zstd { level } => level,
            _ => 0,
        };
        put_u32(&mut out, level as u32);
        put_u64(&mut out, self.codec_stats.raw_data_bytes);
        put_u64(&mut out, self.codec_stats.stored_data_bytes);
        for n in self.codec_stats.blocks_by_codec {
            put_u64(&mut out, n);
        }
        out
    }

    pub(crate) fn decode(file: &Path, offset: u64, raw: &[u8]) -> Result<Self> {
        let bad = || TableError::corrupt(file, offset, "properties block malformed");
        let mut r = Reader::new(raw);
        let mut u64s = [0u64; 4];
        for v in &mut u64s {
            *v = r.u64().ok_or_else(bad)?;
        }
        let has_expiry = r.u8().ok_or_else(bad)?;
        let earliest = r.u64().ok_or_else(bad)?;
        let min_lsn = r.u64().ok_or_else(bad)?;
        let max_lsn = r.u64().ok_or_else(bad)?;
        let min_key = r.len_bytes(KEY_MAX_BYTES).ok_or_else(bad)?.to_vec();
        let max_key = r.len_bytes(KEY_MAX_BYTES).ok_or_else(bad)?.to_vec();
        let key_bytes = r.u64().ok_or_else(bad)?;
        let value_bytes = r.u64().ok_or_else(bad)?;
        let block_count = r.u64().ok_or_else(bad)?;
        let block_size_target_bytes = r.u32().ok_or_else(bad)?;
        let codec_id = r.u8().ok_or_else(bad)?;
        let level = r.u32().ok_or_else(bad)? as i32;
        let codec = Codec::from_id(codec_id, level).ok_or_else(bad)?;
        let raw_data_bytes = r.u64().ok_or_else(bad)?;
        let stored_data_bytes = r.u64().ok_or_else(bad)?;
        let mut blocks_by_codec = [0u64; CODEC_ID_COUNT];
        for n in &mut blocks_by_codec {
            *n = r.u64().ok_or_else(bad)?;
        }
        if r.remaining() != 0 || has_expiry > 1 {
            return Err(bad());
        }
        let [entry_count, put_count, tombstone_count, expiring_count] = u64s;
        Ok(SegmentProperties {
            entry_count,
            put_count,
            tombstone_count,
            expiring_count,
            earliest_expiry_ms: (has_expiry == 1).then_some(earliest),
            min_lsn,
            max_lsn,
            min_key,
            max_key,
            key_bytes,
            value_bytes,
            block_count,
            block_size_target_bytes,
            codec,
            codec_stats: CodecStats {
                raw_data_bytes,
                stored_data_bytes,
                blocks_by_codec,
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip() {
        let mut p = SegmentProperties::new(Codec::Zstd { level: -5 }, 16384);
        p.add(&Entry::put(b"a".to_vec(), 9, b"xy".to_vec()));
        p.add(&Entry::put_expiring(b"b".to_vec(), 3, b"z".to_vec(), 77));
        p.add(&Entry::delete(b"c".to_vec(), 12));
        p.codec_stats.blocks_by_codec = [1, 2, 3, 4];
        assert_eq!(p.entry_count, 3);
        assert_eq!((p.min_lsn, p.max_lsn), (3, 12));
        assert_eq!(p.earliest_expiry_ms, Some(77));
        assert_eq!(p.tombstone_count, 1);
        let raw = p.encode();
        let back = SegmentProperties::decode(Path::new("f"), 0, &raw).unwrap();
        assert_eq!(back, p);
        for cut in 0..raw.len() {
            assert!(SegmentProperties::decode(Path::new("f"), 0, &raw[..cut]).is_err());
        }
    }
}
