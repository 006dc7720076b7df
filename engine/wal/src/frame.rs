//! The byte layout of the log: chunks of records (`docs/formats.md, "Write-ahead log"` has every byte).
//!
//! One group commit writes one chunk, starting on a fresh 4 KiB block:
//! a 40-byte [`ChunkHeader`] followed by `record_count` records, each
//! `len u32 | lsn u64 | kind u8 | checksum | payload[len]`, zero-padded to a whole block.
//! The checksum is the chunk's algorithm (header byte 6, format v2): 4 bytes of CRC32
//! (little-endian, as v1 stored it), 16 of MD5 or 32 of SHA-256. A v1 chunk has a zero there
//! and is all CRC32. Decoding never panics and never trusts a length before checking it
//! against the buffer.

use mantis_integrity::{Algorithm, DIGEST_BYTES_MAX};
use mantis_storage::format::{WAL_CHUNK_MAGIC, WAL_FORMAT_VERSION, WAL_FORMAT_VERSION_MIN};
use mantis_storage::{align_up, BLOCK_SIZE};

use crate::error::CorruptReason;

pub const CHUNK_HEADER_BYTES: usize = 40;
/// `len u32 | lsn u64 | kind u8` before a record's checksum.
const RECORD_FIXED_BYTES: usize = 13;
/// A record header under CRC32 (every v1 record).
pub const RECORD_HEADER_BYTES: usize = RECORD_FIXED_BYTES + 4;

/// Bytes of a record header under `algorithm`.
pub const fn record_header_bytes(algorithm: Algorithm) -> usize {
    RECORD_FIXED_BYTES
        + match algorithm {
            Algorithm::Crc32 => 4,
            Algorithm::Md5 => 16,
            Algorithm::Sha256 => 32,
        }
}
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
    /// The payload's check value: the first four bytes (little-endian) of its checksum by
    /// `checksum` (for CRC32, the CRC itself).
    pub payload_crc: u32,
    /// The algorithm of the payload check value and of every record's checksum.
    pub checksum: Algorithm,
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
        b[6] = self.checksum.id();
        // 7: flags, reserved, zero.
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
        if !(WAL_FORMAT_VERSION_MIN..=WAL_FORMAT_VERSION).contains(&version) || b[7] != 0 {
            return Err(CorruptReason::BadVersion { found: version });
        }
        let checksum = match (version, b[6]) {
            (1, 0) => Algorithm::Crc32,
            (1, _) => return Err(CorruptReason::BadVersion { found: version }),
            (_, id) => Algorithm::from_id(id).map_err(|_| CorruptReason::RecordFraming {
                detail: "unknown checksum algorithm id",
            })?,
        };
        let h = ChunkHeader {
            segment_first_lsn: u64_at(b, 8),
            first_lsn: u64_at(b, 16),
            record_count: u32_at(b, 24),
            payload_len: u32_at(b, 28),
            payload_crc: u32_at(b, 32),
            checksum,
        };
        let min_payload = u64::from(h.record_count) * record_header_bytes(checksum) as u64;
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

/// Bytes one record adds to a chunk's payload under `algorithm`.
pub const fn record_encoded_len(algorithm: Algorithm, payload_len: usize) -> usize {
    record_header_bytes(algorithm) + payload_len
}

/// The checksum field of `parts` by `algorithm`: CRC32 little-endian (as v1 stored it), other
/// algorithms their digest bytes. Returns the field and its length.
fn checksum_field(algorithm: Algorithm, parts: &[&[u8]]) -> ([u8; DIGEST_BYTES_MAX], usize) {
    let mut out = [0u8; DIGEST_BYTES_MAX];
    if algorithm == Algorithm::Crc32 {
        let mut h = crc32fast::Hasher::new();
        for p in parts {
            h.update(p);
        }
        out[..4].copy_from_slice(&h.finalize().to_le_bytes());
        return (out, 4);
    }
    let mut h = algorithm.hasher();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    let len = digest.as_bytes().len();
    out[..len].copy_from_slice(digest.as_bytes());
    (out, len)
}

/// The check value of a checksum field (what errors report): its first four bytes, LE.
fn check_value(field: &[u8]) -> u32 {
    u32_at(field, 0)
}

/// The payload check value a chunk header keeps.
fn payload_check(algorithm: Algorithm, payload: &[u8]) -> u32 {
    let (field, _) = checksum_field(algorithm, &[payload]);
    check_value(&field)
}

/// Encodes a whole chunk with CRC32 checksums (the default); see [`encode_chunk_with`].
pub fn encode_chunk(segment_first_lsn: u64, first_lsn: u64, records: &[(u8, &[u8])]) -> Vec<u8> {
    encode_chunk_with(Algorithm::Crc32, segment_first_lsn, first_lsn, records)
}

/// Encodes a whole chunk, padded to a multiple of [`BLOCK_SIZE`], its records checksummed by
/// `algorithm`. `records` are `(kind, payload)` pairs; they get LSNs `first_lsn..`.
pub fn encode_chunk_with(
    algorithm: Algorithm,
    segment_first_lsn: u64,
    first_lsn: u64,
    records: &[(u8, &[u8])],
) -> Vec<u8> {
    assert!(!records.is_empty(), "a chunk holds at least one record");
    assert!(first_lsn > 0, "LSN 0 means 'none'");
    let header_bytes = record_header_bytes(algorithm);
    let payload_len: usize = records
        .iter()
        .map(|r| record_encoded_len(algorithm, r.1.len()))
        .sum();
    assert!(
        payload_len <= u32::MAX as usize,
        "chunk payload bounded by the batch limit"
    );
    let mut buf = Vec::with_capacity(chunk_len_bytes(payload_len));
    buf.resize(CHUNK_HEADER_BYTES, 0);
    for (i, (kind, payload)) in records.iter().enumerate() {
        assert!(payload.len() <= RECORD_PAYLOAD_MAX_BYTES);
        let mut fixed = [0u8; RECORD_FIXED_BYTES];
        fixed[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        fixed[4..12].copy_from_slice(&(first_lsn + i as u64).to_le_bytes());
        fixed[12] = *kind;
        let (field, field_len) = checksum_field(algorithm, &[&fixed, payload]);
        assert_eq!(RECORD_FIXED_BYTES + field_len, header_bytes);
        buf.extend_from_slice(&fixed);
        buf.extend_from_slice(&field[..field_len]);
        buf.extend_from_slice(payload);
    }
    let header = ChunkHeader {
        segment_first_lsn,
        first_lsn,
        record_count: records.len() as u32,
        payload_len: payload_len as u32,
        payload_crc: payload_check(algorithm, &buf[CHUNK_HEADER_BYTES..]),
        checksum: algorithm,
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
    let computed = payload_check(h.checksum, payload);
    if computed != h.payload_crc {
        return Err(CorruptReason::PayloadChecksum {
            stored: h.payload_crc,
            computed,
        });
    }
    let mut records = Vec::with_capacity(h.record_count as usize);
    let mut at = 0usize;
    for i in 0..u64::from(h.record_count) {
        let rec = decode_record_at(h.checksum, payload, at, h.first_lsn + i)?;
        at += record_encoded_len(h.checksum, rec.payload.len());
        records.push(rec);
    }
    if at != payload.len() {
        return Err(CorruptReason::RecordFraming {
            detail: "bytes left after the last record",
        });
    }
    Ok(records)
}

/// Decodes the record at byte `at` of a payload, which must carry LSN `lsn` and a checksum by
/// `algorithm`.
pub fn decode_record_at(
    algorithm: Algorithm,
    payload: &[u8],
    at: usize,
    lsn: u64,
) -> Result<WalRecord, CorruptReason> {
    let header_bytes = record_header_bytes(algorithm);
    let rest = payload.get(at..).unwrap_or(&[]);
    if rest.len() < header_bytes {
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
    if len > RECORD_PAYLOAD_MAX_BYTES || rest.len() - header_bytes < len {
        return Err(CorruptReason::RecordFraming {
            detail: "record length past the end of the chunk",
        });
    }
    let body = &rest[header_bytes..header_bytes + len];
    let stored = &rest[RECORD_FIXED_BYTES..header_bytes];
    let (field, field_len) = checksum_field(algorithm, &[&rest[0..RECORD_FIXED_BYTES], body]);
    if *stored != field[..field_len] {
        return Err(CorruptReason::RecordChecksum {
            lsn,
            stored: check_value(stored),
            computed: check_value(&field),
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
        match decode_record_at(h.checksum, payload, at, lsn) {
            Ok(rec) => at += record_encoded_len(h.checksum, rec.payload.len()),
            Err(reason @ CorruptReason::RecordChecksum { .. }) => {
                issues.push(RecordIssue {
                    payload_offset: at,
                    lsn,
                    reason,
                });
                // The length field is covered by the failed checksum but is our best guess.
                let len = u32_at(&payload[at..], 0) as usize;
                at += record_encoded_len(h.checksum, len);
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
