//! Reading not-yet-archived chunks straight from a shard's WAL segment files, on the
//! archiver's std thread (buffered reads: the kernel keeps them coherent with the WAL's
//! O_DIRECT writes). Only durable chunks are taken (`durable_lsn` from the gate); a chunk
//! still being written fails its CRC and is simply taken at a later tick. The WAL does not
//! recycle a segment holding unarchived records, so the files read here stay put; a file
//! that vanished or changed identity is detected by the chunk headers (each names its
//! segment) and the search starts over.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use mantis_storage::format::WAL_FILE_SUFFIX;
use mantis_wal::{decode_payload, ChunkHeader, CHUNK_HEADER_BYTES};

const BLOCK_BYTES: usize = 4096;

/// Where the next unarchived chunk is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub segment_first_lsn: u64,
    pub offset_bytes: u64,
}

/// Durable chunks read past the archived LSN, ready to ship as one piece.
#[derive(Debug, Clone)]
pub struct Pending {
    pub raw: Vec<u8>,
    pub first_lsn: u64,
    pub last_lsn: u64,
    /// Commit time of the first record, when its kind carries one.
    pub oldest_commit_ms: Option<u64>,
    /// Where reading continues once this piece is archived.
    pub next: Cursor,
    /// Records below `first_lsn` and above the archived LSN are gone from the WAL (it was
    /// recycled before archiving started): the archive has a gap there.
    pub gap_from_lsn: Option<u64>,
}

/// Live segments `(first_lsn, path)`, sorted.
pub fn list_segments(wal_dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(wal_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_suffix(WAL_FILE_SUFFIX)) else {
            continue;
        };
        if let Ok(lsn) = digits.parse::<u64>() {
            out.push((lsn, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Bytes of segment files from `cursor`'s segment on: what the WAL keeps for the archiver.
pub fn held_bytes(wal_dir: &Path, cursor: Option<Cursor>) -> u64 {
    let from = cursor.map_or(0, |c| c.segment_first_lsn);
    list_segments(wal_dir)
        .unwrap_or_default()
        .iter()
        .filter(|(lsn, _)| *lsn >= from)
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Reads durable chunks with LSNs from `next_lsn` up to `durable_lsn`, at most about
/// `bytes_max` of them, from one segment. `None` when there is nothing to ship.
pub fn read_pending(
    wal_dir: &Path,
    cursor: Option<Cursor>,
    next_lsn: u64,
    durable_lsn: u64,
    bytes_max: usize,
) -> std::io::Result<Option<Pending>> {
    if next_lsn > durable_lsn {
        return Ok(None);
    }
    let segments = list_segments(wal_dir)?;
    let start = match cursor.filter(|c| segments.iter().any(|s| s.0 == c.segment_first_lsn)) {
        Some(c) => c,
        None => match segments
            .iter()
            .rev()
            .find(|s| s.0 <= next_lsn)
            .or(segments.first())
        {
            Some(s) => Cursor {
                segment_first_lsn: s.0,
                offset_bytes: 0,
            },
            None => return Ok(None),
        },
    };
    let found = read_from(wal_dir, start, next_lsn, durable_lsn, bytes_max)?;
    if found.is_some() {
        return Ok(found);
    }
    // The segment ended: continue in the one starting at the next LSN, if it exists.
    match segments
        .iter()
        .find(|s| s.0 == next_lsn && s.0 != start.segment_first_lsn)
    {
        Some(s) => {
            let c = Cursor {
                segment_first_lsn: s.0,
                offset_bytes: 0,
            };
            read_from(wal_dir, c, next_lsn, durable_lsn, bytes_max)
        }
        None => Ok(None),
    }
}

fn read_from(
    wal_dir: &Path,
    at: Cursor,
    mut next_lsn: u64,
    durable_lsn: u64,
    bytes_max: usize,
) -> std::io::Result<Option<Pending>> {
    let path = wal_dir.join(mantis_wal::segment_file_name(at.segment_first_lsn));
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    let mut off = at.offset_bytes;
    let mut out: Option<Pending> = None;
    let mut gap_from_lsn = None;
    while off + BLOCK_BYTES as u64 <= size && out.as_ref().map_or(0, |p| p.raw.len()) < bytes_max {
        let mut head = vec![0u8; BLOCK_BYTES];
        file.read_exact_at(&mut head, off)?;
        let Ok(h) = ChunkHeader::decode(&head) else {
            break;
        };
        if h.segment_first_lsn != at.segment_first_lsn || h.last_lsn() > durable_lsn {
            break;
        }
        let len = h.chunk_len_bytes();
        if off + len > size {
            break;
        }
        if h.last_lsn() < next_lsn {
            off += len; // already archived (a restart resumes at the segment start)
            continue;
        }
        if h.first_lsn > next_lsn {
            if out.is_some() {
                break;
            }
            gap_from_lsn = Some(next_lsn);
        }
        let mut chunk = vec![0u8; len as usize];
        file.read_exact_at(&mut chunk, off)?;
        let payload = &chunk[CHUNK_HEADER_BYTES..CHUNK_HEADER_BYTES + h.payload_len as usize];
        let Ok(records) = decode_payload(&h, payload) else {
            break;
        };
        off += len;
        next_lsn = h.last_lsn() + 1;
        let next = Cursor {
            segment_first_lsn: at.segment_first_lsn,
            offset_bytes: off,
        };
        match &mut out {
            Some(p) => {
                p.raw.extend_from_slice(&chunk);
                p.last_lsn = h.last_lsn();
                p.next = next;
            }
            None => {
                let oldest_commit_ms = records
                    .first()
                    .and_then(|r| mantis_engine::record::committed_at_ms(r.kind, &r.payload));
                out = Some(Pending {
                    raw: chunk,
                    first_lsn: h.first_lsn,
                    last_lsn: h.last_lsn(),
                    oldest_commit_ms,
                    next,
                    gap_from_lsn,
                });
            }
        }
    }
    Ok(out)
}
