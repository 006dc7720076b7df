//! The stored form of every block (data, index, filter, properties):
//!
//! ```text
//! payload (stored_len - 9 bytes, compressed or raw) | codec u8 | raw_len u32 | crc32 u32
//! ```
//!
//! The CRC32 covers everything before it (payload, codec, raw length), so a flipped bit in
//! any of them is caught before the payload is decompressed or parsed.

use std::path::Path;

use crate::bytes::{put_u32, put_u8, Reader};
use crate::codec::{decompress, Codec, CODEC_ID_NONE};
use crate::error::{Result, TableError};

/// codec u8 + raw_len u32 + crc32 u32.
pub(crate) const TRAILER_BYTES: usize = 9;

/// A block ready to append to the file: its payload (the compressed bytes, or the raw bytes
/// themselves when compression did not pay, without copying them) then its trailer.
pub(crate) struct Framed {
    compressed: Option<Vec<u8>>,
    pub(crate) trailer: [u8; TRAILER_BYTES],
    pub(crate) codec_id: u8,
    pub(crate) crc: u32,
}

impl Framed {
    /// The payload to write before the trailer; `raw` is what was given to [`frame`].
    pub(crate) fn payload<'a>(&'a self, raw: &'a [u8]) -> &'a [u8] {
        self.compressed.as_deref().unwrap_or(raw)
    }

    /// Payload plus trailer.
    pub(crate) fn stored_len(&self, raw: &[u8]) -> usize {
        self.payload(raw).len() + TRAILER_BYTES
    }

    #[cfg(test)]
    pub(crate) fn to_bytes(&self, raw: &[u8]) -> Vec<u8> {
        let mut out = self.payload(raw).to_vec();
        out.extend_from_slice(&self.trailer);
        out
    }
}

/// Compresses `raw` with `codec` (or keeps it raw when that does not pay) and frames it.
pub(crate) fn frame(raw: &[u8], codec: Codec) -> Framed {
    assert!(u32::try_from(raw.len()).is_ok(), "block over 4 GiB");
    let compressed = codec.compress(raw);
    let codec_id = if compressed.is_some() {
        codec.id()
    } else {
        Codec::None.id()
    };
    let mut head = Vec::with_capacity(5);
    put_u8(&mut head, codec_id);
    put_u32(&mut head, raw.len() as u32);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(compressed.as_deref().unwrap_or(raw));
    hasher.update(&head);
    let crc = hasher.finalize();
    let mut trailer = [0u8; TRAILER_BYTES];
    trailer[..5].copy_from_slice(&head);
    trailer[5..].copy_from_slice(&crc.to_le_bytes());
    Framed {
        compressed,
        trailer,
        codec_id,
        crc,
    }
}

/// What [`unframe`] found in a verified block.
pub(crate) struct Unframed {
    pub(crate) raw: Vec<u8>,
    pub(crate) codec_id: u8,
    pub(crate) crc: u32,
}

/// Verifies the CRC of a stored block read from `file` at `offset`, then decompresses it.
/// `raw_len_max` bounds the allocation: lengths on disk are untrusted even under a good CRC
/// (a file can be garbage that happens to carry a valid checksum).
pub(crate) fn unframe(
    file: &Path,
    offset: u64,
    mut stored: Vec<u8>,
    raw_len_max: usize,
) -> Result<Unframed> {
    if stored.len() < TRAILER_BYTES {
        return Err(TableError::corrupt(
            file,
            offset,
            format!(
                "block of {} bytes is shorter than its trailer",
                stored.len()
            ),
        ));
    }
    let body_len = stored.len() - 4;
    let (body, crc_bytes) = stored.split_at(body_len);
    let mut r = Reader::new(crc_bytes);
    let expected = r.u32().unwrap_or_default();
    let found = crc32fast::hash(body);
    if expected != found {
        return Err(TableError::ChecksumMismatch {
            file: file.to_path_buf(),
            offset,
            expected,
            found,
        });
    }
    let payload_len = body_len - 5;
    let mut r = Reader::new(&body[payload_len..]);
    let codec_id = r.u8().unwrap_or(u8::MAX);
    let raw_len = r.u32().unwrap_or(u32::MAX) as usize;
    if raw_len > raw_len_max {
        return Err(TableError::corrupt(
            file,
            offset,
            format!("block claims {raw_len} raw bytes, more than the limit of {raw_len_max}"),
        ));
    }
    let raw = if codec_id == CODEC_ID_NONE && payload_len == raw_len {
        // Stored raw: reuse the read buffer instead of copying a block of up to 64 MiB.
        stored.truncate(payload_len);
        stored
    } else {
        decompress(codec_id, &body[..payload_len], raw_len)
            .map_err(|reason| TableError::corrupt(file, offset, reason))?
    };
    Ok(Unframed {
        raw,
        codec_id,
        crc: found,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_and_every_bit_flip_is_caught() {
        let raw: Vec<u8> = (0..3000u32).map(|i| (i % 7) as u8).collect();
        let framed = frame(&raw, Codec::Lz4);
        assert_eq!(framed.codec_id, Codec::Lz4.id());
        let bytes = framed.to_bytes(&raw);
        assert_eq!(bytes.len(), framed.stored_len(&raw));
        let path = Path::new("t.seg");
        let back = unframe(path, 0, bytes.clone(), 1 << 20).unwrap();
        assert_eq!(back.raw, raw);
        assert_eq!(back.crc, framed.crc);
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let err = unframe(path, 4096, bad, 1 << 20).err().unwrap();
            assert!(
                matches!(err, TableError::ChecksumMismatch { offset: 4096, .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn raw_length_over_the_limit_is_refused_before_allocating() {
        let framed = frame(&[1, 2, 3], Codec::None);
        let bytes = framed.to_bytes(&[1, 2, 3]);
        let err = unframe(Path::new("t"), 8, bytes, 2).err().unwrap();
        assert!(
            matches!(err, TableError::Corrupt { offset: 8, .. }),
            "{err}"
        );
        let err = unframe(Path::new("t"), 8, vec![0; 5], 2).err().unwrap();
        assert!(matches!(err, TableError::Corrupt { .. }), "{err}");
    }
}
