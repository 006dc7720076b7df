//! Block compression codecs. Each stored block records the codec it was written with, so a
//! segment can mix codecs (cold data recompressed with zstd, blocks that did not compress).

/// The compression of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    None,
    #[default]
    Lz4,
    Snappy,
    /// zstd at `level` (see [`zstd_level_range`]).
    Zstd {
        level: i32,
    },
}

/// Codec ids as stored on disk.
pub(crate) const CODEC_ID_NONE: u8 = 0;
pub(crate) const CODEC_ID_LZ4: u8 = 1;
pub(crate) const CODEC_ID_SNAPPY: u8 = 2;
pub(crate) const CODEC_ID_ZSTD: u8 = 3;
pub(crate) const CODEC_ID_COUNT: usize = 4;

/// The zstd levels accepted by [`Codec::Zstd`].
pub fn zstd_level_range() -> std::ops::RangeInclusive<i32> {
    zstd::compression_level_range()
}

impl Codec {
    /// The id stored on disk (and in [`crate::IndexEntry::codec_id`]).
    pub fn id(self) -> u8 {
        match self {
            Codec::None => CODEC_ID_NONE,
            Codec::Lz4 => CODEC_ID_LZ4,
            Codec::Snappy => CODEC_ID_SNAPPY,
            Codec::Zstd { .. } => CODEC_ID_ZSTD,
        }
    }

    /// The codec for an on-disk id; the zstd level does not matter for decoding.
    pub(crate) fn from_id(id: u8, zstd_level: i32) -> Option<Codec> {
        match id {
            CODEC_ID_NONE => Some(Codec::None),
            CODEC_ID_LZ4 => Some(Codec::Lz4),
            CODEC_ID_SNAPPY => Some(Codec::Snappy),
            CODEC_ID_ZSTD => Some(Codec::Zstd { level: zstd_level }),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Lz4 => "lz4",
            Codec::Snappy => "snappy",
            Codec::Zstd { .. } => "zstd",
        }
    }

    /// Compresses `raw`; `None` when the codec failed or did not save at least 1/8 of the
    /// bytes, in which case the block is stored raw (decompressing costs CPU on every read,
    /// so a small saving is not worth it).
    pub(crate) fn compress(self, raw: &[u8]) -> Option<Vec<u8>> {
        let out = match self {
            Codec::None => return None,
            Codec::Lz4 => lz4_flex::block::compress(raw),
            Codec::Snappy => snap::raw::Encoder::new().compress_vec(raw).ok()?,
            Codec::Zstd { level } => zstd::bulk::compress(raw, level).ok()?,
        };
        let worth_bytes = raw.len() - raw.len() / 8;
        (out.len() <= worth_bytes).then_some(out)
    }
}

/// Decompresses a block stored with codec `id` to exactly `raw_len` bytes. The caller has
/// bounded `raw_len`; the error is a reason for `TableError::Corrupt`.
pub(crate) fn decompress(id: u8, stored: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let out = match id {
        CODEC_ID_NONE => stored.to_vec(),
        CODEC_ID_LZ4 => {
            let mut out = vec![0u8; raw_len];
            let n = lz4_flex::block::decompress_into(stored, &mut out)
                .map_err(|e| format!("lz4: {e}"))?;
            out.truncate(n);
            out
        }
        CODEC_ID_SNAPPY => {
            let len = snap::raw::decompress_len(stored).map_err(|e| format!("snappy: {e}"))?;
            if len != raw_len {
                return Err(format!(
                    "snappy: header says {len} bytes, block says {raw_len}"
                ));
            }
            let mut out = vec![0u8; raw_len];
            let n = snap::raw::Decoder::new()
                .decompress(stored, &mut out)
                .map_err(|e| format!("snappy: {e}"))?;
            out.truncate(n);
            out
        }
        CODEC_ID_ZSTD => {
            zstd::bulk::decompress(stored, raw_len).map_err(|e| format!("zstd: {e}"))?
        }
        other => return Err(format!("unknown codec id {other}")),
    };
    if out.len() != raw_len {
        return Err(format!(
            "decompressed to {} bytes, expected {raw_len}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn all() -> [Codec; 4] {
        [
            Codec::None,
            Codec::Lz4,
            Codec::Snappy,
            Codec::Zstd { level: 3 },
        ]
    }

    #[test]
    fn compressible_data_round_trips() {
        let raw: Vec<u8> = (0..20_000u32).map(|i| (i % 17) as u8).collect();
        for codec in all() {
            match codec.compress(&raw) {
                None => assert_eq!(codec, Codec::None),
                Some(stored) => {
                    assert!(stored.len() < raw.len() - raw.len() / 8);
                    assert_eq!(decompress(codec.id(), &stored, raw.len()).unwrap(), raw);
                    // A wrong expected length is an error, not a panic or a short block.
                    assert!(decompress(codec.id(), &stored, raw.len() - 1).is_err());
                }
            }
        }
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let mut x = 0x1234_5678_9abc_def0_u64;
        let raw: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for codec in all() {
            assert!(codec.compress(&raw).is_none(), "{codec:?}");
        }
    }

    #[test]
    fn garbage_does_not_decompress_to_a_wrong_length() {
        let garbage = [0xffu8; 64];
        for id in 0..=4u8 {
            if let Ok(out) = decompress(id, &garbage, 1000) {
                assert_eq!(out.len(), 1000);
            }
        }
    }
}
