//! Reading the log back: the chain of chunks through the segments, and what lies after it.
//!
//! The log is valid up to the first position where the chain breaks (a bad chunk, an LSN
//! that is not the next one, a missing segment). What the break means depends on what comes
//! after it: with one chunk in flight at a time, only the last chunk can be incomplete, so a
//! break with no valid chunk of a higher LSN anywhere after it is the torn tail of a crash;
//! a break followed by such a chunk is damage in the middle of the log. Every block after a
//! break is examined, so the answer does not depend on how the damage looks.

use std::path::PathBuf;

use mantis_storage::{align_up, Storage, StorageError, BLOCK_SIZE};

use crate::error::{CorruptReason, WalError};
use crate::frame::{
    decode_payload, inspect_payload, is_zero, ChunkHeader, WalRecord, CHUNK_HEADER_BYTES,
};
use crate::segment::{SegmentFile, SegmentReader, READ_WINDOW_BYTES};

/// A position in the log: segment index (into the scanned list) and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub seg: usize,
    pub off: u64,
}

/// A bad chunk or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub offset: u64,
    /// For a bad chunk: the last good LSN before it. For a bad record: the record's own LSN.
    pub lsn: u64,
    pub reason: CorruptReason,
}

/// What comes after the first break, when valid chunks with higher LSNs exist there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostRange {
    pub first_lsn: u64,
    /// Highest LSN found in a valid chunk after the break.
    pub last_lsn: u64,
    /// Records after the break that are still intact (recoverable by hand from the copy).
    pub intact_records: u64,
}

#[derive(Debug, Clone)]
pub struct ScanOutcome {
    /// Right after the last chunk of the valid prefix: where appends continue.
    pub end: Pos,
    pub last_lsn: u64,
    pub chunks: u64,
    pub records: u64,
    /// The first break, when valid chunks of higher LSNs follow it (damage in the middle).
    pub first_break: Option<Problem>,
    pub lost: Option<LostRange>,
    /// Every break followed by valid data, and every bad record found in them.
    pub problems: Vec<Problem>,
    /// Where the scan finally stopped, and the end of the last non-zero block after it in
    /// that segment (equal to `final_pos.off` when the rest of the segment is clean).
    pub final_pos: Pos,
    pub final_nonzero_end: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct ScanMode {
    /// Return at the first break followed by valid data (open without repair).
    pub stop_at_first_break: bool,
    /// Name the bad records inside chunks whose payload checksum fails (verify).
    pub inspect_records: bool,
}

enum Step {
    Chunk(ChunkHeader, Vec<WalRecord>),
    SegmentEnd,
    Bad(CorruptReason),
}

struct Scanner<'a> {
    storage: &'a dyn Storage,
    segments: &'a [SegmentFile],
    reader: Option<(usize, SegmentReader)>,
}

impl<'a> Scanner<'a> {
    async fn reader(&mut self, seg: usize) -> Result<&mut SegmentReader, StorageError> {
        if self.reader.as_ref().map(|r| r.0) != Some(seg) {
            if let Some((_, old)) = self.reader.take() {
                old.close().await;
            }
            let r = SegmentReader::open(self.storage, &self.segments[seg].path).await?;
            self.reader = Some((seg, r));
        }
        match &mut self.reader {
            Some((_, r)) => Ok(r),
            None => unreachable!("reader was just opened"),
        }
    }

    /// Decodes and fully checks the chunk at `pos` (not its LSN or segment id).
    async fn read_chunk(
        &mut self,
        pos: Pos,
    ) -> Result<Result<(ChunkHeader, Vec<WalRecord>), CorruptReason>, StorageError> {
        let r = self.reader(pos.seg).await?;
        let size = r.size_bytes();
        let h = match ChunkHeader::decode(r.bytes(pos.off, CHUNK_HEADER_BYTES).await?) {
            Ok(h) => h,
            Err(reason) => return Ok(Err(reason)),
        };
        let end = pos.off + h.chunk_len_bytes();
        if end > size {
            return Ok(Err(CorruptReason::ChunkBeyondSegment {
                end,
                segment_size_bytes: size,
            }));
        }
        let payload = r
            .bytes(pos.off + CHUNK_HEADER_BYTES as u64, h.payload_len as usize)
            .await?;
        Ok(decode_payload(&h, payload).map(|recs| (h, recs)))
    }

    async fn step(&mut self, pos: Pos, expected_lsn: u64) -> Result<Step, StorageError> {
        let seg = &self.segments[pos.seg];
        let seg_first = seg.first_lsn;
        let r = self.reader(pos.seg).await?;
        if pos.off >= r.size_bytes() {
            return Ok(Step::SegmentEnd);
        }
        if is_zero(r.bytes(pos.off, BLOCK_SIZE).await?) {
            // Never-written space ends the segment, unless something was written after it.
            return Ok(if self.nonzero_end(pos).await? == pos.off {
                Step::SegmentEnd
            } else {
                Step::Bad(CorruptReason::MissingHeader)
            });
        }
        let (h, records) = match self.read_chunk(pos).await? {
            Ok(c) => c,
            Err(reason) => return Ok(Step::Bad(reason)),
        };
        if h.segment_first_lsn != seg_first {
            return Ok(Step::Bad(CorruptReason::ForeignSegment {
                expected: seg_first,
                found: h.segment_first_lsn,
            }));
        }
        if h.first_lsn != expected_lsn {
            return Ok(Step::Bad(CorruptReason::LsnMismatch {
                expected: expected_lsn,
                found: h.first_lsn,
            }));
        }
        Ok(Step::Chunk(h, records))
    }

    /// End offset (block-aligned) of the last non-zero block of `pos.seg` at or after
    /// `pos.off`; `pos.off` itself when there is none.
    async fn nonzero_end(&mut self, pos: Pos) -> Result<u64, StorageError> {
        let r = self.reader(pos.seg).await?;
        let size = r.size_bytes();
        let mut end = pos.off;
        let mut at = pos.off;
        while at < size {
            let window = r.bytes(at, READ_WINDOW_BYTES).await?;
            let n = window.len();
            for (i, block) in window.chunks(BLOCK_SIZE).enumerate() {
                if !is_zero(block) {
                    end = at + (i * BLOCK_SIZE + block.len()) as u64;
                }
            }
            if n == 0 {
                break;
            }
            at += n as u64;
            glommio::yield_if_needed().await;
        }
        Ok(align_up(end as usize) as u64)
    }

    /// The first valid chunk at or after `from` whose LSNs are all `>= min_lsn`.
    async fn find_valid(
        &mut self,
        from: Pos,
        min_lsn: u64,
    ) -> Result<Option<(Pos, ChunkHeader)>, StorageError> {
        let magic = mantis_storage::format::WAL_CHUNK_MAGIC.to_le_bytes();
        for seg in from.seg..self.segments.len() {
            let seg_first = self.segments[seg].first_lsn;
            let mut off = if seg == from.seg { from.off } else { 0 };
            let size = self.reader(seg).await?.size_bytes();
            while off < size {
                let head = self.reader(seg).await?.bytes(off, 4).await?;
                if head == magic {
                    let pos = Pos { seg, off };
                    if let Ok((h, _)) = self.read_chunk(pos).await? {
                        if h.segment_first_lsn == seg_first && h.first_lsn >= min_lsn {
                            return Ok(Some((pos, h)));
                        }
                    }
                }
                off += BLOCK_SIZE as u64;
                glommio::yield_if_needed().await;
            }
        }
        Ok(None)
    }

    /// The records that fail inside a chunk whose payload checksum failed.
    async fn record_problems(&mut self, pos: Pos) -> Result<Vec<Problem>, StorageError> {
        let path = self.segments[pos.seg].path.clone();
        let r = self.reader(pos.seg).await?;
        let Ok(h) = ChunkHeader::decode(r.bytes(pos.off, CHUNK_HEADER_BYTES).await?) else {
            return Ok(Vec::new());
        };
        let payload_off = pos.off + CHUNK_HEADER_BYTES as u64;
        let payload = r.bytes(payload_off, h.payload_len as usize).await?;
        Ok(inspect_payload(&h, payload)
            .into_iter()
            .map(|issue| Problem {
                file: path.clone(),
                offset: payload_off + issue.payload_offset as u64,
                lsn: issue.lsn,
                reason: issue.reason,
            })
            .collect())
    }

    async fn close(self) {
        if let Some((_, r)) = self.reader {
            r.close().await;
        }
    }
}

/// Walks the whole log in `segments` (sorted by first LSN, non-empty), handing every record
/// of the valid prefix to `on_record`, in LSN order, each chunk only after its checksums
/// passed. Records already handed over stay valid even if damage is found later.
pub async fn scan(
    storage: &dyn Storage,
    shard: usize,
    segments: &[SegmentFile],
    mode: ScanMode,
    on_record: &mut dyn FnMut(WalRecord) -> Result<(), WalError>,
) -> Result<ScanOutcome, WalError> {
    assert!(!segments.is_empty(), "scan needs a segment");
    assert!(segments[0].first_lsn > 0, "LSN 0 means 'none'");
    let mut sc = Scanner {
        storage,
        segments,
        reader: None,
    };
    let io = |e: StorageError| WalError::storage(shard, "recovery read", e);
    let mut last = segments[0].first_lsn - 1;
    let mut pos = Pos { seg: 0, off: 0 };
    let mut in_prefix = true;
    let mut out = ScanOutcome {
        end: pos,
        last_lsn: last,
        chunks: 0,
        records: 0,
        first_break: None,
        lost: None,
        problems: Vec::new(),
        final_pos: pos,
        final_nonzero_end: 0,
    };
    loop {
        glommio::yield_if_needed().await;
        let (at, reason) = match sc.step(pos, last + 1).await.map_err(io)? {
            Step::Chunk(h, records) => {
                if in_prefix {
                    for rec in records {
                        on_record(rec)?;
                    }
                    out.chunks += 1;
                    out.records += u64::from(h.record_count);
                } else if let Some(lost) = &mut out.lost {
                    lost.intact_records += u64::from(h.record_count);
                    lost.last_lsn = h.last_lsn();
                }
                last = h.last_lsn();
                pos.off += h.chunk_len_bytes();
                if in_prefix {
                    out.end = pos;
                    out.last_lsn = last;
                }
                continue;
            }
            Step::SegmentEnd => {
                let Some(next) = segments.get(pos.seg + 1) else {
                    break;
                };
                let next_pos = Pos {
                    seg: pos.seg + 1,
                    off: 0,
                };
                if next.first_lsn == last + 1 {
                    pos = next_pos;
                    if in_prefix {
                        out.end = pos;
                    }
                    continue;
                }
                let reason = CorruptReason::SegmentGap {
                    expected: last + 1,
                    found: next.first_lsn,
                };
                (next_pos, reason)
            }
            Step::Bad(reason) => (pos, reason),
        };
        let Some((found, h)) = sc.find_valid(at, last + 1).await.map_err(io)? else {
            break;
        };
        let inspect =
            mode.inspect_records && matches!(reason, CorruptReason::PayloadChecksum { .. });
        let problem = Problem {
            file: segments[at.seg].path.clone(),
            offset: at.off,
            lsn: last,
            reason,
        };
        out.problems.push(problem.clone());
        if inspect {
            out.problems
                .extend(sc.record_problems(at).await.map_err(io)?);
        }
        if in_prefix {
            in_prefix = false;
            out.first_break = Some(problem);
            out.lost = Some(LostRange {
                first_lsn: last + 1,
                last_lsn: last,
                intact_records: 0,
            });
            if mode.stop_at_first_break {
                sc.close().await;
                return Ok(out);
            }
        }
        // Resume the chain at the valid chunk.
        assert!(h.first_lsn > last && (found.seg, found.off) >= (at.seg, at.off));
        last = h.first_lsn - 1;
        pos = found;
    }
    out.final_pos = pos;
    out.final_nonzero_end = sc.nonzero_end(pos).await.map_err(io)?;
    sc.close().await;
    Ok(out)
}

/// End of the last non-zero block of `seg` at or after `from` (`from` when clean).
pub async fn nonzero_end(
    storage: &dyn Storage,
    shard: usize,
    seg: &SegmentFile,
    from: u64,
) -> Result<u64, WalError> {
    let segs = std::slice::from_ref(seg);
    let mut sc = Scanner {
        storage,
        segments: segs,
        reader: None,
    };
    let r = sc
        .nonzero_end(Pos { seg: 0, off: from })
        .await
        .map_err(|e| WalError::storage(shard, "recovery read", e));
    sc.close().await;
    r
}
