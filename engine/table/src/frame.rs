//! The stored form of every block (data, index, filter, properties):
//!
//! ```text
//! payload (compressed or raw) | codec u8 | raw_len u32 | checksum (4, 16 or 32 bytes)
//! ```
//!
//! The checksum covers everything before it (payload, codec, raw length), so a flipped bit in
//! any of them is caught before the payload is decompressed or parsed. Its algorithm is the
//! segment's (recorded in the footer, format v3; v2 segments are all CRC32): CRC32 stored as a
//! little-endian u32, MD5 or SHA-256 as their digest bytes. The *check value* of a block is the
//! first four checksum bytes read as a little-endian u32 — the CRC itself for CRC32 — which the
//! footer keeps for its meta blocks.

use std::path::Path;

use mantis_integrity::{Algorithm, DIGEST_BYTES_MAX};

use crate::bytes::{put_u32, put_u8, Reader};
use crate::codec::{decompress, Codec, CODEC_ID_NONE};
use crate::error::{Result, TableError};

/// codec u8 + raw_len u32, before the checksum.
const TRAILER_HEAD_BYTES: usize = 5;
/// The longest trailer (SHA-256).
const TRAILER_BYTES_MAX: usize = TRAILER_HEAD_BYTES + DIGEST_BYTES_MAX;

/// Bytes of a block trailer under `algorithm`.
pub(crate) fn trailer_bytes(algorithm: Algorithm) -> usize {
    TRAILER_HEAD_BYTES + algorithm.digest_bytes()
}

/// The checksum field of a trailer: CRC32 little-endian (as format v2 stored it), other
/// algorithms their digest bytes.
fn checksum_field(algorithm: Algorithm, covered: &[&[u8]]) -> ([u8; DIGEST_BYTES_MAX], usize) {
    let mut out = [0u8; DIGEST_BYTES_MAX];
    let len = algorithm.digest_bytes();
    if algorithm == Algorithm::Crc32 {
        let mut h = crc32fast::Hasher::new();
        for part in covered {
            h.update(part);
        }
        out[..4].copy_from_slice(&h.finalize().to_le_bytes());
    } else {
        let mut h = algorithm.hasher();
        for part in covered {
            h.update(part);
        }
        out[..len].copy_from_slice(h.finalize().as_bytes());
    }
    (out, len)
}

/// The check value of a checksum field: its first four bytes as a little-endian u32.
fn check_value(field: &[u8]) -> u32 {
    let mut four = [0u8; 4];
    four.copy_from_slice(&field[..4]);
    u32::from_le_bytes(four)
}

/// A block ready to append to the file: its payload (the compressed bytes, or the raw bytes
/// themselves when compression did not pay, without copying them) then its trailer.
pub(crate) struct Framed {
    compressed: Option<Vec<u8>>,
    trailer: [u8; TRAILER_BYTES_MAX],
    trailer_len: usize,
    pub(crate) codec_id: u8,
    /// The block's check value (the CRC for CRC32).
    pub(crate) crc: u32,
}

impl Framed {
    /// The payload to write before the trailer; `raw` is what was given to [`frame`].
    pub(crate) fn payload<'a>(&'a self, raw: &'a [u8]) -> &'a [u8] {
        self.compressed.as_deref().unwrap_or(raw)
    }

    /// The bytes to write right after the payload.
    pub(crate) fn trailer(&self) -> &[u8] {
        &self.trailer[..self.trailer_len]
    }

    /// Payload plus trailer.
    pub(crate) fn stored_len(&self, raw: &[u8]) -> usize {
        self.payload(raw).len() + self.trailer_len
    }

    #[cfg(test)]
    pub(crate) fn to_bytes(&self, raw: &[u8]) -> Vec<u8> {
        let mut out = self.payload(raw).to_vec();
        out.extend_from_slice(self.trailer());
        out
    }
}

/// Compresses `raw` with `codec` (or keeps it raw when that does not pay) and frames it with a
/// checksum by `algorithm`.
pub(crate) fn frame(raw: &[u8], codec: Codec, algorithm: Algorithm) -> Framed {
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
    let (field, field_len) =
        checksum_field(algorithm, &[compressed.as_deref().unwrap_or(raw), &head]);
    let mut trailer = [0u8; TRAILER_BYTES_MAX];
    trailer[..TRAILER_HEAD_BYTES].copy_from_slice(&head);
    trailer[TRAILER_HEAD_BYTES..TRAILER_HEAD_BYTES + field_len]
        .copy_from_slice(&field[..field_len]);
    Framed {
        compressed,
        trailer,
        trailer_len: TRAILER_HEAD_BYTES + field_len,
        codec_id,
        crc: check_value(&field),
    }
}

/// What [`unframe`] found in a verified block.
pub(crate) struct Unframed {
    pub(crate) raw: Vec<u8>,
    pub(crate) codec_id: u8,
    /// The block's check value (the CRC for CRC32).
    pub(crate) crc: u32,
}

/// Verifies the checksum (by `algorithm`) of a stored block read from `file` at `offset`, then
/// decompresses it. `raw_len_max` bounds the allocation: lengths on disk are untrusted even
/// under a good checksum (a file can be garbage that happens to carry a valid one).
pub(crate) fn unframe(
    file: &Path,
    offset: u64,
    mut stored: Vec<u8>,
    raw_len_max: usize,
    algorithm: Algorithm,
) -> Result<Unframed> {
    if stored.len() < trailer_bytes(algorithm) {
        return Err(TableError::corrupt(
            file,
            offset,
            format!(
                "block of {} bytes is shorter than its trailer",
                stored.len()
            ),
        ));
    }
    let body_len = stored.len() - algorithm.digest_bytes();
    let (body, expected) = stored.split_at(body_len);
    let (field, field_len) = checksum_field(algorithm, &[body]);
    let found = &field[..field_len];
    if expected != found {
        return Err(mismatch(file, offset, algorithm, expected, found));
    }
    let found = check_value(found);
    let payload_len = body_len - TRAILER_HEAD_BYTES;
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

/// CRC32 mismatches keep their u32 form (as every v2 report had it); longer digests are
/// reported whole, in hex.
fn mismatch(
    file: &Path,
    offset: u64,
    algorithm: Algorithm,
    expected: &[u8],
    found: &[u8],
) -> TableError {
    if algorithm == Algorithm::Crc32 {
        return TableError::ChecksumMismatch {
            file: file.to_path_buf(),
            offset,
            expected: check_value(expected),
            found: check_value(found),
        };
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    TableError::DigestMismatch {
        file: file.to_path_buf(),
        offset,
        algorithm: algorithm.name(),
        expected: hex(expected),
        found: hex(found),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_and_every_bit_flip_is_caught() {
        let raw: Vec<u8> = (0..3000u32).map(|i| (i % 7) as u8).collect();
        for algorithm in Algorithm::ALL {
            let framed = frame(&raw, Codec::Lz4, algorithm);
            assert_eq!(framed.codec_id, Codec::Lz4.id());
            assert_eq!(framed.trailer().len(), trailer_bytes(algorithm));
            let bytes = framed.to_bytes(&raw);
            assert_eq!(bytes.len(), framed.stored_len(&raw));
            let path = Path::new("t.seg");
            let back = unframe(path, 0, bytes.clone(), 1 << 20, algorithm).unwrap();
            assert_eq!(back.raw, raw);
            assert_eq!(back.crc, framed.crc);
            for bit in 0..bytes.len() * 8 {
                let mut bad = bytes.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                let err = unframe(path, 4096, bad, 1 << 20, algorithm).err().unwrap();
                assert!(
                    matches!(
                        err,
                        TableError::ChecksumMismatch { offset: 4096, .. }
                            | TableError::DigestMismatch { offset: 4096, .. }
                    ),
                    "{algorithm}: {err}"
                );
                assert!(err.is_corruption());
            }
        }
    }

    /// The CRC32 trailer is byte for byte what format v2 wrote, so v2 blocks still read.
    #[test]
    fn crc32_trailer_is_the_v2_layout() {
        let raw = b"hello block".to_vec();
        let framed = frame(&raw, Codec::None, Algorithm::Crc32);
        let bytes = framed.to_bytes(&raw);
        let n = bytes.len();
        assert_eq!(n, raw.len() + 9);
        assert_eq!(bytes[raw.len()], CODEC_ID_NONE);
        assert_eq!(
            &bytes[raw.len() + 1..n - 4],
            &(raw.len() as u32).to_le_bytes()
        );
        let crc = crc32fast::hash(&bytes[..n - 4]);
        assert_eq!(&bytes[n - 4..], &crc.to_le_bytes());
        assert_eq!(framed.crc, crc);
    }

    #[test]
    fn sha256_mismatch_names_both_digests() {
        let raw = b"payload".to_vec();
        let mut bytes = frame(&raw, Codec::None, Algorithm::Sha256).to_bytes(&raw);
        bytes[0] ^= 1;
        let err = unframe(Path::new("t"), 0, bytes, 1 << 20, Algorithm::Sha256)
            .err()
            .unwrap();
        match err {
            TableError::DigestMismatch {
                algorithm,
                expected,
                found,
                ..
            } => {
                assert_eq!(algorithm, "sha256");
                assert_eq!((expected.len(), found.len()), (64, 64));
                assert_ne!(expected, found);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn raw_length_over_the_limit_is_refused_before_allocating() {
        let framed = frame(&[1, 2, 3], Codec::None, Algorithm::Crc32);
        let bytes = framed.to_bytes(&[1, 2, 3]);
        let err = unframe(Path::new("t"), 8, bytes, 2, Algorithm::Crc32)
            .err()
            .unwrap();
        assert!(
            matches!(err, TableError::Corrupt { offset: 8, .. }),
            "{err}"
        );
        let err = unframe(Path::new("t"), 8, vec![0; 5], 2, Algorithm::Crc32)
            .err()
            .unwrap();
        assert!(matches!(err, TableError::Corrupt { .. }), "{err}");
    }
}
