//! Segment files: names, directory listing, the windowed reader used by recovery, and the
//! preparation of new (or recycled) segments.
//!
//! Files in the WAL directory:
//! - `<first_lsn:020>.wal`: a live segment, whose first chunk starts at LSN `first_lsn`;
//! - `<seq:06>.spare`: a prepared segment (allocated, all zero, synced), ready to be renamed
//!   into the next live segment;
//! - `<seq:06>.tmp`: a segment being prepared or recycled; removed at open (incomplete);
//! - `lost-<lsn:020>[-n].bin`: bytes cut from the log by a repair (see `lost.rs`).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use mantis_storage::format::WAL_FILE_SUFFIX;
use mantis_storage::{File, OpenMode, Storage, StorageError, BLOCK_SIZE};

/// Size of one zero-filling write: large enough to stream, small enough to interleave with
/// commits on the same disk.
pub const ZERO_FILL_WRITE_BYTES: usize = 1 << 20;
/// Recovery reads segments through a window of this size (a bounded buffer), grown only to
/// hold one chunk that is larger.
pub const READ_WINDOW_BYTES: usize = 1 << 20;

pub const SPARE_SUFFIX: &str = ".spare";
pub const TEMP_SUFFIX: &str = ".tmp";
pub const LOST_PREFIX: &str = "lost-";

pub fn segment_file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}{WAL_FILE_SUFFIX}")
}

pub fn spare_file_name(seq: u64) -> String {
    format!("{seq:06}{SPARE_SUFFIX}")
}

pub fn temp_file_name(seq: u64) -> String {
    format!("{seq:06}{TEMP_SUFFIX}")
}

fn parse_number(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A live segment of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub first_lsn: u64,
    pub path: PathBuf,
    pub size_bytes: u64,
}

/// A prepared segment waiting to become live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spare {
    pub path: PathBuf,
    pub size_bytes: u64,
}

/// What the WAL directory holds, by kind.
#[derive(Debug, Default)]
pub struct DirListing {
    /// (first LSN, path), sorted by LSN.
    pub segments: Vec<(u64, PathBuf)>,
    pub spares: Vec<PathBuf>,
    pub temps: Vec<PathBuf>,
    pub lost: Vec<PathBuf>,
    /// One more than the largest spare/temp sequence number seen.
    pub next_seq: u64,
}

pub async fn list_dir(storage: &dyn Storage, dir: &Path) -> Result<DirListing, StorageError> {
    let mut out = DirListing::default();
    for name in storage.list(dir).await? {
        let path = dir.join(&name);
        if let Some(lsn) = parse_number(&name, WAL_FILE_SUFFIX) {
            out.segments.push((lsn, path));
        } else if let Some(seq) = parse_number(&name, SPARE_SUFFIX) {
            out.next_seq = out.next_seq.max(seq + 1);
            out.spares.push(path);
        } else if let Some(seq) = parse_number(&name, TEMP_SUFFIX) {
            out.next_seq = out.next_seq.max(seq + 1);
            out.temps.push(path);
        } else if name.starts_with(LOST_PREFIX) {
            out.lost.push(path);
        }
    }
    out.segments.sort();
    Ok(out)
}

/// Writes zeros over `[from, to)` (block-aligned) in bounded pieces.
pub async fn zero_fill(file: &dyn File, from: u64, to: u64) -> Result<(), StorageError> {
    assert!(from.is_multiple_of(BLOCK_SIZE as u64) && to.is_multiple_of(BLOCK_SIZE as u64));
    let zeros = vec![0u8; ZERO_FILL_WRITE_BYTES.min((to.saturating_sub(from)) as usize)];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(zeros.len());
        file.write_at(at, &zeros[..n]).await?;
        at += n as u64;
        glommio::yield_if_needed().await;
    }
    Ok(())
}

/// Makes a fresh segment: allocated (so later commits cannot hit ENOSPC), zero-filled once
/// (so commits overwrite written blocks, which keeps fdatasync cheap, and so nothing stale
/// is ever read), synced, and only then renamed to its `.spare` name.
pub async fn prepare_fresh(
    storage: &dyn Storage,
    dir: &Path,
    seq: u64,
    size_bytes: u64,
) -> Result<Spare, StorageError> {
    let tmp = dir.join(temp_file_name(seq));
    let result = async {
        let file = storage.open(&tmp, OpenMode::CreateNew).await?;
        let r = async {
            file.allocate(0, size_bytes).await?;
            zero_fill(&*file, 0, size_bytes).await?;
            file.sync().await
        }
        .await;
        file.close().await?;
        r
    }
    .await;
    if let Err(e) = result {
        // Give the space back; the failure itself is what the caller reports.
        let _ = storage.remove(&tmp).await;
        return Err(e);
    }
    finish_spare(storage, dir, &tmp, seq, size_bytes).await
}

/// Zero-fills a segment already renamed out of the log to `tmp`, syncs it, and makes it a
/// spare.
pub async fn zero_into_spare(
    storage: &dyn Storage,
    dir: &Path,
    tmp: &Path,
    seq: u64,
    size_bytes: u64,
) -> Result<Spare, StorageError> {
    let file = storage.open(tmp, OpenMode::ReadWrite).await?;
    let r = async {
        zero_fill(&*file, 0, size_bytes).await?;
        file.sync().await
    }
    .await;
    file.close().await?;
    r?;
    finish_spare(storage, dir, tmp, seq, size_bytes).await
}

async fn finish_spare(
    storage: &dyn Storage,
    dir: &Path,
    tmp: &Path,
    seq: u64,
    size_bytes: u64,
) -> Result<Spare, StorageError> {
    let path = dir.join(spare_file_name(seq));
    storage.rename(tmp, &path).await?;
    storage.sync_dir(dir).await?;
    Ok(Spare { path, size_bytes })
}

/// Reads a segment through a bounded window, for sequential scans.
pub struct SegmentReader {
    file: Rc<dyn File>,
    size_bytes: u64,
    window_off: u64,
    window: Vec<u8>,
}

impl SegmentReader {
    pub async fn open(storage: &dyn Storage, path: &Path) -> Result<Self, StorageError> {
        let file = storage.open(path, OpenMode::Read).await?;
        let size_bytes = file.size().await?;
        Ok(SegmentReader {
            file,
            size_bytes,
            window_off: 0,
            window: Vec::new(),
        })
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The bytes at `[off, off + len)`, shorter if the file ends first.
    pub async fn bytes(&mut self, off: u64, len: usize) -> Result<&[u8], StorageError> {
        let end = (off + len as u64).min(self.size_bytes);
        let cached_end = self.window_off + self.window.len() as u64;
        if off < self.window_off || end > cached_end {
            let want = len.max(READ_WINDOW_BYTES);
            self.window = self.file.read_up_to(off, want).await?;
            self.window_off = off;
        }
        let start = (off - self.window_off) as usize;
        let stop = ((end.max(off) - self.window_off) as usize).min(self.window.len());
        Ok(&self.window[start.min(stop)..stop])
    }

    pub async fn close(self) {
        let _ = self.file.close().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.wal");
        assert_eq!(
            parse_number(&segment_file_name(42), WAL_FILE_SUFFIX),
            Some(42)
        );
        assert_eq!(parse_number(&spare_file_name(7), SPARE_SUFFIX), Some(7));
        assert_eq!(parse_number("x.wal", WAL_FILE_SUFFIX), None);
        assert_eq!(parse_number(".wal", WAL_FILE_SUFFIX), None);
    }
}
