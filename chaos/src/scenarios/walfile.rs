//! Just enough of the WAL segment format (docs/formats.md) to find chunk boundaries: a chunk
//! starts on a 4 KiB block with magic 0x4d57414c, its payload length at offset 28, and is
//! padded to the next block.

use std::path::{Path, PathBuf};

const BLOCK_BYTES: u64 = 4096;
const CHUNK_HEADER_BYTES: u64 = 40;
const CHUNK_MAGIC: u32 = 0x4d57_414c;

/// The `[start, end)` byte ranges of the chunks at the front of a segment.
pub fn chunks(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut off = 0u64;
    let len = bytes.len() as u64;
    while off + CHUNK_HEADER_BYTES <= len {
        let at = |o: u64| -> u32 {
            let i = (off + o) as usize;
            u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]])
        };
        if at(0) != CHUNK_MAGIC {
            break;
        }
        let payload = u64::from(at(28));
        let end = (off + CHUNK_HEADER_BYTES + payload).div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        if end > len {
            break;
        }
        out.push((off, end));
        off = end;
    }
    out
}

/// The newest live WAL segment (`<first_lsn>.wal`, highest name) of each shard.
pub fn newest_segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in 0..1024 {
        let dir = data_dir.join(format!("shard-{shard}")).join("wal");
        if !dir.is_dir() {
            break;
        }
        let segs = super::files_matching(&dir, &|p| p.extension().is_some_and(|e| e == "wal"));
        if let Some(last) = segs.last() {
            out.push(last.clone());
        }
    }
    out
}
