//! Archived WAL pieces: a run of whole WAL chunks (exactly as the WAL wrote them, so their
//! CRC32s travel with them) from one segment, stored as one object.
//!
//! Name: `wal/shard-<n>/<first_lsn:020>-<last_lsn:020>.zst`. Body (little endian):
//! `magic "MWPC"`, `version u16 = 1`, `reserved u16 = 0`, `raw_len u64`,
//! `raw_sha256 [32]`, then one ZSTD frame of the raw chunk bytes. A piece is checked on
//! read: SHA-256 of the decompressed bytes, then every chunk's header and payload CRC, then
//! LSN continuity and the range the name promises.

use mantis_wal::{decode_payload, ChunkHeader, WalRecord, CHUNK_HEADER_BYTES};

use crate::dest::Destination;
use crate::error::{BackupError, Result};
use crate::manifest::sha256_hex;

pub const PIECE_MAGIC: &[u8; 4] = b"MWPC";
pub const PIECE_FORMAT_VERSION: u16 = 1;
const PIECE_HEADER_BYTES: usize = 4 + 2 + 2 + 8 + 32;
/// A piece never decompresses to more than this (the archiver cuts pieces well below it).
pub const PIECE_RAW_BYTES_MAX: u64 = 1 << 30;
const ZSTD_LEVEL: i32 = 3;

/// One piece as listed in the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceName {
    pub shard: usize,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub object: String,
}

pub fn shard_prefix(shard: usize) -> String {
    format!("wal/shard-{shard}/")
}

pub fn piece_object(shard: usize, first_lsn: u64, last_lsn: u64) -> String {
    format!("{}{first_lsn:020}-{last_lsn:020}.zst", shard_prefix(shard))
}

fn parse_name(shard: usize, object: &str) -> Option<PieceName> {
    let rest = object.strip_prefix(&shard_prefix(shard))?;
    let (a, b) = rest.strip_suffix(".zst")?.split_once('-')?;
    let (first_lsn, last_lsn) = (a.parse().ok()?, b.parse().ok()?);
    (first_lsn > 0 && first_lsn <= last_lsn).then(|| PieceName {
        shard,
        first_lsn,
        last_lsn,
        object: object.to_string(),
    })
}

/// The pieces of `shard` in `dest`, by first LSN.
pub fn list_pieces(dest: &dyn Destination, shard: usize) -> Result<Vec<PieceName>> {
    let mut out: Vec<PieceName> = dest
        .list(&shard_prefix(shard))?
        .iter()
        .filter_map(|o| parse_name(shard, o))
        .collect();
    out.sort_by_key(|p| (p.first_lsn, p.last_lsn));
    Ok(out)
}

/// The highest LSN archived for `shard` (0 when none).
pub fn archived_lsn(dest: &dyn Destination, shard: usize) -> Result<u64> {
    Ok(list_pieces(dest, shard)?
        .iter()
        .map(|p| p.last_lsn)
        .max()
        .unwrap_or(0))
}

pub fn encode_piece(raw: &[u8]) -> Result<Vec<u8>> {
    let stored = zstd::bulk::compress(raw, ZSTD_LEVEL)
        .map_err(|e| BackupError::Invalid(format!("zstd on a WAL piece: {e}")))?;
    let mut out = Vec::with_capacity(PIECE_HEADER_BYTES + stored.len());
    out.extend_from_slice(PIECE_MAGIC);
    out.extend_from_slice(&PIECE_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    use sha2::Digest;
    out.extend_from_slice(&sha2::Sha256::digest(raw));
    out.extend_from_slice(&stored);
    Ok(out)
}

/// Fetches a piece and returns its records, checked (see the module docs).
pub fn read_piece(dest: &dyn Destination, p: &PieceName) -> Result<Vec<WalRecord>> {
    let body = dest.get(&p.object)?;
    let bad = |reason: String| BackupError::Manifest {
        object: p.object.clone(),
        reason,
    };
    if body.len() < PIECE_HEADER_BYTES || &body[..4] != PIECE_MAGIC {
        return Err(bad("not a WAL piece (bad magic)".into()));
    }
    let version = u16::from_le_bytes([body[4], body[5]]);
    if version != PIECE_FORMAT_VERSION {
        return Err(bad(format!("unknown piece format version {version}")));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&body[8..16]);
    let raw_len = u64::from_le_bytes(len);
    if raw_len > PIECE_RAW_BYTES_MAX {
        return Err(bad(format!(
            "raw length {raw_len} above {PIECE_RAW_BYTES_MAX}"
        )));
    }
    let raw =
        zstd::bulk::decompress(&body[PIECE_HEADER_BYTES..], raw_len as usize).map_err(|e| {
            BackupError::Decompress {
                object: p.object.clone(),
                reason: e.to_string(),
            }
        })?;
    let expected = crate::manifest::hex(&body[16..48]);
    let found = sha256_hex(&raw);
    if expected != found {
        return Err(BackupError::ChecksumMismatch {
            object: p.object.clone(),
            what: "raw",
            expected,
            found,
        });
    }
    let records = decode_chunks(&raw).map_err(bad)?;
    let (first, last) = match (records.first(), records.last()) {
        (Some(f), Some(l)) => (f.lsn, l.lsn),
        _ => return Err(bad("no records".into())),
    };
    if (first, last) != (p.first_lsn, p.last_lsn) {
        return Err(bad(format!(
            "holds LSNs {first}..={last}, its name says {}..={}",
            p.first_lsn, p.last_lsn
        )));
    }
    Ok(records)
}

/// The records of consecutive whole chunks, each checked, LSNs without gaps.
pub fn decode_chunks(raw: &[u8]) -> std::result::Result<Vec<WalRecord>, String> {
    let mut out: Vec<WalRecord> = Vec::new();
    let mut at = 0usize;
    while at < raw.len() {
        let h = ChunkHeader::decode(&raw[at..]).map_err(|r| format!("chunk at {at}: {r}"))?;
        let payload_start = at + CHUNK_HEADER_BYTES;
        let payload_end = payload_start + h.payload_len as usize;
        let chunk_end = at + h.chunk_len_bytes() as usize;
        if chunk_end > raw.len() {
            return Err(format!("chunk at {at} runs past the piece"));
        }
        let records = decode_payload(&h, &raw[payload_start..payload_end])
            .map_err(|r| format!("chunk at {at}: {r}"))?;
        if let (Some(prev), Some(next)) = (out.last(), records.first()) {
            if next.lsn != prev.lsn + 1 {
                return Err(format!(
                    "chunk at {at}: LSN {} follows {} (gap)",
                    next.lsn, prev.lsn
                ));
            }
        }
        out.extend(records);
        at = chunk_end;
    }
    Ok(out)
}
