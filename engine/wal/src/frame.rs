//! The byte layout of the log: chunks of records (`docs/formats.md, "Write-ahead log"` has every byte).
//!
//! One group commit writes one chunk, starting on a fresh 4 KiB block:
//! a 40-byte [`ChunkHeader`] followed by `record_count` records, each
//! `len u32 | lsn u64 | kind u8 | crc32 u32 | payload[len]`, zero-padded to a whole block.
//! Decoding never panics and never trusts a length before checking it against the buffer.

use mantis_storage::format::{WAL_CHUNK_MAGIC, WAL_FORMAT_VERSION};
use mantis_storage::{align_up, BLOCK_SIZE};

use crate::error::CorruptReason;

pub const CHUNK_HEADER_BYTES: usize = 40;
pub const RECORD_HEADER_BYTES: usize = 17;
/// Largest payload of one record: a 64 MiB value plus ample headroom for its key and framing.
pub const RECORD_PAYLOAD_MAX_BYTES: usize = 256 << 20;

/// One record, as appended and as replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub lsn: u64,
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// The fixed header at the start of every chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The first LSN of the segment this chunk was written into (its file name): data left
    /// from another life of the file never matches, so it is never taken for log records.
    pub segment_first_lsn: u64,
    pub first_lsn: u64,
    pub record_count: u32,
    /// Bytes of records after the header (padding excluded).
    pub payload_len: u32,
    pub payload_crc: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl ChunkHeader {
    pub fn last_lsn(&self) -> u64 {
        self.first_lsn + u64::from(self.record_count) - 1
    }

    /// Bytes the chunk occupies on disk, padding included.
    pub fn chunk_len_bytes(&self) -> u64 {
        chunk_len_bytes(self.payload_len as usize) as u64
    }

    pub fn encode(&self) -> [u8; CHUNK_HEADER_BYTES] {
        let mut b = [0u8; CHUNK_HEADER_BYTES];
        b[0..4].copy_from_slice(&WAL_CHUNK_MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
        // 6..8: flags, reserved, zero.
        b[8..16].copy_from_slice(&self.segment_first_lsn.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[24..28].copy_from_slice(&self.record_count.to_le_bytes());
        b[28..32].copy_from_slice(&self.payload_len.to_le_bytes());
        b[32..36].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[0..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header (magic, version, checksum, basic sanity).
    pub fn decode(b: &[u8]) -> Result<ChunkHeader, CorruptReason> {
        if b.len() < CHUNK_HEADER_BYTES {
            return Err(CorruptReason::RecordFraming {
                detail: "chunk header cut short",
            });
        }
        let magic = u32_at(b, 0);
        if magic != WAL_CHUNK_MAGIC {
            return Err(CorruptReason::BadMagic { found: magic });
        }
        let stored = u32_at(b, 36);
        let computed = crc32fast::hash(&b[0..36]);
        if stored != computed {
            return Err(CorruptReason::HeaderChecksum { stored, computed });
        }
        let version = u16_at(b, 4);
        if version != WAL_FORMAT_VERSION || u16_at(b, 6) != 0 {
            return Err(CorruptReason::BadVersion { found: version });
        }
        let h = ChunkHeader {
            segment_first_lsn: u64_at(b, 8),
            first_lsn: u64_at(b, 16),
            record_count: u32_at(b, 24),
            payload_len: u32_at(b, 28),
            payload_crc: u32_at(b, 32),
        };
        let min_payload = u64::from(h.record_count) * RECORD_HEADER_BYTES as u64;
        if h.record_count == 0 || u64::from(h.payload_len) < min_payload {
            return Err(CorruptReason::RecordFraming {
                detail: "record count does not fit the payload length",
            });
        }
        if h.first_lsn == 0 || h.first_lsn.checked_add(u64::from(h.record_count)).is_none() {
            return Err(CorruptReason::RecordFraming {
                detail: "LSN range out of bounds",
            });
        }
        Ok(h)
    }
}

/// Bytes a chunk holding `payload_len` bytes of records takes on disk.
pub const fn chunk_len_bytes(payload_len: usize) -> usize {
    align_up(CHUNK_HEADER_BYTES + payload_len)
}

/// Bytes one record adds to a chunk's payload.
pub const fn record_encoded_len(payload_len: usize) -> usize {
    RECORD_HEADER_BYTES + payload_len
}

fn record_crc(header_without_crc: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header_without_crc);
    h.update(payload);
    h.finalize()
}

/// Encodes a whole chunk, padded to a multiple of [`BLOCK_SIZE`]. `records` are
/// `(kind, payload)` pairs; they get LSNs `first_lsn..`.
pub fn encode_chunk(segment_first_lsn: u64, first_lsn: u64, records: &[(u8, &[u8])]) -> Vec<u8> {
    assert!(!records.is_empty(), "a chunk holds at least one record");
    assert!(first_lsn > 0, "LSN 0 means 'none'");
    let payload_len: usize = records.iter().map(|r| record_encoded_len(r.1.len())).sum();
    assert!(
        payload_len <= u32::MAX as usize,
        "chunk payload bounded by the batch limit"
    );
    let mut buf = Vec::with_capacity(chunk_len_bytes(payload_len));
    buf.resize(CHUNK_HEADER_BYTES, 0);
    for (i, (kind, payload)) in records.iter().enumerate() {
        assert!(payload.len() <= RECORD_PAYLOAD_MAX_BYTES);
        let mut rh = [0u8; RECORD_HEADER_BYTES];
        rh[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        rh[4..12].copy_from_slice(&(first_lsn + i as u64).to_le_bytes());
        rh[12] = *kind;
        let crc = record_crc(&rh[0..13], payload);
        rh[13..17].copy_from_slice(&crc.to_le_bytes());
        buf.extend_from_slice(&rh);
        buf.extend_from_slice(payload);
    }
    let header = ChunkHeader {
        segment_first_lsn,
        first_lsn,
        record_count: records.len() as u32,
        payload_len: payload_len as u32,
        payload_crc: crc32fast::hash(&buf[CHUNK_HEADER_BYTES..]),
    };
    buf[..CHUNK_HEADER_BYTES].copy_from_slice(&header.encode());
    buf.resize(chunk_len_bytes(payload_len), 0);
    debug_assert_eq!(buf.len() % BLOCK_SIZE, 0);
    buf
}

/// Checks a chunk's payload (the bytes right after its header) and decodes its records.
pub fn decode_payload(h: &ChunkHeader, payload: &[u8]) -> Result<Vec<WalRecord>, CorruptReason> {
    if payload.len() != h.payload_len as usize {
        return Err(CorruptReason::RecordFraming {
            detail: "payload length differs from the header",
        });
    }
    let computed = crc32fast::hash(payload);
    if computed != h.payload_crc {
        return Err(CorruptReason::PayloadChecksum {
            stored: h.payload_crc,
            computed,
        });
    }
    let mut records = Vec::with_capacity(h.record_count as usize);
    let mut at = 0usize;
    for i in 0..u64::from(h.record_count) {
        let rec = decode_record_at(payload, at, h.first_lsn + i)?;
        at += record_encoded_len(rec.payload.len());
        records.push(rec);
    }
    if at != payload.len() {
        return Err(CorruptReason::RecordFraming {
            detail: "bytes left after the last record",
        });
    }
    Ok(records)
}

/// Decodes the record at byte `at` of a payload, which must carry LSN `lsn`.
pub fn decode_record_at(payload: &[u8], at: usize, lsn: u64) -> Result<WalRecord, CorruptReason> {
    let rest = payload.get(at..).unwrap_or(&[]);
    if rest.len() < RECORD_HEADER_BYTES {
        return Err(CorruptReason::RecordFraming {
            detail: "record header cut short",
        });
    }
    let len = u32_at(rest, 0) as usize;
    let found_lsn = u64_at(rest, 4);
    if found_lsn != lsn {
        return Err(CorruptReason::LsnMismatch {
            expected: lsn,
            found: found_lsn,
        });
    }
    if len > RECORD_PAYLOAD_MAX_BYTES || rest.len() - RECORD_HEADER_BYTES < len {
        return Err(CorruptReason::RecordFraming {
            detail: "record length past the end of the chunk",
        });
    }
    let body = &rest[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
    let stored = u32_at(rest, 13);
    let computed = record_crc(&rest[0..13], body);
    if stored != computed {
        return Err(CorruptReason::RecordChecksum {
            lsn,
            stored,
            computed,
        });
    }
    Ok(WalRecord {
        lsn,
        kind: rest[12],
        payload: body.to_vec(),
    })
}

/// A record that failed inside a chunk whose payload checksum failed (for `verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordIssue {
    /// Byte offset of the record inside the chunk's payload.
    pub payload_offset: usize,
    pub lsn: u64,
    pub reason: CorruptReason,
}

/// Walks the records of a damaged payload one by one and names the ones that fail, stopping
/// at the first framing error (after it, record boundaries are unknown).
pub fn inspect_payload(h: &ChunkHeader, payload: &[u8]) -> Vec<RecordIssue> {
    let mut issues = Vec::new();
    let mut at = 0usize;
    for i in 0..u64::from(h.record_count) {
        let lsn = h.first_lsn + i;
        match decode_record_at(payload, at, lsn) {
            Ok(rec) => at += record_encoded_len(rec.payload.len()),
            Err(reason @ CorruptReason::RecordChecksum { .. }) => {
                issues.push(RecordIssue {
                    payload_offset: at,
                    lsn,
                    reason,
                });
                // The length field is covered by the failed checksum but is our best guess.
                let len = u32_at(&payload[at..], 0) as usize;
                at += record_encoded_len(len);
            }
            Err(reason) => {
                issues.push(RecordIssue {
                    payload_offset: at,
                    lsn,
                    reason,
                });
                break;
            }
        }
    }
    issues
}

/// True when every byte is zero (written to vectorise: no early exit per byte).
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(256)
        .all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chunk_round_trip_and_padding() {
        let big = vec![7u8; 5000];
        let recs: Vec<(u8, &[u8])> = vec![(1, b""), (2, b"hello"), (3, &big)];
        let buf = encode_chunk(10, 12, &recs);
        assert_eq!(buf.len() % BLOCK_SIZE, 0);
        let h = ChunkHeader::decode(&buf).unwrap();
        assert_eq!(h.first_lsn, 12);
        assert_eq!(h.last_lsn(), 14);
        assert_eq!(h.segment_first_lsn, 10);
        assert_eq!(h.chunk_len_bytes() as usize, buf.len());
        let payload = &buf[CHUNK_HEADER_BYTES..CHUNK_HEADER_BYTES + h.payload_len as usize];
        let out = decode_payload(&h, payload).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].payload, big);
        assert_eq!(out[1].lsn, 13);
        assert_eq!(out[0].kind, 1);
    }

    #[test]
    fn flipped_bits_are_caught_where_they_are() {
        let recs: Vec<(u8, &[u8])> = vec![(1, b"abc"), (2, b"defgh")];
        let mut buf = encode_chunk(1, 1, &recs);
        buf[5] ^= 1;
        assert!(matches!(
            ChunkHeader::decode(&buf),
            Err(CorruptReason::HeaderChecksum { .. })
        ));
        buf[5] ^= 1;
        let second_payload = CHUNK_HEADER_BYTES + RECORD_HEADER_BYTES + 3 + RECORD_HEADER_BYTES;
        buf[second_payload] ^= 0x10;
        let h = ChunkHeader::decode(&buf).unwrap();
        let payload = &buf[CHUNK_HEADER_BYTES..CHUNK_HEADER_BYTES + h.payload_len as usize];
        assert!(matches!(
            decode_payload(&h, payload),
            Err(CorruptReason::PayloadChecksum { .. })
        ));
        let issues = inspect_payload(&h, payload);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].lsn, 2);
        assert!(matches!(
            issues[0].reason,
            CorruptReason::RecordChecksum { lsn: 2, .. }
        ));
    }

    #[test]
    fn zero_block_is_bad_magic_not_a_header() {
        assert!(matches!(
            ChunkHeader::decode(&[0u8; 64]),
            Err(CorruptReason::BadMagic { found: 0 })
        ));
        assert!(is_zero(&[0u8; 4096]));
        let mut b = [0u8; 4096];
        b[4095] = 1;
        assert!(!is_zero(&b));
    }
}
